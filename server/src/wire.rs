//! "The wire": what the network does to a message between its arrival at a receiver's socket and
//! the moment the receiver's state machine sees it. Shared by every inbox (a node's, a clerk's).
//!
//! Two parts, both sans-IO (the caller passes the time in):
//!
//! - [`decide`]: the fault plan's verdict on one message: lost (partition, cut, a link's drop
//!   chance), or passed on after an extra delay, possibly twice. Every random decision is a pure
//!   function of the seed, the sender, the message's number, the receiver and which decision it
//!   is (a SplitMix64 hash), so the same seed gives the same decisions for the same run, also
//!   across a reset (the message *number* counts the sender's messages from 1 in every
//!   generation; the id's origin bits do not).
//! - [`Wire`]: the inbox that carries out the verdicts. First every arrival waits out the
//!   slow-motion delay in its connection's order (a viewing aid: it keeps FIFO). Then a lost
//!   message is reported and discarded; in step mode a message is held until a person decides;
//!   otherwise it waits the link's delay plus jitter, which is drawn per message and NOT kept in
//!   connection order, so messages of one link overtake each other. A connection's end waits
//!   behind every message of that connection still in the inbox.
//!
//! The wire only decides and orders; the runtime reports (`msg_lost`, `msg_held`,
//! `msg_delivered`) and delivers what [`Wire::pop`] hands out, in that order.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use shared::{Envelope, FaultPlan, LinkRule, MsgId, NodeId, StepAction, ANY};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Why the network lost a message (the `reason` of its `msg_lost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Sender and receiver are in different groups of the partition.
    Partition,
    /// A one-way cut from the sender to the receiver.
    Cut,
    /// A link's drop chance, or step mode's `drop`.
    Dropped,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Partition => "partition",
            LossReason::Cut => "cut",
            LossReason::Dropped => "dropped",
        }
    }
}

/// The plan's verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Lose(LossReason),
    /// Deliver it after `delay` (beyond slow motion), twice if `duplicate`.
    Pass {
        delay: Duration,
        duplicate: bool,
    },
}

impl Verdict {
    const CLEAR: Verdict = Verdict::Pass {
        delay: Duration::ZERO,
        duplicate: false,
    };
}

/// Which random decision a draw is for: each has its own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Decision {
    Drop = 1,
    Duplicate = 2,
    Jitter = 3,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: a name's hash that is the same in every process and every run.
fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The random draw for one decision about one message: a pure function of its inputs.
pub fn draw(seed: u64, from: &str, msg_id: MsgId, to: &str, which: Decision) -> u64 {
    let mut h = splitmix64(seed);
    h = splitmix64(h ^ name_hash(from));
    h = splitmix64(h ^ msg_id.number());
    h = splitmix64(h ^ name_hash(to));
    splitmix64(h ^ which as u64)
}

/// A draw as a number in [0, 1): `chance(..) < p` is true with probability `p` (never for 0,
/// always for 1).
fn chance(seed: u64, from: &str, msg_id: MsgId, to: &str, which: Decision) -> f64 {
    (draw(seed, from, msg_id, to, which) >> 11) as f64 / (1u64 << 53) as f64
}

fn names(pattern: &str, who: &str) -> bool {
    pattern == ANY || pattern == who
}

/// The setting for messages from `from` to `to`: (A, B), then (A, `*`), then (`*`, B), then
/// (`*`, `*`).
pub fn link_rule<'p>(plan: &'p FaultPlan, from: &str, to: &str) -> Option<&'p LinkRule> {
    [(from, to), (from, ANY), (ANY, to), (ANY, ANY)]
        .into_iter()
        .find_map(|(f, t)| plan.links.iter().find(|r| r.from == f && r.to == t))
}

/// The partition group a process is in, if it is named in one.
fn group_of(plan: &FaultPlan, who: &str) -> Option<usize> {
    plan.partition
        .iter()
        .position(|g| g.iter().any(|m| m == who))
        .or_else(|| {
            plan.partition
                .iter()
                .position(|g| g.iter().any(|m| m == ANY))
        })
}

