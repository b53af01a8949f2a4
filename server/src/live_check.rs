//! The live checker: the clients' history checked for linearizability while the cluster runs,
//! each changed verdict published as a `verdict` event at node `"checker"`.
//!
//! - **Never in the way.** The bus hands every event the checker wants
//!   ([`checker::Monitor::wants`], and every `cluster_reset`) to a [`Tap`] while it publishes:
//!   the handle of the JSON it serialised anyway goes into an unbounded channel (a reference
//!   count and a queue push under the bus's lock, never a wait); the checker's thread reads it
//!   back. The [`checker::Monitor`] runs on that thread, so a search never takes a node's, a
//!   clerk's or the gateway's time.
//! - **Bounded, and honest when full.** At most [`MAX_QUEUED`] events wait for the checker.
//!   Beyond that the tap drops them, counts them, and tells the checker where the gap is (a
//!   [`Fed::Missed`] before the next event it passes). A history with a gap cannot be
//!   judged: every lock of that generation gets `unknown`, saying how many events were missed,
//!   never `ok`, until a reset starts a new history. A `cluster_reset` always passes, so the
//!   checker always knows where a generation begins.
//! - **Debounced.** While calls arrive the checker observes them as they come and checks at
//!   most every [`DEBOUNCE`]; a burst of calls is one check. A verdict is published when its
//!   status, calls at fault or explanation change; one whose count of calls alone changed, at
//!   most every [`COUNT_REFRESH`] (while calls arrive), so counts stay fresh without an event
//!   per call.
//! - **Per generation.** A verdict is published only if the bus is still in the generation
//!   the checker judged (checked under the bus's lock): a verdict computed just before a
//!   reset never lands in the new generation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use checker::{Budget, Monitor};
use shared::{Event, EventKind, LockVerdict, VerdictStatus};

use crate::bus::{Bus, Logged};

/// The node name of the checker's events.
pub const CHECKER: &str = "checker";

/// Shortest time between two checks while events arrive.
pub const DEBOUNCE: Duration = Duration::from_millis(75);

/// A verdict whose count of calls alone changed is published again at most this often.
pub const COUNT_REFRESH: Duration = Duration::from_secs(1);

/// Events waiting for the checker at most (each keeps the 64 KiB chunk its text was cut from,
/// so a checker far behind can hold a few times more memory than its events); beyond it they are missed,
/// and said to be.
pub const MAX_QUEUED: usize = 200_000;

/// What the tap passes to the checker's thread, in the bus's order.
#[derive(Debug)]
pub enum Fed {
    /// A wanted event, as the bus serialised it (its handle: nothing is copied under the lock).
    Event(Arc<Logged>),
    /// This many wanted events were dropped here because the checker was [`MAX_QUEUED`] behind.
    Missed(u64),
}

/// What the checker takes in: [`Fed`] with the event read back.
#[derive(Debug)]
pub enum Tapped {
    Event(Box<Event>),
    Missed(u64),
}

/// The bus's end of the checker's channel; called under the bus's lock for every event.
#[derive(Debug)]
pub struct Tap {
    tx: mpsc::Sender<Fed>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// Dropped since the last event passed.
    missed: u64,
    /// The generation the bus is in (the last `cluster_reset` offered).
    generation: u64,
    /// 1 + the last generation in which an event was dropped (0: none): the checker reads it at
    /// once, without waiting to reach the gap's marker in its queue.
    dropping: Arc<AtomicU64>,
}

