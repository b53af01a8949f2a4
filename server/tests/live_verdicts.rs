//! The live checker on real processes: verdicts arrive as `verdict` events at node "checker"
//! and in a late viewer's snapshot; a partition and a paused primary that each grant the same
//! lock twice are violations naming the two calls and the servers; a reset starts over.

mod support;

use std::time::Duration;

use serde_json::json;
use shared::{Event, EventKind, LockVerdict, Op, RequestId, VerdictStatus};
use support::*;

fn verdict_of(e: &Event) -> Option<&LockVerdict> {
    match &e.kind {
        EventKind::Verdict(v) => Some(v),
        _ => None,
    }
}

/// Waits for a `verdict` on `lock` with `status` (from event index `from` on).
async fn verdict(v: &mut Viewer, from: usize, lock: &str, status: VerdictStatus) -> LockVerdict {
    let e = v
        .wait_event_from(from, |e| {
            verdict_of(e).is_some_and(|x| x.lock == lock && x.status == status)
        })
        .await;
    assert_eq!(e.node, "checker", "verdicts come from the checker");
    verdict_of(&e).unwrap().clone()
}

fn req_of(e: &Event) -> RequestId {
    match &e.kind {
        EventKind::OpCompleted { req, .. } | EventKind::OpFailed { req, .. } => *req,
        other => panic!("not the end of a call: {other:?}"),
    }
}

/// Calls that follow the lock's rules get `ok`, on the event stream and in the snapshot of a
/// viewer that comes later, with the count of calls brought up to date.
#[tokio::test]
async fn a_clean_run_is_ok_live_and_in_a_late_snapshot() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert!(!v.call_ok(2, Op::Lock, "a").await);
    assert!(v.call_ok(2, Op::Unlock, "a").await);
    assert!(v.call_ok(3, Op::Lock, "b").await);
    verdict(&mut v, 0, "a", VerdictStatus::Ok).await;
    verdict(&mut v, 0, "b", VerdictStatus::Ok).await;
    // The counts catch up within about a second, with no call to prompt them.
    for (lock, calls) in [("a", 3), ("b", 1)] {
        let e = v
            .wait_event(|e| verdict_of(e).is_some_and(|x| x.lock == lock && x.calls == calls))
            .await;
        assert_eq!(verdict_of(&e).unwrap().status, VerdictStatus::Ok);
    }
    // A check that runs while the first call on a lock is still in progress says so ("unknown",
    // "not checked yet", 0 calls: undecided, as the checker documents); once a call on the
    // lock has finished, nothing but ok.
    assert!(
        !v.events
            .iter()
            .filter_map(verdict_of)
            .any(|x| x.status != VerdictStatus::Ok
                && !(x.status == VerdictStatus::Unknown && x.calls == 0)),
        "nothing but ok once a call finished: {:?}",
        v.events.iter().filter_map(verdict_of).collect::<Vec<_>>()
    );

    let late = server.viewer().await;
    // The checker is no process: no server and no client lane for it.
    let nodes: Vec<String> = late
        .snapshot
        .nodes
        .iter()
        .map(|n| n.id.to_string())
        .collect();
    assert_eq!(nodes, ["s1", "s2"]);
    let clients: Vec<u32> = late.snapshot.clients.iter().map(|c| c.id).collect();
    assert_eq!(clients, [1, 2, 3]);
    assert_eq!(shared::NodeId::from("checker").client_id(), None);
    let got: Vec<(String, VerdictStatus, u64)> = late
        .snapshot
        .verdicts
        .iter()
        .map(|x| (x.lock.clone(), x.status, x.calls))
        .collect();
    assert_eq!(
        got,
        [
            ("a".to_owned(), VerdictStatus::Ok, 3),
            ("b".to_owned(), VerdictStatus::Ok, 1)
        ]
    );
}

