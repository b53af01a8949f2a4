//! What slow motion means for a timeout: the longest a message can have been held.
//!
//! Slow motion holds every message in its receiver's inbox for the delay in force *when it
//! arrives there*. A process that waits for an answer (a clerk for its reply, a primary for the
//! backup's ack) must therefore allow, per hop, the largest delay that was in force anywhere while
//! its messages travelled, not the delay at the moment it sent: slow motion is a viewing aid and
//! must never turn a slow answer into a "dead server". Processes learn of a change a little apart
//! (each over its own control connection), so a delay counts from [`GRACE`] before the send.
//!
//! Step mode stops time for these waits: while a person decides which held message goes next,
//! no deadline expires, and once step mode ends every wait that started before counts from
//! that moment (see [`SlowMotion::set_frozen`]).
//!
//! Pure: the caller passes the time in; nothing here reads a clock or sleeps.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How far apart two processes may learn of the same change, with a wide margin (they learn
/// within milliseconds over loopback).
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// Changes older than this are forgotten: no wait outlives it (the largest delay is 10 s and a
/// call crosses at most four hops before it is retried).
const MEMORY: Duration = Duration::from_secs(300);

/// A deadline while step mode is on: beyond any wait (it is re-read when step mode ends).
const FROZEN: Duration = Duration::from_secs(30 * 24 * 3600);

/// The delay in force now, and since when each earlier one was in force. The supervisor keeps
/// one and hands a copy to every clerk (a clerk started after a change still knows what is
/// held); each node keeps its own, fed by its control connection.
#[derive(Debug, Clone)]
pub(crate) struct SlowMotion {
    /// `(since, delay)`, oldest first; the last one is in force now.
    changes: VecDeque<(Instant, Duration)>,
    /// Step mode is on since then: no wait expires.
    frozen_since: Option<Instant>,
    /// Step mode last ended then: waits that started before count from it.
    thawed_at: Option<Instant>,
}

impl SlowMotion {
    /// Starts with `delay` in force since `now`.
    pub(crate) fn new(delay: Duration, now: Instant) -> Self {
        Self {
            changes: VecDeque::from([(now, delay)]),
            frozen_since: None,
            thawed_at: None,
        }
    }

    /// The delay that holds messages arriving from now on.
    pub(crate) fn current(&self) -> Duration {
        self.changes.back().map_or(Duration::ZERO, |(_, d)| *d)
    }

    /// A new delay is in force from `now`.
    pub(crate) fn set(&mut self, delay: Duration, now: Instant) {
        self.changes.push_back((now, delay));
        // Keep the newest change that is older than the memory: it was in force at its start.
        while self.changes.len() > 1
            && self
                .changes
                .get(1)
                .is_some_and(|(since, _)| now.saturating_duration_since(*since) > MEMORY)
        {
            self.changes.pop_front();
        }
    }

    /// The history as `(how long ago it started, delay)` pairs, oldest first, for a process
    /// that starts later (a client process) to carry on with the same history.
    pub(crate) fn to_ages(&self, now: Instant) -> Vec<(Duration, Duration)> {
        self.changes
            .iter()
            .map(|(since, delay)| (now.saturating_duration_since(*since), *delay))
            .collect()
    }

    /// The history [`SlowMotion::to_ages`] wrote, on this process's clock. An empty list is
    /// slow motion off since `now`.
    pub(crate) fn from_ages(ages: &[(Duration, Duration)], now: Instant) -> Self {
        let mut changes: VecDeque<(Instant, Duration)> = ages
            .iter()
            .map(|(ago, delay)| (now.checked_sub(*ago).unwrap_or(now), *delay))
            .collect();
        if changes.is_empty() {
            changes.push_back((now, Duration::ZERO));
        }
        // Step mode comes with the fault plan, which a new process is sent before any call.
        Self {
            changes,
            frozen_since: None,
            thawed_at: None,
        }
    }

    /// The longest a message sent at `since` can wait in any one inbox: the largest delay that
    /// still holds something then. A delay holds messages that arrived while it was in force
    /// until `end + delay`, and an inbox keeps each connection's messages in order, so a message
    /// sent after a fall can wait behind one held under the old delay. Counted from
    /// `since - GRACE`, for processes that learn of a change a moment late.
    pub(crate) fn max_since(&self, since: Instant) -> Duration {
        let from = since.checked_sub(GRACE).unwrap_or(since);
        let mut max = Duration::ZERO;
        for (i, (_, delay)) in self.changes.iter().enumerate() {
            let ended = self.changes.get(i + 1).map(|(next, _)| *next);
            if ended.is_none_or(|end| end + *delay > from) && *delay > max {
                max = *delay;
            }
        }
        max
    }

