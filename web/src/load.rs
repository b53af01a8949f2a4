//! The load generator as the page sees it (pure, tested natively): the chart data (a bounded
//! ring of `load_stats` points and of markers for crashes, fault-plan changes, role changes and
//! resets, on the events' own clock), the sampling the page asks of the gateway under a heavy
//! load, and the charts' geometry (axes with nice ticks, polylines, marker lines).
//!
//! Nothing here grows with time: the points are a ring of [`POINTS_CAP`] (two minutes at one
//! `load_stats` every 250 ms), the markers a ring of [`MARKERS_CAP`].

use std::collections::VecDeque;

use shared::{Event, EventKind, LoadDistribution, LoadSettings, LoadStats, Role};

use crate::format;

/// `load_stats` points kept: two minutes at one every 250 ms.
pub const POINTS_CAP: usize = 480;
/// Markers kept (the oldest go first).
pub const MARKERS_CAP: usize = 64;
/// The charts show at most this much time, ending at the newest point...
pub const WINDOW_US: u64 = 60_000_000;
/// ... and at least this much (the axis stretches from it to [`WINDOW_US`] as points come).
pub const MIN_WINDOW_US: u64 = 20_000_000;
/// Load calls per second the diagram draws in full, at most (see [`choose_sample`]).
pub const DRAWN_MAX: u64 = 200;
/// ... and at least, once the load is heavier than that.
pub const DRAWN_MIN: u64 = 50;
/// A page whose newest events are this far behind the server's clock (it reads slower than
/// they come) asks for a coarser sample ([`coarser`]).
pub const LAG_COARSEN_US: f64 = 1_000_000.0;
/// ... at most once in this long, and only while the lag still grows: the backlog of the sample
/// before drains meanwhile.
pub const LAG_SETTLE_MS: f64 = 1_000.0;
/// A page that has kept up (lag under [`LAG_OK_US`]) for this long since its last step tries
/// one step finer again.
pub const LAG_RECOVER_MS: f64 = 15_000.0;
/// See [`LAG_RECOVER_MS`].
pub const LAG_OK_US: f64 = 250_000.0;
/// The panel's *Start* paces the load at this many calls/s until the person moves the rate
/// slider. A closed loop is a click away; as the one-click default it took both cores of a
/// small machine, and the page beside it drew 1 to 2 frames a second (found by a review); at
/// 2,000 calls/s the page keeps 60 fps there and the diagram still draws 200 calls a second.
pub const DEFAULT_RATE: u64 = 2_000;
/// The rates of the rate slider (calls/s in total); index 0 is the closed loop.
pub const RATES: [u64; 14] = [
    0, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// What the load panel starts with.
pub fn default_settings() -> LoadSettings {
    LoadSettings {
        clients: 16,
        rate: DEFAULT_RATE,
        locks: 16,
        distribution: LoadDistribution::Uniform,
        unlock_share: 0.5,
    }
}

/// One `load_stats` window, at the time it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_us: u64,
    pub ops_per_s: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub calls: u64,
    pub failed: u64,
}

/// What a vertical line on the charts marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Crash,
    Fault,
    /// A server's new role (the backup taking over).
    Failover,
    /// The supervisor's timing of a failover (a `failover` event): drawn as a failover.
    Timed,
    Reset,
}

