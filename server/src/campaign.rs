//! `pbscope check`: randomized fault campaigns against the real processes.
//!
//! Each *schedule* starts a fresh cluster in this process (a [`Bus`] and a [`Cluster`], as
//! `serve` does, without a gateway): two `pbscope node` processes and K `pbscope client`
//! processes. The clients call Lock/Unlock on L locks closed-loop for a short while; meanwhile
//! the schedule injects faults of one kind, drawn with times and targets from a seeded RNG, using
//! the cluster's own commands (`crash`, `crash_at`, `restart`, `set_link`, `partition`, `pause`,
//! `resume`). At the end every process is stopped: a call still running becomes `op_failed`,
//! an unknown outcome. The schedule's history (its bus events) goes through the linearizability
//! checker ([`checker::check_events`], a [`checker::Monitor`] fed the whole run), one lock at a
//! time.
//!
//! A schedule is a pure function of `(seed, index)` and the flags: `--seed S --first I
//! --schedules 1` with the same flags reruns schedule I's faults exactly. The processes are
//! real, so their timing (which call a fault meets) can differ from one run to the next.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shared::{
    CrashPoint, Endpoint, Event, EventKind, LockVerdict, NodeRef, Op, Probability, RunHeader,
    Variant, VerdictStatus, PROTOCOL_VERSION, RUN_FORMAT,
};
use tokio::sync::oneshot;

use crate::bus::{Bus, BusConfig};
use crate::clerk::ClerkTiming;
use crate::clock::RunClock;
use crate::cluster::{Cluster, ClusterConfig, ClusterError};

