//! Group commit on the primary -> backup link (sans-IO): which operations leave in the next
//! forward message, and which wait for their ack.
//!
//! The state machine ([`crate::lockservice::LockServer`]) stays per operation: it asks for one
//! `Forward` per operation, in its order. The node runtime queues them here and sends what
//! [`ForwardQueue::take_batch`] gives, as one message: a plain `forward` for a batch of one, a
//! `forward_batch` otherwise. The backup applies a batch in order and answers with one
//! `forward_ack` / `forward_ack_batch`; each operation's client is answered only once the ack
//! covering it came back, exactly as with single forwards.
//!
//! With [`Pacing::OneInFlight`] (the classic group commit) a new message leaves only when every
//! operation sent before it is acknowledged: the operations that arrive meanwhile wait here and
//! leave together. With [`Pacing::Eager`] whatever is queued leaves at once (the runtime
//! calls it once per round of work, so a round's operations still share a message); the node
//! uses it under slow motion and step mode, so a lecture's messages look as they always did.

use std::collections::VecDeque;

use shared::{ForwardOp, Msg, RequestId};
use tokio::time::Instant;

/// Most operations in one forward message.
pub const MAX_BATCH_OPS: usize = 256;

/// Most bytes of lock names in one forward message (the frame and its report stay far below
/// [`crate::framing::MAX_FRAME`]).
pub const MAX_BATCH_LOCK_BYTES: usize = 64 * 1024;

/// When queued operations may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// At most one forward message in flight: the next leaves once all sent ops are acked.
    OneInFlight,
    /// Every round's operations leave at the end of the round.
    Eager,
}

/// The operations the primary owes its backup: waiting to leave, and sent but not acknowledged.
#[derive(Debug, Default)]
pub struct ForwardQueue {
    /// Not sent yet, in the state machine's order.
    waiting: VecDeque<ForwardOp>,
    /// Sent and not acknowledged, oldest first, with when they left.
    unacked: VecDeque<(RequestId, Instant)>,
}

impl ForwardQueue {
    /// Queues one operation behind everything queued before it.
    pub fn push(&mut self, op: ForwardOp) {
        self.waiting.push_back(op);
    }

    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The next message's operations, if one may leave now (`now` starts their ack deadline).
    /// Ops leave in the order they were queued.
    pub fn take_batch(&mut self, pacing: Pacing, now: Instant) -> Option<Vec<ForwardOp>> {
        if self.waiting.is_empty() || (pacing == Pacing::OneInFlight && !self.unacked.is_empty()) {
            return None;
        }
        let mut batch = Vec::with_capacity(self.waiting.len().min(MAX_BATCH_OPS));
        let mut bytes = 0;
        while let Some(op) = self.waiting.front() {
            if !batch.is_empty()
                && (batch.len() >= MAX_BATCH_OPS || bytes + op.lock.len() > MAX_BATCH_LOCK_BYTES)
            {
                break;
            }
            bytes += op.lock.len();
            let op = self.waiting.pop_front().expect("front exists");
            self.unacked.push_back((op.req, now));
            batch.push(op);
        }
        Some(batch)
    }

    /// `req`'s ack (or refusal) came: it no longer waits for one.
    pub fn acked(&mut self, req: RequestId) {
        if self.unacked.front().is_some_and(|(r, _)| *r == req) {
            self.unacked.pop_front();
        } else if let Some(i) = self.unacked.iter().position(|(r, _)| *r == req) {
            self.unacked.remove(i);
        }
    }

    /// Whether `req`'s forward has left and waits for its ack.
    pub fn in_flight(&self, req: RequestId) -> bool {
        self.unacked.iter().any(|(r, _)| *r == req)
    }

    /// When the oldest unacknowledged forward left.
    pub fn oldest_sent(&self) -> Option<Instant> {
        self.unacked.front().map(|(_, t)| *t)
    }

    /// Forgets everything owed (the backup is lost, or this server stepped down).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.unacked.clear();
    }

    /// Stops waiting for acks (a deposed server answers nobody); what waits to leave stays.
    pub fn clear_unacked(&mut self) {
        self.unacked.clear();
    }
}

/// The message for a batch: a plain `forward` for one operation, `forward_batch` for more.
pub fn forward_msg(mut ops: Vec<ForwardOp>) -> Msg {
    if ops.len() == 1 {
        let ForwardOp { req, op, lock } = ops.pop().expect("one op");
        Msg::Forward { req, op, lock }
    } else {
        Msg::ForwardBatch { ops }
    }
}

