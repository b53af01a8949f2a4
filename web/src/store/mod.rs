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
//! **Slices.** `State` is six slices, each behind its own `Rc`: [`Session`] (the connection
//! and server process), [`ClusterState`] (servers, clerks and client cards), [`Feed`] (the
//! event history, paused copy, reorder buffer, counters), [`ViewState`] (follow, selection,
//! help, large text, the demo), [`ToastList`] (all in `slices.rs`) and [`ReplayState`] (a
//! saved run shown instead of the live one; `replay.rs`). The reducer changes a slice only
//! through `Rc::make_mut`, and only when the action really changes it; [`Reducible::reduce`]
//! keeps the previous state alive meanwhile, so a changed slice always gets a new allocation and
//! an untouched one keeps its pointer. A slice's identity is its pointer: the page gives each
//! slice to the components through its own context compared by `Rc::ptr_eq`, so a component
//! re-renders only when a slice it reads changes, and an action that changes nothing (a tick with
//! nothing due, selecting what is selected) returns the same state and renders nothing.
//!
//! Cheap copies: everything large in a slice is shared (`History` is chunked, the cluster
//! model and client histories sit behind `Rc`), so copying a slice an action changes costs a few
//! pointers plus its small parts (the feed's reorder buffer: the last 40 ms of events; the
//! cluster's cards). A live event also copies the cluster model, which the old state shares.

use std::rc::Rc;

use model::Cluster;
use shared::{Command, Event, EventKind, ServerMsg, Snapshot};
use yew::Reducible;

use crate::demo::DemoRun;
use crate::failover::Serving;
use crate::grants::GrantWatch;
use crate::history::History;
use crate::symbols::Symbols;
use crate::{faults, format};

/// The positions of `keys` in ascending order, equal keys in the order given: the order a
/// stable `sort_by_key` gives. The page's sorts by time or sequence go through here, so its
/// wasm holds one copy of the standard library's sort (for `(u64, u64, u32)`) instead of one
/// per element type and key.
pub fn stable_order(keys: impl Iterator<Item = (u64, u64)>) -> Vec<u32> {
    let mut keyed: Vec<(u64, u64, u32)> = keys
        .enumerate()
        .map(|(i, (a, b))| (a, b, i as u32))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

mod lecture;
mod load;
mod replay;
mod slices;
#[cfg(test)]
mod tests;

pub use load::LoadState;
pub use replay::{Replay, ReplayState, MAX_RUN_BYTES, SPEEDS};
pub use slices::{
    lane_clients, server_now_us, CallRecord, ClientView, ClusterState, Conn, Feed, Level, Outcome,
    Selection, Session, Toast, ToastList, ViewState, REORDER_HOLD_MS,
};

/// Calls remembered per client (the card shows the newest few).
pub const CLIENT_HISTORY: usize = 40;
const TOASTS_CAP: usize = 4;

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
    /// Open or close the lecture panel.
    ShowLecture(bool),
    /// Play the lecture's preset `preset` (an index into `lecture::presets()`) on the cluster.
    StartLecture {
        preset: usize,
        local_ms: f64,
    },
    /// Stop the preset that plays (the cluster stays as it is).
    StopLecture,
    /// Back to the lecture's list (forgets the finished run).
    CloseLectureRun,
    /// Time passed for the preset that plays (a wait ended, or a timeout).
    LectureTick {
        local_ms: f64,
    },
    /// Open or close the fault panel (`Shift+F`).
    ToggleFaultPanel,
    /// Show the earliest of these calls in the diagram (the checker's calls at fault: the
    /// verdict badge, its banner, `v`): selects its first event and stops following.
    JumpToCalls(Vec<shared::RequestId>),
    /// Put a process (`"s1"`, `"c2"`) into partition group A, then B, then neither.
    CycleGroup(String),
    /// A run file was read (*Open run*): show it instead of the live run, or say why not.
    OpenRun {
        name: String,
        text: String,
    },
    /// Show the replayed run at this time (the run's clock, µs).
    ReplaySeek(u64),
    /// Show one more (`true`) or one fewer event of the replayed run.
    ReplayStep(bool),
    ReplayPlay(bool),
    /// The page's clock moved `ms` while the replay plays.
    ReplayAdvance(f64),
    ReplaySpeed(f64),
    /// Back to the live run.
    LeaveReplay,
    /// Open or close the load panel.
    ToggleLoadPanel,
    /// The load panel's settings changed (what *Start* sends).
    LoadDraft(shared::LoadSettings),
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct State {
    session: Rc<Session>,
    cluster: Rc<ClusterState>,
    feed: Rc<Feed>,
    view: Rc<ViewState>,
    toasts: Rc<ToastList>,
    replay: Rc<ReplayState>,
    load: Rc<LoadState>,
}

/// The same slices (pointers), so the same page.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.session, &other.session)
            && Rc::ptr_eq(&self.cluster, &other.cluster)
            && Rc::ptr_eq(&self.feed, &other.feed)
            && Rc::ptr_eq(&self.view, &other.view)
            && Rc::ptr_eq(&self.toasts, &other.toasts)
            && Rc::ptr_eq(&self.replay, &other.replay)
            && Rc::ptr_eq(&self.load, &other.load)
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        // `self` holds every slice while `next` is changed: `Rc::make_mut` copies the slices
        // the action changes and leaves the others shared.
        let mut next = (*self).clone();
        next.apply(action);
        if next == *self {
            self
        } else {
            Rc::new(next)
        }
    }
}

