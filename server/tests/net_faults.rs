//! Network faults and step mode on the real processes: each fault's event appears, and its
//! effect on the real messages is what was asked (docs/protocol.md, "Faults").

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use shared::{ErrorCode, Event, EventKind, FaultPlan, Msg, MsgId, Op};
use support::*;

/// The `msg_sent` events from `from` to `to` of this kind (`"request"`, `"forward"`, ...).
fn sends(events: &[Event], from: &str, to: &str, kind: &str) -> Vec<MsgId> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgSent {
                msg_id,
                from: f,
                to: t,
                msg,
            } if f == from && t == to && kind_of(msg) == kind => Some(*msg_id),
            _ => None,
        })
        .collect()
}

/// A message's wire name (`"forward"`).
fn kind_of(msg: &Msg) -> String {
    serde_json::to_value(msg).expect("serializes")["kind"]
        .as_str()
        .expect("tagged by kind")
        .to_owned()
}

/// The deliveries of `id` (their `duplicate` flags, at which node), in log order.
fn deliveries(events: &[Event], id: MsgId) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgDelivered {
                msg_id, duplicate, ..
            } if *msg_id == id => Some((e.node.to_string(), *duplicate)),
            _ => None,
        })
        .collect()
}

/// The losses of `id`: (node reporting it, reason).
fn losses(events: &[Event], id: MsgId) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgLost { msg_id, reason, .. } if *msg_id == id => {
                Some((e.node.to_string(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `executed` events at `node`: (duplicate, forwarded).
fn executed_at(events: &[Event], node: &str) -> Vec<(bool, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Executed {
                duplicate,
                forwarded,
                ..
            } if e.node == node => Some((*duplicate, *forwarded)),
            _ => None,
        })
        .collect()
}

fn count(events: &[Event], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

/// Runs a fault command, then returns the `faults_changed` it published: (plan, change).
async fn fault(v: &mut Viewer, cmd: serde_json::Value) -> (String, FaultPlan, String) {
    let from = v.events.len();
    let detail = v
        .command(cmd.clone())
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
    let ev = v
        .wait_event_from(from, |e| matches!(e.kind, EventKind::FaultsChanged { .. }))
        .await;
    let EventKind::FaultsChanged { plan, change } = ev.kind else {
        unreachable!()
    };
    assert_eq!(ev.node, "supervisor");
    (detail, plan, change)
}

/// Sends a call without waiting for its answer; returns its tag.
async fn start_call(v: &mut Viewer, client: u32, op: &str, lock: &str, tag: &str) {
    v.send(json!({"type": op, "client": client, "lock": lock, "tag": tag}))
        .await;
}

fn answer(e: &Event) -> Option<(bool, String)> {
    match &e.kind {
        EventKind::OpCompleted { ok, server, .. } => Some((*ok, server.to_string())),
        _ => None,
    }
}

/// Waits for the `msg_held` of a message matching `pred` and returns its id.
async fn held_where(v: &mut Viewer, from: usize, what: &str, sender: &str, to: &str) -> MsgId {
    let ev = v
        .wait_event_from(from, |e| match &e.kind {
            EventKind::MsgHeld {
                from: f,
                to: t,
                msg,
                ..
            } => f == sender && t == to && kind_of(msg) == what,
            _ => false,
        })
        .await;
    assert_eq!(ev.node, to, "held in the receiver's inbox");
    match ev.kind {
        EventKind::MsgHeld { msg_id, .. } => msg_id,
        _ => unreachable!(),
    }
}

/// A drop really drops: with drop=1 on c1 -> s1, s1 reports the request lost ("dropped") and
/// never executes it; the clerk fails over to s2, which answers correctly. A clerk created
/// after a change starts with the plan in force: s1 -> c5's reply is lost in c5's own inbox.
#[tokio::test]
async fn a_dropped_message_is_lost_at_its_receiver_and_never_executed() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let (detail, plan, change) = fault(
        &mut v,
        json!({"type":"set_link","from":"c1","to":"primary","drop":1.0}),
    )
    .await;
    assert_eq!(change, "link c1 → s1: drop 100%");
    assert!(detail.starts_with("link c1 → s1: drop 100%"), "{detail}");
    assert_eq!(plan.links.len(), 1);
    assert_eq!(
        (plan.links[0].from.as_str(), plan.links[0].to.as_str()),
        ("c1", "s1")
    );

    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let evs = &v.events[from..];
    let requests = sends(evs, "c1", "s1", "request");
    assert_eq!(requests.len(), 1, "one request to s1");
    assert_eq!(
        losses(evs, requests[0]),
        [("s1".to_string(), "dropped".to_string())]
    );
    assert!(deliveries(evs, requests[0]).is_empty());
    assert!(executed_at(evs, "s1").is_empty(), "s1 never saw it");
    assert_eq!(
        answer(&done),
        Some((true, "s2".to_string())),
        "failed over: {done:?}"
    );
    assert_eq!(count(evs, |k| matches!(k, EventKind::RpcFailed { .. })), 1);

    // The other direction, in a clerk's inbox, for a clerk that does not exist yet (in a
    // fresh cluster: s2 serves alone now, and would depose s1 at its next forward).
    v.command(json!({"type":"reset"})).await.unwrap();
    fault(
        &mut v,
        json!({"type":"set_link","from":"s1","to":"c5","drop":1.0}),
    )
    .await;
    let from = v.events.len();
    let done = v.call(5, Op::Lock, "b").await;
    let evs = &v.events[from..];
    let replies = sends(evs, "s1", "c5", "reply");
    assert_eq!(replies.len(), 1, "{evs:#?}");
    assert_eq!(
        losses(evs, replies[0]),
        [("c5".to_string(), "dropped".to_string())]
    );
    assert_eq!(
        answer(&done),
        Some((true, "s2".to_string())),
        "the retry at s2 is answered from its record: {done:?}"
    );
    assert_eq!(
        executed_at(evs, "s2"),
        [(false, true), (true, false)],
        "applied once as a forward, then the retry answered from the record"
    );
}

/// duplicate=1 on s1 -> s2: the forward is delivered twice (the second says so), executed
/// once, the copy answered from the at-most-once record; the call's answer is right.
#[tokio::test]
async fn a_duplicated_forward_is_delivered_twice_and_executed_once() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let (_, _, change) = fault(
        &mut v,
        json!({"type":"set_link","from":"s1","to":"s2","duplicate":1.0}),
    )
    .await;
    assert_eq!(change, "link s1 → s2: duplicate 100%");
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    assert_eq!(answer(&done), Some((true, "s1".to_string())));
    // The second ack can come after the answer.
    let forward_acks = loop {
        let acks = sends(&v.events[from..], "s2", "s1", "forward_ack");
        let delivered = acks
            .iter()
            .all(|a| !deliveries(&v.events[from..], *a).is_empty());
        if acks.len() == 2 && delivered {
            break acks;
        }
        v.recv().await;
    };
    let evs = &v.events[from..];
    let forwards = sends(evs, "s1", "s2", "forward");
    assert_eq!(forwards.len(), 1);
    assert_eq!(
        deliveries(evs, forwards[0]),
        [("s2".to_string(), false), ("s2".to_string(), true)]
    );
    assert_eq!(executed_at(evs, "s2"), [(false, true), (true, true)]);
    assert_eq!(forward_acks.len(), 2, "each copy is acknowledged");
    assert_no_failover(evs);
    assert!(
        !v.call_ok(2, Op::Lock, "a").await,
        "a is held: executed once"
    );
    assert!(v.call_ok(2, Op::Unlock, "a").await);
}

/// A partition stops exactly the links between its groups: c1 <-> s1 work, s1 -> s2 and
/// c2/c3 -> s1 are lost with reason "partition"; after `heal` the same links carry again.
#[tokio::test]
async fn a_partition_stops_exactly_the_named_links_and_heal_restores_them() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let (_, plan, change) = fault(
        &mut v,
        json!({"type":"partition","groups":[["primary","c1"],["s2","c2","c3"]]}),
    )
    .await;
    assert_eq!(change, "partition {s1, c1} | {s2, c2, c3}");
    assert_eq!(plan.partition.len(), 2);

    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let evs = &v.events[from..];
    // c1 <-> s1 in one group: delivered both ways.
    let request = sends(evs, "c1", "s1", "request")[0];
    assert_eq!(deliveries(evs, request), [("s1".to_string(), false)]);
    let reply = sends(evs, "s1", "c1", "reply")[0];
    assert_eq!(deliveries(evs, reply), [("c1".to_string(), false)]);
    // s1 -> s2 across: lost at s2; s1 gives up on its backup and answers alone.
    let forward = sends(evs, "s1", "s2", "forward")[0];
    assert_eq!(
        losses(evs, forward),
        [("s2".to_string(), "partition".to_string())]
    );
    assert!(executed_at(evs, "s2").is_empty());
    assert_eq!(answer(&done), Some((true, "s1".to_string())));

    // c2 -> s1 across: lost at s1; c2 fails over to s2, in its own group, which grants the
    // same lock again: two primaries, Lab 1's flaw under a partition.
    let from = v.events.len();
    let done = v.call(2, Op::Lock, "a").await;
    let evs = &v.events[from..];
    let request = sends(evs, "c2", "s1", "request")[0];
    assert_eq!(
        losses(evs, request),
        [("s1".to_string(), "partition".to_string())]
    );
    assert_eq!(answer(&done), Some((true, "s2".to_string())));

    let (_, plan, change) = fault(&mut v, json!({"type":"heal"})).await;
    assert_eq!(change, "heal");
    assert!(plan.partition.is_empty() && plan.links.is_empty() && plan.cuts.is_empty());
    // c3 was in s2's group too; after the heal its request reaches s1.
    let from = v.events.len();
    let done = v.call(3, Op::Lock, "b").await;
    let evs = &v.events[from..];
    let request = sends(evs, "c3", "s1", "request")[0];
    assert_eq!(deliveries(evs, request), [("s1".to_string(), false)]);
    assert_eq!(answer(&done), Some((true, "s1".to_string())));
    assert_eq!(count(evs, |k| matches!(k, EventKind::MsgLost { .. })), 0);
}

