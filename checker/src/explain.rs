//! After a violation: which calls are at fault, and what went wrong in plain words.
//!
//! The calls at fault are found by greedy deletion over a bounded window that ends with the
//! answer no order explains and starts at a quiescent point before it (nothing in flight). The
//! window is first replayed from *any* state of the lock (held or free, with the unknown calls
//! still pending at that point): if even that cannot explain it, the fault lies inside the
//! window alone, and deleting every call that is not needed leaves a core such as the two grants
//! of a double grant. Otherwise the window is replayed from the states the checker had found
//! there, and the core is relative to that state ("answered false though the lock was free").

use std::collections::HashSet;

use shared::Op;

use crate::context::{secs, Context};
use crate::frontier::{Config, Ev, Frontier, Stop};
use crate::monitor::{Budget, End, LockLog, Snap, FRONTIER_CAP};

/// Quiescent points to try going back from the failing answer.
const MAX_BACK: usize = 8;
/// Most calls in a window that greedy deletion works on.
const MAX_WINDOW: usize = 300;

#[derive(Clone, Debug)]
pub(crate) struct Core {
    /// Indices of the calls at fault, in invocation order.
    pub calls: Vec<usize>,
    /// Whether the core fails from any state (true) or from the state the history had reached.
    pub any_state: bool,
    /// The lock's possible states at the start of the window (for the words).
    pub start_held: Vec<bool>,
}

/// Replays events `[from, to]` of `log` (only those of calls in `keep`) from `start`. Answers
/// after `to` are not seen (those calls are still in flight). Some(true): a violation.
fn replay(
    log: &LockLog,
    from: usize,
    to: usize,
    keep: &HashSet<usize>,
    start: &[Config],
    budget: Budget,
) -> Option<bool> {
    let mut f = Frontier::quiescent(start.to_vec(), FRONTIER_CAP);
    let mut steps = 0;
    for e in &log.events[from..=to] {
        if !keep.contains(&e.call) {
            continue;
        }
        match f.apply(
            e.call,
            log.calls[e.call].op,
            e.ev,
            &mut steps,
            budget.max_steps,
        ) {
            Ok(()) => {}
            Err(Stop::Violation) => return Some(true),
            Err(_) => return None,
        }
    }
    Some(false)
}

fn any_state(configs: &[Config]) -> Vec<Config> {
    let nl = configs.iter().map(|c| c.nl).max().unwrap_or(0);
    let nu = configs.iter().map(|c| c.nu).max().unwrap_or(0);
    vec![Config::start(false, nl, nu), Config::start(true, nl, nu)]
}

