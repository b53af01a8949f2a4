//! The help overlay ("?"): keyboard shortcuts and how to read the diagram.

use yew::prelude::*;

use super::legend::Legend;
use super::{use_dispatch, use_view};
use crate::keys::HELP;
use crate::store::Action;

#[function_component(Help)]
pub fn help() -> Html {
    let ctx = use_dispatch();
    let open = use_view().help;
    // The dialog takes the focus when it opens, so a screen reader reads it and Tab starts in it.
    let dialog = use_node_ref();
    {
        let dialog = dialog.clone();
        use_effect_with(open, move |open| {
            if *open {
                if let Some(el) = dialog.cast::<web_sys::HtmlElement>() {
                    let _ = el.focus();
                }
            }
        });
    }
    if !open {
        return html! {};
    }
    let close = ctx.to(|_: MouseEvent| Action::ShowHelp(false));
    let stop = Callback::from(|e: MouseEvent| e.stop_propagation());
    html! {
        <div class="overlay" onclick={close.clone()} data-testid="help">
            <div class="help" onclick={stop} ref={dialog} tabindex="-1" role="dialog" aria-modal="true"
                aria-labelledby="help-title">
                <div class="details-head">
                    <h2 class="details-title" id="help-title">{"Keyboard shortcuts"}</h2>
                    <button class="btn ghost small" onclick={close} title="Close (Esc)" aria-label="Close the help">{"✕"}</button>
                </div>
                <table class="keys">
                    { for HELP.iter().map(|(k, what)| html! {
                        <tr><td><kbd>{*k}</kbd></td><td>{*what}</td></tr>
                    }) }
                </table>
                <h3>{"Reading the diagram"}</h3>
                <p>{"One vertical lane per process, time flowing down. A Lock or Unlock call goes client → primary (request), primary → backup (forward), backup → primary (forward ack), primary → client (reply). Every call carries a request id like "}<code>{"#c1.7"}</code>{" (client 1, call 7)."}</p>
                <p>{"When the primary dies, the client re-sends the "}<b>{"same"}</b>{" request id to the backup (↻). The backup answers from its at-most-once record if it already applied that request. Hover a message to highlight every message of its call; click for details."}</p>
                <Legend />
            </div>
        </div>
    }
}
