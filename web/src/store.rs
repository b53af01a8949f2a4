//! The page's single store: [`State`], the [`Action`]s that change it, and the reducer.
//!
//! The reducer is a pure fold of what the server sent (snapshots, event batches, acks, errors)
//! and of what the person did (pause, clear, select, demo). It runs natively in tests. It never
//! touches the network: `ws.rs` turns frames into [`Action::Receive`] (one per animation frame,
//! however many frames arrived) and sends the commands.
//!
//! What the servers and clerks are (roles, liveness, lock tables, calls in progress, counters)
//! is not decided here: it is [`model::Cluster`], the same fold the server's bus runs, replaced
//! by each snapshot and advanced by each live event. The store keeps only what belongs to the
//! page: the diagram's history, the client cards (lock name typed, finished calls, a command on
//! its way), selection, toasts, the demo.
//!
//! Cheap copies: `State` is cloned once per action, so everything large in it is shared
//! (`History` is chunked, the cluster and client histories sit behind `Rc`). Equality is by
//! revision.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use model::Cluster;
use shared::{
    ClientInfo, Command, Event, EventKind, Limits, NodeInfo, Op, PendingCall, RequestId, ServerMsg,
    Snapshot,
};
use yew::Reducible;

use crate::call;
use crate::demo::DemoRun;
use crate::failover::Serving;
use crate::format;
use crate::history::History;
use crate::symbols::Symbols;

/// Calls remembered per client (the card shows the newest few).
pub const CLIENT_HISTORY: usize = 40;
const TOASTS_CAP: usize = 4;
/// How long (page clock) an event waits before it is placed on the diagram, so that events
/// reported late by their process still land in time order (see `State::pending`).
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
}

/// A client card: what the page keeps about a clerk beyond the cluster's picture of it
/// ([`State::clerk`]: its server, call in progress and counters).
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

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Connecting,
    Connected,
    Disconnected {
        attempt: u32,
        retry_in_ms: u64,
    },
    /// Everything that arrived since the last animation frame, in order; `local_ms` is the
    /// page's clock (performance.now) when it is applied.
    Receive {
        msgs: Vec<ServerMsg>,
        local_ms: f64,
    },
    /// Time passed (page clock): place the events that waited long enough.
    Tick {
        local_ms: f64,
    },
    /// A command left on the socket.
    Sent {
        cmd: Command,
    },
    /// A command could not be sent (no connection).
    NotSent {
        cmd: Command,
    },
    AddClient,
    SelectClient(u32),
    SetLockName {
        client: u32,
        name: String,
    },
    SetFollow(bool),
    TogglePause,
    /// Show the newest events and keep them in view: resume a paused view and follow it
    /// (*Follow live*, `f`/`End`, the diagram's "jump to live").
    GoLive,
    Clear,
    Select(Option<Selection>),
    Toast {
        level: Level,
        title: String,
        text: String,
    },
    DismissToast(u64),
    /// Start a demo unless one runs (`Shift+D`, the empty diagram's buttons); `failover`: the
    /// variant that arms the primary to crash partway (see `demo.rs`).
    StartDemo {
        local_ms: f64,
        failover: bool,
    },
    /// Stop the demo that runs, or else start the plain one (*Demo*, `d`).
    ToggleDemo {
        local_ms: f64,
    },
    ShowHelp(bool),
    ToggleLargeText,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct State {
    rev: u64,
    pub conn: Conn,
    pub server_version: Option<String>,
    /// The server's `hello.run`: a different one after a reconnect means a new server process.
    pub run: Option<u64>,
    pub limits: Option<Limits>,
    /// Servers and clerks as the server's log says they are (shared: the store is cloned per
    /// action).
    pub cluster: Rc<Cluster>,
    /// The client cards, by clerk id.
    pub clients: BTreeMap<u32, ClientView>,
    /// The client the keyboard's l/u act on.
    pub selected_client: u32,
    /// The lock name typed on each client's card.
    pub lock_names: BTreeMap<u32, String>,
    pub history: History,
    /// The history as it was when the view was paused.
    pub frozen: Option<History>,
    /// Keep the newest events in view.
    pub follow: bool,
    pub selected: Option<Selection>,
    pub toasts: Vec<Toast>,
    next_toast: u64,
    pub demo: Option<DemoRun>,
    demo_runs: u64,
    pub help: bool,
    /// Projector mode: everything 25 % larger.
    pub large_text: bool,
    /// Server clock minus page clock (µs), for the live edge and in-flight animation.
    pub clock_offset_us: Option<f64>,
    /// Highest event seq received.
    pub last_seq: Option<u64>,
    /// Events received but not yet placed in the history, with the page time they arrived.
    /// The bus orders events by arrival, and a process may report an event a little after a
    /// later one from another process (a clerk's `rpc_failed` before the server's `crashed`).
    /// All processes share one clock, so the diagram places events in `t_us` order: each waits
    /// [`REORDER_HOLD_MS`] and is released sorted by time (a send always precedes its delivery
    /// on that clock). The cards are updated at once, in arrival order.
    pending: Vec<(Event, f64)>,
    /// See [`REORDER_HOLD_MS`]; 0 places events at once (tests).
    pub reorder_hold_ms: f64,
    /// Events received (snapshots included): the perf counter.
    pub ingested: u64,
    /// Events the server reported we missed (fell behind), in total.
    pub missed: u64,
    /// Times the history restarted because of a gap.
    pub resyncs: u64,
}

