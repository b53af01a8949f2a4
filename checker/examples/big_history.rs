//! How long the checker takes on a long run: builds a 100,000-call history (8 clients, 4 locks,
//! calls of 0.2 to 4 ms that overlap across clients, 1% of unknown outcome), served by a correct
//! lock whose operations take effect inside each call, and times
//!
//! - the monitor from scratch: every event observed, then one `check()`;
//! - the monitor live: `check()` after every answer or give-up, as the server runs it;
//! - `check_calls` (WGL with its cache) on each lock's whole history;
//! - the same history with one answer flipped near the end (a violation, explained).
//!
//! `cargo run --release -p checker --example big_history [calls] [clients] [locks]`

use std::time::Instant;

use checker::{check_calls, Budget, Call, Decision, Monitor};
use shared::{Event, EventKind, NodeId, Op, RequestId, VerdictStatus};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

struct Planned {
    lp: u64,
    client: u32,
    lock: usize,
    op: Op,
    t0: u64,
    t1: u64,
    unknown: bool,
    effect: bool,
}

fn build(calls: usize, clients: u32, locks: usize, seed: u64) -> (Vec<Event>, Vec<Vec<Call>>) {
    let mut rng = Rng(seed | 1);
    let mut free_at = vec![0u64; clients as usize];
    let mut plan = Vec::with_capacity(calls);
    for _ in 0..calls {
        let c = rng.below(u64::from(clients)) as usize;
        let t0 = free_at[c] + rng.below(3_000);
        let lp = t0 + 100 + rng.below(2_000);
        let t1 = lp + 100 + rng.below(2_000);
        free_at[c] = t1 + 1;
        let unknown = rng.below(100) == 0;
        plan.push(Planned {
            lp,
            client: c as u32 + 1,
            lock: rng.below(locks as u64) as usize,
            op: if rng.below(2) == 0 {
                Op::Lock
            } else {
                Op::Unlock
            },
            t0,
            t1,
            unknown,
            effect: !unknown || rng.below(2) == 0,
        });
    }
    plan.sort_by_key(|p| p.lp);
    let mut held = vec![false; locks];
    let mut seq = vec![0u64; clients as usize];
    let mut events = Vec::with_capacity(2 * calls);
    let mut per_lock = vec![Vec::new(); locks];
    for p in plan {
        let s = &mut seq[p.client as usize - 1];
        *s += 1;
        let req = RequestId::new(p.client, *s);
        let ok = if p.effect {
            let (r, after) = checker::apply(held[p.lock], p.op);
            held[p.lock] = after;
            r
        } else {
            false
        };
        let lock = format!("l{}", p.lock);
        let node = NodeId::new(format!("c{}", p.client));
        let ev = |t_us: u64, kind: EventKind| Event {
            seq: 0,
            t_us,
            node: node.clone(),
            kind,
        };
        events.push(ev(
            p.t0,
            EventKind::OpInvoked {
                client: p.client,
                req,
                op: p.op,
                lock: lock.clone(),
                tag: None,
                server: NodeId::new("s1"),
            },
        ));
        if p.unknown {
            per_lock[p.lock].push(Call::unknown(req, p.op, p.t0));
            events.push(ev(
                p.t1,
                EventKind::OpFailed {
                    client: p.client,
                    op: p.op,
                    lock,
                    tag: None,
                    req,
                    reason: "client crashed: its effect is unknown".into(),
                },
            ));
        } else {
            per_lock[p.lock].push(Call::answered(req, p.op, p.t0, p.t1, ok));
            events.push(ev(
                p.t1,
                EventKind::OpCompleted {
                    client: p.client,
                    op: p.op,
                    lock,
                    tag: None,
                    ok,
                    req,
                    server: NodeId::new("s1"),
                    latency_us: p.t1 - p.t0,
                    attempts: 1,
                },
            ));
        }
    }
    // The bus's order: by time (ties in any order).
    events.sort_by_key(|e| e.t_us);
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    (events, per_lock)
}

