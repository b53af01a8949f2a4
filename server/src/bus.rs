//! The event bus: the one ordered log of a run, its bounded history, and the fan-out to viewers.
//!
//! Producers (node control readers, clerks, the supervisor) call [`Bus::publish`], which never
//! waits for a viewer: it takes a short lock, gives the event its `seq`, folds it into the
//! cluster picture ([`model::Cluster`], the same fold the page runs), appends it to the ring and
//! hands it to a broadcast channel. A viewer that falls behind the channel gets a fresh snapshot
//! from [`Bus::subscribe`], with the count of events it missed.
//!
//! The bus also keeps the log causal. A message's delivery is reported by its receiver and its
//! send by its sender, over different sockets; a delivery that overtakes its send is held back,
//! with every later event of the same producer, until the send arrives. And it knows which
//! messages are in flight, so when a receiver dies (or the cluster is reset) each of its
//! undelivered messages gets a `msg_lost`. The only other losses are the wire's (a fault at the
//! receiver's inbox), which the receiver reports itself; viewers draw a loss when, and only when,
//! a `msg_lost` says so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use shared::{ClientInfo, Event, EventKind, MsgId, NodeId, NodeInfo, SUPERVISOR};
use tokio::sync::broadcast;

use model::Cluster;

use crate::clock::RunClock;

/// Longest a delivery waits for its send to be reported before it is published anyway (sends
/// are reported before they are written, so a real one arrives within milliseconds).
const MAX_HOLD_US: u64 = 2_000_000;

/// One published event, serialised once for every viewer.
#[derive(Debug)]
pub struct Logged {
    pub seq: u64,
    pub json: Box<str>,
}

/// Sizes of the bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Events kept in the history ring.
    pub history: usize,
    /// Most events put in a snapshot.
    pub snapshot_events: usize,
    /// Events a viewer may be behind before it is resynchronised with a snapshot.
    pub viewer_buffer: usize,
    /// Messages remembered as in flight; beyond it the oldest is forgotten (it can no longer
    /// be marked lost when its receiver dies).
    pub max_in_flight: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            history: 100_000,
            snapshot_events: 20_000,
            viewer_buffer: 16_384,
            max_in_flight: 200_000,
        }
    }
}

#[derive(Debug)]
struct Flight {
    from: NodeId,
    to: NodeId,
}

#[derive(Debug)]
struct BusInner {
    next_seq: u64,
    ring: VecDeque<Arc<Logged>>,
    cluster: Cluster,
    in_flight: HashMap<MsgId, Flight>,
    /// `in_flight`'s ids in the order sent (ids already delivered are skipped lazily).
    in_flight_order: VecDeque<MsgId>,
    /// Per sender (the high 32 bits of a message id), the highest message number whose send is
    /// in the log. A process numbers its messages in the order it reports them, so a delivery
    /// at or below it never waits for its send, even when the send was forgotten.
    sent_upto: HashMap<u64, u64>,
    /// Events of a producer held back because its oldest is a delivery whose send has not been
    /// published yet; the rest wait behind it so the producer's own order is kept.
    held: HashMap<String, VecDeque<(u64, EventKind)>>,
    /// Unpublished send -> the producer whose held delivery waits for it.
    waiting_on: HashMap<MsgId, String>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Bus {
    inner: Mutex<BusInner>,
    tx: broadcast::Sender<Arc<Logged>>,
    clock: RunClock,
    cfg: BusConfig,
}

/// A viewer's starting point: the snapshot (JSON text) and the stream that continues it exactly.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: String,
    pub rx: broadcast::Receiver<Arc<Logged>>,
    /// The seq of the last event the snapshot covers (`next_seq - 1`).
    pub last_seq: u64,
}

#[derive(Serialize)]
struct SnapshotHead<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    nodes: Vec<NodeInfo>,
    clients: Vec<ClientInfo>,
    next_seq: u64,
    missed: u64,
    generation: u64,
    slow_motion_ms: u64,
    now_us: u64,
    faults: shared::FaultPlan,
    held: Vec<shared::HeldMsg>,
    verdicts: Vec<shared::LockVerdict>,
    #[serde(skip)]
    _p: std::marker::PhantomData<&'a ()>,
}

