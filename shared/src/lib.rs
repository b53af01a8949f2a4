//! The wire contract of pbscope: every JSON message that crosses a socket.
//!
//! Three parties speak it: the page (browser) and the gateway of `pbscope serve` over a WebSocket,
//! and the node processes among themselves and with their supervisor over TCP. This crate holds
//! the serde types and their meaning, their decoders (`decode`, and `rows`: a quick reader for
//! the events frames of a compact viewer, and of a node's reports); it has no tokio and no clock, so that it builds for
//! `wasm32-unknown-unknown` unchanged. `docs/protocol.md` shows every message as JSON; a golden
//! test in the server keeps the two in step.
//!
//! All messages are JSON objects tagged by `"type"` in `snake_case`.

pub mod binary;
mod decode;
mod rows;

pub use decode::executed_flags;
pub use rows::{read_events_frame, read_server_msg};

use serde::{Deserialize, Serialize};

/// Bumped on any change a client of an older version could misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// A process of the run: a server's stable id (`"s1"`, `"s2"`), a clerk's name (`"c1"`), or
/// `"supervisor"`. On the wire it is that plain string.
///
/// Natively kept inline (no allocation) up to 23 bytes, which every name pbscope gives is:
/// events carry two or three of them each, and allocating them was a measurable share of the
/// supervisor's time under load. A longer one (only a stranger's report could hold it) is
/// shared, not copied. The page keeps a plain `String`: it reads a hundredth of the events the
/// supervisor handles, and `smol_str` would cost it 3.3 KB of gzipped wasm.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
#[serde(transparent)]
pub struct NodeId(NodeName);

#[cfg(not(target_arch = "wasm32"))]
type NodeName = smol_str::SmolStr;
#[cfg(target_arch = "wasm32")]
type NodeName = String;

impl NodeId {
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(NodeName::from(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The clerk's id, for a client's name (`"c3"` -> 3).
    pub fn client_id(&self) -> Option<u32> {
        self.0.strip_prefix('c').and_then(|n| n.parse().ok())
    }
}

impl std::ops::Deref for NodeId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self(NodeName::from(s))
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        Self(NodeName::from(s))
    }
}

impl From<NodeId> for String {
    // On the page the name already is a `String`.
    #[allow(clippy::useless_conversion)]
    fn from(n: NodeId) -> Self {
        n.0.into()
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NodeId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The name of the supervisor in events it reports itself (resets, slow motion).
pub const SUPERVISOR: &str = "supervisor";

/// The node name of the load generator's own events (`load_changed`, `load_stats`).
pub const LOAD_NODE: &str = "load";

/// The first client id of the load generator's clerks (`c1001`, `c1002`, ...). Manual clients
/// (a person's, a test's) are numbered below it; a command naming a client from here on is
/// refused, so a person's call never collides with the load's.
pub const LOAD_FIRST_CLIENT: u32 = 1001;

/// Most clerks the load generator runs at once.
pub const MAX_LOAD_CLIENTS: u32 = 256;

/// Most distinct lock names the load spreads its calls over (`load-0` .. `load-{N-1}`). The
/// load's names are reserved (`load-` and a number, or `load-hot`) and do not count against a
/// generation's budget of lock names (`max_locks`), which stays whole for people.
pub const MAX_LOAD_LOCKS: u32 = 10_000;

/// Highest total call rate (calls per second) the load may target; 0 is closed loop.
pub const MAX_LOAD_RATE: u64 = 1_000_000;

/// Largest `load_sample` a `detail` command may ask for.
pub const MAX_LOAD_SAMPLE: u32 = 1_000_000;

/// Whether client `id` is one of the load generator's clerks.
pub fn is_load_client(id: u32) -> bool {
    id >= LOAD_FIRST_CLIENT
}

/// What a viewer's `detail` sample is taken on: a load call is sampled in one of `n` iff
/// `load_sample_key(req) % n == 0`. The client spreads the sample over the clerks: closed-loop
/// clerks advance their `seq` together, so `seq` alone drew every clerk's calls at once, in
/// bursts. The gateway samples its frames by it, and the page the first snapshot it gets
/// (sent before it could ask for a sample).
pub fn load_sample_key(req: &RequestId) -> u64 {
    req.seq + u64::from(req.client)
}

/// The node name under which client `id` appears in events and on the diagram.
pub fn client_node(id: u32) -> NodeId {
    NodeId(NodeName::from(format!("c{id}")))
}

/// One message of the run: pairs its `msg_sent` with its `msg_delivered` or `msg_lost`. The high
/// 32 bits say which process sent it (its origin, unique in the run), the low 32 bits count that
/// process's messages in the order it sent them. On the wire, the plain number.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[serde(transparent)]
pub struct MsgId(pub u64);

impl MsgId {
    pub fn new(origin: u64, number: u64) -> Self {
        Self((origin << 32) | (number & 0xffff_ffff))
    }

    /// The sending process's origin.
    pub fn origin(self) -> u64 {
        self.0 >> 32
    }

    /// Which of its origin's messages this is (1 for the first).
    pub fn number(self) -> u64 {
        self.0 & 0xffff_ffff
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a command's `node` names: a server by its stable id, or whichever live server holds a
/// role now. On the wire the plain string: `"s1"`, `"primary"`, `"backup"`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(from = "String", into = "String")]
pub enum NodeRef {
    Role(Role),
    Server(NodeId),
    /// `"*"`: every server (for `crash`, `pause`, `resume`, `restart`).
    All,
}

impl From<String> for NodeRef {
    fn from(s: String) -> Self {
        match s.as_str() {
            "primary" => NodeRef::Role(Role::Primary),
            "backup" => NodeRef::Role(Role::Backup),
            "*" => NodeRef::All,
            _ => NodeRef::Server(NodeId::from(s)),
        }
    }
}

impl From<&str> for NodeRef {
    fn from(s: &str) -> Self {
        NodeRef::from(s.to_owned())
    }
}

impl From<NodeRef> for String {
    fn from(r: NodeRef) -> Self {
        r.to_string()
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeRef::Role(Role::Primary) => f.write_str("primary"),
            NodeRef::Role(Role::Backup) => f.write_str("backup"),
            NodeRef::Role(Role::Deposed) => f.write_str("deposed"),
            NodeRef::Server(id) => f.write_str(id),
            NodeRef::All => f.write_str("*"),
        }
    }
}

/// One end of a link, as a fault command names it: a server id (`"s1"`), a role (`"primary"`,
/// `"backup"`: the server holding it when the command runs), a client (`"c1"`), or `"*"` (every
/// process). On the wire the plain string.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(from = "String", into = "String")]
pub enum Endpoint {
    Any,
    Role(Role),
    Client(u32),
    Server(NodeId),
}

impl From<String> for Endpoint {
    fn from(s: String) -> Self {
        let id = NodeId::from(s);
        match (id.as_str(), id.client_id()) {
            ("*", _) => Endpoint::Any,
            ("primary", _) => Endpoint::Role(Role::Primary),
            ("backup", _) => Endpoint::Role(Role::Backup),
            (_, Some(client)) => Endpoint::Client(client),
            _ => Endpoint::Server(id),
        }
    }
}

impl From<&str> for Endpoint {
    fn from(s: &str) -> Self {
        Endpoint::from(s.to_owned())
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> Self {
        e.to_string()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Any => f.write_str(ANY),
            Endpoint::Role(role) => NodeRef::Role(*role).fmt(f),
            Endpoint::Client(id) => write!(f, "c{id}"),
            Endpoint::Server(id) => f.write_str(id),
        }
    }
}

/// The name that stands for every process in a fault plan's links and cuts.
pub const ANY: &str = "*";

/// A probability in [0, 1] (the gateway refuses anything else, NaN included, so equality is
/// total). On the wire the plain number.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, PartialOrd, Debug, Default)]
#[serde(transparent)]
pub struct Probability(pub f64);

impl Probability {
    pub fn is_valid(self) -> bool {
        (0.0..=1.0).contains(&self.0)
    }
}

impl Eq for Probability {}

/// Where in an operation an armed server dies (`crash_at`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "snake_case")]
pub enum CrashPoint {
    /// The primary applied a client's operation and dies before forwarding it.
    BeforeForward,
    /// The primary forwarded the operation and dies before the backup's ack is back.
    AfterForward,
    /// The primary has the backup's ack and dies before its reply leaves (`crash_before_reply`).
    BeforeReply,
    /// The backup applied a forward and dies before its ack leaves.
    BeforeAck,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::BeforeForward,
        CrashPoint::AfterForward,
        CrashPoint::BeforeReply,
        CrashPoint::BeforeAck,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::BeforeForward => "before_forward",
            CrashPoint::AfterForward => "after_forward",
            CrashPoint::BeforeReply => "before_reply",
            CrashPoint::BeforeAck => "before_ack",
        }
    }
}

/// The network's faults in force, with every name resolved to a process id (`"s1"`, `"c2"`) or
/// [`ANY`]. Each receiver's inbox applies the rules for the messages it receives.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct FaultPlan {
    /// Seeds every random fault decision: the same seed gives the same decisions for the same
    /// messages (a decision is a pure function of the seed, the message id and the receiver).
    pub seed: u64,
    /// Step mode: every message waits in its receiver's inbox until `deliver`, `drop` or
    /// `duplicate` names it.
    pub step: bool,
    /// Per-link settings. For a message from A to B the most specific rule applies:
    /// (A, B), then (A, `*`), then (`*`, B), then (`*`, `*`).
    pub links: Vec<LinkRule>,
    /// Groups that can't reach each other (both ways). A process named in no group reaches
    /// everyone. Empty: no partition.
    pub partition: Vec<Vec<NodeId>>,
    /// One-way cuts: nothing from `from` reaches `to`.
    pub cuts: Vec<Cut>,
}

