//! The checker's verdict in the top bar: "linearizable ✓", "checking…" / "unknown", or
//! "NOT linearizable" in red. A polite live region, so a screen reader hears it change; a click
//! (or `v`) on a violation shows the calls at fault in the diagram, otherwise it says in a toast
//! what was checked and why a verdict is not ok.

use yew::prelude::*;

use super::{use_cluster, use_dispatch};
use crate::store::{Action, Level};
use crate::verdict::Overall;

#[function_component(VerdictBadge)]
pub fn verdict_badge() -> Html {
    let ctx = use_dispatch();
    let cluster = use_cluster();
    let board = cluster.verdicts();
    let detail = board.detail();
    let onclick = {
        let faulty: Vec<shared::RequestId> = board.faulty().iter().copied().collect();
        let violation = board.overall == Overall::Violation;
        let (title, text) = (board.text().to_string(), detail.clone());
        ctx.to(move |_: MouseEvent| {
            if violation {
                Action::JumpToCalls(faulty.clone())
            } else {
                Action::Toast {
                    level: Level::Info,
                    title: format!("Checker: {title}"),
                    text: text.clone(),
                }
            }
        })
    };
    let icon = match board.overall {
        Overall::None => "○",
        Overall::Ok => "●",
        Overall::Unknown => "◌",
        Overall::Violation => "✗",
    };
    let locks =
        (board.violations.len() > 1).then(|| format!(" · {} locks", board.violations.len()));
    html! {
        <span class="verdict-live" role="status" aria-live="polite" aria-atomic="true">
            <button class={classes!("verdict", board.class())} data-testid="verdict" data-status={board.class()}
                {onclick} title={detail}>
                <span class="verdict-icon" aria-hidden="true">{icon}</span>
                <span class="verdict-k">{"checker"}</span>
                <span class="verdict-v" data-testid="verdict-text">{board.text()}</span>
                if let Some(l) = locks { <span class="verdict-n">{l}</span> }
            </button>
        </span>
    }
}
