//! `events` frames in binary: what a viewer that sent `{"type":"compact","on":true,"binary":true}`
//! gets instead of the JSON `events` frame (docs/protocol.md, "Events in binary").
//!
//! Why: under load, what a viewer costs the cluster is mostly the bytes of its stream (measured:
//! docs/performance.md, "What a viewer costs: its bytes"), and an event in binary is about a
//! quarter of its compact JSON row. Every other message (hello, snapshot, ack, error, ...) stays
//! JSON text.
//!
//! A frame is one WebSocket binary message. Names (node ids and lock names) are numbered once
//! per connection: a frame first defines the names its rows use that this connection has not
//! been sent yet, and the reader keeps them ([`Names`]) for the frames after it.
//!
//! ```text
//! frame  = 0x45 ('E'), varint first, varint n, n * str, event*
//!          names first, first + 1, ... are the n strs (first = 1 + the names defined before
//!          on this connection); then the events, in seq order, to the end of the message
//! event  = varint gap, kind, body         seq = the previous event's seq + gap (the first's
//!                                         previous is 0); gap >= 1
//! kind   = 0x00: varint len, the event's JSON object (len bytes of UTF-8), as in a JSON frame
//!        | 'S' | 'D' | 'L' | 'X' | 'I' | 'C': a row of the compact JSON row's code, body:
//! body   = time, name node, then by kind:
//!   S  msg_id, name from, name to, msg
//!   D  msg_id, name from, name to, u8 duplicate (0/1)
//!   L  msg_id, name from, name to, str reason
//!   X  req, op, name lock, u8 flags (ok 1 + held 2 + duplicate 4 + forwarded 8)
//!   I  varint client, req, op, name lock, name server, tag
//!   C  varint client, req, op, name lock, name server, u8 ok, varint latency_us,
//!      varint attempts, tag
//! time   = zigzag varint: t_us minus the t_us of the frame's row before (the first's: 0)
//! msg_id = varint origin, varint number (msg_id = origin * 2^32 + number, each below 2^32)
//! msg    = 'Q' req op name lock | 'F' req op name lock | 'P' req u8 ok | 'A' req u8 ok
//!        | 'R' req | 'B' varint n, n * (req op name lock) | 'K' varint n, n * (req u8 ok)
//! req    = varint client, varint seq, varint incarnation
//! op     = u8: 0 lock, 1 unlock
//! name   = varint 0, str (a name given in full) | varint k >= 1 (the name numbered k)
//! tag    = u8 0 (none) | u8 1, str
//! str    = varint len, len bytes of UTF-8
//! varint = unsigned LEB128, at most 10 bytes; zigzag: 2n for n >= 0, -2n - 1 for n < 0
//! ```
//!
//! The server writes each event's row once, as it publishes it ([`write_row`]: the time in full,
//! names numbered by the server's [`NameTable`]), and a viewer's frame from those rows
//! ([`FrameWriter`]: the names it has not sent yet, each row with its seq gap and its time made
//! relative). [`read_frame`] reads a frame back into the same [`Event`]s the JSON frame holds:
//! anything cut short, out of range, not UTF-8, a name not defined, or a frame of another type
//! is an error, never a panic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Event, EventKind, ForwardAckItem, ForwardOp, Msg, MsgId, NodeId, Op, RequestId};

/// The first byte of an events frame.
pub const EVENTS_FRAME: u8 = b'E';

/// The kind byte of an event sent as its JSON object.
const OBJECT: u8 = 0;

/// Most names one connection numbers (beyond, names are given in full in every row).
pub const MAX_NAMES: usize = 1 << 16;

/// Longest name that is numbered (a longer one is given in full in every row).
pub const MAX_NAME_BYTES: usize = 256;

/// True for the kinds a frame carries as rows rather than objects.
pub fn has_row(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::MsgSent { .. }
            | EventKind::MsgDelivered { .. }
            | EventKind::MsgLost { .. }
            | EventKind::Executed { .. }
            | EventKind::OpInvoked { .. }
            | EventKind::OpCompleted { .. }
    )
}