/// Whether the partition keeps `from`'s messages from `to` (both named, in different groups).
pub fn partitioned(plan: &FaultPlan, from: &str, to: &str) -> bool {
    matches!((group_of(plan, from), group_of(plan, to)), (Some(a), Some(b)) if a != b)
}

/// The plan's verdict on message `msg_id` from `from` arriving at `to`. Partitions and cuts
/// lose messages in step mode too; a link's chances and delays do not apply in step mode (the
/// person decides instead).
pub fn decide(plan: &FaultPlan, from: &str, to: &str, msg_id: MsgId) -> Verdict {
    if partitioned(plan, from, to) {
        return Verdict::Lose(LossReason::Partition);
    }
    if plan
        .cuts
        .iter()
        .any(|c| names(&c.from, from) && names(&c.to, to))
    {
        return Verdict::Lose(LossReason::Cut);
    }
    if plan.step {
        return Verdict::CLEAR;
    }
    let Some(rule) = link_rule(plan, from, to) else {
        return Verdict::CLEAR;
    };
    let seed = plan.seed;
    if chance(seed, from, msg_id, to, Decision::Drop) < rule.drop.0 {
        return Verdict::Lose(LossReason::Dropped);
    }
    let duplicate = chance(seed, from, msg_id, to, Decision::Duplicate) < rule.duplicate.0;
    let jitter = match rule.jitter_ms {
        0 => 0,
        j => draw(seed, from, msg_id, to, Decision::Jitter) % (j + 1),
    };
    Verdict::Pass {
        delay: Duration::from_millis(rule.delay_ms.saturating_add(jitter)),
        duplicate,
    }
}

/// What arrived on a connection: a frame, or its end.
#[derive(Debug)]
pub enum Arrival {
    Frame(Envelope),
    Closed(String),
}

/// What the runtime must do next, in this order.
#[derive(Debug)]
pub enum WireOut<K> {
    /// Report `msg_delivered` (with `duplicate` for the second copy) and hand it over.
    Deliver {
        conn: K,
        env: Envelope,
        duplicate: bool,
    },
    /// Report `msg_lost` with the reason, and discard it.
    Lost { env: Envelope, reason: LossReason },
    /// Report `msg_held`: step mode keeps it until [`Wire::step`] names it.
    Held { env: Envelope },
    /// The connection ended (after every message it brought).
    Closed { conn: K, reason: String },
}

/// A person's decision about a message held in an inbox, and who to tell how it went
/// (`Err`: this inbox does not hold it). The supervisor sends it to an in-process clerk; a
/// process gets the same as `NodeControl::Step`.
#[derive(Debug)]
pub struct StepOrder {
    pub msg_id: MsgId,
    pub action: StepAction,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// Something waiting for its time, ordered by due time then arrival.
#[derive(Debug)]
struct Timed<T> {
    due: Instant,
    n: u64,
    item: T,
}

impl<T> PartialEq for Timed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.n) == (other.due, other.n)
    }
}
impl<T> Eq for Timed<T> {}
impl<T> PartialOrd for Timed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timed<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: reverse to pop the earliest.
        (other.due, other.n).cmp(&(self.due, self.n))
    }
}

#[derive(Debug)]
struct Slowed<K> {
    conn: K,
    item: Arrival,
    verdict: Verdict,
}

#[derive(Debug)]
struct Frame<K> {
    conn: K,
    env: Envelope,
    duplicate: bool,
}

/// A receiver's inbox. See the module docs. `K` names a connection.
#[derive(Debug)]
pub struct Wire<K> {
    me: NodeId,
    plan: Arc<FaultPlan>,
    /// Slow motion for arrivals from now on.
    delay: Duration,
    slowed: BinaryHeap<Timed<Slowed<K>>>,
    /// Per connection, the due time of its last arrival in `slowed` (FIFO under slow motion).
    last_due: HashMap<K, Instant>,
    /// Frames waiting out a link's delay: not in connection order.
    delayed: BinaryHeap<Timed<Frame<K>>>,
    /// Frames step mode holds, in arrival order.
    held: Vec<Frame<K>>,
    /// Per connection, its frames in `delayed` or `held`.
    pending: HashMap<K, usize>,
    /// Ends of connections that wait for their pending frames.
    closing: HashMap<K, String>,
    ready: VecDeque<WireOut<K>>,
    n: u64,
}

