//! The details panel of what is selected in the diagram: a message (its send, delivery or
//! loss, and the other messages of the same request) or a point event.

use shared::{CrashCause, VerdictStatus};
use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_feed, use_view};
use crate::diagram::layout;
use crate::events::{Kind, MsgEnd};
use crate::format;
use crate::history::History;
use crate::store::{Action, Selection};

fn row(k: &str, v: impl Into<Html>) -> Html {
    html! { <div class="kv"><span class="k">{k.to_string()}</span><span class="v">{v.into()}</span></div> }
}

fn event_rows(h: &History, i: usize) -> Option<(String, Vec<Html>)> {
    let e = h.event(i)?;
    let n = |s| h.name(s).to_string();
    let mut rows = vec![
        row("node", n(e.node)),
        row("time", format::clock(e.t_us)),
        row("seq", e.seq.to_string()),
    ];
    // The request and operation rows every call-related event starts with.
    let call = |req: &shared::RequestId, op: &shared::Op, lock| {
        [
            row("request", format!("#{}", format::req(*req))),
            row(
                "operation",
                format!("{}({})", format::op_name(*op), h.name(lock)),
            ),
        ]
    };
    let title = match &e.kind {
        Kind::Started { pid, role, port } => {
            rows.push(row("pid", pid.to_string()));
            rows.push(row("role", format::role(*role)));
            rows.push(row("port", port.to_string()));
            "process started"
        }
        Kind::Exited { pid, signal, code } => {
            rows.push(row("pid", pid.to_string()));
            rows.push(row("signal", signal.map_or("—".into(), |s| s.to_string())));
            rows.push(row("exit code", code.map_or("—".into(), |s| s.to_string())));
            "process exited"
        }
        Kind::Crashed { pid, cause, req } => {
            rows.push(row("pid", pid.to_string()));
            rows.push(row(
                "cause",
                match cause {
                    CrashCause::Command => "crash command: SIGKILL from the supervisor",
                    CrashCause::BeforeReply => {
                        "crash before reply: it ran the request, then killed itself with the reply unsent"
                    }
                    CrashCause::Reset => "cluster reset",
                    CrashCause::BeforeForward => {
                        "crash at before_forward: it applied the request and died before forwarding it"
                    }
                    CrashCause::AfterForward => {
                        "crash at after_forward: it forwarded the request and died before the backup's ack came back"
                    }
                    CrashCause::BeforeAck => {
                        "crash at before_ack: the backup applied the forward and died before acknowledging it"
                    }
                    CrashCause::Dying => "dying: it went silent, then the supervisor sent SIGKILL",
                },
            ));
            if let Some(r) = req {
                rows.push(row("reply lost for", format!("#{}", format::req(*r))));
            }
            "crashed"
        }
        Kind::Armed { point, dying_ms } => {
            rows.push(row("crash point", format::crash_point(*point)));
            if let Some(ms) = dying_ms {
                rows.push(row(
                    "dying",
                    format!("goes silent there, killed {ms} ms later"),
                ));
            }
            "crash armed"
        }
        Kind::Dying {
            pid,
            dies_in_ms,
            point,
        } => {
            rows.push(row("pid", pid.to_string()));
            if let Some(p) = point {
                rows.push(row("at", format::crash_point(*p)));
            }
            rows.push(row(
                "what",
                format!("answers nothing, its connections stay open; SIGKILL in {dies_in_ms} ms"),
            ));
            "dying (silent)"
        }
        Kind::Paused { pid } | Kind::Resumed { pid } => {
            let paused = matches!(e.kind, Kind::Paused { .. });
            rows.push(row("pid", pid.to_string()));
            rows.push(row(
                "what",
                if paused {
                    "SIGSTOP: alive but runs nothing; peers see no answer and no closed connection"
                } else {
                    "SIGCONT: it runs on with whatever it believed before the pause"
                },
            ));
            if paused {
                "paused"
            } else {
                "resumed"
            }
        }
        Kind::ClientStarted { pid, incarnation } => {
            rows.push(row("pid", pid.to_string()));
            rows.push(row("incarnation", incarnation.to_string()));
            if *incarnation > 0 {
                rows.push(row(
                    "identity",
                    "a new one: its request ids are not its predecessor's",
                ));
            }
            "client process started"
        }
        Kind::Faults { change } => {
            rows.push(row("change", n(*change)));
            "fault plan changed"
        }
        Kind::Verdict {
            lock,
            status,
            verdict,
        } => {
            rows.push(row("lock", n(*lock)));
            rows.push(row(
                "verdict",
                match status {
                    VerdictStatus::Ok => {
                        "linearizable: one order of the calls explains every answer"
                    }
                    VerdictStatus::Violation => {
                        "NOT linearizable: no order of the calls explains the answers"
                    }
                    VerdictStatus::Unknown => "not decided",
                },
            ));
            rows.push(row("calls checked", verdict.calls.to_string()));
            if !verdict.ops.is_empty() {
                rows.push(row(
                    "calls at fault",
                    crate::verdict::calls_text(&verdict.ops),
                ));
            }
            if !verdict.explanation.is_empty() {
                // A sentence, not a value: the whole width of the drawer.
                let k = if *status == VerdictStatus::Violation {
                    "what went wrong"
                } else {
                    "why"
                };
                rows.push(html! {
                    <div class="kv wide"><span class="k">{k}</span><span class="v">{verdict.explanation.clone()}</span></div>
                });
            }
            "checker's verdict"
        }
        Kind::Held { msg_id, .. } => {
            rows.push(row("msg_id", msg_id.to_string()));
            rows.push(row(
                "what",
                "step mode holds it in the receiver's inbox until deliver, drop or duplicate",
            ));
            "message held"
        }
        Kind::RoleChanged {
            role,
            alone,
            reason,
        } => {
            rows.push(row("role", format::role(*role)));
            rows.push(row("serving alone", alone.to_string()));
            rows.push(row("why", n(*reason)));
            "role changed"
        }
        Kind::Sent { msg_id, .. } => {
            rows.push(row("msg_id", msg_id.to_string()));
            "message sent"
        }
        Kind::Delivered {
            msg_id, duplicate, ..
        } => {
            rows.push(row("msg_id", msg_id.to_string()));
            if *duplicate {
                "duplicate delivered (second copy)"
            } else {
                "message delivered"
            }
        }
        Kind::Lost { msg_id, reason, .. } => {
            rows.push(row("msg_id", msg_id.to_string()));
            rows.push(row("why", n(*reason)));
            "message lost"
        }
        Kind::Executed {
            req,
            op,
            lock,
            ok,
            held,
            duplicate,
            forwarded,
        } => {
            rows.extend(call(req, op, *lock));
            rows.push(row("answer", ok.to_string()));
            rows.push(row("lock now", if *held { "held" } else { "free" }));
            rows.push(row(
                "from",
                if *forwarded {
                    "the primary (forward)"
                } else {
                    "a client"
                },
            ));
            if *duplicate {
                rows.push(row(
                    "at-most-once",
                    "already executed: answered from the record, not run again",
                ));
            }
            "executed"
        }
        Kind::Invoked {
            req,
            op,
            lock,
            server,
        } => {
            rows.extend(call(req, op, *lock));
            rows.push(row("sent to", n(*server)));
            "call started"
        }
        Kind::Completed {
            req,
            op,
            lock,
            ok,
            server,
            latency_us,
            attempts,
        } => {
            rows.extend(call(req, op, *lock));
            rows.push(row("answer", ok.to_string()));
            rows.push(row("answered by", n(*server)));
            rows.push(row("latency", format::duration(*latency_us)));
            rows.push(row("attempts", attempts.to_string()));
            "call answered"
        }
        Kind::Failed { req, reason, .. } => {
            rows.push(row("request", format!("#{}", format::req(*req))));
            rows.push(row("why", n(*reason)));
            "call gave up"
        }
        Kind::RpcFailed {
            req,
            server,
            reason,
            retry_to,
        } => {
            rows.push(row("request", format!("#{}", format::req(*req))));
            rows.push(row("no answer from", n(*server)));
            rows.push(row("why", n(*reason)));
            rows.push(row(
                "re-sent to",
                format!("{} (same request id)", n(*retry_to)),
            ));
            "no answer, client retries"
        }
        Kind::Reset { generation } => {
            rows.push(row("generation", generation.to_string()));
            "cluster reset"
        }
        Kind::SlowMotion { delay_ms } => {
            rows.push(row("delay", format!("{delay_ms} ms")));
            "slow motion changed"
        }
        Kind::LoadReport => "the load generator's report",
    };
    Some((title.to_string(), rows))
}

