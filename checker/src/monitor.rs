//! The live monitor: folds wire events into one history per lock and checks each incrementally.

use std::collections::{BTreeMap, HashSet};

use shared::{Event, EventKind, LockVerdict, NodeId, Op, RequestId, VerdictStatus};

use crate::context::{secs, Context, What};
use crate::explain;
use crate::frontier::{reduce, Config, Ev, Frontier, FxMap, Stop, MAX_IN_FLIGHT};

/// How much search the checker may spend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Budget {
    /// Search steps one `check()` may spend on one search of one lock (the search run when a
    /// call is answered; its work grows with the calls in flight at once, not with the length
    /// of the history). A search that needs more gives that lock the verdict `unknown` ("too
    /// large to decide within budget"), never `ok`.
    pub max_steps: u64,
    /// How much of each lock's history is kept, back from the latest event seen: older calls
    /// are let go once they are finished and nothing still in flight began before them, so a
    /// long load checks in bounded memory. An event that arrives later than this (on the
    /// run's clock) is still taken into account, more loosely: the lock's verdict is then
    /// `unknown` (see docs/checker.md).
    pub keep_us: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_steps: 1_000_000,
            keep_us: 3_000_000,
        }
    }
}

/// Most configurations one lock may carry from one point of its history to the next.
pub const FRONTIER_CAP: usize = 100_000;

/// A violation is final (late events no longer revisit it) once the log's clock is this far past
/// the answer that showed it. Events of different processes reach the bus a little out of time
/// order; an invocation that arrives late may still explain an answer.
pub const SETTLE_US: u64 = 1_000_000;

/// A lock never without calls in flight has no quiet point to cut its history at: the whole
/// frontier is saved this often (on the run's clock) so that it can be cut there.
const SNAP_US: u64 = 500_000;

/// History is let go in steps of at least this many events, and only when at least as many are
/// let go as are kept: the copying this takes costs O(1) a call.
const MIN_CUT: usize = if cfg!(test) { 16 } else { 1_024 };

/// Counters of what the monitor has seen and done.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MonitorStats {
    /// Calls recorded (all locks, this generation).
    pub calls: u64,
    /// Calls answered.
    pub answered: u64,
    /// Calls of unknown outcome (`op_failed`).
    pub unknown: u64,
    /// Calls still in progress.
    pub in_flight: u64,
    /// Locks with at least one call.
    pub locks: u64,
    /// Locks whose verdict is a violation.
    pub violations: u64,
    /// Locks whose verdict is unknown because a limit was reached.
    pub undecided: u64,
    /// Search steps spent, all checks together (this generation).
    pub steps: u64,
    /// Answers and give-ups for calls whose invocation was never seen (ignored).
    pub orphans: u64,
    /// Events that arrived after a later one had been checked, making the lock check again
    /// from an earlier point.
    pub rewinds: u64,
    /// The cluster generation (`cluster_reset`) the history belongs to.
    pub generation: u64,
    /// Calls held in memory now (all locks): those of the part of each history still kept.
    pub kept_calls: u64,
    /// Events held in memory now (all locks).
    pub kept_events: u64,
    /// Calls let go: finished, older than [`Budget::keep_us`], and no longer needed to check
    /// what comes next.
    pub forgotten_calls: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum End {
    Pending,
    Answered { ok: bool, t_us: u64, server: NodeId },
    Unknown,
}

