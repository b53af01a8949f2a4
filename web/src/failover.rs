//! The failover timeline, folded from the event log as it arrives: who served clients when,
//! the crash moments, the clients' retries, and the *failover windows* (how long clients got
//! no answer because a server died).
//!
//! A failover window for a server X that crashed at `t_c`:
//! - the calls it *affects* are those pending at `t_c` and those that later saw X fail
//!   (`rpc_failed` with `server = X`);
//! - it starts at `t_c` if a call was pending then, else at the invocation of the first affected
//!   call (never before `t_c`): the moment a client started waiting in vain;
//! - it ends at the first `op_completed` of an affected call (answered by whichever server
//!   serves now), or at its `op_failed`.
//!
//! A crash nobody noticed (no call pending, none sent to X afterwards) has no window: nobody
//! waited. An `rpc_failed` without a crash (a hung server, later) opens a window at the call's
//! invocation. Pure: no I/O, no web types.

use std::collections::BTreeMap;
use std::rc::Rc;

use shared::{CrashCause, RequestId, Role};

use crate::events::{Ev, Kind};
use crate::symbols::Symbols;

const SEGMENTS_CAP: usize = 400;
const MARKS_CAP: usize = 500;
const WINDOWS_CAP: usize = 200;
const CANDIDATES_CAP: usize = 16;

/// What a server was doing for clients during a [`Segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Primary with a backup: serves and forwards.
    Primary,
    /// Applies forwards; serves nobody.
    Backup,
    /// Serves clients without a backup.
    Alone,
    /// Stepped down (its backup took over): serves nobody.
    Deposed,
    Dead,
}

impl Serving {
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::Primary => "primary",
            Serving::Backup => "backup",
            Serving::Alone => "serving alone",
            Serving::Deposed => "deposed",
            Serving::Dead => "dead",
        }
    }

    pub fn from_role(role: Role, alone: bool) -> Serving {
        match (role, alone) {
            (_, true) => Serving::Alone,
            (Role::Primary, false) => Serving::Primary,
            (Role::Backup, false) => Serving::Backup,
            (Role::Deposed, _) => Serving::Deposed,
        }
    }
}

/// One server in one state over `[from_us, to_us)`; `to_us: None` is still going on.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub server: Rc<str>,
    pub state: Serving,
    pub from_us: u64,
    pub to_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrashMark {
    pub t_us: u64,
    pub seq: u64,
    /// Global index of the `crashed` event in the history (where the diagram shows it).
    pub index: usize,
    pub server: Rc<str>,
    pub cause: CrashCause,
}

/// A clerk saw `from` fail and re-sent the same request to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub t_us: u64,
    pub seq: u64,
    /// Global index of the `rpc_failed` event in the history.
    pub index: usize,
    pub client: u32,
    pub req: RequestId,
    pub from: Rc<str>,
    pub to: Rc<str>,
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The server whose failure caused it.
    pub server: Rc<str>,
    pub crash_us: Option<u64>,
    pub start_us: u64,
    pub start_seq: u64,
    /// Global index, in the history, of the event that opened it (the crash or the failed call).
    pub start_index: usize,
    pub end_us: Option<u64>,
    pub end_seq: Option<u64>,
    /// Clients that waited.
    pub clients: Vec<u32>,
    /// Who answered at the end (`None`: still open, or the call gave up).
    pub answered_by: Option<Rc<str>>,
    /// The supervisor's own timing of this failover over every call (a `failover` event),
    /// which the chip shows: the page may draw only a sample of a load's calls.
    pub timed: Option<Timed>,
}

/// A `failover` event: the supervisor's timing of a primary's failover over every call.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    pub since_us: u64,
    pub window_us: u64,
    pub to: Rc<str>,
    pub client: u32,
    /// How the primary stopped: `crashed`, `went silent`, `paused`, `exited`, `did not answer`.
    pub reason: Rc<str>,
}

impl Window {
    /// How long clients got no answer; an open window counts up to `now_us`. The server's
    /// timing, when it sent one, over what the page saw.
    pub fn duration_us(&self, now_us: u64) -> u64 {
        if let Some(t) = &self.timed {
            return t.window_us;
        }
        self.end_us.unwrap_or(now_us).saturating_sub(self.start_us)
    }

    /// Where the timeline shades it: the server's timing when it sent one (the chip tells
    /// that figure), else what the page saw; an open window runs to `now_us`.
    pub fn band(&self, now_us: u64) -> (u64, u64) {
        match &self.timed {
            Some(t) => (t.since_us, t.since_us + t.window_us),
            None => (self.start_us, self.end_us.unwrap_or(now_us)),
        }
    }

    pub fn is_open(&self) -> bool {
        self.end_us.is_none()
    }

