//! Toasts: server errors (never swallowed), warnings (fell behind, connection lost) and short
//! confirmations (a crash was sent). Each goes away after a few seconds or on a click.

use yew::prelude::*;

use super::toast_item::ToastItem;
use super::use_ctx;
use crate::store::Action;

#[function_component(Toasts)]
pub fn toasts() -> Html {
    let ctx = use_ctx();
    let on_dismiss = {
        let ctx = ctx.clone();
        Callback::from(move |id| ctx.dispatch(Action::DismissToast(id)))
    };
    html! {
        <div class="toasts" aria-live="polite">
            { for ctx.state.toasts.iter().map(|t| html! {
                <ToastItem key={t.id} toast={t.clone()} on_dismiss={on_dismiss.clone()} />
            }) }
        </div>
    }
}
