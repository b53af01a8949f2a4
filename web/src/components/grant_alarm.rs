//! The red banner over the timeline: what is wrong with the answers the clients got, in words.
//!
//! Two sources say it, and only one banner shows:
//!
//! - the checker (`verdict` events, node `checker`): the authority. When it finds a lock not
//!   linearizable, the banner says so with its explanation and the calls at fault (each a
//!   button that shows the call in the diagram);
//! - the page's own double-grant watch (`grants.rs`): narrow, never a false alarm. Alone it
//!   speaks when the checker has not (yet) found the violation (no checker, or still checking);
//!   beside a violation it is one line under the verdict, saying it saw the same.
//!
//! The checker's banner is one line until a person asks for more: the verdict, the start of
//! the explanation and the calls at fault; *More* shows the whole explanation and the
//! double-grant watch's agreement.
//!
//! It stays until the cluster is reset (or the page meets a new server): never hidden, never
//! smoothed over.

use yew::prelude::*;

use super::{use_cluster, use_dispatch};
use crate::format;
use crate::store::Action;
use crate::verdict::{calls_text, headline, keep_units_together};

#[function_component(GrantAlarm)]
pub fn grant_alarm() -> Html {
    let ctx = use_dispatch();
    let cluster = use_cluster();
    // Folded to one line by default, so the diagram keeps its height (a projector, a small
    // screen, the details drawer open): "More" shows the whole explanation.
    let expanded = use_state(|| false);
    let board = cluster.verdicts();
    let grant = cluster.grants.latest();
    let more = cluster.grants.found().len().saturating_sub(1);
    let grant_text = grant.map(|g| {
        let mut t = format!("{}.", g.sentence());
        if more > 0 {
            t.push_str(&format!(" ({more} more since the reset.)"));
        }
        t
    });
    if board.violations.is_empty() {
        let (Some(latest), Some(text)) = (grant, grant_text) else {
            return html! {};
        };
        let why = match cluster.model.verdict(&latest.lock).map(|v| v.status) {
            Some(shared::VerdictStatus::Unknown) => {
                " Two clients were told they hold the same lock: Lab 1 is wrong here. The checker has not decided this lock yet."
            }
            _ => " Two clients were told they hold the same lock: Lab 1 is wrong here.",
        };
        return html! {
            <div class="grant-alarm" role="alert" data-testid="double-grant"
                data-lock={latest.lock.clone()}>
                <strong>{"Double grant. "}</strong>
                {text}
                <span class="grant-why">{why}</span>
            </div>
        };
    }
    let locks: Vec<&str> = board.violations.iter().map(|v| v.lock.as_str()).collect();
    let open = *expanded;
    let each = board.violations.iter().enumerate().map(|(i, v)| {
        let chips = v.ops.iter().map(|r| {
            let req = *r;
            let onclick = ctx.to(move |_: MouseEvent| Action::JumpToCalls(vec![req]));
            html! {
                <>
                    {" "}
                    <button class="call-chip" data-req={format::req(req)} {onclick}
                        title="Show this call in the diagram">{format!("#{}", format::req(req))}</button>
                </>
            }
        });
        let says = if v.explanation.is_empty() {
            "no order of its calls explains the answers.".to_string()
        } else {
            keep_units_together(&v.explanation)
        };
        // Folded, the watch's finding in three words ("Lock(z) granted twice") stays whole
        // beside the verdict, and the checker's sentence follows until the line ends (cut short
        // there; its whole text in the tooltip). Its sentence is under *More*.
        let double_granted = !open && cluster.grants.found().any(|d| d.lock == v.lock);
        html! {
            // The sentence and the calls at fault are separate blocks: folded, the sentence takes
            // what the line has left while the head and the calls stay whole; unfolded, the
            // sentence wraps and the calls go under it.
            <p class="verdict-why" data-testid="verdict-explanation" data-lock={v.lock.clone()}>
                <span class="verdict-head">
                    if i == 0 {
                        <strong>{"Not linearizable."}</strong>{" "}
                    }
                    <span class="verdict-lock">{format!("{}:", v.lock)}</span>
                    if double_granted {
                        {" "}
                        <span class="verdict-gist" data-testid="double-grant" data-lock={v.lock.clone()}>{headline(v, true)}</span>
                    }
                </span>
                {" "}
                <span class="verdict-says" title={(!open).then(|| says.clone())}>
                    if double_granted { {"— "} }
                    {says.clone()}
                </span>
                {" "}
                if !v.ops.is_empty() {
                    <span class="calls-at-fault" aria-label={format!("calls at fault: {}", calls_text(&v.ops))}>
                        <span class="muted-red">{"Calls at fault:"}</span>{ for chips }
                    </span>
                }
            </p>
        }
    });
    let all: Vec<shared::RequestId> = board.faulty().iter().copied().collect();
    let show = ctx.to(move |_: MouseEvent| Action::JumpToCalls(all.clone()));
    let toggle = {
        let expanded = expanded.clone();
        Callback::from(move |_: MouseEvent| expanded.set(!*expanded))
    };
    html! {
        <div class={classes!("grant-alarm", "verdict-alarm", open.then_some("expanded"))} role="alert"
            data-testid="verdict-alarm" data-locks={locks.join(",")}>
            <div class="verdict-body">
                { for each }
                if open {
                    <p class="verdict-foot">
                        <span class="grant-why">{"The checker found no order of the calls that explains what the clients were told; the calls at fault are red on the cards and in the diagram. "}</span>
                        if let (Some(latest), Some(text)) = (grant, grant_text) {
                            <span class="grant-line" data-testid="double-grant" data-lock={latest.lock.clone()}>
                                {"The page's double-grant watch agrees: "}{text}
                            </span>
                        }
                    </p>
                }
            </div>
            <button class="btn small verdict-more" data-testid="verdict-more" aria-expanded={open.to_string()}
                onclick={toggle}
                title={if open { "Fold the banner to one line" } else { "The whole explanation, and what the page's double-grant watch saw" }}>
                {if open { "Less ▴" } else { "More ▾" }}</button>
            <button class="btn small verdict-show" data-testid="verdict-show" onclick={show}
                title="Scroll the diagram to the first call at fault (v)">
                {"Show"}<span class="verdict-wide">{" in diagram"}</span></button>
        </div>
    }
}
