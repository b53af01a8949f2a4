//! The Lab 1 lock service against real processes: answers, failover, crash_before_reply and
//! at-most-once, checked through the events a viewer receives.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use shared::{CrashCause, Event, EventKind, Msg, Op, RequestId, Role};
use support::*;

fn msg_kinds(events: &[&Event]) -> Vec<(String, String, &'static str)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgSent { from, to, msg, .. } => Some((
                from.to_string(),
                to.to_string(),
                match msg {
                    Msg::Request { .. } => "request",
                    Msg::Forward { .. } => "forward",
                    Msg::ForwardAck { .. } => "forward_ack",
                    Msg::ForwardRefused { .. } => "forward_refused",
                    Msg::Reply { .. } => "reply",
                    Msg::ForwardBatch { .. } => "forward_batch",
                    Msg::ForwardAckBatch { .. } => "forward_ack_batch",
                },
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn lock_and_unlock_answer_as_lab1_and_go_through_the_backup() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await, "free lock");
    assert!(
        !v.call_ok(2, Op::Lock, "a").await,
        "held lock answers false at once"
    );
    assert!(
        v.call_ok(2, Op::Unlock, "a").await,
        "no owners: anyone may unlock"
    );
    assert!(
        !v.call_ok(1, Op::Unlock, "a").await,
        "unlocking a free lock"
    );
    assert!(!v.call_ok(1, Op::Unlock, "never-used").await);
    assert!(v.call_ok(3, Op::Lock, "b").await);

    // Client 1's first call took the full path, in this order.
    let path = msg_kinds(&events_of(&v.events, 1, 1));
    let expect = [
        ("c1", "s1", "request"),
        ("s1", "s2", "forward"),
        ("s2", "s1", "forward_ack"),
        ("s1", "c1", "reply"),
    ];
    let expect: Vec<_> = expect
        .iter()
        .map(|(a, b, k)| (a.to_string(), b.to_string(), *k))
        .collect();
    assert_eq!(path, expect);
    // Failed operations are forwarded too.
    let failed_path = msg_kinds(&events_of(&v.events, 2, 1));
    assert!(
        failed_path.iter().any(|(_, _, k)| *k == "forward"),
        "{failed_path:?}"
    );

    // Every send is delivered, after it, with the same id.
    let mut sent = HashMap::new();
    for e in &v.events {
        match &e.kind {
            EventKind::MsgSent { msg_id, .. } => {
                sent.insert(*msg_id, e.seq);
            }
            EventKind::MsgDelivered { msg_id, .. } => {
                let s = sent.remove(msg_id).expect("delivered after its send");
                assert!(s < e.seq);
            }
            _ => {}
        }
    }
    assert!(sent.is_empty(), "undelivered: {sent:?}");

    let nodes = v.nodes().await;
    assert_eq!(nodes["s1"].locks, vec!["b"]);
    assert_eq!(nodes["s2"].locks, vec!["b"], "the backup's table matches");
}

#[tokio::test]
async fn primary_killed_between_operations_clients_fail_over_to_the_backup() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    let s1_pid = v.nodes().await["s1"].pid.expect("pid");
    assert!(process_alive(s1_pid));

    let detail = v
        .command(json!({"type": "crash", "node": "primary"}))
        .await
        .unwrap();
    assert!(detail.contains(&s1_pid.to_string()), "{detail}");
    assert!(
        !process_alive(s1_pid),
        "the real process is gone when crash is acked"
    );
    v.wait_event(|e| {
        matches!(
            e.kind,
            EventKind::ProcessExited {
                signal: Some(9),
                ..
            }
        ) && e.node == "s1"
    })
    .await;

    let done = v.call(1, Op::Lock, "b").await;
    let (ok, server_id, attempts, req) = completed(&done);
    assert!(ok);
    assert_eq!(server_id, "s2");
    assert_eq!(attempts, 2, "one failed try at s1, one at s2");
    let retry = v
        .wait_event(|e| matches!(&e.kind, EventKind::RpcFailed { req: r, retry_to, .. } if *r == req && retry_to == "s2"))
        .await;
    assert!(retry.seq < done.seq);
    // The backup kept the state: a is still held.
    assert!(!v.call_ok(2, Op::Lock, "a").await);
    let nodes = v.nodes().await;
    assert!(!nodes["s1"].alive);
    assert_eq!(nodes["s2"].role, Role::Primary);
    assert!(nodes["s2"].serving_alone);
    assert_eq!(nodes["s2"].locks, vec!["a", "b"]);
    // Crashing a dead server is an error, not a harm.
    let err = v
        .command(json!({"type": "crash", "node": "s1"}))
        .await
        .unwrap_err();
    assert_eq!(err.0, shared::ErrorCode::NodeDead);
}