    /// What the timeline's chip says of it. Only a window opened by a real crash says the
    /// server crashed: one that clients ran into while the server lived (a lost message, a
    /// partition, a pause) says so, since a partition's story is exactly that the server did
    /// not fail.
    pub fn summary(&self) -> String {
        let clients = self
            .clients
            .iter()
            .map(|c| format!("c{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let cause = match self.crash_us {
            Some(_) => format!("{} crashed · {clients}", self.server),
            None => format!("{} did not crash, but {clients}", self.server),
        };
        if let Some(t) = &self.timed {
            return format!(
                "{} {} · then {} answered c{} (every call timed by the server)",
                self.server, t.reason, t.to, t.client
            );
        }
        match (&self.answered_by, self.is_open()) {
            (_, true) => format!("{cause} still waiting…"),
            (Some(by), false) => format!("{cause} got no answer · then {by} answered"),
            (None, false) => format!("{cause} got no answer, gave up"),
        }
    }
}

/// A failure of `server` that clients may run into. It outlives its first window: a client
/// that calls the dead server later waits in vain too, and that window belongs to the same crash.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    server: Rc<str>,
    crash_us: Option<u64>,
    /// Clients waiting in the open window (or pending at the crash, before it opened).
    affected: Vec<u32>,
    window: Option<Window>,
    /// The server was started again: the open window may still close, but a failure of the
    /// new process is not this crash's.
    retired: bool,
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failover {
    pub segments: Vec<Segment>,
    pub crashes: Vec<CrashMark>,
    pub retries: Vec<Retry>,
    /// Closed windows, oldest first.
    pub windows: Vec<Window>,
    candidates: Vec<Candidate>,
    /// Calls in progress: client -> (request, invoked at).
    pending: BTreeMap<u32, (RequestId, u64)>,
    /// When the current cluster started (the latest `cluster_reset`), if seen.
    pub cluster_since_us: Option<u64>,
}

/// The chips' order, as a key to sort by (ascending): the latest failure first (its crash, or
/// the window's start without one); within one crash, the window with the server's timing first
/// (it tells the failover; a later client that ran into the dead server made another window of
/// the same crash, which came first before: review), then the latest.
pub fn chip_order(w: &Window) -> (u64, u64) {
    let failure = w.crash_us.unwrap_or(w.start_us);
    let within = if w.timed.is_some() {
        0
    } else {
        u64::MAX - w.start_seq
    };
    (u64::MAX - failure, within)
}

/// A window the page opens now for `server` from `start_us` is the failure the supervisor may
/// have timed already (its `failover` can come first: it is published when the first client
/// anywhere is answered, before the sampled call the page follows). That timing, taken out of
/// the window made for it alone (see [`Failover::timed`]), goes to the page's window.
fn take_timed_only(windows: &mut Vec<Window>, server: &Rc<str>, start_us: u64) -> Option<Timed> {
    let i = windows.iter().rposition(|w| {
        w.server == *server
            && w.end_seq.is_none()
            && w.timed
                .as_ref()
                .is_some_and(|t| t.since_us <= start_us + NO_STOP_US)
            && w.end_us.is_some_and(|end| end + NO_STOP_US >= start_us)
    })?;
    windows.remove(i).timed
}

/// How far apart a timing of the supervisor and a window of the page can start and still be the
/// same failure (the model's wait for a stop that follows the clients' failures).
const NO_STOP_US: u64 = model::failover::NO_STOP_US;

fn push_capped<T>(v: &mut Vec<T>, item: T, cap: usize) {
    v.push(item);
    if v.len() > cap {
        v.remove(0);
    }
}

impl Failover {
    /// Whether `apply` would change anything for this kind (saves a copy per event).
    pub fn cares(kind: &Kind) -> bool {
        !matches!(
            kind,
            Kind::Sent { .. }
                | Kind::Delivered { .. }
                | Kind::Lost { .. }
                | Kind::Held { .. }
                | Kind::Executed { .. }
                | Kind::Armed { .. }
                | Kind::Dying { .. }
                | Kind::Paused { .. }
                | Kind::Resumed { .. }
                | Kind::ClientStarted { .. }
                | Kind::Faults { .. }
                | Kind::SlowMotion { .. }
        )
    }

    /// Every window: closed ones, then the ones still open.
    pub fn all_windows(&self) -> impl Iterator<Item = &Window> + '_ {
        self.windows
            .iter()
            .chain(self.candidates.iter().filter_map(|c| c.window.as_ref()))
    }

    /// Starts the timeline of a server known only from a snapshot (its start is not in the
    /// history): it has been in `state` since `t_us`, as far as the page knows.
    pub fn seed(&mut self, server: &str, state: Serving, t_us: u64) {
        if self.segments.iter().any(|s| &*s.server == server) {
            return;
        }
        self.set_state(&Rc::from(server), state, t_us);
    }