impl State {
    pub fn session(&self) -> &Rc<Session> {
        &self.session
    }

    pub fn cluster(&self) -> &Rc<ClusterState> {
        &self.cluster
    }

    pub fn feed(&self) -> &Rc<Feed> {
        &self.feed
    }

    pub fn view(&self) -> &Rc<ViewState> {
        &self.view
    }

    pub fn toasts(&self) -> &Rc<ToastList> {
        &self.toasts
    }

    pub fn replay(&self) -> &Rc<ReplayState> {
        &self.replay
    }

    pub fn load(&self) -> &Rc<LoadState> {
        &self.load
    }

    fn session_mut(&mut self) -> &mut Session {
        Rc::make_mut(&mut self.session)
    }

    fn cluster_mut(&mut self) -> &mut ClusterState {
        Rc::make_mut(&mut self.cluster)
    }

    fn feed_mut(&mut self) -> &mut Feed {
        Rc::make_mut(&mut self.feed)
    }

    fn view_mut(&mut self) -> &mut ViewState {
        Rc::make_mut(&mut self.view)
    }

    pub fn apply(&mut self, action: Action) {
        if self.replaying() {
            // A file is shown: the live connection is closed, and what would act on the live
            // cluster or its history waits for *Back to live*.
            match action {
                Action::Connecting
                | Action::Connected
                | Action::Disconnected { .. }
                | Action::Receive { .. }
                | Action::Tick { .. }
                | Action::Sent { .. } => return,
                Action::NotSent { cmd } => {
                    return self.replay_refuses(&format!("`{}` was not sent", cmd.name()))
                }
                Action::Clear => return self.replay_refuses("nothing to clear"),
                Action::AddClient => return self.replay_refuses("no client can be added"),
                Action::StartDemo { .. } | Action::ToggleDemo { .. } => {
                    return self.replay_refuses("the demo needs the live cluster")
                }
                Action::StartLecture { .. } => {
                    return self.replay_refuses("a lecture preset needs the live cluster")
                }
                Action::TogglePause => {
                    let playing = self.replay.run.as_ref().is_some_and(|r| r.playing);
                    return self.replay_play(!playing);
                }
                _ => {}
            }
        }
        match action {
            Action::Connecting => {
                // Not while reconnecting: the pill keeps the backoff.
                if self.session.conn == Conn::Connected {
                    self.session_mut().conn = Conn::Connecting;
                }
            }
            Action::Connected => {
                // A new socket: objects until the server acknowledges its `compact`.
                if self.session.compact {
                    self.session_mut().compact = false;
                }
                self.set_conn(Conn::Connected);
                self.load_reconnected();
            }
            Action::Disconnected {
                attempt,
                retry_in_ms,
            } => {
                // Found by review: the pill said "compact" while reconnecting.
                if self.session.compact {
                    self.session_mut().compact = false;
                }
                self.load_reconnected();
                self.set_conn(Conn::Reconnecting {
                    attempt,
                    retry_in_ms,
                });
                self.clear_sending(|_| true);
                self.stop_demo("the connection was lost");
                self.stop_lecture("the connection was lost");
            }
            Action::Receive { msgs, local_ms } => {
                for m in msgs {
                    self.on_server(m, local_ms);
                }
                self.release(local_ms, false);
                self.lecture_advance(local_ms);
            }
            Action::Tick { local_ms } => self.release(local_ms, false),
            Action::Sent { cmd } => {
                self.on_sent(&cmd);
                self.load_sent(&cmd);
                self.lecture_sent(&cmd);
            }
            Action::NotSent { cmd } => {
                self.toast(
                    Level::Error,
                    "Not connected",
                    &format!("`{}` was not sent; the page is reconnecting", cmd.name()),
                );
                // The demo would plan the same step again at once, forever.
                self.stop_demo("the connection was lost");
                self.stop_lecture("the connection was lost");
            }
            Action::AddClient => {
                let max_client = self
                    .session
                    .limits
                    .as_ref()
                    .map_or(u32::MAX, |l| l.max_client);
                let next = self.cluster.clients.keys().max().map_or(1, |m| m + 1);
                if next <= max_client {
                    let cluster = self.cluster_mut();
                    cluster.clients.insert(next, ClientView::new(next));
                    cluster.selected_client = next;
                } else {
                    self.toast(
                        Level::Warn,
                        "No more clients",
                        &format!("the server allows at most {max_client}"),
                    );
                }
            }
            Action::SelectClient(id) => {
                if self.cluster.clients.contains_key(&id) && self.cluster.selected_client != id {
                    self.cluster_mut().selected_client = id;
                }
            }
            Action::SetLockName { client, name } => {
                if self.cluster.lock_names.get(&client) != Some(&name) {
                    self.cluster_mut().lock_names.insert(client, name);
                }
            }
            Action::SetFollow(f) => {
                if self.view.follow != f {
                    self.view_mut().follow = f;
                }
            }
            Action::GoLive => self.go_live(),
            Action::TogglePause => {
                let feed = self.feed_mut();
                feed.frozen = match feed.frozen.take() {
                    Some(_) => None,
                    None => Some(feed.history.clone()),
                };
            }
            Action::Clear => {
                let feed = self.feed_mut();
                let since = feed.history.last_t().unwrap_or(0);
                feed.history = History::new(feed.history.syms.clone());
                feed.frozen = None;
                if self.view.selected.is_some() || !self.view.follow {
                    let view = self.view_mut();
                    view.selected = None;
                    view.follow = true;
                }
                // A clean slate: only c1, the selected client and clients with a call in
                // progress keep their card and lane.
                let cluster = &self.cluster;
                let keep = |id: u32| id == 1 || id == cluster.selected_client || cluster.busy(id);
                let changes = cluster
                    .clients
                    .values()
                    .any(|c| !keep(c.id) || !c.history.is_empty());
                if changes {
                    let keep: Vec<u32> = cluster
                        .clients
                        .keys()
                        .copied()
                        .filter(|id| keep(*id))
                        .collect();
                    let cluster = self.cluster_mut();
                    cluster.clients.retain(|id, _| keep.contains(id));
                    for c in cluster.clients.values_mut() {
                        c.history = Rc::default();
                    }
                }
                self.seed_timeline(since);
            }
            Action::Select(sel) => {
                if self.view.selected != sel {
                    self.view_mut().selected = sel;
                }
            }
            Action::Toast { level, title, text } => self.toast(level, &title, &text),
            Action::DismissToast(id) => {
                if self.toasts.list.iter().any(|t| t.id == id) {
                    Rc::make_mut(&mut self.toasts).list.retain(|t| t.id != id);
                }
            }
            Action::StartDemo { local_ms, failover } => self.start_demo(local_ms, failover),
            Action::ToggleDemo { local_ms } => {
                if self.view.demo.is_some() {
                    self.view_mut().demo = None;
                } else {
                    self.start_demo(local_ms, false);
                }
            }
            Action::ShowHelp(show) => {
                if self.view.help != show {
                    self.view_mut().help = show;
                }
            }
            Action::ToggleLargeText => {
                let view = self.view_mut();
                view.large_text = !view.large_text;
            }
            lecture @ (Action::ShowLecture(_)
            | Action::StartLecture { .. }
            | Action::StopLecture
            | Action::CloseLectureRun
            | Action::LectureTick { .. }) => self.lecture_action(lecture),
            Action::ToggleFaultPanel => {
                let in_force = faults::draft_of(self.cluster.faults());
                let view = self.view_mut();
                view.faults_open = !view.faults_open;
                if view.faults_open && view.draft.is_empty() {
                    // Start from the partition in force, so a change is an edit of it.
                    view.draft = in_force;
                }
            }
            Action::OpenRun { name, text } => self.open_run(&name, &text),
            Action::ReplaySeek(t) => self.replay_seek(t),
            Action::ReplayStep(forward) => {
                if let Some(r) = self.replay.run.as_ref() {
                    let t = if forward {
                        r.next_event_us()
                    } else {
                        r.prev_event_us()
                    };
                    self.replay_seek(t);
                }
            }
            Action::ReplayPlay(on) => self.replay_play(on),
            Action::ReplayAdvance(ms) => self.replay_advance(ms),
            Action::ReplaySpeed(speed) => self.replay_speed(speed),
            Action::LeaveReplay => self.leave_replay(),
            Action::JumpToCalls(calls) => self.jump_to_calls(&calls),
            Action::ToggleLoadPanel => self.toggle_load_panel(),
            Action::LoadDraft(draft) => self.load_draft(draft),
            Action::CycleGroup(node) => {
                let draft = &mut self.view_mut().draft;
                match faults::Group::cycle(draft.get(&node).copied()) {
                    Some(g) => draft.insert(node, g),
                    None => draft.remove(&node),
                };
            }
        }
    }

