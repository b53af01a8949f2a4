//! A clerk's card: where it sends, its call in progress, Lock/Unlock of a named lock, and its
//! history of answers with latency (and retries, when it failed over).

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::{Interval, Timeout};
use shared::{Command, Op};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::{
    use_cluster, use_dispatch, use_replaying, use_session, ClusterCtx, Dispatch, REPLAY_DISABLED,
};
use crate::store::{Action, CallRecord, Outcome};
use crate::{format, ws};

/// History entries shown on the card (the store keeps more).
const SHOWN: usize = 6;

/// Under a stream of calls the list of answers changes at most this often (ms): a client calling
/// 50 times a second cannot be read line by line anyway, and rewriting six lines on sixteen cards
/// every frame cost the page a quarter of its frames at 9,000 events/s. A change after a quiet
/// moment shows at once; what follows it within this time shows at its end.
const LIST_EVERY_MS: f64 = 125.0;

#[derive(Properties, PartialEq, Debug)]
pub struct ClientCardProps {
    pub id: u32,
}

#[function_component(ClientCard)]
pub fn client_card(props: &ClientCardProps) -> Html {
    let ctx = use_dispatch();
    let st = use_cluster();
    let session = use_session();
    let replay = use_replaying();
    let id = props.id;
    // While a call is outstanding, refresh the "waiting …" time a few times a second.
    let tick = use_state(|| 0u32);
    let waiting = st.pending_call(id).is_some();
    {
        let tick = tick.clone();
        use_effect_with(waiting, move |waiting| {
            let timer = waiting.then(|| Interval::new(250, move || tick.set(tick.wrapping_add(1))));
            move || drop(timer)
        });
    }
    let throttle = use_mut_ref(ListThrottle::default);
    let redraw = use_force_update();
    let Some(c) = st.clients.get(&id).cloned() else {
        return html! {};
    };
    let name = format!("c{id}");
    let lock = st.lock_name(id);
    let typed = st
        .lock_names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| lock.clone());
    let selected = st.selected_client == id;

    let oninput = ctx.to(move |e: InputEvent| {
        let input: HtmlInputElement = e.target_unchecked_into();
        Action::SetLockName {
            client: id,
            name: input.value(),
        }
    });
    let busy = st.busy(id);
    let onkeydown = {
        let lock = call::<()>(&ctx, &st, id, Op::Lock);
        // Like the Lock button beside it, which is disabled while a call is outstanding.
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && !busy && !replay {
                lock.emit(());
            }
        })
    };
    let select = ctx.to(move |_: MouseEvent| Action::SelectClient(id));
    let clerk = st.clerk(id);
    let process = clerk.and_then(|k| k.pid.map(|pid| (pid, k.alive, k.incarnation)));
    let crash = {
        let send = ctx.send.clone();
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            send.emit(Command::CrashClient {
                client: id,
                tag: Some(ws::next_tag("cc")),
            })
        })
    };

    let status = match (st.pending_call(id), &c.sending) {
        (Some(p), _) => {
            // A call in progress came with the server's clock: the offset is known.
            let now = session
                .server_clock_us(ws::now_ms())
                .map_or(p.since_us, |us| us as u64);
            let waited = now.saturating_sub(p.since_us);
            let retry = if p.retries > 0 { " · retrying" } else { "" };
            html! {
                <span class="status waiting" data-testid={format!("pending-{name}")}>
                    <span class="spinner"></span>
                    {format!("{}({}) #{} · waiting {}{retry}", format::op_name(p.op), p.lock, format::req(p.req), format::duration(waited))}
                </span>
            }
        }
        (None, Some(_)) => {
            html! { <span class="status waiting"><span class="spinner"></span>{"sending…"}</span> }
        }
        (None, None) => html! { <span class="status idle">{"idle"}</span> },
    };
    let busy_title = "One call at a time (Lab 1): wait for the answer";

    let faulty = st.verdicts().faulty();
    let fresh: Vec<Entry> = c
        .history
        .iter()
        .rev()
        .take(SHOWN)
        .map(|r| Entry {
            call: r.clone(),
            at_fault: !faulty.is_empty() && st.at_fault(r, faulty),
        })
        .collect();
    let shown = throttle.borrow_mut().show(fresh, ws::now_ms(), &redraw);

    html! {
        <div class={classes!("card", "client", selected.then_some("selected"))} data-testid={format!("client-{name}")}
             onclick={select}>
            <div class="card-head">
                <h3 class="node-name">{&name}</h3>
                <span class="muted">{"→ "}{st.clerk(id).map_or("primary", |k| k.server.as_str())}</span>
                {status}
            </div>
            <div class="facts client-process">
                {match process {
                    Some((pid, alive, inc)) => html! {
                        <>
                            <span>{"PID "}<span class="mono" data-testid={format!("pid-{name}")}>{pid}</span></span>
                            <span class="muted" data-testid={format!("incarnation-{name}")} title="Each restart of a client's process is a new identity">
                                {format!("incarnation {inc}")}
                            </span>
                            <span class={classes!("alive", if alive { "up" } else { "down" })} data-testid={format!("alive-{name}")}>
                                <span class="dot"></span>{if alive { "alive" } else { "crashed · next call starts a new process" }}
                            </span>
                        </>
                    },
                    None => html! { <span class="muted">{"no process yet (starts with its first call)"}</span> },
                }}
                <button class="btn danger-outline small" data-testid={format!("crash-client-{name}")} onclick={crash}
                    disabled={replay || !process.is_some_and(|(_, alive, _)| alive)}
                    title={if replay { REPLAY_DISABLED } else { "SIGKILL this client's own process; its call in progress fails (Shift+C for the selected client)" }}>
                    {"✕ Crash client"}
                </button>
            </div>
            <div class="call-row">
                <input class="lockname" type="text" value={typed} {oninput} {onkeydown} maxlength="64"
                    data-testid={format!("lockname-{name}")} aria-label={format!("lock name for {name}")}
                    spellcheck="false" />
                <button class="btn primary" data-testid={format!("lock-{name}")} onclick={call(&ctx, &st, id, Op::Lock)}
                    disabled={replay || busy} title={if replay { REPLAY_DISABLED.to_string() } else if busy { busy_title.to_string() } else { format!("Lock({lock})") }}>{"Lock"}</button>
                <button class="btn" data-testid={format!("unlock-{name}")} onclick={call(&ctx, &st, id, Op::Unlock)}
                    disabled={replay || busy} title={if replay { REPLAY_DISABLED.to_string() } else if busy { busy_title.to_string() } else { format!("Unlock({lock})") }}>{"Unlock"}</button>
            </div>
            <CallList name={AttrValue::from(name.clone())} entries={shown} />
        </div>
    }
}

