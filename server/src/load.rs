//! The load generator: many of Lab 1's clerks calling at once, inside the supervisor.
//!
//! Clerk `i` is client `LOAD_FIRST_CLIENT + i` (`c1001`, ...), a real clerk of the cluster
//! ([`Cluster::submit_load`]): one call at a time, the same retries and failover as any clerk,
//! its events on the bus like every clerk's. Only its process is shared: all the load's clerks
//! run as tasks of this one (the issue allows it), so a load of 256 clerks costs no 256
//! processes. A person's clients stay processes of their own.
//!
//! The engine runs one task per clerk index it was ever asked for; a clerk beyond the current
//! `clients` waits idle, so a retune never has two tasks driving one clerk. Closed loop (`rate`
//! 0), a clerk starts its next call when its last one ends; with a target rate, each clerk
//! paces its calls at `rate / clients` per second (still one at a time: a clerk that falls
//! behind calls back to back, and never bursts to catch up more than one call).
//!
//! Every 250 ms while it runs, the engine publishes `load_stats` (node `"load"`): the calls
//! that ended in the window, answered or failed, the answered ones' p50 and p99 from a
//! log-linear histogram (within 1.6 %; no sorting), and the messages sent per link. A reset or
//! a crash never wedges it: a call the reset ends comes back as failed, a call while the
//! cluster is being replaced waits and tries again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shared::{
    EventKind, LoadDistribution, LoadSettings, LoadStats, Op, LOAD_FIRST_CLIENT, LOAD_NODE,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::cluster::{Cluster, ClusterError};

/// How often `load_stats` is published.
pub const STATS_EVERY: Duration = Duration::from_millis(250);

/// How long a clerk waits before trying again when the cluster can't take a call (a reset is
/// under way, or it is not running).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Events the page comfortably draws per second in full; beyond it `sample_every` advises
/// drawing one load call in N.
const PAGE_EVENTS_PER_S: u64 = 5_000;

/// Events one load call puts on the log, about (invoke, request sent and delivered, executed
/// twice, forward and ack sent and delivered, reply sent and delivered, completed).
const EVENTS_PER_CALL: u64 = 12;

// ---------------------------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------------------------

/// Buckets per power of two: a recorded value is known within 1/64 of itself.
const SUB: u64 = 32;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (2 * SUB + 58 * SUB) as usize;

/// A log-linear histogram of µs values: exact below 64, then 32 buckets per power of two.
/// Recording is O(1); a percentile is one pass over the buckets, whatever the count.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros());
    let shift = msb - 5; // v >> shift is in [32, 64)
    let sub = (v >> shift) - SUB;
    (2 * SUB + (shift - 1) * SUB + sub) as usize
}

/// The middle of bucket `i`'s range.
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = (i - 2 * SUB) / SUB + 1;
    let sub = (i - 2 * SUB) % SUB + SUB;
    (sub << shift) + (1u64 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        self.counts[bucket_of(us).min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.5 for the median), 0 when empty. Never above the largest
    /// value recorded.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank of the value, 1-based: the smallest value with at least q of all at or below.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.max = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Counts
// ---------------------------------------------------------------------------------------------

/// Calls that ended: answered (with their latencies) and failed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub latency: Histogram,
    pub failed: u64,
}

impl Tally {
    fn clear(&mut self) {
        self.latency.clear();
        self.failed = 0;
    }

    pub fn ok(&self) -> u64 {
        self.latency.count()
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Since the last `load_stats`.
    window: Tally,
    /// Since the last [`LoadEngine::take_totals`] (for `pbscope bench`).
    total: Tally,
    /// When the load last started: the first window is measured from here, not from the
    /// ticker's tick before the load existed.
    started: Option<Instant>,
    /// Answered and given-up calls since the load last started (from stopped): `load_stats`'s
    /// `total_ok` and `total_failed`.
    run_ok: u64,
    run_failed: u64,
    /// Which start of the load from stopped this is (1 for the first). A call counts in the
    /// window and the run's totals only if it started in the run that is on: a clerk finishes
    /// its call in progress after a stop, which with both servers dead takes seconds, and a
    /// load started meanwhile must not count that call as one of its own failures.
    run: u64,
}

impl Counts {
    /// The load starts from stopped: a new window, a new run.
    fn begin_run(&mut self, now: Instant) {
        self.window.clear();
        self.started = Some(now);
        self.run_ok = 0;
        self.run_failed = 0;
        self.run += 1;
    }

