//! Reading a run file: the header line, the events in `seq` order, the end line.
//!
//! A run file is written by the server (`GET /run.jsonl`, `pbscope check --save`) and read by
//! the page (*Open run*) and by tests. Reading is all or nothing: a file that is not a run, was
//! cut short, skips or repeats an event, or comes from a newer protocol is refused with a
//! sentence that says which, so that half a run is never shown as if it were the whole.

use std::fmt;

use shared::{Event, RunEnd, RunHeader, RunLine, PROTOCOL_VERSION, RUN_FORMAT};

/// A whole run, as its file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub header: RunHeader,
    /// In `seq` order, consecutive from `header.first_seq`.
    pub events: Vec<Event>,
}

/// Why a text is not a run this reader can show. `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFileError {
    Empty,
    /// The first line is not a `run` header (JSON or not).
    NotARun {
        detail: String,
    },
    /// Written by a newer pbscope, whose events this page could misread.
    NewerProtocol {
        found: u32,
        supported: u32,
    },
    /// A line is not JSON, or not an event.
    BadLine {
        line: usize,
        detail: String,
    },
    /// An event's `seq` is not the one after the previous event's.
    OutOfOrder {
        line: usize,
        expected: u64,
        found: u64,
    },
    /// The file stops before its `run_end` line.
    Truncated {
        events: u64,
    },
    /// `run_end` disagrees with the events before it.
    EndMismatch {
        line: usize,
        detail: String,
    },
    /// Something follows the `run_end` line.
    AfterEnd {
        line: usize,
    },
}

impl fmt::Display for RunFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFileError::Empty => write!(f, "the file is empty: it is not a pbscope run"),
            RunFileError::NotARun { detail } => write!(
                f,
                "not a pbscope run: its first line must be a {{\"type\":\"run\",\"format\":\"{RUN_FORMAT}\",...}} header ({detail})"
            ),
            RunFileError::NewerProtocol { found, supported } => write!(
                f,
                "this run was written with protocol {found}, newer than this page's {supported}: open it with a newer pbscope"
            ),
            RunFileError::BadLine { line, detail } => {
                write!(f, "line {line} is not a pbscope event: {detail}")
            }
            RunFileError::OutOfOrder {
                line,
                expected,
                found,
            } => write!(
                f,
                "line {line} has event #{found} where #{expected} should be: events are missing or out of order"
            ),
            RunFileError::Truncated { events } => write!(
                f,
                "the file ends after {events} events without its run_end line: it was cut short, so it is not shown"
            ),
            RunFileError::EndMismatch { line, detail } => {
                write!(f, "line {line}, the run_end line, disagrees with the file: {detail}")
            }
            RunFileError::AfterEnd { line } => {
                write!(f, "line {line} follows the run_end line: the file is not one run")
            }
        }
    }
}

impl std::error::Error for RunFileError {}

/// Reads a whole run file. Blank lines are ignored; a trailing newline is optional.
pub fn parse_run(text: &str) -> Result<Run, RunFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .peekable();
    let Some((_, first)) = lines.next() else {
        return Err(RunFileError::Empty);
    };
    let header = read_header(first)?;
    let mut events: Vec<Event> = Vec::new();
    while let Some((line, text)) = lines.next() {
        let expected = header.first_seq + events.len() as u64;
        if let Ok(RunLine::RunEnd(end)) = serde_json::from_str::<RunLine>(text) {
            check_end(line, &end, &header, events.len() as u64, expected)?;
            if let Some((line, _)) = lines.next() {
                return Err(RunFileError::AfterEnd { line });
            }
            return Ok(Run { header, events });
        }
        let event: Event = match serde_json::from_str(text) {
            Ok(e) => e,
            // The last line stops inside its JSON: the file was cut there, mid-line.
            Err(e) if e.is_eof() && lines.peek().is_none() => {
                return Err(RunFileError::Truncated {
                    events: events.len() as u64,
                })
            }
            Err(e) => {
                return Err(RunFileError::BadLine {
                    line,
                    detail: e.to_string(),
                })
            }
        };
        if event.seq != expected {
            return Err(RunFileError::OutOfOrder {
                line,
                expected,
                found: event.seq,
            });
        }
        events.push(event);
    }
    Err(RunFileError::Truncated {
        events: events.len() as u64,
    })
}

/// The fields of line 1 that decide whether it is a header this reader can read at all. Read
/// into this small struct rather than into a `serde_json::Value`: the page then carries no
/// `Value` parser (the release wasm is smaller), and the reasons stay the same.
#[derive(serde::Deserialize)]
struct HeaderProbe {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    protocol: Option<u64>,
}

