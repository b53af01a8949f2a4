//! Replay benchmark: how fast the page opens a saved run of `--events` events (default
//! 100,000) and how smoothly it scrubs and plays it, with no server behind it.
//!
//! Records a real run: starts `pbscope serve`, drives a lock/unlock load on 16 clients over
//! one WebSocket and keeps every event that socket receives until it has `--events` of them,
//! then writes them as a run file (`model::runfile::write_run`) under
//! `target/replay-files/bench.jsonl`. Stops the server, opens the file in the page, and
//! measures: the time from picking the file to the banner; 40 seeks to spread-out times (each
//! from the input event to the second animation frame after it: the reducer's fold and the
//! render); 40 steps of one event; frame intervals while playing at 4× from the start and from the middle. Prints numbers;
//! asserts nothing.
//!
//!   cargo build --release -p server && trunk build --release &&
//!   PBSCOPE_BIN=target/release/pbscope cargo run --release -p e2e --bin replay_bench

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Session;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shared::{Event, EventKind, RunHeader, ServerMsg, PROTOCOL_VERSION, RUN_FORMAT};
use tokio_tungstenite::tungstenite::Message;

/// Records `want` events of a lock/unlock load on 16 clients.
async fn record(ws_url: &str, want: usize) -> anyhow::Result<String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let clients = 16u32;
    let mut busy = vec![false; clients as usize + 1];
    let mut lock_next = vec![true; clients as usize + 1];
    let mut hello = None;
    let mut events: Vec<Event> = Vec::new();
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    while events.len() < want {
        anyhow::ensure!(Instant::now() < deadline, "no {want} events in 10 minutes");
        if started {
            for c in 1..=clients {
                if !busy[c as usize] {
                    let ty = if lock_next[c as usize] {
                        "lock"
                    } else {
                        "unlock"
                    };
                    let cmd = json!({"type": ty, "client": c, "lock": format!("k{}", c % 4)});
                    ws.send(Message::text(cmd.to_string())).await?;
                    busy[c as usize] = true;
                    lock_next[c as usize] = !lock_next[c as usize];
                }
            }
        }
        let Some(frame) = ws.next().await else {
            anyhow::bail!("the server closed the socket");
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        let new = match serde_json::from_str::<ServerMsg>(text.as_str())? {
            ServerMsg::Hello(h) => {
                hello = Some(h);
                continue;
            }
            ServerMsg::Snapshot(s) => {
                anyhow::ensure!(events.is_empty(), "fell behind: a second snapshot");
                s.events
            }
            ServerMsg::Events { events } => events,
            _ => continue,
        };
        for e in new {
            match e.kind {
                EventKind::ProcessStarted { .. } => started = true,
                EventKind::OpCompleted { client, .. } | EventKind::OpFailed { client, .. } => {
                    if let Some(b) = busy.get_mut(client as usize) {
                        *b = false;
                    }
                }
                _ => {}
            }
            events.push(e);
        }
    }
    let hello = hello.context("no hello")?;
    let first_seq = events.first().map_or(1, |e| e.seq);
    let header = RunHeader {
        format: RUN_FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        server: hello.server,
        run: hello.run,
        first_seq,
        dropped: first_seq - 1,
        source: "pbscope serve, 16 clients under load (replay_bench)".into(),
        variant: None,
    };
    Ok(model::runfile::write_run(&header, &events))
}

/// Seeks to `arguments[0]` µs into the run through the scrubber, and answers the time until
/// the second animation frame after it, and the time the input event itself took (Yew runs the
/// reducer and renders inside it).
const SEEK: &str = r#"
const done = arguments[arguments.length - 1];
const el = document.querySelector('[data-testid=replay-scrubber]');
const t0 = performance.now();
el.value = String(arguments[0]);
el.dispatchEvent(new Event('input', { bubbles: true }));
const sync = performance.now() - t0;
requestAnimationFrame(() => requestAnimationFrame(() => done([performance.now() - t0, sync])));
"#;

/// Clicks `arguments[0]` and answers the time until the second animation frame after it.
const CLICK: &str = r#"
const done = arguments[arguments.length - 1];
const t0 = performance.now();
document.querySelector(arguments[0]).click();
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"#;