/// One lock's calls, from the events.
fn calls_of(events: &[Event], name: &str) -> Vec<Call> {
    let mut invoked = std::collections::HashMap::new();
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::OpInvoked { req, op, lock, .. } if lock == name => {
                invoked.insert(*req, (*op, e.t_us));
            }
            EventKind::OpCompleted { req, ok, lock, .. } if lock == name => {
                let (op, t0) = invoked[req];
                out.push(Call::answered(*req, op, t0, e.t_us, *ok));
            }
            EventKind::OpFailed { req, lock, .. } if lock == name => {
                let (op, t0) = invoked[req];
                out.push(Call::unknown(*req, op, t0));
            }
            _ => {}
        }
    }
    out
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: calls clients locks"))
        .collect();
    let calls = args.first().copied().unwrap_or(100_000) as usize;
    let clients = args.get(1).copied().unwrap_or(8) as u32;
    let locks = args.get(2).copied().unwrap_or(4) as usize;
    let (events, per_lock) = build(calls, clients, locks, 0x9E37_79B9_7F4A_7C15);
    let span_s = events.last().map_or(0, |e| e.t_us) as f64 / 1e6;
    println!(
        "history: {calls} calls, {clients} clients, {locks} locks, {} events over {span_s:.1} s of log time",
        events.len()
    );

    // From scratch: observe everything, check once.
    let t = Instant::now();
    let mut m = Monitor::new(Budget::default());
    for e in &events {
        m.observe(e);
    }
    let observed = t.elapsed();
    let out = m.check();
    let total = t.elapsed();
    let s = m.stats();
    assert!(out.iter().all(|v| v.status == VerdictStatus::Ok), "{out:?}");
    println!(
        "monitor, from scratch: {:.1} ms ({:.1} ms observe, {:.1} ms check); {} calls ({} unknown), {} search steps, all {} locks ok",
        ms(total),
        ms(observed),
        ms(total - observed),
        s.calls,
        s.unknown,
        s.steps,
        out.len()
    );

    // Live: check after every answer or give-up.
    let t = Instant::now();
    let mut m = Monitor::new(Budget::default());
    let mut took = Vec::with_capacity(events.len() / 2);
    for e in &events {
        m.observe(e);
        if matches!(
            e.kind,
            EventKind::OpCompleted { .. } | EventKind::OpFailed { .. }
        ) {
            let c = Instant::now();
            m.check();
            took.push(c.elapsed());
        }
    }
    let total = t.elapsed();
    assert!(m.verdicts().all(|v| v.status == VerdictStatus::Ok));
    let checks = took.len();
    took.sort_unstable();
    let at = |q: f64| took[((checks as f64 * q) as usize).min(checks - 1)].as_secs_f64() * 1e6;
    println!(
        "monitor, live: {:.1} ms in all for {checks} checks, one after each answer (per check: p50 {:.1} us, p99 {:.1} us, max {:.1} us; {} rewinds for late events)",
        ms(total),
        at(0.5),
        at(0.99),
        at(1.0),
        m.stats().rewinds
    );

    // WGL from scratch, lock by lock.
    let t = Instant::now();
    for calls in &per_lock {
        assert_eq!(check_calls(calls, u64::MAX), Decision::Linearizable);
    }
    println!(
        "check_calls (WGL with cache), whole history lock by lock: {:.1} ms",
        ms(t.elapsed())
    );

    // One answer flipped (the first one from the 1000th event on whose flip check_calls confirms
    // is not linearizable; later on, the unknown calls floating by then explain most single
    // flips): found and explained.
    let mut bad = events.clone();
    let from = 1_000.min(bad.len());
    let mut flipped = None;
    for i in from..bad.len() {
        let EventKind::OpCompleted { ok, lock, .. } = &mut bad[i].kind else {
            continue;
        };
        *ok = !*ok;
        let lock = lock.clone();
        if check_calls(&calls_of(&bad, &lock), u64::MAX) == Decision::NotLinearizable {
            flipped = Some(i);
            break;
        }
        if let EventKind::OpCompleted { ok, .. } = &mut bad[i].kind {
            *ok = !*ok;
        }
    }
    let flipped = flipped.expect("some flip breaks the history");
    println!("flipped the answer of event {flipped} of {}", bad.len());
    let t = Instant::now();
    let mut m = Monitor::new(Budget::default());
    for e in &bad {
        m.observe(e);
    }
    let out = m.check();
    let v = out
        .iter()
        .find(|v| v.status == VerdictStatus::Violation)
        .expect("the flipped answer is a violation");
    println!(
        "one answer flipped: violation on {} found and explained in {:.1} ms; ops {:?}; \"{}\"",
        v.lock,
        ms(t.elapsed()),
        v.ops.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        v.explanation
    );
}
