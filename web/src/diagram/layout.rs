//! Geometry of the space-time diagram as plain values: lanes, the time axis, arrows paired by
//! message id, lost messages, crash marks, greyed (dead) lane stretches, dividers and time
//! ticks — for the *visible window only*.
//!
//! The vertical axis is `timeaxis`'s compressed time. Each event's `y` is fixed when it arrives
//! (`History::push`), so finding the visible events is a binary search.
//!
//! Screen coordinates: `sy = y - origin + TOP_PAD`, where `origin` is the `y` of the oldest kept
//! event. Components only turn these values into SVG; nothing here touches the DOM.

use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use shared::{CrashCause, MsgId, Op, RequestId};

use crate::events::{Ev, Kind, MsgEnd, MsgKind, MsgRec, SpanKind};
use crate::format;
use crate::history::History;
use crate::timeaxis::ROW;

/// Left margin holding the time labels.
pub const GUTTER: f64 = 100.0;
pub const RIGHT_PAD: f64 = 24.0;
/// Space above the first event and below the live edge.
pub const TOP_PAD: f64 = 18.0;
pub const BOTTOM_PAD: f64 = 60.0;
pub const MIN_LANE_W: f64 = 40.0;
/// Below this lane spacing the diagram is *compact*: routine labels are left to hover.
pub const COMPACT_LANE_W: f64 = 112.0;
pub const MAX_LANE_W: f64 = 300.0;
/// Rows drawn beyond the viewport on each side, so scrolling never shows a blank edge.
pub const OVERSCAN: f64 = 240.0;
/// Messages before the window that are checked for arrows crossing into it.
const LOOKBACK_MSGS: usize = 4096;
/// A gap longer than this gets a time label in the gutter.
const LABEL_GAP_US: u64 = 100_000;
/// Time labels are at least this far apart (pixels) in a dense stretch.
const LABEL_EVERY_PX: f64 = 132.0;
/// A lost arrow stops this fraction of the way to its receiver, where its cross is drawn.
const LOST_AT: f64 = 0.82;

/// One vertical lane: a clerk or a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub name: Rc<str>,
    pub x: f64,
    pub server: bool,
}

/// Lanes for `clients` (left, in id order) and `servers` (right, in the order given), spread over
/// `width` pixels; returns them and the width the diagram needs (wider than `width` when many
/// lanes do not fit: then the servers come first and the clients scroll sideways).
#[cfg(test)]
pub fn lanes(clients: &[u32], servers: &[Rc<str>], width: f64) -> (Vec<Lane>, f64) {
    lanes_with_load(clients, false, servers, width)
}

/// The name of the one lane every load clerk (client >= 1001) is drawn on.
pub const LOAD_LANE: &str = "load";

/// [`lanes`], with one lane for the load generator's clerks (`load`: leftmost, as wide as a
/// server's, since it is as busy) when `load` is set.
pub fn lanes_with_load(
    clients: &[u32],
    load: bool,
    servers: &[Rc<str>],
    width: f64,
) -> (Vec<Lane>, f64) {
    let load_lane: Option<Rc<str>> = load.then(|| Rc::from(LOAD_LANE));
    let servers: Vec<Rc<str>> = load_lane.iter().chain(servers).cloned().collect();
    let servers = &servers[..];
    let (nc, ns) = (clients.len() as f64, servers.len() as f64);
    if nc + ns == 0.0 {
        return (Vec::new(), width);
    }
    let avail = (width - GUTTER - RIGHT_PAD).max(0.0);
    // Many clients squeeze the client lanes (down to MIN_LANE_W) before the diagram scrolls
    // sideways; server lanes, where most happens, get twice a squeezed client lane.
    let even = avail / (nc + ns);
    let (client_w, server_w) = if even >= COMPACT_LANE_W {
        let w = even.min(MAX_LANE_W);
        (w, w)
    } else {
        let c = (avail / (nc + 2.0 * ns)).max(MIN_LANE_W);
        (c, (2.0 * c).min(MAX_LANE_W))
    };
    let used = client_w * nc + server_w * ns;
    let mut x = GUTTER + ((avail - used) / 2.0).max(0.0);
    let mut out = Vec::with_capacity(clients.len() + servers.len());
    let client_lanes = clients
        .iter()
        .map(|c| (Rc::<str>::from(shared::client_node(*c).as_str()), false));
    let server_lanes = servers.iter().map(|s| (s.clone(), true));
    // Still too many: servers go first, so they are in view and the clients scroll.
    let mut names: Vec<(Rc<str>, bool)> = if used > avail {
        server_lanes.chain(client_lanes).collect()
    } else {
        client_lanes.chain(server_lanes).collect()
    };
    if let Some(i) = names.iter().position(|(n, _)| &**n == LOAD_LANE) {
        // The load lane is wide like a server's, drawn like a client's, and leftmost.
        let load = names.remove(i);
        names.insert(0, load);
    }
    for (name, wide) in names {
        let w = if wide { server_w } else { client_w };
        out.push(Lane {
            server: wide && &*name != LOAD_LANE,
            name,
            x: x + w / 2.0,
        });
        x += w;
    }
    (out, width.max(GUTTER + used + RIGHT_PAD))
}

/// The part of the diagram on screen, in screen pixels (`top` = scroll offset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub top: f64,
    pub height: f64,
}

/// How an arrow ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrowEnd {
    Delivered,
    /// Ends in a cross before its receiver.
    Lost,
    /// Sent, not yet delivered: its head is `progress` (0..1) of the way, on the live edge.
    InFlight {
        progress: f64,
    },
    /// Step mode holds it in the receiver's inbox: it reaches the receiver's lane on the live
    /// edge but has not landed (no head) until a person delivers or drops it.
    Held,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArrowGeom {
    /// Global index in `History::msgs` (for selection).
    pub msg: usize,
    pub msg_id: MsgId,
    pub kind: MsgKind,
    pub from: Rc<str>,
    pub to: Rc<str>,
    pub req: RequestId,
    pub label: String,
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    /// For in-flight arrows: where the receiver lane is (the dashed guide ends there).
    pub target_x: f64,
    pub end: ArrowEnd,
    /// A request re-sent with the same request id (after the primary failed).
    pub retry: bool,
    /// Where the label's baseline centre goes: on the arrow, away from other labels.
    pub label_x: f64,
    pub label_y: f64,
    /// Why a lost message was lost (`dropped`, `partition`, `cut`, or its receiver's death).
    pub reason: Option<Rc<str>>,
    /// The network delivered it twice: where the second copy landed (on the receiver's lane).
    pub dup_y: Option<f64>,
    /// It carries a call the checker found at fault (see [`mark_faults`]).
    pub fault: bool,
}

