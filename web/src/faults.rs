//! The fault plan as the page shows and edits it: what each link of the matrix does now, the
//! text of a cell and of a lane's header, the partition a person is putting together, and the
//! commands that change the plan. Pure (tested natively); the fault panel, the lane headers and
//! the keys read it.
//!
//! Names are the plan's: a process id (`"s1"`, `"c2"`) or `"*"` (every process).

use std::collections::BTreeMap;

use shared::{Command, Cut, Endpoint, FaultPlan, LinkRule, Probability, ANY};

/// Which side of a partition a process is put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    A,
    B,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::A => "A",
            Group::B => "B",
        }
    }

    /// Clicking a chip or lane header goes none → A → B → none.
    pub fn cycle(current: Option<Group>) -> Option<Group> {
        match current {
            None => Some(Group::A),
            Some(Group::A) => Some(Group::B),
            Some(Group::B) => None,
        }
    }
}

/// What the network does to the messages of one link, as a cell of the matrix shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkState {
    /// `from` can't reach `to`: a one-way cut of exactly this link.
    pub cut: bool,
    /// The partition in force separates them.
    pub partitioned: bool,
    /// The setting of exactly this link (not one it inherits from `*`).
    pub rule: Option<LinkRule>,
}

impl LinkState {
    /// The cell's text: `ok`, `cut`, `split`, or the setting (`drop 30%`, `dup 10%`, `+50±20ms`).
    pub fn label(&self) -> String {
        if self.cut {
            return "cut".into();
        }
        if self.partitioned {
            return "split".into();
        }
        match &self.rule {
            None => "ok".into(),
            Some(r) => rule_text(r),
        }
    }

    /// The cell's text in two short parts (word, figure) for a narrow matrix: `("drop", "30%")`,
    /// `("cut", "")`; a `+` after the figure when the link has more than one setting.
    pub fn short(&self) -> (&'static str, String) {
        if self.cut {
            return ("cut", String::new());
        }
        if self.partitioned {
            return ("split", String::new());
        }
        let Some(r) = &self.rule else {
            return ("ok", String::new());
        };
        let more = [
            r.drop.0 > 0.0,
            r.duplicate.0 > 0.0,
            r.delay_ms + r.jitter_ms > 0,
        ]
        .iter()
        .filter(|x| **x)
        .count()
            > 1;
        let plus = if more { "+" } else { "" };
        if r.drop.0 > 0.0 {
            ("drop", format!("{}%{plus}", percent(r.drop)))
        } else if r.duplicate.0 > 0.0 {
            ("dup", format!("{}%{plus}", percent(r.duplicate)))
        } else {
            ("delay", format!("{}ms{plus}", r.delay_ms))
        }
    }

    /// The CSS class of the cell.
    pub fn class(&self) -> &'static str {
        if self.cut || self.partitioned {
            "cut"
        } else if self.rule.is_some() {
            "lossy"
        } else {
            "ok"
        }
    }
}

/// A held message in a line: `request Lock(a) #c1.1`, `forward_ack ok=true #c1.1`.
pub fn msg_text(m: &shared::Msg) -> String {
    use shared::Msg;
    let op = |op, lock: &str| format!("{}({lock})", crate::format::op_name(op));
    match m {
        Msg::Request { req, op: o, lock } => {
            format!("request {} #{}", op(*o, lock), crate::format::req(*req))
        }
        Msg::Forward { req, op: o, lock } => {
            format!("forward {} #{}", op(*o, lock), crate::format::req(*req))
        }
        Msg::ForwardAck { req, ok } => format!("ack ok={ok} #{}", crate::format::req(*req)),
        Msg::ForwardRefused { req } => format!("refusal #{}", crate::format::req(*req)),
        Msg::Reply { req, ok } => format!("reply ok={ok} #{}", crate::format::req(*req)),
        Msg::ForwardBatch { ops } => match ops.first() {
            Some(first) => format!(
                "forward ×{} {} #{}…",
                ops.len(),
                op(first.op, &first.lock),
                crate::format::req(first.req)
            ),
            None => "forward ×0".into(),
        },
        Msg::ForwardAckBatch { acks } => match acks.first() {
            Some(first) => format!("ack ×{} #{}…", acks.len(), crate::format::req(first.req)),
            None => "ack ×0".into(),
        },
    }
}

