//! Process faults on real processes: pause/resume (SIGSTOP/SIGCONT), restart on the same port,
//! crash of every server at once, dying servers, crash points inside an operation, and client
//! processes that crash and come back as a new identity.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use shared::{CrashCause, CrashPoint, ErrorCode, Event, EventKind, Msg, Op, RequestId};
use support::*;

/// The state letter of `/proc/PID/stat` (`T` stopped, `S` sleeping, `R` running).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Waits until `pid`'s state satisfies `want` (a signal takes effect asynchronously).
async fn wait_state(pid: u32, want: impl Fn(Option<char>) -> bool) -> Option<char> {
    for _ in 0..200 {
        let s = proc_state(pid);
        if want(s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proc_state(pid)
}

fn exists(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

async fn server_pid(v: &mut Viewer, id: &str) -> u32 {
    v.nodes().await[id].pid.expect("started")
}

async fn client_pid(v: &mut Viewer, id: u32) -> u32 {
    let snap = v.fresh_snapshot().await;
    let c = snap
        .clients
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("client {id} in {:?}", snap.clients));
    c.pid.expect("client process started")
}

/// The index (in `v.events`) of the first event from `from` on that satisfies `pred`.
fn position(events: &[Event], from: usize, pred: impl Fn(&Event) -> bool) -> Option<usize> {
    events[from..].iter().position(pred).map(|i| i + from)
}

fn executed_at<'a>(events: &'a [Event], node: &str, req: RequestId) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| {
            e.node == node && matches!(&e.kind, EventKind::Executed { req: r, .. } if *r == req)
        })
        .collect()
}

fn forward_sent(events: &[Event], req: RequestId) -> bool {
    events.iter().any(|e| {
        matches!(&e.kind, EventKind::MsgSent { msg: Msg::Forward { req: r, .. }, .. } if *r == req)
    })
}

async fn wait_crashed(v: &mut Viewer, from: usize, node: &str) -> (CrashCause, Option<RequestId>) {
    let e = v
        .wait_event_from(from, |e| {
            e.node == node && matches!(e.kind, EventKind::Crashed { .. })
        })
        .await;
    match e.kind {
        EventKind::Crashed { cause, req, .. } => (cause, req),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn pause_stops_the_process_and_resume_lets_it_run() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let s1 = server_pid(&mut v, "s1").await;
    assert_ne!(proc_state(s1), Some('T'));

    v.command(json!({"type":"pause","node":"primary"}))
        .await
        .unwrap();
    assert_eq!(
        wait_state(s1, |s| s == Some('T')).await,
        Some('T'),
        "SIGSTOPped"
    );
    v.wait_event(|e| e.node == "s1" && matches!(e.kind, EventKind::Paused { pid } if pid == s1))
        .await;
    let nodes = v.nodes().await;
    assert!(nodes["s1"].paused && nodes["s1"].alive);

    // A paused server can't answer a control command: slow motion must not wait for it.
    let t = Instant::now();
    v.command(json!({"type":"set_slow_motion","delay_ms":10}))
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "set_slow_motion waited {:?} for a paused server",
        t.elapsed()
    );
    v.command(json!({"type":"set_slow_motion","delay_ms":0}))
        .await
        .unwrap();

    v.command(json!({"type":"resume","node":"s1"}))
        .await
        .unwrap();
    let state = wait_state(s1, |s| s.is_some_and(|c| c != 'T')).await;
    assert!(matches!(state, Some('S' | 'R')), "running again: {state:?}");
    v.wait_event(|e| e.node == "s1" && matches!(e.kind, EventKind::Resumed { pid } if pid == s1))
        .await;
    assert!(!v.nodes().await["s1"].paused);
    // It serves again, as the primary it was (and applied the slow motion it missed).
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, attempts, _) = completed(&done);
    assert!(ok);
    assert_eq!((at.as_str(), attempts), ("s1", 1));

    // `*` pauses every live server, and resumes them all.
    let s2 = server_pid(&mut v, "s2").await;
    v.command(json!({"type":"pause","node":"*"})).await.unwrap();
    for pid in [s1, s2] {
        assert_eq!(wait_state(pid, |s| s == Some('T')).await, Some('T'));
    }
    v.command(json!({"type":"resume","node":"*"}))
        .await
        .unwrap();
    for pid in [s1, s2] {
        assert_ne!(wait_state(pid, |s| s != Some('T')).await, Some('T'));
    }
}