/// A cut is one way: s2 -> s1 cut, the forward s1 -> s2 still arrives and is applied, its ack
/// is lost ("cut"); the primary serves alone and answers.
#[tokio::test]
async fn a_cut_stops_one_direction_only() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let (_, plan, change) = fault(&mut v, json!({"type":"cut","from":"backup","to":"s1"})).await;
    assert_eq!(change, "cut s2 → s1");
    assert_eq!(plan.cuts.len(), 1);
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let evs = &v.events[from..];
    let forward = sends(evs, "s1", "s2", "forward")[0];
    assert_eq!(deliveries(evs, forward), [("s2".to_string(), false)]);
    assert_eq!(executed_at(evs, "s2"), [(false, true)]);
    let ack = sends(evs, "s2", "s1", "forward_ack")[0];
    assert_eq!(losses(evs, ack), [("s1".to_string(), "cut".to_string())]);
    assert_eq!(answer(&done), Some((true, "s1".to_string())));
    assert_eq!(
        count(evs, |k| matches!(
            k,
            EventKind::RoleChanged {
                serving_alone: true,
                ..
            }
        )),
        1,
        "s1 gave up on its backup"
    );
}

/// Which messages of one generation the network duplicated: (from, to, message number).
fn duplicated(events: &[Event]) -> BTreeSet<(String, String, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgDelivered {
                msg_id,
                from,
                to,
                duplicate: true,
            } => Some((from.to_string(), to.to_string(), msg_id.number())),
            _ => None,
        })
        .collect()
}

