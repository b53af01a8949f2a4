//! Group commit on real processes: operations that arrive while a forward waits for its ack
//! leave together in one `forward_batch`, every client is answered only after the ack covering
//! its operation came back, and a crash right after a batch left keeps at-most-once.
//!
//! The backup is paused (SIGSTOP) while the calls arrive, so the batch's content does not depend
//! on timing: every call the primary executed while its first forward waited is in the next
//! batch. (The primary gives a silent backup 1.5 s; the calls' clerks are started beforehand, so
//! the paused stretch is only a few frames long.)

mod support;

use std::collections::HashMap;

use serde_json::json;
use shared::{CrashCause, Event, EventKind, Msg, MsgId, Op, RequestId, VerdictStatus};
use support::*;

/// Every request a `msg_sent` event's message carries (several for a batch).
fn sent_reqs(e: &Event) -> Option<(&str, &str, &Msg, MsgId)> {
    match &e.kind {
        EventKind::MsgSent {
            from,
            to,
            msg,
            msg_id,
        } => Some((from.as_str(), to.as_str(), msg, *msg_id)),
        _ => None,
    }
}

/// Starts each client's process with one call, so later calls only send frames.
async fn warm_up(v: &mut Viewer, clients: std::ops::RangeInclusive<u32>) {
    for c in clients {
        assert!(v.call_ok(c, Op::Lock, &format!("warm-{c}")).await);
    }
}

/// Sends a call without waiting for its answer.
async fn send_call(v: &mut Viewer, client: u32, op: &str, lock: &str) {
    v.send(json!({"type": op, "client": client, "lock": lock, "tag": format!("t{client}")}))
        .await;
}

/// Waits until `node` has executed a call of each of `clients` (from event index `from` on).
async fn wait_executed(v: &mut Viewer, from: usize, node: &str, clients: &[u32]) {
    for &c in clients {
        v.wait_event_from(from, |e| {
            e.node == node
                && matches!(&e.kind, EventKind::Executed { req, .. } if req.client == c && req.seq >= 2)
        })
        .await;
    }
}

/// Waits for each client's `op_completed` (from `from` on) and returns (ok, server, attempts).
async fn wait_completed(
    v: &mut Viewer,
    from: usize,
    clients: &[u32],
) -> HashMap<u32, (bool, String, u32, RequestId)> {
    let mut out = HashMap::new();
    for &c in clients {
        let e = v
            .wait_event_from(from, |e| {
                matches!(&e.kind, EventKind::OpCompleted { client, .. } if *client == c)
                    || matches!(&e.kind, EventKind::OpFailed { client, .. } if *client == c)
            })
            .await;
        assert!(
            matches!(e.kind, EventKind::OpCompleted { .. }),
            "client {c}'s call was given up: {e:?}"
        );
        out.insert(c, completed(&e));
    }
    out
}

/// Every reply a server sent for a forwarded request comes after the delivery, at that server,
/// of an ack covering the request. Returns how many replies were checked.
fn assert_replies_follow_their_acks(events: &[Event], primary: &str) -> usize {
    // Ack messages (single or batch) by id -> the requests they cover.
    let mut acks: HashMap<MsgId, Vec<RequestId>> = HashMap::new();
    // Request -> the log index of the first delivery at the primary of an ack covering it.
    let mut acked_at: HashMap<RequestId, usize> = HashMap::new();
    let mut forwarded: HashMap<RequestId, usize> = HashMap::new();
    let mut checked = 0;
    for (i, e) in events.iter().enumerate() {
        match &e.kind {
            EventKind::MsgSent {
                msg, msg_id, from, ..
            } => match msg {
                Msg::ForwardAck { .. } | Msg::ForwardAckBatch { .. } => {
                    acks.insert(*msg_id, msg.reqs());
                }
                Msg::Forward { .. } | Msg::ForwardBatch { .. } if from.as_str() == primary => {
                    for r in msg.reqs() {
                        forwarded.entry(r).or_insert(i);
                    }
                }
                Msg::Reply { req, .. }
                    if from.as_str() == primary && forwarded.contains_key(req) =>
                {
                    let at = acked_at.get(req).unwrap_or_else(|| {
                        panic!("the reply to #{req} (event {i}) left before any ack covering it reached {primary}")
                    });
                    assert!(*at < i);
                    checked += 1;
                }
                _ => {}
            },
            EventKind::MsgDelivered { msg_id, to, .. } if to.as_str() == primary => {
                if let Some(reqs) = acks.get(msg_id) {
                    for r in reqs {
                        acked_at.entry(*r).or_insert(i);
                    }
                }
            }
            _ => {}
        }
    }
    checked
}