impl Tap {
    /// The bus's generation when the tap is attached.
    pub fn begin(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// `kind` is the event `logged` holds.
    pub fn offer(&mut self, kind: &EventKind, logged: &Arc<Logged>) {
        let reset = matches!(kind, EventKind::ClusterReset { .. });
        if !reset && !Monitor::wants(kind) {
            return;
        }
        if let EventKind::ClusterReset { generation } = kind {
            self.generation = *generation;
        }
        if !reset && self.queued.load(Ordering::Relaxed) >= self.max_queued {
            self.missed += 1;
            self.dropping.store(self.generation + 1, Ordering::Relaxed);
            return;
        }
        if self.missed > 0 {
            // A closed channel (the checker is gone) is not the bus's problem.
            let _ = self.tx.send(Fed::Missed(self.missed));
            self.missed = 0;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Fed::Event(logged.clone()));
    }
}

/// Reads a fed event back. The bus wrote it from an [`Event`], so this fails only on a bug in
/// `shared`'s serde; then the event counts as missed (the history has a gap), never as absent.
fn read_back(fed: Fed) -> Tapped {
    match fed {
        Fed::Missed(n) => Tapped::Missed(n),
        Fed::Event(logged) => match serde_json::from_str::<Event>(logged.text()) {
            Ok(e) => Tapped::Event(Box::new(e)),
            Err(e) => {
                tracing::error!("event #{} does not read back: {e}", logged.seq);
                Tapped::Missed(1)
            }
        },
    }
}

/// The checker's side: a [`Monitor`] and what it has published, for one generation at a time.
#[derive(Debug)]
pub struct Live {
    monitor: Monitor,
    budget: Budget,
    generation: u64,
    /// Why this generation cannot be judged (events were missed), if so.
    blind: Option<String>,
    missed: u64,
    /// Locks called while blind, and the verdicts published for them.
    blind_locks: BTreeSet<String>,
    published: BTreeMap<String, LockVerdict>,
    /// Something was observed since the last check.
    dirty: bool,
}

impl Live {
    pub fn new(budget: Budget, generation: u64) -> Self {
        Self {
            monitor: Monitor::new(budget),
            budget,
            generation,
            blind: None,
            missed: 0,
            blind_locks: BTreeSet::new(),
            published: BTreeMap::new(),
            dirty: false,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Takes one message of the tap.
    pub fn handle(&mut self, msg: Tapped) {
        match msg {
            Tapped::Event(e) => {
                if let EventKind::ClusterReset { generation } = e.kind {
                    *self = Live::new(self.budget, generation);
                    // The monitor folds the reset too (its own generation and clock).
                    self.monitor.observe(&e);
                    return;
                }
                if self.blind.is_some() {
                    if let EventKind::OpInvoked { lock, .. } = &e.kind {
                        self.blind_locks.insert(lock.clone());
                        self.dirty = true;
                    }
                    return;
                }
                self.monitor.observe(&e);
                self.dirty = true;
            }
            Tapped::Missed(n) => {
                self.missed += n;
                self.go_blind(format!(
                    "the checker fell behind the cluster and missed {} events of this generation's history, so it cannot judge it; verdicts start again after a reset",
                    self.missed
                ));
            }
        }
    }

    /// The tap has begun dropping events of this generation (`dropping` as [`Tap`] keeps it):
    /// its history has a gap, so nothing of it can be judged any more, whatever the checker,
    /// still working through the events queued before the gap, has found so far. Without this
    /// the verdicts stayed `ok` until the checker reached the gap, minutes later on a hot lock.
    pub fn note_dropping(&mut self, dropping: &AtomicU64) {
        if self.blind.is_none() && dropping.load(Ordering::Relaxed) == self.generation + 1 {
            self.go_blind(format!(
                "the checker fell behind the cluster and missed events of this generation's history (more than {MAX_QUEUED} were waiting), so it cannot judge it; verdicts start again after a reset"
            ));
        }
    }

    fn go_blind(&mut self, why: String) {
        self.blind = Some(why);
        self.blind_locks
            .extend(self.monitor.verdicts().map(|v| v.lock.clone()));
        self.blind_locks.extend(self.published.keys().cloned());
        self.dirty = true;
    }

    /// A lock's count of calls is newer than the one last published for it.
    pub fn counts_stale(&self) -> bool {
        self.blind.is_none()
            && self.monitor.verdicts().any(|v| {
                self.published
                    .get(&v.lock)
                    .is_some_and(|p| p.calls != v.calls)
            })
    }

    /// Checks what arrived and returns the verdicts to publish: those whose status, calls at
    /// fault or explanation changed, and with `refresh_counts` also those whose count of calls
    /// alone did (so the snapshot's counts stay close, without an event per call).
    pub fn check(&mut self, refresh_counts: bool) -> Vec<LockVerdict> {
        self.dirty = false;
        let changed = match &self.blind {
            None => {
                let mut changed = self.monitor.check();
                if refresh_counts {
                    for v in self.monitor.verdicts() {
                        let stale = self
                            .published
                            .get(&v.lock)
                            .is_some_and(|p| p.calls != v.calls);
                        if stale && !changed.iter().any(|c| c.lock == v.lock) {
                            changed.push(v.clone());
                        }
                    }
                }
                changed
            }
            Some(reason) => self
                .blind_locks
                .iter()
                .map(|lock| LockVerdict {
                    lock: lock.clone(),
                    status: VerdictStatus::Unknown,
                    ops: vec![],
                    explanation: reason.clone(),
                    calls: self.published.get(lock).map_or(0, |v| v.calls),
                })
                .collect(),
        };
        let mut out = Vec::new();
        for v in changed {
            if self.published.get(&v.lock) != Some(&v) {
                self.published.insert(v.lock.clone(), v.clone());
                out.push(v);
            }
        }
        out
    }
}

/// Starts the checker on a thread of its own, fed by the bus. It stops when the bus is gone.
pub fn spawn(bus: &Arc<Bus>, budget: Budget) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let dropping = Arc::new(AtomicU64::new(0));
    let tap = Tap {
        tx,
        queued: queued.clone(),
        max_queued: MAX_QUEUED,
        missed: 0,
        generation: 0,
        dropping: dropping.clone(),
    };
    let generation = bus.attach_checker(tap);
    let bus = Arc::downgrade(bus);
    std::thread::Builder::new()
        .name("checker".into())
        .spawn(move || run(bus, rx, queued, dropping, Live::new(budget, generation)))
}

/// Messages taken from the tap between two looks at the clock, so a steady stream of events
/// cannot put a check off.
const DRAIN: usize = 10_000;

fn run(
    bus: Weak<Bus>,
    rx: mpsc::Receiver<Fed>,
    queued: Arc<AtomicUsize>,
    dropping: Arc<AtomicU64>,
    mut live: Live,
) {
    let mut next_check = Instant::now();
    let mut next_refresh = Instant::now();
    // A count changed but was not published yet (no refresh was due at the last check).
    let mut counts_pending = false;
    loop {
        let wake = if live.dirty() {
            Some(next_check)
        } else if counts_pending {
            Some(next_refresh.max(next_check))
        } else {
            None
        };
        let first = match wake {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        // Take what is there already, in order, before deciding to check.
        let ready = std::iter::from_fn(|| rx.try_recv().ok()).take(DRAIN);
        for fed in first.into_iter().chain(ready) {
            if matches!(fed, Fed::Event(_)) {
                queued.fetch_sub(1, Ordering::Relaxed);
            }
            live.handle(read_back(fed));
        }
        live.note_dropping(&dropping);
        let now = Instant::now();
        let refresh_due = now >= next_refresh;
        let due = now >= next_check && (live.dirty() || (counts_pending && refresh_due));
        if !due {
            continue;
        }
        if refresh_due {
            next_refresh = now + COUNT_REFRESH;
        }
        let verdicts = live.check(refresh_due);
        counts_pending = !refresh_due && live.counts_stale();
        next_check = now + DEBOUNCE;
        if verdicts.is_empty() {
            continue;
        }
        let Some(bus) = bus.upgrade() else {
            return;
        };
        for v in verdicts {
            bus.publish_verdict(live.generation(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{NodeId, Op, RequestId};

    fn ev(seq: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq * 1000,
            node: NodeId::new(node),
            kind,
        }
    }

    fn invoked(seq: u64, client: u32, n: u64, lock: &str) -> Event {
        ev(
            seq,
            &format!("c{client}"),
            EventKind::OpInvoked {
                client,
                req: RequestId::new(client, n),
                op: Op::Lock,
                lock: lock.into(),
                tag: None,
                server: "s1".into(),
            },
        )
    }

    fn completed(seq: u64, client: u32, n: u64, lock: &str, ok: bool, server: &str) -> Event {
        ev(
            seq,
            &format!("c{client}"),
            EventKind::OpCompleted {
                client,
                op: Op::Lock,
                lock: lock.into(),
                tag: None,
                ok,
                req: RequestId::new(client, n),
                server: server.into(),
                latency_us: 1,
                attempts: 1,
            },
        )
    }

    /// Offers `e` to `tap` as the bus would, written as an object.
    fn offer_to(tap: &mut Tap, e: Event) {
        let json = serde_json::to_string(&e).unwrap();
        tap.offer(
            &e.kind,
            &Arc::new(Logged::object(e.seq, json, crate::bus::LoadTag::Always)),
        );
    }

    fn tap(max_queued: usize) -> (Tap, mpsc::Receiver<Fed>) {
        let (tx, rx) = mpsc::channel();
        (
            Tap {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                max_queued,
                missed: 0,
                generation: 0,
                dropping: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    #[test]
    fn the_tap_passes_wanted_events_only_and_says_where_it_dropped_some() {
        let (mut tap, rx) = tap(2);
        let mut offer = |e: Event| offer_to(&mut tap, e);
        offer(ev(1, "s1", EventKind::SlowMotionSet { delay_ms: 1 }));
        offer(invoked(2, 1, 1, "a"));
        offer(invoked(3, 2, 1, "a"));
        // The checker has not taken anything: the next two are dropped, the reset is not.
        offer(invoked(4, 3, 1, "a"));
        offer(invoked(5, 4, 1, "a"));
        offer(ev(
            6,
            "supervisor",
            EventKind::ClusterReset { generation: 1 },
        ));
        let got: Vec<String> = rx
            .try_iter()
            .map(|m| match read_back(m) {
                Tapped::Event(e) => format!("#{}", e.seq),
                Tapped::Missed(n) => format!("missed {n}"),
            })
            .collect();
        assert_eq!(got, ["#2", "#3", "missed 2", "#6"]);
    }

    /// Found with a hot lock under the load generator at full speed: the checker fell ever
    /// further behind, the tap dropped events, and the verdict stayed `ok` for about 100 s,
    /// until the checker worked through the 200,000 events queued before the gap.
    #[test]
    fn verdicts_turn_unknown_when_the_tap_drops_not_when_the_checker_reaches_the_gap() {
        let (mut tap, rx) = tap(2);
        let (queued, dropping) = (tap.queued.clone(), tap.dropping.clone());
        let mut offer = |e: Event| offer_to(&mut tap, e);
        let mut live = Live::new(Budget::default(), 0);
        let take = |live: &mut Live, n: usize| {
            for m in rx.try_iter().take(n) {
                if matches!(m, Fed::Event(_)) {
                    queued.fetch_sub(1, Ordering::Relaxed);
                }
                live.handle(read_back(m));
            }
        };
        offer(invoked(1, 1, 1, "a"));
        offer(completed(2, 1, 1, "a", true, "s1"));
        // The checker is two behind: the next two are dropped.
        offer(invoked(3, 2, 1, "a"));
        offer(completed(4, 2, 1, "a", true, "s2"));
        take(&mut live, 2);
        live.note_dropping(&dropping);
        let v = live.check(true);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].status, VerdictStatus::Unknown, "{v:?}");
        assert!(
            v[0].explanation.starts_with(
                "the checker fell behind the cluster and missed events of this generation's history (more than"
            ),
            "{}",
            v[0].explanation
        );
        // A reset starts over: the drop of the old generation does not blind the new one.
        offer(ev(
            5,
            "supervisor",
            EventKind::ClusterReset { generation: 1 },
        ));
        take(&mut live, 2);
        assert_eq!(live.generation(), 1);
        offer(invoked(6, 1, 2, "b"));
        offer(completed(7, 1, 2, "b", true, "s1"));
        take(&mut live, 2);
        live.note_dropping(&dropping);
        let v = live.check(true);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].lock.as_str(), v[0].status), ("b", VerdictStatus::Ok));
    }

    #[test]
    fn a_gap_makes_every_lock_unknown_until_a_reset() {
        let mut live = Live::new(Budget::default(), 0);
        for e in [invoked(1, 1, 1, "a"), completed(2, 1, 1, "a", true, "s1")] {
            live.handle(Tapped::Event(Box::new(e)));
        }
        let first = live.check(true);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].status, VerdictStatus::Ok, "{first:?}");
        assert!(
            live.check(true).is_empty(),
            "nothing changed: nothing to publish"
        );

        live.handle(Tapped::Missed(7));
        live.handle(Tapped::Event(Box::new(invoked(10, 2, 1, "b"))));
        let blind = live.check(true);
        let locks: Vec<(&str, VerdictStatus)> =
            blind.iter().map(|v| (v.lock.as_str(), v.status)).collect();
        assert_eq!(
            locks,
            [("a", VerdictStatus::Unknown), ("b", VerdictStatus::Unknown)]
        );
        assert!(
            blind[0].explanation.contains("missed 7 events"),
            "{blind:?}"
        );
        // Even a double grant is not judged on a history with a gap.
        live.handle(Tapped::Event(Box::new(completed(
            11, 2, 1, "b", true, "s2",
        ))));
        assert!(live
            .check(true)
            .iter()
            .all(|v| v.status == VerdictStatus::Unknown));

        live.handle(Tapped::Event(Box::new(ev(
            12,
            "supervisor",
            EventKind::ClusterReset { generation: 3 },
        ))));
        assert_eq!(live.generation(), 3);
        for e in [invoked(13, 1, 2, "a"), completed(14, 1, 2, "a", true, "s1")] {
            live.handle(Tapped::Event(Box::new(e)));
        }
        let fresh = live.check(true);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].status, VerdictStatus::Ok, "{fresh:?}");
    }