    /// A call that started in run `run` ended: answered after `latency_us`, or failed (`None`).
    fn record(&mut self, run: u64, latency_us: Option<u64>) {
        let this_run = run == self.run;
        match latency_us {
            Some(us) => {
                self.total.latency.record(us);
                if this_run {
                    self.window.latency.record(us);
                    self.run_ok += 1;
                }
            }
            None => {
                self.total.failed += 1;
                if this_run {
                    self.window.failed += 1;
                    self.run_failed += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

/// See the module docs. One per cluster ([`Cluster::load`]).
#[derive(Debug)]
pub struct LoadEngine {
    cluster: Weak<Cluster>,
    bus: Arc<Bus>,
    settings: watch::Sender<LoadSettings>,
    counts: Arc<Mutex<Counts>>,
    /// Answered calls ever (for `pbscope bench --failover`: has a call been answered since?).
    answered: Arc<AtomicU64>,
    /// Clerk `i`'s task at index `i`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    ticker: JoinHandle<()>,
    /// Set by [`LoadEngine::halt`]: no clerk starts again.
    halted: std::sync::atomic::AtomicBool,
    /// Held from reading the settings to publishing the change: two viewers changing the load
    /// at once publish their `load_changed` in the order the settings took effect.
    changing: Mutex<()>,
}

impl Drop for LoadEngine {
    fn drop(&mut self) {
        self.ticker.abort();
        for t in self.tasks().iter() {
            t.abort();
        }
    }
}

impl LoadEngine {
    pub(crate) fn new(cluster: Weak<Cluster>, bus: Arc<Bus>) -> Arc<Self> {
        let settings = watch::Sender::new(LoadSettings::STOPPED);
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let ticker = tokio::spawn(ticker(bus.clone(), settings.subscribe(), counts.clone()));
        Arc::new(Self {
            cluster,
            bus,
            settings,
            counts,
            answered: Arc::default(),
            tasks: Mutex::new(Vec::new()),
            ticker,
            halted: std::sync::atomic::AtomicBool::new(false),
            changing: Mutex::new(()),
        })
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings in force.
    pub fn settings(&self) -> LoadSettings {
        *self.settings.borrow()
    }

    /// Starts the load, or changes it while it runs (`clients: 0` stops it). Refused, with the
    /// load untouched, when a value is out of range or the cluster is not running.
    pub async fn set(&self, new: LoadSettings) -> Result<String, ClusterError> {
        if let Some(why) = new.invalid() {
            return Err(ClusterError::BadField(why));
        }
        let cluster = self
            .cluster
            .upgrade()
            .filter(|_| !self.halted.load(Ordering::SeqCst))
            .ok_or_else(|| ClusterError::Unavailable("the cluster is shutting down".into()))?;
        if new.clients > 0 {
            if cluster.is_resetting() {
                return Err(ClusterError::Unavailable(refused_during_reset(
                    self.settings(),
                )));
            }
            if !cluster.is_running().await {
                return Err(ClusterError::Unavailable(
                    "the cluster is not running".into(),
                ));
            }
        }
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.settings();
        if old.clients == 0 && new.clients == 0 {
            // Stopping a load that is not running changes nothing, whatever else it says.
            return Ok("the load was not running".into());
        }
        let changed = old != new;
        if changed {
            if old.clients == 0 && new.clients > 0 {
                self.bus.count_links(true);
                self.counts().begin_run(Instant::now());
            }
            // Told first: the ticker (another thread) reads the settings, and a report of a
            // load no viewer has heard of yet came before its `load_changed` (the first-window
            // test failed 1 run in 4 on it).
            self.bus.publish(LOAD_NODE, EventKind::LoadChanged(new));
            self.settings.send_replace(new);
            self.spawn_clerks(new.clients);
        }
        Ok(describe(&old, &new, changed))
    }

    /// Stops the load: each clerk finishes the call it has in progress and starts no other.
    pub async fn stop(&self) -> Result<String, ClusterError> {
        let now = self.settings();
        if now.clients == 0 {
            return Ok("the load was not running".into());
        }
        self.set(LoadSettings { clients: 0, ..now }).await
    }

    /// Ends every clerk task now (the cluster's shutdown: it ends their calls itself).
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
        self.settings.send_modify(|s| s.clients = 0);
        self.ticker.abort();
        for t in self.tasks().iter() {
            t.abort();
        }
    }

    /// Answered load calls since the engine started.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The calls that ended since the last call (or since the start), and starts again.
    pub fn take_totals(&self) -> Tally {
        std::mem::take(&mut self.counts().total)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the tasks of clerks `0..clients` not started yet.
    fn spawn_clerks(&self, clients: u32) {
        let mut tasks = self.tasks();
        while (tasks.len() as u32) < clients {
            let index = tasks.len() as u32;
            tasks.push(tokio::spawn(clerk(
                index,
                self.cluster.clone(),
                self.settings.subscribe(),
                self.counts.clone(),
                self.answered.clone(),
            )));
        }
    }
}

/// Why a load command waits for a reset to end: a load that runs goes on in the new cluster,
/// and is changed, not started, once it is up.
fn refused_during_reset(now: LoadSettings) -> String {
    if now.clients == 0 {
        "the cluster is being reset; start the load once it is up".into()
    } else {
        "the cluster is being reset (the load goes on in the new cluster); change the load once it is up".into()
    }
}

fn describe(old: &LoadSettings, new: &LoadSettings, changed: bool) -> String {
    if !changed {
        return "the load runs with these settings already".into();
    }
    if new.clients == 0 {
        return "load stopped: each clerk finishes its call in progress".into();
    }
    let what = format!(
        "{} clerk{} (c{}..c{}), {}, {}, {}% unlock",
        new.clients,
        if new.clients == 1 { "" } else { "s" },
        LOAD_FIRST_CLIENT,
        LOAD_FIRST_CLIENT + new.clients - 1,
        if new.rate == 0 {
            "closed loop".to_owned()
        } else {
            format!("{} calls/s in all", new.rate)
        },
        match new.distribution {
            LoadDistribution::Uniform => format!("uniform over {} locks load-0..", new.locks),
            LoadDistribution::Hot => "one hot lock load-hot".to_owned(),
        },
        // `+ 0.0`: -0.0 (accepted, it is 0) reads "0%", not "-0%".
        (new.unlock_share * 100.0).round() + 0.0
    );
    if old.clients == 0 {
        format!("load started: {what}")
    } else {
        format!("load changed: {what}")
    }
}

/// A small, fast generator for the clerks' choices (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The lock of a call: the settings' distribution.
fn lock_name(s: &LoadSettings, rng: &mut Rng) -> String {
    match s.distribution {
        LoadDistribution::Hot => "load-hot".to_owned(),
        LoadDistribution::Uniform => format!("load-{}", rng.next() % u64::from(s.locks.max(1))),
    }
}

/// Clerk `index`'s task: calls while `index < clients`, idle otherwise, until the engine ends.
async fn clerk(
    index: u32,
    cluster: Weak<Cluster>,
    mut settings: watch::Receiver<LoadSettings>,
    counts: Arc<Mutex<Counts>>,
    answered: Arc<AtomicU64>,
) {
    let client = LOAD_FIRST_CLIENT + index;
    let mut rng = Rng(u64::from(client) ^ crate::clock::monotonic_ns());
    let mut next_start: Option<Instant> = None;
    loop {
        let s = match settings.wait_for(|s| s.clients > index).await {
            Ok(s) => *s,
            Err(_) => return,
        };
        if s.rate > 0 {
            // This clerk's share of the rate; a clerk behind its schedule calls at once, and
            // owes at most one call.
            let interval = Duration::from_secs_f64(f64::from(s.clients) / s.rate as f64);
            let now = Instant::now();
            let at = match next_start {
                Some(t) => t.max(now),
                // A paced clerk's first call: the clerks' phases spread over one interval, so
                // a start is not a burst of one call per clerk.
                None => now + interval.mul_f64(f64::from(index) / f64::from(s.clients)),
            };
            if at > now {
                // Waiting for its turn, it still hears a stop or a retune (a wait can be
                // minutes long at a low rate): it then calls by the new settings, or not at all.
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    changed = settings.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        next_start = None;
                        continue;
                    }
                }
            }
            let floor = Instant::now().checked_sub(interval).unwrap_or(at);
            next_start = Some(at.max(floor) + interval);
        } else {
            next_start = None;
        }
        let op = if rng.unit() < s.unlock_share {
            Op::Unlock
        } else {
            Op::Lock
        };
        let lock = lock_name(&s, &mut rng);
        let Some(c) = cluster.upgrade() else { return };
        let (tx, rx) = oneshot::channel();
        let run = counts.lock().unwrap_or_else(|p| p.into_inner()).run;
        let started = Instant::now();
        let submitted = c.submit_load(client, op, lock, tx).await;
        drop(c);
        match submitted {
            Ok(()) => {
                let answer = rx.await;
                let us = started.elapsed().as_micros() as u64;
                let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                match answer {
                    Ok(Some(_)) => {
                        counts.record(run, Some(us));
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // Given up, or ended by a reset or a shutdown: `op_failed`.
                    Ok(None) | Err(_) => counts.record(run, None),
                }
            }
            // Not started: the cluster is being reset or is not running. Try again shortly.
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// The advice to the page: draw one load call in this many, so it draws about
/// [`PAGE_EVENTS_PER_S`] events per second (1, 2, 5, 10, 20, 50, ...).
pub fn sample_every(calls_per_s: u64) -> u32 {
    let need = calls_per_s
        .saturating_mul(EVENTS_PER_CALL)
        .div_ceil(PAGE_EVENTS_PER_S);
    let mut scale = 1u64;
    loop {
        for m in [1, 2, 5] {
            let nice = scale * m;
            if nice >= need || nice >= u64::from(shared::MAX_LOAD_SAMPLE) {
                return nice.min(u64::from(shared::MAX_LOAD_SAMPLE)) as u32;
            }
        }
        scale *= 10;
    }
}

/// Publishes `load_stats` every [`STATS_EVERY`] while the load runs, and once more (the last
/// window) when it stops.
async fn ticker(
    bus: Arc<Bus>,
    settings: watch::Receiver<LoadSettings>,
    counts: Arc<Mutex<Counts>>,
) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut was_running = false;
    loop {
        tick.tick().await;
        let running = settings.borrow().clients > 0;
        let now = Instant::now();
        let window = now - last;
        last = now;
        if !running && !was_running {
            continue;
        }
        was_running = running;
        let (tally, window, run_ok, run_failed) = {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            let t = c.window.clone();
            c.window.clear();
            // A load that started within this window was measured only since it started.
            let window = match c.started.take() {
                Some(at) if now > at && now - at < window => now - at,
                _ => window,
            };
            (t, window, c.run_ok, c.run_failed)
        };
        let links = bus.take_link_counts();
        if !running {
            bus.count_links(false);
        }
        let ms = window.as_millis().max(1) as u64;
        let ops_per_s = tally.ok() * 1000 / ms;
        bus.publish(
            LOAD_NODE,
            EventKind::LoadStats(LoadStats {
                window_ms: ms,
                calls: tally.ok() + tally.failed,
                ok: tally.ok(),
                failed: tally.failed,
                ops_per_s,
                p50_us: tally.latency.quantile(0.50),
                p99_us: tally.latency.quantile(0.99),
                sample_every: sample_every((tally.ok() + tally.failed) * 1000 / ms),
                links,
                total_ok: run_ok,
                total_failed: run_failed,
            }),
        );
    }
}

/// How long `pbscope load` waits for the server's answer.
const CLI_WAIT: Duration = Duration::from_secs(30);

/// The gateway's WebSocket for `--server`: an address (`127.0.0.1:9000`), or a URL of the page
/// as `pbscope serve` prints it or a browser's address bar shows it (`http://127.0.0.1:9000/`,
/// with any path, query or fragment), which people paste. `pbscope serve` speaks plain HTTP.
fn ws_url(server: &str) -> anyhow::Result<String> {
    let given = server.trim();
    let lower = given.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("wss://") {
        anyhow::bail!(
            "{given:?}: pbscope serve speaks plain HTTP and WebSocket (http://, ws://), not TLS"
        );
    }
    let rest = ["http://", "ws://"]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &given[p.len()..]))
        .unwrap_or(given);
    // The host and port only: a path, query or fragment is the page's, not the gateway's.
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        anyhow::bail!("--server needs the gateway's address, as 127.0.0.1:9000, or the URL pbscope serve prints");
    }
    Ok(format!("ws://{host}/ws"))
}

/// `pbscope load`: sends `cmd` to the gateway at `server` (see [`ws_url`]) over its WebSocket and
/// returns the answer (`ack` or `error`). The events the gateway streams meanwhile are skipped.
pub async fn send_command(
    server: &str,
    mut cmd: shared::Command,
) -> anyhow::Result<shared::ServerMsg> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        ty: String,
        #[serde(default)]
        tag: Option<String>,
    }
    let url = ws_url(server)?;
    let (mut ws, _) = tokio::time::timeout(CLI_WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {} s", CLI_WAIT.as_secs()))?
        .map_err(|e| {
            let hint = match &e {
                tokio_tungstenite::tungstenite::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    " (is `pbscope serve` running there? --server takes the address it prints)"
                }
                _ => "",
            };
            anyhow::anyhow!("connecting to {url}: {e}{hint}")
        })?;
    let tag = format!("pbscope-load-{}", std::process::id());
    *cmd.tag_mut() = Some(tag.clone());
    ws.send(Message::text(serde_json::to_string(&cmd)?)).await?;
    let answer = tokio::time::timeout(CLI_WAIT, async {
        while let Some(frame) = ws.next().await {
            let Message::Text(text) = frame? else {
                continue;
            };
            // Only the head is read: events frames are skipped without building them.
            let Ok(head) = serde_json::from_str::<Head>(text.as_str()) else {
                continue;
            };
            let ours = head.tag.as_deref() == Some(tag.as_str());
            // An error without a tag answers a command the gateway could not even read.
            if (head.ty == "ack" && ours) || (head.ty == "error" && (ours || head.tag.is_none())) {
                return Ok(serde_json::from_str::<shared::ServerMsg>(text.as_str())?);
            }
        }
        anyhow::bail!("{url} closed the connection before answering")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {url} within {} s", CLI_WAIT.as_secs()))?;
    let _ = ws.close(None).await;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: an `unlock_share` of -0.0 (it is 0, and accepted) read "-0% unlock".
    #[test]
    fn a_negative_zero_unlock_share_reads_zero() {
        let new = LoadSettings {
            clients: 2,
            unlock_share: -0.0,
            ..LoadSettings::STOPPED
        };
        let words = describe(&LoadSettings::STOPPED, &new, true);
        assert!(words.ends_with(", 0% unlock"), "{words}");
    }

    /// Found by review: a retune during a reset was told to "start the load", which ran.
    #[test]
    fn a_load_that_runs_is_told_to_change_after_a_reset_not_to_start() {
        assert!(refused_during_reset(LoadSettings::STOPPED).contains("start the load"));
        let running = LoadSettings {
            clients: 4,
            ..LoadSettings::STOPPED
        };
        let words = refused_during_reset(running);
        assert!(
            words.contains("change the load") && !words.contains("start"),
            "{words}"
        );
    }

    /// Found by review: a load started while the last one's clerks still finished their calls
    /// (seconds, with both servers dead) counted those calls' failures as its own
    /// `total_failed`, and their answers in its first windows.
    #[test]
    fn a_call_of_the_last_run_is_not_counted_in_the_next() {
        let mut c = Counts::default();
        c.begin_run(Instant::now());
        let first = c.run;
        c.record(first, Some(100));
        c.record(first, None);
        assert_eq!((c.run_ok, c.run_failed), (1, 1));
        c.begin_run(Instant::now());
        // Calls the first run started end now: the bench's totals see them, the new run not.
        c.record(first, None);
        c.record(first, Some(200));
        assert_eq!((c.run_ok, c.run_failed), (0, 0));
        assert_eq!((c.window.ok(), c.window.failed), (0, 0));
        assert_eq!((c.total.ok(), c.total.failed), (2, 2));
        c.record(c.run, None);
        assert_eq!((c.run_ok, c.run_failed, c.window.failed), (0, 1, 1));
    }

    #[test]
    fn buckets_are_ordered_and_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            127,
            128,
            1000,
            12_345,
            1 << 30,
            u64::MAX / 2,
        ] {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            last = b;
            let back = value_of(b);
            let err = back.abs_diff(v) as f64 / (v.max(1)) as f64;
            assert!(err <= 1.0 / 32.0, "{v} -> bucket {b} -> {back}");
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_known_set() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((490..=510).contains(&p50), "{p50}");
        assert!((975..=1000).contains(&p99), "{p99}");
        assert!(p50 <= p99);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn one_slow_call_in_a_hundred_is_the_p99() {
        let mut h = Histogram::default();
        for _ in 0..98 {
            h.record(100);
        }
        h.record(5_000);
        h.record(5_000);
        // Within the bucket's width (1/32 of the value).
        assert!((99..=102).contains(&h.quantile(0.5)), "{}", h.quantile(0.5));
        assert!((4900..=5000).contains(&h.quantile(0.99)));
        assert!(h.quantile(0.98) < 200, "the 98th is still a fast call");
    }

    #[test]
    fn sampling_advice_grows_in_nice_steps() {
        assert_eq!(sample_every(0), 1);
        assert_eq!(sample_every(100), 1);
        let s = sample_every(20_000);
        assert!([50, 100].contains(&s), "{s}");
        assert!(sample_every(1_000_000) >= 2000);
    }

    /// `--server` takes the URL `pbscope serve` prints as well as a bare address: the URL,
    /// pasted, made `ws://http://127.0.0.1:9000//ws`, "failed to lookup address" (review); a
    /// second review found a query, a path, spaces and capitals passed on, and https:// sent to
    /// TLS the build does not have.
    #[test]
    fn the_server_may_be_given_as_the_url_serve_prints() {
        for given in [
            "127.0.0.1:9000",
            "http://127.0.0.1:9000/",
            "http://127.0.0.1:9000",
            "ws://127.0.0.1:9000/ws",
            " http://127.0.0.1:9000/ ",
            "HTTP://127.0.0.1:9000/",
            "http://127.0.0.1:9000/?x=1",
            "http://127.0.0.1:9000#",
            "http://127.0.0.1:9000/index.html",
        ] {
            assert_eq!(
                ws_url(given).unwrap(),
                "ws://127.0.0.1:9000/ws",
                "{given:?}"
            );
        }
        assert_eq!(ws_url("[::1]:9000").unwrap(), "ws://[::1]:9000/ws");
        for refused in ["https://lab.example", "", "  ", "http://"] {
            let err = ws_url(refused).unwrap_err().to_string();
            assert!(
                err.contains("TLS") || err.contains("needs the gateway's address"),
                "{refused:?}: {err}"
            );
        }
    }

    /// Nothing listening: the error says what to check.
    #[tokio::test]
    async fn a_refused_connection_says_serve_may_not_be_running() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let err = send_command(&addr, shared::Command::LoadStop { tag: None })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is `pbscope serve` running there?"), "{err}");
    }
}