#[tokio::test]
async fn backup_killed_primary_serves_alone() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    let s2_pid = v.nodes().await["s2"].pid.unwrap();
    v.command(json!({"type": "crash", "node": "backup"}))
        .await
        .unwrap();
    assert!(!process_alive(s2_pid));

    let done = v.call(1, Op::Unlock, "a").await;
    let (ok, server_id, attempts, _) = completed(&done);
    assert!(ok);
    assert_eq!(
        (server_id.as_str(), attempts),
        ("s1", 1),
        "the client never notices"
    );
    v.wait_event(|e| {
        e.node == "s1"
            && matches!(
                e.kind,
                EventKind::RoleChanged {
                    serving_alone: true,
                    ..
                }
            )
    })
    .await;
    assert!(v.call_ok(2, Op::Lock, "c").await);
    let nodes = v.nodes().await;
    assert!(nodes["s1"].serving_alone);
    assert_eq!(nodes["s1"].locks, vec!["c"]);
}

/// The four crash_before_reply cases: the retried request must get, from the backup, the answer
/// the primary computed, and a second client acting on the same lock meanwhile must see the
/// operation's effect exactly once.
#[tokio::test]
async fn crash_before_reply_retry_gets_the_original_answer() {
    // (setup: is `a` held before?, op of client 1, its expected answer,
    //  op of client 2 right after the crash, its expected answer)
    let cases = [
        (false, Op::Lock, true, Op::Lock, false),
        (true, Op::Lock, false, Op::Unlock, true),
        (true, Op::Unlock, true, Op::Unlock, false),
        (false, Op::Unlock, false, Op::Lock, true),
    ];
    let server = Server::start().await;
    let mut v = server.viewer().await;
    for (i, (held_before, op1, want1, op2, want2)) in cases.into_iter().enumerate() {
        if i > 0 {
            v.command(json!({"type": "reset"})).await.unwrap();
        }
        if held_before {
            assert!(v.call_ok(9, Op::Lock, "a").await);
        }
        let s1_pid = v.nodes().await["s1"].pid.unwrap();
        v.command(json!({"type": "crash_before_reply", "node": "primary"}))
            .await
            .unwrap();
        let from = v.events.len();
        let ty = if op1 == Op::Lock { "lock" } else { "unlock" };
        v.send(json!({"type": ty, "client": 1, "lock": "a", "tag": format!("first{i}")}))
            .await;
        // As soon as the primary has died with the reply unsent, client 2 acts on the same lock.
        let crashed = v
            .wait_event_from(from, |e| {
                matches!(
                    e.kind,
                    EventKind::Crashed {
                        cause: CrashCause::BeforeReply,
                        ..
                    }
                )
            })
            .await;
        assert_eq!(crashed.node, "s1");
        let second = v.call(2, op2, "a").await;
        let first = v
            .wait_event_from(from, |e| matches!(&e.kind, EventKind::OpCompleted { tag: Some(t), .. } if *t == format!("first{i}")))
            .await;
        let (ok1, srv1, attempts1, req1) = completed(&first);
        assert_eq!(ok1, want1, "case {i}: client 1 gets the primary's answer");
        assert_eq!(srv1, "s2", "case {i}: answered by the backup");
        assert!(attempts1 >= 2);
        assert_eq!(
            completed(&second).0,
            want2,
            "case {i}: client 2 sees the op applied once"
        );
        assert!(!process_alive(s1_pid), "case {i}: s1 really died");

        // s1 executed it and forwarded it; s2 applied the forward and answered the retry from
        // its record, without running it again.
        let execs: Vec<_> = v.events[from..]
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Executed {
                    req,
                    duplicate,
                    forwarded,
                    ..
                } if *req == req1 => Some((e.node.as_str(), *duplicate, *forwarded)),
                _ => None,
            })
            .collect();
        assert_eq!(
            execs,
            vec![
                ("s1", false, false),
                ("s2", false, true),
                ("s2", true, false)
            ],
            "case {i}"
        );
        // The reply the primary never sent: no reply from s1 for this request.
        let s1_replies = events_of(&v.events[from..], 1, req1.seq)
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::MsgSent { from, msg: Msg::Reply { .. }, .. } if from == "s1"))
            .count();
        assert_eq!(s1_replies, 0, "case {i}");
    }
}

