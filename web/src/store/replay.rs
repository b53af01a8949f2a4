//! Replay: a saved run (`model::runfile`, from `GET /run.jsonl` or `pbscope check --save`)
//! shown without a server, at a time the person chooses.
//!
//! Opening a file reads it whole with [`parse_run`]; a file it refuses changes nothing but a
//! toast. An accepted file puts the live page aside (its session, cluster, feed and view, kept
//! as they were) and the page shows the run instead: the same cluster slice (cards, verdicts,
//! double-grant watch) and feed slice (diagram, timeline) the live page uses, so the components
//! draw a replay exactly as they draw the live run. *Back to live* puts the live slices back.
//!
//! **The state at a time `T`.** The cluster is the fold, in `seq` order (the bus's order), of
//! the longest run of events from the start whose times are all `<= T`; the diagram places
//! every event with `t_us <= T` in `(t_us, seq)` order (the order the live page's reorder hold
//! aims at). Both are prefixes of a fixed order, so the state at `T` does not depend on how the
//! person got there. Scrubbing stays fast on 100,000 events: opening folds the run once and
//! keeps a checkpoint (the cluster slice, the diagram's history: shared, persistent structures)
//! every [`CHECKPOINT_EVERY`] events; a seek folds forward from where the page is when that is
//! near, else from the nearest checkpoint before `T`, so it never folds more than
//! [`CHECKPOINT_EVERY`] events.

use std::fmt;
use std::rc::Rc;

use model::runfile::parse_run;
use shared::{Event, RunHeader};

use super::slices::{ClusterState, Conn, Feed, Level, Session, ViewState};
use super::State;
use crate::format;
use crate::history::History;
use crate::symbols::Symbols;

/// Events between two checkpoints: the most a seek ever folds.
pub const CHECKPOINT_EVERY: usize = 2_000;
/// Files larger than this are refused before they are read (a run of 100,000 events is about
/// 25 MB).
pub const MAX_RUN_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// Playback speeds offered (× the run's own pace).
pub const SPEEDS: [f64; 5] = [0.25, 1.0, 4.0, 16.0, 64.0];

/// The live page, put aside while a file is replayed.
struct Live {
    session: Rc<Session>,
    cluster: Rc<ClusterState>,
    feed: Rc<Feed>,
    view: Rc<ViewState>,
}

/// A run read from a file, with what makes seeking in it cheap. Never changes once opened.
pub struct ReplayData {
    /// The file's name.
    pub name: String,
    pub header: RunHeader,
    /// In `seq` order.
    pub events: Vec<Event>,
    /// Indices into `events` in `(t_us, seq)` order: the diagram's order.
    order: Vec<u32>,
    /// `t_us` of `events[order[i]]`.
    order_t: Vec<u64>,
    /// The largest `t_us` among `events[..=i]`.
    reach_t: Vec<u64>,
    /// The cluster slice after `events[..i * CHECKPOINT_EVERY]`.
    clusters: Vec<Rc<ClusterState>>,
    /// The diagram's history after `order[..i * CHECKPOINT_EVERY]`.
    histories: Vec<History>,
    syms: Symbols,
    live: Live,
}

impl fmt::Debug for ReplayData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayData")
            .field("name", &self.name)
            .field("header", &self.header)
            .field("events", &self.events.len())
            .field("checkpoints", &self.clusters.len())
            .finish()
    }
}

/// The run being replayed and where in it the page is.
#[derive(Debug, Clone)]
pub struct Replay {
    pub data: Rc<ReplayData>,
    /// The time shown (the run's clock, µs).
    pub at_us: u64,
    /// Events folded into the cluster (a prefix of `events`).
    folded: usize,
    /// Events placed on the diagram (a prefix of the `(t_us, seq)` order).
    placed: usize,
    pub playing: bool,
    /// × the run's own pace.
    pub speed: f64,
}