fn msg_rows(h: &History, i: usize) -> Option<(String, String, Vec<Html>)> {
    let m = h.msg(i)?;
    let mut rows = vec![
        row(
            "from → to",
            format!("{} → {}", h.name(m.from), h.name(m.to)),
        ),
        row("request id", format!("#{}", format::req(m.req))),
        row("msg_id", m.msg_id.to_string()),
        row("content", layout::arrow_label(h, m)),
        row("sent", format::clock(m.sent_t)),
    ];
    if m.batch > 1 {
        rows.insert(
            2,
            row(
                "group commit",
                format!(
                    "{} operations in one message, applied in order; the request id is the first one's",
                    m.batch
                ),
            ),
        );
    }
    match m.end {
        MsgEnd::InFlight => rows.push(row("status", "in flight")),
        MsgEnd::Held { t_us, .. } => {
            rows.push(row("held since", format::clock(t_us)));
            rows.push(row(
                "status",
                "held by step mode in the receiver's inbox: deliver, drop or duplicate it",
            ));
        }
        MsgEnd::Delivered { t_us, .. } => {
            rows.push(row("delivered", format::clock(t_us)));
            rows.push(row(
                "on the wire",
                format::duration(t_us.saturating_sub(m.sent_t)),
            ));
        }
        MsgEnd::Lost { t_us, reason, .. } => {
            rows.push(row("lost", format::clock(t_us)));
            rows.push(row("why", lost_why(&h.name(reason))));
        }
    }
    if let Some((event, _)) = m.dup {
        let at = h
            .event(event)
            .map_or(String::new(), |e| format::clock(e.t_us));
        rows.push(row(
            "duplicate",
            format!("the network delivered it a second time at {at}"),
        ));
    }
    if m.attempt > 1 {
        rows.push(row("retry", format!("send #{} of this request: the same id, so a server that already ran it answers from its record", m.attempt)));
    }
    rows.push(row(
        "messages of this call",
        h.messages_of_call(i).to_string(),
    ));
    Some((
        m.kind.as_str().replace('_', " "),
        m.kind.as_str().to_string(),
        rows,
    ))
}

