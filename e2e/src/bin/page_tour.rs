//! Takes the page's tour screenshots (`docs/screenshots/page-*.png`) against the real server:
//! the demo, the failover demo in slow motion, the help overlay, projector mode at 1280x800.
//!
//!   cargo build -p server && trunk build --release &&
//!   PBSCOPE_SCREENSHOTS=docs/screenshots cargo run -p e2e --bin page_tour
//!
//! Without `PBSCOPE_SCREENSHOTS` the PNGs go to `target/screenshots/`.

use std::time::Duration;

use e2e::Session;
use fantoccini::Locator;

async fn press(s: &Session, key: &str) -> anyhow::Result<()> {
    s.browser
        .find(Locator::Css("body"))
        .await?
        .send_keys(key)
        .await?;
    Ok(())
}

/// Waits until the demo button says the run is over.
async fn demo_finished(s: &Session) -> anyhow::Result<()> {
    let wait = e2e::WAIT * 3;
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let t = s.text_of("[data-testid=demo]").await?;
        if !t.contains("stop") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the demo did not finish in {wait:?}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    e2e::until_signalled(run()).await
}

async fn run() -> anyhow::Result<()> {
    // A plain demo, caught mid-run.
    let s = Session::open_page().await?;
    s.click("[data-testid=empty-demo]").await?;
    s.wait_count("[data-testid=history-entry-c2]", 2).await?;
    println!("{}", s.screenshot("page-demo").await?.display());
    s.close().await?;

    // The failover demo in slow motion: messages in flight, the window of no answers.
    let s = Session::open_page().await?;
    s.click("[data-testid=slow-800]").await?;
    s.click("[data-testid=empty-failover-demo]").await?;
    s.wait_text("[data-testid=failover-window]", |t| t.contains("ms"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!(
        "{}",
        s.screenshot("page-failover-demo-slow-motion")
            .await?
            .display()
    );
    s.close().await?;

    // The help overlay over a diagram with some traffic.
    let s = Session::open_page().await?;
    s.click("[data-testid=empty-demo]").await?;
    demo_finished(&s).await?;
    press(&s, "?").await?;
    s.wait_count("[data-testid=help]", 1).await?;
    println!("{}", s.screenshot("page-help").await?.display());
    s.close().await?;

    // Projector mode on a 1280x800 screen, after a failover demo.
    let s = Session::open_page().await?;
    s.set_viewport(1280, 800).await?;
    s.click("[data-testid=large-text]").await?;
    press(&s, "D").await?;
    s.wait_text("[data-testid=failover-window]", |t| t.contains("ms"))
        .await?;
    demo_finished(&s).await?;
    println!(
        "{}",
        s.screenshot("page-projector-1280x800").await?.display()
    );
    s.close().await
}
