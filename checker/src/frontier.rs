//! The incremental search: one lock's history is read as a stream of invocations, answers and
//! give-ups in time order, and the checker carries a set of configurations (a "frontier") that
//! stands for every configuration the lock can be in at the current point: those in the set and
//! every one they reach by firing calls still in flight or of unknown outcome (any of them may
//! take effect at any moment before its own answer).
//!
//! A configuration is
//! - the lock's state (held or free);
//! - for each call in flight (invoked, not yet answered), whether it has already taken effect and,
//!   if so, the answer it must get (which the model fixes from the state it took effect in);
//! - how many calls of unknown outcome have not taken effect yet, per op. Such calls are
//!   interchangeable: an unknown `Lock` can only ever leave the lock held and an unknown `Unlock`
//!   free, and either may do so at any later moment, or never. So they are counted, not named,
//!   and a configuration with more of them left can do all that one with fewer can (it
//!   "dominates" it).
//!
//! An invocation adds a call in flight. An answer to call `c` keeps, from every configuration of
//! the frontier, the shortest ways to explain it: `c` at once if the state suits it, else after
//! one call that changes the state, one way for each such call. A longer way (other calls fired
//! before `c`) reaches nothing the shortest ones do not, since the calls it fired before `c` can
//! as well be fired after it (see `Frontier::search`). Then every configuration another one
//! reaches by firing is dropped. If no way is left, no order explains the history: a violation
//! at this answer. A give-up turns a call in flight into an unknown one.
//!
//! Wing & Gong's search (with Lowe's cache, as Porcupine runs it) searched every order of the
//! calls in flight before `c`: with 16 clients on one lock, thousands of steps an answer. This
//! takes a few: the state is one bit, so which calls fired matters and their order does not.
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

    /// The configurations that explain slot `s` answering `ok`, from every configuration of the
    /// frontier, with slot `s` then cleared.
    ///
    /// The frontier stands for everything its configurations can reach by firing calls in
    /// flight (and unknown ones): any of those may take effect at any moment before its own
    /// answer. So only the shortest ways to explain the answer are kept, and a longer one is
    /// never searched. The state is one bit and firing alternates it, so a set of state-changing
    /// calls can be fired in some order exactly when its Locks and Unlocks balance; a way that
    /// fires other calls before `s` reaches nothing that `s` first and the same calls after it
    /// does not. What is left to choose is which call freed (or took) the lock when `s` needed
    /// the other state first: one configuration for each.
    fn search(
        &self,
        s: usize,
        ok: bool,
        steps: &mut u64,
        max_steps: u64,
    ) -> Result<Vec<Config>, Stop> {
        let bit = 1u128 << s;
        // The state `s` needs: a Lock takes a free lock or sees it held; an Unlock the reverse.
        let needs_held = (self.locks & bit != 0) != ok;
        let mut out = Vec::new();
        let mut step = |out: &mut Vec<Config>, y: Config| -> Result<(), Stop> {
            *steps += 1;
            if *steps > max_steps {
                return Err(Stop::Budget);
            }
            out.push(Config {
                done: y.done & !bit,
                flags: y.flags & !bit,
                ..y
            });
            Ok(())
        };
        for x in &self.configs {
            if x.done & bit != 0 {
                // It took effect changing the state: that explains true, never false.
                if ok {
                    step(&mut out, *x)?;
                }
                continue;
            }
            if !ok && x.flags & bit != 0 {
                step(&mut out, *x)?;
                continue;
            }
            // `s` has not taken effect: in the state it needs, now; in the other, after one call
            // that changes the state.
            let mut explain = |y: Config, out: &mut Vec<Config>| -> Result<(), Stop> {
                if ok {
                    let held = !y.held;
                    let fired = Config {
                        held,
                        flags: y.flags | self.noop_suits(held, y.done),
                        ..y
                    };
                    step(out, fired)
                } else {
                    // The state suits the no-op: it took effect in it.
                    step(out, y)
                }
            };
            if x.held == needs_held {
                explain(*x, &mut out)?;
                continue;
            }
            let held = !x.held;
            let movers = if x.held {
                self.used & !self.locks
            } else {
                self.locks
            } & !x.done
                & !bit;
            let after = |y: Config| Config {
                flags: y.flags | self.noop_suits(y.held, y.done),
                ..y
            };
            let mut m = movers;
            while m != 0 {
                let t = m.trailing_zeros() as usize;
                m &= m - 1;
                let y = after(Config {
                    held,
                    done: x.done | 1 << t,
                    flags: x.flags & !(1 << t),
                    ..*x
                });
                explain(y, &mut out)?;
            }
            // An unknown call of the kind that changes this state.
            if x.held && x.nu > 0 {
                explain(
                    after(Config {
                        held,
                        nu: x.nu - 1,
                        ..*x
                    }),
                    &mut out,
                )?;
            }
            if !x.held && x.nl > 0 {
                explain(
                    after(Config {
                        held,
                        nl: x.nl - 1,
                        ..*x
                    }),
                    &mut out,
                )?;
            }
        }
        reduce(&mut out);
        self.prune(&mut out);
        Ok(out)
    }

    /// Drops every configuration another one can reach by firing calls (the same calls done,
    /// and more; Locks and Unlocks in the balance that leads from the one state to the other;
    /// unknown calls from those it has to spare). A configuration is only reached from one with
    /// fewer calls done (or as many), so those go first and each is compared with the ones kept
    /// so far, up to `KEPT_COMPARED` of them; one left in costs time, never a wrong answer.
    fn prune(&self, configs: &mut Vec<Config>) {
        const KEPT_COMPARED: usize = 256;
        if configs.len() < 2 {
            return;
        }
        configs.sort_unstable_by_key(|c| {
            (
                c.done.count_ones(),
                std::cmp::Reverse(c.nl + c.nu),
                std::cmp::Reverse(c.flags.count_ones()),
            )
        });
        let mut kept: Vec<Config> = Vec::with_capacity(configs.len().min(KEPT_COMPARED));
        for y in configs.drain(..) {
            let reached = kept.iter().take(KEPT_COMPARED).any(|x| self.reaches(x, &y));
            if !reached {
                kept.push(y);
            }
        }
        *configs = kept;
    }

    /// Whether firing calls in flight and unknown ones from `x` leads to `y` or to a
    /// configuration that can do all `y` can (more unknown calls left).
    fn reaches(&self, x: &Config, y: &Config) -> bool {
        if x.done & !y.done != 0 || x == y {
            return false;
        }
        let fired = y.done & !x.done;
        let locks = i64::from((fired & self.locks).count_ones());
        let unlocks = i64::from((fired & !self.locks).count_ones());
        let (spare_l, spare_u) = (
            i64::from(x.nl) - i64::from(y.nl),
            i64::from(x.nu) - i64::from(y.nu),
        );
        if spare_l < 0 || spare_u < 0 {
            return false;
        }
        // Firing alternates the state: from free, as many Locks as Unlocks back to free, one
        // more Lock to held; from held the reverse.
        let target = match (x.held, y.held) {
            (false, true) => 1,
            (true, false) => -1,
            _ => 0,
        };
        // Unknown Locks fired minus unknown Unlocks fired.
        let need = target - (locks - unlocks);
        if need > spare_l || -need > spare_u {
            return false;
        }
        if fired == 0 && need == 0 {
            // Nothing has to fire: `x` must already hold every flag `y` does, or spare an
            // unknown Lock and an unknown Unlock to visit both states.
            return y.flags & !x.flags == 0 || (spare_l > 0 && spare_u > 0);
        }
        // Firing anything visits both states, so every call in flight not done is flagged.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Lock in flight in slot 0, an Unlock in slot 1, nothing done.
    fn lock_and_unlock_in_flight() -> Frontier {
        let mut f = Frontier::initial(1_000);
        let mut steps = 0;
        f.apply(0, Op::Lock, Ev::Invoke, &mut steps, 100).unwrap();
        f.apply(1, Op::Unlock, Ev::Invoke, &mut steps, 100).unwrap();
        f
    }

    const LOCK: u128 = 1;

    fn config(held: bool, done: u128, flags: u128, nl: u32, nu: u32) -> Config {
        Config {
            held,
            done,
            flags,
            nl,
            nu,
        }
    }

    /// `reaches` decides which configurations the prune drops, so each of its checks is pinned
    /// here on a pair where only that check says no. Histories did not tell them apart: with
    /// each check removed, every test and property still passed (docs/checker.md, "Tests").
    #[test]
    fn reaches_only_what_firing_calls_can_reach() {
        let f = lock_and_unlock_in_flight();
        let free = |done, flags, nl, nu| config(false, done, flags, nl, nu);
        let held = |done, flags, nl, nu| config(true, done, flags, nl, nu);

        // What firing does reach.
        assert!(
            f.reaches(&free(0, 0, 0, 0), &held(LOCK, 0, 0, 0)),
            "the Lock in flight takes the lock"
        );
        assert!(
            f.reaches(&free(0, 0, 1, 0), &held(0, LOCK, 0, 0)),
            "an unknown Lock takes it, and the Lock in flight sees it held"
        );
        assert!(
            f.reaches(&free(0, 0, 1, 1), &free(0, LOCK, 0, 0)),
            "an unknown Lock and an unknown Unlock: held, then free again"
        );

        // What it does not.
        assert!(
            !f.reaches(&free(0, 0, 0, 0), &held(0, 0, 0, 0)),
            "nothing to fire: the state cannot change"
        );
        assert!(
            !f.reaches(&free(0, 0, 0, 0), &free(0, LOCK, 0, 0)),
            "nothing to fire: the Lock in flight never sees the lock held"
        );
        assert!(
            !f.reaches(&free(0, 0, 1, 0), &free(0, LOCK, 0, 0)),
            "an unknown Lock alone leaves the lock held: nothing frees it again"
        );
        assert!(
            !f.reaches(&held(0, 0, 0, 1), &free(0, 0, 1, 0)),
            "firing never adds an unknown call: the unknown Unlock frees the lock, but the \
             unknown Lock `y` still has to spare is not there"
        );
    }
}
