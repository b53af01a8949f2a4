//! The live monitor: folds wire events into one history per lock and checks each incrementally.

use std::collections::{BTreeMap, HashMap};

use shared::{Event, EventKind, LockVerdict, NodeId, Op, RequestId, VerdictStatus};

use crate::context::{secs, Context, What};
use crate::explain;
use crate::frontier::{Config, Ev, Frontier, Stop, MAX_IN_FLIGHT};

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
    GaveUp(String),
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
        match &self.status {
            Status::GaveUp(_) => return false,
            Status::Violation { t_fail, .. } if now_us >= t_fail.saturating_add(SETTLE_US) => {
                // Final: the event only shifts what comes after it.
                self.processed += 1;
                return false;
            }
            _ => {}
        }
        let keep = self.checkpoints.partition_point(|(p, _)| *p <= pos);
        self.checkpoints.truncate(keep.max(1));
        let (p, configs) = self.checkpoints.last().cloned().unwrap_or_default();
        self.frontier = Frontier::quiescent(configs, FRONTIER_CAP);
        self.processed = p;
        self.status = Status::Checking;
        true
    }

    fn finished_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|c| !matches!(c.end, End::Pending))
            .count() as u64
    }

    /// Checks what arrived since the last check. Returns the steps spent.
    fn check(&mut self, budget: Budget, ctx: &Context) -> u64 {
        let mut spent = 0;
        if matches!(self.status, Status::Checking) {
            while self.processed < self.events.len() {
                let e = self.events[self.processed];
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
                        self.status = Status::GaveUp(why);
                        break;
                    }
                }
            }
        }
        let (status, ops, explanation) = match &self.status {
            Status::Checking => (VerdictStatus::Ok, Vec::new(), String::new()),
            Status::Violation {
                ops, explanation, ..
            } => (VerdictStatus::Violation, ops.clone(), explanation.clone()),
            Status::GaveUp(why) => (VerdictStatus::Unknown, Vec::new(), why.clone()),
        };
        self.verdict = LockVerdict {
            lock: self.name.clone(),
            status,
            ops,
            explanation,
            calls: self.finished_calls(),
        };
        spent
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

/// The live, incremental linearizability checker of a run: feed it every event it
/// [`wants`](Monitor::wants) with [`observe`](Monitor::observe) (cheap), and call
/// [`check`](Monitor::check) when there is time (it does the search and returns the verdicts that
/// changed).
#[derive(Debug)]
pub struct Monitor {
    budget: Budget,
    pub(crate) locks: BTreeMap<String, LockLog>,
    by_req: HashMap<RequestId, (String, usize)>,
    dirty: Vec<String>,
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
            locks: BTreeMap::new(),
            by_req: HashMap::new(),
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
                let log = self
                    .locks
                    .entry(lock.clone())
                    .or_insert_with(|| LockLog::new(lock));
                let idx = log.calls.len();
                log.calls.push(CallRec {
                    req: *req,
                    op: *op,
                    invoke_us: t,
                    end: End::Pending,
                });
                self.by_req.insert(*req, (lock.clone(), idx));
                self.stats.calls += 1;
                self.push(
                    lock.clone(),
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
                self.ctx
                    .push(t, &event.node, What::Partition(plan.partition.clone()))
            }
            _ => {}
        }
    }

    fn end(&mut self, req: &RequestId, t: u64, end: End) {
        let Some((lock, idx)) = self.by_req.get(req).cloned() else {
            self.stats.orphans += 1;
            return;
        };
        let Some(log) = self.locks.get_mut(&lock) else {
            return;
        };
        let call = &mut log.calls[idx];
        if !matches!(call.end, End::Pending) {
            return;
        }
        // An answer never comes before its invocation on the log's clock.
        let t = t.max(call.invoke_us);
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
            lock,
            EvRec {
                t_us: t,
                call: idx,
                ev,
            },
        );
    }

    fn push(&mut self, lock: String, e: EvRec) {
        let now = self.now_us;
        if let Some(log) = self.locks.get_mut(&lock) {
            if log.insert(e, now) {
                self.stats.rewinds += 1;
            }
        }
        if !self.dirty.contains(&lock) {
            self.dirty.push(lock);
        }
    }

    /// Checks what arrived since the last call, lock by lock, and returns the verdicts whose
    /// status, calls at fault or explanation changed (a lock's first verdict included).
    pub fn check(&mut self) -> Vec<LockVerdict> {
        let mut out = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        for lock in dirty {
            let Some(log) = self.locks.get_mut(&lock) else {
                continue;
            };
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
        self.locks.values().map(|l| &l.verdict)
    }

    pub fn stats(&self) -> MonitorStats {
        let mut s = self.stats;
        s.locks = self.locks.len() as u64;
        s.in_flight = s.calls - s.answered - s.unknown;
        s.violations = self
            .locks
            .values()
            .filter(|l| l.verdict.status == VerdictStatus::Violation)
            .count() as u64;
        s.undecided = self
            .locks
            .values()
            .filter(|l| matches!(l.status, Status::GaveUp(_)))
            .count() as u64;
        s
    }
}