fn assert_checker_green(events: &[Event]) {
    let (verdicts, _) = checker::check_events(events, checker::Budget::default());
    assert!(!verdicts.is_empty());
    for v in &verdicts {
        assert_eq!(
            v.status,
            VerdictStatus::Ok,
            "lock {}: {}",
            v.lock,
            v.explanation
        );
    }
}

#[tokio::test]
async fn calls_that_arrive_while_a_forward_waits_leave_in_one_batch_and_replies_follow_acks() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let clients: Vec<u32> = (1..=8).collect();
    warm_up(&mut v, 1..=8).await;

    // The backup stops; client 1's forward leaves and waits for its ack.
    v.command(json!({"type":"pause","node":"backup"}))
        .await
        .unwrap();
    let from = v.events.len();
    send_call(&mut v, 1, "lock", "g-1").await;
    v.wait_event_from(from, |e| {
        sent_reqs(e).is_some_and(|(f, t, m, _)| {
            f == "s1" && t == "s2" && m.reqs() == vec![RequestId::new(1, 2)]
        })
    })
    .await;
    // Seven more calls arrive and are applied at the primary while it waits.
    for &c in &clients[1..] {
        send_call(&mut v, c, "lock", &format!("g-{c}")).await;
    }
    wait_executed(&mut v, from, "s1", &clients[1..]).await;
    v.command(json!({"type":"resume","node":"backup"}))
        .await
        .unwrap();
    let answers = wait_completed(&mut v, from, &clients).await;
    for (c, (ok, at, attempts, _)) in &answers {
        assert_eq!((*ok, at.as_str(), *attempts), (true, "s1", 1), "client {c}");
    }

    // They left together, in one forward_batch, in the order the primary applied them.
    let batches: Vec<Vec<RequestId>> = v.events[from..]
        .iter()
        .filter_map(sent_reqs)
        .filter(|(f, _, m, _)| *f == "s1" && matches!(m, Msg::ForwardBatch { .. }))
        .map(|(_, _, m, _)| m.reqs())
        .collect();
    assert_eq!(batches.len(), 1, "{batches:?}");
    let mut in_batch: Vec<u32> = batches[0].iter().map(|r| r.client).collect();
    let applied: Vec<u32> = v.events[from..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Executed { req, .. } if e.node == "s1" && req.client != 1 => {
                Some(req.client)
            }
            _ => None,
        })
        .collect();
    assert_eq!(in_batch, applied, "batched in the order applied");
    in_batch.sort_unstable();
    assert_eq!(in_batch, clients[1..].to_vec());
    // The backup answered the batch with one forward_ack_batch covering all seven.
    let ack_batches: Vec<Vec<RequestId>> = v.events[from..]
        .iter()
        .filter_map(sent_reqs)
        .filter(|(f, _, m, _)| *f == "s2" && matches!(m, Msg::ForwardAckBatch { .. }))
        .map(|(_, _, m, _)| m.reqs())
        .collect();
    assert_eq!(ack_batches, batches);

    // Then a closed loop of all eight, Lock/Unlock on a few shared locks: every reply still
    // follows the ack covering it.
    let locks = ["x", "y", "z"];
    let mut left: HashMap<u32, u32> = clients.iter().map(|c| (*c, 12)).collect();
    let loop_from = v.events.len();
    for &c in &clients {
        send_call(&mut v, c, "lock", locks[c as usize % 3]).await;
    }
    let mut seen = v.events.len();
    let mut outstanding = clients.len();
    while outstanding > 0 {
        v.recv().await;
        let new: Vec<Event> = v.events[seen..].to_vec();
        seen = v.events.len();
        for e in new {
            match e.kind {
                EventKind::OpCompleted { client, .. } => {
                    outstanding -= 1;
                    let n = left.get_mut(&client).unwrap();
                    *n -= 1;
                    if *n > 0 {
                        let op = if n.is_multiple_of(2) {
                            "lock"
                        } else {
                            "unlock"
                        };
                        send_call(&mut v, client, op, locks[(client + *n) as usize % 3]).await;
                        outstanding += 1;
                    }
                }
                EventKind::OpFailed { .. } => panic!("a call was given up: {e:?}"),
                _ => {}
            }
        }
    }
    assert_no_failover(&v.events[loop_from..]);
    let checked = assert_replies_follow_their_acks(&v.events, "s1");
    assert!(checked >= 8 + 8 * 12, "checked {checked} replies");
    assert_checker_green(&v.events);
}

