//! The Lab 1 lock client ("clerk") as a sans-IO state machine.
//!
//! [`Clerk`] decides; it opens no socket, sets no timer and reads no clock (every input carries
//! the time). It makes one call at a time: it sends the request to the primary; if the primary
//! refuses the connection, closes it, or does not answer in time, it re-sends the *same* request
//! (same id) to the backup and stays with it; with nobody further to turn to, it pauses and tries
//! again, and gives the call up after a while. It learns of failures only the way a real client
//! would, from its own sockets: never from the supervisor.
//!
//! Two rules beyond the seed, both about not blaming a server for what is not its fault:
//! - a *local* resource error (out of file descriptors, ports, memory) is not a server failure:
//!   the clerk pauses and tries the same server again;
//! - slow motion stretches the wait for a reply by the largest delay in force while the request
//!   travelled ([`SlowMotion`]), re-read at every tick, so changing it never causes a failover.
//!
//! `clerk_runtime.rs` runs it on real sockets and timers; the tests below run it on plain values
//! with made-up times.

use std::time::Duration;

use shared::{client_node, EventKind, NodeId, Op, RequestId, Variant};
use tokio::time::Instant;

use crate::slowmo::SlowMotion;

/// Timing of a clerk. Each wait also allows the slow-motion holds on its way.
#[derive(Debug, Clone)]
pub struct ClerkTiming {
    /// Wait for a reply before calling the server dead (plus a slow-motion hold for each inbox
    /// the call can wait in, see `REPLY_HOPS`). Longer than the primary's wait for its
    /// backup's ack (1.5 s) plus a hop: when the backup goes silent, the primary gives up on it
    /// and answers before the clerk gives up on the primary, rather than both serving alone.
    pub reply_timeout: Duration,
    pub connect_timeout: Duration,
    /// Give the call up when no server answered for this long (plus 8 holds).
    pub give_up_after: Duration,
    /// Pause before trying again once there is no other server to turn to.
    pub retry_pause: Duration,
}

impl Default for ClerkTiming {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_millis(2500),
            connect_timeout: Duration::from_millis(1000),
            give_up_after: Duration::from_secs(8),
            retry_pause: Duration::from_millis(250),
        }
    }
}

/// Slow-motion holds a reply can take: its request's, then everything the primary allows its
/// forward and the backup's ack (`node::ACK_HOPS`), then its own. Fewer, and under slow motion a
/// silent backup would make the clerk give up on the primary just before the primary gave up on
/// the backup and answered: both would then serve alone.
const REPLY_HOPS: u32 = crate::node::ACK_HOPS + 2;
/// Holds allowed for a whole call before it is given up.
const GIVE_UP_HOPS: u32 = 8;

/// The time of an input, on both clocks: the runtime's (for waits) and the run's (for events).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub us: u64,
}

/// How an attempt at a server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server refused, closed, or did not answer: turn to the next one.
    Server(String),
    /// Our own side ran out of something (descriptors, ports): not the server's fault.
    Local(String),
}

/// How a call ended, as its caller learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered(bool),
    GaveUp,
}

/// What the clerk wants done. Events are published in the order they come.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Event(EventKind),
    /// Send the request to `servers[server]`, connecting first if there is no connection.
    Send {
        server: usize,
        req: RequestId,
        op: Op,
        lock: String,
    },
    /// Close and forget the connection to `servers[server]`: it failed this call.
    Disconnect {
        server: usize,
    },
    /// The call is over.
    Done(Outcome),
}

/// A call can't start: one at a time, as in Lab 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client {0} already has a call outstanding (one at a time, as in Lab 1)")]
pub struct Busy(pub u32);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// The request went to `servers[current]` at `since`; its reply is awaited.
    Waiting { since: Instant },
    /// Nobody further to turn to (or a local error): send again at `until`.
    Pausing { until: Instant },
}

#[derive(Debug)]
struct Call {
    /// The call's identity: its `op_invoked`, `op_completed`, `op_failed` name it.
    req: RequestId,
    /// The id the request carries on the wire: `req`, except in the broken `new-id-on-retry`.
    sent: RequestId,
    op: Op,
    lock: String,
    tag: Option<String>,
    invoked: Now,
    /// Sends so far (1 = no retry).
    attempts: u32,
    stage: Stage,
}