impl ArrowGeom {
    /// A loss the network's faults caused (drawn with its reason by the cross), not a death.
    pub fn fault_loss(&self) -> Option<&str> {
        self.reason
            .as_deref()
            .filter(|r| matches!(*r, "dropped" | "partition" | "cut"))
    }
}

/// What a point event looks like on its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glyph {
    Invoke,
    Answer { ok: bool },
    GaveUp,
    Execute { duplicate: bool },
    Crash,
    Exit,
    Start,
    Role,
    Armed,
    Retry,
    Pause,
    Resume,
    Dying,
}

impl Glyph {
    pub fn class(self) -> &'static str {
        match self {
            Glyph::Invoke => "invoke",
            Glyph::Answer { ok: true } => "answer ok",
            Glyph::Answer { ok: false } => "answer no",
            Glyph::GaveUp => "gave-up",
            Glyph::Execute { duplicate: false } => "execute",
            Glyph::Execute { duplicate: true } => "execute dup",
            Glyph::Crash => "crash",
            Glyph::Exit => "exit",
            Glyph::Start => "start",
            Glyph::Role => "role",
            Glyph::Armed => "armed",
            Glyph::Retry => "retry",
            Glyph::Pause => "pause",
            Glyph::Resume => "resume",
            Glyph::Dying => "dying",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarkGeom {
    /// Global index in `History::events`.
    pub event: usize,
    pub seq: u64,
    pub node: Rc<str>,
    pub x: f64,
    pub y: f64,
    pub glyph: Glyph,
    pub label: String,
    /// Put the label left of the lane (the rightmost lane: no room on its right).
    pub label_left: bool,
    pub req: Option<RequestId>,
    /// An event of a call the checker found at fault (see [`mark_faults`]).
    pub fault: bool,
}

/// A hatched stretch of a lane: dead, paused or dying.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadGeom {
    pub kind: SpanKind,
    pub server: Rc<str>,
    pub x: f64,
    pub y1: f64,
    pub y2: f64,
}

/// A full-width line: a cluster reset, a slow-motion change or a change of the fault plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Divider {
    pub y: f64,
    pub label: String,
    pub reset: bool,
    /// A fault-plan change: drawn lighter, as a marker rather than a boundary.
    pub fault: bool,
    /// The checker found a lock not linearizable here: drawn red, and clicking it shows the
    /// verdict (global index of its event).
    pub verdict: Option<usize>,
}

/// A time label in the gutter; `idle` is set after a long quiet stretch ("+2.4 s").
#[derive(Debug, Clone, PartialEq)]
pub struct TimeTick {
    pub y: f64,
    pub label: String,
    pub idle: Option<String>,
}

/// Everything to draw for one viewport.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scene {
    pub arrows: Vec<ArrowGeom>,
    pub marks: Vec<MarkGeom>,
    pub dead: Vec<DeadGeom>,
    pub dividers: Vec<Divider>,
    pub ticks: Vec<TimeTick>,
    /// The "now" line, in screen pixels.
    pub live_y: f64,
    /// Scrollable height of the whole diagram.
    pub height: f64,
    /// Global event indices drawn.
    pub events: Range<usize>,
}

/// Whether lanes this far apart are too close for every label (see [`COMPACT_LANE_W`]).
pub fn is_compact(lanes: &[Lane]) -> bool {
    lanes
        .windows(2)
        .next()
        .is_some_and(|w| w[1].x - w[0].x < COMPACT_LANE_W)
}

/// Screen y of an event's `y`.
pub fn screen_y(h: &History, y: f64) -> f64 {
    y - h.origin_y() + TOP_PAD
}

/// Scrollable height of the diagram with the live edge at `now_us`.
pub fn total_height(h: &History, now_us: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    screen_y(h, h.live_y(now_us)) + BOTTOM_PAD
}

/// Global indices of the events whose rows fall inside the viewport (plus overscan).
pub fn visible_events(h: &History, vp: Viewport) -> Range<usize> {
    let origin = h.origin_y();
    let lo = vp.top - OVERSCAN;
    let hi = vp.top + vp.height + OVERSCAN;
    let all = h.events.indices();
    let a = h
        .events
        .partition_point(all.clone(), |e| e.y - origin + TOP_PAD < lo);
    let b = h
        .events
        .partition_point(a..all.end, |e| e.y - origin + TOP_PAD <= hi);
    a..b
}

/// The label an arrow carries: `Lock(a) #c1.7`, `↻ Lock(a) #c1.7` for a retry, `ok=true`.
pub fn arrow_label(h: &History, m: &MsgRec) -> String {
    if m.batch > 1 {
        // A group commit: `forward ×12`, `ack ×12`.
        let what = match m.kind {
            MsgKind::ForwardAck => "ack",
            _ => "forward",
        };
        return format!("{what} ×{}", m.batch);
    }
    match (m.op, m.lock, m.ok) {
        (Some(op), Some(lock), _) => {
            let retry = if m.kind == MsgKind::Request && m.attempt > 1 {
                "↻ "
            } else {
                ""
            };
            format!(
                "{retry}{}({}) #{}",
                format::op_name(op),
                h.name(lock),
                format::req(m.req)
            )
        }
        (_, _, Some(ok)) => format!("ok={ok}"),
        _ if m.kind == MsgKind::ForwardRefused => format!("refused #{}", format::req(m.req)),
        _ => format!("#{}", format::req(m.req)),
    }
}

