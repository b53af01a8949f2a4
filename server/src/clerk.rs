//! The lock clients ("clerks") of Lab 1, living inside `pbscope serve`.
//!
//! A clerk makes one call at a time. It sends the request to the primary; if the primary refuses
//! the connection, closes it, or does not answer in time, the clerk re-sends the *same* request
//! (same id) to the backup and stays with it. It learns of failures only the way a real client
//! would, from its own sockets: it never asks the supervisor who is alive. Its own inbox applies
//! the slow-motion delay to replies, like a node's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use shared::{client_node, Envelope, EventKind, Msg, NodeName, Op, RequestId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::framing::{self, FramedConn};
use crate::oserror;

/// A server as a clerk knows it: a name and an address, in failover order.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    pub id: NodeName,
    pub addr: std::net::SocketAddr,
}

/// One call asked of a clerk.
#[derive(Debug)]
pub struct Call {
    pub op: Op,
    pub lock: String,
    pub tag: Option<String>,
    /// Told the answer (`Some(ok)`) or that the call was given up (`None`), for tools.
    pub done: Option<tokio::sync::oneshot::Sender<Option<bool>>>,
}

/// Answer to a call, as seen by the clerk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered(bool),
    GaveUp,
}

/// The handle the supervisor keeps for a clerk.
#[derive(Debug)]
pub struct ClerkHandle {
    pub id: u32,
    busy: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Call>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a call could not be handed to a clerk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("client {0} already has a call outstanding (one at a time, as in Lab 1)")]
    Busy(u32),
    #[error("client {0} is shutting down")]
    Gone(u32),
}

impl ClerkHandle {
    /// Hands a call to the clerk unless it is busy with another.
    pub fn submit(&self, call: Call) -> Result<(), SubmitError> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(SubmitError::Busy(self.id));
        }
        self.tx.send(call).map_err(|_| {
            self.busy.store(false, Ordering::Release);
            SubmitError::Gone(self.id)
        })
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

impl Drop for ClerkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Timing of a clerk; scaled by the slow-motion delay at each call.
#[derive(Debug, Clone)]
pub struct ClerkTiming {
    /// Wait for a reply before calling the server dead (plus 4 slow-motion delays: the request,
    /// forward, ack and reply each wait one out).
    pub reply_timeout: Duration,
    pub connect_timeout: Duration,
    /// Give the call up when no server answered for this long.
    pub give_up_after: Duration,
    /// Pause between retries once there is no other server to turn to.
    pub retry_pause: Duration,
}

impl Default for ClerkTiming {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_millis(1000),
            give_up_after: Duration::from_secs(8),
            retry_pause: Duration::from_millis(250),
        }
    }
}

struct Clerk {
    id: u32,
    name: NodeName,
    servers: Vec<ServerAddr>,
    current: usize,
    conns: Vec<Option<FramedConn>>,
    seq: u64,
    bus: Arc<Bus>,
    origin: u64,
    next_msg: u64,
    slow_motion_ms: Arc<AtomicU64>,
    timing: ClerkTiming,
}

/// Starts clerk `id` talking to `servers` (primary first).
pub fn spawn(
    id: u32,
    servers: Vec<ServerAddr>,
    bus: Arc<Bus>,
    origin: u64,
    slow_motion_ms: Arc<AtomicU64>,
    timing: ClerkTiming,
) -> ClerkHandle {
    let (tx, mut rx) = mpsc::unbounded_channel::<Call>();
    let busy = Arc::new(AtomicBool::new(false));
    let mut clerk = Clerk {
        id,
        name: client_node(id),
        conns: servers.iter().map(|_| None).collect(),
        servers,
        current: 0,
        seq: 0,
        bus,
        origin,
        next_msg: 0,
        slow_motion_ms,
        timing,
    };
    let busy_task = busy.clone();
    let task = tokio::spawn(async move {
        while let Some(call) = rx.recv().await {
            let outcome = clerk.call(call.op, &call.lock, call.tag).await;
            busy_task.store(false, Ordering::Release);
            if let Some(done) = call.done {
                let _ = done.send(match outcome {
                    Outcome::Answered(ok) => Some(ok),
                    Outcome::GaveUp => None,
                });
            }
        }
    });
    ClerkHandle { id, busy, tx, task }
}

/// How one attempt at one server ended without an answer.
#[derive(Debug)]
enum AttemptError {
    Refused(String),
    /// The clerk's own side ran short (descriptors, ports, memory): the server told us nothing.
    Local(String),
    Closed,
    Timeout,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Refused(e) => write!(f, "connection failed: {e}"),
            AttemptError::Local(e) => write!(f, "local: {e}; not the server's fault"),
            AttemptError::Closed => f.write_str("connection closed"),
            AttemptError::Timeout => f.write_str("no reply in time"),
        }
    }
}

