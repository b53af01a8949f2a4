//! Hand-written `Deserialize` for the tagged types the page reads: [`Event`] (with its
//! flattened [`EventKind`]), [`EventKind`] on its own, [`Msg`], [`ServerMsg`] and [`RunLine`].
//!
//! Derived, these go through serde's `Content` buffer: an internally tagged enum (and a
//! `#[serde(flatten)]` field) first copies the whole object into a tree of `Content` values to
//! find its tag, then reads the variant from that copy. That costs a copy of every event and,
//! in the page's wasm, a second visitor for every variant (137 KB raw, 39 KB gzipped:
//! docs/performance.md, "The page's size"). Here each object is read once, in any key order,
//! into one flat set of optional fields, and then built into the variant its tag names.
//!
//! The wire format is the derived one: the same field names and defaults, unknown fields
//! ignored (a field of another variant too), `null` for an optional field is absent; a
//! missing or duplicate field, a wrong type and an unknown tag are errors, with serde's own
//! messages for a missing field, a duplicate and an unknown tag, and an object cut short is an
//! end of input whatever its tag. One difference, for JSON no pbscope program writes: a key
//! that comes before the tag is read with the type it has in the variants that have it, so a
//! field of another variant with a value of the wrong type, placed before `type`, is an error
//! where the derived decoder ignored it. Serialization stays derived; the tests below and
//! shared/tests/protocol_doc.rs round-trip every variant through both.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::{
    CrashCause, CrashPoint, Event, EventKind, FaultPlan, ForwardAckItem, ForwardOp, HeldMsg, Hello,
    LinkCount, LoadDistribution, LoadSettings, LoadStats, LockVerdict, Msg, MsgId, NodeId, Op,
    RequestId, Role, RunEnd, RunHeader, RunLine, ServerMsg, Snapshot, VerdictStatus,
};

// ------------------------------------------------------------------------------------------
// Helpers shared by the decoders
// ------------------------------------------------------------------------------------------

/// Reads a map key as its index in `.0` (`None`: a key not listed, to be skipped).
struct Key(&'static Names);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<usize>, E> {
        Ok(self.0.position(s))
    }
}

/// Slots in a [`Names`] table: more than twice the longest list, so a probe ends soon.
const SLOTS: usize = 128;
const EMPTY: u8 = u8::MAX;

/// A list of names (keys, or a tag's values) with an open-addressing table, built by the
/// compiler, that finds a name's index in a comparison or a few (1.4 on average for the event
/// keys, at most 4). Comparing a key with each name in turn, through `memcmp`, was a seventh of
/// reading a batch of events.
#[derive(Debug)]
struct Names {
    list: &'static [&'static str],
    slots: [u8; SLOTS],
}

/// A name's first slot, from its length and its first and last bytes.
const fn slot_of(s: &[u8]) -> usize {
    match s {
        [] => 0,
        [first, .., last] => (s.len() * 31 + *first as usize * 7 + *last as usize) % SLOTS,
        [only] => (31 + *only as usize * 8) % SLOTS,
    }
}

impl Names {
    const fn new(list: &'static [&'static str]) -> Self {
        assert!(list.len() * 2 <= SLOTS);
        let mut slots = [EMPTY; SLOTS];
        let mut i = 0;
        while i < list.len() {
            let mut h = slot_of(list[i].as_bytes());
            while slots[h] != EMPTY {
                h = (h + 1) % SLOTS;
            }
            slots[h] = i as u8;
            i += 1;
        }
        Self { list, slots }
    }

    /// Where `s` is in the list.
    fn position(&self, s: &str) -> Option<usize> {
        let s = s.as_bytes();
        let mut h = slot_of(s);
        loop {
            let i = self.slots[h];
            if i == EMPTY {
                return None;
            }
            let name = self.list[usize::from(i)].as_bytes();
            // Names are a few bytes: a loop here beats a call to `memcmp`.
            if name.len() == s.len() && name.iter().zip(s).all(|(a, b)| a == b) {
                return Some(usize::from(i));
            }
            h = (h + 1) % SLOTS;
        }
    }
}

/// Reads a tag's value as its index in `.0`, or the unknown name (an error once the object
/// has been read to its end).
struct Tag(&'static Names);

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = Result<usize, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Tag {
    type Value = Result<usize, String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a variant name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.0.position(s).ok_or_else(|| s.to_owned()))
    }
}

/// Reads a tagged object's entries in one pass, in any order, and returns the tag's index.
///
/// `keys` lists every field any variant has, `keys[tag]` being the tag; `members[t]` has the
/// bits of the keys variant `t` reads, `always` those every variant reads. `store(i, map)`
/// reads key `i`'s value. Unknown keys are skipped. So are known keys the variant does not
/// read, once the tag is known (the server writes it before the variant's fields): as for a
/// derived enum, another variant's field is an unknown field, whatever its value. Before the
/// tag, a known key is read with its type. A key read twice is serde's "duplicate field"; a
/// missing tag its "missing field". An unknown tag is serde's "unknown variant", once the rest
/// of the object has been skipped: as with the derived enums, which read the whole object
/// before they look at the tag, a line cut short is an end of input (a run file's reader
/// tells a cut from a bad line by that) whatever its tag.
fn read_tagged<'de, A: MapAccess<'de>>(
    map: &mut A,
    key_names: &'static Names,
    tag: usize,
    tag_names: &'static Names,
    members: &[u64],
    always: u64,
    mut store: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<usize, A::Error> {
    let (keys, tags) = (key_names.list, tag_names.list);
    let mut ty: Option<usize> = None;
    let mut unknown: Option<String> = None;
    let mut seen = 0u64;
    while let Some(key) = map.next_key_seed(Key(key_names))? {
        let (Some(i), None) = (key, &unknown) else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        let bit = 1u64 << i;
        let wanted = match ty {
            _ if i == tag => true,
            Some(t) => (always | members[t]) & bit != 0,
            None => always & bit != 0 || members.iter().any(|m| m & bit != 0),
        };
        if !wanted {
            map.next_value::<IgnoredAny>()?;
            continue;
        }
        if seen & bit != 0 {
            return Err(de::Error::duplicate_field(keys[i]));
        }
        seen |= bit;
        if i == tag {
            match map.next_value_seed(Tag(tag_names))? {
                Ok(t) => ty = Some(t),
                Err(name) => unknown = Some(name),
            }
        } else {
            store(i, map)?;
        }
    }
    if let Some(name) = unknown {
        return Err(de::Error::unknown_variant(&name, tags));
    }
    need(ty, keys[tag])
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The bits of `names` in `keys` (evaluated by the compiler; a name not in `keys` fails the
/// build).
const fn mask(keys: &[&str], names: &[&str]) -> u64 {
    let mut m = 0u64;
    let mut n = 0;
    while n < names.len() {
        let mut i = 0;
        while !same(keys[i], names[n]) {
            i += 1;
        }
        m |= 1 << i;
        n += 1;
    }
    m
}

/// A field the variant requires: serde's "missing field" when it is absent (or `null`).
fn need<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(name))
}

/// The next value as `Option<T>`: `null` reads as absent, as `#[serde(default)]` options do.
fn val<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    map.next_value::<Option<T>>()
}

/// `ok` is a bool in `executed`/`op_completed` and a count in `load_stats`: read either, and
/// check it against the variant once the tag is known.
enum BoolOrCount {
    Bool(bool),
    Count(u64),
}