impl MarkKind {
    /// Whose label the charts keep when labels crowd ([`label_rows`]): what happened to the
    /// servers before what was done to them.
    pub fn priority(self) -> u8 {
        match self {
            MarkKind::Crash | MarkKind::Timed => 3,
            MarkKind::Failover => 2,
            MarkKind::Fault => 1,
            MarkKind::Reset => 0,
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            MarkKind::Crash => "crash",
            MarkKind::Fault => "fault",
            MarkKind::Failover | MarkKind::Timed => "failover",
            MarkKind::Reset => "reset",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub t_us: u64,
    pub kind: MarkKind,
    /// What the chart prints by the line: at most [`LABEL_CHARS`] characters.
    pub label: String,
    /// The whole text, for the line's tooltip.
    pub detail: String,
}

/// How soon after a reset its `faults_changed` comes (the supervisor publishes it within the
/// same command, microseconds later).
const RESET_FAULT_US: u64 = 50_000;

/// The longest marker label, in characters (about 110 px at the charts' 10 px font): a fault
/// plan's change can be a sentence, which printed whole ran over its neighbours.
pub const LABEL_CHARS: usize = 18;

/// `text` cut to [`LABEL_CHARS`] characters, with an ellipsis when cut.
fn short_label(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The marker an event makes on the charts, if any: a server's crash (not a reset's: the reset
/// is marked once), a change of the fault plan, a server's new role, a reset.
pub fn marker_of(e: &Event) -> Option<Marker> {
    // The server sends the same kinds as a snapshot's marks.
    if !e.is_chart_mark() {
        return None;
    }
    let node = e.node.as_str();
    let (kind, label) = match &e.kind {
        EventKind::Crashed { .. } => (MarkKind::Crash, format!("✕ {node} crashed")),
        EventKind::FaultsChanged { change, .. } => (MarkKind::Fault, format!("⚡ {change}")),
        EventKind::RoleChanged {
            role,
            serving_alone,
            ..
        } => {
            let alone = if *serving_alone && *role == Role::Primary {
                " alone"
            } else {
                ""
            };
            (
                MarkKind::Failover,
                format!("⇢ {node} {}{alone}", format::role(*role)),
            )
        }
        EventKind::ClusterReset { generation } => {
            (MarkKind::Reset, format!("reset · gen {generation}"))
        }
        EventKind::Failover {
            from,
            to,
            reason,
            since_us,
            window_us,
            client,
        } => {
            // The figure in the label, the story in the tooltip; the line where it ended (the
            // event itself can come later: see docs/protocol.md).
            let ms = format::millis(*window_us);
            return Some(Marker {
                t_us: since_us + window_us,
                kind: MarkKind::Timed,
                // As the failover timeline's chip says it (`format::millis`).
                label: short_label(&format!("failover {ms}")),
                detail: format!(
                    "failover in {ms}: {from} {reason}, then {to} answered c{client} (timed by the server over every load call)"
                ),
            });
        }
        _ => return None,
    };
    Some(Marker {
        t_us: e.t_us,
        kind,
        label: short_label(&label),
        detail: label,
    })
}

/// The charts' data: bounded rings, plus running totals since the page started watching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Charts {
    pub points: VecDeque<Point>,
    pub markers: VecDeque<Marker>,
    /// Load calls answered and given up, summed over the windows seen.
    pub calls: u64,
    pub failed: u64,
    /// The newest `load_stats` (its links and sampling are the diagram's aggregate view).
    pub latest: Option<LoadStats>,
}

impl Charts {
    pub fn push_stats(&mut self, t_us: u64, s: &LoadStats) {
        // A point from before the newest one (a replayed batch) would fold the line back.
        if self.points.back().is_some_and(|p| p.t_us > t_us) {
            return;
        }
        self.points.push_back(Point {
            t_us,
            ops_per_s: s.ops_per_s,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            calls: s.calls,
            failed: s.failed,
        });
        if self.points.len() > POINTS_CAP {
            self.points.pop_front();
        }
        self.calls += s.calls;
        self.failed += s.failed;
        self.latest = Some(s.clone());
    }

    /// Keeps the markers in time order, which the label rows need: the log's order is not
    /// always time's (a `crashed` comes with the kill's time once the process's last reports
    /// are read; a `failover` is drawn where the window ended).
    pub fn push_marker(&mut self, m: Marker) {
        // A reset heals the network and publishes the plan it leaves: that is the reset's own
        // doing, told in its tooltip, not a line of its own (two lines a reset crowded out the
        // crash's label after a few resets).
        // (The supervisor words that change "reset: ..."; a person's change sent right after
        // the reset is a marker of its own.)
        if m.kind == MarkKind::Fault && m.detail.starts_with("⚡ reset:") {
            if let Some(reset) = self.markers.iter_mut().rev().find(|o| {
                o.kind == MarkKind::Reset && o.t_us <= m.t_us && m.t_us - o.t_us <= RESET_FAULT_US
            }) {
                reset.detail = format!("{}; {}", reset.detail, m.detail);
                return;
            }
        }
        let at = self
            .markers
            .iter()
            .rposition(|o| o.t_us <= m.t_us)
            .map_or(0, |i| i + 1);
        self.markers.insert(at, m);
        if self.markers.len() > MARKERS_CAP {
            self.markers.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The `load_sample` to ask for at `ops_per_s` load calls per second, given the one asked now:
/// so that between [`DRAWN_MIN`] and [`DRAWN_MAX`] calls per second are drawn in full (all of
/// them at up to 200/s). A round number (1, 2, 5, 10, 20, 50, ...), kept while it still lands
/// in the band, so a load that wavers does not make the page ask again and again.
pub fn choose_sample(current: u32, ops_per_s: u64) -> u32 {
    if ops_per_s <= DRAWN_MAX {
        return 1;
    }
    let current = current.max(1);
    let drawn = ops_per_s / u64::from(current);
    if (DRAWN_MIN..=DRAWN_MAX).contains(&drawn) {
        return current;
    }
    // The smallest round N that draws at most 200/s; with 1-2-5 steps it draws at least 80/s.
    let mut n = 1;
    let mut steps = [2, 5, 10].iter().cycle();
    let mut decade = 1;
    while ops_per_s / n > DRAWN_MAX && n < u64::from(shared::MAX_LOAD_SAMPLE) {
        let s = steps.next().copied().unwrap_or(10);
        if s == 10 {
            decade *= 10;
            n = decade;
        } else {
            n = decade * s;
        }
    }
    n as u32
}

/// Which of `events` (a snapshot's, in `seq` order) a page sampling one load call in `every`
/// keeps, by the rule the gateway samples its frames by: an event of a load call is kept iff
/// [`shared::load_sample_key`] of its call is a multiple of `every`; a batch of forwards is
/// kept if any of its calls is, and whole when a person's call is among them; a delivery or a
/// loss goes with its send; everything else is kept. A delivery or loss whose send is older
/// than `events` is dropped: the gateway would follow that send's call, which the page cannot
/// know, and the diagram could not pair it with an arrow anyway.
///
/// A page gets its first snapshot before it can ask for a sample: under a heavy load that
/// snapshot holds every call of the last fraction of a second, and drawn in full it was the
/// tangle the aggregate view is there to avoid.
pub fn sampled_events(events: &[Event], every: u32) -> Vec<bool> {
    if every <= 1 {
        return vec![true; events.len()];
    }
    let every = u64::from(every);
    let call = |r: &shared::RequestId| -> bool {
        !shared::is_load_client(r.client) || shared::load_sample_key(r).is_multiple_of(every)
    };
    let msg = |m: &shared::Msg| -> bool {
        let reqs = m.reqs();
        reqs.is_empty()
            || reqs.iter().any(|r| !shared::is_load_client(r.client))
            || reqs.iter().any(&call)
    };
    let mut sends: std::collections::HashMap<shared::MsgId, bool> = Default::default();
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::OpInvoked { req, .. }
            | EventKind::OpCompleted { req, .. }
            | EventKind::OpFailed { req, .. }
            | EventKind::RpcFailed { req, .. }
            | EventKind::Executed { req, .. } => call(req),
            EventKind::MsgSent { msg_id, msg: m, .. } => {
                let keep = msg(m);
                sends.insert(*msg_id, keep);
                keep
            }
            EventKind::MsgHeld { msg: m, .. } => msg(m),
            EventKind::MsgDelivered { msg_id, .. } | EventKind::MsgLost { msg_id, .. } => {
                sends.get(msg_id).copied().unwrap_or(false)
            }
            _ => true,
        })
        .collect()
}

/// The next round sample above `n` (1, 2, 5, 10, 20, 50, ...), at most
/// [`shared::MAX_LOAD_SAMPLE`].
pub fn coarser(n: u32) -> u32 {
    let mut decade = 1u32;
    loop {
        for m in [1, 2, 5] {
            let step = decade.saturating_mul(m);
            if step > n || step >= shared::MAX_LOAD_SAMPLE {
                return step.min(shared::MAX_LOAD_SAMPLE);
            }
        }
        decade = decade.saturating_mul(10);
    }
}

/// The next round sample below `n` (1 stays 1).
pub fn finer(n: u32) -> u32 {
    let mut best = 1;
    let mut step = 1;
    while step < n {
        best = step;
        step = coarser(step);
    }
    best
}

/// Ticks for a linear axis from 0: a round top at or above `max` and the ticks up to it
/// (3 or 4 of them, for a short chart: steps of 1, 2, 2.5 or 5 × 10^k).
pub fn linear_ticks(max: f64) -> (f64, Vec<f64>) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 3.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    (top, (0..=n).map(|i| i as f64 * step).collect())
}

/// Decades of a log axis in µs covering `lo..=hi`: at least 100 µs to 10 ms.
pub fn log_decades(lo_us: u64, hi_us: u64) -> (u32, u32) {
    let lo = (lo_us.max(1) as f64).log10().floor() as u32;
    let hi = (hi_us.max(1) as f64).log10().ceil() as u32;
    (lo.min(2), hi.max(4).max(lo + 1))
}

/// A latency tick's label: `100 µs`, `1 ms`, `10 ms`, `1 s`.
pub fn decade_label(exp: u32) -> String {
    match exp {
        0..=2 => format!("{} µs", 10u64.pow(exp)),
        3..=5 => format!("{} ms", 10u64.pow(exp - 3)),
        _ => format!("{} s", 10u64.pow(exp - 6)),
    }
}

/// A throughput tick's label: `0`, `500`, `5k`, `12.5k`.
pub fn rate_label(v: f64) -> String {
    if v >= 1000.0 {
        let k = v / 1000.0;
        if (k - k.round()).abs() < 0.05 {
            format!("{}k", k.round())
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{}", v.round())
    }
}

/// Time ticks for a window `t0..t1` (µs): round seconds, 5 or 6 of them.
pub fn time_ticks(t0: u64, t1: u64) -> Vec<u64> {
    let span = t1.saturating_sub(t0).max(1);
    let step = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300]
        .iter()
        .map(|s| s * 1_000_000u64)
        .find(|s| span / s <= 6)
        .unwrap_or(600_000_000);
    let first = t0.div_ceil(step) * step;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= t1)
        .collect()
}

/// The plot area of one chart, in its SVG's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    /// The time the left and right edges stand for.
    pub t0: u64,
    pub t1: u64,
}