    #[test]
    fn a_double_grant_is_a_violation() {
        let mut live = Live::new(Budget::default(), 0);
        for e in [
            invoked(1, 1, 1, "z"),
            completed(2, 1, 1, "z", true, "s2"),
            invoked(3, 2, 1, "z"),
            completed(4, 2, 1, "z", true, "s1"),
        ] {
            live.handle(Tapped::Event(Box::new(e)));
        }
        let v = live.check(true);
        let last = v.last().expect("a verdict");
        assert_eq!(last.status, VerdictStatus::Violation, "{v:?}");
        assert_eq!(last.ops.len(), 2);
    }

    #[test]
    fn a_count_alone_is_published_only_when_counts_are_refreshed() {
        let mut live = Live::new(Budget::default(), 0);
        for e in [invoked(1, 1, 1, "a"), completed(2, 1, 1, "a", true, "s1")] {
            live.handle(Tapped::Event(Box::new(e)));
        }
        assert_eq!(live.check(false)[0].calls, 1);
        let unlock = |seq, n| {
            let mut e = invoked(seq, 1, n, "a");
            if let EventKind::OpInvoked { op, .. } = &mut e.kind {
                *op = Op::Unlock;
            }
            e
        };
        live.handle(Tapped::Event(Box::new(unlock(3, 2))));
        let mut done = completed(4, 1, 2, "a", true, "s1");
        if let EventKind::OpCompleted { op, .. } = &mut done.kind {
            *op = Op::Unlock;
        }
        live.handle(Tapped::Event(Box::new(done)));
        assert!(live.check(false).is_empty(), "still ok: nothing new to say");
        assert!(live.counts_stale(), "2 calls, 1 published");
        live.handle(Tapped::Event(Box::new(invoked(5, 2, 1, "a"))));
        let refreshed = live.check(true);
        assert_eq!(refreshed.len(), 1, "{refreshed:?}");
        assert_eq!(refreshed[0].status, VerdictStatus::Ok);
        assert!(refreshed[0].calls >= 2, "{refreshed:?}");
        assert!(!live.counts_stale());
    }

