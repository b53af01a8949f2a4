//! `pbscope check` on real processes: the correct protocol survives Lab 1's fault model, every
//! deliberately broken variant is caught, a failing run is saved as a file the page opens, and
//! bad flags are refused. Each schedule is a fresh cluster of real `pbscope node` and `pbscope
//! client` processes; the histories go through the real checker.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use server::campaign::{run_campaign, CampaignConfig, CampaignReport, FaultKind};
use shared::{EventKind, Op, Variant, VerdictStatus};
use support::Server;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pbscope"))
}

fn config(seed: u64, schedules: u64, variant: Option<Variant>) -> CampaignConfig {
    CampaignConfig {
        node_exe: exe(),
        seed,
        first: 0,
        schedules,
        variant,
        faults: FaultKind::LAB1.to_vec(),
        clients: 3,
        locks: 2,
        ops: Duration::from_millis(1200),
        think: Duration::ZERO,
    }
}

fn campaign(cfg: &CampaignConfig) -> CampaignReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run_campaign(cfg, None, true))
        .expect("the campaign runs")
}

/// What a campaign found, for the test's output (`--nocapture` shows it).
fn summary(name: &str, r: &CampaignReport) -> String {
    format!(
        "{name}: {} of {} schedules violating (detection rate {:.0}%), first after {:?} schedules\n{}",
        r.violations(),
        r.schedules,
        100.0 * r.violations() as f64 / r.schedules.max(1) as f64,
        r.schedules_to_first,
        r.table()
    )
}

#[test]
fn the_correct_protocol_has_no_violation_under_lab1s_fault_model() {
    let cfg = config(20_261_202, 24, None);
    let r = campaign(&cfg);
    eprintln!("{}", summary("correct protocol, Lab 1 faults", &r));
    assert_eq!(r.schedules, 24);
    let calls: u64 = r.per_kind.values().map(|t| t.calls).sum();
    let faults: u64 = r.per_kind.values().map(|t| t.faults).sum();
    assert!(calls > 24 * 200, "the clients really called ({calls})");
    assert_eq!(faults, 24, "every schedule halted one server");
    for kind in FaultKind::LAB1 {
        assert!(r.per_kind[&kind].schedules > 0, "{kind} was drawn");
    }
    assert_eq!(
        r.violations(),
        0,
        "Lab 1 is correct under its own model: {:?}",
        r.violating
    );
}

/// Runs `schedules` schedules of Lab 1's faults against a broken variant: it must be caught.
///
/// The schedules are Lab 1's, drawn as for any campaign: nothing steers them to the variant's
/// weak point. Only some crash points can show a variant (reply-before-ack only when the
/// primary dies between its answer and its forward, `before_forward`; the other two only when it
/// dies after the backup applied the forward and before answering), and only when the call there
/// changed the lock; 24 schedules of these seeds hold 5 or 6 such points each, and the rate
/// measured per schedule is 15-55 %, so a miss of all 24 is well under 1 %.
fn caught(variant: Variant, schedules: u64) {
    let cfg = config(7_000 + variant as u64, schedules, Some(variant));
    let r = campaign(&cfg);
    eprintln!("{}", summary(&format!("variant {variant}"), &r));
    assert!(
        r.violations() > 0,
        "{variant} is broken, and {schedules} schedules found nothing"
    );
    // The verdict names the calls at fault, and the rerun command names the variant.
    let (index, cmd, verdict) = &r.violating[0];
    assert_eq!(verdict.status, VerdictStatus::Violation);
    assert!(!verdict.ops.is_empty(), "the calls at fault are named");
    assert!(cmd.contains(&format!("--first {index} --schedules 1")));
    assert!(cmd.contains(&format!("--variant {variant}")));
}

#[test]
fn reply_before_ack_is_caught() {
    caught(Variant::ReplyBeforeAck, 24);
}

#[test]
fn backup_reexecutes_is_caught() {
    caught(Variant::BackupReexecutes, 24);
}

#[test]
fn new_id_on_retry_is_caught() {
    caught(Variant::NewIdOnRetry, 24);
}

