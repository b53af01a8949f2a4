//! The connection pill: connected, connecting, or reconnecting with the backoff shown.

use yew::prelude::*;

use super::use_ctx;
use crate::store::Conn;

#[function_component(ConnStatus)]
pub fn conn_status() -> Html {
    let ctx = use_ctx();
    let st = &ctx.state;
    let title = st
        .server_version
        .clone()
        .unwrap_or_else(|| "no server yet".into());
    let (class, text) = match st.conn {
        Conn::Connected => ("ok", "connected".to_string()),
        Conn::Connecting => ("wait", "connecting…".to_string()),
        Conn::Reconnecting {
            attempt,
            retry_in_ms,
        } => (
            "bad",
            format!(
                "reconnecting · try {attempt} in {:.1} s",
                retry_in_ms as f64 / 1000.0
            ),
        ),
    };
    let reconnecting = matches!(st.conn, Conn::Reconnecting { .. });
    let onclick = {
        let reconnect = ctx.reconnect.clone();
        Callback::from(move |_| reconnect.emit(()))
    };
    let title = if reconnecting {
        "Click to retry now".to_string()
    } else {
        title
    };
    html! {
        <button class={classes!("conn", class)} data-testid="conn-status" {title} {onclick}
                disabled={!reconnecting}>
            <span class="dot"></span>{text}
        </button>
    }
}
