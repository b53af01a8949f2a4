//! pbscope's linearizability checker.
//!
//! The sequential model is one lock: held or free; `Lock` answers true iff it was free (and
//! leaves it held), `Unlock` answers true iff it was held (and leaves it free). The model is
//! P-compositional, so every lock is checked on its own.
//!
//! - [`check_calls`]: one lock's whole history, from scratch (Wing & Gong / Lowe search with a
//!   cache of (linearized calls, state), as Porcupine does it).
//! - [`Monitor`]: the live checker. It folds wire events into one history per lock and checks
//!   each incrementally, carrying the set of reachable configurations from one answer to the
//!   next, so a check only searches what is new.
//! - [`check_events`]: a whole run's events at once (a saved run, a campaign's schedule);
//!   [`with_verdicts`] puts its verdicts into the run where a live checker would have.
//!
//! A call whose client gave up, crashed or was reset has an unknown outcome: it returns at
//! infinity and its result is not checked (it may take effect at any later time, or never).
//! A search that runs out of budget gives "unknown", never "ok".
//!
//! Pure: no I/O, no clock, no threads; builds for `wasm32-unknown-unknown`. See docs/checker.md.

mod context;
mod explain;
mod frontier;
mod history;
mod monitor;
mod wgl;

pub use frontier::MAX_IN_FLIGHT;
pub use history::{apply, step, Call, Decision, Outcome};
pub use monitor::{
    check_events, with_verdicts, Budget, Monitor, MonitorStats, FRONTIER_CAP, SETTLE_US,
};
pub use wgl::check_calls;

/// A moment on the run's clock as the checker's words (and the page's time axis) write it:
/// `2.500 s`, `1:22.366`, `1:02:03.004`.
pub fn clock(t_us: u64) -> String {
    context::secs(t_us)
}
#[cfg(test)]
mod tests;
