//! `pbscope bench`: throughput and latency of the real cluster under the load generator, side by
//! side with Redis (primary + replica, `WAIT 1 0`), and the failover window.
//!
//! Every phase starts a fresh cluster like `serve`'s (real node processes, real TCP, every event
//! through the bus) and drives it with the load generator ([`crate::load`]): K clerks, closed
//! loop, Lock or Unlock (half each) on `load-0..load-{K-1}`. A phase warms up for
//! [`WARM_UP`], then measures for `--seconds`. With `--viewer`, the same phase runs again with
//! the real gateway on a loopback port and a real WebSocket viewer that reads every event
//! (counting them and checking that their `seq`s follow on). With `--redis`, the Redis anchor
//! ([`crate::redis_anchor`]) runs the same clients on the same number of keys. `--failover N`
//! kills the primary N times under a closed-loop load of [`FAILOVER_CLIENTS`] clerks, a reset
//! between kills so a fresh pair serves each, and times each window from the SIGKILL to the
//! first call the backup answers (`op_completed` with `server` = the backup, on the run's one
//! monotonic clock). It prints numbers and asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared::{EventKind, LoadDistribution, LoadSettings, NodeRef, Role, ServerMsg};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusConfig};
use crate::clock::RunClock;
use crate::cluster::{Cluster, ClusterConfig};
use crate::cpu::{CpuReading, CpuSplit, Party};
use crate::gateway::{self, GatewayConfig};
use crate::load::Tally;

/// Calls before the measurement starts (connections made, caches warm).
pub const WARM_UP: Duration = Duration::from_millis(500);

/// Clerks of the load during `--failover`, unless `--failover-clients` says otherwise.
pub const FAILOVER_CLIENTS: u32 = 16;

/// Longest a failover window may take before the kill counts as not recovered.
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub cluster: ClusterConfig,
    pub clients: Vec<u32>,
    pub seconds: f64,
    pub viewer: bool,
    pub failover: u32,
    /// Clerks calling closed loop while the primary is killed (`--failover-clients`).
    pub failover_clients: u32,
    pub redis: bool,
    pub json: bool,
    /// Times each client count's phases run, interleaved (1 to 20): the table gives each
    /// system's middle round, so a few seconds of a busy machine move one round, not the ratio.
    pub rounds: u32,
}

/// One measured phase.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub system: &'static str,
    pub clients: u32,
    pub viewer: bool,
    pub ops: u64,
    pub failed: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Events the bus published during the measurement (pbscope only).
    pub events: u64,
    /// What the viewer saw (viewer on only).
    pub viewer_report: Option<ViewerReport>,
    /// CPU µs per operation by process over the measurement (see [`crate::cpu`]): for
    /// pbscope the supervisor (with the load's clerks), each server, and the viewer's thread
    /// (taken out of the supervisor's: it stands for a browser); for Redis the bench's clients
    /// and the two servers.
    pub cpu: Option<CpuSplit>,
}

impl Row {
    fn from_tally(clients: u32, viewer: bool, t: &Tally, seconds: f64, events: u64) -> Self {
        Row {
            system: "pbscope",
            clients,
            viewer,
            ops: t.ok(),
            failed: t.failed,
            seconds,
            ops_per_s: t.ok() as f64 / seconds,
            p50_us: t.latency.quantile(0.5),
            p99_us: t.latency.quantile(0.99),
            max_us: t.latency.max(),
            events,
            viewer_report: None,
            cpu: None,
        }
    }
}

/// What the bench's WebSocket viewer read.
#[derive(Debug, Clone, Default)]
pub struct ViewerReport {
    /// Events received: in `events` frames, and those of a resync snapshot it had not read.
    pub events: u64,
    /// Events it never got: gaps in `seq`, and the `missed` of a snapshot sent after it fell
    /// behind the bus.
    pub missed: u64,
    /// Snapshots received after the first (each one: it fell behind).
    pub resyncs: u64,
    /// Events the bus had published that it had not read when the phase ended and it was given
    /// [`VIEWER_CATCH_UP`] to catch up.
    pub behind: u64,
    pub bytes: u64,
    /// Frames it could not decode into the wire types (none, unless the wire is broken).
    pub undecodable: u64,
}

/// How long the viewer may take to read what the bus published once the load stopped.
const VIEWER_CATCH_UP: Duration = Duration::from_secs(5);

/// The failover windows measured.
#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    pub clients: u32,
    pub kills: u32,
    /// Windows in µs, one per kill that recovered.
    pub windows_us: Vec<u64>,
    /// The supervisor's own timing of the same failovers (its `failover` events, over every
    /// call, by the failover timeline's rule), in µs: a second measure beside the bench's.
    pub timed_us: Vec<u64>,
    /// Kills after which the backup answered nothing within [`FAILOVER_GIVE_UP`].
    pub not_recovered: u32,
    /// The load's own calls over the kills (resets and waits included): what clients lived
    /// through, next to the windows.
    pub load: Row,
}

impl FailoverReport {
    fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.windows_us, q)
    }
}

/// The `q` quantile of `windows_us`, in ms (0 for none).
fn quantile_ms(windows_us: &[u64], q: f64) -> f64 {
    let mut w = windows_us.to_vec();
    w.sort_unstable();
    if w.is_empty() {
        return 0.0;
    }
    // Nearest rank: the smallest window with at least q of all at or below it.
    let rank = ((q * w.len() as f64).ceil() as usize).clamp(1, w.len());
    w[rank - 1] as f64 / 1000.0
}

