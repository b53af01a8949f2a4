//! One toast: dismisses itself after a few seconds (errors and warnings stay longer), or on its
//! ✕. The rest of it lets clicks through to the page under it (the side column's cards sit
//! there: a toast must not take the click meant for a Lock or Pause button).

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use crate::store::{Level, Toast};

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
        <div class={classes!("toast", class)} data-testid={format!("toast-{class}")} role="status">
            <button class="toast-close" {onclick} aria-label="Dismiss this message" title="Dismiss">{"✕"}</button>
            <div class="toast-title">{&t.title}</div>
            <div class="toast-text">{&t.text}</div>
        </div>
    }
}