/// The calls at fault for the violation shown by event `fail` of `log`.
pub(crate) fn core(log: &LockLog, fail: usize, budget: Budget) -> Core {
    let failing = log.events[fail].call;
    // Windows start at quiet points only: there a call can be deleted from the window whole.
    let windows: Vec<(usize, &Vec<Config>)> = log
        .checkpoints
        .iter()
        .rev()
        .filter(|c| c.at <= fail)
        .filter_map(|c| match &c.snap {
            Snap::Quiet(configs) => Some((c.at, configs)),
            Snap::Busy(_) | Snap::Skip(_) => None,
        })
        .take(MAX_BACK)
        .collect();
    let calls_in = |from: usize| -> HashSet<usize> {
        log.events[from..=fail]
            .iter()
            .filter(|e| e.ev == Ev::Invoke)
            .map(|e| e.call)
            .collect()
    };
    let mut chosen: Option<Window> = None;
    for (p, configs) in &windows {
        let keep = calls_in(*p);
        if keep.len() > MAX_WINDOW {
            break;
        }
        let start = any_state(configs);
        if replay(log, *p, fail, &keep, &start, budget) == Some(true) {
            chosen = Some(Window {
                from: *p,
                start,
                keep,
                any_state: true,
                start_held: vec![false, true],
            });
            break;
        }
    }
    if chosen.is_none() {
        if let Some((p, configs)) = windows.first() {
            let keep = calls_in(*p);
            let held: Vec<bool> = {
                let mut h: Vec<bool> = configs.iter().map(|c| c.held).collect();
                h.sort_unstable();
                h.dedup();
                h
            };
            if keep.len() <= MAX_WINDOW {
                chosen = Some(Window {
                    from: *p,
                    start: configs.to_vec(),
                    keep,
                    any_state: false,
                    start_held: held,
                });
            } else {
                // The state at the window's start says nothing of the state at the failing
                // answer, this far from it: claim none.
                return Core {
                    calls: vec![failing],
                    any_state: false,
                    start_held: vec![false, true],
                };
            }
        }
    }
    let Some(Window {
        from: p,
        start,
        mut keep,
        any_state: any,
        start_held,
    }) = chosen
    else {
        // No quiet point to start a window at (a lock never quiet): claim no state.
        return Core {
            calls: vec![failing],
            any_state: false,
            start_held: vec![false, true],
        };
    };
    // Delete what is not needed: calls without an answer by then first, then from the earliest.
    let mut order: Vec<usize> = keep.iter().copied().filter(|&c| c != failing).collect();
    let answered_by_then = |c: usize| match log.calls[c].end {
        End::Answered { t_us, .. } => t_us <= log.events[fail].t_us,
        _ => false,
    };
    order.sort_by_key(|&c| (answered_by_then(c), log.calls[c].invoke_us, c));
    for c in order {
        keep.remove(&c);
        if replay(log, p, fail, &keep, &start, budget) != Some(true) {
            keep.insert(c);
        }
    }
    let mut calls: Vec<usize> = keep.into_iter().collect();
    calls.sort_by_key(|&c| (log.calls[c].invoke_us, c));
    Core {
        calls,
        any_state: any,
        start_held,
    }
}

/// Where greedy deletion works: from event `from`, starting in `start`, on the calls `keep`.
struct Window {
    from: usize,
    start: Vec<Config>,
    keep: HashSet<usize>,
    any_state: bool,
    start_held: Vec<bool>,
}

struct Seen {
    idx: usize,
    op: Op,
    ok: bool,
    client: String,
    server: String,
    t: u64,
}