impl<K: Copy + Eq + Hash> Wire<K> {
    pub fn new(me: NodeId, plan: Arc<FaultPlan>, delay: Duration) -> Self {
        Self {
            me,
            plan,
            delay,
            slowed: BinaryHeap::new(),
            last_due: HashMap::new(),
            delayed: BinaryHeap::new(),
            held: Vec::new(),
            pending: HashMap::new(),
            closing: HashMap::new(),
            ready: VecDeque::new(),
            n: 0,
        }
    }

    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// The slow-motion delay for arrivals from now on.
    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// The plan for arrivals from now on. When step mode ends, every held frame goes on at once,
    /// in arrival order.
    pub fn set_plan(&mut self, plan: Arc<FaultPlan>) {
        let released = self.plan.step && !plan.step;
        self.plan = plan;
        if released {
            for frame in std::mem::take(&mut self.held) {
                self.hand_over(frame);
            }
        }
    }

    /// Messages step mode holds now, oldest first.
    pub fn held(&self) -> impl Iterator<Item = &Envelope> {
        self.held.iter().map(|h| &h.env)
    }

    /// A frame arrived on `conn` at `at`: judged by the plan now in force.
    pub fn push(&mut self, conn: K, at: Instant, env: Envelope) {
        let verdict = decide(&self.plan, &env.from, &self.me, env.msg_id);
        self.slow(conn, at + self.delay, Arrival::Frame(env), verdict);
    }

    /// `conn` ended at `at`: heard after everything it brought.
    pub fn push_closed(&mut self, conn: K, at: Instant, reason: String) {
        self.slow(conn, at, Arrival::Closed(reason), Verdict::CLEAR);
        // Nothing follows a connection's end.
        self.last_due.remove(&conn);
    }

    fn slow(&mut self, conn: K, due: Instant, item: Arrival, verdict: Verdict) {
        let due = match self.last_due.get(&conn) {
            Some(prev) => due.max(*prev),
            None => due,
        };
        self.last_due.insert(conn, due);
        self.n += 1;
        self.slowed.push(Timed {
            due,
            n: self.n,
            item: Slowed {
                conn,
                item,
                verdict,
            },
        });
    }

    /// Step mode: carries out a person's decision about the held message `msg_id`.
    pub fn step(&mut self, msg_id: MsgId, action: StepAction) -> Result<(), String> {
        let Some(i) = self.held.iter().position(|h| h.env.msg_id == msg_id) else {
            return Err(format!("{} holds no message {msg_id}", self.me));
        };
        let mut frame = self.held.remove(i);
        match action {
            StepAction::Deliver => frame.duplicate = false,
            StepAction::Duplicate => frame.duplicate = true,
            StepAction::Drop => {
                self.ready.push_back(WireOut::Lost {
                    env: frame.env,
                    reason: LossReason::Dropped,
                });
                self.settled(frame.conn);
                return Ok(());
            }
        }
        self.hand_over(frame);
        Ok(())
    }

    /// When [`Wire::pop`] next has something, if it has nothing now.
    pub fn next_due(&self) -> Option<Instant> {
        let slowed = self.slowed.peek().map(|t| t.due);
        let delayed = self.delayed.peek().map(|t| t.due);
        match (slowed, delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing to do, if any is due at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<WireOut<K>> {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some(out);
            }
            let slowed = self.slowed.peek().map(|t| (t.due, t.n));
            let delayed = self.delayed.peek().map(|t| (t.due, t.n));
            let from_slowed = match (slowed, delayed) {
                (Some(s), Some(d)) => s <= d,
                (s, _) => s.is_some(),
            };
            if from_slowed {
                let t = self.slowed.pop_if_due(now)?;
                self.after_slow_motion(t);
            } else {
                let t = self.delayed.pop_if_due(now)?;
                if let Some(n) = self.pending.get_mut(&t.item.conn) {
                    *n -= 1;
                }
                self.judged(t.item);
            }
        }
    }