    /// Numbers for the docs: `cargo test --release -p server --lib live_check::tests::cost --
    /// --ignored --nocapture`. Calls published onto a bus as fast as one thread can, with and
    /// without the checker attached: the publisher's cost per event, and how far behind the
    /// checker falls.
    #[test]
    #[ignore]
    fn cost_on_the_bus() {
        use crate::bus::BusConfig;
        use crate::clock::RunClock;
        const CALLS: u64 = 100_000;
        // 0: no checker; 1: the tap only, nobody reading (its own cost under the lock);
        // 2: the tap and the checker's thread.
        for attach in [0, 1, 2] {
            let bus = Bus::new(RunClock::start(), BusConfig::default());
            let mut queued = None;
            let mut unread = None;
            let mut handle = None;
            if attach > 0 {
                let (tx, rx) = mpsc::channel();
                let q = Arc::new(AtomicUsize::new(0));
                queued = Some(q.clone());
                let tap = Tap {
                    tx,
                    queued: q.clone(),
                    max_queued: usize::MAX,
                    missed: 0,
                    generation: 0,
                    dropping: Arc::new(AtomicU64::new(0)),
                };
                let generation = bus.attach_checker(tap);
                let weak = Arc::downgrade(&bus);
                if attach == 1 {
                    unread = Some(rx);
                } else {
                    handle = Some(std::thread::spawn(move || {
                        let dropping = Arc::new(AtomicU64::new(0));
                        run(
                            weak,
                            rx,
                            q,
                            dropping,
                            Live::new(Budget::default(), generation),
                        )
                    }));
                }
            }
            let mut most_queued = 0;
            let t = std::time::Instant::now();
            for i in 0..CALLS {
                let client = (i % 16) as u32 + 1;
                let lock = format!("l{}", i % 16);
                let req = RequestId::new(client, i);
                let op = if (i / 16) % 2 == 0 {
                    Op::Lock
                } else {
                    Op::Unlock
                };
                bus.publish(
                    "c1",
                    EventKind::OpInvoked {
                        client,
                        req,
                        op,
                        lock: lock.clone(),
                        tag: None,
                        server: "s1".into(),
                    },
                );
                bus.publish(
                    "c1",
                    EventKind::OpCompleted {
                        client,
                        op,
                        lock,
                        tag: None,
                        ok: true,
                        req,
                        server: "s1".into(),
                        latency_us: 1,
                        attempts: 1,
                    },
                );
                if let Some(q) = &queued {
                    most_queued = most_queued.max(q.load(Ordering::Relaxed));
                }
            }
            let took = t.elapsed();
            let t = std::time::Instant::now();
            if let (Some(q), None) = (&queued, &unread) {
                while q.load(Ordering::Relaxed) > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let drained = t.elapsed();
            let verdicts = bus.view(|c| {
                c.verdicts()
                    .filter(|v| v.status == VerdictStatus::Ok)
                    .count()
            });
            eprintln!(
                "mode {attach}: {} events published in {took:?} ({:.2} us each); most queued {most_queued}; drained {drained:?} after; ok verdicts in the model: {verdicts}",
                2 * CALLS,
                took.as_secs_f64() * 1e6 / (2 * CALLS) as f64
            );
            drop((handle, unread));
        }
    }
}