/// What the network does to the messages of one link.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct LinkRule {
    pub from: NodeId,
    pub to: NodeId,
    /// Chance a message is dropped.
    pub drop: Probability,
    /// Chance a message (not dropped) is delivered twice.
    pub duplicate: Probability,
    /// Extra time a message waits in the inbox.
    pub delay_ms: u64,
    /// Up to this much more, drawn per message: messages of the link may overtake each other.
    pub jitter_ms: u64,
}

/// A one-way cut.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Cut {
    pub from: NodeId,
    pub to: NodeId,
}

/// What step mode does with a held message.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Deliver,
    Drop,
    Duplicate,
}

/// A message held in its receiver's inbox by step mode, waiting for a person's decision.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct HeldMsg {
    pub msg_id: MsgId,
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Msg,
    /// When it was held, on the events' time axis.
    pub since_us: u64,
}

/// Identifies one client call across all its retries: the at-most-once key.
///
/// A clerk has at most one call outstanding, so `seq` only grows per client.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId {
    pub client: u32,
    pub seq: u64,
    /// Which process of client lane `client` made the call: 0 for the first, one more after each
    /// crash. A restarted client is a new identity, as in Lab 1, so its calls never collide with
    /// the at-most-once records of its previous life. Absent on the wire when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u32,
}

impl RequestId {
    /// The call `seq` of client `client`'s first process.
    pub const fn new(client: u32, seq: u64) -> Self {
        Self {
            client,
            seq,
            incarnation: 0,
        }
    }
}

/// `c1.7`: client 1, call 7, as people read the at-most-once key. A restarted client's
/// process is a new identity: `c1.7/i1` is call 7 of its incarnation 1.
impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}.{}", self.client, self.seq)?;
        if self.incarnation != 0 {
            write!(f, "/i{}", self.incarnation)?;
        }
        Ok(())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

/// The two operations of the Lab 1 lock service. Both answer at once; neither waits.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Mark a free lock held and answer `true`; answer `false` if it is already held.
    Lock,
    /// Mark a held lock free and answer `true`; answer `false` if it is not held.
    Unlock,
}

/// The role a server plays in the Lab 1 pair.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Serves clients; forwards every operation to the backup unless it serves alone.
    Primary,
    /// Applies what the primary forwards; starts serving clients who fail over to it.
    Backup,
    /// A former primary that learned its backup took over (the backup refused its forward, or
    /// answered differently): it serves nobody from then on and closes client connections, so
    /// clients turn to the server that now holds the state. Not in Lab 1, which assumes this
    /// cannot happen; pbscope adds it so that two servers never both answer while they can still
    /// reach each other. A partition (they can't) still gives two primaries: that is Lab 1's flaw.
    Deposed,
}

/// What travels between processes of the lock service. Shown on the diagram as one arrow each.
/// Read in one pass by a reader of our own (`decode.rs`), the wire unchanged.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Msg {
    /// Clerk -> server: please execute `op` on `lock`. Retries carry the same `req`.
    Request {
        req: RequestId,
        op: Op,
        lock: String,
    },
    /// Server -> clerk: the answer to `req` (the recorded one, for a retry).
    Reply { req: RequestId, ok: bool },
    /// Primary -> backup: apply this operation too (sent for failed operations as well).
    Forward {
        req: RequestId,
        op: Op,
        lock: String,
    },
    /// Backup -> primary: applied `req`, with the backup's own answer.
    ForwardAck { req: RequestId, ok: bool },
    /// Backup -> primary: not applied, because this server already serves clients on its own
    /// (a client failed over to it). The primary must not answer `req`: it steps down.
    ForwardRefused { req: RequestId },
    /// Primary -> backup: group commit, several operations in one message, applied in order
    /// (a batch of one is always sent as [`Msg::Forward`]).
    ForwardBatch { ops: Vec<ForwardOp> },
    /// Backup -> primary: the answers to a batch (or to several forwards), one per operation
    /// applied, in order (a batch of one is always sent as [`Msg::ForwardAck`]).
    ForwardAckBatch { acks: Vec<ForwardAckItem> },
}

/// One operation of a [`Msg::ForwardBatch`]: the fields of a [`Msg::Forward`].
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct ForwardOp {
    pub req: RequestId,
    pub op: Op,
    pub lock: String,
}

/// One answer of a [`Msg::ForwardAckBatch`]: the fields of a [`Msg::ForwardAck`].
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ForwardAckItem {
    pub req: RequestId,
    pub ok: bool,
}

