//! A run as a ShiViz log (`GET /run.shiviz`): every event of the log on its process's line, with
//! a vector clock that carries the causality the run's messages carry.
//!
//! The layout is the one ShiViz reads from an uploaded file (its `js/shiviz.js`, the `#file`
//! handler): line 1 is the parsing regular expression, line 2 the delimiter between executions,
//! then the log. Each event takes two lines, as in ShiViz's default parser
//! (`(?<event>.*)\n(?<host>\S*) (?<clock>{.*})`), with the event's `seq` as a field in front:
//!
//! ```text
//! #(?<seq>\d+) (?<event>.*)\n(?<host>\S*) (?<clock>{.*})
//! === (?<trace>.*) ===
//! === generation 0 ===
//! #1 process_started pid 4242 as primary on port 40001
//! s1 {"s1":1}
//! ```
//!
//! The decisions, each pinned by a test:
//!
//! - **Hosts.** A host is a node of the log: servers (`s1`), clients (`c1`), and the
//!   supervisor and the checker, whose events (fault changes, resets, verdicts) are shown on
//!   lines of their own. Only messages carry causality here: the supervisor's control
//!   connections and the checker's reading of the log are not messages, so those two lines
//!   have no arrows (their order against the others is the log's, not a causal one).
//! - **Clocks.** Each event ticks its host's own entry by exactly 1. A `msg_delivered` (the
//!   network's second copy of a duplicated message too) first takes the max with the clock of
//!   its `msg_sent`. `msg_lost` and `msg_held` are the receiver's own events with no merge:
//!   the message did not reach the receiver's state machine. A delivery whose send is not in
//!   the same execution of the file (cut off by the bounded history, or sent before a reset)
//!   merges nothing. So a clock names only hosts with events, each at most at their count.
//! - **Restarts.** A restarted server (a new process, the same id) is the same host: its line
//!   continues, as on the page's lane; the `process_started` event says which pid it is.
//! - **Resets.** Each cluster generation is one ShiViz execution, labelled
//!   `generation N` by the delimiter line: clocks start at 1 again, and nothing crosses a reset.

use std::collections::{HashMap, HashSet};

use shared::{Event, EventKind, Msg, MsgId, VerdictStatus};

/// Line 1: ShiViz's parsing expression (the file upload wraps it in `^...$`, multiline).
pub const SHIVIZ_REGEX: &str = r"#(?<seq>\d+) (?<event>.*)\n(?<host>\S*) (?<clock>{.*})";

/// Line 2: the delimiter between executions; `trace` labels each one.
pub const SHIVIZ_DELIMITER: &str = "=== (?<trace>.*) ===";

/// Writes `events` (in log order) as a ShiViz log. `first_generation` is the cluster generation
/// the first event belongs to (each `cluster_reset` starts the one it names).
pub fn write_shiviz(events: &[Event], first_generation: u64) -> String {
    let mut out = String::with_capacity(64 + events.len() * 120);
    out.push_str(SHIVIZ_REGEX);
    out.push('\n');
    out.push_str(SHIVIZ_DELIMITER);
    out.push('\n');
    let mut exec = Execution::default();
    let mut labels = HashSet::new();
    let mut started = false;
    let mut generation = first_generation;
    for e in events {
        if let EventKind::ClusterReset { generation: g } = &e.kind {
            if started {
                generation = *g;
                exec = Execution::default();
                started = false;
            } else {
                // The file begins with this reset: it opens the generation it starts.
                generation = *g;
            }
        }
        if !started {
            let mut label = format!("generation {generation}");
            let mut n = 2;
            while !labels.insert(label.clone()) {
                // ShiViz refuses two executions with one name (a hand-edited log could
                // repeat a generation).
                label = format!("generation {generation} ({n})");
                n += 1;
            }
            out.push_str("=== ");
            out.push_str(&label);
            out.push_str(" ===\n");
            started = true;
        }
        let host = host_name(&e.node);
        out.push('#');
        out.push_str(&e.seq.to_string());
        out.push(' ');
        push_line(&mut out, &describe(e));
        out.push('\n');
        out.push_str(&host);
        out.push(' ');
        exec.tick(&host, e, &mut out);
        out.push('\n');
    }
    if !started {
        // ShiViz refuses an execution without events: an empty log says so in its one event.
        out.push_str(
            "=== no events ===\n#0 the server held no events\nsupervisor {\"supervisor\":1}\n",
        );
    }
    out
}

