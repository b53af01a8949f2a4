//! Timing the failovers a load goes through, from the log itself: the supervisor's bus feeds
//! every event through a [`Watch`] and publishes the `failover` event it gives back, so the
//! figure is exact even when a page is sent one load call in a hundred.
//!
//! The rule is the page's failover window (docs/page.md, "Failover window"), applied to every
//! call. The primary X *stops* (its `crashed`, its `dying`: it went silent, its `paused`, or
//! with none of those its `process_exited`) while a load runs. The clients it *affects* are
//! those with a call in progress then and those that later see X fail (`rpc_failed` naming X).
//! The window starts when X stopped if an affected call was in progress then, else when the
//! first affected call was invoked, and ends at the first answer to an affected client from
//! another server. A client answered by X itself (its reply left before it died) did not wait.
//!
//! The log's order is not the order of time here: the supervisor publishes a server's
//! `crashed` (with the time of the kill) only once it has read everything the dead process
//! reported, so the clerks' `rpc_failed` on X, and even their answers from the backup, can come
//! before it. A watch therefore opens at the first sign, a stop or an `rpc_failed` on the
//! serving primary, and the window is reckoned once both the stop and the answer are known. An
//! answer with no stop of X within [`NO_STOP_US`] after it (the primary was cut off, or lost
//! messages, but did not stop) is a failover too, timed from the first affected call. A watch
//! is dropped, unmeasured, when X comes back first (`resumed`, a new process), when the load
//! stops, or at a reset. A backup's death opens nothing: the primary goes on alone.

use shared::{CrashCause, Event, EventKind, NodeId, Role};

use crate::Cluster;

/// How long after the answer that ended a window the watch waits for the primary's stop (by
/// the events' clock): the supervisor publishes a `crashed` once the dead process's last
/// reports are read, milliseconds later even on a loaded machine.
pub const NO_STOP_US: u64 = 1_000_000;

/// The primary that stopped serving (or that clients saw fail), and the clients it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Down {
    server: NodeId,
    /// When it stopped, and how, once the log said so.
    stopped: Option<(u64, &'static str)>,
    /// Affected clients, with when they invoked the call that waited.
    affected: Vec<(u32, u64)>,
    /// The first answer to an affected client from another server: who, to whom, when.
    answer: Option<(NodeId, u32, u64)>,
}

impl Down {
    fn new(server: &NodeId, before: &Cluster) -> Down {
        Down {
            server: server.clone(),
            stopped: None,
            affected: before
                .clients_of(server)
                .filter_map(|c| c.pending.as_ref().map(|p| (c.id, p.since_us)))
                .collect(),
            answer: None,
        }
    }

    /// The `failover` event, once the answer is known and the stop is known or overdue.
    fn measured(&self, now_us: u64) -> Option<EventKind> {
        // Asked at every event while a watch is open (the bus's hot path): nothing is copied
        // until the window is known.
        let (to, client, t_us) = self.answer.as_ref()?;
        let (client, t_us) = (*client, *t_us);
        if self.stopped.is_none() && now_us < t_us.saturating_add(NO_STOP_US) {
            return None;
        }
        let first_call = self.affected.iter().map(|(_, at)| *at).min();
        let (since_us, reason) = match self.stopped {
            Some((stop, reason)) => match first_call {
                Some(at) if at > stop => (at, reason),
                _ => (stop, reason),
            },
            None => (first_call.unwrap_or(t_us), "did not answer"),
        };
        Some(EventKind::Failover {
            from: self.server.clone(),
            to: to.clone(),
            reason: reason.to_owned(),
            since_us,
            window_us: t_us.saturating_sub(since_us),
            client,
        })
    }
}

/// See the module docs. Fed every event of the log, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    down: Option<Down>,
    /// The last failover published: whose, and when its window ended. A stop or a failed
    /// call of that server from before then, reaching the log late, was part of it.
    last: Option<(NodeId, u64)>,
}