impl Msg {
    /// The request a message is about: the first operation's for a batch (`None` for an empty
    /// batch, which nothing sends).
    pub fn first_req(&self) -> Option<RequestId> {
        match self {
            Msg::Request { req, .. }
            | Msg::Reply { req, .. }
            | Msg::Forward { req, .. }
            | Msg::ForwardAck { req, .. }
            | Msg::ForwardRefused { req } => Some(*req),
            Msg::ForwardBatch { ops } => ops.first().map(|o| o.req),
            Msg::ForwardAckBatch { acks } => acks.first().map(|a| a.req),
        }
    }

    /// Every request the message is about, in order (one but for a batch).
    pub fn reqs(&self) -> Vec<RequestId> {
        match self {
            Msg::ForwardBatch { ops } => ops.iter().map(|o| o.req).collect(),
            Msg::ForwardAckBatch { acks } => acks.iter().map(|a| a.req).collect(),
            other => other.first_req().into_iter().collect(),
        }
    }

    /// How many operations the message carries (1 but for a batch).
    pub fn op_count(&self) -> usize {
        match self {
            Msg::ForwardBatch { ops } => ops.len(),
            Msg::ForwardAckBatch { acks } => acks.len(),
            _ => 1,
        }
    }
}

// ------------------------------------------------------------------------------------------
// Browser -> server
// ------------------------------------------------------------------------------------------