async fn seeded_generation(v: &mut Viewer, seed: u64) -> BTreeSet<(String, String, u64)> {
    v.command(json!({"type":"reset"})).await.unwrap();
    let (_, plan, _) = fault(v, json!({"type":"set_seed","seed":seed})).await;
    assert_eq!(plan.seed, seed);
    fault(
        v,
        json!({"type":"set_link","from":"*","to":"*","duplicate":0.5}),
    )
    .await;
    let from = v.events.len();
    for lock in ["a", "b", "c"] {
        assert!(v.call_ok(1, Op::Lock, lock).await);
        assert!(v.call_ok(1, Op::Unlock, lock).await);
    }
    // Let the last copies land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.fresh_snapshot().await;
    duplicated(&v.events[from..])
}

/// The same seed gives the same fault decisions: the same calls in two generations (after a
/// reset, which keeps the seed) duplicate the same messages; another seed, others.
#[tokio::test]
async fn the_same_seed_gives_the_same_fault_decisions() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let first = seeded_generation(&mut v, 42).await;
    assert!(
        first.len() >= 4,
        "about half of 24 messages are duplicated: {first:?}"
    );
    let again = seeded_generation(&mut v, 42).await;
    assert_eq!(first, again);
    let other = seeded_generation(&mut v, 43).await;
    assert_ne!(first, other);
    // A reset keeps the seed.
    let from = v.events.len();
    v.command(json!({"type":"reset"})).await.unwrap();
    let ev = v
        .wait_event_from(from, |e| matches!(e.kind, EventKind::FaultsChanged { .. }))
        .await;
    let EventKind::FaultsChanged { plan, .. } = ev.kind else {
        unreachable!()
    };
    assert_eq!(
        plan,
        FaultPlan {
            seed: 43,
            ..FaultPlan::default()
        }
    );
}

