//! The lecture, from a button: the ten failures a fault-tolerant service must face and the
//! three tools against them, each a preset that runs on the real processes.
//!
//! A [`Preset`] is plain data: a script of real wire commands ([`shared::Command`]) with waits
//! (for a time, or until something shows in the event log, with a timeout), a "what to notice"
//! text for students and a line on what Lab 1 does under that failure. Every script starts
//! from `reset`, then slows the messages down so the story can be watched.
//!
//! A [`LectureRun`] is one preset being played. It is pure: the store folds the events into it
//! ([`LectureRun::observe`]), tells it which of its commands left ([`LectureRun::on_sent`]) or
//! were refused ([`LectureRun::on_error`]), and moves it on ([`LectureRun::advance`]); the
//! `LectureDriver` component sends [`LectureRun::to_send`] and wakes it up at
//! [`LectureRun::wake_in_ms`]. Its commands are tagged `lec<run>-<name>`, which the server echoes
//! in its answers and in the events of a call. While it runs it writes down, in plain words,
//! what really happened ([`LectureRun::notes`]): the crash, the retry and where it went, the
//! answer from the at-most-once record, the server that stepped down, each client's answer.
//! So the panel tells what the real processes did, also when it is not what the script hoped.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use shared::{Command, CrashPoint, Endpoint, Event, EventKind, NodeRef, Op, Probability, Role};

use crate::call;
use crate::format::{self, op_name};

/// Slow motion for most stories: each hop takes most of a second, so one message can be followed.
pub const SLOW_MS: u64 = 800;
/// Slow motion for stories with long timeouts (a call given up after every server failed).
pub const BRISK_MS: u64 = 250;
/// How long a script waits for something that should happen soon.
const SOON_MS: u64 = 15_000;
/// How long it waits for a call whose story includes a timeout and a retry.
const RETRY_MS: u64 = 45_000;
/// Notes kept per run.
const NOTES_KEPT: usize = 40;

/// Which list of the lecture an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Failure,
    Tool,
    /// A failure outside the lecture's list that shows where Lab 1's assumption breaks.
    Beyond,
}

/// Whether Lab 1 gets it right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lab 1 answers every client correctly under it.
    Copes,
    /// Lab 1 gives a wrong answer (the preset shows it), or loses what it acknowledged.
    Breaks,
    /// No wrong answer, but no progress either: Lab 1 gets stuck.
    Stuck,
}

/// Something a script waits to see in the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A server process started (after a reset or a restart).
    Started(String),
    /// A server was killed (`crashed`).
    Crashed(String),
    /// Client `n` saw its server fail and turned to another (`rpc_failed`).
    RpcFailed(u32),
    /// A server started serving alone.
    Alone(String),
    /// A server stepped down (`deposed`).
    Deposed(String),
    /// A server answered a request from its at-most-once record (`executed`, `duplicate`).
    FromRecord(String),
}

/// What a script waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The call sent under this name ended (answered, or given up).
    Answered(String),
    /// All of these were seen since the previous wait ended.
    Seen(Vec<Fact>),
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Do {
    /// Send this command (its tag is the step's name, prefixed with the run).
    Send(Command),
    /// Clear the diagram, so that it shows this story only.
    ClearView,
    /// Let time pass.
    Wait { ms: u64 },
    /// Wait until `cond`, at most `timeout_ms`; past that the run fails, saying what it waited for.
    Until { cond: Cond, timeout_ms: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub what: Do,
    /// What the panel shows while this step runs.
    pub caption: String,
}

/// One entry of the lecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Stable id (`partition`), used in test ids.
    pub id: &'static str,
    pub part: Part,
    pub title: &'static str,
    /// One line under the title in the list.
    pub teaser: &'static str,
    pub steps: Vec<Step>,
    /// What happened and why, for students.
    pub notice: &'static str,
    /// What Lab 1 does under this failure (the README's table).
    pub lab1: &'static str,
    pub verdict: Verdict,
}

/// The lecture: the ten failures, then the three tools.
pub fn presets() -> &'static [Preset] {
    static PRESETS: OnceLock<Vec<Preset>> = OnceLock::new();
    PRESETS.get_or_init(build)
}

/// The preset with this id.
#[cfg(test)]
pub fn preset(id: &str) -> Option<&'static Preset> {
    presets().iter().find(|p| p.id == id)
}

// ------------------------------------------------------------------------------------------
// Scripts
// ------------------------------------------------------------------------------------------

/// Builds a script step by step.
struct Script {
    steps: Vec<Step>,
    n: usize,
}

impl Script {
    /// From a fresh cluster, cleared diagram, messages slowed to `slow_ms` per hop.
    fn fresh(slow_ms: u64) -> Script {
        let mut s = Script {
            steps: Vec::new(),
            n: 0,
        };
        s = s
            .send(Command::Reset { tag: None })
            .until(
                vec![Fact::Started("s1".into()), Fact::Started("s2".into())],
                SOON_MS,
                "Waiting for the fresh s1 (primary) and s2 (backup)…",
            )
            .step(Do::ClearView, "Clearing the diagram for this story");
        s.send(Command::SetSlowMotion {
            delay_ms: slow_ms,
            tag: None,
        })
    }

    fn step(mut self, what: Do, caption: impl Into<String>) -> Script {
        self.steps.push(Step {
            what,
            caption: caption.into(),
        });
        self
    }

    /// Sends `cmd`, tagged with a fresh step name (captioned by [`describe`]).
    fn send(mut self, cmd: Command) -> Script {
        self.n += 1;
        let cmd = retag(&cmd, &format!("s{}", self.n));
        let caption = describe(&cmd);
        self.step(Do::Send(cmd), caption)
    }

    /// `client` calls `op(lock)`; `name` is how later steps refer to the call.
    fn call(self, client: u32, op: Op, lock: &str, name: &str) -> Script {
        let cmd = call::command(client, op, lock.to_owned(), name.to_owned());
        let caption = describe(&cmd);
        self.step(Do::Send(cmd), caption)
    }

    fn lock(self, client: u32, lock: &str, name: &str) -> Script {
        self.call(client, Op::Lock, lock, name)
    }

    fn unlock(self, client: u32, lock: &str, name: &str) -> Script {
        self.call(client, Op::Unlock, lock, name)
    }

    fn answered(self, name: &str, timeout_ms: u64, caption: &str) -> Script {
        self.step(
            Do::Until {
                cond: Cond::Answered(name.to_owned()),
                timeout_ms,
            },
            caption,
        )
    }

    fn until(self, facts: Vec<Fact>, timeout_ms: u64, caption: &str) -> Script {
        self.step(
            Do::Until {
                cond: Cond::Seen(facts),
                timeout_ms,
            },
            caption,
        )
    }

    fn wait(self, ms: u64, caption: &str) -> Script {
        self.step(Do::Wait { ms }, caption)
    }

    fn done(self) -> Vec<Step> {
        self.steps
    }
}

fn node(s: &str) -> NodeRef {
    NodeRef::from(s)
}

fn end(s: &str) -> Endpoint {
    Endpoint::from(s)
}