    /// Folds one event; `index` is its global index in the history.
    pub fn apply(&mut self, ev: &Ev, index: usize, syms: &Symbols) {
        let node = syms.name(ev.node);
        let about_process = matches!(ev.kind, Kind::Crashed { .. } | Kind::Exited { .. });
        if about_process && shared::NodeId::from(&*node).client_id().is_some() {
            // A client's own process died (or exited): its call ends with an `op_failed`,
            // which is what the timeline shows. Clients have no bar.
            return;
        }
        match &ev.kind {
            Kind::Started { role, .. } => {
                // A new incarnation: its predecessor's failure has nothing more to open; a
                // window still open stays until it closes.
                self.candidates.retain_mut(|c| {
                    if c.server != node {
                        return true;
                    }
                    c.retired = true;
                    c.window.is_some()
                });
                self.set_state(&node, Serving::from_role(*role, false), ev.t_us)
            }
            Kind::RoleChanged { role, alone, .. } => {
                self.set_state(&node, Serving::from_role(*role, *alone), ev.t_us)
            }
            Kind::Crashed { cause, .. } => {
                self.set_state(&node, Serving::Dead, ev.t_us);
                push_capped(
                    &mut self.crashes,
                    CrashMark {
                        t_us: ev.t_us,
                        seq: ev.seq,
                        index,
                        server: node.clone(),
                        cause: *cause,
                    },
                    MARKS_CAP,
                );
                if *cause != CrashCause::Reset {
                    let affected: Vec<u32> = self.pending.keys().copied().collect();
                    let window = (!affected.is_empty()).then(|| Window {
                        server: node.clone(),
                        crash_us: Some(ev.t_us),
                        start_us: ev.t_us,
                        start_seq: ev.seq,
                        start_index: index,
                        end_us: None,
                        end_seq: None,
                        clients: affected.clone(),
                        answered_by: None,
                        timed: take_timed_only(&mut self.windows, &node, ev.t_us),
                    });
                    push_capped(
                        &mut self.candidates,
                        Candidate {
                            server: node,
                            crash_us: Some(ev.t_us),
                            affected,
                            window,
                            retired: false,
                        },
                        CANDIDATES_CAP,
                    );
                }
            }
            Kind::Exited { .. } if self.state_of(&node) != Some(Serving::Dead) => {
                self.set_state(&node, Serving::Dead, ev.t_us);
            }
            Kind::Reset { .. } => {
                self.cluster_since_us = Some(ev.t_us);
                for c in self.candidates.drain(..) {
                    if let Some(mut w) = c.window {
                        w.end_us = Some(ev.t_us);
                        w.end_seq = Some(ev.seq);
                        push_capped(&mut self.windows, w, WINDOWS_CAP);
                    }
                }
                self.pending.clear();
            }
            Kind::Invoked { req, .. } => {
                self.pending.insert(req.client, (*req, ev.t_us));
            }
            Kind::Completed { req, server, .. } => {
                let by = syms.name(*server);
                self.finish(req.client, ev, Some(by));
                self.pending.remove(&req.client);
            }
            Kind::Failed { req, .. } => {
                self.finish(req.client, ev, None);
                self.pending.remove(&req.client);
            }
            Kind::RpcFailed {
                req,
                server,
                retry_to,
                ..
            } => {
                let failed = syms.name(*server);
                push_capped(
                    &mut self.retries,
                    Retry {
                        t_us: ev.t_us,
                        seq: ev.seq,
                        index,
                        client: req.client,
                        req: *req,
                        from: failed.clone(),
                        to: syms.name(*retry_to),
                    },
                    MARKS_CAP,
                );
                let invoked = self.pending.get(&req.client).map_or(ev.t_us, |(_, t)| *t);
                // A retired candidate still takes the clients it already has (they have been
                // waiting since the crash), not new ones.
                let pos = self.candidates.iter().rposition(|c| {
                    c.server == failed && (!c.retired || c.affected.contains(&req.client))
                });
                let cand = match pos {
                    Some(i) => &mut self.candidates[i],
                    None => {
                        push_capped(
                            &mut self.candidates,
                            Candidate {
                                server: failed.clone(),
                                crash_us: None,
                                affected: Vec::new(),
                                window: None,
                                retired: false,
                            },
                            CANDIDATES_CAP,
                        );
                        let last = self.candidates.len() - 1;
                        &mut self.candidates[last]
                    }
                };
                if !cand.affected.contains(&req.client) {
                    cand.affected.push(req.client);
                }
                match &mut cand.window {
                    Some(w) => {
                        if !w.clients.contains(&req.client) {
                            w.clients.push(req.client);
                        }
                    }
                    None => {
                        let start = invoked.max(cand.crash_us.unwrap_or(0));
                        let timed = take_timed_only(&mut self.windows, &failed, start);
                        cand.window = Some(Window {
                            server: failed,
                            crash_us: cand.crash_us,
                            start_us: start,
                            start_seq: ev.seq,
                            start_index: index,
                            end_us: None,
                            end_seq: None,
                            clients: vec![req.client],
                            answered_by: None,
                            timed,
                        });
                    }
                }
            }
            // The kinds `cares` leaves out.
            _ => {}
        }
    }

