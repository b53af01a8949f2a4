//! `pbscope bench`: lock operations per second against a real cluster.
//!
//! It starts the same cluster as `serve` (real node processes, real TCP, every event through the
//! bus), then lets N clerks call Lock/Unlock back to back for a fixed time, each on its own lock
//! so every call succeeds and takes the full path (client -> primary -> backup -> primary ->
//! client). It prints throughput and latency percentiles; it asserts nothing.

use std::time::{Duration, Instant};

use shared::Op;
use tokio::sync::oneshot;

use crate::bus::{Bus, BusConfig};
use crate::clock::RunClock;
use crate::cluster::{Cluster, ClusterConfig};

/// The numbers of one run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub clients: u32,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub events: u64,
}

pub async fn run(
    cfg: ClusterConfig,
    clients: u32,
    duration: Duration,
) -> anyhow::Result<BenchResult> {
    let bus = Bus::new(RunClock::start(), BusConfig::default());
    let cluster = Cluster::start(bus.clone(), cfg).await?;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 1..=clients {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let lock = format!("bench-{c}");
            let mut op = Op::Lock;
            while Instant::now() < deadline {
                let (tx, rx) = oneshot::channel();
                let t = Instant::now();
                cluster.submit(c, op, lock.clone(), None, Some(tx)).await?;
                match rx.await {
                    Ok(Some(true)) => {}
                    other => anyhow::bail!("client {c}: {op:?} answered {other:?}"),
                }
                lat.push(t.elapsed().as_micros() as u64);
                op = if op == Op::Lock { Op::Unlock } else { Op::Lock };
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = bus.subscribe(0).last_seq;
    cluster.shutdown().await;
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(BenchResult {
        clients,
        ops: all.len() as u64,
        seconds,
        ops_per_sec: all.len() as f64 / seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: all.last().copied().unwrap_or(0),
        events,
    })
}