fn read_header(first: &str) -> Result<RunHeader, RunFileError> {
    let probe = match serde_json::from_str::<HeaderProbe>(first) {
        Ok(p) => Some(p),
        // JSON, but not an object with string `type`/`format` and a whole `protocol`.
        Err(e) if e.is_data() => None,
        Err(e) => {
            return Err(RunFileError::NotARun {
                detail: format!("line 1 is not JSON: {e}"),
            })
        }
    };
    let Some(probe) = probe
        .filter(|p| p.kind.as_deref() == Some("run") && p.format.as_deref() == Some(RUN_FORMAT))
    else {
        return Err(RunFileError::NotARun {
            detail: "line 1 is JSON, but not that header".into(),
        });
    };
    // The version first: a newer header may have fields this reader does not know.
    if let Some(found) = probe.protocol {
        if found > u64::from(PROTOCOL_VERSION) {
            return Err(RunFileError::NewerProtocol {
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: PROTOCOL_VERSION,
            });
        }
    }
    match serde_json::from_str::<RunLine>(first) {
        Ok(RunLine::Run(h)) => Ok(h),
        Ok(RunLine::RunEnd(_)) => unreachable!("the type was checked to be run"),
        Err(e) => Err(RunFileError::NotARun {
            detail: format!("its header is incomplete: {e}"),
        }),
    }
}

fn check_end(
    line: usize,
    end: &RunEnd,
    header: &RunHeader,
    events: u64,
    next: u64,
) -> Result<(), RunFileError> {
    if end.events != events {
        return Err(RunFileError::EndMismatch {
            line,
            detail: format!("it counts {} events, the file holds {events}", end.events),
        });
    }
    if end.last_seq + 1 != next {
        return Err(RunFileError::EndMismatch {
            line,
            detail: format!(
                "it names #{} as the last event, the file ends at #{}",
                end.last_seq,
                next.saturating_sub(1)
                    .max(header.first_seq.saturating_sub(1))
            ),
        });
    }
    Ok(())
}

