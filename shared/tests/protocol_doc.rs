//! Golden test: every JSON example in docs/protocol.md parses into the shared types and
//! serialises back to the same JSON, and every command, server message, event and error code
//! is documented with an example.

use std::collections::BTreeSet;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use shared::{Command, ErrorCode, Event, EventKind, NodeReport, RunLine, ServerMsg, COMMAND_TYPES};

fn examples(kind: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let fence = format!("```json {kind}");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == fence {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(body.join("\n"));
        }
    }
    out
}

/// Parses `text` as `T` and checks that serialising it gives the same JSON back.
fn round_trip<T: Serialize + DeserializeOwned>(text: &str) -> T {
    let original: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let parsed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("does not match the type ({e}): {text}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(back, original, "the example and the type disagree");
    parsed
}

fn type_of(v: &impl Serialize) -> String {
    serde_json::to_value(v).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn commands_are_documented_exactly() {
    let docs = examples("command");
    let names: BTreeSet<String> = docs
        .iter()
        .map(|d| round_trip::<Command>(d).name().to_owned())
        .collect();
    let all: BTreeSet<String> = COMMAND_TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, all, "every command needs an example");
}

#[test]
fn server_messages_are_documented_exactly() {
    let docs = examples("server");
    let names: BTreeSet<String> = docs
        .iter()
        .map(|d| type_of(&round_trip::<ServerMsg>(d)))
        .collect();
    let all: BTreeSet<String> = ["hello", "snapshot", "events", "ack", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, all);
}

/// Every compact frame in the docs reads as one of the object frames documented beside it.
#[test]
fn compact_rows_are_documented_exactly() {
    let objects: Vec<ServerMsg> = examples("server")
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let compact = examples("compact");
    assert!(!compact.is_empty(), "the compact rows need an example");
    for d in compact {
        let msg: ServerMsg = serde_json::from_str(&d)
            .unwrap_or_else(|e| panic!("does not match the type ({e}): {d}"));
        assert!(d.contains("[17,"), "the example holds rows: {d}");
        assert!(
            objects.contains(&msg),
            "no object frame holds the events of {d}"
        );
    }
}

/// Fails to compile when an event kind is added, so the list below stays complete.
fn all_event_names() -> Vec<&'static str> {
    let witness = |k: &EventKind| match k {
        EventKind::ProcessStarted { .. }
        | EventKind::ProcessExited { .. }
        | EventKind::Crashed { .. }
        | EventKind::CrashArmed { .. }
        | EventKind::Dying { .. }
        | EventKind::Paused { .. }
        | EventKind::Resumed { .. }
        | EventKind::ClientStarted { .. }
        | EventKind::FaultsChanged { .. }
        | EventKind::MsgHeld { .. }
        | EventKind::RoleChanged { .. }
        | EventKind::MsgSent { .. }
        | EventKind::MsgDelivered { .. }
        | EventKind::MsgLost { .. }
        | EventKind::Executed { .. }
        | EventKind::OpInvoked { .. }
        | EventKind::OpCompleted { .. }
        | EventKind::OpFailed { .. }
        | EventKind::RpcFailed { .. }
        | EventKind::ClusterReset { .. }
        | EventKind::SlowMotionSet { .. }
        | EventKind::Verdict(_)
        | EventKind::LoadChanged(_)
        | EventKind::LoadStats(_)
        | EventKind::Failover { .. } => k.name(),
    };
    let _ = witness;
    vec![
        "process_started",
        "process_exited",
        "crashed",
        "crash_armed",
        "role_changed",
        "msg_sent",
        "msg_delivered",
        "msg_lost",
        "executed",
        "op_invoked",
        "op_completed",
        "op_failed",
        "rpc_failed",
        "cluster_reset",
        "slow_motion_set",
        "dying",
        "paused",
        "resumed",
        "client_started",
        "faults_changed",
        "msg_held",
        "verdict",
        "load_changed",
        "load_stats",
        "failover",
    ]
}

