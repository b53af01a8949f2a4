//! The load generator's clerks on one card in the Clients panel (never one card per clerk):
//! how many, what they run, calls in progress, answered and given up (the model's counters of
//! every load clerk), and the newest window's throughput and latency.

use yew::prelude::*;

use super::{use_cluster, use_load};
use crate::{format, load};

#[function_component(LoadCard)]
pub fn load_card() -> Html {
    let load = use_load();
    let cluster = use_cluster();
    // The model folds every clerk's events, the load's too (at most 256 of them).
    let (mut clerks, mut calling, mut completed, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let ids = shared::LOAD_FIRST_CLIENT..shared::LOAD_FIRST_CLIENT + shared::MAX_LOAD_CLIENTS;
    for c in ids.filter_map(|id| cluster.model.client(id)) {
        clerks += 1;
        calling += u64::from(c.pending.is_some());
        completed += c.completed;
        failed += c.failed;
    }
    if clerks == 0 && !load.running() {
        return html! {};
    }
    let what = match &load.settings {
        Some(s) => load::describe(s),
        None => "stopped".to_owned(),
    };
    let latest = load.charts.latest.as_ref().filter(|_| load.running());
    html! {
        <div class={classes!("card", "client", "load-card", load.running().then_some("running"))} data-testid="load-card">
            <div class="card-head">
                <h3 class="node-name">{"load"}</h3>
                <span class="muted">{format!("c{}…: {} in one process", shared::LOAD_FIRST_CLIENT, format::counted(clerks, "clerk"))}</span>
            </div>
            <div class="facts">
                <span data-testid="load-card-settings">{what}</span>
            </div>
            <dl class="load-figures">
                <div><dt>{"throughput"}</dt><dd data-testid="load-card-ops">{latest.map_or("–".to_owned(), |s| format!("{} ops/s", format::count(s.ops_per_s)))}</dd></div>
                <div><dt>{"p50 · p99"}</dt><dd>{latest.map_or("–".to_owned(), |s| format!("{} · {}", format::duration(s.p50_us), format::duration(s.p99_us)))}</dd></div>
                <div><dt>{"in progress"}</dt><dd>{format::count(calling)}</dd></div>
                <div><dt>{"answered"}</dt><dd data-testid="load-card-completed">{format::count(completed)}</dd></div>
                <div><dt>{"gave up"}</dt><dd class={(failed > 0).then_some("bad")}>{format::count(failed)}</dd></div>
            </dl>
        </div>
    }
}