/// "1 client", "16 clients".
fn clients_text(n: u32) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

/// Progress, on stderr.
fn progress(msg: impl AsRef<str>) {
    use std::io::Write as _;
    // Like `out!`: progress into a closed pipe (`2>&1 | head`) is dropped, not a panic.
    let _ = writeln!(std::io::stderr(), "bench: {}", msg.as_ref());
}

fn bench_settings(clients: u32) -> LoadSettings {
    LoadSettings {
        clients,
        rate: 0,
        locks: clients.max(1),
        distribution: LoadDistribution::Uniform,
        unlock_share: 0.5,
    }
}

/// A fresh cluster for one phase (no live checker: the bench measures the lock service and its
/// event stream).
async fn fresh_cluster(cfg: &ClusterConfig) -> anyhow::Result<Arc<Cluster>> {
    let bus = Bus::new(RunClock::start(), BusConfig::default());
    Cluster::start(bus, cfg.clone()).await
}

/// One pbscope phase: K clerks closed loop, measured after the warm-up; with `viewer`, through
/// a real gateway to a real WebSocket viewer.
pub async fn run_pbscope(
    cfg: &ClusterConfig,
    clients: u32,
    seconds: f64,
    viewer: bool,
) -> anyhow::Result<Row> {
    let cluster = fresh_cluster(cfg).await?;
    let shutdown = CancellationToken::new();
    let mut watcher = None;
    if viewer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(gateway::run(
            listener,
            cluster.clone(),
            GatewayConfig::default(),
            shutdown.clone(),
        ));
        watcher = Some(Viewer::attach(&format!("ws://{addr}/ws")).await?);
    }
    let result = async {
        let load = cluster.load();
        load.set(bench_settings(clients))
            .await
            .map_err(|e| anyhow::anyhow!("starting the load: {e}"))?;
        tokio::time::sleep(WARM_UP).await;
        load.take_totals();
        let first_seq = cluster.bus().last_seq();
        let parties = pbscope_parties(&cluster, watcher.as_ref().map(|w| w.tid));
        let cpu_before = CpuReading::take(&parties);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let tally = load.take_totals();
        let cpu_after = CpuReading::take(&parties);
        let secs = started.elapsed().as_secs_f64();
        let events = cluster.bus().last_seq() - first_seq;
        load.stop().await.ok();
        let mut row = Row::from_tally(clients, viewer, &tally, secs, events);
        row.cpu = Some(cpu_before.per_op(
            &cpu_after,
            tally.ok(),
            Some((VIEWER_PARTY, SUPERVISOR_PARTY)),
        ));
        if let Some(w) = watcher.take() {
            row.viewer_report = Some(w.finish(cluster.bus()).await);
        }
        Ok(row)
    }
    .await;
    shutdown.cancel();
    cluster.shutdown().await;
    result
}

const SUPERVISOR_PARTY: &str = "supervisor";
const VIEWER_PARTY: &str = "viewer";

/// Whose CPU a pbscope phase reports: this process (the supervisor, the bus and the load's
/// clerks), each server process, and the viewer's thread.
fn pbscope_parties(cluster: &Cluster, viewer_tid: Option<u32>) -> Vec<(String, Party)> {
    let mut parties = vec![(
        SUPERVISOR_PARTY.to_owned(),
        Party::Process(std::process::id()),
    )];
    let nodes = cluster.bus().view(|c| c.nodes());
    for n in nodes {
        if let Some(pid) = n.pid {
            parties.push((n.id.to_string(), Party::Process(pid)));
        }
    }
    if let Some(tid) = viewer_tid {
        parties.push((VIEWER_PARTY.to_owned(), Party::OwnThread(tid)));
    }
    parties
}

/// The bench's viewer: a WebSocket client of the real gateway that reads every frame, on a
/// thread and a runtime of its own at the normal priority, as a browser is a process of its own.
struct Viewer {
    report: tokio::sync::oneshot::Receiver<ViewerReport>,
    /// The last seq it read.
    last: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
    /// Its thread's id, for its CPU time.
    tid: u32,
}

impl Viewer {
    async fn attach(url: &str) -> anyhow::Result<Self> {
        let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (seen, stopped, url) = (last.clone(), stop.clone(), url.to_owned());
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let (report_tx, report) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("bench-viewer".into())
            .spawn(move || {
                let tid = crate::cpu::current_tid();
                runtime.block_on(async move {
                    match connect(&url).await {
                        Ok(ws) => {
                            let _ = connected_tx.send(Ok(tid));
                            let _ = report_tx.send(read_all(ws, seen, stopped).await);
                        }
                        Err(e) => {
                            let _ = connected_tx.send(Err(e));
                        }
                    }
                })
            })?;
        let tid = connected
            .await
            .map_err(|_| anyhow::anyhow!("the bench's viewer thread ended"))??;
        Ok(Self {
            report,
            last,
            stop,
            tid,
        })
    }