fn link(from: &str, to: &str, drop: f64, duplicate: f64) -> Command {
    Command::SetLink {
        from: end(from),
        to: end(to),
        drop: Probability(drop),
        duplicate: Probability(duplicate),
        delay_ms: 0,
        jitter_ms: 0,
        tag: None,
    }
}

fn crash(n: &str) -> Command {
    Command::Crash {
        node: node(n),
        dying_ms: None,
        tag: None,
    }
}

fn restart(n: &str) -> Command {
    Command::Restart {
        node: node(n),
        tag: None,
    }
}

fn partition(groups: &[&[&str]]) -> Command {
    Command::Partition {
        groups: groups
            .iter()
            .map(|g| g.iter().map(|n| end(n)).collect())
            .collect(),
        tag: None,
    }
}

fn heal() -> Command {
    Command::Heal { tag: None }
}

fn crashed(n: &str) -> Fact {
    Fact::Crashed(n.into())
}

fn started(n: &str) -> Fact {
    Fact::Started(n.into())
}

fn build() -> Vec<Preset> {
    use Part::{Beyond, Failure, Tool};
    use Verdict::{Breaks, Copes, Stuck};
    vec![
        Preset {
            id: "lost",
            part: Failure,
            title: "Lost packets",
            teaser: "The network loses c1's request to s1.",
            steps: Script::fresh(SLOW_MS)
                .send(link("c1", "s1", 1.0, 0.0))
                .lock(1, "a", "c1-a")
                .until(
                    vec![Fact::RpcFailed(1)],
                    RETRY_MS,
                    "c1's request is lost on the way; c1 waits for a reply that never comes…",
                )
                .send(heal())
                .answered("c1-a", RETRY_MS, "c1 re-sends the same request #c1.1 to s2…")
                .lock(2, "a", "c2-a")
                .answered(
                    "c2-a",
                    RETRY_MS,
                    "c2 asks s1, which is alive and still believes it is primary…",
                )
                .done(),
            notice: "c1's Lock(a) never reached s1: the network lost it. A client cannot tell a lost \
                message from a dead server, so after its timeout c1 re-sent the same request \
                (#c1.1, marked ↻) to the backup s2, which ran it and began serving alone, while s1 \
                was alive and still believed it was primary. Then c2 asked s1. s1 ran Lock(a) on its \
                own table, which never saw c1's lock, and forwarded it; s2 refused the forward (it \
                serves clients itself now), so s1 stepped down without answering (\"deposed\": \
                pbscope's addition, not Lab 1's) and c2 turned to s2, which answered false: a is \
                held. Retrying covered the loss; the backup taking over while the primary lived is \
                the price.",
            lab1: "The clerk's timeout and retry at the backup cover a lost request; but a lost \
                message looks like a dead primary, so the backup takes over while the primary still \
                runs.",
            verdict: Copes,
        },
        Preset {
            id: "duplicated",
            part: Failure,
            title: "Duplicated packets",
            teaser: "Every message c1→s1 and s1→s2 arrives twice.",
            steps: Script::fresh(SLOW_MS)
                .send(link("c1", "s1", 0.0, 1.0))
                .send(link("s1", "s2", 0.0, 1.0))
                .lock(1, "a", "c1-a")
                .answered(
                    "c1-a",
                    RETRY_MS,
                    "c1's request reaches s1 twice; s1's forward reaches s2 twice…",
                )
                .wait(1500, "Letting the second copies land…")
                .send(heal())
                .done(),
            notice: "The network delivered c1's request to s1 twice, and s1's forward to s2 twice. \
                Each server ran Lock(a) exactly once. s2 recognised the second forward by its \
                request id #c1.1 and answered it from its at-most-once record (\"duplicate: \
                recorded true\") instead of locking again; the second request to s1 was answered \
                from the same single execution, and c1 ignored the extra reply. Without the request \
                id a duplicate Lock would run twice and answer false, to the very client that holds \
                the lock.",
            lab1: "At-most-once by request id: a duplicate is answered from the record, never run \
                twice.",
            verdict: Copes,
        },
        Preset {
            id: "temporary",
            part: Failure,
            title: "Temporary network failure",
            teaser: "s1→s2 goes down for a moment, then comes back.",
            steps: Script::fresh(SLOW_MS)
                .send(Command::Cut {
                    from: end("s1"),
                    to: end("s2"),
                    tag: None,
                })
                .lock(1, "a", "c1-a")
                .answered(
                    "c1-a",
                    RETRY_MS,
                    "s1 forwards Lock(a); the forward is lost; s1 waits for s2's ack…",
                )
                .send(heal())
                .wait(2000, "The network is back. Does s1 take its backup back?")
                .send(crash("primary"))
                .until(vec![crashed("s1")], SOON_MS, "s1 crashes (SIGKILL)…")
                .lock(2, "a", "c2-a")
                .answered("c2-a", RETRY_MS, "c2 fails over to s2…")
                .wait(1000, "")
                .done(),
            notice: "The link from s1 to s2 was down only for a moment, but Lab 1 cannot tell a \
                slow link from a dead backup: with no ack in time, s1 gave up on s2, served alone \
                and answered c1 — and never forwarded again, even after the network healed. s2's \
                table silently fell behind: it never learned that a is held. When s1 then crashed \
                (the one failure Lab 1 is built for), c2 failed over to s2, which granted Lock(a) a \
                second time. A short network failure plus an ordinary crash gave one lock to two \
                clients: Lab 1 is wrong here, and the page says so (the checker's badge reads NOT \
                linearizable). A later issue's view service decides who may serve and brings a \
                backup up to date.",
            lab1: "The primary drops its backup for good after one missed ack; a later crash of the \
                primary then fails over to a stale backup: the same lock is granted twice.",
            verdict: Breaks,
        },
        Preset {
            id: "disconnected",
            part: Failure,
            title: "A server disconnected",
            teaser: "s1 is cut off from everyone, then comes back.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a through s1 and s2…")
                .send(partition(&[&["s1"], &["s2", "c1", "c2"]]))
                .unlock(1, "a", "c1-u")
                .answered(
                    "c1-u",
                    RETRY_MS,
                    "s1 is alive but unreachable: c1's Unlock is lost, c1 times out…",
                )
                .send(heal())
                .lock(2, "a", "c2-a")
                .answered(
                    "c2-a",
                    RETRY_MS,
                    "s1 is reachable again, with its old table; c2 asks it first…",
                )
                .done(),
            notice: "While s1 was disconnected it looked dead: c1's Unlock(a) got no answer, so c1 \
                turned to s2, which unlocked a and began serving alone. s1 never knew: when the \
                network came back it still believed it was primary, and its table still said a is \
                held. c2 asked s1, which answered its own question wrongly (Lock(a) = false) and \
                forwarded it; s2 refused the forward, s1 stepped down without answering \
                (\"deposed\", pbscope's addition) and c2 got the right answer, true, from s2. The \
                old primary was stopped only because the two servers could talk again — in a \
                partition they cannot (see the next entry).",
            lab1: "Not in Lab 1's model: the disconnected primary comes back believing it is \
                primary, with a stale table; only pbscope's step-down keeps its wrong answer from \
                leaving.",
            verdict: Copes,
        },
        Preset {
            id: "partition",
            part: Failure,
            title: "A network partitioned",
            teaser: "{s1, c1} and {s2, c2} cut apart: both sides grant Lock(z).",
            steps: Script::fresh(SLOW_MS)
                .send(partition(&[&["s1", "c1"], &["s2", "c2"]]))
                .lock(1, "z", "c1-z")
                .lock(2, "z", "c2-z")
                .answered(
                    "c1-z",
                    RETRY_MS,
                    "s1 runs c1's Lock(z) and forwards it; the forward cannot cross; s1 waits for s2…",
                )
                .answered(
                    "c2-z",
                    RETRY_MS,
                    "c2's request to s1 cannot cross; c2 times out and turns to s2…",
                )
                .wait(1500, "")
                .done(),
            notice: "Two primaries. On one side, s1 waited for an ack that could not come, decided \
                its backup was dead and served c1 alone: Lock(z) = true. On the other side, c2 \
                could not reach s1, decided it was dead, and turned to s2, which began serving \
                alone: Lock(z) = true. Each server did what Lab 1 says; together they granted the \
                same lock twice, and the page says so in red. Lab 1 assumes a server that does not \
                answer is dead; a partition breaks that assumption, and no timeout can tell the \
                difference. The checker marks this history NOT linearizable, with both calls; the \
                view service of a later issue repairs it (only the view's primary may serve).",
            lab1: "Two primaries: each side serves alone, and the same lock is granted twice.",
            verdict: Breaks,
        },
        Preset {
            id: "restart",
            part: Failure,
            title: "A server crashes and restarts",
            teaser: "s1 dies, c1 fails over, s1 comes back empty.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a through s1 and s2…")
                .send(crash("primary"))
                .until(vec![crashed("s1")], SOON_MS, "s1 crashes (SIGKILL)…")
                .lock(2, "b", "c2-b")
                .answered("c2-b", RETRY_MS, "c2 finds s1 dead and fails over to s2…")
                .send(restart("s1"))
                .until(
                    vec![started("s1")],
                    SOON_MS,
                    "A fresh s1 starts, in its old role, with an empty table…",
                )
                .lock(3, "a", "c3-a")
                .answered(
                    "c3-a",
                    RETRY_MS,
                    "c3 is new: it asks s1 first, as every client starts with the primary…",
                )
                .done(),
            notice: "The restarted s1 is a new process with an empty table: Lab 1 keeps nothing on \
                disk and copies nothing back. It came up believing it was the primary. c3, a new \
                client, asked it for Lock(a): s1 ran it on its empty table (true!) and forwarded \
                it; s2, which serves clients itself since the failover, refused, so s1 stepped down \
                without answering (pbscope's addition) and c3 got the right answer, false, from s2. \
                Lab 1 trusts a restarted server as if it remembered: it does not.",
            lab1: "No recovery: the restarted server comes back empty and is trusted as if it \
                remembered.",
            verdict: Breaks,
        },
        Preset {
            id: "fail-stop",
            part: Failure,
            title: "A server fails for good",
            teaser: "The primary crashes; clients fail over to the backup.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a through s1 and s2…")
                .send(crash("primary"))
                .until(vec![crashed("s1")], SOON_MS, "s1 crashes (SIGKILL)…")
                .lock(2, "a", "c2-a")
                .answered("c2-a", RETRY_MS, "c2 finds s1 dead and fails over to s2…")
                .unlock(1, "a", "c1-u")
                .answered("c1-u", RETRY_MS, "c1 fails over too, and unlocks a at s2…")
                .done(),
            notice: "This is the failure Lab 1 is built for: one server, halting. s1 answered every \
                call only after s2 had applied it, so s2 knew everything s1 had told a client. When \
                s1 died, c2 found it dead (connection refused) and turned to s2, which answered as \
                s1 would have: Lock(a) = false, c1 holds it. c1 failed over too and unlocked a at \
                s2. The diagram shows the failover window: the time no client got an answer. s2 \
                now serves alone: a second failure would lose everything.",
            lab1: "Correct: the backup has every acknowledged operation and takes over.",
            verdict: Copes,
        },
        Preset {
            id: "all",
            part: Failure,
            title: "All servers fail at once",
            teaser: "s1 and s2 die together; nothing answers.",
            steps: Script::fresh(BRISK_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a through s1 and s2…")
                .send(crash("*"))
                .until(
                    vec![crashed("s1"), crashed("s2")],
                    SOON_MS,
                    "Every server is killed at once…",
                )
                .lock(2, "a", "c2-a")
                .answered(
                    "c2-a",
                    RETRY_MS,
                    "c2 tries s1, then s2, again and again, and finally gives up…",
                )
                .send(restart("*"))
                .until(
                    vec![started("s1"), started("s2")],
                    SOON_MS,
                    "Both servers restart: fresh processes, empty tables…",
                )
                .lock(2, "a", "c2-a2")
                .answered("c2-a2", RETRY_MS, "c2 asks again…")
                .wait(1000, "")
                .done(),
            notice: "With both servers dead, nothing answers: c2 tried s1, then s2, again and \
                again, and gave up (its call ended without an answer: its effect is unknown). \
                Replication guards against one failure, not two at once. Worse, when the servers \
                restarted they came back empty — Lab 1 keeps nothing on disk — and s2 granted \
                Lock(a) to c2 although c1 had been granted it and never unlocked it: everything \
                acknowledged before the crash is lost. A later issue adds durability.",
            lab1: "Nothing answers; calls give up. After a restart every table is empty: \
                acknowledged locks are forgotten and granted again.",
            verdict: Breaks,
        },
        Preset {
            id: "midway",
            part: Failure,
            title: "A crash midway through an operation",
            teaser: "s1 dies after forwarding, before the ack.",
            steps: Script::fresh(SLOW_MS)
                .send(Command::CrashAt {
                    node: node("primary"),
                    point: CrashPoint::AfterForward,
                    dying_ms: None,
                    tag: None,
                })
                .lock(1, "a", "c1-a")
                .until(
                    vec![crashed("s1")],
                    RETRY_MS,
                    "s1 runs Lock(a), forwards it to s2… and dies before s2's ack is back",
                )
                .answered(
                    "c1-a",
                    RETRY_MS,
                    "The forward is already on the wire; c1 sees s1's connection close and retries at s2…",
                )
                .done(),
            notice: "s1 ran Lock(a) and forwarded it, then died before s2's ack came back (crash_at \
                after_forward). The forward was already on the wire, so s2 applied it. c1 saw its \
                connection close and re-sent the same request #c1.1 to s2, which answered from its \
                at-most-once record (\"duplicate: recorded true\") instead of locking a second time \
                — a second Lock(a) would have told c1 false about a lock it holds. That is why a \
                retry carries the same request id. (Had s1 died before forwarding, s2 would simply \
                run the request for the first time: also right.)",
            lab1: "Correct: the retry carries the same request id, and the backup answers it from \
                its record.",
            verdict: Copes,
        },
        Preset {
            id: "client",
            part: Failure,
            title: "A client fails",
            teaser: "c1 dies holding lock a.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a…")
                .send(Command::CrashClient {
                    client: 1,
                    tag: None,
                })
                .wait(1500, "c1's process is killed (SIGKILL)…")
                .lock(2, "a", "c2-a")
                .answered("c2-a", RETRY_MS, "c2 asks for lock a…")
                .wait(2500, "c2 waits a while…")
                .lock(2, "a", "c2-a2")
                .answered("c2-a2", RETRY_MS, "c2 asks again…")
                .done(),
            notice: "c1 took lock a, then its process was killed. Nobody tells the servers, and a \
                Lab 1 lock has no owner and no lease: a stays held forever. c2 asks, waits, asks \
                again, and gets false every time. Only an Unlock(a) frees it, from any client. Real \
                lock services give each lock a lease that runs out when its holder stops renewing \
                it.",
            lab1: "The lock stays held forever: locks have no owner and no lease.",
            verdict: Stuck,
        },
        Preset {
            id: "retry",
            part: Tool,
            title: "Retry",
            teaser: "s1's reply to c1 is lost; c1 retries at s2.",
            steps: Script::fresh(SLOW_MS)
                .send(link("s1", "c1", 1.0, 0.0))
                .lock(1, "a", "c1-a")
                .answered(
                    "c1-a",
                    RETRY_MS,
                    "Lock(a) runs on s1 and s2; s1's reply is lost; c1 waits, then retries at s2…",
                )
                .send(heal())
                .done(),
            notice: "Retry: c1 got no reply (the network lost it), so after its timeout it sent the \
                same request again, with the same id #c1.1, to the backup. The Lock had already run \
                on both servers; s2 recognised the id and answered from its at-most-once record \
                (true) instead of running it again. Retrying is safe only because of that record: \
                a Lock retried blindly would answer false to the client that holds the lock. Note \
                that s2 now serves alone while s1 is alive: a lost reply looks like a dead server.",
            lab1: "The clerk retries with the same request id; at-most-once makes it safe.",
            verdict: Copes,
        },
        Preset {
            id: "replicate",
            part: Tool,
            title: "Replicate",
            teaser: "Every operation reaches the backup before the client hears.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered(
                    "c1-a",
                    SOON_MS,
                    "s1 forwards Lock(a) to s2 and answers c1 only after s2's ack…",
                )
                .lock(2, "a", "c2-a")
                .answered("c2-a", SOON_MS, "c2 asks for a too: false, forwarded all the same…")
                .send(crash("primary"))
                .until(vec![crashed("s1")], SOON_MS, "s1 crashes (SIGKILL)…")
                .lock(2, "a", "c2-a2")
                .answered("c2-a2", RETRY_MS, "c2 fails over to s2 and asks again…")
                .done(),
            notice: "Replicate: s1 forwarded every operation to s2 — the failed Lock too — and \
                answered only after s2's ack, so both tables hold a (see the cards). When s1 died, \
                s2 answered c2 exactly as s1 would have: false, a is held. Replication is what lets \
                the backup replace the primary without forgetting anything a client was told.",
            lab1: "The primary forwards every operation and replies only after the backup's ack.",
            verdict: Copes,
        },
        Preset {
            id: "replace",
            part: Tool,
            title: "Replace",
            teaser: "A restarted backup comes back empty and is trusted.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .answered("c1-a", SOON_MS, "c1 takes lock a; both tables hold it…")
                .send(crash("backup"))
                .until(vec![crashed("s2")], SOON_MS, "s2 crashes; s1 serves alone…")
                .send(restart("s2"))
                .until(
                    vec![started("s2")],
                    SOON_MS,
                    "A fresh s2 starts, as backup, with an empty table…",
                )
                .wait(1500, "Nothing copies s1's table to the new s2…")
                .send(crash("primary"))
                .until(vec![crashed("s1")], SOON_MS, "Now s1 crashes…")
                .lock(2, "a", "c2-a")
                .answered("c2-a", RETRY_MS, "c2 fails over to the new, empty s2…")
                .wait(1000, "")
                .done(),
            notice: "Lab 1 can restart a server but cannot replace one. The new s2 came up empty: \
                nothing copied s1's table to it, and s1, serving alone since s2 died, never \
                forwarded to it again. When s1 crashed, c2 failed over to the new s2, which trusted \
                its empty table and granted Lock(a) — already granted to c1, never unlocked. The \
                same lock, granted twice: Lab 1 lacks replace. A later issue's view service makes \
                it work: it names the new backup, and the primary copies its state over before the \
                backup counts.",
            lab1: "Missing: a restarted server comes back empty and nothing copies the state to \
                it; after the next failover the same lock is granted twice.",
            verdict: Breaks,
        },
        Preset {
            id: "hang",
            part: Beyond,
            title: "A server that hangs, then runs again",
            teaser: "s1 is paused (SIGSTOP) mid-operation, then resumed: two primaries.",
            steps: Script::fresh(SLOW_MS)
                .lock(1, "a", "c1-a")
                .wait(
                    1200,
                    "c1's Lock(a) reaches s1, which runs it and forwards it to s2…",
                )
                .send(Command::Pause {
                    node: node("primary"),
                    tag: None,
                })
                .answered(
                    "c1-a",
                    RETRY_MS,
                    "s1 is stopped, not dead: c1 hears nothing, times out and turns to s2…",
                )
                .send(Command::Resume {
                    node: node("s1"),
                    tag: None,
                })
                .until(
                    vec![Fact::Alone("s1".into())],
                    SOON_MS,
                    "s1 runs again, and finds its wait for s2's ack long over…",
                )
                .lock(3, "z", "c3-z")
                .answered(
                    "c3-z",
                    SOON_MS,
                    "c3 is new: it asks the primary it knows, s1…",
                )
                .lock(1, "z", "c1-z")
                .answered("c1-z", SOON_MS, "c1 stays with s2…")
                .wait(1500, "")
                .done(),
            notice: "s1 never crashed: it was stopped (SIGSTOP), as a process is by a long GC \
                pause, a swapped-out machine or a debugger. To c1 that looked exactly like a crash: \
                no answer, so it turned to s2, which answered Lock(a) from its record and began \
                serving alone. Then s1 ran again, believing it was still the primary; its wait for \
                s2's ack had expired while it slept, so it decided s2 was dead and served alone \
                too. Two primaries: c3 got Lock(z) from s1, c1 got Lock(z) from s2, and the page \
                says so in red. pbscope's step-down does not help here, because s1 no longer \
                forwards anything that s2 could refuse. Lab 1 assumes a server that does not \
                answer is dead; a paused server comes back. The checker marks this history NOT \
                linearizable, with both calls; the view service of a later issue repairs it.",
            lab1: "A paused primary that runs again still serves, alone, beside the backup that \
                took over: the same lock is granted twice.",
            verdict: Breaks,
        },
    ]
}

