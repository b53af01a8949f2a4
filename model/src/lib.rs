//! The picture of the cluster, folded from the event log: the one place that says what an event
//! means for a server or a clerk.
//!
//! [`Cluster`] is read by two parties that must agree: the server's bus folds every event it
//! publishes, builds each viewer's snapshot from it and resolves roles ("primary") for the
//! supervisor; the page starts from a snapshot ([`Cluster::from_snapshot`]) and folds the live
//! events that follow, for its server and client cards. One fold, so a snapshot and the events
//! after it always describe the same cluster.
//!
//! It is a pure fold: no I/O, no clock (time comes from the events), no tokio; it depends on
//! `shared` only and builds for wasm32. It must not keep the event log (the bus and the page
//! each keep their own), page state (typed lock names, finished calls, a command on its way)
//! or messages: a message is lost when the bus publishes `msg_lost`, and nowhere else.
//!
//! The decisions written here, each pinned by a test below:
//!
//! - **Death.** A server is dead from its `crashed` event on: the supervisor publishes `crashed`
//!   only after every event the server reported has been read, so nothing of that process
//!   follows it in the log. `process_exited` marks it dead too, because a process can end
//!   without a `crashed` (it fell over by itself). Either one disarms `crash_before_reply`.
//! - **Incarnations.** A `crashed` or `process_exited` whose pid is not the server's current
//!   pid belongs to an earlier process of that id (before a restart) and changes nothing.
//!   `process_started` begins a new incarnation: alive, new pid, port and role, and an empty
//!   lock table and zeroed counters (a restarted Lab 1 server comes back empty).
//! - **Counting.** `served` counts client requests a server answered, retries answered from its
//!   at-most-once record included; `applied_forwards` counts forwarded operations it applied, so
//!   a duplicate forward (answered from the record, not applied) is not counted.
//! - **Reset.** `cluster_reset` starts a new generation: the old generation's servers and clerks
//!   are gone (new servers come with their `process_started`, new clerks with their first
//!   `op_invoked`). The supervisor ends every call in progress with `op_failed` before the
//!   reset, so dropping the clerks loses no call. A reset also heals the network and ends step
//!   mode (the supervisor publishes the plan it leaves, with the same seed, as `faults_changed`).
//! - **Clients are processes.** An event at a client's node (`"c1"`) is about that client's
//!   process: `client_started` (a new process, possibly a new incarnation), `crashed` and
//!   `process_exited` (it is dead; its call in progress ends with the `op_failed` the supervisor
//!   publishes). An event whose pid is not the client's current one changes nothing.
//! - **Held messages.** The picture keeps the messages step mode holds (`msg_held`), because a
//!   viewer must be able to list them from a snapshot; a held message leaves the list when it
//!   is delivered or lost. No other message is kept.
//! - **Faults.** `faults_changed` carries the whole plan in force; the last one wins.

pub mod failover;
pub mod runfile;
pub mod shiviz;

use std::collections::BTreeMap;

use shared::{
    ClientInfo, CrashPoint, Event, EventKind, FaultPlan, HeldMsg, LoadSettings, LockVerdict, MsgId,
    NodeId, NodeInfo, PendingCall, Role, Snapshot,
};

/// Servers and clerks as the event log says they are now. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// By id; each one's `locks` kept sorted.
    servers: BTreeMap<NodeId, NodeInfo>,
    clients: BTreeMap<u32, ClientInfo>,
    generation: u64,
    slow_motion_ms: u64,
    faults: FaultPlan,
    /// Oldest first.
    held: Vec<HeldMsg>,
    /// The checker's latest verdict per lock of this generation.
    verdicts: BTreeMap<String, LockVerdict>,
    /// The load generator's settings while it runs (a reset does not stop it).
    load: Option<LoadSettings>,
}

