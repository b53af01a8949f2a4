//! What the monitor saw happen to the servers and the network, to explain a violation in words.

use shared::{CrashCause, NodeId, Role};

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
    Partition(Vec<Vec<NodeId>>),
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
}

/// Everything the monitor saw, in arrival order (nearly time order).
#[derive(Clone, Debug, Default)]
pub(crate) struct Context {
    pub facts: Vec<Fact>,
}

/// `12.345 s`.
pub(crate) fn secs(t_us: u64) -> String {
    format!("{}.{:03} s", t_us / 1_000_000, (t_us / 1_000) % 1_000)
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
        self.facts
            .iter()
            .filter(|f| f.t_us <= t_us && f.node.as_str() == server)
            .filter_map(|f| match &f.what {
                What::Started(r) => Some(RoleAt {
                    role: *r,
                    alone: false,
                    reason: "started".to_owned(),
                    since: f.t_us,
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
                }),
                _ => None,
            })
            .max_by_key(|r| r.since)
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
        if distinct.len() >= 2 && serving.len() >= 2 {
            // The one that became primary last took over; the other still served.
            let newer = serving
                .iter()
                .max_by_key(|r| r.2.as_ref().map(|x| x.since))
                .copied();
            let older = serving
                .iter()
                .find(|r| newer.is_some_and(|n| n.0 != r.0))
                .copied();
            if let (Some(n), Some(o)) = (newer, older) {
                if let Some(r) = &n.2 {
                    parts.push(format!(
                        "{} had taken over ({} since {}: {}) while {} still served",
                        n.0,
                        role_name(Role::Primary, r.alone),
                        secs(r.since),
                        r.reason,
                        o.0
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
        let mut seen_partition = false;
        for f in self.facts.iter().filter(|f| f.t_us >= from && f.t_us <= to) {
            let at = secs(f.t_us);
            let line = match &f.what {
                What::Crashed(cause) => {
                    format!("{} crashed at {at}{}", f.node, cause_words(*cause))
                }
                What::Dying => format!("{} went silent at {at}", f.node),
                What::Paused => format!("{} was paused at {at}", f.node),
                What::Resumed => format!("{} resumed at {at}", f.node),
                What::Started(_) => format!("{} (re)started at {at}", f.node),
                What::Partition(groups) if !groups.is_empty() => {
                    seen_partition = true;
                    format!("a partition {} began at {at}", groups_words(groups))
                }
                What::Partition(_) => format!("the partition healed at {at}"),
                _ => continue,
            };
            parts.push(line);
        }
        if !seen_partition {
            if let Some(groups) = self.partition_at(from) {
                parts.push(format!(
                    "a partition {} was in force",
                    groups_words(&groups)
                ));
            }
        }
        // Pauses that started before the span and had not ended.
        for s in &distinct {
            if self.paused_at(s, from) {
                parts.push(format!("{s} was paused (it still held its role)"));
            }
        }
        parts.join("; ")
    }

    fn partition_at(&self, t_us: u64) -> Option<Vec<Vec<NodeId>>> {
        self.facts
            .iter()
            .filter(|f| f.t_us <= t_us)
            .filter_map(|f| match &f.what {
                What::Partition(g) => Some(g.clone()),
                _ => None,
            })
            .next_back()
            .filter(|g| !g.is_empty())
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

fn groups_words(groups: &[Vec<NodeId>]) -> String {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|n| n.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(",")
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