/// The vector clocks of one execution. Hosts are numbered in order of first event; a clock is
/// a dense vector over those numbers (a run has a handful of hosts), so copying one is one
/// allocation.
#[derive(Default)]
struct Execution {
    /// Host name -> number.
    index: HashMap<String, usize>,
    /// By number: the name as a JSON string (quoted, escaped).
    json_names: Vec<String>,
    clocks: Vec<Vec<u64>>,
    /// The clock of each message's send, for its deliveries.
    sends: HashMap<MsgId, Vec<u64>>,
}

impl Execution {
    /// Ticks `host` for `e` and writes its clock as JSON into `out`.
    fn tick(&mut self, host: &str, e: &Event, out: &mut String) {
        let h = match self.index.get(host) {
            Some(h) => *h,
            None => {
                let h = self.json_names.len();
                self.index.insert(host.to_owned(), h);
                self.json_names
                    .push(serde_json::to_string(host).expect("a name serializes"));
                self.clocks.push(Vec::new());
                h
            }
        };
        let mut clock = std::mem::take(&mut self.clocks[h]);
        if let EventKind::MsgDelivered { msg_id, .. } = &e.kind {
            if let Some(sent) = self.sends.get(msg_id) {
                if clock.len() < sent.len() {
                    clock.resize(sent.len(), 0);
                }
                for (mine, theirs) in clock.iter_mut().zip(sent) {
                    *mine = (*mine).max(*theirs);
                }
            }
        }
        if clock.len() <= h {
            clock.resize(h + 1, 0);
        }
        clock[h] += 1;
        match &e.kind {
            EventKind::MsgSent { msg_id, .. } => {
                self.sends.insert(*msg_id, clock.clone());
            }
            EventKind::MsgLost { msg_id, .. } => {
                self.sends.remove(msg_id);
            }
            _ => {}
        }
        out.push('{');
        let mut first = true;
        for (i, t) in clock.iter().enumerate().filter(|(_, t)| **t > 0) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&self.json_names[i]);
            out.push(':');
            out.push_str(&t.to_string());
        }
        out.push('}');
        self.clocks[h] = clock;
    }
}

/// A node name as a ShiViz host: one word (the parser reads it with `\S*`), never empty.
fn host_name(node: &str) -> String {
    let name: String = node
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if name.is_empty() {
        "_".into()
    } else {
        name
    }
}

/// Appends `text` as one line (ShiViz reads the event with JavaScript's `.*`, which stops at
/// `\n`, `\r`, U+2028 and U+2029).
fn push_line(out: &mut String, text: &str) {
    let breaks = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.contains(breaks) {
        out.push_str(text);
        return;
    }
    out.extend(text.chars().map(|c| if breaks(c) { ' ' } else { c }));
}

