//! Geometry of the space-time diagram, as plain values: lanes, arrows paired by message id,
//! crash marks and the failover window. The component only turns these into SVG.
//!
//! Rows are event positions in the log (one row per event in the visible window), so a burst
//! of events stays readable; time is shown beside the rows.

use std::collections::HashMap;

use shared::{CrashCause, Event, EventKind, Msg, Op};

pub const LANE_W: f64 = 150.0;
pub const ROW_H: f64 = 16.0;
pub const TOP: f64 = 40.0;
pub const LEFT: f64 = 90.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub msg_id: u64,
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub req: String,
    pub label: String,
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub lost: bool,
    pub in_flight: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub lane: String,
    pub x: f64,
    pub y: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagram {
    pub lanes: Vec<(String, f64)>,
    pub arrows: Vec<Arrow>,
    pub crashes: Vec<Mark>,
    /// Greyed lane stretches (lane, x, y_from, y_to) while a server is dead.
    pub dead: Vec<(String, f64, f64, f64)>,
    pub height: f64,
    pub width: f64,
}

/// Lanes: clients in id order, then servers in id order.
pub fn lanes(events: &[&Event], servers: &[String]) -> Vec<(String, f64)> {
    let mut clients: Vec<u32> = events
        .iter()
        .filter_map(|e| e.node.strip_prefix('c').and_then(|n| n.parse().ok()))
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut names: Vec<String> = clients.iter().map(|c| format!("c{c}")).collect();
    let mut servers = servers.to_vec();
    for e in events {
        if e.node.starts_with('s') && e.node != shared::SUPERVISOR && !servers.contains(&e.node) {
            servers.push(e.node.clone());
        }
    }
    servers.sort();
    names.extend(servers);
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, LEFT + i as f64 * LANE_W))
        .collect()
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Lock => "Lock",
        Op::Unlock => "Unlock",
    }
}

fn describe(msg: &Msg) -> (&'static str, String, String) {
    match msg {
        Msg::Request { req, op, lock } => (
            "request",
            format!("c{}.{}", req.client, req.seq),
            format!("{}({lock}) #c{}.{}", op_name(*op), req.client, req.seq),
        ),
        Msg::Forward { req, op, lock } => (
            "forward",
            format!("c{}.{}", req.client, req.seq),
            format!("fwd {}({lock}) #c{}.{}", op_name(*op), req.client, req.seq),
        ),
        Msg::ForwardAck { req, ok } => (
            "forward_ack",
            format!("c{}.{}", req.client, req.seq),
            format!("ack ok={ok}"),
        ),
        Msg::Reply { req, ok } => (
            "reply",
            format!("c{}.{}", req.client, req.seq),
            format!("ok={ok} #c{}.{}", req.client, req.seq),
        ),
    }
}

/// Lays out `window` (consecutive events, oldest first).
pub fn layout(window: &[&Event], servers: &[String]) -> Diagram {
    let lanes = lanes(window, servers);
    let x_of: HashMap<&str, f64> = lanes.iter().map(|(n, x)| (n.as_str(), *x)).collect();
    let y_of = |row: usize| TOP + row as f64 * ROW_H;
    let end_y = y_of(window.len());
    let mut ends: HashMap<u64, (usize, bool)> = HashMap::new();
    for (row, e) in window.iter().enumerate() {
        match &e.kind {
            EventKind::MsgDelivered { msg_id, .. } => {
                ends.insert(*msg_id, (row, false));
            }
            EventKind::MsgLost { msg_id, .. } => {
                ends.insert(*msg_id, (row, true));
            }
            _ => {}
        }
    }
    let mut d = Diagram {
        width: LEFT + lanes.len() as f64 * LANE_W,
        height: end_y + ROW_H,
        ..Diagram::default()
    };
    let mut dead_since: HashMap<String, f64> = HashMap::new();
    for (row, e) in window.iter().enumerate() {
        match &e.kind {
            EventKind::MsgSent {
                msg_id,
                from,
                to,
                msg,
            } => {
                let (Some(&x1), Some(&x2)) = (x_of.get(from.as_str()), x_of.get(to.as_str()))
                else {
                    continue;
                };
                let (kind, req, label) = describe(msg);
                let (y2, lost, in_flight) = match ends.get(msg_id) {
                    Some((r, lost)) => (y_of(*r), *lost, false),
                    None => (end_y, false, true),
                };
                let x2 = if lost { x1 + (x2 - x1) * 0.6 } else { x2 };
                d.arrows.push(Arrow {
                    msg_id: *msg_id,
                    kind,
                    from: from.clone(),
                    to: to.clone(),
                    req,
                    label,
                    x1,
                    y1: y_of(row),
                    x2,
                    y2,
                    lost,
                    in_flight,
                });
            }
            EventKind::Crashed { cause, .. } => {
                if let Some(&x) = x_of.get(e.node.as_str()) {
                    let label = match cause {
                        CrashCause::Command => "SIGKILL",
                        CrashCause::BeforeReply => "died before reply",
                        CrashCause::Reset => "reset",
                    };
                    d.crashes.push(Mark {
                        lane: e.node.clone(),
                        x,
                        y: y_of(row),
                        label: label.into(),
                    });
                }
            }
            EventKind::ProcessExited { .. } => {
                dead_since.insert(e.node.clone(), y_of(row));
            }
            EventKind::ProcessStarted { .. } => {
                if let (Some(y0), Some(&x)) =
                    (dead_since.remove(&e.node), x_of.get(e.node.as_str()))
                {
                    d.dead.push((e.node.clone(), x, y0, y_of(row)));
                }
            }
            _ => {}
        }
    }
    for (lane, y0) in dead_since {
        if let Some(&x) = x_of.get(lane.as_str()) {
            d.dead.push((lane, x, y0, end_y));
        }
    }
    d.lanes = lanes;
    d
}

