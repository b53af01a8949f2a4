//! Running out of file descriptors (issue 7, defect 4): `pbscope serve` and its node processes
//! started under a low `ulimit -n`, then flooded with idle TCP connections until `accept` and
//! `connect` fail with EMFILE. A shortage on our own side must never pass for a dead server
//! (no failover, no backup declared lost), and nothing may exit or spin on an `accept` error.

mod support;

use std::time::Duration;

use serde_json::json;
use shared::{Envelope, ErrorCode, Event, EventKind, Msg, NodeReport, Op, RequestId, Role};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The wrapper that starts the server under these descriptor limits (soft first: the hard
/// limit may not go below it).
fn under_nofile(soft: u64, hard: u64) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(r#"ulimit -S -n {soft} && ulimit -H -n {hard} && exec "$0" "$@""#),
    ]
}

async fn start_under_nofile(soft: u64, hard: u64) -> Server {
    let prefix = under_nofile(soft, hard);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    Server::start_under(&prefix, &[]).await
}

/// (soft, hard) "Max open files" of a process, from `/proc/PID/limits`.
fn nofile_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut numbers = line["Max open files".len()..]
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("a number"));
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// Descriptors the process holds now below `limit`: all of them when it can't open another.
/// (It may also hold some above, inherited from the test runner.)
fn open_fds(pid: u32, limit: usize) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|fd| *fd < limit)
        .count()
}

/// CPU time (user + system, all threads) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the parenthesised name, field 3 (state) is first: utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_millis(ticks * 10)
}

/// Opens `n` TCP connections to `addr` and holds them idle. They complete in the kernel's
/// accept queue whether or not the process can accept them.
async fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(
            TcpStream::connect(addr)
                .await
                .expect("connect an idle connection"),
        );
    }
    conns
}

/// Waits until `pid` holds `limit` descriptors: every one it may have.
async fn wait_exhausted(pid: u32, limit: usize, who: &str) {
    for _ in 0..200 {
        assert!(
            process_alive(pid),
            "{who} (pid {pid}) died when it ran out of descriptors"
        );
        if open_fds(pid, limit) >= limit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{who} never ran out of descriptors: {} of {limit} open",
        open_fds(pid, limit)
    );
}

/// CPU the process uses over `span` of wall time.
async fn cpu_used_over(pid: u32, span: Duration) -> Duration {
    let before = cpu_time(pid);
    tokio::time::sleep(span).await;
    cpu_time(pid).saturating_sub(before)
}

/// Why this is not a timing flake: a process that pauses 50 ms between failed accepts uses
/// 10-30 ms of CPU in this window, whatever the machine's load (load cannot make a process do
/// more work; it only delays it). A loop that spins on a failing `accept` uses all the CPU it
/// is given: up to 2 s, and 0.7 s measured on this 2-core machine under a load average of 10.
/// The line sits ten times above the first; heavy load can only hide a spin, never invent one.
const SPIN_WINDOW: Duration = Duration::from_secs(2);
const MAX_CPU_IN_WINDOW: Duration = Duration::from_millis(250);

/// The supervisor's control address, from a node's command line (`--control ADDR`).
fn control_addr(node_pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{node_pid}/cmdline")).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--control")
        .expect("--control");
    args[at + 1].clone()
}

fn role_changes(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RoleChanged { .. }))
        .collect()
}

#[tokio::test]
async fn serve_and_every_node_raise_the_soft_limit_to_the_hard_limit() {
    let server = start_under_nofile(64, 4096).await;
    let v = server.viewer().await;
    let mut pids = vec![("supervisor".to_owned(), server.pid())];
    pids.extend(
        v.snapshot
            .nodes
            .iter()
            .map(|n| (n.id.to_string(), n.pid.expect("a started node"))),
    );
    assert_eq!(pids.len(), 3);
    for (who, pid) in pids {
        assert_eq!(
            nofile_limits(pid),
            (4096, 4096),
            "{who}'s open files limit (soft, hard)"
        );
    }
}

