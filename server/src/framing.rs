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

/// The frames that report `events` (one round of a node's work), in order: `events` reports,
/// each event serialised once, straight into its frame, cut before a frame passes half of
/// [`MAX_FRAME`].
pub fn encode_events(events: &[shared::TimedEvent]) -> Vec<Bytes> {
    const PREFIX: &[u8] = br#"{"type":"events","events":["#;
    let mut frames = Vec::new();
    let mut buf = Vec::with_capacity(128 * events.len().min(4096) + PREFIX.len());
    buf.extend_from_slice(PREFIX);
    let mut in_frame = 0;
    for ev in events {
        if in_frame > 0 && buf.len() >= MAX_FRAME / 2 {
            buf.extend_from_slice(b"]}");
            frames.push(Bytes::from(std::mem::take(&mut buf)));
            buf.extend_from_slice(PREFIX);
            in_frame = 0;
        }
        if in_frame > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, ev).expect("wire types always serialize");
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

/// Reads a node's report. A round's `events` report (the bulk of the traffic) is read in one
/// pass, without serde buffering the whole frame to find its `type` first.
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
pub fn decode_report(buf: &[u8]) -> Result<shared::NodeReport, serde_json::Error> {
    if buf.starts_with(br#"{"type":"events","#) {
        let body: shared::compact::EventsBody = serde_json::from_slice(buf)?;
        return Ok(shared::NodeReport::Events {
            events: body.events,
        });
    }
    serde_json::from_slice(buf)
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
    use shared::{EventKind, NodeReport, TimedEvent};

    fn armed(t_us: u64, lock_len: usize) -> TimedEvent {
        TimedEvent {
            t_us,
            kind: EventKind::Executed {
                req: shared::RequestId::new(1, t_us),
                op: shared::Op::Lock,
                lock: "l".repeat(lock_len),
                ok: true,
                held: true,
                duplicate: false,
                forwarded: false,
            },
        }
    }

    fn decode_all(frames: &[Bytes]) -> Vec<TimedEvent> {
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

    #[test]
    fn a_round_is_one_frame_and_reads_back_in_order() {
        let events: Vec<TimedEvent> = (1..=50).map(|t| armed(t, 3)).collect();
        let frames = encode_events(&events);
        assert_eq!(frames.len(), 1);
        assert_eq!(decode_all(&frames), events);
        // The fast path and serde's own reading of the report agree.
        let slow: NodeReport = serde_json::from_slice(&frames[0]).unwrap();
        assert_eq!(slow, NodeReport::Events { events });
        assert!(
            encode_events(&[]).is_empty(),
            "an empty round writes nothing"
        );
    }

    #[test]
    fn a_huge_round_is_cut_into_frames_under_the_limit_keeping_the_order() {
        let events: Vec<TimedEvent> = (1..=40).map(|t| armed(t, 60_000)).collect();
        let frames = encode_events(&events);
        assert!(frames.len() > 1, "{} frames", frames.len());
        assert_eq!(decode_all(&frames), events);
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
            br#"{"type":"events","#,
            b"\xff\xfe",
        ] {
            assert!(decode_report(bad).is_err());
        }
    }
}
