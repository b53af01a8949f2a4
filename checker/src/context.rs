//! What the monitor saw happen to the servers and the network, to explain a violation in words.

use shared::{CrashCause, FaultPlan, NodeId, Role};

#[derive(Clone, Debug)]
pub(crate) enum What {
    Started(Role),
    Role {
        role: Role,
        alone: bool,
        reason: String,
    },
    Crashed(CrashCause),
    Exited,
    Dying,
    Paused,
    Resumed,
    /// The fault plan now in force.
    Faults(FaultPlan),
}

#[derive(Clone, Debug)]
pub(crate) struct Fact {
    pub t_us: u64,
    pub node: NodeId,
    pub what: What,
}

/// A server's role at some moment, with why and since when it held it.
#[derive(Clone, Debug)]
pub(crate) struct RoleAt {
    pub role: Role,
    pub alone: bool,
    pub reason: String,
    pub since: u64,
    /// When the current stint as primary began, why, and whether alone then (`None` unless
    /// primary).
    pub primary_since: Option<(u64, String, bool)>,
}

/// Everything the monitor saw, in arrival order (nearly time order).
#[derive(Clone, Debug, Default)]
pub(crate) struct Context {
    pub facts: Vec<Fact>,
}

/// `12.345 s`.
/// A moment on the run's clock, written as the page's time axis writes it (`2.500 s`,
/// `1:22.366`, `1:02:03.004`), so the words and the diagram name it alike.
pub(crate) fn secs(t_us: u64) -> String {
    let s = t_us / 1_000_000;
    let ms = (t_us % 1_000_000) / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}.{ms:03}", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}:{:02}.{ms:03}", s / 60, s % 60)
    } else {
        format!("{s}.{ms:03} s")
    }
}

fn role_name(role: Role, alone: bool) -> &'static str {
    match (role, alone) {
        (Role::Primary, true) => "primary serving alone",
        (Role::Primary, false) => "primary",
        (Role::Backup, _) => "backup",
        (Role::Deposed, _) => "deposed",
    }
}

impl Context {
    pub fn push(&mut self, t_us: u64, node: &NodeId, what: What) {
        self.facts.push(Fact {
            t_us,
            node: node.clone(),
            what,
        });
    }

    /// The role `server` held at `t_us`, with the reason it took it, if known.
    pub fn role_at(&self, server: &str, t_us: u64) -> Option<RoleAt> {
        let mut changes: Vec<RoleAt> = self
            .facts
            .iter()
            .filter(|f| f.t_us <= t_us && f.node.as_str() == server)
            .filter_map(|f| match &f.what {
                What::Started(r) => Some(RoleAt {
                    role: *r,
                    alone: false,
                    reason: "started".to_owned(),
                    since: f.t_us,
                    primary_since: None,
                }),
                What::Role {
                    role,
                    alone,
                    reason,
                } => Some(RoleAt {
                    role: *role,
                    alone: *alone,
                    reason: reason.clone(),
                    since: f.t_us,
                    primary_since: None,
                }),
                _ => None,
            })
            .collect();
        changes.sort_by_key(|r| r.since);
        // The stint as primary the last change belongs to began where the role last became
        // primary: serving alone later is not a takeover.
        let mut began: Option<(u64, String, bool)> = None;
        for c in &changes {
            match (c.role == Role::Primary, &began) {
                (true, None) => began = Some((c.since, c.reason.clone(), c.alone)),
                (false, _) => began = None,
                (true, Some(_)) => {}
            }
        }
        changes.pop().map(|mut last| {
            last.primary_since = began;
            last
        })
    }