#[tokio::test]
async fn a_paused_primary_is_not_answering_and_the_clerk_fails_over_after_its_timeout() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    let s1 = server_pid(&mut v, "s1").await;
    v.command(json!({"type":"pause","node":"s1"}))
        .await
        .unwrap();
    let from = v.events.len();
    let t = Instant::now();
    let done = v.call(1, Op::Unlock, "a").await;
    let (ok, at, attempts, req) = completed(&done);
    assert!(ok, "the backup had a locked");
    assert_eq!((at.as_str(), attempts), ("s2", 2));
    assert!(
        t.elapsed() >= Duration::from_millis(2000),
        "failed over only after the reply timeout, not at once ({:?})",
        t.elapsed()
    );
    let reason = v.rpc_failed_reason(from, req).await;
    assert!(reason.contains("no reply in time"), "{reason}");
    assert!(
        executed_at(&v.events, "s1", req).is_empty(),
        "a stopped server executes nothing"
    );

    // A paused server can still be crashed: SIGKILL ends a stopped process, no hang.
    let from = v.events.len();
    v.command(json!({"type":"crash","node":"s1"}))
        .await
        .unwrap();
    assert!(!exists(s1) || !process_alive(s1), "s1 is gone");
    assert_eq!(
        wait_crashed(&mut v, from, "s1").await.0,
        CrashCause::Command
    );
    v.wait_event_from(from, |e| {
        e.node == "s1" && matches!(e.kind, EventKind::ProcessExited { .. })
    })
    .await;
    let nodes = v.nodes().await;
    assert!(!nodes["s1"].alive && !nodes["s1"].paused);
}

#[tokio::test]
async fn a_reset_with_a_paused_server_works() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let old = server_pid(&mut v, "s2").await;
    v.command(json!({"type":"pause","node":"backup"}))
        .await
        .unwrap();
    v.command(json!({"type":"reset"})).await.unwrap();
    assert!(wait_gone(old).await, "the paused s2 was killed");
    let nodes = v.nodes().await;
    assert!(nodes.values().all(|n| n.alive && !n.paused));
    assert!(v.call_ok(1, Op::Lock, "a").await);
}

#[tokio::test]
async fn restart_gives_a_new_pid_on_the_same_port_with_an_empty_table() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let before = v.nodes().await;
    let (old_pid, port) = (before["s2"].pid.unwrap(), before["s2"].port.unwrap());
    v.command(json!({"type":"crash","node":"backup"}))
        .await
        .unwrap();
    // s1 serves alone and holds a.
    assert!(v.call_ok(1, Op::Lock, "a").await);

    let from = v.events.len();
    let detail = v
        .command(json!({"type":"restart","node":"s2"}))
        .await
        .unwrap();
    assert!(detail.contains("s2"), "{detail}");
    let started = v
        .wait_event_from(from, |e| {
            e.node == "s2" && matches!(e.kind, EventKind::ProcessStarted { .. })
        })
        .await;
    let EventKind::ProcessStarted {
        pid,
        port: new_port,
        role,
    } = started.kind
    else {
        unreachable!()
    };
    assert_ne!(pid, old_pid, "a new process");
    assert!(process_alive(pid));
    assert_eq!(new_port, port, "on the same port");
    assert_eq!(role, shared::Role::Backup, "in its first role");
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("it listens on the old port");
    let nodes = v.nodes().await;
    assert!(nodes["s2"].alive);
    assert_eq!(nodes["s2"].pid, Some(pid));
    assert!(nodes["s2"].locks.is_empty(), "Lab 1 has no recovery: empty");
    assert_eq!(nodes["s1"].locks, vec!["a".to_owned()]);

    let (code, _) = v
        .command(json!({"type":"restart","node":"s2"}))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::NodeAlive);
}

