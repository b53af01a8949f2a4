//! The page's event vocabulary: each wire [`shared::Event`] as a compact [`Ev`] (names
//! interned), the messages ([`MsgRec`]) a send and its delivery or loss make, and the stretches a
//! lane spends dead, paused or dying ([`DeadSpan`]).
//!
//! A leaf: types only, built by `history` and read by `failover`, `diagram::layout` and the
//! components. It must not import any of them (only `shared`, `symbols` and std), so the
//! modules that fold events never import each other in a circle.

use std::rc::Rc;

use shared::{CrashCause, CrashPoint, LockVerdict, MsgId, Op, RequestId, Role, VerdictStatus};

use crate::symbols::Sym;

/// One event, compact. `y` is its position on the diagram's time axis (pixels, growing).
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub seq: u64,
    pub t_us: u64,
    pub y: f64,
    pub node: Sym,
    pub kind: Kind,
}

/// [`EventKind`] with names interned and tags left out (the store keeps the tags it needs).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Started {
        pid: u32,
        role: Role,
        port: u16,
    },
    Exited {
        pid: u32,
        signal: Option<i32>,
        code: Option<i32>,
    },
    Crashed {
        pid: u32,
        cause: CrashCause,
        req: Option<RequestId>,
    },
    /// A crash armed at `point` (`crash_before_reply` is `BeforeReply`), going silent
    /// `dying_ms` before it dies when set.
    Armed {
        point: CrashPoint,
        dying_ms: Option<u64>,
    },
    /// The server went silent and is killed `dies_in_ms` later (the lab's "dying" server).
    Dying {
        pid: u32,
        dies_in_ms: u64,
        point: Option<CrashPoint>,
    },
    /// SIGSTOP of the server's process.
    Paused {
        pid: u32,
    },
    /// SIGCONT of the server's process.
    Resumed {
        pid: u32,
    },
    /// A client's own process started (`incarnation` 0 first, one more per restart).
    ClientStarted {
        pid: u32,
        incarnation: u32,
    },
    /// The fault plan changed; `change` says what, for people.
    Faults {
        change: Sym,
    },
    RoleChanged {
        role: Role,
        alone: bool,
        reason: Sym,
    },
    /// `msg` is the global index of the message in [`crate::history::History::msgs`].
    Sent {
        msg_id: MsgId,
        msg: usize,
    },
    /// `duplicate`: the network's second copy of a message delivered already.
    Delivered {
        msg_id: MsgId,
        msg: Option<usize>,
        duplicate: bool,
    },
    /// Step mode holds the message in its receiver's inbox until a person decides.
    Held {
        msg_id: MsgId,
        msg: Option<usize>,
    },
    Lost {
        msg_id: MsgId,
        msg: Option<usize>,
        reason: Sym,
    },
    Executed {
        req: RequestId,
        op: Op,
        lock: Sym,
        ok: bool,
        held: bool,
        duplicate: bool,
        forwarded: bool,
    },
    Invoked {
        req: RequestId,
        op: Op,
        lock: Sym,
        server: Sym,
    },
    Completed {
        req: RequestId,
        op: Op,
        lock: Sym,
        ok: bool,
        server: Sym,
        latency_us: u64,
        attempts: u32,
    },
    Failed {
        req: RequestId,
        op: Op,
        lock: Sym,
        reason: Sym,
    },
    RpcFailed {
        req: RequestId,
        server: Sym,
        reason: Sym,
        retry_to: Sym,
    },
    Reset {
        generation: u64,
    },
    SlowMotion {
        delay_ms: u64,
    },
    /// A report of the load generator (`load_changed`, `load_stats`): never placed in a
    /// history (the charts fold them, `load.rs`).
    LoadReport,
    /// The checker's verdict on `lock` changed (node `checker`: it has no lane). Only a
    /// violation takes a row on the time axis (it is drawn as a red line across the diagram);
    /// an `ok` or `unknown` sits on the previous event's row, so a checker that reports often
    /// does not stretch the diagram. `verdict` is the whole verdict, for the details.
    Verdict {
        lock: Sym,
        status: VerdictStatus,
        verdict: Rc<LockVerdict>,
    },
}

/// The four arrows of the Lab 1 protocol, and the refusal of a forward by a backup that serves
/// clients itself (rare: only when a primary was given up on while alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgKind {
    Request,
    Forward,
    ForwardAck,
    ForwardRefused,
    Reply,
}

impl MsgKind {
    /// The wire name, also the CSS class and `data-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgKind::Request => "request",
            MsgKind::Forward => "forward",
            MsgKind::ForwardAck => "forward_ack",
            MsgKind::ForwardRefused => "forward_refused",
            MsgKind::Reply => "reply",
        }
    }

    /// The kinds the legend shows (a refusal is explained where it happens).
    pub const ALL: [MsgKind; 4] = [
        MsgKind::Request,
        MsgKind::Forward,
        MsgKind::ForwardAck,
        MsgKind::Reply,
    ];
}

/// How a message's life ended (so far).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MsgEnd {
    InFlight,
    /// Arrived, and step mode holds it in the receiver's inbox (`msg_held` at `y`).
    Held {
        event: usize,
        t_us: u64,
        y: f64,
    },
    Delivered {
        event: usize,
        t_us: u64,
        y: f64,
    },
    Lost {
        event: usize,
        t_us: u64,
        y: f64,
        reason: Sym,
    },
}

/// One message: a send, and later its delivery or loss.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgRec {
    pub msg_id: MsgId,
    pub from: Sym,
    pub to: Sym,
    pub kind: MsgKind,
    pub req: RequestId,
    pub op: Option<Op>,
    pub lock: Option<Sym>,
    pub ok: Option<bool>,
    /// Global index of the `msg_sent` event.
    pub sent: usize,
    pub sent_t: u64,
    pub sent_y: f64,
    pub end: MsgEnd,
    /// For requests: 1 for the first send of this request id, 2+ for retries.
    pub attempt: u32,
    /// The cluster generation it belongs to: request ids start over after a reset.
    pub generation: u64,
    /// The network delivered it a second time (a duplicate): that delivery's event and `y`.
    pub dup: Option<(usize, f64)>,
    /// Operations it carries: 1, or more for a group commit's `forward_batch` /
    /// `forward_ack_batch` (then `req` is the first one's and `op`, `lock`, `ok` are empty).
    pub batch: u32,
}

/// What a lane's process was doing during a [`DeadSpan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Killed (or exited): until a restart (`process_started`, a client's `client_started`).
    Dead,
    /// Stopped by SIGSTOP: until `resumed` (or its death).
    Paused,
    /// Gone silent before its announced death: until it dies.
    Dying,
}

impl SpanKind {
    /// The CSS class and `data-span`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Dead => "dead",
            SpanKind::Paused => "paused",
            SpanKind::Dying => "dying",
        }
    }
}

/// A stretch of a lane during which its process was dead, paused or dying.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadSpan {
    pub kind: SpanKind,
    /// The lane (a server, or a client's process).
    pub server: Sym,
    pub from_y: f64,
    pub from_t: u64,
    /// `None`: still dead.
    pub to_y: Option<f64>,
}

impl Kind {
    /// The request an event is about, if any.
    pub fn req(&self) -> Option<RequestId> {
        match self {
            Kind::Executed { req, .. }
            | Kind::Invoked { req, .. }
            | Kind::Completed { req, .. }
            | Kind::Failed { req, .. }
            | Kind::RpcFailed { req, .. } => Some(*req),
            Kind::Crashed { req, .. } => *req,
            _ => None,
        }
    }
}
