//! CPU time used by processes and threads, read from Linux's `/proc`: what `pbscope bench`
//! reports per call (`cpu_us_per_op`), next to the throughput.
//!
//! Throughput on a shared 2-core machine moves by 10-20% from run to run; the CPU a call costs
//! each process moves far less, and says where the time goes (the supervisor, the primary, the
//! backup, the viewer; Redis's two servers and its clients) without a profiler.
//!
//! The time is the kernel's user + system time: of all a process's threads, those that ended
//! included (`/proc/<pid>/stat`), or of one thread (`/proc/<pid>/task/<tid>/stat`), in clock
//! ticks (10 ms: a fraction of a percent of a phase). Every Linux kernel has both files.

/// User + system time of process `pid`, every thread it ever had, in ns (`None`: no such
/// process, or no `/proc` here).
pub fn process_ns(pid: u32) -> Option<u64> {
    stat_ns(&format!("/proc/{pid}/stat"))
}

/// User + system time of thread `tid` of this process, in ns.
pub fn own_thread_ns(tid: u32) -> Option<u64> {
    stat_ns(&format!("/proc/{}/task/{tid}/stat", std::process::id()))
}

/// The user + system time a `stat` file gives, in ns.
fn stat_ns(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let ticks = stat_ticks(&text)?;
    let per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)? as u64;
    Some(ticks * (1_000_000_000 / per_s))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2,
/// in parentheses) may hold spaces and parentheses: the fields are counted from the last `)`.
fn stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The calling thread's id (for [`own_thread_ns`]).
pub fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// What a set of named parties had used at one moment; two of them give the CPU between.
#[derive(Debug, Clone, Default)]
pub struct CpuReading(Vec<(String, Option<u64>)>);

/// Who to read: a whole process, or one thread of this process.
#[derive(Debug, Clone)]
pub enum Party {
    Process(u32),
    OwnThread(u32),
}

impl CpuReading {
    /// Reads every party now, in order.
    pub fn take(parties: &[(String, Party)]) -> Self {
        Self(
            parties
                .iter()
                .map(|(name, p)| {
                    let ns = match p {
                        Party::Process(pid) => process_ns(*pid),
                        Party::OwnThread(tid) => own_thread_ns(*tid),
                    };
                    (name.clone(), ns)
                })
                .collect(),
        )
    }

    /// CPU µs per operation of each party from `self` to `later`, over `ops` operations; a
    /// party that could not be read at either end is left out. `subtract` names a party whose
    /// time is part of another's (a thread of a process): it is taken out of that one.
    pub fn per_op(&self, later: &CpuReading, ops: u64, subtract: Option<(&str, &str)>) -> CpuSplit {
        let mut parts: Vec<(String, f64)> = Vec::new();
        for ((name, before), (_, after)) in self.0.iter().zip(&later.0) {
            if let (Some(b), Some(a)) = (before, after) {
                let us = a.saturating_sub(*b) as f64 / 1e3;
                parts.push((name.clone(), us / ops.max(1) as f64));
            }
        }
        if let Some((part, whole)) = subtract {
            let part_us = parts.iter().find(|(n, _)| n == part).map(|(_, v)| *v);
            if let (Some(p), Some(w)) = (part_us, parts.iter_mut().find(|(n, _)| n == whole)) {
                w.1 = (w.1 - p).max(0.0);
            }
        }
        CpuSplit { parts }
    }
}

/// CPU µs per operation, by party (in the order they were named).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSplit {
    pub parts: Vec<(String, f64)>,
}

impl CpuSplit {
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|(_, v)| v).sum()
    }

    /// `"supervisor 20.1 + s1 12.3 + s2 5.0"`.
    pub fn words(&self) -> String {
        self.parts
            .iter()
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_a_name_with_spaces_and_parentheses() {
        let line = "42 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 250 17 0 0 20 0 3 0 100 200 300";
        assert_eq!(stat_ticks(line), Some(267));
        assert_eq!(stat_ticks("42 (x) R 1 2"), None);
        assert_eq!(stat_ticks("no name at all"), None);
        assert_eq!(stat_ticks("42 (x) R 1 2 3 4 5 6 7 8 9 10 u s"), None);
    }

    #[test]
    fn a_busy_threads_time_is_counted_per_op_and_a_missing_process_left_out() {
        let me = std::process::id();
        let tid = current_tid();
        let parties = vec![
            ("me".to_owned(), Party::Process(me)),
            ("this thread".to_owned(), Party::OwnThread(tid)),
            ("nobody".to_owned(), Party::Process(u32::MAX)),
        ];
        // The kernel's own count of this thread's CPU time, apart from /proc.
        let cpu_clock = || {
            let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
                .expect("the thread's CPU clock");
            t.tv_sec() as f64 * 1e6 + t.tv_nsec() as f64 / 1e3
        };
        let before = CpuReading::take(&parties);
        // 50 ms of CPU on this thread, however long the machine takes to give it: spinning for
        // 50 ms of wall time read as 20 ms on a busy machine, where other tests preempted it.
        let start = std::time::Instant::now();
        let cpu_start = cpu_clock();
        let mut x = 0u64;
        while cpu_clock() - cpu_start < 50_000.0 && start.elapsed().as_secs() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spun_us = cpu_clock() - cpu_start;
        let wall_us = start.elapsed().as_secs_f64() * 1e6;
        let after = CpuReading::take(&parties);
        let split = before.per_op(&after, 1, None);
        // The process that does not exist is left out, not counted as zero.
        let names: Vec<&str> = split.parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["me", "this thread"]);
        // What /proc says the thread used is what the CPU clock says, to its 10 ms ticks (one
        // at each end), and never more than the wall time it had.
        let thread_us = split.parts[1].1;
        assert!(
            spun_us >= 50_000.0,
            "the spin got {spun_us} us of CPU in 60 s"
        );
        assert!(
            thread_us >= spun_us - 20_000.0 && thread_us <= wall_us + 20_000.0,
            "{spun_us} us of spinning ({wall_us} us of wall time) read as {thread_us} us"
        );
        // The process is at least its thread (to the clock tick the process is counted in).
        assert!(split.parts[0].1 + 10_000.0 >= thread_us, "{split:?}");
        // Taking the thread out of the process leaves the rest of the process (the test
        // harness's other threads, which may be busy with other tests).
        let rest = before.per_op(&after, 1, Some(("this thread", "me")));
        assert!((rest.parts[0].1 - (split.parts[0].1 - thread_us).max(0.0)).abs() < 1e-6);
        assert_eq!(rest.parts[1].1, thread_us);
        // Per operation: halved for two.
        let two = before.per_op(&after, 2, None);
        assert!((two.parts[1].1 * 2.0 - thread_us).abs() < 1e-6);
        assert!(two.words().starts_with("me "));
        assert!((split.total() - split.parts.iter().map(|p| p.1).sum::<f64>()).abs() < 1e-9);
    }
}
