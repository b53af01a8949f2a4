//! Runs as files on the gateway's port: `GET /run.jsonl` (the run file the page opens, read by
//! [`model::runfile::parse_run`]) and `GET /run.shiviz` (the same events as a ShiViz log,
//! written by [`model::shiviz::write_shiviz`]).
//!
//! Both are written from [`Bus::run_log`](crate::bus::Bus::run_log): the ring's handles are
//! copied under the bus's lock, and the text is written after it is released, on a blocking
//! thread, so a download never stalls the cluster nor the gateway's other connections. The
//! run file reuses the JSON the bus serialised when it published each event.

use shared::{Event, EventKind, RunEnd, RunHeader, RunLine, PROTOCOL_VERSION, RUN_FORMAT};

use crate::bus::RunLog;

/// `source` of a run file written by a running server.
pub const SOURCE: &str = "pbscope serve";

/// What a run download is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/run.jsonl`: header, one wire event per line, `run_end`.
    Jsonl,
    /// `/run.shiviz`: a ShiViz log.
    Shiviz,
}

impl Format {
    /// The format a URL path asks for, if it is one of the run files.
    pub fn from_path(path: &str) -> Option<Format> {
        match path {
            "/run.jsonl" => Some(Format::Jsonl),
            "/run.shiviz" => Some(Format::Shiviz),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson; charset=utf-8",
            Format::Shiviz => "text/plain; charset=utf-8",
        }
    }

    /// The name a browser saves it under.
    pub fn file_name(self, run: u64) -> String {
        match self {
            Format::Jsonl => format!("pbscope-run-{run}.jsonl"),
            Format::Shiviz => format!("pbscope-run-{run}.shiviz"),
        }
    }

    /// Writes the file (CPU work: call it off the async workers).
    pub fn write(self, run: u64, variant: Option<&str>, log: &RunLog) -> String {
        match self {
            Format::Jsonl => jsonl(run, variant, log),
            Format::Shiviz => shiviz(log),
        }
    }
}

/// The ring as a run file, byte for byte what [`model::runfile::write_run`] writes for the
/// same events: the events' lines are the JSON the bus already holds.
///
/// An event whose stored text does not read (only a bug in the bus's writer makes one, and it
/// is logged) cannot be a line, and a run's seqs must follow on: the file then starts after
/// the last such event, and the events before it count as dropped, as the ring's oldest do.
pub fn jsonl(run: u64, variant: Option<&str>, log: &RunLog) -> String {
    // `text` is empty exactly when `json` would be (neither form reads), and cheap to ask.
    let kept = match log.events.iter().rposition(|e| e.text().is_empty()) {
        Some(i) => {
            tracing::error!(
                "run file: event {} does not read; the file starts after it",
                log.events[i].seq
            );
            &log.events[i + 1..]
        }
        None => &log.events[..],
    };
    let first_seq = match (kept.first(), log.events.last()) {
        (Some(e), _) => e.seq,
        (None, Some(last)) => last.seq + 1,
        (None, None) => log.next_seq,
    };
    let header = RunHeader {
        format: RUN_FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        server: format!("pbscope {}", env!("CARGO_PKG_VERSION")),
        run,
        first_seq,
        // The run's seqs start at 1: everything before the first kept event was dropped.
        dropped: first_seq - 1,
        source: SOURCE.into(),
        variant: variant.map(str::to_owned),
    };
    let size: usize = kept.iter().map(|e| e.len_hint(false) + 1).sum();
    let mut out = String::with_capacity(size + 512);
    out.push_str(&serde_json::to_string(&RunLine::Run(header)).expect("header serializes"));
    out.push('\n');
    for e in kept {
        out.push_str(&e.json());
        out.push('\n');
    }
    let count = kept.len() as u64;
    let end = RunEnd {
        events: count,
        last_seq: first_seq + count - 1,
    };
    out.push_str(&serde_json::to_string(&RunLine::RunEnd(end)).expect("end serializes"));
    out.push('\n');
    out
}

