//! The supervisor's own ordering and clean-up rules, driven in-process against real node
//! processes (the `pbscope` binary), where the test can control when the supervisor runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use server::bus::{Bus, BusConfig};
use server::clerk::ClerkTiming;
use server::clock::RunClock;
use server::cluster::{Cluster, ClusterConfig};
use shared::{Event, EventKind, Op};

fn config(node_exe: PathBuf) -> ClusterConfig {
    ClusterConfig {
        node_exe,
        slow_motion_ms: 0,
        clerk_timing: ClerkTiming::default(),
        max_client: 100,
        max_locks: 100,
        variant: None,
    }
}

fn log(bus: &Bus) -> Vec<Event> {
    bus.recent(usize::MAX)
        .iter()
        .map(|l| serde_json::from_str(&l.json()).expect("events parse"))
        .collect()
}

async fn wait_for(bus: &Bus, what: &str, pred: impl Fn(&Event) -> bool) {
    for _ in 0..2000 {
        if log(bus).iter().any(&pred) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every event a server reported comes before its `crashed`. The runtime has one thread: while
/// it is blocked, the supervisor reads nothing, so s1's reports of a whole call wait unread in
/// its control socket when the crash comes. Before the fix `crashed` was published at once, ahead
/// of them: the page drew a dead server still acting.
#[test]
fn a_crash_is_logged_after_everything_the_server_reported_before_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = Bus::new(RunClock::start(), BusConfig::default());
        let cluster = Cluster::start(bus.clone(), config(env!("CARGO_BIN_EXE_pbscope").into()))
            .await
            .expect("cluster starts");
        cluster
            .submit(1, Op::Lock, "a".into(), None, None)
            .await
            .expect("submitted");
        wait_for(&bus, "c1's request to leave", |e| {
            e.node == "c1" && matches!(e.kind, EventKind::MsgSent { .. })
        })
        .await;
        // s1 executes, forwards, gets the ack and replies, reporting each step, unread.
        std::thread::sleep(Duration::from_millis(400));
        cluster.crash(&"s1".into()).await.expect("crashed");
        let events = log(&bus);
        let crashed = events
            .iter()
            .position(|e| e.node == "s1" && matches!(e.kind, EventKind::Crashed { .. }))
            .expect("a crashed event");
        assert!(
            events[..crashed]
                .iter()
                .any(|e| e.node == "s1" && matches!(e.kind, EventKind::Executed { .. })),
            "the call reached s1 before the crash"
        );
        let after: Vec<&str> = events[crashed + 1..]
            .iter()
            .filter(|e| e.node == "s1")
            .map(|e| e.kind.name())
            .filter(|n| *n != "process_exited" && *n != "msg_lost")
            .collect();
        assert!(after.is_empty(), "s1 acted after its crash: {after:?}");
        cluster.shutdown().await;
    });
}