impl Frame {
    pub fn x(&self, t_us: u64) -> f64 {
        let span = self.t1.saturating_sub(self.t0).max(1) as f64;
        self.left + (t_us.saturating_sub(self.t0) as f64 / span).min(1.0) * self.width
    }

    /// The time under pixel `x`.
    pub fn t_at(&self, x: f64) -> u64 {
        let f = ((x - self.left) / self.width.max(1.0)).clamp(0.0, 1.0);
        self.t0 + (f * self.t1.saturating_sub(self.t0) as f64) as u64
    }
}

/// The time window the charts show: the points of the last [`WINDOW_US`], on an axis at least
/// [`MIN_WINDOW_US`] long that starts at the first of them (so a fresh line grows from the left
/// and the axis stretches with it up to a minute, then scrolls).
pub fn window(points: &VecDeque<Point>) -> Option<(u64, u64)> {
    let first = points.front()?.t_us;
    let last = points.back()?.t_us;
    let span = (last - first).clamp(MIN_WINDOW_US, WINDOW_US);
    let t1 = last.max(first + span);
    Some((t1 - span, t1))
}

/// Polylines (SVG `points` strings) of `y` over the points in the frame's window; a gap of more
/// than a second between two points (the load was stopped), or a point without a value (no
/// call answered in its window has a latency), breaks the line.
pub fn polylines(
    points: &VecDeque<Point>,
    f: &Frame,
    y: impl Fn(&Point) -> Option<f64>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev: Option<u64> = None;
    for p in points.iter().filter(|p| p.t_us >= f.t0 && p.t_us <= f.t1) {
        let gap = prev.is_some_and(|t| p.t_us - t > 1_000_000);
        let Some(y) = y(p) else {
            prev = None;
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        };
        if gap && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&format!("{:.1},{:.1}", f.x(p.t_us), y));
        prev = Some(p.t_us);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The point nearest to time `t` (the hover readout).
pub fn nearest(points: &VecDeque<Point>, t: u64) -> Option<&Point> {
    points.iter().min_by_key(|p| p.t_us.abs_diff(t))
}

/// The point a key press moves the charts' readout to: from the point nearest `at` (or from the
/// newest, when none is read out) one step left (`back`) or right; `None` past either end.
pub fn step_point(points: &VecDeque<Point>, at: Option<u64>, back: bool) -> Option<u64> {
    let i = match at {
        None => return points.back().map(|p| p.t_us),
        Some(t) => {
            points
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.t_us.abs_diff(t))?
                .0
        }
    };
    let j = if back { i.checked_sub(1)? } else { i + 1 };
    points.get(j).map(|p| p.t_us)
}