/// A kind of fault a schedule injects (`--faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL one server at a random time.
    Crash,
    /// Arm a crash at a random point of the next operation (`crash_at`): before_forward,
    /// after_forward or before_reply on the primary, before_ack on the backup.
    CrashPoint,
    /// SIGKILL one server, then start it again (empty, in its first role) a little later.
    Restart,
    /// Drop a share of the messages on some links for a while.
    Loss,
    /// Deliver a share of the messages twice on some links for a while.
    Duplicate,
    /// Delay (with jitter, so reorder) the messages on some links for a while.
    Delay,
    /// Split the processes into two groups that can't reach each other for a while.
    Partition,
    /// Pause one server (SIGSTOP) for a while, then resume it (SIGCONT).
    Hang,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Crash,
        FaultKind::CrashPoint,
        FaultKind::Restart,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Delay,
        FaultKind::Partition,
        FaultKind::Hang,
    ];

    /// Lab 1's own fault model: one server fails by halting, at any point.
    pub const LAB1: [FaultKind; 2] = [FaultKind::Crash, FaultKind::CrashPoint];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::CrashPoint => "crash-point",
            FaultKind::Restart => "restart",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::Hang => "hang",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the fault acts through the clerks' and the primary's timeouts (2.5 s and
    /// 1.5 s): its schedule runs [`TIMEOUT_ALLOWANCE`] longer so they can trip.
    fn needs_timeouts(self) -> bool {
        matches!(
            self,
            FaultKind::Loss | FaultKind::Partition | FaultKind::Hang | FaultKind::Delay
        )
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How much longer a schedule of a fault that works through timeouts runs.
pub const TIMEOUT_ALLOWANCE: Duration = Duration::from_millis(3000);

/// A campaign: `pbscope check`'s flags.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// The `pbscope` binary the processes run.
    pub node_exe: PathBuf,
    pub seed: u64,
    /// Index of the first schedule (to rerun one: `--first I --schedules 1`).
    pub first: u64,
    pub schedules: u64,
    pub variant: Option<Variant>,
    /// Each schedule draws one of these kinds.
    pub faults: Vec<FaultKind>,
    pub clients: u32,
    pub locks: u32,
    /// How long the clients call, per schedule (before [`TIMEOUT_ALLOWANCE`]).
    pub ops: Duration,
    /// Each client waits a random 0..=`think` before each call (zero: back to back). Calls then
    /// start at different times, so a fault that acts through timeouts meets clients at
    /// different points of their waits.
    pub think: Duration,
}

impl CampaignConfig {
    /// The command line that reruns schedule `index` exactly (same faults, same targets, same
    /// times), as `pbscope check` takes it.
    pub fn command_for(&self, index: u64) -> String {
        let mut cmd = format!(
            "pbscope check --seed {} --first {index} --schedules 1 --faults {} --clients {} --locks {} --ops-ms {}",
            self.seed,
            self.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
            self.clients,
            self.locks,
            self.ops.as_millis()
        );
        if !self.think.is_zero() {
            let _ = write!(cmd, " --think-ms {}", self.think.as_millis());
        }
        if let Some(v) = self.variant {
            let _ = write!(cmd, " --variant {v}");
        }
        cmd
    }
}

/// SplitMix64: small, seedable, the same everywhere (the wire's draws use it too).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The seed of schedule `index` of a campaign seeded `seed`.
pub fn schedule_seed(seed: u64, index: u64) -> u64 {
    let mut r = Rng::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

/// One step of a schedule's fault plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Crash(&'static str),
    CrashAt(&'static str, CrashPoint),
    Restart(&'static str),
    /// `set_link from to drop duplicate delay jitter` (all zeros ends it).
    Link {
        from: &'static str,
        to: &'static str,
        drop: f64,
        duplicate: f64,
        delay_ms: u64,
        jitter_ms: u64,
    },
    /// Groups of process names; empty ends the partition.
    Partition(Vec<Vec<String>>),
    Pause(&'static str),
    Resume(&'static str),
}

impl Action {
    /// Whether this step starts a fault (rather than ending one).
    fn injects(&self) -> bool {
        match self {
            // A restart brings back the server a crash took: one fault, counted at the crash.
            Action::Crash(_) | Action::CrashAt(..) | Action::Pause(_) => true,
            Action::Restart(_) => false,
            Action::Link {
                drop,
                duplicate,
                delay_ms,
                jitter_ms,
                ..
            } => *drop > 0.0 || *duplicate > 0.0 || *delay_ms > 0 || *jitter_ms > 0,
            Action::Partition(groups) => !groups.is_empty(),
            Action::Resume(_) => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Action::Crash(s) => format!("crash {s}"),
            Action::CrashAt(s, p) => format!("crash_at {s} {}", p.name()),
            Action::Restart(s) => format!("restart {s}"),
            Action::Link {
                from,
                to,
                drop,
                duplicate,
                delay_ms,
                jitter_ms,
            } => format!(
                "set_link {from}→{to} drop {drop:.2} duplicate {duplicate:.2} delay {delay_ms}±{jitter_ms} ms"
            ),
            Action::Partition(g) if g.is_empty() => "heal partition".into(),
            Action::Partition(g) => format!(
                "partition {}",
                g.iter().map(|g| g.join(",")).collect::<Vec<_>>().join(" | ")
            ),
            Action::Pause(s) => format!("pause {s}"),
            Action::Resume(s) => format!("resume {s}"),
        }
    }
}

/// A schedule: its fault kind, its steps (at ms from the start of the calls), how long the
/// clients call, and the seed of everything random in it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub index: u64,
    pub seed: u64,
    pub kind: FaultKind,
    pub steps: Vec<(u64, Action)>,
    pub length: Duration,
}

/// A link a network fault acts on, as (from, to).
const LINKS: [(&str, &str); 5] = [
    ("*", "*"),
    ("s1", "s2"),
    ("s2", "s1"),
    ("*", "s1"),
    ("s1", "*"),
];

impl Schedule {
    /// Draws schedule `index` of the campaign: a pure function of the config and the index.
    pub fn draw(cfg: &CampaignConfig, index: u64) -> Schedule {
        let seed = schedule_seed(cfg.seed, index);
        let mut rng = Rng::new(seed);
        let kind = cfg.faults[rng.below(cfg.faults.len() as u64) as usize];
        let ops_ms = cfg.ops.as_millis() as u64;
        // Faults start after the clients are under way and before the end, so their effect
        // is seen.
        let lo = (ops_ms / 10).max(20);
        let hi = (ops_ms * 7 / 10).max(lo);
        let at = |rng: &mut Rng| rng.range(lo, hi);
        let server = |rng: &mut Rng| if rng.below(2) == 0 { "s1" } else { "s2" };
        let mut steps = Vec::new();
        match kind {
            FaultKind::Crash => steps.push((at(&mut rng), Action::Crash(server(&mut rng)))),
            FaultKind::CrashPoint => {
                let point = CrashPoint::ALL[rng.below(CrashPoint::ALL.len() as u64) as usize];
                // The backup's point on the backup, the primary's on the primary.
                let on = if point == CrashPoint::BeforeAck {
                    "s2"
                } else {
                    "s1"
                };
                steps.push((at(&mut rng), Action::CrashAt(on, point)));
            }
            FaultKind::Restart => {
                let s = server(&mut rng);
                let t = at(&mut rng);
                steps.push((t, Action::Crash(s)));
                steps.push((t + rng.range(50, 500), Action::Restart(s)));
            }
            FaultKind::Loss | FaultKind::Duplicate | FaultKind::Delay => {
                let (from, to) = LINKS[rng.below(LINKS.len() as u64) as usize];
                let t = at(&mut rng);
                let (mut drop, mut duplicate, mut delay_ms, mut jitter_ms) = (0.0, 0.0, 0, 0);
                match kind {
                    FaultKind::Loss => drop = rng.range(5, 60) as f64 / 100.0,
                    FaultKind::Duplicate => duplicate = rng.range(10, 80) as f64 / 100.0,
                    _ => {
                        delay_ms = rng.range(5, 300);
                        jitter_ms = rng.range(0, delay_ms);
                    }
                }
                steps.push((
                    t,
                    Action::Link {
                        from,
                        to,
                        drop,
                        duplicate,
                        delay_ms,
                        jitter_ms,
                    },
                ));
                steps.push((
                    t + rng.range(200, 3000),
                    Action::Link {
                        from,
                        to,
                        drop: 0.0,
                        duplicate: 0.0,
                        delay_ms: 0,
                        jitter_ms: 0,
                    },
                ));
            }
            FaultKind::Partition => {
                // The servers apart; each client lands on one side or reaches both.
                let mut a = vec!["s1".to_owned()];
                let mut b = vec!["s2".to_owned()];
                for c in 1..=cfg.clients {
                    match rng.below(3) {
                        0 => a.push(format!("c{c}")),
                        1 => b.push(format!("c{c}")),
                        _ => {}
                    }
                }
                let t = at(&mut rng);
                steps.push((t, Action::Partition(vec![a, b])));
                steps.push((t + rng.range(200, 4000), Action::Partition(vec![])));
            }
            FaultKind::Hang => {
                let s = server(&mut rng);
                let t = at(&mut rng);
                steps.push((t, Action::Pause(s)));
                steps.push((t + rng.range(100, 4000), Action::Resume(s)));
            }
        }
        steps.sort_by_key(|(t, _)| *t);
        let mut length = cfg.ops;
        if kind.needs_timeouts() {
            let last = steps.last().map_or(0, |(t, _)| *t);
            length = length.max(Duration::from_millis(last)) + TIMEOUT_ALLOWANCE;
        }
        Schedule {
            index,
            seed,
            kind,
            steps,
            length,
        }
    }
}

/// What one schedule found.
#[derive(Debug, Clone)]
pub struct ScheduleOutcome {
    pub index: u64,
    pub kind: FaultKind,
    /// Calls made (answered or of unknown outcome).
    pub calls: u64,
    /// Calls whose outcome is unknown (given up, or still running at the end).
    pub unknown: u64,
    /// Fault steps that took effect.
    pub faults: u64,
    /// The checker's verdicts that are violations.
    pub violations: Vec<LockVerdict>,
    /// Locks the checker could not decide within its budget.
    pub undecided: u64,
    /// The fault steps, for people (`ok` or the cluster's refusal).
    pub log: Vec<String>,
    /// The run, with the checker's verdicts at its end (kept when asked, for `--save`).
    pub run: Option<String>,
}

fn parse_events(bus: &Bus) -> Vec<Event> {
    bus.recent(usize::MAX)
        .iter()
        .filter_map(|l| serde_json::from_str(l.text()).ok())
        .collect()
}

/// Runs one schedule on a fresh cluster. `keep_run`: return the run as a file's text (with the
/// verdicts where a live checker would have published them) when the schedule finds a violation.
pub async fn run_schedule(
    cfg: &CampaignConfig,
    schedule: &Schedule,
    keep_run: bool,
) -> anyhow::Result<ScheduleOutcome> {
    let bus = Bus::new(
        RunClock::start(),
        BusConfig {
            history: 2_000_000,
            snapshot_events: 0,
            viewer_buffer: 1,
            ..BusConfig::default()
        },
    );
    let cluster = Cluster::start(
        bus.clone(),
        ClusterConfig {
            node_exe: cfg.node_exe.clone(),
            slow_motion_ms: 0,
            clerk_timing: ClerkTiming::default(),
            max_client: cfg.clients,
            max_locks: cfg.locks as usize,
            variant: cfg.variant,
        },
    )
    .await
    .context("starting the cluster")?;
    // Random network decisions follow the schedule's seed (within JavaScript's integers).
    cluster.set_seed(schedule.seed >> 11).await;

    let start = Instant::now();
    let end = start + schedule.length;
    let mut workers = Vec::new();
    for c in 1..=cfg.clients {
        let cluster = cluster.clone();
        let mut rng = Rng::new(schedule.seed ^ u64::from(c).wrapping_mul(0xA076_1D64_78BD_642F));
        let (locks, think) = (cfg.locks, cfg.think);
        workers.push(tokio::spawn(async move {
            client_loop(&cluster, c, locks, think, &mut rng, end).await;
        }));
    }
    let mut faults = 0u64;
    let mut log = Vec::new();
    for (at, action) in &schedule.steps {
        let due = start + Duration::from_millis(*at);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        match apply(&cluster, action).await {
            Ok(_) => {
                if action.injects() {
                    faults += 1;
                }
                log.push(format!(
                    "at {} ({at} ms into the calls): {}",
                    checker::clock(bus.clock().now_us()),
                    action.describe()
                ));
            }
            Err(e) => log.push(format!(
                "at {} ({at} ms into the calls): {} refused: {e}",
                checker::clock(bus.clock().now_us()),
                action.describe()
            )),
        }
    }
    for w in workers {
        let _ = w.await;
    }
    // Calls still running end now, as unknown (`op_failed`), and every process is stopped.
    cluster.shutdown().await;
    drop(cluster);
    let events = parse_events(&bus);
    let (verdicts, _) = checker::check_events(&events, checker::Budget::default());
    let mut calls = 0u64;
    let mut unknown = 0u64;
    for e in &events {
        match e.kind {
            EventKind::OpInvoked { .. } => calls += 1,
            EventKind::OpFailed { .. } => unknown += 1,
            _ => {}
        }
    }
    let violations: Vec<LockVerdict> = verdicts
        .iter()
        .filter(|v| v.status == VerdictStatus::Violation)
        .cloned()
        .collect();
    let undecided = verdicts
        .iter()
        .filter(|v| v.status == VerdictStatus::Unknown)
        .count() as u64;
    let run = (keep_run && !violations.is_empty()).then(|| {
        // The verdicts go into the run where the live checker of `pbscope serve` would have
        // published them (right after the answer that changed one), so the page replays the
        // violation when it happened, not after the cluster was stopped.
        let events = checker::with_verdicts(&events, checker::Budget::default());
        let header = RunHeader {
            format: RUN_FORMAT.to_owned(),
            protocol: PROTOCOL_VERSION,
            server: format!("pbscope {}", env!("CARGO_PKG_VERSION")),
            run: bus.clock().epoch_ns(),
            first_seq: events.first().map_or(1, |e| e.seq),
            dropped: events.first().map_or(0, |e| e.seq.saturating_sub(1)),
            source: cfg.command_for(schedule.index),
            variant: cfg.variant.map(|v| v.name().to_owned()),
        };
        model::runfile::write_run(&header, &events)
    });
    Ok(ScheduleOutcome {
        index: schedule.index,
        kind: schedule.kind,
        calls,
        unknown,
        faults,
        violations,
        undecided,
        log,
        run,
    })
}

/// One client, closed-loop until `end`: Lock a random lock; once granted, Unlock it next; a
/// random think time of up to `think` before each call.
async fn client_loop(
    cluster: &Arc<Cluster>,
    c: u32,
    locks: u32,
    think: Duration,
    rng: &mut Rng,
    end: Instant,
) {
    let mut holding: Option<String> = None;
    while Instant::now() < end {
        if !think.is_zero() {
            let pause = Duration::from_millis(rng.range(0, think.as_millis() as u64));
            tokio::time::sleep(pause).await;
        }
        let (op, lock) = match holding.take() {
            Some(l) => (Op::Unlock, l),
            None => (Op::Lock, format!("l{}", rng.below(u64::from(locks)) + 1)),
        };
        let (tx, rx) = oneshot::channel();
        match cluster.submit(c, op, lock.clone(), None, Some(tx)).await {
            Ok(()) => {}
            Err(ClusterError::ClientBusy(_)) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        let answer = tokio::select! {
            a = rx => a.ok().flatten(),
            _ = tokio::time::sleep_until(end.into()) => return,
        };
        if op == Op::Lock && answer == Some(true) {
            holding = Some(lock);
        }
    }
}

async fn apply(cluster: &Cluster, action: &Action) -> Result<String, ClusterError> {
    let server = |s: &str| NodeRef::Server(s.into());
    let endpoint = |s: &str| Endpoint::from(s.to_owned());
    match action {
        Action::Crash(s) => cluster.crash(&server(s)).await,
        Action::CrashAt(s, p) => cluster.crash_at(&server(s), *p, None).await,
        Action::Restart(s) => cluster.restart(&server(s)).await,
        Action::Link {
            from,
            to,
            drop,
            duplicate,
            delay_ms,
            jitter_ms,
        } => {
            cluster
                .set_link(
                    &endpoint(from),
                    &endpoint(to),
                    Probability(*drop),
                    Probability(*duplicate),
                    *delay_ms,
                    *jitter_ms,
                )
                .await
        }
        Action::Partition(groups) => {
            let groups: Vec<Vec<Endpoint>> = groups
                .iter()
                .map(|g| g.iter().map(|m| endpoint(m)).collect())
                .collect();
            cluster.partition(&groups).await
        }
        Action::Pause(s) => cluster.pause(&server(s)).await,
        Action::Resume(s) => cluster.resume(&server(s)).await,
    }
}

/// One row of the table: a fault kind's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindTotals {
    pub schedules: u64,
    pub calls: u64,
    pub faults: u64,
    pub unknown: u64,
    /// Schedules with at least one violation.
    pub violations: u64,
    /// Schedules where a lock's verdict was unknown (too large to decide in budget).
    pub undecided: u64,
    /// The first violating schedule's index.
    pub first_violation: Option<u64>,
}

/// A whole campaign's results.
#[derive(Debug, Clone, Default)]
pub struct CampaignReport {
    pub per_kind: std::collections::BTreeMap<FaultKind, KindTotals>,
    /// Violating schedules, in the order run: (index, reproducing command, first verdict).
    pub violating: Vec<(u64, String, LockVerdict)>,
    /// How many schedules ran until (and including) the first violating one.
    pub schedules_to_first: Option<u64>,
    pub schedules: u64,
    pub saved: Option<PathBuf>,
}

impl CampaignReport {
    pub fn violations(&self) -> u64 {
        self.per_kind.values().map(|t| t.violations).sum()
    }

    /// The table per fault kind, as printed.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>8} {:>7} {:>8} {:>10} {:>9}  first violating",
            "fault", "schedules", "calls", "faults", "unknown", "violations", "undecided"
        );
        let mut total = KindTotals::default();
        for (kind, t) in &self.per_kind {
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>8} {:>7} {:>8} {:>10} {:>9}  {}",
                kind.name(),
                t.schedules,
                t.calls,
                t.faults,
                t.unknown,
                t.violations,
                t.undecided,
                t.first_violation
                    .map_or("-".to_owned(), |i| format!("#{i}"))
            );
            total.schedules += t.schedules;
            total.calls += t.calls;
            total.faults += t.faults;
            total.unknown += t.unknown;
            total.violations += t.violations;
            total.undecided += t.undecided;
        }
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>8} {:>7} {:>8} {:>10} {:>9}",
            "total",
            total.schedules,
            total.calls,
            total.faults,
            total.unknown,
            total.violations,
            total.undecided
        );
        out
    }
}

