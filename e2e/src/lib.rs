//! Harness for the browser tests: starts the real `pbscope serve` (serving the trunk-built page
//! from `dist/`), a chromedriver, and a headless Chromium driven through WebDriver.
//!
//! Needs `cargo build -p server` and `trunk build --release` first (scripts/test does both); it
//! says so clearly when either is missing rather than skipping.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where a condition is given up on.
pub const WAIT: Duration = Duration::from_secs(20);

/// Runs a tool's work (`page_bench`, the tours) until it ends or the process is told to stop
/// (Ctrl-C, SIGTERM from `timeout`, SIGHUP from a closed terminal). On a signal the work is
/// dropped first, so a [`Session`] in it kills its server, chromedriver and Chromium, and the
/// process then exits with 128 + the signal's number. Without this the default action ended
/// the process at once and left chromedriver and a dozen Chromium processes running.
pub async fn until_signalled(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let code = {
        let work = std::pin::pin!(work);
        tokio::select! {
            done = work => return done,
            _ = interrupt.recv() => 130,
            _ = terminate.recv() => 143,
            _ = hangup.recv() => 129,
        }
    };
    eprintln!("stopped by a signal: the server and the browser are stopped");
    std::process::exit(code)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the workspace")
        .to_path_buf()
}

fn pbscope_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PBSCOPE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("pbscope");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build -p server` first (scripts/test does)",
            bin.display()
        );
    }
    Ok(bin)
}

fn dist_dir() -> anyhow::Result<PathBuf> {
    let dist = workspace_root().join("dist");
    if !dist.join("index.html").exists() {
        bail!(
            "{} has no built page: run `trunk build --release` first (scripts/test does)",
            dist.display()
        );
    }
    Ok(dist)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One rule axe-core found broken, with the elements that break it.
#[derive(Debug, Clone)]
pub struct AxeViolation {
    /// The rule, e.g. `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    pub help: String,
    pub nodes: Vec<AxeNode>,
}

/// An element that breaks a rule: its CSS selector path and axe's summary of why.
#[derive(Debug, Clone)]
pub struct AxeNode {
    pub target: Vec<String>,
    pub summary: String,
}

impl AxeViolation {
    fn from_json(v: &serde_json::Value) -> AxeViolation {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let nodes = v["nodes"].as_array().map_or(&[][..], Vec::as_slice);
        AxeViolation {
            id: text(&v["id"]),
            impact: text(&v["impact"]),
            help: text(&v["help"]),
            nodes: nodes
                .iter()
                .map(|n| AxeNode {
                    target: n["target"]
                        .as_array()
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .map(text)
                        .collect(),
                    summary: text(&n["summary"]),
                })
                .collect(),
        }
    }

    /// Whether this is a violation the page must not have (axe's `serious` or `critical`).
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_str(), "serious" | "critical")
    }
}

impl std::fmt::Display for AxeViolation {
    /// The rule, its impact, how many elements, and the first few of them with why: enough to
    /// find and fix each one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} [{}] on {} element(s): {}",
            self.id,
            self.impact,
            self.nodes.len(),
            self.help
        )?;
        for node in self.nodes.iter().take(4) {
            writeln!(f, "    at {}", node.target.join(" > "))?;
            for line in node.summary.lines() {
                writeln!(f, "        {line}")?;
            }
        }
        if self.nodes.len() > 4 {
            writeln!(f, "    … and {} more", self.nodes.len() - 4)?;
        }
        Ok(())
    }
}

/// `axe.run` on the whole document; answers the violations, each with its elements.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.map(v => ({
  id: v.id,
  impact: v.impact || 'unknown',
  help: v.help,
  nodes: v.nodes.map(n => ({ target: n.target, summary: n.failureSummary || '' })),
}))), e => done({ error: String(e) }));
"#;

/// A running `pbscope serve` with the page, a chromedriver and a browser session.
#[derive(Debug)]
pub struct Session {
    pub browser: Client,
    pub url: String,
    pub ws_url: String,
    server: Child,
    driver: Child,
    addr: String,
    extra: Vec<String>,
}