/// A partition gives two primaries; both grant Lock(z): a violation with the two calls at
/// fault and an explanation that names both servers. A reset empties the verdicts, no verdict
/// about the old generation follows it, and the new generation is judged afresh.
#[tokio::test]
async fn a_partition_s_double_grant_is_a_violation_and_a_reset_starts_over() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"partition","groups":[["primary","c1"],["s2","c2"]]}))
        .await
        .unwrap();
    let first = v.call(1, Op::Lock, "z").await;
    let (ok, at, _, req1) = completed(&first);
    assert!(ok && at == "s1", "{first:?}");
    let second = v.call(2, Op::Lock, "z").await;
    let (ok, at, _, req2) = completed(&second);
    assert!(ok && at == "s2", "{second:?}");

    let bad = verdict(&mut v, 0, "z", VerdictStatus::Violation).await;
    eprintln!("partition: {bad:?}");
    let mut ops = bad.ops.clone();
    ops.sort();
    assert_eq!(
        ops,
        [req1, req2],
        "the two grants are the calls at fault: {bad:?}"
    );
    for word in ["s1", "s2", "c1", "c2"] {
        assert!(
            bad.explanation.contains(word),
            "{word} in {:?}",
            bad.explanation
        );
    }
    assert_eq!(
        v.fresh_snapshot()
            .await
            .verdicts
            .iter()
            .find(|x| x.lock == "z")
            .map(|x| x.status),
        Some(VerdictStatus::Violation)
    );

    v.command(json!({"type":"reset"})).await.unwrap();
    let reset_at = v
        .wait_event(|e| matches!(e.kind, EventKind::ClusterReset { .. }))
        .await
        .seq;
    assert!(
        v.fresh_snapshot().await.verdicts.is_empty(),
        "a reset clears verdicts"
    );
    assert!(v.call_ok(1, Op::Lock, "z").await);
    let from = v.events.iter().position(|e| e.seq == reset_at).unwrap();
    // Its count reaches 1 (the new generation's call), never 3 (the old ones counted too).
    let fresh = v
        .wait_event_from(from, |e| {
            verdict_of(e).is_some_and(|x| x.lock == "z" && x.calls >= 1)
        })
        .await;
    let fresh = verdict_of(&fresh).unwrap();
    assert_eq!(
        (fresh.status, fresh.calls),
        (VerdictStatus::Ok, 1),
        "{fresh:?}"
    );
    assert!(
        !v.events[from..]
            .iter()
            .filter_map(verdict_of)
            .any(|x| x.status == VerdictStatus::Violation),
        "no verdict about the old generation after the reset"
    );
}

/// The lecture's "hang": the primary is paused in the middle of an operation, its client fails
/// over, the primary runs again and serves alone beside the backup: Lock(z) granted by both.
#[tokio::test]
async fn a_paused_primary_that_runs_again_grants_twice_and_is_caught() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"set_slow_motion","delay_ms":800}))
        .await
        .unwrap();
    let from = v.events.len();
    v.send(json!({"type":"lock","client":1,"lock":"a","tag":"c1-a"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    v.command(json!({"type":"pause","node":"primary"}))
        .await
        .unwrap();
    v.answer_of(from, "c1-a").await;
    v.command(json!({"type":"resume","node":"s1"}))
        .await
        .unwrap();
    v.wait_event_from(from, |e| {
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
    let c3 = v.call(3, Op::Lock, "z").await;
    let c1 = v.call(1, Op::Lock, "z").await;
    let (ok3, at3, _, _) = completed(&c3);
    let (ok1, at1, _, _) = completed(&c1);
    assert!(ok3 && ok1, "both granted: {c3:?} {c1:?}");
    assert_ne!(at3, at1, "by two servers");
    let bad = verdict(&mut v, from, "z", VerdictStatus::Violation).await;
    let mut ops = bad.ops.clone();
    ops.sort();
    let mut want = vec![req_of(&c3), req_of(&c1)];
    want.sort();
    assert_eq!(ops, want, "{bad:?}");
    eprintln!("hang: {bad:?}");
    for word in ["s1", "s2"] {
        assert!(
            bad.explanation.contains(word),
            "{word} in {:?}",
            bad.explanation
        );
    }
    // Lock(a) itself was answered once, from s2's record: no violation on a.
    assert!(!v
        .events
        .iter()
        .filter_map(verdict_of)
        .any(|x| x.lock == "a" && x.status == VerdictStatus::Violation));
}

/// `--no-check`: no verdicts at all.
#[tokio::test]
async fn no_check_means_no_verdicts() {
    let server = Server::start_with(&["--no-check"]).await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert!(v.call_ok(1, Op::Unlock, "a").await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snap = v.fresh_snapshot().await;
    assert!(snap.verdicts.is_empty());
    assert!(!v.events.iter().any(|e| verdict_of(e).is_some()));
}