/// The window in which clients got no answer after the last crash: from the moment the first
/// call that hit the dead server was stuck (its invocation, or the crash if it was already in
/// progress) to the first answer from another server. Idle time before anyone called is not
/// counted. Returns (crashed server, from_us, to_us); until a call fails, `from_us` is the crash.
pub fn failover_window(events: &[&Event]) -> Option<(String, u64, Option<u64>)> {
    let (i, crash) = events.iter().enumerate().rev().find(|(_, e)| {
        matches!(
            e.kind,
            EventKind::Crashed {
                cause: CrashCause::Command | CrashCause::BeforeReply,
                ..
            }
        )
    })?;
    let after = &events[i..];
    let Some((j, stuck)) = after.iter().enumerate().find_map(|(j, e)| match &e.kind {
        EventKind::RpcFailed { server, req, .. } if *server == crash.node => Some((j, *req)),
        _ => None,
    }) else {
        return Some((crash.node.clone(), crash.t_us, None));
    };
    let invoked = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::OpInvoked { req, .. } if *req == stuck => Some(e.t_us),
        _ => None,
    });
    let from = invoked.map_or(crash.t_us, |t| t.max(crash.t_us));
    let end = after[j..].iter().find_map(|e| match &e.kind {
        EventKind::OpCompleted { server, .. } if *server != crash.node => Some(e.t_us),
        _ => None,
    });
    Some((crash.node.clone(), from, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::RequestId;

    fn ev(seq: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq * 1000,
            node: node.into(),
            kind,
        }
    }

    fn sent(seq: u64, id: u64, from: &str, to: &str) -> Event {
        ev(
            seq,
            from,
            EventKind::MsgSent {
                msg_id: id,
                from: from.into(),
                to: to.into(),
                msg: Msg::Request {
                    req: RequestId { client: 1, seq: 7 },
                    op: Op::Lock,
                    lock: "a".into(),
                },
            },
        )
    }

    #[test]
    fn arrows_pair_send_and_delivery_by_id_and_mark_losses() {
        let evs = [
            sent(1, 10, "c1", "s1"),
            sent(2, 11, "c1", "s2"),
            ev(
                3,
                "s1",
                EventKind::MsgDelivered {
                    msg_id: 10,
                    from: "c1".into(),
                    to: "s1".into(),
                },
            ),
            ev(
                4,
                "s2",
                EventKind::MsgLost {
                    msg_id: 11,
                    from: "c1".into(),
                    to: "s2".into(),
                    reason: "x".into(),
                },
            ),
            sent(5, 12, "c1", "s1"),
        ];
        let w: Vec<&Event> = evs.iter().collect();
        let d = layout(&w, &["s1".into(), "s2".into()]);
        assert_eq!(
            d.lanes.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
            vec!["c1", "s1", "s2"]
        );
        let a = &d.arrows[0];
        assert_eq!(
            (a.y1, a.y2, a.lost, a.in_flight),
            (TOP, TOP + 2.0 * ROW_H, false, false)
        );
        assert_eq!(a.label, "Lock(a) #c1.7");
        assert_eq!(a.req, "c1.7");
        assert!(d.arrows[1].lost);
        assert!(d.arrows[2].in_flight, "no delivery yet");
    }

    #[test]
    fn crash_marks_dead_lanes_and_failover_window() {
        let req = RequestId { client: 1, seq: 1 };
        let crashed = EventKind::Crashed {
            pid: 1,
            cause: CrashCause::Command,
            req: None,
        };
        let exited = EventKind::ProcessExited {
            pid: 1,
            signal: Some(9),
            code: None,
        };
        // Nobody calls for a while after the crash: that idle time is not part of the window.
        let invoked = EventKind::OpInvoked {
            client: 1,
            req,
            op: Op::Lock,
            lock: "a".into(),
            tag: None,
            server: "s1".into(),
        };
        let failed = EventKind::RpcFailed {
            client: 1,
            req,
            server: "s1".into(),
            reason: "closed".into(),
            retry_to: "s2".into(),
        };
        let completed = EventKind::OpCompleted {
            client: 1,
            op: Op::Lock,
            lock: "a".into(),
            tag: None,
            ok: true,
            req,
            server: "s2".into(),
            latency_us: 5,
            attempts: 2,
        };
        let evs = [
            ev(1, "s1", crashed),
            ev(2, "s1", exited),
            ev(20, "c1", invoked),
            ev(21, "c1", failed),
            ev(23, "c1", completed),
        ];
        let w: Vec<&Event> = evs.iter().collect();
        let d = layout(&w, &["s1".into(), "s2".into()]);
        assert_eq!(d.crashes.len(), 1);
        assert_eq!(d.crashes[0].lane, "s1");
        assert_eq!(d.dead.len(), 1, "s1 stays greyed to the end");
        assert_eq!(
            failover_window(&w),
            Some(("s1".into(), 20_000, Some(23_000)))
        );
        assert_eq!(failover_window(&w[..2]), Some(("s1".into(), 1_000, None)));
    }
}