#[test]
fn a_failing_check_exits_1_prints_the_rerun_command_and_saves_a_run_the_page_opens() {
    let dir = std::env::temp_dir().join(format!("pbscope-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("failing.jsonl");
    // A violation of this broken variant needs a crash to land between a reply and the
    // backup's copy, which real timing decides: each schedule finds one about a third of the
    // time here, and 8 schedules found none once in CI on a loaded machine (20: ~0.1%).
    let out = Command::new(exe())
        .args(["check", "--seed", "7000", "--schedules", "20", "--quiet"])
        .args(["--variant", "reply-before-ack", "--ops-ms", "1200"])
        .arg("--save")
        .arg(&file)
        .output()
        .expect("pbscope check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a violation exits 1:\n{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("VIOLATION in schedule #") && stderr.contains("into the calls): crash"),
        "--quiet silences progress, not the violation and its faults:\n{stderr}"
    );
    let rerun = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pbscope check --seed 7000 --first "))
        .unwrap_or_else(|| panic!("no rerun command in:\n{stdout}"));
    assert!(rerun.contains("--variant reply-before-ack"), "{rerun}");
    assert!(stdout.contains("violations"), "the table:\n{stdout}");
    let text = std::fs::read_to_string(&file).expect("the failing run was saved");
    let run = model::runfile::parse_run(&text).expect("a whole run file");
    assert_eq!(
        run.header.source, rerun,
        "the file says how to reproduce it"
    );
    assert_eq!(
        run.header.variant.as_deref(),
        Some("reply-before-ack"),
        "the file names the broken protocol it ran"
    );
    assert!(run
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::OpCompleted { .. })));
    let verdict = run
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Verdict(v) if v.status == VerdictStatus::Violation => Some(v),
            _ => None,
        })
        .expect("the checker's violation is in the file");
    assert!(!verdict.explanation.is_empty());
    // It stands where it was found, as live: before the campaign's shutdown of the cluster (a
    // replay scrubbed to the violation shows it there), right after an answer.
    let first_violation = run
        .events
        .iter()
        .position(
            |e| matches!(&e.kind, EventKind::Verdict(v) if v.status == VerdictStatus::Violation),
        )
        .expect("a violation");
    let shutdown = run
        .events
        .iter()
        .position(|e| {
            matches!(
                &e.kind,
                EventKind::Crashed {
                    cause: shared::CrashCause::Reset,
                    ..
                }
            )
        })
        .unwrap_or(run.events.len());
    assert!(
        first_violation < shutdown,
        "the violation (#{first_violation}) is published before the shutdown (#{shutdown})"
    );
    assert!(
        matches!(
            run.events[..first_violation]
                .iter()
                .rev()
                .find(|e| !matches!(e.kind, EventKind::Verdict(_)))
                .map(|e| &e.kind),
            Some(EventKind::OpCompleted { .. } | EventKind::OpFailed { .. })
        ),
        "a verdict follows the answer that changed it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_check_flags_are_refused_with_a_clear_message() {
    let cases: [(&[&str], &str); 8] = [
        (&["--schedules", "0"], "1..=100000"),
        (&["--schedules", "100001"], "1..=100000"),
        (&["--clients", "0"], "1..=32"),
        (&["--clients", "33"], "1..=32"),
        (&["--locks", "65"], "1..=64"),
        (&["--faults", "crash,meteor"], "possible values"),
        (&["--variant", "slightly-wrong"], "reply-before-ack"),
        (&["--seed", "9007199254740992"], "0..=9007199254740991"),
    ];
    for (args, says) in cases {
        let out = Command::new(exe())
            .arg("check")
            .args(args)
            .output()
            .expect("pbscope runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} refused: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} ran nothing");
    }
    // A file it could not write is refused before any schedule runs, not after the first
    // violation (which lost the rest of the campaign and its table).
    for bad in ["/proc/no-such-dir/run.jsonl", "/"] {
        let started = std::time::Instant::now();
        let out = Command::new(exe())
            .args(["check", "--schedules", "50", "--quiet", "--save", bad])
            .output()
            .expect("pbscope runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--save {bad} refused: {stderr}");
        assert!(stderr.contains("--save"), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}: nothing ran");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused at once"
        );
    }
    let out = Command::new(exe())
        .args(["serve", "--variant", "nope"])
        .output()
        .expect("pbscope runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("new-id-on-retry"));
}