    fn refold_verdicts(&mut self) {
        let board = crate::verdict::Board::of(self.cluster.model.verdicts());
        if *self.cluster.board != board {
            self.cluster_mut().board = Rc::new(board);
        }
    }

    fn jump_to_calls(&mut self, calls: &[shared::RequestId]) {
        if calls.is_empty() {
            self.toast(
                Level::Info,
                "No call at fault",
                "the checker has found no violation since the cluster started",
            );
            return;
        }
        let shown = self.feed.shown();
        let first = calls
            .iter()
            .filter_map(|r| shown.first_event_of_call(*r))
            .min();
        match first {
            Some(i) => {
                let view = self.view_mut();
                view.selected = Some(Selection::Event(i));
                view.follow = false;
                view.jumps += 1;
            }
            None => self.toast(
                Level::Info,
                "Not in the diagram",
                "the calls at fault are no longer in the diagram (cleared, or older than what it keeps)",
            ),
        }
    }

    fn set_conn(&mut self, conn: Conn) {
        if self.session.conn != conn {
            self.session_mut().conn = conn;
        }
    }

    fn go_live(&mut self) {
        if self.feed.frozen.is_some() {
            self.feed_mut().frozen = None;
        }
        if !self.view.follow {
            self.view_mut().follow = true;
        }
    }

