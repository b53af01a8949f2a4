//! The double-grant detector: the same lock granted twice with no Unlock that could fall between.
//!
//! A small, deliberately narrow watch over the clients' answers (`op_completed`, `op_failed`),
//! so that the page can say plainly when Lab 1 gave one lock to two clients (a partition, a
//! backup that fell behind, a restarted server that came back empty). The server's
//! linearizability checker formalizes this for every history (the page shows its verdict first,
//! `verdict.rs`); this watch only reports a double grant that is *certain*, and never raises a
//! false alarm:
//!
//! - two calls `Lock(z)` answered `true` (grants A, then B, in the order their answers came);
//! - and no call `Unlock(z)` that could have taken effect between them: an Unlock answered
//!   `true`, in progress, or given up (its effect is unknown) whose interval
//!   `[invoked, answered]` reaches past A's invocation and begins before B's answer. An Unlock
//!   answered `false` freed nothing.
//!
//! If no such Unlock exists, whichever way the two grants are ordered, the second found the lock
//! held and must have answered `false`. Times are the events' `t_us` (one clock for every
//! process on the host); a call's invocation is its answer's time minus its latency.
//!
//! What it may miss (false negatives, never false positives): one Unlock counts as covering
//! every pair around it, old calls are forgotten past a few per lock, and a reset of the cluster
//! starts over (a fresh cluster has every lock free).

use std::collections::{BTreeMap, HashMap, VecDeque};

use shared::{Event, EventKind, NodeId, Op, RequestId};

/// Grants remembered per lock.
const GRANTS_KEPT: usize = 8;
/// Unlocks remembered per lock.
const UNLOCKS_KEPT: usize = 32;
/// Double grants remembered (the newest).
const FOUND_KEPT: usize = 16;

/// One `Lock(z)` answered `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client: u32,
    /// The server that answered it.
    pub server: NodeId,
    pub req: RequestId,
    pub invoked_us: u64,
    pub answered_us: u64,
    /// The answer's event.
    pub seq: u64,
}

/// The same lock granted twice with no Unlock between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleGrant {
    pub lock: String,
    pub first: Grant,
    pub second: Grant,
}

impl DoubleGrant {
    /// The plain sentence the page shows.
    pub fn sentence(&self) -> String {
        format!(
            "Lock({}) was granted to c{} by {} and to c{} by {} with no Unlock between",
            self.lock, self.first.client, self.first.server, self.second.client, self.second.server
        )
    }
}

/// An `Unlock(z)` that may have freed the lock: answered `true` (`answered_us` set), or still
/// in progress or given up (`None`: it may take effect at any time).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unlock {
    req: RequestId,
    invoked_us: u64,
    answered_us: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LockLog {
    grants: VecDeque<Grant>,
    unlocks: VecDeque<Unlock>,
}

impl LockLog {
    fn push_unlock(&mut self, u: Unlock) {
        self.unlocks.push_back(u);
        if self.unlocks.len() > UNLOCKS_KEPT {
            // Forgetting an Unlock could make an old pair look uncovered: forget the grants it
            // may cover with it (a missed double grant, never a false one).
            if let Some(old) = self.unlocks.pop_front() {
                let until = old.answered_us.unwrap_or(u64::MAX);
                self.grants.retain(|g| g.invoked_us >= until);
            }
        }
    }

    /// Whether some Unlock may have taken effect after `a` was invoked and before `b` answered.
    fn covered(&self, a: &Grant, b: &Grant) -> bool {
        self.unlocks.iter().any(|u| {
            u.answered_us.is_none_or(|end| end > a.invoked_us) && u.invoked_us < b.answered_us
        })
    }
}

/// The watch: fold every event in with [`GrantWatch::observe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantWatch {
    locks: BTreeMap<String, LockLog>,
    /// Unlock calls in progress: request -> lock name.
    unlocking: HashMap<RequestId, String>,
    found: VecDeque<DoubleGrant>,
}

impl GrantWatch {
    /// The double grants found since the cluster's last reset, oldest first (at most the
    /// newest 16).
    pub fn found(&self) -> impl DoubleEndedIterator<Item = &DoubleGrant> + ExactSizeIterator {
        self.found.iter()
    }

    pub fn latest(&self) -> Option<&DoubleGrant> {
        self.found.back()
    }

    /// The log has a hole (events the page never got): a call before it cannot be paired with
    /// one after it, since an Unlock in the hole may have freed the lock. Forgets the calls,
    /// keeps the double grants already found (they were certain, and stay so until a reset).
    pub fn forget_calls(&mut self) {
        self.locks.clear();
        self.unlocking.clear();
    }

    /// Whether it remembers any call (so a caller can skip copying it to forget them).
    pub fn has_calls(&self) -> bool {
        !self.locks.is_empty() || !self.unlocking.is_empty()
    }

