//! A quick reader for the frame a compact viewer gets most: `{"type":"events","events":[...]}`
//! as the gateway writes it, compact rows and event objects, no whitespace. The supervisor reads
//! the rounds its nodes report with it too (they write the same frame: the server's
//! `framing::encode_events`).
//!
//! Through serde a row costs 310-450 ns natively (on the 2-core test machine): every element goes
//! through a `SeqAccess`, every number through serde_json's generic integer parser; this reader
//! takes 2.3-2.6 times less (`cargo run --release -p shared --example read_rows`). Here a row
//! is read straight off the bytes, and only what the reader is sure of. For anything else (a
//! string with an escape or a control character, a number with a sign, a fraction or an
//! exponent or too large for its field, whitespace, a message object inside a row, an unknown
//! code, anything out of place) the whole frame goes to serde instead, which decodes it (or
//! names what is wrong with it) exactly as before. So for
//! every text, [`read_server_msg`] gives what `serde_json::from_str::<ServerMsg>` gives; the
//! tests hold the two to that over every kind of row and over broken frames.
//!
//! Event objects inside the frame (a verdict, a load report) are found by their brackets and
//! decoded by serde one by one.

use crate::{
    Event, EventKind, ForwardAckItem, ForwardOp, Msg, MsgId, NodeId, Op, RequestId, ServerMsg,
};

/// Decodes one frame from the server, as `serde_json::from_str::<ServerMsg>` does, quicker for
/// the events frames of a compact viewer.
pub fn read_server_msg(text: &str) -> serde_json::Result<ServerMsg> {
    match read_events_frame(text) {
        Some(events) => Ok(ServerMsg::Events { events }),
        None => serde_json::from_str(text),
    }
}

const HEAD: &str = r#"{"type":"events","events":["#;
const TAIL: &str = "]}";
/// Deeper than this, an object goes to serde with its frame (serde_json stops at 128).
const MAX_DEPTH: usize = 100;

