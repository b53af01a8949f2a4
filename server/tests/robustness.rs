//! Defects found by trying pbscope from outside, each pinned by a test against the real
//! `pbscope serve` (real node processes, a real WebSocket client).

mod support;

use std::time::Duration;

use serde_json::json;
use shared::{ErrorCode, EventKind, Op, ServerMsg};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// Slow motion is a viewing aid: raising it while a call is in flight must not make the clerk
/// or the primary give up on a live server. Before the fix the clerk's and the primary's
/// deadlines were fixed at the send, so 100 -> 1000 ms mid-call failed over to s2, and the next
/// Lock(z) by another client was granted by s1 as well: two servers granted z.
#[tokio::test]
async fn raising_slow_motion_mid_call_changes_no_answer() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"set_slow_motion","delay_ms":100}))
        .await
        .unwrap();
    let from = v.events.len();
    v.send(json!({"type":"lock","client":1,"lock":"z","tag":"slow"}))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    v.command(json!({"type":"set_slow_motion","delay_ms":1000}))
        .await
        .unwrap();
    let done = v.answer_of(from, "slow").await;
    match &done.kind {
        EventKind::OpCompleted {
            ok,
            server,
            attempts,
            ..
        } => {
            assert!(*ok);
            assert_eq!((server.as_str(), *attempts), ("s1", 1), "{done:?}");
        }
        other => panic!("the call must be answered: {other:?}"),
    }
    assert_no_failover(&v.events[from..]);
    v.command(json!({"type":"set_slow_motion","delay_ms":0}))
        .await
        .unwrap();
    assert!(
        !v.call_ok(2, Op::Lock, "z").await,
        "z is held: nobody else may be granted it"
    );
}

/// `set_slow_motion` is acknowledged once every node applies the new delay: a call sent right
/// after the ack has every one of its messages held.
#[tokio::test]
async fn slow_motion_is_in_force_when_acknowledged() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    for (i, delay) in [200u64, 0, 300].into_iter().enumerate() {
        v.command(json!({"type":"set_slow_motion","delay_ms":delay}))
            .await
            .unwrap();
        let from = v.events.len();
        let done = v.call(1, Op::Lock, &format!("l{i}")).await;
        assert!(
            matches!(done.kind, EventKind::OpCompleted { .. }),
            "{done:?}"
        );
        let evs = &v.events[from..];
        let mut held = 0;
        for e in evs {
            if let EventKind::MsgDelivered { msg_id, .. } = e.kind {
                let sent = evs.iter().find(
                    |s| matches!(s.kind, EventKind::MsgSent { msg_id: m, .. } if m == msg_id),
                );
                if let Some(sent) = sent {
                    assert!(
                        e.t_us - sent.t_us >= delay * 1000,
                        "message {msg_id} waited {} us, less than {delay} ms",
                        e.t_us - sent.t_us
                    );
                    held += 1;
                }
            }
        }
        assert_eq!(held, 4, "request, forward, ack and reply");
    }
}

/// `detail` (a viewer's own setting) waits its turn like every command: sent after a `reset`, it
/// is answered after the reset's answer. Found by review: it was answered at once, ahead of the
/// commands queued before it.
#[tokio::test]
async fn detail_is_answered_in_the_order_sent() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.send(json!({"type":"reset","tag":"first"})).await;
    v.send(json!({"type":"detail","load_sample":5,"tag":"second"}))
        .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match v.recv().await {
            ServerMsg::Ack { tag: Some(t), .. } => answers.push(t),
            ServerMsg::Error { tag, message, .. } => panic!("{tag:?} refused: {message}"),
            _ => {}
        }
    }
    assert_eq!(answers, ["first", "second"], "answered in the order sent");
}

