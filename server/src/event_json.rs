//! The bus's writer of events as JSON: the exact bytes `serde_json` writes for an [`Event`], in
//! a fraction of its time for the kinds a call makes (its messages, their deliveries and losses,
//! the servers' executions, the clerk's invocation and answer).
//!
//! Why: every event is serialised once, under the bus's lock, and the derived `Serialize` of
//! [`Event`] goes through serde's `flatten` (a map of unknown length) and escapes each key as if
//! it could hold a quote. That was a tenth of the supervisor's time under load. Here the keys are
//! literals and only the strings a person or a process chose are escaped.
//!
//! Every other kind is written by `serde_json` itself. The tests hold both writers to the same
//! bytes, so the wire (docs/protocol.md) cannot drift.

use shared::{Event, EventKind, Msg, Op, RequestId};

/// Appends `event` as one JSON object (no newline), exactly as `serde_json::to_writer` would.
pub fn write_event(out: &mut Vec<u8>, event: &Event) {
    match &event.kind {
        EventKind::MsgSent {
            msg_id,
            from,
            to,
            msg,
        } => {
            head(out, event, "msg_sent");
            link(out, msg_id.0, from, to);
            out.extend_from_slice(b",\"msg\":");
            write_msg(out, msg);
        }
        EventKind::MsgDelivered {
            msg_id,
            from,
            to,
            duplicate,
        } => {
            head(out, event, "msg_delivered");
            link(out, msg_id.0, from, to);
            if *duplicate {
                out.extend_from_slice(b",\"duplicate\":true");
            }
        }
        EventKind::MsgLost {
            msg_id,
            from,
            to,
            reason,
        } => {
            head(out, event, "msg_lost");
            link(out, msg_id.0, from, to);
            out.extend_from_slice(b",\"reason\":");
            string(out, reason);
        }
        EventKind::Executed {
            req,
            op,
            lock,
            ok,
            held,
            duplicate,
            forwarded,
        } => {
            head(out, event, "executed");
            out.extend_from_slice(b",\"req\":");
            request_id(out, req);
            op_and_lock(out, *op, lock);
            boolean(out, b",\"ok\":", *ok);
            boolean(out, b",\"held\":", *held);
            boolean(out, b",\"duplicate\":", *duplicate);
            boolean(out, b",\"forwarded\":", *forwarded);
        }
        EventKind::OpInvoked {
            client,
            req,
            op,
            lock,
            tag,
            server,
        } => {
            head(out, event, "op_invoked");
            number(out, b",\"client\":", u64::from(*client));
            out.extend_from_slice(b",\"req\":");
            request_id(out, req);
            op_and_lock(out, *op, lock);
            optional_tag(out, tag.as_deref());
            out.extend_from_slice(b",\"server\":");
            string(out, server);
        }
        EventKind::OpCompleted {
            client,
            op,
            lock,
            tag,
            ok,
            req,
            server,
            latency_us,
            attempts,
        } => {
            head(out, event, "op_completed");
            number(out, b",\"client\":", u64::from(*client));
            op_and_lock(out, *op, lock);
            optional_tag(out, tag.as_deref());
            boolean(out, b",\"ok\":", *ok);
            out.extend_from_slice(b",\"req\":");
            request_id(out, req);
            out.extend_from_slice(b",\"server\":");
            string(out, server);
            number(out, b",\"latency_us\":", *latency_us);
            number(out, b",\"attempts\":", u64::from(*attempts));
        }
        _ => {
            serde_json::to_writer(&mut *out, event).expect("events always serialize");
            return;
        }
    }
    out.push(b'}');
}