#[tokio::test]
async fn crash_star_kills_every_server_at_once_and_restart_star_brings_them_back() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let pids = [
        server_pid(&mut v, "s1").await,
        server_pid(&mut v, "s2").await,
    ];
    let from = v.events.len();
    v.command(json!({"type":"crash","node":"*"})).await.unwrap();
    for pid in pids {
        assert!(!exists(pid) || !process_alive(pid), "{pid} is gone");
    }
    for id in ["s1", "s2"] {
        assert_eq!(wait_crashed(&mut v, from, id).await.0, CrashCause::Command);
    }
    let (code, _) = v
        .command(json!({"type":"crash","node":"*"}))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::NodeDead);

    v.command(json!({"type":"restart","node":"*"}))
        .await
        .unwrap();
    let nodes = v.nodes().await;
    for (id, old) in ["s1", "s2"].iter().zip(pids) {
        assert!(nodes[*id].alive, "{id} restarted");
        assert_ne!(nodes[*id].pid, Some(old));
    }
    // The pair works again: the primary forwards to the backup on its old address.
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, _, req) = completed(&done);
    assert!(ok);
    assert_eq!(at, "s1");
    assert!(forward_sent(&v.events, req));
}

#[tokio::test]
async fn crash_client_kills_its_process_and_its_next_call_is_a_new_identity() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let first = v.call(1, Op::Lock, "a").await;
    let (ok, _, _, first_req) = completed(&first);
    assert!(ok);
    assert_eq!(first_req.incarnation, 0);
    let c1 = client_pid(&mut v, 1).await;
    assert!(process_alive(c1), "c1 is a process of its own");
    assert!(
        v.events.iter().any(|e| e.node == "c1"
            && matches!(e.kind, EventKind::ClientStarted { pid, incarnation: 0 } if pid == c1)),
        "client_started"
    );

    // A call in progress: the primary is stopped, so it waits.
    v.command(json!({"type":"pause","node":"s1"}))
        .await
        .unwrap();
    let from = v.events.len();
    v.send(json!({"type":"lock","client":1,"lock":"b","tag":"cut"}))
        .await;
    let invoked = v
        .wait_event_from(from, |e| {
            matches!(e.kind, EventKind::OpInvoked { client: 1, .. })
        })
        .await;
    let EventKind::OpInvoked { req: cut_req, .. } = invoked.kind else {
        unreachable!()
    };
    let (code, _) = v
        .command(json!({"type":"lock","client":1,"lock":"c"}))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::ClientBusy, "one call at a time, as before");

    v.command(json!({"type":"crash_client","client":1}))
        .await
        .unwrap();
    assert!(
        !exists(c1),
        "kill(c1, 0) fails: the process is gone and reaped"
    );
    let crashed = position(&v.events, from, |e| {
        e.node == "c1"
            && matches!(e.kind, EventKind::Crashed { cause: CrashCause::Command, pid, .. } if pid == c1)
    });
    let crashed = match crashed {
        Some(i) => i,
        None => {
            v.wait_event_from(from, |e| {
                e.node == "c1" && matches!(e.kind, EventKind::Crashed { .. })
            })
            .await;
            position(&v.events, from, |e| {
                e.node == "c1" && matches!(e.kind, EventKind::Crashed { .. })
            })
            .unwrap()
        }
    };
    let failed = v.answer_of(from, "cut").await;
    let EventKind::OpFailed { reason, req, .. } = &failed.kind else {
        panic!("{failed:?}")
    };
    assert_eq!(*req, cut_req);
    assert_eq!(reason, "client crashed: its effect is unknown");
    let exited = v
        .wait_event_from(from, |e| {
            e.node == "c1" && matches!(e.kind, EventKind::ProcessExited { pid, .. } if pid == c1)
        })
        .await;
    assert!(
        v.events[crashed].seq < exited.seq && exited.seq < failed.seq,
        "crashed, then process_exited, then the call's op_failed"
    );
    let nothing_after: Vec<&str> = v.events[crashed + 1..]
        .iter()
        .filter(|e| e.node == "c1")
        .map(|e| e.kind.name())
        .filter(|n| !["process_exited", "msg_lost", "op_failed"].contains(n))
        .collect();
    assert!(
        nothing_after.is_empty(),
        "c1 acted after its crash: {nothing_after:?}"
    );
    let snap = v.fresh_snapshot().await;
    let c = snap.clients.iter().find(|c| c.id == 1).unwrap();
    assert!(!c.alive && c.pending.is_none());
    let (code, message) = v
        .command(json!({"type":"crash_client","client":1}))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::NodeDead, "{message}");

    // The stopped primary runs the dead client's request and answers into the void.
    v.command(json!({"type":"resume","node":"s1"}))
        .await
        .unwrap();
    v.wait_event(|e| {
        e.node == "s1" && matches!(&e.kind, EventKind::Executed { req, .. } if *req == cut_req)
    })
    .await;

    // The next call starts incarnation 1: a new identity, whose seq 1 is executed fresh (the
    // old life's record of seq 1, Lock(a) -> true, must not answer it; a is held: false).
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, _, req) = completed(&done);
    assert_eq!(
        req,
        RequestId {
            client: 1,
            seq: 1,
            incarnation: 1
        }
    );
    assert!(
        !ok,
        "a is held: executed fresh, not answered from the old record"
    );
    assert_eq!(at, "s1");
    let started = v
        .wait_event_from(from, |e| {
            e.node == "c1" && matches!(e.kind, EventKind::ClientStarted { .. })
        })
        .await;
    let EventKind::ClientStarted { pid, incarnation } = started.kind else {
        unreachable!()
    };
    assert_eq!(incarnation, 1);
    assert_ne!(pid, c1);
    assert!(process_alive(pid));
    let runs = executed_at(&v.events, "s1", req);
    assert_eq!(runs.len(), 1);
    assert!(
        matches!(
            runs[0].kind,
            EventKind::Executed {
                duplicate: false,
                ok: false,
                ..
            }
        ),
        "{:?}",
        runs[0]
    );
    let snap = v.fresh_snapshot().await;
    let c = snap.clients.iter().find(|c| c.id == 1).unwrap();
    assert_eq!((c.alive, c.incarnation, c.pid), (true, 1, Some(pid)));
}

