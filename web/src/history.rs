//! The page's memory of the run: a compact, capped event log with messages paired by id.
//!
//! Each wire [`shared::Event`] becomes an [`Ev`] of a few words (names interned), placed on the
//! diagram's vertical axis once, when it arrives (`y` only grows). Each `msg_sent` opens a
//! [`MsgRec`]; its `msg_delivered` or `msg_lost` closes it, wherever it lands in the log. Server
//! death is kept as [`DeadSpan`]s (a lane is greyed from the crash to the restart) and the
//! failover timeline is folded in as events arrive ([`Failover`]), so no view ever rescans
//! 100,000 events. Cloning a `History` is cheap (see [`Chunked`]): the store keeps a frozen copy
//! for "pause" for free.
//!
//! Pure: no I/O, no web types; the time axis comes from `timeaxis`, the event types from `events`.

use std::collections::HashMap;
use std::rc::Rc;

use shared::{CrashPoint, Event, EventKind, Msg, MsgId, RequestId, VerdictStatus};

use crate::chunked::Chunked;
use crate::events::{DeadSpan, Ev, Kind, MsgEnd, MsgKind, MsgRec, SpanKind};
use crate::failover::Failover;
use crate::symbols::{Sym, Symbols};
use crate::timeaxis::row_gap;

/// Events the page keeps; older ones are dropped (oldest first).
pub const HISTORY_CAP: usize = 100_000;
/// Greyed lane stretches remembered.
const DEAD_SPANS_CAP: usize = 512;
/// Messages searched (newest first) for the original of a duplicate delivery.
const DUP_LOOKBACK: usize = 4096;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct History {
    pub syms: Symbols,
    pub events: Chunked<Ev>,
    pub msgs: Chunked<MsgRec>,
    /// In-flight messages: msg_id -> global index in `msgs`.
    open: Rc<HashMap<MsgId, usize>>,
    dead: Rc<Vec<DeadSpan>>,
    /// Per client: the last request seq sent and how many times it was sent.
    /// (A restarted client's process is a new identity: its request ids carry its incarnation,
    /// so its call 1 is not a retry of its predecessor's call 1.)
    attempts: Rc<HashMap<u32, (shared::RequestId, u32)>>,
    pub failover: Rc<Failover>,
    /// The latest `cluster_reset` generation seen.
    generation: u64,
    /// Global index of the latest `cluster_reset` event (0 before any): the events of the
    /// current generation are those from here on.
    gen_start: usize,
    /// Clients that appear in this history (they get a lane).
    clients_seen: Rc<std::collections::BTreeSet<u32>>,
    /// Events of the load generator's clerks are in this history (they share one lane).
    load_seen: bool,
    cap: usize,
}

impl History {
    pub fn new(syms: Symbols) -> Self {
        Self::with_cap(syms, HISTORY_CAP)
    }

    pub fn with_cap(syms: Symbols, cap: usize) -> Self {
        History {
            syms,
            events: Chunked::default(),
            msgs: Chunked::default(),
            open: Rc::default(),
            dead: Rc::default(),
            attempts: Rc::default(),
            failover: Rc::default(),
            generation: 0,
            gen_start: 0,
            clients_seen: Rc::default(),
            load_seen: false,
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.events.last().map(|e| e.seq)
    }

    /// The `y` of the oldest kept event: the diagram draws `y - origin_y()`.
    pub fn origin_y(&self) -> f64 {
        self.events.first().map_or(0.0, |e| e.y)
    }

    pub fn last_t(&self) -> Option<u64> {
        self.events.last().map(|e| e.t_us)
    }

    pub fn first_t(&self) -> Option<u64> {
        self.events.first().map(|e| e.t_us)
    }

    /// Where an event happening at `now_us` would be placed: the "now" line of the diagram.
    pub fn live_y(&self, now_us: f64) -> f64 {
        match self.events.last() {
            None => 0.0,
            Some(last) => {
                let dt = (now_us - last.t_us as f64).max(0.0) as u64;
                last.y + row_gap(dt)
            }
        }
    }

    /// Seeds the failover timeline with a server's state from a snapshot (see
    /// [`Failover::seed`]).
    pub fn seed_server(&mut self, server: &str, state: crate::failover::Serving, t_us: u64) {
        Rc::make_mut(&mut self.failover).seed(server, state, t_us);
    }

    /// Whether events of the load generator's clerks are in this history.
    pub fn load_seen(&self) -> bool {
        self.load_seen
    }

    /// Clients whose events are in this history (the load's clerks aside), in id order.
    pub fn clients_seen(&self) -> impl Iterator<Item = u32> + '_ {
        self.clients_seen.iter().copied()
    }

