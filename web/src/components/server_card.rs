//! A server's card: role, process (PID, port, alive), lock table, counters, and the buttons
//! that crash it.

use shared::{Command, Role};
use yew::prelude::*;

use super::{use_cluster, use_dispatch};
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
    let pid = match n.pid {
        Some(p) => html! { <span class="mono" data-testid={format!("pid-{id}")}>{p}</span> },
        None => html! { <span class="muted" data-testid={format!("pid-{id}")}>{"—"}</span> },
    };
    let locks = if n.locks.is_empty() {
        html! { <span class="muted">{"no locks held"}</span> }
    } else {
        html! { <>{ for n.locks.iter().map(|l| html! { <span class="chip lock">{l}</span> }) }</> }
    };

    html! {
        <div class={classes!("card", "server", role_class, (!n.alive).then_some("is-dead"))}
             data-testid={format!("card-{id}")} data-role={role_class} data-alive={n.alive.to_string()}>
            <div class="card-head">
                <h3 class="node-name">{&id}</h3>
                <span class={classes!("badge", role_class)} data-testid={format!("role-{id}")} title={explain}>{role_text}</span>
                <span class={classes!("alive", if n.alive { "up" } else { "down" })} data-testid={format!("alive-{id}")}>
                    <span class="dot"></span>{if n.alive { "alive" } else { "crashed" }}
                </span>
            </div>
            <div class="facts">
                <span>{"PID "}{pid}</span>
                if let Some(port) = n.port {
                    <span class="muted">{format!("127.0.0.1:{port}")}</span>
                }
            </div>
            <div class="locks" data-testid={format!("locks-{id}")}>
                <span class="facts-label">{"Lock table"}</span>{locks}
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
                <div class="armed-note" data-testid={format!("armed-{id}")}>
                    {"⚠ armed: will crash before its next reply"}
                </div>
            }
            <div class="buttons">
                <button class="btn danger" data-testid={format!("crash-{id}")} onclick={crash}
                    disabled={!n.alive} title="SIGKILL this server's process now">{"✕ Crash"}</button>
                <button class="btn danger-outline" data-testid={format!("crash-before-reply-{id}")} onclick={crash_before}
                    disabled={!n.alive || n.armed}
                    title="Execute the next client request fully (apply, forward, backup ack), then die before the reply leaves">
                    {"Crash before next reply"}
                </button>
            </div>
        </div>
    }
}