#[tokio::test]
async fn crash_at_before_forward_the_retry_is_executed_fresh_at_the_backup() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"crash_at","node":"primary","point":"before_forward"}))
        .await
        .unwrap();
    v.wait_event(|e| {
        e.node == "s1"
            && matches!(
                e.kind,
                EventKind::CrashArmed {
                    point: Some(CrashPoint::BeforeForward),
                    dying_ms: None
                }
            )
    })
    .await;
    let nodes = v.nodes().await;
    assert_eq!(nodes["s1"].crash_point, Some(CrashPoint::BeforeForward));
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, attempts, req) = completed(&done);
    let (cause, crash_req) = wait_crashed(&mut v, from, "s1").await;
    assert_eq!((cause, crash_req), (CrashCause::BeforeForward, Some(req)));
    assert_eq!(executed_at(&v.events, "s1", req).len(), 1, "s1 applied it");
    assert!(!forward_sent(&v.events, req), "no forward left s1");
    assert!((ok, at.as_str(), attempts) == (true, "s2", 2), "{done:?}");
    let at_s2 = executed_at(&v.events, "s2", req);
    assert_eq!(at_s2.len(), 1);
    assert!(
        matches!(
            at_s2[0].kind,
            EventKind::Executed {
                duplicate: false,
                forwarded: false,
                ok: true,
                ..
            }
        ),
        "the retry ran fresh at s2: {:?}",
        at_s2[0]
    );
}