/// The explanation of a violation in plain words.
pub(crate) fn words(log: &LockLog, core: &Core, ctx: &Context) -> String {
    let z = &log.name;
    let mut seen: Vec<Seen> = core
        .calls
        .iter()
        .filter_map(|&i| {
            let c = &log.calls[i];
            match &c.end {
                End::Answered { ok, t_us, server } => Some(Seen {
                    idx: i,
                    op: c.op,
                    ok: *ok,
                    client: format!("c{}", c.req.client),
                    server: server.as_str().to_owned(),
                    t: *t_us,
                }),
                _ => None,
            }
        })
        .collect();
    seen.sort_by_key(|s| (s.t, s.idx));
    let count = |op: Op, ok: bool| seen.iter().filter(|s| s.op == op && s.ok == ok).count();
    let first = |op: Op, ok: bool| seen.iter().find(|s| s.op == op && s.ok == ok);
    let (grants, releases) = (count(Op::Lock, true), count(Op::Unlock, true));
    let (refusals, unlock_refusals) = (count(Op::Lock, false), count(Op::Unlock, false));
    let free_start = !core.any_state && core.start_held == [false];
    let held_start = !core.any_state && core.start_held == [true];
    // Patterns of two or more calls hold only for a core that fails from any state; a core that
    // fails only from the state the history had reached says so.
    let any = core.any_state;
    let main = if any && grants >= 2 && releases == 0 {
        let mut g = seen.iter().filter(|s| s.op == Op::Lock && s.ok);
        let (a, b) = (g.next().unwrap_or(&seen[0]), g.next().unwrap_or(&seen[0]));
        if a.client == b.client {
            format!(
                "Lock({z}) was granted twice to {} (by {}, then by {}) with no Unlock between",
                a.client, a.server, b.server
            )
        } else {
            format!(
                "Lock({z}) was granted to {} by {} and to {} by {} with no Unlock between",
                a.client, a.server, b.client, b.server
            )
        }
    } else if any && releases >= 1 && refusals >= 1 && grants == 0 {
        let (u, l) = (
            first(Op::Unlock, true).unwrap_or(&seen[0]),
            first(Op::Lock, false).unwrap_or(&seen[0]),
        );
        format!(
            "Unlock({z}) by {} answered true (by {}), yet Lock({z}) by {} then answered false (by {}) with no Lock between: the Unlock was lost",
            u.client, u.server, l.client, l.server
        )
    } else if any && releases >= 2 && grants == 0 {
        let mut r = seen.iter().filter(|s| s.op == Op::Unlock && s.ok);
        let (a, b) = (r.next().unwrap_or(&seen[0]), r.next().unwrap_or(&seen[0]));
        format!(
            "Unlock({z}) answered true to {} (by {}) and to {} (by {}) with no Lock between: the lock was released twice",
            a.client, a.server, b.client, b.server
        )
    } else if any && grants >= 1 && unlock_refusals >= 1 && releases == 0 {
        let (l, u) = (
            first(Op::Lock, true).unwrap_or(&seen[0]),
            first(Op::Unlock, false).unwrap_or(&seen[0]),
        );
        format!(
            "Lock({z}) was granted to {} by {}, yet Unlock({z}) by {} then answered false (by {}) with no Unlock between: the grant was lost",
            l.client, l.server, u.client, u.server
        )
    } else if any && refusals >= 1 && grants >= 1 && releases == 0 {
        let (l, g) = (
            first(Op::Lock, false).unwrap_or(&seen[0]),
            first(Op::Lock, true).unwrap_or(&seen[0]),
        );
        format!(
            "Lock({z}) by {} answered false (by {}), yet Lock({z}) was then granted to {} by {} with no Unlock between",
            l.client, l.server, g.client, g.server
        )
    } else if any && unlock_refusals >= 1 && releases >= 1 && grants == 0 {
        let (u, r) = (
            first(Op::Unlock, false).unwrap_or(&seen[0]),
            first(Op::Unlock, true).unwrap_or(&seen[0]),
        );
        format!(
            "Unlock({z}) by {} answered false (by {}), yet Unlock({z}) by {} then answered true (by {}) with no Lock between",
            u.client, u.server, r.client, r.server
        )
    } else if seen.len() == 1 && free_start && refusals == 1 {
        let s = &seen[0];
        format!(
            "Lock({z}) by {} answered false (by {}) though the lock was free",
            s.client, s.server
        )
    } else if seen.len() == 1 && free_start && releases == 1 {
        let s = &seen[0];
        format!(
            "Unlock({z}) by {} answered true (by {}) though the lock was free",
            s.client, s.server
        )
    } else if seen.len() == 1 && held_start && grants == 1 {
        let s = &seen[0];
        format!(
            "Lock({z}) was granted to {} by {} though the lock was held",
            s.client, s.server
        )
    } else if seen.len() == 1 && held_start && unlock_refusals == 1 {
        let s = &seen[0];
        format!(
            "Unlock({z}) by {} answered false (by {}) though the lock was held",
            s.client, s.server
        )
    } else {
        let list: Vec<String> = seen
            .iter()
            .map(|s| {
                format!(
                    "{}({z}) by {} answered {} by {} at {}",
                    op_name(s.op),
                    s.client,
                    s.ok,
                    s.server,
                    secs(s.t)
                )
            })
            .collect();
        let state = if free_start {
            "the lock was free and "
        } else if held_start {
            "the lock was held and "
        } else {
            ""
        };
        format!(
            "{state}no order of these calls explains their answers: {}",
            list.join("; ")
        )
    };
    let servers: Vec<(String, u64)> = seen.iter().map(|s| (s.server.clone(), s.t)).collect();
    let from = core
        .calls
        .iter()
        .map(|&i| log.calls[i].invoke_us)
        .min()
        .unwrap_or(0);
    let to = seen.iter().map(|s| s.t).max().unwrap_or(from);
    let context = ctx.describe(&servers, from, to);
    let mut chars = main.chars();
    let main: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => main,
    };
    if context.is_empty() {
        format!("{main}.")
    } else {
        format!("{main}; {context}.")
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Lock => "Lock",
        Op::Unlock => "Unlock",
    }
}