/// The message answering some forwards: a plain `forward_ack` for one, `forward_ack_batch`.
pub fn ack_msg(mut acks: Vec<shared::ForwardAckItem>) -> Msg {
    if acks.len() == 1 {
        let shared::ForwardAckItem { req, ok } = acks.pop().expect("one ack");
        Msg::ForwardAck { req, ok }
    } else {
        Msg::ForwardAckBatch { acks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{ForwardAckItem, Op};

    fn op(client: u32, seq: u64) -> ForwardOp {
        ForwardOp {
            req: RequestId::new(client, seq),
            op: Op::Lock,
            lock: format!("l{client}"),
        }
    }

    fn reqs(batch: &[ForwardOp]) -> Vec<(u32, u64)> {
        batch.iter().map(|o| (o.req.client, o.req.seq)).collect()
    }

    #[test]
    fn one_in_flight_groups_what_arrives_meanwhile_in_order() {
        let now = Instant::now();
        let mut q = ForwardQueue::default();
        q.push(op(1, 1));
        let first = q.take_batch(Pacing::OneInFlight, now).unwrap();
        assert_eq!(reqs(&first), vec![(1, 1)], "an idle link sends at once");
        q.push(op(2, 1));
        q.push(op(3, 1));
        assert!(
            q.take_batch(Pacing::OneInFlight, now).is_none(),
            "nothing leaves while a forward waits for its ack"
        );
        q.push(op(4, 1));
        q.acked(RequestId::new(1, 1));
        let second = q.take_batch(Pacing::OneInFlight, now).unwrap();
        assert_eq!(reqs(&second), vec![(2, 1), (3, 1), (4, 1)]);
        assert!(q.in_flight(RequestId::new(3, 1)));
        assert!(!q.has_waiting());
        // One of three acked: the link is still busy.
        q.acked(RequestId::new(3, 1));
        q.push(op(5, 1));
        assert!(q.take_batch(Pacing::OneInFlight, now).is_none());
        q.acked(RequestId::new(2, 1));
        q.acked(RequestId::new(4, 1));
        assert_eq!(
            reqs(&q.take_batch(Pacing::OneInFlight, now).unwrap()),
            vec![(5, 1)]
        );
    }

    #[test]
    fn eager_sends_whatever_is_queued_even_with_acks_outstanding() {
        let now = Instant::now();
        let mut q = ForwardQueue::default();
        q.push(op(1, 1));
        assert!(q.take_batch(Pacing::Eager, now).is_some());
        q.push(op(2, 1));
        q.push(op(3, 1));
        assert_eq!(
            reqs(&q.take_batch(Pacing::Eager, now).unwrap()),
            vec![(2, 1), (3, 1)]
        );
        assert!(q.take_batch(Pacing::Eager, now).is_none(), "nothing queued");
    }

    #[test]
    fn batches_are_bounded_by_count_and_by_lock_bytes() {
        let now = Instant::now();
        let mut q = ForwardQueue::default();
        for i in 0..(MAX_BATCH_OPS as u64 + 3) {
            q.push(op(1, i));
        }
        assert_eq!(
            q.take_batch(Pacing::Eager, now).unwrap().len(),
            MAX_BATCH_OPS
        );
        assert_eq!(q.take_batch(Pacing::Eager, now).unwrap().len(), 3);

        let big = |seq| ForwardOp {
            req: RequestId::new(2, seq),
            op: Op::Unlock,
            lock: "x".repeat(MAX_BATCH_LOCK_BYTES / 2 + 1),
        };
        q.push(big(1));
        q.push(big(2));
        assert_eq!(q.take_batch(Pacing::Eager, now).unwrap().len(), 1);
        assert_eq!(q.take_batch(Pacing::Eager, now).unwrap().len(), 1);
        // One op larger than the byte bound still leaves, alone.
        q.push(ForwardOp {
            lock: "y".repeat(MAX_BATCH_LOCK_BYTES + 1),
            ..big(3)
        });
        assert_eq!(q.take_batch(Pacing::Eager, now).unwrap().len(), 1);
    }

    #[test]
    fn the_oldest_unacked_sets_the_deadline_and_clear_forgets_all() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        let mut q = ForwardQueue::default();
        q.push(op(1, 1));
        q.take_batch(Pacing::Eager, t0);
        q.push(op(2, 1));
        q.take_batch(Pacing::Eager, t1);
        assert_eq!(q.oldest_sent(), Some(t0));
        q.acked(RequestId::new(1, 1));
        assert_eq!(q.oldest_sent(), Some(t1));
        q.push(op(3, 1));
        q.clear();
        assert_eq!(q.oldest_sent(), None);
        assert!(!q.has_waiting());
    }

    #[test]
    fn a_batch_of_one_is_the_plain_message() {
        assert!(matches!(forward_msg(vec![op(1, 1)]), Msg::Forward { .. }));
        assert!(matches!(
            forward_msg(vec![op(1, 1), op(2, 1)]),
            Msg::ForwardBatch { ops } if ops.len() == 2
        ));
        let ack = |c| ForwardAckItem {
            req: RequestId::new(c, 1),
            ok: true,
        };
        assert_eq!(
            ack_msg(vec![ack(1)]),
            Msg::ForwardAck {
                req: RequestId::new(1, 1),
                ok: true
            }
        );
        assert!(
            matches!(ack_msg(vec![ack(1), ack(2)]), Msg::ForwardAckBatch { acks } if acks.len() == 2)
        );
    }
}