// ------------------------------------------------------------------------------------------
// Commands: tags and captions
// ------------------------------------------------------------------------------------------

/// `cmd` with its tag set to `tag`.
pub fn retag(cmd: &Command, tag: &str) -> Command {
    let mut cmd = cmd.clone();
    *cmd.tag_mut() = Some(tag.to_owned());
    cmd
}

fn percent(p: Probability) -> String {
    format!("{}%", (p.0 * 100.0).round())
}

/// A command in plain words, for the panel.
pub fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Lock { client, lock, .. } => format!("c{client} calls Lock({lock})"),
        Command::Unlock { client, lock, .. } => format!("c{client} calls Unlock({lock})"),
        Command::Reset { .. } => "Reset: a fresh cluster, empty tables".into(),
        Command::SetSlowMotion { delay_ms, .. } => {
            format!("Slow motion: every message waits {delay_ms} ms")
        }
        Command::Crash { node, .. } if *node == NodeRef::All => {
            "Crash every server at once (SIGKILL)".into()
        }
        Command::Crash { node, .. } => format!("Crash the {} (SIGKILL)", node_words(node)),
        Command::CrashBeforeReply { node, .. } => {
            format!("Arm the {} to die before its next reply", node_words(node))
        }
        Command::CrashAt { node, point, .. } => format!(
            "Arm the {} to die at {} of its next operation",
            node_words(node),
            point.name()
        ),
        Command::SetLink {
            from,
            to,
            drop,
            duplicate,
            delay_ms,
            ..
        } => {
            let mut what = Vec::new();
            if drop.0 > 0.0 {
                what.push(if drop.0 >= 1.0 {
                    "loses every message".to_owned()
                } else {
                    format!("loses {} of the messages", percent(*drop))
                });
            }
            if duplicate.0 > 0.0 {
                what.push(if duplicate.0 >= 1.0 {
                    "delivers every message twice".to_owned()
                } else {
                    format!("duplicates {} of the messages", percent(*duplicate))
                });
            }
            if *delay_ms > 0 {
                what.push(format!("delays messages {delay_ms} ms"));
            }
            if what.is_empty() {
                what.push("is back to normal".into());
            }
            format!("The network from {from} to {to} {}", what.join(" and "))
        }
        Command::Partition { groups, .. } if groups.is_empty() => "End the partition".into(),
        Command::Partition { groups, .. } => {
            let groups: Vec<String> = groups
                .iter()
                .map(|g| {
                    let names: Vec<String> = g.iter().map(Endpoint::to_string).collect();
                    format!("{{{}}}", names.join(", "))
                })
                .collect();
            format!("Partition the network: {}", groups.join(" | "))
        }
        Command::Cut { from, to, .. } => format!("Cut the link {from} → {to} (one way)"),
        Command::Heal { .. } => "Heal the network".into(),
        Command::Pause { node, .. } => format!("Pause the {} (SIGSTOP)", node_words(node)),
        Command::Resume { node, .. } => format!("Resume the {} (SIGCONT)", node_words(node)),
        Command::Restart { node, .. } if *node == NodeRef::All => {
            "Restart every dead server: fresh processes, empty tables".into()
        }
        Command::Restart { node, .. } => {
            format!(
                "Restart {}: a fresh process, an empty table",
                node_words(node)
            )
        }
        Command::CrashClient { client, .. } => format!("Kill client c{client}'s process (SIGKILL)"),
        other => format!("Send `{}`", other.name()),
    }
}