/// A link's setting in a few characters: `drop 30% dup 10% +50±20ms`.
pub fn rule_text(r: &LinkRule) -> String {
    let mut parts = Vec::new();
    if r.drop.0 > 0.0 {
        parts.push(format!("drop {}%", percent(r.drop)));
    }
    if r.duplicate.0 > 0.0 {
        parts.push(format!("dup {}%", percent(r.duplicate)));
    }
    if r.delay_ms > 0 || r.jitter_ms > 0 {
        if r.jitter_ms > 0 {
            parts.push(format!("+{}±{}ms", r.delay_ms, r.jitter_ms));
        } else {
            parts.push(format!("+{}ms", r.delay_ms));
        }
    }
    if parts.is_empty() {
        "ok".into()
    } else {
        parts.join(" ")
    }
}

/// A probability as a whole percentage (0.3 → 30).
pub fn percent(p: Probability) -> u32 {
    (p.0 * 100.0).round().clamp(0.0, 100.0) as u32
}

/// The state of the link `from` → `to` (either may be `"*"`).
pub fn link(plan: &FaultPlan, from: &str, to: &str) -> LinkState {
    let cut = plan
        .cuts
        .iter()
        .any(|c| c.from.as_str() == from && c.to.as_str() == to);
    let side = |n: &str| {
        plan.partition
            .iter()
            .position(|g| g.iter().any(|m| m.as_str() == n))
    };
    let partitioned = from != to
        && from != ANY
        && to != ANY
        && matches!((side(from), side(to)), (Some(a), Some(b)) if a != b);
    let rule = plan
        .links
        .iter()
        .find(|r| r.from.as_str() == from && r.to.as_str() == to)
        .cloned();
    LinkState {
        cut,
        partitioned,
        rule,
    }
}

/// The partition group `node` is in (0 = A, 1 = B, ...), if a partition is in force.
pub fn group_in_force(plan: &FaultPlan, node: &str) -> Option<usize> {
    plan.partition
        .iter()
        .position(|g| g.iter().any(|m| m.as_str() == node))
}

/// Whether any network fault is in force (step mode aside).
pub fn any_in_force(plan: &FaultPlan) -> bool {
    !plan.links.is_empty() || !plan.cuts.is_empty() || !plan.partition.is_empty()
}

/// The plan in a few words, for the panel's header: `2 links · 1 cut · partition · step`.
pub fn summary(plan: &FaultPlan) -> String {
    let mut parts = Vec::new();
    let n = |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    if !plan.links.is_empty() {
        parts.push(n(plan.links.len(), "lossy link", "lossy links"));
    }
    if !plan.cuts.is_empty() {
        parts.push(n(plan.cuts.len(), "cut", "cuts"));
    }
    if !plan.partition.is_empty() {
        parts.push("partition".into());
    }
    if plan.step {
        parts.push("step mode".into());
    }
    if parts.is_empty() {
        "none in force".into()
    } else {
        parts.join(" · ")
    }
}

/// What the header of `node`'s lane says about the faults on its outgoing links:
/// `✂→s2`, `→s2 drop 30%`, `→* +50ms`. Empty when none.
pub fn lane_note(plan: &FaultPlan, node: &str) -> String {
    let mut parts: Vec<String> = plan
        .cuts
        .iter()
        .filter(|c| c.from.as_str() == node)
        .map(|c| format!("✂→{}", c.to))
        .collect();
    parts.extend(
        plan.links
            .iter()
            .filter(|r| r.from.as_str() == node)
            .map(|r| format!("→{} {}", r.to, rule_text(r))),
    );
    parts.join(" ")
}

/// The rows and columns of the link matrix: the servers, the clients, then `"*"`.
pub fn endpoints(servers: &[String], clients: &[u32]) -> Vec<String> {
    let mut out: Vec<String> = servers.to_vec();
    out.extend(clients.iter().map(|c| shared::client_node(*c).to_string()));
    out.push(ANY.to_owned());
    out
}

/// A link's setting typed into the editor: percentages and milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkForm {
    pub drop_pct: u32,
    pub dup_pct: u32,
    pub delay_ms: u64,
    pub jitter_ms: u64,
}

impl LinkForm {
    /// The editor's starting values: the link's own setting, or zeros.
    pub fn of(rule: Option<&LinkRule>) -> Self {
        rule.map_or_else(Self::default, |r| LinkForm {
            drop_pct: percent(r.drop),
            dup_pct: percent(r.duplicate),
            delay_ms: r.delay_ms,
            jitter_ms: r.jitter_ms,
        })
    }

    /// `set_link` for `from` → `to` (all zeros removes the setting). Percentages above 100
    /// are 100.
    pub fn command(&self, from: &str, to: &str, tag: Option<String>) -> Command {
        let p = |pct: u32| Probability(f64::from(pct.min(100)) / 100.0);
        Command::SetLink {
            from: Endpoint::from(from),
            to: Endpoint::from(to),
            drop: p(self.drop_pct),
            duplicate: p(self.dup_pct),
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            tag,
        }
    }
}