/// Builds the scene for `vp`. `now_us` is the server clock now (for the live edge and the
/// in-flight heads); `slow_ms` the slow-motion delay (how long a hop takes).
pub fn scene(h: &History, lanes: &[Lane], vp: Viewport, now_us: f64, slow_ms: u64) -> Scene {
    let mut sc = Scene::default();
    if h.is_empty() {
        return sc;
    }
    let x_of: HashMap<&str, f64> = lanes.iter().map(|l| (&*l.name, l.x)).collect();
    let load_x = x_of.get(LOAD_LANE).copied();
    // A load clerk (`c1001`...) is drawn on the load lane.
    let x_at = |name: &str| {
        x_of.get(name).copied().or_else(|| {
            load_x.filter(|_| {
                name.strip_prefix('c')
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(shared::is_load_client)
            })
        })
    };
    let rightmost = lanes.iter().map(|l| l.x).reduce(f64::max);
    let live_abs = h.live_y(now_us);
    sc.live_y = screen_y(h, live_abs);
    sc.height = sc.live_y + BOTTOM_PAD;
    let range = visible_events(h, vp);
    sc.events = range.clone();
    let y_lo = vp.top - OVERSCAN;
    let y_hi = vp.top + vp.height + OVERSCAN;

    // Point events, dividers and time ticks.
    let mut prev: Option<&Ev> = range.start.checked_sub(1).and_then(|i| h.event(i));
    let mut last_tick_y = f64::NEG_INFINITY;
    let mut prev_tick_ms: Option<u64> = None;
    for (i, e) in h.events.range(range.clone()) {
        let y = screen_y(h, e.y);
        let gap = prev.map(|p| e.t_us.saturating_sub(p.t_us));
        let first = i == range.start;
        // A label needs a row of its own: an event that takes no row (an ok verdict, drawn
        // nowhere) sits on the previous one's and would print its time over that one's.
        let own_row = y - last_tick_y >= ROW;
        if own_row
            && (first
                || gap.is_some_and(|g| g >= LABEL_GAP_US)
                || y - last_tick_y >= LABEL_EVERY_PX)
        {
            let idle = gap
                .filter(|g| *g >= 1_000_000)
                .map(|g| format!("+{}", format::duration(g)));
            // In a dense stretch many rows share a millisecond: show microseconds there.
            let coarse = format::clock(e.t_us);
            let same_ms = prev_tick_ms == Some(e.t_us / 1000);
            let label = if same_ms {
                format::clock_us(e.t_us)
            } else {
                coarse
            };
            prev_tick_ms = Some(e.t_us / 1000);
            sc.ticks.push(TimeTick { y, label, idle });
            last_tick_y = y;
        }
        prev = Some(e);
        match &e.kind {
            Kind::Reset { generation } => sc.dividers.push(Divider {
                y,
                label: format!("cluster reset · generation {generation}"),
                reset: true,
                fault: false,
                verdict: None,
            }),
            Kind::Faults { change } => sc.dividers.push(Divider {
                y,
                label: format!("⚡ {}", h.name(*change)),
                reset: false,
                fault: true,
                verdict: None,
            }),
            Kind::SlowMotion { delay_ms } => sc.dividers.push(Divider {
                y,
                label: if *delay_ms == 0 {
                    "slow motion off".into()
                } else {
                    format!("slow motion {delay_ms} ms per hop")
                },
                reset: false,
                fault: false,
                verdict: None,
            }),
            Kind::Verdict {
                status: shared::VerdictStatus::Violation,
                verdict,
                ..
            } => sc.dividers.push(Divider {
                y,
                label: verdict_label(verdict),
                reset: false,
                fault: false,
                verdict: Some(i),
            }),
            _ => {
                let node = h.name(e.node);
                let Some(x) = x_at(&node) else {
                    continue;
                };
                if let Some((glyph, label)) = mark(h, e) {
                    sc.marks.push(MarkGeom {
                        label_left: Some(x) == rightmost,
                        event: i,
                        seq: e.seq,
                        node,
                        x,
                        y,
                        glyph,
                        label,
                        req: e.kind.req(),
                        fault: false,
                    });
                }
            }
        }
    }

    // Arrows: sent in the window, sent before it and still crossing it, and in flight.
    let msgs = &h.msgs;
    let a = msgs.partition_point(msgs.indices(), |m| m.sent < range.start);
    let b = msgs.partition_point(a..msgs.end_index(), |m| m.sent < range.end);
    let back = a.saturating_sub(LOOKBACK_MSGS).max(msgs.first_index());
    let crossing = |m: &MsgRec| match m.end {
        MsgEnd::InFlight | MsgEnd::Held { .. } => true,
        MsgEnd::Delivered { event, .. } | MsgEnd::Lost { event, .. } => {
            event.max(m.dup.map_or(0, |(e, _)| e)) >= range.start
        }
    };
    let mut picked: Vec<usize> = msgs
        .range(back..a)
        .filter(|(_, m)| crossing(m))
        .map(|(i, _)| i)
        .collect();
    picked.extend(h.in_flight().filter(|i| *i < back));
    picked.extend(a..b);
    picked.sort_unstable();
    picked.dedup();
    let hop_us = (slow_ms as f64 * 1000.0).max(1000.0);
    for i in picked {
        let Some(m) = msgs.get(i) else { continue };
        let from = h.name(m.from);
        let to = h.name(m.to);
        let (Some(x1), Some(xt)) = (x_at(&from), x_at(&to)) else {
            continue;
        };
        let y1 = screen_y(h, m.sent_y);
        let (x2, y2, end) = match m.end {
            MsgEnd::Delivered { y, .. } => (xt, screen_y(h, y), ArrowEnd::Delivered),
            MsgEnd::Lost { y, .. } => (x1 + (xt - x1) * LOST_AT, screen_y(h, y), ArrowEnd::Lost),
            MsgEnd::Held { .. } => (xt, sc.live_y.max(y1), ArrowEnd::Held),
            MsgEnd::InFlight => {
                let progress = ((now_us - m.sent_t as f64) / hop_us).clamp(0.0, 1.0);
                (
                    x1 + (xt - x1) * progress,
                    sc.live_y.max(y1),
                    ArrowEnd::InFlight { progress },
                )
            }
        };
        let dup_y = m.dup.map(|(_, y)| screen_y(h, y));
        let bottom = y2.max(dup_y.unwrap_or(y2));
        if y1.max(bottom) < y_lo || y1.min(y2) > y_hi {
            continue;
        }
        let label = match m.end {
            MsgEnd::Held { .. } => format!("held {} · {}", m.msg_id, arrow_label(h, m)),
            _ => arrow_label(h, m),
        };
        let reason = match m.end {
            MsgEnd::Lost { reason, .. } => Some(h.name(reason)),
            _ => None,
        };
        sc.arrows.push(ArrowGeom {
            msg: i,
            msg_id: m.msg_id,
            kind: m.kind,
            from,
            to,
            req: m.req,
            label,
            x1,
            y1,
            x2,
            y2,
            target_x: xt,
            end,
            retry: m.kind == MsgKind::Request && m.attempt > 1,
            label_x: (x1 + x2) / 2.0,
            label_y: (y1 + y2) / 2.0 - LABEL_LIFT,
            reason,
            dup_y,
            fault: false,
        });
    }
    place_labels(&mut sc);

    // Dead stretches of server lanes.
    for d in h.dead_spans() {
        let name = h.name(d.server);
        let Some(&x) = x_of.get(&*name) else { continue };
        let y1 = screen_y(h, d.from_y);
        let y2 = d.to_y.map_or(sc.live_y, |y| screen_y(h, y));
        if y2 < y_lo || y1 > y_hi {
            continue;
        }
        sc.dead.push(DeadGeom {
            kind: d.kind,
            server: name,
            x,
            y1: y1.max(y_lo),
            y2: y2.min(y_hi.max(y1)),
        });
    }
    sc
}

