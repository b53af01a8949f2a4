//! The compact form of a node's events on its control connection (inside the cluster only).
//!
//! A round's events travel from a node to the supervisor as `[t_us, kind]` pairs. The events
//! every call makes (a message sent, a message delivered, an operation executed) go in a
//! positional, externally tagged form: `{"S":[msg_id,from,to,msg]}`, `{"D":[msg_id,from,to,dup]}`,
//! `{"X":[req,op,lock,ok,held,duplicate,forwarded]}`, with the message itself as `{"Q":[req,op,
//! lock]}` (request), `{"P":[req,ok]}` (reply), `{"F":[req,op,lock]}` (forward), `{"A":[req,ok]}`
//! (forward_ack), `{"R":req}` (forward_refused), `{"FB":[[req,op,lock],...]}` (forward_batch),
//! `{"AB":[[req,ok],...]}` (forward_ack_batch). Every other event is `{"E":event}`, the event
//! as on the WebSocket. Unlike the internally tagged form (`"type"` inside the object), which a
//! reader must buffer whole before it knows the variant, this one is read in one pass: that was
//! a sixth of the supervisor's time under load.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{EventKind, ForwardAckItem, ForwardOp, Msg, MsgId, NodeId, Op, RequestId, TimedEvent};

#[derive(Serialize)]
enum KindRef<'a> {
    S(MsgId, &'a NodeId, &'a NodeId, MsgRef<'a>),
    D(MsgId, &'a NodeId, &'a NodeId, bool),
    X(RequestId, Op, &'a str, bool, bool, bool, bool),
    E(&'a EventKind),
}

#[derive(Deserialize)]
enum KindOwned {
    S(MsgId, NodeId, NodeId, MsgOwned),
    D(MsgId, NodeId, NodeId, bool),
    X(RequestId, Op, String, bool, bool, bool, bool),
    E(EventKind),
}

#[derive(Serialize)]
enum MsgRef<'a> {
    Q(RequestId, Op, &'a str),
    P(RequestId, bool),
    F(RequestId, Op, &'a str),
    A(RequestId, bool),
    R(RequestId),
    FB(Vec<(RequestId, Op, &'a str)>),
    AB(Vec<(RequestId, bool)>),
}

#[derive(Deserialize)]
enum MsgOwned {
    Q(RequestId, Op, String),
    P(RequestId, bool),
    F(RequestId, Op, String),
    A(RequestId, bool),
    R(RequestId),
    FB(Vec<(RequestId, Op, String)>),
    AB(Vec<(RequestId, bool)>),
}

fn msg_ref(m: &Msg) -> MsgRef<'_> {
    match m {
        Msg::Request { req, op, lock } => MsgRef::Q(*req, *op, lock),
        Msg::Reply { req, ok } => MsgRef::P(*req, *ok),
        Msg::Forward { req, op, lock } => MsgRef::F(*req, *op, lock),
        Msg::ForwardAck { req, ok } => MsgRef::A(*req, *ok),
        Msg::ForwardRefused { req } => MsgRef::R(*req),
        Msg::ForwardBatch { ops } => {
            MsgRef::FB(ops.iter().map(|o| (o.req, o.op, o.lock.as_str())).collect())
        }
        Msg::ForwardAckBatch { acks } => MsgRef::AB(acks.iter().map(|a| (a.req, a.ok)).collect()),
    }
}

impl From<MsgOwned> for Msg {
    fn from(m: MsgOwned) -> Msg {
        match m {
            MsgOwned::Q(req, op, lock) => Msg::Request { req, op, lock },
            MsgOwned::P(req, ok) => Msg::Reply { req, ok },
            MsgOwned::F(req, op, lock) => Msg::Forward { req, op, lock },
            MsgOwned::A(req, ok) => Msg::ForwardAck { req, ok },
            MsgOwned::R(req) => Msg::ForwardRefused { req },
            MsgOwned::FB(ops) => Msg::ForwardBatch {
                ops: ops
                    .into_iter()
                    .map(|(req, op, lock)| ForwardOp { req, op, lock })
                    .collect(),
            },
            MsgOwned::AB(acks) => Msg::ForwardAckBatch {
                acks: acks
                    .into_iter()
                    .map(|(req, ok)| ForwardAckItem { req, ok })
                    .collect(),
            },
        }
    }
}

fn kind_ref(k: &EventKind) -> KindRef<'_> {
    match k {
        EventKind::MsgSent {
            msg_id,
            from,
            to,
            msg,
        } => KindRef::S(*msg_id, from, to, msg_ref(msg)),
        EventKind::MsgDelivered {
            msg_id,
            from,
            to,
            duplicate,
        } => KindRef::D(*msg_id, from, to, *duplicate),
        EventKind::Executed {
            req,
            op,
            lock,
            ok,
            held,
            duplicate,
            forwarded,
        } => KindRef::X(*req, *op, lock, *ok, *held, *duplicate, *forwarded),
        other => KindRef::E(other),
    }
}

impl From<KindOwned> for EventKind {
    fn from(k: KindOwned) -> EventKind {
        match k {
            KindOwned::S(msg_id, from, to, msg) => EventKind::MsgSent {
                msg_id,
                from,
                to,
                msg: msg.into(),
            },
            KindOwned::D(msg_id, from, to, duplicate) => EventKind::MsgDelivered {
                msg_id,
                from,
                to,
                duplicate,
            },
            KindOwned::X(req, op, lock, ok, held, duplicate, forwarded) => EventKind::Executed {
                req,
                op,
                lock,
                ok,
                held,
                duplicate,
                forwarded,
            },
            KindOwned::E(kind) => kind,
        }
    }
}

impl Serialize for TimedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.t_us, kind_ref(&self.kind)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TimedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (t_us, kind) = <(u64, KindOwned)>::deserialize(d)?;
        Ok(TimedEvent {
            t_us,
            kind: kind.into(),
        })
    }
}

/// The body of a `{"type":"events",...}` report, read without buffering the whole frame first
/// (`type` is not a field here, so it is skipped). Only for a frame known to be that report.
#[derive(Deserialize, Debug)]
pub struct EventsBody {
    pub events: Vec<TimedEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashCause, NodeReport};

    fn req(c: u32, s: u64) -> RequestId {
        RequestId::new(c, s)
    }

    fn every_hot_kind() -> Vec<EventKind> {
        let node = |s: &str| NodeId::from(s);
        let msgs = vec![
            Msg::Request {
                req: req(1, 2),
                op: Op::Lock,
                lock: "a \"quoted\" ü".into(),
            },
            Msg::Reply {
                req: req(1, 2),
                ok: true,
            },
            Msg::Forward {
                req: RequestId {
                    incarnation: 3,
                    ..req(1, 2)
                },
                op: Op::Unlock,
                lock: "b".into(),
            },
            Msg::ForwardAck {
                req: req(1, 2),
                ok: false,
            },
            Msg::ForwardRefused { req: req(4, 5) },
            Msg::ForwardBatch {
                ops: vec![
                    ForwardOp {
                        req: req(1, 1),
                        op: Op::Lock,
                        lock: "x".into(),
                    },
                    ForwardOp {
                        req: req(2, 9),
                        op: Op::Unlock,
                        lock: "y".into(),
                    },
                ],
            },
            Msg::ForwardAckBatch {
                acks: vec![
                    ForwardAckItem {
                        req: req(1, 1),
                        ok: true,
                    },
                    ForwardAckItem {
                        req: req(2, 9),
                        ok: false,
                    },
                ],
            },
        ];
        let mut kinds: Vec<EventKind> = msgs
            .into_iter()
            .enumerate()
            .map(|(i, msg)| EventKind::MsgSent {
                msg_id: MsgId(i as u64 + (7 << 32)),
                from: node("s1"),
                to: node("s2"),
                msg,
            })
            .collect();
        for duplicate in [false, true] {
            kinds.push(EventKind::MsgDelivered {
                msg_id: MsgId(42),
                from: node("c1"),
                to: node("s1"),
                duplicate,
            });
        }
        kinds.push(EventKind::Executed {
            req: req(3, 4),
            op: Op::Lock,
            lock: "z".into(),
            ok: true,
            held: true,
            duplicate: false,
            forwarded: true,
        });
        kinds.push(EventKind::Crashed {
            pid: 7,
            cause: CrashCause::AfterForward,
            req: Some(req(3, 4)),
        });
        kinds
    }

    #[test]
    fn every_hot_event_and_a_cold_one_round_trip_through_a_report() {
        let events: Vec<TimedEvent> = every_hot_kind()
            .into_iter()
            .enumerate()
            .map(|(i, kind)| TimedEvent {
                t_us: 1000 + i as u64,
                kind,
            })
            .collect();
        let report = NodeReport::Events {
            events: events.clone(),
        };
        let text = serde_json::to_string(&report).unwrap();
        assert!(
            text.starts_with(r#"{"type":"events","events":[[1000,{"S":"#),
            "{text}"
        );
        assert!(text.contains(r#"{"E":{"type":"crashed""#), "{text}");
        let back: NodeReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        let body: EventsBody = serde_json::from_str(&text).unwrap();
        assert_eq!(body.events, events);
    }

    #[test]
    fn a_malformed_compact_event_is_an_error_not_a_panic() {
        for bad in [
            r#"{"type":"events","events":[[1,{"S":[1,"s1"]}]]}"#,
            r#"{"type":"events","events":[[1,{"Z":[]}]]}"#,
            r#"{"type":"events","events":[["x",{"D":[1,"a","b",false]}]]}"#,
            r#"{"type":"events","events":[[1,{"E":{"type":"nope"}}]]}"#,
        ] {
            assert!(serde_json::from_str::<NodeReport>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<EventsBody>(bad).is_err(), "{bad}");
        }
    }
}