/// A reset whose new servers do not all start leaves nothing half started: the ones that did
/// start are killed, commands get errors (not a panic), and the next reset works.
#[tokio::test]
async fn a_half_failed_reset_leaves_no_server_behind() {
    let dir = std::env::temp_dir().join(format!("pbscope-reset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let marker = dir.join("fail-s1");
    let wrapper = dir.join("node.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then case \" $* \" in *' --id s1 '*) exit 3;; esac; fi\nexec '{}' \"$@\"\n",
            marker.display(),
            env!("CARGO_BIN_EXE_pbscope")
        ),
    )
    .expect("wrapper");
    std::process::Command::new("chmod")
        .args(["+x", &wrapper.display().to_string()])
        .status()
        .expect("chmod");
    let bus = Bus::new(RunClock::start(), BusConfig::default());
    let cluster: Arc<Cluster> = Cluster::start(bus.clone(), config(wrapper))
        .await
        .expect("the first generation starts");
    std::fs::write(&marker, "").expect("marker");
    let err = cluster.reset().await.expect_err("s1 cannot start");
    assert!(err.to_string().contains("s1"), "{err}");
    let started_s2: Vec<u32> = log(&bus)
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::ProcessStarted { pid, .. } if e.node == "s2" => Some(pid),
            _ => None,
        })
        .collect();
    assert_eq!(started_s2.len(), 2, "s2 started in both generations");
    let half = started_s2[1];
    assert!(
        !std::path::Path::new(&format!("/proc/{half}")).exists()
            || std::fs::read_to_string(format!("/proc/{half}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the half-started s2 (pid {half}) was killed"
    );
    for node in ["backup", "primary", "s2"] {
        assert!(
            cluster.crash(&node.into()).await.is_err(),
            "{node}: an error, not a panic"
        );
    }
    assert!(cluster
        .submit(1, Op::Lock, "a".into(), None, None)
        .await
        .is_err());
    std::fs::remove_file(&marker).expect("marker gone");
    cluster.reset().await.expect("the next reset works");
    let (tx, rx) = tokio::sync::oneshot::channel();
    cluster
        .submit(1, Op::Lock, "a".into(), None, Some(tx))
        .await
        .expect("submitted");
    assert_eq!(rx.await.expect("answered"), Some(true));
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in for `pbscope node` that introduces itself, waits, then only writes reports
/// (`COUNT` `crash_armed` events, megabytes) and never reads its control connection.
const SILENT_NODE: &str = r#"
import json, socket, struct, sys, time
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
host, port = args["--control"].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
def frame(obj):
    body = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
frame({"type": "ready", "id": args["--id"], "pid": __import__("os").getpid(),
       "port": listener.getsockname()[1], "token": int(args["--token"])})
report = {"type": "event", "t_us": 1, "kind": {"type": "crash_armed"}}
time.sleep(2)  # while the supervisor floods the control connection
for _ in range(COUNT):
    frame(report)
time.sleep(60)
"#;

/// Control to a node and reports from it must not wait on each other. Before the fix the
/// supervisor wrote control inside the loop that read the node's reports: once a node that was
/// not reading had let the control socket fill up, the supervisor stopped reading its reports,
/// and a node blocked writing them would never read again: both stuck for good.
#[tokio::test]
async fn a_node_that_reads_no_control_cannot_stop_its_reports() {
    const REPORTS: usize = 100_000;
    let dir = std::env::temp_dir().join(format!("pbscope-silent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("node.py");
    std::fs::write(&script, SILENT_NODE.replace("COUNT", &REPORTS.to_string())).expect("script");
    let wrapper = dir.join("node.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec python3 '{}' \"$@\"\n", script.display()),
    )
    .expect("wrapper");
    std::process::Command::new("chmod")
        .args(["+x", &wrapper.display().to_string()])
        .status()
        .expect("chmod");
    let bus = Bus::new(
        RunClock::start(),
        BusConfig {
            history: 200_000,
            ..BusConfig::default()
        },
    );
    let cluster = Cluster::start(bus.clone(), config(wrapper))
        .await
        .expect("the stand-ins introduce themselves");
    // Far more control than the socket buffers hold (each arm is a 36-byte frame: 14 MB).
    for _ in 0..400_000 {
        cluster
            .crash_before_reply(&"s1".into())
            .await
            .expect("armed");
    }
    let armed = || {
        log(&bus)
            .iter()
            .filter(|e| {
                e.node == "s1"
                    && matches!(
                        e.kind,
                        EventKind::CrashArmed {
                            point: None,
                            dying_ms: None
                        }
                    )
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while armed() < REPORTS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        armed(),
        REPORTS,
        "every report was read while control backed up"
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A clerk publishes a reply's delivery and the call's completion together, under one take of
/// the bus's lock: all the call's events are handed to the bus, in the order they happened,
/// before its caller hears the answer. Both kinds of clerk: a client process (`c1`, reporting
/// over its control connection) and one of the load's, inside the supervisor. The runtime has
/// one thread, so the server's report of its reply is always read before the reply: the bus
/// holds no delivery back, and the events are in the log when the answer comes. (With more
/// threads the bus may hold the delivery, and the completion behind it, until that report is
/// read: its rule that a delivery follows its send.)
#[tokio::test]
async fn a_calls_answer_comes_after_its_clerks_events_in_order() {
    let bus = Bus::new(RunClock::start(), BusConfig::default());
    let cluster = Cluster::start(bus.clone(), config(env!("CARGO_BIN_EXE_pbscope").into()))
        .await
        .expect("cluster starts");
    let load = shared::LOAD_FIRST_CLIENT;
    for client in [1, load] {
        let node = shared::client_node(client);
        for (i, op) in [Op::Lock, Op::Unlock, Op::Lock, Op::Lock]
            .into_iter()
            .enumerate()
        {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if client == load {
                cluster
                    .submit_load(client, op, "load-0".into(), tx)
                    .await
                    .expect("submitted");
            } else {
                cluster
                    .submit(client, op, "a".into(), None, Some(tx))
                    .await
                    .expect("submitted");
            }
            let expected = i != 3; // the last Lock finds the lock held
            let answer = tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .unwrap_or_else(|_| panic!("{node} call {i}: no answer in 10 s"));
            assert_eq!(answer.expect("answered"), Some(expected), "{node} call {i}");
            let kinds: Vec<&'static str> = log(&bus)
                .iter()
                .filter(|e| e.node == node)
                .filter_map(|e| match &e.kind {
                    EventKind::OpInvoked { .. } => Some("invoked"),
                    EventKind::MsgSent { .. } => Some("sent"),
                    EventKind::MsgDelivered { .. } => Some("delivered"),
                    EventKind::OpCompleted { .. } => Some("completed"),
                    _ => None,
                })
                .collect();
            let one = ["invoked", "sent", "delivered", "completed"];
            assert_eq!(
                kinds,
                one.repeat(i + 1),
                "{node} call {i}: its events so far"
            );
        }
    }
    cluster.shutdown().await;
}