/// The card's Lock/Unlock: `id`'s call on the lock name typed on the card (as of this render:
/// typing renders the card again before the next click or key).
fn call<E: 'static>(ctx: &Dispatch, cluster: &ClusterCtx, id: u32, op: Op) -> Callback<E> {
    let send = ctx.send.clone();
    let cluster = cluster.clone();
    Callback::from(move |_| send.emit(cluster.call(id, op, ws::next_tag("ui"))))
}

/// One line of a card's list of answers.
#[derive(Clone, PartialEq)]
struct Entry {
    call: CallRecord,
    at_fault: bool,
}

#[derive(Properties, PartialEq)]
struct CallListProps {
    name: AttrValue,
    entries: Rc<[Entry]>,
}

/// The card's newest answers. A component of its own so that it renders only when the lines
/// it is given change (see [`ListThrottle`]), not with every event the card hears of.
#[function_component(CallList)]
fn call_list(props: &CallListProps) -> Html {
    let name = &props.name;
    let entries = props.entries.iter().map(|e| {
        let (r, at_fault) = (&e.call, e.at_fault);
        let (class, answer, why) = match &r.outcome {
            Outcome::Answer(true) => ("ok", "true", None),
            Outcome::Answer(false) => ("no", "false", None),
            Outcome::GaveUp(reason) => ("gaveup", "gave up", Some(reason.clone())),
        };
        let via = r
            .server
            .as_deref()
            .map(|s| format!(" · {s}"))
            .unwrap_or_default();
        let tries = if r.attempts > 1 {
            format!(" · ↻{}", r.attempts)
        } else {
            String::new()
        };
        let latency = r.latency_us.map(format::duration).unwrap_or_default();
        html! {
            <li class={classes!("entry", class, (r.attempts > 1).then_some("retried"), at_fault.then_some("at-fault"))}
                data-testid={format!("history-entry-{name}")} data-req={format::req(r.req)}
                data-fault={at_fault.then_some("true")}
                data-latency-us={r.latency_us.map(|us| us.to_string())}
                title={if at_fault { Some(format!("{}At fault: the checker found this call in a history that is not linearizable", why.map(|w| format!("{w}\n")).unwrap_or_default())) } else { why }}>
                <span class="call">{format!("{}({})", format::op_name(r.op), r.lock)}</span>
                <span class="arrow-sym">{"→"}</span>
                <span class={classes!("answer", class)}>{answer}</span>
                <span class="meta">{format!("{latency}{via}{tries}")}</span>
                if at_fault {
                    <span class="fault-tag">{"✗ at fault"}</span>
                }
            </li>
        }
    });

    html! {
        <ol class="history" data-testid={format!("history-{name}")}>
            if props.entries.is_empty() {
                <li class="entry none">{"no calls yet"}</li>
            }
            { for entries }
        </ol>
    }
}

