//! The incremental search: one lock's history is read as a stream of invocations, answers and
//! give-ups in time order, and the checker carries the set of every configuration the lock can
//! be in at the current point (a "frontier").
//!
//! A configuration is
//! - the lock's state (held or free);
//! - for each call in flight (invoked, not yet answered), whether it has already taken effect and,
//!   if so, the answer it must get (which the model fixes from the state it took effect in);
//! - how many calls of unknown outcome have not taken effect yet, per op. Such calls are
//!   interchangeable: an unknown `Lock` can only ever leave the lock held and an unknown `Unlock`
//!   free, and either may do so at any later moment, or never. So they are counted, not named,
//!   and a configuration with more of them left can do all that one with fewer can (it
//!   "dominates" it): the frontier keeps only configurations no other dominates.
//!
//! An invocation adds a call in flight. An answer to call `c` runs the Wing & Gong / Lowe search
//! over the calls in flight and the unknown ones, from every configuration of the frontier, with
//! a cache of visited (configuration) to never explore one twice (the cache is the (set of
//! linearized calls, state) of WGL, restricted to the calls that can still move). Each path
//! ends at the first moment `c` has taken effect with the answer the client saw; what is fired
//! after `c` can equally be fired later. If no path gets there, no order explains the history:
//! a violation at this answer. A give-up turns a call in flight into an unknown one.
//!
//! When no call is in flight the frontier is small (state and unknown counts only): these are the
//! quiescent points where a history can be cut and a search restarted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use shared::Op;

/// A fast hasher for the search's small integer keys (FxHash's multiply-rotate); the keys are
/// ours, not an attacker's.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// At most this many calls of one lock in flight at once (the width of the bitsets).
pub const MAX_IN_FLIGHT: usize = 128;

/// One configuration the lock can be in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub(crate) struct Config {
    pub held: bool,
    /// Calls in flight (by slot) that already took effect changing the state: a `Lock` that
    /// took the lock, an `Unlock` that released it (both answer true).
    pub done: u128,
    /// Calls in flight not in `done` that could have taken effect as a no-op since they were
    /// invoked: a `Lock` that saw the lock held, an `Unlock` that saw it free (both answer
    /// false). A no-op changes nothing, so it commutes with everything: all that matters is
    /// that such a moment existed inside the call.
    pub flags: u128,
    /// Unknown `Lock`s not yet taken effect.
    pub nl: u32,
    /// Unknown `Unlock`s not yet taken effect.
    pub nu: u32,
}

impl Config {
    pub fn start(held: bool, nl: u32, nu: u32) -> Self {
        Self {
            held,
            done: 0,
            flags: 0,
            nl,
            nu,
        }
    }
}

/// Why the stream could not go on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stop {
    /// No configuration explains this answer.
    Violation,
    /// One search took more than the budget's steps.
    Budget,
    /// More than [`MAX_IN_FLIGHT`] calls in flight.
    TooWide,
    /// The frontier grew past its cap.
    TooMany,
}

/// What happens to a call, in time order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Ev {
    Invoke,
    Answer(bool),
    GiveUp,
}

impl Ev {
    /// At equal times: invocations first (calls overlap: the lenient reading), then answers.
    pub fn rank(self) -> u8 {
        match self {
            Ev::Invoke => 0,
            Ev::Answer(_) => 1,
            Ev::GiveUp => 2,
        }
    }
}

/// The set of configurations at one point of a lock's history.
#[derive(Clone, Debug)]
pub(crate) struct Frontier {
    pub configs: Vec<Config>,
    /// Which call (an index the caller chose) each slot holds.
    slots: Vec<Option<usize>>,
    used: u128,
    /// The slots holding a `Lock` (the rest of `used` hold an `Unlock`).
    locks: u128,
    slot_of: FxMap<usize, usize>,
    /// Most configurations kept.
    pub cap: usize,
}

/// Per (state, done, flags): the unknown counts of the configuration explored with it (one pair
/// kept: a pair it dominates is skipped; one that dominates it replaces it; one incomparable is
/// explored without being kept, which costs time, never a wrong answer).
type Seen = FxMap<(bool, u128, u128), (u32, u32)>;

/// Marks (nl, nu) seen for the key; false if something seen already dominates it.
fn visit(seen: &mut Seen, c: &Config) -> bool {
    match seen.entry((c.held, c.done, c.flags)) {
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert((c.nl, c.nu));
            true
        }
        std::collections::hash_map::Entry::Occupied(mut o) => {
            let (l, u) = *o.get();
            if l >= c.nl && u >= c.nu {
                return false;
            }
            if c.nl >= l && c.nu >= u {
                o.insert((c.nl, c.nu));
            }
            true
        }
    }
}

/// Keeps only configurations no other dominates (same state and calls, more unknown calls
/// left), sorted.
pub(crate) fn reduce(configs: &mut Vec<Config>) {
    configs.sort_unstable_by(|a, b| {
        (a.held, a.done, a.flags, b.nl, b.nu).cmp(&(b.held, b.done, b.flags, a.nl, a.nu))
    });
    let mut out: Vec<Config> = Vec::with_capacity(configs.len());
    let mut best_nu: Option<u32> = None;
    for c in configs.drain(..) {
        let same_key = out
            .last()
            .is_some_and(|p| (p.held, p.done, p.flags) == (c.held, c.done, c.flags));
        if !same_key {
            best_nu = None;
        }
        // Sorted by nl descending within a key: c is dominated iff an earlier one has nu >= c.nu.
        if best_nu.is_some_and(|b| b >= c.nu) {
            continue;
        }
        best_nu = Some(c.nu);
        out.push(c);
    }
    *configs = out;
}

