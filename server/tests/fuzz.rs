//! Property tests for the two parsers that read bytes from outside: the gateway's command parser
//! (a browser's text frames) and the cluster's frame decoder (length-delimited JSON between the
//! processes). Whatever they are fed, random bytes, invalid UTF-8, near-commands with junk fields,
//! huge or negative numbers, deep nesting, they must not panic, and every answer is a command or an
//! error.
//!
//! Proptest prints a failure's shrunk input and keeps its seed in `fuzz.proptest-regressions`
//! beside this file, which runs first from then on: commit that file with the fix.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use server::framing::{self, FrameError, MAX_FRAME};
use server::gateway::{parse_command, GatewayConfig, MAX_FAULT_DELAY_MS};
use shared::{Command, Envelope, ErrorCode, NodeControl, NodeReport, ServerMsg, COMMAND_TYPES};
use tokio_util::codec::FramedRead;

const MAX_CLIENT: u32 = 100;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------------------------------
// Generators
// ------------------------------------------------------------------------------------------

/// A number literal as text, beyond what any Rust integer or float holds at times.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,5})?",
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

/// Any JSON value, nested a few levels, with long strings now and then.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN/inf become null
        ".{0,24}".prop_map(Value::String),
        (0usize..400).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field value as JSON text: plausible for the field, or junk of any kind.
fn field_text(key: &str) -> BoxedStrategy<String> {
    let junk = prop_oneof![json_value().prop_map(|v| v.to_string()), number_text(),];
    let plausible: BoxedStrategy<Value> = match key {
        "client" => prop_oneof![
            (0u64..=120).prop_map(Value::from),
            any::<i64>().prop_map(Value::from)
        ]
        .boxed(),
        "lock" => prop_oneof![
            "[a-z]{0,4}",
            "\\PC{0,80}",
            "[a-z]{0,3}[\\x00-\\x1f\\x7f][a-z]{0,3}",
            (60usize..70).prop_map(|n| "l".repeat(n)),
        ]
        .prop_map(Value::String)
        .boxed(),
        "node" | "from" | "to" => prop::sample::select(vec![
            "s1", "s2", "s3", "primary", "backup", "c1", "*", "", "S1", "s-1",
        ])
        .prop_map(Value::from)
        .boxed(),
        "drop" | "duplicate" | "unlock_share" => prop_oneof![
            4 => (0.0f64..=1.0).prop_map(Value::from),
            1 => (-2.0f64..3.0).prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
        ]
        .boxed(),
        "clients" | "rate" | "locks" | "load_sample" => prop_oneof![
            4 => (0u64..=300).prop_map(Value::from),
            1 => (0u64..=2_000_000).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
        ]
        .boxed(),
        "distribution" => prop::sample::select(vec!["uniform", "hot", "", "Hot", "zipf"])
            .prop_map(Value::from)
            .boxed(),
        "on" => any::<bool>().prop_map(Value::from).boxed(),
        "point" => prop::sample::select(vec![
            "before_forward",
            "after_forward",
            "before_reply",
            "before_ack",
            "after_reply",
            "",
        ])
        .prop_map(Value::from)
        .boxed(),
        "groups" => {
            let member =
                prop::sample::select(vec!["s1", "s2", "c1", "c2", "primary", "*", "c9999"]);
            prop::collection::vec(prop::collection::vec(member, 0..4), 0..4)
                .prop_map(|g| json!(g))
                .boxed()
        }
        "delay_ms" | "msg_id" | "seed" | "jitter_ms" | "dying_ms" => prop_oneof![
            4 => (0u64..=12_000).prop_map(Value::from),
            1 => (0u64..=70_000).prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
        ]
        .boxed(),
        "tag" => prop_oneof![
            6 => ".{0,12}".prop_map(Value::String),
            // Around the 64 KiB message limit.
            1 => (60_000usize..70_000).prop_map(|n| Value::String("t".repeat(n))),
        ]
        .boxed(),
        _ => json_value().boxed(),
    };
    prop_oneof![3 => plausible.prop_map(|v| v.to_string()), 1 => junk].boxed()
}