    /// Starts a demo, and shows it live. A demo already running is left to run: a second
    /// start (a double click, a stale render) must not restart it halfway.
    fn start_demo(&mut self, local_ms: f64, failover: bool) {
        if self.view.demo.is_some() {
            return;
        }
        if self.session.conn != Conn::Connected {
            self.toast(
                Level::Warn,
                "Not connected",
                "the demo needs the server; it can start once the page is connected",
            );
            return;
        }
        let view = self.view_mut();
        view.demo_runs += 1;
        let run = if failover {
            DemoRun::with_failover(view.demo_runs, local_ms)
        } else {
            DemoRun::new(view.demo_runs, local_ms)
        };
        let missing: Vec<u32> = run
            .clients()
            .filter(|c| !self.cluster.clients.contains_key(c))
            .collect();
        if !missing.is_empty() {
            let cluster = self.cluster_mut();
            for c in missing {
                cluster.clients.insert(c, ClientView::new(c));
            }
        }
        self.view_mut().demo = Some(run);
        self.go_live();
    }

    /// Stops the demo that runs, saying why.
    fn stop_demo(&mut self, why: &str) {
        if self.view.demo.is_some() {
            self.view_mut().demo = None;
            self.toast(Level::Warn, "Demo stopped", why);
        }
    }