/// Writes a run file: the header, one event per line, the end line. The inverse of
/// [`parse_run`]; `events` must be consecutive from `header.first_seq`.
pub fn write_run<'a>(header: &RunHeader, events: impl IntoIterator<Item = &'a Event>) -> String {
    let mut out = serde_json::to_string(&RunLine::Run(header.clone())).expect("header serializes");
    out.push('\n');
    let mut count = 0u64;
    let mut last = header.first_seq.saturating_sub(1);
    for e in events {
        out.push_str(&serde_json::to_string(e).expect("event serializes"));
        out.push('\n');
        count += 1;
        last = e.seq;
    }
    out.push_str(
        &serde_json::to_string(&RunLine::RunEnd(RunEnd {
            events: count,
            last_seq: last,
        }))
        .expect("end serializes"),
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{EventKind, NodeId};

    fn header(first_seq: u64) -> RunHeader {
        RunHeader {
            format: RUN_FORMAT.into(),
            protocol: PROTOCOL_VERSION,
            server: "pbscope 0.1.0".into(),
            run: 7,
            first_seq,
            dropped: first_seq - 1,
            source: "pbscope serve".into(),
            variant: None,
        }
    }

    fn events(first: u64, n: u64) -> Vec<Event> {
        (first..first + n)
            .map(|seq| Event {
                seq,
                t_us: seq * 10,
                node: NodeId::new("supervisor"),
                kind: EventKind::SlowMotionSet { delay_ms: seq },
            })
            .collect()
    }

    #[test]
    fn a_written_run_reads_back_whole() {
        let evs = events(5, 3);
        let text = write_run(&header(5), &evs);
        assert_eq!(text.lines().count(), 5);
        let run = parse_run(&text).expect("reads back");
        assert_eq!(run.header, header(5));
        assert_eq!(run.events, evs);
        // A broken protocol's name travels with its run.
        let broken = RunHeader {
            variant: Some("reply-before-ack".into()),
            ..header(5)
        };
        let run = parse_run(&write_run(&broken, &evs)).expect("reads back");
        assert_eq!(run.header.variant.as_deref(), Some("reply-before-ack"));
        // An empty run is a run too.
        let run = parse_run(&write_run(&header(1), &[])).expect("empty run");
        assert!(run.events.is_empty());
    }

    #[test]
    fn a_file_cut_short_is_refused_at_every_line() {
        let text = write_run(&header(1), &events(1, 4));
        let lines: Vec<&str> = text.lines().collect();
        for keep in 1..lines.len() {
            let cut = lines[..keep].join("\n");
            let err = parse_run(&cut).expect_err("a prefix is not a run");
            assert_eq!(
                err,
                RunFileError::Truncated {
                    events: keep as u64 - 1
                },
                "{keep} lines"
            );
        }
        // Cut inside a line: cut short too, said the same way, whichever line it is.
        for cut_at in [text.len() - 20, text.len() / 2, lines[0].len() + 10] {
            let err = parse_run(&text[..cut_at]).expect_err("cut mid-line");
            assert!(
                matches!(err, RunFileError::Truncated { .. }),
                "cut at byte {cut_at}: {err}"
            );
        }
        // A broken line with more after it is a bad line, not a cut.
        let broken = text.replacen("\"seq\":2", "\"seq\":", 1);
        assert!(matches!(
            parse_run(&broken),
            Err(RunFileError::BadLine { line: 3, .. })
        ));
    }

    #[test]
    fn what_is_not_a_run_is_refused_with_the_reason() {
        assert_eq!(parse_run(""), Err(RunFileError::Empty));
        assert!(matches!(
            parse_run("hello"),
            Err(RunFileError::NotARun { .. })
        ));
        assert!(matches!(
            parse_run("{\"type\":\"snapshot\"}"),
            Err(RunFileError::NotARun { .. })
        ));
        let newer = write_run(&header(1), &events(1, 1)).replacen(
            &format!("\"protocol\":{PROTOCOL_VERSION}"),
            "\"protocol\":99,\"new_field\":[1]",
            1,
        );
        let err = parse_run(&newer).expect_err("newer");
        assert_eq!(
            err,
            RunFileError::NewerProtocol {
                found: 99,
                supported: PROTOCOL_VERSION
            }
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn line_one_is_refused_with_the_reason_that_fits() {
        let detail = |text: &str| match parse_run(text) {
            Err(RunFileError::NotARun { detail }) => detail,
            other => panic!("{text}: {other:?}"),
        };
        assert!(detail("hello").starts_with("line 1 is not JSON"));
        assert!(detail("{\"type\":\"run\"").starts_with("line 1 is not JSON"));
        for json in [
            "[1,2]",
            "\"run\"",
            "{\"type\":5}",
            "{\"type\":\"run\"}",
            "{\"type\":\"run_end\",\"events\":0,\"last_seq\":0}",
            "{\"type\":\"run\",\"format\":\"other\"}",
        ] {
            assert_eq!(
                detail(json),
                "line 1 is JSON, but not that header",
                "{json}"
            );
        }
        let incomplete = format!("{{\"type\":\"run\",\"format\":\"{RUN_FORMAT}\",\"protocol\":1}}");
        assert!(
            detail(&incomplete).starts_with("its header is incomplete: missing field"),
            "{}",
            detail(&incomplete)
        );
        // The header's own fields may come in any order, unknown ones are ignored.
        let text = write_run(&header(1), &events(1, 1));
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[0] = format!(
            "{{\"first_seq\":1,\"extra\":{{\"a\":[1]}},\"dropped\":0,\"run\":7,\"server\":\"pbscope 0.1.0\",\"source\":\"pbscope serve\",\"protocol\":{PROTOCOL_VERSION},\"format\":\"{RUN_FORMAT}\",\"type\":\"run\"}}"
        );
        let run = parse_run(&lines.join("\n")).expect("any order");
        assert_eq!(run.header, header(1));
    }

    #[test]
    fn a_missing_repeated_or_extra_event_is_refused() {
        let mut evs = events(1, 4);
        evs.remove(2);
        let text = write_run(&header(1), &evs);
        assert_eq!(
            parse_run(&text),
            Err(RunFileError::OutOfOrder {
                line: 4,
                expected: 3,
                found: 4
            })
        );
        let text = write_run(&header(1), &events(1, 2));
        let extra = format!(
            "{text}{}\n",
            serde_json::to_string(&events(3, 1)[0]).unwrap()
        );
        assert!(matches!(
            parse_run(&extra),
            Err(RunFileError::AfterEnd { line: 5 })
        ));
        let lying = text.replace("\"events\":2", "\"events\":3");
        assert!(matches!(
            parse_run(&lying),
            Err(RunFileError::EndMismatch { .. })
        ));
    }
}
