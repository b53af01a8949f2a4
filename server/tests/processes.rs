//! No node process outlives its supervisor, however the supervisor ends.

mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

async fn node_pids(server: &Server) -> Vec<u32> {
    let v = server.viewer().await;
    let pids: Vec<u32> = v.snapshot.nodes.iter().filter_map(|n| n.pid).collect();
    assert_eq!(pids.len(), 2);
    for pid in &pids {
        assert!(process_alive(*pid), "node {pid} should run");
    }
    pids
}

async fn ends_with(signal: Signal) {
    let mut server = Server::start().await;
    let pids = node_pids(&server).await;
    kill(Pid::from_raw(server.pid() as i32), signal).unwrap();
    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    println!("supervisor ended by {signal:?}: {status:?}");
    for pid in pids {
        assert!(
            wait_gone(pid).await,
            "node {pid} outlived a supervisor ended by {signal:?}"
        );
    }
}

#[tokio::test]
async fn no_node_survives_ctrl_c() {
    ends_with(Signal::SIGINT).await;
}

#[tokio::test]
async fn no_node_survives_sigterm() {
    ends_with(Signal::SIGTERM).await;
}

#[tokio::test]
async fn no_node_survives_sigkill_of_the_supervisor() {
    ends_with(Signal::SIGKILL).await;
}

#[tokio::test]
async fn crash_and_reset_leave_no_process_behind() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let mut all = node_pids(&server).await;
    v.command(serde_json::json!({"type":"crash","node":"s1"}))
        .await
        .unwrap();
    for _ in 0..3 {
        v.command(serde_json::json!({"type":"reset"}))
            .await
            .unwrap();
        all.extend(v.fresh_snapshot().await.nodes.iter().filter_map(|n| n.pid));
    }
    let live: Vec<u32> = v
        .fresh_snapshot()
        .await
        .nodes
        .iter()
        .filter_map(|n| n.pid)
        .collect();
    for pid in &all {
        if !live.contains(pid) {
            assert!(!process_alive(*pid), "old node {pid} still runs");
        }
    }
    drop(v);
    let mut server = server;
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGTERM).unwrap();
    server.child.wait().await.unwrap();
    for pid in live {
        assert!(wait_gone(pid).await);
    }
}