/// A viewer's commands run in the order sent. Before the fix each command ran in a task of its
/// own, and two sent back to back ran in reverse order most of the time.
#[tokio::test]
async fn a_viewers_commands_run_in_the_order_sent() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    for round in 0..10u64 {
        let (a, b) = (10 + round, 500 + round);
        let from = v.events.len();
        v.send(json!({"type":"set_slow_motion","delay_ms":a,"tag":format!("a{round}")}))
            .await;
        v.send(json!({"type":"set_slow_motion","delay_ms":b,"tag":format!("b{round}")}))
            .await;
        let last = v
            .wait_event_from(
                from,
                |e| matches!(e.kind, EventKind::SlowMotionSet { delay_ms } if delay_ms == a || delay_ms == b),
            )
            .await;
        assert_eq!(
            last.kind,
            EventKind::SlowMotionSet { delay_ms: a },
            "round {round}: the first command sent ran first"
        );
        let second = v
            .wait_event_from(
                from,
                |e| matches!(e.kind, EventKind::SlowMotionSet { delay_ms } if delay_ms == b),
            )
            .await;
        assert!(second.seq > last.seq);
        assert_eq!(v.fresh_snapshot().await.slow_motion_ms, b);
        // A snapshot asked for right after a command reflects it: it waits its turn.
        let c = 900 + round;
        v.send(json!({"type":"set_slow_motion","delay_ms":c})).await;
        v.send(json!({"type":"snapshot"})).await;
        let snap = loop {
            if let ServerMsg::Snapshot(s) = v.recv().await {
                break s;
            }
        };
        assert_eq!(
            snap.slow_motion_ms, c,
            "round {round}: the snapshot ran second"
        );
        let acks: Vec<String> = v
            .others
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Ack { tag: Some(t), .. } if t.ends_with(&round.to_string()) => {
                    Some(t.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            acks,
            vec![format!("a{round}"), format!("b{round}")],
            "answers in order"
        );
    }
}

/// A reset ends every call in progress with an `op_failed` saying so, before the new cluster
/// starts. Before the fix the clerks were dropped and their calls simply never ended.
#[tokio::test]
async fn a_reset_ends_calls_in_progress_with_a_reason() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"set_slow_motion","delay_ms":2000}))
        .await
        .unwrap();
    v.command(json!({"type":"lock","client":1,"lock":"a"}))
        .await
        .unwrap();
    v.command(json!({"type":"unlock","client":2,"lock":"b"}))
        .await
        .unwrap();
    v.command(json!({"type":"reset"})).await.unwrap();
    let reset = v
        .wait_event(|e| matches!(e.kind, EventKind::ClusterReset { .. }))
        .await;
    for client in [1, 2] {
        let failed = v
            .wait_event(
                |e| matches!(&e.kind, EventKind::OpFailed { client: c, .. } if *c == client),
            )
            .await;
        assert!(failed.seq < reset.seq, "ended before the new cluster");
        let EventKind::OpFailed { reason, .. } = &failed.kind else {
            unreachable!()
        };
        assert!(reason.contains("reset"), "{reason}");
    }
    let snap = v.fresh_snapshot().await;
    assert!(snap.clients.iter().all(|c| c.pending.is_none()));
}

/// A tag is copied into every event of its call and every snapshot: a huge one is refused
/// (and not echoed), and nothing of it reaches the log.
#[tokio::test]
async fn a_huge_tag_is_refused_and_reaches_no_event() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let max = v.hello.limits.max_tag_bytes as usize;
    assert!(max >= 32, "room for any tag a person writes");
    let huge = "x".repeat(60_000);
    v.send(json!({"type":"lock","client":1,"lock":"a","tag":huge}))
        .await;
    let err = loop {
        if let ServerMsg::Error { code, message, tag } = v.recv().await {
            break (code, message, tag);
        }
    };
    assert_eq!(err.0, ErrorCode::BadField);
    assert!(err.1.contains("tag"), "{}", err.1);
    assert_eq!(err.2, None, "a 60 KB tag is not echoed");
    v.send(json!({"type":"explode","tag":"y".repeat(1000)}))
        .await;
    let echoed = loop {
        if let ServerMsg::Error { tag, .. } = v.recv().await {
            break tag;
        }
    };
    assert_eq!(echoed, None);
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert!(v
        .events
        .iter()
        .all(|e| !format!("{e:?}").contains("xxxxxxxx")));
    let ok = v
        .command(json!({"type":"unlock","client":1,"lock":"a","tag":"t".repeat(max)}))
        .await;
    assert!(ok.is_ok(), "a tag at the limit is fine: {ok:?}");
}

