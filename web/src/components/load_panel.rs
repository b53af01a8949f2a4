//! The load panel: start and stop the load generator, and set its clerks (0-256), its target
//! rate (closed loop, or calls/s in total), its locks (uniform over N, or one hot lock) and its
//! unlock share. It sends `load` / `load_stop` and shows what the server runs (`load_changed`,
//! the snapshot's `load`). A change while the load runs is sent when the slider is let go (or
//! at each key press on it).
//!
//! It also asks the gateway for a sample of the load's calls (`detail`) when the load is heavy
//! (see `load::choose_sample`), once per change and again after a reconnect.

use shared::{Command, LoadDistribution, LoadSettings};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::{use_dispatch, use_load, use_replaying, use_session, REPLAY_DISABLED};
use crate::load::{self, RATES};
use crate::store::{Action, Conn};
use crate::{format, ws};

/// The rate slider's position for a rate (the nearest of [`RATES`]).
fn rate_index(rate: u64) -> usize {
    RATES
        .iter()
        .enumerate()
        .min_by_key(|(_, r)| r.abs_diff(rate))
        .map_or(0, |(i, _)| i)
}

fn rate_text(rate: u64) -> String {
    if rate == 0 {
        "closed loop".to_owned()
    } else {
        format!(
            "{} call{}/s",
            format::count(rate),
            if rate == 1 { "" } else { "s" }
        )
    }
}