/// The red line's words for a lock found not linearizable.
pub fn verdict_label(v: &shared::LockVerdict) -> String {
    if v.ops.is_empty() {
        format!("✗ {}: not linearizable", v.lock)
    } else {
        format!(
            "✗ {}: not linearizable · calls at fault {}",
            v.lock,
            crate::verdict::calls_text(&v.ops)
        )
    }
}

/// Marks the arrows and point events of the calls at fault (`faulty`, request ids of the
/// current generation: the checker's verdicts are forgotten at a reset, and request ids start
/// over): every message carrying such a request id (request, forward, ack, reply, retries)
/// and every event of such a call (its invocation, execution, answer, retries).
pub fn mark_faults(sc: &mut Scene, h: &History, faulty: &std::collections::BTreeSet<RequestId>) {
    if faulty.is_empty() {
        return;
    }
    let generation = h.generation();
    for a in &mut sc.arrows {
        a.fault =
            faulty.contains(&a.req) && h.msg(a.msg).is_some_and(|m| m.generation == generation);
    }
    for m in &mut sc.marks {
        m.fault = m.req.is_some_and(|r| faulty.contains(&r)) && h.in_current_generation(m.event);
    }
}

/// Arrow labels sit this far above their arrow.
const LABEL_LIFT: f64 = 6.0;
/// Approximate text metrics of the labels (12-12.5 px, partly bold), for collision checks.
const ARROW_CHAR_W: f64 = 7.0;
const MARK_CHAR_W: f64 = 6.4;
const LABEL_H: f64 = 13.0;

/// A label's box: left, top, right, bottom.
type LabelBox = (f64, f64, f64, f64);