/// Lock names are bounded per cluster generation; a reset starts over.
#[tokio::test]
async fn distinct_lock_names_are_bounded() {
    let server = Server::start_with(&["--max-locks", "3"]).await;
    let mut v = server.viewer().await;
    assert_eq!(v.hello.limits.max_locks, 3);
    for name in ["a", "b", "c", "a"] {
        assert!(v.call_ok(1, Op::Lock, name).await || name == "a");
    }
    let refused = v
        .command(json!({"type":"lock","client":1,"lock":"d"}))
        .await
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::TooManyLocks, "{}", refused.1);
    v.command(json!({"type":"reset"})).await.unwrap();
    assert!(v.call_ok(1, Op::Lock, "d").await);
}

/// Viewers are bounded: one too many is told why and closed; the others go on.
#[tokio::test]
async fn viewers_are_bounded() {
    let server = Server::start_with(&["--max-viewers", "2"]).await;
    let mut first = server.viewer().await;
    let _second = server.viewer().await;
    assert_eq!(first.hello.limits.max_viewers, 2);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("the upgrade itself succeeds");
    match next_msg(&mut ws).await {
        ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::TooManyViewers),
        other => panic!("expected too_many_viewers, got {other:?}"),
    }
    assert!(first.call_ok(1, Op::Lock, "a").await);
    drop(_second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = server.viewer().await;
    assert!(!again.call_ok(2, Op::Lock, "a").await, "a slot freed up");
}

/// Binary frames count against the rate like any other: before the fix they skipped it.
#[tokio::test]
async fn binary_frames_count_against_the_rate() {
    let server = Server::start_with(&["--commands-per-sec", "2"]).await;
    let mut v = server.viewer().await;
    for _ in 0..6 {
        v.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    }
    // Each binary frame is refused as such; the first text command after them finds the
    // viewer's budget (a burst of 4 at 2 per second) spent.
    v.send(json!({"type":"snapshot"})).await;
    let mut codes = Vec::new();
    while codes.len() < 7 {
        match v.recv().await {
            ServerMsg::Error { code, .. } => codes.push(code),
            ServerMsg::Snapshot(_) => panic!("the snapshot command ran: {codes:?}"),
            _ => {}
        }
    }
    assert_eq!(
        codes.iter().filter(|c| **c == ErrorCode::BadJson).count(),
        4
    );
    assert_eq!(codes.last(), Some(&ErrorCode::RateLimited), "{codes:?}");
    // A refused command still gets its tag back, so a script knows which one was not run.
    let refused = v
        .command(json!({"type":"lock","client":1,"lock":"a"}))
        .await
        .expect_err("still over the rate");
    assert_eq!(refused.0, ErrorCode::RateLimited);
}