#[derive(Clone, Debug)]
pub(crate) struct CallRec {
    pub req: RequestId,
    pub op: Op,
    pub invoke_us: u64,
    pub end: End,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct EvRec {
    pub t_us: u64,
    pub call: usize,
    pub ev: Ev,
}

impl EvRec {
    fn key(&self) -> (u64, u8, usize) {
        (self.t_us, self.ev.rank(), self.call)
    }
}

#[derive(Clone, Debug)]
enum Status {
    Checking,
    Violation {
        t_fail: u64,
        ops: Vec<RequestId>,
        explanation: String,
    },
}

/// After a search gave up: where, why, and the calls in flight while the lock waits for a
/// quiescent point to start again.
#[derive(Clone, Debug)]
struct GaveUp {
    /// The event whose search gave up.
    at: usize,
    why: String,
    /// `Some` while waiting for nothing to be in flight.
    skipping: Option<HashSet<usize>>,
}

/// What the check had reached at one point of a lock's history.
#[derive(Clone, Debug)]
pub(crate) enum Snap {
    /// Nothing in flight: the lock's possible configurations.
    Quiet(Vec<Config>),
    /// Calls in flight: the whole frontier (taken every [`SNAP_US`] while the lock is never
    /// quiet, so that its history can still be cut).
    Busy(Box<Frontier>),
    /// The check is skipping to the next point with nothing in flight, where it starts again
    /// from either state (after a search gave up, or when what came before is no longer
    /// known): the calls in flight here. Taken every [`SNAP_US`] while skipping.
    Skip(HashSet<usize>),
}

/// A point the check can start again from: after `at` events, the last of them at `t_us`.
#[derive(Clone, Debug)]
pub(crate) struct Checkpoint {
    pub at: usize,
    pub t_us: u64,
    pub snap: Snap,
}

impl Checkpoint {
    fn frontier(&self) -> Frontier {
        match &self.snap {
            Snap::Quiet(configs) => Frontier::quiescent(configs.clone(), FRONTIER_CAP),
            Snap::Busy(f) => (**f).clone(),
            // Not used while skipping: the check starts again from either state.
            Snap::Skip(_) => Frontier::initial(FRONTIER_CAP),
        }
    }

    /// Opens the point up to what history before it, no longer kept, might have done, with
    /// `nl` / `nu` more calls that may take effect later or never. At a quiet point: the lock
    /// in either state with them (only adds configurations, so what fails from here is still a
    /// real violation). At a busy one that is not enough (a call that took effect before it
    /// changes what the calls in flight there may have done): the check skips from there to
    /// the next quiet point, and starts again from either state (see `restart`).
    fn widen(&mut self, nl: u32, nu: u32) {
        let configs = match &mut self.snap {
            Snap::Quiet(configs) => configs,
            Snap::Busy(f) => {
                self.snap = Snap::Skip(f.calls_in_flight().collect());
                return;
            }
            Snap::Skip(_) => return,
        };
        let flipped: Vec<Config> = configs
            .iter()
            .map(|c| Config {
                held: !c.held,
                ..*c
            })
            .collect();
        configs.extend(flipped);
        for c in configs.iter_mut() {
            c.nl += nl;
            c.nu += nu;
        }
        reduce(configs);
    }
}

/// How an event went into a lock's history.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Inserted {
    /// After (or among) what was checked so far without changing it.
    InOrder,
    /// Before what was checked: the check goes back to an earlier point.
    Rewound,
    /// An invocation older than the history kept: its call counts as one of unknown outcome.
    TooLate,
}

#[derive(Debug)]
pub(crate) struct LockLog {
    pub name: String,
    pub calls: Vec<CallRec>,
    pub events: Vec<EvRec>,
    processed: usize,
    frontier: Frontier,
    /// Points to start again from, in order: at least one, the first at the start of what is
    /// kept. Quiet ones at every point with nothing in flight, busy ones now and then.
    pub checkpoints: Vec<Checkpoint>,
    status: Status,
    /// Set once a search gave up: the verdict is never `ok` again (until a rewind before it).
    gave_up: Option<GaveUp>,
    /// Why the verdict can no longer be `ok` in this generation, whatever comes (a give-up in
    /// history since let go, an event that arrived after its part of history was let go).
    blind: Option<String>,
    /// The time of the last event let go; `None` while the whole history is kept.
    horizon_us: Option<u64>,
    /// Calls of unknown outcome let go (Lock, Unlock): they may still take effect.
    forgot_unknown: (u32, u32),
    /// Calls let go.
    forgotten: u64,
    /// Calls kept by the last cut.
    kept_after_cut: usize,
    /// Calls answered or given up.
    finished: u64,
    verdict: LockVerdict,
    reported: Option<(VerdictStatus, Vec<RequestId>, String)>,
}

impl LockLog {
    fn new(name: &str) -> Self {
        let frontier = Frontier::initial(FRONTIER_CAP);
        Self {
            name: name.to_owned(),
            calls: Vec::new(),
            events: Vec::new(),
            processed: 0,
            checkpoints: vec![Checkpoint {
                at: 0,
                t_us: 0,
                snap: Snap::Quiet(frontier.configs.clone()),
            }],
            frontier,
            status: Status::Checking,
            gave_up: None,
            blind: None,
            horizon_us: None,
            forgot_unknown: (0, 0),
            forgotten: 0,
            kept_after_cut: 0,
            finished: 0,
            verdict: LockVerdict {
                lock: name.to_owned(),
                status: VerdictStatus::Unknown,
                ops: Vec::new(),
                explanation: "not checked yet".to_owned(),
                calls: 0,
            },
            reported: None,
        }
    }