/// A loss's reason, explained when the network's faults caused it.
fn lost_why(reason: &str) -> String {
    match reason {
        "dropped" => "dropped by the network (a link's drop chance, or step mode's Drop)".into(),
        "partition" => "partition: sender and receiver are in different groups".into(),
        "cut" => "cut: nothing from the sender reaches the receiver (one way)".into(),
        other => other.to_string(),
    }
}

#[function_component(Details)]
pub fn details() -> Html {
    let ctx = use_dispatch();
    let feed = use_feed();
    let view = use_view();
    let cluster = use_cluster();
    let h = feed.shown();
    let close = ctx.to(|_: MouseEvent| Action::Select(None));
    let (title, class, mut rows) = match view.selected {
        Some(Selection::Msg(i)) => match msg_rows(h, i) {
            Some(x) => x,
            None => return html! {},
        },
        Some(Selection::Event(i)) => match event_rows(h, i) {
            Some((t, r)) => (t, "event".to_string(), r),
            None => return html! {},
        },
        None => return html! {},
    };
    // A call the checker found at fault says so (this generation's request ids only).
    let call = match view.selected {
        Some(Selection::Msg(i)) => h
            .msg(i)
            .filter(|m| m.generation == h.generation())
            .map(|m| m.req),
        Some(Selection::Event(i)) => h
            .event(i)
            .filter(|_| h.in_current_generation(i))
            .and_then(|e| e.kind.req()),
        None => None,
    };
    if let Some(req) = call {
        if let Some(v) = cluster
            .model
            .verdicts()
            .find(|v| v.status == VerdictStatus::Violation && v.ops.contains(&req))
        {
            rows.push(html! {
                <div class="kv at-fault" data-testid="details-at-fault">
                    <span class="k">{"checker"}</span>
                    <span class="v">{format!("at fault: {}'s history is not linearizable. {}", v.lock, v.explanation)}</span>
                </div>
            });
        }
    }
    html! {
        <section class={classes!("details", class)} data-testid="details" aria-label="Details of the selection">
            <div class="details-head">
                <h3 class="details-title">{title}</h3>
                <button class="btn ghost small" onclick={close} title="Close (Esc)" aria-label="Close the details">{"✕"}</button>
            </div>
            <div class="details-body">{ for rows }</div>
        </section>
    }
}