/// The partition the person is putting together: who is in A, who in B.
pub type Draft = BTreeMap<String, Group>;

/// `partition` of the draft's two groups, when both have a member.
pub fn partition_command(draft: &Draft, tag: Option<String>) -> Option<Command> {
    let members = |g: Group| -> Vec<Endpoint> {
        draft
            .iter()
            .filter(|(_, v)| **v == g)
            .map(|(k, _)| Endpoint::from(k.as_str()))
            .collect()
    };
    let (a, b) = (members(Group::A), members(Group::B));
    (!a.is_empty() && !b.is_empty()).then(|| Command::Partition {
        groups: vec![a, b],
        tag,
    })
}

/// The draft that shows the partition in force (its first two groups as A and B), so the
/// person starts from what is there.
pub fn draft_of(plan: &FaultPlan) -> Draft {
    let mut d = Draft::new();
    for (g, group) in plan.partition.iter().take(2).enumerate() {
        for m in group {
            d.insert(m.to_string(), if g == 0 { Group::A } else { Group::B });
        }
    }
    d
}

/// The commands that lift the one-way cut `from` → `to` and keep everything else: there is no
/// "uncut" on the wire, so `heal`, then the partition, link settings and other cuts again (a
/// viewer's commands run in the order sent).
pub fn without_cut(
    plan: &FaultPlan,
    from: &str,
    to: &str,
    tag: impl Fn() -> Option<String>,
) -> Vec<Command> {
    let mut out = vec![Command::Heal { tag: tag() }];
    if !plan.partition.is_empty() {
        out.push(Command::Partition {
            groups: plan
                .partition
                .iter()
                .map(|g| g.iter().map(|m| Endpoint::from(m.as_str())).collect())
                .collect(),
            tag: tag(),
        });
    }
    for r in &plan.links {
        out.push(Command::SetLink {
            from: Endpoint::from(r.from.as_str()),
            to: Endpoint::from(r.to.as_str()),
            drop: r.drop,
            duplicate: r.duplicate,
            delay_ms: r.delay_ms,
            jitter_ms: r.jitter_ms,
            tag: tag(),
        });
    }
    for Cut { from: f, to: t } in &plan.cuts {
        if !(f.as_str() == from && t.as_str() == to) {
            out.push(Command::Cut {
                from: Endpoint::from(f.as_str()),
                to: Endpoint::from(t.as_str()),
                tag: tag(),
            });
        }
    }
    out
}