    /// Whether a lock with calls in flight is due a checkpoint at `t_us` (see [`SNAP_US`]).
    fn snap_due(&self, t_us: u64) -> bool {
        t_us >= self.checkpoints[self.checkpoints.len() - 1]
            .t_us
            .saturating_add(SNAP_US)
    }

    /// Whether a violation was found long enough ago that nothing can change it any more.
    fn is_final(&self, now_us: u64) -> bool {
        matches!(&self.status, Status::Violation { t_fail, .. } if now_us >= t_fail.saturating_add(SETTLE_US))
    }

    /// Inserts an event in time order; rewinds the check if it lands before what was checked.
    fn insert(&mut self, mut e: EvRec, now_us: u64, keep_us: u64) -> Inserted {
        if self.is_final(now_us) {
            // Nothing is checked any more: the event need not be kept.
            return Inserted::InOrder;
        }
        if let Some(h) = self.horizon_us.filter(|&h| e.t_us <= h) {
            let late = format!(
                "{} ({} on the run's clock) was reported after the history before {} had been let go (the checker keeps the last {} of each lock)",
                self.calls[e.call].req,
                secs(e.t_us),
                secs(h),
                secs(keep_us),
            );
            match e.ev {
                Ev::Invoke => {
                    self.too_late(e.call, late);
                    return Inserted::TooLate;
                }
                Ev::Answer(_) => {
                    // Its call was in flight where history was cut: the answer counts from
                    // just after the cut, which only lengthens the call (never a false
                    // violation, maybe a missed one).
                    self.blind.get_or_insert_with(|| {
                        format!("not decided: the answer to {late}; it is counted from there")
                    });
                    e.t_us = h + 1;
                    if let End::Answered { t_us, .. } = &mut self.calls[e.call].end {
                        *t_us = h + 1;
                    }
                }
                // When an unknown call ends does not matter.
                Ev::GiveUp => e.t_us = h + 1,
            }
        }
        let pos = self.events.partition_point(|x| x.key() <= e.key());
        self.events.insert(pos, e);
        // A violation stopped at the event that showed it, which was checked too.
        let checked = self.processed + usize::from(matches!(self.status, Status::Violation { .. }));
        if pos >= checked {
            return Inserted::InOrder;
        }
        self.rewind(pos);
        Inserted::Rewound
    }

    /// An invocation older than the history kept: the call may have taken effect before the
    /// cut, after it, or never, like a call of unknown outcome. The check goes back to the
    /// cut, opened up to either state of the lock with one more unknown call; its answer, if
    /// it comes, is not checked, and the verdict can no longer be `ok`.
    fn too_late(&mut self, call: usize, late: String) {
        let c = &mut self.calls[call];
        c.end = End::Unknown;
        self.finished += 1;
        let (nl, nu) = match c.op {
            Op::Lock => (1, 0),
            Op::Unlock => (0, 1),
        };
        self.forgot_unknown.0 += nl;
        self.forgot_unknown.1 += nu;
        self.blind.get_or_insert_with(|| {
            format!("not decided: the call {late}; it is counted as one that may have taken effect at any time, or never, and the lock is checked on from either state")
        });
        self.checkpoints[0].widen(nl, nu);
        self.rewind(0);
    }

    /// Goes back to the last checkpoint at or before event `pos`.
    fn rewind(&mut self, pos: usize) {
        let keep = self.checkpoints.partition_point(|c| c.at <= pos);
        self.checkpoints.truncate(keep.max(1));
        let cp = &self.checkpoints[self.checkpoints.len() - 1];
        let p = cp.at;
        self.frontier = cp.frontier();
        self.processed = p;
        self.status = Status::Checking;
        match &mut self.gave_up {
            // Back before the search that gave up: it will be tried again.
            Some(g) if g.at >= p => self.gave_up = None,
            Some(g) => {
                if g.at >= pos {
                    g.at += 1;
                }
                g.skipping = None;
            }
            None => {}
        }
        if let Snap::Skip(in_flight) = &self.checkpoints[self.checkpoints.len() - 1].snap {
            let in_flight = in_flight.clone();
            let empty = in_flight.is_empty();
            match &mut self.gave_up {
                Some(g) => g.skipping = Some(in_flight),
                None => {
                    // Only a call reported too late makes a skip checkpoint with no give-up.
                    debug_assert!(self.blind.is_some());
                    self.gave_up = Some(GaveUp {
                        at: p,
                        why: self.blind.clone().unwrap_or_default(),
                        skipping: Some(in_flight),
                    })
                }
            }
            if empty {
                self.restart();
            }
        }
    }