/// The fields of command `ty` (besides `type` and `tag`).
fn fields_of(ty: &str) -> &'static [&'static str] {
    match ty {
        "lock" | "unlock" => &["client", "lock"],
        "crash" => &["node", "dying_ms"],
        "crash_before_reply" | "pause" | "resume" | "restart" => &["node"],
        "set_slow_motion" => &["delay_ms"],
        "set_link" => &["from", "to", "drop", "duplicate", "delay_ms", "jitter_ms"],
        "partition" => &["groups"],
        "cut" => &["from", "to"],
        "set_seed" => &["seed"],
        "crash_at" => &["node", "point", "dying_ms"],
        "crash_client" => &["client"],
        "step" => &["on"],
        "compact" => &["on", "binary"],
        "deliver" | "drop" | "duplicate" => &["msg_id"],
        "load" => &["clients", "rate", "locks", "distribution", "unlock_share"],
        "detail" => &["load_sample"],
        _ => &[],
    }
}

/// Object text shaped like a command: a known `type` (usually), fields it or another command
/// has, unknown fields, values plausible or not; sometimes cut short.
fn command_text() -> impl Strategy<Value = String> {
    const KEYS: &[&str] = &[
        "client",
        "lock",
        "tag",
        "node",
        "delay_ms",
        "from",
        "to",
        "groups",
        "msg_id",
        "on",
        "seed",
        "point",
        "type",
        "drop",
        "duplicate",
        "jitter_ms",
        "dying_ms",
        "clients",
        "rate",
        "locks",
        "distribution",
        "unlock_share",
        "load_sample",
    ];
    let known = prop::sample::select(COMMAND_TYPES.to_vec()).prop_map(|t| {
        (
            json!(t).to_string(),
            fields_of(t).iter().chain(&["tag"]).copied().collect(),
        )
    });
    let ty = prop_oneof![
        8 => known,
        1 => ".{0,12}".prop_map(|t| (json!(t).to_string(), vec!["client", "lock", "node"])),
        1 => json_value().prop_map(|v| (v.to_string(), vec!["node", "delay_ms"])),
    ];
    // The fields the command has, each present or not (mostly present), then a few others in
    // any order.
    let typed = ty.prop_flat_map(|(ty, fields)| {
        let n = fields.len();
        (
            Just(ty),
            prop::sample::subsequence(fields, (n.saturating_sub(1))..=n).prop_flat_map(|keys| {
                keys.into_iter()
                    .map(|k| (Just(k.to_owned()), field_text(k)))
                    .collect::<Vec<_>>()
            }),
        )
    });
    let key = prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        1 => ".{0,10}",
    ];
    let other = key.prop_flat_map(|k| (Just(k.clone()), field_text(&k)));
    let cut = prop::option::weighted(0.1, any::<prop::sample::Index>());
    (
        typed,
        prop::collection::vec(other, 0..3),
        any::<bool>(),
        cut,
    )
        .prop_map(|((ty, usual), others, type_first, cut)| {
            let mut parts: Vec<String> = usual
                .iter()
                .chain(&others)
                .map(|(k, v)| format!("{}:{v}", json!(k)))
                .collect();
            let ty = format!("\"type\":{ty}");
            if type_first {
                parts.insert(0, ty);
            } else {
                parts.push(ty);
            }
            let text = format!("{{{}}}", parts.join(","));
            match cut {
                Some(at) => {
                    let mut at = at.index(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    text[..at].to_owned()
                }
                None => text,
            }
        })
}

/// Bytes as a browser could never send them in a text frame, made text the lossy way.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,64}",
        json_value().prop_map(|v| v.to_string()),
    ]
}

// ------------------------------------------------------------------------------------------
// The command parser
// ------------------------------------------------------------------------------------------

/// What must hold for any text: an error with a code and a message, or a command that is known
/// and within the gateway's limits, whose own JSON parses back to itself.
fn check_command(text: &str) -> Result<(), TestCaseError> {
    let cfg = GatewayConfig::default();
    match parse_command(text, &cfg, MAX_CLIENT) {
        Err(ServerMsg::Error { code, message, .. }) => {
            prop_assert!(!message.is_empty(), "an error says why");
            if text.len() > cfg.max_message_bytes {
                prop_assert_eq!(code, ErrorCode::TooLarge);
            }
        }
        Err(other) => prop_assert!(false, "parse_command answered {:?}", other),
        Ok(cmd) => {
            prop_assert!(COMMAND_TYPES.contains(&cmd.name()), "{:?}", cmd);
            prop_assert!(text.len() <= cfg.max_message_bytes);
            check_limits(&cmd, &cfg)?;
            let again = serde_json::to_string(&cmd).expect("commands serialize");
            prop_assert_eq!(parse_command(&again, &cfg, MAX_CLIENT), Ok(cmd));
        }
    }
    Ok(())
}

