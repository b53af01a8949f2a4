//! The supervisor's picture of the cluster, folded from the event log.
//!
//! The bus applies every event here as it publishes it, so a snapshot is always exactly the
//! state after its last event, and the supervisor resolves roles ("primary") from the same
//! facts the viewers see. It must stay a pure fold: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use shared::{ClientInfo, CrashCause, EventKind, NodeInfo, PendingCall, Role};

#[derive(Debug, Clone)]
struct NodeState {
    info: NodeInfo,
    locks: BTreeSet<String>,
}

/// Folded state of the run.
#[derive(Debug, Default, Clone)]
pub struct ClusterView {
    nodes: BTreeMap<String, NodeState>,
    clients: BTreeMap<u32, ClientInfo>,
    pub generation: u64,
    pub slow_motion_ms: u64,
}

impl ClusterView {
    pub fn apply(&mut self, node: &str, t_us: u64, kind: &EventKind) {
        match kind {
            EventKind::ProcessStarted { pid, role, port } => {
                self.nodes.insert(
                    node.to_owned(),
                    NodeState {
                        info: NodeInfo {
                            id: node.to_owned(),
                            role: *role,
                            serving_alone: false,
                            alive: true,
                            pid: Some(*pid),
                            port: Some(*port),
                            locks: vec![],
                            served: 0,
                            applied_forwards: 0,
                            armed: false,
                        },
                        locks: BTreeSet::new(),
                    },
                );
            }
            EventKind::ProcessExited { .. } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.info.alive = false;
                    n.info.armed = false;
                }
            }
            EventKind::Crashed { cause, .. } => {
                if let (Some(n), CrashCause::BeforeReply) = (self.nodes.get_mut(node), cause) {
                    n.info.armed = false;
                }
            }
            EventKind::CrashArmed {} => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.info.armed = true;
                }
            }
            EventKind::RoleChanged {
                role,
                serving_alone,
                ..
            } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.info.role = *role;
                    n.info.serving_alone = *serving_alone;
                }
            }
            EventKind::Executed {
                lock,
                held,
                forwarded,
                ..
            } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    if *held {
                        n.locks.insert(lock.clone());
                    } else {
                        n.locks.remove(lock);
                    }
                    if *forwarded {
                        n.info.applied_forwards += 1;
                    } else {
                        n.info.served += 1;
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
                let c = self.client_mut(*client, server);
                c.server = server.clone();
                c.pending = Some(PendingCall {
                    req: *req,
                    op: *op,
                    lock: lock.clone(),
                    tag: tag.clone(),
                    since_us: t_us,
                });
            }
            EventKind::RpcFailed {
                client, retry_to, ..
            } => {
                let c = self.client_mut(*client, retry_to);
                c.server = retry_to.clone();
            }
            EventKind::OpCompleted { client, server, .. } => {
                let c = self.client_mut(*client, server);
                c.pending = None;
                c.completed += 1;
                c.server = server.clone();
            }
            EventKind::OpFailed { client, .. } => {
                let c = self.client_mut(*client, "");
                c.pending = None;
                c.failed += 1;
            }
            EventKind::ClusterReset { generation } => {
                self.nodes.clear();
                self.clients.clear();
                self.generation = *generation;
            }
            EventKind::SlowMotionSet { delay_ms } => self.slow_motion_ms = *delay_ms,
            EventKind::MsgSent { .. }
            | EventKind::MsgDelivered { .. }
            | EventKind::MsgLost { .. } => {}
        }
    }

    fn client_mut(&mut self, id: u32, server: &str) -> &mut ClientInfo {
        self.clients.entry(id).or_insert_with(|| ClientInfo {
            id,
            server: server.to_owned(),
            pending: None,
            completed: 0,
            failed: 0,
        })
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes
            .values()
            .map(|n| NodeInfo {
                locks: n.locks.iter().cloned().collect(),
                ..n.info.clone()
            })
            .collect()
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        self.clients.values().cloned().collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeInfo> {
        self.nodes.get(id).map(|n| NodeInfo {
            locks: n.locks.iter().cloned().collect(),
            ..n.info.clone()
        })
    }

    pub fn is_alive(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|n| n.info.alive)
    }

    /// The live server holding `role` now ("primary" includes a server serving alone).
    pub fn holder_of(&self, role: Role) -> Option<String> {
        self.nodes
            .values()
            .filter(|n| n.info.alive && n.info.role == role)
            .map(|n| n.info.id.clone())
            .next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Op, RequestId};

    fn started(v: &mut ClusterView, id: &str, role: Role, pid: u32) {
        v.apply(
            id,
            0,
            &EventKind::ProcessStarted {
                pid,
                role,
                port: 1000,
            },
        );
    }

    #[test]
    fn folds_locks_roles_and_deaths() {
        let mut v = ClusterView::default();
        started(&mut v, "s1", Role::Primary, 10);
        started(&mut v, "s2", Role::Backup, 11);
        let req = RequestId { client: 1, seq: 1 };
        let exec = |forwarded| EventKind::Executed {
            req,
            op: Op::Lock,
            lock: "a".into(),
            ok: true,
            held: true,
            duplicate: false,
            forwarded,
        };
        v.apply("s1", 1, &exec(false));
        v.apply("s2", 2, &exec(true));
        assert_eq!(v.node("s1").unwrap().locks, vec!["a"]);
        assert_eq!(v.node("s1").unwrap().served, 1);
        assert_eq!(v.node("s2").unwrap().applied_forwards, 1);
        assert_eq!(v.holder_of(Role::Primary).as_deref(), Some("s1"));

        v.apply(
            "s1",
            3,
            &EventKind::ProcessExited {
                pid: 10,
                signal: Some(9),
                code: None,
            },
        );
        assert!(!v.is_alive("s1"));
        assert_eq!(
            v.holder_of(Role::Primary),
            None,
            "a dead primary holds no role"
        );
        v.apply(
            "s2",
            4,
            &EventKind::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "x".into(),
            },
        );
        assert_eq!(v.holder_of(Role::Primary).as_deref(), Some("s2"));
        assert!(v.node("s2").unwrap().serving_alone);
    }

    #[test]
    fn client_pending_call_lifecycle() {
        let mut v = ClusterView::default();
        let req = RequestId { client: 3, seq: 1 };
        v.apply(
            "c3",
            5,
            &EventKind::OpInvoked {
                client: 3,
                req,
                op: Op::Unlock,
                lock: "b".into(),
                tag: None,
                server: "s1".into(),
            },
        );
        assert_eq!(v.clients()[0].pending.as_ref().unwrap().since_us, 5);
        v.apply(
            "c3",
            6,
            &EventKind::RpcFailed {
                client: 3,
                req,
                server: "s1".into(),
                reason: "closed".into(),
                retry_to: "s2".into(),
            },
        );
        assert_eq!(v.clients()[0].server, "s2");
        v.apply(
            "c3",
            7,
            &EventKind::OpCompleted {
                client: 3,
                op: Op::Unlock,
                lock: "b".into(),
                tag: None,
                ok: false,
                req,
                server: "s2".into(),
                latency_us: 2,
                attempts: 2,
            },
        );
        let c = &v.clients()[0];
        assert!(c.pending.is_none());
        assert_eq!(c.completed, 1);
        v.apply("supervisor", 8, &EventKind::ClusterReset { generation: 1 });
        assert!(v.clients().is_empty() && v.nodes().is_empty());
        assert_eq!(v.generation, 1);
    }
}