#[test]
fn faults_beyond_lab1_run_and_are_reported() {
    // Not a correctness claim: the design may be wrong beyond its model (see the README's
    // numbers). This shows each kind's faults are really injected, and the campaign finishes.
    let mut cfg = config(99, 6, None);
    cfg.faults = vec![
        FaultKind::Restart,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Delay,
        FaultKind::Partition,
        FaultKind::Hang,
    ];
    cfg.ops = Duration::from_millis(600);
    let mut total = CampaignReport::default();
    for (i, kind) in cfg.faults.clone().into_iter().enumerate() {
        let mut one = cfg.clone();
        one.faults = vec![kind];
        one.first = i as u64;
        one.schedules = 1;
        let r = campaign(&one);
        let t = &r.per_kind[&kind];
        assert_eq!(t.schedules, 1);
        // One fault per schedule, counted once whatever ends it (a resume, a heal, a restart).
        assert_eq!(t.faults, 1, "{kind}: one fault was injected");
        assert!(t.calls > 0, "{kind}: the clients called");
        total.per_kind.insert(kind, t.clone());
    }
    eprintln!("beyond Lab 1, one schedule each:\n{}", total.table());
}

/// `serve --variant` runs the broken protocol on the real processes and tells the page. The
/// primary dies after its forward of c1's Lock(z) left: c1 retries at the backup, which applied
/// that forward. The correct backup answers from its record (granted); `backup-reexecutes` runs
/// the Lock again and tells c1 that z is taken, by c1 itself.
async fn lock_across_a_crash_after_forward(variant: &[&str]) -> (Option<String>, bool) {
    let server = Server::start_with(variant).await;
    let mut v = server.viewer().await;
    let armed = v
        .command(json!({"type": "crash_at", "node": "s1", "point": "after_forward"}))
        .await;
    assert!(armed.is_ok(), "{armed:?}");
    let granted = v.call_ok(1, Op::Lock, "z").await;
    (v.hello.variant.clone(), granted)
}

#[tokio::test]
async fn serve_with_a_variant_says_so_in_hello_and_runs_it() {
    assert_eq!(
        lock_across_a_crash_after_forward(&[]).await,
        (None, true),
        "the correct protocol: the retry gets the forward's grant"
    );
    assert_eq!(
        lock_across_a_crash_after_forward(&["--variant", "backup-reexecutes"]).await,
        (Some("backup-reexecutes".to_owned()), false),
        "the broken one: the backup ran c1's Lock twice"
    );
}

/// `pbscope serve --variant X | head -1`: the variant's warning, the server's second line, met
/// the closed pipe and killed the server (`println!` panics on it). Found when the test above
/// failed in CI with "connection reset": its harness stops reading after the address line.
#[tokio::test]
async fn serve_keeps_serving_when_nobody_reads_its_stdout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = tokio::process::Command::new(exe())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--variant", "backup-reexecutes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pbscope serve");
    drop(child.stdout.take()); // nobody reads: every line meets a closed pipe
    let url = format!("ws://127.0.0.1:{port}/ws");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let ws = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                let exited = child.try_wait().expect("wait");
                assert!(exited.is_none(), "pbscope serve exited ({exited:?}): {e}");
                assert!(tokio::time::Instant::now() < deadline, "no server: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let v = support::Viewer::from_ws(ws).await;
    assert_eq!(v.hello.variant.as_deref(), Some("backup-reexecutes"));
    assert!(child.try_wait().expect("wait").is_none(), "still serving");
    drop(v);
    // A clean stop: SIGTERM, then the cluster is stopped and the server exits.
    let pid = child.id().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::time::timeout(support::WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_check_whose_reader_went_away_still_exits_with_its_verdict() {
    // `pbscope check | head -1`: stdout closes early; the campaign's exit status (0: no
    // violation) must survive, not turn into a panic's 101.
    let mut child = Command::new(exe())
        .args([
            "check",
            "--schedules",
            "1",
            "--seed",
            "5",
            "--ops-ms",
            "300",
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pbscope runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