#[function_component(LoadPanel)]
pub fn load_panel() -> Html {
    let ctx = use_dispatch();
    let load = use_load();
    let session = use_session();
    let replay = use_replaying();
    let connected = session.conn == Conn::Connected;

    // Under a heavy load, ask for a sample of the load's calls (and for all of them again).
    {
        let send = ctx.send.clone();
        use_effect_with(
            (load.want_sample, load.sent_sample, connected),
            move |(want, sent, connected)| {
                if *connected && want != sent {
                    send.emit(Command::Detail {
                        load_sample: *want,
                        tag: Some(ws::next_tag("detail")),
                    });
                }
            },
        );
    }

    let running = load.running();
    let draft = load.draft;
    let toggle = ctx.to(|_: MouseEvent| Action::ToggleLoadPanel);
    let start = {
        let send = ctx.send.clone();
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::Load {
                settings: LoadSettings {
                    clients: draft.clients.max(1),
                    ..draft
                },
                tag: Some(ws::next_tag("load")),
            })
        })
    };
    let stop = {
        let send = ctx.send.clone();
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::LoadStop {
                tag: Some(ws::next_tag("load")),
            })
        })
    };
    // A field changed: the draft follows at once; a running load is changed on commit.
    let edit = |f: fn(&mut LoadSettings, &HtmlInputElement)| {
        let ctx = ctx.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let mut d = draft;
            f(&mut d, &input);
            ctx.dispatch(Action::LoadDraft(d));
            let commit = e.type_() == "change";
            // Clerks let go at 0 stop the load, as `clients: 0` does on the wire.
            if commit && running {
                ctx.send.emit(Command::Load {
                    settings: d,
                    tag: Some(ws::next_tag("load")),
                });
            }
        })
    };
    let on_clients = edit(|d, i| {
        d.clients = i
            .value()
            .parse::<u32>()
            .unwrap_or(0)
            .min(shared::MAX_LOAD_CLIENTS)
    });
    let on_rate =
        edit(|d, i| d.rate = RATES[i.value().parse::<usize>().unwrap_or(0).min(RATES.len() - 1)]);
    let on_locks = edit(|d, i| {
        d.locks = i
            .value()
            .trim()
            .parse::<u32>()
            .unwrap_or(1)
            .clamp(1, 10_000)
    });
    let on_uniform = edit(|d, _| d.distribution = LoadDistribution::Uniform);
    let on_hot = edit(|d, _| d.distribution = LoadDistribution::Hot);
    let on_unlock = edit(|d, i| {
        // The slider's value is a whole percent: read as an integer (a `parse::<f64>` brings
        // core's decimal tables into the wasm).
        d.unlock_share = f64::from(i.value().parse::<u32>().unwrap_or(50).min(100)) / 100.0
    });
    // `input` fires while dragging (the draft and the labels follow), `change` on release.
    let both = |cb: Callback<Event>| {
        let on_input = {
            let cb = cb.clone();
            Callback::from(move |e: InputEvent| cb.emit(e.into()))
        };
        (on_input, cb)
    };
    let (clients_input, clients_change) = both(on_clients);
    let (rate_input, rate_change) = both(on_rate);
    let (unlock_input, unlock_change) = both(on_unlock);

    let summary = match &load.settings {
        Some(s) => format!("running: {}", load::describe(s)),
        None => "idle".to_owned(),
    };
    let title_off = |what: &str| -> String {
        if replay {
            REPLAY_DISABLED.to_owned()
        } else if !connected {
            "Not connected".to_owned()
        } else {
            what.to_owned()
        }
    };
    let unlock_pct = (draft.unlock_share * 100.0).round() as u32;
    let hot = draft.distribution == LoadDistribution::Hot;

    html! {
        <section class={classes!("panel", "load-panel", load.open.then_some("open"), running.then_some("running"))}
            data-testid="load-panel" aria-labelledby="load-title">
            <h2 class="panel-title">
                <span id="load-title">{"Load"}</span>
                <span class="hint">{"generator"}</span>
                if running {
                    <button class="btn small danger" data-testid="load-stop" onclick={stop}
                        disabled={replay || !connected} title={title_off("Stop the load generator")}>{"■ Stop"}</button>
                } else {
                    <button class="btn small primary" data-testid="load-start" onclick={start}
                        disabled={replay || !connected}
                        title={title_off(&format!("Start the load: {}", load::describe(&LoadSettings { clients: draft.clients.max(1), ..draft })))}>{"▶ Start"}</button>
                }
                <button class="btn ghost small" data-testid="load-toggle" onclick={toggle}
                    aria-expanded={load.open.to_string()} aria-controls={load.open.then_some("load-body")}
                    title="Open / close the load settings">
                    {if load.open { "▾ Close" } else { "▸ Open" }}
                </button>
            </h2>
            <div class={classes!("load-summary", running.then_some("active"))} data-testid="load-summary" role="status">
                {summary}
            </div>
            if load.open {
                <div id="load-body" class="load-body">
                    <div class="load-field">
                        <label for="load-clients">{"Clerks"}</label>
                        <input id="load-clients" type="range" min="0" max={shared::MAX_LOAD_CLIENTS.to_string()} step="1"
                            value={draft.clients.to_string()} oninput={clients_input} onchange={clients_change}
                            data-testid="load-clients" aria-valuetext={format::counted(draft.clients.into(), "clerk")} />
                        <output for="load-clients" class="mono">{draft.clients}</output>
                    </div>
                    <div class="load-field">
                        <label for="load-rate">{"Rate"}</label>
                        <input id="load-rate" type="range" min="0" max={(RATES.len() - 1).to_string()} step="1"
                            value={rate_index(draft.rate).to_string()} oninput={rate_input} onchange={rate_change}
                            data-testid="load-rate" aria-valuetext={rate_text(draft.rate)} />
                        <output for="load-rate" class="mono">{rate_text(draft.rate)}</output>
                    </div>
                    <div class="load-field load-locks" role="radiogroup" aria-labelledby="load-locks-label">
                        <span id="load-locks-label" class="field-label">{"Locks"}</span>
                        <div class="load-choices">
                            <label class="radio">
                                <input type="radio" name="load-dist" checked={!hot} onchange={on_uniform} data-testid="load-uniform" />
                                {"uniform over"}
                            </label>
                            <input class="load-locks-n mono" type="number" min="1" max="10000" value={draft.locks.to_string()}
                                onchange={on_locks} disabled={hot} aria-label="number of lock names" data-testid="load-locks" />
                            <label class="radio">
                                <input type="radio" name="load-dist" checked={hot} onchange={on_hot} data-testid="load-hot" />
                                {"one hot lock"}
                            </label>
                        </div>
                    </div>
                    <div class="load-field">
                        <label for="load-unlock">{"Unlocks"}</label>
                        <input id="load-unlock" type="range" min="0" max="100" step="5" value={unlock_pct.to_string()}
                            oninput={unlock_input} onchange={unlock_change} data-testid="load-unlock"
                            aria-valuetext={format!("{unlock_pct}% of calls are Unlock")} />
                        <output for="load-unlock" class="mono">{format!("{unlock_pct}%")}</output>
                    </div>
                    <p class="muted small load-help">
                        {"The load's clerks run in the server's process (c1001…). "}
                        {if running { "Changes apply as you let go of a slider." } else { "▶ Start sends these settings." }}
                    </p>
                </div>
            }
        </section>
    }
}