/// Answers stay correct under loss, duplication, delay with jitter, and a temporary
/// disconnect: one client alternating Lock/Unlock of one lock gets `true` for every call that
/// completes after a completed one (a call given up leaves the state unknown for one call).
#[tokio::test]
async fn answers_stay_correct_under_loss_duplication_delay_and_a_disconnect() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    fault(&mut v, json!({"type":"set_seed","seed":7})).await;
    fault(
        &mut v,
        json!({"type":"set_link","from":"*","to":"*","duplicate":0.3,"delay_ms":10,"jitter_ms":30}),
    )
    .await;
    fault(
        &mut v,
        json!({"type":"set_link","from":"c1","to":"*","drop":0.15,"duplicate":0.3,"delay_ms":10,"jitter_ms":30}),
    )
    .await;
    fault(
        &mut v,
        json!({"type":"set_link","from":"*","to":"c1","drop":0.15,"duplicate":0.3,"delay_ms":10,"jitter_ms":30}),
    )
    .await;
    let start = v.events.len();
    let mut previous_completed = true;
    let mut completed = 0;
    for i in 0..12 {
        let op = if i % 2 == 0 { "lock" } else { "unlock" };
        let tag = format!("op{i}");
        let from = v.events.len();
        if i == 6 {
            // A temporary disconnect of the client from every server.
            fault(
                &mut v,
                json!({"type":"partition","groups":[["c1"],["s1","s2"]]}),
            )
            .await;
            start_call(&mut v, 1, op, "x", &tag).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            fault(&mut v, json!({"type":"heal"})).await;
            // heal cleared the links too: set the faults again.
            fault(
                &mut v,
                json!({"type":"set_link","from":"*","to":"*","duplicate":0.3,"delay_ms":10,"jitter_ms":30}),
            )
            .await;
        } else {
            start_call(&mut v, 1, op, "x", &tag).await;
        }
        let done = v.answer_of(from, &tag).await;
        match answer(&done) {
            Some((ok, _)) => {
                if previous_completed {
                    assert!(ok, "call {i} ({op} x) after a completed call: {done:?}");
                }
                completed += 1;
                previous_completed = true;
            }
            None => previous_completed = false,
        }
    }
    let evs = &v.events[start..];
    assert!(completed >= 9, "{completed} of 12 calls completed");
    let lost = |why: &str| {
        count(
            evs,
            |k| matches!(k, EventKind::MsgLost { reason, .. } if reason == why),
        )
    };
    assert!(lost("partition") >= 1, "the disconnect lost a message");
    assert!(lost("dropped") >= 1, "some message was dropped");
    assert!(
        count(evs, |k| matches!(
            k,
            EventKind::MsgDelivered {
                duplicate: true,
                ..
            }
        )) >= 3,
        "some messages were duplicated"
    );
}

