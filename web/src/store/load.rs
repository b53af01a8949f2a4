//! The load generator's slice ([`LoadState`]) and its hooks in the reducer: the settings the
//! server runs (`load_changed`, the snapshot's `load`), the panel's draft, the charts' rings
//! (`load_stats` points and markers), and the sampling the page asks of the gateway.
//!
//! The slice changes only on a load report, a marker event (crash, fault plan, role, reset), a
//! panel action or a `detail` sent: about four times a second under load, never once per batch,
//! so the charts and the load panel are not rendered for every batch of events.

use std::rc::Rc;

use shared::{Command, Event, EventKind, LoadSettings};

use super::State;
use crate::load::{self, Charts};

/// See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadState {
    /// What the server runs (None: idle, as far as the page knows).
    pub settings: Option<LoadSettings>,
    /// The panel's settings: what *Start* sends (and what a change sends while it runs).
    pub draft: LoadSettings,
    /// The panel is open.
    pub open: bool,
    /// The charts' data (shared: a panel action does not copy the rings).
    pub charts: Rc<Charts>,
    /// The `load_sample` the page wants the gateway to apply (1: every event).
    pub want_sample: u32,
    /// The one it asked for on this connection (a new connection starts at 1).
    pub sent_sample: u32,
    /// The one in force: the gateway acknowledged it (what the aggregate note says).
    pub applied_sample: u32,
    /// `detail` commands sent and not answered yet: their tags and samples, oldest first.
    pub pending_detail: Vec<(String, u32)>,
    /// The coarsest sample this page's own pace calls for (1: it keeps up): raised while its
    /// newest events fall behind the server's clock, lowered again once it has kept up a while.
    pub lag_floor: u32,
    /// When `lag_floor` last changed or came in force (page clock, ms), and the lag then (µs).
    pub lag_step_at_ms: f64,
    pub lag_step_us: f64,
    /// The gateway acknowledged a sample at least as coarse as `lag_floor`.
    pub lag_in_force: bool,
}

impl Default for LoadState {
    fn default() -> Self {
        LoadState {
            settings: None,
            draft: load::default_settings(),
            open: false,
            charts: Rc::default(),
            want_sample: 1,
            sent_sample: 1,
            applied_sample: 1,
            pending_detail: Vec::new(),
            lag_floor: 1,
            lag_step_at_ms: 0.0,
            lag_step_us: 0.0,
            lag_in_force: false,
        }
    }
}

impl LoadState {
    /// The load runs (as the server last said).
    pub fn running(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.clients > 0)
    }

    /// The sampling the gateway applies to this page now: the last `load_sample` it
    /// acknowledged on this connection (1 until then; `load_stats`' own `sample_every` is the
    /// server's advice). Not the one asked: a page that lags reads, before the ack, events drawn
    /// under the sample before.
    pub fn sample_every(&self) -> u32 {
        self.applied_sample.max(1)
    }

    /// The sample is coarser than the load alone asks for: this page reads slower than the
    /// events come.
    pub fn catching_up(&self) -> bool {
        let own = self
            .charts
            .points
            .back()
            .map_or(1, |p| load::choose_sample(1, p.ops_per_s));
        self.lag_floor > own && self.applied_sample >= self.lag_floor
    }

    /// Load clerks the diagram's grouped lane stands for.
    pub fn clerks(&self) -> u32 {
        self.settings.as_ref().map_or(0, |s| s.clients)
    }
}

impl State {
    fn load_mut(&mut self) -> &mut LoadState {
        Rc::make_mut(&mut self.load)
    }

    /// One new event (live or a snapshot's): a load report or a marker for the charts.
    pub(super) fn load_observe(&mut self, e: &Event) {
        if let EventKind::LoadChanged(l) = &e.kind {
            return self.set_load(Some(*l));
        }
        self.load_mark(e);
        if let EventKind::LoadStats(s) = &e.kind {
            let load = self.load_mut();
            // A report after the stop (the last window's) asks for nothing.
            if load.running() {
                load.want_sample =
                    load::choose_sample(load.want_sample, s.ops_per_s).max(load.lag_floor);
            }
        }
    }

    /// The sample this page takes of a snapshot's load calls itself (1: all of them), and asks
    /// the gateway for from then on. Only a snapshot the gateway sent whole needs it: the first
    /// on a connection, sent before the page could ask for anything, or a resync's that came
    /// before the gateway acknowledged the page's `detail` (one after the ack comes sampled as
    /// asked, and is not sampled twice). Chosen from the load's newest report when it is
    /// recent, as a live report would choose.
    pub(super) fn unsampled_snapshot_sample(&mut self, s: &shared::Snapshot) -> u32 {
        if !self.load.running() || self.load.applied_sample > 1 {
            return 1;
        }
        let recent = s
            .marks
            .iter()
            .chain(&s.events)
            .filter(|e| e.t_us + load::LAG_COARSEN_US as u64 >= s.now_us)
            .filter_map(|e| match &e.kind {
                EventKind::LoadStats(l) => Some((e.t_us, l.ops_per_s)),
                _ => None,
            })
            .max_by_key(|(t, _)| *t);
        let load = self.load_mut();
        if let Some((_, ops)) = recent {
            load.want_sample = load::choose_sample(load.want_sample, ops).max(load.lag_floor);
        }
        load.want_sample
    }