    /// Whether `e` can change the watch (so a caller can skip copying it for other events).
    ///
    /// Not the load generator's clerks: under a heavy load the page gets a sample of their
    /// calls (an Unlock between two grants may be among those left out), so the watch could
    /// only raise false alarms there. The server's checker covers every client.
    pub fn cares(e: &Event) -> bool {
        matches!(
            e.kind,
            EventKind::OpInvoked { op: Op::Unlock, .. }
                | EventKind::OpCompleted { .. }
                | EventKind::OpFailed { op: Op::Unlock, .. }
                | EventKind::ClusterReset { .. }
        ) && !e.node.client_id().is_some_and(shared::is_load_client)
    }

    /// Folds one event in; returns the double grant it reveals, if any.
    pub fn observe(&mut self, e: &Event) -> Option<DoubleGrant> {
        match &e.kind {
            EventKind::ClusterReset { .. } => {
                *self = GrantWatch::default();
                None
            }
            EventKind::OpInvoked {
                op: Op::Unlock,
                req,
                lock,
                ..
            } => {
                self.unlocking.insert(*req, lock.clone());
                self.push_unlock(
                    lock,
                    Unlock {
                        req: *req,
                        invoked_us: e.t_us,
                        answered_us: None,
                    },
                );
                None
            }
            EventKind::OpFailed {
                op: Op::Unlock,
                req,
                lock,
                ..
            } => {
                // Its effect is unknown: it stays an Unlock that may take effect at any time.
                if self.unlocking.remove(req).is_none() {
                    self.push_unlock(
                        lock,
                        Unlock {
                            req: *req,
                            invoked_us: 0,
                            answered_us: None,
                        },
                    );
                }
                None
            }
            EventKind::OpCompleted {
                op: Op::Unlock,
                req,
                lock,
                ok,
                latency_us,
                ..
            } => {
                self.unlocking.remove(req);
                let invoked_us = e.t_us.saturating_sub(*latency_us);
                let log = self.locks.entry(lock.clone()).or_default();
                let known = log.unlocks.iter().position(|u| u.req == *req);
                match (ok, known) {
                    (true, Some(i)) => log.unlocks[i].answered_us = Some(e.t_us),
                    (true, None) => log.push_unlock(Unlock {
                        req: *req,
                        invoked_us,
                        answered_us: Some(e.t_us),
                    }),
                    // It found the lock free: it freed nothing.
                    (false, Some(i)) => {
                        log.unlocks.remove(i);
                    }
                    (false, None) => {}
                }
                None
            }
            EventKind::OpCompleted {
                op: Op::Lock,
                ok: true,
                client,
                req,
                lock,
                server,
                latency_us,
                ..
            } => {
                let b = Grant {
                    client: *client,
                    server: server.clone(),
                    req: *req,
                    invoked_us: e.t_us.saturating_sub(*latency_us),
                    answered_us: e.t_us,
                    seq: e.seq,
                };
                let log = self.locks.entry(lock.clone()).or_default();
                let found = log
                    .grants
                    .iter()
                    .rev()
                    .find(|a| !log.covered(a, &b))
                    .map(|a| DoubleGrant {
                        lock: lock.clone(),
                        first: a.clone(),
                        second: b.clone(),
                    });
                log.grants.push_back(b);
                if log.grants.len() > GRANTS_KEPT {
                    log.grants.pop_front();
                }
                if let Some(d) = &found {
                    self.found.push_back(d.clone());
                    if self.found.len() > FOUND_KEPT {
                        self.found.pop_front();
                    }
                }
                found
            }
            _ => None,
        }
    }

    fn push_unlock(&mut self, lock: &str, u: Unlock) {
        self.locks
            .entry(lock.to_owned())
            .or_default()
            .push_unlock(u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of client calls, each a given time apart.
    #[derive(Default)]
    struct Calls {
        events: Vec<Event>,
    }

    impl Calls {
        fn ev(&mut self, t_us: u64, node: &str, kind: EventKind) -> &mut Self {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                seq,
                t_us,
                node: node.into(),
                kind,
            });
            self
        }

        fn invoke(&mut self, t: u64, client: u32, seq: u64, op: Op, lock: &str) -> &mut Self {
            self.ev(
                t,
                &format!("c{client}"),
                EventKind::OpInvoked {
                    client,
                    req: RequestId::new(client, seq),
                    op,
                    lock: lock.into(),
                    tag: None,
                    server: "s1".into(),
                },
            )
        }

        #[allow(clippy::too_many_arguments)]
        fn done(
            &mut self,
            invoked: u64,
            t: u64,
            client: u32,
            seq: u64,
            op: Op,
            lock: &str,
            ok: bool,
            server: &str,
        ) -> &mut Self {
            self.ev(
                t,
                &format!("c{client}"),
                EventKind::OpCompleted {
                    client,
                    op,
                    lock: lock.into(),
                    tag: None,
                    ok,
                    req: RequestId::new(client, seq),
                    server: server.into(),
                    latency_us: t - invoked,
                    attempts: 1,
                },
            )
        }

        /// A whole call, invoked at `t` and answered 10 µs later.
        fn call(
            &mut self,
            t: u64,
            client: u32,
            seq: u64,
            op: Op,
            lock: &str,
            ok: bool,
        ) -> &mut Self {
            self.invoke(t, client, seq, op, lock)
                .done(t, t + 10, client, seq, op, lock, ok, "s1")
        }

        fn watch(&self) -> (GrantWatch, Vec<DoubleGrant>) {
            let mut w = GrantWatch::default();
            let found = self.events.iter().filter_map(|e| w.observe(e)).collect();
            (w, found)
        }
    }