    /// Waits (a while) for the viewer to read everything the bus published, then ends it.
    async fn finish(self, bus: &Bus) -> ViewerReport {
        let target = bus.last_seq();
        let deadline = Instant::now() + VIEWER_CATCH_UP;
        while self.last.load(std::sync::atomic::Ordering::Relaxed) < target
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let behind = target.saturating_sub(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.stop.cancel();
        let mut r = self.report.await.unwrap_or_default();
        r.behind = behind;
        r
    }
}

type BenchWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, and asks for events in binary frames as the page does.
async fn connect(url: &str) -> anyhow::Result<BenchWs> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"type":"compact","on":true,"binary":true}"#,
    ))
    .await?;
    Ok(ws)
}

/// Reads every frame until `stopped`, decoding each as the page does: into the wire types,
/// every field of every event (`shared::ServerMsg`, through the page's readers:
/// `shared::binary::read_frame` for events frames, `shared::read_server_msg` for the rest).
async fn read_all(
    mut ws: BenchWs,
    seen: Arc<std::sync::atomic::AtomicU64>,
    stopped: CancellationToken,
) -> ViewerReport {
    let mut r = ViewerReport::default();
    let mut names = shared::binary::Names::default();
    let mut snapshots = 0u64;
    let mut last = 0u64;
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = stopped.cancelled() => break,
        };
        let Some(Ok(msg)) = frame else { break };
        let decoded = match msg {
            Message::Binary(bytes) => {
                r.bytes += bytes.len() as u64;
                shared::binary::read_frame(&bytes, &mut names)
                    .map(|events| ServerMsg::Events { events })
                    .ok()
            }
            Message::Text(text) => {
                r.bytes += text.len() as u64;
                shared::read_server_msg(text.as_str()).ok()
            }
            _ => continue,
        };
        let Some(msg) = decoded else {
            r.undecodable += 1;
            continue;
        };
        match msg {
            ServerMsg::Snapshot(snap) => {
                snapshots += 1;
                r.missed += snap.missed;
                // The first snapshot is the state before the phase; a later one (it fell
                // behind) lists the newest events, some maybe read already: the rest are read
                // now, and what lies between them and the last event read is its `missed`.
                if snapshots > 1 {
                    r.events += snap.events.iter().filter(|e| e.seq > last).count() as u64;
                }
                last = snap.next_seq.saturating_sub(1);
            }
            ServerMsg::Events { events } => {
                for e in &events {
                    if last != 0 && e.seq > last + 1 {
                        r.missed += e.seq - last - 1;
                    }
                    last = e.seq;
                    r.events += 1;
                }
            }
            _ => {}
        }
        seen.store(last, std::sync::atomic::Ordering::Relaxed);
    }
    r.resyncs = snapshots.saturating_sub(1);
    r
}

/// `--failover N`: N kills of the primary under a closed-loop load, a fresh pair for each.
pub async fn run_failover(
    cfg: &ClusterConfig,
    kills: u32,
    clients: u32,
) -> anyhow::Result<FailoverReport> {
    let cluster = fresh_cluster(cfg).await?;
    let result = failover_kills(&cluster, kills, clients).await;
    cluster.shutdown().await;
    result
}

async fn failover_kills(
    cluster: &Arc<Cluster>,
    kills: u32,
    clients: u32,
) -> anyhow::Result<FailoverReport> {
    let bus = cluster.bus().clone();
    let load = cluster.load();
    let mut report = FailoverReport {
        clients,
        kills,
        ..FailoverReport::default()
    };
    load.set(bench_settings(clients))
        .await
        .map_err(|e| anyhow::anyhow!("starting the load: {e}"))?;
    load.take_totals();
    let first_seq = bus.last_seq();
    let started = Instant::now();
    for k in 1..=kills {
        if k > 1 {
            cluster
                .reset()
                .await
                .map_err(|e| anyhow::anyhow!("reset before kill {k}: {e}"))?;
        }
        // The fresh pair serves: wait for a few answered calls first.
        let before = load.answered();
        let deadline = Instant::now() + FAILOVER_GIVE_UP;
        while load.answered() < before + 200 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let backup = bus
            .view(|c| c.holder_of(Role::Backup))
            .ok_or_else(|| anyhow::anyhow!("no backup before kill {k}"))?;
        let from_seq = bus.last_seq();
        let t_kill = bus.clock().now_us();
        cluster
            .crash(&NodeRef::Role(Role::Primary))
            .await
            .map_err(|e| anyhow::anyhow!("kill {k}: {e}"))?;
        match first_answer_from(&bus, from_seq, t_kill, backup.as_str()).await {
            Some(t) => {
                let w = t.saturating_sub(t_kill);
                report.windows_us.push(w);
                let timed = timed_failover(&bus, from_seq).await;
                report.timed_us.extend(timed);
                progress(format!(
                    "failover {k}/{kills}: {:.2} ms to the first answer from {backup}{}",
                    w as f64 / 1000.0,
                    match timed {
                        Some(t) => format!(" (the supervisor timed {:.2} ms)", t as f64 / 1000.0),
                        None => " (the supervisor timed none)".into(),
                    }
                ));
            }
            None => {
                report.not_recovered += 1;
                progress(format!(
                    "failover {k}/{kills}: {backup} answered nothing within {} s",
                    FAILOVER_GIVE_UP.as_secs()
                ));
            }
        }
    }
    let tally = load.take_totals();
    let events = bus.last_seq() - first_seq;
    report.load = Row::from_tally(
        clients,
        false,
        &tally,
        started.elapsed().as_secs_f64(),
        events,
    );
    load.stop().await.ok();
    Ok(report)
}