/// Step mode: every message waits in its inbox; `deliver` hands over exactly the one named and
/// nothing else moves; `duplicate` and `drop` do what they say; timeouts do not expire while
/// it is on.
#[tokio::test]
async fn step_mode_delivers_exactly_the_chosen_message() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let (detail, plan, change) = fault(&mut v, json!({"type":"step","on":true})).await;
    assert!(plan.step);
    assert_eq!(change, "step on");
    assert!(detail.contains("waits for deliver"), "{detail}");

    let from = v.events.len();
    start_call(&mut v, 1, "lock", "a", "s").await;
    let request = held_where(&mut v, from, "request", "c1", "s1").await;
    // Longer than the clerk's reply timeout and the primary's ack timeout.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let snap = v.fresh_snapshot().await;
    assert_eq!(snap.held.len(), 1, "{:?}", snap.held);
    assert_eq!(snap.held[0].msg_id, request);
    assert!(snap.faults.step);
    let evs = &v.events[from..];
    assert_eq!(
        count(evs, |k| matches!(k, EventKind::MsgDelivered { .. })),
        0
    );
    assert_eq!(
        count(evs, |k| matches!(k, EventKind::RpcFailed { .. })),
        0,
        "time stands still"
    );

    // Deliver the request: s1 executes it and forwards; the forward waits at s2.
    let mark = v.events.len();
    let detail = v
        .command(json!({"type":"deliver","msg_id":request.0}))
        .await
        .unwrap();
    assert!(detail.contains("delivered"), "{detail}");
    let forward = held_where(&mut v, mark, "forward", "s1", "s2").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    v.fresh_snapshot().await;
    let evs = &v.events[mark..];
    assert_eq!(deliveries(evs, request), [("s1".to_string(), false)]);
    assert_eq!(
        count(evs, |k| matches!(k, EventKind::MsgDelivered { .. })),
        1,
        "nothing else moved"
    );
    assert_eq!(executed_at(evs, "s1"), [(false, false)]);
    assert!(executed_at(evs, "s2").is_empty());
    assert_no_failover(&v.events[from..]);

    // Duplicate the forward: applied once, the copy answered from the record; both acks wait.
    let mark = v.events.len();
    v.command(json!({"type":"duplicate","msg_id":forward.0}))
        .await
        .unwrap();
    let ack1 = held_where(&mut v, mark, "forward_ack", "s2", "s1").await;
    let ack2 = v
        .wait_event_from(mark, |e| {
            matches!(&e.kind, EventKind::MsgHeld { msg_id, msg: Msg::ForwardAck { .. }, .. } if *msg_id != ack1)
        })
        .await;
    let EventKind::MsgHeld { msg_id: ack2, .. } = ack2.kind else {
        unreachable!()
    };
    let evs = &v.events[mark..];
    assert_eq!(
        deliveries(evs, forward),
        [("s2".to_string(), false), ("s2".to_string(), true)]
    );
    assert_eq!(executed_at(evs, "s2"), [(false, true), (true, true)]);

    // Drop one ack, deliver the other: s1 replies; the reply waits in c1's inbox.
    let mark = v.events.len();
    v.command(json!({"type":"drop","msg_id":ack2.0}))
        .await
        .unwrap();
    let lost = v
        .wait_event_from(
            mark,
            |e| matches!(&e.kind, EventKind::MsgLost { msg_id, .. } if *msg_id == ack2),
        )
        .await;
    assert_eq!(lost.node, "s1");
    assert!(matches!(&lost.kind, EventKind::MsgLost { reason, .. } if reason == "dropped"));
    v.command(json!({"type":"deliver","msg_id":ack1.0}))
        .await
        .unwrap();
    let reply = held_where(&mut v, mark, "reply", "s1", "c1").await;
    assert_eq!(
        count(&v.events[mark..], |k| matches!(
            k,
            EventKind::OpCompleted { .. }
        )),
        0,
        "the answer is not in until its reply is delivered"
    );
    v.command(json!({"type":"deliver","msg_id":reply.0}))
        .await
        .unwrap();
    let done = v.answer_of(from, "s").await;
    match done.kind {
        EventKind::OpCompleted {
            ok,
            server,
            attempts,
            ..
        } => assert_eq!((ok, server.as_str(), attempts), (true, "s1", 1)),
        other => panic!("{other:?}"),
    }
    assert_no_failover(&v.events[from..]);
    assert!(v.fresh_snapshot().await.held.is_empty());
}

/// Turning step mode off hands every held message on; the waits it stopped count from then,
/// so a call held longer than the clerk's timeout still completes at its first server.
#[tokio::test]
async fn step_off_releases_every_held_message() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    fault(&mut v, json!({"type":"step","on":true})).await;
    let from = v.events.len();
    start_call(&mut v, 1, "lock", "a", "one").await;
    start_call(&mut v, 2, "lock", "a", "two").await;
    let r1 = held_where(&mut v, from, "request", "c1", "s1").await;
    let r2 = held_where(&mut v, from, "request", "c2", "s1").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (detail, plan, change) = fault(&mut v, json!({"type":"step","on":false})).await;
    assert!(!plan.step);
    assert_eq!(change, "step off");
    assert!(detail.contains("2 held messages went on"), "{detail}");
    let one = v.answer_of(from, "one").await;
    let two = v.answer_of(from, "two").await;
    let evs = &v.events[from..];
    assert_eq!(deliveries(evs, r1), [("s1".to_string(), false)]);
    assert_eq!(deliveries(evs, r2), [("s1".to_string(), false)]);
    let answers = [answer(&one), answer(&two)];
    assert!(
        answers.contains(&Some((true, "s1".to_string())))
            && answers.contains(&Some((false, "s1".to_string()))),
        "one of them got a, at the first server: {answers:?}"
    );
    assert_no_failover(evs);
    assert!(v.fresh_snapshot().await.held.is_empty());
}