/// Space kept between two labels in one row, in px.
const LABEL_GAP: f64 = 5.0;

/// Rows for marker labels so two labels never sit on each other: each label, the span
/// `(left, right)` in px it takes (right of its line, or left of it near the right edge), takes
/// the first of `rows` rows where it overlaps no label; when none is free, it gets no row (its
/// line is drawn without a label; the tooltip still tells). Labels are placed by `priority`
/// first (higher first), then left to right: a crash or a timed failover keeps its label when
/// a run of resets took the rows before it.
pub fn label_rows(spans: &[(f64, f64)], priority: &[u8], rows: usize) -> Vec<Option<usize>> {
    let mut placed: Vec<Vec<(f64, f64)>> = vec![Vec::new(); rows.max(1)];
    let mut order: Vec<usize> = (0..spans.len()).collect();
    // Equal priorities keep their left-to-right order (by index: no stable sort, whose own
    // copy in the wasm costs kilobytes).
    order.sort_unstable_by_key(|i| {
        (
            std::cmp::Reverse(priority.get(*i).copied().unwrap_or(0)),
            *i,
        )
    });
    let mut out = vec![None; spans.len()];
    for i in order {
        let (a, b) = spans[i];
        if let Some(r) = placed.iter().position(|row| {
            row.iter()
                .all(|(c, d)| a >= d + LABEL_GAP || c >= &(b + LABEL_GAP))
        }) {
            placed[r].push((a, b));
            out[i] = Some(r);
        }
    }
    out
}