impl Cluster {
    /// The cluster as a snapshot describes it: the state after its last event, so the
    /// snapshot's own `events` must not be applied again.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        // Maps are filled by `extend` (one insert each, the last of equal keys wins), not
        // `collect` (which sorts first, with the same result): each `collect` into a map
        // brings its own copy of the standard library's stable sort into the page's wasm.
        let mut servers = BTreeMap::new();
        servers.extend(snapshot.nodes.iter().map(|n| {
            let mut n = n.clone();
            n.locks.sort_unstable();
            n.locks.dedup();
            (n.id.clone(), n)
        }));
        let mut clients = BTreeMap::new();
        clients.extend(snapshot.clients.iter().map(|c| (c.id, c.clone())));
        let mut verdicts = BTreeMap::new();
        verdicts.extend(
            snapshot
                .verdicts
                .iter()
                .map(|v| (v.lock.clone(), v.clone())),
        );
        Cluster {
            servers,
            clients,
            generation: snapshot.generation,
            slow_motion_ms: snapshot.slow_motion_ms,
            faults: snapshot.faults.clone(),
            held: snapshot.held.clone(),
            verdicts,
            load: snapshot.load,
        }
    }

    /// Folds the next event of the log into the picture.
    pub fn apply(&mut self, event: &Event) {
        let node = event.node.as_str();
        match &event.kind {
            EventKind::ProcessStarted { pid, role, port } => {
                self.servers.insert(
                    event.node.clone(),
                    NodeInfo {
                        id: event.node.clone(),
                        role: *role,
                        serving_alone: false,
                        alive: true,
                        pid: Some(*pid),
                        port: Some(*port),
                        locks: Vec::new(),
                        served: 0,
                        applied_forwards: 0,
                        armed: false,
                        crash_point: None,
                        paused: false,
                        dying: false,
                    },
                );
            }
            EventKind::Crashed { pid, .. } | EventKind::ProcessExited { pid, .. } => {
                if let Some(id) = event.node.client_id() {
                    if let Some(c) = self.clients.get_mut(&id).filter(|c| c.pid == Some(*pid)) {
                        c.alive = false;
                        c.pending = None;
                    }
                } else if let Some(s) = self.current_incarnation(node, *pid) {
                    s.alive = false;
                    s.armed = false;
                    s.crash_point = None;
                    s.paused = false;
                    s.dying = false;
                }
            }
            EventKind::CrashArmed { point, .. } => {
                if let Some(s) = self.servers.get_mut(node) {
                    s.armed = true;
                    s.crash_point = Some(point.unwrap_or(CrashPoint::BeforeReply));
                }
            }
            EventKind::Dying { pid, .. } => {
                if let Some(s) = self.current_incarnation(node, *pid) {
                    s.dying = true;
                    s.armed = false;
                    s.crash_point = None;
                }
            }
            EventKind::Paused { pid } | EventKind::Resumed { pid } => {
                let paused = matches!(event.kind, EventKind::Paused { .. });
                if let Some(s) = self.current_incarnation(node, *pid) {
                    s.paused = paused;
                }
            }
            EventKind::ClientStarted { pid, incarnation } => {
                if let Some(id) = event.node.client_id() {
                    let c = self.clerk(id, "");
                    c.pid = Some(*pid);
                    c.alive = true;
                    c.incarnation = *incarnation;
                }
            }
            EventKind::FaultsChanged { plan, .. } => self.faults = plan.clone(),
            EventKind::MsgHeld {
                msg_id,
                from,
                to,
                msg,
            } => {
                if !self.held.iter().any(|h| h.msg_id == *msg_id) {
                    self.held.push(HeldMsg {
                        msg_id: *msg_id,
                        from: from.clone(),
                        to: to.clone(),
                        msg: msg.clone(),
                        since_us: event.t_us,
                    });
                }
            }
            EventKind::RoleChanged {
                role,
                serving_alone,
                ..
            } => {
                if let Some(s) = self.servers.get_mut(node) {
                    s.role = *role;
                    s.serving_alone = *serving_alone;
                }
            }
            EventKind::Executed {
                lock,
                held,
                duplicate,
                forwarded,
                ..
            } => {
                if let Some(s) = self.servers.get_mut(node) {
                    // `held` is the lock's state afterwards, right for a duplicate as well.
                    match (s.locks.binary_search(lock), *held) {
                        (Err(at), true) => s.locks.insert(at, lock.clone()),
                        (Ok(at), false) => {
                            s.locks.remove(at);
                        }
                        _ => {}
                    }
                    match (*forwarded, *duplicate) {
                        (false, _) => s.served += 1,
                        (true, false) => s.applied_forwards += 1,
                        (true, true) => {}
                    }
                }
            }
            EventKind::OpInvoked {
                client,
                req,
                op,
                lock,
                tag,
                server,
            } => {
                let c = self.clerk(*client, server);
                c.server.clone_from(server);
                c.pending = Some(PendingCall {
                    req: *req,
                    op: *op,
                    lock: lock.clone(),
                    tag: tag.clone(),
                    since_us: event.t_us,
                    retries: 0,
                });
            }
            EventKind::RpcFailed {
                client,
                req,
                retry_to,
                ..
            } => {
                let c = self.clerk(*client, retry_to);
                c.server.clone_from(retry_to);
                if let Some(call) = c.pending.as_mut().filter(|call| call.req == *req) {
                    call.retries += 1;
                }
            }
            EventKind::OpCompleted { client, server, .. } => {
                let c = self.clerk(*client, server);
                c.pending = None;
                c.completed += 1;
                c.server.clone_from(server);
            }
            EventKind::OpFailed { client, .. } => {
                // It names no server, so a clerk first seen failing is not invented; every
                // clerk starts with `op_invoked`, and a snapshot lists the ones before it.
                if let Some(c) = self.clients.get_mut(client) {
                    c.pending = None;
                    c.failed += 1;
                }
            }
            EventKind::ClusterReset { generation } => {
                self.servers.clear();
                self.clients.clear();
                self.held.clear();
                self.verdicts.clear();
                self.faults = FaultPlan {
                    seed: self.faults.seed,
                    ..FaultPlan::default()
                };
                self.generation = *generation;
            }
            EventKind::SlowMotionSet { delay_ms } => self.slow_motion_ms = *delay_ms,
            EventKind::Verdict(v) => {
                self.verdicts.insert(v.lock.clone(), v.clone());
            }
            EventKind::LoadChanged(settings) => {
                self.load = Some(*settings).filter(|s| s.clients > 0);
            }
            EventKind::LoadStats(_) | EventKind::Failover { .. } => {}
            EventKind::MsgDelivered { msg_id, .. } | EventKind::MsgLost { msg_id, .. } => {
                self.unhold(*msg_id)
            }
            EventKind::MsgSent { .. } => {}
        }
    }

    fn unhold(&mut self, msg_id: MsgId) {
        if !self.held.is_empty() {
            self.held.retain(|h| h.msg_id != msg_id);
        }
    }

    /// The server `id` if `pid` is its current process (not an earlier one of the same id).
    fn current_incarnation(&mut self, id: &str, pid: u32) -> Option<&mut NodeInfo> {
        self.servers.get_mut(id).filter(|s| s.pid == Some(pid))
    }

    /// Clerk `id`, recorded as talking to `server` if it is new.
    fn clerk(&mut self, id: u32, server: &str) -> &mut ClientInfo {
        self.clients.entry(id).or_insert_with(|| ClientInfo {
            id,
            server: server.into(),
            pending: None,
            completed: 0,
            failed: 0,
            pid: None,
            alive: true,
            incarnation: 0,
        })
    }

    /// Every server, in id order (as a snapshot lists them).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.servers().cloned().collect()
    }

    /// Every server, in id order, borrowed.
    pub fn servers(&self) -> impl Iterator<Item = &NodeInfo> {
        self.servers.values()
    }

    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.servers.get(id)
    }

    /// Every clerk, in id order (as a snapshot lists them).
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.clients.values().cloned().collect()
    }

    /// The clerks that send to `server` now, in id order.
    pub fn clients_of<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a ClientInfo> + 'a {
        self.clients.values().filter(move |c| c.server == server)
    }

    pub fn client(&self, id: u32) -> Option<&ClientInfo> {
        self.clients.get(&id)
    }

    /// False for a dead server and for an id that names no server.
    pub fn is_alive(&self, id: &str) -> bool {
        self.servers.get(id).is_some_and(|s| s.alive)
    }

    /// The live server that holds `role` now; the primary includes a server serving alone.
    /// Two live servers can both be primary (a client failed over to the backup while the old
    /// primary was paused, partitioned, or restarted in its first role): the role then names the
    /// one that runs and serves, not the stopped or stale one. A running server before a paused
    /// one, then one serving alone (clients turned to it) before one that still counts on a
    /// backup, then the first by id. (Owned, so it can leave a lock the caller holds while asking.)
    pub fn holder_of(&self, role: Role) -> Option<NodeId> {
        self.servers
            .values()
            .filter(|s| s.alive && s.role == role)
            .min_by_key(|s| (s.paused, !s.serving_alone))
            .map(|s| s.id.clone())
    }

    /// How many resets the cluster went through.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn slow_motion_ms(&self) -> u64 {
        self.slow_motion_ms
    }

    /// The checker's latest verdict on each lock of this generation, by lock name.
    pub fn verdicts(&self) -> impl Iterator<Item = &LockVerdict> {
        self.verdicts.values()
    }

    /// The load generator's settings while it runs.
    pub fn load(&self) -> Option<LoadSettings> {
        self.load
    }

    /// The checker's latest verdict on `lock`, if it has given one this generation.
    pub fn verdict(&self, lock: &str) -> Option<&LockVerdict> {
        self.verdicts.get(lock)
    }

    /// The network's faults in force.
    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    /// Messages step mode holds, oldest first.
    pub fn held(&self) -> &[HeldMsg] {
        &self.held
    }

    /// The held message `msg_id`, if step mode holds it.
    pub fn held_msg(&self, msg_id: MsgId) -> Option<&HeldMsg> {
        self.held.iter().find(|h| h.msg_id == msg_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{CrashCause, Op, RequestId};

    fn at(node: &str, t_us: u64, kind: EventKind) -> Event {
        Event {
            seq: 0,
            t_us,
            node: node.into(),
            kind,
        }
    }

    fn started(id: &str, role: Role, pid: u32) -> Event {
        at(
            id,
            0,
            EventKind::ProcessStarted {
                pid,
                role,
                port: 7000 + pid as u16,
            },
        )
    }

    fn crashed(id: &str, pid: u32) -> Event {
        at(
            id,
            0,
            EventKind::Crashed {
                pid,
                cause: CrashCause::Command,
                req: None,
            },
        )
    }

    fn exited(id: &str, pid: u32) -> Event {
        at(
            id,
            0,
            EventKind::ProcessExited {
                pid,
                signal: Some(9),
                code: None,
            },
        )
    }

    fn armed(id: &str) -> Event {
        at(
            id,
            0,
            EventKind::CrashArmed {
                point: None,
                dying_ms: None,
            },
        )
    }

    fn req(client: u32, seq: u64) -> RequestId {
        RequestId::new(client, seq)
    }

    /// `id` ran (or, when `duplicate`, answered from its record) a lock of `lock`.
    fn executed(id: &str, lock: &str, held: bool, forwarded: bool, duplicate: bool) -> Event {
        at(
            id,
            0,
            EventKind::Executed {
                req: req(1, 1),
                op: Op::Lock,
                lock: lock.to_owned(),
                ok: true,
                held,
                duplicate,
                forwarded,
            },
        )
    }

    fn invoked(client: u32, seq: u64, server: &str, t_us: u64) -> Event {
        at(
            &shared::client_node(client),
            t_us,
            EventKind::OpInvoked {
                client,
                req: req(client, seq),
                op: Op::Lock,
                lock: "a".into(),
                tag: Some("x1".into()),
                server: server.into(),
            },
        )
    }

    fn rpc_failed(client: u32, seq: u64, server: &str, retry_to: &str) -> Event {
        at(
            &shared::client_node(client),
            0,
            EventKind::RpcFailed {
                client,
                req: req(client, seq),
                server: server.into(),
                reason: "connection closed".into(),
                retry_to: retry_to.into(),
            },
        )
    }

    fn completed(client: u32, seq: u64, server: &str) -> Event {
        at(
            &shared::client_node(client),
            0,
            EventKind::OpCompleted {
                client,
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                ok: true,
                req: req(client, seq),
                server: server.into(),
                latency_us: 10,
                attempts: 1,
            },
        )
    }

    fn failed(client: u32, seq: u64) -> Event {
        at(
            &shared::client_node(client),
            0,
            EventKind::OpFailed {
                client,
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                req: req(client, seq),
                reason: "no server answered".into(),
            },
        )
    }

    fn reset(generation: u64) -> Event {
        at(
            shared::SUPERVISOR,
            0,
            EventKind::ClusterReset { generation },
        )
    }

    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Cluster {
        let mut c = Cluster::default();
        for e in events {
            c.apply(e);
        }
        c
    }

    /// s1 primary (pid 10), s2 backup (pid 20).
    fn pair() -> Vec<Event> {
        vec![
            started("s1", Role::Primary, 10),
            started("s2", Role::Backup, 20),
        ]
    }

    fn with(mut base: Vec<Event>, more: &[Event]) -> Vec<Event> {
        base.extend_from_slice(more);
        base
    }

    // ---- Death: from `crashed` on, and from an exit without a crash ------------------------

    #[test]
    fn a_server_is_dead_from_its_crashed_event_not_only_from_its_exit() {
        // (what happened to s1 after it was armed, s1 alive?, s1 armed?, the primary now)
        #[rustfmt::skip]
        let cases = [
            ("nothing",                    vec![],                                    true,  true,  Some("s1")),
            ("crashed, exit not yet seen", vec![crashed("s1", 10)],                   false, false, None),
            ("exited without a crash",     vec![exited("s1", 10)],                    false, false, None),
            ("crashed, then exited",       vec![crashed("s1", 10), exited("s1", 10)], false, false, None),
        ];
        for (what, after, alive, is_armed, primary) in cases {
            let c = fold(&with(with(pair(), &[armed("s1")]), &after));
            assert_eq!(c.is_alive("s1"), alive, "{what}: alive");
            assert_eq!(c.node("s1").map(|s| s.alive), Some(alive), "{what}: card");
            assert_eq!(
                c.node("s1").map(|s| s.armed),
                Some(is_armed),
                "{what}: armed"
            );
            assert_eq!(
                c.holder_of(Role::Primary).as_deref(),
                primary,
                "{what}: primary"
            );
            assert!(c.is_alive("s2"), "{what}: s2 is untouched");
        }
    }

    // ---- Incarnations: a pid names one process ------------------------------------------

    #[test]
    fn an_old_incarnation_s_crash_or_exit_does_not_kill_the_restarted_server() {
        // s1 (pid 10) died and was restarted as pid 11; then a late word about pid 10 arrives.
        let restarted = with(
            pair(),
            &[
                crashed("s1", 10),
                started("s1", Role::Backup, 11),
                armed("s1"),
            ],
        );
        // (late event, s1 alive?, s1 armed?)
        #[rustfmt::skip]
        let cases = [
            ("old exit",             exited("s1", 10),  true,  true),
            ("old crash",            crashed("s1", 10), true,  true),
            ("this process's exit",  exited("s1", 11),  false, false),
            ("this process's crash", crashed("s1", 11), false, false),
        ];
        for (what, late, alive, is_armed) in cases {
            let c = fold(&with(restarted.clone(), &[late]));
            let s1 = c.node("s1").expect("s1");
            assert_eq!(
                (s1.alive, s1.armed, s1.pid),
                (alive, is_armed, Some(11)),
                "{what}"
            );
        }
    }

    #[test]
    fn a_restart_comes_back_empty_with_its_new_process() {
        let mut c = fold(&with(
            pair(),
            &[
                executed("s1", "a", true, false, false),
                executed("s1", "b", true, true, false),
                at(
                    "s1",
                    0,
                    EventKind::RoleChanged {
                        role: Role::Primary,
                        serving_alone: true,
                        reason: "backup unreachable".into(),
                    },
                ),
                armed("s1"),
                crashed("s1", 10),
            ],
        ));
        assert_eq!(c.node("s1").map(|s| s.locks.len()), Some(2));
        c.apply(&started("s1", Role::Backup, 11));
        let s1 = c.node("s1").expect("s1");
        assert!(s1.alive);
        assert_eq!(
            (s1.pid, s1.port, s1.role),
            (Some(11), Some(7011), Role::Backup)
        );
        assert!(
            s1.locks.is_empty(),
            "Lab 1 has no recovery: the table is empty"
        );
        assert_eq!((s1.served, s1.applied_forwards), (0, 0));
        assert!(!s1.serving_alone && !s1.armed);
    }

    // ---- Counting: duplicates are served, not applied ------------------------------------

    #[test]
    fn duplicates_count_as_served_but_not_as_applied_forwards() {
        // (executed at s2: forwarded, duplicate -> served, applied_forwards)
        #[rustfmt::skip]
        let cases = [
            ("a client request",                               false, false, 1, 0),
            ("a client's retry answered from the record",      false, true,  1, 0),
            ("a forward applied",                              true,  false, 0, 1),
            ("a forward seen again, answered from the record", true,  true,  0, 0),
        ];
        for (what, forwarded, duplicate, served, applied) in cases {
            let c = fold(&with(
                pair(),
                &[executed("s2", "a", true, forwarded, duplicate)],
            ));
            let s2 = c.node("s2").expect("s2");
            assert_eq!(
                (s2.served, s2.applied_forwards),
                (served, applied),
                "{what}"
            );
            assert_eq!(s2.locks, ["a"], "{what}: held is the state afterwards");
        }
    }

    #[test]
    fn lock_tables_follow_held_and_stay_sorted() {
        let c = fold(&with(
            pair(),
            &[
                executed("s1", "m", true, false, false),
                executed("s1", "b", true, false, false),
                executed("s1", "z", true, false, false),
                executed("s1", "m", false, false, false),
                executed("s1", "b", true, false, true),
                executed("s2", "q", true, true, false),
            ],
        ));
        assert_eq!(
            c.node("s1").map(|s| s.locks.clone()),
            Some(vec!["b".into(), "z".into()])
        );
        assert_eq!(
            c.node("s2").map(|s| s.locks.clone()),
            Some(vec!["q".into()])
        );
        assert_eq!(
            c.nodes().iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
    }

    // ---- Reset: a new generation, without the old one's servers and clerks ----------------

    #[test]
    fn a_reset_drops_the_old_generation_s_servers_and_clerks() {
        let mut c = fold(&with(
            pair(),
            &[
                executed("s1", "a", true, false, false),
                invoked(1, 1, "s1", 5),
                completed(1, 1, "s1"),
                invoked(2, 1, "s1", 6),
                failed(2, 1),
                reset(1),
            ],
        ));
        assert_eq!(c.generation(), 1);
        assert!(c.nodes().is_empty(), "the old servers are gone");
        assert!(c.clients().is_empty(), "the old clerks are gone");
        assert_eq!(c.holder_of(Role::Primary), None);
        c.apply(&started("s1", Role::Primary, 30));
        c.apply(&invoked(1, 1, "s1", 9));
        let s1 = c.node("s1").expect("back with the new generation");
        assert!(s1.locks.is_empty());
        let c1 = c.client(1).expect("c1 of the new generation");
        assert_eq!((c1.completed, c1.failed), (0, 0), "counts start over");
    }

    // ---- Clerks and their calls ----------------------------------------------------------

    #[test]
    fn a_call_is_pending_from_invoked_to_its_answer_and_counts_retries() {
        let mut c = fold(&[invoked(3, 1, "s1", 5)]);
        let call = c
            .client(3)
            .and_then(|c| c.pending.clone())
            .expect("pending");
        assert_eq!((call.req, call.since_us, call.retries), (req(3, 1), 5, 0));
        assert_eq!(call.tag.as_deref(), Some("x1"));

        c.apply(&rpc_failed(3, 1, "s1", "s2"));
        let c3 = c.client(3).expect("c3");
        assert_eq!(c3.server, "s2", "it stays with the backup");
        assert_eq!(c3.pending.as_ref().map(|p| p.retries), Some(1));

        c.apply(&rpc_failed(3, 0, "s2", "s2"));
        assert_eq!(
            c.client(3)
                .and_then(|c| c.pending.as_ref())
                .map(|p| p.retries),
            Some(1),
            "a failure of another request is not a retry of this call"
        );

        c.apply(&completed(3, 1, "s2"));
        let c3 = c.client(3).expect("c3");
        assert_eq!(
            (c3.pending.is_none(), c3.completed, c3.failed),
            (true, 1, 0)
        );
        assert_eq!(c3.server, "s2", "who answered");

        c.apply(&invoked(3, 2, "s2", 9));
        c.apply(&failed(3, 2));
        let c3 = c.client(3).expect("c3");
        assert_eq!(
            (c3.pending.is_none(), c3.completed, c3.failed),
            (true, 1, 1)
        );
    }

    #[test]
    fn a_clerk_enters_with_a_server_and_a_bare_failure_invents_none() {
        // (first event of c7, known afterwards?, its server)
        #[rustfmt::skip]
        let cases = [
            ("op_invoked",   invoked(7, 1, "s1", 0),        Some("s1")),
            ("rpc_failed",   rpc_failed(7, 1, "s1", "s2"),  Some("s2")),
            ("op_completed", completed(7, 1, "s2"),         Some("s2")),
            ("op_failed",    failed(7, 1),                  None),
        ];
        for (what, first, server) in cases {
            let c = fold(&[first]);
            assert_eq!(c.client(7).map(|c| c.server.as_str()), server, "{what}");
        }
    }

    // ---- From a snapshot on ----------------------------------------------------------------

    #[test]
    fn a_snapshot_then_its_following_events_give_the_same_picture_as_the_whole_log() {
        let before = with(
            pair(),
            &[
                executed("s1", "b", true, false, false),
                executed("s1", "a", true, false, false),
                invoked(1, 1, "s1", 5),
                at(
                    shared::SUPERVISOR,
                    6,
                    EventKind::SlowMotionSet { delay_ms: 250 },
                ),
            ],
        );
        let after = [
            rpc_failed(1, 1, "s1", "s2"),
            crashed("s1", 10),
            completed(1, 1, "s2"),
        ];
        let whole = fold(before.iter().chain(&after));

        let at_snapshot = fold(&before);
        let mut from = Cluster::from_snapshot(&Snapshot {
            nodes: at_snapshot.nodes(),
            clients: at_snapshot.clients(),
            events: vec![],
            next_seq: 7,
            missed: 0,
            generation: at_snapshot.generation(),
            slow_motion_ms: at_snapshot.slow_motion_ms(),
            now_us: 6,
            faults: at_snapshot.faults().clone(),
            held: at_snapshot.held().to_vec(),
            verdicts: at_snapshot.verdicts().cloned().collect(),
            load: None,
            marks: vec![],
        });
        assert_eq!(from, at_snapshot);
        for e in &after {
            from.apply(e);
        }
        assert_eq!(from, whole);
        assert_eq!(whole.slow_motion_ms(), 250);
        assert_eq!(whole.holder_of(Role::Backup).as_deref(), Some("s2"));
    }

    #[test]
    fn a_snapshot_s_lock_lists_are_sorted_on_the_way_in() {
        let mut node = fold(&pair()).nodes().remove(0);
        node.locks = vec!["z".into(), "a".into()];
        let mut c = Cluster::from_snapshot(&Snapshot {
            nodes: vec![node],
            clients: vec![],
            events: vec![],
            next_seq: 1,
            missed: 0,
            generation: 3,
            slow_motion_ms: 0,
            now_us: 0,
            faults: FaultPlan::default(),
            held: vec![],
            verdicts: vec![],
            load: None,
            marks: vec![],
        });
        c.apply(&executed("s1", "m", true, false, false));
        assert_eq!(
            c.node("s1").map(|s| s.locks.clone()),
            Some(vec!["a".into(), "m".into(), "z".into()])
        );
        assert_eq!(c.generation(), 3);
    }

    // ---- Faults ------------------------------------------------------------------------------

    #[test]
    fn pause_and_resume_mark_the_current_process_only() {
        let mut c = fold(&pair());
        let pid = c.node("s1").and_then(|s| s.pid).unwrap();
        c.apply(&at("s1", 5, EventKind::Paused { pid: pid + 100 }));
        assert!(!c.node("s1").unwrap().paused, "an earlier process's pause");
        c.apply(&at("s1", 6, EventKind::Paused { pid }));
        assert!(c.node("s1").unwrap().paused);
        assert!(c.is_alive("s1"), "paused is not dead");
        c.apply(&at("s1", 7, EventKind::Resumed { pid }));
        assert!(!c.node("s1").unwrap().paused);
        c.apply(&at("s1", 8, EventKind::Paused { pid }));
        c.apply(&crashed("s1", pid));
        assert!(!c.node("s1").unwrap().paused, "a dead server is not paused");
    }

    #[test]
    fn a_crash_at_a_point_is_armed_then_dying_then_dead() {
        let mut c = fold(&pair());
        c.apply(&at(
            "s1",
            5,
            EventKind::CrashArmed {
                point: Some(CrashPoint::AfterForward),
                dying_ms: Some(500),
            },
        ));
        let s1 = c.node("s1").unwrap();
        assert!(s1.armed);
        assert_eq!(s1.crash_point, Some(CrashPoint::AfterForward));
        let pid = s1.pid.unwrap();
        c.apply(&at(
            "s1",
            6,
            EventKind::Dying {
                pid,
                dies_in_ms: 500,
                point: Some(CrashPoint::AfterForward),
            },
        ));
        let s1 = c.node("s1").unwrap();
        assert!(s1.dying && !s1.armed && s1.alive);
        c.apply(&crashed("s1", pid));
        let s1 = c.node("s1").unwrap();
        assert!(!s1.dying && !s1.alive);
        c.apply(&at(
            "s2",
            8,
            EventKind::CrashArmed {
                point: None,
                dying_ms: None,
            },
        ));
        assert_eq!(
            c.node("s2").unwrap().crash_point,
            Some(CrashPoint::BeforeReply),
            "crash_before_reply's point"
        );
    }

    #[test]
    fn a_client_process_dies_and_a_new_incarnation_starts() {
        let mut c = fold(&pair());
        c.apply(&at(
            "c1",
            1,
            EventKind::ClientStarted {
                pid: 700,
                incarnation: 0,
            },
        ));
        c.apply(&invoked(1, 1, "s1", 1));
        let c1 = c.client(1).unwrap();
        assert_eq!((c1.pid, c1.alive, c1.incarnation), (Some(700), true, 0));
        assert!(c1.pending.is_some());
        // An earlier process's exit changes nothing.
        c.apply(&at(
            "c1",
            2,
            EventKind::ProcessExited {
                pid: 600,
                signal: Some(9),
                code: None,
            },
        ));
        assert!(c.client(1).unwrap().alive);
        c.apply(&at(
            "c1",
            3,
            EventKind::Crashed {
                pid: 700,
                cause: CrashCause::Command,
                req: None,
            },
        ));
        let c1 = c.client(1).unwrap();
        assert!(!c1.alive && c1.pending.is_none());
        c.apply(&at(
            "c1",
            4,
            EventKind::ClientStarted {
                pid: 701,
                incarnation: 1,
            },
        ));
        let c1 = c.client(1).unwrap();
        assert_eq!((c1.pid, c1.alive, c1.incarnation), (Some(701), true, 1));
        assert!(c.is_alive("s1"), "a client's death is not a server's");
    }

    #[test]
    fn held_messages_are_listed_until_delivered_or_lost_and_a_reset_heals() {
        let mut c = fold(&pair());
        let held = |id: u64| {
            at(
                "s2",
                id,
                EventKind::MsgHeld {
                    msg_id: MsgId(id),
                    from: "s1".into(),
                    to: "s2".into(),
                    msg: shared::Msg::ForwardAck {
                        req: RequestId::new(1, 1),
                        ok: true,
                    },
                },
            )
        };
        c.apply(&held(1));
        c.apply(&held(2));
        c.apply(&held(2));
        assert_eq!(
            c.held().iter().map(|h| h.msg_id.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        c.apply(&at(
            "s2",
            3,
            EventKind::MsgDelivered {
                msg_id: MsgId(2),
                from: "s1".into(),
                to: "s2".into(),
                duplicate: false,
            },
        ));
        assert_eq!(c.held().len(), 1);
        assert!(c.held_msg(MsgId(1)).is_some());
        let plan = FaultPlan {
            seed: 9,
            step: true,
            cuts: vec![shared::Cut {
                from: "s1".into(),
                to: "s2".into(),
            }],
            ..FaultPlan::default()
        };
        c.apply(&at(
            "supervisor",
            4,
            EventKind::FaultsChanged {
                plan: plan.clone(),
                change: "step on".into(),
            },
        ));
        assert_eq!(c.faults(), &plan);
        c.apply(&at(
            "supervisor",
            5,
            EventKind::ClusterReset { generation: 1 },
        ));
        assert!(c.held().is_empty());
        assert_eq!(
            c.faults(),
            &FaultPlan {
                seed: 9,
                ..FaultPlan::default()
            },
            "the seed stays"
        );
    }

    // ---- Roles -------------------------------------------------------------------------------

    #[test]
    fn the_primary_is_the_live_server_with_that_role_serving_alone_or_not() {
        let alone = at(
            "s2",
            0,
            EventKind::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "a client failed over".into(),
            },
        );
        // (events after the pair started, primary, backup)
        #[rustfmt::skip]
        let cases = [
            ("the pair",          vec![],                                  Some("s1"), Some("s2")),
            ("primary dead",      vec![crashed("s1", 10)],                 None,       Some("s2")),
            ("backup took over",  vec![crashed("s1", 10), alone.clone()],  Some("s2"), None),
            ("backup dead",       vec![exited("s2", 20)],                  Some("s1"), None),
        ];
        for (what, after, primary, backup) in cases {
            let c = fold(&with(pair(), &after));
            assert_eq!(
                c.holder_of(Role::Primary).as_deref(),
                primary,
                "{what}: primary"
            );
            assert_eq!(
                c.holder_of(Role::Backup).as_deref(),
                backup,
                "{what}: backup"
            );
        }
        let c = fold(&with(pair(), &[alone]));
        assert!(c.node("s2").is_some_and(|s| s.serving_alone));
        assert!(!c.is_alive("s9"), "an unknown id is not alive");
    }
}