/// FNV-1a: names are a few bytes long.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The writer's numbering of names: 1, 2, ... in the order first seen, at most `limit`.
#[derive(Default)]
pub struct NameTable {
    ids: HashMap<Box<str>, u32, BuildHasherDefault<Fnv>>,
    names: Vec<Box<str>>,
    limit: usize,
}

impl std::fmt::Debug for NameTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameTable({} names)", self.names.len())
    }
}

impl NameTable {
    /// A table that numbers at most `limit` names (at most [`MAX_NAMES`]).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.min(MAX_NAMES),
            ..Self::default()
        }
    }

    /// How many names are numbered.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names numbered `from + 1` onwards.
    pub fn since(&self, from: usize) -> &[Box<str>] {
        &self.names[from.min(self.names.len())..]
    }

    fn write(&mut self, out: &mut Vec<u8>, name: &str) {
        if let Some(&k) = self.ids.get(name) {
            return varint(out, u64::from(k));
        }
        if self.names.len() < self.limit && name.len() <= MAX_NAME_BYTES {
            self.names.push(name.into());
            let k = self.names.len() as u32;
            self.ids.insert(name.into(), k);
            return varint(out, u64::from(k));
        }
        out.push(0);
        string(out, name);
    }
}

/// Writes the event's stored row (`kind, t_us in full, body`) if its kind has one, numbering
/// its names in `names`.
pub fn write_row(out: &mut Vec<u8>, event: &Event, names: &mut NameTable) -> bool {
    let code = match &event.kind {
        EventKind::MsgSent { .. } => b'S',
        EventKind::MsgDelivered { .. } => b'D',
        EventKind::MsgLost { .. } => b'L',
        EventKind::Executed { .. } => b'X',
        EventKind::OpInvoked { .. } => b'I',
        EventKind::OpCompleted { .. } => b'C',
        _ => return false,
    };
    out.push(code);
    varint(out, event.t_us);
    names.write(out, event.node.as_str());
    let link = |out: &mut Vec<u8>, names: &mut NameTable, id: MsgId, from: &NodeId, to: &NodeId| {
        varint(out, id.origin());
        varint(out, id.number());
        names.write(out, from.as_str());
        names.write(out, to.as_str());
    };
    match &event.kind {
        EventKind::MsgSent {
            msg_id,
            from,
            to,
            msg,
        } => {
            link(out, names, *msg_id, from, to);
            write_msg(out, msg, names);
        }
        EventKind::MsgDelivered {
            msg_id,
            from,
            to,
            duplicate,
        } => {
            link(out, names, *msg_id, from, to);
            out.push(u8::from(*duplicate));
        }
        EventKind::MsgLost {
            msg_id,
            from,
            to,
            reason,
        } => {
            link(out, names, *msg_id, from, to);
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
            request(out, req);
            op_lock(out, *op, lock, names);
            out.push(crate::executed_flags(*ok, *held, *duplicate, *forwarded));
        }
        EventKind::OpInvoked {
            client,
            req,
            op,
            lock,
            tag,
            server,
        } => {
            varint(out, u64::from(*client));
            request(out, req);
            op_lock(out, *op, lock, names);
            names.write(out, server.as_str());
            write_tag(out, tag.as_deref());
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
            varint(out, u64::from(*client));
            request(out, req);
            op_lock(out, *op, lock, names);
            names.write(out, server.as_str());
            out.push(u8::from(*ok));
            varint(out, *latency_us);
            varint(out, u64::from(*attempts));
            write_tag(out, tag.as_deref());
        }
        _ => unreachable!("kinds without a row returned above"),
    }
    true
}

fn write_msg(out: &mut Vec<u8>, msg: &Msg, names: &mut NameTable) {
    match msg {
        Msg::Request { req, op, lock } | Msg::Forward { req, op, lock } => {
            out.push(if matches!(msg, Msg::Request { .. }) {
                b'Q'
            } else {
                b'F'
            });
            request(out, req);
            op_lock(out, *op, lock, names);
        }
        Msg::Reply { req, ok } | Msg::ForwardAck { req, ok } => {
            out.push(if matches!(msg, Msg::Reply { .. }) {
                b'P'
            } else {
                b'A'
            });
            request(out, req);
            out.push(u8::from(*ok));
        }
        Msg::ForwardRefused { req } => {
            out.push(b'R');
            request(out, req);
        }
        Msg::ForwardBatch { ops } => {
            out.push(b'B');
            varint(out, ops.len() as u64);
            for o in ops {
                request(out, &o.req);
                op_lock(out, o.op, &o.lock, names);
            }
        }
        Msg::ForwardAckBatch { acks } => {
            out.push(b'K');
            varint(out, acks.len() as u64);
            for a in acks {
                request(out, &a.req);
                out.push(u8::from(a.ok));
            }
        }
    }
}