/// Holds back a card's list of answers to one change per [`LIST_EVERY_MS`] (the first change
/// after a quiet moment passes at once; the last one of a burst is shown at the end of it).
#[derive(Default)]
struct ListThrottle {
    shown: Option<Rc<[Entry]>>,
    since_ms: f64,
    /// The render that shows the held-back lines (fired or not, dropped with the card).
    timer: Option<Timeout>,
    armed: Rc<Cell<bool>>,
}

impl ListThrottle {
    fn show(
        &mut self,
        fresh: Vec<Entry>,
        now_ms: f64,
        redraw: &UseForceUpdateHandle,
    ) -> Rc<[Entry]> {
        let shown = self.shown.as_deref();
        let changed = shown != Some(&fresh[..]);
        match pace(may_wait(shown, &fresh), changed, self.since_ms, now_ms) {
            Pace::Keep => {}
            Pace::Now => {
                self.shown = Some(fresh.into());
                self.since_ms = now_ms;
            }
            Pace::Later(wait_ms) => {
                if !self.armed.get() {
                    self.armed.set(true);
                    let armed = self.armed.clone();
                    let redraw = redraw.clone();
                    // Replacing a timer that already fired drops it outside its own callback.
                    self.timer = Some(Timeout::new(wait_ms, move || {
                        armed.set(false);
                        redraw.force_update();
                    }));
                }
            }
        }
        self.shown.clone().unwrap_or_else(|| Rc::from(Vec::new()))
    }
}

/// Whether new lines may be held back: not the first ones, and not the same calls marked
/// differently (the checker's verdict), so a call at fault is marked on its card as the banner
/// naming it appears. New calls may wait.
fn may_wait(shown: Option<&[Entry]>, fresh: &[Entry]) -> bool {
    shown.is_some_and(|s| {
        s.len() != fresh.len() || s.iter().zip(fresh).any(|(a, b)| a.call != b.call)
    })
}

/// What a card does with its list of answers at a render.
#[derive(Debug, PartialEq)]
enum Pace {
    /// Nothing changed: keep the lines shown.
    Keep,
    /// Show the new lines now.
    Now,
    /// Keep the lines shown, and render again in this many ms to show the new ones.
    Later(u32),
}

/// The list was last changed at `since_ms`: a change shows at once unless the last one is less
/// than [`LIST_EVERY_MS`] old; a change that may not wait (the first lines, a new marking of the
/// same calls) shows at once.
fn pace(may_wait: bool, changed: bool, since_ms: f64, now_ms: f64) -> Pace {
    let due = since_ms + LIST_EVERY_MS;
    if !changed {
        Pace::Keep
    } else if !may_wait || now_ms >= due {
        Pace::Now
    } else {
        Pace::Later((due - now_ms).ceil().max(1.0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_a_quiet_moment_shows_at_once() {
        assert_eq!(pace(false, true, 0.0, 5.0), Pace::Now, "what may not wait");
        assert_eq!(
            pace(false, true, 1_000.0, 1_001.0),
            Pace::Now,
            "what may not wait"
        );
        assert_eq!(
            pace(true, true, 1_000.0, 1_000.0 + LIST_EVERY_MS),
            Pace::Now
        );
        assert_eq!(pace(true, true, 1_000.0, 9_000.0), Pace::Now);
    }

    #[test]
    fn a_change_soon_after_the_last_waits_for_the_end_of_the_window() {
        assert_eq!(pace(true, true, 1_000.0, 1_000.0), Pace::Later(125));
        assert_eq!(pace(true, true, 1_000.0, 1_100.5), Pace::Later(25));
        // Never a zero wait: the render it asks for must come after this one.
        assert_eq!(pace(true, true, 1_000.0, 1_124.9), Pace::Later(1));
    }

    fn entry(seq: u64, at_fault: bool) -> Entry {
        Entry {
            call: CallRecord {
                seq,
                req: shared::RequestId::new(1, seq),
                op: Op::Lock,
                lock: "a".into(),
                outcome: Outcome::Answer(true),
                latency_us: Some(120),
                attempts: 1,
                server: Some("s1".into()),
                t_us: seq * 1_000,
                generation: 0,
            },
            at_fault,
        }
    }

    #[test]
    fn new_calls_may_wait_but_a_verdict_on_the_same_calls_may_not() {
        let before = [entry(2, false), entry(1, false)];
        assert!(!may_wait(None, &before), "the first lines");
        assert!(may_wait(
            Some(&before),
            &[entry(3, false), entry(2, false), entry(1, false)]
        ));
        assert!(may_wait(Some(&before), &[entry(3, false), entry(2, false)]));
        assert!(
            !may_wait(Some(&before), &[entry(2, true), entry(1, false)]),
            "call 2 marked at fault shows with the banner"
        );
    }

    #[test]
    fn no_change_keeps_the_lines() {
        assert_eq!(pace(true, false, 1_000.0, 1_001.0), Pace::Keep);
        assert_eq!(pace(true, false, 1_000.0, 9_000.0), Pace::Keep);
    }
}