#[tokio::test]
async fn crash_at_after_forward_the_retry_is_answered_from_the_backups_record() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"crash_at","node":"s1","point":"after_forward"}))
        .await
        .unwrap();
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, attempts, req) = completed(&done);
    let (cause, _) = wait_crashed(&mut v, from, "s1").await;
    assert_eq!(cause, CrashCause::AfterForward);
    assert!(forward_sent(&v.events, req), "the forward left");
    assert!((ok, at.as_str(), attempts) == (true, "s2", 2), "{done:?}");
    let at_s2: Vec<(bool, bool)> = executed_at(&v.events, "s2", req)
        .iter()
        .map(|e| match e.kind {
            EventKind::Executed {
                forwarded,
                duplicate,
                ..
            } => (forwarded, duplicate),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        at_s2,
        vec![(true, false), (false, true)],
        "s2 applied the forward, then answered the retry from its at-most-once record"
    );
    // No ack reached s1: it died before one could.
    let acks: Vec<shared::MsgId> = v
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MsgSent {
                msg: Msg::ForwardAck { req: r, .. },
                msg_id,
                ..
            } if *r == req => Some(*msg_id),
            _ => None,
        })
        .collect();
    assert!(
        !v.events.iter().any(
            |e| matches!(&e.kind, EventKind::MsgDelivered { msg_id, .. } if acks.contains(msg_id))
        ),
        "s1 got no ack"
    );
}

#[tokio::test]
async fn crash_at_before_ack_the_backup_dies_with_the_forward_applied_and_the_primary_answers_alone(
) {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"crash_at","node":"backup","point":"before_ack"}))
        .await
        .unwrap();
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, attempts, req) = completed(&done);
    let (cause, crash_req) = wait_crashed(&mut v, from, "s2").await;
    assert_eq!((cause, crash_req), (CrashCause::BeforeAck, Some(req)));
    let at_s2 = executed_at(&v.events, "s2", req);
    assert!(
        matches!(at_s2.as_slice(), [e] if matches!(e.kind, EventKind::Executed { forwarded: true, .. })),
        "the backup applied the forward: {at_s2:?}"
    );
    assert!(
        !v.events.iter().any(|e| matches!(&e.kind, EventKind::MsgSent { msg: Msg::ForwardAck { req: r, .. }, .. } if *r == req)),
        "its ack never left"
    );
    assert!((ok, at.as_str(), attempts) == (true, "s1", 1), "{done:?}");
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
}

#[tokio::test]
async fn a_dying_server_stays_connected_and_silent_then_dies() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await, "c1 is connected to s1");
    let s1 = server_pid(&mut v, "s1").await;
    let from = v.events.len();
    v.command(json!({"type":"crash","node":"s1","dying_ms":4000}))
        .await
        .unwrap();
    let dying = v
        .wait_event_from(from, |e| {
            e.node == "s1" && matches!(e.kind, EventKind::Dying { .. })
        })
        .await;
    assert!(
        matches!(dying.kind, EventKind::Dying { pid, dies_in_ms: 4000, point: None } if pid == s1),
        "{dying:?}"
    );
    assert!(v.nodes().await["s1"].dying);
    let t = Instant::now();
    let done = v.call(1, Op::Unlock, "a").await;
    let (ok, at, _, req) = completed(&done);
    assert!(ok);
    assert_eq!(at, "s2");
    assert!(process_alive(s1), "still alive while silent");
    let reason = v.rpc_failed_reason(from, req).await;
    assert!(
        reason.contains("no reply in time"),
        "the connection stayed open: a timeout, not a refusal ({reason})"
    );
    assert!(t.elapsed() >= Duration::from_millis(2000));
    assert!(
        executed_at(&v.events, "s1", req).is_empty(),
        "a silent server hands its state machine nothing"
    );
    let (cause, _) = wait_crashed(&mut v, from, "s1").await;
    assert_eq!(cause, CrashCause::Dying);
    assert!(wait_gone(s1).await, "killed when the silence ended");
}