/// A command from a viewer. Every command may carry a `tag`, the caller's own string, which is
/// echoed in the `ack` or `error` that answers it (and, for `lock`/`unlock`, in the events of
/// that call).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Ask clerk `client` (created on first use) to call `Lock(lock)`.
    Lock {
        client: u32,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Ask clerk `client` (created on first use) to call `Unlock(lock)`.
    Unlock {
        client: u32,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// SIGKILL the process of a server: a stable id (`"s1"`), a role (`"primary"`, `"backup"`),
    /// or `"*"` (every server at once). With `dying_ms`, the server goes silent now (answers
    /// nothing, connections stay open) and is killed that much later.
    Crash {
        node: NodeRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dying_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Arm a server to execute the next client request it receives completely (apply, forward,
    /// backup ack) and die before its reply leaves.
    CrashBeforeReply {
        node: NodeRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Kill every node and start a fresh cluster: new processes, empty tables, new clerks.
    Reset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Slow motion: every message waits `delay_ms` in its receiver's inbox before the receiver
    /// sees it (a real delay of the real message). 0 turns it off. At most [`Limits::max_delay_ms`].
    SetSlowMotion {
        delay_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Ask for a fresh `snapshot` (the page uses it to resynchronise on demand).
    Snapshot {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Set what the network does to the messages from `from` to `to` (either may be `"*"`).
    /// Absent fields are 0: the command replaces that link's whole setting.
    SetLink {
        from: Endpoint,
        to: Endpoint,
        #[serde(default)]
        drop: Probability,
        #[serde(default)]
        duplicate: Probability,
        #[serde(default)]
        delay_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Split the processes into groups that can't reach each other (both ways). Replaces any
    /// partition in force; cuts and link settings stay.
    Partition {
        groups: Vec<Vec<Endpoint>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Nothing from `from` reaches `to` (one way).
    Cut {
        from: Endpoint,
        to: Endpoint,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Clear partitions, cuts and link settings (the seed and step mode stay).
    Heal {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Seed the fault decisions, so a run's decisions replay.
    SetSeed {
        seed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// SIGSTOP a server's process (or every server's, `"*"`): it neither runs nor dies.
    Pause {
        node: NodeRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// SIGCONT a paused server's process.
    Resume {
        node: NodeRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Start a fresh process for a dead server, with an empty lock table (Lab 1 has no
    /// recovery). `"*"`: every dead server.
    Restart {
        node: NodeRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Arm a server to die at `point` of the next operation that reaches it. With `dying_ms`,
    /// it goes silent at that point (answers nothing, connections stay open) and dies that much
    /// later, like the lab's own "dying" servers.
    CrashAt {
        node: NodeRef,
        point: CrashPoint,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dying_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// SIGKILL client `client`'s process. Its next call starts a new process with a new identity.
    CrashClient {
        client: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Step mode on or off. On: every message waits in its receiver's inbox for `deliver`,
    /// `drop` or `duplicate`. Off: the held ones go on, in order, and messages flow freely.
    Step {
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Step mode: hand the held message `msg_id` to its receiver.
    Deliver {
        msg_id: MsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Step mode: the held message `msg_id` is lost (`msg_lost`, reason `"dropped"`).
    #[serde(rename = "drop")]
    DropMsg {
        msg_id: MsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Step mode: hand the held message `msg_id` to its receiver twice.
    Duplicate {
        msg_id: MsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Start the load generator, or change it while it runs (`clients: 0` stops it).
    Load {
        #[serde(flatten)]
        settings: LoadSettings,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Stop the load generator.
    LoadStop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// How much of the load this viewer wants to see: the events of one load call in
    /// `load_sample` (its request's `(client + seq) % load_sample == 0`, [`load_sample_key`]); 1 (the
    /// default) is every event.
    Detail {
        load_sample: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// How this viewer wants the events every call makes: with `on`, `events` frames hold
    /// them as compact rows (arrays: `shared::decode`'s `read_row`, docs/protocol.md) and every
    /// other event as its object; off (the default on every connection), every event is an
    /// object.
    Compact {
        on: bool,
        /// With `on`: `events` frames come as WebSocket binary messages ([`binary`]: the
        /// same events, rows in a quarter of the bytes). Every other message stays JSON.
        #[serde(default, skip_serializing_if = "is_false")]
        binary: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
}

/// How the load generator's calls pick their lock.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadDistribution {
    /// Uniformly over `locks` names, `load-0` .. `load-{locks-1}`.
    #[default]
    Uniform,
    /// Every call on one lock, `load-hot`.
    Hot,
}

/// What the load generator does: the fields of the `load` command, of `load_changed`, and of
/// the snapshot's `load`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
pub struct LoadSettings {
    /// Clerks calling at once (`c1001` ..); 0 = stopped. At most [`MAX_LOAD_CLIENTS`].
    pub clients: u32,
    /// Target of all the clerks together, in calls per second; 0 = closed loop (each clerk
    /// starts its next call when the last one ends). Each clerk still has one call at a time.
    #[serde(default)]
    pub rate: u64,
    /// Lock names for `uniform` (1..=[`MAX_LOAD_LOCKS`]).
    #[serde(default = "default_load_locks")]
    pub locks: u32,
    #[serde(default)]
    pub distribution: LoadDistribution,
    /// Fraction of the calls that are `Unlock`, in [0, 1].
    #[serde(default = "half")]
    pub unlock_share: f64,
}

fn default_load_locks() -> u32 {
    16
}

fn half() -> f64 {
    0.5
}

// Settings are compared only once checked ([`LoadSettings::invalid`] refuses NaN), so
// equality is an equivalence, as the events' `Eq` needs.
impl Eq for LoadSettings {}

impl LoadSettings {
    /// The load generator at rest.
    pub const STOPPED: LoadSettings = LoadSettings {
        clients: 0,
        rate: 0,
        locks: 16,
        distribution: LoadDistribution::Uniform,
        unlock_share: 0.5,
    };

    /// Why these settings can't be run, in words (`None`: they can).
    pub fn invalid(&self) -> Option<String> {
        if self.clients > MAX_LOAD_CLIENTS {
            return Some(format!(
                "clients must be 0..={MAX_LOAD_CLIENTS}, got {}",
                self.clients
            ));
        }
        if self.rate > MAX_LOAD_RATE {
            return Some(format!(
                "rate is calls per second for all the clerks together: 0 (closed loop) to {MAX_LOAD_RATE}, got {}",
                self.rate
            ));
        }
        if self.locks == 0 || self.locks > MAX_LOAD_LOCKS {
            return Some(format!(
                "locks must be 1..={MAX_LOAD_LOCKS}, got {}",
                self.locks
            ));
        }
        if !self.unlock_share.is_finite() || !(0.0..=1.0).contains(&self.unlock_share) {
            return Some(format!(
                // `{:?}`: 1e308 as "1e308", not as its 309 digits.
                "unlock_share is a fraction of the calls: 0 to 1, got {:?}",
                self.unlock_share
            ));
        }
        None
    }
}

/// Messages sent on one link during a `load_stats` window (the load's clerks count as one
/// sender and receiver, `"load"`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct LinkCount {
    pub from: NodeId,
    pub to: NodeId,
    pub msgs: u64,
}

/// The load generator's numbers over one window (a `load_stats` event).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct LoadStats {
    /// Length of the window, in ms (250 while the load runs; the last window may be shorter).
    pub window_ms: u64,
    /// Calls of the load's clerks that ended in the window.
    pub calls: u64,
    /// Of those, answered by a server (`op_completed`, `ok` true or false alike).
    pub ok: u64,
    /// Of those, given up (`op_failed`: no server answered, the cluster was reset, ...).
    pub failed: u64,
    /// Answered calls per second over the window.
    pub ops_per_s: u64,
    /// Latency of the answered calls, 50th and 99th percentile, in µs (0 with none).
    pub p50_us: u64,
    pub p99_us: u64,
    /// The `load_sample` the page is advised to use (1 = every event is cheap enough).
    pub sample_every: u32,
    /// Messages sent per link in the window.
    #[serde(default)]
    pub links: Vec<LinkCount>,
    /// Calls answered since the load started (from stopped): every call, whatever sample a
    /// viewer asked for, so a page opened late or drawing one call in 20 still counts them all.
    #[serde(default)]
    pub total_ok: u64,
    /// Calls given up since the load started.
    #[serde(default)]
    pub total_failed: u64,
}

/// Every command's `tag` field: `$cmd` is a `&Command` (a shared reference to the tag) or a
/// `&mut Command` (a mutable one).
macro_rules! tag_field {
    ($cmd:expr) => {
        match $cmd {
            Command::Lock { tag, .. }
            | Command::Unlock { tag, .. }
            | Command::Crash { tag, .. }
            | Command::CrashBeforeReply { tag, .. }
            | Command::Reset { tag }
            | Command::SetSlowMotion { tag, .. }
            | Command::Snapshot { tag }
            | Command::SetLink { tag, .. }
            | Command::Partition { tag, .. }
            | Command::Cut { tag, .. }
            | Command::Heal { tag }
            | Command::SetSeed { tag, .. }
            | Command::Pause { tag, .. }
            | Command::Resume { tag, .. }
            | Command::Restart { tag, .. }
            | Command::CrashAt { tag, .. }
            | Command::CrashClient { tag, .. }
            | Command::Step { tag, .. }
            | Command::Deliver { tag, .. }
            | Command::DropMsg { tag, .. }
            | Command::Duplicate { tag, .. }
            | Command::Load { tag, .. }
            | Command::LoadStop { tag }
            | Command::Detail { tag, .. }
            | Command::Compact { tag, .. } => tag,
        }
    };
}

impl Command {
    /// The `type` string of this command, as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Lock { .. } => "lock",
            Command::Unlock { .. } => "unlock",
            Command::Crash { .. } => "crash",
            Command::CrashBeforeReply { .. } => "crash_before_reply",
            Command::Reset { .. } => "reset",
            Command::SetSlowMotion { .. } => "set_slow_motion",
            Command::Snapshot { .. } => "snapshot",
            Command::SetLink { .. } => "set_link",
            Command::Partition { .. } => "partition",
            Command::Cut { .. } => "cut",
            Command::Heal { .. } => "heal",
            Command::SetSeed { .. } => "set_seed",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Restart { .. } => "restart",
            Command::CrashAt { .. } => "crash_at",
            Command::CrashClient { .. } => "crash_client",
            Command::Step { .. } => "step",
            Command::Deliver { .. } => "deliver",
            Command::DropMsg { .. } => "drop",
            Command::Duplicate { .. } => "duplicate",
            Command::Load { .. } => "load",
            Command::LoadStop { .. } => "load_stop",
            Command::Detail { .. } => "detail",
            Command::Compact { .. } => "compact",
        }
    }

    /// The caller's tag, echoed in the answer.
    pub fn tag(&self) -> Option<&str> {
        tag_field!(self).as_deref()
    }

    /// The caller's tag, to set or change it.
    pub fn tag_mut(&mut self) -> &mut Option<String> {
        tag_field!(self)
    }
}

/// Every command `type` the gateway understands, for "unknown type" errors and the docs.
pub const COMMAND_TYPES: &[&str] = &[
    "lock",
    "unlock",
    "crash",
    "crash_before_reply",
    "reset",
    "set_slow_motion",
    "snapshot",
    "set_link",
    "partition",
    "cut",
    "heal",
    "set_seed",
    "pause",
    "resume",
    "restart",
    "crash_at",
    "crash_client",
    "step",
    "deliver",
    "drop",
    "duplicate",
    "load",
    "load_stop",
    "detail",
    "compact",
];

// ------------------------------------------------------------------------------------------
// Server -> browser
// ------------------------------------------------------------------------------------------

/// Everything the gateway sends. A connection sees `hello`, then `snapshot`, then `events`
/// batches, interleaved with `ack`/`error` answers to its own commands. A later `snapshot`
/// (after `missed` events, a `snapshot` command, or a reconnect) replaces the viewer's state.
#[derive(Serialize, Clone, PartialEq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Hello(Hello),
    Snapshot(Box<Snapshot>),
    /// Events in `seq` order, consecutive unless a `snapshot` says some were missed.
    Events {
        events: Vec<Event>,
    },
    /// A command was accepted. For `lock`/`unlock` the answer itself comes later as an
    /// `op_completed` (or `op_failed`) event carrying the same tag.
    Ack {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        /// What was done, for people: "SIGKILL sent to s1 (pid 4242)".
        detail: String,
    },
    /// A command could not be done. The connection stays open and the cluster is untouched.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
}

/// First message on every connection.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Hello {
    pub protocol: u32,
    /// `pbscope <version>`.
    pub server: String,
    /// Which run of `pbscope serve` this is (its clock's epoch, unique per server process).
    /// Sequence numbers and `t_us` compare only within one run: a viewer that reconnects and
    /// finds a different `run` is talking to a restarted server and must start a new history.
    pub run: u64,
    pub limits: Limits,
    /// The deliberately broken protocol this server runs (`pbscope serve --variant NAME`, a
    /// [`Variant::name`]), absent for the correct one. A page shows it so nobody mistakes a
    /// broken run for the real design.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A deliberately broken protocol, for showing that the checker catches what it must
/// (`--variant NAME` on `pbscope serve` and `pbscope check`). Never the default.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The primary answers the client before the backup acknowledged the forward: a primary
    /// that dies right after answering leaves a backup that never saw the operation.
    ReplyBeforeAck,
    /// The backup runs a client's retry of a request it already applied from a forward again,
    /// instead of answering it from its at-most-once record.
    BackupReexecutes,
    /// The clerk's retry to the other server carries a new request id, so no server can tell
    /// it from a new call.
    NewIdOnRetry,
}

impl Variant {
    pub const ALL: [Variant; 3] = [
        Variant::ReplyBeforeAck,
        Variant::BackupReexecutes,
        Variant::NewIdOnRetry,
    ];

    /// The name on the command line and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Variant::ReplyBeforeAck => "reply-before-ack",
            Variant::BackupReexecutes => "backup-reexecutes",
            Variant::NewIdOnRetry => "new-id-on-retry",
        }
    }

    /// The variant named `name`, if any.
    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The gateway's limits, so a client can stay within them.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Largest text frame/message accepted from a viewer, in bytes.
    pub max_message_bytes: u64,
    /// Largest client id.
    pub max_client: u32,
    /// Longest lock name, in bytes.
    pub max_lock_name: u32,
    /// Largest slow-motion delay.
    pub max_delay_ms: u64,
    /// Sustained commands per second a viewer may send before getting `rate_limited`.
    pub commands_per_sec: u32,
    /// Events the server keeps in its history ring.
    pub history: u64,
    /// Longest `tag`, in bytes.
    #[serde(default)]
    pub max_tag_bytes: u32,
    /// Distinct lock names one cluster generation takes (a reset starts over).
    #[serde(default)]
    pub max_locks: u32,
    /// WebSocket viewers connected at once.
    #[serde(default)]
    pub max_viewers: u32,
    /// Largest `delay_ms`, `jitter_ms` or `dying_ms` of a fault command.
    #[serde(default)]
    pub max_fault_delay_ms: u64,
}

/// `format` of a run file's first line.
pub const RUN_FORMAT: &str = "pbscope-run";

/// First line of a run file (`GET /run.jsonl`, the page's *Save run*, `pbscope check --save`):
/// `{"type":"run",...}`. Every following line is one [`Event`], in `seq` order, and the last
/// line is a [`RunEnd`]. A file without its end is refused as truncated, never drawn as whole.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct RunHeader {
    /// Always [`RUN_FORMAT`].
    pub format: String,
    /// The [`PROTOCOL_VERSION`] the events are written in. A reader refuses a newer one.
    pub protocol: u32,
    /// `pbscope <version>` that wrote it.
    pub server: String,
    /// The writing server's run (see [`Hello::run`]).
    pub run: u64,
    /// `seq` of the first event in the file.
    pub first_seq: u64,
    /// Events of this run before `first_seq` that the server no longer kept (its history ring
    /// is bounded): 0 when the file holds the run from its very first event.
    pub dropped: u64,
    /// Where it came from, for people: `"pbscope serve"`, or the `pbscope check` command that
    /// reproduces it.
    #[serde(default)]
    pub source: String,
    /// The deliberately broken protocol the run used (`--variant`), absent for the correct one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Last line of a run file: `{"type":"run_end",...}`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct RunEnd {
    /// Events in the file.
    pub events: u64,
    /// `seq` of the last one (`first_seq - 1` when there is none).
    pub last_seq: u64,
}

/// The first and last lines of a run file, tagged by `"type"`.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunLine {
    Run(RunHeader),
    RunEnd(RunEnd),
}

/// The state of the run at one point of the event log, so a viewer can start (or restart)
/// without replaying everything.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Snapshot {
    /// Servers, in id order.
    pub nodes: Vec<NodeInfo>,
    /// Clerks, in id order.
    pub clients: Vec<ClientInfo>,
    /// The most recent events, oldest first, ending at `next_seq - 1`.
    pub events: Vec<Event>,
    /// The `seq` the next event will carry: the snapshot is the state after `next_seq - 1`.
    pub next_seq: u64,
    /// Events this viewer did not receive because it fell behind (0 on a fresh connection).
    /// They are in the state above but not all in `events`.
    pub missed: u64,
    /// How many reset cycles the cluster went through (0 for the first cluster).
    pub generation: u64,
    /// Current slow-motion delay.
    pub slow_motion_ms: u64,
    /// The server's clock when the snapshot was taken, on the events' time axis.
    pub now_us: u64,
    /// The network's faults in force (seed, step mode, links, partition, cuts).
    #[serde(default)]
    pub faults: FaultPlan,
    /// Messages step mode holds in their inboxes, waiting for a decision, oldest first.
    #[serde(default)]
    pub held: Vec<HeldMsg>,
    /// The checker's verdict on every lock of this generation that clients called, by lock name.
    #[serde(default)]
    pub verdicts: Vec<LockVerdict>,
    /// The load generator's settings while it runs (absent when it is stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadSettings>,
    /// What the load charts draw from the last minute before `events` (load reports; servers'
    /// crashes and role changes, fault-plan changes, resets), oldest first, at most
    /// [`SNAPSHOT_MARKS`]: a viewer that falls behind, or opens mid-load, still sees the crash
    /// that happened in the events it did not get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Event>,
}

/// Most events in a snapshot's `marks`: a minute of `load_stats` (240) and room for markers.
pub const SNAPSHOT_MARKS: usize = 320;

/// How one lock's history stands against the sequential lock model (held or free; `Lock` is
/// true iff it was free, `Unlock` true iff it was held).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    /// Some order of the calls, each at a moment between its start and its answer, explains
    /// every answer the clients saw.
    Ok,
    /// No such order exists: the clients saw something the lock service must never do.
    Violation,
    /// Not decided (yet): calls are still being checked, or the history was too large to
    /// decide within the checker's budget. Never a hidden "ok".
    Unknown,
}

/// The checker's verdict on one lock: a `verdict` event, and an entry of the snapshot's
/// `verdicts`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct LockVerdict {
    pub lock: String,
    pub status: VerdictStatus,
    /// For a violation, the calls at fault: a smallest set of this lock's calls that no order
    /// explains. Empty otherwise.
    #[serde(default)]
    pub ops: Vec<RequestId>,
    /// For people: what went wrong, in plain words ("Lock(z) was granted to c1 by s2 and to c2
    /// by s1 with no Unlock between; ..."), or why the verdict is unknown. Empty when ok.
    #[serde(default)]
    pub explanation: String,
    /// Calls on this lock the verdict covers (answered or of unknown outcome).
    #[serde(default)]
    pub calls: u64,
}

/// One server as the viewer should show it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub role: Role,
    /// True primary without a backup (the backup is unreachable, or clients failed over to it).
    pub serving_alone: bool,
    pub alive: bool,
    /// OS process id of the current (or last) incarnation; `null` before it has started.
    pub pid: Option<u32>,
    /// TCP port on 127.0.0.1 the server listens on.
    pub port: Option<u16>,
    /// Locks held in this server's table, sorted.
    pub locks: Vec<String>,
    /// Client requests this server answered (retries answered from the at-most-once record too).
    pub served: u64,
    /// Operations forwarded to this server that it applied.
    pub applied_forwards: u64,
    /// A crash is armed (`crash_before_reply` or `crash_at`) and will fire on the next operation.
    pub armed: bool,
    /// Where the armed crash fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_point: Option<CrashPoint>,
    /// Stopped by `pause` (SIGSTOP): alive, but it runs nothing until `resume`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Went silent and will be killed shortly (`dying_ms`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dying: bool,
}

/// One clerk.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct ClientInfo {
    pub id: u32,
    /// The client's own process (`pbscope client`); `null` before it started.
    #[serde(default)]
    pub pid: Option<u32>,
    /// False once its process was killed (`crash_client`), until its next call starts a new one.
    #[serde(default = "yes")]
    pub alive: bool,
    /// Which process of this lane it is: 0 first, one more after each crash (a new identity).
    #[serde(default)]
    pub incarnation: u32,
    /// The server this clerk sends to now (it moves to the backup when the primary fails).
    pub server: NodeId,
    /// The call in progress, if any.
    pub pending: Option<PendingCall>,
    /// Calls answered so far.
    pub completed: u64,
    /// Calls given up on (no server answered).
    pub failed: u64,
}

/// A call that has been invoked and not yet answered.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct PendingCall {
    pub req: RequestId,
    pub op: Op,
    pub lock: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub since_us: u64,
    /// Times the clerk re-sent it to another server so far (0: first try). Absent from servers
    /// older than this field, hence the default.
    #[serde(default)]
    pub retries: u32,
}

/// One entry of the event log. The diagram is a pure function of these.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
pub struct Event {
    /// Position in the bus's total order; consecutive. Causal: a message's delivery always
    /// comes after its send.
    pub seq: u64,
    /// Microseconds since the cluster's supervisor started, on CLOCK_MONOTONIC (one clock for
    /// every process on the host).
    pub t_us: u64,
    /// Where it happened: `"s1"`, `"c3"`, `"supervisor"`.
    pub node: NodeId,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// Whether the load charts draw this event (a snapshot's `marks`): a load report, a
    /// measured failover, a server's crash (not a reset's: the reset is marked once), a server's new role, a change
    /// of the fault plan, a reset.
    pub fn is_chart_mark(&self) -> bool {
        match &self.kind {
            EventKind::LoadStats(_)
            | EventKind::Failover { .. }
            | EventKind::RoleChanged { .. }
            | EventKind::FaultsChanged { .. }
            | EventKind::ClusterReset { .. } => true,
            EventKind::Crashed { cause, .. } => {
                *cause != CrashCause::Reset && self.node.client_id().is_none()
            }
            _ => false,
        }
    }
}

/// Why a server process died, as far as pbscope caused it.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum CrashCause {
    /// A `crash` command: the supervisor sent SIGKILL.
    Command,
    /// `crash_before_reply` fired: the server killed itself (SIGKILL) with the reply unsent.
    BeforeReply,
    /// A `reset` killed the whole cluster.
    Reset,
    /// `crash_at` fired at `before_forward`.
    BeforeForward,
    /// `crash_at` fired at `after_forward`.
    AfterForward,
    /// `crash_at` fired on the backup at `before_ack`.
    BeforeAck,
    /// A `dying_ms` silence ended: the supervisor sent SIGKILL.
    Dying,
}

/// Everything a person can see happen. One variant per kind of thing.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A server process is up and listening. `node` is the server id.
    ProcessStarted { pid: u32, role: Role, port: u16 },
    /// A server process is gone and reaped. `signal` is set when a signal ended it (9 = SIGKILL).
    ProcessExited {
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
    },
    /// A server is about to be killed (recorded before the signal is sent).
    Crashed {
        pid: u32,
        cause: CrashCause,
        /// For `before_reply`: the request whose reply is lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<RequestId>,
    },
    /// A crash was armed on this server (`crash_before_reply`, or `crash_at` with its point).
    CrashArmed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        point: Option<CrashPoint>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dying_ms: Option<u64>,
    },
    /// The server went silent (it answers nothing; its connections stay open) and will be killed
    /// `dies_in_ms` from now: the lab's "dying" server.
    Dying {
        pid: u32,
        dies_in_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        point: Option<CrashPoint>,
    },
    /// `pause` stopped the process (SIGSTOP).
    Paused { pid: u32 },
    /// `resume` let the process run again (SIGCONT).
    Resumed { pid: u32 },
    /// A client's process is up (node `"c1"`): its first, or a new one after a crash.
    ClientStarted { pid: u32, incarnation: u32 },
    /// The fault plan changed; `plan` is the whole plan now in force, `change` says what changed.
    FaultsChanged { plan: FaultPlan, change: String },
    /// Step mode holds `msg_id` in its receiver's inbox until a person decides.
    MsgHeld {
        msg_id: MsgId,
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    /// The server's role or its serving-alone state changed.
    RoleChanged {
        role: Role,
        serving_alone: bool,
        reason: String,
    },
    /// A message left `from` for `to` (recorded before it was written to the socket).
    MsgSent {
        msg_id: MsgId,
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    /// The receiver's state machine got the message `msg_id` (after any slow-motion delay).
    MsgDelivered {
        msg_id: MsgId,
        from: NodeId,
        to: NodeId,
        /// True for the network's second copy of a duplicated message.
        #[serde(default, skip_serializing_if = "is_false")]
        duplicate: bool,
    },
    /// The message `msg_id` will never be delivered. `reason`: `"dropped"` (a link's drop chance,
    /// or step mode's `drop`), `"partition"`, `"cut"`, or why its receiver went away (it died
    /// with the message in flight, the cluster was reset).
    MsgLost {
        msg_id: MsgId,
        from: NodeId,
        to: NodeId,
        reason: String,
    },
    /// A server ran an operation on its lock table (or answered a retry from its record, with
    /// `duplicate: true`, without running it again). `held` is the lock's state afterwards.
    Executed {
        req: RequestId,
        op: Op,
        lock: String,
        ok: bool,
        held: bool,
        duplicate: bool,
        /// True when the operation came from the primary, false when from a client.
        forwarded: bool,
    },
    /// A client call began. `server` is where the clerk sends it first.
    OpInvoked {
        client: u32,
        req: RequestId,
        op: Op,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        server: NodeId,
    },
    /// A client call got its answer. `server` answered it; `attempts` counts sends (1 = no retry).
    OpCompleted {
        client: u32,
        op: Op,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        ok: bool,
        req: RequestId,
        server: NodeId,
        latency_us: u64,
        attempts: u32,
    },
    /// A client call was given up: no server answered in time. Its effect is unknown.
    OpFailed {
        client: u32,
        op: Op,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        req: RequestId,
        reason: String,
    },
    /// A clerk saw `server` fail (refused, closed, timeout) and will re-send `req` to `retry_to`.
    RpcFailed {
        client: u32,
        req: RequestId,
        server: NodeId,
        reason: String,
        retry_to: NodeId,
    },
    /// `reset` started generation `generation`: everything before belongs to the old cluster.
    ClusterReset { generation: u64 },
    /// The slow-motion delay changed.
    SlowMotionSet { delay_ms: u64 },
    /// The checker's verdict on one lock's history changed (node `"checker"`).
    Verdict(LockVerdict),
    /// The load generator's settings changed (node `"load"`); `clients` 0 = stopped.
    LoadChanged(LoadSettings),
    /// The load generator's numbers over the last window (node `"load"`), every 250 ms while
    /// it runs.
    LoadStats(LoadStats),
    /// A failover the load went through, measured by the supervisor over every call (node
    /// `"supervisor"`): primary `from` stopped serving at `since_us` (`reason`: it crashed, was
    /// paused, went silent, or exited), and `to` answered the first call after it, client
    /// `client`'s, `window_us` later. Published with that answer, once per failover, while the
    /// load runs.
    Failover {
        from: NodeId,
        to: NodeId,
        reason: String,
        since_us: u64,
        window_us: u64,
        client: u32,
    },
}

impl EventKind {
    /// The `type` string of this event.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ProcessStarted { .. } => "process_started",
            EventKind::ProcessExited { .. } => "process_exited",
            EventKind::Crashed { .. } => "crashed",
            EventKind::CrashArmed { .. } => "crash_armed",
            EventKind::Dying { .. } => "dying",
            EventKind::Paused { .. } => "paused",
            EventKind::Resumed { .. } => "resumed",
            EventKind::ClientStarted { .. } => "client_started",
            EventKind::FaultsChanged { .. } => "faults_changed",
            EventKind::MsgHeld { .. } => "msg_held",
            EventKind::RoleChanged { .. } => "role_changed",
            EventKind::MsgSent { .. } => "msg_sent",
            EventKind::MsgDelivered { .. } => "msg_delivered",
            EventKind::MsgLost { .. } => "msg_lost",
            EventKind::Executed { .. } => "executed",
            EventKind::OpInvoked { .. } => "op_invoked",
            EventKind::OpCompleted { .. } => "op_completed",
            EventKind::OpFailed { .. } => "op_failed",
            EventKind::RpcFailed { .. } => "rpc_failed",
            EventKind::ClusterReset { .. } => "cluster_reset",
            EventKind::SlowMotionSet { .. } => "slow_motion_set",
            EventKind::Verdict(_) => "verdict",
            EventKind::LoadChanged(_) => "load_changed",
            EventKind::LoadStats(_) => "load_stats",
            EventKind::Failover { .. } => "failover",
        }
    }
}

/// Machine-readable reason of an `error`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not JSON (or not a JSON object), or was binary.
    BadJson,
    /// `type` missing or not one of [`COMMAND_TYPES`].
    UnknownType,
    /// A field is missing, has the wrong type, or is out of range.
    BadField,
    /// `node` names no server and no role.
    UnknownNode,
    /// The server named is dead, or no live server holds the role named.
    NodeDead,
    /// The clerk already has a call outstanding (one at a time, as in Lab 1).
    ClientBusy,
    /// The message exceeds [`Limits::max_message_bytes`].
    TooLarge,
    /// More commands than [`Limits::commands_per_sec`]; this one was not run.
    RateLimited,
    /// The cluster could not do it now (for example, while it is being reset).
    Unavailable,
    /// The cluster already uses [`Limits::max_locks`] distinct lock names (until a reset).
    TooManyLocks,
    /// [`Limits::max_viewers`] viewers are connected already; the connection is closed.
    TooManyViewers,
    /// Commands wait for the ones before them (a viewer's commands run in the order sent), and
    /// too many are waiting; this one was not run.
    QueueFull,
    /// `deliver`/`drop`/`duplicate` named a message that no inbox holds.
    UnknownMessage,
    /// A step command (`deliver`, `drop`, `duplicate`) while step mode is off.
    NotStepping,
    /// `resume` of a server that is not paused.
    NotPaused,
    /// `restart` of a server that is alive.
    NodeAlive,
    /// The command can't apply to a paused server (it runs nothing); resume it first.
    NodePaused,
}

// ------------------------------------------------------------------------------------------
// Between the processes of the cluster (not seen by browsers)
// ------------------------------------------------------------------------------------------

/// One frame on a lock-service TCP connection (clerk <-> server, primary <-> backup).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Envelope {
    /// Pairs the `msg_sent` event with `msg_delivered`/`msg_lost`; unique in the run.
    pub msg_id: MsgId,
    pub from: NodeId,
    pub msg: Msg,
}

/// Node process -> supervisor, on the control connection.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeReport {
    /// First frame: who connected and where it listens.
    Ready {
        id: NodeId,
        pid: u32,
        port: u16,
        /// The secret the supervisor put on this process's command line.
        token: u64,
    },
    /// Something happened at the node (written before the action it describes).
    Event { t_us: u64, kind: EventKind },
    /// Several events of one round of the node's work, in order, in one frame (written and
    /// flushed before any message of that round leaves). Each as a viewer reads it (a compact
    /// row for the events every call makes, an object for the rest), so the supervisor reads a
    /// round with the viewers' quick reader ([`read_events_frame`]). Their `seq` and `node` are
    /// not taken from here: the bus numbers events itself and knows the sender by its
    /// connection. Nodes write `seq` 0 and their own name (the server's
    /// `framing::encode_events`).
    Events { events: Vec<Event> },
    /// The control command with this `ticket` has taken effect.
    Applied { ticket: u64 },
    /// The control command with this `ticket` could not be done (say, `deliver` of a message
    /// this inbox does not hold).
    Failed { ticket: u64, message: String },
}

/// Supervisor -> node process, on the control connection.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeControl {
    /// Arm `crash_before_reply`.
    ArmCrashBeforeReply,
    /// Change the inbox delay (slow motion). The node answers with [`NodeReport::Applied`]
    /// carrying the same `ticket` once every message arriving from then on waits the new delay.
    SetSlowMotion { delay_ms: u64, ticket: u64 },
    /// Arm a crash at `point` of the next operation (with `dying_ms`: go silent there, and
    /// the supervisor kills the process that much later).
    ArmCrash {
        point: CrashPoint,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dying_ms: Option<u64>,
    },
    /// Go silent now: answer nothing, keep connections open (the supervisor kills it later).
    GoSilent { dies_in_ms: u64 },
    /// The fault plan for messages arriving from now on (the receiver applies the rules whose
    /// `to` is itself or `*`). Answered with [`NodeReport::Applied`].
    SetFaults { plan: FaultPlan, ticket: u64 },
    /// Step mode: what to do with the held message `msg_id`. Answered with `Applied` or `Failed`.
    Step {
        msg_id: MsgId,
        action: StepAction,
        ticket: u64,
    },
    /// To a client process: start the call `op(lock)` now. Answered with `Applied` once its
    /// `op_invoked` is reported (so the event is in the log before the command's `ack`), or
    /// `Failed` if a call is already in progress.
    Invoke {
        op: Op,
        lock: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        ticket: u64,
    },
}