/// Appends `event` as a compact row (`shared::decode`'s `read_row`, docs/protocol.md
/// "compact"), the form a viewer that sent `compact` gets; false, with nothing written, for a
/// kind that has no row (it goes to such a viewer as its object).
pub fn write_row(out: &mut Vec<u8>, event: &Event) -> bool {
    match &event.kind {
        EventKind::MsgSent {
            msg_id,
            from,
            to,
            msg,
        } => {
            row_head(out, event, "S");
            row_link(out, msg_id.0, from, to);
            msg_row(out, msg);
        }
        EventKind::MsgDelivered {
            msg_id,
            from,
            to,
            duplicate,
        } => {
            row_head(out, event, "D");
            row_link(out, msg_id.0, from, to);
            bit(out, *duplicate);
        }
        EventKind::MsgLost {
            msg_id,
            from,
            to,
            reason,
        } => {
            row_head(out, event, "L");
            row_link(out, msg_id.0, from, to);
            string(out, reason);
        }
        EventKind::Executed {
            req,
            op,
            lock,
            ok,
            held,
            duplicate,
            forwarded,
        } => {
            row_head(out, event, "X");
            row_req(out, req);
            row_op_lock(out, *op, lock);
            out.push(b',');
            let f = shared::executed_flags(*ok, *held, *duplicate, *forwarded);
            out.extend_from_slice(itoa::Buffer::new().format(f).as_bytes());
        }
        EventKind::OpInvoked {
            client,
            req,
            op,
            lock,
            tag,
            server,
        } => {
            row_head(out, event, "I");
            item(out, u64::from(*client));
            row_req(out, req);
            row_op_lock(out, *op, lock);
            out.push(b',');
            string(out, server);
            out.push(b',');
            row_tag(out, tag.as_deref());
        }
        EventKind::OpCompleted {
            client,
            op,
            lock,
            tag,
            ok,
            req,
            server,
            latency_us,
            attempts,
        } => {
            row_head(out, event, "C");
            item(out, u64::from(*client));
            row_req(out, req);
            row_op_lock(out, *op, lock);
            out.push(b',');
            string(out, server);
            out.push(b',');
            bit(out, *ok);
            out.push(b',');
            item(out, *latency_us);
            item(out, u64::from(*attempts));
            row_tag(out, tag.as_deref());
        }
        _ => return false,
    }
    out.push(b']');
    true
}

/// `[seq,t_us,"node","<code>",`: the row is left open.
fn row_head(out: &mut Vec<u8>, event: &Event, code: &str) {
    out.push(b'[');
    item(out, event.seq);
    item(out, event.t_us);
    string(out, &event.node);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(b"\",");
}

/// A number and the comma after it.
fn item(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.push(b',');
}

fn bit(out: &mut Vec<u8>, b: bool) {
    out.push(if b { b'1' } else { b'0' });
}

/// `msg_id,from,to,` of a message row.
fn row_link(out: &mut Vec<u8>, msg_id: u64, from: &str, to: &str) {
    item(out, msg_id);
    string(out, from);
    out.push(b',');
    string(out, to);
    out.push(b',');
}

/// `client,seq,incarnation` of a request id.
fn row_req(out: &mut Vec<u8>, req: &RequestId) {
    let RequestId {
        client,
        seq,
        incarnation,
    } = *req;
    item(out, u64::from(client));
    item(out, seq);
    out.extend_from_slice(itoa::Buffer::new().format(incarnation).as_bytes());
}

/// `,op,lock` (`op` 0 lock, 1 unlock).
fn row_op_lock(out: &mut Vec<u8>, op: Op, lock: &str) {
    out.extend_from_slice(match op {
        Op::Lock => b",0,",
        Op::Unlock => b",1,",
    });
    string(out, lock);
}