    /// Step mode on (`true`) or off from `now`. Repeating the state in force changes nothing.
    pub(crate) fn set_frozen(&mut self, on: bool, now: Instant) {
        match (on, self.frozen_since) {
            (true, None) => self.frozen_since = Some(now),
            (false, Some(_)) => {
                self.frozen_since = None;
                self.thawed_at = Some(now);
            }
            _ => {}
        }
    }

    /// When a wait that started at `since`, allowed `base` plus `hops` slow-motion holds, is
    /// over, as far as is known now (a later rise of the delay pushes it further). In step mode,
    /// never; after it, a wait that started before counts from its end.
    pub(crate) fn deadline(&self, since: Instant, base: Duration, hops: u32) -> Instant {
        if let Some(frozen) = self.frozen_since {
            return since.max(frozen) + FROZEN;
        }
        let from = self.thawed_at.map_or(since, |t| since.max(t));
        from + base + self.max_since(since) * hops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_rise_after_the_send_extends_the_wait() {
        let t0 = Instant::now();
        let mut s = SlowMotion::new(100 * MS, t0);
        assert_eq!(s.deadline(t0, 1500 * MS, 4), t0 + 1900 * MS);
        s.set(1000 * MS, t0 + 50 * MS);
        assert_eq!(
            s.deadline(t0, 1500 * MS, 4),
            t0 + 5500 * MS,
            "messages still on their way wait the new delay at their next inbox"
        );
    }

    #[test]
    fn a_fall_does_not_shorten_a_wait_already_running() {
        let t0 = Instant::now();
        let mut s = SlowMotion::new(2000 * MS, t0);
        s.set(Duration::ZERO, t0 + 10 * MS);
        assert_eq!(s.current(), Duration::ZERO);
        assert_eq!(s.max_since(t0), 2000 * MS);
    }

    #[test]
    fn a_send_just_after_a_fall_still_allows_the_old_delay() {
        // The receiver may learn of the fall a moment after the sender did.
        let t0 = Instant::now();
        let mut s = SlowMotion::new(2000 * MS, t0);
        s.set(Duration::ZERO, t0 + 100 * MS);
        assert_eq!(s.max_since(t0 + 200 * MS), 2000 * MS);
        assert_eq!(
            s.max_since(t0 + 100 * MS + GRACE + MS),
            2000 * MS,
            "a message sent after the fall can queue behind one held under the old delay"
        );
        assert_eq!(
            s.max_since(t0 + 100 * MS + 2000 * MS + GRACE + MS),
            Duration::ZERO,
            "once everything held under the old delay is out, nothing is"
        );
    }

    #[test]
    fn a_history_handed_to_another_process_means_the_same() {
        let t0 = Instant::now();
        let mut s = SlowMotion::new(2000 * MS, t0);
        s.set(Duration::ZERO, t0 + 100 * MS);
        let now = t0 + 300 * MS;
        let copy = SlowMotion::from_ages(&s.to_ages(now), now);
        assert_eq!(copy.current(), Duration::ZERO);
        assert_eq!(
            copy.max_since(now),
            2000 * MS,
            "what the old delay holds is remembered"
        );
        assert_eq!(copy.to_ages(now), s.to_ages(now));
        assert_eq!(SlowMotion::from_ages(&[], now).current(), Duration::ZERO);
    }

    #[test]
    fn step_mode_stops_every_wait_and_its_end_restarts_them() {
        let t0 = Instant::now();
        let mut s = SlowMotion::new(Duration::ZERO, t0);
        assert_eq!(s.deadline(t0, 1500 * MS, 3), t0 + 1500 * MS);
        s.set_frozen(true, t0 + 100 * MS);
        assert!(s.deadline(t0, 1500 * MS, 3) > t0 + Duration::from_secs(3600));
        s.set_frozen(true, t0 + 200 * MS);
        s.set_frozen(false, t0 + 60_000 * MS);
        assert_eq!(
            s.deadline(t0, 1500 * MS, 3),
            t0 + 61_500 * MS,
            "a wait from before counts from the end of step mode"
        );
        assert_eq!(
            s.deadline(t0 + 70_000 * MS, 1500 * MS, 3),
            t0 + 71_500 * MS,
            "a wait after it is not stretched"
        );
        s.set_frozen(false, t0 + 80_000 * MS);
        assert_eq!(s.deadline(t0, 1500 * MS, 3), t0 + 61_500 * MS);
    }

    #[test]
    fn old_changes_are_forgotten_but_the_one_in_force_stays() {
        let t0 = Instant::now();
        let mut s = SlowMotion::new(5 * MS, t0);
        for i in 1..=2000u64 {
            s.set(Duration::from_millis(i % 7), t0 + Duration::from_secs(i));
        }
        assert!(s.changes.len() < 400, "bounded: {}", s.changes.len());
        assert_eq!(s.current(), Duration::from_millis(2000 % 7));
    }
}