/// Builds one events frame for one connection: first the names it has not been sent, then
/// the events in seq order.
#[derive(Debug)]
pub struct FrameWriter {
    buf: Vec<u8>,
    last_seq: u64,
    last_t: u64,
}

impl FrameWriter {
    /// A frame that first defines `new` names, numbered from `known + 1` (the connection has
    /// been sent `known` names before).
    pub fn new(known: usize, new: &[Box<str>], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 8);
        buf.push(EVENTS_FRAME);
        varint(&mut buf, known as u64 + 1);
        varint(&mut buf, new.len() as u64);
        for name in new {
            string(&mut buf, name);
        }
        Self {
            buf,
            last_seq: 0,
            last_t: 0,
        }
    }

    fn gap(&mut self, seq: u64) {
        debug_assert!(seq > self.last_seq, "events frames go in seq order");
        varint(&mut self.buf, seq.saturating_sub(self.last_seq));
        self.last_seq = seq;
    }

    /// Adds the event numbered `seq` from the row [`write_row`] stored for it, with names the
    /// frame's connection has been sent (or that this frame defines).
    pub fn row(&mut self, seq: u64, row: &[u8]) {
        let (Some(&code), Some((t_us, len))) = (row.first(), row.get(1..).and_then(peek_varint))
        else {
            debug_assert!(false, "a stored row starts with its kind and time");
            return;
        };
        self.gap(seq);
        self.buf.push(code);
        let dt = t_us.wrapping_sub(self.last_t) as i64;
        varint(&mut self.buf, ((dt << 1) ^ (dt >> 63)) as u64);
        self.last_t = t_us;
        self.buf.extend_from_slice(&row[1 + len..]);
    }

    /// Adds an event as its JSON object.
    pub fn object(&mut self, seq: u64, json: &str) {
        self.gap(seq);
        self.buf.push(OBJECT);
        string(&mut self.buf, json);
    }

    /// True when no event has been added.
    pub fn is_empty(&self) -> bool {
        self.last_seq == 0
    }

    /// The frame's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// A varint at the start of `bytes`, and its length.
fn peek_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn request(out: &mut Vec<u8>, req: &RequestId) {
    varint(out, u64::from(req.client));
    varint(out, req.seq);
    varint(out, u64::from(req.incarnation));
}

fn op_lock(out: &mut Vec<u8>, op: Op, lock: &str, names: &mut NameTable) {
    out.push(match op {
        Op::Lock => 0,
        Op::Unlock => 1,
    });
    names.write(out, lock);
}

fn write_tag(out: &mut Vec<u8>, tag: Option<&str>) {
    match tag {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            string(out, t);
        }
    }
}

/// The names a connection has been sent, numbered from 1: kept by the reader from one frame
/// to the next (a new connection starts a new one).
#[derive(Debug, Default, Clone)]
pub struct Names(Vec<Box<str>>);