    /// Closes the open windows that `client`'s answer (or give-up) ends. The candidate stays
    /// (unless retired), so a later call that runs into the same dead server opens a window of
    /// the same crash.
    fn finish(&mut self, client: u32, ev: &Ev, by: Option<Rc<str>>) {
        for c in &mut self.candidates {
            if !c.affected.contains(&client) {
                continue;
            }
            if let Some(mut w) = c.window.take() {
                w.end_us = Some(ev.t_us);
                w.end_seq = Some(ev.seq);
                w.answered_by = by.clone();
                push_capped(&mut self.windows, w, WINDOWS_CAP);
                c.affected.clear();
            }
        }
        self.candidates.retain(|c| !c.retired || c.window.is_some());
    }

    /// The supervisor timed a failover of `from` (a `failover` event; `index`: where the
    /// history stands). It goes to the window of the same failure the page saw, the latest of
    /// `from`'s that overlaps it, or, when the page's sample drew no call that waited (yet), to
    /// a window of its own (`end_seq: None`, which no window the page closed has), so the chip
    /// tells the figure either way; a window the page opens later for the same failure takes it
    /// over ([`take_timed_only`]).
    pub fn timed(&mut self, from: &Rc<str>, timed: Timed, index: usize) {
        let end = timed.since_us + timed.window_us;
        let overlaps = |w: &Window| {
            w.server == *from && w.start_us <= end && w.end_us.is_none_or(|e| e >= timed.since_us)
        };
        if let Some(w) = self
            .candidates
            .iter_mut()
            .rev()
            .filter_map(|c| c.window.as_mut())
            .find(|w| overlaps(w))
        {
            w.timed = Some(timed);
            return;
        }
        if let Some(w) = self.windows.iter_mut().rev().find(|w| overlaps(w)) {
            w.timed = Some(timed);
            return;
        }
        // The page saw no call wait: the crash it saw, if any, is where the window starts.
        // The crash it was, if the page saw it: not a reset's kill, nor an earlier crash (found
        // by review: a pause was told as "crashed", and zoomed back to the last reset).
        let crash = self.crashes.iter().rev().find(|c| {
            &*timed.reason == "crashed"
                && c.server == *from
                && c.cause != CrashCause::Reset
                && c.t_us <= timed.since_us
                && timed.since_us - c.t_us <= NO_STOP_US
        });
        let window = Window {
            server: from.clone(),
            crash_us: crash.map(|c| c.t_us),
            start_us: timed.since_us,
            start_seq: crash.map_or(0, |c| c.seq),
            start_index: crash.map_or(index, |c| c.index),
            end_us: Some(end),
            end_seq: None,
            clients: vec![timed.client],
            answered_by: Some(timed.to.clone()),
            timed: Some(timed),
        };
        let at = self
            .windows
            .iter()
            .rposition(|w| w.start_us <= window.start_us)
            .map_or(0, |i| i + 1);
        self.windows.insert(at, window);
        if self.windows.len() > WINDOWS_CAP {
            self.windows.remove(0);
        }
    }

    fn state_of(&self, server: &str) -> Option<Serving> {
        self.segments
            .iter()
            .rev()
            .find(|s| &*s.server == server)
            .map(|s| s.state)
    }

    fn set_state(&mut self, server: &Rc<str>, state: Serving, t_us: u64) {
        if let Some(open) = self
            .segments
            .iter_mut()
            .rev()
            .find(|s| s.server == *server && s.to_us.is_none())
        {
            if open.state == state {
                return;
            }
            open.to_us = Some(t_us);
        }
        push_capped(
            &mut self.segments,
            Segment {
                server: server.clone(),
                state,
                from_us: t_us,
                to_us: None,
            },
            SEGMENTS_CAP,
        );
    }
}