fn overlaps(a: &LabelBox, b: &LabelBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn mark_label_box(m: &MarkGeom) -> LabelBox {
    let w = m.label.chars().count() as f64 * MARK_CHAR_W;
    let gap = if m.glyph == Glyph::Crash { 15.0 } else { 10.0 };
    let (l, r) = if m.label_left {
        (m.x - gap - w, m.x - gap)
    } else {
        (m.x + gap, m.x + gap + w)
    };
    (l, m.y + 4.0 - LABEL_H + 2.0, r, m.y + 6.0)
}

/// Slides each arrow label along its arrow (middle first, then a third, two thirds, …) to the
/// first place where it covers no mark label and no label already placed. Keeps the middle
/// when every place is taken.
fn place_labels(sc: &mut Scene) {
    let mut taken: Vec<LabelBox> = sc.marks.iter().map(mark_label_box).collect();
    for a in sc.arrows.iter_mut() {
        let w = a.label.chars().count() as f64 * ARROW_CHAR_W;
        let boxed = |t: f64| {
            let x = a.x1 + (a.x2 - a.x1) * t;
            let y = a.y1 + (a.y2 - a.y1) * t - LABEL_LIFT;
            (x, y, (x - w / 2.0, y - LABEL_H + 2.0, x + w / 2.0, y + 3.0))
        };
        let spot = [0.5, 0.36, 0.64, 0.26, 0.74]
            .iter()
            .map(|t| boxed(*t))
            .find(|(_, _, b)| !taken.iter().any(|o| overlaps(b, o)));
        let (x, y, b) = spot.unwrap_or_else(|| boxed(0.5));
        a.label_x = x;
        a.label_y = y;
        taken.push(b);
    }
}

/// The glyph and label of a point event, or `None` for events drawn otherwise (messages).
fn mark(h: &History, e: &Ev) -> Option<(Glyph, String)> {
    let op = |op: Op, lock| format!("{}({})", format::op_name(op), h.name(lock));
    Some(match &e.kind {
        Kind::Invoked { op: o, lock, .. } => (Glyph::Invoke, format!("call {}", op(*o, *lock))),
        Kind::Completed {
            ok,
            latency_us,
            attempts,
            server,
            ..
        } => {
            let via = if *attempts > 1 {
                format!(" · via {} after {} tries", h.name(*server), attempts)
            } else {
                String::new()
            };
            (
                Glyph::Answer { ok: *ok },
                format!("→ {ok} · {}{via}", format::duration(*latency_us)),
            )
        }
        Kind::Failed { reason, .. } => (Glyph::GaveUp, format!("gave up: {}", h.name(*reason))),
        Kind::Executed {
            op: o,
            lock,
            ok,
            duplicate,
            ..
        } => {
            if *duplicate {
                (
                    Glyph::Execute { duplicate: true },
                    format!("duplicate: recorded {ok}"),
                )
            } else {
                (
                    Glyph::Execute { duplicate: false },
                    format!("{} = {ok}", op(*o, *lock)),
                )
            }
        }
        Kind::Crashed { cause, .. } => (
            Glyph::Crash,
            match cause {
                CrashCause::Command => "crashed (SIGKILL)".into(),
                CrashCause::BeforeReply => "crashed before reply".into(),
                CrashCause::Reset => "killed by reset".into(),
                CrashCause::BeforeForward => "crashed before forward".into(),
                CrashCause::AfterForward => "crashed after forward".into(),
                CrashCause::BeforeAck => "crashed before ack".into(),
                CrashCause::Dying => "died after going silent".into(),
            },
        ),
        Kind::Exited { signal, code, .. } => (
            Glyph::Exit,
            match (signal, code) {
                (Some(9), _) => "exited (SIGKILL)".into(),
                (Some(s), _) => format!("exited (signal {s})"),
                (None, Some(c)) => format!("exited (code {c})"),
                (None, None) => "exited".into(),
            },
        ),
        Kind::Started { pid, role, .. } => (
            Glyph::Start,
            format!("started as {} · pid {pid}", format::role(*role)),
        ),
        Kind::RoleChanged { role, alone, .. } => (
            Glyph::Role,
            if *alone {
                "now serving alone".into()
            } else {
                format!("now {}", format::role(*role))
            },
        ),
        Kind::Armed { point, dying_ms } => (
            Glyph::Armed,
            format!(
                "armed: crash {}{}",
                format::crash_point(*point),
                dying_ms.map_or(String::new(), |ms| format!(" · silent {ms} ms first"))
            ),
        ),
        Kind::Dying {
            dies_in_ms, point, ..
        } => (
            Glyph::Dying,
            format!(
                "silent{} · dies in {}",
                point.map_or(String::new(), |p| format!(" {}", format::crash_point(p))),
                format::duration(dies_in_ms * 1000)
            ),
        ),
        Kind::Paused { pid } => (Glyph::Pause, format!("paused (SIGSTOP pid {pid})")),
        Kind::Resumed { pid } => (Glyph::Resume, format!("resumed (SIGCONT pid {pid})")),
        Kind::ClientStarted { pid, incarnation } => (
            Glyph::Start,
            if *incarnation == 0 {
                format!("process up · pid {pid}")
            } else {
                format!("restarted · incarnation {incarnation} (new id) · pid {pid}")
            },
        ),
        Kind::RpcFailed {
            server, retry_to, ..
        } => (
            Glyph::Retry,
            // The clerk's view: it got no answer. Whether the server crashed shows on its
            // own lane; a partitioned or paused server did not fail.
            format!(
                "no answer from {} → retry to {}",
                h.name(*server),
                h.name(*retry_to)
            ),
        ),
        Kind::Sent { .. }
        | Kind::Delivered { .. }
        | Kind::Held { .. }
        | Kind::Lost { .. }
        | Kind::Reset { .. }
        | Kind::SlowMotion { .. }
        | Kind::LoadReport
        | Kind::Faults { .. }
        | Kind::Verdict { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{history_of, Script};
    use crate::timeaxis::ROW;
    use shared::{EventKind as K, Msg, Role};

    #[test]
    fn a_refused_forward_says_so_on_its_arrow() {
        let mut s = Script::default();
        let req = RequestId::new(2, 1);
        s.sent(7, "s2", "s1", Msg::ForwardRefused { req });
        let h = history_of(&s);
        let m = h.msg(0).expect("the refusal");
        assert_eq!(m.kind, MsgKind::ForwardRefused);
        assert_eq!(arrow_label(&h, m), "refused #c2.1");
    }

    #[test]
    fn a_group_commit_is_one_arrow_each_way_labelled_with_its_size() {
        let mut s = Script::default();
        let reqs = [
            RequestId::new(3, 7),
            RequestId::new(4, 2),
            RequestId::new(1, 9),
        ];
        let ops = reqs
            .iter()
            .map(|&req| shared::ForwardOp {
                req,
                op: shared::Op::Lock,
                lock: "a".into(),
            })
            .collect();
        s.sent(8, "s1", "s2", Msg::ForwardBatch { ops });
        let acks = reqs
            .iter()
            .map(|&req| shared::ForwardAckItem { req, ok: true })
            .collect();
        s.sent(9, "s2", "s1", Msg::ForwardAckBatch { acks });
        let h = history_of(&s);
        let fwd = h.msg(0).expect("the batch");
        assert_eq!(
            (fwd.kind, fwd.req, fwd.batch),
            (MsgKind::Forward, reqs[0], 3)
        );
        assert_eq!(arrow_label(&h, fwd), "forward ×3");
        let ack = h.msg(1).expect("its ack");
        assert_eq!((ack.kind, ack.batch), (MsgKind::ForwardAck, 3));
        assert_eq!(arrow_label(&h, ack), "ack ×3");
        // A lone forward keeps its old label.
        let mut s = Script::default();
        s.sent(
            8,
            "s1",
            "s2",
            Msg::Forward {
                req: reqs[0],
                op: shared::Op::Lock,
                lock: "a".into(),
            },
        );
        let h = history_of(&s);
        assert_eq!(h.msg(0).unwrap().batch, 1);
        assert_eq!(arrow_label(&h, h.msg(0).unwrap()), "Lock(a) #c3.7");
    }

    fn servers() -> Vec<Rc<str>> {
        vec!["s1".into(), "s2".into()]
    }

    const ALL: Viewport = Viewport {
        top: 0.0,
        height: 100_000.0,
    };

    #[test]
    fn lanes_put_clients_left_and_servers_right_within_the_width() {
        let (l, w) = lanes(&[1, 2], &servers(), 1000.0);
        let names: Vec<&str> = l.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["c1", "c2", "s1", "s2"]);
        assert!(l.windows(2).all(|p| p[1].x > p[0].x));
        assert!(l[0].x > GUTTER && l[3].x < 1000.0 - RIGHT_PAD);
        assert_eq!(w, 1000.0);
        assert!(!is_compact(&l));
        let many: Vec<u32> = (1..=10).collect();
        let (l, w) = lanes(&many, &servers(), 1000.0);
        assert_eq!(w, 1000.0, "12 lanes still fit, squeezed");
        assert!(is_compact(&l));
        let many: Vec<u32> = (1..=40).collect();
        let (l, w) = lanes(&many, &servers(), 1000.0);
        assert!(w > 1000.0, "42 lanes do not fit in 1000 px");
        assert_eq!((&*l[0].name, &*l[1].name, &*l[2].name), ("s1", "s2", "c1"));
        assert!((l[3].x - l[2].x - MIN_LANE_W).abs() < 1e-9);
        assert!(l[1].x < 1000.0, "the servers stay in view");
    }

    #[test]
    fn a_call_draws_four_arrows_from_send_to_delivery() {
        let mut s = Script::default();
        s.call(1, 7, "s1", "s2", 40);
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        let got: Vec<(&str, &str, &str, String)> = sc
            .arrows
            .iter()
            .map(|a| (a.kind.as_str(), &*a.from, &*a.to, format::req(a.req)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("request", "c1", "s1", "c1.7".to_string()),
                ("forward", "s1", "s2", "c1.7".to_string()),
                ("forward_ack", "s2", "s1", "c1.7".to_string()),
                ("reply", "s1", "c1", "c1.7".to_string()),
            ]
        );
        let x = |n: &str| l.iter().find(|l| &*l.name == n).map(|l| l.x);
        let req = &sc.arrows[0];
        assert_eq!(Some(req.x1), x("c1"));
        assert_eq!(Some(req.x2), x("s1"));
        assert!(req.y2 > req.y1, "time flows down");
        assert_eq!(req.label, "Lock(a) #c1.7");
        assert_eq!(sc.arrows[3].label, "ok=true");
        assert!(sc.arrows.iter().all(|a| a.end == ArrowEnd::Delivered));
        let marks: Vec<Glyph> = sc.marks.iter().map(|m| m.glyph).collect();
        assert_eq!(marks.first(), Some(&Glyph::Invoke));
        assert_eq!(marks.last(), Some(&Glyph::Answer { ok: true }));
    }

    #[test]
    fn a_lost_message_stops_short_with_a_cross_and_a_crash_greys_the_lane() {
        let mut s = Script::default();
        let req = shared::RequestId::new(1, 1);
        s.ev(
            "s1",
            K::ProcessStarted {
                pid: 3,
                role: Role::Primary,
                port: 1,
            },
        )
        .sent(
            1,
            "c1",
            "s1",
            Msg::Request {
                req,
                op: Op::Lock,
                lock: "a".into(),
            },
        )
        .ev(
            "s1",
            K::Crashed {
                pid: 3,
                cause: CrashCause::Command,
                req: None,
            },
        )
        .lost(1, "c1", "s1");
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        assert_eq!(sc.arrows.len(), 1);
        let a = &sc.arrows[0];
        assert_eq!(a.end, ArrowEnd::Lost);
        assert!(a.x2 < l[1].x && a.x2 > l[0].x, "ends before the receiver");
        let crash = sc
            .marks
            .iter()
            .find(|m| m.glyph == Glyph::Crash)
            .expect("crash mark");
        assert_eq!(&*crash.node, "s1");
        assert_eq!(sc.dead.len(), 1);
        let d = &sc.dead[0];
        assert_eq!(&*d.server, "s1");
        assert_eq!(d.y1, crash.y);
        assert_eq!(d.y2, sc.live_y, "still dead: greyed to the live edge");
    }

    #[test]
    fn a_retry_keeps_the_request_id_and_is_marked() {
        let mut s = Script::default();
        let req = shared::RequestId::new(2, 3);
        let m = || Msg::Request {
            req,
            op: Op::Unlock,
            lock: "b".into(),
        };
        s.sent(1, "c2", "s1", m())
            .lost(1, "c2", "s1")
            .sent(2, "c2", "s2", m())
            .delivered(2, "c2", "s2");
        let h = history_of(&s);
        let (l, _) = lanes(&[2], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        assert_eq!(sc.arrows.len(), 2);
        assert_eq!(sc.arrows[0].req, sc.arrows[1].req);
        assert!(!sc.arrows[0].retry);
        assert!(sc.arrows[1].retry);
        assert_eq!(sc.arrows[1].label, "↻ Unlock(b) #c2.3");
        assert_eq!(&*sc.arrows[1].to, "s2");
    }

    #[test]
    fn an_in_flight_message_moves_with_time_on_the_live_edge() {
        let mut s = Script::default();
        let req = shared::RequestId::new(1, 1);
        s.sent(
            1,
            "c1",
            "s1",
            Msg::Request {
                req,
                op: Op::Lock,
                lock: "a".into(),
            },
        );
        let sent_at = s.t_us as f64;
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let early = scene(&h, &l, ALL, sent_at + 200_000.0, 800);
        let late = scene(&h, &l, ALL, sent_at + 600_000.0, 800);
        let (ArrowEnd::InFlight { progress: p1 }, ArrowEnd::InFlight { progress: p2 }) =
            (early.arrows[0].end, late.arrows[0].end)
        else {
            panic!("in flight expected");
        };
        assert!((p1 - 0.25).abs() < 1e-9 && (p2 - 0.75).abs() < 1e-9);
        assert!(late.arrows[0].x2 > early.arrows[0].x2);
        assert!(
            late.live_y > early.live_y,
            "the live edge moves down with time"
        );
        assert_eq!(late.arrows[0].y2, late.live_y);
    }

    #[test]
    fn only_the_visible_window_is_built() {
        let mut s = Script::default();
        for i in 0..2000u64 {
            s.call(1, i + 1, "s1", "s2", i * 4);
        }
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let vp = Viewport {
            top: 200_000.0,
            height: 600.0,
        };
        let sc = scene(&h, &l, vp, 1e12, 0);
        let rows = (vp.height + 2.0 * OVERSCAN) / ROW;
        assert!(
            sc.events.len() as f64 <= rows + 2.0,
            "{} events",
            sc.events.len()
        );
        assert!(!sc.arrows.is_empty() && sc.arrows.len() as f64 <= rows);
        let lo = vp.top - OVERSCAN;
        let hi = vp.top + vp.height + OVERSCAN;
        assert!(sc.arrows.iter().all(|a| a.y2 >= lo && a.y1 <= hi));
        assert!(sc.height > 2000.0 * 10.0 * ROW);
    }

    #[test]
    fn an_arrow_crossing_into_the_window_from_above_is_kept() {
        let mut s = Script::default();
        let req = shared::RequestId::new(1, 1);
        s.sent(
            1,
            "c1",
            "s1",
            Msg::Request {
                req,
                op: Op::Lock,
                lock: "a".into(),
            },
        );
        for _ in 0..200 {
            s.ev(
                "s2",
                K::CrashArmed {
                    point: None,
                    dying_ms: None,
                },
            );
        }
        s.delivered(1, "c1", "s1");
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let bottom = screen_y(&h, h.last_y());
        let vp = Viewport {
            top: bottom - 100.0,
            height: 200.0,
        };
        let sc = scene(&h, &l, vp, 1e12, 0);
        assert!(sc.events.start > 1, "the send is far above the window");
        assert_eq!(sc.arrows.len(), 1);
    }

    #[test]
    fn an_arrow_label_moves_off_a_mark_label_it_would_cover() {
        let mut sc = Scene::default();
        let arrow = |y: f64| ArrowGeom {
            msg: 0,
            msg_id: shared::MsgId(1),
            kind: MsgKind::Request,
            from: "c1".into(),
            to: "s1".into(),
            req: RequestId::new(1, 1),
            label: "Lock(a) #c1.1".into(),
            x1: 100.0,
            y1: y,
            x2: 500.0,
            y2: y + 20.0,
            target_x: 500.0,
            end: ArrowEnd::Delivered,
            retry: false,
            label_x: 300.0,
            label_y: y + 4.0,
            reason: None,
            dup_y: None,
            fault: false,
        };
        sc.arrows.push(arrow(100.0));
        sc.arrows.push(arrow(300.0));
        // A long mark label right where the second arrow's middle is.
        sc.marks.push(MarkGeom {
            event: 0,
            seq: 1,
            node: "c2".into(),
            x: 250.0,
            y: 308.0,
            glyph: Glyph::Retry,
            label: "no answer from s1 → retry to s2".into(),
            label_left: false,
            req: None,
            fault: false,
        });
        place_labels(&mut sc);
        assert_eq!(
            sc.arrows[0].label_x, 300.0,
            "nothing in the way: the middle"
        );
        let moved = &sc.arrows[1];
        assert_ne!(moved.label_x, 300.0);
        let w = moved.label.chars().count() as f64 * ARROW_CHAR_W;
        let b = (
            moved.label_x - w / 2.0,
            moved.label_y - LABEL_H + 2.0,
            moved.label_x + w / 2.0,
            moved.label_y + 3.0,
        );
        assert!(!overlaps(&b, &mark_label_box(&sc.marks[0])));
        // Still on its arrow.
        let t = (moved.label_x - 100.0) / 400.0;
        assert!((moved.label_y + LABEL_LIFT - (300.0 + 20.0 * t)).abs() < 1e-9);
    }

    #[test]
    fn dividers_and_idle_ticks() {
        let mut s = Script::default();
        s.ev("supervisor", K::SlowMotionSet { delay_ms: 800 })
            .at(4_000_000)
            .ev("supervisor", K::ClusterReset { generation: 2 });
        let h = history_of(&s);
        let sc = scene(&h, &[], ALL, 1e12, 0);
        assert_eq!(sc.dividers.len(), 2);
        assert!(sc.dividers[1].reset);
        assert_eq!(sc.ticks.len(), 2);
        assert!(
            sc.ticks[1]
                .idle
                .as_deref()
                .is_some_and(|t| t.contains("4.0 s")),
            "{:?}",
            sc.ticks
        );
    }

    #[test]
    fn a_verdict_that_takes_no_row_prints_no_time_over_the_row_before() {
        // A call answered; 200 ms later an event with a time label of its own (1.631 s in
        // the replay where this was seen); 300 ms later an ok verdict, on no row of its own.
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 1);
        let t = s.t_us + 200_000;
        s.at(t).ev("supervisor", K::SlowMotionSet { delay_ms: 0 });
        let t = s.t_us + 300_000;
        s.at(t).ev(
            "checker",
            K::Verdict(shared::LockVerdict {
                lock: "a".into(),
                status: shared::VerdictStatus::Ok,
                ops: vec![],
                explanation: String::new(),
                calls: 1,
            }),
        );
        let h = history_of(&s);
        let last = h.events.len() - 1;
        assert_eq!(h.event(last).map(|e| e.y), h.event(last - 1).map(|e| e.y));
        let sc = scene(&h, &[], ALL, 1e12, 0);
        for w in sc.ticks.windows(2) {
            assert!(
                w[1].y - w[0].y >= ROW,
                "two time labels overprint: {:?}",
                sc.ticks
            );
        }
        assert!(sc.ticks.len() >= 2, "{:?}", sc.ticks);
    }

    #[test]
    fn a_held_message_reaches_the_receiver_lane_at_now_without_landing() {
        let mut s = Script::default();
        s.sent(17, "c1", "s1", Script::request(1, 1))
            .held(17, "c1", "s1", Script::request(1, 1));
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        assert_eq!(sc.arrows.len(), 1);
        let a = &sc.arrows[0];
        assert_eq!(a.end, ArrowEnd::Held);
        assert_eq!(Some(a.x2), l.iter().find(|l| &*l.name == "s1").map(|l| l.x));
        assert_eq!(a.y2, sc.live_y, "on the live edge");
        assert_eq!(a.label, "held 17 · Lock(a) #c1.1");
        // Delivered: an ordinary arrow.
        s.delivered(17, "c1", "s1");
        let h = history_of(&s);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        assert_eq!(sc.arrows[0].end, ArrowEnd::Delivered);
        assert_eq!(sc.arrows[0].label, "Lock(a) #c1.1");
    }

    #[test]
    fn a_message_lost_to_a_fault_carries_its_reason() {
        let mut s = Script::default();
        s.sent(1, "c1", "s1", Script::request(1, 1))
            .lost_for(1, "c1", "s1", "dropped")
            .sent(2, "c1", "s1", Script::request(1, 2))
            .lost(2, "c1", "s1");
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        let why: Vec<(ArrowEnd, Option<&str>, Option<&str>)> = sc
            .arrows
            .iter()
            .map(|a| (a.end, a.reason.as_deref(), a.fault_loss()))
            .collect();
        assert_eq!(
            why,
            [
                (ArrowEnd::Lost, Some("dropped"), Some("dropped")),
                (ArrowEnd::Lost, Some("receiver died"), None)
            ]
        );
    }

    #[test]
    fn a_duplicated_message_gets_a_second_head() {
        let mut s = Script::default();
        s.sent(1, "s1", "s2", Script::request(1, 1))
            .delivered(1, "s1", "s2")
            .duplicate(1, "s1", "s2");
        let h = history_of(&s);
        let (l, _) = lanes(&[], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        assert_eq!(sc.arrows.len(), 1);
        let a = &sc.arrows[0];
        assert_eq!(a.end, ArrowEnd::Delivered);
        assert_eq!(a.dup_y, Some(screen_y(&h, h.last_y())));
        assert!(a.dup_y > Some(a.y2), "the copy lands later");
        // Only the second copy in the window: the arrow is still drawn.
        let bottom = screen_y(&h, h.last_y());
        let far = Viewport {
            top: bottom + OVERSCAN - 5.0,
            height: 10.0,
        };
        assert_eq!(scene(&h, &l, far, 1e12, 0).arrows.len(), 1);
    }

    #[test]
    fn pause_dying_and_client_crash_draw_bands_and_marks() {
        let mut s = Script::default();
        s.ev("s1", K::Paused { pid: 3 })
            .ev("s1", K::Resumed { pid: 3 })
            .ev(
                "s2",
                K::CrashArmed {
                    point: Some(shared::CrashPoint::BeforeAck),
                    dying_ms: Some(500),
                },
            )
            .ev(
                "s2",
                K::Dying {
                    pid: 4,
                    dies_in_ms: 500,
                    point: Some(shared::CrashPoint::BeforeAck),
                },
            )
            .ev(
                "c1",
                K::Crashed {
                    pid: 9,
                    cause: CrashCause::Command,
                    req: None,
                },
            )
            .ev(
                "c1",
                K::ClientStarted {
                    pid: 10,
                    incarnation: 1,
                },
            );
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        let spans: Vec<(SpanKind, &str)> = sc.dead.iter().map(|d| (d.kind, &*d.server)).collect();
        assert_eq!(
            spans,
            [
                (SpanKind::Paused, "s1"),
                (SpanKind::Dying, "s2"),
                (SpanKind::Dead, "c1")
            ]
        );
        assert_eq!(sc.dead[1].y2, sc.live_y, "still dying");
        let marks: Vec<(Glyph, &str)> = sc
            .marks
            .iter()
            .map(|m| (m.glyph, m.label.as_str()))
            .collect();
        assert_eq!(
            marks,
            [
                (Glyph::Pause, "paused (SIGSTOP pid 3)"),
                (Glyph::Resume, "resumed (SIGCONT pid 3)"),
                (
                    Glyph::Armed,
                    "armed: crash before ack · silent 500 ms first"
                ),
                (Glyph::Dying, "silent before ack · dies in 500 ms"),
                (Glyph::Crash, "crashed (SIGKILL)"),
                (Glyph::Start, "restarted · incarnation 1 (new id) · pid 10"),
            ]
        );
    }

    /// The clerk only knows it got no answer: its retry mark must not say the server failed
    /// (in a partition or after a lost message the server is alive and serving).
    #[test]
    fn a_retry_mark_says_no_answer_not_failed() {
        let mut s = Script::default();
        s.ev(
            "c1",
            K::RpcFailed {
                client: 1,
                req: shared::RequestId::new(1, 1),
                server: "s1".into(),
                reason: "no reply in time".into(),
                retry_to: "s2".into(),
            },
        );
        let h = history_of(&s);
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let sc = scene(&h, &l, ALL, 1e12, 0);
        let marks: Vec<(Glyph, &str)> = sc
            .marks
            .iter()
            .map(|m| (m.glyph, m.label.as_str()))
            .collect();
        assert_eq!(marks, [(Glyph::Retry, "no answer from s1 → retry to s2")]);
    }

    #[test]
    fn a_fault_plan_change_is_a_light_divider() {
        let mut s = Script::default();
        s.ev(
            "supervisor",
            K::FaultsChanged {
                plan: shared::FaultPlan::default(),
                change: "cut s1 -> s2".into(),
            },
        );
        let h = history_of(&s);
        let sc = scene(&h, &[], ALL, 1e12, 0);
        assert_eq!(sc.dividers.len(), 1);
        let d = &sc.dividers[0];
        assert!(d.fault && !d.reset);
        assert_eq!(d.label, "⚡ cut s1 -> s2");
    }

    fn violation(ops: &[RequestId]) -> K {
        K::Verdict(shared::LockVerdict {
            lock: "a".into(),
            status: shared::VerdictStatus::Violation,
            ops: ops.to_vec(),
            explanation: "Lock(a) was granted twice".into(),
            calls: 2,
        })
    }

    #[test]
    fn the_calls_at_fault_and_their_messages_are_marked_in_this_generation_only() {
        let mut s = Script::default();
        // Generation 0: c1.1. Then a reset, and generation 1's own c1.1 and c2.1.
        s.call(1, 1, "s1", "s2", 1);
        s.ev("supervisor", K::ClusterReset { generation: 1 });
        s.call(1, 1, "s1", "s2", 10).call(2, 1, "s1", "s2", 20);
        let c1 = RequestId::new(1, 1);
        s.ev("checker", violation(&[c1]));
        let h = history_of(&s);
        let (l, _) = lanes(&[1, 2], &servers(), 900.0);
        let vp = Viewport {
            top: 0.0,
            height: 5000.0,
        };
        let mut sc = scene(&h, &l, vp, h.last_t().unwrap() as f64, 0);
        assert!(
            sc.arrows.iter().all(|a| !a.fault),
            "nothing marked before mark_faults"
        );
        mark_faults(&mut sc, &h, &[c1].into_iter().collect());
        let gen_of = |a: &ArrowGeom| h.msg(a.msg).unwrap().generation;
        let faulty: Vec<(MsgKind, u64)> = sc
            .arrows
            .iter()
            .filter(|a| a.fault)
            .map(|a| (a.kind, gen_of(a)))
            .collect();
        assert_eq!(
            faulty,
            [
                (MsgKind::Request, 1),
                (MsgKind::Forward, 1),
                (MsgKind::ForwardAck, 1),
                (MsgKind::Reply, 1)
            ],
            "the request, forward, ack and reply of generation 1's c1.1"
        );
        assert!(
            sc.arrows.iter().filter(|a| a.req == c1).any(|a| !a.fault),
            "generation 0's c1.1 is another call"
        );
        let marked: Vec<(Glyph, &str)> = sc
            .marks
            .iter()
            .filter(|m| m.fault)
            .map(|m| (m.glyph, &*m.node))
            .collect();
        assert!(marked.contains(&(Glyph::Invoke, "c1")), "{marked:?}");
        assert!(
            marked.contains(&(Glyph::Answer { ok: true }, "c1")),
            "{marked:?}"
        );
        assert!(
            sc.marks
                .iter()
                .filter(|m| m.fault)
                .all(|m| m.req == Some(c1)),
            "c2.1 is not at fault"
        );
        // The verdict is a red line across the diagram, with the calls at fault; the checker
        // itself has no lane and no mark.
        let lines: Vec<&Divider> = sc.dividers.iter().filter(|d| d.verdict.is_some()).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].label,
            "✗ a: not linearizable · calls at fault #c1.1"
        );
        assert!(sc.marks.iter().all(|m| &*m.node != "checker"));
    }

    #[test]
    fn a_verdict_that_is_no_violation_takes_no_row_and_draws_nothing() {
        let mut s = Script::default();
        s.call(1, 1, "s1", "s2", 1);
        let before = history_of(&s).last_y();
        s.ev(
            "checker",
            K::Verdict(shared::LockVerdict {
                lock: "a".into(),
                status: shared::VerdictStatus::Ok,
                ops: vec![],
                explanation: String::new(),
                calls: 1,
            }),
        );
        let h = history_of(&s);
        assert_eq!(h.last_y(), before, "an ok verdict sits on the previous row");
        let (l, _) = lanes(&[1], &servers(), 900.0);
        let vp = Viewport {
            top: 0.0,
            height: 5000.0,
        };
        let sc = scene(&h, &l, vp, h.last_t().unwrap() as f64, 0);
        assert!(sc.dividers.is_empty());
        s.ev("checker", violation(&[RequestId::new(1, 1)]));
        let h = history_of(&s);
        assert!(
            h.last_y() >= before + ROW,
            "a violation takes a row for its line"
        );
    }
}
