//! The diagram's legend: one swatch per message kind and per mark.

use yew::prelude::*;

use crate::events::MsgKind;

fn kind_name(k: MsgKind) -> &'static str {
    match k {
        MsgKind::Request => "request",
        MsgKind::Forward => "forward",
        MsgKind::ForwardAck => "forward ack",
        MsgKind::ForwardRefused => "forward refused",
        MsgKind::Reply => "reply",
    }
}

#[function_component(Legend)]
pub fn legend() -> Html {
    html! {
        <div class="legend" data-testid="legend">
            { for MsgKind::ALL.iter().map(|k| html! {
                <span class={classes!("key", k.as_str())}><i class="swatch"></i>{kind_name(*k)}</span>
            }) }
            <span class="key lost"><i class="cross-swatch">{"✕"}</i>{"lost"}</span>
            <span class="key inflight"><i class="swatch dashed"></i>{"in flight"}</span>
            <span class="key crashk"><i class="crash-swatch"></i>{"crash / dead"}</span>
            <span class="key retryk"><i class="retry-swatch">{"↻"}</i>{"retry, same id"}</span>
        </div>
    }
}