impl Default for State {
    fn default() -> Self {
        let mut clients = BTreeMap::new();
        clients.insert(1, ClientView::new(1));
        State {
            rev: 0,
            conn: Conn::Connecting,
            server_version: None,
            run: None,
            limits: None,
            cluster: Rc::default(),
            clients,
            selected_client: 1,
            lock_names: BTreeMap::new(),
            history: History::new(Symbols::default()),
            frozen: None,
            follow: true,
            selected: None,
            toasts: Vec::new(),
            next_toast: 1,
            demo: None,
            demo_runs: 0,
            help: false,
            large_text: false,
            clock_offset_us: None,
            last_seq: None,
            pending: Vec::new(),
            reorder_hold_ms: REORDER_HOLD_MS,
            ingested: 0,
            missed: 0,
            resyncs: 0,
        }
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.rev == other.rev
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}

impl State {
    pub fn rev(&self) -> u64 {
        self.rev
    }

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

    /// The server's clock at page time `local_ms`.
    pub fn server_now_us(&self, local_ms: f64) -> f64 {
        match self.clock_offset_us {
            Some(off) => local_ms * 1000.0 + off,
            None => self.history.last_t().unwrap_or(0) as f64,
        }
    }

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

    /// The clients that get a lane in the diagram: those in the shown history, those with a
    /// call in progress, the selected one and c1 — not every clerk the server ever had.
    pub fn lane_clients(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.shown().clients_seen().collect();
        ids.extend(self.clients.keys().copied().filter(|id| self.busy(*id)));
        ids.push(self.selected_client);
        ids.push(1);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Servers in id order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.cluster.servers()
    }

    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.cluster.node(id)
    }

    /// The cluster's clerk `id`: the server it sends to, its call in progress, its counters.
    /// `None` for a card whose clerk has not called yet (or belonged to a reset cluster).
    pub(crate) fn clerk(&self, id: u32) -> Option<&ClientInfo> {
        self.cluster.client(id)
    }

    /// The call clerk `id` is waiting on.
    pub(crate) fn pending_call(&self, id: u32) -> Option<&PendingCall> {
        self.clerk(id).and_then(|c| c.pending.as_ref())
    }

    /// One call at a time (Lab 1): another one now would be refused with `client_busy`.
    pub(crate) fn busy(&self, id: u32) -> bool {
        self.pending_call(id).is_some()
            || self.clients.get(&id).is_some_and(|c| c.sending.is_some())
    }

    pub(crate) fn slow_motion_ms(&self) -> u64 {
        self.cluster.slow_motion_ms()
    }