impl Names {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a binary frame was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryError {
    /// The byte the reader stopped at.
    pub offset: usize,
    pub what: String,
}

impl std::fmt::Display for BinaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "binary events frame, byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for BinaryError {}

/// Reads an events frame into its events; `names` are the names the connection was sent
/// before, and gain the ones this frame defines as they are read: the writer counts them as
/// sent even if an event after them is refused, so a reader that refuses an event can still
/// read the frames after it.
pub fn read_frame(bytes: &[u8], names: &mut Names) -> Result<Vec<Event>, BinaryError> {
    let mut r = Reader {
        bytes,
        at: 0,
        names: &[],
        last_t: 0,
        budget: name_budget(bytes.len()),
    };
    match r.u8()? {
        EVENTS_FRAME => {}
        other => {
            return Err(BinaryError {
                offset: 0,
                what: format!("not an events frame (first byte {other:#04x})"),
            })
        }
    }
    let at = r.at;
    if r.varint()? != names.0.len() as u64 + 1 {
        return Err(r.fail(at, "names out of step with the frames before"));
    }
    let n = r.count(1)?;
    if names.0.len() + n > MAX_NAMES {
        return Err(r.fail(at, "more names than a connection numbers"));
    }
    for _ in 0..n {
        let at = r.at;
        let name = r.str()?;
        if name.len() > MAX_NAME_BYTES {
            return Err(r.fail(at, "a numbered name longer than 256 bytes"));
        }
        names.0.push(name.into());
    }
    let mut r = Reader {
        bytes,
        at: r.at,
        names: &names.0,
        last_t: 0,
        budget: r.budget,
    };
    // A row takes at least 8 bytes: a first guess for the vector, never a promise (and never
    // more than a modest one: an event is some 160 bytes once read).
    let mut events = Vec::with_capacity(((bytes.len() - r.at) / 16).min(4_096));
    let mut last = 0u64;
    while r.at < bytes.len() {
        let start = r.at;
        let gap = r.varint()?;
        if gap == 0 {
            return Err(r.fail(start, "seq does not increase"));
        }
        let seq = last
            .checked_add(gap)
            .ok_or_else(|| r.fail(start, "seq out of range"))?;
        last = seq;
        events.push(r.event(seq)?);
    }
    Ok(events)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The connection's names, this frame's included.
    names: &'a [Box<str>],
    last_t: u64,
    /// Bytes of numbered names this frame may still copy into its events.
    budget: usize,
}

/// How many bytes of numbered names a frame of `len` bytes may copy into its events: a
/// reference of one byte could otherwise stand for 256, and a small frame for gigabytes. The
/// server's frames copy about as many bytes as they hold (a 64-byte lock name in a batch of
/// forwards, 13 times as many).
fn name_budget(len: usize) -> usize {
    len.saturating_mul(32).saturating_add(64 * 1024)
}

impl<'a> Reader<'a> {
    fn fail(&self, offset: usize, what: &str) -> BinaryError {
        BinaryError {
            offset,
            what: what.to_owned(),
        }
    }

