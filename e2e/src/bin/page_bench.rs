//! Page benchmark: how smooth the page stays while a load streams in and its history fills.
//!
//! Starts the real server and the built page in headless Chromium, drives a steady lock/unlock
//! load from a separate WebSocket client (`--ops-per-sec`, 12 events per call), waits until the
//! page has ingested `--fill` events, then measures for `--seconds`: frame intervals from a
//! `requestAnimationFrame` loop injected into the page, and events ingested per second (the
//! page's own `window.__pbscope.events_ingested` counter). Prints numbers; asserts nothing.
//!
//! `--view live` (default) keeps the diagram on the live edge; `--view back` scrolls to the
//! middle of the history first (new events arrive below, out of view) and also reports how far
//! the event at the top of the view moved while the cap dropped old events (it should not move);
//! `--view scrolling` scrolls through the history by 60 px every frame while measuring, as a
//! person reading back.
//!
//! `--generator RATE` runs the server's load generator (16 clerks, RATE calls/s) instead: the
//! page then draws a sample of the load's calls and says so.
//!
//! It also sums the long animation frames (over 50 ms) by phase, and `--cpu-profile PATH` writes
//! Chromium's CPU profile of the measured window (a `.cpuprofile`; build the page with names
//! kept to read the wasm frames, see docs/page.md).
//!
//!   cargo build --release -p server && trunk build --release &&
//!   PBSCOPE_BIN=target/release/pbscope cargo run --release -p e2e --bin page_bench

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Session;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    view: String,
    ops_per_sec: u64,
    /// When not 0: the server's load generator at this many calls/s (16 clerks) instead of 16
    /// client processes driven from here; the page then asks for a sample of it (`detail`).
    generator: u64,
    fill: u64,
    seconds: u64,
    /// Where to write Chromium's JavaScript/wasm CPU profile of the measured window, if asked.
    cpu_profile: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        view: "live".into(),
        ops_per_sec: 400,
        generator: 0,
        fill: 100_000,
        seconds: 10,
        cpu_profile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        if flag == "--view" {
            anyhow::ensure!(
                ["live", "back", "scrolling"].contains(&v.as_str()),
                "--view is live, back or scrolling"
            );
            a.view = v;
            continue;
        }
        if flag == "--cpu-profile" {
            a.cpu_profile = Some(v);
            continue;
        }
        let v: u64 = v.parse()?;
        match flag.as_str() {
            "--ops-per-sec" => a.ops_per_sec = v,
            "--generator" => a.generator = v,
            "--fill" => a.fill = v,
            "--seconds" => a.seconds = v,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Keeps 16 clerks calling at about `ops_per_sec` in total until `stop`.
async fn load(
    ws_url: String,
    ops_per_sec: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let clients = 16u32;
    let mut busy = vec![false; clients as usize + 1];
    let mut next_lock = vec![true; clients as usize + 1];
    let interval = Duration::from_secs_f64(1.0 / ops_per_sec.max(1) as f64);
    let mut tick = tokio::time::interval(interval);
    let mut rr = 0u32;
    let mut done = 0u64;
    loop {
        if *stop.borrow() {
            return Ok(done);
        }
        tokio::select! {
            _ = tick.tick() => {
                for _ in 0..clients {
                    rr = rr % clients + 1;
                    if !busy[rr as usize] {
                        let ty = if next_lock[rr as usize] { "lock" } else { "unlock" };
                        ws.send(Message::text(json!({"type": ty, "client": rr, "lock": format!("k{rr}")}).to_string())).await?;
                        busy[rr as usize] = true;
                        next_lock[rr as usize] = !next_lock[rr as usize];
                        break;
                    }
                }
            }
            msg = ws.next() => {
                let Some(Ok(Message::Text(t))) = msg else { continue };
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["type"] == "events" {
                    for e in v["events"].as_array().into_iter().flatten() {
                        if e["type"] == "op_completed" || e["type"] == "op_failed" {
                            if let Some(c) = e["client"].as_u64() {
                                busy[c as usize] = false;
                                done += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs the server's load generator (16 clerks, `rate` calls/s) until `stop`; returns the calls
/// answered per second, averaged over the `load_stats` seen meanwhile.
async fn generator(
    ws_url: String,
    rate: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    // This connection only counts: it asks for one load call in 1,000,000.
    ws.send(Message::text(
        json!({"type":"detail","load_sample":1_000_000}).to_string(),
    ))
    .await?;
    ws.send(Message::text(
        json!({"type":"load","clients":16,"rate":rate}).to_string(),
    ))
    .await?;
    let (mut sum, mut n) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => {
                let Some(Ok(Message::Text(t))) = msg else { continue };
                let v: Value = serde_json::from_str(t.as_str())?;
                for e in v["events"].as_array().into_iter().flatten() {
                    if e["type"] == "load_stats" {
                        sum += e["ops_per_s"].as_u64().unwrap_or(0);
                        n += 1;
                    }
                }
            }
        }
    }
    ws.send(Message::text(json!({"type":"load_stop"}).to_string()))
        .await?;
    Ok(sum / n.max(1))
}

/// Records frame intervals; with `arguments[0]` (the view) `back` or `scrolling` it first
/// scrolls the diagram to the middle of the history, and with `scrolling` keeps scrolling.
const FRAME_PROBE: &str = r#"
const view = arguments[0];
const diagram = document.querySelector('[data-testid=diagram]');
if (view !== 'live' && diagram) diagram.scrollTop = diagram.scrollHeight / 2;
window.__bench = { intervals: [], last: performance.now(), run: true };
function tick(now) {
  const b = window.__bench;
  b.intervals.push(now - b.last);
  b.last = now;
  if (view === 'scrolling' && diagram) diagram.scrollTop += 60;
  if (b.run) requestAnimationFrame(tick);
}
requestAnimationFrame(tick);
// The topmost mark in view, a second after scrolling (the page has rendered there by then).
window.__anchor = function () {
  const box = diagram.getBoundingClientRect();
  let best = null;
  for (const m of diagram.querySelectorAll('.mark[data-seq]')) {
    const r = m.getBoundingClientRect();
    if (r.top >= box.top + 60 && r.bottom <= box.bottom && (!best || r.top < best.top)) {
      best = { seq: m.dataset.seq, node: m.dataset.node, top: r.top };
    }
  }
  return best;
};
// Two seconds later, how far it moved (null: it left the view). Not longer: at ~10k events/s
// the cap drops an event from the middle of a 100k history within about five seconds, and
// then the view rightly ends up on the oldest event still held.
if (view === 'back' && diagram) setTimeout(() => {
  const a = window.__anchor();
  if (!a) { window.__bench.anchor = 'no mark in view'; return; }
  setTimeout(() => {
    const m = diagram.querySelector(`.mark[data-seq="${a.seq}"][data-node="${a.node}"]`);
    window.__bench.anchor = m ? m.getBoundingClientRect().top - a.top : 'left the view';
  }, 2000);
}, 1000);
"#;

async fn ingested(s: &Session) -> anyhow::Result<f64> {
    let v = s
        .browser
        .execute(
            "return (window.__pbscope && window.__pbscope.events_ingested) || 0;",
            vec![],
        )
        .await?;
    Ok(v.as_f64().unwrap_or(0.0))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    e2e::until_signalled(run()).await
}

async fn run() -> anyhow::Result<()> {
    let a = args()?;
    let s = Session::start_with(&["--commands-per-sec", "100000"]).await?;
    s.browser.goto(&s.url).await?;
    s.wait_text("[data-testid=conn-status]", |t| {
        t.to_lowercase().contains("connected")
    })
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loader = if a.generator > 0 {
        tokio::spawn(generator(s.ws_url.clone(), a.generator, stop_rx))
    } else {
        tokio::spawn(load(s.ws_url.clone(), a.ops_per_sec, stop_rx))
    };

    let fill_start = Instant::now();
    let mut told = Instant::now();
    loop {
        let held = ingested(&s).await?;
        if held >= a.fill as f64 {
            break;
        }
        if fill_start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!(
                "the page did not reach {} events in 10 minutes ({held} ingested; under --generator it gets one call in the sample it asks for: a smaller --fill)",
                a.fill
            );
        }
        // Progress, so a fill that cannot be reached soon is seen as such.
        if told.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "page bench: filling the history, {held} of {} events after {:.0} s",
                a.fill,
                fill_start.elapsed().as_secs_f64()
            );
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let before = ingested(&s).await?;
    s.browser.execute(FRAME_PROBE, vec![json!(a.view)]).await?;
    s.browser.execute(LONG_FRAME_PROBE, vec![]).await?;
    if a.cpu_profile.is_some() {
        cdp(&s, "Profiler.enable", json!({})).await?;
        cdp(
            &s,
            "Profiler.setSamplingInterval",
            json!({ "interval": 200 }),
        )
        .await?;
        cdp(&s, "Profiler.start", json!({})).await?;
    }
    cdp(&s, "Performance.enable", json!({})).await?;
    let metrics0 = metrics(&s).await?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let metrics1 = metrics(&s).await?;
    if let Some(path) = &a.cpu_profile {
        let answer = cdp(&s, "Profiler.stop", json!({})).await?;
        std::fs::write(path, serde_json::to_vec(&answer["profile"])?)
            .with_context(|| format!("writing {path}"))?;
    }
    let long_frames = s
        .browser
        .execute("return window.__longFrames;", vec![])
        .await?;
    let frames = s
        .browser
        .execute(
            "window.__bench.run = false; return window.__bench.intervals;",
            vec![],
        )
        .await?;
    let secs = t0.elapsed().as_secs_f64();
    let after = ingested(&s).await?;
    let anchor = if a.view == "back" {
        let v = s
            .browser
            .execute("return window.__bench.anchor;", vec![])
            .await?;
        Some(v)
    } else {
        None
    };
    let drawn = s
        .browser
        .execute(
            "return [document.querySelectorAll('.st-svg g.arrow').length, document.querySelectorAll('.st-svg g.mark').length, document.querySelectorAll('*').length];",
            vec![],
        )
        .await?;
    let memory = s
        .browser
        .execute(
            "const m = performance.memory || {}; return [(window.__pbscope || {}).wasm_memory_bytes || 0, m.usedJSHeapSize || 0, (window.__pbscope || {}).history || 0];",
            vec![],
        )
        .await?;
    let _ = stop_tx.send(true);
    let ops = loader.await??;
    s.screenshot("page-under-load").await?;

    let mut iv: Vec<f64> = frames
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    iv.remove(0);
    iv.sort_by(f64::total_cmp);
    let long = iv.iter().filter(|x| **x > 50.0).count();
    if a.generator > 0 {
        let note = s
            .browser
            .find(fantoccini::Locator::Css("[data-testid=aggregate-note]"))
            .await;
        let note = match note {
            Ok(n) => n.text().await.unwrap_or_default(),
            Err(_) => "no aggregate note".into(),
        };
        println!("page bench: view {}, the server's load generator at {} calls/s requested (16 clerks), history filled to {} events in {:.1} s", a.view, a.generator, before as u64, fill_secs);
        println!(
            "  events ingested: {:.0}/s over {:.1} s; the load answered {} calls/s; the page: {note}",
            (after - before) / secs,
            secs,
            ops
        );
    } else {
        println!("page bench: view {}, load {} ops/s requested (12 events each), history filled to {} events in {:.1} s", a.view, a.ops_per_sec, before as u64, fill_secs);
        println!(
            "  events ingested: {:.0}/s over {:.1} s ({} calls completed in all)",
            (after - before) / secs,
            secs,
            ops
        );
    }
    println!(
        "  frames: {} in {:.1} s = {:.1} fps; interval p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} frames over 50 ms",
        iv.len(), secs, iv.len() as f64 / secs, pct(&iv, 0.5), pct(&iv, 0.95), pct(&iv, 0.99), iv.last().copied().unwrap_or(0.0), long
    );
    let lf = |k: &str| long_frames[k].as_f64().unwrap_or(0.0);
    println!(
        "  long frames (> 50 ms, Long Animation Frames API): {:.0}, {:.0} ms in all: {:.0} ms before the frame's rendering (tasks: socket messages, timers), {:.0} ms in animation-frame callbacks (the store and Yew's render), {:.0} ms in style, layout and paint",
        lf("n"), lf("total"), lf("tasks"), lf("callbacks"), lf("style")
    );
    // The renderer's own counters over the window: how often style and layout ran, and for how
    // long (a forced layout, read in the middle of a frame, counts as one more).
    let d =
        |k: &str| metrics1.get(k).copied().unwrap_or(0.0) - metrics0.get(k).copied().unwrap_or(0.0);
    let n = iv.len().max(1) as f64;
    println!(
        "  renderer per frame (CDP Performance.getMetrics): {:.2} layouts, {:.2} ms; {:.2} style recalcs, {:.2} ms; script {:.2} ms; all tasks {:.2} ms",
        d("LayoutCount") / n,
        d("LayoutDuration") * 1000.0 / n,
        d("RecalcStyleCount") / n,
        d("RecalcStyleDuration") * 1000.0 / n,
        d("ScriptDuration") * 1000.0 / n,
        d("TaskDuration") * 1000.0 / n,
    );
    println!(
        "  drawn at the end: {} arrows and {} marks in the diagram, {} elements on the page",
        drawn[0], drawn[1], drawn[2]
    );
    if let Some(path) = &a.cpu_profile {
        println!("  CPU profile of the measured window: {path} (open it in Chromium's DevTools, Performance panel)");
    }
    match anchor {
        Some(Value::Number(px)) => println!(
            "  view held: the event at the top of the view moved {:.0} px in 2 s while the cap dropped old events",
            px.as_f64().unwrap_or(f64::NAN)
        ),
        Some(Value::String(why)) if why == "left the view" => {
            println!("  view NOT held: the event at the top of the view left the view in 2 s")
        }
        Some(Value::String(why)) => println!("  view not measured: {why}"),
        Some(_) => println!("  view not measured: the run was shorter than 3 s"),
        None => {}
    }
    let mem: Vec<f64> = memory
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    if let [wasm, heap, held] = mem[..] {
        println!(
            "  memory: wasm linear memory {:.1} MiB, JS heap {:.1} MiB, {} events held",
            wasm / 1048576.0,
            heap / 1048576.0,
            held as u64
        );
    }
    s.close().await
}

/// Sums the long animation frames (> 50 ms) seen from here on by phase: the tasks before the
/// frame's rendering began, the animation-frame callbacks, and style, layout and paint.
const LONG_FRAME_PROBE: &str = r#"
window.__longFrames = { n: 0, total: 0, tasks: 0, callbacks: 0, style: 0 };
if (PerformanceObserver.supportedEntryTypes.includes('long-animation-frame')) {
  new PerformanceObserver((list) => {
    const f = window.__longFrames;
    for (const e of list.getEntries()) {
      const end = e.startTime + e.duration;
      const render = e.renderStart || end;
      const style = e.styleAndLayoutStart || end;
      f.n += 1;
      f.total += e.duration;
      f.tasks += render - e.startTime;
      f.callbacks += style - render;
      f.style += end - style;
    }
  }).observe({ type: 'long-animation-frame' });
}
"#;

/// A Chrome DevTools Protocol command through chromedriver's `goog/cdp/execute` endpoint.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params }).to_string();
        (http::Method::POST, Some(body))
    }
}

async fn cdp(s: &Session, cmd: &'static str, params: Value) -> anyhow::Result<Value> {
    Ok(s.browser.issue_cmd(Cdp { cmd, params }).await?)
}

/// The renderer's counters (`Performance.getMetrics`: `LayoutCount`, `LayoutDuration` in
/// seconds, ...) by name.
async fn metrics(s: &Session) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let answer = cdp(s, "Performance.getMetrics", json!({})).await?;
    Ok(answer["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?.to_owned(), m["value"].as_f64()?)))
        .collect())
}