    pub fn apply(&mut self, action: Action) {
        self.rev += 1;
        match action {
            Action::Connecting => {
                if !matches!(self.conn, Conn::Reconnecting { .. }) {
                    self.conn = Conn::Connecting;
                }
            }
            Action::Connected => self.conn = Conn::Connected,
            Action::Disconnected {
                attempt,
                retry_in_ms,
            } => {
                self.conn = Conn::Reconnecting {
                    attempt,
                    retry_in_ms,
                };
                for c in self.clients.values_mut() {
                    c.sending = None;
                }
                if self.demo.take().is_some() {
                    self.toast(Level::Warn, "Demo stopped", "the connection was lost");
                }
            }
            Action::Receive { msgs, local_ms } => {
                for m in msgs {
                    self.on_server(m, local_ms);
                }
                self.release(local_ms, false);
            }
            Action::Tick { local_ms } => self.release(local_ms, false),
            Action::Sent { cmd } => self.on_sent(&cmd),
            Action::NotSent { cmd } => {
                self.toast(
                    Level::Error,
                    "Not connected",
                    &format!("`{}` was not sent; the page is reconnecting", cmd.name()),
                );
                // The demo would plan the same step again at once, forever.
                if self.demo.take().is_some() {
                    self.toast(Level::Warn, "Demo stopped", "the connection was lost");
                }
            }
            Action::AddClient => {
                let max_client = self.limits.as_ref().map_or(u32::MAX, |l| l.max_client);
                let next = self.clients.keys().max().map_or(1, |m| m + 1);
                if next <= max_client {
                    self.clients.insert(next, ClientView::new(next));
                    self.selected_client = next;
                } else {
                    self.toast(
                        Level::Warn,
                        "No more clients",
                        &format!("the server allows at most {max_client}"),
                    );
                }
            }
            Action::SelectClient(id) => {
                if self.clients.contains_key(&id) {
                    self.selected_client = id;
                }
            }
            Action::SetLockName { client, name } => {
                self.lock_names.insert(client, name);
            }
            Action::SetFollow(f) => self.follow = f,
            Action::GoLive => self.go_live(),
            Action::TogglePause => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(self.history.clone()),
                };
            }
            Action::Clear => {
                let since = self.history.last_t().unwrap_or(0);
                self.history = History::new(self.history.syms.clone());
                self.frozen = None;
                self.selected = None;
                // A clean slate: only c1, the selected client and clients with a call in
                // progress keep their card and lane.
                let keep: Vec<u32> = self
                    .clients
                    .keys()
                    .copied()
                    .filter(|id| *id == 1 || *id == self.selected_client || self.busy(*id))
                    .collect();
                self.clients.retain(|id, _| keep.contains(id));
                for c in self.clients.values_mut() {
                    c.history = Rc::default();
                }
                self.seed_timeline(since);
                self.follow = true;
            }
            Action::Select(sel) => self.selected = sel,
            Action::Toast { level, title, text } => self.toast(level, &title, &text),
            Action::DismissToast(id) => self.toasts.retain(|t| t.id != id),
            Action::StartDemo { local_ms, failover } => self.start_demo(local_ms, failover),
            Action::ToggleDemo { local_ms } => {
                if self.demo.take().is_none() {
                    self.start_demo(local_ms, false);
                }
            }
            Action::ShowHelp(show) => self.help = show,
            Action::ToggleLargeText => self.large_text = !self.large_text,
        }
    }

    fn go_live(&mut self) {
        self.frozen = None;
        self.follow = true;
    }

    /// Starts a demo, and shows it live. A demo already running is left to run: a second
    /// start (a double click, a stale render) must not restart it halfway.
    fn start_demo(&mut self, local_ms: f64, failover: bool) {
        if self.demo.is_some() {
            return;
        }
        if self.conn != Conn::Connected {
            self.toast(
                Level::Warn,
                "Not connected",
                "the demo needs the server; it can start once the page is connected",
            );
            return;
        }
        self.demo_runs += 1;
        let run = if failover {
            DemoRun::with_failover(self.demo_runs, local_ms)
        } else {
            DemoRun::new(self.demo_runs, local_ms)
        };
        for c in run.clients() {
            self.clients.entry(c).or_insert_with(|| ClientView::new(c));
        }
        self.demo = Some(run);
        self.go_live();
    }

    /// Events waiting to be placed on the diagram.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Places the waiting events that arrived at least the hold time ago (all when `all`), in
    /// time order. An event still waiting holds back every later one.
    fn release(&mut self, local_ms: f64, all: bool) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_by_key(|(e, _)| (e.t_us, e.seq));
        let hold = self.reorder_hold_ms;
        let n = if all {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .position(|(_, at)| local_ms - at < hold)
                .unwrap_or(self.pending.len())
        };
        for (e, _) in self.pending.drain(..n) {
            self.history.push(&e);
        }
    }

    /// Drops the diagram's history (a gap it cannot bridge, or a new server process): what
    /// arrives next starts a new one. Cards and client histories are left to the caller.
    fn start_new_history(&mut self) {
        self.resyncs += 1;
        self.pending.clear();
        self.history = History::new(self.history.syms.clone());
        self.frozen = None;
        self.selected = None;
        self.last_seq = None;
    }

    /// Starts the failover timeline of an empty history from the servers' current state.
    fn seed_timeline(&mut self, since_us: u64) {
        for n in self.cluster.servers() {
            let state = if n.alive {
                Serving::from_role(n.role, n.serving_alone)
            } else {
                Serving::Dead
            };
            self.history.seed_server(&n.id, state, since_us);
        }
    }

    fn toast(&mut self, level: Level, title: &str, text: &str) {
        // The same message again while it is still on screen says nothing new.
        if self
            .toasts
            .iter()
            .any(|t| t.level == level && t.title == title && t.text == text)
        {
            return;
        }
        let id = self.next_toast;
        self.next_toast += 1;
        self.toasts.push(Toast {
            id,
            level,
            title: title.to_owned(),
            text: text.to_owned(),
        });
        if self.toasts.len() > TOASTS_CAP {
            self.toasts.remove(0);
        }
    }

    fn client(&mut self, id: u32) -> &mut ClientView {
        self.clients
            .entry(id)
            .or_insert_with(|| ClientView::new(id))
    }

    fn on_sent(&mut self, cmd: &Command) {
        if let (Command::CrashBeforeReply { tag: Some(tag), .. }, Some(demo)) =
            (cmd, self.demo.as_mut())
        {
            demo.on_sent(0, tag);
        }
        if let Command::Lock { client, tag, .. } | Command::Unlock { client, tag, .. } = cmd {
            let tag = tag.clone().unwrap_or_default();
            if let Some(demo) = self.demo.as_mut() {
                demo.on_sent(*client, &tag);
            }
            self.client(*client).sending = Some(tag);
        }
    }

    fn on_server(&mut self, msg: ServerMsg, local_ms: f64) {
        match msg {
            ServerMsg::Hello(h) => {
                if self.run.is_some_and(|run| run != h.run) {
                    // A new server process: its sequence numbers and clock start over.
                    self.start_new_history();
                    for c in self.clients.values_mut() {
                        c.history = Rc::default();
                    }
                    self.toast(
                        Level::Info,
                        "New server",
                        "the server restarted; the page starts a new history",
                    );
                }
                self.run = Some(h.run);
                self.server_version = Some(h.server);
                self.limits = Some(h.limits);
            }
            ServerMsg::Snapshot(s) => self.on_snapshot(s, local_ms),
            ServerMsg::Events { events } => {
                self.ingested += events.len() as u64;
                for e in &events {
                    if self.last_seq.is_some_and(|last| e.seq <= last) {
                        continue;
                    }
                    self.apply_event(e, true, local_ms);
                }
                if let Some(last) = events.last() {
                    let off = last.t_us as f64 - local_ms * 1000.0;
                    self.clock_offset_us = Some(self.clock_offset_us.map_or(off, |o| o.max(off)));
                }
            }
            ServerMsg::Ack {
                command, detail, ..
            } => {
                if matches!(command.as_str(), "crash" | "crash_before_reply" | "reset") {
                    self.toast(Level::Info, &command.replace('_', " "), &detail);
                }
            }
            ServerMsg::Error { code, message, tag } => {
                if let Some(tag) = tag.as_deref() {
                    for c in self.clients.values_mut() {
                        if c.sending.as_deref() == Some(tag) {
                            c.sending = None;
                        }
                    }
                    if let Some(demo) = self.demo.as_mut() {
                        demo.on_answer(tag, local_ms);
                    }
                    self.finish_demo_if_done();
                }
                self.toast(Level::Error, format::error_code(code), &message);
            }
        }
    }

    fn on_snapshot(&mut self, s: Snapshot, local_ms: f64) {
        self.ingested += s.events.len() as u64;
        // The snapshot is the cluster after its last event: its events are not folded again.
        // A clerk it no longer lists (a reset we did not see live) waits for nothing.
        self.cluster = Rc::new(Cluster::from_snapshot(&s));
        self.clock_offset_us = Some(s.now_us as f64 - local_ms * 1000.0);
        for info in &s.clients {
            self.client(info.id);
        }
        // Whatever was on its way was answered before the snapshot, or will be after it.
        for c in self.clients.values_mut() {
            c.sending = None;
        }
        if s.missed > 0 {
            self.missed += s.missed;
            self.toast(
                Level::Warn,
                "Fell behind",
                &format!(
                    "{} events were not received live; the page resynchronised from a snapshot",
                    format::count(s.missed)
                ),
            );
        }
        self.release(local_ms, true);
        let snap_last = s.next_seq.checked_sub(1);
        let gap = match (self.last_seq, s.events.first()) {
            (Some(last), Some(first)) => first.seq.saturating_sub(last + 1),
            (Some(last), None) => s.next_seq.saturating_sub(last + 1),
            (None, _) => 0,
        };
        if gap > 0 {
            // Events between what we hold and the snapshot's oldest are gone for good: the
            // diagram cannot bridge them, so it restarts from the snapshot.
            self.start_new_history();
            if s.missed == 0 {
                self.missed += gap;
                self.toast(
                    Level::Warn,
                    "Missed events",
                    &format!(
                        "{} events happened while the page was away; the diagram restarts from the snapshot",
                        format::count(gap)
                    ),
                );
            }
        }
        if self.history.is_empty() {
            // The servers' starts may be older than the events we got: the timeline starts
            // from what the snapshot says they are doing.
            self.seed_timeline(s.events.first().map_or(s.now_us, |e| e.t_us));
        }
        for e in &s.events {
            if self.last_seq.is_some_and(|last| e.seq <= last) {
                continue;
            }
            self.apply_event(e, false, local_ms);
        }
        self.last_seq = self.last_seq.max(snap_last);
        self.finish_demo_if_done();
    }

    /// Applies one new event: to the history always; to the cluster only when `live` (a
    /// snapshot's cluster already includes its events).
    fn apply_event(&mut self, e: &Event, live: bool, local_ms: f64) {
        self.last_seq = Some(e.seq);
        self.pending.push((e.clone(), local_ms));
        if live {
            Rc::make_mut(&mut self.cluster).apply(e);
        }
        let syms = self.history.syms.clone();
        let name = |s: &str| syms.name(syms.intern(s));
        match &e.kind {
            EventKind::OpInvoked { client, .. } => self.client(*client).sending = None,
            EventKind::RpcFailed { client, .. } if live => {
                self.client(*client);
            }
            EventKind::OpCompleted {
                client,
                op,
                lock,
                tag,
                ok,
                req,
                server,
                latency_us,
                attempts,
            } => {
                let record = CallRecord {
                    seq: e.seq,
                    req: *req,
                    op: *op,
                    lock: name(lock),
                    outcome: Outcome::Answer(*ok),
                    latency_us: Some(*latency_us),
                    attempts: *attempts,
                    server: Some(name(server)),
                    t_us: e.t_us,
                };
                let c = self.client(*client);
                if live {
                    c.sending = None;
                }
                push_history(c, record);
                self.demo_answer(tag.as_deref(), local_ms);
            }
            EventKind::OpFailed {
                client,
                op,
                lock,
                tag,
                req,
                reason,
            } => {
                let record = CallRecord {
                    seq: e.seq,
                    req: *req,
                    op: *op,
                    lock: name(lock),
                    outcome: Outcome::GaveUp(reason.clone()),
                    latency_us: None,
                    attempts: 0,
                    server: None,
                    t_us: e.t_us,
                };
                let c = self.client(*client);
                if live {
                    c.sending = None;
                }
                push_history(c, record);
                self.demo_answer(tag.as_deref(), local_ms);
            }
            // The clerks are gone with the old cluster (the model drops them); the cards, with
            // their lock names and finished calls, are the page's and stay.
            EventKind::ClusterReset { .. } if live => {
                for c in self.clients.values_mut() {
                    c.sending = None;
                }
            }
            _ => {}
        }
    }

    fn demo_answer(&mut self, tag: Option<&str>, local_ms: f64) {
        if let (Some(demo), Some(tag)) = (self.demo.as_mut(), tag) {
            demo.on_answer(tag, local_ms);
        }
        self.finish_demo_if_done();
    }

    fn finish_demo_if_done(&mut self) {
        if self.demo.as_ref().is_some_and(DemoRun::finished) {
            self.demo = None;
            self.toast(
                Level::Info,
                "Demo finished",
                "scroll back through the diagram, or crash the primary and run it again",
            );
        }
    }
}