/// Command-line values out of range are refused with a message, never a panic later.
#[tokio::test]
async fn out_of_range_command_line_values_are_refused() {
    for (cmd, args) in [
        ("serve", ["--slow-motion-ms", "18446744073709551615"]),
        ("serve", ["--history", "0"]),
        ("serve", ["--commands-per-sec", "0"]),
        ("bench", ["--seconds", "nan"]),
        ("bench", ["--seconds", "1e300"]),
        // A negative number is a value out of range, not an unknown flag.
        ("bench", ["--clients", "-3"]),
        ("bench", ["--failover", "-1"]),
        ("bench", ["--failover-clients", "0"]),
        ("bench", ["--failover-clients", "257"]),
        // Without --failover there is nothing for it to apply to (found by review).
        ("bench", ["--failover-clients", "8"]),
        ("serve", ["--history", "-5"]),
        ("load", ["--clients", "-1"]),
        // Found by review: 64-bit options said "invalid digit", a list starting with a negative
        // number and `-inf` were still unknown flags.
        ("load", ["--rate", "-5"]),
        ("serve", ["--slow-motion-ms", "-1"]),
        ("bench", ["--clients", "-3,5"]),
        ("bench", ["--seconds", "-inf"]),
        ("bench", ["--rounds", "0"]),
        ("bench", ["--rounds", "21"]),
        ("bench", ["--rounds", "-2"]),
        ("serve", ["--workers", "0"]),
        ("bench", ["--workers", "65"]),
        ("bench", ["--workers", "-1"]),
        // Found by review: a repeated count ran twice and printed two rows; an empty one said
        // "cannot parse integer from empty string".
        ("bench", ["--clients", "1,16,1"]),
        ("bench", ["--clients", "1,,16"]),
        ("bench", ["--clients", "16,"]),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pbscope"));
        command.arg(cmd);
        if cmd == "serve" {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let out = tokio::time::timeout(WAIT, command.args(args).kill_on_drop(true).output())
            .await
            .expect("exits at once")
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if args[1] == "1,16,1" {
            assert!(stderr.contains("1 is given more than once"), "{stderr}");
        }
        if args[1].contains(",,") || args[1].ends_with(',') {
            assert!(stderr.contains("a client count is missing"), "{stderr}");
        }
        if args[1].starts_with('-') {
            assert!(
                stderr.contains("invalid value '-") && !stderr.contains("unexpected argument"),
                "{args:?} is refused as a value: {stderr}"
            );
            assert!(
                stderr.contains(" is not in ") || stderr.contains("must be from"),
                "{args:?} is told the option's range: {stderr}"
            );
        }
    }
}

/// Lowering slow motion must not fail anything over either. An inbox keeps each connection's
/// messages in order, so a forward sent after the fall waits behind one held under the old
/// delay: a call made then (by an old clerk or one created after the fall) must allow for it.
/// Found by review: c2 and a new c3 failed over to s2, s1 was deposed, and c1 was answered false.
#[tokio::test]
async fn lowering_slow_motion_with_a_forward_held_changes_no_answer() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(
        v.call_ok(2, Op::Lock, "warm").await,
        "c2 exists before the fall"
    );
    v.command(json!({"type":"set_slow_motion","delay_ms":3000}))
        .await
        .unwrap();
    let from = v.events.len();
    v.send(json!({"type":"lock","client":1,"lock":"z","tag":"c1z"}))
        .await;
    v.wait_event_from(from, |e| {
        e.node == "s1"
            && matches!(
                &e.kind,
                EventKind::MsgSent {
                    msg: shared::Msg::Forward { .. },
                    ..
                }
            )
    })
    .await;
    v.command(json!({"type":"set_slow_motion","delay_ms":0}))
        .await
        .unwrap();
    v.send(json!({"type":"lock","client":2,"lock":"z","tag":"c2z"}))
        .await;
    v.send(json!({"type":"lock","client":3,"lock":"y","tag":"c3y"}))
        .await;
    for (tag, want) in [("c1z", true), ("c2z", false), ("c3y", true)] {
        let done = v.answer_of(from, tag).await;
        match &done.kind {
            EventKind::OpCompleted {
                ok,
                server,
                attempts,
                ..
            } => assert_eq!((*ok, server.as_str(), *attempts), (want, "s1", 1), "{tag}"),
            other => panic!("{tag} must be answered: {other:?}"),
        }
    }
    assert_no_failover(&v.events[from..]);
}

/// Under slow motion a connection's end waits behind what came before it: a reply that left
/// before its server was killed answers the call. Found by review: the close overtook the held
/// reply, the clerk failed over, and s2 started serving alone for nothing.
#[tokio::test]
async fn a_reply_sent_before_a_crash_is_heard_before_the_connection_ends() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.command(json!({"type":"set_slow_motion","delay_ms":500}))
        .await
        .unwrap();
    let from = v.events.len();
    v.send(json!({"type":"lock","client":1,"lock":"r","tag":"last"}))
        .await;
    v.wait_event_from(from, |e| {
        e.node == "s1"
            && matches!(
                &e.kind,
                EventKind::MsgSent {
                    msg: shared::Msg::Reply { .. },
                    ..
                }
            )
    })
    .await;
    v.command(json!({"type":"crash","node":"s1"}))
        .await
        .unwrap();
    let done = v.answer_of(from, "last").await;
    assert!(
        matches!(&done.kind, EventKind::OpCompleted { ok: true, server, attempts: 1, .. } if server == "s1"),
        "{done:?}"
    );
    assert!(
        !v.events[from..]
            .iter()
            .any(|e| matches!(e.kind, EventKind::RpcFailed { .. })),
        "no retry for a call already answered"
    );
}

