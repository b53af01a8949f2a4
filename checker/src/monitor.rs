//! The live monitor: folds wire events into one history per lock and checks each incrementally.

use std::collections::{BTreeMap, HashSet};

use shared::{Event, EventKind, LockVerdict, NodeId, Op, RequestId, VerdictStatus};

use crate::context::{secs, Context, What};
use crate::explain;
use crate::frontier::{Config, Ev, Frontier, FxMap, Stop, MAX_IN_FLIGHT};

/// How much search the checker may spend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Budget {
    /// Search steps one `check()` may spend on one search of one lock (the search run when a
    /// call is answered; its work grows with the calls in flight at once, not with the length
    /// of the history). A search that needs more gives that lock the verdict `unknown` ("too
    /// large to decide within budget"), never `ok`.
    pub max_steps: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_steps: 1_000_000,
        }
    }
}

/// Most configurations one lock may carry from one point of its history to the next.
pub const FRONTIER_CAP: usize = 100_000;

/// A violation is final (late events no longer revisit it) once the log's clock is this far past
/// the answer that showed it. Events of different processes reach the bus a little out of time
/// order; an invocation that arrives late may still explain an answer.
pub const SETTLE_US: u64 = 1_000_000;

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

#[derive(Debug)]
pub(crate) struct LockLog {
    pub name: String,
    pub calls: Vec<CallRec>,
    pub events: Vec<EvRec>,
    processed: usize,
    frontier: Frontier,
    /// (events processed, frontier) at quiescent points: nothing in flight.
    pub checkpoints: Vec<(usize, Vec<Config>)>,
    status: Status,
    /// Set once a search gave up: the verdict is never `ok` again (until a rewind before it).
    gave_up: Option<GaveUp>,
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
            checkpoints: vec![(0, frontier.configs.clone())],
            frontier,
            status: Status::Checking,
            gave_up: None,
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

    /// Inserts an event in time order; rewinds the check if it lands before what was checked.
    /// Returns true if it rewound.
    fn insert(&mut self, e: EvRec, now_us: u64) -> bool {
        let pos = self.events.partition_point(|x| x.key() <= e.key());
        self.events.insert(pos, e);
        // A violation stopped at the event that showed it, which was checked too.
        let checked = self.processed + usize::from(matches!(self.status, Status::Violation { .. }));
        if pos >= checked {
            return false;
        }
        if let Status::Violation { t_fail, .. } = &self.status {
            if now_us >= t_fail.saturating_add(SETTLE_US) {
                // Final: the event only shifts what comes after it.
                self.processed += 1;
                return false;
            }
        }
        let keep = self.checkpoints.partition_point(|(p, _)| *p <= pos);
        self.checkpoints.truncate(keep.max(1));
        let (p, configs) = self.checkpoints.last().cloned().unwrap_or_default();
        self.frontier = Frontier::quiescent(configs, FRONTIER_CAP);
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
        true
    }

    /// Checks what arrived since the last check. Returns the steps spent.
    fn check(&mut self, budget: Budget, ctx: &Context) -> u64 {
        let mut spent = 0;
        if matches!(self.status, Status::Checking) {
            while self.processed < self.events.len() {
                let e = self.events[self.processed];
                if let Some(in_flight) = self.gave_up.as_mut().and_then(|g| g.skipping.as_mut()) {
                    match e.ev {
                        Ev::Invoke => in_flight.insert(e.call),
                        Ev::Answer(_) | Ev::GiveUp => in_flight.remove(&e.call),
                    };
                    self.processed += 1;
                    if in_flight.is_empty() {
                        self.restart();
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
                        if self.frontier.is_quiescent()
                            && self.checkpoints.last().map(|c| c.0) != Some(self.processed)
                        {
                            self.checkpoints
                                .push((self.processed, self.frontier.configs.clone()));
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
                        let mut in_flight = HashSet::new();
                        for x in &self.events[..self.processed] {
                            match x.ev {
                                Ev::Invoke => in_flight.insert(x.call),
                                Ev::Answer(_) | Ev::GiveUp => in_flight.remove(&x.call),
                            };
                        }
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
        let (mut nl, mut nu) = (0u32, 0u32);
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
        self.checkpoints
            .push((self.processed, self.frontier.configs.clone()));
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
                if self.by_req.contains_key(req) {
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

    fn end(&mut self, req: &RequestId, t: u64, end: End) {
        let Some(&(at, idx)) = self.by_req.get(req) else {
            self.stats.orphans += 1;
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
        if self.locks[at].insert(e, now) {
            self.stats.rewinds += 1;
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
        s.in_flight = s.calls - s.answered - s.unknown;
        s.violations = self
            .locks
            .iter()
            .filter(|l| l.verdict.status == VerdictStatus::Violation)
            .count() as u64;
        s.undecided = self
            .locks
            .iter()
            .filter(|l| l.gave_up.is_some() && l.verdict.status == VerdictStatus::Unknown)
            .count() as u64;
        s
    }
}