    /// A frame that waited out slow motion meets its verdict.
    fn after_slow_motion(&mut self, t: Timed<Slowed<K>>) {
        let Slowed {
            conn,
            item,
            verdict,
        } = t.item;
        let env = match item {
            Arrival::Closed(reason) => {
                if self.pending.get(&conn).is_some_and(|n| *n > 0) {
                    self.closing.insert(conn, reason);
                } else {
                    self.pending.remove(&conn);
                    self.ready.push_back(WireOut::Closed { conn, reason });
                }
                return;
            }
            Arrival::Frame(env) => env,
        };
        match verdict {
            Verdict::Lose(reason) => self.ready.push_back(WireOut::Lost { env, reason }),
            Verdict::Pass { delay, duplicate } => {
                let frame = Frame {
                    conn,
                    env,
                    duplicate,
                };
                if delay.is_zero() {
                    self.judged(frame);
                } else {
                    *self.pending.entry(conn).or_default() += 1;
                    self.n += 1;
                    self.delayed.push(Timed {
                        due: t.due + delay,
                        n: self.n,
                        item: frame,
                    });
                }
            }
        }
    }

    /// A frame the network passes on: held in step mode, else handed over.
    fn judged(&mut self, frame: Frame<K>) {
        if self.plan.step {
            *self.pending.entry(frame.conn).or_default() += 1;
            self.ready.push_back(WireOut::Held {
                env: frame.env.clone(),
            });
            self.held.push(Frame {
                duplicate: false,
                ..frame
            });
        } else {
            self.deliver(frame);
            self.settle_if_closing();
        }
    }

    /// A held frame goes on (its `pending` count ends).
    fn hand_over(&mut self, frame: Frame<K>) {
        let conn = frame.conn;
        self.deliver(frame);
        self.settled(conn);
    }

    fn deliver(&mut self, frame: Frame<K>) {
        let Frame {
            conn,
            env,
            duplicate,
        } = frame;
        if duplicate {
            self.ready.push_back(WireOut::Deliver {
                conn,
                env: env.clone(),
                duplicate: false,
            });
            self.ready.push_back(WireOut::Deliver {
                conn,
                env,
                duplicate: true,
            });
        } else {
            self.ready.push_back(WireOut::Deliver {
                conn,
                env,
                duplicate: false,
            });
        }
    }

    /// One of `conn`'s pending frames left the inbox: its end may follow now.
    fn settled(&mut self, conn: K) {
        if let Some(n) = self.pending.get_mut(&conn) {
            *n = n.saturating_sub(1);
        }
        self.settle_if_closing();
    }

    fn settle_if_closing(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let done: Vec<K> = self
            .closing
            .keys()
            .filter(|c| self.pending.get(*c).is_none_or(|n| *n == 0))
            .copied()
            .collect();
        for conn in done {
            self.pending.remove(&conn);
            if let Some(reason) = self.closing.remove(&conn) {
                self.ready.push_back(WireOut::Closed { conn, reason });
            }
        }
    }
}

trait PopIfDue<T> {
    fn pop_if_due(&mut self, now: Instant) -> Option<Timed<T>>;
}