/// One Lab 1 clerk. See the module docs.
#[derive(Debug)]
pub struct Clerk {
    id: u32,
    name: NodeId,
    /// Failover order: the primary first.
    servers: Vec<NodeId>,
    current: usize,
    seq: u64,
    /// Which process of this client lane runs the clerk: part of every request id it makes.
    incarnation: u32,
    timing: ClerkTiming,
    slow_motion: SlowMotion,
    call: Option<Call>,
    /// A deliberately broken protocol (`--variant`); only `new-id-on-retry` is the clerk's.
    variant: Option<Variant>,
}

impl Clerk {
    pub(crate) fn new(
        id: u32,
        servers: Vec<NodeId>,
        timing: ClerkTiming,
        slow_motion: SlowMotion,
    ) -> Self {
        Self {
            id,
            name: client_node(id),
            servers,
            current: 0,
            seq: 0,
            incarnation: 0,
            timing,
            slow_motion,
            call: None,
            variant: None,
        }
    }

    /// Runs the deliberately broken protocol `variant` (`None`: the correct one).
    pub(crate) fn with_variant(mut self, variant: Option<Variant>) -> Self {
        self.variant = variant;
        self
    }

    /// The clerk of a client lane's process number `incarnation` (0 for the first): a new
    /// identity, so its request ids never meet the at-most-once records of an earlier life.
    pub(crate) fn with_incarnation(mut self, incarnation: u32) -> Self {
        self.incarnation = incarnation;
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[cfg(test)]
    pub(crate) fn is_busy(&self) -> bool {
        self.call.is_some()
    }

    /// When [`Clerk::on_tick`] has something to do, if ever.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let call = self.call.as_ref()?;
        Some(match call.stage {
            Stage::Waiting { since } => {
                self.slow_motion
                    .deadline(since, self.timing.reply_timeout, REPLY_HOPS)
            }
            Stage::Pausing { until } => until,
        })
    }