    use Op::{Lock, Unlock};

    #[test]
    fn two_grants_with_no_unlock_between_are_a_double_grant_and_say_who_granted() {
        let mut c = Calls::default();
        c.invoke(100, 1, 1, Lock, "z")
            .invoke(110, 2, 1, Lock, "z")
            .done(100, 5_000, 1, 1, Lock, "z", true, "s1")
            .done(110, 9_000, 2, 1, Lock, "z", true, "s2");
        let (w, found) = c.watch();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].sentence(),
            "Lock(z) was granted to c1 by s1 and to c2 by s2 with no Unlock between"
        );
        assert_eq!(w.latest(), Some(&found[0]));
        assert_eq!(w.found().len(), 1);
    }

    #[test]
    fn lock_unlock_lock_is_fine_and_a_refused_lock_grants_nothing() {
        let mut c = Calls::default();
        c.call(100, 1, 1, Lock, "z", true)
            .call(200, 2, 1, Lock, "z", false)
            .call(300, 1, 2, Unlock, "z", true)
            .call(400, 2, 2, Lock, "z", true)
            .call(500, 3, 1, Lock, "y", true);
        assert!(c.watch().1.is_empty());
    }

    #[test]
    fn an_unlock_that_overlaps_the_first_grant_may_fall_between_so_no_alarm() {
        // The Unlock ran alongside c1's Lock: it may have run after it, freeing z for c2.
        let mut c = Calls::default();
        c.invoke(100, 1, 1, Lock, "z")
            .invoke(120, 3, 1, Unlock, "z")
            .done(120, 150, 3, 1, Unlock, "z", true, "s1")
            .done(100, 200, 1, 1, Lock, "z", true, "s1")
            .call(300, 2, 1, Lock, "z", true);
        assert!(c.watch().1.is_empty());
    }

    #[test]
    fn an_unlock_over_before_the_first_lock_began_does_not_cover_the_pair() {
        let mut c = Calls::default();
        c.call(10, 3, 1, Unlock, "z", true)
            .call(100, 1, 1, Lock, "z", true)
            .call(300, 2, 1, Lock, "z", true);
        assert_eq!(c.watch().1.len(), 1);
    }

    #[test]
    fn an_unlock_in_progress_or_given_up_may_have_freed_the_lock() {
        let mut c = Calls::default();
        c.call(100, 1, 1, Lock, "z", true)
            .invoke(150, 1, 2, Unlock, "z")
            .call(300, 2, 1, Lock, "z", true);
        assert!(c.watch().1.is_empty(), "in progress");
        c.ev(
            400,
            "c1",
            EventKind::OpFailed {
                client: 1,
                op: Unlock,
                lock: "z".into(),
                tag: None,
                req: RequestId::new(1, 2),
                reason: "no server answered".into(),
            },
        )
        .call(500, 3, 1, Lock, "z", true);
        assert!(c.watch().1.is_empty(), "given up: its effect is unknown");
    }

    #[test]
    fn an_unlock_answered_false_freed_nothing() {
        let mut c = Calls::default();
        c.call(100, 1, 1, Lock, "z", true)
            .invoke(150, 3, 1, Unlock, "z")
            .done(150, 160, 3, 1, Unlock, "z", false, "s2")
            .call(300, 2, 1, Lock, "z", true);
        assert_eq!(c.watch().1.len(), 1);
    }

    #[test]
    fn a_reset_starts_a_fresh_cluster_with_every_lock_free() {
        let mut c = Calls::default();
        c.call(100, 1, 1, Lock, "z", true)
            .call(200, 2, 1, Lock, "z", true);
        c.ev(300, "supervisor", EventKind::ClusterReset { generation: 1 })
            .call(400, 1, 1, Lock, "z", true);
        let (w, found) = c.watch();
        assert_eq!(found.len(), 1, "before the reset");
        assert_eq!(w.found().len(), 0, "the fresh cluster has none");
    }

    #[test]
    fn the_newest_uncovered_grant_is_the_one_named() {
        let mut c = Calls::default();
        c.call(100, 1, 1, Lock, "z", true)
            .call(200, 2, 1, Lock, "z", true)
            .call(300, 3, 1, Lock, "z", true);
        let found = c.watch().1;
        assert_eq!(found.len(), 2);
        assert_eq!((found[1].first.client, found[1].second.client), (2, 3));
    }

    #[test]
    fn only_answers_and_resets_matter() {
        let mut c = Calls::default();
        c.invoke(1, 1, 1, Lock, "z");
        assert!(!GrantWatch::cares(&c.events[0]));
        c.invoke(2, 1, 2, Unlock, "z");
        assert!(GrantWatch::cares(&c.events[1]));
    }
}