    /// A point or a marker on the charts, if the event makes one (the slice is left alone
    /// otherwise). Alone, for a snapshot's marks (see [`shared::Snapshot::marks`]), from before
    /// the events the page holds, it chooses no sample: the load of a minute ago is not the
    /// load now.
    pub(super) fn load_mark(&mut self, e: &Event) {
        match &e.kind {
            EventKind::LoadStats(s) => {
                Rc::make_mut(&mut self.load_mut().charts).push_stats(e.t_us, s);
            }
            _ => {
                if let Some(m) = load::marker_of(e) {
                    Rc::make_mut(&mut self.load_mut().charts).push_marker(m);
                }
            }
        }
    }

    /// What the server runs now (a `load_changed`, a snapshot's `load`).
    pub(super) fn set_load(&mut self, settings: Option<LoadSettings>) {
        let settings = settings.filter(|s| s.clients > 0);
        if self.load.settings == settings {
            return;
        }
        let load = self.load_mut();
        match &settings {
            // Whoever changed it (this page, another, the command line), the panel shows it;
            // a paced load is sampled from its first call, not from its first report (by then
            // a page on a busy machine is already behind).
            Some(s) => {
                load.draft = *s;
                if s.rate > 0 {
                    load.want_sample = load
                        .want_sample
                        .max(load::choose_sample(1, s.rate))
                        .max(load.lag_floor);
                }
            }
            None => {
                load.want_sample = 1;
                load.lag_floor = 1;
            }
        }
        load.settings = settings;
    }

    /// The newest events of a batch were `lag_us` behind the server's clock when the page read
    /// them (its best estimate: the smallest delay seen). A page that cannot keep up with the
    /// sample it asked for asks for a coarser one; the load's own advice (`choose_sample`)
    /// never goes below it. Only while a load runs: other events are never sampled.
    pub(super) fn load_lag(&mut self, lag_us: f64, local_ms: f64) {
        let l = &self.load;
        if !l.running() {
            return;
        }
        if l.lag_floor > 1 && !l.lag_in_force && l.applied_sample >= l.lag_floor {
            // The last step is in force from here on: its effect is measured from now, against
            // the lag now (what came before the ack was sent under the sample before).
            let load = self.load_mut();
            load.lag_in_force = true;
            load.lag_step_at_ms = local_ms;
            load.lag_step_us = lag_us;
            return;
        }
        let l = &self.load;
        let since = local_ms - l.lag_step_at_ms;
        if lag_us >= load::LAG_COARSEN_US {
            // Behind: one step coarser; after a step, only once the gateway applies it, a
            // second has passed, and the lag still grows (a level or shrinking one is the
            // backlog draining).
            let current = l.want_sample.max(l.lag_floor);
            let floor = load::coarser(current);
            let ready = l.lag_floor == 1
                || (l.lag_in_force && since >= load::LAG_SETTLE_MS && lag_us > l.lag_step_us);
            if floor == current || !ready {
                return;
            }
            let load = self.load_mut();
            load.lag_floor = floor;
            load.want_sample = floor;
            load.lag_in_force = false;
            load.lag_step_at_ms = local_ms;
            load.lag_step_us = lag_us;
        } else if l.lag_floor > 1 && lag_us >= load::LAG_OK_US {
            // Not behind enough for a step, not caught up either: the clock to step back
            // finer starts again (at most once a second: the slice is not renewed per batch).
            if since >= load::LAG_SETTLE_MS {
                self.load_mut().lag_step_at_ms = local_ms;
            }
        } else if l.lag_floor > 1 && since >= load::LAG_RECOVER_MS {
            // Kept up a while: one step finer, and the load's own advice afresh (its
            // hysteresis would keep the coarse sample the lag forced).
            let ops = l.charts.points.back().map_or(0, |p| p.ops_per_s);
            let load = self.load_mut();
            load.lag_floor = load::finer(load.lag_floor);
            load.want_sample = load::choose_sample(1, ops).max(load.lag_floor);
            load.lag_step_at_ms = local_ms;
            load.lag_step_us = 0.0;
        }
    }

    pub(super) fn load_sent(&mut self, cmd: &Command) {
        if let Command::Detail { load_sample, tag } = cmd {
            let load = self.load_mut();
            load.sent_sample = *load_sample;
            if let Some(tag) = tag {
                load.pending_detail.push((tag.clone(), *load_sample));
            }
        }
    }

    /// The answer to a command tagged `tag`: a `detail` acknowledged (`ok`) is in force from the
    /// events that follow; a refused one changes nothing.
    pub(super) fn load_answered(&mut self, tag: &str, ok: bool) {
        let Some(i) = self.load.pending_detail.iter().position(|(t, _)| t == tag) else {
            return;
        };
        let load = self.load_mut();
        let (_, sample) = load.pending_detail.remove(i);
        if ok {
            load.applied_sample = sample;
        }
    }

    /// A new connection: the gateway draws every event for it until the page asks again.
    pub(super) fn load_reconnected(&mut self) {
        if self.load.sent_sample != 1
            || self.load.applied_sample != 1
            || !self.load.pending_detail.is_empty()
        {
            let load = self.load_mut();
            load.sent_sample = 1;
            load.applied_sample = 1;
            load.pending_detail.clear();
        }
    }

    pub(super) fn load_draft(&mut self, draft: LoadSettings) {
        if self.load.draft != draft {
            self.load_mut().draft = draft;
        }
    }

    pub(super) fn toggle_load_panel(&mut self) {
        let load = self.load_mut();
        load.open = !load.open;
    }

    /// A new server process: its clock starts over, the old points would be drawn in its future.
    pub(super) fn forget_load(&mut self) {
        if *self.load != LoadState::default() {
            let open = self.load.open;
            let draft = self.load.draft;
            self.load = Rc::new(LoadState {
                open,
                draft,
                ..LoadState::default()
            });
        }
    }
}