fn row_tag(out: &mut Vec<u8>, tag: Option<&str>) {
    match tag {
        Some(t) => string(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

fn msg_row(out: &mut Vec<u8>, msg: &Msg) {
    match msg {
        Msg::Request { req, op, lock } | Msg::Forward { req, op, lock } => {
            out.extend_from_slice(match msg {
                Msg::Request { .. } => b"[\"Q\",",
                _ => b"[\"F\",",
            });
            row_req(out, req);
            row_op_lock(out, *op, lock);
        }
        Msg::Reply { req, ok } | Msg::ForwardAck { req, ok } => {
            out.extend_from_slice(match msg {
                Msg::Reply { .. } => b"[\"P\",",
                _ => b"[\"A\",",
            });
            row_req(out, req);
            out.push(b',');
            bit(out, *ok);
        }
        Msg::ForwardRefused { req } => {
            out.extend_from_slice(b"[\"R\",");
            row_req(out, req);
        }
        Msg::ForwardBatch { ops } => {
            out.extend_from_slice(b"[\"FB\"");
            for o in ops {
                out.push(b',');
                row_req(out, &o.req);
                row_op_lock(out, o.op, &o.lock);
            }
        }
        Msg::ForwardAckBatch { acks } => {
            out.extend_from_slice(b"[\"AB\"");
            for a in acks {
                out.push(b',');
                row_req(out, &a.req);
                out.push(b',');
                bit(out, a.ok);
            }
        }
    }
    out.push(b']');
}

/// `{"seq":..,"t_us":..,"node":"..","type":"<name>"`: the object is left open.
fn head(out: &mut Vec<u8>, event: &Event, name: &str) {
    number(out, b"{\"seq\":", event.seq);
    number(out, b",\"t_us\":", event.t_us);
    out.extend_from_slice(b",\"node\":");
    string(out, &event.node);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn link(out: &mut Vec<u8>, msg_id: u64, from: &str, to: &str) {
    number(out, b",\"msg_id\":", msg_id);
    out.extend_from_slice(b",\"from\":");
    string(out, from);
    out.extend_from_slice(b",\"to\":");
    string(out, to);
}

fn write_msg(out: &mut Vec<u8>, msg: &Msg) {
    match msg {
        Msg::Request { req, op, lock } | Msg::Forward { req, op, lock } => {
            out.extend_from_slice(match msg {
                Msg::Request { .. } => b"{\"kind\":\"request\",\"req\":",
                _ => b"{\"kind\":\"forward\",\"req\":",
            });
            request_id(out, req);
            op_and_lock(out, *op, lock);
        }
        Msg::Reply { req, ok } | Msg::ForwardAck { req, ok } => {
            out.extend_from_slice(match msg {
                Msg::Reply { .. } => b"{\"kind\":\"reply\",\"req\":",
                _ => b"{\"kind\":\"forward_ack\",\"req\":",
            });
            request_id(out, req);
            boolean(out, b",\"ok\":", *ok);
        }
        Msg::ForwardRefused { req } => {
            out.extend_from_slice(b"{\"kind\":\"forward_refused\",\"req\":");
            request_id(out, req);
        }
        Msg::ForwardBatch { ops } => {
            out.extend_from_slice(b"{\"kind\":\"forward_batch\",\"ops\":[");
            for (i, o) in ops.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"req\":");
                request_id(out, &o.req);
                op_and_lock(out, o.op, &o.lock);
                out.push(b'}');
            }
            out.push(b']');
        }
        Msg::ForwardAckBatch { acks } => {
            out.extend_from_slice(b"{\"kind\":\"forward_ack_batch\",\"acks\":[");
            for (i, a) in acks.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"req\":");
                request_id(out, &a.req);
                boolean(out, b",\"ok\":", a.ok);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

fn request_id(out: &mut Vec<u8>, req: &RequestId) {
    // Destructured: a new field breaks the build here rather than going missing.
    let RequestId {
        client,
        seq,
        incarnation,
    } = *req;
    number(out, b"{\"client\":", u64::from(client));
    number(out, b",\"seq\":", seq);
    if incarnation != 0 {
        number(out, b",\"incarnation\":", u64::from(incarnation));
    }
    out.push(b'}');
}

fn op_and_lock(out: &mut Vec<u8>, op: Op, lock: &str) {
    out.extend_from_slice(match op {
        Op::Lock => b",\"op\":\"lock\",\"lock\":",
        Op::Unlock => b",\"op\":\"unlock\",\"lock\":",
    });
    string(out, lock);
}

fn optional_tag(out: &mut Vec<u8>, tag: Option<&str>) {
    if let Some(tag) = tag {
        out.extend_from_slice(b",\"tag\":");
        string(out, tag);
    }
}

fn number(out: &mut Vec<u8>, key: &[u8], n: u64) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, key: &[u8], b: bool) {
    out.extend_from_slice(key);
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, the short forms `\b \f \n \r \t`, and
/// `\u00xx` (lowercase hex) for the other control characters; everything else as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared::{ForwardAckItem, ForwardOp, MsgId, NodeId};

    fn same_as_serde(event: &Event) {
        let mut ours = Vec::new();
        write_event(&mut ours, event);
        let theirs = serde_json::to_vec(event).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }

    fn ev(kind: EventKind) -> Event {
        Event {
            seq: 17,
            t_us: 123_456_789,
            node: NodeId::from("s1"),
            kind,
        }
    }

    fn req(incarnation: u32) -> RequestId {
        RequestId {
            client: 1003,
            seq: u64::MAX,
            incarnation,
        }
    }

    fn every_msg(lock: &str) -> Vec<Msg> {
        vec![
            Msg::Request {
                req: req(0),
                op: Op::Lock,
                lock: lock.into(),
            },
            Msg::Forward {
                req: req(2),
                op: Op::Unlock,
                lock: lock.into(),
            },
            Msg::Reply {
                req: req(0),
                ok: true,
            },
            Msg::ForwardAck {
                req: req(1),
                ok: false,
            },
            Msg::ForwardRefused { req: req(0) },
            Msg::ForwardBatch { ops: vec![] },
            Msg::ForwardBatch {
                ops: vec![
                    ForwardOp {
                        req: req(0),
                        op: Op::Lock,
                        lock: lock.into(),
                    },
                    ForwardOp {
                        req: req(5),
                        op: Op::Unlock,
                        lock: "b".into(),
                    },
                ],
            },
            Msg::ForwardAckBatch { acks: vec![] },
            Msg::ForwardAckBatch {
                acks: vec![
                    ForwardAckItem {
                        req: req(0),
                        ok: true,
                    },
                    ForwardAckItem {
                        req: req(9),
                        ok: false,
                    },
                ],
            },
        ]
    }

    pub(crate) fn every_hot_kind(text: &str, tag: Option<String>) -> Vec<EventKind> {
        let mut kinds: Vec<EventKind> = every_msg(text)
            .into_iter()
            .map(|msg| EventKind::MsgSent {
                msg_id: MsgId::new(3, 41),
                from: NodeId::from("c1001"),
                to: NodeId::from(text),
                msg,
            })
            .collect();
        for duplicate in [false, true] {
            kinds.push(EventKind::MsgDelivered {
                msg_id: MsgId(u64::MAX),
                from: NodeId::from(text),
                to: NodeId::from("s2"),
                duplicate,
            });
        }
        // Every combination of the four flags, so no two can be swapped unseen.
        for f in 0u8..16 {
            let ok = f & 1 != 0;
            kinds.push(EventKind::Executed {
                req: req(u32::from(f)),
                op: if ok { Op::Lock } else { Op::Unlock },
                lock: text.into(),
                ok,
                held: f & 2 != 0,
                duplicate: f & 4 != 0,
                forwarded: f & 8 != 0,
            });
        }
        kinds.extend([
            EventKind::MsgLost {
                msg_id: MsgId(0),
                from: NodeId::from("s1"),
                to: NodeId::from("c2"),
                reason: text.into(),
            },
            EventKind::OpInvoked {
                client: 2,
                req: req(0),
                op: Op::Lock,
                lock: text.into(),
                tag: tag.clone(),
                server: NodeId::from("s1"),
            },
            EventKind::OpCompleted {
                client: u32::MAX,
                op: Op::Unlock,
                lock: text.into(),
                tag,
                ok: false,
                req: req(7),
                server: NodeId::from(text),
                latency_us: 0,
                attempts: 3,
            },
        ]);
        kinds
    }

    #[test]
    fn every_hot_kind_is_written_as_serde_json_writes_it() {
        for tag in [None, Some(String::new()), Some("t-1".to_string())] {
            for kind in every_hot_kind("lock-a", tag) {
                same_as_serde(&ev(kind));
            }
        }
    }

    #[test]
    fn every_character_below_128_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..128).map(char::from).collect();
        for kind in every_hot_kind(&all, Some(all.clone())) {
            same_as_serde(&ev(kind));
        }
        for kind in every_hot_kind("é \u{2028} 🔒 \u{7f}", None) {
            same_as_serde(&ev(kind));
        }
    }

    #[test]
    fn other_kinds_fall_back_to_serde_json() {
        same_as_serde(&ev(EventKind::ClusterReset { generation: 4 }));
        same_as_serde(&ev(EventKind::RoleChanged {
            role: shared::Role::Primary,
            serving_alone: true,
            reason: "s2 \"died\"".into(),
        }));
    }

    /// A row read back by the page's decoder is the event it was written from.
    fn row_round_trips(event: &Event) {
        let mut row = Vec::new();
        assert!(write_row(&mut row, event), "{event:?} has a row");
        let text = std::str::from_utf8(&row).unwrap();
        let back: Event = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&back, event, "{text}");
    }

    #[test]
    fn every_hot_kind_has_a_row_that_reads_back_as_the_same_event() {
        for tag in [None, Some(String::new()), Some("t-1".to_string())] {
            for kind in every_hot_kind("lock-a", tag) {
                row_round_trips(&ev(kind));
            }
        }
        let all: String = (0u8..128).map(char::from).collect();
        for kind in every_hot_kind(&all, Some(all.clone())) {
            row_round_trips(&ev(kind));
        }
    }

    #[test]
    fn a_row_is_less_than_half_the_object() {
        let kinds = every_hot_kind("load-3", None);
        let (mut rows, mut objects) = (0, 0);
        for kind in kinds.into_iter().filter(|k| {
            !matches!(
                k,
                EventKind::MsgSent {
                    msg: Msg::ForwardBatch { .. } | Msg::ForwardAckBatch { .. },
                    ..
                }
            )
        }) {
            let event = ev(kind);
            let mut row = Vec::new();
            write_row(&mut row, &event);
            rows += row.len();
            objects += serde_json::to_vec(&event).unwrap().len();
        }
        assert!(
            rows * 2 < objects,
            "rows {rows} bytes, objects {objects} bytes"
        );
    }

    /// What a compact viewer reads: rows and objects mixed in one `events` frame, decoded by
    /// the page's decoder into the events an object-only viewer gets.
    #[test]
    fn a_frame_of_rows_and_objects_reads_as_the_frame_of_objects() {
        let mut events: Vec<Event> = every_hot_kind("load-7", Some("x1".into()))
            .into_iter()
            .map(ev)
            .collect();
        events.push(ev(EventKind::ClusterReset { generation: 4 }));
        events.rotate_right(3);
        let (mut rows, mut objects) = (Vec::new(), Vec::new());
        for (i, e) in events.iter().enumerate() {
            for out in [&mut rows, &mut objects] {
                if i > 0 {
                    out.push(b',');
                }
            }
            if !write_row(&mut rows, e) {
                write_event(&mut rows, e);
            }
            write_event(&mut objects, e);
        }
        let frame = |list: &[u8]| {
            let text = format!(
                r#"{{"type":"events","events":[{}]}}"#,
                std::str::from_utf8(list).unwrap()
            );
            serde_json::from_str::<shared::ServerMsg>(&text).unwrap()
        };
        assert_eq!(frame(&rows), frame(&objects));
        assert_eq!(
            frame(&objects),
            shared::ServerMsg::Events {
                events: events.clone()
            }
        );
        // The quick reader reads the gateway's frame itself, to the same events.
        let text = format!(
            r#"{{"type":"events","events":[{}]}}"#,
            std::str::from_utf8(&rows).unwrap()
        );
        assert_eq!(shared::read_events_frame(&text), Some(events.clone()));
        assert_eq!(
            shared::read_server_msg(&text).unwrap(),
            shared::ServerMsg::Events { events }
        );
    }

    #[test]
    fn other_kinds_have_no_row() {
        let mut out = Vec::new();
        assert!(!write_row(
            &mut out,
            &ev(EventKind::ClusterReset { generation: 4 })
        ));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn any_strings_and_numbers_read_back_from_a_row(
            text in any::<String>(),
            tag in proptest::option::of(any::<String>()),
            seq in any::<u64>(),
            t_us in any::<u64>(),
            node in any::<String>(),
        ) {
            for kind in every_hot_kind(&text, tag.clone()) {
                let event = Event { seq, t_us, node: NodeId::from(node.as_str()), kind };
                let mut row = Vec::new();
                prop_assert!(write_row(&mut row, &event));
                let back: Event = serde_json::from_slice(&row).unwrap();
                prop_assert_eq!(back, event);
            }
        }
    }

    proptest! {
        /// The quick reader and serde agree on every frame of rows the gateway can write,
        /// whatever its strings hold (those with escapes go to serde) and its numbers are.
        #[test]
        fn the_quick_reader_reads_any_frame_of_rows_as_serde_does(
            text in any::<String>(),
            tag in proptest::option::of(any::<String>()),
            seq in any::<u64>(),
            t_us in any::<u64>(),
            node in any::<String>(),
        ) {
            let mut body = Vec::new();
            let mut events = Vec::new();
            for kind in every_hot_kind(&text, tag.clone()) {
                let event = Event { seq, t_us, node: NodeId::from(node.as_str()), kind };
                if !body.is_empty() {
                    body.push(b',');
                }
                prop_assert!(write_row(&mut body, &event));
                events.push(event);
            }
            let frame = format!(r#"{{"type":"events","events":[{}]}}"#, std::str::from_utf8(&body).unwrap());
            let plain = |s: &str| !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
            let quick = shared::read_events_frame(&frame);
            prop_assert_eq!(quick.is_some(), plain(&text) && plain(&node) && tag.as_deref().is_none_or(plain));
            prop_assert_eq!(
                shared::read_server_msg(&frame).unwrap(),
                serde_json::from_str::<shared::ServerMsg>(&frame).unwrap()
            );
            prop_assert_eq!(shared::read_server_msg(&frame).unwrap(), shared::ServerMsg::Events { events });
        }
    }

    proptest! {
        #[test]
        fn any_strings_and_numbers_match_serde_json(
            text in any::<String>(),
            tag in proptest::option::of(any::<String>()),
            seq in any::<u64>(),
            t_us in any::<u64>(),
            node in any::<String>(),
        ) {
            for kind in every_hot_kind(&text, tag.clone()) {
                let event = Event { seq, t_us, node: NodeId::from(node.as_str()), kind };
                let mut ours = Vec::new();
                write_event(&mut ours, &event);
                prop_assert_eq!(ours, serde_json::to_vec(&event).unwrap());
            }
        }
    }
}