    /// Describes the servers `servers` (the ones that answered the calls at fault) around
    /// `[from, to]`: their roles, and crashes, pauses and partitions in that span.
    pub fn describe(&self, servers: &[(String, u64)], from: u64, to: u64) -> String {
        let mut parts: Vec<String> = Vec::new();
        // Two servers answering, both believing they serve: say who took over while who served.
        let roles: Vec<(String, u64, Option<RoleAt>)> = servers
            .iter()
            .map(|(s, t)| (s.clone(), *t, self.role_at(s, *t)))
            .collect();
        let serving: Vec<&(String, u64, Option<RoleAt>)> = roles
            .iter()
            .filter(|(_, _, r)| r.as_ref().is_some_and(|r| r.role == Role::Primary))
            .collect();
        let mut distinct: Vec<&str> = Vec::new();
        for (s, _, _) in &roles {
            if !distinct.contains(&s.as_str()) {
                distinct.push(s);
            }
        }
        // What happened since a takeover explains it, even before the calls at fault began.
        let mut span_from = from;
        if distinct.len() >= 2 && serving.len() >= 2 {
            // The one that became primary last took over; the other still served.
            let newer = serving
                .iter()
                .max_by_key(|r| {
                    r.2.as_ref()
                        .and_then(|x| x.primary_since.as_ref().map(|p| p.0))
                })
                .copied();
            let older = serving
                .iter()
                .find(|r| newer.is_some_and(|n| n.0 != r.0))
                .copied();
            if let (Some(n), Some(o)) = (newer, older) {
                if let Some((since, reason, alone)) =
                    n.2.as_ref().and_then(|r| r.primary_since.clone())
                {
                    // "While it still served": the other answered after the takeover, or was
                    // still alive and primary when the newer one answered.
                    let (o_last, n_last) = (
                        roles
                            .iter()
                            .filter(|x| x.0 == o.0)
                            .map(|x| x.1)
                            .max()
                            .unwrap_or(o.1),
                        roles
                            .iter()
                            .filter(|x| x.0 == n.0)
                            .map(|x| x.1)
                            .max()
                            .unwrap_or(n.1),
                    );
                    span_from = span_from.min(since);
                    let still = o_last >= since
                        || (!self.went_away(&o.0, o.1, n_last)
                            && self
                                .role_at(&o.0, n_last)
                                .is_some_and(|x| x.role == Role::Primary));
                    let tail = if still {
                        format!("while {} still served", o.0)
                    } else {
                        format!("after {}'s answer", o.0)
                    };
                    parts.push(format!(
                        "{} had taken over ({} since {}: {}) {tail}",
                        n.0,
                        role_name(Role::Primary, alone),
                        secs(since),
                        reason,
                    ));
                }
            }
        } else {
            for (s, t, r) in &roles {
                if let Some(r) = r {
                    let line = format!(
                        "{s} was {} when it answered at {}",
                        role_name(r.role, r.alone),
                        secs(*t)
                    );
                    if !parts.contains(&line) {
                        parts.push(line);
                    }
                }
            }
        }
        // Pauses in force when the told span began: before what happened during it.
        for s in &distinct {
            if self.paused_at(s, span_from) {
                parts.push(format!(
                    "{s} was paused at {} (stopped, yet still holding its role)",
                    secs(span_from)
                ));
            }
        }
        let from = span_from;
        let before = self.plan_at(from);
        let in_force = plan_words(&before);
        if !in_force.is_empty() {
            parts.push(format!("in force: {}", in_force.join(", ")));
        }
        let mut plan = before;
        for f in self.facts.iter().filter(|f| f.t_us > from && f.t_us <= to) {
            let at = secs(f.t_us);
            let line = match &f.what {
                What::Crashed(cause) => {
                    format!("{} crashed at {at}{}", f.node, cause_words(*cause))
                }
                What::Dying => format!("{} went silent at {at}", f.node),
                What::Paused => format!("{} was paused at {at}", f.node),
                What::Resumed => format!("{} resumed at {at}", f.node),
                What::Started(_) => format!("{} (re)started at {at}", f.node),
                What::Faults(next) => {
                    let mut changes = Vec::new();
                    if next.partition != plan.partition {
                        changes.push(if next.partition.is_empty() {
                            format!("the partition healed at {at}")
                        } else {
                            format!(
                                "a partition {} began at {at}",
                                groups_words(&next.partition)
                            )
                        });
                    }
                    if next.links != plan.links || next.cuts != plan.cuts {
                        let mut quiet = next.clone();
                        quiet.partition.clear();
                        let words = plan_words(&quiet);
                        changes.push(if words.is_empty() {
                            format!("the message faults were lifted at {at}")
                        } else {
                            format!("the message faults became {} at {at}", words.join(", "))
                        });
                    }
                    plan = next.clone();
                    if changes.is_empty() {
                        continue;
                    }
                    changes.join("; ")
                }
                _ => continue,
            };
            parts.push(line);
        }
        parts.join("; ")
    }

