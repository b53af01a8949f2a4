//! The Lab 1 lock service as a sans-IO state machine.
//!
//! [`LockServer`] decides; it does no I/O and reads no clock. Each input (a client request, a
//! forwarded operation, the backup's ack, the loss of the backup) produces [`Output`]s: messages
//! to send and events to report. `node.rs` runs it on real sockets; the tests below run it on
//! plain values. It must not learn about sockets, timers or the supervisor.
//!
//! The semantics are the seed's, exactly: non-blocking `Lock`/`Unlock` with true/false answers and
//! no owners; the primary applies, forwards *every* operation to the backup (failed ones too) and
//! replies only after the backup's ack; at-most-once by request id, with the original answer
//! returned to a retry; a backup that a client turns to serves alone; a primary that loses its
//! backup serves alone.
//!
//! One addition, for faults beyond Lab 1's model (a primary that is slow, not dead): a server that
//! serves alone refuses forwards instead of applying them, and a primary whose forward is refused,
//! or whose backup answers differently, steps down ([`Role::Deposed`]) without answering, so two
//! servers that can still reach each other never both grant. In the normal case neither happens
//! and the semantics are the seed's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shared::{EventKind, Op, RequestId, Role, Variant};

/// Identifies a client connection inside one node, so a reply finds its way back.
pub type ConnId = u64;

/// The set of held locks. A lock never seen is free.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct LockTable {
    held: BTreeSet<String>,
}

impl LockTable {
    /// Runs `op` and returns its answer.
    pub fn apply(&mut self, op: Op, lock: &str) -> bool {
        match op {
            Op::Lock => self.held.insert(lock.to_owned()),
            Op::Unlock => self.held.remove(lock),
        }
    }

    pub fn is_held(&self, lock: &str) -> bool {
        self.held.contains(lock)
    }
}

/// What the state machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send the answer of `req` on client connection `to`.
    Reply {
        to: ConnId,
        req: RequestId,
        ok: bool,
    },
    /// Send this operation to the backup (in the order the outputs come).
    Forward {
        req: RequestId,
        op: Op,
        lock: String,
    },
    /// Answer the primary's forward of `req`.
    ForwardAck { req: RequestId, ok: bool },
    /// Refuse the primary's forward of `req`: this server serves clients itself now.
    ForwardRefused { req: RequestId },
    /// Close client connection `to` without an answer (a deposed server serves nobody; the
    /// clerk sees the connection close and turns to the other server).
    Close { to: ConnId },
    /// Report this to the supervisor.
    Event(EventKind),
}

/// What the server remembers of a client's latest request: at-most-once.
///
/// A clerk has one call outstanding and its sequence numbers only grow, so the latest request
/// per client is all that a retry can ask about. `ok` is `None` while the primary waits for the
/// backup's ack: the answer exists but must not leave yet.
#[derive(Debug, Clone, Copy)]
struct LastRequest {
    seq: u64,
    ok: bool,
    /// Applied from the primary's forward (not from the client itself).
    forwarded: bool,
}

/// A client request executed by the primary, waiting for the backup's ack before it is answered.
#[derive(Debug)]
struct AwaitingAck {
    ok: bool,
    /// Connections to answer when the ack comes (a duplicate of the same request adds one).
    waiters: Vec<ConnId>,
}

/// One lock server, primary or backup.
#[derive(Debug)]
pub struct LockServer {
    role: Role,
    serving_alone: bool,
    table: LockTable,
    /// The at-most-once record, per client identity: a client lane's process after a crash
    /// (a new `incarnation`) is a new client, whose calls the old life's record never answers.
    last: HashMap<(u32, u32), LastRequest>,
    awaiting: BTreeMap<RequestId, AwaitingAck>,
    /// A deliberately broken protocol (`--variant`), or `None` for the correct one.
    variant: Option<Variant>,
}