/// The time range around the latest failover: its crash, every window that crash caused, and
/// a margin of twice the longest of them (at least 20 ms) on each side.
pub fn around_latest_failover(windows: &[&Window], now_us: u64) -> Option<(u64, u64)> {
    let latest = windows.iter().max_by_key(|w| w.start_seq)?;
    let group: Vec<&&Window> = windows
        .iter()
        .filter(|w| {
            std::ptr::eq(**w, *latest)
                || (w.server == latest.server
                    && w.crash_us.is_some()
                    && w.crash_us == latest.crash_us)
        })
        .collect();
    let from = group
        .iter()
        .map(|w| w.crash_us.unwrap_or(w.start_us).min(w.start_us))
        .min()?;
    let to = group.iter().map(|w| w.end_us.unwrap_or(now_us)).max()?;
    let longest = group
        .iter()
        .map(|w| w.duration_us(now_us))
        .max()
        .unwrap_or(0);
    let pad = (2 * longest).max(20_000);
    Some((
        from.saturating_sub(pad),
        to.saturating_add(pad).min(now_us.max(to)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{history_of, Script};
    use shared::{EventKind as K, Msg, Op};

    /// The most recent window (open or closed).
    fn latest_window(f: &Failover) -> Option<&Window> {
        f.all_windows().max_by_key(|w| w.start_seq)
    }

    fn fold(s: &Script) -> Failover {
        (*history_of(s).failover).clone()
    }

    fn started(s: &mut Script) {
        s.ev(
            "s1",
            K::ProcessStarted {
                pid: 1,
                role: Role::Primary,
                port: 1,
            },
        )
        .ev(
            "s2",
            K::ProcessStarted {
                pid: 2,
                role: Role::Backup,
                port: 2,
            },
        );
    }

    fn invoke(s: &mut Script, c: u32, seq: u64, server: &str) {
        let cn = format!("c{c}");
        s.ev(
            &cn,
            K::OpInvoked {
                client: c,
                req: RequestId::new(c, seq),
                op: Op::Unlock,
                lock: "a".into(),
                tag: None,
                server: server.into(),
            },
        );
    }

    fn completed(s: &mut Script, c: u32, seq: u64, server: &str) {
        let cn = format!("c{c}");
        s.ev(
            &cn,
            K::OpCompleted {
                client: c,
                op: Op::Unlock,
                lock: "a".into(),
                tag: None,
                ok: true,
                req: RequestId::new(c, seq),
                server: server.into(),
                latency_us: 1,
                attempts: 2,
            },
        );
    }

    fn rpc_failed(s: &mut Script, c: u32, seq: u64) {
        let cn = format!("c{c}");
        s.ev(
            &cn,
            K::RpcFailed {
                client: c,
                req: RequestId::new(c, seq),
                server: "s1".into(),
                reason: "connection refused".into(),
                retry_to: "s2".into(),
            },
        );
    }

    /// A window that clients ran into while the server lived (a partition, a lost message, a
    /// pause) must not say the server failed; one opened by a crash says it crashed.
    #[test]
    fn a_window_says_crashed_only_when_the_server_crashed() {
        let mut s = Script::default();
        started(&mut s);
        s.at(1_000_000);
        invoke(&mut s, 2, 1, "s1");
        s.at(2_000_000);
        rpc_failed(&mut s, 2, 1);
        s.at(2_100_000);
        completed(&mut s, 2, 1, "s2");
        let f = fold(&s);
        let w = latest_window(&f).expect("a window");
        assert_eq!(w.crash_us, None);
        assert_eq!(
            w.summary(),
            "s1 did not crash, but c2 got no answer · then s2 answered"
        );

        s.at(3_000_000);
        invoke(&mut s, 1, 1, "s1");
        s.ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        );
        rpc_failed(&mut s, 1, 1);
        let f = fold(&s);
        let w = latest_window(&f).expect("a window");
        assert_eq!(w.summary(), "s1 crashed · c1 still waiting…");
    }

    #[test]
    fn crash_then_a_later_call_opens_the_window_at_the_invocation() {
        let mut s = Script::default();
        started(&mut s);
        s.call(1, 1, "s1", "s2", 1);
        s.at(1_000_000)
            .ev(
                "s1",
                K::Crashed {
                    pid: 1,
                    cause: CrashCause::Command,
                    req: None,
                },
            )
            .ev(
                "s1",
                K::ProcessExited {
                    pid: 1,
                    signal: Some(9),
                    code: None,
                },
            );
        s.at(3_000_000);
        invoke(&mut s, 1, 2, "s1");
        let invoked_at = s.t_us;
        s.at(invoked_at + 2_000);
        rpc_failed(&mut s, 1, 2);
        s.ev(
            "s2",
            K::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason: "client failed over".into(),
            },
        );
        s.at(invoked_at + 250_000);
        completed(&mut s, 1, 2, "s2");
        let answered_at = s.t_us;

        let f = fold(&s);
        assert_eq!(f.windows.len(), 1);
        let w = &f.windows[0];
        assert_eq!(&*w.server, "s1");
        assert_eq!(
            w.start_us, invoked_at,
            "the idle time after the crash is not counted"
        );
        assert_eq!(w.end_us, Some(answered_at));
        assert_eq!(w.duration_us(0), answered_at - invoked_at);
        assert_eq!(w.answered_by.as_deref(), Some("s2"));
        assert_eq!(w.clients, vec![1]);
        assert_eq!(f.crashes.len(), 1);
        assert_eq!(f.retries.len(), 1);
        assert_eq!(&*f.retries[0].to, "s2");

        let s1: Vec<Serving> = f
            .segments
            .iter()
            .filter(|g| &*g.server == "s1")
            .map(|g| g.state)
            .collect();
        assert_eq!(s1, vec![Serving::Primary, Serving::Dead]);
        let s2: Vec<Serving> = f
            .segments
            .iter()
            .filter(|g| &*g.server == "s2")
            .map(|g| g.state)
            .collect();
        assert_eq!(s2, vec![Serving::Backup, Serving::Alone]);
    }

    #[test]
    fn a_call_pending_at_the_crash_starts_the_window_at_the_crash() {
        let mut s = Script::default();
        started(&mut s);
        invoke(&mut s, 1, 1, "s1");
        let req = RequestId::new(1, 1);
        s.sent(
            1,
            "c1",
            "s1",
            Msg::Request {
                req,
                op: Op::Unlock,
                lock: "a".into(),
            },
        )
        .delivered(1, "c1", "s1");
        s.at(500_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::BeforeReply,
                req: Some(req),
            },
        );
        let crash_at = s.t_us;
        rpc_failed(&mut s, 1, 1);
        let f = fold(&s);
        let open = latest_window(&f).expect("an open window");
        assert!(open.is_open());
        assert_eq!(open.start_us, crash_at);
        assert_eq!(open.duration_us(crash_at + 40), 40);
        s.at(crash_at + 120_000);
        completed(&mut s, 1, 1, "s2");
        let f = fold(&s);
        assert_eq!(f.windows.len(), 1);
        assert_eq!(f.windows[0].duration_us(0), s.t_us - crash_at);
        assert!(latest_window(&f).is_some_and(|w| !w.is_open()));
    }

    fn timed(s: &mut Script, since_us: u64, window_us: u64, client: u32) {
        timed_for(s, "crashed", since_us, window_us, client);
    }

    fn timed_for(s: &mut Script, reason: &str, since_us: u64, window_us: u64, client: u32) {
        s.ev(
            "supervisor",
            K::Failover {
                from: "s1".into(),
                to: "s2".into(),
                reason: reason.into(),
                since_us,
                window_us,
                client,
            },
        );
    }

    /// The pair starts, and s1 is killed by a crash command at 0.5 s, returned.
    fn s1_crashes_at_half_a_second(s: &mut Script) -> u64 {
        started(s);
        s.at(500_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        );
        s.t_us
    }

    /// The pair starts, c1 calls s1, s1 is killed at 0.5 s (returned), and c1's call fails.
    fn c1_runs_into_a_crash_at_half_a_second(s: &mut Script) -> u64 {
        started(s);
        invoke(s, 1, 1, "s1");
        s.at(500_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        );
        let crash_at = s.t_us;
        rpc_failed(s, 1, 1);
        crash_at
    }

    /// Under a sampled load the page may see the crash and no call that waited through it: the
    /// supervisor's timing gives the window and its figure all the same.
    #[test]
    fn the_servers_timing_makes_the_window_the_sample_missed() {
        let mut s = Script::default();
        let crash_at = s1_crashes_at_half_a_second(&mut s);
        assert!(
            latest_window(&fold(&s)).is_none(),
            "nobody the page saw waited"
        );
        s.at(crash_at + 5_000);
        timed(&mut s, crash_at, 1_340, 1003);
        let f = fold(&s);
        let w = latest_window(&f).expect("the timed window");
        assert_eq!(
            (w.crash_us, w.start_us, w.end_us, w.duration_us(u64::MAX)),
            (Some(crash_at), crash_at, Some(crash_at + 1_340), 1_340)
        );
        assert_eq!(
            w.summary(),
            "s1 crashed · then s2 answered c1003 (every call timed by the server)"
        );
    }

    /// The page saw a sampled call wait longer than the first answer the supervisor saw: the
    /// window is the page's (its clients, its place in the diagram), the figure the server's.
    #[test]
    fn the_servers_timing_gives_the_figure_of_the_window_the_page_saw() {
        let mut s = Script::default();
        let crash_at = c1_runs_into_a_crash_at_half_a_second(&mut s);
        s.at(crash_at + 9_000);
        completed(&mut s, 1, 1, "s2");
        timed(&mut s, crash_at, 2_000, 1004);
        let f = fold(&s);
        assert_eq!(f.windows.len(), 1, "one window, not two");
        let w = &f.windows[0];
        assert_eq!(w.clients, vec![1]);
        assert_eq!(w.duration_us(u64::MAX), 2_000);
        assert!(w.summary().contains("every call timed"), "{}", w.summary());
    }

    /// Found by review: a pause timed by the server was told as "s1 crashed", taking the
    /// reset's kill a minute earlier as its crash, and the timeline zoomed back to it.
    #[test]
    fn a_timed_pause_is_no_crash() {
        let mut s = Script::default();
        started(&mut s);
        s.at(1_000_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Reset,
                req: None,
            },
        );
        s.at(60_000_000);
        timed_for(&mut s, "paused", 60_000_000, 2_500_000, 1005);
        let f = fold(&s);
        let w = latest_window(&f).expect("the timed window");
        assert_eq!(w.crash_us, None);
        assert_eq!(
            w.summary(),
            "s1 paused · then s2 answered c1005 (every call timed by the server)"
        );
        let all: Vec<&Window> = f.all_windows().collect();
        assert_eq!(
            around_latest_failover(&all, 63_000_000).map(|(a, _)| a > 50_000_000),
            Some(true)
        );
    }

    /// Found by review: the first chip was a later client's 0.5 ms run into the dead server,
    /// and the timed failover's chip came second, cut off at the panel's edge.
    #[test]
    fn the_timed_window_of_a_crash_is_the_first_chip() {
        let mut s = Script::default();
        let crash_at = c1_runs_into_a_crash_at_half_a_second(&mut s);
        s.at(crash_at + 1_300);
        completed(&mut s, 1, 1, "s2");
        timed(&mut s, crash_at, 1_300, 1);
        s.at(crash_at + 4_000);
        invoke(&mut s, 2, 1, "s1");
        rpc_failed(&mut s, 2, 1);
        s.at(crash_at + 4_500);
        completed(&mut s, 2, 1, "s2");
        let f = fold(&s);
        let all: Vec<&Window> = f.all_windows().collect();
        assert_eq!(all.len(), 2);
        let first = all.iter().min_by_key(|w| chip_order(w)).unwrap();
        assert_eq!(first.duration_us(u64::MAX), 1_300);
        assert!(first.timed.is_some());
    }

    /// The supervisor's timing can come before the sampled call the page follows has run into
    /// the dead server (found on the load's screenshots: two chips, 2.2 ms and 4.7 ms, for one
    /// failover). The page's window, opened later, takes the timing over: one chip.
    #[test]
    fn a_timing_that_came_first_goes_to_the_window_the_page_opens_after_it() {
        let mut s = Script::default();
        let crash_at = s1_crashes_at_half_a_second(&mut s);
        s.at(crash_at + 4_700);
        timed(&mut s, crash_at, 4_700, 1003);
        s.at(crash_at + 4_800);
        invoke(&mut s, 1, 1, "s1");
        rpc_failed(&mut s, 1, 1);
        s.at(crash_at + 5_000);
        completed(&mut s, 1, 1, "s2");
        let f = fold(&s);
        let all: Vec<&Window> = f.all_windows().collect();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].clients, vec![1]);
        assert_eq!(all[0].duration_us(u64::MAX), 4_700);
        assert_eq!(all[0].band(u64::MAX), (crash_at, crash_at + 4_700));
    }

    #[test]
    fn the_timeline_zooms_on_the_windows_of_the_latest_crash() {
        let w = |crash: u64, start: u64, end: u64, seq: u64| Window {
            server: Rc::from("s1"),
            crash_us: Some(crash),
            start_us: start,
            start_seq: seq,
            start_index: 0,
            end_us: Some(end),
            end_seq: Some(seq + 1),
            clients: vec![1],
            answered_by: Some(Rc::from("s2")),
            timed: None,
        };
        let old = w(1_000, 1_000, 2_000, 1);
        let a = w(5_000_000, 5_000_000, 5_003_000, 10);
        let b = w(5_000_000, 5_100_000, 5_200_000, 20);
        let windows = [&old, &a, &b];
        // From the crash to the last answer, and 2 x the longest window (100 ms) on each side.
        assert_eq!(
            around_latest_failover(&windows, 9_000_000),
            Some((5_000_000 - 200_000, 5_200_000 + 200_000))
        );
        let short = [&old];
        assert_eq!(
            around_latest_failover(&short, 9_000_000),
            Some((0, 22_000)),
            "at least 20 ms each side"
        );
        assert_eq!(around_latest_failover(&[], 1), None);
        // Windows without a crash (a client found the server dead long after) are not a group.
        let late1 = Window {
            crash_us: None,
            ..w(0, 60_000_000, 60_001_000, 30)
        };
        let late2 = Window {
            crash_us: None,
            ..w(0, 900_000_000, 900_001_000, 40)
        };
        assert_eq!(
            around_latest_failover(&[&late1, &late2], 1_000_000_000),
            Some((900_000_000 - 20_000, 900_001_000 + 20_000))
        );
    }

    /// The failover demo's pattern: c2 is pending when the armed primary dies, its retry is
    /// answered (first window), then c1's next call runs into the dead primary (second window).
    /// Both windows belong to the crash, so the default zoom shows the crash and both.
    #[test]
    fn a_later_call_into_the_dead_server_opens_a_window_of_the_same_crash() {
        let mut s = Script::default();
        started(&mut s);
        invoke(&mut s, 2, 1, "s1");
        s.at(500_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::BeforeReply,
                req: Some(RequestId::new(2, 1)),
            },
        );
        let crash_at = s.t_us;
        rpc_failed(&mut s, 2, 1);
        // The bus got the clerk's report before the supervisor's: the history places events
        // by time, so the `crashed` event carries the higher seq but comes first.
        let n = s.events.len();
        let (a, b) = (s.events[n - 2].seq, s.events[n - 1].seq);
        s.events[n - 2].seq = b;
        s.events[n - 1].seq = a;
        s.at(crash_at + 30_000);
        completed(&mut s, 2, 1, "s2");
        s.at(crash_at + 400_000);
        invoke(&mut s, 1, 1, "s1");
        let second_start = s.t_us;
        rpc_failed(&mut s, 1, 1);
        s.at(second_start + 10_000);
        completed(&mut s, 1, 1, "s2");
        let second_end = s.t_us;

        let h = history_of(&s);
        let f = &h.failover;
        assert_eq!(f.windows.len(), 2);
        assert_eq!(f.windows[0].start_us, crash_at);
        assert_eq!(f.windows[0].clients, vec![2]);
        assert_eq!(f.windows[1].start_us, second_start);
        assert_eq!(f.windows[1].clients, vec![1]);
        assert_eq!(
            f.windows[1].crash_us,
            Some(crash_at),
            "the second window still knows its crash"
        );
        let all: Vec<&Window> = f.all_windows().collect();
        let (from, to) = around_latest_failover(&all, second_end).expect("a failover");
        assert!(from <= crash_at, "the zoom shows the crash");
        assert!(to >= second_end, "and the end of the latest window");

        // Each mark leads to its own event, whatever the order of seqs in the history.
        for c in &f.crashes {
            let e = h.event(c.index).expect("the crash is in the history");
            assert!(matches!(e.kind, Kind::Crashed { .. }) && e.seq == c.seq);
        }
        for r in &f.retries {
            let e = h.event(r.index).expect("the retry is in the history");
            assert!(matches!(e.kind, Kind::RpcFailed { .. }) && e.seq == r.seq);
        }
        for w in &f.windows {
            assert_eq!(h.event(w.start_index).map(|e| e.seq), Some(w.start_seq));
        }
    }

    #[test]
    fn a_failure_of_a_restarted_server_is_not_its_old_crash() {
        let mut s = Script::default();
        started(&mut s);
        invoke(&mut s, 1, 1, "s1");
        s.at(100_000).ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Command,
                req: None,
            },
        );
        // s1 comes back while c1 still waits; then c1 is answered by s2.
        s.at(150_000).ev(
            "s1",
            K::ProcessStarted {
                pid: 3,
                role: Role::Backup,
                port: 3,
            },
        );
        rpc_failed(&mut s, 1, 1);
        s.at(200_000);
        completed(&mut s, 1, 1, "s2");
        // Much later the new s1 fails a call of c2: a failure of its own, not of the old crash.
        s.at(9_000_000);
        invoke(&mut s, 2, 1, "s1");
        rpc_failed(&mut s, 2, 1);
        let f = fold(&s);
        assert_eq!(
            f.windows.len(),
            1,
            "the crash's window closed when c1 was answered"
        );
        assert_eq!(f.windows[0].crash_us, Some(100_100));
        let open = latest_window(&f).expect("c2 waits");
        assert!(open.is_open());
        assert_eq!(open.clients, vec![2]);
        assert_eq!(
            open.crash_us, None,
            "not attributed to the crash before the restart"
        );
    }

    #[test]
    fn an_unnoticed_crash_and_a_reset_crash_have_no_window() {
        let mut s = Script::default();
        started(&mut s);
        s.ev(
            "s2",
            K::Crashed {
                pid: 2,
                cause: CrashCause::Command,
                req: None,
            },
        );
        s.ev(
            "s1",
            K::Crashed {
                pid: 1,
                cause: CrashCause::Reset,
                req: None,
            },
        )
        .ev("supervisor", K::ClusterReset { generation: 1 });
        s.call(1, 1, "s1", "s2", 1);
        let f = fold(&s);
        assert!(latest_window(&f).is_none());
        assert_eq!(f.crashes.len(), 2);
        let reset_at = s
            .events
            .iter()
            .find(|e| matches!(e.kind, K::ClusterReset { .. }))
            .map(|e| e.t_us);
        assert_eq!(
            f.cluster_since_us, reset_at,
            "the current cluster starts at the reset"
        );
    }
}