    /// Starts a call.
    pub(crate) fn invoke(
        &mut self,
        op: Op,
        lock: &str,
        tag: Option<String>,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<RequestId, Busy> {
        if self.call.is_some() {
            return Err(Busy(self.id));
        }
        self.seq += 1;
        let req = RequestId {
            client: self.id,
            seq: self.seq,
            incarnation: self.incarnation,
        };
        out.push(Output::Event(EventKind::OpInvoked {
            client: self.id,
            req,
            op,
            lock: lock.to_owned(),
            tag: tag.clone(),
            server: self.servers[self.current].clone(),
        }));
        self.call = Some(Call {
            req,
            sent: req,
            op,
            lock: lock.to_owned(),
            tag,
            invoked: now,
            attempts: 0,
            stage: Stage::Waiting { since: now.at },
        });
        self.send(now, out);
        Ok(req)
    }

    fn send(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        call.attempts += 1;
        call.stage = Stage::Waiting { since: now.at };
        out.push(Output::Send {
            server: self.current,
            req: call.sent,
            op: call.op,
            lock: call.lock.clone(),
        });
    }

    /// The slow-motion delay changed.
    #[cfg(test)]
    pub(crate) fn set_slow_motion(&mut self, delay: Duration, now: Instant) {
        self.slow_motion.set(delay, now);
    }

    /// The supervisor's history of slow-motion changes replaces the clerk's.
    pub(crate) fn follow_slow_motion(&mut self, history: SlowMotion) {
        self.slow_motion = history;
    }

    /// Step mode on or off: while it is on no wait of the clerk expires, and a wait from before
    /// counts from its end ([`SlowMotion::set_frozen`]).
    pub(crate) fn follow_step(&mut self, on: bool, now: Instant) {
        self.slow_motion.set_frozen(on, now);
    }

    /// `servers[server]` answered `req` with `ok`.
    pub(crate) fn on_reply(
        &mut self,
        server: usize,
        req: RequestId,
        ok: bool,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let answers_this_call = self.call.as_ref().is_some_and(|c| c.sent == req);
        if !answers_this_call {
            // A late answer to an earlier call, or to one given up: delivered, and ignored.
            return;
        }
        let Some(call) = self.call.take() else {
            return;
        };
        let req = call.req;
        out.push(Output::Event(EventKind::OpCompleted {
            client: self.id,
            op: call.op,
            lock: call.lock,
            tag: call.tag,
            ok,
            req,
            server: self.servers[server].clone(),
            latency_us: now.us.saturating_sub(call.invoked.us),
            attempts: call.attempts,
        }));
        out.push(Output::Done(Outcome::Answered(ok)));
    }

    /// Sending to `servers[server]` failed (connect or write).
    pub(crate) fn on_send_failed(
        &mut self,
        server: usize,
        failure: Failure,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        if server == self.current && self.is_waiting() {
            self.failed(failure, now, out);
        }
    }

    /// The connection to `servers[server]` closed.
    pub(crate) fn on_closed(
        &mut self,
        server: usize,
        reason: &str,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        if server == self.current && self.is_waiting() {
            self.failed(Failure::Server(reason.to_owned()), now, out);
        }
    }

    /// Time passed: a reply that is overdue fails its server; a pause that is over re-sends.
    pub(crate) fn on_tick(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(wake) = self.next_wake() else {
            return;
        };
        if now.at < wake {
            return;
        }
        match self.call.as_ref().map(|c| c.stage) {
            Some(Stage::Waiting { .. }) => {
                self.failed(Failure::Server("no reply in time".into()), now, out)
            }
            Some(Stage::Pausing { .. }) => self.send(now, out),
            None => {}
        }
    }

    /// The call ends without an answer for a reason outside the clerk (the cluster is reset).
    /// Its effect is unknown: it may have executed.
    pub(crate) fn abandon(&mut self, reason: &str, out: &mut Vec<Output>) {
        self.give_up(reason.to_owned(), out);
    }

    /// Ends the call in progress, if any, without an answer: `op_failed` with `reason`.
    fn give_up(&mut self, reason: String, out: &mut Vec<Output>) {
        if let Some(call) = self.call.take() {
            out.push(Output::Event(EventKind::OpFailed {
                client: self.id,
                op: call.op,
                lock: call.lock,
                tag: call.tag,
                req: call.req,
                reason,
            }));
            out.push(Output::Done(Outcome::GaveUp));
        }
    }

    fn is_waiting(&self) -> bool {
        matches!(
            self.call.as_ref().map(|c| c.stage),
            Some(Stage::Waiting { .. })
        )
    }

    fn failed(&mut self, failure: Failure, now: Now, out: &mut Vec<Output>) {
        let Some((call_req, invoked_at)) = self.call.as_ref().map(|c| (c.req, c.invoked.at)) else {
            return;
        };
        let failed = self.servers[self.current].clone();
        let (local, reason) = match failure {
            Failure::Server(r) => (false, r),
            Failure::Local(r) => (true, format!("local: {r}")),
        };
        let give_up_at =
            self.slow_motion
                .deadline(invoked_at, self.timing.give_up_after, GIVE_UP_HOPS);
        if now.at >= give_up_at {
            self.give_up(format!("no server answered ({failed}: {reason})"), out);
            return;
        }
        let mut pause = true;
        if !local {
            out.push(Output::Disconnect {
                server: self.current,
            });
            // Lab 1: turn to the backup and stay with it; with nobody further, retry it.
            if self.current + 1 < self.servers.len() {
                self.current += 1;
                pause = false;
                if self.variant == Some(Variant::NewIdOnRetry) {
                    // Broken on purpose: the retry looks like a new call to every server.
                    self.seq += 1;
                    let sent = RequestId {
                        client: self.id,
                        seq: self.seq,
                        incarnation: self.incarnation,
                    };
                    if let Some(call) = self.call.as_mut() {
                        call.sent = sent;
                    }
                }
            }
        }
        out.push(Output::Event(EventKind::RpcFailed {
            client: self.id,
            req: call_req,
            server: failed,
            reason,
            retry_to: self.servers[self.current].clone(),
        }));
        if pause {
            let until = now.at + self.timing.retry_pause;
            if let Some(call) = self.call.as_mut() {
                call.stage = Stage::Pausing { until };
            }
        } else {
            self.send(now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    struct Run {
        clerk: Clerk,
        t0: Instant,
        out: Vec<Output>,
    }

    impl Run {
        fn new(slow_ms: u64) -> Self {
            let t0 = Instant::now();
            Run {
                clerk: Clerk::new(
                    1,
                    vec!["s1".into(), "s2".into()],
                    ClerkTiming::default(),
                    SlowMotion::new(Duration::from_millis(slow_ms), t0),
                ),
                t0,
                out: vec![],
            }
        }

        fn at(&self, ms: u64) -> Now {
            Now {
                at: self.t0 + Duration::from_millis(ms),
                us: ms * 1000,
            }
        }

        fn lock(&mut self, ms: u64) -> RequestId {
            let now = self.at(ms);
            self.clerk
                .invoke(Op::Lock, "z", None, now, &mut self.out)
                .expect("idle")
        }

        fn tick(&mut self, ms: u64) {
            let now = self.at(ms);
            self.clerk.on_tick(now, &mut self.out);
        }

        fn sends(&self) -> Vec<usize> {
            self.out
                .iter()
                .filter_map(|o| match o {
                    Output::Send { server, .. } => Some(*server),
                    _ => None,
                })
                .collect()
        }

        fn names(&self) -> Vec<&'static str> {
            self.out
                .iter()
                .filter_map(|o| match o {
                    Output::Event(e) => Some(e.name()),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn the_clerk_waits_longer_than_the_primary_waits_for_its_backup() {
        // Else a silent backup gets both of them to serve alone: the primary after its ack
        // timeout, the backup once the clerk turned to it. At every slow-motion delay: the
        // request waits one hold at the primary, the primary allows its forward and ack their
        // holds and checks every tick, and its answer waits one hold at the clerk.
        let t0 = Instant::now();
        for ms in [0u64, 250, 800, 2000, 10_000] {
            let d = Duration::from_millis(ms);
            let slow = SlowMotion::new(d, t0);
            let clerk_gives_up =
                slow.deadline(t0, ClerkTiming::default().reply_timeout, REPLY_HOPS);
            let forwarded = t0 + d;
            let primary_answers =
                slow.deadline(forwarded, crate::node::ACK_TIMEOUT, crate::node::ACK_HOPS)
                    + crate::node::ACK_CHECK_EVERY
                    + d;
            assert!(
                clerk_gives_up >= primary_answers + Duration::from_millis(500),
                "at {ms} ms: the clerk gives up {:?} after sending, the primary answers after {:?}",
                clerk_gives_up - t0,
                primary_answers - t0
            );
        }
    }

    #[test]
    fn an_answer_from_the_primary_completes_the_call() {
        let mut r = Run::new(0);
        let req = r.lock(0);
        assert_eq!(r.sends(), vec![0]);
        let now = r.at(3);
        r.clerk.on_reply(0, req, true, now, &mut r.out);
        assert_eq!(r.names(), vec!["op_invoked", "op_completed"]);
        assert!(r.out.contains(&Output::Done(Outcome::Answered(true))));
        assert!(matches!(
            r.out
                .iter()
                .find(|o| matches!(o, Output::Event(EventKind::OpCompleted { .. }))),
            Some(Output::Event(EventKind::OpCompleted {
                latency_us: 3000,
                attempts: 1,
                ..
            }))
        ));
        assert!(!r.clerk.is_busy());
    }

    #[test]
    fn no_reply_in_time_turns_to_the_backup_with_the_same_request() {
        let mut r = Run::new(0);
        let req = r.lock(0);
        r.tick(2499);
        assert_eq!(r.sends(), vec![0], "not yet overdue");
        r.tick(2500);
        assert_eq!(r.sends(), vec![0, 1]);
        assert!(r.out.contains(&Output::Disconnect { server: 0 }));
        let now = r.at(2600);
        r.clerk.on_reply(1, req, false, now, &mut r.out);
        assert!(r.out.contains(&Output::Done(Outcome::Answered(false))));
        // It stays with the backup.
        r.out.clear();
        r.lock(3000);
        assert_eq!(r.sends(), vec![1]);
    }

    #[test]
    fn a_slow_motion_rise_mid_call_stretches_the_wait_instead_of_failing_over() {
        let mut r = Run::new(100);
        r.lock(0);
        r.clerk.set_slow_motion(1000 * MS, r.t0 + 50 * MS);
        r.tick(3000); // the allowance at the send: 2500 + 5 x 100
        r.tick(4200); // every hop held 1000 ms
        assert_eq!(r.sends(), vec![0], "no failover: {:?}", r.out);
        r.tick(7499);
        assert_eq!(r.sends(), vec![0], "not yet: 2500 + 5 x 1000");
        r.tick(7500);
        assert_eq!(r.sends(), vec![0, 1], "a truly silent server still fails");
    }

    #[test]
    fn a_local_error_pauses_and_retries_the_same_server() {
        let mut r = Run::new(0);
        r.lock(0);
        let now = r.at(1);
        r.clerk.on_send_failed(
            0,
            Failure::Local("too many open files".into()),
            now,
            &mut r.out,
        );
        assert!(
            !r.out.iter().any(|o| matches!(o, Output::Disconnect { .. })),
            "the server did nothing wrong"
        );
        assert!(r.out.iter().any(|o| matches!(
            o,
            Output::Event(EventKind::RpcFailed { server, retry_to, reason, .. })
                if server == "s1" && retry_to == "s1" && reason.starts_with("local:")
        )));
        r.tick(200);
        assert_eq!(r.sends(), vec![0], "pausing");
        r.tick(251);
        assert_eq!(r.sends(), vec![0, 0], "then the same server again");
    }

    #[test]
    fn with_nobody_further_it_pauses_then_gives_up() {
        let mut r = Run::new(0);
        r.lock(0);
        let refused = |r: &mut Run, ms| {
            let now = r.at(ms);
            r.clerk.on_send_failed(
                r.clerk.current,
                Failure::Server("connection refused".into()),
                now,
                &mut r.out,
            );
        };
        refused(&mut r, 1);
        assert_eq!(r.sends(), vec![0, 1], "refused: straight to the backup");
        refused(&mut r, 2);
        assert_eq!(r.sends(), vec![0, 1], "the backup too: pause");
        r.tick(252);
        assert_eq!(r.sends(), vec![0, 1, 1]);
        refused(&mut r, 8001);
        assert_eq!(r.names().last(), Some(&"op_failed"));
        assert!(r.out.contains(&Output::Done(Outcome::GaveUp)));
        assert!(!r.clerk.is_busy());
    }

    #[test]
    fn one_call_at_a_time_and_late_answers_are_ignored() {
        let mut r = Run::new(0);
        let first = r.lock(0);
        let now = r.at(1);
        assert_eq!(
            r.clerk.invoke(Op::Unlock, "z", None, now, &mut r.out),
            Err(Busy(1))
        );
        r.tick(2500);
        let now = r.at(2501);
        r.clerk.on_reply(1, first, true, now, &mut r.out);
        r.out.clear();
        r.lock(3000);
        let now = r.at(3001);
        r.clerk.on_reply(0, first, true, now, &mut r.out);
        assert!(
            r.clerk.is_busy(),
            "an old request's reply does not answer the new one"
        );
    }

    #[test]
    fn abandoning_a_call_reports_it_failed_with_the_reason() {
        let mut r = Run::new(0);
        r.lock(0);
        r.clerk.abandon("the cluster was reset", &mut r.out);
        assert!(r.out.iter().any(|o| matches!(
            o,
            Output::Event(EventKind::OpFailed { reason, .. }) if reason.contains("reset")
        )));
        assert!(!r.clerk.is_busy());
        r.out.clear();
        r.clerk.abandon("again", &mut r.out);
        assert!(r.out.is_empty(), "nothing to abandon twice");
    }

    /// The requests the clerk put on the wire, in order.
    fn sent_ids(out: &[Output]) -> Vec<(usize, RequestId)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { server, req, .. } => Some((*server, *req)),
                _ => None,
            })
            .collect()
    }

    fn failover_with(variant: Option<Variant>) -> (RequestId, Vec<(usize, RequestId)>, Run) {
        let mut r = Run::new(0);
        r.clerk = Clerk::new(
            1,
            vec!["s1".into(), "s2".into()],
            ClerkTiming::default(),
            SlowMotion::new(Duration::ZERO, r.t0),
        )
        .with_variant(variant);
        let req = r.lock(0);
        let now = r.at(10);
        r.clerk.on_closed(0, "connection reset", now, &mut r.out);
        (req, sent_ids(&r.out), r)
    }

    #[test]
    fn new_id_on_retry_sends_the_retry_under_a_new_id_and_the_default_does_not() {
        let (req, sent, _) = failover_with(None);
        assert_eq!(sent, vec![(0, req), (1, req)], "correct: the same id at s2");
        let (req, sent, mut r) = failover_with(Some(Variant::NewIdOnRetry));
        let new = RequestId { seq: 2, ..req };
        assert_eq!(
            sent,
            vec![(0, req), (1, new)],
            "broken: s2 can't tell the retry from a new call"
        );
        // The answer to the new id completes the call, which keeps its own id in the history.
        let now = r.at(20);
        r.clerk.on_reply(1, new, false, now, &mut r.out);
        assert!(r.out.iter().any(|o| matches!(
            o,
            Output::Event(EventKind::OpCompleted { req: done, .. }) if *done == req
        )));
        // And the next call does not reuse the id the retry took.
        let next = r.lock(30);
        assert_eq!(next.seq, 3);
    }

    #[test]
    fn the_clerk_ignores_the_servers_variants() {
        for v in [Variant::ReplyBeforeAck, Variant::BackupReexecutes] {
            assert_eq!(failover_with(Some(v)).1, failover_with(None).1);
        }
    }
}
