//! Five of the six slices of the page's [`State`](super::State) (the replay's is in
//! `replay.rs`), each with the questions a component asks of it. A component reads the slices it needs and re-renders only when one of them
//! changes; so a question that needs two slices is a free function here, taking both, and
//! everything a component might ask of one slice is a method of that slice.
//!
//! Nothing here changes a slice: only the reducer in `store/mod.rs` does, through
//! `Rc::make_mut`, and only on the slices an action changes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use model::Cluster;
use shared::{ClientInfo, Command, Event, Limits, NodeInfo, Op, PendingCall, RequestId};

use crate::call;
use crate::demo::DemoRun;
use crate::faults::Draft;
use crate::grants::GrantWatch;
use crate::history::History;
use crate::lecture::LectureRun;
use crate::symbols::Symbols;
use crate::verdict::Board;

/// How long (page clock) an event waits before it is placed on the diagram, so that events
/// reported late by their process still land in time order (see [`Feed::pending`]).
pub const REORDER_HOLD_MS: f64 = 40.0;
/// The lock name a client starts with.
pub const DEFAULT_LOCK: &str = "a";

/// The WebSocket's state, as the status pill shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conn {
    #[default]
    Connecting,
    Connected,
    /// Closed; the next attempt (`attempt`, 1-based) starts in `retry_in_ms`.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u64,
    },
    /// Closed on purpose: the page shows a saved run (see `store/replay.rs`).
    Replay,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answer(bool),
    GaveUp(String),
}

/// One finished call in a client's history.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub seq: u64,
    pub req: RequestId,
    pub op: Op,
    pub lock: Rc<str>,
    pub outcome: Outcome,
    pub latency_us: Option<u64>,
    pub attempts: u32,
    pub server: Option<Rc<str>>,
    pub t_us: u64,
    /// The cluster generation the call belongs to: request ids start over after a reset, and
    /// the checker's verdicts name calls of the current generation only.
    pub generation: u64,
}

/// A client card: what the page keeps about a clerk beyond the cluster's picture of it
/// ([`ClusterState::clerk`]: its server, call in progress and counters).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientView {
    pub id: u32,
    /// A command for it left the page and its call has not started yet (its tag).
    pub sending: Option<String>,
    /// Finished calls, newest last.
    pub history: Rc<VecDeque<CallRecord>>,
}

impl ClientView {
    pub fn new(id: u32) -> Self {
        ClientView {
            id,
            sending: None,
            history: Rc::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

/// A message for the person, shown for a few seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub id: u64,
    pub level: Level,
    pub title: String,
    pub text: String,
}

/// What is selected in the diagram (global indices into the shown history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Msg(usize),
    Event(usize),
}

/// The connection and the server process behind it: changes when the page connects,
/// reconnects or meets a new server, and when the server clock's offset moves (rarely: it is
/// the largest offset seen).
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub conn: Conn,
    pub server_version: Option<String>,
    /// The server's `hello.run`: a different one after a reconnect means a new server process.
    pub run: Option<u64>,
    pub limits: Option<Limits>,
    /// The deliberately broken protocol the server runs (`hello.variant`), if any.
    pub variant: Option<String>,
    /// Server clock minus page clock (µs), for the live edge and in-flight animation.
    pub clock_offset_us: Option<f64>,
    /// The server acknowledged this connection's `compact`: the calls' events come as rows.
    pub compact: bool,
}

impl Session {
    /// The server's clock at page time `local_ms`, once the page has heard from the server.
    pub fn server_clock_us(&self, local_ms: f64) -> Option<f64> {
        self.clock_offset_us.map(|off| local_ms * 1000.0 + off)
    }
}

