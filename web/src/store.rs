//! The page's state and its reducer: a pure fold of what the server sends.
//!
//! A snapshot replaces everything; event batches update the server cards, the clients'
//! histories and the bounded event log the diagram is drawn from. No I/O here.

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use shared::{Event, EventKind, NodeInfo, Op, ServerMsg};

/// Most events the page keeps.
pub const HISTORY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conn {
    #[default]
    Connecting,
    Connected,
    Reconnecting,
}

/// One line of a client's history.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLine {
    pub text: String,
}

/// Client history lines kept per client.
pub const CLIENT_HISTORY: usize = 50;

/// The event log, shared between successive states instead of copied: the reducer clones
/// `State` on every message, and copying 100,000 events each time would be the page's
/// bottleneck. Equality is by identity and version.
#[derive(Debug, Clone, Default)]
pub struct Log {
    inner: Rc<RefCell<VecDeque<Event>>>,
    version: u64,
}

impl PartialEq for Log {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner) && self.version == other.version
    }
}

impl Log {
    pub fn borrow(&self) -> Ref<'_, VecDeque<Event>> {
        self.inner.borrow()
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, e: Event) {
        let mut q = self.inner.borrow_mut();
        if q.len() >= HISTORY {
            q.pop_front();
        }
        q.push_back(e);
        self.version += 1;
    }

    fn clear(&mut self) {
        self.inner.borrow_mut().clear();
        self.version += 1;
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub conn: Conn,
    pub nodes: Vec<NodeInfo>,
    /// Client id -> its history (newest last).
    pub clients: BTreeMap<u32, Vec<CallLine>>,
    pub events: Log,
    /// Messages from the server worth showing a person (errors, missed events).
    pub notices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Connected,
    Disconnected,
    Server(ServerMsg),
    AddClient,
}

impl State {
    pub fn reduce(&mut self, action: Action) {
        match action {
            Action::Connected => self.conn = Conn::Connected,
            Action::Disconnected => self.conn = Conn::Reconnecting,
            Action::AddClient => {
                let next = self.clients.keys().max().map_or(1, |m| m + 1);
                self.clients.entry(next).or_default();
            }
            Action::Server(msg) => self.on_server(msg),
        }
    }