/// The events of an events frame as the gateway writes it, read quickly; `None` for anything
/// else, or anything in it this reader is not sure of (serde then reads the frame).
pub fn read_events_frame(text: &str) -> Option<Vec<Event>> {
    let body = text.strip_prefix(HEAD)?.strip_suffix(TAIL)?;
    let mut r = Reader {
        s: body,
        b: body.as_bytes(),
        i: 0,
    };
    // Rows are 40-90 bytes: enough room for most frames at once.
    let mut events = Vec::with_capacity(body.len() / 48 + 1);
    while r.i < r.b.len() {
        if !events.is_empty() {
            r.byte(b',')?;
        }
        events.push(match r.peek()? {
            b'[' => r.row()?,
            b'{' => r.object()?,
            _ => return None,
        });
    }
    Some(events)
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.peek()? == want).then(|| self.i += 1)
    }

    /// `,` then the next field.
    fn next(&mut self) -> Option<&mut Self> {
        self.byte(b',')?;
        Some(self)
    }

    /// An unsigned integer as JSON writes it: digits, no leading zero.
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        (len == 1 || (len > 1 && self.b[start] != b'0')).then_some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    /// A flag (`0`/`1`) or a set of `bits` of them in one number.
    fn flags(&mut self, bits: u32) -> Option<u8> {
        let v = u8::try_from(self.u64()?).ok()?;
        (u32::from(v) >> bits == 0).then_some(v)
    }

    fn bit(&mut self) -> Option<bool> {
        Some(self.flags(1)? == 1)
    }

    fn op(&mut self) -> Option<Op> {
        Some(if self.bit()? { Op::Unlock } else { Op::Lock })
    }

    /// A string without escapes or control characters.
    fn str(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = self.s.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn node(&mut self) -> Option<NodeId> {
        self.str().map(NodeId::new)
    }

    /// A string or `null`.
    fn tag(&mut self) -> Option<Option<String>> {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            Some(None)
        } else {
            self.string().map(Some)
        }
    }

    /// `client, seq, incarnation`, the client read already.
    fn req_of(&mut self, client: u32) -> Option<RequestId> {
        let seq = self.next()?.u64()?;
        let incarnation = self.next()?.u32()?;
        Some(RequestId {
            client,
            seq,
            incarnation,
        })
    }

    /// `, client, seq, incarnation`.
    fn req(&mut self) -> Option<RequestId> {
        let client = self.next()?.u32()?;
        self.req_of(client)
    }

    /// An event row (docs/protocol.md, "compact"): `[seq, t_us, node, code, fields...]`.
    fn row(&mut self) -> Option<Event> {
        self.byte(b'[')?;
        let seq = self.u64()?;
        let t_us = self.next()?.u64()?;
        let node = self.next()?.node()?;
        let code = self.next()?.str()?;
        let kind = match code {
            "S" | "D" | "L" => {
                let msg_id = MsgId(self.next()?.u64()?);
                let from = self.next()?.node()?;
                let to = self.next()?.node()?;
                match code {
                    "S" => EventKind::MsgSent {
                        msg_id,
                        from,
                        to,
                        msg: self.next()?.msg()?,
                    },
                    "D" => EventKind::MsgDelivered {
                        msg_id,
                        from,
                        to,
                        duplicate: self.next()?.bit()?,
                    },
                    _ => EventKind::MsgLost {
                        msg_id,
                        from,
                        to,
                        reason: self.next()?.string()?,
                    },
                }
            }
            "X" => {
                let req = self.req()?;
                let op = self.next()?.op()?;
                let lock = self.next()?.string()?;
                crate::decode::executed(req, op, lock, self.next()?.flags(4)?)
            }
            "I" => EventKind::OpInvoked {
                client: self.next()?.u32()?,
                req: self.req()?,
                op: self.next()?.op()?,
                lock: self.next()?.string()?,
                server: self.next()?.node()?,
                tag: self.next()?.tag()?,
            },
            "C" => EventKind::OpCompleted {
                client: self.next()?.u32()?,
                req: self.req()?,
                op: self.next()?.op()?,
                lock: self.next()?.string()?,
                server: self.next()?.node()?,
                ok: self.next()?.bit()?,
                latency_us: self.next()?.u64()?,
                attempts: self.next()?.u32()?,
                tag: self.next()?.tag()?,
            },
            _ => return None,
        };
        self.byte(b']')?;
        Some(Event {
            seq,
            t_us,
            node,
            kind,
        })
    }

    /// `, req, op, lock`: a request's, a forward's, a batch entry's.
    fn op_on_lock(&mut self) -> Option<(RequestId, Op, String)> {
        Some((self.req()?, self.next()?.op()?, self.next()?.string()?))
    }

    /// `, req, ok`: a reply's, an ack's, a batch ack's entry.
    fn answer(&mut self) -> Option<(RequestId, bool)> {
        Some((self.req()?, self.next()?.bit()?))
    }

    /// A message row: `["Q", req, op, lock]`, `["P", req, ok]`, ... (a message object: `None`).
    fn msg(&mut self) -> Option<Msg> {
        self.byte(b'[')?;
        let msg = match self.str()? {
            "Q" => {
                let (req, op, lock) = self.op_on_lock()?;
                Msg::Request { req, op, lock }
            }
            "F" => {
                let (req, op, lock) = self.op_on_lock()?;
                Msg::Forward { req, op, lock }
            }
            "P" => {
                let (req, ok) = self.answer()?;
                Msg::Reply { req, ok }
            }
            "A" => {
                let (req, ok) = self.answer()?;
                Msg::ForwardAck { req, ok }
            }
            "R" => Msg::ForwardRefused { req: self.req()? },
            "FB" => {
                let mut ops = Vec::new();
                while self.peek()? == b',' {
                    let (req, op, lock) = self.op_on_lock()?;
                    ops.push(ForwardOp { req, op, lock });
                }
                Msg::ForwardBatch { ops }
            }
            "AB" => {
                let mut acks = Vec::new();
                while self.peek()? == b',' {
                    let (req, ok) = self.answer()?;
                    acks.push(ForwardAckItem { req, ok });
                }
                Msg::ForwardAckBatch { acks }
            }
            _ => return None,
        };
        self.byte(b']')?;
        Some(msg)
    }

    /// An event object, found by its brackets (strings skipped whole) and decoded by serde.
    fn object(&mut self) -> Option<Event> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.i += 1;
                        break;
                    }
                }
                b'"' => {
                    self.i += 1;
                    loop {
                        match self.peek()? {
                            b'"' => break,
                            b'\\' => self.i += 2,
                            _ => self.i += 1,
                        }
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        serde_json::from_str(self.s.get(start..self.i)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(events: &str) -> String {
        format!("{HEAD}{events}{TAIL}")
    }

    /// Whatever the text, the same answer as serde: the same message, or an error for both.
    fn same_as_serde(text: &str) -> Option<ServerMsg> {
        let ours = read_server_msg(text);
        let serde = serde_json::from_str::<ServerMsg>(text);
        match (ours, serde) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                Some(a)
            }
            (Err(_), Err(_)) => None,
            (a, b) => panic!("{text}: quick {a:?}, serde {b:?}"),
        }
    }

    const SENT: &str = r#"[17,2165568,"c2","S",17179869185,"c2","s1",["Q",2,1,0,0,"a"]]"#;
    const DELIVERED: &str = r#"[18,2165601,"s1","D",17179869185,"c2","s1",0]"#;
    const EXECUTED: &str = r#"[19,2165640,"s1","X",2,1,0,0,"a",11]"#;
    const OBJECT: &str = r#"{"seq":16,"t_us":2165352,"node":"s1","type":"crash_armed"}"#;

    #[test]
    fn rows_and_objects_are_read_quickly_and_as_serde_reads_them() {
        for (body, n) in [
            (String::new(), 0),
            (SENT.to_owned(), 1),
            (format!("{OBJECT},{SENT},{DELIVERED},{EXECUTED}"), 4),
            (format!("{SENT},{OBJECT},{OBJECT},{EXECUTED}"), 4),
            (r#"[1,2,"c1","I",1,1,3,0,1,"a","s1",null],[2,3,"c1","C",1,1,3,0,1,"a","s1",1,250,2,"t-1"]"#.into(), 2),
            (r#"[1,2,"s1","L",5,"s1","s2","cut"],[2,3,"s1","S",6,"s1","s2",["FB",1,1,0,0,"a",2,7,1,1,"b"]]"#.into(), 2),
            (r#"[1,2,"s2","S",7,"s2","s1",["AB",1,1,0,1,2,7,1,0]],[2,3,"s2","S",8,"s2","s1",["AB"]]"#.into(), 2),
            (r#"[1,2,"s1","S",9,"s1","c1",["P",1,1,0,1]],[2,3,"s2","S",10,"s2","s1",["R",1,1,0]]"#.into(), 2),
            (r#"[1,2,"s1","S",9,"s1","s2",["F",1,1,0,1,"b"]],[2,3,"s2","S",10,"s2","s1",["A",1,1,0,0]]"#.into(), 2),
            // Brackets and escaped quotes inside an object's strings.
            (r#"{"seq":1,"t_us":2,"node":"checker","type":"verdict","lock":"a]}\"{[","status":"unknown","ops":[],"explanation":"x \\\" ]","calls":0}"#.into(), 1),
        ] {
            let text = frame(&body);
            assert!(read_events_frame(&text).is_some(), "not read quickly: {text}");
            let msg = same_as_serde(&text).unwrap_or_else(|| panic!("not read: {text}"));
            let ServerMsg::Events { events } = msg else {
                panic!("{text}")
            };
            assert_eq!(events.len(), n, "{text}");
        }
    }

    /// What this reader is not sure of goes to serde, which reads it or refuses it as before.
    #[test]
    fn what_it_is_not_sure_of_goes_to_serde() {
        let read_by_serde = [
            // An escape in a string, a message object in a row, whitespace.
            r#"[1,2,"c\u0031","D",5,"c1","s1",0]"#,
            r#"[1,2,"c1","S",5,"c1","s1",{"kind":"reply","req":{"client":1,"seq":1},"ok":true}]"#,
            r#"[1, 2,"c1","D",5,"c1","s1",0]"#,
        ];
        let refused = [
            r#"[1,2,"c1","D",5,"c1","s1",01]"#,  // a leading zero
            r#"[1,2,"c1","D",5,"c1","s1",1.0]"#, // a fraction
            r#"[1,2,"c1","D",5,"c1","s1",-1]"#,  // a sign
            r#"[18446744073709551616,2,"c1","D",5,"c1","s1",0]"#, // past u64
            r#"[1,2,"c1","I",4294967296,1,1,0,0,"a","s1",null]"#, // past u32
            r#"[1,2,"c1","D",5,"c1","s1",2]"#,   // not a flag
            r#"[1,2,"s1","X",2,1,0,0,"a",16]"#,  // five flags
            r#"[1,2,"c1","Z",5,"c1","s1",0]"#,   // an unknown code
            r#"[1,2,"c1","S",5,"c1","s1",["Z",1,1,0]]"#, // an unknown message code
            r#"[1,2,"c1","D",5,"c1","s1"]"#,     // cut short
            r#"[1,2,"c1","D",5,"c1","s1",0,0]"#, // too long
            r#"[1,2,"c1","S",5,"c1","s1",["FB",1,1,0,0]]"#, // a batch entry cut short
            "[1,2,\"c\u{1}\",\"D\",5,\"c1\",\"s1\",0]", // a control character
            r#"[1,2,"c1","I",1,1,3,0,1,"a","s1",nul]"#,
            r#"{"seq":1,"t_us":2,"node":"s1","type":"crash_armed""#,
            r#"{"seq":1,"t_us":2,"node":"s1","type":"crash_armed"]"#,
            r#"[1,2,"c1","D",5,"c1","s1",0],"#,
            r#",[1,2,"c1","D",5,"c1","s1",0]"#,
            "5",
        ];
        for body in read_by_serde {
            let text = frame(body);
            assert!(read_events_frame(&text).is_none(), "{text}");
            assert!(same_as_serde(&text).is_some(), "{text}");
        }
        for body in refused {
            let text = frame(body);
            assert!(read_events_frame(&text).is_none(), "{text}");
            assert!(same_as_serde(&text).is_none(), "{text}");
        }
        // Other frames, and frames not as the gateway writes them, are serde's.
        for text in [
            r#"{"type":"ack","command":"lock","tag":null}"#.to_owned(),
            format!(r#"{{"events":[{SENT}],"type":"events"}}"#),
            format!("{}\n", frame(SENT)),
            "{\"type\":\"events\",\"events\":[{\"seq\":1".to_owned(),
            format!("{}{}", frame(OBJECT), "}"),
            format!("{}{}", "{".repeat(MAX_DEPTH + 2), "}".repeat(MAX_DEPTH + 2)),
            frame(&format!(
                "{}{}",
                "{".repeat(MAX_DEPTH + 2),
                "}".repeat(MAX_DEPTH + 2)
            )),
        ] {
            same_as_serde(&text);
        }
    }
}