    pub fn msg(&self, index: usize) -> Option<&MsgRec> {
        self.msgs.get(index)
    }

    /// How many of the held messages belong to the same call as message `index` (same request
    /// id and cluster generation). Late ones count too: a slow or hung server may still forward
    /// or answer a call after its client moved on to the next, so no neighbourhood of `index`
    /// is enough. A linear scan of the held messages, for the one message the details show.
    pub fn messages_of_call(&self, index: usize) -> usize {
        let Some(m) = self.msgs.get(index) else {
            return 0;
        };
        self.msgs
            .iter()
            .filter(|(_, o)| o.req == m.req && o.generation == m.generation)
            .count()
    }

    /// The cluster generation of the newest events (the latest `cluster_reset` seen; request
    /// ids start over after each).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether event `index` belongs to the current generation (it came after the latest
    /// `cluster_reset`): a verdict's request ids name calls of this generation only.
    pub fn in_current_generation(&self, index: usize) -> bool {
        index >= self.gen_start
    }

    /// The first event of call `req` in the current generation (its invocation, or whatever
    /// of it is still held), for jumping to it. A scan back to the latest reset: for a click.
    pub fn first_event_of_call(&self, req: RequestId) -> Option<usize> {
        let from = self.gen_start.max(self.events.first_index());
        self.events
            .range(from..self.events.end_index())
            .find(|(_, e)| e.kind.req() == Some(req))
            .map(|(i, _)| i)
    }

    pub fn event(&self, index: usize) -> Option<&Ev> {
        self.events.get(index)
    }