fn msg_text(msg: &Msg) -> String {
    match msg {
        Msg::Request { req, op, lock } => format!("Request {op:?}({lock}) #{req}"),
        Msg::Reply { req, ok } => format!("Reply {ok} #{req}"),
        Msg::Forward { req, op, lock } => format!("Forward {op:?}({lock}) #{req}"),
        Msg::ForwardAck { req, ok } => format!("ForwardAck {ok} #{req}"),
        Msg::ForwardRefused { req } => format!("ForwardRefused #{req}"),
        Msg::ForwardBatch { ops } => {
            let each: Vec<String> = ops
                .iter()
                .map(|o| format!("{:?}({}) #{}", o.op, o.lock, o.req))
                .collect();
            format!("ForwardBatch x{} [{}]", ops.len(), each.join(", "))
        }
        Msg::ForwardAckBatch { acks } => {
            let each: Vec<String> = acks
                .iter()
                .map(|a| format!("{} #{}", a.ok, a.req))
                .collect();
            format!("ForwardAckBatch x{} [{}]", acks.len(), each.join(", "))
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// One event in words, for ShiViz's event text.
pub fn describe(e: &Event) -> String {
    let name = e.kind.name();
    let rest = match &e.kind {
        EventKind::ProcessStarted { pid, role, port } => {
            format!("pid {pid} as {} on port {port}", json(role))
        }
        EventKind::ProcessExited { pid, signal, code } => match (signal, code) {
            (Some(s), _) => format!("pid {pid} ended by signal {s}"),
            (None, Some(c)) => format!("pid {pid} exited with code {c}"),
            (None, None) => format!("pid {pid} ended"),
        },
        EventKind::Crashed { pid, cause, req } => match req {
            Some(r) => format!("pid {pid} ({}) with #{r} unanswered", json(cause)),
            None => format!("pid {pid} ({})", json(cause)),
        },
        EventKind::CrashArmed { point, dying_ms } => {
            let point = point.map_or("before_reply".to_owned(), |p| p.name().to_owned());
            match dying_ms {
                Some(ms) => format!("at {point}, silent {ms} ms first"),
                None => format!("at {point}"),
            }
        }
        EventKind::Dying {
            pid, dies_in_ms, ..
        } => format!("pid {pid} silent, killed in {dies_in_ms} ms"),
        EventKind::Paused { pid } | EventKind::Resumed { pid } => format!("pid {pid}"),
        EventKind::ClientStarted { pid, incarnation } => {
            format!("pid {pid}, incarnation {incarnation}")
        }
        EventKind::FaultsChanged { change, .. } => change.clone(),
        EventKind::MsgHeld {
            msg_id, from, msg, ..
        } => {
            format!(
                "{} from {from} held by step mode (msg {msg_id})",
                msg_text(msg)
            )
        }
        EventKind::RoleChanged {
            role,
            serving_alone,
            reason,
        } => format!(
            "now {}{}: {reason}",
            json(role),
            if *serving_alone {
                ", serving alone"
            } else {
                ""
            }
        ),
        EventKind::MsgSent {
            msg_id, to, msg, ..
        } => format!("{} to {to} (msg {msg_id})", msg_text(msg)),
        EventKind::MsgDelivered {
            msg_id,
            from,
            duplicate,
            ..
        } => format!(
            "from {from} (msg {msg_id}){}",
            if *duplicate { ", second copy" } else { "" }
        ),
        EventKind::MsgLost {
            msg_id,
            from,
            reason,
            ..
        } => format!("from {from} (msg {msg_id}): {reason}"),
        EventKind::Executed {
            req,
            op,
            lock,
            ok,
            duplicate,
            forwarded,
            ..
        } => format!(
            "{op:?}({lock}) -> {ok} #{req}{}{}",
            if *forwarded { " forwarded" } else { "" },
            if *duplicate { ", from the record" } else { "" }
        ),
        EventKind::OpInvoked {
            req,
            op,
            lock,
            server,
            ..
        } => format!("{op:?}({lock}) #{req} to {server}"),
        EventKind::OpCompleted {
            op,
            lock,
            ok,
            req,
            server,
            attempts,
            ..
        } => format!("{op:?}({lock}) -> {ok} #{req} from {server}, {attempts} attempt(s)"),
        EventKind::OpFailed {
            op,
            lock,
            req,
            reason,
            ..
        } => format!("{op:?}({lock}) #{req} unknown: {reason}"),
        EventKind::RpcFailed {
            req,
            server,
            reason,
            retry_to,
            ..
        } => format!("#{req} at {server}: {reason}; retry to {retry_to}"),
        EventKind::ClusterReset { generation } => format!("generation {generation} starts"),
        EventKind::SlowMotionSet { delay_ms } => format!("{delay_ms} ms"),
        EventKind::Verdict(v) => {
            let status = match v.status {
                VerdictStatus::Ok => "ok",
                VerdictStatus::Violation => "violation",
                VerdictStatus::Unknown => "unknown",
            };
            let ops: Vec<String> = v.ops.iter().map(|r| format!("#{r}")).collect();
            let mut s = format!("{} {status} over {} call(s)", v.lock, v.calls);
            if !ops.is_empty() {
                s.push_str(&format!(" [{}]", ops.join(" ")));
            }
            if !v.explanation.is_empty() {
                s.push_str(": ");
                s.push_str(&v.explanation);
            }
            s
        }
        EventKind::LoadChanged(l) => format!(
            "{} clerks, rate {}, {} locks {}, unlock share {}",
            l.clients,
            l.rate,
            l.locks,
            json(&l.distribution),
            l.unlock_share
        ),
        EventKind::LoadStats(st) => format!(
            "{} calls ({} ok, {} failed) in {} ms, p50 {} us, p99 {} us",
            st.calls, st.ok, st.failed, st.window_ms, st.p50_us, st.p99_us
        ),
        EventKind::Failover {
            from,
            to,
            reason,
            window_us,
            client,
            ..
        } => format!("{from} {reason}, {to} answered c{client} {window_us} us later"),
    };
    format!("{name} {rest} @{}us", e.t_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{NodeId, Op, RequestId, Role};
    use std::collections::BTreeMap;

    fn ev(seq: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq * 100,
            node: NodeId::new(node),
            kind,
        }
    }

    fn sent(seq: u64, id: u64, from: &str, to: &str) -> Event {
        ev(
            seq,
            from,
            EventKind::MsgSent {
                msg_id: MsgId(id),
                from: from.into(),
                to: to.into(),
                msg: Msg::Request {
                    req: RequestId::new(1, 1),
                    op: Op::Lock,
                    lock: "a".into(),
                },
            },
        )
    }

    fn delivered(seq: u64, id: u64, from: &str, to: &str, duplicate: bool) -> Event {
        ev(
            seq,
            to,
            EventKind::MsgDelivered {
                msg_id: MsgId(id),
                from: from.into(),
                to: to.into(),
                duplicate,
            },
        )
    }

    /// (host, clock) of each event, from the written text.
    fn parsed(text: &str) -> Vec<(String, BTreeMap<String, u64>)> {
        let lines: Vec<&str> = text.lines().collect();
        lines[2..]
            .iter()
            .filter(|l| !l.starts_with("===") && !l.starts_with('#'))
            .map(|l| {
                let (h, c) = l.split_once(' ').unwrap();
                (h.to_owned(), serde_json::from_str(c).unwrap())
            })
            .collect()
    }

    fn clock(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(h, t)| (h.to_string(), *t)).collect()
    }

    #[test]
    fn a_delivery_merges_its_send_and_a_loss_does_not() {
        let events = vec![
            sent(1, 10, "c1", "s1"),
            delivered(2, 10, "c1", "s1", false),
            delivered(3, 10, "c1", "s1", true),
            sent(4, 11, "s1", "s2"),
            ev(
                5,
                "s2",
                EventKind::MsgLost {
                    msg_id: MsgId(11),
                    from: "s1".into(),
                    to: "s2".into(),
                    reason: "dropped".into(),
                },
            ),
        ];
        let text = write_shiviz(&events, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], SHIVIZ_REGEX);
        assert_eq!(lines[1], SHIVIZ_DELIMITER);
        assert_eq!(lines[2], "=== generation 0 ===");
        assert!(lines[3].starts_with("#1 msg_sent Request Lock(a) #c1.1 to s1"));
        let got = parsed(&text);
        assert_eq!(
            got,
            vec![
                ("c1".into(), clock(&[("c1", 1)])),
                ("s1".into(), clock(&[("c1", 1), ("s1", 1)])),
                ("s1".into(), clock(&[("c1", 1), ("s1", 2)])),
                ("s1".into(), clock(&[("c1", 1), ("s1", 3)])),
                ("s2".into(), clock(&[("s2", 1)])),
            ]
        );
    }

    #[test]
    fn each_generation_is_an_execution_with_fresh_clocks() {
        let events = vec![
            sent(1, 10, "c1", "s1"),
            ev(2, "supervisor", EventKind::ClusterReset { generation: 4 }),
            // A delivery of a message sent before the reset merges nothing.
            delivered(3, 10, "c1", "s1", false),
            ev(
                4,
                "s1",
                EventKind::ProcessStarted {
                    pid: 9,
                    role: Role::Primary,
                    port: 1,
                },
            ),
        ];
        let text = write_shiviz(&events, 3);
        let delims: Vec<&str> = text
            .lines()
            .skip(2)
            .filter(|l| l.starts_with("==="))
            .collect();
        assert_eq!(delims, ["=== generation 3 ===", "=== generation 4 ==="]);
        assert_eq!(
            parsed(&text),
            vec![
                ("c1".into(), clock(&[("c1", 1)])),
                ("supervisor".into(), clock(&[("supervisor", 1)])),
                ("s1".into(), clock(&[("s1", 1)])),
                ("s1".into(), clock(&[("s1", 2)])),
            ]
        );
        // A file that begins with its reset has one execution, named by it.
        let text = write_shiviz(&events[1..], 3);
        let delims: Vec<&str> = text
            .lines()
            .skip(2)
            .filter(|l| l.starts_with("==="))
            .collect();
        assert_eq!(delims, ["=== generation 4 ==="]);
    }

    #[test]
    fn text_stays_on_its_line_and_hosts_are_one_word() {
        let events = vec![ev(
            1,
            "odd host",
            EventKind::FaultsChanged {
                plan: Default::default(),
                change: "two\nlines\u{2028}and\rmore".into(),
            },
        )];
        let text = write_shiviz(&events, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[3].contains("two lines and more"), "{}", lines[3]);
        assert_eq!(lines[4], "odd_host {\"odd_host\":1}");
        // No events: still one execution with one event, which ShiViz requires.
        let empty = write_shiviz(&[], 0);
        assert_eq!(empty.lines().count(), 5);
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use shared::{NodeId, Op, RequestId};

    #[test]
    #[ignore]
    fn cost_of_100k_events() {
        let mut events = Vec::new();
        for i in 0..50_000u64 {
            let msg_id = MsgId::new(1, i + 1);
            events.push(Event {
                seq: 2 * i + 1,
                t_us: i,
                node: NodeId::new("c1"),
                kind: EventKind::MsgSent {
                    msg_id,
                    from: "c1".into(),
                    to: "s1".into(),
                    msg: Msg::Request {
                        req: RequestId::new(1, i),
                        op: Op::Lock,
                        lock: "a".into(),
                    },
                },
            });
            events.push(Event {
                seq: 2 * i + 2,
                t_us: i,
                node: NodeId::new("s1"),
                kind: EventKind::MsgDelivered {
                    msg_id,
                    from: "c1".into(),
                    to: "s1".into(),
                    duplicate: false,
                },
            });
        }
        let t = std::time::Instant::now();
        let text = write_shiviz(&events, 0);
        eprintln!("write_shiviz: {} bytes in {:?}", text.len(), t.elapsed());
        let t = std::time::Instant::now();
        let n: usize = events.iter().map(|e| describe(e).len()).sum();
        eprintln!("describe alone: {n} bytes in {:?}", t.elapsed());
    }
}