/// The time (run clock, µs) of the first `op_completed` answered by `server` at or after
/// `t_kill`, looking at the events after `from_seq` as they are published.
async fn first_answer_from(bus: &Bus, from_seq: u64, t_kill: u64, server: &str) -> Option<u64> {
    // Only an `op_completed` is read in full: its row's code `"C"` follows the node's name, its
    // object says its type (a lock named "C" only costs a read).
    let wanted = |text: &str| text.contains(",\"C\",") || text.contains("\"op_completed\"");
    first_event(bus, from_seq, FAILOVER_GIVE_UP, wanted, |e| match &e.kind {
        EventKind::OpCompleted { server: s, .. } if s.as_str() == server && e.t_us >= t_kill => {
            Some(e.t_us)
        }
        _ => None,
    })
    .await
}

/// The `window_us` of the first `failover` event after `from_seq`, waiting a little for it
/// (it follows the answer that ended the window, or the `crashed` when that came later).
async fn timed_failover(bus: &Bus, from_seq: u64) -> Option<u64> {
    let wanted = |text: &str| text.contains("\"failover\"");
    first_event(bus, from_seq, Duration::from_secs(2), wanted, |e| {
        match e.kind {
            EventKind::Failover { window_us, .. } => Some(window_us),
            _ => None,
        }
    })
    .await
}