#[tokio::test]
async fn a_crash_after_a_batch_left_keeps_at_most_once_and_the_history_linearizable() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let clients: Vec<u32> = (1..=6).collect();
    warm_up(&mut v, 1..=6).await;

    v.command(json!({"type":"pause","node":"backup"}))
        .await
        .unwrap();
    let from = v.events.len();
    send_call(&mut v, 1, "lock", "h-1").await;
    v.wait_event_from(from, |e| {
        sent_reqs(e).is_some_and(|(f, t, m, _)| {
            f == "s1" && t == "s2" && m.reqs() == vec![RequestId::new(1, 2)]
        })
    })
    .await;
    // Armed now, it fires after the next forward message: the batch.
    v.command(json!({"type":"crash_at","node":"s1","point":"after_forward"}))
        .await
        .unwrap();
    // Each call locks a fresh lock: run twice, it would answer false.
    for &c in &clients[1..] {
        send_call(&mut v, c, "lock", &format!("h-{c}")).await;
    }
    wait_executed(&mut v, from, "s1", &clients[1..]).await;
    v.command(json!({"type":"resume","node":"backup"}))
        .await
        .unwrap();

    let crashed = v
        .wait_event_from(from, |e| {
            e.node == "s1" && matches!(e.kind, EventKind::Crashed { .. })
        })
        .await;
    assert!(
        matches!(
            crashed.kind,
            EventKind::Crashed {
                cause: CrashCause::AfterForward,
                ..
            }
        ),
        "{crashed:?}"
    );
    let crash_at = v.events.iter().position(|e| e.seq == crashed.seq).unwrap();
    let batch = v.events[from..crash_at]
        .iter()
        .filter_map(sent_reqs)
        .find(|(f, _, m, _)| *f == "s1" && matches!(m, Msg::ForwardBatch { .. }))
        .map(|(_, _, m, _)| m.reqs())
        .expect("a forward_batch left before the crash");
    let mut in_batch: Vec<u32> = batch.iter().map(|r| r.client).collect();
    in_batch.sort_unstable();
    assert_eq!(in_batch, clients[1..].to_vec());

    let answers = wait_completed(&mut v, from, &clients).await;
    for (c, (ok, _, _, _)) in &answers {
        assert!(*ok, "client {c}: a fresh lock, taken once, answers true");
    }
    // The batch's calls were answered by the backup from the record of what the primary
    // forwarded: applied once there, the retry not run again.
    for req in &batch {
        let (_, at, attempts, r) = &answers[&req.client];
        assert_eq!((at.as_str(), *attempts >= 2, r), ("s2", true, req));
        let at_s2: Vec<(bool, bool)> = v
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Executed {
                    req: x,
                    forwarded,
                    duplicate,
                    ..
                } if e.node == "s2" && x == req => Some((*forwarded, *duplicate)),
                _ => None,
            })
            .collect();
        assert_eq!(at_s2, vec![(true, false), (false, true)], "#{req}");
    }
    assert_replies_follow_their_acks(&v.events, "s1");
    assert_checker_green(&v.events);
}
