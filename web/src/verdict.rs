//! The checker's verdicts as the page tells them: one badge for the whole cluster and the calls
//! at fault.
//!
//! The server's checker (node `checker`) decides, lock by lock, whether what the clients saw
//! is linearizable against the sequential lock model, and publishes each lock's verdict when
//! it changes (`verdict` events; the snapshot carries them all). `model::Cluster` keeps the
//! latest per lock for the current generation (a reset forgets them). This module only reads
//! those: the worst verdict wins the badge (a violation on any lock, else a lock still
//! undecided, else ok), and a violation's `ops` are the calls the page highlights.
//!
//! Pure: no web types; tested natively.

use std::collections::BTreeSet;

use shared::{LockVerdict, RequestId, VerdictStatus};

/// The cluster's verdict, worst lock first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// The checker has not spoken in this generation (no call yet, or no checker).
    None,
    /// Every lock checked is linearizable.
    Ok,
    /// Some lock is still being checked, or could not be decided (never a hidden ok).
    Unknown,
    /// Some lock's history is not linearizable.
    Violation,
}

/// What the badge and the banner say, folded from every lock's latest verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub overall: Overall,
    /// Locks with a verdict.
    pub locks: usize,
    /// Calls the verdicts cover, over every lock.
    pub calls: u64,
    /// The locks whose history is not linearizable, in lock order.
    pub violations: Vec<LockVerdict>,
    /// The locks not decided, in lock order.
    pub unknown: Vec<LockVerdict>,
    /// The calls at fault, over every lock found in violation.
    faulty: BTreeSet<RequestId>,
}

impl Default for Board {
    fn default() -> Self {
        Board::of([])
    }
}

impl Board {
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a LockVerdict>) -> Board {
        let mut b = Board {
            overall: Overall::None,
            locks: 0,
            calls: 0,
            violations: Vec::new(),
            unknown: Vec::new(),
            faulty: BTreeSet::new(),
        };
        for v in verdicts {
            b.locks += 1;
            b.calls += v.calls;
            match v.status {
                VerdictStatus::Ok => {}
                VerdictStatus::Violation => b.violations.push(v.clone()),
                VerdictStatus::Unknown => b.unknown.push(v.clone()),
            }
        }
        b.violations.sort_by(by_lock);
        // `extend`, not `collect`: the same set without a copy of the stable sort in the wasm.
        b.faulty
            .extend(b.violations.iter().flat_map(|v| v.ops.iter().copied()));
        b.unknown.sort_by(by_lock);
        b.overall = if !b.violations.is_empty() {
            Overall::Violation
        } else if !b.unknown.is_empty() {
            Overall::Unknown
        } else if b.locks > 0 {
            Overall::Ok
        } else {
            Overall::None
        };
        b
    }

    /// The calls at fault, over every lock found in violation.
    pub fn faulty(&self) -> &BTreeSet<RequestId> {
        &self.faulty
    }

    /// The badge's words.
    pub fn text(&self) -> &'static str {
        match self.overall {
            Overall::None => "not checked yet",
            Overall::Ok => "linearizable ✓",
            // The checker says why when it gave up; an empty reason means it is still at work.
            Overall::Unknown if self.unknown.iter().all(|v| v.explanation.is_empty()) => {
                "checking…"
            }
            Overall::Unknown => "unknown",
            Overall::Violation => "NOT linearizable",
        }
    }

    /// The badge's CSS class (and `data-status`).
    pub fn class(&self) -> &'static str {
        match self.overall {
            Overall::None => "none",
            Overall::Ok => "ok",
            Overall::Unknown => "unknown",
            Overall::Violation => "violation",
        }
    }

    /// The badge's tooltip and accessible description: what was checked, and why a verdict is
    /// not ok.
    pub fn detail(&self) -> String {
        let calls = |n: u64| format!("{n} call{}", if n == 1 { "" } else { "s" });
        let locks = |n: usize| format!("{n} lock{}", if n == 1 { "" } else { "s" });
        match self.overall {
            Overall::None => "No verdict since the cluster started: no call has been checked yet (or the server runs without its checker, --no-check).".into(),
            Overall::Ok => format!(
                "Linearizable: every answer the clients saw fits one order of the calls ({}, {}).",
                locks(self.locks),
                calls(self.calls)
            ),
            Overall::Unknown => {
                let why: Vec<String> = self
                    .unknown
                    .iter()
                    .map(|v| {
                        if v.explanation.is_empty() {
                            format!("{}: still being checked", v.lock)
                        } else {
                            format!("{}: {}", v.lock, v.explanation)
                        }
                    })
                    .collect();
                format!("Not decided ({} of {}): {}", self.unknown.len(), locks(self.locks), why.join("; "))
            }
            Overall::Violation => {
                let what: Vec<String> = self
                    .violations
                    .iter()
                    .map(|v| format!("{}: {}", v.lock, v.explanation))
                    .collect();
                format!("Not linearizable. {} Click to show the calls at fault (v).", what.join(" "))
            }
        }
    }
}

