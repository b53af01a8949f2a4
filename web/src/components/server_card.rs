//! A server's card: role, process (PID, port, alive / paused / dying), the buttons that break
//! it (crash, pause / resume, restart when dead, and a crash at a chosen point of the next
//! operation, optionally "dying": silent first), then its lock table and counters. The buttons
//! come first and the lock table keeps one height, so a click aimed at *Crash* lands there even
//! while a load changes the locks many times a second.

use shared::{Command, CrashPoint, Role};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_replaying, REPLAY_DISABLED};
use crate::{format, ws};

#[derive(Properties, PartialEq, Debug)]
pub struct ServerCardProps {
    /// Stable server id (`s1`).
    pub id: AttrValue,
}

#[function_component(ServerCard)]
pub fn server_card(props: &ServerCardProps) -> Html {
    let ctx = use_dispatch();
    let cluster = use_cluster();
    let id = props.id.to_string();
    let point = use_state(|| CrashPoint::BeforeForward);
    let dying_ms = use_state(|| 0u64);
    // A replay sends nothing: its buttons are off and say why.
    let replay = use_replaying();
    let tip = |live: &'static str| if replay { REPLAY_DISABLED } else { live };
    let Some(n) = cluster.node(&id).cloned() else {
        return html! {};
    };
    let (role_class, role_text) = match (n.alive, n.role, n.serving_alone) {
        (false, _, _) => ("dead", "dead".to_string()),
        (true, Role::Primary, true) => ("alone", "primary · serving alone".to_string()),
        (true, role, true) => ("alone", format!("{} · serving alone", format::role(role))),
        (true, Role::Primary, false) => ("primary", "primary".to_string()),
        (true, Role::Backup, false) => ("backup", "backup".to_string()),
        (true, Role::Deposed, _) => ("deposed", "deposed · serves nobody".to_string()),
    };
    let explain = match role_class {
        "dead" => "Process killed. Clients that send to it get no answer and fail over.",
        "alone" => "Serves clients without a backup: nothing is forwarded any more.",
        "primary" => "Serves clients; forwards every operation to the backup before replying.",
        "deposed" => "Stepped down: its backup took over clients. It answers nobody and closes client connections, so they turn to the backup.",
        _ => "Applies what the primary forwards; takes over when clients fail over to it.",
    };
    let crash = {
        let send = ctx.send.clone();
        let node = id.clone();
        Callback::from(move |_| {
            send.emit(Command::Crash {
                node: node.as_str().into(),
                dying_ms: None,
                tag: Some(ws::next_tag("crash")),
            })
        })
    };
    let crash_before = {
        let send = ctx.send.clone();
        let node = id.clone();
        Callback::from(move |_| {
            send.emit(Command::CrashBeforeReply {
                node: node.as_str().into(),
                tag: Some(ws::next_tag("cbr")),
            })
        })
    };
    let cmd = |make: fn(String) -> Command| {
        let send = ctx.send.clone();
        let node = id.clone();
        Callback::from(move |_: MouseEvent| send.emit(make(node.clone())))
    };
    let pause = cmd(|node| Command::Pause {
        node: node.as_str().into(),
        tag: Some(ws::next_tag("pause")),
    });
    let resume = cmd(|node| Command::Resume {
        node: node.as_str().into(),
        tag: Some(ws::next_tag("resume")),
    });
    let restart = cmd(|node| Command::Restart {
        node: node.as_str().into(),
        tag: Some(ws::next_tag("restart")),
    });
    let arm = {
        let send = ctx.send.clone();
        let node = id.clone();
        let (point, dying) = (*point, *dying_ms);
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::CrashAt {
                node: node.as_str().into(),
                point,
                dying_ms: (dying > 0).then_some(dying),
                tag: Some(ws::next_tag("crashat")),
            })
        })
    };
    let on_point = {
        let point = point.clone();
        Callback::from(move |e: Event| {
            let sel: HtmlSelectElement = e.target_unchecked_into();
            if let Some(p) = CrashPoint::ALL.iter().find(|p| p.name() == sel.value()) {
                point.set(*p);
            }
        })
    };
    let on_dying = {
        let dying_ms = dying_ms.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            dying_ms.set(input.value().trim().parse::<u64>().unwrap_or(0).min(60_000));
        })
    };
    let state = match (n.alive, n.paused, n.dying) {
        (false, _, _) => ("down", "crashed"),
        (true, true, _) => ("paused", "paused"),
        (true, _, true) => ("dying", "dying"),
        _ => ("up", "alive"),
    };
    let pid = match n.pid {
        Some(p) => html! { <span class="mono" data-testid={format!("pid-{id}")}>{p}</span> },
        None => html! { <span class="muted" data-testid={format!("pid-{id}")}>{"—"}</span> },
    };
    // Two lines at most, always two lines tall: under a load the locks come and go many times a
    // second, and nothing above the card's buttons or below them may move with them. The count
    // and the tooltip tell what the clip hides.
    let locks_title = (!n.locks.is_empty()).then(|| {
        format!(
            "{} held: {}",
            format::counted(n.locks.len() as u64, "lock"),
            n.locks
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        )
    });
    let locks = if n.locks.is_empty() {
        html! { <span class="muted">{"no locks held"}</span> }
    } else {
        html! { <>{ for n.locks.iter().map(|l| html! { <span class="chip lock">{l}</span> }) }</> }
    };

    html! {
        <div class={classes!("card", "server", role_class, (!n.alive).then_some("is-dead"), n.paused.then_some("is-paused"),
                             n.dying.then_some("is-dying"))}
             data-testid={format!("card-{id}")} data-role={role_class} data-alive={n.alive.to_string()}
             data-paused={n.paused.to_string()}>
            // One line each whatever the role's words: the buttons below must not move when
            // the backup takes over.
            <div class="card-head">
                <h3 class="node-name">{&id}</h3>
                <span class={classes!("badge", role_class)} data-testid={format!("role-{id}")} title={explain}>{role_text}</span>
            </div>
            <div class="facts">
                <span class={classes!("alive", state.0)} data-testid={format!("alive-{id}")}>
                    <span class="dot"></span>{state.1}
                </span>
                <span>{"PID "}{pid}</span>
                if let Some(port) = n.port {
                    <span class="muted addr"><span class="host">{"127.0.0.1"}</span>{format!(":{port}")}</span>
                }
            </div>
            <div class="buttons">
                <button class="btn danger" data-testid={format!("crash-{id}")} onclick={crash}
                    disabled={replay || !n.alive} title={tip("SIGKILL this server's process now")}>{"✕ Crash"}</button>
                if n.paused {
                    <button class="btn" data-testid={format!("resume-{id}")} onclick={resume} disabled={replay}
                        title={tip("SIGCONT: it runs on with whatever it believed before (Shift+P)")}>{"▶ Resume"}</button>
                } else if n.alive {
                    <button class="btn" data-testid={format!("pause-{id}")} onclick={pause} disabled={replay}
                        title={tip("SIGSTOP: alive but silent, not halted (Shift+P pauses the primary)")}>{"❚❚ Pause"}</button>
                } else {
                    <button class="btn primary" data-testid={format!("restart-{id}")} onclick={restart} disabled={replay}
                        title={tip("Start a fresh process: empty lock table, nothing copied to it (r)")}>{"↺ Restart"}</button>
                }
                <button class="btn danger-outline" data-testid={format!("crash-before-reply-{id}")} onclick={crash_before}
                    disabled={replay || !n.alive || n.armed || n.paused}
                    title={tip(if n.paused { "Paused: it runs nothing, so nothing can be armed (Resume first)" }
                               else { "Execute the next client request fully (apply, forward, backup ack), then die before the reply leaves" })}>
                    {"Crash before next reply"}
                </button>
            </div>
            if n.alive {
                <div class="crash-at" role="group" aria-label={format!("crash {id} at a point of the next operation")}>
                    <select data-testid={format!("crash-point-{id}")} aria-label={format!("{id}: where the armed crash fires")}
                        onchange={on_point} disabled={replay || n.paused}>
                        { for CrashPoint::ALL.iter().map(|p| html! {
                            <option value={p.name()} selected={*p == *point}>{format::crash_point(*p)}</option>
                        }) }
                    </select>
                    <input type="number" min="0" max="60000" placeholder="silent ms"
                        value={if *dying_ms == 0 { String::new() } else { dying_ms.to_string() }} oninput={on_dying} disabled={replay}
                        data-testid={format!("dying-ms-{id}")} aria-label={format!("{id}: silent this many ms before it dies (dying; empty: die at once)")}
                        title="dying: go silent at that point, die this much later (empty: die at once)" />
                    <button class="btn danger-outline small" data-testid={format!("crash-at-{id}")} onclick={arm}
                        disabled={replay || n.paused} title={tip("crash_at: arm it to die at that point of the next operation")}>{"Arm"}</button>
                </div>
            }
            <div class="locks" data-testid={format!("locks-{id}")} title={locks_title}>
                <span class="facts-label">{"Lock table"}
                    if n.locks.len() > 1 { <span class="lock-count">{format!(" · {}", n.locks.len())}</span> }
                </span>{locks}
            </div>
            <div class="counters">
                <span data-testid={format!("served-{id}")} title="Client requests this server answered (retries from its record too)">
                    <b>{format::count(n.served)}</b>{" served"}
                </span>
                <span data-testid={format!("applied-{id}")} title="Operations forwarded by the primary that this server applied">
                    <b>{format::count(n.applied_forwards)}</b>{" applied from primary"}
                </span>
            </div>
            if n.armed {
                <div class="armed-note" data-testid={format!("armed-{id}")}
                    data-point={n.crash_point.map(CrashPoint::name)}>
                    {format!("⚠ armed: will crash {}", n.crash_point.map_or("before its next reply", format::crash_point))}
                </div>
            }
            if n.paused {
                <div class="paused-note" data-testid={format!("paused-note-{id}")}>
                    {"❚❚ paused (SIGSTOP): alive, runs nothing; peers get no answer and no closed connection"}
                </div>
            }
            if n.dying {
                <div class="dying-note" data-testid={format!("dying-note-{id}")}>
                    {"⚠ dying: silent now, SIGKILL follows"}
                </div>
            }
        </div>
    }
}