impl Replay {
    /// The first event's time (0 for a run without events).
    pub fn start_us(&self) -> u64 {
        self.data.order_t.first().copied().unwrap_or(0)
    }

    /// The last event's time.
    pub fn end_us(&self) -> u64 {
        self.data.order_t.last().copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.data.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.events.is_empty()
    }

    /// Events on the diagram at the time shown.
    pub fn placed(&self) -> usize {
        self.placed
    }

    /// Events folded into the cards at the time shown.
    #[cfg(test)]
    pub fn folded(&self) -> usize {
        self.folded
    }

    /// Where the scrubber is, on the run's own clock (the diagram's axis and the failover
    /// timeline read the same `t_us`, formatted alike): `3:27.388 of 3:29.001 · 215 of 265
    /// events`.
    pub fn position_text(&self) -> String {
        let of = match self.len() {
            1 => "1 event".to_owned(),
            n => format!("{} events", format::count(n as u64)),
        };
        format!(
            "{} of {} · {} of {of}",
            format::clock(self.at_us),
            format::clock(self.end_us()),
            format::count(self.placed as u64),
        )
    }

    /// Stepping back one event: the latest event time strictly earlier than the newest event
    /// shown, so every event at that newest time goes (several share one time: a reset's
    /// `crashed` events do). The start when nothing is earlier.
    pub fn prev_event_us(&self) -> u64 {
        let Some(&newest) = self
            .placed
            .checked_sub(1)
            .and_then(|i| self.data.order_t.get(i))
        else {
            return self.start_us();
        };
        let earlier = self.data.order_t[..self.placed].partition_point(|&t| t < newest);
        earlier
            .checked_sub(1)
            .map_or_else(|| self.start_us(), |i| self.data.order_t[i])
    }

    /// Stepping forward one event: the earliest event time strictly later than the time shown
    /// (every event at that time comes in at once).
    pub fn next_event_us(&self) -> u64 {
        self.data
            .order_t
            .get(self.placed)
            .copied()
            .unwrap_or_else(|| self.end_us())
    }
}

/// The replay slice: the run being replayed, if any (the live page otherwise).
#[derive(Debug, Clone, Default)]
pub struct ReplayState {
    pub run: Option<Replay>,
}

/// Folds `events` into the cluster slice `base`, as the live page folds live events.
fn fold_cluster(base: Rc<ClusterState>, events: &[Event], syms: &Symbols) -> Rc<ClusterState> {
    if events.is_empty() {
        return base;
    }
    let mut scratch = State {
        cluster: base,
        ..State::default()
    };
    for e in events {
        scratch.fold_cluster(e, true, 0.0, syms);
    }
    scratch.cluster
}

/// Places `events[i]` for each `i` of `order` on `history`, in that order.
fn place(mut history: History, data_events: &[Event], order: &[u32]) -> History {
    for &i in order {
        history.push(&data_events[i as usize]);
    }
    history
}

/// A fresh cluster slice for a replay: no cards but c1, nothing typed.
fn empty_cluster() -> Rc<ClusterState> {
    Rc::new(ClusterState::default())
}

impl State {
    /// Whether a file is shown instead of the live run.
    pub fn replaying(&self) -> bool {
        self.replay.run.is_some()
    }

