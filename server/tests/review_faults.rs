//! Faults found wanting in review, on real processes: a fault plan that a viewer can grow without
//! bound, and a role that names a stale server when two servers call themselves primary.

mod support;

use std::time::Duration;

use serde_json::json;
use server::cluster::{MAX_CUTS, MAX_LINK_RULES};
use shared::{ErrorCode, EventKind, Op, ServerMsg};
use support::*;

/// Sends `cmds` without waiting between them (within the rate limit's burst) and returns every
/// answer, in order: the ack's detail or the error's code.
async fn pipelined(v: &mut Viewer, cmds: &[serde_json::Value]) -> Vec<Result<String, ErrorCode>> {
    let start = v.others.len();
    for (i, cmd) in cmds.iter().enumerate() {
        let mut cmd = cmd.clone();
        cmd["tag"] = json!(format!("p{i}"));
        v.send(cmd).await;
    }
    let answers = |v: &Viewer| {
        v.others[start..]
            .iter()
            .filter(|m| matches!(m, ServerMsg::Ack { .. } | ServerMsg::Error { .. }))
            .count()
    };
    while answers(v) < cmds.len() {
        tokio::time::timeout(WAIT, v.recv())
            .await
            .expect("an answer to every command");
    }
    v.others[start..]
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Ack { detail, .. } => Some(Ok(detail.clone())),
            ServerMsg::Error { code, .. } => Some(Err(*code)),
            _ => None,
        })
        .collect()
}

/// Every `faults_changed` carries the whole plan, and the plan goes to every process in one
/// control frame: a viewer that sets thousands of distinct links (well within the rate limit)
/// made each event hundreds of kilobytes and each snapshot hundreds of megabytes. The plan has
/// a bound: past it a new link setting or cut is refused, and nothing else changes.
#[tokio::test]
async fn the_fault_plan_is_bounded_and_a_flood_of_distinct_links_is_refused_past_it() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let links: Vec<serde_json::Value> = (0..MAX_LINK_RULES + 20)
        .map(|i| json!({"type":"set_link","from":format!("c{}", i % 30),"to":format!("c{}", i / 30),"drop":0.1}))
        .collect();
    let mut answers = Vec::new();
    for chunk in links.chunks(100) {
        answers.extend(pipelined(&mut v, chunk).await);
    }
    let refused = answers.iter().filter(|a| a.is_err()).count();
    assert_eq!(refused, 20, "the links past the bound are refused");
    assert!(answers[..MAX_LINK_RULES].iter().all(Result::is_ok));
    assert!(answers[MAX_LINK_RULES..]
        .iter()
        .all(|a| *a == Err(ErrorCode::BadField)));
    let snap = v.fresh_snapshot().await;
    assert_eq!(snap.faults.links.len(), MAX_LINK_RULES);
    // Replacing or removing a setting that exists still works at the bound.
    v.command(json!({"type":"set_link","from":"c0","to":"c0","drop":0.5}))
        .await
        .expect("replacing an existing link");
    v.command(json!({"type":"set_link","from":"c0","to":"c0"}))
        .await
        .expect("removing an existing link");
    v.command(json!({"type":"set_link","from":"s1","to":"s2","drop":0.5}))
        .await
        .expect("one free place again");

    let cuts: Vec<serde_json::Value> = (0..MAX_CUTS + 5)
        .map(|i| json!({"type":"cut","from":format!("c{}", i % 30),"to":format!("c{}", i / 30)}))
        .collect();
    let mut answers = Vec::new();
    for chunk in cuts.chunks(100) {
        answers.extend(pipelined(&mut v, chunk).await);
    }
    assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 5);
    let snap = v.fresh_snapshot().await;
    assert_eq!(snap.faults.cuts.len(), MAX_CUTS);
    let biggest = v
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap().len())
        .max()
        .unwrap();
    assert!(
        biggest < 64 * 1024,
        "a faults_changed stays small: {biggest} bytes"
    );

    // The cluster is unharmed, and heal empties the plan.
    v.command(json!({"type":"heal"})).await.unwrap();
    assert!(v.call_ok(1, Op::Lock, "a").await);
    let seqs: Vec<u64> = v.events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no lost event");
}

/// Pause the primary, let a client fail over to the backup (which becomes primary, serving
/// alone): two live servers now have the role primary. "primary" must name the one that
/// serves, not the stopped one: `pause primary` answered "already paused" and left the
/// serving primary running, and `crash primary` killed the stopped one.
#[tokio::test]
async fn a_role_names_the_serving_server_when_a_stopped_one_still_claims_it() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"pause","node":"primary"}))
        .await
        .unwrap();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, _, _) = completed(&done);
    assert!(ok);
    assert_eq!(at, "s2", "the clerk failed over to the backup");
    let nodes = v.nodes().await;
    assert_eq!(nodes["s2"].role, shared::Role::Primary);
    assert!(nodes["s1"].paused && nodes["s1"].role == shared::Role::Primary);

    let detail = v
        .command(json!({"type":"pause","node":"primary"}))
        .await
        .expect("pause the serving primary");
    assert!(detail.contains("s2"), "{detail}");
    let s2 = nodes["s2"].pid.unwrap();
    let mut state = None;
    for _ in 0..100 {
        state = std::fs::read_to_string(format!("/proc/{s2}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        if state == Some('T') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, Some('T'), "s2 is stopped");
    let from = v.events.len();
    v.wait_event_from(from.saturating_sub(5), |e| {
        e.node == "s2" && matches!(e.kind, EventKind::Paused { .. })
    })
    .await;
    v.command(json!({"type":"resume","node":"*"}))
        .await
        .unwrap();
}

/// A JavaScript viewer reads numbers as doubles: a starting seed above 2^53 would reach it
/// rounded, and the run could not be replayed from what it shows.
#[tokio::test]
async fn the_starting_seed_survives_a_javascript_number() {
    for _ in 0..3 {
        let server = Server::start().await;
        let v = server.viewer().await;
        let seed = v.snapshot.faults.seed;
        assert!(seed < 1 << 53, "seed {seed} is not exact as a JS number");
        drop(v);
        drop(server);
    }
}