impl Clerk {
    fn delay(&self) -> Duration {
        Duration::from_millis(self.slow_motion_ms.load(Ordering::Relaxed))
    }

    async fn call(&mut self, op: Op, lock: &str, tag: Option<String>) -> Outcome {
        self.seq += 1;
        let req = RequestId {
            client: self.id,
            seq: self.seq,
        };
        let started = Instant::now();
        let t0 = self.bus.clock().now_us();
        self.bus.publish_at(
            &self.name,
            t0,
            EventKind::OpInvoked {
                client: self.id,
                req,
                op,
                lock: lock.to_owned(),
                tag: tag.clone(),
                server: self.servers[self.current].id.clone(),
            },
        );
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.attempt(req, op, lock).await {
                Ok(ok) => {
                    let now = self.bus.clock().now_us();
                    self.bus.publish_at(
                        &self.name,
                        now,
                        EventKind::OpCompleted {
                            client: self.id,
                            op,
                            lock: lock.to_owned(),
                            tag,
                            ok,
                            req,
                            server: self.servers[self.current].id.clone(),
                            latency_us: now.saturating_sub(t0),
                            attempts,
                        },
                    );
                    return Outcome::Answered(ok);
                }
                Err(e) => {
                    self.conns[self.current] = None;
                    let failed = self.servers[self.current].id.clone();
                    if started.elapsed() >= self.timing.give_up_after + self.delay() * 8 {
                        self.bus.publish(
                            &self.name,
                            EventKind::OpFailed {
                                client: self.id,
                                op,
                                lock: lock.to_owned(),
                                tag,
                                req,
                                reason: format!("no server answered ({failed}: {e})"),
                            },
                        );
                        return Outcome::GaveUp;
                    }
                    // Lab 1: turn to the backup and stay with it; with nobody further, retry it.
                    // A shortage on our side says nothing about the server: stay, pause, retry.
                    let stay = matches!(e, AttemptError::Local(_))
                        || self.current + 1 >= self.servers.len();
                    if !stay {
                        self.current += 1;
                    }
                    self.bus.publish(
                        &self.name,
                        EventKind::RpcFailed {
                            client: self.id,
                            req,
                            server: failed,
                            reason: e.to_string(),
                            retry_to: self.servers[self.current].id.clone(),
                        },
                    );
                    if stay {
                        tokio::time::sleep(self.timing.retry_pause).await;
                    }
                }
            }
        }
    }

    /// Sends `req` to the current server once and waits for its reply.
    async fn attempt(&mut self, req: RequestId, op: Op, lock: &str) -> Result<bool, AttemptError> {
        let server = self.servers[self.current].clone();
        let slow = self.delay();
        let conn = match self.conns[self.current].take() {
            Some(c) => c,
            None => {
                match tokio::time::timeout(
                    self.timing.connect_timeout,
                    TcpStream::connect(server.addr),
                )
                .await
                {
                    Ok(Ok(s)) => framing::framed(s),
                    Ok(Err(e)) if oserror::is_local_resource_error(&e) => {
                        return Err(AttemptError::Local(e.to_string()))
                    }
                    Ok(Err(e)) => return Err(AttemptError::Refused(e.to_string())),
                    Err(_) => return Err(AttemptError::Timeout),
                }
            }
        };
        let mut conn = conn;
        self.next_msg += 1;
        let msg_id = (self.origin << 32) | self.next_msg;
        let env = Envelope {
            msg_id,
            from: self.name.clone(),
            msg: Msg::Request {
                req,
                op,
                lock: lock.to_owned(),
            },
        };
        // Recorded before it leaves: if it leaves, the log knows.
        self.bus.publish(
            &self.name,
            EventKind::MsgSent {
                msg_id,
                from: self.name.clone(),
                to: server.id.clone(),
                msg: env.msg.clone(),
            },
        );
        if conn.send(framing::encode(&env)).await.is_err() {
            return Err(AttemptError::Closed);
        }
        let deadline = Instant::now() + self.timing.reply_timeout + slow * 4;
        loop {
            let frame = tokio::time::timeout_at(deadline, framing::recv::<Envelope, _>(&mut conn));
            let reply = match frame.await {
                Err(_) => return Err(AttemptError::Timeout),
                Ok(Err(_)) => return Err(AttemptError::Closed),
                Ok(Ok(reply)) => reply,
            };
            // The wire: a reply, too, waits out the slow-motion delay before the clerk sees it.
            let delay = self.delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.bus.publish(
                &self.name,
                EventKind::MsgDelivered {
                    msg_id: reply.msg_id,
                    from: reply.from.clone(),
                    to: self.name.clone(),
                },
            );
            match reply.msg {
                Msg::Reply { req: r, ok } if r == req => {
                    self.conns[self.current] = Some(conn);
                    return Ok(ok);
                }
                // A late answer to an earlier call: delivered, and ignored.
                _ => continue,
            }
        }
    }
}
