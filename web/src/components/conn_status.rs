//! The connection pill: connected, connecting, or reconnecting with the backoff shown (a click
//! while reconnecting retries at once).

use yew::prelude::*;

use super::{use_dispatch, use_session};
use crate::store::Conn;

#[function_component(ConnStatus)]
pub fn conn_status() -> Html {
    let ctx = use_dispatch();
    let st = use_session();
    let (class, text, title) = match st.conn {
        Conn::Connected => (
            "ok",
            "connected".to_string(),
            format!(
                "{}{}",
                st.server_version.as_deref().unwrap_or_default(),
                if st.compact {
                    " · events arrive as binary frames"
                } else {
                    ""
                }
            ),
        ),
        Conn::Connecting => ("wait", "connecting…".to_string(), String::new()),
        Conn::Replay => (
            "replay",
            "replay · not live".to_string(),
            "The page shows a saved run; the connection is closed until you go back to live."
                .to_string(),
        ),
        Conn::Reconnecting {
            attempt,
            retry_in_ms,
        } => (
            "bad",
            format!("reconnecting · {:.1} s", retry_in_ms as f64 / 1000.0),
            format!("Connection lost; attempt {attempt} comes next. Click to retry now."),
        ),
    };
    let reconnecting = matches!(st.conn, Conn::Reconnecting { .. });
    let onclick = {
        let reconnect = ctx.reconnect.clone();
        Callback::from(move |_| reconnect.emit(()))
    };
    // A server running a deliberately broken protocol says so, so nobody takes its run for
    // Lab 1's design.
    let variant = st.variant.as_ref().map(|v| {
        html! {
            <span class="conn bad" data-testid="variant"
                  title="pbscope serve --variant: a deliberately broken protocol, for the checker to catch">
                {format!("broken: {v}")}
            </span>
        }
    });
    html! {
        <>
            <button class={classes!("conn", class)} data-testid="conn-status" {title} {onclick}
                    disabled={!reconnecting} data-stream={if st.compact { "binary" } else { "objects" }}>
                <span class="dot"></span>{text}
            </button>
            {variant}
        </>
    }
}