    /// Checks what arrived since the last check. Returns the steps spent.
    fn check(&mut self, budget: Budget, ctx: &Context) -> u64 {
        let mut spent = 0;
        if matches!(self.status, Status::Checking) {
            while self.processed < self.events.len() {
                let e = self.events[self.processed];
                let due = self.snap_due(e.t_us);
                if let Some(in_flight) = self.gave_up.as_mut().and_then(|g| g.skipping.as_mut()) {
                    match e.ev {
                        Ev::Invoke => in_flight.insert(e.call),
                        Ev::Answer(_) | Ev::GiveUp => in_flight.remove(&e.call),
                    };
                    self.processed += 1;
                    if in_flight.is_empty() {
                        self.restart();
                    } else if due {
                        // A lock never quiet again still gets points to cut at.
                        let snap = Snap::Skip(in_flight.clone());
                        self.checkpoints.push(Checkpoint {
                            at: self.processed,
                            t_us: e.t_us,
                            snap,
                        });
                    }
                    continue;
                }
                let op = self.calls[e.call].op;
                let mut steps = 0;
                let r = self
                    .frontier
                    .apply(e.call, op, e.ev, &mut steps, budget.max_steps);
                spent += steps;
                match r {
                    Ok(()) => {
                        self.processed += 1;
                        let snap =
                            if self.checkpoints[self.checkpoints.len() - 1].at == self.processed {
                                None
                            } else if self.frontier.is_quiescent() {
                                Some(Snap::Quiet(self.frontier.configs.clone()))
                            } else if due {
                                Some(Snap::Busy(Box::new(self.frontier.clone())))
                            } else {
                                None
                            };
                        if let Some(snap) = snap {
                            self.checkpoints.push(Checkpoint {
                                at: self.processed,
                                t_us: e.t_us,
                                snap,
                            });
                        }
                    }
                    Err(Stop::Violation) => {
                        let core = explain::core(self, self.processed, budget);
                        let explanation = explain::words(self, &core, ctx);
                        let ops = core.calls.iter().map(|&i| self.calls[i].req).collect();
                        self.status = Status::Violation {
                            t_fail: e.t_us,
                            ops,
                            explanation,
                        };
                        break;
                    }
                    Err(stop) => {
                        let why = match stop {
                            Stop::Budget => format!(
                                "too large to decide within budget: the search at {}'s answer ({}) needed more than {} steps with {} calls in flight",
                                self.calls[e.call].req,
                                secs(e.t_us),
                                budget.max_steps,
                                self.frontier.in_flight()
                            ),
                            Stop::TooWide => format!(
                                "too large to decide: more than {MAX_IN_FLIGHT} calls in flight at once at {}",
                                secs(e.t_us)
                            ),
                            _ => format!(
                                "too large to decide: more than {FRONTIER_CAP} possible states of the lock to carry on at {}",
                                secs(e.t_us)
                            ),
                        };
                        // Skip to the next point with nothing in flight, then look on for
                        // violations from any state (see `restart`).
                        let in_flight: HashSet<usize> = self.frontier.calls_in_flight().collect();
                        let at = self.processed;
                        let first = self.gave_up.as_ref().map_or(at, |g| g.at.min(at));
                        let why = match &self.gave_up {
                            Some(g) if g.at < at => g.why.clone(),
                            _ => why,
                        };
                        self.gave_up = Some(GaveUp {
                            at: first,
                            why,
                            skipping: Some(in_flight),
                        });
                    }
                }
            }
        }
        let (status, ops, explanation) = match (&self.status, &self.gave_up) {
            (
                Status::Violation {
                    ops, explanation, ..
                },
                _,
            ) => (VerdictStatus::Violation, ops.clone(), explanation.clone()),
            (Status::Checking, Some(g)) => (VerdictStatus::Unknown, Vec::new(), g.why.clone()),
            (Status::Checking, None) if self.blind.is_some() => (
                VerdictStatus::Unknown,
                Vec::new(),
                self.blind.clone().unwrap_or_default(),
            ),
            // Nothing answered yet: nothing decided ("unknown while undecided").
            (Status::Checking, None) if self.finished == 0 => (
                VerdictStatus::Unknown,
                Vec::new(),
                "not checked yet".to_owned(),
            ),
            (Status::Checking, None) => (VerdictStatus::Ok, Vec::new(), String::new()),
        };
        self.verdict = LockVerdict {
            lock: self.name.clone(),
            status,
            ops,
            explanation,
            calls: self.finished,
        };
        spent
    }