/// Reads the events after `from_seq` as they are published, for up to `wait`: the first one
/// `pick` takes. Only the texts `wanted` lets through are parsed.
async fn first_event<T>(
    bus: &Bus,
    from_seq: u64,
    wait: Duration,
    wanted: impl Fn(&str) -> bool,
    pick: impl Fn(&shared::Event) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + wait;
    let mut next = from_seq;
    while Instant::now() < deadline {
        for logged in bus.since(next) {
            next = logged.seq;
            let text = logged.text();
            if !wanted(text) {
                continue;
            }
            if let Some(found) = serde_json::from_str::<shared::Event>(text)
                .ok()
                .as_ref()
                .and_then(&pick)
            {
                return Some(found);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The Redis phase for `clients`.
async fn run_redis(
    pair: &crate::redis_anchor::RedisPair,
    clients: u32,
    seconds: f64,
) -> anyhow::Result<Row> {
    // Its own warm-up, like pbscope's.
    crate::redis_anchor::closed_loop(pair, clients, clients.max(1), WARM_UP).await?;
    let [primary, replica] = pair.pids();
    let parties = [
        ("bench".to_owned(), Party::Process(std::process::id())),
        ("primary".to_owned(), Party::Process(primary)),
        ("replica".to_owned(), Party::Process(replica)),
    ];
    let cpu_before = CpuReading::take(&parties);
    let r = crate::redis_anchor::closed_loop(
        pair,
        clients,
        clients.max(1),
        Duration::from_secs_f64(seconds),
    )
    .await?;
    let cpu_after = CpuReading::take(&parties);
    Ok(Row {
        system: "redis",
        clients,
        viewer: false,
        ops: r.ops,
        failed: 0,
        seconds: r.seconds,
        ops_per_s: r.ops_per_s,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        max_us: r.max_us,
        events: 0,
        viewer_report: None,
        cpu: Some(cpu_before.per_op(&cpu_after, r.ops, None)),
    })
}

fn row_json(row: &Row, redis: Option<&Row>, off: Option<&Row>) -> serde_json::Value {
    let mut v = json!({
        "system": row.system,
        "clients": row.clients,
        "viewer": row.viewer,
        "ops_per_s": row.ops_per_s.round() as u64,
        "p50_us": row.p50_us,
        "p99_us": row.p99_us,
        "max_us": row.max_us,
        "ops": row.ops,
        "failed": row.failed,
        "seconds": (row.seconds * 1000.0).round() / 1000.0,
    });
    if let Some(cpu) = &row.cpu {
        v["cpu_us_per_op"] = json!(round1(cpu.total()));
        let split: serde_json::Map<String, serde_json::Value> = cpu
            .parts
            .iter()
            .map(|(n, us)| (n.clone(), json!(round1(*us))))
            .collect();
        v["cpu_split_us"] = serde_json::Value::Object(split);
    }
    if row.system == "pbscope" {
        v["events"] = json!(row.events);
        v["events_per_s"] = json!((row.events as f64 / row.seconds).round() as u64);
        if let Some(r) = redis {
            v["ratio_ops_vs_redis"] = json!(ratio(row.ops_per_s, r.ops_per_s));
            v["ratio_p50_vs_redis"] = json!(ratio(row.p50_us as f64, r.p50_us as f64));
            if let Some(cpu) = cpu_ratio(row, r) {
                v["ratio_cpu_vs_redis"] = json!(cpu);
            }
        }
    }
    if let Some(w) = &row.viewer_report {
        v["viewer_events"] = json!(w.events);
        v["viewer_missed"] = json!(w.missed);
        v["viewer_resyncs"] = json!(w.resyncs);
        v["viewer_behind"] = json!(w.behind);
        v["viewer_undecodable"] = json!(w.undecodable);
        v["viewer_mb"] = json!((w.bytes as f64 / 1e6 * 10.0).round() / 10.0);
        if let Some(off) = off {
            v["viewer_cost_pct"] = json!(cost_pct(off, row));
        }
    }
    v
}

/// A pbscope row against Redis's at the same client count, for the table: throughput, p50,
/// and CPU per call (the steadier measure on a shared machine: one system's throughput moves
/// between rounds minutes apart, its cost per call much less).
fn vs_redis(r: &Row, red: &Row) -> String {
    let mut words = format!(
        "{:.2}x redis ops/s, p50 {:.2}x",
        ratio(r.ops_per_s, red.ops_per_s),
        ratio(r.p50_us as f64, red.p50_us as f64)
    );
    if let Some(cpu) = cpu_ratio(r, red) {
        words.push_str(&format!(", cpu/call {cpu:.2}x"));
    }
    words
}

/// pbscope's CPU per call over Redis's, when both were measured.
fn cpu_ratio(r: &Row, red: &Row) -> Option<f64> {
    let (ours, theirs) = (r.cpu.as_ref()?.total(), red.cpu.as_ref()?.total());
    (theirs > 0.0).then(|| ratio(ours, theirs))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b <= 0.0 {
        return 0.0;
    }
    (a / b * 100.0).round() / 100.0
}

/// Throughput lost with the viewer on, in % of the throughput without it.
fn cost_pct(off: &Row, on: &Row) -> f64 {
    if off.ops_per_s <= 0.0 {
        return 0.0;
    }
    ((off.ops_per_s - on.ops_per_s) / off.ops_per_s * 1000.0).round() / 10.0
}

/// The viewer's cost for the table. A negative one is a round with the viewer that ran faster
/// than the one without: the machine's noise, not a viewer that speeds pbscope up.
fn cost_words(pct: f64) -> String {
    // -0.0 (a cost that rounds to nothing from below) reads "0.0%".
    let pct = pct + 0.0;
    if pct < 0.0 {
        format!(
            "viewer cost none measured (the run with it was {:.1}% faster: noise)",
            -pct
        )
    } else {
        format!("viewer cost {pct:.1}%")
    }
}

/// Runs every phase asked for and prints the table (or JSON lines) on stdout.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let per_round = 1 + cfg.viewer as u32 + cfg.redis as u32;
    let rounds = cfg.rounds.max(1);
    let phases = cfg.clients.len() as u32 * per_round * rounds;
    progress(format!(
        "{} phase(s) of {} s (+{} ms warm-up each){}{}; the machine: {} cores",
        phases,
        cfg.seconds,
        WARM_UP.as_millis(),
        if rounds > 1 {
            format!(", {rounds} interleaved rounds per client count")
        } else {
            String::new()
        },
        if cfg.failover > 0 {
            format!(
                ", then {} primary kills under {} clerks",
                cfg.failover, cfg.failover_clients
            )
        } else {
            ", no failover phase (--failover N kills the primary N times)".to_owned()
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    let redis = if cfg.redis {
        progress("starting Redis (primary + replica)");
        let pair = crate::redis_anchor::RedisPair::start().await?;
        progress(format!("Redis {} is in sync", pair.version()));
        Some(pair)
    } else {
        None
    };
    let mut done = 0;
    let mut rows: Vec<Measured> = Vec::new();
    for &clients in &cfg.clients {
        let mut measured: Vec<Measured> = Vec::new();
        for round in 0..rounds {
            let mut order = vec![Phase::Off];
            if cfg.viewer {
                order.push(Phase::On);
            }
            if redis.is_some() {
                order.push(Phase::Redis);
            }
            // Each round starts with another system: none always runs first, or always last.
            let len = order.len();
            order.rotate_left(round as usize % len);
            let mut m = Measured::default();
            for phase in order {
                done += 1;
                let of_round = if rounds > 1 {
                    format!(", round {}/{rounds}", round + 1)
                } else {
                    String::new()
                };
                let who = clients_text(clients);
                let what = match phase {
                    Phase::Off => format!("pbscope, {who}, viewer off"),
                    Phase::On => format!("pbscope, {who}, viewer on"),
                    Phase::Redis => format!("redis, {who}"),
                };
                progress(format!("[{done}/{phases}] {what}{of_round}"));
                match phase {
                    Phase::Off => {
                        m.off = run_pbscope(&cfg.cluster, clients, cfg.seconds, false).await?
                    }
                    Phase::On => {
                        m.on = Some(run_pbscope(&cfg.cluster, clients, cfg.seconds, true).await?)
                    }
                    Phase::Redis => {
                        if let Some(pair) = &redis {
                            m.redis = Some(run_redis(pair, clients, cfg.seconds).await?);
                        }
                    }
                }
            }
            if cfg.json && rounds > 1 {
                m.say_json(Some(json!(round + 1)));
            }
            measured.push(m);
        }
        let m = Measured::middle(measured);
        if cfg.json {
            m.say_json((rounds > 1).then(|| json!("middle")));
        }
        rows.push(m);
    }
    drop(redis);
    let failover = if cfg.failover > 0 {
        progress(format!(
            "failover: {} kills of the primary under {} clerks",
            cfg.failover, cfg.failover_clients
        ));
        let f = run_failover(&cfg.cluster, cfg.failover, cfg.failover_clients).await?;
        if cfg.json {
            crate::say!(
                "{}",
                json!({
                    "system": "pbscope",
                    "clients": f.clients,
                    "viewer": false,
                    "kills": f.kills,
                    "recovered": f.windows_us.len(),
                    "failover_p50_ms": f.quantile_ms(0.5),
                    "failover_p99_ms": f.quantile_ms(0.99),
                    "failover_max_ms": f.quantile_ms(1.0),
                    "timed": f.timed_us.len(),
                    "timed_p50_ms": quantile_ms(&f.timed_us, 0.5),
                    "timed_p99_ms": quantile_ms(&f.timed_us, 0.99),
                    "ops_per_s": f.load.ops_per_s.round() as u64,
                    "p50_us": f.load.p50_us,
                    "p99_us": f.load.p99_us,
                    "max_us": f.load.max_us,
                    "ops": f.load.ops,
                    "failed": f.load.failed,
                    "seconds": (f.load.seconds * 100.0).round() / 100.0,
                })
            );
        }
        Some(f)
    } else {
        None
    };
    if !cfg.json {
        print_table(&rows, failover.as_ref());
    }
    Ok(())
}

/// The phases of one round for one client count.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Off,
    On,
    Redis,
}

/// One client count's rows: pbscope without and with the viewer, Redis; and, when there were
/// several rounds, each system's throughput in every round (in the order they ran).
#[derive(Debug, Default)]
struct Measured {
    off: Row,
    on: Option<Row>,
    redis: Option<Row>,
    rounds: Vec<[Option<f64>; 3]>,
    /// What went wrong in each system's rounds other than its middle one (which the table's
    /// row shows in full): a failed call or a missed event there must not hide behind it.
    others: [Trouble; 3],
}

/// Failed calls, and what a viewer missed, over some rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Trouble {
    failed: u64,
    missed: u64,
    behind: u64,
    undecodable: u64,
}

impl Trouble {
    fn of(row: &Row) -> Trouble {
        let w = row.viewer_report.clone().unwrap_or_default();
        Trouble {
            failed: row.failed,
            missed: w.missed,
            behind: w.behind,
            undecodable: w.undecodable,
        }
    }

    fn add(self, o: Trouble) -> Trouble {
        Trouble {
            failed: self.failed + o.failed,
            missed: self.missed + o.missed,
            behind: self.behind + o.behind,
            undecodable: self.undecodable + o.undecodable,
        }
    }

    /// "3 failed, 120 missed" (only what is not 0), or nothing.
    fn words(&self) -> String {
        [
            (self.failed, "failed"),
            (self.missed, "missed"),
            (self.behind, "behind"),
            (self.undecodable, "frames undecodable"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The index of `row`'s system in [`Measured::rounds`] and [`Measured::others`].
fn system_index(row: &Row) -> usize {
    match (row.system, row.viewer) {
        ("pbscope", false) => 0,
        ("pbscope", true) => 1,
        _ => 2,
    }
}

impl Measured {
    /// The JSON lines of these rows; `round` is added to each when there were several.
    fn say_json(&self, round: Option<serde_json::Value>) {
        let red = self.redis.as_ref();
        let mut lines = vec![(&self.off, row_json(&self.off, red, None))];
        if let Some(on) = &self.on {
            lines.push((on, row_json(on, red, Some(&self.off))));
        }
        if let Some(r) = red {
            lines.push((r, row_json(r, None, None)));
        }
        for (row, mut line) in lines {
            if let Some(round) = &round {
                line["round"] = round.clone();
                if round.is_string() {
                    line["rounds"] = json!(self.rounds.len());
                    line["ops_per_s_by_round"] = json!(self
                        .by_round(row)
                        .iter()
                        .map(|x| x.round() as u64)
                        .collect::<Vec<_>>());
                    let o = self.others[system_index(row)];
                    line["other_rounds_failed"] = json!(o.failed);
                    if row.viewer {
                        line["other_rounds_viewer_missed"] = json!(o.missed);
                        line["other_rounds_viewer_behind"] = json!(o.behind);
                        line["other_rounds_viewer_undecodable"] = json!(o.undecodable);
                    }
                }
            }
            crate::say!("{line}");
        }
    }

    /// The throughput, round by round, of the system `row` is about.
    fn by_round(&self, row: &Row) -> Vec<f64> {
        let i = system_index(row);
        self.rounds.iter().filter_map(|r| r[i]).collect()
    }

    /// Each system's middle round by throughput (the upper middle of an even count), and
    /// every round's throughput. Ratios and the viewer's cost are then taken between middles.
    fn middle(all: Vec<Measured>) -> Measured {
        let rounds: Vec<[Option<f64>; 3]> = all
            .iter()
            .map(|m| {
                [
                    Some(m.off.ops_per_s),
                    m.on.as_ref().map(|r| r.ops_per_s),
                    m.redis.as_ref().map(|r| r.ops_per_s),
                ]
            })
            .collect();
        // The middle row, and the trouble of the others.
        let pick = |mut rows: Vec<Row>| -> (Option<Row>, Trouble) {
            rows.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
            let mid = rows.len() / 2;
            let others = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != mid)
                .fold(Trouble::default(), |t, (_, r)| t.add(Trouble::of(r)));
            (rows.into_iter().nth(mid), others)
        };
        let mut offs = Vec::new();
        let mut ons = Vec::new();
        let mut reds = Vec::new();
        for m in all {
            offs.push(m.off);
            ons.extend(m.on);
            reds.extend(m.redis);
        }
        let (off, off_others) = pick(offs);
        let (on, on_others) = pick(ons);
        let (redis, redis_others) = pick(reds);
        Measured {
            off: off.unwrap_or_default(),
            on,
            redis,
            rounds,
            others: [off_others, on_others, redis_others],
        }
    }
}

fn print_table(rows: &[Measured], failover: Option<&FailoverReport>) {
    crate::say!(
        "pbscope bench: closed loop, K clerks, Lock or Unlock on K locks, every call through primary and backup, every event on the bus"
    );
    crate::say!(
        "{:>7}  {:<16} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}  notes",
        "clients",
        "system",
        "ops/s",
        "p50 us",
        "p99 us",
        "max us",
        "events/s",
        "cpu us"
    );
    for m in rows {
        let (off, on, red) = (&m.off, &m.on, &m.redis);
        let line = |r: &Row, name: &str, notes: String| {
            let notes = if m.rounds.len() > 1 {
                let each: Vec<String> = m.by_round(r).iter().map(|v| format!("{v:.0}")).collect();
                let trouble = m.others[system_index(r)].words();
                let rounds = format!(
                    "middle of {} rounds (ops/s {}{})",
                    m.rounds.len(),
                    each.join(" "),
                    if trouble.is_empty() {
                        String::new()
                    } else {
                        format!("; the other rounds: {trouble}")
                    }
                );
                [rounds, notes]
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                notes
            };
            let (cpu, split) = match &r.cpu {
                Some(c) => (
                    format!("{:.1}", c.total()),
                    format!("; cpu/call: {}", c.words()),
                ),
                None => ("-".to_owned(), String::new()),
            };
            let notes = format!("{notes}{split}");
            crate::say!(
                "{:>7}  {:<16} {:>9.0} {:>8} {:>8} {:>8} {:>9} {:>8}  {}",
                r.clients,
                name,
                r.ops_per_s,
                r.p50_us,
                r.p99_us,
                r.max_us,
                if r.system == "pbscope" {
                    format!("{:.0}", r.events as f64 / r.seconds)
                } else {
                    "-".into()
                },
                cpu,
                notes.trim_start_matches("; ")
            )
        };
        let vs = |r: &Row| match red {
            Some(red) => format!("{}; ", vs_redis(r, red)),
            None => String::new(),
        };
        let failed = |r: &Row| {
            if r.failed > 0 {
                format!("{} failed; ", r.failed)
            } else {
                String::new()
            }
        };
        let notes = |parts: String| parts.trim_end_matches("; ").to_owned();
        line(off, "pbscope", notes(format!("{}{}", vs(off), failed(off))));
        if let Some(on) = on {
            let w = on.viewer_report.clone().unwrap_or_default();
            line(
                on,
                "pbscope+viewer",
                format!(
                    "{}{}{}, read {} events, missed {}, behind {}{}",
                    vs(on),
                    failed(on),
                    cost_words(cost_pct(off, on)),
                    w.events,
                    w.missed,
                    w.behind,
                    if w.undecodable > 0 {
                        format!(", {} frames undecodable", w.undecodable)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        if let Some(red) = red {
            line(red, "redis+WAIT", String::new());
        }
    }
    let Some(f) = failover else {
        crate::say!("failover: not measured (--failover N kills the primary N times under load)");
        return;
    };
    crate::say!(
        "failover ({} clerks, {} kills of the primary, a fresh pair each): SIGKILL -> first answer from the backup p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; timed by the supervisor (failover events, {} of them) p50 {:.2} ms, p99 {:.2} ms; the load over the kills {:.0} ops/s, p50 {} us, p99 {} us, {} failed{}",
        f.clients,
        f.kills,
        f.quantile_ms(0.5),
        f.quantile_ms(0.99),
        f.quantile_ms(1.0),
        f.timed_us.len(),
        quantile_ms(&f.timed_us, 0.5),
        quantile_ms(&f.timed_us, 0.99),
        f.load.ops_per_s,
        f.load.p50_us,
        f.load.p99_us,
        f.load.failed,
        if f.not_recovered > 0 {
            format!("; {} kills not recovered within {} s", f.not_recovered, FAILOVER_GIVE_UP.as_secs())
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The viewer's tally over a stream with two resyncs: one that lists events already read,
    /// one after a gap. Before, a resync snapshot's events counted neither as read nor as
    /// missed.
    #[tokio::test]
    async fn the_viewer_counts_a_resync_snapshot_s_new_events_as_read() {
        use shared::{Event, FaultPlan, Snapshot};

        let events = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Event> {
            seqs.map(|seq| Event {
                seq,
                t_us: seq,
                node: "s1".into(),
                kind: EventKind::ClusterReset { generation: 0 },
            })
            .collect()
        };
        let snapshot = |listed: Vec<Event>, next_seq: u64, missed: u64| {
            ServerMsg::Snapshot(Box::new(Snapshot {
                nodes: vec![],
                clients: vec![],
                events: listed,
                next_seq,
                missed,
                generation: 0,
                slow_motion_ms: 0,
                now_us: 0,
                faults: FaultPlan::default(),
                held: vec![],
                verdicts: vec![],
                load: None,
                marks: vec![],
            }))
        };
        let frames = [
            // At connect: the state before the phase, not counted.
            snapshot(events(1..=3), 4, 0),
            ServerMsg::Events {
                events: events(4..=6),
            },
            // Behind the bus: 5 and 6 again, then 7 to 10.
            snapshot(events(5..=10), 11, 0),
            ServerMsg::Events {
                events: events(11..=12),
            },
            // Behind again, 13 to 19 gone.
            snapshot(events(20..=21), 22, 7),
            ServerMsg::Events {
                events: events(22..=22),
            },
        ];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let _compact = ws.next().await;
            for f in &frames {
                let text = serde_json::to_string(f).unwrap();
                ws.send(Message::text(text)).await.unwrap();
            }
            ws.close(None).await.unwrap();
        });
        let ws = connect(&format!("ws://{addr}")).await.unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = read_all(ws, seen.clone(), CancellationToken::new()).await;
        server.await.unwrap();
        assert_eq!(
            (r.events, r.missed, r.resyncs, r.undecodable),
            (3 + 4 + 2 + 2 + 1, 7, 2, 0),
            "{r:?}"
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 22);
    }

    fn row(viewer: bool, ops_per_s: f64, failed: u64, missed: u64) -> Row {
        Row {
            system: "pbscope",
            clients: 16,
            viewer,
            ops_per_s,
            failed,
            viewer_report: viewer.then(|| ViewerReport {
                missed,
                ..ViewerReport::default()
            }),
            ..Row::default()
        }
    }

    fn round(off: Row, on: Row) -> Measured {
        Measured {
            off,
            on: Some(on),
            ..Measured::default()
        }
    }

    fn with_cpu(mut r: Row, parts: &[(&str, f64)]) -> Row {
        r.cpu = Some(CpuSplit {
            parts: parts.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        });
        r
    }

    /// Against Redis the table and the JSON give CPU per call too, when both were measured.
    #[test]
    fn a_row_against_redis_gives_its_cpu_per_call_ratio() {
        let mut ours = with_cpu(
            row(false, 600.0, 0, 0),
            &[("supervisor", 15.0), ("s1", 11.0), ("s2", 4.0)],
        );
        ours.p50_us = 210;
        let mut redis = with_cpu(
            Row {
                system: "redis",
                ops_per_s: 500.0,
                ..Row::default()
            },
            &[("bench", 13.0), ("primary", 9.0), ("replica", 2.0)],
        );
        redis.p50_us = 300;
        assert_eq!(
            vs_redis(&ours, &redis),
            "1.20x redis ops/s, p50 0.70x, cpu/call 1.25x"
        );
        let v = row_json(&ours, Some(&redis), None);
        assert_eq!(v["ratio_cpu_vs_redis"], json!(1.25));
        assert_eq!(v["ratio_ops_vs_redis"], json!(1.2));
        // Without a CPU reading on either side there is no CPU ratio.
        ours.cpu = None;
        assert_eq!(vs_redis(&ours, &redis), "1.20x redis ops/s, p50 0.70x");
        assert!(row_json(&ours, Some(&redis), None)
            .get("ratio_cpu_vs_redis")
            .is_none());
    }

    /// Found by review: a viewer round faster than the round without printed "viewer cost
    /// -9.8%", as if the viewer sped pbscope up.
    #[test]
    fn a_negative_viewer_cost_is_called_noise() {
        let off = row(false, 100.0, 0, 0);
        assert_eq!(
            cost_words(cost_pct(&off, &row(true, 80.0, 0, 0))),
            "viewer cost 20.0%"
        );
        let faster = cost_words(cost_pct(&off, &row(true, 109.8, 0, 0)));
        assert_eq!(
            faster,
            "viewer cost none measured (the run with it was 9.8% faster: noise)"
        );
        assert!(!faster.contains('-'));
        assert_eq!(cost_words(-0.0), "viewer cost 0.0%");
    }

    /// The middle round is shown in full; what failed in the others is summed beside it, not
    /// dropped with their latencies.
    #[test]
    fn the_middle_round_carries_the_trouble_of_the_others() {
        let m = Measured::middle(vec![
            round(row(false, 300.0, 0, 0), row(true, 250.0, 0, 7)),
            round(row(false, 100.0, 3, 0), row(true, 260.0, 1, 0)),
            round(row(false, 200.0, 0, 0), row(true, 150.0, 2, 40)),
        ]);
        assert_eq!(m.off.ops_per_s, 200.0);
        assert_eq!(m.off.failed, 0);
        assert_eq!(
            m.others[0],
            Trouble {
                failed: 3,
                ..Trouble::default()
            }
        );
        let on = m.on.as_ref().expect("the viewer's middle round");
        assert_eq!(on.ops_per_s, 250.0);
        assert_eq!(
            m.others[1],
            Trouble {
                failed: 3,
                missed: 40,
                ..Trouble::default()
            }
        );
        assert_eq!(m.others[1].words(), "3 failed, 40 missed");
        assert_eq!(m.others[2], Trouble::default());
        assert_eq!(m.others[2].words(), "");
        assert_eq!(m.by_round(on), vec![250.0, 260.0, 150.0]);
    }
}