/// Bad fault commands get precise codes and change nothing.
#[tokio::test]
async fn bad_fault_commands_get_precise_errors_and_change_nothing() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let before = v.fresh_snapshot().await.faults;
    let from = v.events.len();
    let code = |r: Result<String, (ErrorCode, String)>| r.expect_err("must be refused").0;
    assert_eq!(
        code(v.command(json!({"type":"deliver","msg_id":17})).await),
        ErrorCode::NotStepping
    );
    assert_eq!(
        code(v.command(json!({"type":"duplicate","msg_id":17})).await),
        ErrorCode::NotStepping
    );
    assert_eq!(
        code(
            v.command(json!({"type":"set_link","from":"s1","to":"s9","drop":0.5}))
                .await
        ),
        ErrorCode::UnknownNode
    );
    assert_eq!(
        code(v.command(json!({"type":"cut","from":"x","to":"s1"})).await),
        ErrorCode::UnknownNode
    );
    assert_eq!(
        code(
            v.command(json!({"type":"set_link","from":"s1","to":"s2","drop":1.5}))
                .await
        ),
        ErrorCode::BadField
    );
    assert_eq!(
        code(
            v.command(json!({"type":"set_link","from":"s1","to":"s2","duplicate":-0.1}))
                .await
        ),
        ErrorCode::BadField
    );
    assert_eq!(
        code(
            v.command(json!({"type":"set_link","from":"s1","to":"s2","delay_ms":60001}))
                .await
        ),
        ErrorCode::BadField
    );
    let (c, message) = v
        .command(json!({"type":"partition","groups":[["primary","c1"],["s1"]]}))
        .await
        .unwrap_err();
    assert_eq!(c, ErrorCode::BadField);
    assert!(message.contains("primary and s1 are both s1"), "{message}");
    assert_eq!(
        count(&v.events[from..], |k| matches!(
            k,
            EventKind::FaultsChanged { .. }
        )),
        0
    );
    assert_eq!(v.fresh_snapshot().await.faults, before);

    fault(&mut v, json!({"type":"step","on":true})).await;
    let (c, message) = v
        .command(json!({"type":"deliver","msg_id":12345}))
        .await
        .unwrap_err();
    assert_eq!(c, ErrorCode::UnknownMessage);
    assert!(message.contains("12345"), "{message}");
    assert_eq!(
        code(v.command(json!({"type":"drop","msg_id":12345})).await),
        ErrorCode::UnknownMessage
    );
    // The cluster still works: step off, a call.
    fault(&mut v, json!({"type":"step","on":false})).await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
}

/// The plan starts with a random seed, shown in the snapshot; `reset` heals, ends step mode and
/// keeps the seed, and says so after `cluster_reset`.
#[tokio::test]
async fn reset_heals_ends_step_mode_and_keeps_the_seed() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let start = v
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::FaultsChanged { plan, .. } => Some(plan.clone()),
            _ => None,
        })
        .expect("the plan at start is in the log");
    assert_eq!(v.snapshot.faults, start);
    fault(&mut v, json!({"type":"set_seed","seed":99})).await;
    fault(&mut v, json!({"type":"cut","from":"s1","to":"s2"})).await;
    fault(
        &mut v,
        json!({"type":"set_link","from":"*","to":"*","drop":0.5,"delay_ms":5}),
    )
    .await;
    fault(&mut v, json!({"type":"step","on":true})).await;
    let from = v.events.len();
    start_call(&mut v, 1, "lock", "a", "held").await;
    held_where(&mut v, from, "request", "c1", "s1").await;
    v.command(json!({"type":"reset"})).await.unwrap();
    let reset_at = v
        .events
        .iter()
        .position(|e| matches!(e.kind, EventKind::ClusterReset { .. }))
        .expect("cluster_reset");
    let healed = v
        .wait_event_from(reset_at, |e| {
            matches!(e.kind, EventKind::FaultsChanged { .. })
        })
        .await;
    let EventKind::FaultsChanged { plan, change } = healed.kind else {
        unreachable!()
    };
    assert_eq!(
        plan,
        FaultPlan {
            seed: 99,
            ..FaultPlan::default()
        }
    );
    assert!(change.starts_with("reset"), "{change}");
    let snap = v.fresh_snapshot().await;
    assert_eq!(snap.faults, plan);
    assert!(snap.held.is_empty());
    // The new generation runs freely.
    let from = v.events.len();
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert_eq!(
        count(&v.events[from..], |k| matches!(
            k,
            EventKind::MsgHeld { .. } | EventKind::MsgLost { .. }
        )),
        0
    );
}