#[tokio::test]
async fn crash_at_with_dying_goes_silent_at_the_point_and_the_clerk_sees_the_close_at_death() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"crash_at","node":"s1","point":"after_forward","dying_ms":800}))
        .await
        .unwrap();
    let from = v.events.len();
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, _, req) = completed(&done);
    let dying = position(&v.events, from, |e| {
        e.node == "s1"
            && matches!(
                e.kind,
                EventKind::Dying {
                    dies_in_ms: 800,
                    point: Some(CrashPoint::AfterForward),
                    ..
                }
            )
    })
    .expect("dying at after_forward");
    assert!(forward_sent(&v.events[..dying], req));
    let (cause, _) = wait_crashed(&mut v, from, "s1").await;
    assert_eq!(cause, CrashCause::Dying);
    assert!((ok, at.as_str()) == (true, "s2"), "{done:?}");
    let reason = v.rpc_failed_reason(from, req).await;
    assert!(
        !reason.contains("refused"),
        "the connection was open until the death: {reason}"
    );
    assert!(
        matches!(
            executed_at(&v.events, "s2", req).last().map(|e| &e.kind),
            Some(EventKind::Executed {
                duplicate: true,
                ..
            })
        ),
        "the retry was answered from s2's record"
    );
}

#[tokio::test]
async fn impossible_process_faults_get_a_clear_code_and_harm_nothing() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let cases = [
        (json!({"type":"resume","node":"s1"}), ErrorCode::NotPaused),
        (json!({"type":"resume","node":"*"}), ErrorCode::NotPaused),
        (json!({"type":"restart","node":"s1"}), ErrorCode::NodeAlive),
        (json!({"type":"restart","node":"*"}), ErrorCode::NodeAlive),
        (
            json!({"type":"restart","node":"primary"}),
            ErrorCode::NodeAlive,
        ),
        (json!({"type":"pause","node":"s9"}), ErrorCode::UnknownNode),
        (
            json!({"type":"restart","node":"s9"}),
            ErrorCode::UnknownNode,
        ),
        (
            json!({"type":"crash_at","node":"s9","point":"before_ack"}),
            ErrorCode::UnknownNode,
        ),
        (
            json!({"type":"crash_at","node":"*","point":"before_ack"}),
            ErrorCode::BadField,
        ),
        (
            json!({"type":"crash_client","client":5}),
            ErrorCode::NodeDead,
        ),
        (
            json!({"type":"crash_client","client":99999}),
            ErrorCode::BadField,
        ),
    ];
    for (cmd, want) in cases {
        let (code, message) = v.command(cmd.clone()).await.unwrap_err();
        assert_eq!(code, want, "{cmd}: {message}");
        assert!(!message.is_empty());
    }
    v.command(json!({"type":"pause","node":"s2"}))
        .await
        .unwrap();
    for cmd in [
        json!({"type":"crash_at","node":"s2","point":"before_ack"}),
        json!({"type":"crash_before_reply","node":"backup"}),
        json!({"type":"crash","node":"s2","dying_ms":100}),
    ] {
        let (code, message) = v.command(cmd.clone()).await.unwrap_err();
        assert_eq!(code, ErrorCode::NodePaused, "{cmd}: {message}");
    }
    v.command(json!({"type":"resume","node":"s2"}))
        .await
        .unwrap();
    // Nothing was harmed.
    let nodes = v.nodes().await;
    assert!(nodes
        .values()
        .all(|n| n.alive && !n.armed && !n.paused && !n.dying));
    let done = v.call(1, Op::Lock, "a").await;
    let (ok, at, attempts, _) = completed(&done);
    assert_eq!((ok, at.as_str(), attempts), (true, "s1", 1));
}

/// No client process outlives its supervisor (they die with it, by the parent-death signal).
async fn clients_end_with_the_supervisor(signal: Signal) {
    let mut server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert!(v.call_ok(2, Op::Lock, "b").await);
    let pids = [client_pid(&mut v, 1).await, client_pid(&mut v, 2).await];
    for pid in pids {
        assert!(process_alive(pid));
    }
    kill(Pid::from_raw(server.pid() as i32), signal).unwrap();
    tokio::time::timeout(WAIT, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    for pid in pids {
        assert!(
            wait_gone(pid).await,
            "client {pid} outlived a supervisor ended by {signal:?}"
        );
    }
}

#[tokio::test]
async fn no_client_survives_sigkill_of_the_supervisor() {
    clients_end_with_the_supervisor(Signal::SIGKILL).await;
}

#[tokio::test]
async fn no_client_survives_sigterm() {
    clients_end_with_the_supervisor(Signal::SIGTERM).await;
}