/// Replays the backup's executions in log order through a fresh table and checks every
/// answer the clients saw against it.
fn check_history_against_backup(events: &[Event]) -> BTreeSet<String> {
    let mut answers: HashMap<RequestId, bool> = HashMap::new();
    let mut table: BTreeSet<String> = BTreeSet::new();
    for e in events.iter().filter(|e| e.node == "s2") {
        if let EventKind::Executed {
            req,
            op,
            lock,
            ok,
            duplicate: false,
            ..
        } = &e.kind
        {
            let expect = match op {
                Op::Lock => table.insert(lock.clone()),
                Op::Unlock => table.remove(lock),
            };
            assert_eq!(
                *ok, expect,
                "s2's answer to {req:?} contradicts its own order"
            );
            assert!(
                answers.insert(*req, *ok).is_none(),
                "{req:?} executed twice at s2"
            );
        }
    }
    for e in events {
        if let EventKind::OpCompleted { req, ok, .. } = &e.kind {
            let at_backup = answers
                .get(req)
                .unwrap_or_else(|| panic!("{req:?} answered but never reached the backup"));
            assert_eq!(
                ok, at_backup,
                "client saw {ok} for {req:?}, backup order says {at_backup}"
            );
        }
    }
    table
}

#[tokio::test]
async fn many_clients_with_the_primary_killed_mid_stream() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let clients = 8u32;
    let per_client = 25u32;
    let locks = ["x", "y", "z"];
    let mut issued: HashMap<u32, u32> = HashMap::new();
    let mut outstanding = 0;
    let mut crashed = false;
    let mut done = 0;
    let mut seed = 0x2545_f491_u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    println!("seed 0x2545f491");
    for c in 1..=clients {
        let op = if next(2) == 0 { "lock" } else { "unlock" };
        v.send(json!({"type": op, "client": c, "lock": locks[next(3)], "tag": format!("c{c}")}))
            .await;
        issued.insert(c, 1);
        outstanding += 1;
    }
    let mut seen = v.events.len();
    while outstanding > 0 {
        v.recv().await;
        let new: Vec<Event> = v.events[seen..].to_vec();
        seen = v.events.len();
        for e in new {
            if let EventKind::OpCompleted { client, .. } | EventKind::OpFailed { client, .. } =
                e.kind
            {
                outstanding -= 1;
                done += 1;
                if matches!(e.kind, EventKind::OpFailed { .. }) {
                    panic!("a call was given up: {e:?}");
                }
                if !crashed && done == (clients * per_client / 3) {
                    v.send(json!({"type": "crash", "node": "primary"})).await;
                    crashed = true;
                }
                if issued[&client] < per_client {
                    *issued.get_mut(&client).unwrap() += 1;
                    let op = if next(2) == 0 { "lock" } else { "unlock" };
                    v.send(json!({"type": op, "client": client, "lock": locks[next(3)], "tag": format!("c{client}")})).await;
                    outstanding += 1;
                }
            }
        }
    }
    assert!(crashed);
    let answered = v
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::OpCompleted { .. }))
        .count();
    assert_eq!(answered as u32, clients * per_client);
    let failovers = v
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RpcFailed { .. }))
        .count();
    assert!(failovers >= 1, "some client must have failed over");
    let expected_table = check_history_against_backup(&v.events);
    let nodes = v.nodes().await;
    let final_table: BTreeSet<String> = nodes["s2"].locks.iter().cloned().collect();
    assert_eq!(final_table, expected_table);
}