/// The gateway's own limits, read off the command's wire form.
fn check_limits(cmd: &Command, cfg: &GatewayConfig) -> Result<(), TestCaseError> {
    let wire = serde_json::to_value(cmd).expect("commands serialize");
    if let Some(client) = wire.get("client") {
        let client = client.as_u64();
        prop_assert!(
            client.is_some_and(|c| c <= u64::from(MAX_CLIENT)),
            "{:?}",
            cmd
        );
    }
    if matches!(cmd.name(), "lock" | "unlock") {
        let lock = wire.get("lock").and_then(Value::as_str).unwrap_or("");
        prop_assert!(
            !lock.is_empty() && lock.len() <= cfg.max_lock_name,
            "{:?}",
            cmd
        );
        prop_assert!(!lock.chars().any(char::is_control), "{:?}", cmd);
    }
    if cmd.name() == "set_slow_motion" {
        let delay = wire.get("delay_ms").and_then(Value::as_u64);
        prop_assert!(delay.is_some_and(|d| d <= cfg.max_delay_ms), "{:?}", cmd);
    }
    for key in ["delay_ms", "jitter_ms", "dying_ms"] {
        if let (Some(d), true) = (wire.get(key), cmd.name() != "set_slow_motion") {
            prop_assert!(
                d.as_u64().is_some_and(|d| d <= MAX_FAULT_DELAY_MS),
                "{:?}",
                cmd
            );
        }
    }
    for key in ["drop", "duplicate"] {
        if let Some(p) = wire.get(key) {
            prop_assert!(
                p.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)),
                "{:?}",
                cmd
            );
        }
    }
    for end in ["from", "to"].iter().filter_map(|k| wire.get(*k)).chain(
        wire.get("groups").into_iter().flat_map(|g| {
            g.as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g.as_array().into_iter().flatten())
        }),
    ) {
        let end = end.as_str().unwrap_or_default();
        if let Some(c) = end.strip_prefix('c').and_then(|n| n.parse::<u64>().ok()) {
            prop_assert!(c <= u64::from(MAX_CLIENT), "{:?}", cmd);
        }
    }
    if let Some(groups) = wire.get("groups").and_then(Value::as_array) {
        let members: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g.as_array().into_iter().flatten())
            .collect();
        let distinct: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
        prop_assert_eq!(distinct.len(), members.len(), "a process in one group only");
        prop_assert!(!distinct.contains("\"*\""), "{:?}", cmd);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn the_command_parser_answers_any_text(text in any_text()) {
        check_command(&text)?;
    }

    #[test]
    fn the_command_parser_answers_near_commands(text in command_text()) {
        check_command(&text)?;
    }
}