    /// Reads `text` (the file `name`) and, when it is a whole run, shows it at its end.
    /// Otherwise the page stays as it was and a toast says why.
    pub(super) fn open_run(&mut self, name: &str, text: &str) {
        let run = match parse_run(text) {
            Ok(run) => run,
            Err(e) => {
                self.toast(Level::Error, &format!("Not opened: {name}"), &e.to_string());
                return;
            }
        };
        // What plays on the live cluster stops: it would go on sending behind the replay.
        self.stop_demo("a run file was opened");
        self.stop_lecture("a run file was opened");
        let live = match self.replay.run.as_ref() {
            // Another file while one is shown: the live page stays put aside as it was.
            Some(old) => {
                let l = &old.data.live;
                Live {
                    session: l.session.clone(),
                    cluster: l.cluster.clone(),
                    feed: l.feed.clone(),
                    view: l.view.clone(),
                }
            }
            None => Live {
                session: self.session.clone(),
                cluster: self.cluster.clone(),
                feed: self.feed.clone(),
                view: self.view.clone(),
            },
        };
        let data = build(name, run.header, run.events, live);
        let mut replay = Replay {
            data: Rc::new(data),
            at_us: 0,
            folded: 0,
            placed: 0,
            playing: false,
            speed: 1.0,
        };
        replay.at_us = replay.end_us();
        let n = replay.len();
        let cluster = fold_cluster(
            replay
                .data
                .clusters
                .last()
                .cloned()
                .unwrap_or_else(empty_cluster),
            &replay.data.events[(replay.data.clusters.len() - 1) * CHECKPOINT_EVERY..],
            &replay.data.syms,
        );
        let history = place(
            replay
                .data
                .histories
                .last()
                .cloned()
                .unwrap_or_else(|| History::new(replay.data.syms.clone())),
            &replay.data.events,
            &replay.data.order[(replay.data.histories.len() - 1) * CHECKPOINT_EVERY..],
        );
        replay.folded = n;
        replay.placed = n;
        self.cluster = cluster;
        self.feed = Rc::new(feed_of(history));
        self.session = Rc::new(Session {
            conn: Conn::Replay,
            server_version: Some(replay.data.header.server.clone()),
            run: Some(replay.data.header.run),
            limits: None,
            clock_offset_us: None,
            variant: replay.data.header.variant.clone(),
            compact: false,
        });
        self.view = Rc::new(ViewState {
            large_text: self.view.large_text,
            ..ViewState::default()
        });
        Rc::make_mut(&mut self.replay).run = Some(replay);
    }

    /// Shows the run at time `t_us` (clamped to the run).
    pub(super) fn replay_seek(&mut self, t_us: u64) {
        let Some(r) = self.replay.run.as_ref() else {
            return;
        };
        let t = t_us.clamp(r.start_us(), r.end_us());
        let data = r.data.clone();
        let k = data.reach_t.partition_point(|&x| x <= t);
        let j = data.order_t.partition_point(|&x| x <= t);
        let (folded, placed) = (r.folded, r.placed);
        if k != folded {
            let (base, from) = if k >= folded && k - folded <= CHECKPOINT_EVERY {
                (self.cluster.clone(), folded)
            } else {
                let cp = k / CHECKPOINT_EVERY;
                (data.clusters[cp].clone(), cp * CHECKPOINT_EVERY)
            };
            let selected = self.cluster.selected_client;
            let lock_names = self.cluster.lock_names.clone();
            self.cluster = fold_cluster(base, &data.events[from..k], &data.syms);
            // What the person chose on the cards is theirs, not the run's.
            if self.cluster.selected_client != selected || self.cluster.lock_names != lock_names {
                let c = self.cluster_mut();
                c.selected_client = selected;
                c.lock_names = lock_names;
            }
        }
        if j != placed {
            let (base, from) = if j >= placed && j - placed <= CHECKPOINT_EVERY {
                (self.feed.history.clone(), placed)
            } else {
                let cp = j / CHECKPOINT_EVERY;
                (data.histories[cp].clone(), cp * CHECKPOINT_EVERY)
            };
            self.feed = Rc::new(feed_of(place(base, &data.events, &data.order[from..j])));
            let stale = match self.view.selected {
                Some(super::Selection::Msg(i)) => self.feed.history.msg(i).is_none(),
                Some(super::Selection::Event(i)) => self.feed.history.event(i).is_none(),
                None => false,
            };
            if stale {
                self.view_mut().selected = None;
            }
        }
        if folded != k || placed != j || self.replay.run.as_ref().map(|r| r.at_us) != Some(t) {
            if let Some(r) = Rc::make_mut(&mut self.replay).run.as_mut() {
                r.folded = k;
                r.placed = j;
                r.at_us = t;
                if t >= r.end_us() {
                    r.playing = false;
                }
            }
        }
    }

