//! pbscope's native side: the supervisor (`pbscope serve`), the node processes (`pbscope node`),
//! the client processes (`pbscope client`) and everything between them. The binary in `main.rs`
//! only parses arguments and calls in here, so integration tests and the benchmark drive the
//! same code.

/// Writes a line to stdout, as `println!` would; a reader that went away (`pbscope check |
/// head -1`, `pbscope bench | head -3`) only loses the rest of the text, never the run's clean
/// end (`println!` panics on the closed pipe).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bench;
pub mod bus;
pub mod campaign;
pub mod clerk;
pub(crate) mod clerk_runtime;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod cpu;
pub(crate) mod event_json;
pub mod framing;
pub mod gateway;
pub mod group_commit;
pub mod http;
pub mod live_check;
pub mod load;
pub(crate) mod lockservice;
pub mod node;
pub mod oserror;
pub mod redis_anchor;
pub mod runs;
pub(crate) mod slowmo;
pub mod wire;