    /// Tells the running demo about one of its commands (`f` is `on_sent` or `on_answer`).
    fn demo_update(&mut self, tag: &str, f: impl FnOnce(&mut DemoRun)) {
        if self.view.demo.as_ref().is_some_and(|d| d.owns(tag)) {
            if let Some(demo) = self.view_mut().demo.as_mut() {
                f(demo);
            }
        }
    }

    /// Forgets the commands on their way (those whose tag `which` picks).
    fn clear_sending(&mut self, which: impl Fn(&str) -> bool) {
        let hit = |c: &ClientView| c.sending.as_deref().is_some_and(&which);
        if self.cluster.clients.values().any(hit) {
            for c in self.cluster_mut().clients.values_mut() {
                if hit(c) {
                    c.sending = None;
                }
            }
        }
    }

    /// Empties every client card's list of finished calls.
    fn clear_client_histories(&mut self) {
        if self.cluster.clients.values().any(|c| !c.history.is_empty()) {
            for c in self.cluster_mut().clients.values_mut() {
                c.history = Rc::default();
            }
        }
    }

    /// Places the waiting events that arrived at least the hold time ago (all when `all`), in
    /// time order. An event still waiting holds back every later one.
    fn release(&mut self, local_ms: f64, all: bool) {
        let feed = &self.feed;
        let due = |at: f64| local_ms - at >= feed.reorder_hold_ms;
        // The earliest (by time) waits longest in line: if it is not due, nothing is.
        let first = feed.pending.iter().min_by_key(|(e, _)| (e.t_us, e.seq));
        if !first.is_some_and(|(_, at)| all || due(*at)) {
            return;
        }
        let feed = self.feed_mut();
        if !feed.pending.is_sorted_by_key(|(e, _)| (e.t_us, e.seq)) {
            let order = stable_order(feed.pending.iter().map(|(e, _)| (e.t_us, e.seq)));
            let mut old: Vec<Option<(Event, f64)>> = std::mem::take(&mut feed.pending)
                .into_iter()
                .map(Some)
                .collect();
            feed.pending = order
                .iter()
                .filter_map(|&i| old[i as usize].take())
                .collect();
        }
        let hold = feed.reorder_hold_ms;
        let n = if all {
            feed.pending.len()
        } else {
            feed.pending
                .iter()
                .position(|(_, at)| local_ms - at < hold)
                .unwrap_or(feed.pending.len())
        };
        let released: Vec<(Event, f64)> = feed.pending.drain(..n).collect();
        for (e, _) in released {
            feed.history.push(&e);
        }
    }

    /// Drops the diagram's history (a gap it cannot bridge, or a new server process): what
    /// arrives next starts a new one. Cards and client histories are left to the caller.
    fn start_new_history(&mut self) {
        // The double-grant watch cannot pair a call before the hole with one after it either.
        if self.cluster.grants.has_calls() {
            Rc::make_mut(&mut self.cluster_mut().grants).forget_calls();
        }
        let feed = self.feed_mut();
        feed.resyncs += 1;
        feed.pending.clear();
        feed.history = History::new(feed.history.syms.clone());
        feed.frozen = None;
        feed.last_seq = None;
        if self.view.selected.is_some() {
            self.view_mut().selected = None;
        }
    }

    /// What the page derived from the old server's history and that would be wrong about the
    /// new one's: its double grants (the new cluster has every lock free), its verdicts (the
    /// snapshot that follows brings the new server's) and the lecture's finished run (its
    /// story, notes and double grant are about events no longer on the page).
    fn forget_old_server(&mut self) {
        if *self.cluster.grants != GrantWatch::default() {
            self.cluster_mut().grants = Rc::default();
        }
        if self.cluster.board.overall != crate::verdict::Overall::None {
            self.cluster_mut().board = Rc::default();
        }
        if self.view.lecture.is_some() {
            // A run still playing was stopped when the connection to the old server was lost.
            self.view_mut().lecture = None;
        }
    }