/// What the side panel shows: the servers and clerks as the server's log says they are, and
/// the page's client cards (lock name typed, finished calls, a command on its way). Changes
/// with nearly every live event (the cluster folds them all).
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// Servers and clerks: [`model::Cluster`], the same fold the server's bus runs, replaced by
    /// each snapshot and advanced by each live event (shared: a change to the cards alone does
    /// not copy it).
    pub model: Rc<Cluster>,
    /// The client cards, by clerk id.
    pub clients: BTreeMap<u32, ClientView>,
    /// The client the keyboard's l/u act on.
    pub selected_client: u32,
    /// The lock name typed on each client's card.
    pub lock_names: BTreeMap<u32, String>,
    /// Locks granted twice with no Unlock between, folded from the clients' answers (shared:
    /// copied only when an answer or a reset comes).
    pub grants: Rc<GrantWatch>,
    /// The generation of the calls being folded (the latest `cluster_reset` passed through
    /// the store, live or in a snapshot's events).
    pub(super) call_generation: u64,
    /// The checker's verdicts folded for the badge, the banner and the highlights: refolded
    /// only when a verdict, a reset or a snapshot comes (many components read it each render).
    pub(super) board: Rc<Board>,
}

impl Default for ClusterState {
    fn default() -> Self {
        let mut clients = BTreeMap::new();
        clients.insert(1, ClientView::new(1));
        ClusterState {
            model: Rc::default(),
            clients,
            selected_client: 1,
            lock_names: BTreeMap::new(),
            grants: Rc::default(),
            call_generation: 0,
            board: Rc::default(),
        }
    }
}

impl ClusterState {
    /// The lock name a client's Lock/Unlock buttons use ("a" until edited).
    pub fn lock_name(&self, client: u32) -> String {
        match self.lock_names.get(&client).map(|n| n.trim()) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => DEFAULT_LOCK.to_owned(),
        }
    }

    /// The Lock or Unlock a person asks of `client` now (its card's buttons and Enter, the `l`
    /// and `u` keys): on the lock name typed on its card, tagged `tag` (`ui-…` from the card,
    /// `key-…` from the keyboard; see `ws::next_tag`).
    pub fn call(&self, client: u32, op: Op, tag: String) -> Command {
        call::command(client, op, self.lock_name(client), tag)
    }

    /// Servers in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.model.servers()
    }

    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.model.node(id)
    }

    /// The cluster's clerk `id`: the server it sends to, its call in progress, its counters.
    /// `None` for a card whose clerk has not called yet (or belonged to a reset cluster).
    pub fn clerk(&self, id: u32) -> Option<&ClientInfo> {
        self.model.client(id)
    }

    /// The call clerk `id` is waiting on.
    pub fn pending_call(&self, id: u32) -> Option<&PendingCall> {
        self.clerk(id).and_then(|c| c.pending.as_ref())
    }

    /// One call at a time (Lab 1): another one now would be refused with `client_busy`.
    pub fn busy(&self, id: u32) -> bool {
        self.pending_call(id).is_some()
            || self.clients.get(&id).is_some_and(|c| c.sending.is_some())
    }

    pub fn slow_motion_ms(&self) -> u64 {
        self.model.slow_motion_ms()
    }

    /// The network's faults in force.
    pub fn faults(&self) -> &shared::FaultPlan {
        self.model.faults()
    }

    /// The checker's verdicts folded for the badge (every lock's latest, this generation).
    pub fn verdicts(&self) -> &Board {
        &self.board
    }

    /// Whether a finished call of a card is one the checker found at fault (same request id,
    /// same generation).
    pub fn at_fault(&self, call: &CallRecord, faulty: &BTreeSet<RequestId>) -> bool {
        call.generation == self.model.generation() && faulty.contains(&call.req)
    }

    /// The messages step mode holds, oldest first.
    pub fn held(&self) -> &[shared::HeldMsg] {
        self.model.held()
    }
}