#[cfg(test)]
mod tests {
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn node_names_pbscope_gives_are_kept_inline_and_any_name_round_trips() {
        let ours = ["s1", "s2", SUPERVISOR, LOAD_NODE, "checker"]
            .map(super::NodeId::from)
            .into_iter()
            .chain([super::client_node(1), super::client_node(u32::MAX)]);
        for id in ours {
            assert!(!id.0.is_heap_allocated(), "{id} is allocated");
        }
        let long = "a-stranger's-very-long-node-name-\"-é".repeat(3);
        let id = super::NodeId::from(long.as_str());
        let json = serde_json::to_string(&id).unwrap();
        let back: super::NodeId = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), long);
        assert_eq!(String::from(back), long);
    }

    /// Found by review: an unlock share of 1e308 was echoed as a number of 309 digits.
    #[test]
    fn a_huge_unlock_share_is_refused_in_few_words() {
        let bad = LoadSettings {
            clients: 4,
            unlock_share: 1e308,
            ..LoadSettings::STOPPED
        };
        let why = bad.invalid().expect("refused");
        assert!(why.ends_with("got 1e308"), "{why}");
        assert!(why.len() < 80, "{why}");
        let nan = LoadSettings {
            unlock_share: f64::NAN,
            ..bad
        };
        assert!(nan.invalid().expect("refused").ends_with("got NaN"));
    }

    use super::*;

    #[test]
    fn event_fields_are_flat_and_tagged() {
        let ev = Event {
            seq: 7,
            t_us: 1500,
            node: "c1".into(),
            kind: EventKind::OpCompleted {
                client: 1,
                op: Op::Lock,
                lock: "a".into(),
                tag: Some("x1".into()),
                ok: true,
                req: RequestId::new(1, 1),
                server: "s1".into(),
                latency_us: 900,
                attempts: 1,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "op_completed");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["op"], "lock");
        assert_eq!(v["ok"], true);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn architecture_commands_parse_exactly_as_written() {
        let cases = [
            (
                r#"{"type":"lock","client":1,"lock":"a","tag":"x1"}"#,
                "lock",
            ),
            (
                r#"{"type":"unlock","client":1,"lock":"a","tag":"x2"}"#,
                "unlock",
            ),
            (r#"{"type":"crash","node":"primary"}"#, "crash"),
            (
                r#"{"type":"crash_before_reply","node":"primary"}"#,
                "crash_before_reply",
            ),
            (r#"{"type":"reset"}"#, "reset"),
        ];
        for (json, name) in cases {
            let c: Command = serde_json::from_str(json).unwrap();
            assert_eq!(c.name(), name);
            assert!(COMMAND_TYPES.contains(&name));
        }
    }

    #[test]
    fn extended_architecture_commands_parse_exactly_as_written() {
        let cases = [
            r#"{"type":"set_link","from":"s1","to":"s2","drop":0.3,"duplicate":0.1,"delay_ms":50,"jitter_ms":20}"#,
            r#"{"type":"partition","groups":[["s1","c1"],["s2","c2"]]}"#,
            r#"{"type":"cut","from":"s1","to":"s2"}"#,
            r#"{"type":"heal"}"#,
            r#"{"type":"pause","node":"primary"}"#,
            r#"{"type":"resume","node":"s1"}"#,
            r#"{"type":"restart","node":"s1"}"#,
            r#"{"type":"crash_at","node":"primary","point":"before_forward"}"#,
            r#"{"type":"crash_client","client":1}"#,
            r#"{"type":"step","on":true}"#,
            r#"{"type":"deliver","msg_id":17}"#,
            r#"{"type":"drop","msg_id":17}"#,
            r#"{"type":"duplicate","msg_id":17}"#,
            r#"{"type":"set_seed","seed":42}"#,
        ];
        for json in cases {
            let c: Command = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(c.name(), v["type"], "{json}");
            assert!(COMMAND_TYPES.contains(&c.name()));
            // Written back, the same JSON (every field as given).
            assert_eq!(serde_json::to_value(&c).unwrap(), v, "{json}");
        }
        let c: Command =
            serde_json::from_str(r#"{"type":"partition","groups":[["primary","c3"],["*"]]}"#)
                .unwrap();
        assert_eq!(
            c,
            Command::Partition {
                groups: vec![
                    vec![Endpoint::Role(Role::Primary), Endpoint::Client(3)],
                    vec![Endpoint::Any]
                ],
                tag: None
            }
        );
    }

    #[test]
    fn a_pending_call_without_retries_is_a_first_try() {
        let older = r#"{"req":{"client":2,"seq":1},"op":"unlock","lock":"a","since_us":5}"#;
        let call: PendingCall = serde_json::from_str(older).unwrap();
        assert_eq!(call.retries, 0);
        let v = serde_json::to_value(PendingCall { retries: 2, ..call }).unwrap();
        assert_eq!(v["retries"], 2, "written out for viewers");
    }

    #[test]
    fn typed_identities_keep_the_plain_strings_and_numbers_on_the_wire() {
        let c: Command = serde_json::from_str(r#"{"type":"crash","node":"backup"}"#).unwrap();
        assert_eq!(
            c,
            Command::Crash {
                node: NodeRef::Role(Role::Backup),
                dying_ms: None,
                tag: None
            }
        );
        let c: Command = serde_json::from_str(r#"{"type":"crash","node":"s2"}"#).unwrap();
        let Command::Crash { node, .. } = &c else {
            panic!("{c:?}")
        };
        assert_eq!(*node, NodeRef::Server(NodeId::from("s2")));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"type":"crash","node":"s2"}"#
        );
        let id = MsgId::new(3, 17);
        assert_eq!((id.origin(), id.number()), (3, 17));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            (3u64 << 32 | 17).to_string()
        );
        assert_eq!(client_node(12).client_id(), Some(12));
        assert_eq!(NodeId::from("s1").client_id(), None);
        assert_eq!(
            serde_json::to_string(&NodeId::from("c4")).unwrap(),
            r#""c4""#
        );
    }

    #[test]
    fn a_request_id_reads_as_client_call_and_incarnation() {
        assert_eq!(RequestId::new(2, 1).to_string(), "c2.1");
        let later = RequestId {
            incarnation: 1,
            ..RequestId::new(1, 7)
        };
        assert_eq!(later.to_string(), "c1.7/i1");
    }

    #[test]
    fn tag_is_echoed_from_every_variant() {
        let c: Command = serde_json::from_str(r#"{"type":"reset","tag":"r"}"#).unwrap();
        assert_eq!(c.tag(), Some("r"));
        let c: Command = serde_json::from_str(r#"{"type":"crash","node":"s1"}"#).unwrap();
        assert_eq!(c.tag(), None);
    }
}