    /// Starts the failover timeline of an empty history from the servers' current state.
    fn seed_timeline(&mut self, since_us: u64) {
        if self.cluster.model.servers().next().is_none() {
            return;
        }
        let feed = Rc::make_mut(&mut self.feed);
        for n in self.cluster.model.servers() {
            let state = if n.alive {
                Serving::from_role(n.role, n.serving_alone)
            } else {
                Serving::Dead
            };
            feed.history.seed_server(&n.id, state, since_us);
        }
    }

    fn toast(&mut self, level: Level, title: &str, text: &str) {
        // The same message again while it is still on screen says nothing new.
        if self
            .toasts
            .list
            .iter()
            .any(|t| t.level == level && t.title == title && t.text == text)
        {
            return;
        }
        let toasts = Rc::make_mut(&mut self.toasts);
        let id = toasts.next_id;
        toasts.next_id += 1;
        toasts.list.push(Toast {
            id,
            level,
            title: title.to_owned(),
            text: text.to_owned(),
        });
        if toasts.list.len() > TOASTS_CAP {
            toasts.list.remove(0);
        }
    }

    /// Says that the page fell behind and resynchronised. While the last such toast is still on
    /// screen it is replaced by one with the sums (and its few seconds start again): a page
    /// that cannot keep up resyncs again and again, and one toast each stacked four high over
    /// the servers' buttons (found by a review).
    fn toast_fell_behind(&mut self, missed: u64) {
        const TITLE: &str = "Fell behind";
        let shown = self.toasts.list.iter().position(|t| t.title == TITLE);
        let toasts = Rc::make_mut(&mut self.toasts);
        let (events, times) = match shown {
            Some(i) => {
                toasts.list.remove(i);
                (toasts.behind.0 + missed, toasts.behind.1 + 1)
            }
            None => (missed, 1),
        };
        toasts.behind = (events, times);
        let again = if times > 1 {
            format!(" {times} times")
        } else {
            String::new()
        };
        let text = format!(
            "{} events were not received live; the page resynchronised from a snapshot{again}",
            format::count(events)
        );
        self.toast(Level::Warn, TITLE, &text);
    }

    /// Client card `id`, made if missing (changes the cluster slice).
    fn client(&mut self, id: u32) -> &mut ClientView {
        self.cluster_mut()
            .clients
            .entry(id)
            .or_insert_with(|| ClientView::new(id))
    }

    fn on_sent(&mut self, cmd: &Command) {
        // A healed network has no partition to edit: the draft starts over.
        if matches!(cmd, Command::Heal { .. } | Command::Reset { .. })
            && !self.view.draft.is_empty()
        {
            self.view_mut().draft.clear();
        }
        if let Command::CrashBeforeReply { tag: Some(tag), .. } = cmd {
            self.demo_update(tag, |demo| demo.on_sent(0, tag));
        }
        if let Command::Lock { client, tag, .. } | Command::Unlock { client, tag, .. } = cmd {
            let tag = tag.clone().unwrap_or_default();
            self.demo_update(&tag, |demo| demo.on_sent(*client, &tag));
            self.client(*client).sending = Some(tag);
        }
    }