fn node_words(n: &NodeRef) -> String {
    match n {
        NodeRef::Role(Role::Primary) => "primary".into(),
        NodeRef::Role(Role::Backup) => "backup".into(),
        NodeRef::Role(Role::Deposed) => "deposed server".into(),
        NodeRef::Server(id) => id.to_string(),
        NodeRef::All => "every server".into(),
    }
}

// ------------------------------------------------------------------------------------------
// A run
// ------------------------------------------------------------------------------------------

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Running,
    Done,
    /// A command was refused or a wait timed out: says which, plainly.
    Failed(String),
    Stopped,
}

/// How a call of the script ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok { ok: bool, server: String },
    GaveUp,
}

/// What the store should do for the run (it owns the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    ClearView,
}

/// One preset being played. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LectureRun {
    pub run: u64,
    /// Index into [`presets`].
    pub preset: usize,
    /// The step now (== the number of steps when done).
    pub step: usize,
    pub status: Status,
    /// The newest page time the run heard of (a command's send is timed with it).
    pub now_ms: f64,
    /// Page time the current step began.
    step_since_ms: f64,
    /// Facts count from after this seq: the log as it was when the previous wait ended.
    mark: u64,
    seen: Vec<(u64, Fact)>,
    /// The run's own cluster is up: its `reset` was seen (what the old cluster still reports,
    /// calls ended by the reset, belongs to the story before).
    fresh: bool,
    answers: BTreeMap<String, Answer>,
    /// What happened, in plain words, oldest first.
    pub notes: Vec<String>,
}

