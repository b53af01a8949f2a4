//! The from-scratch check of one lock's whole history: Wing & Gong's search as Lowe improved it
//! (and as Porcupine runs it), with a cache of (set of linearized calls, lock state).
//!
//! The calls' invocations and returns are kept in one list in time order; an unknown outcome
//! returns at infinity, after every answer. The search walks the list: at an invocation it tries
//! to take that call as the next to take effect (if the model allows its answer and the
//! resulting (set, state) was never seen, it is lifted out of the list and the walk restarts);
//! at a return it has met a call that must already have taken effect, so it undoes the last
//! choice. It succeeds when the list is empty.

use std::collections::HashSet;

use crate::history::{step, Call, Decision};

const NIL: usize = usize::MAX;

struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For an invocation entry, its return entry; `NIL` for a return entry.
    ret_of: Vec<usize>,
    /// The call of each entry.
    call: Vec<usize>,
}

impl List {
    const HEAD: usize = 0;

    fn lift(&mut self, e: usize) {
        for x in [e, self.ret_of[e]] {
            let (p, n) = (self.prev[x], self.next[x]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, e: usize) {
        for x in [self.ret_of[e], e] {
            let (p, n) = (self.prev[x], self.next[x]);
            self.next[p] = x;
            if n != NIL {
                self.prev[n] = x;
            }
        }
    }
}

/// Checks one lock's calls from an initially free lock, in at most `max_steps` search steps.
pub fn check_calls(calls: &[Call], max_steps: u64) -> Decision {
    let n = calls.len();
    // Entry 0 is the head; call i has entries 1 + 2i (invoke) and 2 + 2i (return).
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, c) in calls.iter().enumerate() {
        order.push((c.invoke_us, 0, 1 + 2 * i));
        order.push((c.complete_us(), 1, 2 + 2 * i));
    }
    // At equal times an invocation comes first: the two calls overlap (the lenient reading).
    order.sort_unstable();
    let size = 1 + 2 * n;
    let mut list = List {
        next: vec![NIL; size],
        prev: vec![NIL; size],
        ret_of: vec![NIL; size],
        call: vec![0; size],
    };
    for i in 0..n {
        list.ret_of[1 + 2 * i] = 2 + 2 * i;
        list.call[1 + 2 * i] = i;
        list.call[2 + 2 * i] = i;
    }
    let mut last = List::HEAD;
    for &(_, _, e) in &order {
        list.next[last] = e;
        list.prev[e] = last;
        last = e;
    }

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, bool)> = HashSet::new();
    let mut stack: Vec<(usize, bool)> = Vec::new();
    let mut held = false;
    let mut entry = list.next[List::HEAD];
    let mut steps = 0u64;
    while list.next[List::HEAD] != NIL {
        steps += 1;
        if steps > max_steps {
            return Decision::Undecided;
        }
        if entry == NIL {
            // Only reachable if every remaining entry is an invocation that cannot go: a return
            // always stops the walk first, so this cannot happen with a well-formed list.
            return Decision::NotLinearizable;
        }
        let c = list.call[entry];
        if list.ret_of[entry] != NIL {
            if let Some(after) = step(held, &calls[c]) {
                linearized[c / 64] |= 1 << (c % 64);
                if cache.insert((linearized.clone(), after)) {
                    stack.push((entry, held));
                    held = after;
                    list.lift(entry);
                    entry = list.next[List::HEAD];
                    continue;
                }
                linearized[c / 64] &= !(1 << (c % 64));
            }
            entry = list.next[entry];
        } else {
            let Some((e, before)) = stack.pop() else {
                return Decision::NotLinearizable;
            };
            let c = list.call[e];
            linearized[c / 64] &= !(1 << (c % 64));
            held = before;
            list.unlift(e);
            entry = list.next[e];
        }
    }
    Decision::Linearizable
}