/// The `cut` of `from` → `to`.
pub fn cut_command(from: &str, to: &str, tag: Option<String>) -> Command {
    Command::Cut {
        from: Endpoint::from(from),
        to: Endpoint::from(to),
        tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, to: &str, drop: f64, dup: f64, delay: u64, jitter: u64) -> LinkRule {
        LinkRule {
            from: from.into(),
            to: to.into(),
            drop: Probability(drop),
            duplicate: Probability(dup),
            delay_ms: delay,
            jitter_ms: jitter,
        }
    }

    fn plan() -> FaultPlan {
        FaultPlan {
            seed: 7,
            step: false,
            links: vec![
                rule("s1", "s2", 0.3, 0.1, 0, 0),
                rule("c1", "*", 0.0, 0.0, 50, 20),
            ],
            partition: vec![
                vec!["s1".into(), "c1".into()],
                vec!["s2".into(), "c2".into()],
            ],
            cuts: vec![Cut {
                from: "c2".into(),
                to: "s1".into(),
            }],
        }
    }

    #[test]
    fn each_cell_says_what_its_link_does() {
        let p = plan();
        let cell = |f: &str, t: &str| link(&p, f, t);
        assert_eq!(cell("c2", "s1").label(), "cut");
        assert_eq!(cell("c2", "s1").class(), "cut");
        assert_eq!(
            cell("s1", "s2").label(),
            "split",
            "the partition wins the cell"
        );
        assert!(cell("s1", "s2").rule.is_some(), "the setting is kept too");
        assert_eq!(cell("c1", "*").label(), "+50±20ms");
        assert_eq!(cell("s1", "c1").label(), "ok");
        assert_eq!(cell("s1", "c1").class(), "ok");
        assert_eq!(cell("s1", "*").label(), "ok", "* is never split");
        let healed = FaultPlan {
            partition: vec![],
            ..p
        };
        assert_eq!(link(&healed, "s1", "s2").label(), "drop 30% dup 10%");
        assert_eq!(link(&healed, "s1", "s2").class(), "lossy");
        assert_eq!(
            link(&healed, "s1", "s2").short(),
            ("drop", "30%+".to_string())
        );
        assert_eq!(
            link(&healed, "c1", "*").short(),
            ("delay", "50ms".to_string())
        );
        assert_eq!(link(&healed, "c2", "s1").short(), ("cut", String::new()));
        let req = shared::RequestId::new(1, 2);
        assert_eq!(
            msg_text(&shared::Msg::Request {
                req,
                op: shared::Op::Unlock,
                lock: "b".into()
            }),
            "request Unlock(b) #c1.2"
        );
        assert_eq!(
            msg_text(&shared::Msg::ForwardAck { req, ok: false }),
            "ack ok=false #c1.2"
        );
        // A held group commit names its size and its first operation.
        let op = |seq| shared::ForwardOp {
            req: shared::RequestId::new(1, seq),
            op: shared::Op::Lock,
            lock: "a".into(),
        };
        assert_eq!(
            msg_text(&shared::Msg::ForwardBatch {
                ops: vec![op(2), op(3)]
            }),
            "forward ×2 Lock(a) #c1.2…"
        );
        assert_eq!(
            msg_text(&shared::Msg::ForwardAckBatch {
                acks: vec![shared::ForwardAckItem { req, ok: true }; 3]
            }),
            "ack ×3 #c1.2…"
        );
    }

    #[test]
    fn the_header_and_the_lanes_summarise_the_plan() {
        let p = plan();
        assert_eq!(summary(&p), "2 lossy links · 1 cut · partition");
        assert_eq!(summary(&FaultPlan::default()), "none in force");
        assert_eq!(
            summary(&FaultPlan {
                step: true,
                ..FaultPlan::default()
            }),
            "step mode"
        );
        assert_eq!(lane_note(&p, "c2"), "✂→s1");
        assert_eq!(lane_note(&p, "s1"), "→s2 drop 30% dup 10%");
        assert_eq!(lane_note(&p, "s2"), "");
        assert_eq!(group_in_force(&p, "c2"), Some(1));
        assert_eq!(group_in_force(&p, "c3"), None);
        assert!(any_in_force(&p) && !any_in_force(&FaultPlan::default()));
    }

    #[test]
    fn the_matrix_lists_servers_clients_and_everyone() {
        let e = endpoints(&["s1".into(), "s2".into()], &[1, 3]);
        assert_eq!(e, ["s1", "s2", "c1", "c3", "*"]);
    }

    #[test]
    fn the_editor_round_trips_a_setting_into_set_link() {
        let r = rule("s1", "s2", 0.3, 0.1, 50, 20);
        let f = LinkForm::of(Some(&r));
        assert_eq!(
            f,
            LinkForm {
                drop_pct: 30,
                dup_pct: 10,
                delay_ms: 50,
                jitter_ms: 20
            }
        );
        let json = serde_json::to_string(&f.command("s1", "s2", None)).unwrap();
        assert_eq!(
            json,
            r#"{"type":"set_link","from":"s1","to":"s2","drop":0.3,"duplicate":0.1,"delay_ms":50,"jitter_ms":20}"#
        );
        let all = LinkForm {
            drop_pct: 250,
            ..LinkForm::default()
        };
        assert!(matches!(
            all.command("*", "c1", None),
            Command::SetLink { drop, .. } if drop == Probability(1.0)
        ));
        assert_eq!(LinkForm::of(None), LinkForm::default());
    }

    #[test]
    fn a_partition_needs_both_groups_and_clicks_cycle_a_b_none() {
        assert_eq!(Group::cycle(None), Some(Group::A));
        assert_eq!(Group::cycle(Some(Group::A)), Some(Group::B));
        assert_eq!(Group::cycle(Some(Group::B)), None);
        let mut d = Draft::new();
        d.insert("s1".into(), Group::A);
        assert_eq!(partition_command(&d, None), None);
        d.insert("s2".into(), Group::B);
        d.insert("c1".into(), Group::A);
        let json = serde_json::to_string(&partition_command(&d, None).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"partition","groups":[["c1","s1"],["s2"]]}"#
        );
        let back = draft_of(&plan());
        assert_eq!(back.get("c2"), Some(&Group::B));
        assert_eq!(back.get("s1"), Some(&Group::A));
    }

    #[test]
    fn lifting_one_cut_heals_and_puts_back_the_rest() {
        let p = plan();
        let cmds = without_cut(&p, "c2", "s1", || None);
        let names: Vec<&str> = cmds.iter().map(Command::name).collect();
        assert_eq!(names, ["heal", "partition", "set_link", "set_link"]);
        let mut two = p.clone();
        two.cuts.push(Cut {
            from: "s1".into(),
            to: "s2".into(),
        });
        let cmds = without_cut(&two, "c2", "s1", || None);
        assert!(matches!(
            cmds.last(),
            Some(Command::Cut { from, to, .. }) if from.to_string() == "s1" && to.to_string() == "s2"
        ));
    }
}