/// Clients are processes of their own: a supervisor out of descriptors can't start a new one
/// (the command says so, `unavailable`), but one already running has its own descriptors and its
/// calls go on at the primary. Nothing fails over, nothing spins. (The clerk's own rule, that a
/// local shortage is not a dead server, is pinned by `clerk::tests` on the state machine.)
#[tokio::test]
async fn a_supervisor_out_of_descriptors_neither_fails_over_nor_spins() {
    const LIMIT: usize = 64;
    let server = start_under_nofile(LIMIT as u64, LIMIT as u64).await;
    let pid = server.pid();
    let mut v = server.viewer().await;
    let s1_pid = v.snapshot.nodes[0].pid.expect("s1 started");
    // Client 1's process starts before the shortage.
    assert!(v.call_ok(1, Op::Lock, "w").await);

    // More than it can accept, so the accept queue keeps some waiting all along; then a few on
    // the control listener, whose accept loop must not spin on them either.
    let flood = idle_connections(&server.addr, LIMIT + 32).await;
    wait_exhausted(pid, LIMIT, "the supervisor").await;
    let control_flood = idle_connections(&control_addr(s1_pid), 8).await;

    let from = v.events.len();
    // Client 2 is new: its process can't be started without descriptors.
    let (code, message) = v
        .command(json!({"type": "lock", "client": 2, "lock": "y"}))
        .await
        .expect_err("no descriptor for a new client process");
    assert_eq!(code, ErrorCode::Unavailable, "{message}");
    assert!(message.contains("client 2"), "{message}");
    let done = v.call(1, Op::Lock, "z").await;
    let used = cpu_used_over(pid, SPIN_WINDOW).await;
    assert_eq!(
        open_fds(pid, LIMIT),
        LIMIT,
        "the supervisor was out of descriptors all along"
    );
    assert!(
        used < MAX_CPU_IN_WINDOW,
        "the supervisor used {used:?} of CPU in {SPIN_WINDOW:?} out of descriptors: it spins"
    );
    assert!(
        matches!(&done.kind, EventKind::OpCompleted { server, ok: true, attempts: 1, .. } if server == "s1"),
        "a running client is not starved by the supervisor's shortage: {done:?}"
    );

    drop(flood);
    drop(control_flood);
    // The supervisor still accepts (and closes) what was queued for a moment: client 2 starts
    // once descriptors are back.
    let mut started = false;
    for _ in 0..100 {
        match v
            .command(json!({"type": "lock", "client": 2, "lock": "y"}))
            .await
        {
            Ok(_) => {
                started = true;
                break;
            }
            Err((ErrorCode::Unavailable, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(started, "client 2 started once descriptors were back");
    let after = v
        .wait_event_from(from, |e| {
            matches!(
                &e.kind,
                EventKind::OpCompleted { client: 2, .. } | EventKind::OpFailed { client: 2, .. }
            )
        })
        .await;
    assert!(
        matches!(&after.kind, EventKind::OpCompleted { server, ok: true, .. } if server == "s1"),
        "{after:?}"
    );
    let failovers: Vec<&Event> = v.events[from..]
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RpcFailed { .. }))
        .collect();
    assert!(failovers.is_empty(), "{failovers:?}");
    assert_eq!(role_changes(&v.events), Vec::<&Event>::new());
    let nodes = v.nodes().await;
    assert_eq!(nodes["s1"].role, Role::Primary);
    assert!(!nodes["s1"].serving_alone);
    assert_eq!(nodes["s2"].role, Role::Backup);
}

#[tokio::test]
async fn a_node_out_of_descriptors_stays_up_and_serves_once_they_are_back() {
    const LIMIT: usize = 64;
    let server = start_under_nofile(LIMIT as u64, LIMIT as u64).await;
    let mut v = server.viewer().await;
    let s1 = v.snapshot.nodes[0].clone();
    assert_eq!(s1.id, "s1");
    let (s1_pid, s1_addr) = (s1.pid.unwrap(), format!("127.0.0.1:{}", s1.port.unwrap()));
    assert_eq!(nofile_limits(s1_pid), (LIMIT as u64, LIMIT as u64));

    let flood = idle_connections(&s1_addr, LIMIT + 32).await;
    wait_exhausted(s1_pid, LIMIT, "s1").await;
    let used = cpu_used_over(s1_pid, SPIN_WINDOW).await;
    assert!(process_alive(s1_pid), "s1 died out of descriptors");
    assert_eq!(
        open_fds(s1_pid, LIMIT),
        LIMIT,
        "s1 was out of descriptors all along"
    );
    assert!(
        used < MAX_CPU_IN_WINDOW,
        "s1 used {used:?} of CPU in {SPIN_WINDOW:?} out of descriptors: it spins"
    );

    drop(flood);
    assert!(v.call_ok(1, Op::Lock, "m").await, "m was free");
    let nodes = v.nodes().await;
    assert!(nodes["s1"].alive);
    assert_eq!(nodes["s1"].pid, Some(s1_pid), "s1 is the same process");
    assert_eq!(nodes["s1"].role, Role::Primary);
    assert!(!nodes["s1"].serving_alone);
    assert!(
        nodes["s2"].locks.iter().any(|l| l == "m"),
        "the call went through s1 to its backup: {:?}",
        nodes["s2"].locks
    );
    let s1_ended: Vec<&Event> = v
        .events
        .iter()
        .filter(|e| {
            e.node == "s1"
                && matches!(
                    e.kind,
                    EventKind::ProcessExited { .. } | EventKind::Crashed { .. }
                )
        })
        .collect();
    assert_eq!(s1_ended, Vec::<&Event>::new());
    assert_eq!(role_changes(&v.events), Vec::<&Event>::new());
}

/// Writes one frame as every connection in the cluster does: a 4-byte big-endian length and
/// the JSON document.
async fn send_frame<T: serde::Serialize>(conn: &mut TcpStream, msg: &T) {
    let body = serde_json::to_vec(msg).unwrap();
    conn.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&body).await.unwrap();
}

async fn recv_frame<T: serde::de::DeserializeOwned>(conn: &mut TcpStream) -> T {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await.expect("a frame");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).await.expect("a frame");
    serde_json::from_slice(&body).expect("a well-formed frame")
}