/// The settings in words: `16 clerks · closed loop · 16 locks · 50% unlock`.
pub fn describe(s: &LoadSettings) -> String {
    let rate = if s.rate == 0 {
        "closed loop".to_owned()
    } else {
        format!("{} calls/s", format::count(s.rate))
    };
    let locks = match s.distribution {
        LoadDistribution::Hot => "one hot lock".to_owned(),
        LoadDistribution::Uniform => format::counted(s.locks.into(), "lock"),
    };
    format!(
        "{} · {rate} · {locks} · {}% unlock",
        format::counted(s.clients.into(), "clerk"),
        // `+ 0.0`: -0.0 (accepted, it is 0) reads "0%", not "-0%".
        (s.unlock_share * 100.0).round() + 0.0
    )
}

/// The note the diagram shows while it draws a sample of the load: `aggregated: 1 call in 50
/// drawn in full; 4 936 calls/s`.
pub fn aggregate_note(sample_every: u32, ops_per_s: u64, catching_up: bool) -> String {
    format!(
        "aggregated: 1 call in {} drawn in full; {} calls/s{}",
        format::count(sample_every.into()),
        format::count(ops_per_s),
        if catching_up {
            " · fewer while this page catches up"
        } else {
            ""
        }
    )
}

/// Per second, from a count over a window of `window_ms`.
pub fn per_second(n: u64, window_ms: u64) -> u64 {
    n.saturating_mul(1000) / window_ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{CrashCause, FaultPlan, NodeId};

    fn stats(ops: u64) -> LoadStats {
        LoadStats {
            window_ms: 250,
            calls: ops / 4,
            ok: ops / 4,
            failed: 0,
            ops_per_s: ops,
            p50_us: 300,
            p99_us: 1200,
            sample_every: 1,
            links: vec![],
            total_ok: ops / 4,
            total_failed: 0,
        }
    }

    fn ev(t_us: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq: 1,
            t_us,
            node: NodeId::from(node),
            kind,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_points_and_the_totals_of_all() {
        let mut c = Charts::default();
        for i in 0..(POINTS_CAP as u64 + 20) {
            c.push_stats(i * 250_000, &stats(400));
        }
        assert_eq!(c.points.len(), POINTS_CAP);
        assert_eq!(
            c.points.front().unwrap().t_us,
            20 * 250_000,
            "the oldest went"
        );
        assert_eq!(
            c.calls,
            (POINTS_CAP as u64 + 20) * 100,
            "totals count every window"
        );
        // An older point (a replayed batch) is not drawn backwards.
        c.push_stats(0, &stats(1));
        assert_eq!(c.points.back().unwrap().ops_per_s, 400);
        for i in 0..(MARKERS_CAP + 5) {
            c.push_marker(Marker {
                t_us: i as u64,
                kind: MarkKind::Fault,
                label: String::new(),
                detail: String::new(),
            });
        }
        assert_eq!(c.markers.len(), MARKERS_CAP);
        assert_eq!(c.markers.front().unwrap().t_us, 5);
    }

    /// Found with the timed failover: a marker drawn earlier than the one before it got no
    /// label row (the rows are handed out left to right).
    #[test]
    fn markers_pushed_out_of_time_order_are_kept_in_it() {
        let mut c = Charts::default();
        for t_us in [10, 30, 20, 5, 30] {
            c.push_marker(Marker {
                t_us,
                kind: MarkKind::Crash,
                label: t_us.to_string(),
                detail: String::new(),
            });
        }
        let order: Vec<u64> = c.markers.iter().map(|m| m.t_us).collect();
        assert_eq!(order, vec![5, 10, 20, 30, 30]);
    }

    #[test]
    fn crashes_faults_failovers_and_resets_are_markers() {
        let crash = ev(
            5,
            "s1",
            EventKind::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        );
        let m = marker_of(&crash).unwrap();
        assert_eq!(
            (m.kind, m.label.as_str(), m.t_us),
            (MarkKind::Crash, "✕ s1 crashed", 5)
        );
        let by_reset = ev(
            5,
            "s1",
            EventKind::Crashed {
                pid: 1,
                cause: CrashCause::Reset,
                req: None,
            },
        );
        assert_eq!(marker_of(&by_reset), None, "the reset itself is the marker");
        let role = ev(
            6,
            "s2",
            EventKind::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "x".into(),
            },
        );
        assert_eq!(marker_of(&role).unwrap().label, "⇢ s2 primary alone");
        let fault = ev(
            7,
            "supervisor",
            EventKind::FaultsChanged {
                plan: FaultPlan::default(),
                change: "cut s1 → s2".into(),
            },
        );
        assert_eq!(marker_of(&fault).unwrap().kind, MarkKind::Fault);
        let reset = ev(8, "supervisor", EventKind::ClusterReset { generation: 2 });
        assert_eq!(marker_of(&reset).unwrap().label, "reset · gen 2");
        // The server's own timing of a failover: the figure, whatever calls the page drew.
        let timed = ev(
            9,
            "supervisor",
            EventKind::Failover {
                from: "s1".into(),
                to: "s2".into(),
                reason: "crashed".into(),
                since_us: 4,
                window_us: 1_340,
                client: 1003,
            },
        );
        let m = marker_of(&timed).unwrap();
        assert_eq!(
            (m.kind, m.label.as_str(), m.t_us),
            (MarkKind::Timed, "failover 1.3 ms", 1_344)
        );
        assert!(
            m.detail.contains("s1 crashed, then s2 answered c1003"),
            "{}",
            m.detail
        );
        let stats_ev = ev(9, "load", EventKind::LoadStats(stats(10)));
        assert_eq!(marker_of(&stats_ev), None);
    }

    #[test]
    fn the_sample_keeps_50_to_200_load_calls_a_second_in_full() {
        assert_eq!(choose_sample(1, 0), 1);
        assert_eq!(choose_sample(1, 150), 1, "a light load is drawn whole");
        assert_eq!(choose_sample(50, 200), 1);
        for ops in [201, 450, 1_000, 4_936, 18_000, 73_000, 250_000] {
            let n = choose_sample(1, ops);
            let drawn = ops / u64::from(n);
            assert!(
                (DRAWN_MIN..=DRAWN_MAX).contains(&drawn),
                "{ops}/s: 1 in {n} draws {drawn}/s"
            );
            assert!(
                [1, 2, 5].contains(&(n / 10u32.pow((n as f64).log10().floor() as u32))),
                "{n} is round"
            );
        }
        assert_eq!(choose_sample(1, 4_936), 50);
        // Kept while it still draws 50-200/s: 4 936 then 6 000 calls/s stay at 1 in 50.
        assert_eq!(choose_sample(50, 6_000), 50);
        assert_eq!(choose_sample(50, 2_600), 50);
        assert_eq!(choose_sample(50, 2_400), 20, "below 50 drawn: ask for more");
    }

    #[test]
    fn axes_have_round_ticks() {
        let (top, ticks) = linear_ticks(4_936.0);
        assert_eq!(top, 6_000.0);
        assert_eq!(ticks, vec![0.0, 2e3, 4e3, 6e3]);
        let (top, ticks) = linear_ticks(17_300.0);
        assert_eq!(top, 20_000.0);
        assert_eq!(ticks, vec![0.0, 1e4, 2e4]);
        let (top, ticks) = linear_ticks(14_000.0);
        assert_eq!((top, ticks.len()), (15_000.0, 4));
        assert_eq!(linear_ticks(0.0).0, 1.0, "an empty chart still has an axis");
        assert_eq!(log_decades(310, 1_200), (2, 4), "100 µs to 10 ms at least");
        assert_eq!(log_decades(40, 850_000), (1, 6));
        assert_eq!(decade_label(2), "100 µs");
        assert_eq!(decade_label(3), "1 ms");
        assert_eq!(decade_label(6), "1 s");
        assert_eq!(rate_label(12_500.0), "12.5k");
        assert_eq!(rate_label(5_000.0), "5k");
        assert_eq!(rate_label(750.0), "750");
        assert_eq!(
            time_ticks(1_500_000, 61_500_000),
            vec![10_000_000, 20_000_000, 30_000_000, 40_000_000, 50_000_000, 60_000_000]
        );
    }

    #[test]
    fn the_window_follows_the_newest_point_and_a_stop_breaks_the_line() {
        let mut c = Charts::default();
        for i in 0..8 {
            c.push_stats(10_000_000 + i * 250_000, &stats(1000));
        }
        // Resumed 5 s later.
        for i in 0..4 {
            c.push_stats(17_000_000 + i * 250_000, &stats(2000));
        }
        let (t0, t1) = window(&c.points).unwrap();
        assert_eq!(
            (t0, t1),
            (10_000_000, 30_000_000),
            "20 s at least, from the first point"
        );
        let f = Frame {
            left: 40.0,
            top: 0.0,
            width: 600.0,
            height: 100.0,
            t0,
            t1,
        };
        let lines = polylines(&c.points, &f, |p| Some(p.ops_per_s as f64 / 100.0));
        assert_eq!(lines.len(), 2, "the stop is a gap: {lines:?}");
        assert_eq!(lines[0].split(' ').count(), 8);
        // A window with no answer has no latency: the line breaks there rather than dive to 0.
        let lines = polylines(&c.points, &f, |p| (p.t_us != 11_000_000).then_some(1.0));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].split(' ').count(), 4);
        assert!(f.x(t1) <= 640.0 && f.x(t0) >= 40.0);
        assert_eq!(nearest(&c.points, 17_100_000).unwrap().ops_per_s, 2000);
        // Two minutes later the window is the last minute only.
        let mut late = Charts::default();
        for i in 0..480 {
            late.push_stats(i * 250_000, &stats(10));
        }
        let (t0, t1) = window(&late.points).unwrap();
        assert_eq!(t1 - t0, WINDOW_US);
        assert_eq!(t1, 479 * 250_000);
    }

    #[test]
    fn arrow_keys_step_the_readout_through_the_points() {
        let mut c = Charts::default();
        for t in [10, 20, 30] {
            c.push_stats(t, &stats(t));
        }
        let p = &c.points;
        assert_eq!(step_point(p, None, true), Some(30), "starts at the newest");
        assert_eq!(step_point(p, Some(30), true), Some(20));
        assert_eq!(step_point(p, Some(21), false), Some(30), "from the nearest");
        assert_eq!(step_point(p, Some(10), true), None);
        assert_eq!(step_point(p, Some(30), false), None);
        assert_eq!(step_point(&VecDeque::new(), None, false), None);
    }

    #[test]
    fn coarser_and_finer_step_through_round_samples() {
        let mut up = vec![1];
        while *up.last().unwrap() < 1_000 {
            up.push(coarser(*up.last().unwrap()));
        }
        assert_eq!(up, [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000]);
        assert_eq!(coarser(7), 10, "from between two steps, the next one up");
        assert_eq!(coarser(shared::MAX_LOAD_SAMPLE), shared::MAX_LOAD_SAMPLE);
        let mut down = vec![1_000];
        while *down.last().unwrap() > 1 {
            down.push(finer(*down.last().unwrap()));
        }
        assert_eq!(down, [1_000, 500, 200, 100, 50, 20, 10, 5, 2, 1]);
        assert_eq!(finer(7), 5);
        assert_eq!(finer(1), 1);
    }

    /// Labels 85 px wide to the right of their lines at `xs`.
    fn right_of(xs: &[f64]) -> Vec<(f64, f64)> {
        xs.iter().map(|x| (*x, x + 85.0)).collect()
    }

    #[test]
    fn marker_labels_close_together_take_other_rows() {
        assert_eq!(
            label_rows(&right_of(&[10.0, 30.0, 200.0, 215.0, 230.0]), &[0; 5], 3),
            [Some(0), Some(1), Some(0), Some(1), Some(2)]
        );
        // Rows full: no label rather than two on top of each other (the review found fault
        // labels printed over a crash's at 1280 px).
        assert_eq!(
            label_rows(&right_of(&[0.0, 1.0, 2.0, 3.0, 95.0]), &[0; 5], 2),
            [Some(0), Some(1), None, None, Some(0)]
        );
    }

    /// Found by review: near the right edge a label is drawn to the left of its line, over a
    /// label 120-230 px to its left ("reset · ge✕ s1 crashed").
    #[test]
    fn a_label_drawn_left_of_its_line_takes_another_row() {
        let spans = [(500.0, 615.0), (540.0, 655.0)];
        assert_eq!(label_rows(&spans, &[0, 0], 3), [Some(0), Some(1)]);
        assert_eq!(label_rows(&spans, &[0, 0], 1), [Some(0), None]);
    }

    /// Found by review: after a few resets under load the crash, the new primary and the timed
    /// failover came right after the resets' labels, found every row taken, and lost theirs;
    /// with two rows (a window under 900 px) the timed failover lost its label to the crash
    /// and the role change.
    #[test]
    fn a_crash_keeps_its_label_after_a_run_of_resets() {
        let kinds = [
            MarkKind::Reset,
            MarkKind::Reset,
            MarkKind::Reset,
            MarkKind::Crash,
            MarkKind::Failover,
            MarkKind::Timed,
        ];
        let xs = [0.0, 40.0, 80.0, 100.0, 100.5, 101.0];
        let prio: Vec<u8> = kinds.iter().map(|k| k.priority()).collect();
        let spans: Vec<(f64, f64)> = xs.iter().map(|x| (*x, x + 115.0)).collect();
        let rows = label_rows(&spans, &prio, 3);
        assert_eq!(&rows[3..], [Some(0), Some(2), Some(1)], "{rows:?}");
        assert_eq!(&rows[..3], [None, None, None], "{rows:?}");
        let two = label_rows(&spans, &prio, 2);
        assert_eq!(&two[3..], [Some(0), None, Some(1)], "{two:?}");
    }

    #[test]
    fn the_plan_a_reset_leaves_is_told_by_the_reset_marker() {
        let mark = |t_us, kind, detail: &str| Marker {
            t_us,
            kind,
            label: detail.into(),
            detail: detail.into(),
        };
        let mut c = Charts::default();
        c.push_marker(mark(1_000, MarkKind::Reset, "reset · gen 2"));
        c.push_marker(mark(
            1_010,
            MarkKind::Fault,
            "⚡ reset: the network is healed",
        ));
        assert_eq!(c.markers.len(), 1);
        assert_eq!(
            c.markers[0].detail,
            "reset · gen 2; ⚡ reset: the network is healed"
        );
        // A change of the plan a person makes, even right after the reset (found by review: a
        // set_link sent without waiting lost its line), is a marker of its own.
        c.push_marker(mark(1_020, MarkKind::Fault, "⚡ link * → s1: drop 100%"));
        c.push_marker(mark(900_000, MarkKind::Fault, "⚡ cut s1 → s2"));
        assert_eq!(c.markers.len(), 3);
    }

    #[test]
    fn a_long_marker_label_is_cut_and_the_tooltip_keeps_it_whole() {
        let change = "link * -> s1: drop 30%, duplicate 10%, delay 200±50 ms".to_owned();
        let e = ev(
            7,
            "supervisor",
            EventKind::FaultsChanged {
                change: change.clone(),
                plan: Default::default(),
            },
        );
        let m = marker_of(&e).unwrap();
        assert_eq!(m.detail, format!("⚡ {change}"));
        assert_eq!(m.label.chars().count(), LABEL_CHARS);
        assert!(m.label.ends_with('…') && m.detail.starts_with(m.label.trim_end_matches('…')));
        // A short one is left whole.
        let crash = marker_of(&ev(
            5,
            "s1",
            EventKind::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        ))
        .unwrap();
        assert_eq!(crash.label, crash.detail);
    }

    #[test]
    fn settings_and_the_aggregate_note_read_in_words() {
        assert_eq!(
            describe(&default_settings()),
            "16 clerks · 2\u{2009}000 calls/s · 16 locks · 50% unlock"
        );
        let hot = LoadSettings {
            clients: 1,
            rate: 5000,
            distribution: LoadDistribution::Hot,
            unlock_share: 0.25,
            ..default_settings()
        };
        assert_eq!(
            describe(&hot),
            "1 clerk · 5\u{2009}000 calls/s · one hot lock · 25% unlock"
        );
        assert_eq!(
            aggregate_note(50, 4936, false),
            "aggregated: 1 call in 50 drawn in full; 4\u{2009}936 calls/s"
        );
        assert!(aggregate_note(50, 4936, true).ends_with("fewer while this page catches up"));
        assert_eq!(per_second(4000, 250), 16_000);
    }

    /// The page samples a snapshot as the gateway samples frames (`server/src/bus.rs`,
    /// `LoadTag`): a call's own events by its key, a batch by any of its calls and whole with a
    /// person's, a delivery or loss with its send.
    #[test]
    fn a_snapshot_is_sampled_by_the_gateways_rule() {
        use crate::testkit::Script;
        use shared::{ForwardOp, Msg, Op, RequestId};
        let op = |c: u32, seq: u64| ForwardOp {
            req: RequestId::new(c, seq),
            op: Op::Lock,
            lock: "a".into(),
        };
        let batch = |ops: Vec<ForwardOp>| Msg::ForwardBatch { ops };
        let mut s = Script::default();
        s.sent(1, "s1", "s2", batch(vec![op(1001, 9), op(1002, 7)])) // 1 010, 1 009: one sampled
            .sent(2, "s1", "s2", batch(vec![op(1002, 8), op(1003, 9)])) // 1 010, 1 012 at 5
            .sent(3, "s1", "s2", batch(vec![op(1001, 1), op(1, 1)])) // a person's call
            .sent(4, "s1", "s2", batch(vec![op(1001, 1), op(1002, 2)])) // none sampled
            .delivered(4, "s1", "s2")
            .delivered(1, "s1", "s2")
            .delivered(90, "c1001", "s1") // sends older than the snapshot: dropped
            .delivered(91, "s1", "s2")
            .lost(92, "s1", "c1001");
        let keep = sampled_events(&s.events, 5);
        assert_eq!(
            keep,
            [true, true, true, false, false, true, false, false, false],
            "{:?}",
            s.events.iter().map(|e| e.kind.name()).collect::<Vec<_>>()
        );
        assert!(
            sampled_events(&s.events, 1).iter().all(|k| *k),
            "one in one keeps everything"
        );
    }

    /// The panel's one-click *Start* is paced, at a stop of the rate slider, light enough for
    /// the page beside it and heavy enough to be sampled.
    #[test]
    fn the_panels_default_load_is_paced_at_a_stop_of_the_slider() {
        let d = default_settings();
        assert!(d.rate > 0, "a closed loop starved the page on two cores");
        assert!(RATES.contains(&d.rate));
        assert!(choose_sample(1, d.rate) > 1, "still drawn as a sample");
    }
}