/// Starts `pbscope serve` on `listen` and returns it with the address it printed.
async fn spawn_server(listen: &str, extra: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut server = Command::new(pbscope_binary()?)
        .args(["serve", "--listen", listen, "--dist"])
        .arg(dist_dir()?)
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting pbscope serve")?;
    let stdout = server.stdout.take().context("stdout")?;
    let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await
        .context("pbscope serve did not start in time")??
        .context("pbscope serve exited")?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .with_context(|| format!("no address in {line:?}"))?
        .to_owned();
    Ok((server, addr))
}

impl Session {
    pub async fn start() -> anyhow::Result<Session> {
        Self::start_with(&[]).await
    }

    /// Starts everything and opens the page, waiting until it says it is connected.
    pub async fn open_page() -> anyhow::Result<Session> {
        let s = Self::start().await?;
        s.browser.goto(&s.url).await?;
        s.wait_text("[data-testid=conn-status]", |t| {
            t.to_lowercase().contains("connected")
        })
        .await?;
        Ok(s)
    }

    /// Starts with extra `pbscope serve` arguments.
    pub async fn start_with(extra: &[&str]) -> anyhow::Result<Session> {
        let (server, addr) = spawn_server("127.0.0.1:0", extra).await?;
        let port = free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the Chromium it starts joins: a session dropped by a
            // failing test kills the browser too (`Drop`), not just chromedriver.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver (scripts/setup --browser installs it)")?;
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1600,1000", "--force-device-scale-factor=1"
                ]
            }),
        );
        let mut browser = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(c) => {
                    browser = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let browser = browser.context("could not open a Chromium session through chromedriver")?;
        Ok(Session {
            browser,
            url: format!("http://{addr}/"),
            ws_url: format!("ws://{addr}/ws"),
            server,
            driver,
            addr,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// Resizes the window so the page itself (the viewport) is `width` x `height`.
    pub async fn set_viewport(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let chrome = self
            .browser
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await?;
        let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
        self.browser
            .set_window_size(width + extra(0), height + extra(1))
            .await?;
        // The window may take a moment to reach its size: until it has, the page is still
        // laid out for the old one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = self
                .browser
                .execute("return [window.innerWidth, window.innerHeight];", vec![])
                .await?;
            if now[0].as_u64() == Some(width.into()) && now[1].as_u64() == Some(height.into()) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the viewport stayed {now} instead of {width}x{height}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills `pbscope serve` (SIGKILL: its nodes die with it) and starts a new one on the same
    /// address, as when a person restarts the server under an open page.
    pub async fn restart_server(&mut self) -> anyhow::Result<()> {
        self.stop_server().await?;
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let (server, _) = spawn_server(&self.addr, &extra).await?;
        self.server = server;
        Ok(())
    }

    /// The `host:port` the server listens on (and a restarted one listens on again).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Kills `pbscope serve` and waits until it is gone.
    pub async fn stop_server(&mut self) -> anyhow::Result<()> {
        self.server.kill().await.context("killing pbscope serve")
    }

    /// Waits until the element exists and returns its text.
    /// The first element matching `css`, waiting up to [`WAIT`] for it.
    async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))
    }

    pub async fn text_of(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    /// Polls until `css` matches an element whose text satisfies `pred`; returns that text.
    pub async fn wait_text(
        &self,
        css: &str,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(els) = self.browser.find_all(Locator::Css(css)).await {
                for el in els {
                    if let Ok(t) = el.text().await {
                        if pred(&t) {
                            return Ok(t);
                        }
                        last = t;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("timed out waiting on {css}; last text {last:?}")
    }

    /// The attribute `name` of the first element matching `css` (waiting for the element).
    pub async fn attr(&self, css: &str, name: &str) -> anyhow::Result<String> {
        self.find(css)
            .await?
            .attr(name)
            .await?
            .with_context(|| format!("{css} has no attribute {name}"))
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.browser.find_all(Locator::Css(css)).await?.len())
    }

    /// Polls until at least `n` elements match `css`.
    pub async fn wait_count(&self, css: &str, n: usize) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut count = 0;
        while tokio::time::Instant::now() < deadline {
            count = self
                .browser
                .find_all(Locator::Css(css))
                .await
                .map_or(0, |v| v.len());
            if count >= n {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("timed out waiting for {n} of {css}; saw {count}")
    }

    /// Clicks the first element matching `css`. A click that lands on something else because
    /// the layout moved under it (a card appearing, a banner pushing things down) is tried again
    /// once the page has settled, as a person would, for up to [`WAIT`].
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let result = self.find(css).await?.click().await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if moved_under_the_click(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("clicking {css}")),
            }
        }
    }

    /// Saves a PNG of the page under `target/screenshots/`, or under `$PBSCOPE_SCREENSHOTS`
    /// (relative to the workspace root) — `PBSCOPE_SCREENSHOTS=docs/screenshots` refreshes the
    /// committed ones.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.browser.screenshot().await?;
        let dir = match std::env::var_os("PBSCOPE_SCREENSHOTS") {
            Some(d) => workspace_root().join(d),
            None => workspace_root().join("target").join("screenshots"),
        };
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// [`Session::screenshot`] for a page that is busy drawing a heavy load: Chromium gives up on
    /// a capture when its renderer sends no frame within 10 s, which happens when the test shares
    /// two cores with other work. The PNG is a record for a person, never a check, so a capture
    /// that still fails after a retry is reported on stderr and the test goes on to its checks.
    pub async fn screenshot_if_it_can(&self, name: &str) -> Option<PathBuf> {
        let mut last = None;
        for _ in 0..2 {
            match self.screenshot(name).await {
                Ok(path) => return Some(path),
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            eprintln!("screenshot {name} not taken (the page is still checked): {e:#}");
        }
        None
    }

    /// Runs axe-core on the page as it is now (every rule axe runs by default: WCAG 2.x A and AA
    /// plus its best practices) and returns what it found. axe comes from npm, installed into
    /// `.tools/` by `scripts/setup --browser`; it is injected into the page, not part of it.
    pub async fn axe(&self) -> anyhow::Result<Vec<AxeViolation>> {
        let path = workspace_root().join(".tools/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing: run `scripts/setup --browser` (it installs axe-core)",
                path.display()
            )
        })?;
        let loaded = self
            .browser
            .execute(
                &format!("if (!window.axe) {{ {source}\n}} return typeof window.axe;"),
                vec![],
            )
            .await?;
        anyhow::ensure!(loaded == "object", "axe-core did not load: {loaded}");
        let found = self.browser.execute_async(AXE_RUN, vec![]).await?;
        if let Some(err) = found.get("error") {
            bail!("axe.run failed: {err}");
        }
        let found = found
            .as_array()
            .with_context(|| format!("axe.run answered {found}"))?;
        Ok(found.iter().map(AxeViolation::from_json).collect())
    }

    /// Closes the browser and stops the processes.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = self.browser.clone().close().await;
        self.kill_browser();
        let _ = self.driver.kill().await;
        let _ = self.server.kill().await;
        Ok(())
    }
}

impl Drop for Session {
    /// A test that fails returns early, past `close`: chromedriver dies with its `Child`, but
    /// the Chromium it started would live on (reparented to init, busy with a live page) and load
    /// the machine for every later test. Kill the driver's whole process group.
    fn drop(&mut self) {
        self.kill_browser();
    }
}

impl Session {
    /// The pid of chromedriver (the leader of the browser's process group), while it runs.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.id()
    }

    fn kill_browser(&self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Whether a click failed only because the element moved or was covered for a moment.
fn moved_under_the_click(e: &fantoccini::error::CmdError) -> bool {
    let text = e.to_string();
    text.contains("click intercepted")
        || text.contains("stale element")
        || text.contains("not interactable")
}
