//! The failover timeline: who served clients over time (one row per server), the crash
//! moments, the clients' retries, and the windows in which clients got no answer, with their
//! duration. Folded incrementally in `failover.rs`; this only draws it.

use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_feed, use_load, use_session};
use crate::failover::{Serving, Window};
use crate::store::{self, Action, Conn, Selection};
use crate::{format, ws};

/// Chips listed above the strip (newest first).
const CHIPS: usize = 3;

#[function_component(FailoverTimeline)]
pub fn failover_timeline() -> Html {
    let ctx = use_dispatch();
    let feed = use_feed();
    let session = use_session();
    let cluster = use_cluster();
    let load = use_load();
    let sample_every = load.sample_every();
    let zoom = use_state(|| true);
    let h = feed.shown();
    let f = &h.failover;
    let (Some(t0), Some(last)) = (h.first_t(), h.last_t()) else {
        return html! {
            <section class="timeline-card">
                <h2 class="panel-title">{"Failover timeline"}</h2>
                <div class="empty small">{"Waiting for events…"}</div>
            </section>
        };
    };
    let t0_all = t0;
    let now = if feed.paused() {
        last
    } else {
        (store::server_now_us(&session, &feed, ws::now_ms()) as u64).max(last)
    };
    // By default: the current cluster (since the latest reset), zoomed on its latest failover.
    let since = f.cluster_since_us.unwrap_or(0).max(t0);
    let unsorted: Vec<&Window> = f.all_windows().collect();
    let all: Vec<&Window> =
        store::stable_order(unsorted.iter().map(|w| crate::failover::chip_order(w)))
            .into_iter()
            .map(|i| unsorted[i as usize])
            .collect();
    let current: Vec<&Window> = all
        .iter()
        .copied()
        .filter(|w| w.start_us >= since)
        .collect();
    let focus = crate::failover::around_latest_failover(&current, now);
    let zoomed = *zoom && focus.is_some();
    let (t0, t1) = match focus {
        Some((a, b)) if zoomed => (a.max(t0), b.max(a.max(t0) + 1)),
        _ if *zoom => (since, now.max(since + 1)),
        _ => (t0, now.max(t0 + 1)),
    };
    let windows = if *zoom { current } else { all };
    let span = (t1 - t0) as f64;
    let pct = |t: u64| (t.clamp(t0, t1) - t0) as f64 / span * 100.0;

    // Marks carry the global index of their event; it may have left the history since.
    let select = |index: usize| {
        let ctx = ctx.clone();
        let idx = h.event(index).map(|_| index);
        Callback::from(move |_| {
            if let Some(i) = idx {
                ctx.dispatch(Action::Select(Some(Selection::Event(i))));
            }
        })
    };

    let chips = windows.iter().take(CHIPS).enumerate().map(|(i, w)| {
        let dur = format::millis(w.duration_us(now));
        let class = if w.is_open() { "open" } else { "closed" };
        let text = w.summary();
        let latest = i == 0;
        html! {
            <button class={classes!("window-chip", class, latest.then_some("latest"))}
                    data-testid="failover-window" data-ms={(w.duration_us(now) / 1000).to_string()}
                    onclick={select(w.start_index)} title={format!("{text} — click to show it in the diagram")}>
                <span class="window-ms">{dur}</span>
                if latest {
                    <span class="window-text">{text}</span>
                }
            </button>
        }
    });

    let servers: Vec<String> = cluster.nodes().map(|n| n.id.to_string()).collect();
    let rows = servers.iter().map(|s| {
        let segs = f.segments.iter().filter(|g| &*g.server == s.as_str() && g.from_us <= t1 && g.to_us.is_none_or(|to| to >= t0)).map(|g| {
            let x = pct(g.from_us);
            let w = (pct(g.to_us.unwrap_or(t1)) - x).max(0.0);
            let class = match g.state {
                Serving::Primary => "primary",
                Serving::Backup => "backup",
                Serving::Alone => "alone",
                Serving::Deposed => "deposed",
                Serving::Dead => "dead",
            };
            html! {
                <rect class={classes!("seg", class)} x={format!("{x}%")} width={format!("{w}%")} y="3" height="18" rx="3">
                    <title>{format!("{s}: {} from {}", g.state.as_str(), format::clock(g.from_us))}</title>
                </rect>
            }
        });
        let crashes = f.crashes.iter().filter(|c| &*c.server == s.as_str() && c.t_us >= t0 && c.t_us <= t1).map(|c| {
            let x = pct(c.t_us);
            html! {
                <g class="tl-crash" onclick={select(c.index)}>
                    <title>{format!("{s} crashed at {}", format::clock(c.t_us))}</title>
                    <line x1={format!("{x}%")} x2={format!("{x}%")} y1="0" y2="24" />
                    <text x={format!("{x}%")} y="17">{"✕"}</text>
                </g>
            }
        });
        html! {
            <div class="tl-row" data-testid={format!("timeline-{s}")}>
                <span class="tl-label">{s}</span>
                <svg class="tl-strip" height="24">{ for segs }{ for crashes }</svg>
            </div>
        }
    });
    let retries = f.retries.iter().filter(|r| r.t_us >= t0 && r.t_us <= t1).map(|r| {
        let x = pct(r.t_us);
        html! {
            <g class="tl-retry" onclick={select(r.index)}>
                <title>{format!("c{} re-sent #{} to {} after no answer from {}", r.client, format::req(r.req), r.to, r.from)}</title>
                <circle cx={format!("{x}%")} cy="12" r="7" />
                <text x={format!("{x}%")} y="16">{"↻"}</text>
            </g>
        }
    });
    let bands = windows.iter().filter(|w| { let (a, b) = w.band(now); b >= t0 && a <= t1 }).map(|w| {
        let (a, b) = w.band(now);
        let x = pct(a);
        let wd = (pct(b) - x).max(0.5);
        html! {
            <rect class={classes!("tl-window", w.is_open().then_some("open"))} x={format!("{x}%")} width={format!("{wd}%")} y="0" height="100%">
                <title>{format!("no answer for {}", format::millis(w.duration_us(now)))}</title>
            </rect>
        }
    });

    html! {
        <section class="timeline-card" data-testid="failover-timeline" aria-labelledby="timeline-title">
            <div class="timeline-head">
                <h2 class="panel-title" id="timeline-title">{"Failover timeline"}<span class="hint">{"who serves clients"}</span></h2>
                if focus.is_some() || since > t0_all {
                    <div class="segmented light">
                        <button class={classes!("seg", (*zoom).then_some("active"))} data-testid="timeline-zoom-failover" aria-pressed={zoom.to_string()}
                            onclick={let zoom = zoom.clone(); Callback::from(move |_| zoom.set(true))}>
                            {if focus.is_some() { "Latest failover" } else { "This cluster" }}
                        </button>
                        <button class={classes!("seg", (!*zoom).then_some("active"))} data-testid="timeline-zoom-all" aria-pressed={(!*zoom).to_string()}
                            onclick={let zoom = zoom.clone(); Callback::from(move |_| zoom.set(false))}>{"Whole history"}</button>
                    </div>
                }
                <div class="chips">
                    if windows.is_empty() {
                        if let Some(c) = f.crashes.last().filter(|_| sample_every > 1) {
                            // A failover whose waiting calls were not drawn: the windows come
                            // from the clients' retries, and the sample left them out.
                            <span class="muted small" data-testid="timeline-sampled">{format!(
                                "{} crashed at {}; no drawn call waited for an answer (1 load call in {} is drawn)",
                                c.server, format::clock(c.t_us), format::count(sample_every.into())
                            )}</span>
                        } else if session.conn == Conn::Replay {
                            <span class="muted small">{"No failover up to this time in the run."}</span>
                        } else if let Some(text) = dead_before_history(&cluster.model, &load.charts.markers) {
                            <span class="muted small" data-testid="timeline-before-history">{text}</span>
                        } else {
                            <span class="muted small">{"No failover yet — crash the primary (k), or arm “crash before next reply” (b) and lock."}</span>
                        }
                    }
                    { for chips }
                </div>
            </div>
            <div class="tl-body">
                <div class="tl-rows">
                    { for rows }
                    <div class="tl-row">
                        <span class="tl-label">{"retries"}</span>
                        <svg class="tl-strip" height="24">{ for retries }</svg>
                    </div>
                </div>
                <svg class="tl-overlay">{ for bands }</svg>
            </div>
            <div class="tl-axis">
                <span>{format::clock(t0)}</span>
                <span class="tl-legend">
                    <i class="sw primary"></i>{"primary"}<i class="sw backup"></i>{"backup"}
                    <i class="sw alone"></i>{"serving alone"}<i class="sw dead"></i>{"dead"}<i class="sw deposed"></i>{"deposed"}
                    <i class="sw window"></i>{"no answer"}
                </span>
                <span>
                    if zoomed {
                        {format!("{} · span {}", format::clock(t1), format::duration(t1 - t0))}
                    } else if feed.paused() {
                        {format::clock(t1)}
                    } else {
                        {format!("now · {}", format::clock(t1))}
                    }
                </span>
            </div>
        </section>
    }
}