impl Watch {
    /// Looks at the next event of the log, with `before` the cluster as it was before that
    /// event. Returns the `failover` event to publish right after it, when it ends a watch.
    pub fn observe(&mut self, before: &Cluster, event: &Event) -> Option<EventKind> {
        let node = event.node.as_str();
        match &event.kind {
            EventKind::OpCompleted { server, client, .. } => {
                if let Some(down) = self.down.as_mut() {
                    if down.answer.is_none() && down.affected.iter().any(|(c, _)| c == client) {
                        if *server == down.server {
                            self.leave(*client);
                        } else {
                            down.answer = Some((server.clone(), *client, event.t_us));
                        }
                    }
                }
            }
            EventKind::OpFailed { client, .. }
                if self.down.as_ref().is_some_and(|d| d.answer.is_none()) =>
            {
                self.leave(*client);
            }
            EventKind::RpcFailed { client, server, .. } => match self.down.as_mut() {
                Some(down) if down.server == *server => {
                    if down.answer.is_none() && !down.affected.iter().any(|(c, _)| c == client) {
                        let at = before
                            .client(*client)
                            .and_then(|c| c.pending.as_ref())
                            .map_or(event.t_us, |p| p.since_us);
                        down.affected.push((*client, at));
                    }
                }
                Some(_) => {}
                None => {
                    if serving_primary(before, server)
                        && before.load().is_some()
                        && !self.already_measured(server, event)
                    {
                        self.down = Some(Down::new(server, before));
                    }
                }
            },
            EventKind::Crashed { cause, .. } if *cause != CrashCause::Reset => {
                self.stop(before, event, "crashed")
            }
            EventKind::Dying { .. } => self.stop(before, event, "went silent"),
            EventKind::Paused { .. } => self.stop(before, event, "paused"),
            EventKind::ProcessExited { .. } => self.stop(before, event, "exited"),
            EventKind::Resumed { .. } | EventKind::ProcessStarted { .. }
                if self.down.as_ref().is_some_and(|d| d.server == node) =>
            {
                self.down = None;
            }
            EventKind::ClusterReset { .. } => self.down = None,
            EventKind::LoadChanged(settings) if settings.clients == 0 => self.down = None,
            _ => {}
        }
        let done = self.down.as_ref()?.measured(event.t_us)?;
        if let EventKind::Failover {
            from,
            since_us,
            window_us,
            ..
        } = &done
        {
            self.last = Some((from.clone(), since_us + window_us));
        }
        self.down = None;
        Some(done)
    }

    /// Whether `event`, about `server`, belongs to the failover published last (it happened
    /// before that one's window ended, and reached the log after it).
    fn already_measured(&self, server: &str, event: &Event) -> bool {
        self.last
            .as_ref()
            .is_some_and(|(s, end)| s == server && event.t_us <= *end)
    }

    /// `client` no longer waits (X answered it after all, or it gave up). A watch that only
    /// clients opened, none of them waiting now, was no failover.
    fn leave(&mut self, client: u32) {
        if let Some(down) = self.down.as_mut() {
            down.affected.retain(|(c, _)| *c != client);
            if down.affected.is_empty() && down.stopped.is_none() {
                self.down = None;
            }
        }
    }

    /// `event`'s server stopped. Opens a watch if it was the serving primary while a load
    /// runs, or completes the one its clients opened; a later stop (a `crashed` after its
    /// `dying`) changes nothing.
    fn stop(&mut self, before: &Cluster, event: &Event, reason: &'static str) {
        if event.node.client_id().is_some() {
            return;
        }
        match self.down.as_mut() {
            Some(down) if down.server == event.node => {
                if down.stopped.is_none() {
                    down.stopped = Some((event.t_us, reason));
                }
            }
            Some(_) => {}
            None => {
                if serving_primary(before, &event.node)
                    && before.load().is_some()
                    && !self.already_measured(&event.node, event)
                {
                    let mut down = Down::new(&event.node, before);
                    down.stopped = Some((event.t_us, reason));
                    self.down = Some(down);
                }
            }
        }
    }
}