/// A report frame from a node, read as the supervisor reads it (`events` in compact form).
async fn recv_report(conn: &mut TcpStream) -> NodeReport {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await.expect("a frame");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).await.expect("a frame");
    server::framing::decode_report(&body).expect("a well-formed report")
}

/// The forward path can't be reached through `serve`: a primary opens its backup connection on
/// its first forward, and a clerk's first call is that forward. So this test is the
/// supervisor, the clerk and the backup of one real `pbscope node` process itself (and no event
/// bus sits between, which would hold back the delivery of a send no clerk reported).
#[tokio::test]
async fn a_primary_out_of_descriptors_waits_for_one_instead_of_losing_its_backup() {
    const LIMIT: usize = 64;
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backup = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prefix = under_nofile(LIMIT as u64, LIMIT as u64);
    let mut node = tokio::process::Command::new(&prefix[0])
        .args(&prefix[1..])
        .arg(env!("CARGO_BIN_EXE_pbscope"))
        .arg("node")
        .args(["--id", "s1", "--role", "primary", "--token", "7"])
        .args(["--control", &control.local_addr().unwrap().to_string()])
        .args(["--epoch-ns", "0", "--origin", "1"])
        .args(["--backup", &format!("s2={}", backup.local_addr().unwrap())])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pbscope node");
    let (mut ctl, _) = tokio::time::timeout(WAIT, control.accept())
        .await
        .expect("the node connected to its supervisor")
        .unwrap();
    let (pid, port) = match recv_frame::<NodeReport>(&mut ctl).await {
        NodeReport::Ready { pid, port, .. } => (pid, port),
        other => panic!("expected ready, got {other:?}"),
    };
    // What it reports, kept; a node exits when its control connection closes, so keep it open.
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            // A node reports a round's events in one `events` frame (compact form).
            let kinds = match recv_report(&mut ctl).await {
                NodeReport::Event { kind, .. } => vec![kind],
                NodeReport::Events { events } => events.into_iter().map(|e| e.kind).collect(),
                _ => continue,
            };
            for kind in kinds {
                if events_tx.send(kind).is_err() {
                    return;
                }
            }
        }
    });

    // Our clerk connects first; the flood queues behind it and takes every other descriptor.
    let node_addr = format!("127.0.0.1:{port}");
    let mut clerk = TcpStream::connect(&node_addr).await.unwrap();
    let flood = idle_connections(&node_addr, LIMIT + 32).await;
    wait_exhausted(pid, LIMIT, "the node").await;

    let req = RequestId::new(1, 1);
    let request = Envelope {
        msg_id: shared::MsgId(1),
        from: shared::client_node(1),
        msg: Msg::Request {
            req,
            op: Op::Lock,
            lock: "a".into(),
        },
    };
    send_frame(&mut clerk, &request).await;
    let used = cpu_used_over(pid, SPIN_WINDOW).await;
    assert!(process_alive(pid), "the node died out of descriptors");
    assert_eq!(open_fds(pid, LIMIT), LIMIT, "out of descriptors all along");
    assert!(
        used < MAX_CPU_IN_WINDOW,
        "the node used {used:?} of CPU in {SPIN_WINDOW:?}: it spins"
    );
    let mut reported = Vec::new();
    while let Ok(kind) = events_rx.try_recv() {
        reported.push(kind);
    }
    assert!(
        reported
            .iter()
            .any(|k| matches!(k, EventKind::Executed { req: r, .. } if *r == req)),
        "the node executed the request: {reported:#?}"
    );
    let lost: Vec<&EventKind> = reported
        .iter()
        .filter(|k| matches!(k, EventKind::RoleChanged { .. }))
        .collect();
    assert_eq!(
        lost,
        Vec::<&EventKind>::new(),
        "no descriptor to reach the backup is not a lost backup"
    );

    drop(flood);
    // The forward went out once a descriptor was free: we are the backup, and we ack it.
    let (mut link, _) = tokio::time::timeout(WAIT, backup.accept())
        .await
        .expect("the primary connected to its backup")
        .unwrap();
    let forward: Envelope = recv_frame(&mut link).await;
    assert!(
        matches!(&forward.msg, Msg::Forward { req: r, op: Op::Lock, lock } if *r == req && lock == "a"),
        "{forward:?}"
    );
    let ack = Envelope {
        msg_id: shared::MsgId(2),
        from: "s2".into(),
        msg: Msg::ForwardAck { req, ok: true },
    };
    send_frame(&mut link, &ack).await;
    let reply: Envelope = tokio::time::timeout(WAIT, recv_frame(&mut clerk))
        .await
        .expect("the primary answered after its backup acknowledged");
    assert!(
        matches!(reply.msg, Msg::Reply { req: r, ok: true } if r == req),
        "{reply:?}"
    );
    while let Ok(kind) = events_rx.try_recv() {
        assert!(!matches!(kind, EventKind::RoleChanged { .. }), "{kind:?}");
    }
    node.start_kill().unwrap();
}