/// The calls at fault as people read them: `#c1.3, #c2.2` (a request id reads with its `#`
/// everywhere on the page: arrow labels, the details, the cards, the banner's chips).
pub fn calls_text(ops: &[RequestId]) -> String {
    ops.iter()
        .map(|r| format!("#{r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The folded banner's words for a lock in violation: what went wrong in a few words, so that
/// one line at 1024 px (or in projector mode) still says it. `Lock(z) granted twice` when the
/// page's double-grant watch saw it on this lock (a certain double grant is never
/// linearizable), else the checker's explanation up to its first `;` (the rest is context:
/// who took over, the faults in force), or a plain sentence when it gave none.
pub fn headline(v: &LockVerdict, double_granted: bool) -> String {
    if double_granted {
        return format!("Lock({}) granted twice", v.lock);
    }
    let first = v.explanation.split("; ").next().unwrap_or("").trim();
    if first.is_empty() {
        "no order of its calls explains the answers".into()
    } else {
        keep_units_together(first.trim_end_matches('.'))
    }
}

/// Verdicts in lock order. One named function for both lists, so the wasm holds one copy of the
/// sort rather than one per closure.
fn by_lock(x: &LockVerdict, y: &LockVerdict) -> std::cmp::Ordering {
    x.lock.cmp(&y.lock)
}

/// A sentence as the banner shows it: a number keeps its unit on its line (`0.819 s`,
/// `40 ms`, `3 calls` stay whole), so a wrapped line never starts with a lone unit.
pub fn keep_units_together(text: &str) -> String {
    let is_number = |w: &str| {
        w.chars().any(|c| c.is_ascii_digit())
            && w.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    };
    let mut out = String::with_capacity(text.len());
    let mut words = text.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push_str(w);
        if let Some(next) = words.peek() {
            let unit = next.chars().next().is_some_and(char::is_alphabetic);
            out.push(if is_number(w) && unit { '\u{a0}' } else { ' ' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lock: &str, status: VerdictStatus, ops: &[(u32, u64)], why: &str) -> LockVerdict {
        LockVerdict {
            lock: lock.into(),
            status,
            ops: ops.iter().map(|(c, s)| RequestId::new(*c, *s)).collect(),
            explanation: why.into(),
            calls: 4,
        }
    }

    #[test]
    fn no_verdict_is_not_an_ok() {
        let b = Board::of([]);
        assert_eq!(b.overall, Overall::None);
        assert_eq!(b.text(), "not checked yet");
        assert!(b.faulty().is_empty());
    }

    #[test]
    fn every_lock_ok_is_linearizable_and_counts_the_calls() {
        let all = [
            v("a", VerdictStatus::Ok, &[], ""),
            v("b", VerdictStatus::Ok, &[], ""),
        ];
        let b = Board::of(&all);
        assert_eq!(b.overall, Overall::Ok);
        assert_eq!(b.text(), "linearizable ✓");
        assert_eq!(b.class(), "ok");
        assert!(b.detail().contains("2 locks, 8 calls"), "{}", b.detail());
    }

    #[test]
    fn an_undecided_lock_beats_ok_and_says_why() {
        let checking = [
            v("a", VerdictStatus::Ok, &[], ""),
            v("b", VerdictStatus::Unknown, &[], ""),
        ];
        let b = Board::of(&checking);
        assert_eq!(b.overall, Overall::Unknown);
        assert_eq!(b.text(), "checking…");
        let gave_up = [
            v("a", VerdictStatus::Ok, &[], ""),
            v(
                "b",
                VerdictStatus::Unknown,
                &[],
                "too large to decide in budget",
            ),
        ];
        let b = Board::of(&gave_up);
        assert_eq!(b.text(), "unknown");
        assert!(
            b.detail().contains("b: too large to decide in budget"),
            "{}",
            b.detail()
        );
    }

    #[test]
    fn a_violation_on_any_lock_wins_and_names_its_calls() {
        let all = [
            v("a", VerdictStatus::Unknown, &[], "too large"),
            v(
                "z",
                VerdictStatus::Violation,
                &[(1, 3), (2, 2)],
                "Lock(z) was granted twice",
            ),
            v("y", VerdictStatus::Violation, &[(3, 1)], "Unlock(y) lost"),
            v("b", VerdictStatus::Ok, &[], ""),
        ];
        let b = Board::of(&all);
        assert_eq!(b.overall, Overall::Violation);
        assert_eq!(b.text(), "NOT linearizable");
        assert_eq!(b.class(), "violation");
        assert_eq!(
            b.violations
                .iter()
                .map(|v| v.lock.as_str())
                .collect::<Vec<_>>(),
            ["y", "z"],
            "in lock order"
        );
        let faulty: Vec<String> = b.faulty().iter().map(|r| r.to_string()).collect();
        assert_eq!(faulty, ["c1.3", "c2.2", "c3.1"]);
        assert!(b.detail().contains("z: Lock(z) was granted twice"));
        assert_eq!(calls_text(&all[1].ops), "#c1.3, #c2.2");
    }

    #[test]
    fn a_number_keeps_its_unit_and_other_spaces_still_break() {
        let t = keep_units_together("s1 crashed at 0.819 s. 2 calls at fault, c1 and c3 9 s");
        assert_eq!(
            t,
            "s1 crashed at 0.819\u{a0}s. 2\u{a0}calls at fault, c1 and c3 9\u{a0}s"
        );
        assert_eq!(keep_units_together("Lock(z) = true"), "Lock(z) = true");
    }

    #[test]
    fn the_folded_headline_says_what_went_wrong_in_a_few_words() {
        let z = v(
            "z",
            VerdictStatus::Violation,
            &[(3, 1), (1, 2)],
            "Lock(z) was granted to c3 by s1 and to c1 by s2 with no Unlock between; s2 had taken over (primary serving alone since 27.033 s)",
        );
        assert_eq!(headline(&z, true), "Lock(z) granted twice");
        assert_eq!(
            headline(&z, false),
            "Lock(z) was granted to c3 by s1 and to c1 by s2 with no Unlock between"
        );
        let a = v(
            "a",
            VerdictStatus::Violation,
            &[(1, 1)],
            "Unlock(a) answered true but the lock was free.",
        );
        assert_eq!(
            headline(&a, false),
            "Unlock(a) answered true but the lock was free"
        );
        let none = v("b", VerdictStatus::Violation, &[], "");
        assert_eq!(
            headline(&none, false),
            "no order of its calls explains the answers"
        );
    }
}