impl LockServer {
    /// A primary starts with a backup to forward to; a backup starts serving nobody.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            serving_alone: false,
            table: LockTable::default(),
            last: HashMap::new(),
            awaiting: BTreeMap::new(),
            variant: None,
        }
    }

    /// Runs the deliberately broken protocol `variant` (`None`: the correct one). Only the
    /// server's variants change anything here; `new-id-on-retry` is the clerk's.
    pub fn with_variant(mut self, variant: Option<Variant>) -> Self {
        self.variant = variant;
        self
    }

    pub fn role(&self) -> Role {
        self.role
    }

    #[cfg(test)]
    fn serving_alone(&self) -> bool {
        self.serving_alone
    }

    #[cfg(test)]
    fn table(&self) -> &LockTable {
        &self.table
    }

    /// Requests executed and forwarded whose ack has not come.
    #[cfg(test)]
    fn awaiting_ack(&self) -> usize {
        self.awaiting.len()
    }

    fn forwards(&self) -> bool {
        self.role == Role::Primary && !self.serving_alone
    }

    /// Runs `op` unless `req` already ran; returns the answer, or `None` for a request older
    /// than the client's latest (a stale duplicate, which gets no answer).
    fn execute(
        &mut self,
        req: RequestId,
        op: Op,
        lock: &str,
        forwarded: bool,
        out: &mut Vec<Output>,
    ) -> Option<(bool, bool)> {
        // backup-reexecutes (broken on purpose): a client's retry of what the primary forwarded
        // here runs again instead of being answered from the record.
        let reexecutes = self.variant == Some(Variant::BackupReexecutes) && !forwarded;
        let (ok, duplicate) = match self.last.get(&(req.client, req.incarnation)) {
            Some(last) if last.seq == req.seq && !(reexecutes && last.forwarded) => (last.ok, true),
            Some(last) if last.seq > req.seq => return None,
            _ => {
                let ok = self.table.apply(op, lock);
                self.last.insert(
                    (req.client, req.incarnation),
                    LastRequest {
                        seq: req.seq,
                        ok,
                        forwarded,
                    },
                );
                (ok, false)
            }
        };
        out.push(Output::Event(EventKind::Executed {
            req,
            op,
            lock: lock.to_owned(),
            ok,
            held: self.table.is_held(lock),
            duplicate,
            forwarded,
        }));
        Some((ok, duplicate))
    }

    fn become_alone(&mut self, reason: &str, out: &mut Vec<Output>) {
        if self.role == Role::Primary && self.serving_alone {
            return;
        }
        self.role = Role::Primary;
        self.serving_alone = true;
        out.push(Output::Event(EventKind::RoleChanged {
            role: Role::Primary,
            serving_alone: true,
            reason: reason.to_owned(),
        }));
    }

    /// A clerk's request arrived on connection `from`.
    pub fn on_request(
        &mut self,
        from: ConnId,
        req: RequestId,
        op: Op,
        lock: &str,
        out: &mut Vec<Output>,
    ) {
        if self.role == Role::Deposed {
            out.push(Output::Close { to: from });
            return;
        }
        if self.role == Role::Backup {
            // Lab 1: clients turn to the backup only when the primary failed them.
            self.become_alone("a client failed over to it", out);
        }
        if let Some(waiting) = self.awaiting.get_mut(&req) {
            // Same request again while its forward is in flight: answer both when the ack comes.
            waiting.waiters.push(from);
            return;
        }
        let Some((ok, duplicate)) = self.execute(req, op, lock, false, out) else {
            return;
        };
        if self.forwards() && !duplicate {
            let mut waiters = vec![from];
            if self.variant == Some(Variant::ReplyBeforeAck) {
                // Broken on purpose: the answer leaves before the forward, so a primary that
                // dies now leaves a backup that never saw what the client was told.
                out.push(Output::Reply { to: from, req, ok });
                waiters.clear();
            }
            self.awaiting.insert(req, AwaitingAck { ok, waiters });
            out.push(Output::Forward {
                req,
                op,
                lock: lock.to_owned(),
            });
        } else {
            out.push(Output::Reply { to: from, req, ok });
        }
    }

    /// The primary forwarded an operation to this server. Only a backup applies it: a server
    /// that serves clients itself (or stepped down) refuses, so the sender learns it was replaced.
    pub fn on_forward(&mut self, req: RequestId, op: Op, lock: &str, out: &mut Vec<Output>) {
        if self.role != Role::Backup {
            out.push(Output::ForwardRefused { req });
            return;
        }
        if let Some((ok, _)) = self.execute(req, op, lock, true, out) {
            out.push(Output::ForwardAck { req, ok });
        }
    }

    /// The backup acknowledged `req` with its own answer `ok`: if it agrees, the client may now
    /// have the answer. If it does not, the two tables have diverged and the backup's record is
    /// what clients will be answered from from now on: step down without answering.
    pub fn on_forward_ack(&mut self, req: RequestId, ok: bool, out: &mut Vec<Output>) {
        let Some(done) = self.awaiting.get(&req) else {
            return;
        };
        if done.ok != ok {
            let reason = format!(
                "its backup answered {ok} where it had answered {}: the tables diverged",
                done.ok
            );
            self.step_down(&reason, out);
            return;
        }
        if let Some(done) = self.awaiting.remove(&req) {
            for to in done.waiters {
                out.push(Output::Reply {
                    to,
                    req,
                    ok: done.ok,
                });
            }
        }
    }

    /// The backup refused the forward of `req`: it serves clients itself now.
    pub fn on_forward_refused(&mut self, req: RequestId, out: &mut Vec<Output>) {
        if self.role != Role::Primary {
            return;
        }
        let reason = format!(
            "its backup refused the forward of #{req}: the backup serves clients itself now"
        );
        self.step_down(&reason, out);
    }

    /// Stops serving: nothing waiting is answered (the backup holds the state that counts), and
    /// every waiting client's connection is closed so it turns to the backup at once.
    fn step_down(&mut self, reason: &str, out: &mut Vec<Output>) {
        self.role = Role::Deposed;
        self.serving_alone = false;
        out.push(Output::Event(EventKind::RoleChanged {
            role: Role::Deposed,
            serving_alone: false,
            reason: reason.to_owned(),
        }));
        for (_, done) in std::mem::take(&mut self.awaiting) {
            for to in done.waiters {
                out.push(Output::Close { to });
            }
        }
    }

    /// The backup cannot be reached (refused, closed, or no ack in time): serve alone, and
    /// answer everything that waited for it.
    pub fn on_backup_lost(&mut self, reason: &str, out: &mut Vec<Output>) {
        if self.role != Role::Primary {
            return;
        }
        self.become_alone(reason, out);
        for (req, done) in std::mem::take(&mut self.awaiting) {
            for to in done.waiters {
                out.push(Output::Reply {
                    to,
                    req,
                    ok: done.ok,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: u32, seq: u64) -> RequestId {
        RequestId::new(client, seq)
    }

    fn replies(out: &[Output]) -> Vec<(ConnId, RequestId, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Reply { to, req, ok } => Some((*to, *req, *ok)),
                _ => None,
            })
            .collect()
    }

    fn forwards(out: &[Output]) -> Vec<RequestId> {
        out.iter()
            .filter_map(|o| match o {
                Output::Forward { req, .. } => Some(*req),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lock_table_answers_are_lab1() {
        let mut t = LockTable::default();
        assert!(t.apply(Op::Lock, "a"), "a never-used lock is free");
        assert!(!t.apply(Op::Lock, "a"), "a held lock answers false at once");
        assert!(t.apply(Op::Unlock, "a"));
        assert!(
            !t.apply(Op::Unlock, "a"),
            "unlocking a free lock answers false"
        );
        assert!(!t.apply(Op::Unlock, "never"), "never-used lock is free");
    }

    #[test]
    fn primary_replies_only_after_backup_ack() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(7, req(1, 1), Op::Lock, "a", &mut out);
        assert!(replies(&out).is_empty(), "no reply before the ack");
        assert_eq!(forwards(&out), vec![req(1, 1)]);
        assert!(
            p.table().is_held("a"),
            "the primary applies before forwarding"
        );
        out.clear();
        p.on_forward_ack(req(1, 1), true, &mut out);
        assert_eq!(replies(&out), vec![(7, req(1, 1), true)]);
    }

    #[test]
    fn failed_operations_are_forwarded_too() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(1, req(1, 1), Op::Unlock, "a", &mut out);
        assert_eq!(forwards(&out), vec![req(1, 1)]);
        p.on_forward_ack(req(1, 1), false, &mut out);
        assert_eq!(replies(&out), vec![(1, req(1, 1), false)]);
    }

    #[test]
    fn retry_gets_the_original_answer_without_running_again() {
        let mut b = LockServer::new(Role::Backup);
        let mut out = vec![];
        b.on_forward(req(1, 1), Op::Lock, "a", &mut out);
        assert!(out.contains(&Output::ForwardAck {
            req: req(1, 1),
            ok: true
        }));
        // Another client unlocks it, then client 1 retries its lock at the backup.
        out.clear();
        b.on_forward(req(2, 1), Op::Unlock, "a", &mut out);
        out.clear();
        b.on_request(9, req(1, 1), Op::Lock, "a", &mut out);
        assert_eq!(replies(&out), vec![(9, req(1, 1), true)]);
        assert!(!b.table().is_held("a"), "the retry must not lock again");
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event(EventKind::Executed {
                duplicate: true,
                ..
            })
        )));
    }

    #[test]
    fn backup_turns_primary_alone_when_a_client_fails_over() {
        let mut b = LockServer::new(Role::Backup);
        let mut out = vec![];
        b.on_request(3, req(1, 5), Op::Lock, "x", &mut out);
        assert_eq!(b.role(), Role::Primary);
        assert!(b.serving_alone());
        assert_eq!(
            replies(&out),
            vec![(3, req(1, 5), true)],
            "alone: answer at once"
        );
        assert!(forwards(&out).is_empty());
    }

    #[test]
    fn losing_the_backup_answers_the_waiting_and_stops_forwarding() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(1, req(1, 1), Op::Lock, "a", &mut out);
        p.on_request(2, req(2, 1), Op::Lock, "a", &mut out);
        out.clear();
        p.on_backup_lost("backup connection refused", &mut out);
        assert_eq!(
            replies(&out),
            vec![(1, req(1, 1), true), (2, req(2, 1), false)]
        );
        assert!(p.serving_alone());
        out.clear();
        p.on_request(1, req(1, 2), Op::Unlock, "a", &mut out);
        assert!(forwards(&out).is_empty());
        assert_eq!(replies(&out), vec![(1, req(1, 2), true)]);
    }

    #[test]
    fn forwards_leave_in_the_order_applied() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        for c in 1..=5 {
            p.on_request(c as u64, req(c, 1), Op::Lock, "a", &mut out);
        }
        assert_eq!(
            forwards(&out),
            (1..=5).map(|c| req(c, 1)).collect::<Vec<_>>()
        );
        assert_eq!(p.awaiting_ack(), 5);
    }

    #[test]
    fn duplicate_while_awaiting_ack_is_answered_once_acked() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(1, req(1, 1), Op::Lock, "a", &mut out);
        p.on_request(2, req(1, 1), Op::Lock, "a", &mut out);
        assert_eq!(forwards(&out).len(), 1, "executed and forwarded once");
        out.clear();
        p.on_forward_ack(req(1, 1), true, &mut out);
        assert_eq!(
            replies(&out),
            vec![(1, req(1, 1), true), (2, req(1, 1), true)]
        );
    }

    fn closed(out: &[Output]) -> Vec<ConnId> {
        out.iter()
            .filter_map(|o| match o {
                Output::Close { to } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_backup_serving_alone_refuses_forwards_instead_of_applying_them() {
        let mut b = LockServer::new(Role::Backup);
        let mut out = vec![];
        // c1 timed out on a slow primary and turned to the backup.
        b.on_request(1, req(1, 1), Op::Lock, "z", &mut out);
        out.clear();
        // The slow primary's forward of c2's Lock(z) arrives afterwards.
        b.on_forward(req(2, 1), Op::Lock, "z", &mut out);
        assert_eq!(out, vec![Output::ForwardRefused { req: req(2, 1) }]);
        assert!(b.table().is_held("z"), "c1's lock stands");
    }

    #[test]
    fn a_refused_forward_makes_the_primary_step_down_without_answering() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(5, req(2, 1), Op::Lock, "z", &mut out);
        p.on_request(6, req(3, 1), Op::Lock, "y", &mut out);
        out.clear();
        p.on_forward_refused(req(2, 1), &mut out);
        assert!(replies(&out).is_empty(), "no grant the backup did not make");
        assert_eq!(closed(&out), vec![5, 6], "every waiting client turns away");
        assert_eq!(p.role(), Role::Deposed);
        out.clear();
        p.on_request(7, req(4, 1), Op::Lock, "x", &mut out);
        assert_eq!(
            out,
            vec![Output::Close { to: 7 }],
            "a deposed server serves nobody"
        );
        assert!(!p.table().is_held("x"));
    }

    #[test]
    fn an_ack_that_disagrees_makes_the_primary_step_down() {
        let mut p = LockServer::new(Role::Primary);
        let mut out = vec![];
        p.on_request(5, req(2, 1), Op::Lock, "z", &mut out);
        out.clear();
        // The backup already had z held (it granted it to someone else): it answered false.
        p.on_forward_ack(req(2, 1), false, &mut out);
        assert!(
            replies(&out).is_empty(),
            "the primary's 'true' must not leave"
        );
        assert_eq!(closed(&out), vec![5]);
        assert_eq!(p.role(), Role::Deposed);
    }

    #[test]
    fn stale_request_is_not_executed() {
        let mut b = LockServer::new(Role::Backup);
        let mut out = vec![];
        b.on_forward(req(1, 2), Op::Lock, "a", &mut out);
        out.clear();
        b.on_forward(req(1, 1), Op::Unlock, "a", &mut out);
        assert!(
            out.is_empty(),
            "an older request of the same client is ignored"
        );
        assert!(b.table().is_held("a"));
    }

    // The broken variants: each test shows the flaw, and that the correct protocol lacks it.

    #[test]
    fn reply_before_ack_answers_before_the_forward_leaves_and_the_default_does_not() {
        let outputs = |variant| {
            let mut p = LockServer::new(Role::Primary).with_variant(variant);
            let mut out = vec![];
            p.on_request(7, req(1, 1), Op::Lock, "z", &mut out);
            out.into_iter()
                .filter(|o| matches!(o, Output::Reply { .. } | Output::Forward { .. }))
                .collect::<Vec<_>>()
        };
        let forward = Output::Forward {
            req: req(1, 1),
            op: Op::Lock,
            lock: "z".into(),
        };
        let reply = Output::Reply {
            to: 7,
            req: req(1, 1),
            ok: true,
        };
        assert_eq!(
            outputs(Some(Variant::ReplyBeforeAck)),
            vec![reply, forward.clone()],
            "broken: the client has its grant before the backup heard of it"
        );
        assert_eq!(
            outputs(None),
            vec![forward],
            "correct: no answer before the ack"
        );
    }

    #[test]
    fn reply_before_ack_answers_once_and_still_steps_down_on_a_disagreeing_ack() {
        let mut p = LockServer::new(Role::Primary).with_variant(Some(Variant::ReplyBeforeAck));
        let mut out = vec![];
        p.on_request(7, req(1, 1), Op::Lock, "z", &mut out);
        out.clear();
        p.on_forward_ack(req(1, 1), true, &mut out);
        assert!(replies(&out).is_empty(), "answered already, not twice");
        p.on_request(8, req(2, 1), Op::Lock, "y", &mut out);
        out.clear();
        p.on_forward_ack(req(2, 1), false, &mut out);
        assert_eq!(p.role(), Role::Deposed);
    }

    /// c1's Lock(z) reaches the backup as a forward; c2 unlocks z; c1 retries its Lock at the
    /// backup (its primary died before answering). Returns the retry's answer and whether z is
    /// held afterwards.
    fn retry_at_backup(variant: Option<Variant>) -> (Vec<(ConnId, RequestId, bool)>, bool) {
        let mut b = LockServer::new(Role::Backup).with_variant(variant);
        let mut out = vec![];
        b.on_forward(req(1, 1), Op::Lock, "z", &mut out);
        out.clear();
        b.on_request(9, req(1, 1), Op::Lock, "z", &mut out);
        (replies(&out), b.table().is_held("z"))
    }

    #[test]
    fn backup_reexecutes_runs_a_forwarded_request_again_and_the_default_does_not() {
        assert_eq!(
            retry_at_backup(None),
            (vec![(9, req(1, 1), true)], true),
            "correct: the retry gets the forward's answer, true"
        );
        assert_eq!(
            retry_at_backup(Some(Variant::BackupReexecutes)),
            (vec![(9, req(1, 1), false)], true),
            "broken: Lock(z) ran twice, and c1 is told z was taken although it took it"
        );
    }

    #[test]
    fn backup_reexecutes_answers_a_clients_own_retry_from_the_record() {
        // The flaw is about forwards only: a retry of what the client itself sent here is a
        // duplicate in the broken variant too (one re-execution per forwarded request).
        let mut b = LockServer::new(Role::Backup).with_variant(Some(Variant::BackupReexecutes));
        let mut out = vec![];
        b.on_request(9, req(1, 1), Op::Lock, "z", &mut out);
        b.on_request(9, req(1, 1), Op::Lock, "z", &mut out);
        assert_eq!(
            replies(&out),
            vec![(9, req(1, 1), true), (9, req(1, 1), true)]
        );
    }

    #[test]
    fn the_server_ignores_the_clerks_variant() {
        assert_eq!(
            retry_at_backup(Some(Variant::NewIdOnRetry)),
            retry_at_backup(None)
        );
    }
}
