//! A clerk's card: where it sends, its call in progress, Lock/Unlock of a named lock, and its
//! history of answers with latency (and retries, when it failed over).

use gloo_timers::callback::Interval;
use shared::{Command, Op};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::{
    use_cluster, use_dispatch, use_replaying, use_session, ClusterCtx, Dispatch, REPLAY_DISABLED,
};
use crate::store::{Action, Outcome};
use crate::{format, ws};

/// History entries shown on the card (the store keeps more).
const SHOWN: usize = 6;

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
    let entries = c.history.iter().rev().take(SHOWN).map(|r| {
        let at_fault = !faulty.is_empty() && st.at_fault(r, faulty);
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
            <ol class="history" data-testid={format!("history-{name}")}>
                if c.history.is_empty() {
                    <li class="entry none">{"no calls yet"}</li>
                }
                { for entries }
            </ol>
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