/// The ring as a ShiViz log: one execution per cluster generation.
pub fn shiviz(log: &RunLog) -> String {
    let events: Vec<Event> = log
        .events
        .iter()
        .filter_map(|l| match serde_json::from_str(l.text()) {
            Ok(e) => Some(e),
            Err(e) => {
                // The bus wrote it from an `Event`: this would be a bug in shared's serde.
                tracing::error!("event #{} does not read back: {e}", l.seq);
                None
            }
        })
        .collect();
    let resets = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ClusterReset { .. }))
        .count() as u64;
    model::shiviz::write_shiviz(&events, log.generation.saturating_sub(resets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Bus, BusConfig};
    use crate::clock::RunClock;

    fn bus(history: usize) -> std::sync::Arc<Bus> {
        Bus::new(
            RunClock::start(),
            BusConfig {
                history,
                ..BusConfig::default()
            },
        )
    }

    #[test]
    fn the_run_file_is_what_the_model_writes_and_reads() {
        let b = bus(4);
        for i in 0..6 {
            b.publish("supervisor", EventKind::SlowMotionSet { delay_ms: i });
        }
        b.cluster_reset(1);
        let text = jsonl(77, None, &b.run_log());
        let run = model::runfile::parse_run(&text).expect("a whole run");
        assert_eq!(run.header.first_seq, 4);
        assert_eq!(run.header.dropped, 3, "the ring keeps 4 of 7");
        assert_eq!(run.header.run, 77);
        assert_eq!(run.header.source, SOURCE);
        assert_eq!(run.events.len(), 4);
        assert_eq!(
            model::runfile::write_run(&run.header, &run.events),
            text,
            "byte for byte the model's writer"
        );
        // The ShiViz log knows the kept events end in generation 1.
        let log = shiviz(&b.run_log());
        let labels: Vec<&str> = log
            .lines()
            .skip(2)
            .filter(|l| l.starts_with("==="))
            .collect();
        assert_eq!(labels, ["=== generation 0 ===", "=== generation 1 ==="]);
    }

    #[test]
    fn an_empty_ring_is_an_empty_run() {
        let b = bus(4);
        let run = model::runfile::parse_run(&jsonl(1, None, &b.run_log())).expect("empty run");
        assert!(run.events.is_empty());
        assert_eq!((run.header.first_seq, run.header.dropped), (1, 0));
    }

    /// Found by review: an event whose stored text is unreadable (a bug in the bus's writer)
    /// was written as a blank line, and the file did not load. The file now starts after the
    /// last such event, the events before it counted as dropped, as the ring's oldest are.
    #[test]
    fn an_unreadable_event_is_dropped_with_what_precedes_it_and_the_file_loads() {
        use std::sync::Arc;
        let b = bus(16);
        for i in 0..6 {
            b.publish("supervisor", EventKind::SlowMotionSet { delay_ms: i });
        }
        let mut log = b.run_log();
        let seqs = |log: &RunLog| log.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&log), [1, 2, 3, 4, 5, 6]);
        log.events[2] = Arc::new(crate::bus::Logged::unreadable(3));
        let run = model::runfile::parse_run(&jsonl(5, None, &log))
            .unwrap_or_else(|e| panic!("the file does not load: {e}"));
        assert_eq!(run.header.first_seq, 4);
        assert_eq!(run.header.dropped, 3);
        assert_eq!(
            run.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        // The last event unreadable: an empty run that says where the next would start.
        log.events[5] = Arc::new(crate::bus::Logged::unreadable(6));
        let run = model::runfile::parse_run(&jsonl(5, None, &log)).expect("an empty run");
        assert!(run.events.is_empty());
        assert_eq!((run.header.first_seq, run.header.dropped), (7, 6));
    }

    /// Numbers for the docs: `cargo test -p server --lib runs::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cost_of_a_full_ring() {
        use shared::{Msg, MsgId, Op, RequestId};
        let b = bus(100_000);
        b.expect_origin(1);
        for i in 0..50_000u64 {
            let msg_id = MsgId::new(1, i + 1);
            b.publish(
                "c1",
                EventKind::MsgSent {
                    msg_id,
                    from: "c1".into(),
                    to: "s1".into(),
                    msg: Msg::Request {
                        req: RequestId::new(1, i),
                        op: Op::Lock,
                        lock: "a".into(),
                    },
                },
            );
            b.publish(
                "s1",
                EventKind::MsgDelivered {
                    msg_id,
                    from: "c1".into(),
                    to: "s1".into(),
                    duplicate: false,
                },
            );
        }
        let t = std::time::Instant::now();
        let log = b.run_log();
        let under_lock = t.elapsed();
        let t = std::time::Instant::now();
        let j = jsonl(1, None, &log);
        let jsonl_time = t.elapsed();
        let t = std::time::Instant::now();
        let sz = shiviz(&log);
        let shiviz_time = t.elapsed();
        eprintln!(
            "100,000 events: handles copied under the lock in {under_lock:?}; run.jsonl {} bytes in {jsonl_time:?}; run.shiviz {} bytes in {shiviz_time:?}",
            j.len(),
            sz.len()
        );
    }
}