    /// Starts again at a point with nothing in flight after a search gave up. The lock may be
    /// held or free there, and any unknown call seen so far may still be waiting to take
    /// effect: more than it can really be, so what fails from here is a real violation, and what
    /// passes proves nothing (the verdict stays `unknown`).
    fn restart(&mut self) {
        let (mut nl, mut nu) = self.forgot_unknown;
        for e in &self.events[..self.processed] {
            if e.ev == Ev::GiveUp {
                match self.calls[e.call].op {
                    Op::Lock => nl += 1,
                    Op::Unlock => nu += 1,
                }
            }
        }
        self.frontier = Frontier::quiescent(
            vec![Config::start(false, nl, nu), Config::start(true, nl, nu)],
            FRONTIER_CAP,
        );
        if let Some(g) = &mut self.gave_up {
            g.skipping = None;
        }
        let t_us = self
            .processed
            .checked_sub(1)
            .map_or(0, |i| self.events[i].t_us);
        // It replaces a checkpoint at the same point (whatever it is: a rewind there must start
        // from this one).
        if self.checkpoints[self.checkpoints.len() - 1].at == self.processed {
            self.checkpoints.pop();
        }
        self.checkpoints.push(Checkpoint {
            at: self.processed,
            t_us,
            snap: Snap::Quiet(self.frontier.configs.clone()),
        });
    }

    /// Lets go of history older than `keep_us` before `now_us` that the check no longer needs:
    /// everything before the last checkpoint that old, but for the calls still in flight there.
    /// After a final violation, every event and every finished call. Returns the request ids
    /// let go and the new index of every call kept (for the monitor's index), or `None` if
    /// nothing was let go (it waits until there is as much to let go as to keep).
    #[allow(clippy::type_complexity)]
    fn forget(
        &mut self,
        now_us: u64,
        keep_us: u64,
    ) -> Option<(Vec<RequestId>, Vec<(RequestId, usize)>)> {
        let (cut, k) = if self.is_final(now_us) {
            // Calls still open stay: wait until there is as much again to let go.
            if self.events.len() + self.calls.len() < MIN_CUT.max(2 * self.kept_after_cut) {
                return None;
            }
            (self.events.len(), None)
        } else {
            if matches!(self.status, Status::Violation { .. }) {
                return None;
            }
            let limit = now_us.saturating_sub(keep_us);
            let k = self
                .checkpoints
                .partition_point(|c| c.t_us <= limit)
                .checked_sub(1)?;
            let cut = self.checkpoints[k].at;
            if cut < MIN_CUT || cut < self.events.len() - cut {
                return None;
            }
            (cut, Some(k))
        };
        // The calls kept: those with an event after the cut, and those not finished (in
        // flight at the cut).
        let mut keep = vec![false; self.calls.len()];
        for e in &self.events[cut..] {
            keep[e.call] = true;
        }
        for (i, c) in self.calls.iter().enumerate() {
            if matches!(c.end, End::Pending) {
                keep[i] = true;
            }
        }
        for e in &self.events[..cut] {
            if e.ev == Ev::GiveUp && !keep[e.call] {
                match self.calls[e.call].op {
                    Op::Lock => self.forgot_unknown.0 += 1,
                    Op::Unlock => self.forgot_unknown.1 += 1,
                }
            }
        }
        let mut remap = vec![usize::MAX; self.calls.len()];
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        let old = std::mem::take(&mut self.calls);
        for (i, c) in old.into_iter().enumerate() {
            if keep[i] {
                remap[i] = self.calls.len();
                kept.push((c.req, self.calls.len()));
                self.calls.push(c);
            } else {
                gone.push(c.req);
            }
        }
        self.forgotten += gone.len() as u64;
        self.kept_after_cut = self.calls.len();
        if cut > 0 {
            let h = self.events[cut - 1].t_us;
            self.horizon_us = Some(self.horizon_us.map_or(h, |x| x.max(h)));
        }
        self.events.drain(..cut);
        for e in &mut self.events {
            e.call = remap[e.call];
        }
        match k {
            None => {
                // A final violation: nothing is checked again.
                self.processed = 0;
                self.frontier = Frontier::initial(FRONTIER_CAP);
                self.checkpoints.truncate(1);
                self.checkpoints[0] = Checkpoint {
                    at: 0,
                    t_us: 0,
                    snap: Snap::Quiet(Vec::new()),
                };
                self.gave_up = None;
            }
            Some(k) => {
                if self.gave_up.as_ref().is_some_and(|g| g.skipping.is_some()) {
                    // Not used while skipping (and its calls may be gone): `restart` makes anew.
                    self.frontier = Frontier::initial(FRONTIER_CAP);
                } else {
                    self.frontier.renumber(&remap);
                }
                self.processed -= cut;
                self.checkpoints.drain(..k);
                let renumber = |calls: &mut HashSet<usize>| {
                    *calls = calls.iter().map(|&c| remap[c]).collect();
                };
                for c in &mut self.checkpoints {
                    c.at -= cut;
                    match &mut c.snap {
                        Snap::Busy(f) => f.renumber(&remap),
                        Snap::Skip(in_flight) => renumber(in_flight),
                        Snap::Quiet(_) => {}
                    }
                }
                if let Some(g) = &mut self.gave_up {
                    if let Some(in_flight) = &mut g.skipping {
                        renumber(in_flight);
                    }
                    if g.at >= cut {
                        g.at -= cut;
                    } else {
                        // Gave up in history now let go: no rewind can go back before it. A
                        // skip still under way (a later give-up) goes on.
                        self.blind.get_or_insert_with(|| g.why.clone());
                        g.at = 0;
                        if g.skipping.is_none() {
                            self.gave_up = None;
                        }
                    }
                }
            }
        }
        Some((gone, kept))
    }

