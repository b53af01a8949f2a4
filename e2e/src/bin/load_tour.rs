//! Takes the load's screenshots (`docs/screenshots/load-*.png`) against the real server: the
//! load panel open, the live charts with a primary's crash marked (and the latency spike it
//! causes), the diagram's grouped load lane with its aggregate note, at 1600x1000 and 1280x800.
//!
//!   cargo build -p server && trunk build --release &&
//!   PBSCOPE_SCREENSHOTS=docs/screenshots cargo run -p e2e --bin load_tour
//!
//! Without `PBSCOPE_SCREENSHOTS` the PNGs go to `target/screenshots/`.

use std::time::Duration;

use e2e::Session;

async fn tour(width: u32, height: u32) -> anyhow::Result<()> {
    let s = Session::open_page().await?;
    // Closed whatever happens: a browser left open keeps loading the machine.
    let result = steps(&s, width, height).await;
    if result.is_err() {
        // What the page looked like when a step failed.
        let _ = s.screenshot(&format!("load-failed-{width}x{height}")).await;
    }
    s.close().await?;
    result
}

async fn steps(s: &Session, width: u32, height: u32) -> anyhow::Result<()> {
    s.set_viewport(width, height).await?;
    s.click("[data-testid=load-toggle]").await?;
    // The panel's default, 2,000 calls/s: heavy enough to be sampled, light enough to leave
    // the browser some of the two cores the load, the cluster and Chromium share.
    s.wait_text("[data-testid=load-rate] + output", |t| t.contains("2"))
        .await?;
    s.click("[data-testid=load-start]").await?;
    s.wait_count("[data-testid=load-charts]", 1).await?;
    // Some seconds of steady load, then the primary dies; then some seconds after.
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.click("[data-testid=crash-s1]").await?;
    s.wait_count("[data-testid=chart-marker]", 1).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    println!(
        "{}",
        s.screenshot(&format!("load-charts-{width}x{height}"))
            .await?
            .display()
    );
    s.click("[data-testid=load-toggle]").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    println!(
        "{}",
        s.screenshot(&format!("load-running-{width}x{height}"))
            .await?
            .display()
    );
    s.click("[data-testid=load-stop]").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    e2e::until_signalled(run()).await
}

async fn run() -> anyhow::Result<()> {
    tour(1600, 1000).await?;
    tour(1280, 800).await?;
    Ok(())
}
