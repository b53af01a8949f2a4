//! Toasts: server errors (never swallowed), warnings (fell behind, connection lost) and short
//! confirmations (a crash was sent). Each goes away after a few seconds or on a click.

use yew::prelude::*;

use super::toast_item::ToastItem;
use super::{use_dispatch, use_toasts};
use crate::store::Action;

#[function_component(Toasts)]
pub fn toasts() -> Html {
    let toasts = use_toasts();
    // The same callback every render: the toasts already shown keep equal props.
    let dispatch = use_dispatch();
    let on_dismiss = use_callback(dispatch, |id, ctx| ctx.dispatch(Action::DismissToast(id)));
    html! {
        <div class="toasts" aria-live="polite">
            { for toasts.list.iter().map(|t| html! {
                <ToastItem key={t.id} toast={t.clone()} on_dismiss={on_dismiss.clone()} />
            }) }
        </div>
    }
}
