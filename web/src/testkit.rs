//! Fixtures shared by the unit tests of several modules: a [`Script`] of wire events, the
//! [`History`] they fold into, and read-outs of `History` and `State` that only tests need.
//! Test-only (`#[cfg(test)]` in `lib.rs`): it may import any module, and none imports it.

use shared::{Event, EventKind as K, Msg, Op, RequestId};

use crate::history::History;
use crate::store::State;
use crate::symbols::Symbols;

/// Builds wire events with consecutive seqs, 100 µs apart.
#[derive(Default, Clone)]
pub struct Script {
    pub events: Vec<Event>,
    pub t_us: u64,
}

impl Script {
    pub fn at(&mut self, t_us: u64) -> &mut Self {
        self.t_us = t_us;
        self
    }

    pub fn ev(&mut self, node: &str, kind: K) -> &mut Self {
        let seq = self.events.len() as u64 + 1;
        self.t_us += 100;
        self.events.push(Event {
            seq,
            t_us: self.t_us,
            node: node.into(),
            kind,
        });
        self
    }

    pub fn sent(&mut self, id: u64, from: &str, to: &str, msg: Msg) -> &mut Self {
        let node = from.to_owned();
        self.ev(
            &node,
            K::MsgSent {
                msg_id: shared::MsgId(id),
                from: from.into(),
                to: to.into(),
                msg,
            },
        )
    }

    pub fn delivered(&mut self, id: u64, from: &str, to: &str) -> &mut Self {
        self.delivery(id, from, to, false)
    }

    /// The network's second copy of message `id`.
    pub fn duplicate(&mut self, id: u64, from: &str, to: &str) -> &mut Self {
        self.delivery(id, from, to, true)
    }

    fn delivery(&mut self, id: u64, from: &str, to: &str, duplicate: bool) -> &mut Self {
        let node = to.to_owned();
        self.ev(
            &node,
            K::MsgDelivered {
                msg_id: shared::MsgId(id),
                from: from.into(),
                to: to.into(),
                duplicate,
            },
        )
    }

    pub fn lost(&mut self, id: u64, from: &str, to: &str) -> &mut Self {
        self.lost_for(id, from, to, "receiver died")
    }

    pub fn lost_for(&mut self, id: u64, from: &str, to: &str, reason: &str) -> &mut Self {
        let node = to.to_owned();
        self.ev(
            &node,
            K::MsgLost {
                msg_id: shared::MsgId(id),
                from: from.into(),
                to: to.into(),
                reason: reason.into(),
            },
        )
    }

    pub fn held(&mut self, id: u64, from: &str, to: &str, msg: Msg) -> &mut Self {
        let node = to.to_owned();
        self.ev(
            &node,
            K::MsgHeld {
                msg_id: shared::MsgId(id),
                from: from.into(),
                to: to.into(),
                msg,
            },
        )
    }

    /// A Lock(a) request of call `c{c}.{seq}`.
    pub fn request(c: u32, seq: u64) -> Msg {
        Msg::Request {
            req: RequestId::new(c, seq),
            op: Op::Lock,
            lock: "a".into(),
        }
    }

    /// A full Lab 1 call from client `c` through primary `p` and backup `b`.
    pub fn call(&mut self, c: u32, seq: u64, p: &str, b: &str, first_id: u64) -> &mut Self {
        let req = RequestId::new(c, seq);
        let cn = format!("c{c}");
        self.ev(
            &cn,
            K::OpInvoked {
                client: c,
                req,
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                server: p.into(),
            },
        );
        let lock = || "a".to_string();
        self.sent(
            first_id,
            &cn,
            p,
            Msg::Request {
                req,
                op: Op::Lock,
                lock: lock(),
            },
        )
        .delivered(first_id, &cn, p)
        .sent(
            first_id + 1,
            p,
            b,
            Msg::Forward {
                req,
                op: Op::Lock,
                lock: lock(),
            },
        )
        .delivered(first_id + 1, p, b)
        .sent(first_id + 2, b, p, Msg::ForwardAck { req, ok: true })
        .delivered(first_id + 2, b, p)
        .sent(first_id + 3, p, &cn, Msg::Reply { req, ok: true })
        .delivered(first_id + 3, p, &cn)
        .ev(
            &cn,
            K::OpCompleted {
                client: c,
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                ok: true,
                req,
                server: p.into(),
                latency_us: 800,
                attempts: 1,
            },
        )
    }
}

pub fn history_of(s: &Script) -> History {
    let mut h = History::new(Symbols::default());
    for e in &s.events {
        h.push(e);
    }
    h
}

/// Read-outs only the tests need (the page itself never asks).
impl History {
    pub fn first_seq(&self) -> Option<u64> {
        self.events.first().map(|e| e.seq)
    }

    pub fn last_y(&self) -> f64 {
        self.events.last().map_or(0.0, |e| e.y)
    }
}

impl State {
    /// The live primary now.
    pub fn primary(&self) -> Option<&shared::NodeInfo> {
        self.cluster()
            .nodes()
            .find(|n| n.alive && n.role == shared::Role::Primary)
    }
}