    fn changed(&mut self) -> Option<LockVerdict> {
        let now = (
            self.verdict.status,
            self.verdict.ops.clone(),
            self.verdict.explanation.clone(),
        );
        if self.reported.as_ref() == Some(&now) {
            return None;
        }
        self.reported = Some(now);
        Some(self.verdict.clone())
    }
}

/// Checks a whole run's events at once (a saved run, a campaign's schedule): every lock's
/// verdict, sorted by lock name. The same as a [`Monitor`] fed every event, then checked once.
pub fn check_events<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    budget: Budget,
) -> (Vec<LockVerdict>, MonitorStats) {
    let mut m = Monitor::new(budget);
    for e in events {
        if Monitor::wants(&e.kind) {
            m.observe(e);
        }
    }
    m.check();
    (m.verdicts().cloned().collect(), m.stats())
}

/// The run's events with the checker's `verdict` events put where a live checker would have
/// published them: right after the event that changed a verdict (at its time, node
/// `"checker"`), every `seq` renumbered to stay consecutive from the first event's. Verdict
/// events already in `events` are left out and written anew. For a run checked after the
/// fact (a campaign's schedule), so that a replay shows a violation when it happened.
pub fn with_verdicts(events: &[Event], budget: Budget) -> Vec<Event> {
    let mut m = Monitor::new(budget);
    let first = events.first().map_or(1, |e| e.seq);
    let mut out: Vec<Event> = Vec::with_capacity(events.len() + 16);
    let push = |out: &mut Vec<Event>, t_us: u64, node: NodeId, kind: EventKind| {
        let seq = first + out.len() as u64;
        out.push(Event {
            seq,
            t_us,
            node,
            kind,
        });
    };
    for e in events {
        if matches!(e.kind, EventKind::Verdict(_)) {
            continue;
        }
        push(&mut out, e.t_us, e.node.clone(), e.kind.clone());
        if Monitor::wants(&e.kind) {
            m.observe(e);
            for v in m.check() {
                push(
                    &mut out,
                    e.t_us,
                    NodeId::new("checker"),
                    EventKind::Verdict(v),
                );
            }
        }
    }
    out
}

