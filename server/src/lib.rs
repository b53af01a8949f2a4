//! pbscope's native side: the supervisor (`pbscope serve`), the node processes (`pbscope node`),
//! the client processes (`pbscope client`) and everything between them. The binary in `main.rs`
//! only parses arguments and calls in here, so integration tests and the benchmark drive the
//! same code.

pub mod bench;
pub mod bus;
pub mod clerk;
pub(crate) mod clerk_runtime;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod framing;
pub mod gateway;
pub mod http;
pub(crate) mod lockservice;
pub mod node;
pub mod oserror;
pub mod runs;
pub(crate) mod slowmo;
pub mod wire;