fn push_history(c: &mut ClientView, record: CallRecord) {
    let h = Rc::make_mut(&mut c.history);
    h.push_back(record);
    if h.len() > CLIENT_HISTORY {
        h.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Script;
    use shared::{CrashCause, ErrorCode, EventKind as K, Role};

    fn node(id: &str, role: Role, pid: u32) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            role,
            serving_alone: false,
            alive: true,
            pid: Some(pid),
            port: Some(7000),
            locks: vec![],
            served: 0,
            applied_forwards: 0,
            armed: false,
        }
    }

    fn snapshot(events: Vec<Event>, missed: u64) -> ServerMsg {
        let next_seq = events.last().map_or(1, |e| e.seq + 1);
        ServerMsg::Snapshot(Snapshot {
            nodes: vec![node("s2", Role::Backup, 43), node("s1", Role::Primary, 42)],
            clients: vec![],
            events,
            next_seq,
            missed,
            generation: 0,
            slow_motion_ms: 0,
            now_us: 1_000_000,
        })
    }

    fn receive(s: &mut State, msgs: Vec<ServerMsg>) {
        s.apply(Action::Receive {
            msgs,
            local_ms: 10.0,
        });
    }

    /// A state that places events at once (no reorder hold).
    fn state() -> State {
        State {
            reorder_hold_ms: 0.0,
            ..State::default()
        }
    }

    #[test]
    fn late_reported_events_are_placed_in_time_order() {
        let mut st = State::default();
        let mut s = Script::default();
        s.ev("s1", K::CrashArmed {});
        s.ev(
            "c1",
            K::RpcFailed {
                client: 1,
                req: RequestId { client: 1, seq: 1 },
                server: "s1".into(),
                reason: "connection closed".into(),
                retry_to: "s2".into(),
            },
        );
        s.ev(
            "s1",
            K::Crashed {
                pid: 42,
                cause: CrashCause::BeforeReply,
                req: None,
            },
        );
        // The clerk's event arrived first but happened last.
        s.events[1].t_us = 10_000;
        st.apply(Action::Receive {
            msgs: vec![ServerMsg::Events {
                events: s.events.clone(),
            }],
            local_ms: 0.0,
        });
        assert!(st.history.is_empty(), "held for a moment");
        assert_eq!(st.pending_len(), 3);
        assert_eq!(
            st.clerk(1).map(|c| c.server.as_str()),
            Some("s2"),
            "cards at once"
        );
        st.apply(Action::Tick {
            local_ms: REORDER_HOLD_MS - 1.0,
        });
        assert!(st.history.is_empty());
        st.apply(Action::Tick {
            local_ms: REORDER_HOLD_MS,
        });
        let order: Vec<u64> = st.history.events.iter().map(|(_, e)| e.seq).collect();
        assert_eq!(order, vec![1, 3, 2]);
        assert_eq!(st.pending_len(), 0);
        assert_eq!(st.history.failover.crashes.len(), 1);
    }

    #[test]
    fn snapshot_then_events_builds_cards_history_and_diagram() {
        let mut st = state();
        let mut script = Script::default();
        script.call(1, 1, "s1", "s2", 1);
        let (first, rest) = script.events.split_at(4);
        receive(&mut st, vec![snapshot(first.to_vec(), 0)]);
        assert_eq!(
            st.nodes().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(st.history.len(), 4);
        assert_eq!(st.last_seq, Some(4));
        let segs: Vec<(&str, Serving)> = st
            .history
            .failover
            .segments
            .iter()
            .map(|g| (&*g.server, g.state))
            .collect();
        assert_eq!(
            segs,
            [("s1", Serving::Primary), ("s2", Serving::Backup)],
            "the timeline starts from the snapshot's servers"
        );

        let mut rest = rest.to_vec();
        rest.insert(
            3,
            Event {
                seq: 0,
                t_us: 0,
                node: "s1".into(),
                kind: K::Executed {
                    req: RequestId { client: 1, seq: 1 },
                    op: Op::Lock,
                    lock: "a".into(),
                    ok: true,
                    held: true,
                    duplicate: false,
                    forwarded: false,
                },
            },
        );
        // Renumber so the batch stays consecutive after the insert.
        for (i, e) in rest.iter_mut().enumerate() {
            e.seq = 5 + i as u64;
            e.t_us = 10_000 + i as u64 * 100;
        }
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: rest.clone(),
            }],
        );
        assert_eq!(st.history.len(), 4 + rest.len());
        assert_eq!(st.history.msgs.len(), 4);
        assert_eq!(st.history.in_flight_count(), 0);
        let s1 = st.node("s1").expect("s1");
        assert_eq!(s1.locks, vec!["a".to_string()]);
        assert_eq!(s1.served, 1);
        let c1 = st.clerk(1).expect("c1 called");
        assert!(c1.pending.is_none());
        assert_eq!(c1.completed, 1);
        let c1 = &st.clients[&1];
        assert_eq!(c1.history.len(), 1);
        assert_eq!(c1.history[0].outcome, Outcome::Answer(true));
        assert_eq!(st.ingested, 4 + rest.len() as u64);

        // A batch replayed (duplicate seqs) changes nothing.
        let before = st.history.len();
        receive(&mut st, vec![ServerMsg::Events { events: rest }]);
        assert_eq!(st.history.len(), before);
        assert_eq!(st.clerk(1).map(|c| c.completed), Some(1));
    }

    #[test]
    fn a_snapshot_after_missed_events_resyncs_and_says_so() {
        let mut st = state();
        let mut script = Script::default();
        for i in 0..3 {
            script.call(1, i + 1, "s1", "s2", i * 4);
        }
        let all = script.events.clone();
        receive(&mut st, vec![snapshot(all[..10].to_vec(), 0)]);
        // The viewer fell behind: the next snapshot starts after a gap.
        receive(&mut st, vec![snapshot(all[20..].to_vec(), 10)]);
        assert_eq!(st.missed, 10);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.history.first_seq(), Some(21));
        assert_eq!(st.history.len(), all.len() - 20);
        assert!(st
            .toasts
            .iter()
            .any(|t| t.level == Level::Warn && t.text.contains("10 events")));

        // A reconnect snapshot overlapping what we have appends only the new events.
        let len = st.history.len();
        let mut more = Script::default();
        more.call(2, 1, "s1", "s2", 100);
        let mut extra: Vec<Event> = all[30..].to_vec();
        for (i, mut e) in more.events.into_iter().enumerate() {
            e.seq = all.len() as u64 + 1 + i as u64;
            e.t_us += 10_000_000;
            extra.push(e);
        }
        receive(&mut st, vec![snapshot(extra, 0)]);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.history.len(), len + 10);
        assert_eq!(st.clients[&2].history.len(), 1);
    }

    fn hello(run: u64) -> ServerMsg {
        ServerMsg::Hello(shared::Hello {
            protocol: shared::PROTOCOL_VERSION,
            server: "pbscope test".into(),
            run,
            limits: Limits {
                max_message_bytes: 65536,
                max_client: 1000,
                max_lock_name: 64,
                max_delay_ms: 10_000,
                commands_per_sec: 200,
                history: 100_000,
                max_tag_bytes: 128,
                max_locks: 10_000,
                max_viewers: 32,
            },
        })
    }

    #[test]
    fn a_restarted_server_starts_a_new_history() {
        let mut st = state();
        let mut old = Script::default();
        old.call(1, 1, "s1", "s2", 1).call(1, 2, "s1", "s2", 5);
        receive(&mut st, vec![hello(7), snapshot(old.events.clone(), 0)]);
        assert_eq!(st.history.len(), 20);

        // The new server has already produced more events than the page saw of the old one:
        // sequence numbers alone would take its seqs 1..=20 for old ones and append the rest.
        let mut fresh = Script::default();
        fresh
            .call(1, 1, "s1", "s2", 1)
            .call(1, 2, "s1", "s2", 5)
            .call(1, 3, "s1", "s2", 9);
        receive(&mut st, vec![hello(8), snapshot(fresh.events.clone(), 0)]);
        assert_eq!(
            st.history.len(),
            30,
            "every event of the new server, none of the old"
        );
        assert_eq!(st.history.first_seq(), Some(1));
        assert_eq!(st.last_seq, Some(30));
        assert_eq!(st.clients[&1].history.len(), 3);
        assert_eq!(st.resyncs, 1);
        assert!(
            st.history.msgs.iter().all(|(_, m)| m.attempt == 1),
            "c1.1 of the new server is a first try, not a retry of the old c1.1"
        );
        assert!(st.toasts.iter().any(|t| t.title == "New server"));

        // Reconnecting to the same run appends only what is new.
        let mut more = fresh.clone();
        more.call(1, 4, "s1", "s2", 13);
        receive(&mut st, vec![hello(8), snapshot(more.events.clone(), 0)]);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.history.len(), 40);
    }

    #[test]
    fn a_reconnect_after_a_gap_restarts_the_diagram_and_counts_what_was_missed() {
        let mut st = state();
        let mut s = Script::default();
        for i in 0..4 {
            s.call(1, i + 1, "s1", "s2", i * 4);
        }
        let all = s.events.clone();
        receive(&mut st, vec![hello(1), snapshot(all[..10].to_vec(), 0)]);
        // Away for a while: the new connection's snapshot (missed = 0: a fresh connection)
        // keeps only the newest events, which start after a gap of 15.
        receive(&mut st, vec![hello(1), snapshot(all[25..].to_vec(), 0)]);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.missed, 15);
        assert_eq!(st.history.first_seq(), Some(26));
        assert!(st
            .toasts
            .iter()
            .any(|t| t.title == "Missed events" && t.text.contains("15 events")));
    }

    #[test]
    fn a_client_the_snapshot_no_longer_has_is_not_left_waiting() {
        let mut st = state();
        receive(&mut st, vec![snapshot(vec![], 0)]);
        let mut s = Script::default();
        s.ev(
            "c2",
            K::OpInvoked {
                client: 2,
                req: RequestId { client: 2, seq: 1 },
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                server: "s1".into(),
            },
        );
        receive(&mut st, vec![ServerMsg::Events { events: s.events }]);
        assert!(st.busy(2), "c2 waits for its answer");
        // The cluster was reset while the page was away: the server has no clerk c2 any more.
        receive(&mut st, vec![snapshot(vec![], 0)]);
        assert!(!st.busy(2), "c2 waits for nothing now");
    }

    #[test]
    fn crash_events_update_the_cards_and_errors_become_toasts() {
        let mut st = state();
        receive(&mut st, vec![snapshot(vec![], 0)]);
        let mut s = Script::default();
        s.ev("s1", K::CrashArmed {});
        s.ev(
            "s1",
            K::Crashed {
                pid: 42,
                cause: CrashCause::BeforeReply,
                req: None,
            },
        )
        .ev(
            "s1",
            K::ProcessExited {
                pid: 42,
                signal: Some(9),
                code: None,
            },
        )
        .ev(
            "s2",
            K::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "r".into(),
            },
        );
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: s.events[..1].to_vec(),
            }],
        );
        assert!(st.node("s1").is_some_and(|n| n.armed));
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: s.events[1..].to_vec(),
            }],
        );
        let s1 = st.node("s1").expect("s1");
        assert!(!s1.alive && !s1.armed);
        let s2 = st.node("s2").expect("s2");
        assert!(s2.serving_alone && s2.role == Role::Primary);
        assert_eq!(st.primary().map(|n| n.id.as_str()), Some("s2"));

        st.apply(Action::Sent {
            cmd: Command::Lock {
                client: 1,
                lock: "a".into(),
                tag: Some("t9".into()),
            },
        });
        assert!(st.busy(1));
        receive(
            &mut st,
            vec![ServerMsg::Error {
                code: ErrorCode::ClientBusy,
                message: "c1 has a call outstanding".into(),
                tag: Some("t9".into()),
            }],
        );
        assert!(!st.busy(1), "the refused command no longer counts");
        let t = st.toasts.last().expect("toast");
        assert_eq!((t.level, t.title.as_str()), (Level::Error, "client_busy"));
    }

    #[test]
    fn pause_freezes_the_view_and_clear_empties_it() {
        let mut st = state();
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 1);
        receive(&mut st, vec![snapshot(s.events[..6].to_vec(), 0)]);
        st.apply(Action::TogglePause);
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: s.events[6..].to_vec(),
            }],
        );
        assert_eq!(st.shown().len(), 6);
        assert_eq!(st.unseen(), 4);
        st.apply(Action::TogglePause);
        assert_eq!(st.shown().len(), 10);
        st.apply(Action::AddClient);
        st.apply(Action::AddClient);
        st.apply(Action::SelectClient(2));
        st.apply(Action::Clear);
        assert!(st.shown().is_empty());
        assert!(st.clients[&1].history.is_empty());
        assert_eq!(
            st.clerk(1).map(|c| c.completed),
            Some(1),
            "counters are the cluster's, not the view's"
        );
        assert_eq!(
            st.clients.keys().copied().collect::<Vec<_>>(),
            vec![1, 2],
            "idle clients other than c1 and the selected one are cleared away"
        );
        assert_eq!(
            st.shown().failover.segments.len(),
            2,
            "the timeline restarts from the cards"
        );
        st.apply(Action::AddClient);
        st.apply(Action::SelectClient(1));
        assert_eq!(
            st.lane_clients(),
            vec![1],
            "a card without events gets no lane"
        );
    }

    #[test]
    fn disconnect_shows_reconnecting_and_the_reducer_counts_revisions() {
        let mut st = state();
        let r0 = st.rev();
        st.apply(Action::Connected);
        assert_eq!(st.conn, Conn::Connected);
        st.apply(Action::Disconnected {
            attempt: 2,
            retry_in_ms: 1000,
        });
        assert_eq!(
            st.conn,
            Conn::Reconnecting {
                attempt: 2,
                retry_in_ms: 1000
            }
        );
        assert!(st.rev() > r0);
        let a = st.clone();
        st.apply(Action::AddClient);
        assert!(a != st);
        assert_eq!(st.clients.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(st.selected_client, 2);
    }

    #[test]
    fn the_demo_advances_on_tagged_answers_and_finishes() {
        let mut st = state();
        st.apply(Action::Connected);
        st.apply(Action::StartDemo {
            local_ms: 0.0,
            failover: false,
        });
        assert_eq!(st.clients.len(), 3);
        let plan = crate::demo::plan(st.demo.as_ref().expect("demo"), 0.0, |c| st.busy(c));
        assert_eq!(plan.send.len(), 1);
        let cmd = plan.send[0].clone();
        let tag = cmd.tag().unwrap_or_default().to_owned();
        st.apply(Action::Sent { cmd });
        assert!(st.busy(1));
        let mut s = Script::default();
        s.ev(
            "c1",
            K::OpCompleted {
                client: 1,
                op: Op::Lock,
                lock: "a".into(),
                tag: Some(tag),
                ok: true,
                req: RequestId { client: 1, seq: 1 },
                server: "s1".into(),
                latency_us: 300,
                attempts: 1,
            },
        );
        receive(&mut st, vec![ServerMsg::Events { events: s.events }]);
        let demo = st.demo.as_ref().expect("still running");
        assert_eq!(demo.answered, 1);
        assert!(!st.busy(1));
    }

    #[test]
    fn the_demo_needs_a_connection_and_stops_when_a_step_cannot_be_sent() {
        let mut st = state();
        st.apply(Action::StartDemo {
            local_ms: 0.0,
            failover: false,
        });
        assert!(st.demo.is_none(), "no demo while not connected");
        assert!(st.toasts.iter().any(|t| t.title == "Not connected"));

        st.apply(Action::Connected);
        st.apply(Action::StartDemo {
            local_ms: 0.0,
            failover: false,
        });
        let run = st.demo.as_ref().expect("connected: the demo runs");
        let step = crate::demo::plan(run, 0.0, |_| false).send[0].clone();
        // The socket closed under it: the step bounces, and the demo must not plan it again.
        st.apply(Action::NotSent { cmd: step.clone() });
        assert!(st.demo.is_none(), "a step that was not sent stops the demo");
        assert!(st.toasts.iter().any(|t| t.title == "Demo stopped"));
        // The other steps of that tick bounce too: one toast says it.
        let shown = st.toasts.len();
        st.apply(Action::NotSent { cmd: step });
        assert_eq!(st.toasts.len(), shown, "the same toast is not stacked");
    }

    #[test]
    fn go_live_resumes_a_paused_view_and_follows_the_newest_events() {
        let mut st = state();
        let mut s = Script::default();
        for _ in 0..5 {
            s.ev("supervisor", K::SlowMotionSet { delay_ms: 0 });
        }
        let later = s.events.split_off(2);
        receive(&mut st, vec![ServerMsg::Events { events: s.events }]);
        st.apply(Action::TogglePause);
        st.apply(Action::SetFollow(false));
        receive(&mut st, vec![ServerMsg::Events { events: later }]);
        assert_eq!((st.shown().len(), st.history.len()), (2, 5), "paused");

        st.apply(Action::GoLive);
        assert!(!st.paused() && st.follow);
        assert_eq!(st.shown().len(), 5, "the view shows what arrived meanwhile");
        // Going live when live changes nothing (it is not a toggle).
        st.apply(Action::GoLive);
        assert!(!st.paused() && st.follow);
    }

    #[test]
    fn toggle_demo_starts_the_plain_demo_live_and_stops_whichever_demo_runs() {
        let mut st = state();
        st.apply(Action::ToggleDemo { local_ms: 0.0 });
        assert!(st.demo.is_none(), "not connected: no demo");
        assert!(st.toasts.iter().any(|t| t.title == "Not connected"));

        st.apply(Action::Connected);
        st.apply(Action::TogglePause);
        st.apply(Action::SetFollow(false));
        st.apply(Action::ToggleDemo { local_ms: 5.0 });
        let run = st.demo.as_ref().expect("the demo runs");
        assert_eq!(run.crash_after, None, "the plain demo, without a failover");
        assert!(!st.paused() && st.follow, "a demo is watched live");
        st.apply(Action::ToggleDemo { local_ms: 6.0 });
        assert!(st.demo.is_none(), "again: stopped");

        st.apply(Action::StartDemo {
            local_ms: 7.0,
            failover: true,
        });
        assert!(st.demo.as_ref().is_some_and(|d| d.crash_after.is_some()));
        st.apply(Action::ToggleDemo { local_ms: 8.0 });
        assert!(st.demo.is_none(), "d stops the failover demo too");
    }

    #[test]
    fn starting_a_demo_while_one_runs_leaves_it_running() {
        let mut st = state();
        st.apply(Action::Connected);
        st.apply(Action::StartDemo {
            local_ms: 0.0,
            failover: false,
        });
        let first = st.demo.clone().expect("started");
        st.apply(Action::StartDemo {
            local_ms: 100.0,
            failover: true,
        });
        assert_eq!(
            st.demo.as_ref(),
            Some(&first),
            "not restarted, not switched"
        );
    }

    #[test]
    fn a_call_is_on_the_lock_name_typed_on_the_card_and_makes_the_client_busy() {
        let mut st = state();
        st.apply(Action::AddClient);
        st.apply(Action::SetLockName {
            client: 2,
            name: "  x ".into(),
        });
        let cmd = st.call(2, Op::Unlock, "ui-7".into());
        assert_eq!(
            cmd,
            Command::Unlock {
                client: 2,
                lock: "x".into(),
                tag: Some("ui-7".into())
            }
        );
        assert_eq!(
            st.call(1, Op::Lock, "key-8".into()),
            Command::Lock {
                client: 1,
                lock: DEFAULT_LOCK.into(),
                tag: Some("key-8".into())
            },
            "nothing typed: the default lock"
        );
        st.apply(Action::SetLockName {
            client: 1,
            name: "   ".into(),
        });
        assert!(
            matches!(st.call(1, Op::Lock, "t".into()), Command::Lock { lock, .. } if lock == DEFAULT_LOCK)
        );

        st.apply(Action::Sent { cmd });
        assert_eq!(st.clients[&2].sending.as_deref(), Some("ui-7"));
        assert!(!st.busy(1));
    }

    #[test]
    fn a_reset_drops_the_old_cluster_but_keeps_the_cards() {
        let mut st = state();
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 1);
        receive(&mut st, vec![snapshot(s.events[..1].to_vec(), 0)]);
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: s.events[1..].to_vec(),
            }],
        );
        st.apply(Action::SetLockName {
            client: 1,
            name: "z".into(),
        });
        assert_eq!(st.clerk(1).map(|c| c.completed), Some(1));

        let mut reset = Script::default();
        reset.ev("supervisor", K::ClusterReset { generation: 1 });
        for e in &mut reset.events {
            e.seq += s.events.len() as u64;
        }
        receive(
            &mut st,
            vec![ServerMsg::Events {
                events: reset.events,
            }],
        );
        assert_eq!(st.cluster.generation(), 1);
        assert_eq!(
            st.nodes().count(),
            0,
            "the old generation's servers are gone"
        );
        assert!(st.primary().is_none());
        assert!(st.clerk(1).is_none(), "so is its clerk c1");
        assert!(!st.busy(1));
        let card = &st.clients[&1];
        assert_eq!(card.history.len(), 1, "the card keeps its calls");
        assert_eq!(st.lock_name(1), "z", "and the lock name typed");
    }

    #[test]
    fn a_snapshot_s_pending_call_keeps_its_retries() {
        let mut st = state();
        let ServerMsg::Snapshot(mut snap) = snapshot(vec![], 0) else {
            unreachable!("snapshot() builds a snapshot")
        };
        snap.clients = vec![ClientInfo {
            id: 2,
            server: "s2".into(),
            pending: Some(PendingCall {
                req: RequestId { client: 2, seq: 4 },
                op: Op::Unlock,
                lock: "b".into(),
                tag: None,
                since_us: 900,
                retries: 1,
            }),
            completed: 3,
            failed: 0,
        }];
        receive(&mut st, vec![ServerMsg::Snapshot(snap)]);
        assert!(st.clients.contains_key(&2), "a card for every clerk");
        assert!(st.busy(2));
        assert_eq!(st.pending_call(2).map(|p| p.retries), Some(1));
        assert_eq!(st.clerk(2).map(|c| c.server.as_str()), Some("s2"));
    }
}
