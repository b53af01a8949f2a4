//! Our own side running short: which socket errors mean *this* process or host lacks a
//! resource (descriptors, buffers, memory, ephemeral ports) rather than that the peer is gone,
//! how an accept loop waits one out, and raising the descriptor limit at start.
//!
//! Failure detection in pbscope is what a real client sees, so the difference matters: a clerk
//! or a primary that reads "too many open files" as "the server is dead" fails over from a live
//! server and makes the split brain the lab warns about. This module only classifies and
//! paces; it must not decide what a clerk or a node does next, and it holds no sockets.

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::time::Instant;

/// True when `e` says this process or this host ran out of something, so the peer told us
/// nothing about itself.
///
/// - `EMFILE`, `ENFILE`: no descriptor left for the socket (per process, system wide).
/// - `ENOBUFS`, `ENOMEM`: the kernel had no memory for the socket or its buffers.
/// - `EADDRNOTAVAIL`: on `connect`, no free local (ephemeral) port to connect from.
/// - `EAGAIN`: on a TCP `connect`, Linux's "insufficient entries in the routing cache".
///
/// Everything else counts as the peer's or the network's: `ECONNREFUSED` (nobody listens),
/// `ECONNRESET`/`EPIPE` (it went away), `ETIMEDOUT`, `EHOSTUNREACH`/`ENETUNREACH` (it can't be
/// reached), `ECONNABORTED` (a connection died before `accept`), and errors with no errno.
pub(crate) fn is_local_resource_error(e: &io::Error) -> bool {
    let Some(raw) = e.raw_os_error() else {
        return false;
    };
    matches!(
        Errno::from_raw(raw),
        Errno::EMFILE
            | Errno::ENFILE
            | Errno::ENOBUFS
            | Errno::ENOMEM
            | Errno::EADDRNOTAVAIL
            | Errno::EAGAIN
    )
}

/// How long an accept loop stops accepting after an error. Long enough that a loop facing
/// `EMFILE` (the pending connection stays queued, so `accept` fails again at once) costs
/// nothing; short enough that a freed descriptor is used soon.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// The state of one accept loop's back-off: when accepting may resume, and how many errors in
/// a row it has seen (the first of a run is logged as a warning, the rest at debug, so a long
/// shortage does not flood the log at 20 lines a second).
#[derive(Debug, Default)]
pub(crate) struct AcceptPause {
    resume_at: Option<Instant>,
    failures: u64,
}

impl AcceptPause {
    /// Records a failed `accept` at `now`; returns when to accept again.
    pub(crate) fn failed(&mut self, now: Instant, e: &io::Error, listener: &str) -> Instant {
        self.failures += 1;
        let side = if is_local_resource_error(e) {
            "out of a local resource"
        } else {
            "error"
        };
        if self.failures == 1 {
            tracing::warn!(
                "{listener}: accept failed ({side}: {e}); pausing accepts for {ACCEPT_PAUSE:?} at a time"
            );
        } else {
            tracing::debug!(
                "{listener}: accept failed again ({e}), {} in a row",
                self.failures
            );
        }
        let resume = now + ACCEPT_PAUSE;
        self.resume_at = Some(resume);
        resume
    }

    /// Records a successful `accept`.
    pub(crate) fn accepted(&mut self, listener: &str) {
        if self.failures > 0 {
            tracing::info!(
                "{listener}: accepting again after {} failed accepts",
                self.failures
            );
        }
        self.failures = 0;
    }

    /// When accepting may resume, while paused.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Ends the pause (its time has come).
    pub(crate) fn resume(&mut self) {
        self.resume_at = None;
    }
}

/// Raises this process's soft descriptor limit to its hard limit, which any process may do.
/// The supervisor holds a socket per viewer, clerk connection and node, and a node one per
/// clerk; a shell's default soft limit (often 1024) is the first thing they would run into.
/// Children inherit the raised limit.
pub fn raise_fd_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!("open files limit raised from {soft} to {hard}"),
            Err(e) => {
                tracing::warn!("could not raise the open files limit from {soft} to {hard}: {e}")
            }
        },
        Ok((soft, _)) => tracing::debug!("open files limit is {soft}, already the hard limit"),
        Err(e) => tracing::warn!("could not read the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno as i32)
    }

    #[test]
    fn our_own_shortages_are_local() {
        for errno in [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::ENOMEM,
            Errno::EADDRNOTAVAIL,
            Errno::EAGAIN,
        ] {
            assert!(is_local_resource_error(&os(errno)), "{errno:?}");
        }
    }

    #[test]
    fn what_the_peer_or_the_network_did_is_not_local() {
        for errno in [
            Errno::ECONNREFUSED,
            Errno::ECONNRESET,
            Errno::ECONNABORTED,
            Errno::EPIPE,
            Errno::ETIMEDOUT,
            Errno::EHOSTUNREACH,
            Errno::ENETUNREACH,
        ] {
            assert!(!is_local_resource_error(&os(errno)), "{errno:?}");
        }
    }

    #[test]
    fn errors_without_an_errno_are_not_local() {
        assert!(!is_local_resource_error(&io::Error::new(
            io::ErrorKind::OutOfMemory,
            "made up"
        )));
        assert!(!is_local_resource_error(&io::ErrorKind::TimedOut.into()));
    }

    #[test]
    fn an_accept_pause_lasts_its_length_and_counts_a_run_of_errors() {
        let mut pause = AcceptPause::default();
        assert_eq!(pause.resume_at(), None);
        let now = Instant::now();
        let resume = pause.failed(now, &os(Errno::EMFILE), "test");
        assert_eq!(resume, now + ACCEPT_PAUSE);
        assert_eq!(pause.resume_at(), Some(resume));
        pause.resume();
        assert_eq!(pause.resume_at(), None);
        pause.failed(now, &os(Errno::EMFILE), "test");
        assert_eq!(pause.failures, 2);
        pause.accepted("test");
        assert_eq!(pause.failures, 0);
    }
}