impl Bus {
    pub fn new(clock: RunClock, cfg: BusConfig) -> Arc<Self> {
        let (tx, _) = broadcast::channel(cfg.viewer_buffer.max(1));
        Arc::new(Self {
            inner: Mutex::new(BusInner {
                next_seq: 1,
                ring: VecDeque::with_capacity(cfg.history.min(1 << 16)),
                cluster: Cluster::default(),
                in_flight: HashMap::new(),
                in_flight_order: VecDeque::new(),
                sent_upto: HashMap::new(),
                held: HashMap::new(),
                waiting_on: HashMap::new(),
            }),
            tx,
            clock,
            cfg,
        })
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, BusInner> {
        // A panic while holding the lock would be a bug in this module; keep serving anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event that happened now.
    pub fn publish(&self, node: &str, kind: EventKind) {
        self.publish_at(node, self.clock.now_us(), kind);
    }

    /// Publishes an event stamped by its producer.
    pub fn publish_at(&self, node: &str, t_us: u64, kind: EventKind) {
        let mut inner = self.lock();
        self.publish_locked(&mut inner, node, t_us, kind);
    }

    /// Messages with this origin (the high bits of their ids) will be sent: their deliveries are
    /// ordered after their sends. A delivery from any other origin (a stranger's frame) is
    /// published as it comes, so it cannot hold its receiver's events back.
    pub fn expect_origin(&self, origin: u64) {
        self.lock().sent_upto.entry(origin).or_insert(0);
    }

    fn publish_locked(&self, inner: &mut BusInner, node: &str, t_us: u64, kind: EventKind) {
        if !inner.held.is_empty() {
            self.release_stale(inner, t_us);
        }
        if let Some(queue) = inner.held.get_mut(node) {
            queue.push_back((t_us, kind));
            return;
        }
        if let Some(msg_id) = Self::unmatched_delivery(inner, &kind) {
            inner.waiting_on.insert(msg_id, node.to_owned());
            inner
                .held
                .insert(node.to_owned(), VecDeque::from([(t_us, kind)]));
            return;
        }
        self.commit(inner, node, t_us, kind);
    }

    /// The message id of a receiver's word on a message (its delivery, its loss at the wire,
    /// step mode holding it) whose send is not in the log yet. The network's second copy of a
    /// duplicated message follows its first, which followed the send: it never waits.
    fn unmatched_delivery(inner: &BusInner, kind: &EventKind) -> Option<MsgId> {
        match kind {
            EventKind::MsgDelivered {
                duplicate: true, ..
            } => None,
            EventKind::MsgDelivered { msg_id, .. }
            | EventKind::MsgLost { msg_id, .. }
            | EventKind::MsgHeld { msg_id, .. }
                if !inner.in_flight.contains_key(msg_id)
                    && inner
                        .sent_upto
                        .get(&msg_id.origin())
                        .is_some_and(|upto| msg_id.number() > *upto) =>
            {
                Some(*msg_id)
            }
            _ => None,
        }
    }

    /// Gives up waiting for sends that did not come in [`MAX_HOLD_US`] (a forged or lost report):
    /// what their producers held back is published as it is.
    fn release_stale(&self, inner: &mut BusInner, now_us: u64) {
        let stale: Vec<String> = inner
            .held
            .iter()
            .filter(|(_, q)| {
                q.front()
                    .is_some_and(|(t, _)| t.saturating_add(MAX_HOLD_US) < now_us)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for producer in stale {
            inner.waiting_on.retain(|_, p| *p != producer);
            self.release(inner, &producer, true);
        }
    }

    /// Publishes what a producer held back, up to its next delivery that still waits (all of
    /// it when `force`: its sender is gone, so the send will never come).
    fn release(&self, inner: &mut BusInner, producer: &str, force: bool) {
        while let Some((t_us, kind)) = inner.held.get_mut(producer).and_then(VecDeque::pop_front) {
            if !force {
                if let Some(msg_id) = Self::unmatched_delivery(inner, &kind) {
                    inner.waiting_on.insert(msg_id, producer.to_owned());
                    if let Some(q) = inner.held.get_mut(producer) {
                        q.push_front((t_us, kind));
                    }
                    return;
                }
            }
            self.commit(inner, producer, t_us, kind);
        }
        inner.held.remove(producer);
    }

    fn commit(&self, inner: &mut BusInner, node: &str, t_us: u64, kind: EventKind) {
        let mut lost = None;
        let mut unblocks = None;
        match &kind {
            EventKind::MsgSent {
                msg_id, from, to, ..
            } => {
                self.remember_in_flight(
                    inner,
                    *msg_id,
                    Flight {
                        from: from.clone(),
                        to: to.clone(),
                    },
                );
                unblocks = inner.waiting_on.remove(msg_id);
                let dead = match to.client_id() {
                    // A client whose process is gone: its next process is a new identity on
                    // new connections, and will never receive this.
                    Some(c) => inner.cluster.client(c).is_some_and(|c| !c.alive),
                    None => inner.cluster.node(to).is_some_and(|n| !n.alive),
                };
                if unblocks.is_none() && dead {
                    // Lost now, and only now: it must not be lost again when `to` exits.
                    inner.in_flight.remove(msg_id);
                    lost = Some(EventKind::MsgLost {
                        msg_id: *msg_id,
                        from: from.clone(),
                        to: to.clone(),
                        reason: format!("{to} is dead"),
                    });
                }
            }
            EventKind::MsgDelivered { msg_id, .. } | EventKind::MsgLost { msg_id, .. } => {
                inner.in_flight.remove(msg_id);
            }
            _ => {}
        }
        self.append(inner, node, t_us, kind);
        if let Some(lost) = lost {
            let to = match &lost {
                EventKind::MsgLost { to, .. } => to.clone(),
                _ => unreachable!(),
            };
            self.append(inner, &to, t_us, lost);
        }
        if let Some(producer) = unblocks {
            self.release(inner, &producer, false);
        }
    }

    fn remember_in_flight(&self, inner: &mut BusInner, msg_id: MsgId, flight: Flight) {
        let upto = inner.sent_upto.entry(msg_id.origin()).or_insert(0);
        *upto = (*upto).max(msg_id.number());
        inner.in_flight.insert(msg_id, flight);
        inner.in_flight_order.push_back(msg_id);
        // Over the bound, forget the oldest message still in flight (never all of them: a
        // delivery whose send is forgotten would otherwise hold its producer back for good).
        while inner.in_flight.len() > self.cfg.max_in_flight.max(1) {
            match inner.in_flight_order.pop_front() {
                Some(old) => {
                    inner.in_flight.remove(&old);
                }
                None => break,
            }
        }
        while inner
            .in_flight_order
            .front()
            .is_some_and(|id| !inner.in_flight.contains_key(id))
        {
            inner.in_flight_order.pop_front();
        }
        if inner.in_flight_order.len() > 4 * self.cfg.max_in_flight.max(1) {
            let BusInner {
                in_flight,
                in_flight_order,
                ..
            } = inner;
            in_flight_order.retain(|id| in_flight.contains_key(id));
        }
    }

    fn append(&self, inner: &mut BusInner, node: &str, t_us: u64, kind: EventKind) {
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = Event {
            seq,
            t_us,
            node: node.into(),
            kind,
        };
        inner.cluster.apply(&event);
        let json = serde_json::to_string(&event)
            .expect("events always serialize")
            .into_boxed_str();
        let logged = Arc::new(Logged { seq, json });
        if inner.ring.len() >= self.cfg.history {
            inner.ring.pop_front();
        }
        inner.ring.push_back(logged.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(logged);
    }

    /// A process (server or client) is gone and its event stream fully read: publish its
    /// exit, and lose every message still on its way to it.
    pub fn node_exited(&self, id: &str, pid: u32, signal: Option<i32>, code: Option<i32>) {
        let now = self.clock.now_us();
        let mut inner = self.lock();
        // Its held events, and deliveries waiting for a send it never reported, cannot be
        // ordered any better now.
        let stuck: Vec<String> = inner
            .held
            .iter()
            .filter(|(producer, q)| {
                producer.as_str() == id
                    || matches!(
                        q.front(),
                        Some((
                            _,
                            EventKind::MsgDelivered { from, .. }
                                | EventKind::MsgLost { from, .. }
                                | EventKind::MsgHeld { from, .. }
                        )) if from == id
                    )
            })
            .map(|(p, _)| p.clone())
            .collect();
        for producer in stuck {
            self.release(&mut inner, &producer, true);
        }
        self.append(
            &mut inner,
            id,
            now,
            EventKind::ProcessExited { pid, signal, code },
        );
        let reason = format!("{id} died with it in its inbox");
        self.lose_in_flight(&mut inner, now, |f| f.to == id, &reason);
    }

    /// Marks the start of a new cluster: everything in flight is lost.
    pub fn cluster_reset(&self, generation: u64) {
        let now = self.clock.now_us();
        let mut inner = self.lock();
        let producers: Vec<String> = inner.held.keys().cloned().collect();
        for producer in producers {
            self.release(&mut inner, &producer, true);
        }
        inner.waiting_on.clear();
        self.lose_in_flight(&mut inner, now, |_| true, "cluster reset");
        self.append(
            &mut inner,
            SUPERVISOR,
            now,
            EventKind::ClusterReset { generation },
        );
    }

    fn lose_in_flight(
        &self,
        inner: &mut BusInner,
        now: u64,
        which: impl Fn(&Flight) -> bool,
        reason: &str,
    ) {
        let mut lost: Vec<(MsgId, Flight)> = inner
            .in_flight
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(m, f)| {
                (
                    *m,
                    Flight {
                        from: f.from.clone(),
                        to: f.to.clone(),
                    },
                )
            })
            .collect();
        lost.sort_by_key(|(m, _)| *m);
        for (msg_id, f) in lost {
            inner.in_flight.remove(&msg_id);
            let node = f.to.clone();
            self.append(
                inner,
                &node,
                now,
                EventKind::MsgLost {
                    msg_id,
                    from: f.from,
                    to: f.to,
                    reason: reason.to_owned(),
                },
            );
        }
    }

    /// Reads the cluster as the log says it is now (the state after the last published event).
    pub fn view<R>(&self, f: impl FnOnce(&Cluster) -> R) -> R {
        f(&self.lock().cluster)
    }

    /// A snapshot and the stream that continues it with no gap and no overlap.
    ///
    /// `seen_up_to` is the last seq the viewer already has (0 for none): events after it that
    /// the snapshot does not list are reported as `missed`.
    pub fn subscribe(&self, seen_up_to: u64) -> Subscription {
        // Under the lock only what must be consistent with the stream: the state, the events'
        // handles and the receiver. The text is written after the lock is released.
        let (head, events, rx, last_seq) = {
            let inner = self.lock();
            let rx = self.tx.subscribe();
            let take = inner.ring.len().min(self.cfg.snapshot_events);
            let events: Vec<Arc<Logged>> = inner
                .ring
                .iter()
                .skip(inner.ring.len() - take)
                .cloned()
                .collect();
            let first_listed = events.first().map_or(inner.next_seq, |l| l.seq);
            let missed = if seen_up_to == 0 {
                0
            } else {
                first_listed.saturating_sub(seen_up_to + 1)
            };
            let head = SnapshotHead {
                ty: "snapshot",
                nodes: inner.cluster.nodes(),
                clients: inner.cluster.clients(),
                next_seq: inner.next_seq,
                missed,
                generation: inner.cluster.generation(),
                slow_motion_ms: inner.cluster.slow_motion_ms(),
                now_us: self.clock.now_us(),
                faults: inner.cluster.faults().clone(),
                held: inner.cluster.held().to_vec(),
                verdicts: inner.cluster.verdicts().cloned().collect(),
                _p: std::marker::PhantomData,
            };
            (head, events, rx, inner.next_seq - 1)
        };
        let mut snapshot = serde_json::to_string(&head).expect("snapshot serializes");
        snapshot.pop(); // the closing brace: the events go in before it
        snapshot.push_str(",\"events\":[");
        join_events(&mut snapshot, events.iter());
        snapshot.push_str("]}");
        Subscription {
            snapshot,
            rx,
            last_seq,
        }
    }

    /// Everything the history ring holds, for a run file (`GET /run.jsonl`, `/run.shiviz`).
    /// Only the events' handles are copied under the lock (the ring holds them serialised
    /// already); the caller writes the file after the lock is released.
    pub fn run_log(&self) -> RunLog {
        let inner = self.lock();
        RunLog {
            events: inner.ring.iter().cloned().collect(),
            next_seq: inner.next_seq,
            generation: inner.cluster.generation(),
        }
    }

    /// The last `n` events of the history, oldest first (for tests and tools).
    pub fn recent(&self, n: usize) -> Vec<Arc<Logged>> {
        let inner = self.lock();
        let skip = inner.ring.len().saturating_sub(n);
        inner.ring.iter().skip(skip).cloned().collect()
    }
}

/// The history ring at one moment: see [`Bus::run_log`].
#[derive(Debug)]
pub struct RunLog {
    /// Consecutive by `seq`, oldest first.
    pub events: Vec<Arc<Logged>>,
    /// The `seq` the next event will carry.
    pub next_seq: u64,
    /// The cluster generation after the last of `events`.
    pub generation: u64,
}

/// Appends events as a JSON array body (no brackets).
pub fn join_events<'a>(out: &mut String, events: impl Iterator<Item = &'a Arc<Logged>>) {
    for (i, e) in events.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e.json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Msg, Op, RequestId, Role, ServerMsg, Snapshot};

    fn bus(cfg: BusConfig) -> Arc<Bus> {
        Bus::new(RunClock::start(), cfg)
    }

    fn sent(id: u64, to: &str) -> EventKind {
        EventKind::MsgSent {
            msg_id: MsgId(id),
            from: "s1".into(),
            to: to.into(),
            msg: Msg::ForwardAck {
                req: RequestId::new(1, 1),
                ok: true,
            },
        }
    }

    fn delivered(id: u64, to: &str) -> EventKind {
        EventKind::MsgDelivered {
            msg_id: MsgId(id),
            from: "s1".into(),
            to: to.into(),
            duplicate: false,
        }
    }

    fn events(bus: &Bus) -> Vec<Event> {
        bus.recent(usize::MAX)
            .iter()
            .map(|l| serde_json::from_str(&l.json).unwrap())
            .collect()
    }

    #[test]
    fn a_delivery_that_overtakes_its_send_is_ordered_after_it() {
        let b = bus(BusConfig::default());
        b.expect_origin(0);
        b.publish("s2", delivered(5, "s2"));
        assert!(b.recent(10).is_empty(), "held until its send is known");
        b.publish("s1", sent(5, "s2"));
        let evs = events(&b);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].kind.name(), "msg_sent");
        assert_eq!(evs[1].kind.name(), "msg_delivered");
        assert_eq!((evs[0].seq, evs[1].seq), (1, 2));
    }

