//! The Redis anchor against a real `redis-server` primary and replica. These tests need
//! `redis-server` (scripts/setup installs it); without it they fail with the install command,
//! they do not pass silently.

use std::time::Duration;

use server::redis_anchor::{
    closed_loop, closed_loop_with_timeout, key_of, RedisPair, Resp, RespConn,
};

fn gone(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie still would.
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn get(addr: std::net::SocketAddr, key: &str) -> Resp {
    let mut c = RespConn::connect(addr).await.unwrap();
    c.command(&[b"GET", key.as_bytes()]).await.unwrap()
}

#[tokio::test]
async fn a_closed_loop_is_replicated_and_the_pair_leaves_no_process() {
    let pair = RedisPair::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let pids = pair.pids();
    for pid in pids {
        assert!(!gone(pid), "redis-server {pid} is not running");
        // Our own child (not daemonized away).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, std::process::id());
    }
    assert!(
        pair.version().starts_with(|c: char| c.is_ascii_digit()),
        "{}",
        pair.version()
    );

    let r = closed_loop(&pair, 2, 2, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(r.ops > 0, "{r:?}");
    assert_eq!(r.clients, 2);
    // Every WAIT answered 1 (closed_loop fails otherwise) and, with a lock per client, every call
    // was granted.
    assert_eq!(r.waits_acked, r.ops);
    assert_eq!(r.granted, r.ops, "{r:?}");
    assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us, "{r:?}");

    // Where each client stopped, the replica holds what the primary holds.
    for c in 0..2 {
        let key = key_of(c, 2);
        let on_primary = get(pair.primary_addr(), &key).await;
        assert_eq!(get(pair.replica_addr(), &key).await, on_primary, "{key}");
    }

    // A Lock with no Unlock, acknowledged by WAIT, is on the replica.
    let mut c = RespConn::connect(pair.primary_addr()).await.unwrap();
    assert_eq!(
        c.command(&[b"SET", b"held", b"1", b"NX"]).await.unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        c.command(&[b"WAIT", b"1", b"0"]).await.unwrap(),
        Resp::Integer(1)
    );
    assert_eq!(
        get(pair.replica_addr(), "held").await,
        Resp::Bulk(b"1".to_vec())
    );
    // The replica refuses writes: the anchor's writes can only go through the primary.
    let mut rc = RespConn::connect(pair.replica_addr()).await.unwrap();
    assert!(matches!(
        rc.command(&[b"SET", b"x", b"1"]).await.unwrap(),
        Resp::Error(e) if e.starts_with("READONLY")
    ));

    // A second run on the same pair starts from free locks again.
    let again = closed_loop(&pair, 2, 2, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(again.granted, again.ops);

    drop(pair);
    for pid in pids {
        assert!(
            gone(pid),
            "redis-server {pid} still exists after the pair was dropped"
        );
    }
}

#[tokio::test]
async fn fewer_locks_than_clients_share_them_and_some_calls_are_refused() {
    let pair = RedisPair::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let r = closed_loop(&pair, 4, 1, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(r.ops > 0);
    assert!(r.granted <= r.ops);
}

#[tokio::test]
async fn without_an_acknowledging_replica_the_run_fails_loudly() {
    let pair = RedisPair::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let [_, replica] = pair.pids();
    // The replica stops acknowledging while the run is under way (if the stop came before the
    // first operation, the run would fail just the same, on its first WAIT).
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(replica as i32),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
    });
    let err = closed_loop_with_timeout(
        &pair,
        2,
        2,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await
    .expect_err("a run whose WAIT never returns 1 must fail");
    stopper.await.unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("WAIT 1 0"), "{text}");
    // Drop kills a stopped process too, and reaps it.
    let pids = pair.pids();
    drop(pair);
    for pid in pids {
        assert!(gone(pid), "redis-server {pid} still exists");
    }
}

/// A stopped primary accepts connections (the kernel does) but answers nothing: the run must
/// fail, not hang.
#[tokio::test]
async fn a_stopped_primary_fails_the_run_instead_of_hanging_it() {
    let pair = RedisPair::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let [primary, _] = pair.pids();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(primary as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let run = closed_loop_with_timeout(
        &pair,
        2,
        2,
        Duration::from_secs(1),
        Duration::from_millis(500),
    );
    let err = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run hung on a stopped primary")
        .expect_err("a run against a stopped primary must fail");
    assert!(
        format!("{err:#}").contains("is the primary or the replica stopped"),
        "{err:#}"
    );
    let pids = pair.pids();
    drop(pair);
    for pid in pids {
        assert!(gone(pid), "redis-server {pid} still exists");
    }
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_runs() {
    let pair = RedisPair::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    for (clients, locks, secs) in [(0, 1, 1), (1, 0, 1), (1, 1, 0), (100_000, 1, 1)] {
        let err = closed_loop(&pair, clients, locks, Duration::from_secs(secs))
            .await
            .expect_err("refused");
        assert!(!err.to_string().is_empty());
    }
}

/// If this process (precisely: the thread that started the pair) ends without dropping the pair,
/// the kernel kills both servers: no `redis-server` outlives pbscope.
#[test]
fn the_servers_die_with_the_thread_that_started_them() {
    let pids = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pair = rt
            .block_on(RedisPair::start())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let pids = pair.pids();
        // As if this process were SIGKILLed: no Drop runs.
        std::mem::forget(pair);
        pids
    })
    .join()
    .unwrap();
    for pid in pids {
        // They are still our children: reap them once they are dead (a generous bound, so a
        // missing parent-death signal fails here instead of hanging the suite).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            match waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(WaitPidFlag::WNOHANG),
            )
            .unwrap()
            {
                WaitStatus::StillAlive => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "redis-server {pid} outlived the thread that started it"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                status => break status,
            }
        };
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
            ),
            "redis-server {pid}: {status:?}"
        );
        assert!(gone(pid));
    }
}
