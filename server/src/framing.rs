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