impl<T> PopIfDue<T> for BinaryHeap<Timed<T>> {
    fn pop_if_due(&mut self, now: Instant) -> Option<Timed<T>> {
        if self.peek()?.due <= now {
            self.pop()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Cut, Msg, Op, Probability, RequestId};

    const MS: Duration = Duration::from_millis(1);

    fn rule(from: &str, to: &str, drop: f64, dup: f64, delay: u64, jitter: u64) -> LinkRule {
        LinkRule {
            from: from.into(),
            to: to.into(),
            drop: Probability(drop),
            duplicate: Probability(dup),
            delay_ms: delay,
            jitter_ms: jitter,
        }
    }

    fn plan_with(links: Vec<LinkRule>) -> FaultPlan {
        FaultPlan {
            seed: 7,
            links,
            ..FaultPlan::default()
        }
    }

    fn env_from(from: &str, n: u64) -> Envelope {
        Envelope {
            msg_id: MsgId::new(3, n),
            from: from.into(),
            msg: Msg::Request {
                req: RequestId::new(1, n),
                op: Op::Lock,
                lock: "a".into(),
            },
        }
    }

    fn id(n: u64) -> MsgId {
        MsgId::new(3, n)
    }

    fn pass(delay_ms: u64, duplicate: bool) -> Verdict {
        Verdict::Pass {
            delay: Duration::from_millis(delay_ms),
            duplicate,
        }
    }

    #[test]
    fn the_most_specific_link_setting_applies() {
        let plan = plan_with(vec![
            rule("*", "*", 0.0, 0.0, 4, 0),
            rule("*", "s2", 0.0, 0.0, 3, 0),
            rule("s1", "*", 0.0, 0.0, 2, 0),
            rule("s1", "s2", 0.0, 0.0, 1, 0),
        ]);
        assert_eq!(decide(&plan, "s1", "s2", id(1)), pass(1, false), "(A, B)");
        assert_eq!(decide(&plan, "s1", "c1", id(1)), pass(2, false), "(A, *)");
        assert_eq!(decide(&plan, "c1", "s2", id(1)), pass(3, false), "(*, B)");
        assert_eq!(decide(&plan, "c1", "s1", id(1)), pass(4, false), "(*, *)");
        // (A, *) wins over (*, B), whatever the order of the rules.
        let mut reversed = plan.clone();
        reversed.links.reverse();
        assert_eq!(decide(&reversed, "s1", "s2", id(1)), pass(1, false));
        reversed.links.retain(|r| !(r.from == "s1" && r.to == "s2"));
        assert_eq!(decide(&reversed, "s1", "s2", id(1)), pass(2, false));
        // A more specific rule with no faults still wins: it cancels the general one.
        let quiet = plan_with(vec![
            rule("*", "*", 1.0, 0.0, 0, 0),
            rule("c1", "s1", 0.0, 0.0, 0, 0),
        ]);
        assert_eq!(decide(&quiet, "c1", "s1", id(9)), pass(0, false));
        assert_eq!(
            decide(&quiet, "c2", "s1", id(9)),
            Verdict::Lose(LossReason::Dropped)
        );
        assert_eq!(
            decide(&FaultPlan::default(), "c1", "s1", id(1)),
            pass(0, false)
        );
    }

    #[test]
    fn a_partition_stops_exactly_the_links_between_its_groups_both_ways() {
        let plan = FaultPlan {
            partition: vec![
                vec!["s1".into(), "c1".into()],
                vec!["s2".into(), "c2".into()],
            ],
            ..FaultPlan::default()
        };
        let lost = Verdict::Lose(LossReason::Partition);
        for (from, to) in [("s1", "s2"), ("s2", "s1"), ("c2", "s1"), ("s1", "c2")] {
            assert_eq!(decide(&plan, from, to, id(1)), lost, "{from} -> {to}");
        }
        for (from, to) in [("c1", "s1"), ("s1", "c1"), ("c2", "s2"), ("s2", "c2")] {
            assert_eq!(
                decide(&plan, from, to, id(1)),
                pass(0, false),
                "{from} -> {to}"
            );
        }
        // A process in no group reaches everyone, and everyone reaches it.
        for other in ["s1", "s2", "c1", "c2"] {
            assert_eq!(decide(&plan, "c3", other, id(1)), pass(0, false));
            assert_eq!(decide(&plan, other, "c3", id(1)), pass(0, false));
        }
    }

    #[test]
    fn a_cut_is_one_way() {
        let plan = FaultPlan {
            cuts: vec![Cut {
                from: "s1".into(),
                to: "s2".into(),
            }],
            ..FaultPlan::default()
        };
        assert_eq!(
            decide(&plan, "s1", "s2", id(1)),
            Verdict::Lose(LossReason::Cut)
        );
        assert_eq!(decide(&plan, "s2", "s1", id(1)), pass(0, false));
        assert_eq!(decide(&plan, "c1", "s2", id(1)), pass(0, false));
        let everyone_to_s2 = FaultPlan {
            cuts: vec![Cut {
                from: ANY.into(),
                to: "s2".into(),
            }],
            ..FaultPlan::default()
        };
        assert_eq!(
            decide(&everyone_to_s2, "c1", "s2", id(1)),
            Verdict::Lose(LossReason::Cut)
        );
        assert_eq!(decide(&everyone_to_s2, "s2", "c1", id(1)), pass(0, false));
    }

    fn verdicts(plan: &FaultPlan, n: u64) -> Vec<Verdict> {
        (1..=n)
            .map(|i| decide(plan, "c1", "s1", MsgId::new(i % 5 + 1, i)))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_decisions_and_another_seed_others() {
        let mut plan = plan_with(vec![rule("*", "*", 0.3, 0.3, 10, 50)]);
        let first = verdicts(&plan, 1000);
        assert_eq!(first, verdicts(&plan.clone(), 1000));
        // The id's origin bits (a new process after a reset) do not change a decision.
        for n in 1..200 {
            assert_eq!(
                decide(&plan, "c1", "s1", MsgId::new(1, n)),
                decide(&plan, "c1", "s1", MsgId::new(9, n))
            );
        }
        plan.seed = 8;
        let other = verdicts(&plan, 1000);
        let same = first.iter().zip(&other).filter(|(a, b)| a == b).count();
        assert!(
            same < 500,
            "another seed, other decisions: {same} of 1000 equal"
        );
        // Each decision has its own stream, and so do the sender and the receiver.
        let d = |which| draw(7, "c1", id(5), "s1", which);
        assert_ne!(d(Decision::Drop), d(Decision::Duplicate));
        assert_ne!(d(Decision::Drop), d(Decision::Jitter));
        assert_ne!(
            draw(7, "c1", id(5), "s1", Decision::Drop),
            draw(7, "c1", id(5), "s2", Decision::Drop)
        );
        assert_ne!(
            draw(7, "c1", id(5), "s1", Decision::Drop),
            draw(7, "c2", id(5), "s1", Decision::Drop)
        );
    }

    #[test]
    fn frequencies_follow_the_probabilities_and_jitter_stays_in_range() {
        let plan = plan_with(vec![rule("*", "*", 0.3, 0.1, 50, 20)]);
        let all = verdicts(&plan, 10_000);
        let dropped = all
            .iter()
            .filter(|v| **v == Verdict::Lose(LossReason::Dropped))
            .count();
        assert!(
            (2700..=3300).contains(&dropped),
            "dropped {dropped} of 10000"
        );
        let passed: Vec<(Duration, bool)> = all
            .iter()
            .filter_map(|v| match v {
                Verdict::Pass { delay, duplicate } => Some((*delay, *duplicate)),
                _ => None,
            })
            .collect();
        let dups = passed.iter().filter(|(_, d)| *d).count() as f64 / passed.len() as f64;
        assert!((0.08..=0.12).contains(&dups), "duplicated {dups}");
        let delays: Vec<u64> = passed.iter().map(|(d, _)| d.as_millis() as u64).collect();
        assert!(delays.iter().all(|d| (50..=70).contains(d)), "{delays:?}");
        assert_eq!(delays.iter().min(), Some(&50));
        assert_eq!(delays.iter().max(), Some(&70));
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((58.0..=62.0).contains(&mean), "mean delay {mean}");
    }

    #[test]
    fn probability_zero_never_and_one_always() {
        let never = plan_with(vec![rule("*", "*", 0.0, 0.0, 0, 0)]);
        assert!(verdicts(&never, 10_000)
            .iter()
            .all(|v| *v == pass(0, false)));
        let always_dup = plan_with(vec![rule("*", "*", 0.0, 1.0, 0, 0)]);
        assert!(verdicts(&always_dup, 10_000)
            .iter()
            .all(|v| *v == pass(0, true)));
        let always_drop = plan_with(vec![rule("*", "*", 1.0, 1.0, 0, 0)]);
        assert!(verdicts(&always_drop, 10_000)
            .iter()
            .all(|v| *v == Verdict::Lose(LossReason::Dropped)));
    }

    #[test]
    fn step_mode_sets_the_links_aside_but_not_partitions_and_cuts() {
        let mut plan = plan_with(vec![rule("*", "*", 1.0, 0.0, 0, 0)]);
        plan.step = true;
        assert_eq!(decide(&plan, "c1", "s1", id(1)), pass(0, false));
        plan.cuts.push(Cut {
            from: "c1".into(),
            to: "s1".into(),
        });
        assert_eq!(
            decide(&plan, "c1", "s1", id(1)),
            Verdict::Lose(LossReason::Cut)
        );
    }

    // ----- the inbox -----

    fn wire(plan: FaultPlan, delay: Duration) -> Wire<u64> {
        Wire::new("s1".into(), Arc::new(plan), delay)
    }

    /// What the inbox hands out by `at`, as short strings: `d7` delivered, `D7` the duplicate
    /// copy, `l7:reason` lost, `h7` held, `x1` connection 1 ended.
    fn drain(w: &mut Wire<u64>, at: Instant) -> Vec<String> {
        std::iter::from_fn(|| w.pop(at))
            .map(|o| match o {
                WireOut::Deliver {
                    env,
                    duplicate: false,
                    ..
                } => format!("d{}", env.msg_id.number()),
                WireOut::Deliver { env, .. } => format!("D{}", env.msg_id.number()),
                WireOut::Lost { env, reason } => {
                    format!("l{}:{}", env.msg_id.number(), reason.as_str())
                }
                WireOut::Held { env } => format!("h{}", env.msg_id.number()),
                WireOut::Closed { conn, .. } => format!("x{conn}"),
            })
            .collect()
    }

    #[test]
    fn slow_motion_keeps_connection_order_even_when_the_delay_falls() {
        let t0 = Instant::now();
        let mut w = wire(FaultPlan::default(), 500 * MS);
        w.push(1, t0, env_from("c1", 1));
        w.set_delay(Duration::ZERO);
        w.push(1, t0 + 10 * MS, env_from("c1", 2));
        w.push(2, t0 + 10 * MS, env_from("c1", 3));
        assert_eq!(drain(&mut w, t0 + 100 * MS), ["d3"]);
        assert_eq!(w.next_due(), Some(t0 + 500 * MS));
        assert_eq!(drain(&mut w, t0 + 500 * MS), ["d1", "d2"]);
        assert!(w.next_due().is_none());
    }

    #[test]
    fn a_connections_end_waits_behind_its_frames() {
        let t0 = Instant::now();
        let mut w = wire(FaultPlan::default(), 500 * MS);
        w.push(1, t0, env_from("c1", 1));
        w.push_closed(1, t0 + 5 * MS, "closed".into());
        assert!(drain(&mut w, t0 + 100 * MS).is_empty());
        assert_eq!(drain(&mut w, t0 + MS * 1000), ["d1", "x1"]);
        assert!(w.last_due.is_empty(), "a closed connection is forgotten");
        assert!(w.pending.is_empty() && w.closing.is_empty());
    }

    #[test]
    fn link_delays_reorder_a_connections_frames_and_the_end_waits_for_them() {
        let plan = plan_with(vec![rule("c1", "s1", 0.0, 0.0, 10, 200)]);
        // Two message numbers whose jitter puts the first well behind the second.
        let delay = |n: u64| match decide(&plan, "c1", "s1", id(n)) {
            Verdict::Pass { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        let (a, b) = (1..100)
            .flat_map(|a| (1..100).map(move |b| (a, b)))
            .find(|(a, b)| delay(*a) > delay(*b) + 20 * MS)
            .expect("jitter spreads");
        let t0 = Instant::now();
        let mut w = wire(plan, Duration::ZERO);
        w.push(1, t0, env_from("c1", a));
        w.push(1, t0 + MS, env_from("c1", b));
        w.push_closed(1, t0 + 2 * MS, "closed".into());
        let all = drain(&mut w, t0 + MS * 1000);
        assert_eq!(all, [format!("d{b}"), format!("d{a}"), "x1".to_string()]);
    }

    #[test]
    fn a_drop_is_reported_lost_and_a_duplicate_is_delivered_twice() {
        let t0 = Instant::now();
        let plan = plan_with(vec![
            rule("c1", "s1", 1.0, 0.0, 0, 0),
            rule("c2", "s1", 0.0, 1.0, 0, 0),
        ]);
        let mut w = wire(plan, Duration::ZERO);
        w.push(1, t0, env_from("c1", 1));
        w.push(2, t0, env_from("c2", 2));
        assert_eq!(drain(&mut w, t0), ["l1:dropped", "d2", "D2"]);
    }

    #[test]
    fn a_new_plan_judges_arrivals_from_then_on() {
        let t0 = Instant::now();
        let mut w = wire(FaultPlan::default(), 100 * MS);
        w.push(1, t0, env_from("c1", 1));
        w.set_plan(Arc::new(plan_with(vec![rule("*", "*", 1.0, 0.0, 0, 0)])));
        w.push(1, t0, env_from("c1", 2));
        assert_eq!(drain(&mut w, t0 + 100 * MS), ["d1", "l2:dropped"]);
    }

    #[test]
    fn step_mode_holds_everything_until_a_decision_and_releases_in_order_when_off() {
        let t0 = Instant::now();
        let stepping = FaultPlan {
            step: true,
            ..plan_with(vec![rule("*", "*", 1.0, 0.0, 0, 0)])
        };
        let mut w = wire(stepping.clone(), Duration::ZERO);
        for (conn, n) in [(1, 1), (2, 2), (1, 3), (1, 4), (2, 5)] {
            w.push(conn, t0, env_from("c1", n));
        }
        w.push_closed(1, t0, "closed".into());
        assert_eq!(drain(&mut w, t0), ["h1", "h2", "h3", "h4", "h5"]);
        assert_eq!(
            w.held().map(|e| e.msg_id.number()).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        // Exactly the chosen message moves.
        w.step(id(3), StepAction::Deliver).unwrap();
        assert_eq!(drain(&mut w, t0), ["d3"]);
        w.step(id(2), StepAction::Duplicate).unwrap();
        assert_eq!(drain(&mut w, t0), ["d2", "D2"]);
        w.step(id(4), StepAction::Drop).unwrap();
        assert_eq!(drain(&mut w, t0), ["l4:dropped"]);
        assert!(
            w.step(id(4), StepAction::Deliver).is_err(),
            "decided already"
        );
        assert!(w.step(id(99), StepAction::Deliver).is_err(), "never held");
        // Still held: 1 (conn 1, whose end waits behind it) and 5. Step off releases both, in
        // arrival order, then the end; the link's drop applies to arrivals from then on only.
        w.set_plan(Arc::new(FaultPlan {
            step: false,
            ..stepping
        }));
        assert_eq!(drain(&mut w, t0), ["d1", "x1", "d5"]);
        assert_eq!(w.held().count(), 0);
        w.push(2, t0, env_from("c1", 6));
        assert_eq!(drain(&mut w, t0), ["l6:dropped"]);
    }

    #[test]
    fn step_mode_holds_frames_whose_link_delay_ends_while_it_is_on() {
        let t0 = Instant::now();
        let plan = plan_with(vec![rule("*", "*", 0.0, 0.0, 100, 0)]);
        let mut w = wire(plan.clone(), Duration::ZERO);
        w.push(1, t0, env_from("c1", 1));
        assert!(drain(&mut w, t0).is_empty());
        w.set_plan(Arc::new(FaultPlan { step: true, ..plan }));
        assert_eq!(drain(&mut w, t0 + 100 * MS), ["h1"]);
    }
}