    /// Whether `server` crashed, exited or went silent in `(from, to]`.
    fn went_away(&self, server: &str, from: u64, to: u64) -> bool {
        self.facts.iter().any(|f| {
            f.t_us > from
                && f.t_us <= to
                && f.node.as_str() == server
                && matches!(f.what, What::Crashed(_) | What::Exited | What::Dying)
        })
    }

    /// The fault plan in force at `t_us` (none before the first `faults_changed`).
    fn plan_at(&self, t_us: u64) -> FaultPlan {
        self.facts
            .iter()
            .filter(|f| f.t_us <= t_us)
            .filter_map(|f| match &f.what {
                What::Faults(p) => Some(p.clone()),
                _ => None,
            })
            .next_back()
            .unwrap_or_default()
    }

    fn paused_at(&self, server: &str, t_us: u64) -> bool {
        self.facts
            .iter()
            .filter(|f| f.t_us <= t_us && f.node.as_str() == server)
            .filter_map(|f| match f.what {
                What::Paused => Some(true),
                What::Resumed | What::Crashed(_) | What::Exited | What::Started(_) => Some(false),
                _ => None,
            })
            .next_back()
            .unwrap_or(false)
    }
}

/// What a fault plan does, for people: "a partition s1,c1 | s2,c2", "a cut s1->s2",
/// "s1->s2 dropping 30% of messages".
fn plan_words(plan: &FaultPlan) -> Vec<String> {
    let mut out = Vec::new();
    if !plan.partition.is_empty() {
        out.push(format!("a partition {}", groups_words(&plan.partition)));
    }
    for c in &plan.cuts {
        out.push(format!("a cut {}->{}", c.from, c.to));
    }
    for l in &plan.links {
        let mut what = Vec::new();
        if l.drop.0 > 0.0 {
            what.push(format!("dropping {:.0}%", l.drop.0 * 100.0));
        }
        if l.duplicate.0 > 0.0 {
            what.push(format!("duplicating {:.0}%", l.duplicate.0 * 100.0));
        }
        if l.delay_ms > 0 || l.jitter_ms > 0 {
            what.push(format!(
                "delaying {} ms (+{} ms jitter)",
                l.delay_ms, l.jitter_ms
            ));
        }
        if !what.is_empty() {
            out.push(format!(
                "{}->{} {} of messages",
                l.from,
                l.to,
                what.join(" and ")
            ));
        }
    }
    out
}

fn groups_words(groups: &[Vec<NodeId>]) -> String {
    groups
        .iter()
        .map(|g| {
            let names: Vec<&str> = g.iter().map(|n| n.as_str()).collect();
            format!("{{{}}}", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn cause_words(cause: CrashCause) -> &'static str {
    match cause {
        CrashCause::Command => "",
        CrashCause::BeforeReply => " (before its reply)",
        CrashCause::Reset => " (reset)",
        CrashCause::BeforeForward => " (before forwarding)",
        CrashCause::AfterForward => " (after forwarding)",
        CrashCause::BeforeAck => " (before its ack)",
        CrashCause::Dying => " (after going silent)",
    }
}