impl LectureRun {
    pub fn new(run: u64, preset: usize, now_ms: f64, last_seq: u64) -> Self {
        LectureRun {
            run,
            preset,
            step: 0,
            status: Status::Running,
            now_ms,
            step_since_ms: now_ms,
            mark: last_seq,
            seen: Vec::new(),
            fresh: false,
            answers: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    pub fn preset(&self) -> &'static Preset {
        &presets()[self.preset.min(presets().len() - 1)]
    }

    fn prefix(&self) -> String {
        format!("lec{}-", self.run)
    }

    /// Whether `tag` is one of this run's commands.
    pub fn owns(&self, tag: &str) -> bool {
        tag.starts_with(&self.prefix())
    }

    pub fn running(&self) -> bool {
        self.status == Status::Running
    }

    pub fn current(&self) -> Option<&'static Step> {
        self.preset().steps.get(self.step)
    }

    /// The command due now (tagged for this run), if the current step sends one.
    pub fn to_send(&self) -> Option<Command> {
        if !self.running() {
            return None;
        }
        match &self.current()?.what {
            Do::Send(cmd) => Some(retag(
                cmd,
                &format!("{}{}", self.prefix(), cmd.tag().unwrap_or_default()),
            )),
            _ => None,
        }
    }

    /// A command left the page: if it is the one due, the run moves on.
    pub fn on_sent(&mut self, tag: &str, now_ms: f64) {
        let due = self.to_send();
        if due.as_ref().and_then(Command::tag) == Some(tag) {
            self.next(now_ms);
        }
    }

    /// The server refused one of this run's commands.
    pub fn on_error(&mut self, tag: &str, code: &str, message: &str) {
        if !self.running() || !self.owns(tag) {
            return;
        }
        let name = &tag[self.prefix().len()..];
        let what = self
            .preset()
            .steps
            .iter()
            .find_map(|s| match &s.what {
                Do::Send(c) if c.tag() == Some(name) => Some(format!("`{}`", c.name())),
                _ => None,
            })
            .unwrap_or_else(|| "a command".into());
        self.status = Status::Failed(format!(
            "the server refused {what}: {code}: {message}. This preset needs it; it stopped here."
        ));
    }

