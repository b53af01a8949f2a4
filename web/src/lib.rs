//! pbscope's page: a live space-time diagram, failover timeline and control panel for the
//! Lab 1 primary/backup lock service.
//!
//! Pure modules (tested natively with `cargo test -p web`): `chunked`, `symbols`, `history`,
//! `failover`, `diagram::layout`, `store`, `demo`, `keys`, `format`. Browser-only code: `ws`
//! (all network I/O) and `components`.

pub mod chunked;
pub mod components;
pub mod demo;
pub mod diagram;
pub mod events;
pub mod failover;
pub mod format;
pub mod history;
pub mod keys;
pub mod store;
pub mod symbols;
#[cfg(test)]
mod testkit;
pub mod timeaxis;
pub mod ws;