impl Frontier {
    /// The frontier made of `configs`, with no call in flight.
    pub fn quiescent(mut configs: Vec<Config>, cap: usize) -> Self {
        reduce(&mut configs);
        Self {
            configs,
            slots: vec![None; MAX_IN_FLIGHT],
            used: 0,
            locks: 0,
            slot_of: FxMap::default(),
            cap,
        }
    }

    /// A free lock, nothing in flight.
    pub fn initial(cap: usize) -> Self {
        Self::quiescent(vec![Config::start(false, 0, 0)], cap)
    }

    /// No call in flight: a point where the history can be cut.
    pub fn is_quiescent(&self) -> bool {
        self.used == 0
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.used.count_ones() as usize
    }

    /// The calls in flight now (as the caller numbered them).
    pub fn calls_in_flight(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// Numbers the calls in flight anew: call `c` becomes `remap[c]`.
    pub fn renumber(&mut self, remap: &[usize]) {
        self.slot_of.clear();
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if let Some(c) = slot {
                *c = remap[*c];
                self.slot_of.insert(*c, s);
            }
        }
    }

    /// The calls in flight, not yet taken effect, that a no-op suits in state `held`.
    fn noop_suits(&self, held: bool, done: u128) -> u128 {
        let of_op = if held {
            self.locks
        } else {
            self.used & !self.locks
        };
        of_op & !done
    }

    /// Applies what happened to `call`. `steps` counts search steps; a search that would pass
    /// `max_steps` stops with [`Stop::Budget`].
    pub fn apply(
        &mut self,
        call: usize,
        op: Op,
        ev: Ev,
        steps: &mut u64,
        max_steps: u64,
    ) -> Result<(), Stop> {
        match ev {
            Ev::Invoke => {
                if self.used == u128::MAX {
                    return Err(Stop::TooWide);
                }
                let s = (!self.used).trailing_zeros() as usize;
                let bit = 1u128 << s;
                self.used |= bit;
                if op == Op::Lock {
                    self.locks |= bit;
                }
                self.slots[s] = Some(call);
                self.slot_of.insert(call, s);
                for c in &mut self.configs {
                    if c.held == (op == Op::Lock) {
                        c.flags |= bit;
                    }
                }
                reduce(&mut self.configs);
                Ok(())
            }
            Ev::GiveUp => {
                let Some(s) = self.free_slot(call) else {
                    return Ok(());
                };
                let bit = 1u128 << s;
                for c in &mut self.configs {
                    if c.done & bit == 0 {
                        match op {
                            Op::Lock => c.nl += 1,
                            Op::Unlock => c.nu += 1,
                        }
                    }
                    c.done &= !bit;
                    c.flags &= !bit;
                }
                reduce(&mut self.configs);
                Ok(())
            }
            Ev::Answer(ok) => {
                let Some(&s) = self.slot_of.get(&call) else {
                    return Ok(());
                };
                let out = self.search(s, ok, steps, max_steps)?;
                self.free_slot(call);
                if out.is_empty() {
                    return Err(Stop::Violation);
                }
                self.configs = out;
                if self.configs.len() > self.cap {
                    return Err(Stop::TooMany);
                }
                Ok(())
            }
        }
    }

    fn free_slot(&mut self, call: usize) -> Option<usize> {
        let s = self.slot_of.remove(&call)?;
        self.used &= !(1 << s);
        self.locks &= !(1 << s);
        self.slots[s] = None;
        Some(s)
    }

    /// Every configuration reachable from the frontier at the first moment slot `s` has taken
    /// effect answering `ok`, with slot `s` then cleared. Only calls that change the state are
    /// fired one by one; a no-op is a flag set whenever the state suits it.
    fn search(
        &self,
        s: usize,
        ok: bool,
        steps: &mut u64,
        max_steps: u64,
    ) -> Result<Vec<Config>, Stop> {
        let bit = 1u128 << s;
        let mut seen: Seen = FxMap::with_capacity_and_hasher(16, Default::default());
        let mut stack: Vec<Config> = Vec::new();
        for c in &self.configs {
            if visit(&mut seen, c) {
                stack.push(*c);
            }
        }
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            *steps += 1;
            if *steps > max_steps {
                return Err(Stop::Budget);
            }
            if ok && x.done & bit != 0 {
                let mut y = x;
                y.done &= !bit;
                out.push(y);
                continue;
            }
            if !ok && x.done & bit != 0 {
                // It took effect answering true: this path cannot give false.
                continue;
            }
            if !ok && x.flags & bit != 0 {
                let mut y = x;
                y.flags &= !bit;
                out.push(y);
                continue;
            }
            // Fire one call that changes the state: a Lock when free, an Unlock when held.
            let movers = if x.held {
                self.used & !self.locks
            } else {
                self.locks
            } & !x.done;
            let mut next = |y: Config, stack: &mut Vec<Config>| {
                let mut y = y;
                y.flags |= self.noop_suits(y.held, y.done);
                if visit(&mut seen, &y) {
                    stack.push(y);
                }
            };
            let mut m = movers;
            while m != 0 {
                let t = m.trailing_zeros() as usize;
                m &= m - 1;
                if t == s && !ok {
                    continue;
                }
                let mut y = x;
                y.held = !x.held;
                y.done |= 1 << t;
                y.flags &= !(1 << t);
                next(y, &mut stack);
            }
            // An unknown call that changes nothing is never worth firing.
            if x.nl > 0 && !x.held {
                next(
                    Config {
                        held: true,
                        nl: x.nl - 1,
                        ..x
                    },
                    &mut stack,
                );
            }
            if x.nu > 0 && x.held {
                next(
                    Config {
                        held: false,
                        nu: x.nu - 1,
                        ..x
                    },
                    &mut stack,
                );
            }
        }
        reduce(&mut out);
        Ok(out)
    }
}