impl<'de> Deserialize<'de> for BoolOrCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BoolOrCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a count")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<BoolOrCount, E> {
                Ok(BoolOrCount::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<BoolOrCount, E> {
                Ok(BoolOrCount::Count(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<BoolOrCount, E> {
                u64::try_from(n)
                    .map(BoolOrCount::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V)
    }
}

fn ok_bool<E: de::Error>(v: Option<BoolOrCount>) -> Result<bool, E> {
    match need(v, "ok")? {
        BoolOrCount::Bool(b) => Ok(b),
        BoolOrCount::Count(n) => Err(E::invalid_type(de::Unexpected::Unsigned(n), &"a boolean")),
    }
}

fn ok_count<E: de::Error>(v: Option<BoolOrCount>) -> Result<u64, E> {
    match need(v, "ok")? {
        BoolOrCount::Count(n) => Ok(n),
        BoolOrCount::Bool(b) => Err(E::invalid_type(de::Unexpected::Bool(b), &"u64")),
    }
}

// ------------------------------------------------------------------------------------------
// Event and EventKind
// ------------------------------------------------------------------------------------------

/// `EventKind`'s `type` values, in the enum's order.
const EVENT_TYPES: &[&str] = &[
    "process_started",
    "process_exited",
    "crashed",
    "crash_armed",
    "dying",
    "paused",
    "resumed",
    "client_started",
    "faults_changed",
    "msg_held",
    "role_changed",
    "msg_sent",
    "msg_delivered",
    "msg_lost",
    "executed",
    "op_invoked",
    "op_completed",
    "op_failed",
    "rpc_failed",
    "cluster_reset",
    "slow_motion_set",
    "verdict",
    "load_changed",
    "load_stats",
    "failover",
];
static EVENT_TYPE_NAMES: Names = Names::new(EVENT_TYPES);

/// Every key an event may carry: `Event`'s own three, `type`, then the union of the variants'
/// fields (a name means the same type in every variant that has it, but for `ok`).
const EVENT_KEYS: &[&str] = &[
    "seq",
    "t_us",
    "node",
    "type",
    "pid",
    "role",
    "port",
    "signal",
    "code",
    "cause",
    "req",
    "point",
    "dying_ms",
    "dies_in_ms",
    "incarnation",
    "plan",
    "change",
    "msg_id",
    "from",
    "to",
    "msg",
    "serving_alone",
    "reason",
    "duplicate",
    "op",
    "lock",
    "ok",
    "held",
    "forwarded",
    "client",
    "tag",
    "server",
    "latency_us",
    "attempts",
    "retry_to",
    "generation",
    "delay_ms",
    "status",
    "ops",
    "explanation",
    "calls",
    "clients",
    "rate",
    "locks",
    "distribution",
    "unlock_share",
    "window_ms",
    "failed",
    "ops_per_s",
    "p50_us",
    "p99_us",
    "sample_every",
    "links",
    "total_ok",
    "total_failed",
    "since_us",
    "window_us",
];
static EVENT_KEY_NAMES: Names = Names::new(EVENT_KEYS);

/// The keys each variant reads, in [`EVENT_TYPES`]' order (with `type`'s own bit: it is read
/// anyway).
const EVENT_MEMBERS: [u64; 25] = {
    const fn m(names: &[&str]) -> u64 {
        mask(EVENT_KEYS, names)
    }
    const MSG: &[&str] = &["msg_id", "from", "to", "msg"];
    [
        m(&["pid", "role", "port"]),
        m(&["pid", "signal", "code"]),
        m(&["pid", "cause", "req"]),
        m(&["point", "dying_ms"]),
        m(&["pid", "dies_in_ms", "point"]),
        m(&["pid"]),
        m(&["pid"]),
        m(&["pid", "incarnation"]),
        m(&["plan", "change"]),
        m(MSG),
        m(&["role", "serving_alone", "reason"]),
        m(MSG),
        m(&["msg_id", "from", "to", "duplicate"]),
        m(&["msg_id", "from", "to", "reason"]),
        m(&["req", "op", "lock", "ok", "held", "duplicate", "forwarded"]),
        m(&["client", "req", "op", "lock", "tag", "server"]),
        m(&[
            "client",
            "op",
            "lock",
            "tag",
            "ok",
            "req",
            "server",
            "latency_us",
            "attempts",
        ]),
        m(&["client", "op", "lock", "tag", "req", "reason"]),
        m(&["client", "req", "server", "reason", "retry_to"]),
        m(&["generation"]),
        m(&["delay_ms"]),
        m(&["lock", "status", "ops", "explanation", "calls"]),
        m(&["clients", "rate", "locks", "distribution", "unlock_share"]),
        m(&[
            "window_ms",
            "calls",
            "ok",
            "failed",
            "ops_per_s",
            "p50_us",
            "p99_us",
            "sample_every",
            "links",
            "total_ok",
            "total_failed",
        ]),
        m(&["from", "to", "reason", "since_us", "window_us", "client"]),
    ]
};

/// Everything an event object may hold, read in one pass.
#[derive(Default)]
struct EventFields {
    seq: Option<u64>,
    t_us: Option<u64>,
    node: Option<NodeId>,
    ty: Option<usize>,
    pid: Option<u32>,
    role: Option<Role>,
    port: Option<u16>,
    signal: Option<i32>,
    code: Option<i32>,
    cause: Option<CrashCause>,
    req: Option<RequestId>,
    point: Option<CrashPoint>,
    dying_ms: Option<u64>,
    dies_in_ms: Option<u64>,
    incarnation: Option<u32>,
    plan: Option<FaultPlan>,
    change: Option<String>,
    msg_id: Option<MsgId>,
    from: Option<NodeId>,
    to: Option<NodeId>,
    msg: Option<Msg>,
    serving_alone: Option<bool>,
    reason: Option<String>,
    duplicate: Option<bool>,
    op: Option<Op>,
    lock: Option<String>,
    ok: Option<BoolOrCount>,
    held: Option<bool>,
    forwarded: Option<bool>,
    client: Option<u32>,
    tag: Option<String>,
    server: Option<NodeId>,
    latency_us: Option<u64>,
    attempts: Option<u32>,
    retry_to: Option<NodeId>,
    generation: Option<u64>,
    delay_ms: Option<u64>,
    status: Option<VerdictStatus>,
    ops: Option<Vec<RequestId>>,
    explanation: Option<String>,
    calls: Option<u64>,
    clients: Option<u32>,
    rate: Option<u64>,
    locks: Option<u32>,
    distribution: Option<LoadDistribution>,
    unlock_share: Option<f64>,
    window_ms: Option<u64>,
    failed: Option<u64>,
    ops_per_s: Option<u64>,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    sample_every: Option<u32>,
    links: Option<Vec<LinkCount>>,
    total_ok: Option<u64>,
    total_failed: Option<u64>,
    since_us: Option<u64>,
    window_us: Option<u64>,
}

impl EventFields {
    /// Reads the whole object. With `header` false (an `EventKind` alone) `seq`, `t_us` and
    /// `node` are unknown fields, skipped like any other.
    fn read<'de, A: MapAccess<'de>>(mut map: A, header: bool) -> Result<Self, A::Error> {
        let mut f = EventFields::default();
        let always = if header { 0b111 } else { 0 };
        let ty = read_tagged(
            &mut map,
            &EVENT_KEY_NAMES,
            3,
            &EVENT_TYPE_NAMES,
            &EVENT_MEMBERS,
            always,
            |i, m| {
                match i {
                    0 => f.seq = val(m)?,
                    1 => f.t_us = val(m)?,
                    2 => f.node = val(m)?,
                    4 => f.pid = val(m)?,
                    5 => f.role = val(m)?,
                    6 => f.port = val(m)?,
                    7 => f.signal = val(m)?,
                    8 => f.code = val(m)?,
                    9 => f.cause = val(m)?,
                    10 => f.req = val(m)?,
                    11 => f.point = val(m)?,
                    12 => f.dying_ms = val(m)?,
                    13 => f.dies_in_ms = val(m)?,
                    14 => f.incarnation = val(m)?,
                    15 => f.plan = val(m)?,
                    16 => f.change = val(m)?,
                    17 => f.msg_id = val(m)?,
                    18 => f.from = val(m)?,
                    19 => f.to = val(m)?,
                    20 => f.msg = val(m)?,
                    21 => f.serving_alone = val(m)?,
                    22 => f.reason = val(m)?,
                    23 => f.duplicate = val(m)?,
                    24 => f.op = val(m)?,
                    25 => f.lock = val(m)?,
                    26 => f.ok = val(m)?,
                    27 => f.held = val(m)?,
                    28 => f.forwarded = val(m)?,
                    29 => f.client = val(m)?,
                    30 => f.tag = val(m)?,
                    31 => f.server = val(m)?,
                    32 => f.latency_us = val(m)?,
                    33 => f.attempts = val(m)?,
                    34 => f.retry_to = val(m)?,
                    35 => f.generation = val(m)?,
                    36 => f.delay_ms = val(m)?,
                    37 => f.status = val(m)?,
                    38 => f.ops = val(m)?,
                    39 => f.explanation = val(m)?,
                    40 => f.calls = val(m)?,
                    41 => f.clients = val(m)?,
                    42 => f.rate = val(m)?,
                    43 => f.locks = val(m)?,
                    44 => f.distribution = val(m)?,
                    45 => f.unlock_share = val(m)?,
                    46 => f.window_ms = val(m)?,
                    47 => f.failed = val(m)?,
                    48 => f.ops_per_s = val(m)?,
                    49 => f.p50_us = val(m)?,
                    50 => f.p99_us = val(m)?,
                    51 => f.sample_every = val(m)?,
                    52 => f.links = val(m)?,
                    53 => f.total_ok = val(m)?,
                    54 => f.total_failed = val(m)?,
                    55 => f.since_us = val(m)?,
                    _ => f.window_us = val(m)?,
                }
                Ok(())
            },
        )?;
        f.ty = Some(ty);
        Ok(f)
    }

    /// The variant `type` names, from its fields.
    fn kind<E: de::Error>(&mut self) -> Result<EventKind, E> {
        let f = self;
        Ok(match need(f.ty, "type")? {
            0 => EventKind::ProcessStarted {
                pid: need(f.pid.take(), "pid")?,
                role: need(f.role.take(), "role")?,
                port: need(f.port.take(), "port")?,
            },
            1 => EventKind::ProcessExited {
                pid: need(f.pid.take(), "pid")?,
                signal: f.signal.take(),
                code: f.code.take(),
            },
            2 => EventKind::Crashed {
                pid: need(f.pid.take(), "pid")?,
                cause: need(f.cause.take(), "cause")?,
                req: f.req.take(),
            },
            3 => EventKind::CrashArmed {
                point: f.point.take(),
                dying_ms: f.dying_ms.take(),
            },
            4 => EventKind::Dying {
                pid: need(f.pid.take(), "pid")?,
                dies_in_ms: need(f.dies_in_ms.take(), "dies_in_ms")?,
                point: f.point.take(),
            },
            5 => EventKind::Paused {
                pid: need(f.pid.take(), "pid")?,
            },
            6 => EventKind::Resumed {
                pid: need(f.pid.take(), "pid")?,
            },
            7 => EventKind::ClientStarted {
                pid: need(f.pid.take(), "pid")?,
                incarnation: need(f.incarnation.take(), "incarnation")?,
            },
            8 => EventKind::FaultsChanged {
                plan: need(f.plan.take(), "plan")?,
                change: need(f.change.take(), "change")?,
            },
            9 | 11 => {
                let msg_id = need(f.msg_id.take(), "msg_id")?;
                let from = need(f.from.take(), "from")?;
                let to = need(f.to.take(), "to")?;
                let msg = need(f.msg.take(), "msg")?;
                if f.ty == Some(9) {
                    EventKind::MsgHeld {
                        msg_id,
                        from,
                        to,
                        msg,
                    }
                } else {
                    EventKind::MsgSent {
                        msg_id,
                        from,
                        to,
                        msg,
                    }
                }
            }
            10 => EventKind::RoleChanged {
                role: need(f.role.take(), "role")?,
                serving_alone: need(f.serving_alone.take(), "serving_alone")?,
                reason: need(f.reason.take(), "reason")?,
            },
            12 => EventKind::MsgDelivered {
                msg_id: need(f.msg_id.take(), "msg_id")?,
                from: need(f.from.take(), "from")?,
                to: need(f.to.take(), "to")?,
                duplicate: f.duplicate.take().unwrap_or(false),
            },
            13 => EventKind::MsgLost {
                msg_id: need(f.msg_id.take(), "msg_id")?,
                from: need(f.from.take(), "from")?,
                to: need(f.to.take(), "to")?,
                reason: need(f.reason.take(), "reason")?,
            },
            14 => EventKind::Executed {
                req: need(f.req.take(), "req")?,
                op: need(f.op.take(), "op")?,
                lock: need(f.lock.take(), "lock")?,
                ok: ok_bool(f.ok.take())?,
                held: need(f.held.take(), "held")?,
                duplicate: need(f.duplicate.take(), "duplicate")?,
                forwarded: need(f.forwarded.take(), "forwarded")?,
            },
            15 => EventKind::OpInvoked {
                client: need(f.client.take(), "client")?,
                req: need(f.req.take(), "req")?,
                op: need(f.op.take(), "op")?,
                lock: need(f.lock.take(), "lock")?,
                tag: f.tag.take(),
                server: need(f.server.take(), "server")?,
            },
            16 => EventKind::OpCompleted {
                client: need(f.client.take(), "client")?,
                op: need(f.op.take(), "op")?,
                lock: need(f.lock.take(), "lock")?,
                tag: f.tag.take(),
                ok: ok_bool(f.ok.take())?,
                req: need(f.req.take(), "req")?,
                server: need(f.server.take(), "server")?,
                latency_us: need(f.latency_us.take(), "latency_us")?,
                attempts: need(f.attempts.take(), "attempts")?,
            },
            17 => EventKind::OpFailed {
                client: need(f.client.take(), "client")?,
                op: need(f.op.take(), "op")?,
                lock: need(f.lock.take(), "lock")?,
                tag: f.tag.take(),
                req: need(f.req.take(), "req")?,
                reason: need(f.reason.take(), "reason")?,
            },
            18 => EventKind::RpcFailed {
                client: need(f.client.take(), "client")?,
                req: need(f.req.take(), "req")?,
                server: need(f.server.take(), "server")?,
                reason: need(f.reason.take(), "reason")?,
                retry_to: need(f.retry_to.take(), "retry_to")?,
            },
            19 => EventKind::ClusterReset {
                generation: need(f.generation.take(), "generation")?,
            },
            20 => EventKind::SlowMotionSet {
                delay_ms: need(f.delay_ms.take(), "delay_ms")?,
            },
            21 => EventKind::Verdict(LockVerdict {
                lock: need(f.lock.take(), "lock")?,
                status: need(f.status.take(), "status")?,
                ops: f.ops.take().unwrap_or_default(),
                explanation: f.explanation.take().unwrap_or_default(),
                calls: f.calls.take().unwrap_or_default(),
            }),
            22 => EventKind::LoadChanged(LoadSettings {
                clients: need(f.clients.take(), "clients")?,
                rate: f.rate.take().unwrap_or_default(),
                locks: f.locks.take().unwrap_or(LoadSettings::STOPPED.locks),
                distribution: f.distribution.take().unwrap_or_default(),
                unlock_share: f
                    .unlock_share
                    .take()
                    .unwrap_or(LoadSettings::STOPPED.unlock_share),
            }),
            24 => EventKind::Failover {
                from: need(f.from.take(), "from")?,
                to: need(f.to.take(), "to")?,
                reason: need(f.reason.take(), "reason")?,
                since_us: need(f.since_us.take(), "since_us")?,
                window_us: need(f.window_us.take(), "window_us")?,
                client: need(f.client.take(), "client")?,
            },
            _ => EventKind::LoadStats(LoadStats {
                window_ms: need(f.window_ms.take(), "window_ms")?,
                calls: need(f.calls.take(), "calls")?,
                ok: ok_count(f.ok.take())?,
                failed: need(f.failed.take(), "failed")?,
                ops_per_s: need(f.ops_per_s.take(), "ops_per_s")?,
                p50_us: need(f.p50_us.take(), "p50_us")?,
                p99_us: need(f.p99_us.take(), "p99_us")?,
                sample_every: need(f.sample_every.take(), "sample_every")?,
                links: f.links.take().unwrap_or_default(),
                total_ok: f.total_ok.take().unwrap_or_default(),
                total_failed: f.total_failed.take().unwrap_or_default(),
            }),
        })
    }
}

/// Reads an event object: with `header`, a whole [`Event`]; without, an [`EventKind`] alone
/// (`seq`, `t_us` and `node` are then unknown fields). The fields stay in this frame, and only
/// the event leaves it: returning the fields (every variant's, some 700 bytes) through serde's
/// layers was a memcpy an event, a tenth of reading a batch.
struct EventVisitor<const HEADER: bool>;

impl<'de> Visitor<'de> for EventVisitor<true> {
    type Value = Event;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or a compact event row")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut row: A) -> Result<Event, A::Error> {
        read_row(&mut row)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Event, A::Error> {
        let mut f = EventFields::read(map, true)?;
        let seq = need(f.seq.take(), "seq")?;
        let t_us = need(f.t_us.take(), "t_us")?;
        let node = need(f.node.take(), "node")?;
        Ok(Event {
            seq,
            t_us,
            node,
            kind: f.kind()?,
        })
    }
}

impl<'de> Visitor<'de> for EventVisitor<false> {
    type Value = EventKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event kind object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EventKind, A::Error> {
        EventFields::read(map, false)?.kind()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An object, or (for a viewer that sent `compact`) a compact row: see [`read_row`].
        d.deserialize_any(EventVisitor::<true>)
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor::<false>)
    }
}

// ------------------------------------------------------------------------------------------
// Msg
// ------------------------------------------------------------------------------------------

const MSG_KINDS: &[&str] = &[
    "request",
    "reply",
    "forward",
    "forward_ack",
    "forward_refused",
    "forward_batch",
    "forward_ack_batch",
];
static MSG_KIND_NAMES: Names = Names::new(MSG_KINDS);

const MSG_KEYS: &[&str] = &["kind", "req", "op", "lock", "ok", "ops", "acks"];
static MSG_KEY_NAMES: Names = Names::new(MSG_KEYS);

/// The keys each kind of message reads, in [`MSG_KINDS`]' order.
const MSG_MEMBERS: [u64; 7] = {
    const fn m(names: &[&str]) -> u64 {
        mask(MSG_KEYS, names)
    }
    [
        m(&["req", "op", "lock"]),
        m(&["req", "ok"]),
        m(&["req", "op", "lock"]),
        m(&["req", "ok"]),
        m(&["req"]),
        m(&["ops"]),
        m(&["acks"]),
    ]
};

impl<'de> Deserialize<'de> for Msg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Msg;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object or a compact message row")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut row: A) -> Result<Msg, A::Error> {
                let msg = read_msg_row(&mut row)?;
                end_of_row(&mut row)?;
                Ok(msg)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Msg, A::Error> {
                let mut req: Option<RequestId> = None;
                let mut op: Option<Op> = None;
                let mut lock: Option<String> = None;
                let mut ok: Option<bool> = None;
                let mut ops: Option<Vec<ForwardOp>> = None;
                let mut acks: Option<Vec<ForwardAckItem>> = None;
                let kind = read_tagged(
                    &mut map,
                    &MSG_KEY_NAMES,
                    0,
                    &MSG_KIND_NAMES,
                    &MSG_MEMBERS,
                    0,
                    |i, m| {
                        match i {
                            1 => req = val(m)?,
                            2 => op = val(m)?,
                            3 => lock = val(m)?,
                            4 => ok = val(m)?,
                            5 => ops = val(m)?,
                            _ => acks = val(m)?,
                        }
                        Ok(())
                    },
                )?;
                Ok(match kind {
                    0 | 2 => {
                        let req = need(req, "req")?;
                        let op = need(op, "op")?;
                        let lock = need(lock, "lock")?;
                        if kind == 0 {
                            Msg::Request { req, op, lock }
                        } else {
                            Msg::Forward { req, op, lock }
                        }
                    }
                    1 => Msg::Reply {
                        req: need(req, "req")?,
                        ok: need(ok, "ok")?,
                    },
                    3 => Msg::ForwardAck {
                        req: need(req, "req")?,
                        ok: need(ok, "ok")?,
                    },
                    4 => Msg::ForwardRefused {
                        req: need(req, "req")?,
                    },
                    5 => Msg::ForwardBatch {
                        ops: need(ops, "ops")?,
                    },
                    _ => Msg::ForwardAckBatch {
                        acks: need(acks, "acks")?,
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------------------------------------
// Compact rows (the `compact` command: docs/protocol.md, "compact")
// ------------------------------------------------------------------------------------------

/// The codes of the event rows, in the order [`read_row`] matches them.
const ROW_KINDS: &[&str] = &["S", "D", "L", "X", "I", "C"];
static ROW_KIND_NAMES: Names = Names::new(ROW_KINDS);

/// The codes of the message rows, in the order [`read_msg_row`] matches them.
const MSG_ROW_KINDS: &[&str] = &["Q", "P", "F", "A", "R", "FB", "AB"];
static MSG_ROW_KIND_NAMES: Names = Names::new(MSG_ROW_KINDS);

/// The next element of a row, which must be there: `what` names it in the error.
fn el<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(row: &mut A, what: &str) -> Result<T, A::Error> {
    row.next_element()?
        .ok_or_else(|| de::Error::custom(format_args!("compact row ends before its {what}")))
}

/// A row has no element past its last field.
fn end_of_row<'de, A: SeqAccess<'de>>(row: &mut A) -> Result<(), A::Error> {
    match row.next_element::<IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(de::Error::custom(
            "compact row has elements past its last field",
        )),
    }
}

/// A row's code, as its index in `names`.
fn code<'de, A: SeqAccess<'de>>(row: &mut A, names: &'static Names) -> Result<usize, A::Error> {
    match row.next_element_seed(Tag(names))? {
        Some(Ok(i)) => Ok(i),
        Some(Err(name)) => Err(de::Error::unknown_variant(&name, names.list)),
        None => Err(de::Error::custom("compact row ends before its code")),
    }
}

/// A flag (`0` or `1`), or a set of them in one number: `bits` is how many there may be.
fn flags<'de, A: SeqAccess<'de>>(row: &mut A, bits: u32, what: &str) -> Result<u8, A::Error> {
    let v: u8 = el(row, what)?;
    if u32::from(v) >> bits != 0 {
        return Err(de::Error::custom(format_args!(
            "compact row's {what} is {v}, more than {bits} flag bit(s)"
        )));
    }
    Ok(v)
}

/// A boolean: `0` or `1`.
fn bit<'de, A: SeqAccess<'de>>(row: &mut A, what: &str) -> Result<bool, A::Error> {
    Ok(flags(row, 1, what)? == 1)
}

/// An operation: `0` lock, `1` unlock.
fn op<'de, A: SeqAccess<'de>>(row: &mut A) -> Result<Op, A::Error> {
    Ok(if bit(row, "op")? {
        Op::Unlock
    } else {
        Op::Lock
    })
}

/// A request id: `client, seq, incarnation`.
fn req<'de, A: SeqAccess<'de>>(row: &mut A) -> Result<RequestId, A::Error> {
    let client = el(row, "request's client")?;
    req_of(client, row)
}

/// The rest of a request id whose `client` was read (a batch's next entry, if there is one).
fn req_of<'de, A: SeqAccess<'de>>(client: u32, row: &mut A) -> Result<RequestId, A::Error> {
    Ok(RequestId {
        client,
        seq: el(row, "request's seq")?,
        incarnation: el(row, "request's incarnation")?,
    })
}

/// Reads a compact event row: `[seq, t_us, node, code, fields...]`, the form a viewer that sent
/// `{"type":"compact","on":true}` gets for the events every call makes. A row decodes to the
/// same [`Event`] as the object it stands for; any other event comes to such a viewer as an
/// object. Booleans are `0`/`1`, an [`Op`] is `0` (lock) or `1` (unlock), a request id is
/// three numbers (`client, seq, incarnation`), a tag absent is `null`:
///
/// - `"S"` msg_sent: `msg_id, from, to, msg` (`msg` a message row, or a message object)
/// - `"D"` msg_delivered: `msg_id, from, to, duplicate`
/// - `"L"` msg_lost: `msg_id, from, to, reason`
/// - `"X"` executed: `req (3), op, lock, flags` (`ok` 1, `held` 2, `duplicate` 4, `forwarded` 8)
/// - `"I"` op_invoked: `client, req (3), op, lock, server, tag`
/// - `"C"` op_completed: `client, req (3), op, lock, server, ok, latency_us, attempts, tag`
///
/// A message row: `["Q", req (3), op, lock]` request, `["P", req (3), ok]` reply, `["F", ...]`
/// forward and `["A", ...]` forward_ack as those, `["R", req (3)]` forward_refused,
/// `["FB", (req (3), op, lock)...]` forward_batch, `["AB", (req (3), ok)...]` forward_ack_batch.
fn read_row<'de, A: SeqAccess<'de>>(row: &mut A) -> Result<Event, A::Error> {
    let seq = el(row, "seq")?;
    let t_us = el(row, "t_us")?;
    let node: NodeId = el(row, "node")?;
    let kind = match code(row, &ROW_KIND_NAMES)? {
        0 => EventKind::MsgSent {
            msg_id: el(row, "msg_id")?,
            from: el(row, "from")?,
            to: el(row, "to")?,
            msg: el(row, "msg")?,
        },
        1 => EventKind::MsgDelivered {
            msg_id: el(row, "msg_id")?,
            from: el(row, "from")?,
            to: el(row, "to")?,
            duplicate: bit(row, "duplicate")?,
        },
        2 => EventKind::MsgLost {
            msg_id: el(row, "msg_id")?,
            from: el(row, "from")?,
            to: el(row, "to")?,
            reason: el(row, "reason")?,
        },
        3 => {
            let (req, op, lock) = (req(row)?, op(row)?, el(row, "lock")?);
            executed(req, op, lock, flags(row, 4, "flags")?)
        }
        4 => EventKind::OpInvoked {
            client: el(row, "client")?,
            req: req(row)?,
            op: op(row)?,
            lock: el(row, "lock")?,
            server: el(row, "server")?,
            tag: el(row, "tag")?,
        },
        _ => EventKind::OpCompleted {
            client: el(row, "client")?,
            req: req(row)?,
            op: op(row)?,
            lock: el(row, "lock")?,
            server: el(row, "server")?,
            ok: bit(row, "ok")?,
            latency_us: el(row, "latency_us")?,
            attempts: el(row, "attempts")?,
            tag: el(row, "tag")?,
        },
    };
    end_of_row(row)?;
    Ok(Event {
        seq,
        t_us,
        node,
        kind,
    })
}

/// An `executed` row's flags, as [`executed`] reads them: `ok` 1, `held` 2, `duplicate` 4,
/// `forwarded` 8.
pub fn executed_flags(ok: bool, held: bool, duplicate: bool, forwarded: bool) -> u8 {
    u8::from(ok) | u8::from(held) << 1 | u8::from(duplicate) << 2 | u8::from(forwarded) << 3
}

/// An `executed` row's event: its flags are `ok` 1, `held` 2, `duplicate` 4, `forwarded` 8.
pub(crate) fn executed(req: RequestId, op: Op, lock: String, f: u8) -> EventKind {
    EventKind::Executed {
        req,
        op,
        lock,
        ok: f & 1 != 0,
        held: f & 2 != 0,
        duplicate: f & 4 != 0,
        forwarded: f & 8 != 0,
    }
}

/// Reads a compact message row (see [`read_row`]), up to its last field.
fn read_msg_row<'de, A: SeqAccess<'de>>(row: &mut A) -> Result<Msg, A::Error> {
    Ok(match code(row, &MSG_ROW_KIND_NAMES)? {
        0 => Msg::Request {
            req: req(row)?,
            op: op(row)?,
            lock: el(row, "lock")?,
        },
        1 => Msg::Reply {
            req: req(row)?,
            ok: bit(row, "ok")?,
        },
        2 => Msg::Forward {
            req: req(row)?,
            op: op(row)?,
            lock: el(row, "lock")?,
        },
        3 => Msg::ForwardAck {
            req: req(row)?,
            ok: bit(row, "ok")?,
        },
        4 => Msg::ForwardRefused { req: req(row)? },
        5 => {
            let mut ops = Vec::new();
            while let Some(client) = row.next_element()? {
                ops.push(ForwardOp {
                    req: req_of(client, row)?,
                    op: op(row)?,
                    lock: el(row, "lock")?,
                });
            }
            return Ok(Msg::ForwardBatch { ops });
        }
        _ => {
            let mut acks = Vec::new();
            while let Some(client) = row.next_element()? {
                acks.push(ForwardAckItem {
                    req: req_of(client, row)?,
                    ok: bit(row, "ok")?,
                });
            }
            return Ok(Msg::ForwardAckBatch { acks });
        }
    })
}

// ------------------------------------------------------------------------------------------
// ServerMsg
// ------------------------------------------------------------------------------------------

const SERVER_TYPES: &[&str] = &["hello", "snapshot", "events", "ack", "error"];
static SERVER_TYPE_NAMES: Names = Names::new(SERVER_TYPES);

const SERVER_KEYS: &[&str] = &[
    "type",
    // hello
    "protocol",
    "server",
    "run",
    "limits",
    "variant",
    // snapshot
    "nodes",
    "clients",
    "events",
    "next_seq",
    "missed",
    "generation",
    "slow_motion_ms",
    "now_us",
    "faults",
    "held",
    "verdicts",
    "load",
    // ack, error
    "command",
    "tag",
    "detail",
    "code",
    "message",
    // snapshot (added later: the indices above stay)
    "marks",
];
static SERVER_KEY_NAMES: Names = Names::new(SERVER_KEYS);

/// The keys each server message reads, in [`SERVER_TYPES`]' order.
const SERVER_MEMBERS: [u64; 5] = {
    const fn m(names: &[&str]) -> u64 {
        mask(SERVER_KEYS, names)
    }
    [
        m(&["protocol", "server", "run", "limits", "variant"]),
        m(&[
            "nodes",
            "clients",
            "events",
            "next_seq",
            "missed",
            "generation",
            "slow_motion_ms",
            "now_us",
            "faults",
            "held",
            "verdicts",
            "load",
            "marks",
        ]),
        m(&["events"]),
        m(&["command", "tag", "detail"]),
        m(&["code", "message", "tag"]),
    ]
};

#[derive(Default)]
struct ServerFields {
    protocol: Option<u32>,
    server: Option<String>,
    run: Option<u64>,
    limits: Option<crate::Limits>,
    variant: Option<String>,
    nodes: Option<Vec<crate::NodeInfo>>,
    clients: Option<Vec<crate::ClientInfo>>,
    events: Option<Vec<Event>>,
    next_seq: Option<u64>,
    missed: Option<u64>,
    generation: Option<u64>,
    slow_motion_ms: Option<u64>,
    now_us: Option<u64>,
    faults: Option<FaultPlan>,
    held: Option<Vec<HeldMsg>>,
    verdicts: Option<Vec<LockVerdict>>,
    load: Option<LoadSettings>,
    marks: Option<Vec<Event>>,
    command: Option<String>,
    tag: Option<String>,
    detail: Option<String>,
    code: Option<crate::ErrorCode>,
    message: Option<String>,
}

impl<'de> Deserialize<'de> for ServerMsg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServerMsg;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a server message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServerMsg, A::Error> {
                let mut f = ServerFields::default();
                let ty = read_tagged(
                    &mut map,
                    &SERVER_KEY_NAMES,
                    0,
                    &SERVER_TYPE_NAMES,
                    &SERVER_MEMBERS,
                    0,
                    |i, m| {
                        match i {
                            1 => f.protocol = val(m)?,
                            2 => f.server = val(m)?,
                            3 => f.run = val(m)?,
                            4 => f.limits = val(m)?,
                            5 => f.variant = val(m)?,
                            6 => f.nodes = val(m)?,
                            7 => f.clients = val(m)?,
                            8 => f.events = val(m)?,
                            9 => f.next_seq = val(m)?,
                            10 => f.missed = val(m)?,
                            11 => f.generation = val(m)?,
                            12 => f.slow_motion_ms = val(m)?,
                            13 => f.now_us = val(m)?,
                            14 => f.faults = val(m)?,
                            15 => f.held = val(m)?,
                            16 => f.verdicts = val(m)?,
                            17 => f.load = val(m)?,
                            18 => f.command = val(m)?,
                            19 => f.tag = val(m)?,
                            20 => f.detail = val(m)?,
                            21 => f.code = val(m)?,
                            22 => f.message = val(m)?,
                            _ => f.marks = val(m)?,
                        }
                        Ok(())
                    },
                )?;
                Ok(match ty {
                    0 => ServerMsg::Hello(Hello {
                        protocol: need(f.protocol, "protocol")?,
                        server: need(f.server, "server")?,
                        run: need(f.run, "run")?,
                        limits: need(f.limits, "limits")?,
                        variant: f.variant,
                    }),
                    1 => ServerMsg::Snapshot(Box::new(Snapshot {
                        nodes: need(f.nodes, "nodes")?,
                        clients: need(f.clients, "clients")?,
                        events: need(f.events, "events")?,
                        next_seq: need(f.next_seq, "next_seq")?,
                        missed: need(f.missed, "missed")?,
                        generation: need(f.generation, "generation")?,
                        slow_motion_ms: need(f.slow_motion_ms, "slow_motion_ms")?,
                        now_us: need(f.now_us, "now_us")?,
                        faults: f.faults.unwrap_or_default(),
                        held: f.held.unwrap_or_default(),
                        verdicts: f.verdicts.unwrap_or_default(),
                        load: f.load,
                        marks: f.marks.unwrap_or_default(),
                    })),
                    2 => ServerMsg::Events {
                        events: need(f.events, "events")?,
                    },
                    3 => ServerMsg::Ack {
                        command: need(f.command, "command")?,
                        tag: f.tag,
                        detail: need(f.detail, "detail")?,
                    },
                    _ => ServerMsg::Error {
                        code: need(f.code, "code")?,
                        message: need(f.message, "message")?,
                        tag: f.tag,
                    },
                })
            }
        }
        d.deserialize_map(V)
    }
}

// ------------------------------------------------------------------------------------------
// RunLine
// ------------------------------------------------------------------------------------------

const RUN_TYPES: &[&str] = &["run", "run_end"];
static RUN_TYPE_NAMES: Names = Names::new(RUN_TYPES);

const RUN_KEYS: &[&str] = &[
    "type",
    "format",
    "protocol",
    "server",
    "run",
    "first_seq",
    "dropped",
    "source",
    "variant",
    "events",
    "last_seq",
];
static RUN_KEY_NAMES: Names = Names::new(RUN_KEYS);

/// The keys each run-file line reads, in [`RUN_TYPES`]' order.
const RUN_MEMBERS: [u64; 2] = {
    const fn m(names: &[&str]) -> u64 {
        mask(RUN_KEYS, names)
    }
    [
        m(&[
            "format",
            "protocol",
            "server",
            "run",
            "first_seq",
            "dropped",
            "source",
            "variant",
        ]),
        m(&["events", "last_seq"]),
    ]
};

impl<'de> Deserialize<'de> for RunLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RunLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a run file's first or last line")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RunLine, A::Error> {
                let (mut format, mut server, mut source, mut variant) = (None, None, None, None);
                let (mut protocol, mut run, mut first_seq, mut dropped) = (None, None, None, None);
                let (mut events, mut last_seq) = (None, None);
                let ty = read_tagged(
                    &mut map,
                    &RUN_KEY_NAMES,
                    0,
                    &RUN_TYPE_NAMES,
                    &RUN_MEMBERS,
                    0,
                    |i, m| {
                        match i {
                            1 => format = val::<String, _>(m)?,
                            2 => protocol = val::<u32, _>(m)?,
                            3 => server = val::<String, _>(m)?,
                            4 => run = val::<u64, _>(m)?,
                            5 => first_seq = val::<u64, _>(m)?,
                            6 => dropped = val::<u64, _>(m)?,
                            7 => source = val::<String, _>(m)?,
                            8 => variant = val::<String, _>(m)?,
                            9 => events = val::<u64, _>(m)?,
                            _ => last_seq = val::<u64, _>(m)?,
                        }
                        Ok(())
                    },
                )?;
                Ok(if ty == 0 {
                    RunLine::Run(RunHeader {
                        format: need(format, "format")?,
                        protocol: need(protocol, "protocol")?,
                        server: need(server, "server")?,
                        run: need(run, "run")?,
                        first_seq: need(first_seq, "first_seq")?,
                        dropped: need(dropped, "dropped")?,
                        source: source.unwrap_or_default(),
                        variant,
                    })
                } else {
                    RunLine::RunEnd(RunEnd {
                        events: need(events, "events")?,
                        last_seq: need(last_seq, "last_seq")?,
                    })
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn every_names_table_finds_each_name_at_its_index_and_nothing_else() {
        let tables = [
            &EVENT_KEY_NAMES,
            &EVENT_TYPE_NAMES,
            &MSG_KEY_NAMES,
            &MSG_KIND_NAMES,
            &SERVER_KEY_NAMES,
            &SERVER_TYPE_NAMES,
            &RUN_KEY_NAMES,
            &RUN_TYPE_NAMES,
        ];
        for t in tables {
            // A near miss is not found (unless it is another name of the list).
            let absent = |s: &str| {
                if !t.list.contains(&s) {
                    assert_eq!(t.position(s), None, "{s}");
                }
            };
            for (i, name) in t.list.iter().enumerate() {
                assert_eq!(t.position(name), Some(i), "{name}");
                // Same length, first and last byte: the same slot, another string.
                let mut twin = name.as_bytes().to_vec();
                if twin.len() > 2 {
                    twin[1] ^= 0x20;
                    absent(std::str::from_utf8(&twin).unwrap());
                }
                absent(&format!("{name}x"));
                absent(&name[..name.len() - 1]);
            }
            for stranger in ["", "x", "é", "seq ", "SEQ", "type\0"] {
                absent(stranger);
            }
        }
    }

    use super::*;
    use crate::{Cut, LinkRule, NodeReport, Probability};
    use serde_json::{json, Value};

    fn req(client: u32, seq: u64) -> RequestId {
        RequestId::new(client, seq)
    }

    pub(crate) fn every_msg() -> Vec<Msg> {
        vec![
            Msg::Request {
                req: req(1, 1),
                op: Op::Lock,
                lock: "a".into(),
            },
            Msg::Reply {
                req: RequestId {
                    incarnation: 2,
                    ..req(1, 1)
                },
                ok: true,
            },
            Msg::Forward {
                req: req(2, 3),
                op: Op::Unlock,
                lock: "b".into(),
            },
            Msg::ForwardAck {
                req: req(2, 3),
                ok: false,
            },
            Msg::ForwardRefused { req: req(2, 4) },
            Msg::ForwardBatch {
                ops: vec![
                    ForwardOp {
                        req: req(1, 2),
                        op: Op::Lock,
                        lock: "x".into(),
                    },
                    ForwardOp {
                        req: req(3, 1),
                        op: Op::Unlock,
                        lock: "y".into(),
                    },
                ],
            },
            Msg::ForwardAckBatch {
                acks: vec![
                    ForwardAckItem {
                        req: req(1, 2),
                        ok: true,
                    },
                    ForwardAckItem {
                        req: req(3, 1),
                        ok: false,
                    },
                ],
            },
        ]
    }

    /// Every variant, each optional field both present and absent somewhere.
    fn every_kind() -> Vec<EventKind> {
        let plan = FaultPlan {
            seed: 7,
            step: true,
            links: vec![LinkRule {
                from: "s1".into(),
                to: "*".into(),
                drop: Probability(0.25),
                duplicate: Probability(0.0),
                delay_ms: 5,
                jitter_ms: 2,
            }],
            partition: vec![vec!["s1".into(), "c1".into()], vec!["s2".into()]],
            cuts: vec![Cut {
                from: "s2".into(),
                to: "s1".into(),
            }],
        };
        let mut kinds = vec![
            EventKind::ProcessStarted {
                pid: 4242,
                role: Role::Primary,
                port: 40001,
            },
            EventKind::ProcessExited {
                pid: 4242,
                signal: Some(9),
                code: None,
            },
            EventKind::ProcessExited {
                pid: 4243,
                signal: None,
                code: Some(-1),
            },
            EventKind::Crashed {
                pid: 1,
                cause: CrashCause::BeforeReply,
                req: Some(req(1, 9)),
            },
            EventKind::Crashed {
                pid: 1,
                cause: CrashCause::Dying,
                req: None,
            },
            EventKind::CrashArmed {
                point: Some(CrashPoint::AfterForward),
                dying_ms: Some(300),
            },
            EventKind::CrashArmed {
                point: None,
                dying_ms: None,
            },
            EventKind::Dying {
                pid: 5,
                dies_in_ms: 800,
                point: Some(CrashPoint::BeforeAck),
            },
            EventKind::Dying {
                pid: 5,
                dies_in_ms: 800,
                point: None,
            },
            EventKind::Paused { pid: 6 },
            EventKind::Resumed { pid: 6 },
            EventKind::ClientStarted {
                pid: 77,
                incarnation: 1,
            },
            EventKind::FaultsChanged {
                plan,
                change: "partition".into(),
            },
            EventKind::FaultsChanged {
                plan: FaultPlan::default(),
                change: "heal".into(),
            },
            EventKind::RoleChanged {
                role: Role::Deposed,
                serving_alone: false,
                reason: "refused".into(),
            },
            EventKind::MsgDelivered {
                msg_id: MsgId::new(3, 4),
                from: "s1".into(),
                to: "s2".into(),
                duplicate: true,
            },
            EventKind::MsgDelivered {
                msg_id: MsgId::new(3, 5),
                from: "s1".into(),
                to: "s2".into(),
                duplicate: false,
            },
            EventKind::MsgLost {
                msg_id: MsgId::new(3, 6),
                from: "c1".into(),
                to: "s1".into(),
                reason: "partition".into(),
            },
            EventKind::Executed {
                req: req(1, 1),
                op: Op::Lock,
                lock: "a".into(),
                ok: true,
                held: true,
                duplicate: false,
                forwarded: true,
            },
            EventKind::OpInvoked {
                client: 1,
                req: req(1, 1),
                op: Op::Unlock,
                lock: "a".into(),
                tag: Some("t1".into()),
                server: "s1".into(),
            },
            EventKind::OpInvoked {
                client: 1,
                req: req(1, 2),
                op: Op::Lock,
                lock: "a".into(),
                tag: None,
                server: "s2".into(),
            },
            EventKind::OpCompleted {
                client: 1,
                op: Op::Lock,
                lock: "a".into(),
                tag: Some("t".into()),
                ok: false,
                req: req(1, 1),
                server: "s1".into(),
                latency_us: 900,
                attempts: 2,
            },
            EventKind::OpFailed {
                client: 2,
                op: Op::Unlock,
                lock: "b".into(),
                tag: None,
                req: req(2, 1),
                reason: "no server answered".into(),
            },
            EventKind::OpFailed {
                client: 2,
                op: Op::Unlock,
                lock: "b".into(),
                tag: Some("t2".into()),
                req: req(2, 1),
                reason: "reset".into(),
            },
            EventKind::RpcFailed {
                client: 2,
                req: req(2, 1),
                server: "s1".into(),
                reason: "timeout".into(),
                retry_to: "s2".into(),
            },
            EventKind::ClusterReset { generation: 3 },
            EventKind::SlowMotionSet { delay_ms: 250 },
            EventKind::Verdict(LockVerdict {
                lock: "z".into(),
                status: VerdictStatus::Violation,
                ops: vec![req(1, 1), req(2, 1)],
                explanation: "granted twice".into(),
                calls: 4,
            }),
            EventKind::Verdict(LockVerdict {
                lock: "z".into(),
                status: VerdictStatus::Ok,
                ops: vec![],
                explanation: String::new(),
                calls: 0,
            }),
            EventKind::LoadChanged(LoadSettings {
                clients: 16,
                rate: 1000,
                locks: 64,
                distribution: LoadDistribution::Hot,
                unlock_share: 0.25,
            }),
            EventKind::LoadChanged(LoadSettings::STOPPED),
            EventKind::LoadStats(LoadStats {
                window_ms: 250,
                calls: 100,
                ok: 98,
                failed: 2,
                ops_per_s: 392,
                p50_us: 130,
                p99_us: 900,
                sample_every: 4,
                links: vec![LinkCount {
                    from: "load".into(),
                    to: "s1".into(),
                    msgs: 100,
                }],
                total_ok: 5_000,
                total_failed: 7,
            }),
            EventKind::Failover {
                from: "s1".into(),
                to: "s2".into(),
                reason: "crashed".into(),
                since_us: 2_000_000,
                window_us: 1_250,
                client: 1_003,
            },
        ];
        for (i, msg) in every_msg().into_iter().enumerate() {
            let (msg_id, from, to) = (MsgId::new(1, i as u64), NodeId::from("c1"), "s1".into());
            kinds.push(EventKind::MsgSent {
                msg_id,
                from: from.clone(),
                to: NodeId::from("s1"),
                msg: msg.clone(),
            });
            kinds.push(EventKind::MsgHeld {
                msg_id,
                from,
                to,
                msg,
            });
        }
        kinds
    }

    pub(crate) fn every_event() -> Vec<Event> {
        every_kind()
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                seq: i as u64 + 1,
                t_us: 1000 * i as u64,
                node: "s1".into(),
                kind,
            })
            .collect()
    }

    #[test]
    fn every_variant_is_covered() {
        let mut names: Vec<&str> = every_kind().iter().map(EventKind::name).collect();
        names.sort_unstable();
        names.dedup();
        let mut all = EVENT_TYPES.to_vec();
        all.sort_unstable();
        assert_eq!(names, all);
        // The arm of `EventFields::kind` that builds each variant reads its own name in the
        // table (and a new variant fails to compile here until it has its arm).
        for k in every_kind() {
            assert_eq!(EVENT_TYPES[arm(&k)], k.name());
        }
    }

    /// The index `EventFields::kind` builds `k` for.
    fn arm(k: &EventKind) -> usize {
        match k {
            EventKind::ProcessStarted { .. } => 0,
            EventKind::ProcessExited { .. } => 1,
            EventKind::Crashed { .. } => 2,
            EventKind::CrashArmed { .. } => 3,
            EventKind::Dying { .. } => 4,
            EventKind::Paused { .. } => 5,
            EventKind::Resumed { .. } => 6,
            EventKind::ClientStarted { .. } => 7,
            EventKind::FaultsChanged { .. } => 8,
            EventKind::MsgHeld { .. } => 9,
            EventKind::RoleChanged { .. } => 10,
            EventKind::MsgSent { .. } => 11,
            EventKind::MsgDelivered { .. } => 12,
            EventKind::MsgLost { .. } => 13,
            EventKind::Executed { .. } => 14,
            EventKind::OpInvoked { .. } => 15,
            EventKind::OpCompleted { .. } => 16,
            EventKind::OpFailed { .. } => 17,
            EventKind::RpcFailed { .. } => 18,
            EventKind::ClusterReset { .. } => 19,
            EventKind::SlowMotionSet { .. } => 20,
            EventKind::Verdict(_) => 21,
            EventKind::LoadChanged(_) => 22,
            EventKind::LoadStats(_) => 23,
            EventKind::Failover { .. } => 24,
        }
    }

    /// The keys of `v`'s JSON object as bits of `keys`.
    fn bits(v: &impl serde::Serialize, keys: &[&str]) -> u64 {
        let v = serde_json::to_value(v).unwrap();
        v.as_object()
            .unwrap()
            .keys()
            .map(|k| 1u64 << keys.iter().position(|x| x == k).unwrap())
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn the_member_tables_are_the_variants_fields() {
        let type_bit = 1u64 << 3;
        let mut union = [0u64; 25];
        for k in every_kind() {
            let t = EVENT_TYPES.iter().position(|x| *x == k.name()).unwrap();
            union[t] |= bits(&k, EVENT_KEYS) & !type_bit;
        }
        assert_eq!(union, EVENT_MEMBERS);
        let mut union = [0u64; 7];
        for m in every_msg() {
            let v = serde_json::to_value(&m).unwrap();
            let t = MSG_KINDS.iter().position(|x| *x == v["kind"]).unwrap();
            union[t] |= bits(&m, MSG_KEYS) & !1;
        }
        assert_eq!(union, MSG_MEMBERS);
        let mut union = [0u64; 5];
        for m in every_server_msg() {
            let v = serde_json::to_value(&m).unwrap();
            let t = SERVER_TYPES.iter().position(|x| *x == v["type"]).unwrap();
            union[t] |= bits(&m, SERVER_KEYS) & !1;
        }
        assert_eq!(union, SERVER_MEMBERS);
    }

    #[test]
    fn another_variants_field_is_an_unknown_field_whatever_its_value() {
        // `ok` is a count in load_stats, `role` a role elsewhere, `ops` a list: here, after
        // `type`, they are fields `paused` does not have.
        let ev: Event = serde_json::from_str(
            r#"{"seq":1,"t_us":2,"node":"s1","type":"paused","pid":3,"ok":"x","role":5,"ops":{}}"#,
        )
        .unwrap();
        assert_eq!(ev.kind, EventKind::Paused { pid: 3 });
        let m: Msg =
            serde_json::from_str(r#"{"kind":"forward_batch","ops":[],"req":"x","ok":1}"#).unwrap();
        assert_eq!(m, Msg::ForwardBatch { ops: vec![] });
        let m: ServerMsg =
            serde_json::from_str(r#"{"type":"events","events":[],"limits":7,"code":"x"}"#).unwrap();
        assert_eq!(m, ServerMsg::Events { events: vec![] });
    }

    #[test]
    fn every_event_round_trips_in_the_servers_key_order_and_in_any_other() {
        for ev in every_event() {
            // As the server writes it: seq, t_us, node, type, then the variant's fields.
            let text = serde_json::to_string(&ev).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, ev, "{text}");
            // Sorted keys (a `Value` object): `type` in the middle or last.
            let v = serde_json::to_value(&ev).unwrap();
            let sorted = v.to_string();
            let back: Event =
                serde_json::from_str(&sorted).unwrap_or_else(|e| panic!("{sorted}: {e}"));
            assert_eq!(back, ev, "{sorted}");
            // From a `Value` too (the golden test reads the docs' examples that way).
            let back: Event = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(back, ev);
            // Reversed key order.
            let obj = v.as_object().unwrap();
            let rev: Vec<String> = obj
                .iter()
                .rev()
                .map(|(k, x)| format!("{}:{}", Value::from(k.as_str()), x))
                .collect();
            let rev = format!("{{{}}}", rev.join(","));
            let back: Event = serde_json::from_str(&rev).unwrap_or_else(|e| panic!("{rev}: {e}"));
            assert_eq!(back, ev, "{rev}");
        }
    }

    #[test]
    fn every_kind_round_trips_alone_and_in_a_node_report() {
        for kind in every_kind() {
            let text = serde_json::to_string(&kind).unwrap();
            let back: EventKind = serde_json::from_str(&text).unwrap();
            assert_eq!(back, kind, "{text}");
            let report = NodeReport::Event {
                t_us: 5,
                kind: kind.clone(),
            };
            let text = serde_json::to_string(&report).unwrap();
            let back: NodeReport = serde_json::from_str(&text).unwrap();
            assert_eq!(back, report, "{text}");
        }
    }

    #[test]
    fn every_msg_round_trips() {
        for msg in every_msg() {
            let text = serde_json::to_string(&msg).unwrap();
            let back: Msg = serde_json::from_str(&text).unwrap();
            assert_eq!(back, msg, "{text}");
            let sorted = serde_json::to_value(&msg).unwrap().to_string();
            let back: Msg = serde_json::from_str(&sorted).unwrap();
            assert_eq!(back, msg, "{sorted}");
        }
    }

    fn every_server_msg() -> Vec<ServerMsg> {
        let limits: crate::Limits = serde_json::from_value(json!({
            "max_message_bytes": 65536, "max_client": 1000, "max_lock_name": 64,
            "max_delay_ms": 5000, "commands_per_sec": 50, "history": 100000
        }))
        .unwrap();
        let snapshot = Snapshot {
            nodes: vec![],
            clients: vec![],
            events: every_event(),
            next_seq: 99,
            missed: 3,
            generation: 1,
            slow_motion_ms: 0,
            now_us: 12345,
            faults: FaultPlan::default(),
            held: vec![HeldMsg {
                msg_id: MsgId::new(1, 1),
                from: "c1".into(),
                to: "s1".into(),
                msg: every_msg().remove(0),
                since_us: 10,
            }],
            verdicts: vec![],
            load: Some(LoadSettings::STOPPED),
            marks: every_event()
                .into_iter()
                .filter(Event::is_chart_mark)
                .collect(),
        };
        vec![
            ServerMsg::Hello(Hello {
                protocol: 1,
                server: "pbscope 0.1.0".into(),
                run: 17,
                limits: limits.clone(),
                variant: Some("no-forward".into()),
            }),
            ServerMsg::Hello(Hello {
                protocol: 1,
                server: "pbscope 0.1.0".into(),
                run: 17,
                limits,
                variant: None,
            }),
            ServerMsg::Snapshot(Box::new(snapshot.clone())),
            ServerMsg::Snapshot(Box::new(Snapshot {
                load: None,
                marks: vec![],
                ..snapshot
            })),
            ServerMsg::Events {
                events: every_event(),
            },
            ServerMsg::Ack {
                command: "crash".into(),
                tag: Some("t".into()),
                detail: "SIGKILL sent".into(),
            },
            ServerMsg::Error {
                code: crate::ErrorCode::BadField,
                message: "no".into(),
                tag: None,
            },
            ServerMsg::Error {
                code: crate::ErrorCode::BadField,
                message: "no".into(),
                tag: Some("t3".into()),
            },
        ]
    }

    #[test]
    fn every_server_message_round_trips() {
        let msgs = every_server_msg();
        for m in msgs {
            let text = serde_json::to_string(&m).unwrap();
            let back: ServerMsg = serde_json::from_str(&text).unwrap();
            assert_eq!(back, m, "{text}");
            let sorted = serde_json::to_value(&m).unwrap().to_string();
            let back: ServerMsg = serde_json::from_str(&sorted).unwrap();
            assert_eq!(back, m, "{sorted}");
        }
    }

    #[test]
    fn run_lines_round_trip_and_check_their_fields() {
        let header = RunHeader {
            format: crate::RUN_FORMAT.into(),
            protocol: 1,
            server: "pbscope 0.1.0".into(),
            run: 9,
            first_seq: 1,
            dropped: 0,
            source: "pbscope serve".into(),
            variant: Some("no-forward".into()),
        };
        let lines = [
            RunLine::Run(header.clone()),
            RunLine::Run(RunHeader {
                source: String::new(),
                variant: None,
                ..header
            }),
            RunLine::RunEnd(RunEnd {
                events: 4,
                last_seq: 4,
            }),
        ];
        let mut union = [0u64; 2];
        for line in &lines {
            let text = serde_json::to_string(line).unwrap();
            let back: RunLine = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, line, "{text}");
            let sorted = serde_json::to_value(line).unwrap().to_string();
            let back: RunLine = serde_json::from_str(&sorted).unwrap();
            assert_eq!(&back, line, "{sorted}");
            let t = usize::from(matches!(line, RunLine::RunEnd(_)));
            union[t] |= bits(line, RUN_KEYS) & !1;
        }
        assert_eq!(union, RUN_MEMBERS);
        assert!(
            err::<RunLine>(r#"{"type":"run_end","events":4}"#).contains("missing field `last_seq`")
        );
        assert!(
            err::<RunLine>(r#"{"type":"run_end","events":"4","last_seq":4}"#)
                .contains("invalid type")
        );
        assert!(err::<RunLine>(r#"{"type":"paused","pid":1}"#).contains("unknown variant `paused`"));
        assert!(err::<RunLine>(r#"{"type":"run_end","events":4,"la"#).contains("EOF"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_options_are_absent() {
        let ev: Event = serde_json::from_str(
            r#"{"extra":[1,{"a":2}],"seq":1,"t_us":2,"node":"s1","type":"process_exited","pid":3,"signal":null,"role":"nonsense"}"#,
        )
        .unwrap();
        assert_eq!(
            ev.kind,
            EventKind::ProcessExited {
                pid: 3,
                signal: None,
                code: None
            }
        );
        // Alone, an event kind takes `seq`, `t_us` and `node` for unknown fields.
        let k: EventKind =
            serde_json::from_str(r#"{"type":"paused","pid":3,"seq":"x","node":5}"#).unwrap();
        assert_eq!(k, EventKind::Paused { pid: 3 });
        let m: Msg =
            serde_json::from_str(r#"{"kind":"forward_refused","req":{"client":1,"seq":2},"x":1}"#)
                .unwrap();
        assert_eq!(m, Msg::ForwardRefused { req: req(1, 2) });
    }

    fn err<T: for<'de> Deserialize<'de> + fmt::Debug>(text: &str) -> String {
        match serde_json::from_str::<T>(text) {
            Ok(v) => panic!("{text} decoded as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_events_are_errors_not_panics() {
        let head = r#""seq":1,"t_us":2,"node":"s1""#;
        let cases: &[(String, &str)] = &[
            (
                format!(r#"{{{head},"type":"paused"}}"#),
                "missing field `pid`",
            ),
            (
                r#"{"t_us":2,"node":"s1","type":"paused","pid":1}"#.into(),
                "missing field `seq`",
            ),
            (format!(r#"{{{head},"pid":1}}"#), "missing field `type`"),
            (
                format!(r#"{{{head},"type":"nope","pid":1}}"#),
                "unknown variant `nope`",
            ),
            (format!(r#"{{{head},"type":7,"pid":1}}"#), "invalid type"),
            (
                format!(r#"{{{head},"type":"paused","pid":"x"}}"#),
                "invalid type",
            ),
            (
                format!(r#"{{{head},"type":"paused","pid":-1}}"#),
                "invalid value",
            ),
            (
                format!(r#"{{{head},"type":"paused","pid":4294967296}}"#),
                "invalid value",
            ),
            (
                format!(r#"{{{head},"type":"paused","pid":1,"pid":2}}"#),
                "duplicate field `pid`",
            ),
            (
                format!(r#"{{{head},"type":"paused","type":"paused","pid":1}}"#),
                "duplicate field `type`",
            ),
            (
                format!(r#"{{{head},"seq":3,"type":"paused","pid":1}}"#),
                "duplicate field `seq`",
            ),
            (
                format!(
                    r#"{{{head},"type":"role_changed","role":"king","serving_alone":true,"reason":"x"}}"#
                ),
                "unknown variant `king`",
            ),
            (
                format!(
                    r#"{{{head},"type":"executed","req":{{"client":1,"seq":1}},"op":"lock","lock":"a","ok":3,"held":true,"duplicate":false,"forwarded":false}}"#
                ),
                "invalid type: integer `3`, expected a boolean",
            ),
            (
                format!(
                    r#"{{{head},"type":"load_stats","window_ms":250,"calls":1,"ok":true,"failed":0,"ops_per_s":4,"p50_us":1,"p99_us":1,"sample_every":1}}"#
                ),
                "invalid type: boolean `true`, expected u64",
            ),
            (
                format!(
                    r#"{{{head},"type":"msg_sent","msg_id":1,"from":"c1","to":"s1","msg":{{"kind":"request"}}}}"#
                ),
                "missing field `req`",
            ),
            (
                format!(
                    r#"{{{head},"type":"msg_sent","msg_id":1,"from":"c1","to":"s1","msg":{{"kind":"shout"}}}}"#
                ),
                "unknown variant `shout`",
            ),
            (
                format!(
                    r#"{{{head},"type":"msg_sent","msg_id":1,"from":"c1","to":"s1","msg":[]}}"#
                ),
                "compact row ends before its code",
            ),
            (
                format!(r#"{{{head},"type":"msg_sent","msg_id":1,"from":"c1","to":"s1","msg":7}}"#),
                "invalid type: integer",
            ),
            (format!(r#"{{{head},"type":"paused","pid":1"#), "EOF"),
            // An unknown type in a line cut short: the cut is what is reported.
            (r#"{"type":"run_end","events":4,"la"#.into(), "EOF"),
            (
                format!(r#"{{{head},"type":"run_end","pid":"x"}}"#),
                "unknown variant `run_end`",
            ),
            // Compact rows (the `compact` command): cut short, too long, unknown codes,
            // values out of range.
            ("[]".into(), "compact row ends before its seq"),
            (
                "[1,2,3]".into(),
                "invalid type: integer `3`, expected a string",
            ),
            (r#"[1,2,"s1"]"#.into(), "compact row ends before its code"),
            (r#"[1,2,"s1","Z"]"#.into(), "unknown variant `Z`"),
            (r#"[1,2,"s1","D",5,"c1"]"#.into(), "ends before its to"),
            (
                r#"[1,2,"s1","D",5,"c1","s1",0,0]"#.into(),
                "past its last field",
            ),
            (r#"[1,2,"s1","D",5,"c1","s1",2]"#.into(), "duplicate is 2"),
            (r#"[1,2,"s1","X",1,1,0,0,"a",16]"#.into(), "flags is 16"),
            (r#"[1,2,"s1","X",1,1,0,2,"a",1]"#.into(), "op is 2"),
            (
                r#"[1,2,"s1","S",5,"c1","s1",["Q",1,1,0,0]]"#.into(),
                "ends before its lock",
            ),
            (
                r#"[1,2,"s1","S",5,"c1","s1",["Q",1,1,0,0,"a",9]]"#.into(),
                "past its last field",
            ),
            (
                r#"[1,2,"s1","S",5,"c1","s1",["FB",1,1,0,0]]"#.into(),
                "ends before its lock",
            ),
            (
                r#"[1,2,"s1","S",5,"c1","s1",["ZZ"]]"#.into(),
                "unknown variant `ZZ`",
            ),
            (r#"[-1,2,"s1","D",5,"c1","s1",0]"#.into(), "invalid value"),
            (
                r#"[1,2,"s1","I",1,1,1,0,0,"a","s1",5]"#.into(),
                "invalid type: integer `5`",
            ),
            (r#"[1,2,"s1","D",5,"c1","s1",0"#.into(), "EOF"),
            ("null".into(), "invalid type: null"),
            ("\"paused\"".into(), "invalid type: string"),
        ];
        for (text, want) in cases {
            let got = err::<Event>(text);
            assert!(got.contains(want), "{text}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(err::<Msg>(r#"{"req":{"client":1,"seq":1}}"#).contains("missing field `kind`"));
        assert!(err::<Msg>(r#"{"kind":"reply","req":{"client":1,"seq":1}}"#)
            .contains("missing field `ok`"));
        assert!(
            err::<Msg>(r#"{"kind":"reply","req":{"client":1,"seq":1},"ok":"yes"}"#)
                .contains("invalid type")
        );
        assert!(err::<ServerMsg>(r#"{"type":"bye"}"#).contains("unknown variant `bye`"));
        assert!(err::<ServerMsg>(r#"{"events":[]}"#).contains("missing field `type`"));
        assert!(err::<ServerMsg>(r#"{"type":"events"}"#).contains("missing field `events`"));
        assert!(
            err::<ServerMsg>(r#"{"type":"events","events":[{"seq":1}]}"#).contains("missing field")
        );
        assert!(err::<ServerMsg>(r#"{"type":"ack","command":"crash"}"#)
            .contains("missing field `detail`"));
        assert!(
            err::<ServerMsg>(r#"{"type":"error","code":"nope","message":"m"}"#)
                .contains("unknown variant `nope`")
        );
        assert!(err::<EventKind>(r#"{"type":"paused"}"#).contains("missing field `pid`"));
    }
}