    pub fn stop(&mut self) {
        if self.running() {
            self.status = Status::Stopped;
        }
    }

    fn next(&mut self, now_ms: f64) {
        self.step += 1;
        self.step_since_ms = now_ms;
    }

    fn answered(&self, name: &str) -> bool {
        self.answers.contains_key(name)
    }

    fn holds(&self, cond: &Cond) -> bool {
        match cond {
            Cond::Answered(name) => self.answered(name),
            Cond::Seen(facts) => facts
                .iter()
                .all(|f| self.seen.iter().any(|(seq, s)| *seq > self.mark && s == f)),
        }
    }

    /// Moves past every step that is over at `now_ms` (`last_seq`: the newest event the page
    /// has); answers what the page must do for the steps it passed.
    pub fn advance(&mut self, now_ms: f64, last_seq: u64) -> Vec<Effect> {
        self.now_ms = self.now_ms.max(now_ms);
        let now_ms = self.now_ms;
        let mut effects = Vec::new();
        while self.running() {
            let Some(step) = self.current() else {
                self.status = Status::Done;
                break;
            };
            match &step.what {
                Do::Send(_) => break,
                Do::ClearView => {
                    effects.push(Effect::ClearView);
                    self.next(now_ms);
                }
                Do::Wait { ms } => {
                    if now_ms - self.step_since_ms < *ms as f64 {
                        break;
                    }
                    self.mark = last_seq;
                    self.next(now_ms);
                }
                Do::Until { cond, timeout_ms } => {
                    if self.holds(cond) {
                        self.mark = last_seq;
                        self.next(now_ms);
                    } else if now_ms - self.step_since_ms >= *timeout_ms as f64 {
                        self.status = Status::Failed(format!(
                            "waited {} s and it did not happen: {}",
                            timeout_ms / 1000,
                            step.caption.trim_end_matches('…')
                        ));
                    } else {
                        break;
                    }
                }
            }
        }
        effects
    }

    /// Whether the run differs from `before` in more than the time it heard of.
    pub fn moved_since(&self, before: &LectureRun) -> bool {
        let mut same_time = self.clone();
        same_time.now_ms = before.now_ms;
        same_time != *before
    }

    /// When the run must be looked at again, if only time can move it.
    pub fn wake_in_ms(&self, now_ms: f64) -> Option<f64> {
        if !self.running() {
            return None;
        }
        let left = |ms: u64| (self.step_since_ms + ms as f64 - now_ms).max(0.0);
        match &self.current()?.what {
            Do::Wait { ms } => Some(left(*ms)),
            Do::Until { timeout_ms, .. } => Some(left(*timeout_ms)),
            _ => None,
        }
    }

    /// How the call named `name` ended, if it did.
    #[cfg(test)]
    pub fn answer(&self, name: &str) -> Option<&Answer> {
        self.answers.get(name)
    }

    /// Whether [`LectureRun::observe`] may learn anything from `e` (so the store copies the
    /// run only for those).
    pub fn cares(e: &Event) -> bool {
        matches!(
            e.kind,
            EventKind::ClusterReset { .. }
                | EventKind::ProcessStarted { .. }
                | EventKind::Crashed { .. }
                | EventKind::RpcFailed { .. }
                | EventKind::RoleChanged { .. }
                | EventKind::Executed {
                    duplicate: true,
                    ..
                }
                | EventKind::MsgLost { .. }
                | EventKind::MsgDelivered {
                    duplicate: true,
                    ..
                }
                | EventKind::ClientStarted { .. }
                | EventKind::OpCompleted { .. }
                | EventKind::OpFailed { .. }
        )
    }

    /// Folds one event of the log in: what scripts wait for, and the notes.
    pub fn observe(&mut self, e: &Event) {
        if !self.running() {
            return;
        }
        if !self.fresh {
            self.fresh = matches!(e.kind, EventKind::ClusterReset { .. });
            return;
        }
        let at = e.node.as_str();
        let fact = match &e.kind {
            EventKind::ProcessStarted { pid, .. } => {
                if self
                    .seen
                    .iter()
                    .any(|(_, f)| *f == Fact::Crashed(at.into()))
                {
                    self.note(format!(
                        "{at} started again (pid {pid}): a fresh process with an empty table."
                    ));
                }
                Some(Fact::Started(at.into()))
            }
            EventKind::Crashed { cause, req, .. } => {
                let how = match cause {
                    shared::CrashCause::Command => "killed (SIGKILL)".to_owned(),
                    shared::CrashCause::Reset => return,
                    shared::CrashCause::Dying => "killed after going silent".to_owned(),
                    other => {
                        let point = match other {
                            shared::CrashCause::BeforeForward => CrashPoint::BeforeForward,
                            shared::CrashCause::AfterForward => CrashPoint::AfterForward,
                            shared::CrashCause::BeforeAck => CrashPoint::BeforeAck,
                            _ => CrashPoint::BeforeReply,
                        }
                        .name();
                        match req {
                            Some(r) => format!("died at {point} of {}", req_id(r)),
                            None => format!("died at {point}"),
                        }
                    }
                };
                self.note(format!("{at} {how}."));
                Some(Fact::Crashed(at.into()))
            }
            EventKind::RpcFailed {
                client,
                req,
                server,
                reason,
                retry_to,
            } => {
                if retry_to == server {
                    // Nobody further to turn to: it tries again and again; said once.
                    self.note_once(format!(
                        "c{client} got no answer from {server} ({reason}) and tries {retry_to} again, and again."
                    ));
                } else {
                    self.note(format!(
                        "c{client} got no answer from {server} ({reason}) and re-sends the same request {} to {retry_to}.",
                        req_id(req)
                    ));
                }
                Some(Fact::RpcFailed(*client))
            }
            EventKind::RoleChanged {
                role: Role::Deposed,
                reason,
                ..
            } => {
                self.note(format!("{at} stepped down: {reason}."));
                Some(Fact::Deposed(at.into()))
            }
            EventKind::RoleChanged {
                role: Role::Primary,
                serving_alone: true,
                reason,
            } => {
                self.note(format!("{at} serves alone: {reason}."));
                Some(Fact::Alone(at.into()))
            }
            EventKind::Executed {
                duplicate: true,
                req,
                op,
                lock,
                ok,
                ..
            } => {
                self.note(format!(
                    "{at} answered {} {}({lock}) from its at-most-once record ({ok}), without running it again.",
                    req_id(req),
                    op_name(*op)
                ));
                Some(Fact::FromRecord(at.into()))
            }
            EventKind::MsgLost {
                from, to, reason, ..
            } if matches!(reason.as_str(), "dropped" | "partition" | "cut") => {
                let why = match reason.as_str() {
                    "dropped" => "the network dropped it",
                    "partition" => "partition",
                    _ => "cut link",
                };
                self.note_once(format!("A message {from} → {to} was lost ({why})."));
                None
            }
            EventKind::MsgDelivered {
                duplicate: true,
                from,
                to,
                ..
            } => {
                self.note_once(format!("A message {from} → {to} arrived twice."));
                None
            }
            EventKind::ClientStarted { incarnation, .. } if *incarnation > 0 => {
                self.note(format!(
                    "{at} started a new process: a new identity (incarnation {incarnation})."
                ));
                None
            }
            EventKind::OpCompleted {
                client,
                op,
                lock,
                tag,
                ok,
                server,
                attempts,
                ..
            } => {
                let tries = if *attempts > 1 {
                    format!(", after {attempts} tries")
                } else {
                    String::new()
                };
                self.note(format!(
                    "c{client}: {}({lock}) = {ok}, answered by {server}{tries}.",
                    op_name(*op)
                ));
                if let Some(name) = self.name_of(tag.as_deref()) {
                    self.answers.insert(
                        name,
                        Answer::Ok {
                            ok: *ok,
                            server: server.to_string(),
                        },
                    );
                }
                None
            }
            EventKind::OpFailed {
                client,
                op,
                lock,
                tag,
                reason,
                ..
            } => {
                self.note(format!(
                    "c{client}: {}({lock}) gave up, no answer ({reason}); its effect is unknown.",
                    op_name(*op)
                ));
                if let Some(name) = self.name_of(tag.as_deref()) {
                    self.answers.insert(name, Answer::GaveUp);
                }
                None
            }
            _ => None,
        };
        if let Some(f) = fact {
            self.seen.push((e.seq, f));
        }
    }

