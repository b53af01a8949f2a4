//! Toasts: server errors (never swallowed), warnings (fell behind, connection lost) and short
//! confirmations (a crash was sent). Each goes away after a few seconds or on a click.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use super::use_ctx;
use crate::store::{Action, Level, Toast};

const ERROR_MS: u32 = 8000;
const INFO_MS: u32 = 4000;

#[derive(Properties, PartialEq, Debug)]
pub struct ToastItemProps {
    pub toast: Toast,
    pub on_dismiss: Callback<u64>,
}

#[function_component(ToastItem)]
pub fn toast_item(props: &ToastItemProps) -> Html {
    let t = &props.toast;
    {
        let id = t.id;
        let on_dismiss = props.on_dismiss.clone();
        let ms = if t.level == Level::Info {
            INFO_MS
        } else {
            ERROR_MS
        };
        use_effect_with(id, move |_| {
            let timer = Timeout::new(ms, move || on_dismiss.emit(id));
            move || drop(timer)
        });
    }
    let onclick = {
        let id = t.id;
        let cb = props.on_dismiss.clone();
        Callback::from(move |_| cb.emit(id))
    };
    let class = match t.level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
    };
    html! {
        <div class={classes!("toast", class)} data-testid={format!("toast-{class}")} role="status" {onclick}>
            <div class="toast-title">{&t.title}</div>
            <div class="toast-text">{&t.text}</div>
        </div>
    }
}

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