    /// Global `msgs` indices of the messages in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.values().copied()
    }

    pub fn in_flight_count(&self) -> usize {
        self.open.len()
    }

    pub fn dead_spans(&self) -> &[DeadSpan] {
        &self.dead
    }

    pub fn name(&self, sym: Sym) -> Rc<str> {
        self.syms.name(sym)
    }

    /// Appends one event (the caller has checked `seq` order) and drops the oldest beyond the cap.
    pub fn push(&mut self, e: &Event) {
        // The load generator's settings and numbers, and the failovers the supervisor timed,
        // are drawn by the charts, not the diagram.
        if let EventKind::Failover {
            from,
            to,
            reason,
            since_us,
            window_us,
            client,
        } = &e.kind
        {
            // Its figure goes to the failover timeline, its line to the charts.
            let timed = crate::failover::Timed {
                since_us: *since_us,
                window_us: *window_us,
                to: self.syms.name(self.syms.intern(to)),
                client: *client,
                reason: self.syms.name(self.syms.intern(reason)),
            };
            let from = self.syms.name(self.syms.intern(from));
            let index = self.events.end_index();
            Rc::make_mut(&mut self.failover).timed(&from, timed, index);
            return;
        }
        if matches!(e.kind, EventKind::LoadChanged(_) | EventKind::LoadStats(_)) {
            return;
        }
        let index = self.events.end_index();
        let y = match self.events.last() {
            None => 0.0,
            // A verdict that is no violation is not drawn: it takes no row.
            Some(last) if matches!(&e.kind, EventKind::Verdict(v) if v.status != VerdictStatus::Violation) => {
                last.y
            }
            Some(last) => last.y + row_gap(e.t_us.saturating_sub(last.t_us)),
        };
        let node = self.syms.intern(&e.node);
        if let Some(id) = e.node.client_id() {
            if shared::is_load_client(id) {
                // The load's clerks share one lane.
                self.load_seen = true;
            } else if !self.clients_seen.contains(&id) {
                Rc::make_mut(&mut self.clients_seen).insert(id);
            }
        }
        let kind = self.convert(e, index, y);
        let ev = Ev {
            seq: e.seq,
            t_us: e.t_us,
            y,
            node,
            kind,
        };
        self.track_death(&ev);
        if Failover::cares(&ev.kind) {
            Rc::make_mut(&mut self.failover).apply(&ev, index, &self.syms);
        }
        self.events.push(ev);
        if self.events.len() > self.cap {
            self.trim();
        }
    }

    fn convert(&mut self, e: &Event, index: usize, y: f64) -> Kind {
        let s = &self.syms;
        match &e.kind {
            EventKind::ProcessStarted { pid, role, port } => Kind::Started {
                pid: *pid,
                role: *role,
                port: *port,
            },
            EventKind::ProcessExited { pid, signal, code } => Kind::Exited {
                pid: *pid,
                signal: *signal,
                code: *code,
            },
            EventKind::Crashed { pid, cause, req } => Kind::Crashed {
                pid: *pid,
                cause: *cause,
                req: *req,
            },
            EventKind::CrashArmed { point, dying_ms } => Kind::Armed {
                point: point.unwrap_or(CrashPoint::BeforeReply),
                dying_ms: *dying_ms,
            },
            EventKind::RoleChanged {
                role,
                serving_alone,
                reason,
            } => Kind::RoleChanged {
                role: *role,
                alone: *serving_alone,
                reason: s.intern(reason),
            },
            EventKind::MsgSent {
                msg_id,
                from,
                to,
                msg,
            } => {
                let (kind, req, op, lock, ok) = match msg {
                    Msg::Request { req, op, lock } => (
                        MsgKind::Request,
                        *req,
                        Some(*op),
                        Some(s.intern(lock)),
                        None,
                    ),
                    Msg::Forward { req, op, lock } => (
                        MsgKind::Forward,
                        *req,
                        Some(*op),
                        Some(s.intern(lock)),
                        None,
                    ),
                    Msg::ForwardAck { req, ok } => {
                        (MsgKind::ForwardAck, *req, None, None, Some(*ok))
                    }
                    Msg::Reply { req, ok } => (MsgKind::Reply, *req, None, None, Some(*ok)),
                    Msg::ForwardRefused { req } => {
                        (MsgKind::ForwardRefused, *req, None, None, None)
                    }
                    // A group commit: drawn as one forward (ack) arrow labelled with its size.
                    Msg::ForwardBatch { .. } | Msg::ForwardAckBatch { .. } => {
                        let kind = match msg {
                            Msg::ForwardBatch { .. } => MsgKind::Forward,
                            _ => MsgKind::ForwardAck,
                        };
                        let req = msg.first_req().unwrap_or(RequestId::new(0, 0));
                        (kind, req, None, None, None)
                    }
                };
                let attempt = if kind == MsgKind::Request {
                    let map = Rc::make_mut(&mut self.attempts);
                    let entry = map.entry(req.client).or_insert((req, 0));
                    if entry.0 != req {
                        *entry = (req, 0);
                    }
                    entry.1 += 1;
                    entry.1
                } else {
                    1
                };
                let rec = MsgRec {
                    msg_id: *msg_id,
                    from: s.intern(from),
                    to: s.intern(to),
                    kind,
                    req,
                    op,
                    lock,
                    ok,
                    sent: index,
                    sent_t: e.t_us,
                    sent_y: y,
                    end: MsgEnd::InFlight,
                    attempt,
                    generation: self.generation,
                    dup: None,
                    batch: msg.op_count() as u32,
                };
                let m = self.msgs.push(rec);
                Rc::make_mut(&mut self.open).insert(*msg_id, m);
                Kind::Sent {
                    msg_id: *msg_id,
                    msg: m,
                }
            }
            EventKind::MsgDelivered {
                msg_id, duplicate, ..
            } => {
                let end = MsgEnd::Delivered {
                    event: index,
                    t_us: e.t_us,
                    y,
                };
                // The network's second copy lands on a message already closed by the first.
                let msg = match self.open.contains_key(msg_id) {
                    true => self.close(*msg_id, end),
                    false if *duplicate => self.mark_duplicate(*msg_id, index, y),
                    false => None,
                };
                Kind::Delivered {
                    msg_id: *msg_id,
                    msg,
                    duplicate: *duplicate,
                }
            }
            EventKind::MsgHeld { msg_id, .. } => {
                let msg = self.open.get(msg_id).copied();
                if let Some(m) = msg {
                    self.msgs.update(m, |rec| {
                        rec.end = MsgEnd::Held {
                            event: index,
                            t_us: e.t_us,
                            y,
                        }
                    });
                }
                Kind::Held {
                    msg_id: *msg_id,
                    msg,
                }
            }
            EventKind::MsgLost { msg_id, reason, .. } => {
                let reason = s.intern(reason);
                let msg = self.close(
                    *msg_id,
                    MsgEnd::Lost {
                        event: index,
                        t_us: e.t_us,
                        y,
                        reason,
                    },
                );
                Kind::Lost {
                    msg_id: *msg_id,
                    msg,
                    reason,
                }
            }
            EventKind::Executed {
                req,
                op,
                lock,
                ok,
                held,
                duplicate,
                forwarded,
            } => Kind::Executed {
                req: *req,
                op: *op,
                lock: s.intern(lock),
                ok: *ok,
                held: *held,
                duplicate: *duplicate,
                forwarded: *forwarded,
            },
            EventKind::OpInvoked {
                req,
                op,
                lock,
                server,
                ..
            } => Kind::Invoked {
                req: *req,
                op: *op,
                lock: s.intern(lock),
                server: s.intern(server),
            },
            EventKind::OpCompleted {
                op,
                lock,
                ok,
                req,
                server,
                latency_us,
                attempts,
                ..
            } => Kind::Completed {
                req: *req,
                op: *op,
                lock: s.intern(lock),
                ok: *ok,
                server: s.intern(server),
                latency_us: *latency_us,
                attempts: *attempts,
            },
            EventKind::OpFailed {
                op,
                lock,
                req,
                reason,
                ..
            } => Kind::Failed {
                req: *req,
                op: *op,
                lock: s.intern(lock),
                reason: s.intern(reason),
            },
            EventKind::RpcFailed {
                req,
                server,
                reason,
                retry_to,
                ..
            } => Kind::RpcFailed {
                req: *req,
                server: s.intern(server),
                reason: s.intern(reason),
                retry_to: s.intern(retry_to),
            },
            EventKind::ClusterReset { generation } => {
                self.generation = *generation;
                self.gen_start = index;
                // New clerks: request ids start over.
                Rc::make_mut(&mut self.attempts).clear();
                Kind::Reset {
                    generation: *generation,
                }
            }
            EventKind::SlowMotionSet { delay_ms } => Kind::SlowMotion {
                delay_ms: *delay_ms,
            },
            EventKind::Dying {
                pid,
                dies_in_ms,
                point,
            } => Kind::Dying {
                pid: *pid,
                dies_in_ms: *dies_in_ms,
                point: *point,
            },
            EventKind::Paused { pid } => Kind::Paused { pid: *pid },
            EventKind::Resumed { pid } => Kind::Resumed { pid: *pid },
            EventKind::ClientStarted { pid, incarnation } => Kind::ClientStarted {
                pid: *pid,
                incarnation: *incarnation,
            },
            EventKind::FaultsChanged { change, .. } => Kind::Faults {
                change: s.intern(change),
            },
            EventKind::LoadChanged(_) | EventKind::LoadStats(_) | EventKind::Failover { .. } => {
                Kind::LoadReport
            }
            EventKind::Verdict(v) => Kind::Verdict {
                lock: s.intern(&v.lock),
                status: v.status,
                verdict: Rc::new(v.clone()),
            },
        }
    }

    /// Ends message `msg_id`; a delivery or loss of a message we never saw sent (it was
    /// before our history) is kept as an event only.
    fn close(&mut self, msg_id: MsgId, end: MsgEnd) -> Option<usize> {
        let m = Rc::make_mut(&mut self.open).remove(&msg_id)?;
        self.msgs.update(m, |rec| rec.end = end);
        Some(m)
    }

    /// Records the second delivery of message `msg_id` (closed by its first): the newest
    /// message of that id among the last [`DUP_LOOKBACK`] (a duplicate follows its original
    /// closely, and this runs only for duplicates, so the scan stays bounded).
    fn mark_duplicate(&mut self, msg_id: MsgId, event: usize, y: f64) -> Option<usize> {
        let end = self.msgs.end_index();
        let from = end
            .saturating_sub(DUP_LOOKBACK)
            .max(self.msgs.first_index());
        let m = (from..end)
            .rev()
            .find(|i| self.msgs.get(*i).is_some_and(|m| m.msg_id == msg_id))?;
        self.msgs.update(m, |rec| rec.dup = Some((event, y)));
        Some(m)
    }

    /// Hatches a lane while its process is dead, paused or dying. Its messages in flight stay
    /// in flight: the server's bus is the one place that declares a message lost, with a
    /// `msg_lost` for each one.
    ///
    /// A death ends a pause or a dying stretch and starts a dead one (crash + exit are one);
    /// a start (a server's `process_started`, a client's `client_started`) ends it; `resumed`
    /// ends a pause.
    fn track_death(&mut self, ev: &Ev) {
        let open = |dead: &[DeadSpan], kind: SpanKind| {
            dead.iter()
                .any(|d| d.server == ev.node && d.kind == kind && d.to_y.is_none())
        };
        let (ends, starts): (&[SpanKind], Option<SpanKind>) = match ev.kind {
            Kind::Crashed { .. } | Kind::Exited { .. } => {
                (&[SpanKind::Paused, SpanKind::Dying], Some(SpanKind::Dead))
            }
            Kind::Started { .. } | Kind::ClientStarted { .. } => (&[SpanKind::Dead], None),
            Kind::Paused { .. } => (&[], Some(SpanKind::Paused)),
            Kind::Resumed { .. } => (&[SpanKind::Paused], None),
            Kind::Dying { .. } => (&[SpanKind::Paused], Some(SpanKind::Dying)),
            _ => return,
        };
        if ends.iter().any(|k| open(&self.dead, *k)) {
            for d in Rc::make_mut(&mut self.dead).iter_mut() {
                if d.server == ev.node && d.to_y.is_none() && ends.contains(&d.kind) {
                    d.to_y = Some(ev.y);
                }
            }
        }
        if let Some(kind) = starts.filter(|k| !open(&self.dead, *k)) {
            let dead = Rc::make_mut(&mut self.dead);
            dead.push(DeadSpan {
                kind,
                server: ev.node,
                from_y: ev.y,
                from_t: ev.t_us,
                to_y: None,
            });
            if dead.len() > DEAD_SPANS_CAP {
                dead.remove(0);
            }
        }
    }

    /// Drops the oldest events beyond the cap, and the messages sent before the oldest kept event.
    fn trim(&mut self) {
        self.events.truncate_front(self.cap);
        let first_event = self.events.first_index();
        let first_msg = self
            .msgs
            .partition_point(self.msgs.indices(), |m| m.sent < first_event);
        if first_msg > self.msgs.first_index() {
            self.msgs.drop_before(first_msg);
            if self.open.values().any(|m| *m < first_msg) {
                Rc::make_mut(&mut self.open).retain(|_, m| *m >= first_msg);
            }
        }
        let origin = self.origin_y();
        if self
            .dead
            .iter()
            .any(|d| d.to_y.is_some_and(|to| to < origin))
        {
            Rc::make_mut(&mut self.dead).retain(|d| d.to_y.is_none_or(|to| to >= origin));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{history_of, Script};
    use shared::{CrashCause, EventKind as K, Msg, Op, RequestId, Role};

    #[test]
    fn sends_pair_with_deliveries_by_msg_id() {
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 10);
        let h = history_of(&s);
        assert_eq!(h.msgs.len(), 4);
        assert_eq!(h.in_flight_count(), 0);
        let kinds: Vec<_> = h.msgs.iter().map(|(_, m)| m.kind).collect();
        assert_eq!(kinds, MsgKind::ALL.to_vec());
        for (_, m) in h.msgs.iter() {
            let MsgEnd::Delivered { event, .. } = m.end else {
                panic!("message {} not delivered", m.msg_id)
            };
            assert_eq!(event, m.sent + 1, "delivery is the event after the send");
        }
    }

    #[test]
    fn a_lost_message_is_closed_as_lost_and_an_unknown_delivery_is_harmless() {
        let mut s = Script::default();
        let req = RequestId::new(1, 1);
        s.sent(
            5,
            "c1",
            "s1",
            Msg::Request {
                req,
                op: Op::Lock,
                lock: "a".into(),
            },
        )
        .lost(5, "c1", "s1")
        .delivered(99, "s1", "c1");
        let h = history_of(&s);
        let m = h.msg(0).expect("message 0");
        assert!(matches!(m.end, MsgEnd::Lost { event: 1, .. }));
        assert!(matches!(
            h.event(2).map(|e| &e.kind),
            Some(Kind::Delivered {
                msg_id: shared::MsgId(99),
                msg: None,
                duplicate: false,
            })
        ));
    }

    #[test]
    fn retries_of_the_same_request_are_counted() {
        let mut s = Script::default();
        let req = RequestId::new(1, 7);
        let m = || Msg::Request {
            req,
            op: Op::Lock,
            lock: "a".into(),
        };
        s.sent(1, "c1", "s1", m()).sent(2, "c1", "s2", m());
        let next = RequestId::new(1, 8);
        s.sent(
            3,
            "c1",
            "s2",
            Msg::Request {
                req: next,
                op: Op::Unlock,
                lock: "a".into(),
            },
        );
        // After a reset the clerks start over: c1.8 again is a first attempt, of generation 1.
        s.ev("supervisor", K::ClusterReset { generation: 1 });
        s.sent(
            4,
            "c1",
            "s1",
            Msg::Request {
                req: next,
                op: Op::Lock,
                lock: "a".into(),
            },
        );
        let h = history_of(&s);
        let attempts: Vec<(u32, u64)> = h
            .msgs
            .iter()
            .map(|(_, m)| (m.attempt, m.generation))
            .collect();
        assert_eq!(attempts, vec![(1, 0), (2, 0), (1, 0), (1, 1)]);
    }

    #[test]
    fn the_messages_of_a_call_are_counted_among_other_calls_and_late_ones() {
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 1)
            .call(2, 1, "s1", "s2", 5)
            .call(1, 2, "s1", "s2", 9)
            .call(2, 2, "s1", "s2", 13)
            .call(1, 3, "s1", "s2", 17);
        // A straggler: a server answers c1.2 again after c1.3 was done (a slow server whose
        // client gave up on it and was answered elsewhere).
        s.sent(
            40,
            "s2",
            "c1",
            Msg::Reply {
                req: RequestId::new(1, 2),
                ok: true,
            },
        );
        let h = history_of(&s);
        let c1_3 = h
            .msgs
            .iter()
            .find(|(_, m)| m.req == RequestId::new(1, 3))
            .map(|(i, _)| i)
            .expect("c1.3 is held");
        assert_eq!(h.messages_of_call(c1_3), 4);
        let c1_2: Vec<usize> = h
            .msgs
            .iter()
            .filter(|(_, m)| m.req == RequestId::new(1, 2))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(c1_2.len(), 5);
        for i in c1_2 {
            assert_eq!(
                h.messages_of_call(i),
                5,
                "request, forward, ack, reply, and the late reply"
            );
        }
        assert_eq!(h.messages_of_call(h.msgs.end_index()), 0, "no such message");
    }

    #[test]
    fn y_grows_by_a_row_per_event_and_more_after_idle_time() {
        let mut s = Script::default();
        s.ev("supervisor", K::SlowMotionSet { delay_ms: 0 });
        s.ev("supervisor", K::SlowMotionSet { delay_ms: 0 });
        s.at(5_000_000)
            .ev("supervisor", K::SlowMotionSet { delay_ms: 0 });
        let h = history_of(&s);
        let y: Vec<f64> = h.events.iter().map(|(_, e)| e.y).collect();
        assert_eq!(y[0], 0.0);
        let short = y[1] - y[0];
        let long = y[2] - y[1];
        assert!(short >= crate::timeaxis::ROW);
        assert!(long > short + 50.0, "idle time shows: {short} vs {long}");
    }

    #[test]
    fn the_cap_drops_the_oldest_events_and_their_messages() {
        let mut s = Script::default();
        for i in 0..1000u64 {
            s.call(1, i + 1, "s1", "s2", i * 4);
        }
        let mut h = History::with_cap(Symbols::default(), 5000);
        for e in &s.events {
            h.push(e);
        }
        assert_eq!(h.len(), 5000);
        assert_eq!(h.last_seq(), Some(10_000), "ten events per call");
        assert_eq!(h.first_seq(), Some(5001));
        let first = h.events.first_index();
        assert!(h.msgs.iter().all(|(_, m)| m.sent >= first));
        assert!(h.msgs.len() <= 5000 / 10 * 4 + 4);
    }

    #[test]
    fn the_full_cap_is_one_hundred_thousand() {
        let mut h = History::new(Symbols::default());
        for seq in 1..=100_500u64 {
            h.push(&Event {
                seq,
                t_us: seq,
                node: "supervisor".into(),
                kind: K::SlowMotionSet { delay_ms: 0 },
            });
        }
        assert_eq!(h.len(), HISTORY_CAP);
        assert_eq!(h.first_seq(), Some(501));
        assert_eq!(h.last_seq(), Some(100_500));
    }

    #[test]
    fn a_message_to_a_process_that_dies_is_lost_only_when_the_bus_says_so() {
        let mut s = Script::default();
        let req = RequestId::new(1, 1);
        s.sent(3, "s2", "s1", Msg::ForwardAck { req, ok: true })
            .sent(4, "s2", "c1", Msg::Reply { req, ok: true })
            .ev(
                "s1",
                K::Crashed {
                    pid: 4,
                    cause: CrashCause::BeforeReply,
                    req: Some(req),
                },
            )
            .ev(
                "s1",
                K::ProcessExited {
                    pid: 4,
                    signal: Some(9),
                    code: None,
                },
            );
        let h = history_of(&s);
        assert_eq!(h.in_flight_count(), 2, "a death alone closes nothing");
        assert_eq!(h.msg(0).map(|m| m.end), Some(MsgEnd::InFlight));

        s.lost(3, "s2", "s1");
        let h = history_of(&s);
        assert_eq!(h.in_flight_count(), 1, "only the message the bus lost");
        let lost_y = h.events.last().map(|e| e.y);
        let ack = h.msg(0).expect("ack");
        assert!(
            matches!(ack.end, MsgEnd::Lost { y, event: 4, reason, .. }
                if Some(y) == lost_y && &*h.name(reason) == "receiver died"),
            "closed where and why the bus said: {:?}",
            ack.end
        );
        assert_eq!(h.msg(1).map(|m| m.end), Some(MsgEnd::InFlight));
    }

    #[test]
    fn a_crash_greys_the_lane_until_the_restart() {
        let mut s = Script::default();
        s.ev(
            "s1",
            K::Crashed {
                pid: 4,
                cause: CrashCause::Command,
                req: None,
            },
        )
        .ev(
            "s1",
            K::ProcessExited {
                pid: 4,
                signal: Some(9),
                code: None,
            },
        )
        .ev(
            "s2",
            K::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "x".into(),
            },
        );
        let h = history_of(&s);
        assert_eq!(h.dead_spans().len(), 1, "crash + exit are one death");
        let d = &h.dead_spans()[0];
        assert_eq!(&*h.name(d.server), "s1");
        assert_eq!(d.to_y, None);
        s.ev(
            "s1",
            K::ProcessStarted {
                pid: 5,
                role: Role::Backup,
                port: 1,
            },
        );
        let h = history_of(&s);
        let restart_y = h.events.last().map(|e| e.y);
        assert_eq!(h.dead_spans()[0].to_y, restart_y);
    }

    #[test]
    fn a_pause_hatches_the_lane_until_resumed_and_a_death_ends_it() {
        let mut s = Script::default();
        s.ev("s1", K::Paused { pid: 4 })
            .ev("s1", K::Resumed { pid: 4 });
        let h = history_of(&s);
        let spans = h.dead_spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, SpanKind::Paused);
        assert_eq!(spans[0].to_y, Some(h.last_y()), "until the resume");
        assert!(matches!(
            h.event(0).map(|e| &e.kind),
            Some(Kind::Paused { pid: 4 })
        ));
        // Paused again, then killed while stopped: the pause ends where the death starts.
        s.ev("s1", K::Paused { pid: 4 }).ev(
            "s1",
            K::Crashed {
                pid: 4,
                cause: CrashCause::Command,
                req: None,
            },
        );
        let h = history_of(&s);
        let kinds: Vec<(SpanKind, bool)> = h
            .dead_spans()
            .iter()
            .map(|d| (d.kind, d.to_y.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                (SpanKind::Paused, true),
                (SpanKind::Paused, true),
                (SpanKind::Dead, false)
            ]
        );
        assert_eq!(h.dead_spans()[1].to_y, Some(h.dead_spans()[2].from_y));
    }

    #[test]
    fn a_dying_server_is_banded_until_it_dies_and_its_armed_point_is_kept() {
        let mut s = Script::default();
        s.ev(
            "s1",
            K::CrashArmed {
                point: Some(shared::CrashPoint::AfterForward),
                dying_ms: Some(1000),
            },
        )
        .ev(
            "s1",
            K::Dying {
                pid: 4,
                dies_in_ms: 1000,
                point: Some(shared::CrashPoint::AfterForward),
            },
        );
        let h = history_of(&s);
        assert!(matches!(
            h.event(0).map(|e| &e.kind),
            Some(Kind::Armed {
                point: shared::CrashPoint::AfterForward,
                dying_ms: Some(1000)
            })
        ));
        assert_eq!(h.dead_spans().len(), 1);
        assert_eq!(h.dead_spans()[0].kind, SpanKind::Dying);
        assert_eq!(h.dead_spans()[0].to_y, None);
        s.at(1_100_000).ev(
            "s1",
            K::Crashed {
                pid: 4,
                cause: CrashCause::Dying,
                req: None,
            },
        );
        let h = history_of(&s);
        let d: Vec<SpanKind> = h.dead_spans().iter().map(|d| d.kind).collect();
        assert_eq!(d, [SpanKind::Dying, SpanKind::Dead]);
        assert_eq!(h.dead_spans()[0].to_y, Some(h.last_y()));
        // crash_before_reply (no point) reads as before_reply.
        s.ev(
            "s2",
            K::CrashArmed {
                point: None,
                dying_ms: None,
            },
        );
        assert!(matches!(
            history_of(&s).events.last().map(|e| &e.kind),
            Some(Kind::Armed {
                point: shared::CrashPoint::BeforeReply,
                dying_ms: None
            })
        ));
    }

    #[test]
    fn a_crashed_client_lane_is_dead_until_its_next_incarnation_starts() {
        let mut s = Script::default();
        s.ev(
            "c1",
            K::ClientStarted {
                pid: 70,
                incarnation: 0,
            },
        )
        .ev(
            "c1",
            K::Crashed {
                pid: 70,
                cause: CrashCause::Command,
                req: None,
            },
        )
        .ev(
            "c1",
            K::ProcessExited {
                pid: 70,
                signal: Some(9),
                code: None,
            },
        );
        let h = history_of(&s);
        assert_eq!(h.dead_spans().len(), 1, "crash + exit are one death");
        assert_eq!(&*h.name(h.dead_spans()[0].server), "c1");
        assert!(h.clients_seen().eq([1]));
        assert!(
            h.failover.crashes.is_empty(),
            "a client's crash is no server's failover"
        );
        s.ev(
            "c1",
            K::ClientStarted {
                pid: 71,
                incarnation: 1,
            },
        );
        let h = history_of(&s);
        assert_eq!(h.dead_spans()[0].to_y, Some(h.last_y()));
        assert!(matches!(
            h.events.last().map(|e| &e.kind),
            Some(Kind::ClientStarted {
                pid: 71,
                incarnation: 1
            })
        ));
    }

    #[test]
    fn a_held_message_stays_in_flight_until_delivered() {
        let mut s = Script::default();
        s.sent(5, "c1", "s1", Script::request(1, 1))
            .held(5, "c1", "s1", Script::request(1, 1));
        let h = history_of(&s);
        assert_eq!(h.in_flight_count(), 1, "held is still in flight");
        assert!(
            matches!(h.msg(0).map(|m| m.end), Some(MsgEnd::Held { event: 1, .. })),
            "{:?}",
            h.msg(0)
        );
        assert!(matches!(
            h.event(1).map(|e| &e.kind),
            Some(Kind::Held { msg: Some(0), .. })
        ));
        s.delivered(5, "c1", "s1");
        let h = history_of(&s);
        assert_eq!(h.in_flight_count(), 0);
        assert!(matches!(
            h.msg(0).map(|m| m.end),
            Some(MsgEnd::Delivered { event: 2, .. })
        ));
    }

    #[test]
    fn a_duplicate_delivery_marks_the_message_delivered_twice() {
        let mut s = Script::default();
        s.sent(5, "s1", "s2", Script::request(1, 1))
            .delivered(5, "s1", "s2")
            .duplicate(5, "s1", "s2");
        let h = history_of(&s);
        let m = h.msg(0).expect("the message");
        assert!(matches!(m.end, MsgEnd::Delivered { event: 1, .. }));
        assert_eq!(m.dup, Some((2, h.last_y())));
        assert!(matches!(
            h.event(2).map(|e| &e.kind),
            Some(Kind::Delivered {
                msg: Some(0),
                duplicate: true,
                ..
            })
        ));
        // A duplicate of a message from before the history is kept as an event only.
        s.duplicate(99, "s1", "s2");
        let h = history_of(&s);
        assert!(matches!(
            h.events.last().map(|e| &e.kind),
            Some(Kind::Delivered { msg: None, .. })
        ));
    }

    #[test]
    fn a_fault_loss_keeps_its_reason_and_a_plan_change_is_its_own_kind() {
        let mut s = Script::default();
        s.sent(5, "c1", "s1", Script::request(1, 1))
            .lost_for(5, "c1", "s1", "partition")
            .ev(
                "supervisor",
                K::FaultsChanged {
                    plan: shared::FaultPlan::default(),
                    change: "heal".into(),
                },
            );
        let h = history_of(&s);
        assert!(
            matches!(h.msg(0).map(|m| m.end), Some(MsgEnd::Lost { reason, .. }) if &*h.name(reason) == "partition")
        );
        assert!(
            matches!(h.events.last().map(|e| &e.kind), Some(Kind::Faults { change }) if &*h.name(*change) == "heal")
        );
    }

    #[test]
    fn a_restarted_client_s_first_call_is_not_a_retry_of_its_predecessor_s() {
        let mut s = Script::default();
        s.sent(1, "c1", "s1", Script::request(1, 1));
        let mut next = Script::request(1, 1);
        if let Msg::Request { req, .. } = &mut next {
            req.incarnation = 1;
        }
        s.sent(2, "c1", "s1", next);
        let h = history_of(&s);
        let attempts: Vec<u32> = h.msgs.iter().map(|(_, m)| m.attempt).collect();
        assert_eq!(attempts, [1, 1]);
    }
}
