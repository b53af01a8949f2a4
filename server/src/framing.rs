//! Length-delimited JSON frames, the format of every TCP connection inside the cluster
//! (clerk <-> server, primary <-> backup, node <-> supervisor).
//!
//! A frame is a 4-byte big-endian length and a JSON document. Frames over [`MAX_FRAME`] are a
//! protocol error: nothing inside the cluster sends them.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame inside the cluster.
pub const MAX_FRAME: usize = 1 << 20;

pub type FramedConn = Framed<TcpStream, LengthDelimitedCodec>;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Decode(#[from] serde_json::Error),
}

pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

pub fn framed(stream: TcpStream) -> FramedConn {
    // Lock-service messages are tiny and latency is what people watch: no Nagle.
    let _ = stream.set_nodelay(true);
    Framed::new(stream, codec())
}

pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(msg).expect("wire types always serialize"))
}

/// The frames that report a round of a node's work, in order: `events` reports, each event
/// written once, straight into its frame, cut before a frame passes half of [`MAX_FRAME`].
/// The events are written as a viewer reads them (`Event`, with its `seq` left at 0): the
/// events every call makes as compact rows, the rest as objects, so [`decode_report`] reads
/// them with the viewers' quick reader.
pub fn encode_events(events: &[shared::Event]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut buf = Vec::with_capacity(96 * events.len().min(4096) + EVENTS_HEAD.len());
    buf.extend_from_slice(EVENTS_HEAD);
    let mut in_frame = 0;
    for ev in events {
        if in_frame > 0 && buf.len() >= MAX_FRAME / 2 {
            buf.extend_from_slice(b"]}");
            frames.push(Bytes::from(std::mem::take(&mut buf)));
            buf.extend_from_slice(EVENTS_HEAD);
            in_frame = 0;
        }
        if in_frame > 0 {
            buf.push(b',');
        }
        if !crate::event_json::write_row(&mut buf, ev) {
            crate::event_json::write_event(&mut buf, ev);
        }
        in_frame += 1;
    }
    if in_frame > 0 {
        buf.extend_from_slice(b"]}");
        frames.push(Bytes::from(buf));
    }
    frames
}

pub async fn send<T: Serialize, S>(sink: &mut S, msg: &T) -> Result<(), FrameError>
where
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    sink.send(encode(msg)).await?;
    Ok(())
}

pub async fn recv<T: DeserializeOwned, S>(stream: &mut S) -> Result<T, FrameError>
where
    S: futures_util::Stream<Item = Result<bytes::BytesMut, std::io::Error>> + Unpin,
{
    match stream.next().await {
        None => Err(FrameError::Closed),
        Some(Err(e)) => Err(FrameError::Io(e)),
        Some(Ok(buf)) => Ok(serde_json::from_slice(&buf)?),
    }
}

/// Reads a node's report. A round's `events` report (the bulk of the traffic) is read straight
/// off its bytes by the viewers' quick reader, or else by serde in one pass (never buffered
/// whole to find its `type` first).
pub async fn recv_report<S>(stream: &mut S) -> Result<shared::NodeReport, FrameError>
where
    S: futures_util::Stream<Item = Result<bytes::BytesMut, std::io::Error>> + Unpin,
{
    match stream.next().await {
        None => Err(FrameError::Closed),
        Some(Err(e)) => Err(FrameError::Io(e)),
        Some(Ok(buf)) => Ok(decode_report(&buf)?),
    }
}

/// See [`recv_report`].
///
/// A round's `events` go through the viewers' quick reader (`shared::read_events_frame`); a
/// frame it is not sure of (a string with an escape, anything unusual) goes to serde, which
/// reads it the same way or says what is wrong with it and where. Serde reads it as a plain
/// struct ([`EventsBody`]) in one pass: as the tagged `NodeReport` it would first copy the
/// whole frame into a buffer to find its `type`, twice the time of the old compact form and
/// with no line or column in its errors.
pub fn decode_report(buf: &[u8]) -> Result<shared::NodeReport, serde_json::Error> {
    if !buf.starts_with(EVENTS_HEAD) {
        return serde_json::from_slice(buf);
    }
    let events = match std::str::from_utf8(buf)
        .ok()
        .and_then(shared::read_events_frame)
    {
        Some(events) => events,
        None => serde_json::from_slice::<EventsBody>(buf)?.events,
    };
    Ok(shared::NodeReport::Events { events })
}