const FRAMES: &str = r#"
window.__bench = { intervals: [], last: performance.now(), run: true };
function tick(now) { const b = window.__bench; b.intervals.push(now - b.last); b.last = now; if (b.run) requestAnimationFrame(tick); }
requestAnimationFrame(tick);
"#;

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n = {})",
        p(0.5),
        p(0.95),
        v[v.len() - 1],
        v.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    e2e::until_signalled(run()).await
}

async fn run() -> anyhow::Result<()> {
    let mut want = 100_000usize;
    let mut reuse = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--events" => want = it.next().context("--events N")?.parse()?,
            // Open the file the last run recorded instead of recording one.
            "--reuse" => reuse = true,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let mut s = Session::start_with(&["--commands-per-sec", "100000"]).await?;
    let t = Instant::now();
    let dir = e2e::workspace_root().join("target").join("replay-files");
    let path = dir.join("bench.jsonl");
    let text = if reuse {
        std::fs::read_to_string(&path).context("--reuse: no target/replay-files/bench.jsonl")?
    } else {
        record(&s.ws_url, want).await?
    };
    let run = model::runfile::parse_run(&text)?;
    let n = run.events.len();
    let span = run.events.iter().map(|e| e.t_us).max().unwrap_or(0)
        - run.events.iter().map(|e| e.t_us).min().unwrap_or(0);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, &text)?;
    println!(
        "replay bench: {n} events ({:.1} MB, {:.1} s of run) recorded or read in {:.1} s",
        text.len() as f64 / 1e6,
        span as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    s.browser.goto(&s.url).await?;
    s.wait_text("[data-testid=conn-status]", |t| t == "connected")
        .await?;
    s.stop_server().await?;

    let input = s
        .browser
        .find(fantoccini::Locator::Css("[data-testid=open-run]"))
        .await?;
    let t = Instant::now();
    input.send_keys(&path.to_string_lossy()).await?;
    s.wait_text("[data-testid=replay-banner]", |t| t.contains("bench.jsonl"))
        .await?;
    println!(
        "  open: {:.2} s from picking the file to the banner (read, parse, fold with checkpoints, draw)",
        t.elapsed().as_secs_f64()
    );

    let mut seeks = Vec::new();
    let mut syncs = Vec::new();
    for i in 0..40u64 {
        // Spread out, back and forth: 0.05, 0.92, 0.33, ... of the run.
        let f = ((i * 37 + 5) % 97) as f64 / 97.0;
        let ms = s
            .browser
            .execute_async(SEEK, vec![json!((span as f64 * f) as u64)])
            .await?;
        seeks.push(ms[0].as_f64().unwrap_or(f64::NAN));
        syncs.push(ms[1].as_f64().unwrap_or(f64::NAN));
    }
    println!(
        "  seek anywhere, to the second frame after: {}",
        stats(seeks)
    );
    println!(
        "    of which the input event (fold and render): {}",
        stats(syncs)
    );
    let mut steps = Vec::new();
    for _ in 0..40 {
        let ms = s
            .browser
            .execute_async(CLICK, vec![json!("[data-testid=replay-next]")])
            .await?;
        steps.push(ms.as_f64().unwrap_or(f64::NAN));
    }
    println!("  one event on: {}", stats(steps));

    for (from, what) in [(0, "from the start"), (span / 2, "from the middle")] {
        s.browser.execute_async(SEEK, vec![json!(from)]).await?;
        s.browser
            .execute(
                "const sel = document.querySelector('[data-testid=replay-speed]'); sel.value = '4'; sel.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![],
            )
            .await?;
        s.browser.execute(FRAMES, vec![]).await?;
        s.click("[data-testid=replay-play]").await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let frames = s
            .browser
            .execute(
                "window.__bench.run = false; document.querySelector('[data-testid=replay-play]').click(); return [window.__bench.intervals, Number(document.querySelector('[data-testid=replay-time]').dataset.placed)];",
                vec![],
            )
            .await?;
        let iv: Vec<f64> = frames[0]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .skip(1)
            .collect();
        let frames_n = iv.len();
        println!(
            "  playing at 4x for 4 s {what}: {:.1} fps, frame interval {}; {} events shown after",
            frames_n as f64 / 4.0,
            stats(iv),
            frames[1]
        );
    }
    s.screenshot("replay-100k").await?;
    s.close().await
}