/// The event stream as the diagram and the timeline draw it: changes with every batch of
/// events (and with pause, clear, a resync).
#[derive(Debug, Clone)]
pub struct Feed {
    pub history: History,
    /// The history as it was when the view was paused.
    pub frozen: Option<History>,
    /// Events received but not yet placed in the history, with the page time they arrived.
    /// The bus orders events by arrival, and a process may report an event a little after a
    /// later one from another process (a clerk's `rpc_failed` before the server's `crashed`).
    /// All processes share one clock, so the diagram places events in `t_us` order: each waits
    /// [`REORDER_HOLD_MS`] and is released sorted by time (a send always precedes its delivery
    /// on that clock). The cards are updated at once, in arrival order.
    pub(super) pending: Vec<(Event, f64)>,
    /// See [`REORDER_HOLD_MS`]; 0 places events at once (tests).
    pub reorder_hold_ms: f64,
    /// Highest event seq received.
    pub last_seq: Option<u64>,
    /// Events received (snapshots included): the perf counter.
    pub ingested: u64,
    /// Events the server reported we missed (fell behind), in total.
    pub missed: u64,
    /// Times the history restarted because of a gap.
    pub resyncs: u64,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            history: History::new(Symbols::default()),
            frozen: None,
            pending: Vec::new(),
            reorder_hold_ms: REORDER_HOLD_MS,
            last_seq: None,
            ingested: 0,
            missed: 0,
            resyncs: 0,
        }
    }
}

impl Feed {
    /// The history the diagram and timeline show (the frozen one while paused).
    pub fn shown(&self) -> &History {
        self.frozen.as_ref().unwrap_or(&self.history)
    }

    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// Events that arrived since the view was paused.
    pub fn unseen(&self) -> u64 {
        match (&self.frozen, self.last_seq) {
            (Some(f), Some(last)) => last.saturating_sub(f.last_seq().unwrap_or(0)),
            _ => 0,
        }
    }

    /// Events waiting to be placed on the diagram.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// What the person chose to look at: follow the live edge, the selection, the help overlay,
/// large text, the demo that runs (its progress shows in the top bar), the fault panel and the
/// partition being put together.
#[derive(Debug, Clone)]
pub struct ViewState {
    /// Keep the newest events in view.
    pub follow: bool,
    pub selected: Option<Selection>,
    pub help: bool,
    /// Projector mode: everything 25 % larger.
    pub large_text: bool,
    pub demo: Option<DemoRun>,
    /// Demos started so far (each run tags its commands with its number).
    pub(super) demo_runs: u64,
    /// The lecture panel is open.
    pub lecture_open: bool,
    /// The lecture's preset that runs, or ran last (kept to show what to notice).
    pub lecture: Option<LectureRun>,
    /// Presets started so far (each run tags its commands with its number).
    pub(super) lecture_runs: u64,
    /// The fault panel is open.
    pub faults_open: bool,
    /// The partition being put together (lane headers and chips clicked into A or B).
    pub draft: Draft,
    /// Jumps asked for (`JumpToCalls`): the diagram scrolls to the selection again on each,
    /// even when it is the same event.
    pub jumps: u64,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            follow: true,
            selected: None,
            help: false,
            large_text: false,
            demo: None,
            demo_runs: 0,
            lecture_open: false,
            lecture: None,
            lecture_runs: 0,
            faults_open: false,
            draft: Draft::new(),
            jumps: 0,
        }
    }
}

/// The toasts on screen, oldest first.
#[derive(Debug, Clone)]
pub struct ToastList {
    pub list: Vec<Toast>,
    pub(super) next_id: u64,
    /// Events missed and resyncs counted in the "Fell behind" toast on screen (see
    /// `State::toast_fell_behind`).
    pub(super) behind: (u64, u64),
}

impl Default for ToastList {
    fn default() -> Self {
        ToastList {
            list: Vec::new(),
            next_id: 1,
            behind: (0, 0),
        }
    }
}

/// The server's clock at page time `local_ms` (before the first word from the server: the
/// newest event's time).
pub fn server_now_us(session: &Session, feed: &Feed, local_ms: f64) -> f64 {
    session
        .server_clock_us(local_ms)
        .unwrap_or_else(|| feed.history.last_t().unwrap_or(0) as f64)
}

/// The clients that get a lane in the diagram: those in the shown history, those with a call
/// in progress, the selected one and c1 — not every clerk the server ever had.
pub fn lane_clients(feed: &Feed, cluster: &ClusterState) -> Vec<u32> {
    let mut ids: Vec<u32> = feed.shown().clients_seen().collect();
    ids.extend(
        cluster
            .clients
            .keys()
            .copied()
            .filter(|id| cluster.busy(*id)),
    );
    ids.push(cluster.selected_client);
    ids.push(1);
    ids.sort_unstable();
    ids.dedup();
    ids
}
