//! The Redis anchor alone: a primary and a replica, then a closed loop per client count.
//!
//! `cargo run --release -p server --example redis_anchor -- [--clients 1,16,64] [--seconds 3] [--locks N]`
//! (`--locks` defaults to the client count: every call succeeds, as in `pbscope bench`).

use std::time::Duration;

use anyhow::{bail, Context};
use server::redis_anchor::{closed_loop, RedisPair};

fn main() -> anyhow::Result<()> {
    let mut clients = vec![1u32, 16, 64];
    let mut seconds = 3.0f64;
    let mut locks: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--clients" => {
                clients = value()?
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<u32>()
                            .context("--clients: a list like 1,16,64")
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--seconds" => seconds = value()?.parse().context("--seconds: a number")?,
            "--locks" => locks = Some(value()?.parse().context("--locks: a number")?),
            other => bail!("unknown argument {other:?} (--clients, --seconds, --locks)"),
        }
    }
    if !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be more than 0 and at most 3600");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let pair = RedisPair::start().await?;
            println!(
                "Redis {} primary {} replica {} (SET k 1 NX / DEL k, each + WAIT 1 0)",
                pair.version(),
                pair.primary_addr(),
                pair.replica_addr()
            );
            println!("| clients | ops/s | p50 | p99 | max | ops | CPU s: this process / primary / replica |");
            println!("|---:|---:|---:|---:|---:|---:|---:|");
            let [primary, replica] = pair.pids();
            for &c in &clients {
                let before = [cpu_seconds(std::process::id()), cpu_seconds(primary), cpu_seconds(replica)];
                let r = closed_loop(
                    &pair,
                    c,
                    locks.unwrap_or(c),
                    Duration::from_secs_f64(seconds),
                )
                .await?;
                let after = [cpu_seconds(std::process::id()), cpu_seconds(primary), cpu_seconds(replica)];
                let cpu: Vec<String> = after
                    .iter()
                    .zip(before)
                    .map(|(a, b)| format!("{:.2}", a - b))
                    .collect();
                println!(
                    "| {} | {:.0} | {} us | {} us | {} us | {} | {} |",
                    r.clients,
                    r.ops_per_s,
                    r.p50_us,
                    r.p99_us,
                    r.max_us,
                    r.ops,
                    cpu.join(" / ")
                );
            }
            Ok(())
        })
}

/// User + system CPU seconds a process has used so far (0 if it cannot be read).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = rest.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    // Linux reports these in USER_HZ, 100 on every architecture it exports to user space.
    let hz = 100.0;
    ticks / hz
}