    fn on_server(&mut self, msg: ServerMsg, local_ms: f64) {
        match msg {
            ServerMsg::Hello(h) => {
                if self.session.run.is_some_and(|run| run != h.run) {
                    // A new server process: its sequence numbers and clock start over.
                    self.start_new_history();
                    self.clear_client_histories();
                    self.forget_old_server();
                    self.forget_load();
                    self.session_mut().clock_offset_us = None;
                    self.toast(
                        Level::Info,
                        "New server",
                        "the server restarted; the page starts a new history",
                    );
                }
                let s = &self.session;
                let same = s.run == Some(h.run)
                    && s.server_version.as_ref() == Some(&h.server)
                    && s.limits.as_ref() == Some(&h.limits)
                    && s.variant == h.variant;
                if !same {
                    let s = self.session_mut();
                    s.run = Some(h.run);
                    s.server_version = Some(h.server);
                    s.limits = Some(h.limits);
                    s.variant = h.variant;
                }
            }
            ServerMsg::Snapshot(s) => self.on_snapshot(*s, local_ms),
            ServerMsg::Events { events } => {
                let Some(last) = events.last() else {
                    return;
                };
                self.feed_mut().ingested += events.len() as u64;
                for e in &events {
                    if self.feed.last_seq.is_some_and(|last| e.seq <= last) {
                        continue;
                    }
                    self.apply_event(e, true, local_ms);
                }
                let off = last.t_us as f64 - local_ms * 1000.0;
                // How far behind the server's clock the newest event is, as best the page
                // knows (the offset is the smallest delay seen).
                let lag_us = self.session.clock_offset_us.map_or(0.0, |o| o - off);
                self.load_lag(lag_us, local_ms);
                let offset = self.session.clock_offset_us.map_or(off, |o| o.max(off));
                if self.session.clock_offset_us != Some(offset) {
                    self.session_mut().clock_offset_us = Some(offset);
                }
            }
            ServerMsg::Ack {
                command,
                detail,
                tag,
            } => {
                if let Some(t) = tag.as_deref() {
                    self.load_answered(t, true);
                }
                if command == "compact" && tag.is_none() && !self.session.compact {
                    self.session_mut().compact = true;
                }
                // A lecture's preset tells its own story in its panel.
                let lecture = tag.as_deref().is_some_and(|t| self.lecture_owns(t));
                // Process faults are told (what was killed, stopped, started); the network's
                // show on the diagram as `faults_changed`.
                if !lecture
                    && matches!(
                        command.as_str(),
                        "crash"
                            | "crash_before_reply"
                            | "reset"
                            | "pause"
                            | "resume"
                            | "restart"
                            | "crash_at"
                            | "crash_client"
                    )
                {
                    self.toast(Level::Info, &command.replace('_', " "), &detail);
                }
            }
            ServerMsg::Error { code, message, tag } => {
                if let Some(tag) = tag.as_deref() {
                    self.load_answered(tag, false);
                    self.clear_sending(|sending| sending == tag);
                    self.demo_update(tag, |demo| demo.on_answer(tag, local_ms));
                    self.finish_demo_if_done();
                    self.lecture_refused(tag, code, &message);
                }
                self.toast(Level::Error, format::error_code(code), &message);
            }
        }
    }