/// The live, incremental linearizability checker of a run: feed it every event it
/// [`wants`](Monitor::wants) with [`observe`](Monitor::observe) (cheap), and call
/// [`check`](Monitor::check) when there is time (it does the search and returns the verdicts that
/// changed).
#[derive(Debug)]
pub struct Monitor {
    budget: Budget,
    locks: Vec<LockLog>,
    /// Lock name -> position in `locks`, sorted by name.
    names: BTreeMap<String, usize>,
    /// Request id -> (lock position, call index).
    by_req: FxMap<RequestId, (usize, usize)>,
    /// (client, incarnation) -> the highest `seq` of its calls let go: a client calls one
    /// after another, so an invocation or answer at or below it repeats one already seen.
    forgotten_upto: FxMap<(u32, u32), u64>,
    /// Locks with events not checked yet.
    dirty: Vec<usize>,
    ctx: Context,
    now_us: u64,
    stats: MonitorStats,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new(Budget::default())
    }
}

impl Monitor {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            locks: Vec::new(),
            names: BTreeMap::new(),
            by_req: FxMap::default(),
            forgotten_upto: FxMap::default(),
            dirty: Vec::new(),
            ctx: Context::default(),
            now_us: 0,
            stats: MonitorStats::default(),
        }
    }

    /// The events [`observe`](Monitor::observe) uses: client calls, `cluster_reset`, and what
    /// explains a violation (roles, starts, crashes, pauses, the fault plan).
    pub fn wants(kind: &EventKind) -> bool {
        matches!(
            kind,
            EventKind::OpInvoked { .. }
                | EventKind::OpCompleted { .. }
                | EventKind::OpFailed { .. }
                | EventKind::ClusterReset { .. }
                | EventKind::RoleChanged { .. }
                | EventKind::ProcessStarted { .. }
                | EventKind::ProcessExited { .. }
                | EventKind::Crashed { .. }
                | EventKind::Dying { .. }
                | EventKind::Paused { .. }
                | EventKind::Resumed { .. }
                | EventKind::FaultsChanged { .. }
        )
    }

    /// Records one event. Events may come a little out of time order (`t_us` is the clock the
    /// history uses); a repeated invocation or answer for the same request id is ignored.
    pub fn observe(&mut self, event: &Event) {
        let t = event.t_us;
        self.now_us = self.now_us.max(t);
        match &event.kind {
            EventKind::OpInvoked { req, op, lock, .. } => {
                if self.by_req.contains_key(req) || self.forgotten(req) {
                    return;
                }
                let at = match self.names.get(lock) {
                    Some(&at) => at,
                    None => {
                        self.locks.push(LockLog::new(lock));
                        self.names.insert(lock.clone(), self.locks.len() - 1);
                        self.locks.len() - 1
                    }
                };
                let log = &mut self.locks[at];
                let idx = log.calls.len();
                log.calls.push(CallRec {
                    req: *req,
                    op: *op,
                    invoke_us: t,
                    end: End::Pending,
                });
                self.by_req.insert(*req, (at, idx));
                self.stats.calls += 1;
                self.push(
                    at,
                    EvRec {
                        t_us: t,
                        call: idx,
                        ev: Ev::Invoke,
                    },
                );
            }
            EventKind::OpCompleted {
                req, ok, server, ..
            } => self.end(
                req,
                t,
                End::Answered {
                    ok: *ok,
                    t_us: t,
                    server: server.clone(),
                },
            ),
            EventKind::OpFailed { req, .. } => self.end(req, t, End::Unknown),
            EventKind::ClusterReset { generation } => {
                *self = Self {
                    stats: MonitorStats {
                        generation: *generation,
                        ..MonitorStats::default()
                    },
                    now_us: t,
                    ..Self::new(self.budget)
                };
            }
            EventKind::RoleChanged {
                role,
                serving_alone,
                reason,
            } => self.ctx.push(
                t,
                &event.node,
                What::Role {
                    role: *role,
                    alone: *serving_alone,
                    reason: reason.clone(),
                },
            ),
            EventKind::ProcessStarted { role, .. } => {
                self.ctx.push(t, &event.node, What::Started(*role))
            }
            EventKind::ProcessExited { .. } => self.ctx.push(t, &event.node, What::Exited),
            EventKind::Crashed { cause, .. } => {
                self.ctx.push(t, &event.node, What::Crashed(*cause))
            }
            EventKind::Dying { .. } => self.ctx.push(t, &event.node, What::Dying),
            EventKind::Paused { .. } => self.ctx.push(t, &event.node, What::Paused),
            EventKind::Resumed { .. } => self.ctx.push(t, &event.node, What::Resumed),
            EventKind::FaultsChanged { plan, .. } => {
                self.ctx.push(t, &event.node, What::Faults(plan.clone()))
            }
            _ => {}
        }
    }

    /// Whether `req` is a call already let go (so an event of it is a repeat).
    fn forgotten(&self, req: &RequestId) -> bool {
        self.forgotten_upto
            .get(&(req.client, req.incarnation))
            .is_some_and(|&upto| req.seq <= upto)
    }

    fn end(&mut self, req: &RequestId, t: u64, end: End) {
        let Some(&(at, idx)) = self.by_req.get(req) else {
            if !self.forgotten(req) {
                self.stats.orphans += 1;
            }
            return;
        };
        let log = &mut self.locks[at];
        let call = &mut log.calls[idx];
        if !matches!(call.end, End::Pending) {
            return;
        }
        log.finished += 1;
        // An answer never comes before its invocation on the log's clock.
        let mut t = t.max(call.invoke_us);
        if matches!(end, End::Unknown) {
            // When a call of unknown outcome "ends" does not matter (it returns at infinity): put
            // it after what is already there, so that a give-up reported late (a killed client's,
            // published once its process is reaped) never makes the lock check again.
            t = t.max(log.events.last().map_or(0, |e| e.t_us));
        }
        let ev = match &end {
            End::Answered { ok, .. } => {
                self.stats.answered += 1;
                Ev::Answer(*ok)
            }
            _ => {
                self.stats.unknown += 1;
                Ev::GiveUp
            }
        };
        call.end = match end {
            End::Answered { ok, server, .. } => End::Answered {
                ok,
                t_us: t,
                server,
            },
            End::Unknown => End::Unknown,
            End::Pending => End::Pending,
        };
        self.push(
            at,
            EvRec {
                t_us: t,
                call: idx,
                ev,
            },
        );
    }

    fn push(&mut self, at: usize, e: EvRec) {
        let now = self.now_us;
        match self.locks[at].insert(e, now, self.budget.keep_us) {
            Inserted::InOrder => {}
            Inserted::Rewound => self.stats.rewinds += 1,
            Inserted::TooLate => {
                self.stats.unknown += 1;
                self.stats.rewinds += 1;
            }
        }
        if !self.dirty.contains(&at) {
            self.dirty.push(at);
        }
    }

    /// Checks what arrived since the last call, lock by lock, and returns the verdicts whose
    /// status, calls at fault or explanation changed (a lock's first verdict included).
    pub fn check(&mut self) -> Vec<LockVerdict> {
        let mut out = Vec::new();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable_by(|a, b| self.locks[*a].name.cmp(&self.locks[*b].name));
        for at in dirty {
            let log = &mut self.locks[at];
            self.stats.steps += log.check(self.budget, &self.ctx);
            if let Some(v) = log.changed() {
                out.push(v);
            }
            if let Some((gone, kept)) = log.forget(self.now_us, self.budget.keep_us) {
                for r in gone {
                    self.by_req.remove(&r);
                    let upto = self
                        .forgotten_upto
                        .entry((r.client, r.incarnation))
                        .or_insert(0);
                    *upto = (*upto).max(r.seq);
                }
                for (r, i) in kept {
                    self.by_req.insert(r, (at, i));
                }
            }
        }
        out
    }

    /// Every lock's current verdict, by lock name. A lock whose calls were not checked yet is
    /// `unknown`.
    pub fn verdicts(&self) -> impl Iterator<Item = &LockVerdict> {
        self.names.values().map(|&at| &self.locks[at].verdict)
    }

    pub fn stats(&self) -> MonitorStats {
        let mut s = self.stats;
        s.locks = self.locks.len() as u64;
        s.kept_calls = self.locks.iter().map(|l| l.calls.len() as u64).sum();
        s.kept_events = self.locks.iter().map(|l| l.events.len() as u64).sum();
        s.forgotten_calls = self.locks.iter().map(|l| l.forgotten).sum();
        s.in_flight = s.calls - s.answered - s.unknown;
        s.violations = self
            .locks
            .iter()
            .filter(|l| l.verdict.status == VerdictStatus::Violation)
            .count() as u64;
        s.undecided = self
            .locks
            .iter()
            .filter(|l| {
                (l.gave_up.is_some() || l.blind.is_some())
                    && l.verdict.status == VerdictStatus::Unknown
            })
            .count() as u64;
        s
    }
}