    /// `ms` of the page's clock passed while playing.
    pub(super) fn replay_advance(&mut self, ms: f64) {
        let Some(r) = self.replay.run.as_ref().filter(|r| r.playing) else {
            return;
        };
        let step = (ms.max(0.0) * 1000.0 * r.speed).round() as u64;
        let t = r.at_us.saturating_add(step.max(1));
        self.replay_seek(t);
    }

    pub(super) fn replay_play(&mut self, on: bool) {
        let Some(r) = self.replay.run.as_ref() else {
            return;
        };
        if r.playing == on {
            return;
        }
        // Playing from the end starts over.
        let restart = on && r.at_us >= r.end_us();
        let start = r.start_us();
        if restart {
            self.replay_seek(start);
        }
        if let Some(r) = Rc::make_mut(&mut self.replay).run.as_mut() {
            r.playing = on;
        }
        if on && !self.view.follow {
            self.view_mut().follow = true;
        }
    }

    pub(super) fn replay_speed(&mut self, speed: f64) {
        if !(speed.is_finite() && speed > 0.0) {
            return;
        }
        if self.replay.run.as_ref().is_some_and(|r| r.speed != speed) {
            if let Some(r) = Rc::make_mut(&mut self.replay).run.as_mut() {
                r.speed = speed;
            }
        }
    }

    /// Back to the live page, as it was when the file was opened (the connection then brings
    /// it up to date).
    pub(super) fn leave_replay(&mut self) {
        let Some(r) = Rc::make_mut(&mut self.replay).run.take() else {
            return;
        };
        let large_text = self.view.large_text;
        let live = &r.data.live;
        self.session = live.session.clone();
        self.cluster = live.cluster.clone();
        self.feed = live.feed.clone();
        self.view = live.view.clone();
        if self.view.large_text != large_text {
            self.view_mut().large_text = large_text;
        }
    }

    /// What the person asked of the live cluster while a file is shown: nothing is sent.
    pub(super) fn replay_refuses(&mut self, what: &str) {
        self.toast(
            Level::Info,
            "Replaying a file",
            &format!(
                "{what}: this is a saved run, not live; go back to live to act on the cluster"
            ),
        );
    }
}

fn feed_of(history: History) -> Feed {
    Feed {
        last_seq: history.last_seq(),
        history,
        reorder_hold_ms: 0.0,
        ..Feed::default()
    }
}

/// Folds the whole run once, keeping the checkpoints.
fn build(name: &str, header: RunHeader, events: Vec<Event>, live: Live) -> ReplayData {
    let order = super::stable_order(events.iter().map(|e| (e.t_us, e.seq)));
    let order_t: Vec<u64> = order.iter().map(|&i| events[i as usize].t_us).collect();
    let mut reach = 0;
    let reach_t: Vec<u64> = events
        .iter()
        .map(|e| {
            reach = reach.max(e.t_us);
            reach
        })
        .collect();
    let syms = Symbols::default();
    let mut clusters = vec![empty_cluster()];
    let mut histories = vec![History::new(syms.clone())];
    let mut at = CHECKPOINT_EVERY;
    while at <= events.len() {
        let from = at - CHECKPOINT_EVERY;
        let c = fold_cluster(
            clusters.last().cloned().expect("one"),
            &events[from..at],
            &syms,
        );
        clusters.push(c);
        let h = place(
            histories.last().cloned().expect("one"),
            &events,
            &order[from..at],
        );
        histories.push(h);
        at += CHECKPOINT_EVERY;
    }
    ReplayData {
        name: name.to_owned(),
        header,
        events,
        order,
        order_t,
        reach_t,
        clusters,
        histories,
        syms,
        live,
    }
}

#[cfg(test)]
mod tests;