#[tokio::test]
async fn one_contended_lock_counts_add_up_across_a_failover() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let clients = 4u32;
    let rounds = 30u32;
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut next_op: HashMap<u32, (u32, Op)> = (1..=clients).map(|c| (c, (0, Op::Lock))).collect();
    for c in 1..=clients {
        v.send(json!({"type": "lock", "client": c, "lock": "hot", "tag": format!("h{c}")}))
            .await;
    }
    let mut outstanding = clients;
    let mut seen = v.events.len();
    let mut total = 0;
    while outstanding > 0 {
        v.recv().await;
        let new: Vec<Event> = v.events[seen..].to_vec();
        seen = v.events.len();
        for e in new {
            let EventKind::OpCompleted { client, op, ok, .. } = e.kind else {
                continue;
            };
            outstanding -= 1;
            total += 1;
            if ok {
                *counts
                    .entry(if op == Op::Lock { "lock" } else { "unlock" })
                    .or_default() += 1;
            }
            if total == clients * rounds / 2 {
                v.send(json!({"type": "crash", "node": "primary"})).await;
            }
            let entry = next_op.get_mut(&client).unwrap();
            entry.0 += 1;
            // Alternate: after a lock try, an unlock try, and so on.
            entry.1 = if op == Op::Lock { Op::Unlock } else { Op::Lock };
            if entry.0 < rounds {
                let ty = if entry.1 == Op::Lock {
                    "lock"
                } else {
                    "unlock"
                };
                v.send(json!({"type": ty, "client": client, "lock": "hot", "tag": format!("h{client}")})).await;
                outstanding += 1;
            }
        }
    }
    let locks = counts.get("lock").copied().unwrap_or(0);
    let unlocks = counts.get("unlock").copied().unwrap_or(0);
    let held = v.nodes().await["s2"].locks.contains(&"hot".to_string());
    println!("successful locks {locks}, unlocks {unlocks}, held at end {held}");
    assert!(locks > 0 && unlocks > 0);
    assert_eq!(
        locks,
        unlocks + u32::from(held),
        "each successful lock is matched by one unlock, except the one held"
    );
    check_history_against_backup(&v.events);
}

/// A hung primary (SIGSTOP: alive, silent) is detected by the clerk's timeout alone.
#[tokio::test]
async fn a_hung_primary_is_detected_by_timeout() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    let s1 = Pid::from_raw(v.nodes().await["s1"].pid.unwrap() as i32);
    kill(s1, Signal::SIGSTOP).unwrap();
    let done = v.call(1, Op::Unlock, "a").await;
    let _ = kill(s1, Signal::SIGCONT);
    let (ok, server_id, attempts, req) = completed(&done);
    assert!(ok, "the backup had a locked");
    assert_eq!((server_id.as_str(), attempts), ("s2", 2));
    let failed = v
        .wait_event(|e| matches!(&e.kind, EventKind::RpcFailed { req: r, .. } if *r == req))
        .await;
    let EventKind::RpcFailed { reason, .. } = failed.kind else {
        unreachable!()
    };
    assert!(reason.contains("no reply in time"), "{reason}");
}