/// HTTP connections are bounded too, not only viewers: a request beyond the cap is answered
/// `503` and its connection closed instead of taking descriptors the cluster needs. A WebSocket
/// upgrade still gets through (viewers have their own cap: idle connections must not lock
/// them out), the open viewer goes on, and closing idle connections makes room again.
#[tokio::test]
async fn connections_beyond_the_cap_get_503_and_harm_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(&["--max-connections", "4"]).await;
    let mut v = server.viewer().await;
    let mut idle = Vec::new();
    // The viewer's connection counts against --max-viewers once upgraded, not this cap.
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(&server.addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("the connection itself is accepted");
    over.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, over.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(v.call_ok(1, Op::Lock, "a").await, "the viewer goes on");
    let mut late = server.viewer().await;
    assert!(
        !late.call_ok(2, Op::Lock, "a").await,
        "a viewer connecting over the cap is served"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fresh = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    fresh
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut page = String::new();
    tokio::time::timeout(WAIT, fresh.read_to_string(&mut page))
        .await
        .expect("answered")
        .expect("read");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}

/// A stranger's frames harm nothing: anyone on the machine can connect to a server's port, but
/// a forged `forward_refused` (or ack) counts only on the link the primary opened to its backup,
/// and a delivery of a message no process of the run sent does not hold the server's events
/// back. Found by review: one forged frame silenced s1's events and made it step down.
#[tokio::test]
async fn a_strangers_forged_frames_harm_nothing() {
    use futures_util::SinkExt;
    let server = Server::start().await;
    let mut v = server.viewer().await;
    let port = v
        .snapshot
        .nodes
        .iter()
        .find(|n| n.id == "s1")
        .and_then(|n| n.port)
        .expect("s1's port");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to s1");
    let mut conn = server::framing::framed(stream);
    let req = shared::RequestId::new(1, 1);
    for (n, msg) in [
        shared::Msg::ForwardRefused { req },
        shared::Msg::ForwardAck { req, ok: false },
    ]
    .into_iter()
    .enumerate()
    {
        let env = shared::Envelope {
            msg_id: shared::MsgId(n as u64 + 1),
            from: "zz".into(),
            msg,
        };
        conn.send(server::framing::encode(&env))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = v.events.len();
    assert!(v.call_ok(1, Op::Lock, "a").await, "s1 serves as before");
    let done = v.events[from..]
        .iter()
        .find(|e| matches!(e.kind, EventKind::OpCompleted { .. }))
        .expect("answered");
    assert!(
        matches!(&done.kind, EventKind::OpCompleted { server, attempts: 1, .. } if server == "s1"),
        "{done:?}"
    );
    assert_no_failover(&v.events[from..]);
    assert_eq!(v.nodes().await["s1"].role, shared::Role::Primary);
}

/// A viewer that reads nothing (its receive window shut, the gateway's writes to it waiting)
/// still has its commands read and run. Found by review (a `crash` sent by a script that did not
/// read never ran) and by the browser load test (a click on Crash on a page catching up under a
/// load did not crash s1): the gateway used to read a viewer's commands only between its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_does_not_read_still_has_its_commands_run() {
    let server = Server::start().await;
    let mut watcher = server.viewer().await;
    let s1 = watcher.nodes().await["s1"].pid.expect("s1 runs");
    // The silent viewer: a tiny receive buffer, and it never reads after the handshake.
    let url = server.ws_url();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .expect("host:port");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(2048).expect("SO_RCVBUF");
    let stream = sock.connect(addr).await.expect("connect");
    let (mut silent, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("handshake");
    // A load fills the silent viewer's socket with events.
    watcher
        .command(json!({"type":"load","clients":4,"rate":400}))
        .await
        .expect("load accepted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    use futures_util::SinkExt;
    silent
        .send(Message::text(r#"{"type":"crash","node":"s1"}"#))
        .await
        .expect("the crash is written");
    assert!(
        wait_gone(s1).await,
        "s1 (pid {s1}) still runs: the silent viewer's crash was never read"
    );
    let from = 0;
    watcher
        .wait_event_from(from, |e| {
            e.node.as_str() == "s1" && matches!(e.kind, EventKind::ProcessExited { .. })
        })
        .await;
    drop(silent);
}