/// Progress on stderr: a bar redrawn in place on a terminal, otherwise a line now and then.
struct Progress {
    total: u64,
    tty: bool,
    every: u64,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            every: (total / 10).max(1),
            quiet,
        }
    }

    fn show(&self, done: u64, violations: u64, started: Instant) {
        if self.quiet {
            return;
        }
        let elapsed = started.elapsed().as_secs_f64();
        if self.tty {
            const WIDTH: u64 = 30;
            let filled = (done * WIDTH / self.total.max(1)) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                ".".repeat(WIDTH as usize - filled)
            );
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r[{bar}] {done}/{} schedules, {violations} violating, {elapsed:.0} s",
                self.total
            );
            if done == self.total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        } else if done.is_multiple_of(self.every) || done == self.total {
            eprintln!(
                "pbscope check: {done}/{} schedules, {violations} violating, {elapsed:.0} s",
                self.total
            );
        }
    }
}

/// Runs a campaign: every schedule in turn, the table, and the first failing run saved to
/// `save` if given. `quiet`: no progress on stderr.
pub async fn run_campaign(
    cfg: &CampaignConfig,
    save: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<CampaignReport> {
    let mut report = CampaignReport::default();
    let progress = Progress::new(cfg.schedules, quiet);
    let started = Instant::now();
    for k in &cfg.faults {
        report.per_kind.entry(*k).or_default();
    }
    for n in 0..cfg.schedules {
        let index = cfg.first + n;
        let schedule = Schedule::draw(cfg, index);
        let keep = save.is_some() && report.saved.is_none();
        let outcome = run_schedule(cfg, &schedule, keep)
            .await
            .with_context(|| format!("schedule #{index}"))?;
        let t = report.per_kind.entry(outcome.kind).or_default();
        t.schedules += 1;
        t.calls += outcome.calls;
        t.faults += outcome.faults;
        t.unknown += outcome.unknown;
        t.undecided += u64::from(outcome.undecided > 0);
        if let Some(first) = outcome.violations.first() {
            t.violations += 1;
            t.first_violation.get_or_insert(index);
            report.schedules_to_first.get_or_insert(n + 1);
            report
                .violating
                .push((index, cfg.command_for(index), first.clone()));
            // A violation is always told (`--quiet` only silences the progress).
            {
                if progress.tty && !quiet {
                    eprintln!();
                }
                eprintln!(
                    "VIOLATION in schedule #{index} ({}; {}): lock {}: {}\n  faults: {}\n  rerun: {}",
                    outcome.kind,
                    cfg.variant.map_or("correct protocol".to_owned(), |v| format!("variant {v}")),
                    first.lock,
                    first.explanation,
                    outcome.log.join("; "),
                    cfg.command_for(index)
                );
            }
        }
        if let (Some(path), Some(run)) = (save.as_ref(), outcome.run.as_ref()) {
            // The path was checked at the start; should writing still fail, the campaign and
            // its table matter more than the file.
            match std::fs::write(path, run) {
                Ok(()) => report.saved = Some(path.clone()),
                Err(e) => eprintln!(
                    "pbscope check: could not save the failing run to {}: {e}",
                    path.display()
                ),
            }
        }
        report.schedules += 1;
        progress.show(n + 1, report.violating.len() as u64, started);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(faults: Vec<FaultKind>) -> CampaignConfig {
        CampaignConfig {
            node_exe: "pbscope".into(),
            seed: 42,
            first: 0,
            schedules: 10,
            variant: None,
            faults,
            clients: 3,
            locks: 2,
            ops: Duration::from_millis(1500),
            think: Duration::ZERO,
        }
    }

    #[test]
    fn a_schedule_is_a_function_of_seed_and_index() {
        let c = cfg(FaultKind::ALL.to_vec());
        for i in 0..50 {
            let (a, b) = (Schedule::draw(&c, i), Schedule::draw(&c, i));
            assert_eq!((a.kind, &a.steps, a.seed), (b.kind, &b.steps, b.seed));
        }
        let seeds: std::collections::HashSet<u64> =
            (0..1000).map(|i| schedule_seed(42, i)).collect();
        assert_eq!(seeds.len(), 1000, "schedules differ");
        assert_ne!(schedule_seed(42, 0), schedule_seed(43, 0));
    }

    #[test]
    fn lab1_schedules_halt_one_server_and_crash_points_fit_the_role() {
        let c = cfg(FaultKind::LAB1.to_vec());
        let mut points = std::collections::HashSet::new();
        for i in 0..400 {
            let s = Schedule::draw(&c, i);
            assert_eq!(s.steps.len(), 1, "one server fails, once");
            match &s.steps[0].1 {
                Action::Crash(_) => {}
                Action::CrashAt(on, p) => {
                    assert_eq!(*on == "s2", *p == CrashPoint::BeforeAck);
                    points.insert(*p);
                }
                other => panic!("{other:?} is beyond Lab 1's model"),
            }
            let at = s.steps[0].0;
            assert!((150..=1050).contains(&at), "{at} within the calls");
            assert_eq!(s.length, c.ops);
        }
        assert_eq!(points.len(), 4, "every crash point is drawn");
    }

    #[test]
    fn every_kind_is_drawn_and_ends_what_it_starts() {
        let c = cfg(FaultKind::ALL.to_vec());
        let mut kinds = std::collections::HashSet::new();
        for i in 0..400 {
            let s = Schedule::draw(&c, i);
            kinds.insert(s.kind);
            let started = s.steps.iter().filter(|(_, a)| a.injects()).count();
            assert!(started >= 1);
            if matches!(
                s.kind,
                FaultKind::Hang | FaultKind::Partition | FaultKind::Loss
            ) {
                assert!(!s.steps.last().expect("steps").1.injects(), "{s:?} ends");
                assert!(s.length >= c.ops + TIMEOUT_ALLOWANCE);
            }
        }
        assert_eq!(kinds.len(), FaultKind::ALL.len());
    }

    #[test]
    fn the_reproducing_command_names_every_flag_that_shapes_the_schedule() {
        let mut c = cfg(vec![FaultKind::Crash, FaultKind::Hang]);
        c.variant = Some(Variant::NewIdOnRetry);
        assert_eq!(
            c.command_for(17),
            "pbscope check --seed 42 --first 17 --schedules 1 --faults crash,hang --clients 3 --locks 2 --ops-ms 1500 --variant new-id-on-retry"
        );
    }

    #[test]
    fn fault_kind_names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(k.name()), Some(k));
        }
        assert_eq!(FaultKind::from_name("meteor"), None);
    }
}
