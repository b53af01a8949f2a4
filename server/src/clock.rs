//! One time axis for every process of a run.
//!
//! `CLOCK_MONOTONIC` is shared by all processes on a host, so the supervisor takes a reading at
//! start (the epoch), hands it to each node on its command line, and every event is stamped with
//! microseconds since that epoch. `std::time::Instant` cannot be built from a raw reading, hence
//! this module.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn monotonic_ns() -> u64 {
    // clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux for a valid clock id.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The time axis of one run: microseconds since `epoch_ns`.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    epoch_ns: u64,
}

impl RunClock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            epoch_ns: monotonic_ns(),
        }
    }

    /// The clock of a run started elsewhere (a node gets its supervisor's epoch).
    pub fn from_epoch(epoch_ns: u64) -> Self {
        Self { epoch_ns }
    }

    pub fn epoch_ns(&self) -> u64 {
        self.epoch_ns
    }

    pub fn now_us(&self) -> u64 {
        monotonic_ns().saturating_sub(self.epoch_ns) / 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_clock_is_monotonic_and_starts_near_zero() {
        let c = RunClock::start();
        let a = c.now_us();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now_us();
        assert!(a < 1_000, "fresh clock reads {a}us");
        assert!(b >= a + 2_000, "{b} should be at least 2ms after {a}");
        let same = RunClock::from_epoch(c.epoch_ns());
        assert!(same.now_us() >= b);
    }
}
