//! pbscope's page: a live space-time diagram, failover timeline and control panel for the
//! Lab 1 primary/backup lock service.
//!
//! Pure modules (tested natively with `cargo test -p web`): `chunked`, `symbols`, `timeaxis`,
//! `events`, `faults`, `history`, `failover`, `diagram::layout`, `store` (the state in slices), `demo`,
//! `lecture` (the lecture's presets and their runner), `grants` (the double-grant detector),
//! `verdict` (the checker's verdicts as the badge tells them), `load` (the load's chart data, sampling
//! and chart geometry),
//! `call`, `keys`, `format`. Browser-only code: `ws` (all network I/O) and `components`. Unit
//! tests share their fixtures through `testkit`.
//!
//! Imports go one way, down this list: a module uses only `shared`, std and the layers above
//! its own (the components also use each other). `tests/module_graph.rs` checks the sources
//! against it.
//!
//! 1. `symbols`, `chunked`, `timeaxis`, `format`, `keys`, `call`, `grants`, `verdict`
//! 2. `events`, `demo`, `faults`, `lecture`, `load`
//! 3. `failover`
//! 4. `history`
//! 5. `diagram::layout`
//! 6. `store`
//! 7. `ws`
//! 8. `components`
//!
//! So: `symbols, chunked, timeaxis <- events <- failover <- history <- diagram::layout <- store
//! <- ws <- components`.

mod call;
mod chunked;
mod components;
mod demo;
mod diagram;
mod events;
mod failover;
mod faults;
mod format;
mod grants;
mod history;
mod keys;
mod lecture;
mod load;
mod store;
mod symbols;
#[cfg(test)]
mod testkit;
mod timeaxis;
mod verdict;
mod ws;

/// The page, mounted by `main.rs`.
pub use components::app::App;
