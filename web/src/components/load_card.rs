//! The load generator's clerks on one card in the Clients panel (never one card per clerk):
//! how many, what they run, calls in progress, answered and given up, and the newest window's
//! throughput and latency.
//!
//! Answered and given up are the server's counts of every load call (`load_stats`' `total_ok`
//! and `total_failed`), not the model's: under a sampled diagram the page folds only the calls it
//! draws, and a page opened late never saw the first ones. Calls in progress exist only in the
//! model, so they are shown only while every call is drawn.

use yew::prelude::*;

use super::{use_cluster, use_load};
use crate::{format, load};

#[function_component(LoadCard)]
pub fn load_card() -> Html {
    let load = use_load();
    let cluster = use_cluster();
    // The model folds the clerks' events the page gets (at most 256 clerks).
    let Some(Figures {
        clerks,
        calling,
        completed,
        failed,
    }) = figures(&load, &cluster.model)
    else {
        return html! {};
    };
    let sampled = calling.is_none();
    let what = match &load.settings {
        Some(s) => load::describe(s),
        None => "stopped".to_owned(),
    };
    let latest = load.charts.latest.as_ref().filter(|_| load.running());
    html! {
        <div class={classes!("card", "client", "load-card", load.running().then_some("running"))} data-testid="load-card">
            <div class="card-head">
                <h3 class="node-name">{"load"}</h3>
                <span class="muted" data-testid="load-card-clerks">{format!("c{}…: {} in one process", shared::LOAD_FIRST_CLIENT, format::counted(clerks, "clerk"))}</span>
            </div>
            <div class="facts">
                <span data-testid="load-card-settings">{what}</span>
            </div>
            <dl class="load-figures">
                <div><dt>{"throughput"}</dt><dd data-testid="load-card-ops">{latest.map_or("–".to_owned(), |s| format!("{} ops/s", format::count(s.ops_per_s)))}</dd></div>
                <div><dt>{"p50"}</dt><dd>{latest.map_or("–".to_owned(), |s| format::duration(s.p50_us))}</dd></div>
                <div><dt>{"p99"}</dt><dd>{latest.map_or("–".to_owned(), |s| format::duration(s.p99_us))}</dd></div>
                <div><dt>{"in progress"}</dt>
                    if sampled {
                        <dd title="not counted while the diagram draws a sample of the calls">{"–"}</dd>
                    } else {
                        <dd>{format::count(calling.unwrap_or_default())}</dd>
                    }
                </div>
                <div><dt>{"answered"}</dt><dd data-testid="load-card-completed">{format::count(completed)}</dd></div>
                <div><dt>{"gave up"}</dt><dd class={(failed > 0).then_some("bad")} data-testid="load-card-failed">{format::count(failed)}</dd></div>
            </dl>
        </div>
    }
}

/// What the card shows.
#[derive(Debug, PartialEq)]
struct Figures {
    clerks: u64,
    /// None while the diagram samples: the model does not see every call start and end.
    calling: Option<u64>,
    completed: u64,
    failed: u64,
}

/// The card's numbers, or None when there is no load to show (none runs and none ran).
fn figures(load: &crate::store::LoadState, model: &model::Cluster) -> Option<Figures> {
    let (mut known, mut calling, mut completed, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let ids = shared::LOAD_FIRST_CLIENT..shared::LOAD_FIRST_CLIENT + shared::MAX_LOAD_CLIENTS;
    for c in ids.filter_map(|id| model.client(id)) {
        known += 1;
        calling += u64::from(c.pending.is_some());
        completed += c.completed;
        failed += c.failed;
    }
    if known == 0 && !load.running() {
        return None;
    }
    // The server's counts of every call, once it sent one.
    if let Some(s) = load.charts.latest.as_ref() {
        completed = s.total_ok;
        failed = s.total_failed;
    }
    Some(Figures {
        // Running: as many as the settings say (a load that shrank keeps its old clerks'
        // entries in the model).
        clerks: if load.running() {
            u64::from(load.clerks())
        } else {
            known
        },
        calling: (load.sample_every() <= 1).then_some(calling),
        completed,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Event, EventKind, LoadSettings, LoadStats, Op, RequestId};

    fn fold(model: &mut model::Cluster, seq: u64, kind: EventKind) {
        let client = shared::LOAD_FIRST_CLIENT;
        model.apply(&Event {
            seq,
            t_us: seq * 10,
            node: format!("c{client}").into(),
            kind,
        });
    }

    /// Found by review: under a sample of 1 call in 20 the card counted only the calls it drew
    /// (+504 in 5 s of a load that answered ~10,000), and kept a load's old clerk count after it
    /// shrank.
    #[test]
    fn the_card_counts_every_call_of_the_load_not_the_drawn_sample() {
        let client = shared::LOAD_FIRST_CLIENT;
        let mut model = model::Cluster::default();
        let req = RequestId {
            client,
            incarnation: 0,
            seq: 1,
        };
        fold(
            &mut model,
            1,
            EventKind::OpInvoked {
                client,
                req,
                op: Op::Lock,
                lock: "load-0".into(),
                tag: None,
                server: "s1".into(),
            },
        );
        let mut load = crate::store::LoadState {
            settings: Some(LoadSettings {
                clients: 4,
                ..LoadSettings::STOPPED
            }),
            applied_sample: 20,
            ..Default::default()
        };
        // Before any load_stats: what the model saw.
        let f = figures(&load, &model).expect("a load runs");
        assert_eq!((f.clerks, f.completed, f.failed), (4, 0, 0));
        assert_eq!(f.calling, None, "in progress is unknown under a sample");
        let charts = crate::load::Charts {
            latest: Some(LoadStats {
                window_ms: 250,
                calls: 2_500,
                ok: 2_490,
                failed: 10,
                ops_per_s: 9_960,
                p50_us: 300,
                p99_us: 900,
                sample_every: 20,
                links: vec![],
                total_ok: 10_000,
                total_failed: 12,
            }),
            ..Default::default()
        };
        load.charts = std::rc::Rc::new(charts);
        let f = figures(&load, &model).expect("a load runs");
        assert_eq!((f.completed, f.failed), (10_000, 12));
        // Every call drawn: the model's calls in progress are right.
        load.applied_sample = 1;
        assert_eq!(figures(&load, &model).and_then(|f| f.calling), Some(1));
        // Stopped and never ran: no card.
        let idle = crate::store::LoadState::default();
        assert_eq!(figures(&idle, &model::Cluster::default()), None);
    }
}