    #[test]
    fn a_producer_s_later_events_wait_behind_its_held_delivery() {
        let b = bus(BusConfig::default());
        b.expect_origin(0);
        b.publish("c1", delivered(9, "c1"));
        b.publish("c1", EventKind::SlowMotionSet { delay_ms: 1 });
        b.publish("c2", EventKind::SlowMotionSet { delay_ms: 2 });
        assert_eq!(b.recent(10).len(), 1, "c2 is not held back by c1");
        b.publish("s1", sent(9, "c1"));
        let names: Vec<(String, &str)> = events(&b)
            .iter()
            .map(|e| (e.node.to_string(), e.kind.name()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("c2".to_owned(), "slow_motion_set"),
                ("s1".to_owned(), "msg_sent"),
                ("c1".to_owned(), "msg_delivered"),
                ("c1".to_owned(), "slow_motion_set"),
            ]
        );
    }

    fn at_wire(id: u64, kind: &str) -> EventKind {
        let (msg_id, from, to) = (MsgId(id), NodeId::from("s1"), NodeId::from("s2"));
        match kind {
            "lost" => EventKind::MsgLost {
                msg_id,
                from,
                to,
                reason: "partition".into(),
            },
            "held" => EventKind::MsgHeld {
                msg_id,
                from,
                to,
                msg: Msg::ForwardAck {
                    req: RequestId::new(1, 1),
                    ok: true,
                },
            },
            _ => EventKind::MsgDelivered {
                msg_id,
                from,
                to,
                duplicate: kind == "dup",
            },
        }
    }