    /// The script's name of a call, from its tag.
    fn name_of(&self, tag: Option<&str>) -> Option<String> {
        tag.and_then(|t| t.strip_prefix(&self.prefix()))
            .map(str::to_owned)
    }

    fn note(&mut self, text: String) {
        if self.notes.len() < NOTES_KEPT {
            self.notes.push(text);
        }
    }

    fn note_once(&mut self, text: String) {
        if !self.notes.contains(&text) {
            self.note(text);
        }
    }
}

/// `#c1.7`, as the diagram labels a request.
fn req_id(r: &shared::RequestId) -> String {
    format!("#{}", format::req(*r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{MsgId, RequestId};

    fn ev(seq: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq * 1000,
            node: node.into(),
            kind,
        }
    }

    fn started(seq: u64, node: &str) -> Event {
        ev(
            seq,
            node,
            EventKind::ProcessStarted {
                pid: 100 + seq as u32,
                role: Role::Primary,
                port: 1,
            },
        )
    }

    fn completed(seq: u64, client: u32, tag: &str, ok: bool, server: &str) -> Event {
        ev(
            seq,
            &format!("c{client}"),
            EventKind::OpCompleted {
                client,
                op: Op::Lock,
                lock: "z".into(),
                tag: Some(tag.into()),
                ok,
                req: RequestId::new(client, 1),
                server: server.into(),
                latency_us: 10,
                attempts: 2,
            },
        )
    }

    /// Plays the run: sends what is due (recording it), feeds `events` when the run waits for
    /// something, and moves time on; answers the commands sent, by name.
    fn send_all(run: &mut LectureRun, now: &mut f64, sent: &mut Vec<Command>) {
        while let Some(cmd) = run.to_send() {
            run.on_sent(cmd.tag().unwrap_or_default(), *now);
            sent.push(cmd);
            run.advance(*now, 0);
        }
    }

    #[test]
    fn the_lecture_lists_ten_failures_then_three_tools_with_unique_ids() {
        let all = presets();
        let failures: Vec<_> = all.iter().filter(|p| p.part == Part::Failure).collect();
        let tools: Vec<&str> = all
            .iter()
            .filter(|p| p.part == Part::Tool)
            .map(|p| p.title)
            .collect();
        assert_eq!(failures.len(), 10);
        assert_eq!(tools, ["Retry", "Replicate", "Replace"]);
        assert!(
            all.iter().any(|p| p.part == Part::Beyond && p.id == "hang"),
            "the paused-primary story, which the checker must light up"
        );
        let mut ids: Vec<&str> = all.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        assert!(all
            .iter()
            .all(|p| !p.notice.is_empty() && !p.lab1.is_empty()));
    }

    #[test]
    fn every_script_starts_from_reset_then_clears_and_slows_down_and_its_waits_are_answerable() {
        for p in presets() {
            let kinds: Vec<&Do> = p.steps.iter().map(|s| &s.what).collect();
            assert!(
                matches!(kinds[0], Do::Send(Command::Reset { .. })),
                "{} starts with reset",
                p.id
            );
            assert!(matches!(kinds[2], Do::ClearView), "{}", p.id);
            assert!(
                matches!(kinds[3], Do::Send(Command::SetSlowMotion { delay_ms, .. }) if *delay_ms > 0),
                "{} is slowed down",
                p.id
            );
            // Every call named is sent before it is waited for, under a unique name.
            let mut sent = Vec::new();
            for s in &p.steps {
                match &s.what {
                    Do::Send(c) => {
                        let tag = c.tag().expect("every command is tagged").to_owned();
                        assert!(!sent.contains(&tag), "{}: {tag} twice", p.id);
                        sent.push(tag);
                    }
                    Do::Until {
                        cond: Cond::Answered(name),
                        ..
                    } => assert!(sent.contains(name), "{}: waits for {name} never sent", p.id),
                    _ => {}
                }
                assert!(!s.caption.is_empty() || matches!(s.what, Do::Wait { .. }));
            }
            // Every command survives the wire (what the gateway parses).
            for s in &p.steps {
                if let Do::Send(c) = &s.what {
                    let json = serde_json::to_string(c).unwrap();
                    let back: Command = serde_json::from_str(&json).unwrap();
                    assert_eq!(&back, c, "{}", p.id);
                }
            }
        }
    }

    #[test]
    fn the_partition_preset_is_the_one_of_the_issue() {
        let p = preset("partition").unwrap();
        let cmds: Vec<String> = p
            .steps
            .iter()
            .filter_map(|s| match &s.what {
                Do::Send(c) => Some(serde_json::to_string(c).unwrap()),
                _ => None,
            })
            .collect();
        assert!(cmds.contains(
            &r#"{"type":"partition","groups":[["s1","c1"],["s2","c2"]],"tag":"s3"}"#.to_owned()
        ));
        assert!(cmds.contains(&r#"{"type":"lock","client":1,"lock":"z","tag":"c1-z"}"#.to_owned()));
        assert!(cmds.contains(&r#"{"type":"lock","client":2,"lock":"z","tag":"c2-z"}"#.to_owned()));
        assert_eq!(p.verdict, Verdict::Breaks);
        assert!(p.notice.contains("granted the same lock twice"));
    }

    #[test]
    fn a_run_sends_in_order_waits_for_facts_and_answers_and_ends_done() {
        let idx = presets().iter().position(|p| p.id == "partition").unwrap();
        let mut run = LectureRun::new(4, idx, 0.0, 10);
        let mut now = 0.0;
        let mut sent = Vec::new();
        send_all(&mut run, &mut now, &mut sent);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].name(), "reset");
        assert_eq!(sent[0].tag(), Some("lec4-s1"));
        assert!(run.owns("lec4-c1-z") && !run.owns("lec40-c1-z"));
        // What the old cluster still says before the reset is not this story.
        run.observe(&completed(8, 1, "lec3-c1-z", false, "s1"));
        run.observe(&ev(
            9,
            "supervisor",
            EventKind::ClusterReset { generation: 2 },
        ));
        assert!(run.notes.is_empty() && run.answer("c1-z").is_none());
        // Waiting for both servers: s1 alone is not enough; events older than the mark never count.
        run.observe(&started(9, "s2"));
        run.observe(&started(11, "s1"));
        assert!(run.advance(now, 11).is_empty());
        assert_eq!(run.wake_in_ms(now), Some(SOON_MS as f64));
        run.observe(&started(12, "s2"));
        now += 100.0;
        assert_eq!(run.advance(now, 12), vec![Effect::ClearView]);
        send_all(&mut run, &mut now, &mut sent);
        let names: Vec<&str> = sent.iter().map(Command::name).collect();
        assert_eq!(
            names,
            ["reset", "set_slow_motion", "partition", "lock", "lock"]
        );
        assert!(run.running());
        // The answers, in either order.
        run.observe(&completed(20, 2, "lec4-c2-z", true, "s2"));
        run.advance(now, 20);
        run.observe(&completed(21, 1, "lec4-c1-z", true, "s1"));
        run.advance(now, 21);
        assert_eq!(
            run.answer("c2-z"),
            Some(&Answer::Ok {
                ok: true,
                server: "s2".into()
            })
        );
        assert!(run.running(), "the closing pause");
        now += 2000.0;
        run.advance(now, 21);
        assert_eq!(run.status, Status::Done);
        assert_eq!(run.to_send(), None);
        assert!(run
            .notes
            .iter()
            .any(|n| n == "c1: Lock(z) = true, answered by s1, after 2 tries."));
    }

    #[test]
    fn a_refused_command_or_a_timeout_stops_the_run_saying_why() {
        let mut run = LectureRun::new(1, 0, 0.0, 0);
        let mut now = 0.0;
        send_all(&mut run, &mut now, &mut Vec::new());
        run.on_error("lec1-s1", "unavailable", "not built yet");
        let Status::Failed(why) = &run.status else {
            panic!("{:?}", run.status)
        };
        assert!(
            why.contains("`reset`") && why.contains("not built yet"),
            "{why}"
        );

        let mut run = LectureRun::new(2, 0, 0.0, 0);
        send_all(&mut run, &mut now, &mut Vec::new());
        run.on_error("lec1-s1", "unavailable", "another run's");
        assert!(run.running());
        run.advance(now + SOON_MS as f64, 0);
        let Status::Failed(why) = &run.status else {
            panic!("{:?}", run.status)
        };
        assert!(why.contains("Waiting for the fresh s1"), "{why}");
        run.stop();
        assert!(
            matches!(run.status, Status::Failed(_)),
            "stop keeps the failure"
        );
    }

    #[test]
    fn notes_tell_the_retry_the_record_and_the_step_down() {
        let mut run = LectureRun::new(1, 0, 0.0, 0);
        run.observe(&ev(
            0,
            "supervisor",
            EventKind::ClusterReset { generation: 1 },
        ));
        let req = RequestId::new(1, 1);
        run.observe(&ev(
            1,
            "s1",
            EventKind::Crashed {
                pid: 7,
                cause: shared::CrashCause::AfterForward,
                req: Some(req),
            },
        ));
        run.observe(&ev(
            2,
            "c1",
            EventKind::RpcFailed {
                client: 1,
                req,
                server: "s1".into(),
                reason: "connection closed".into(),
                retry_to: "s2".into(),
            },
        ));
        run.observe(&ev(
            3,
            "s2",
            EventKind::Executed {
                req,
                op: Op::Lock,
                lock: "a".into(),
                ok: true,
                held: true,
                duplicate: true,
                forwarded: false,
            },
        ));
        for seq in 4..6 {
            run.observe(&ev(
                seq,
                "s1",
                EventKind::MsgLost {
                    msg_id: MsgId(seq),
                    from: "c1".into(),
                    to: "s1".into(),
                    reason: "partition".into(),
                },
            ));
        }
        assert_eq!(
            run.notes,
            [
                "s1 died at after_forward of #c1.1.",
                "c1 got no answer from s1 (connection closed) and re-sends the same request #c1.1 to s2.",
                "s2 answered #c1.1 Lock(a) from its at-most-once record (true), without running it again.",
                "A message c1 → s1 was lost (partition).",
            ]
        );
    }

    #[test]
    fn a_client_trying_the_same_server_again_and_again_is_noted_once() {
        let mut run = LectureRun::new(1, 0, 0.0, 0);
        run.observe(&ev(
            0,
            "supervisor",
            EventKind::ClusterReset { generation: 1 },
        ));
        for seq in 1..30 {
            run.observe(&ev(
                seq,
                "c2",
                EventKind::RpcFailed {
                    client: 2,
                    req: RequestId::new(2, 1),
                    server: "s2".into(),
                    reason: "connection refused".into(),
                    retry_to: "s2".into(),
                },
            ));
        }
        assert_eq!(
            run.notes,
            ["c2 got no answer from s2 (connection refused) and tries s2 again, and again."]
        );
    }

    #[test]
    fn commands_read_as_plain_words() {
        assert_eq!(
            describe(&partition(&[&["s1", "c1"], &["s2", "c2"]])),
            "Partition the network: {s1, c1} | {s2, c2}"
        );
        assert_eq!(
            describe(&link("c1", "s1", 1.0, 0.0)),
            "The network from c1 to s1 loses every message"
        );
        assert_eq!(
            describe(&crash("*")),
            "Crash every server at once (SIGKILL)"
        );
        assert_eq!(describe(&crash("primary")), "Crash the primary (SIGKILL)");
        let r = retag(&heal(), "lec3-s9");
        assert_eq!(r.tag(), Some("lec3-s9"));
    }
}

/// The README's table ("The lecture, from a button") is this data: a row per entry.
#[cfg(test)]
mod readme {
    use super::*;

    fn row(p: &Preset) -> String {
        let verdict = match p.verdict {
            Verdict::Copes => "",
            Verdict::Breaks => " **Lab 1 breaks.**",
            Verdict::Stuck => " **Lab 1 gets stuck.**",
        };
        let tool = match p.part {
            Part::Tool => "Tool: ",
            Part::Beyond => "Beyond the list: ",
            Part::Failure => "",
        };
        format!(
            "| {tool}{} | `{}`: {} | {}{verdict} |",
            p.title, p.id, p.teaser, p.lab1
        )
    }

    #[test]
    fn the_readme_table_says_what_the_presets_say() {
        let readme = include_str!("../../README.md");
        let rows: Vec<String> = presets().iter().map(row).collect();
        let missing: Vec<&String> = rows
            .iter()
            .filter(|r| !readme.contains(r.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's lecture table is out of date; its rows are:\n{}",
            rows.join("\n")
        );
    }
}