    fn on_server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Hello(_) | ServerMsg::Ack { .. } => {}
            ServerMsg::Error { code, message, .. } => {
                self.notices.push(format!("{code:?}: {message}"));
            }
            ServerMsg::Snapshot(s) => {
                if s.missed > 0 {
                    self.notices
                        .push(format!("fell behind: {} events skipped", s.missed));
                }
                self.nodes = s.nodes;
                for c in &s.clients {
                    self.clients.entry(c.id).or_default();
                }
                if self.clients.is_empty() {
                    self.clients.insert(1, vec![]);
                }
                self.events.clear();
                for e in s.events {
                    self.push(e, false);
                }
            }
            ServerMsg::Events { events } => {
                for e in events {
                    self.push(e, true);
                }
            }
        }
    }

    fn node_mut(&mut self, id: &str) -> Option<&mut NodeInfo> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    fn push(&mut self, e: Event, live: bool) {
        if live {
            self.apply(&e);
        } else if let EventKind::OpCompleted { .. } = e.kind {
            self.apply_history(&e);
        }
        self.events.push(e);
    }

    fn apply_history(&mut self, e: &Event) {
        if let EventKind::OpCompleted {
            client,
            op,
            lock,
            ok,
            latency_us,
            server,
            attempts,
            ..
        } = &e.kind
        {
            let op = match op {
                Op::Lock => "Lock",
                Op::Unlock => "Unlock",
            };
            let retry = if *attempts > 1 {
                format!(", {attempts} tries")
            } else {
                String::new()
            };
            let history = self.clients.entry(*client).or_default();
            if history.len() >= CLIENT_HISTORY {
                history.remove(0);
            }
            history.push(CallLine {
                text: format!(
                    "{op}({lock}) = {ok} from {server} in {:.1} ms{retry}",
                    *latency_us as f64 / 1000.0
                ),
            });
        }
    }

    /// Keeps the cards current from live events (a snapshot already holds their effect).
    fn apply(&mut self, e: &Event) {
        let node = e.node.clone();
        match &e.kind {
            EventKind::ProcessStarted { pid, role, port } => {
                self.nodes.retain(|n| n.id != node);
                self.nodes.push(NodeInfo {
                    id: node,
                    role: *role,
                    serving_alone: false,
                    alive: true,
                    pid: Some(*pid),
                    port: Some(*port),
                    locks: vec![],
                    served: 0,
                    applied_forwards: 0,
                    armed: false,
                });
                self.nodes.sort_by(|a, b| a.id.cmp(&b.id));
            }
            EventKind::ProcessExited { .. } => {
                if let Some(n) = self.node_mut(&node) {
                    n.alive = false;
                    n.armed = false;
                }
            }
            EventKind::CrashArmed {} => {
                if let Some(n) = self.node_mut(&node) {
                    n.armed = true;
                }
            }
            EventKind::RoleChanged {
                role,
                serving_alone,
                ..
            } => {
                if let Some(n) = self.node_mut(&node) {
                    n.role = *role;
                    n.serving_alone = *serving_alone;
                }
            }
            EventKind::Executed {
                lock,
                held,
                forwarded,
                ..
            } => {
                if let Some(n) = self.node_mut(&node) {
                    n.locks.retain(|l| l != lock);
                    if *held {
                        n.locks.push(lock.clone());
                        n.locks.sort();
                    }
                    if *forwarded {
                        n.applied_forwards += 1;
                    } else {
                        n.served += 1;
                    }
                }
            }
            EventKind::OpCompleted { .. } => self.apply_history(e),
            EventKind::OpFailed {
                client,
                lock,
                reason,
                ..
            } => {
                self.clients.entry(*client).or_default().push(CallLine {
                    text: format!("{lock}: gave up ({reason})"),
                });
            }
            EventKind::ClusterReset { .. } => {
                self.nodes.clear();
                for h in self.clients.values_mut() {
                    h.clear();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{RequestId, Role, Snapshot};

    fn ev(seq: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq * 10,
            node: node.into(),
            kind,
        }
    }

    fn snapshot(events: Vec<Event>) -> ServerMsg {
        ServerMsg::Snapshot(Snapshot {
            nodes: vec![],
            clients: vec![],
            events,
            next_seq: 1,
            missed: 0,
            generation: 0,
            slow_motion_ms: 0,
            now_us: 0,
        })
    }

    #[test]
    fn live_events_update_cards_and_history() {
        let mut s = State::default();
        s.reduce(Action::Server(snapshot(vec![])));
        assert_eq!(
            s.clients.keys().copied().collect::<Vec<_>>(),
            vec![1],
            "a first client to click"
        );
        s.reduce(Action::Server(ServerMsg::Events {
            events: vec![
                ev(
                    1,
                    "s1",
                    EventKind::ProcessStarted {
                        pid: 7,
                        role: Role::Primary,
                        port: 1,
                    },
                ),
                ev(
                    2,
                    "s1",
                    EventKind::Executed {
                        req: RequestId { client: 1, seq: 1 },
                        op: Op::Lock,
                        lock: "a".into(),
                        ok: true,
                        held: true,
                        duplicate: false,
                        forwarded: false,
                    },
                ),
                ev(
                    3,
                    "c1",
                    EventKind::OpCompleted {
                        client: 1,
                        op: Op::Lock,
                        lock: "a".into(),
                        tag: None,
                        ok: true,
                        req: RequestId { client: 1, seq: 1 },
                        server: "s1".into(),
                        latency_us: 1500,
                        attempts: 1,
                    },
                ),
                ev(
                    4,
                    "s1",
                    EventKind::ProcessExited {
                        pid: 7,
                        signal: Some(9),
                        code: None,
                    },
                ),
            ],
        }));
        assert_eq!(s.nodes[0].locks, vec!["a"]);
        assert!(!s.nodes[0].alive);
        assert_eq!(s.clients[&1][0].text, "Lock(a) = true from s1 in 1.5 ms");
        assert_eq!(s.events.len(), 4);
    }

    #[test]
    fn a_snapshot_replaces_the_log_and_reports_missed() {
        let mut s = State::default();
        s.reduce(Action::Server(ServerMsg::Events {
            events: vec![ev(1, "x", EventKind::SlowMotionSet { delay_ms: 1 })],
        }));
        let mut msg = snapshot(vec![ev(9, "x", EventKind::SlowMotionSet { delay_ms: 2 })]);
        if let ServerMsg::Snapshot(snap) = &mut msg {
            snap.missed = 5;
        }
        s.reduce(Action::Server(msg));
        assert_eq!(
            s.events.borrow().iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![9]
        );
        assert!(s.notices[0].contains('5'));
    }

    #[test]
    fn the_log_is_capped_at_the_history_size() {
        let mut s = State::default();
        let events: Vec<Event> = (1..=(HISTORY as u64 + 10))
            .map(|i| ev(i, "x", EventKind::SlowMotionSet { delay_ms: 0 }))
            .collect();
        s.reduce(Action::Server(ServerMsg::Events { events }));
        assert_eq!(s.events.len(), HISTORY);
        assert_eq!(
            s.events.borrow().front().map(|e| e.seq),
            Some(11),
            "oldest dropped first"
        );
        let before = s.clone();
        s.reduce(Action::Server(ServerMsg::Events {
            events: vec![ev(1, "x", EventKind::SlowMotionSet { delay_ms: 0 })],
        }));
        assert_ne!(before, s, "a new event makes a different state for Yew");
    }
}
