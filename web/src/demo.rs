//! The one-click demo: three clerks lock and unlock a few names, each waiting for its previous
//! answer (a clerk has one call outstanding, as in Lab 1), paced so a person can follow.
//!
//! The run is plain data in the store; [`plan`] says which commands are due now, and the
//! `DemoDriver` component sends them. Steps are matched to answers by their tags
//! (`demo<run>-c<client>-<step>`), which the server echoes on `op_completed`/`op_failed`/`error`.

use std::collections::{BTreeMap, VecDeque};

use shared::{Command, Op};

use crate::call;

/// Pause between a clerk's answer and its next call, so arrows don't all land at once.
pub const PACE_MS: f64 = 450.0;
/// Staggered start of the clerks.
pub const STAGGER_MS: f64 = 180.0;

/// The workload: three clerks on lock names `a`, `b`, `c`; with the pacing below, c2 finds `a`
/// held twice (answer `false`) and the other calls succeed.
pub fn script() -> Vec<(u32, Vec<(Op, &'static str)>)> {
    use Op::{Lock, Unlock};
    vec![
        (
            1,
            vec![(Lock, "a"), (Unlock, "a"), (Lock, "b"), (Unlock, "b")],
        ),
        (
            2,
            vec![(Lock, "a"), (Lock, "c"), (Unlock, "c"), (Lock, "a")],
        ),
        (
            3,
            vec![(Lock, "b"), (Unlock, "b"), (Lock, "a"), (Unlock, "a")],
        ),
    ]
}

/// A demo in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoRun {
    pub run: u64,
    /// Steps not yet sent, per client.
    pub todo: BTreeMap<u32, VecDeque<(Op, String)>>,
    /// The tag of the step each client is waiting on.
    pub waiting: BTreeMap<u32, String>,
    /// Local time (ms) before which a client's next step is not sent.
    pub ready_at: BTreeMap<u32, f64>,
    pub sent: u32,
    pub answered: u32,
    pub total: u32,
    /// Failover variant: after this many answers, arm the primary to crash before its next reply.
    pub crash_after: Option<u32>,
    pub crash_sent: bool,
}

impl DemoRun {
    /// The demo with a failover: once a third of the calls are answered, the primary is armed
    /// to crash before its next reply, so a client retries the same request on the backup.
    pub fn with_failover(run: u64, now_ms: f64) -> Self {
        let mut d = DemoRun::new(run, now_ms);
        d.crash_after = Some(d.total / 3);
        d
    }

    pub fn new(run: u64, now_ms: f64) -> Self {
        let mut todo = BTreeMap::new();
        let mut ready_at = BTreeMap::new();
        let mut total = 0;
        for (i, (client, steps)) in script().into_iter().enumerate() {
            total += steps.len() as u32;
            todo.insert(
                client,
                steps
                    .into_iter()
                    .map(|(op, l)| (op, l.to_string()))
                    .collect(),
            );
            ready_at.insert(client, now_ms + STAGGER_MS * i as f64);
        }
        DemoRun {
            run,
            todo,
            waiting: BTreeMap::new(),
            ready_at,
            sent: 0,
            answered: 0,
            total,
            crash_after: None,
            crash_sent: false,
        }
    }

    pub fn clients(&self) -> impl Iterator<Item = u32> + '_ {
        self.todo.keys().copied()
    }

    pub fn owns(&self, tag: &str) -> bool {
        tag.starts_with(&format!("demo{}-", self.run))
    }

    /// A step was sent: wait for its answer.
    pub fn on_sent(&mut self, client: u32, tag: &str) {
        if !self.owns(tag) {
            return;
        }
        if tag.ends_with("-crash") {
            self.crash_sent = true;
            return;
        }
        if let Some(q) = self.todo.get_mut(&client) {
            q.pop_front();
        }
        self.waiting.insert(client, tag.to_owned());
        self.sent += 1;
    }

    /// An answer (or error) with `tag` arrived at local time `now_ms`.
    pub fn on_answer(&mut self, tag: &str, now_ms: f64) {
        let Some(client) = self
            .waiting
            .iter()
            .find(|(_, t)| t.as_str() == tag)
            .map(|(c, _)| *c)
        else {
            return;
        };
        self.waiting.remove(&client);
        self.answered += 1;
        self.ready_at.insert(client, now_ms + PACE_MS);
    }

    pub fn finished(&self) -> bool {
        self.waiting.is_empty() && self.todo.values().all(VecDeque::is_empty)
    }
}

/// What the driver should do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub send: Vec<Command>,
    /// Check again in this many ms (a step is waiting only for its pace).
    pub wake_in_ms: Option<f64>,
}