    #[test]
    fn a_loss_or_a_hold_at_the_wire_waits_for_its_send_and_ends_or_keeps_the_flight() {
        for kind in ["lost", "held"] {
            let b = bus(BusConfig::default());
            b.expect_origin(0);
            b.publish("s2", at_wire(5, kind));
            assert!(
                b.recent(10).is_empty(),
                "{kind}: held until its send is known"
            );
            b.publish("s1", sent(5, "s2"));
            let names: Vec<&str> = events(&b).iter().map(|e| e.kind.name()).collect();
            assert_eq!(names, ["msg_sent", format!("msg_{kind}").as_str()]);
            let in_flight = b.lock().in_flight.contains_key(&MsgId(5));
            assert_eq!(in_flight, kind == "held", "{kind}: in flight afterwards");
        }
    }

    #[test]
    fn a_duplicate_delivery_passes_straight_through_and_is_never_lost_again() {
        let b = bus(BusConfig::default());
        b.expect_origin(0);
        b.publish("s1", sent(5, "s2"));
        b.publish("s2", at_wire(5, "delivered"));
        b.publish("s2", at_wire(5, "dup"));
        b.publish("s2", EventKind::SlowMotionSet { delay_ms: 3 });
        let evs = events(&b);
        let names: Vec<&str> = evs.iter().map(|e| e.kind.name()).collect();
        assert_eq!(
            names,
            [
                "msg_sent",
                "msg_delivered",
                "msg_delivered",
                "slow_motion_set"
            ]
        );
        assert!(matches!(
            evs[2].kind,
            EventKind::MsgDelivered {
                duplicate: true,
                ..
            }
        ));
        // Even a duplicate whose send the bus never saw is not held back.
        b.expect_origin(7);
        b.publish("s2", at_wire(7 << 32 | 1, "dup"));
        assert_eq!(events(&b).len(), 5);
        b.node_exited("s2", 1, Some(9), None);
        assert!(
            !events(&b).iter().any(|e| e.kind.name() == "msg_lost"),
            "delivered: nothing to lose"
        );
    }