/// Whether `server` was the primary, alive, running and answering.
/// Whether `server` was the primary the clients use: the cluster's primary (a server serving
/// alone before one that still counts on a backup: a primary restarted after its backup took
/// over serves no one), running and answering, with a client sending to it.
fn serving_primary(before: &Cluster, server: &str) -> bool {
    before.holder_of(Role::Primary).as_deref() == Some(server)
        && before.node(server).is_some_and(|s| !s.paused && !s.dying)
        && before.clients_of(server).next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{LoadSettings, Op, RequestId};

    fn req(client: u32) -> RequestId {
        RequestId {
            client,
            seq: 1,
            incarnation: 0,
        }
    }

    fn started(pid: u32, role: Role) -> EventKind {
        EventKind::ProcessStarted {
            pid,
            role,
            port: 7000,
        }
    }

    fn invoked(client: u32) -> EventKind {
        invoked_at(client, "s1")
    }

    fn invoked_at(client: u32, server: &str) -> EventKind {
        EventKind::OpInvoked {
            client,
            req: req(client),
            op: Op::Lock,
            lock: "load-1".into(),
            tag: None,
            server: server.into(),
        }
    }

    fn answered(client: u32, server: &str) -> EventKind {
        EventKind::OpCompleted {
            client,
            op: Op::Lock,
            lock: "load-1".into(),
            tag: None,
            ok: true,
            req: req(client),
            server: server.into(),
            latency_us: 100,
            attempts: 1,
        }
    }

    fn failed_at_s1(client: u32) -> EventKind {
        EventKind::RpcFailed {
            client,
            req: req(client),
            server: "s1".into(),
            reason: "connection refused".into(),
            retry_to: "s2".into(),
        }
    }

    fn load(clients: u32) -> EventKind {
        EventKind::LoadChanged(LoadSettings {
            clients,
            ..LoadSettings::STOPPED
        })
    }

    fn crash(pid: u32) -> EventKind {
        EventKind::Crashed {
            pid,
            cause: CrashCause::Command,
            req: None,
        }
    }

    fn client(id: u32) -> String {
        format!("c{id}")
    }

    /// Feeds the events through the model and the watch, as the bus does; returns what the
    /// watch gave back.
    fn run(events: &[(u64, String, EventKind)]) -> Vec<EventKind> {
        let mut cluster = Cluster::default();
        let mut watch = Watch::default();
        let mut out = Vec::new();
        for (i, (t_us, node, kind)) in events.iter().enumerate() {
            let e = Event {
                seq: i as u64 + 1,
                t_us: *t_us,
                node: node.as_str().into(),
                kind: kind.clone(),
            };
            out.extend(watch.observe(&cluster, &e));
            cluster.apply(&e);
        }
        out
    }

    /// A primary, a backup and a load; client 1001 has a call in progress.
    fn pair() -> Vec<(u64, String, EventKind)> {
        vec![
            (1, "s1".into(), started(11, Role::Primary)),
            (2, "s2".into(), started(12, Role::Backup)),
            (3, "load".into(), load(4)),
            (400, client(1001), invoked(1001)),
        ]
    }

    fn window(out: &[EventKind]) -> Option<(u64, u64, u32, &str)> {
        match out {
            [EventKind::Failover {
                since_us,
                window_us,
                client,
                reason,
                ..
            }] => Some((*since_us, *window_us, *client, reason.as_str())),
            _ => None,
        }
    }

    #[test]
    fn a_primary_crash_is_timed_to_the_first_answer_an_affected_client_gets_elsewhere() {
        let mut log = pair();
        log.extend([
            (900, client(1002), invoked(1002)),
            (1_000, "s1".into(), crash(11)),
            // A reply that left s1 before it died: that client did not wait.
            (1_100, client(1002), answered(1002, "s1")),
            (
                1_200,
                "s1".into(),
                EventKind::ProcessExited {
                    pid: 11,
                    signal: Some(9),
                    code: None,
                },
            ),
            (1_300, client(1001), failed_at_s1(1001)),
            (2_250, client(1001), answered(1001, "s2")),
            (2_300, client(1001), invoked(1001)),
            (2_400, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(
            run(&log),
            vec![EventKind::Failover {
                from: "s1".into(),
                to: "s2".into(),
                reason: "crashed".into(),
                since_us: 1_000,
                window_us: 1_250,
                client: 1001,
            }]
        );
    }

    #[test]
    fn with_no_call_in_progress_the_window_starts_at_the_first_call_that_runs_into_it() {
        let mut log = pair();
        log.extend([
            (500, client(1001), answered(1001, "s1")),
            (1_000, "s1".into(), crash(11)),
            // Someone already at s2 is answered: not affected, no failover.
            (1_400, "c1".into(), invoked(1)),
            (1_450, "c1".into(), answered(1, "s2")),
            (1_500, client(1003), invoked(1003)),
            (1_510, client(1003), failed_at_s1(1003)),
            (1_800, client(1003), answered(1003, "s2")),
        ]);
        assert_eq!(window(&run(&log)), Some((1_500, 300, 1003, "crashed")));
    }

    #[test]
    fn a_pause_a_silence_and_an_exit_open_the_window_too() {
        for (kind, reason) in [
            (EventKind::Paused { pid: 11 }, "paused"),
            (
                EventKind::Dying {
                    pid: 11,
                    dies_in_ms: 500,
                    point: None,
                },
                "went silent",
            ),
            (
                EventKind::ProcessExited {
                    pid: 11,
                    signal: Some(9),
                    code: None,
                },
                "exited",
            ),
        ] {
            let mut log = pair();
            log.extend([
                (500, "s1".into(), kind),
                (800, client(1001), failed_at_s1(1001)),
                (900, client(1001), answered(1001, "s2")),
            ]);
            assert_eq!(
                window(&run(&log)),
                Some((500, 400, 1001, reason)),
                "{reason}"
            );
        }
    }

    #[test]
    fn nothing_is_timed_without_a_load_for_a_backup_or_when_the_primary_comes_back() {
        // No load: a person's next click could be minutes later.
        let mut log = pair();
        log[2].2 = load(0);
        log.extend([
            (500, "s1".into(), crash(11)),
            (900, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(run(&log), vec![]);
        // The backup dies: the primary goes on alone.
        let mut log = pair();
        log.extend([
            (500, "s2".into(), crash(12)),
            (900, client(1001), answered(1001, "s1")),
        ]);
        assert_eq!(run(&log), vec![]);
        // The primary is resumed before any client turned to the backup.
        let mut log = pair();
        log.extend([
            (500, "s1".into(), EventKind::Paused { pid: 11 }),
            (600, "s1".into(), EventKind::Resumed { pid: 11 }),
            (900, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(run(&log), vec![]);
        // The load stops, or the cluster is reset, before any answer.
        for end in [load(0), EventKind::ClusterReset { generation: 2 }] {
            let mut log = pair();
            log.extend([
                (500, "s1".into(), crash(11)),
                (600, "load".into(), end),
                (900, client(1001), answered(1001, "s2")),
            ]);
            assert_eq!(run(&log), vec![]);
        }
    }

    /// The supervisor publishes `crashed` once the dead process's last reports are read: the
    /// clerks' failures at s1, and their answers from s2, can come before it in the log. The
    /// window is still reckoned from the kill's time.
    #[test]
    fn a_crashed_published_after_the_clerks_moved_on_still_times_from_the_kill() {
        let mut log = pair();
        log.extend([
            (1_100, client(1001), failed_at_s1(1001)),
            (1_300, client(1001), answered(1001, "s2")),
            (1_350, client(1001), invoked(1001)),
            (1_000, "s1".into(), crash(11)),
            (1_400, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(window(&run(&log)), Some((1_000, 300, 1001, "crashed")));
    }

    /// A primary cut off from its clients does not stop: their calls time out and go to the
    /// backup. Once it is clear that no stop is coming, that is a failover from the first call
    /// that waited.
    #[test]
    fn clients_that_left_a_primary_that_did_not_stop_are_a_failover_too() {
        let mut log = pair();
        log.extend([
            (5_000, client(1001), failed_at_s1(1001)),
            (5_100, client(1001), answered(1001, "s2")),
            (5_200, client(1001), invoked(1001)),
            (900_000, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(run(&log), vec![], "a crash may still be on its way");
        log.push((5_100 + NO_STOP_US, client(1001), invoked(1001)));
        assert_eq!(
            window(&run(&log)),
            Some((400, 4_700, 1001, "did not answer"))
        );
        // A crash from before that answer, reaching the log only now (a supervisor more than
        // a second behind), was that failover: it opens no second one.
        log.extend([
            (4_900, "s1".into(), crash(11)),
            (5_200 + NO_STOP_US, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(run(&log).len(), 1, "{:?}", run(&log));
    }

    /// A call that failed at s1 once (a lost reply) and was then answered by s1 again opened
    /// a watch that must not block the next failover.
    #[test]
    fn a_watch_whose_clients_all_came_back_is_dropped() {
        let mut cluster = Cluster::default();
        let mut watch = Watch::default();
        let mut log = pair();
        log.extend([
            (1_000, client(1001), failed_at_s1(1001)),
            (1_200, client(1001), answered(1001, "s1")),
        ]);
        for (i, (t_us, node, kind)) in log.iter().enumerate() {
            let e = Event {
                seq: i as u64 + 1,
                t_us: *t_us,
                node: node.as_str().into(),
                kind: kind.clone(),
            };
            assert_eq!(watch.observe(&cluster, &e), None);
            cluster.apply(&e);
            if i == 4 {
                assert!(watch.down.is_some(), "the failure at s1 opens a watch");
            }
        }
        assert_eq!(watch.down, None);
        let mut log = pair();
        log.extend([
            (1_000, client(1001), failed_at_s1(1001)),
            (1_200, client(1001), answered(1001, "s1")),
            (1_300, client(1002), invoked(1002)),
            (2_000, "s1".into(), crash(11)),
            (2_100, client(1002), failed_at_s1(1002)),
            (2_500, client(1002), answered(1002, "s2")),
        ]);
        assert_eq!(window(&run(&log)), Some((2_000, 500, 1002, "crashed")));
    }

    fn role(role: Role, serving_alone: bool) -> EventKind {
        EventKind::RoleChanged {
            role,
            serving_alone,
            reason: "a client failed over to it".into(),
        }
    }

    /// Found by review: s1 crashed, came back as primary (empty) while the clerks stayed with
    /// s2, and its second crash was reported as a failover though it served no one.
    #[test]
    fn a_restarted_primary_that_serves_no_one_has_no_failover() {
        let mut log = pair();
        log.extend([
            (1_000, "s1".into(), crash(11)),
            (1_100, client(1001), failed_at_s1(1001)),
            (1_200, "s2".into(), role(Role::Primary, true)),
            (1_300, client(1001), answered(1001, "s2")),
            (2_000, "s1".into(), started(21, Role::Primary)),
            (3_000, client(1001), invoked_at(1001, "s2")),
            (3_100, "s1".into(), crash(21)),
            (3_200, client(1001), answered(1001, "s2")),
        ]);
        let out = run(&log);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(window(&out), Some((1_000, 300, 1001, "crashed")));
    }

    /// Found by review: every link to s1 dropping everything, the clerks left s1 one by one as
    /// their calls timed out, and a second "did not answer" came for the clerks that timed out
    /// more than a second after the first answer from s2.
    #[test]
    fn clients_leaving_a_primary_one_by_one_are_one_failover() {
        let mut log = pair();
        log.extend([
            (500, client(1002), invoked(1002)),
            (5_000, client(1001), failed_at_s1(1001)),
            (5_050, "s2".into(), role(Role::Primary, true)),
            (5_100, client(1001), answered(1001, "s2")),
            (5_200 + NO_STOP_US, client(1001), invoked_at(1001, "s2")),
            (2_600_000, client(1002), failed_at_s1(1002)),
            (2_600_100, client(1002), answered(1002, "s2")),
            (3_700_000, client(1001), invoked_at(1001, "s2")),
        ]);
        let out = run(&log);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(window(&out), Some((400, 4_700, 1001, "did not answer")));
    }

    #[test]
    fn a_silence_then_the_crash_is_one_window_from_the_silence() {
        let mut log = pair();
        log.extend([
            (
                500,
                "s1".into(),
                EventKind::Dying {
                    pid: 11,
                    dies_in_ms: 100,
                    point: None,
                },
            ),
            (600, "s1".into(), crash(11)),
            (900, client(1001), answered(1001, "s2")),
            (950, client(1001), answered(1001, "s2")),
        ]);
        assert_eq!(window(&run(&log)), Some((500, 400, 1001, "went silent")));
    }
}