/// The generators reach the parser's deep paths: a run of near-commands yields commands of
/// every type and errors of every kind a field can cause, not just "bad JSON".
#[test]
fn near_commands_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let cfg = GatewayConfig::default();
    let mut runner = TestRunner::deterministic();
    let strategy = command_text();
    let mut outcomes = BTreeSet::new();
    for _ in 0..3000 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        outcomes.insert(match parse_command(&text, &cfg, MAX_CLIENT) {
            Ok(cmd) => cmd.name().to_owned(),
            Err(ServerMsg::Error { code, .. }) => format!("{code:?}"),
            Err(other) => panic!("answered {other:?}"),
        });
    }
    for want in COMMAND_TYPES
        .iter()
        .map(|t| t.to_string())
        .chain(["BadJson", "UnknownType", "BadField", "TooLarge"].map(String::from))
    {
        assert!(
            outcomes.contains(&want),
            "never reached {want}: {outcomes:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// The frame decoder
// ------------------------------------------------------------------------------------------

/// Decodes frames from `bytes` as the cluster's connections do, until the stream ends or
/// fails. Reading from a slice never waits, so no runtime is needed.
fn decode_all<T: DeserializeOwned>(bytes: &[u8]) -> (Vec<Result<T, String>>, FrameError) {
    let mut frames = FramedRead::new(bytes, framing::codec());
    let mut out = vec![];
    loop {
        let next = framing::recv::<T, _>(&mut frames)
            .now_or_never()
            .expect("a slice never blocks");
        match next {
            Ok(v) => out.push(Ok(v)),
            Err(FrameError::Decode(e)) => out.push(Err(e.to_string())),
            Err(end) => return (out, end),
        }
    }
}

/// Frames holding JSON shaped like the cluster's messages (or not), with valid length prefixes.
fn cluster_payload() -> impl Strategy<Value = Vec<u8>> {
    let envelope = (
        json_value(),
        field_text("node"),
        prop::sample::select(vec!["request", "reply", "forward", "forward_ack", "ready"]),
        field_text("client"),
        json_value(),
        prop::sample::select(vec!["\"lock\"", "\"unlock\"", "\"open\"", "7"]),
        field_text("lock"),
        json_value(),
    )
        .prop_map(|(id, from, kind, client, seq, op, lock, ok)| {
            format!(
                r#"{{"msg_id":{id},"from":{from},"msg":{{"kind":"{kind}","req":{{"client":{client},"seq":{seq}}},"op":{op},"lock":{lock},"ok":{ok}}}}}"#
            )
        });
    let report = (
        prop::sample::select(vec![
            "ready",
            "event",
            "arm_crash_before_reply",
            "set_slow_motion",
            "nope",
        ]),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "id", "pid", "port", "token", "t_us", "kind", "delay_ms", "type",
                ]),
                prop_oneof![json_value().prop_map(|v| v.to_string()), number_text()],
            ),
            0..6,
        ),
    )
        .prop_map(|(ty, fields)| {
            let mut text = format!(r#"{{"type":"{ty}""#);
            for (k, v) in fields {
                text.push_str(&format!(r#","{k}":{v}"#));
            }
            text.push('}');
            text
        });
    prop_oneof![
        3 => envelope.prop_map(String::into_bytes),
        3 => report.prop_map(String::into_bytes),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(payload.len() + 4);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.to_vec()
}

/// Each whole frame gives exactly one answer, a message or a decode error, and a message
/// re-encodes to a frame that decodes to itself.
fn check_frames<T>(payloads: &[Vec<u8>], tail: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let mut bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    bytes.extend_from_slice(tail);
    let (answers, end) = decode_all::<T>(&bytes);
    prop_assert_eq!(answers.len(), payloads.len());
    // A stream cut inside a frame ends like a closed connection (or an i/o error when part of
    // a header is left over); either way the cut frame yields nothing.
    match end {
        FrameError::Closed => {}
        FrameError::Io(_) => prop_assert!(!tail.is_empty(), "whole frames end cleanly"),
        FrameError::Decode(_) => prop_assert!(false, "decode errors are answers"),
    }
    for answer in answers.into_iter().flatten() {
        let again = frame(&framing::encode(&answer));
        let (round, _) = decode_all::<T>(&again);
        prop_assert_eq!(round, vec![Ok(answer)]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_frame_decoder_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        // Whatever the bytes claim, decoding stops, and nothing is decoded from a frame that
        // claims more than MAX_FRAME.
        let (answers, _) = decode_all::<Envelope>(&bytes);
        prop_assert!(answers.len() <= bytes.len() / 4);
        let _ = decode_all::<NodeReport>(&bytes);
        let _ = decode_all::<NodeControl>(&bytes);
    }

    #[test]
    fn every_whole_frame_gets_one_answer(
        payloads in prop::collection::vec(cluster_payload(), 0..6),
        tail in prop_oneof![
            Just(vec![]),
            prop::collection::vec(any::<u8>(), 1..4),
            (5u32..200, prop::collection::vec(any::<u8>(), 0..4))
                .prop_map(|(len, part)| { let mut t = len.to_be_bytes().to_vec(); t.extend(part); t }),
        ],
    ) {
        check_frames::<Envelope>(&payloads, &tail)?;
        check_frames::<NodeReport>(&payloads, &tail)?;
        check_frames::<NodeControl>(&payloads, &tail)?;
    }
}

#[test]
fn a_frame_over_the_limit_is_refused_before_its_body() {
    let mut bytes = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let (answers, end) = decode_all::<Envelope>(&bytes);
    assert!(answers.is_empty());
    assert!(matches!(end, FrameError::Io(_)), "{end:?}");
    // And one right at the limit is read (and found to be no envelope).
    let body = Bytes::from(vec![b' '; MAX_FRAME]);
    let (answers, end) = decode_all::<Envelope>(&frame(&body));
    assert_eq!(answers.len(), 1);
    assert!(answers[0].is_err());
    assert!(matches!(end, FrameError::Closed), "{end:?}");
}