    fn u8(&mut self) -> Result<u8, BinaryError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.fail(self.at, "cut short"))?;
        self.at += 1;
        Ok(b)
    }

    fn bit(&mut self) -> Result<bool, BinaryError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.fail(self.at - 1, "a flag is not 0 or 1")),
        }
    }

    fn varint(&mut self) -> Result<u64, BinaryError> {
        let start = self.at;
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.fail(start, "number out of range"));
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.fail(start, "number out of range"))
    }

    fn u32(&mut self) -> Result<u32, BinaryError> {
        let start = self.at;
        u32::try_from(self.varint()?).map_err(|_| self.fail(start, "number out of range"))
    }

    fn str(&mut self) -> Result<&'a str, BinaryError> {
        let start = self.at;
        let len = self.varint()?;
        let bytes: &'a [u8] = self.bytes;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| self.fail(start, "text cut short"))?;
        let s = std::str::from_utf8(&bytes[self.at..end])
            .map_err(|_| self.fail(start, "text is not UTF-8"))?;
        self.at = end;
        Ok(s)
    }

    fn name(&mut self) -> Result<&'a str, BinaryError> {
        let start = self.at;
        match self.varint()? {
            0 => self.str(),
            k => {
                let names: &'a [Box<str>] = self.names;
                let name = usize::try_from(k - 1)
                    .ok()
                    .and_then(|i| names.get(i))
                    .map(|n| &**n)
                    .ok_or_else(|| self.fail(start, "a name this connection was not sent"))?;
                self.budget = self.budget.checked_sub(name.len()).ok_or_else(|| {
                    self.fail(start, "names copied far beyond the frame's own size")
                })?;
                Ok(name)
            }
        }
    }

    fn node(&mut self) -> Result<NodeId, BinaryError> {
        self.name().map(NodeId::from)
    }

    fn req(&mut self) -> Result<RequestId, BinaryError> {
        Ok(RequestId {
            client: self.u32()?,
            seq: self.varint()?,
            incarnation: self.u32()?,
        })
    }

    fn op(&mut self) -> Result<Op, BinaryError> {
        match self.u8()? {
            0 => Ok(Op::Lock),
            1 => Ok(Op::Unlock),
            _ => Err(self.fail(self.at - 1, "an op is not 0 or 1")),
        }
    }

    fn op_lock(&mut self) -> Result<(Op, String), BinaryError> {
        Ok((self.op()?, self.name()?.to_owned()))
    }

    fn tag(&mut self) -> Result<Option<String>, BinaryError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?.to_owned())),
            _ => Err(self.fail(self.at - 1, "a tag is not 0 (none) or 1")),
        }
    }

    /// A count of items of at least `min_each` bytes: no more than the bytes left could hold.
    fn count(&mut self, min_each: usize) -> Result<usize, BinaryError> {
        let start = self.at;
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) / min_each;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| self.fail(start, "count larger than the frame"))
    }

    fn msg(&mut self) -> Result<Msg, BinaryError> {
        let at = self.at;
        Ok(match self.u8()? {
            b'Q' => {
                let req = self.req()?;
                let (op, lock) = self.op_lock()?;
                Msg::Request { req, op, lock }
            }
            b'F' => {
                let req = self.req()?;
                let (op, lock) = self.op_lock()?;
                Msg::Forward { req, op, lock }
            }
            b'P' => Msg::Reply {
                req: self.req()?,
                ok: self.bit()?,
            },
            b'A' => Msg::ForwardAck {
                req: self.req()?,
                ok: self.bit()?,
            },
            b'R' => Msg::ForwardRefused { req: self.req()? },
            b'B' => {
                let n = self.count(5)?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    let req = self.req()?;
                    let (op, lock) = self.op_lock()?;
                    ops.push(ForwardOp { req, op, lock });
                }
                Msg::ForwardBatch { ops }
            }
            b'K' => {
                let n = self.count(4)?;
                let mut acks = Vec::with_capacity(n);
                for _ in 0..n {
                    acks.push(ForwardAckItem {
                        req: self.req()?,
                        ok: self.bit()?,
                    });
                }
                Msg::ForwardAckBatch { acks }
            }
            _ => return Err(self.fail(at, "unknown message code")),
        })
    }

    fn link(&mut self) -> Result<(MsgId, NodeId, NodeId), BinaryError> {
        let start = self.at;
        let (origin, number) = (self.varint()?, self.varint()?);
        if origin > u64::from(u32::MAX) || number > u64::from(u32::MAX) {
            return Err(self.fail(start, "message id out of range"));
        }
        Ok((MsgId::new(origin, number), self.node()?, self.node()?))
    }

    fn event(&mut self, seq: u64) -> Result<Event, BinaryError> {
        let at = self.at;
        let code = self.u8()?;
        if code == OBJECT {
            let text = self.str()?;
            let event: Event = serde_json::from_str(text)
                .map_err(|e| self.fail(at, &format!("event object: {e}")))?;
            if event.seq != seq {
                return Err(self.fail(at, "the object's seq is not the frame's"));
            }
            return Ok(event);
        }
        if !matches!(code, b'S' | b'D' | b'L' | b'X' | b'I' | b'C') {
            return Err(self.fail(at, "unknown event kind"));
        }
        let zigzag = self.varint()?;
        let dt = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        let t_us = self.last_t.wrapping_add(dt as u64);
        self.last_t = t_us;
        let node = self.node()?;
        let kind = match code {
            b'S' => {
                let (msg_id, from, to) = self.link()?;
                let msg = self.msg()?;
                EventKind::MsgSent {
                    msg_id,
                    from,
                    to,
                    msg,
                }
            }
            b'D' => {
                let (msg_id, from, to) = self.link()?;
                EventKind::MsgDelivered {
                    msg_id,
                    from,
                    to,
                    duplicate: self.bit()?,
                }
            }
            b'L' => {
                let (msg_id, from, to) = self.link()?;
                EventKind::MsgLost {
                    msg_id,
                    from,
                    to,
                    reason: self.str()?.to_owned(),
                }
            }
            b'X' => {
                let req = self.req()?;
                let (op, lock) = self.op_lock()?;
                let flags = self.u8()?;
                if flags > 15 {
                    return Err(self.fail(self.at - 1, "flags out of range"));
                }
                crate::decode::executed(req, op, lock, flags)
            }
            b'I' => {
                let client = self.u32()?;
                let req = self.req()?;
                let (op, lock) = self.op_lock()?;
                let server = self.node()?;
                EventKind::OpInvoked {
                    client,
                    req,
                    op,
                    lock,
                    tag: self.tag()?,
                    server,
                }
            }
            _ => {
                let client = self.u32()?;
                let req = self.req()?;
                let (op, lock) = self.op_lock()?;
                let server = self.node()?;
                let ok = self.bit()?;
                let latency_us = self.varint()?;
                let attempts = self.u32()?;
                EventKind::OpCompleted {
                    client,
                    op,
                    lock,
                    tag: self.tag()?,
                    ok,
                    req,
                    server,
                    latency_us,
                    attempts,
                }
            }
        };
        Ok(Event {
            seq,
            t_us,
            node,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::every_event;

    /// A connection's writer side: the server's table and how many names were sent.
    struct Conn {
        table: NameTable,
        sent: usize,
    }

    impl Conn {
        fn new(limit: usize) -> Self {
            Self {
                table: NameTable::new(limit),
                sent: 0,
            }
        }

        /// As the bus and the gateway do: rows stored as published, then one frame.
        fn frame(&mut self, events: &[Event]) -> Vec<u8> {
            let rows: Vec<Option<Vec<u8>>> = events
                .iter()
                .map(|e| {
                    let mut row = Vec::new();
                    write_row(&mut row, e, &mut self.table).then_some(row)
                })
                .collect();
            let mut w = FrameWriter::new(self.sent, self.table.since(self.sent), 64);
            self.sent = self.table.len();
            for (e, row) in events.iter().zip(rows) {
                match row {
                    Some(row) => w.row(e.seq, &row),
                    None => w.object(e.seq, &serde_json::to_string(e).unwrap()),
                }
            }
            w.finish()
        }
    }

    fn header(first: u8) -> Vec<u8> {
        vec![b'E', first, 0]
    }

    #[test]
    fn every_event_reads_back_as_written() {
        let events = every_event();
        assert!(events.iter().filter(|e| has_row(&e.kind)).count() >= 12);
        assert!(events.iter().any(|e| !has_row(&e.kind)));
        let mut names = Names::default();
        assert_eq!(
            read_frame(&Conn::new(100).frame(&events), &mut names),
            Ok(events.clone())
        );
        assert!(names.len() >= 3, "{names:?}");
        // A frame per event: names sent once, used by the frames after; and with a table of
        // two names, the rest given in full.
        for limit in [100, 2, 0] {
            let (mut conn, mut names) = (Conn::new(limit), Names::default());
            for e in &events {
                let frame = conn.frame(std::slice::from_ref(e));
                assert_eq!(read_frame(&frame, &mut names), Ok(vec![e.clone()]));
            }
            assert_eq!(names.len(), limit.min(conn.table.len()));
        }
        // Backwards in time, far apart in seq: still the same events.
        let mut reversed: Vec<Event> = events.iter().rev().cloned().collect();
        for (i, e) in reversed.iter_mut().enumerate() {
            e.seq = (1 << 40) + (i as u64) * (i as u64) + 1;
            e.t_us = u64::MAX - i as u64 * 1_000_003;
        }
        let frame = Conn::new(100).frame(&reversed);
        assert_eq!(read_frame(&frame, &mut Names::default()), Ok(reversed));
    }

    /// Thousands of names, short and long, met again in another order: each keeps its number,
    /// and past the table's limit they are written out.
    #[test]
    fn names_keep_their_numbers_met_again_in_another_order() {
        let mut names: Vec<String> = (0..3_000).map(|i| format!("load-{i}")).collect();
        names.extend(
            [
                "",
                "x",
                "x\0",
                "x\0\0",
                "sixteen-bytes-ab",
                "seventeen-bytes-a",
            ]
            .map(String::from),
        );
        names.push("é".repeat(9));
        let n = names.len();
        let events: Vec<Event> = (0..4 * n)
            .map(|i| Event {
                seq: i as u64 + 1,
                t_us: i as u64,
                node: "s1".into(),
                kind: EventKind::Executed {
                    req: RequestId::new(1, i as u64),
                    op: Op::Lock,
                    lock: names[(i * 7_919) % n].clone(),
                    ok: true,
                    held: false,
                    duplicate: false,
                    forwarded: false,
                },
            })
            .collect();
        for limit in [MAX_NAMES, 1_000] {
            let mut conn = Conn::new(limit);
            let mut read = Names::default();
            for chunk in events.chunks(700) {
                assert_eq!(
                    read_frame(&conn.frame(chunk), &mut read).as_deref(),
                    Ok(chunk)
                );
            }
            assert_eq!(read.len(), (n + 1).min(limit));
        }
    }

    #[test]
    fn the_kinds_with_a_row_are_the_json_rows_kinds() {
        // A viewer of rows and a viewer of binary get the same events as rows.
        let rowed = [
            "msg_sent",
            "msg_delivered",
            "msg_lost",
            "executed",
            "op_invoked",
            "op_completed",
        ];
        for e in every_event() {
            let json = serde_json::to_value(&e).unwrap();
            let name = json["type"].as_str().unwrap().to_owned();
            assert_eq!(has_row(&e.kind), rowed.contains(&name.as_str()), "{name}");
            assert_eq!(
                has_row(&e.kind),
                write_row(&mut Vec::new(), &e, &mut NameTable::new(9))
            );
        }
    }

    #[test]
    fn objects_go_in_as_they_are() {
        let events = every_event();
        let mut w = FrameWriter::new(0, &[], 64);
        assert!(w.is_empty());
        for e in &events {
            w.object(e.seq, &serde_json::to_string(e).unwrap());
        }
        assert!(!w.is_empty());
        assert_eq!(read_frame(&w.finish(), &mut Names::default()), Ok(events));
    }

    #[test]
    fn bad_frames_are_refused_with_where_and_why() {
        let one = Conn::new(9).frame(&every_event()[..1]);
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        let d = |rest: &[u8]| [&header(1)[..], &[1, b'D'], rest].concat();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "cut short"),
            (b"{\"type\":\"events\"}".to_vec(), "not an events frame"),
            (vec![b'E', 2, 0], "names out of step"),
            (vec![b'E', 1, 3, 1, b'a'], "count larger"),
            ([&header(1)[..], &[0]].concat(), "seq does not increase"),
            ([&header(1)[..], &[1, b'Z']].concat(), "unknown event kind"),
            (d(&huge), "out of range"),
            (d(&[0, 0, 3, b's', 0xff, b'1']), "not UTF-8"),
            (d(&[0, 0, 9, b's']), "text cut short"),
            (d(&[0, 5]), "not sent"),
            (
                d(&[0, 0, 2, b's', b'1', 0x80, 0x80, 0x80, 0x80, 0x10, 1]),
                "message id out of range",
            ),
            (
                d(&[0, 0, 2, b's', b'1', 1, 1, 0, 1, b's', 0, 1, b's', 2]),
                "a flag",
            ),
            (
                [&header(1)[..], &[1, 0, 2, b'{', b'}']].concat(),
                "event object",
            ),
            ([&one[..], &[1, 0, 2, b'[', b']']].concat(), "event object"),
            (
                [
                    &header(1)[..],
                    &[
                        1, b'S', 0, 0, 2, b's', b'1', 7, 2, 0, 1, b'c', 0, 1, b's', b'Z',
                    ],
                ]
                .concat(),
                "unknown message code",
            ),
            (
                [
                    &header(1)[..],
                    &[
                        1, b'S', 0, 0, 2, b's', b'1', 7, 2, 0, 1, b'c', 0, 1, b's', b'B', 0xff,
                        0xff, 0x0f,
                    ],
                ]
                .concat(),
                "count larger",
            ),
        ];
        for (bytes, why) in cases {
            let mut names = Names::default();
            let err = read_frame(&bytes, &mut names).expect_err(why);
            assert!(err.to_string().contains(why), "{err} for {bytes:?}");
        }
        // An object must carry the seq the frame gives it.
        let mut w = FrameWriter::new(0, &[], 8);
        let e = &every_event()[0];
        w.object(e.seq + 1, &serde_json::to_string(e).unwrap());
        let err = read_frame(&w.finish(), &mut Names::default()).unwrap_err();
        assert!(err.what.contains("seq"), "{err}");
    }

    #[test]
    fn a_refused_event_keeps_the_names_its_frame_defined() {
        let events = every_event();
        let mut conn = Conn::new(100);
        let mut names = Names::default();
        read_frame(&conn.frame(&events[..3]), &mut names).unwrap();
        let mut next = conn.frame(&events);
        next.truncate(next.len() - 1);
        assert!(read_frame(&next, &mut names).is_err());
        // The writer counts them as sent, so the reader keeps them, and goes on.
        assert_eq!(names.len(), conn.sent);
        let after = conn.frame(&events[..5]);
        assert_eq!(read_frame(&after, &mut names), Ok(events[..5].to_vec()));
    }

    /// Found by review: a name of 64 KiB used 10,000 times made a 165 KB frame take 1.28 GB.
    #[test]
    fn a_frame_cannot_make_its_names_cost_far_more_than_its_bytes() {
        // A numbered name is at most 256 bytes.
        let mut long = header(1);
        long[2] = 1;
        long.extend_from_slice(&[0x81, 0x02]);
        long.extend(std::iter::repeat_n(b'x', 257));
        let err = read_frame(&long, &mut Names::default()).unwrap_err();
        assert!(err.what.contains("longer than 256"), "{err}");
        // 10,000 rows naming one 200-byte name three times each: 90 KB copying 6 MB.
        let mut frame = vec![b'E', 1, 1, 0xc8, 0x01];
        frame.extend(std::iter::repeat_n(b'n', 200));
        for _ in 0..10_000 {
            frame.extend_from_slice(&[1, b'D', 0, 1, 1, 1, 1, 1, 0]);
        }
        let mut names = Names::default();
        let err = read_frame(&frame, &mut names).unwrap_err();
        assert!(err.what.contains("far beyond"), "{err}");
        // What the server writes stays well inside: a batch of 1,000 forwards on one 64-byte
        // lock, and a 300-byte name, given in full rather than numbered.
        let lock = "l".repeat(64);
        let batch = Msg::ForwardBatch {
            ops: (0..1_000)
                .map(|i| ForwardOp {
                    req: RequestId::new(1, i),
                    op: Op::Lock,
                    lock: lock.clone(),
                })
                .collect(),
        };
        let mut events = every_event();
        events.truncate(2);
        events.push(Event {
            seq: 100,
            t_us: 5,
            node: "s1".into(),
            kind: EventKind::MsgSent {
                msg_id: MsgId::new(1, 2),
                from: "s1".into(),
                to: "s2".into(),
                msg: batch,
            },
        });
        events.push(Event {
            seq: 101,
            t_us: 6,
            node: "s1".into(),
            kind: EventKind::Executed {
                req: RequestId::new(1, 1),
                op: Op::Unlock,
                lock: "y".repeat(300),
                ok: true,
                held: false,
                duplicate: false,
                forwarded: true,
            },
        });
        let mut conn = Conn::new(100);
        let frame = conn.frame(&events);
        assert_eq!(read_frame(&frame, &mut Names::default()), Ok(events));
        assert!(conn
            .table
            .since(0)
            .iter()
            .all(|n| n.len() <= MAX_NAME_BYTES));
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_an_error_or_events_never_a_panic() {
        let events = every_event();
        let frame = Conn::new(100).frame(&events);
        for cut in 0..frame.len() {
            if let Ok(read) = read_frame(&frame[..cut], &mut Names::default()) {
                // Cut between two events: the ones before it.
                assert_eq!(read[..], events[..read.len()]);
            }
        }
        let mut refused = 0;
        for at in 1..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[at] ^= 1 << bit;
                refused += usize::from(read_frame(&bad, &mut Names::default()).is_err());
            }
        }
        assert!(
            refused > frame.len() * 4,
            "{refused} of {} refused",
            frame.len() * 8
        );
    }
}