/// For a page that holds no crash while a server is dead (opened, or caught up by a snapshot,
/// after the crash: under a load the page holds only the last seconds), what to say instead of
/// "No failover yet": which servers are dead, and when the newest crash was if the load charts
/// marked one (the snapshot's `marks` carry it).
fn dead_before_history(
    model: &model::Cluster,
    markers: &std::collections::VecDeque<crate::load::Marker>,
) -> Option<String> {
    let dead: Vec<String> = model
        .servers()
        .filter(|n| !n.alive)
        .map(|n| n.id.to_string())
        .collect();
    if dead.is_empty() {
        return None;
    }
    let when = markers
        .iter()
        .rev()
        .find(|m| m.kind == crate::load::MarkKind::Crash)
        .map(|m| {
            format!(
                " (the newest at {}, marked on the load charts)",
                format::clock(m.t_us)
            )
        })
        .unwrap_or_default();
    Some(format!(
        "{} dead: the crash came before the events this page holds{when}, so its failover window is not drawn here.",
        if dead.len() == 1 {
            format!("{} is", dead[0])
        } else {
            format!("{} are", dead.join(", "))
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Script;
    use shared::{EventKind, Role};

    /// Found by review: a page opened a few seconds after the primary died under a load said
    /// "No failover yet" beside a DEAD s1 card (its history held no crash).
    #[test]
    fn a_page_that_holds_no_crash_still_says_a_server_is_dead() {
        let mut script = Script::default();
        for (pid, id, role) in [(101, "s1", Role::Primary), (102, "s2", Role::Backup)] {
            script.ev(
                id,
                EventKind::ProcessStarted {
                    pid,
                    role,
                    port: 4000,
                },
            );
        }
        let fold = |script: &Script| {
            let mut model = model::Cluster::default();
            for e in &script.events {
                model.apply(e);
            }
            model
        };
        let none = std::collections::VecDeque::new();
        assert_eq!(
            dead_before_history(&fold(&script), &none),
            None,
            "both alive"
        );
        script.ev(
            "s1",
            EventKind::ProcessExited {
                pid: 101,
                signal: Some(9),
                code: None,
            },
        );
        let model = fold(&script);
        let text = dead_before_history(&model, &none).expect("s1 is dead");
        assert!(text.starts_with("s1 is dead"), "{text}");
        let mut markers = std::collections::VecDeque::new();
        markers.push_back(crate::load::Marker {
            t_us: 8_019_000,
            kind: crate::load::MarkKind::Crash,
            label: "s1 crashed".into(),
            detail: "s1 crashed".into(),
        });
        let text = dead_before_history(&model, &markers).expect("s1 is dead");
        assert!(text.contains(&format::clock(8_019_000)), "{text}");
    }
}