/// The steps due at `now_ms`; `busy(client)` says whether the clerk has a call outstanding.
pub fn plan(run: &DemoRun, now_ms: f64, busy: impl Fn(u32) -> bool) -> Plan {
    let mut p = Plan::default();
    if let Some(after) = run.crash_after {
        if !run.crash_sent && run.answered >= after {
            // Arm first, and let the next calls wait for the ack so one of them hits it.
            p.send.push(Command::CrashBeforeReply {
                node: "primary".into(),
                tag: Some(format!("demo{}-crash", run.run)),
            });
            p.wake_in_ms = Some(PACE_MS);
            return p;
        }
    }
    let mut sent = run.sent;
    for (client, q) in &run.todo {
        let Some((op, lock)) = q.front() else {
            continue;
        };
        if run.waiting.contains_key(client) || busy(*client) {
            continue;
        }
        let ready = run.ready_at.get(client).copied().unwrap_or(0.0);
        if ready > now_ms {
            let wait = ready - now_ms;
            p.wake_in_ms = Some(p.wake_in_ms.map_or(wait, |w: f64| w.min(wait)));
            continue;
        }
        let tag = format!("demo{}-c{client}-{sent}", run.run);
        sent += 1;
        p.send.push(call::command(*client, *op, lock.clone(), tag));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_of(c: &Command) -> String {
        c.tag().unwrap_or_default().to_owned()
    }

    #[test]
    fn one_call_per_client_at_a_time_paced_and_staggered() {
        let mut run = DemoRun::new(1, 0.0);
        let p = plan(&run, 0.0, |_| false);
        assert_eq!(p.send.len(), 1, "only c1 starts at once");
        assert_eq!(p.wake_in_ms, Some(STAGGER_MS));
        let first = &p.send[0];
        assert!(matches!(first, Command::Lock { client: 1, lock, .. } if lock == "a"));
        assert_eq!(tag_of(first), "demo1-c1-0");
        run.on_sent(1, &tag_of(first));

        let p = plan(&run, 1000.0, |_| false);
        let clients: Vec<u32> = p
            .send
            .iter()
            .map(|c| match c {
                Command::Lock { client, .. } | Command::Unlock { client, .. } => *client,
                _ => 0,
            })
            .collect();
        assert_eq!(clients, vec![2, 3], "c1 waits for its answer");
        assert_ne!(tag_of(&p.send[0]), tag_of(&p.send[1]));

        run.on_answer(&tag_of(first), 1000.0);
        assert!(plan(&run, 1000.0, |c| c != 1).send.is_empty(), "paced");
        assert!(plan(&run, 1000.0 + PACE_MS - 1.0, |c| c != 1)
            .send
            .is_empty());
        assert_eq!(plan(&run, 1000.0 + PACE_MS, |c| c != 1).send.len(), 1);
        let p = plan(&run, 1000.0 + PACE_MS, |c| c == 1);
        assert_eq!(p.send.len(), 2, "a busy clerk is skipped");
    }

    #[test]
    fn the_failover_demo_arms_the_primary_once_a_third_is_answered() {
        let mut run = DemoRun::with_failover(3, 0.0);
        assert_eq!(run.crash_after, Some(4));
        run.answered = 3;
        assert!(plan(&run, 1e9, |_| false)
            .send
            .iter()
            .all(|c| !matches!(c, Command::CrashBeforeReply { .. })));
        run.answered = 4;
        let p = plan(&run, 1e9, |_| false);
        assert_eq!(p.send.len(), 1);
        let Command::CrashBeforeReply { node, tag } = &p.send[0] else {
            panic!("expected the crash first: {:?}", p.send);
        };
        assert_eq!(node.to_string(), "primary");
        run.on_sent(0, tag.as_deref().unwrap_or_default());
        assert!(run.crash_sent);
        assert!(plan(&run, 1e9, |_| false)
            .send
            .iter()
            .all(|c| !matches!(c, Command::CrashBeforeReply { .. })));
    }

    #[test]
    fn the_run_finishes_after_every_answer() {
        let mut run = DemoRun::new(7, 0.0);
        let mut now = 0.0;
        let mut guard = 0;
        while !run.finished() {
            guard += 1;
            assert!(guard < 100);
            let p = plan(&run, now, |_| false);
            for c in &p.send {
                let client = match c {
                    Command::Lock { client, .. } | Command::Unlock { client, .. } => *client,
                    _ => 0,
                };
                run.on_sent(client, &tag_of(c));
            }
            let waiting: Vec<String> = run.waiting.values().cloned().collect();
            for t in waiting {
                run.on_answer(&t, now);
            }
            now += 1000.0;
        }
        assert_eq!(run.answered, run.total);
        assert_eq!(run.total, 12);
        assert!(!run.owns("demo1-c1-0"));
    }
}