    fn on_snapshot(&mut self, s: Snapshot, local_ms: f64) {
        if !s.events.is_empty() {
            self.feed_mut().ingested += s.events.len() as u64;
        }
        let generation_before = self.cluster.call_generation;
        // The snapshot is the cluster after its last event: its events are not folded again.
        // A clerk it no longer lists (a reset we did not see live) waits for nothing.
        let cluster = self.cluster_mut();
        cluster.model = Rc::new(Cluster::from_snapshot(&s));
        // The snapshot's events that will be applied below may start before a reset it has
        // already folded: their calls belong to the generations before it.
        let resets = s
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ClusterReset { .. }))
            .count() as u64;
        cluster.call_generation = s.generation.saturating_sub(resets);
        cluster.board = Rc::new(crate::verdict::Board::of(cluster.model.verdicts()));
        for info in s.clients.iter().filter(|c| !shared::is_load_client(c.id)) {
            cluster
                .clients
                .entry(info.id)
                .or_insert_with(|| ClientView::new(info.id));
        }
        // Whatever was on its way was answered before the snapshot, or will be after it.
        for c in cluster.clients.values_mut() {
            c.sending = None;
        }
        // The smallest delay seen stays the estimate (a resync's snapshot waited behind the
        // backlog that caused it: taken alone, it would make a page still behind look on
        // time); a new server process clears it (its clock starts over).
        let off = s.now_us as f64 - local_ms * 1000.0;
        let offset = Some(self.session.clock_offset_us.map_or(off, |o| o.max(off)));
        if self.session.clock_offset_us != offset {
            self.session_mut().clock_offset_us = offset;
        }
        if s.missed > 0 {
            self.feed_mut().missed += s.missed;
            self.toast_fell_behind(s.missed);
        }
        self.set_load(s.load);
        // What the charts draw from the events this page did not get (a crash while it had
        // fallen behind, the load's reports before it opened).
        for e in &s.marks {
            if self.feed.last_seq.is_none_or(|last| e.seq > last) {
                self.load_mark(e);
            }
        }
        self.release(local_ms, true);
        let snap_last = s.next_seq.checked_sub(1);
        let gap = match (self.feed.last_seq, s.events.first()) {
            (Some(last), Some(first)) => first.seq.saturating_sub(last + 1),
            (Some(last), None) => s.next_seq.saturating_sub(last + 1),
            (None, _) => 0,
        };
        if gap > 0 {
            // Events between what we hold and the snapshot's oldest are gone for good: the
            // diagram cannot bridge them, so it restarts from the snapshot.
            self.start_new_history();
            if self.cluster.call_generation != generation_before
                && *self.cluster.grants != GrantWatch::default()
            {
                // The cluster was reset in the hole: its double grants are of a cluster gone.
                self.cluster_mut().grants = Rc::default();
            }
            if s.missed == 0 {
                self.feed_mut().missed += gap;
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
        if self.feed.history.is_empty() {
            // The servers' starts may be older than the events we got: the timeline starts
            // from what the snapshot says they are doing.
            self.seed_timeline(s.events.first().map_or(s.now_us, |e| e.t_us));
        }
        let keep = crate::load::sampled_events(&s.events, self.unsampled_snapshot_sample(&s));
        for (e, keep) in s.events.iter().zip(keep) {
            if !keep || self.feed.last_seq.is_some_and(|last| e.seq <= last) {
                continue;
            }
            self.apply_event(e, false, local_ms);
        }
        let last_seq = self.feed.last_seq.max(snap_last);
        if self.feed.last_seq != last_seq {
            self.feed_mut().last_seq = last_seq;
        }
        self.finish_demo_if_done();
    }

    /// Applies one new event: to the history always; to the cluster only when `live` (a
    /// snapshot's cluster already includes its events).
    fn apply_event(&mut self, e: &Event, live: bool, local_ms: f64) {
        let feed = self.feed_mut();
        feed.last_seq = Some(e.seq);
        feed.pending.push((e.clone(), local_ms));
        let syms = feed.history.syms.clone();
        self.load_observe(e);
        self.fold_cluster(e, live, local_ms, &syms);
    }

    /// Folds one event into the cluster slice (the model when `live`, the client cards, the
    /// double-grant watch) and the lecture that plays; names are interned in `syms`. The
    /// feed is the caller's (a replay places events on its own).
    fn fold_cluster(&mut self, e: &Event, live: bool, local_ms: f64, syms: &Symbols) {
        self.lecture_observe(e);
        if live {
            Rc::make_mut(&mut self.cluster_mut().model).apply(e);
            if matches!(
                e.kind,
                EventKind::Verdict(_) | EventKind::ClusterReset { .. }
            ) {
                self.refold_verdicts();
            }
        }
        let name = |s: &str| syms.name(syms.intern(s));
        if e.node.client_id().is_some_and(shared::is_load_client) {
            // The load's clerks get no card each: their calls are counted in the load's card.
            return;
        }
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
                    generation: self.cluster.call_generation,
                };
                self.call_ended(*client, record, tag.as_deref(), live, local_ms);
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
                    generation: self.cluster.call_generation,
                };
                self.call_ended(*client, record, tag.as_deref(), live, local_ms);
            }
            // The clerks are gone with the old cluster (the model drops them); the cards, with
            // their lock names and finished calls, are the page's and stay.
            EventKind::ClusterReset { generation } => {
                if self.cluster.call_generation != *generation {
                    self.cluster_mut().call_generation = *generation;
                }
                if live {
                    self.clear_sending(|_| true);
                }
            }
            _ => {}
        }
    }

    /// A call of clerk `client` ended (answered or given up): its card's history gets it, and
    /// the demo hears of it.
    fn call_ended(
        &mut self,
        client: u32,
        record: CallRecord,
        tag: Option<&str>,
        live: bool,
        local_ms: f64,
    ) {
        let c = self.client(client);
        if live {
            c.sending = None;
        }
        push_history(c, record);
        self.demo_answer(tag, local_ms);
    }

    fn demo_answer(&mut self, tag: Option<&str>, local_ms: f64) {
        if let Some(tag) = tag {
            self.demo_update(tag, |demo| demo.on_answer(tag, local_ms));
        }
        self.finish_demo_if_done();
    }

    fn finish_demo_if_done(&mut self) {
        if self.view.demo.as_ref().is_some_and(DemoRun::finished) {
            self.view_mut().demo = None;
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