#[test]
fn events_are_documented_exactly() {
    let mut names = BTreeSet::new();
    for d in examples("event") {
        let e: Event = round_trip(&d);
        names.insert(e.kind.name().to_owned());
    }
    // Events inside server examples count too (and must parse).
    for d in examples("server") {
        if let ServerMsg::Events { events } = round_trip::<ServerMsg>(&d) {
            names.extend(events.iter().map(|e| e.kind.name().to_owned()));
        }
    }
    let all: BTreeSet<String> = all_event_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, all);
}

#[test]
fn every_error_code_is_in_the_table() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .unwrap();
    let codes = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadField,
        ErrorCode::UnknownNode,
        ErrorCode::NodeDead,
        ErrorCode::ClientBusy,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::TooManyLocks,
        ErrorCode::TooManyViewers,
        ErrorCode::QueueFull,
        ErrorCode::UnknownMessage,
        ErrorCode::NotStepping,
        ErrorCode::NotPaused,
        ErrorCode::NodeAlive,
        ErrorCode::NodePaused,
    ];
    // Exhaustive: adding a code breaks this match until the list above grows.
    for c in codes {
        match c {
            ErrorCode::BadJson
            | ErrorCode::UnknownType
            | ErrorCode::BadField
            | ErrorCode::UnknownNode
            | ErrorCode::NodeDead
            | ErrorCode::ClientBusy
            | ErrorCode::TooLarge
            | ErrorCode::RateLimited
            | ErrorCode::Unavailable
            | ErrorCode::TooManyLocks
            | ErrorCode::TooManyViewers
            | ErrorCode::QueueFull
            | ErrorCode::UnknownMessage
            | ErrorCode::NotStepping
            | ErrorCode::NotPaused
            | ErrorCode::NodeAlive
            | ErrorCode::NodePaused => {}
        }
        let name = serde_json::to_value(c).unwrap();
        let row = format!("| `{}` |", name.as_str().unwrap());
        assert!(doc.contains(&row), "error code {name} is not in the table");
    }
}

#[test]
fn run_file_lines_are_documented_exactly() {
    let names: BTreeSet<String> = examples("run")
        .iter()
        .map(|d| type_of(&round_trip::<RunLine>(d)))
        .collect();
    let all: BTreeSet<String> = ["run", "run_end"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names, all,
        "the header and the end line each need an example"
    );
}

#[test]
fn node_reports_of_a_round_are_documented() {
    let names: BTreeSet<String> = examples("node_report")
        .iter()
        .map(|d| {
            if !d.starts_with(r#"{"type":"events""#) {
                return type_of(&round_trip::<NodeReport>(d));
            }
            // A round's events are written as rows where serde writes objects (the server's
            // `framing` tests hold this example to exactly what a node writes): what they
            // mean must survive serde's writing and reading them again.
            let report: NodeReport = serde_json::from_str(d)
                .unwrap_or_else(|e| panic!("does not match the type ({e}): {d}"));
            let again = serde_json::to_string(&report).unwrap();
            assert_eq!(serde_json::from_str::<NodeReport>(&again).unwrap(), report);
            type_of(&report)
        })
        .collect();
    let want: BTreeSet<String> = ["event", "events"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names, want,
        "the single report and the round's batch each need an example"
    );
}

/// The binary frame in the docs, byte for byte, reads as the compact example's events.
#[test]
fn the_binary_frame_is_documented_exactly() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let start = doc
        .find("```text binary-hex")
        .expect("the binary frame needs an example");
    let body = doc[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim() != "```");
    let bytes: Vec<u8> = body
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("{h}: {e}")))
        .collect();
    let mut names = shared::binary::Names::default();
    let events = shared::binary::read_frame(&bytes, &mut names).expect("the example reads");
    assert_eq!(names.len(), 3);
    let compact = examples("compact");
    let rows: ServerMsg = serde_json::from_str(&compact[0]).unwrap();
    assert_eq!(rows, ServerMsg::Events { events });
}