    #[test]
    fn receiver_death_loses_its_in_flight_messages_only() {
        let b = bus(BusConfig::default());
        for (id, role) in [("s1", Role::Primary), ("s2", Role::Backup)] {
            b.publish(
                id,
                EventKind::ProcessStarted {
                    pid: 1,
                    role,
                    port: 1,
                },
            );
        }
        b.publish("s1", sent(1, "s2"));
        b.publish("s1", sent(2, "c1"));
        b.node_exited("s2", 1, Some(9), None);
        let evs = events(&b);
        let lost: Vec<_> = evs
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::MsgLost { msg_id, .. } => Some(msg_id.0),
                _ => None,
            })
            .collect();
        assert_eq!(lost, vec![1]);
        // A send to the dead node is lost at once.
        b.publish("c1", sent(3, "s2"));
        let last = events(&b).pop().unwrap();
        assert!(matches!(
            last.kind,
            EventKind::MsgLost {
                msg_id: MsgId(3),
                ..
            }
        ));
    }

    #[test]
    fn a_send_to_a_crashed_server_is_lost_at_once_and_only_once() {
        let b = bus(BusConfig::default());
        for (id, role, pid) in [("s1", Role::Primary, 1), ("s2", Role::Backup, 2)] {
            b.publish(id, EventKind::ProcessStarted { pid, role, port: 1 });
        }
        b.publish(
            "s2",
            EventKind::Crashed {
                pid: 2,
                cause: shared::CrashCause::Command,
                req: None,
            },
        );
        assert!(!b.view(|c| c.is_alive("s2")), "dead from its crash on");
        b.publish("s1", sent(1, "s2"));
        b.node_exited("s2", 2, Some(9), None);
        let names: Vec<&str> = events(&b).iter().map(|e| e.kind.name()).collect();
        assert_eq!(
            names,
            [
                "process_started",
                "process_started",
                "crashed",
                "msg_sent",
                "msg_lost",
                "process_exited"
            ],
            "lost when sent to the dead server, not again when it exits"
        );
    }

    #[test]
    fn history_is_bounded_and_snapshot_parses_as_the_shared_type() {
        let b = bus(BusConfig {
            history: 10,
            snapshot_events: 4,
            viewer_buffer: 8,
            ..BusConfig::default()
        });
        for i in 0..25 {
            b.publish(
                "c1",
                EventKind::OpInvoked {
                    client: 1,
                    req: RequestId::new(1, i),
                    op: Op::Lock,
                    lock: "a".into(),
                    tag: None,
                    server: "s1".into(),
                },
            );
        }
        assert_eq!(b.recent(usize::MAX).len(), 10);
        let sub = b.subscribe(3);
        let msg: ServerMsg = serde_json::from_str(&sub.snapshot).unwrap();
        let ServerMsg::Snapshot(snap) = msg else {
            panic!("not a snapshot");
        };
        let Snapshot {
            events,
            next_seq,
            missed,
            clients,
            ..
        } = *snap;
        assert_eq!(next_seq, 26);
        assert_eq!(events.first().unwrap().seq, 22);
        assert_eq!(missed, 22 - 4, "seen up to 3, listed from 22");
        assert_eq!(clients.len(), 1);
        assert_eq!(sub.last_seq, 25);
    }

    #[test]
    fn a_full_in_flight_table_never_freezes_a_producer() {
        // Sends from one process (origin 1) that are never delivered: replies to clerks that
        // hung up, say. Beyond the bound the oldest are forgotten, not the whole table.
        let b = bus(BusConfig {
            max_in_flight: 4,
            ..BusConfig::default()
        });
        let id = |n: u64| (1 << 32) | n;
        b.expect_origin(1);
        for n in 1..=6 {
            b.publish("s1", sent(id(n), "c1"));
        }
        // c1 reports the delivery of an old message, then goes on.
        b.publish("c1", delivered(id(1), "c1"));
        b.publish("c1", delivered(id(5), "c1"));
        b.publish("c1", EventKind::SlowMotionSet { delay_ms: 3 });
        let names: Vec<&str> = events(&b).iter().skip(6).map(|e| e.kind.name()).collect();
        assert_eq!(
            names,
            vec!["msg_delivered", "msg_delivered", "slow_motion_set"],
            "nothing of c1 is held back"
        );
        // A delivery whose send really is not in the log yet still waits for it.
        b.publish("c2", delivered(id(7), "c2"));
        assert_eq!(events(&b).len(), 9);
        b.publish("s1", sent(id(7), "c2"));
        assert_eq!(events(&b).len(), 11);
    }

    #[test]
    fn a_strangers_delivery_or_a_send_never_reported_holds_nothing_back_for_long() {
        let b = bus(BusConfig::default());
        b.expect_origin(1);
        // A frame forged by a stranger (an origin no process of the run has): published as is.
        b.publish_at("s1", 10, delivered(7, "s1"));
        b.publish_at("s1", 11, EventKind::SlowMotionSet { delay_ms: 1 });
        assert_eq!(events(&b).len(), 2, "nothing of s1 is held back");
        // A delivery of a real sender's message whose send is never reported: held, then
        // released once it is older than the longest wait.
        b.publish_at("s2", 100, delivered((1 << 32) | 5, "s2"));
        b.publish_at("s2", 101, EventKind::SlowMotionSet { delay_ms: 2 });
        assert_eq!(events(&b).len(), 2, "held while its send may still come");
        b.publish_at(
            "c1",
            100 + MAX_HOLD_US + 1,
            EventKind::SlowMotionSet { delay_ms: 3 },
        );
        let names: Vec<String> = events(&b).iter().map(|e| e.node.to_string()).collect();
        assert_eq!(names, vec!["s1", "s1", "s2", "s2", "c1"]);
    }

    #[test]
    fn stream_continues_the_snapshot_exactly() {
        let b = bus(BusConfig::default());
        b.publish("supervisor", EventKind::SlowMotionSet { delay_ms: 5 });
        let mut sub = b.subscribe(0);
        b.publish("supervisor", EventKind::SlowMotionSet { delay_ms: 6 });
        let next = sub.rx.try_recv().unwrap();
        assert_eq!(next.seq, sub.last_seq + 1);
    }
}