/// How a round's `events` report begins, as [`encode_events`] writes it.
const EVENTS_HEAD: &[u8] = br#"{"type":"events","events":["#;

/// An `events` report read by serde (its `type` is known from [`EVENTS_HEAD`]).
#[derive(serde::Deserialize)]
struct EventsBody {
    events: Vec<shared::Event>,
}

/// Where a process records what it does, before doing it: the node's control connection to
/// the supervisor, or (for a clerk inside the supervisor) the bus itself.
pub(crate) trait Recorder {
    fn record(
        &mut self,
        kind: shared::EventKind,
    ) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

/// Records the send of `env` to `to`, then writes it. The one place that orders the two: if the
/// frame leaves, the log knows (a SIGKILL between them loses the message, never its record).
/// `Ok(false)`: the write failed (the peer is gone); `Err`: the record could not be made.
pub(crate) async fn send_recorded<R, S>(
    recorder: &mut R,
    sink: &mut S,
    env: &shared::Envelope,
    to: &str,
) -> anyhow::Result<bool>
where
    R: Recorder,
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    recorder
        .record(shared::EventKind::MsgSent {
            msg_id: env.msg_id,
            from: env.from.clone(),
            to: to.into(),
            msg: env.msg.clone(),
        })
        .await?;
    Ok(sink.send(encode(env)).await.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared::{Event, EventKind, NodeId, NodeReport};

    fn at(t_us: u64, kind: EventKind) -> Event {
        Event {
            seq: 0,
            t_us,
            node: NodeId::from("s1"),
            kind,
        }
    }

    fn armed(t_us: u64, lock_len: usize) -> Event {
        at(
            t_us,
            EventKind::Executed {
                req: shared::RequestId::new(1, t_us),
                op: shared::Op::Lock,
                lock: "l".repeat(lock_len),
                ok: true,
                held: true,
                duplicate: false,
                forwarded: false,
            },
        )
    }

    fn decode_all(frames: &[Bytes]) -> Vec<Event> {
        frames
            .iter()
            .flat_map(|f| {
                assert!(f.len() <= MAX_FRAME, "a frame over the limit");
                match decode_report(f).expect("decodes") {
                    NodeReport::Events { events } => events,
                    other => panic!("not an events report: {other:?}"),
                }
            })
            .collect()
    }

    /// Serde's own reading of a frame (the quick reader's fallback).
    fn slow(frame: &[u8]) -> Vec<Event> {
        match serde_json::from_slice::<NodeReport>(frame).unwrap() {
            NodeReport::Events { events } => events,
            other => panic!("not an events report: {other:?}"),
        }
    }

    #[test]
    fn a_round_is_one_frame_of_rows_and_reads_back_in_order() {
        let events: Vec<Event> = (1..=50).map(|t| armed(t, 3)).collect();
        let frames = encode_events(&events);
        assert_eq!(frames.len(), 1);
        let text = std::str::from_utf8(&frames[0]).unwrap();
        assert!(
            text.starts_with(r#"{"type":"events","events":[[0,1,"s1","X","#),
            "{text}"
        );
        // The quick reader takes it, and reads what serde reads.
        assert!(shared::read_events_frame(text).is_some());
        assert_eq!(decode_all(&frames), events);
        assert_eq!(slow(&frames[0]), events);
        assert!(
            encode_events(&[]).is_empty(),
            "an empty round writes nothing"
        );
    }

    #[test]
    fn a_huge_round_is_cut_into_frames_under_the_limit_keeping_the_order() {
        let events: Vec<Event> = (1..=40).map(|t| armed(t, 60_000)).collect();
        let frames = encode_events(&events);
        assert!(frames.len() > 1, "{} frames", frames.len());
        assert_eq!(decode_all(&frames), events);
    }

    #[test]
    fn events_without_a_row_go_as_objects_and_odd_names_through_serde() {
        let events = vec![
            armed(1, 2),
            at(
                2,
                EventKind::CrashArmed {
                    point: Some(shared::CrashPoint::AfterForward),
                    dying_ms: None,
                },
            ),
            at(
                3,
                EventKind::Executed {
                    req: shared::RequestId::new(2, 9),
                    op: shared::Op::Unlock,
                    lock: "a \"quoted\" \\ lock, ü\n".into(),
                    ok: false,
                    held: false,
                    duplicate: true,
                    forwarded: true,
                },
            ),
        ];
        let frames = encode_events(&events);
        let text = std::str::from_utf8(&frames[0]).unwrap();
        assert!(text.contains(r#"{"seq":0,"t_us":2,"node":"s1","type":"crash_armed""#));
        // The escaped name sends the whole frame to serde, which reads it all the same.
        assert!(shared::read_events_frame(text).is_none());
        assert_eq!(decode_all(&frames), events);
        // Without it, the quick reader reads the object too.
        let plain = encode_events(&events[..2]);
        assert!(shared::read_events_frame(std::str::from_utf8(&plain[0]).unwrap()).is_some());
        assert_eq!(decode_all(&plain), events[..2]);
    }

    #[test]
    fn other_reports_still_decode_and_garbage_is_an_error() {
        let ready = NodeReport::Applied { ticket: 7 };
        assert_eq!(decode_report(&encode(&ready)).unwrap(), ready);
        let single = br#"{"type":"event","t_us":5,"kind":{"type":"crash_armed"}}"#;
        assert!(matches!(
            decode_report(single).unwrap(),
            NodeReport::Event { t_us: 5, .. }
        ));
        for bad in [
            &br#"{"type":"events","events":[[1,{"X":[]}]]}"#[..],
            br#"{"type":"events","events":[[0,1,"s1","X",1]]}"#,
            br#"{"type":"events","events":[[0,1,"s1","Z",1,2,0,0,"a",0]]}"#,
            br#"{"type":"events","events":[{"seq":0,"t_us":1,"node":"s1"}]}"#,
            br#"{"type":"events","#,
            b"\xff\xfe",
        ] {
            assert!(
                decode_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A frame the quick reader leaves to serde is read in one pass, so a mistake in it is
    /// reported with its place (read as the tagged `NodeReport`, the frame was first buffered
    /// whole and the error had no line or column).
    #[test]
    fn a_bad_event_in_a_round_is_reported_with_its_place() {
        let frame = br#"{"type":"events","events":[[0,1,"s1","X",1,2,0,0,"a\"b",3],{"seq":0,"t_us":2,"node":"s1"}]}"#;
        let e = decode_report(frame).unwrap_err().to_string();
        assert!(e.contains("type") && e.contains("column"), "{e}");
        // The quick reader could not take it (the escape), and serde found the mistake.
        assert!(shared::read_events_frame(std::str::from_utf8(frame).unwrap()).is_none());
    }

    proptest! {
        /// Whatever a node's events hold (any lock name, tag or time), the supervisor reads
        /// back the same times and kinds, by the quick reader or by serde.
        #[test]
        fn any_round_of_hot_events_reads_back_the_same(
            text in any::<String>(),
            tag in proptest::option::of(any::<String>()),
            t_us in any::<u64>(),
        ) {
            let events: Vec<Event> = crate::event_json::tests::every_hot_kind(&text, tag)
                .into_iter()
                .map(|kind| at(t_us, kind))
                .collect();
            let frames = encode_events(&events);
            prop_assert_eq!(frames.len(), 1);
            prop_assert_eq!(&decode_all(&frames), &events);
            prop_assert_eq!(slow(&frames[0]), events);
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;
    use shared::NodeReport;

    /// docs/protocol.md shows a round's `events` report exactly as a node (s1) writes it.
    #[test]
    fn the_documented_round_is_what_a_node_writes() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
                .expect("docs/protocol.md is readable");
        let mut lines = doc.lines();
        let mut rounds = Vec::new();
        while let Some(line) = lines.next() {
            if line.trim() == "```json node_report" {
                let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
                let body = body.join("\n");
                if body.starts_with(r#"{"type":"events""#) {
                    rounds.push(body);
                }
            }
        }
        assert_eq!(rounds.len(), 1, "one example of a round");
        let NodeReport::Events { events } = decode_report(rounds[0].as_bytes()).unwrap() else {
            panic!("not an events report");
        };
        assert!(
            events.len() >= 4,
            "the example shows a round, not one event"
        );
        let frames = encode_events(&events);
        assert_eq!(std::str::from_utf8(&frames[0]).unwrap(), rounds[0]);
    }
}
