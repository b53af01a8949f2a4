//! The WebSocket gateway: one listener, one handler task per browser.
//!
//! A handler sends `hello` and a `snapshot`, then `select!`s over three things: the answers to
//! the viewer's commands, the bus's events (sent in batches), and shutdown. The viewer's frames
//! are read by a task of their own (`Reader`), so a viewer that reads slowly still has its
//! commands run at once. A viewer's commands run one after
//! the other, in the order sent, in a task of the viewer's own (its "command line"); answers
//! (`ack` or `error`) come back to the handler, so a slow command (a reset) never stalls that
//! viewer's events. A viewer that falls behind the bus gets a fresh snapshot.
//! Whatever a viewer sends, the worst it can cause is an `error` to itself, or, for a flood or
//! an oversized frame, the end of its own connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use shared::binary::FrameWriter;
use shared::{
    Command, Endpoint, ErrorCode, Hello, Limits, Probability, ServerMsg, COMMAND_TYPES,
    PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::bus::{join_events, join_rows, Form};
use crate::cluster::Cluster;
use crate::http::{self, AccessPolicy, Site};
use crate::oserror::AcceptPause;
use crate::runs;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub access: AccessPolicy,
    /// Serve the built page from here on plain GETs.
    pub dist: Option<PathBuf>,
    /// Largest command a viewer may send.
    pub max_message_bytes: usize,
    pub max_lock_name: usize,
    pub max_delay_ms: u64,
    /// Sustained rate; bursts up to twice this pass.
    pub commands_per_sec: u32,
    /// Most events in one `events` frame.
    pub max_batch: usize,
    /// A request head must arrive within this (and an idle keep-alive connection is closed
    /// after it): a client that trickles bytes cannot hold a connection open.
    pub header_read_timeout: Duration,
    /// HTTP connections served at once (see [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Longest `tag`: it is copied into every event of its call and every snapshot.
    pub max_tag_bytes: usize,
    /// Commands of one viewer waiting behind the one running.
    pub max_queued_commands: usize,
    /// Viewers connected at once; each holds a slot while connected.
    pub viewer_slots: Arc<ViewerSlots>,
}

/// HTTP connections served at once unless configured otherwise (a connection upgraded to a
/// WebSocket leaves this count for the viewers' own, [`DEFAULT_MAX_VIEWERS`]). One over it gets
/// `503` and is closed, so idle or slow connections cannot use up the supervisor's descriptors,
/// which its clerks and nodes need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// WebSocket viewers connected at once unless configured otherwise: a classroom's worth of tabs.
pub const DEFAULT_MAX_VIEWERS: usize = 32;

/// Largest `delay_ms`, `jitter_ms` or `dying_ms` a fault command may ask for.
pub const MAX_FAULT_DELAY_MS: u64 = 60_000;

/// The viewers a gateway serves at once.
#[derive(Debug)]
pub struct ViewerSlots {
    max: usize,
    free: Semaphore,
}

impl ViewerSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            free: Semaphore::new(max),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            access: AccessPolicy::default(),
            dist: None,
            max_message_bytes: 64 * 1024,
            max_lock_name: 64,
            max_delay_ms: 10_000,
            commands_per_sec: 200,
            max_batch: 2_000,
            header_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_tag_bytes: 128,
            max_queued_commands: 512,
            viewer_slots: ViewerSlots::new(DEFAULT_MAX_VIEWERS),
        }
    }
}

/// Frames above this are refused by the WebSocket layer itself (the connection ends with 1009);
/// between `max_message_bytes` and this, the viewer gets a `too_large` error and stays.
const HARD_FRAME_LIMIT: usize = 1 << 20;

/// Largest request head hyper buffers.
const MAX_HEAD: usize = 16 * 1024;

/// Kernel send buffer of a viewer's socket.
const VIEWER_SNDBUF: usize = 256 * 1024;

/// A viewer over its rate budget this many times in a row is cut off.
const FLOOD_CUTOFF: u32 = 1_000;

/// Events frames to one viewer are at least this far apart unless they are large (a page
/// draws at 60 fps; a frame per event cost the gateway and the viewer more than the events).
const FRAME_EVERY: Duration = Duration::from_millis(4);

/// A batch this large goes out at once, whenever the last frame left.
const COALESCE_BELOW: usize = 256;

/// Takes what the bus has ready for this viewer, up to `max` events in the batch. False when
/// the viewer fell behind the bus's buffer: events after the batch are gone, and it needs a
/// snapshot. (`try_recv` says so once and moves on past the gap: found by review, a viewer
/// under a load lost events without a snapshot when the lag showed here.)
fn drain(
    rx: &mut broadcast::Receiver<Arc<crate::bus::Logged>>,
    batch: &mut Vec<Arc<crate::bus::Logged>>,
    max: usize,
) -> bool {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(broadcast::error::TryRecvError::Lagged(_)) => return false,
            Err(_) => break,
        }
    }
    true
}

/// Accepts connections until `shutdown`.
pub async fn run(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    cfg: GatewayConfig,
    shutdown: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let site = Arc::new(Site::new(cfg.dist.as_deref()));
    let open = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let exports = Arc::new(Semaphore::new(MAX_RUN_EXPORTS));
    let mut pause = AcceptPause::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors the connection stays queued and `accept` fails again at
                // once: pause rather than spin.
                let resume = pause.failed(Instant::now(), &e, "gateway");
                tokio::select! {
                    _ = tokio::time::sleep_until(resume) => {}
                    _ = shutdown.cancelled() => return,
                }
                pause.resume();
                continue;
            }
        };
        pause.accepted("gateway");
        // Over the cap a connection still gets one request, read within a short deadline: a
        // WebSocket upgrade goes on to the viewers' own limit (idle connections must not lock
        // viewers out), anything else is answered 503 and the connection closed.
        let slot = open.clone().try_acquire_owned().ok();
        let conn = Connection {
            peer,
            cluster: cluster.clone(),
            cfg: cfg.clone(),
            site: site.clone(),
            exports: exports.clone(),
            shutdown: shutdown.clone(),
            over_capacity: slot.is_none(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(stream, conn).await {
                tracing::debug!("connection from {peer} ended: {e:#}");
            }
        });
    }
}

/// How long a connection over the cap has to send its request head.
const OVER_CAPACITY_HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// What one accepted connection needs to answer its requests.
#[derive(Clone)]
struct Connection {
    peer: SocketAddr,
    cluster: Arc<Cluster>,
    cfg: Arc<GatewayConfig>,
    site: Arc<Site>,
    /// Run files written at once (see [`MAX_RUN_EXPORTS`]).
    exports: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// Accepted beyond `max_connections`: one request, WebSocket upgrades only.
    over_capacity: bool,
}

/// Run files (`/run.jsonl`, `/run.shiviz`) written at once. Each takes a blocking thread and
/// up to a few tens of megabytes for a full ring; more requests meanwhile get `503`, so
/// downloads in a loop cannot take the cores the cluster's processes run on.
pub const MAX_RUN_EXPORTS: usize = 2;

/// Runs HTTP/1.1 on one connection (keep-alive, a deadline for each request head) until it
/// closes, becomes a WebSocket, or the gateway shuts down.
async fn serve_connection(stream: TcpStream, conn: Connection) -> Result<(), hyper::Error> {
    // A fixed kernel send buffer (no autotuning to megabytes): a viewer that stops reading
    // blocks its own handler soon, falls behind the bus, and is resynchronised with a snapshot
    // instead of being fed stale events for seconds. Set before hyper owns the socket.
    let _ =
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &VIEWER_SNDBUF);
    let shutdown = conn.shutdown.clone();
    let over_capacity = conn.over_capacity;
    let header_read_timeout = if over_capacity {
        conn.cfg.header_read_timeout.min(OVER_CAPACITY_HEAD_TIMEOUT)
    } else {
        conn.cfg.header_read_timeout
    };
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.answer(req).await) }
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(http);
    tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    }
}

impl Connection {
    /// One request: a WebSocket upgrade (checked, then handed to a [`Viewer`]) or a file.
    async fn answer(self, req: Request<Incoming>) -> Response<http::Body> {
        if !http::wants_websocket(&req) {
            if self.over_capacity {
                let body = format!(
                    "pbscope serves {} connections at once; try again shortly\n",
                    self.cfg.max_connections
                );
                let mut refused = http::text(StatusCode::SERVICE_UNAVAILABLE, body);
                // One request only: the connection ends with this answer.
                refused.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
                return refused;
            }
            if let Some(format) = runs::Format::from_path(req.uri().path()) {
                return self.run_file(&req, format).await;
            }
            return self.site.respond(req).await;
        }
        if req.uri().path() != "/ws" {
            return http::text(StatusCode::NOT_FOUND, "the WebSocket is at /ws\n");
        }
        let peer = self.peer;
        if let Err(reason) = self.cfg.access.check(req.headers()) {
            tracing::warn!("refused WebSocket from {peer}: {reason}");
            return http::text(StatusCode::FORBIDDEN, format!("{reason}\n"));
        }
        let accept = match http::websocket_accept(&req) {
            Ok(a) => a,
            Err(reason) => return http::text(StatusCode::BAD_REQUEST, format!("{reason}\n")),
        };
        let ws_cfg = WebSocketConfig::default()
            .max_message_size(Some(HARD_FRAME_LIMIT))
            .max_frame_size(Some(HARD_FRAME_LIMIT));
        // The socket changes hands once the 101 below is written; the viewer runs on its own.
        tokio::spawn(async move {
            let viewer = async {
                let upgraded = hyper::upgrade::on(req).await?;
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_cfg),
                )
                .await;
                Viewer::new(self.cluster, self.cfg)
                    .run(ws, self.shutdown)
                    .await
            };
            if let Err(e) = viewer.await {
                tracing::debug!("viewer at {peer} ended: {e:#}");
            }
        });
        http::switching_protocols(accept)
    }
}

impl Connection {
    /// `GET /run.jsonl` or `/run.shiviz`: the run the bus holds, under the same Host/Origin
    /// rules as the WebSocket (the log names every process and lock of the run).
    async fn run_file(
        &self,
        req: &Request<Incoming>,
        format: runs::Format,
    ) -> Response<http::Body> {
        if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
            return http::get_and_head_only();
        }
        if let Err(reason) = self.cfg.access.check(req.headers()) {
            tracing::warn!("refused {} to {}: {reason}", req.uri().path(), self.peer);
            return http::text(StatusCode::FORBIDDEN, format!("{reason}\n"));
        }
        let Ok(permit) = self.exports.clone().try_acquire_owned() else {
            return http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{MAX_RUN_EXPORTS} run files are being written already; try again shortly\n"
                ),
            );
        };
        let bus = self.cluster.bus();
        let run = bus.clock().epoch_ns();
        let log = bus.run_log();
        let variant = self.cluster.variant().map(|v| v.name());
        let written = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            format.write(run, variant, &log)
        })
        .await;
        match written {
            Ok(body) => http::download(format.content_type(), &format.file_name(run), body),
            Err(e) => {
                tracing::error!("writing {} failed: {e}", req.uri().path());
                http::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the run file could not be written\n",
                )
            }
        }
    }
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
/// The viewer's socket, halved: the handler writes, the viewer's reader ([`Reader`]) reads.
type WsSink = futures_util::stream::SplitSink<Ws, Message>;
type WsStream = futures_util::stream::SplitStream<Ws>;

/// Token bucket for one viewer's commands.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    per_sec: f64,
    last: Instant,
    refused_in_a_row: u32,
}

impl RateLimit {
    fn new(per_sec: u32) -> Self {
        Self {
            tokens: per_sec as f64 * 2.0,
            per_sec: per_sec as f64,
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.per_sec * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

/// What the viewer's command line hands back to its handler.
#[derive(Debug)]
enum Answer {
    /// Send this to the viewer.
    Msg(ServerMsg),
    /// Send the viewer a fresh snapshot (a `snapshot` command, in its turn).
    Snapshot,
    /// The viewer's `detail` setting, in its turn: set it, then send the ack.
    Detail { load_sample: u32, ack: ServerMsg },
    /// The viewer's `compact` setting, in its turn: set it, then send the ack.
    Compact { form: Form, ack: ServerMsg },
    /// From the reader: close the connection with this frame (a flood, an oversized frame).
    Close(CloseFrame),
}

/// One browser's session.
struct Viewer {
    cluster: Arc<Cluster>,
    cfg: Arc<GatewayConfig>,
    /// The viewer's command line: commands run one at a time, in the order sent.
    commands: mpsc::Sender<Command>,
    answers_tx: mpsc::UnboundedSender<Answer>,
    answers: mpsc::UnboundedReceiver<Answer>,
    line: tokio::task::JoinHandle<()>,
    /// The task reading the viewer's frames, once the session runs.
    reader: Option<tokio::task::AbortHandle>,
    /// Last event seq this viewer was sent.
    seen: u64,
    /// This viewer gets the events of one load call in this many (`detail`; 1: every event).
    load_sample: u32,
    /// When the last events frame left.
    last_frame: Instant,
    /// Names of binary rows this connection has been sent (`shared::binary`).
    names_sent: usize,
    /// The form this viewer reads events in (objects until it sends `compact`): while it reads
    /// objects the bus writes every event's object as it publishes it.
    form: crate::bus::ViewerForm,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        // Commands still waiting die with their viewer; the one running finishes on its own
        // (a reset half done would harm the cluster).
        self.line.abort();
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

/// Reads a viewer's frames in a task of its own, and queues its commands on its command line.
/// The handler writes while this reads: when a viewer reads slowly (a page catching up on a
/// busy machine, a script that never reads), the handler waits for its socket, and a command
/// read only between two writes waited with it. Found by review (a `crash` never ran) and by a
/// browser test under load (a click on Crash that did not crash). Errors and the end of the
/// connection go to the handler as [`Answer`]s, in the order they happen.
struct Reader {
    cluster: Arc<Cluster>,
    cfg: Arc<GatewayConfig>,
    commands: mpsc::Sender<Command>,
    answers: mpsc::UnboundedSender<Answer>,
    rate: RateLimit,
}

impl Reader {
    async fn run(mut self, mut stream: WsStream) {
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(text)) => Some(text),
                Ok(Message::Binary(_)) => None,
                Ok(Message::Close(_)) => return,
                Ok(_) => continue,
                Err(tungstenite::Error::Capacity(e)) => {
                    // Found by review: "frame too large (Message too long: 1100036 >
                    // 1048576); the limit is 65536 bytes" named two limits and not which one
                    // ended the connection.
                    let msg = format!(
                        "a message over {HARD_FRAME_LIMIT} bytes closes the connection ({e}); a command may be at most {} bytes",
                        self.cfg.max_message_bytes
                    );
                    self.say(error(ErrorCode::TooLarge, msg, None));
                    let _ = self.answers.send(Answer::Close(CloseFrame {
                        code: CloseCode::Size,
                        reason: "frame too large".into(),
                    }));
                    return;
                }
                Err(_) => return,
            };
            if !self.on_frame(text.as_ref().map(|t| t.as_str())) {
                return;
            }
        }
    }

    fn say(&self, msg: ServerMsg) {
        let _ = self.answers.send(Answer::Msg(msg));
    }

    /// Handles one data frame (`None`: a binary one). Every frame counts against the viewer's
    /// rate, whatever it holds. Returns false when the viewer must be cut off.
    fn on_frame(&mut self, text: Option<&str>) -> bool {
        if !self.rate.allow() {
            if self.rate.refused_in_a_row >= FLOOD_CUTOFF {
                let _ = self.answers.send(Answer::Close(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "too many commands".into(),
                }));
                return false;
            }
            let msg = format!(
                "more than {} commands per second; this one was not run",
                self.cfg.commands_per_sec
            );
            let tag = text.and_then(|t| tag_of(t, &self.cfg));
            self.say(error(ErrorCode::RateLimited, msg, tag));
            return true;
        }
        let Some(text) = text else {
            self.say(error(
                ErrorCode::BadJson,
                "binary frames are not accepted; send JSON text".into(),
                None,
            ));
            return true;
        };
        let cmd = match parse_command(text, &self.cfg, self.cluster.max_client()) {
            Ok(c) => c,
            Err(e) => {
                self.say(e);
                return true;
            }
        };
        let tag = cmd.tag().map(str::to_owned);
        // Every command, `detail` too, waits its turn (answered in the order sent).
        if self.commands.try_send(cmd).is_err() {
            let msg = format!(
                "{} commands are waiting for the ones before them to finish; this one was not run",
                self.cfg.max_queued_commands
            );
            self.say(error(ErrorCode::QueueFull, msg, tag));
        }
        true
    }
}

/// Runs a viewer's commands in the order they came, each to its end before the next.
async fn command_line(
    cluster: Arc<Cluster>,
    mut commands: mpsc::Receiver<Command>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    while let Some(cmd) = commands.recv().await {
        let answer = if let Command::Snapshot { .. } = cmd {
            Answer::Snapshot
        } else if let Command::Detail { load_sample, tag } = cmd {
            Answer::Detail {
                load_sample,
                ack: ServerMsg::Ack {
                    command: "detail".into(),
                    tag,
                    detail: detail_words(load_sample),
                },
            }
        } else if let Command::Compact { on, binary, tag } = cmd {
            Answer::Compact {
                form: form_of(on, binary),
                ack: ServerMsg::Ack {
                    command: "compact".into(),
                    tag,
                    detail: compact_words(on, binary),
                },
            }
        } else {
            // In a task of its own so that a viewer leaving mid-command does not cut it short.
            let cluster = cluster.clone();
            match tokio::spawn(async move { execute(&cluster, cmd).await }).await {
                Ok(msg) => Answer::Msg(msg),
                Err(e) => Answer::Msg(error(
                    ErrorCode::Unavailable,
                    format!("the command failed inside the server: {e}"),
                    None,
                )),
            }
        };
        if answers.send(answer).is_err() {
            return;
        }
    }
}

impl Viewer {
    fn new(cluster: Arc<Cluster>, cfg: Arc<GatewayConfig>) -> Self {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::channel(cfg.max_queued_commands.max(1));
        let line = tokio::spawn(command_line(
            cluster.clone(),
            commands_rx,
            answers_tx.clone(),
        ));
        let form = cluster.bus().viewer_form(Form::Objects);
        Self {
            cluster,
            cfg,
            commands,
            answers_tx,
            answers,
            line,
            reader: None,
            seen: 0,
            load_sample: 1,
            last_frame: Instant::now(),
            names_sent: 0,
            form,
        }
    }

    fn hello(&self) -> ServerMsg {
        let bus = self.cluster.bus().config();
        ServerMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            server: format!("pbscope {}", env!("CARGO_PKG_VERSION")),
            run: self.cluster.bus().clock().epoch_ns(),
            variant: self.cluster.variant().map(|v| v.name().to_owned()),
            limits: Limits {
                max_message_bytes: self.cfg.max_message_bytes as u64,
                max_client: self.cluster.max_client(),
                max_lock_name: self.cfg.max_lock_name as u32,
                max_delay_ms: self.cfg.max_delay_ms,
                commands_per_sec: self.cfg.commands_per_sec,
                history: bus.history as u64,
                max_tag_bytes: self.cfg.max_tag_bytes as u32,
                max_locks: self.cluster.max_locks() as u32,
                max_viewers: self.cfg.viewer_slots.max() as u32,
                max_fault_delay_ms: MAX_FAULT_DELAY_MS,
            },
        })
    }

    async fn send_snapshot(
        &mut self,
        ws: &mut WsSink,
    ) -> anyhow::Result<broadcast::Receiver<Arc<crate::bus::Logged>>> {
        // Writing up to `snapshot_events` objects (made from their rows, for the events the bus
        // kept as rows only) takes milliseconds: on a blocking thread, not on a worker whose
        // other tasks (the clerks, the nodes' reports) would wait meanwhile.
        let bus = self.cluster.bus().clone();
        let (seen, sample) = (self.seen, self.load_sample);
        let sub = tokio::task::spawn_blocking(move || bus.subscribe_sampled(seen, sample)).await?;
        self.seen = sub.last_seq;
        ws.send(Message::text(sub.snapshot)).await?;
        Ok(sub.rx)
    }

    async fn run(mut self, mut ws: Ws, shutdown: CancellationToken) -> anyhow::Result<()> {
        let slots = self.cfg.viewer_slots.clone();
        let Ok(_slot) = slots.free.try_acquire() else {
            let msg = format!(
                "{} viewers are connected already, the most this server takes; close one and retry",
                slots.max()
            );
            let _ = ws
                .send(json_msg(&error(ErrorCode::TooManyViewers, msg, None)))
                .await;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Again,
                    reason: "too many viewers".into(),
                }))
                .await;
            return Ok(());
        };
        let (mut ws, stream) = ws.split();
        ws.send(json_msg(&self.hello())).await?;
        let mut rx = self.send_snapshot(&mut ws).await?;
        let reader = Reader {
            cluster: self.cluster.clone(),
            cfg: self.cfg.clone(),
            commands: self.commands.clone(),
            answers: self.answers_tx.clone(),
            rate: RateLimit::new(self.cfg.commands_per_sec),
        };
        let mut reading = tokio::spawn(reader.run(stream));
        self.reader = Some(reading.abort_handle());
        loop {
            tokio::select! {
                _ = &mut reading => {
                    // The viewer closed, or was cut off: what the reader left to say goes first.
                    while let Ok(answer) = self.answers.try_recv() {
                        if let Answer::Close(frame) = answer {
                            let _ = ws.send(Message::Close(Some(frame))).await;
                            return Ok(());
                        }
                        if let Answer::Msg(m) = answer {
                            let _ = ws.send(json_msg(&m)).await;
                        }
                    }
                    return Ok(());
                }
                ev = rx.recv() => match ev {
                    Ok(first) => {
                        let mut batch = vec![first];
                        let mut kept_up = drain(&mut rx, &mut batch, self.cfg.max_batch);
                        // A trickle of events is gathered into frames at most every
                        // FRAME_EVERY: a frame per event made the viewer cost more than the
                        // events (the page draws at 60 fps anyway).
                        if kept_up && batch.len() < COALESCE_BELOW {
                            let due = self.last_frame + FRAME_EVERY;
                            if due > Instant::now() {
                                tokio::time::sleep_until(due).await;
                                kept_up = drain(&mut rx, &mut batch, self.cfg.max_batch);
                            }
                        }
                        if !kept_up {
                            // Behind the bus's buffer: what was taken is dropped with the
                            // gap after it, and the snapshot counts both as missed.
                            rx = self.send_snapshot(&mut ws).await?;
                            continue;
                        }
                        self.last_frame = Instant::now();
                        self.seen = batch.last().map_or(self.seen, |l| l.seq);
                        if self.load_sample > 1 {
                            let every = self.load_sample;
                            batch.retain(|l| l.load.sampled(every));
                        }
                        if !batch.is_empty() && self.form.form() == Form::Binary {
                            // About 16 bytes a row (docs/protocol.md, "Events in binary").
                            let new = self.cluster.bus().names_since(self.names_sent);
                            let mut frame =
                                FrameWriter::new(self.names_sent, &new, 16 * batch.len());
                            self.names_sent += new.len();
                            for l in &batch {
                                l.write_binary(&mut frame);
                            }
                            ws.send(Message::binary(frame.finish())).await?;
                        } else if !batch.is_empty() {
                            // Sized from the first event as this viewer gets it (a row is a
                            // third of the object).
                            let compact = self.form.form() == Form::Rows;
                            let first = batch[0].len_hint(compact);
                            let mut body = String::with_capacity(first * batch.len() + 32);
                            body.push_str("{\"type\":\"events\",\"events\":[");
                            if compact {
                                join_rows(&mut body, batch.iter());
                            } else {
                                join_events(&mut body, batch.iter());
                            }
                            body.push_str("]}");
                            ws.send(Message::text(body)).await?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        rx = self.send_snapshot(&mut ws).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                Some(answer) = self.answers.recv() => match answer {
                    Answer::Msg(m) => ws.send(json_msg(&m)).await?,
                    Answer::Snapshot => rx = self.send_snapshot(&mut ws).await?,
                    Answer::Detail { load_sample, ack } => {
                        // In force from the next batch of events.
                        self.load_sample = load_sample;
                        ws.send(json_msg(&ack)).await?;
                    }
                    Answer::Compact { form, ack } => {
                        // In force from the next frame, for the events already queued for this
                        // viewer too (the bus keeps a call's events as rows).
                        self.form = self.cluster.bus().viewer_form(form);
                        ws.send(json_msg(&ack)).await?;
                    }
                    Answer::Close(frame) => {
                        let _ = ws.send(Message::Close(Some(frame))).await;
                        return Ok(());
                    }
                },
                _ = shutdown.cancelled() => {
                    let _ = ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "pbscope is shutting down".into() }))).await;
                    return Ok(());
                }
            }
        }
    }
}

/// The answer to `detail`.
fn detail_words(load_sample: u32) -> String {
    if load_sample <= 1 {
        "every event is sent to this viewer".into()
    } else {
        format!("this viewer gets the events of one load call in {load_sample} ((client + seq) % {load_sample} == 0); everything else in full")
    }
}

/// The form `compact` asks for.
fn form_of(on: bool, binary: bool) -> Form {
    match (on, binary) {
        (false, _) => Form::Objects,
        (true, false) => Form::Rows,
        (true, true) => Form::Binary,
    }
}

/// The answer to `compact`.
fn compact_words(on: bool, binary: bool) -> String {
    match form_of(on, binary) {
        Form::Binary => "this viewer gets events frames as binary messages: the events every call makes as binary rows, every other event as an object (docs/protocol.md, \"Events in binary\")".into(),
        Form::Rows => "this viewer gets the events every call makes as compact rows, every other event as an object".into(),
        Form::Objects => "this viewer gets every event as an object".into(),
    }
}

fn json_msg(msg: &ServerMsg) -> Message {
    Message::text(serde_json::to_string(msg).expect("server messages serialize"))
}

fn error(code: ErrorCode, message: String, tag: Option<String>) -> ServerMsg {
    ServerMsg::Error { code, message, tag }
}

/// The `tag` of a command, to echo in its `error`: `None` when the frame is too large, not a
/// JSON object, or the tag is too long to echo.
fn tag_of(text: &str, cfg: &GatewayConfig) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tagged {
        tag: Option<String>,
    }
    if text.len() > cfg.max_message_bytes {
        return None;
    }
    serde_json::from_str::<Tagged>(text)
        .ok()?
        .tag
        .filter(|t| t.len() <= cfg.max_tag_bytes)
}

/// The keys a `load` command may have: `type`, then the settings and the tag.
const LOAD_FIELDS: [&str; 7] = [
    "type",
    "clients",
    "rate",
    "locks",
    "distribution",
    "unlock_share",
    "tag",
];

/// Turns a text frame into a command, or into the `error` that explains why not.
pub fn parse_command(
    text: &str,
    cfg: &GatewayConfig,
    max_client: u32,
) -> Result<Command, ServerMsg> {
    if text.len() > cfg.max_message_bytes {
        return Err(error(
            ErrorCode::TooLarge,
            format!(
                "message of {} bytes exceeds the limit of {} bytes",
                text.len(),
                cfg.max_message_bytes
            ),
            None,
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| error(ErrorCode::BadJson, format!("not valid JSON: {e}"), None))?;
    let Value::Object(obj) = &value else {
        return Err(error(
            ErrorCode::BadJson,
            "expected a JSON object with a \"type\" field".into(),
            None,
        ));
    };
    // A tag too long to echo is not echoed (the command is refused for it below).
    let tag = obj
        .get("tag")
        .and_then(Value::as_str)
        .filter(|t| t.len() <= cfg.max_tag_bytes)
        .map(str::to_owned);
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => {
            return Err(error(
                ErrorCode::UnknownType,
                "\"type\" must be a string".into(),
                tag,
            ))
        }
        None => {
            return Err(error(
                ErrorCode::UnknownType,
                "missing \"type\" field".into(),
                tag,
            ))
        }
    };
    if !COMMAND_TYPES.contains(&ty) {
        return Err(error(
            ErrorCode::UnknownType,
            format!(
                "unknown command type {ty:?}; known: {}",
                COMMAND_TYPES.join(", ")
            ),
            tag,
        ));
    }
    if ty == "load" {
        // The load's fields all have defaults, so a misspelt one would start a load other than
        // the one asked for without a word: name it instead.
        if let Some(unknown) = obj.keys().find(|k| !LOAD_FIELDS.contains(&k.as_str())) {
            // Named, but not echoed whole: a key can be as long as the frame.
            let name: String = unknown.chars().take(40).collect();
            let cut = if name.len() < unknown.len() {
                "…"
            } else {
                ""
            };
            return Err(error(
                ErrorCode::BadField,
                format!(
                    "load has no field \"{name}{cut}\"; its fields: {}",
                    LOAD_FIELDS[1..].join(", ")
                ),
                tag,
            ));
        }
    }
    let cmd: Command = serde_json::from_value(value.clone()).map_err(|e| {
        error(
            ErrorCode::BadField,
            format!("bad {ty} command: {e}"),
            tag.clone(),
        )
    })?;
    if let Some(t) = cmd.tag() {
        if t.len() > cfg.max_tag_bytes {
            return Err(error(
                ErrorCode::BadField,
                format!(
                    "tag is {} bytes; at most {} (it is copied into every event of its call)",
                    t.len(),
                    cfg.max_tag_bytes
                ),
                None,
            ));
        }
    }
    match &cmd {
        Command::Lock { client, lock, .. } | Command::Unlock { client, lock, .. } => {
            if *client > max_client {
                return Err(error(
                    ErrorCode::BadField,
                    format!("client must be 0..={max_client}, got {client}"),
                    tag,
                ));
            }
            if lock.is_empty() || lock.len() > cfg.max_lock_name {
                return Err(error(
                    ErrorCode::BadField,
                    format!("lock name must be 1 to {} bytes", cfg.max_lock_name),
                    tag,
                ));
            }
            if lock.chars().any(char::is_control) {
                return Err(error(
                    ErrorCode::BadField,
                    "lock name must not contain control characters".into(),
                    tag,
                ));
            }
        }
        Command::Load { settings, .. } => {
            if let Some(why) = settings.invalid() {
                return Err(error(ErrorCode::BadField, why, tag));
            }
        }
        Command::Detail { load_sample, .. }
            if *load_sample == 0 || *load_sample > shared::MAX_LOAD_SAMPLE =>
        {
            return Err(error(
                ErrorCode::BadField,
                format!(
                    "load_sample must be 1..={} (1: every event), got {load_sample}",
                    shared::MAX_LOAD_SAMPLE
                ),
                tag,
            ));
        }
        Command::Compact {
            on: false,
            binary: true,
            ..
        } => {
            return Err(error(
                ErrorCode::BadField,
                "binary needs on: true (binary frames carry compact rows)".into(),
                tag,
            ));
        }
        Command::SetSlowMotion { delay_ms, .. } if *delay_ms > cfg.max_delay_ms => {
            return Err(error(
                ErrorCode::BadField,
                format!("delay_ms must be 0..={}, got {delay_ms}", cfg.max_delay_ms),
                tag,
            ));
        }
        _ => {}
    }
    check_fault_fields(&cmd, max_client).map_err(|m| error(ErrorCode::BadField, m, tag))?;
    Ok(cmd)
}

/// Most groups, and most members of one group, a `partition` may name.
const MAX_PARTITION_NAMES: usize = 64;

/// The ranges of the fault commands' fields: what can be judged without the cluster.
fn check_fault_fields(cmd: &Command, max_client: u32) -> Result<(), String> {
    let delay = |name: &str, ms: u64| {
        if ms > MAX_FAULT_DELAY_MS {
            Err(format!("{name} must be 0..={MAX_FAULT_DELAY_MS}, got {ms}"))
        } else {
            Ok(())
        }
    };
    let chance = |name: &str, p: Probability| {
        if p.is_valid() {
            Ok(())
        } else {
            Err(format!("{name} is a probability: 0 to 1, got {}", p.0))
        }
    };
    let client = |c: u32| {
        if c > max_client {
            Err(format!("client must be 0..={max_client}, got {c}"))
        } else {
            Ok(())
        }
    };
    let end = |e: &Endpoint| match e {
        Endpoint::Client(c) => client(*c),
        _ => Ok(()),
    };
    match cmd {
        Command::SetLink {
            from,
            to,
            drop,
            duplicate,
            delay_ms,
            jitter_ms,
            ..
        } => {
            end(from)?;
            end(to)?;
            chance("drop", *drop)?;
            chance("duplicate", *duplicate)?;
            delay("delay_ms", *delay_ms)?;
            delay("jitter_ms", *jitter_ms)
        }
        Command::Cut { from, to, .. } => {
            end(from)?;
            end(to)
        }
        Command::Partition { groups, .. } => {
            if groups.len() > MAX_PARTITION_NAMES
                || groups.iter().any(|g| g.len() > MAX_PARTITION_NAMES)
            {
                return Err(format!(
                    "at most {MAX_PARTITION_NAMES} groups of at most {MAX_PARTITION_NAMES} names"
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for member in groups.iter().flatten() {
                end(member)?;
                if *member == Endpoint::Any {
                    return Err(
                        "\"*\" can't be in a group: name the processes of each group \
                                (a process in no group reaches everyone)"
                            .into(),
                    );
                }
                if !seen.insert(member.to_string()) {
                    return Err(format!(
                        "{member} is in two groups; a process is in one only"
                    ));
                }
            }
            Ok(())
        }
        Command::Crash {
            dying_ms: Some(ms), ..
        }
        | Command::CrashAt {
            dying_ms: Some(ms), ..
        } => delay("dying_ms", *ms),
        Command::CrashClient { client: c, .. } => client(*c),
        _ => Ok(()),
    }
}

/// Runs a command against the cluster and words the answer.
pub async fn execute(cluster: &Arc<Cluster>, cmd: Command) -> ServerMsg {
    let command = cmd.name().to_owned();
    let tag = cmd.tag().map(str::to_owned);
    let result = match cmd {
        Command::Lock { client, lock, tag } => {
            let detail = format!("client {client} calls Lock({lock})");
            cluster
                .submit(client, shared::Op::Lock, lock, tag, None)
                .await
                .map(|_| detail)
        }
        Command::Unlock { client, lock, tag } => {
            let detail = format!("client {client} calls Unlock({lock})");
            cluster
                .submit(client, shared::Op::Unlock, lock, tag, None)
                .await
                .map(|_| detail)
        }
        Command::Crash {
            node,
            dying_ms: None,
            ..
        } => cluster.crash(&node).await,
        Command::Crash {
            node,
            dying_ms: Some(ms),
            ..
        } => cluster.crash_dying(&node, ms).await,
        Command::CrashBeforeReply { node, .. } => cluster.crash_before_reply(&node).await,
        Command::CrashAt {
            node,
            point,
            dying_ms,
            ..
        } => cluster.crash_at(&node, point, dying_ms).await,
        Command::Pause { node, .. } => cluster.pause(&node).await,
        Command::Resume { node, .. } => cluster.resume(&node).await,
        Command::Restart { node, .. } => cluster.restart(&node).await,
        Command::CrashClient { client, .. } => cluster.crash_client(client).await,
        Command::Reset { .. } => cluster.reset().await,
        Command::SetSlowMotion { delay_ms, .. } => Ok(cluster.set_slow_motion(delay_ms).await),
        // The handler answers it with the snapshot itself; nothing to do here.
        Command::Snapshot { .. } => Ok("a snapshot follows".to_owned()),
        Command::SetLink {
            from,
            to,
            drop,
            duplicate,
            delay_ms,
            jitter_ms,
            ..
        } => {
            cluster
                .set_link(&from, &to, drop, duplicate, delay_ms, jitter_ms)
                .await
        }
        Command::Partition { groups, .. } => cluster.partition(&groups).await,
        Command::Cut { from, to, .. } => cluster.cut(&from, &to).await,
        Command::Heal { .. } => Ok(cluster.heal().await),
        Command::SetSeed { seed, .. } => Ok(cluster.set_seed(seed).await),
        Command::Step { on, .. } => Ok(cluster.step(on).await),
        Command::Deliver { msg_id, .. } => {
            cluster
                .step_message(msg_id, shared::StepAction::Deliver)
                .await
        }
        Command::DropMsg { msg_id, .. } => {
            cluster.step_message(msg_id, shared::StepAction::Drop).await
        }
        Command::Duplicate { msg_id, .. } => {
            cluster
                .step_message(msg_id, shared::StepAction::Duplicate)
                .await
        }
        Command::Load { settings, .. } => cluster.load().set(settings).await,
        Command::LoadStop { .. } => cluster.load().stop().await,
        // A viewer's own setting: `command_line` hands it to the viewer (`Answer::Detail`).
        Command::Detail { load_sample, .. } => Ok(detail_words(load_sample)),
        Command::Compact { on, binary, .. } => Ok(compact_words(on, binary)),
    };
    match result {
        Ok(detail) => ServerMsg::Ack {
            command,
            tag,
            detail,
        },
        Err(e) => error(e.code(), e.to_string(), tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        match parse_command(text, &GatewayConfig::default(), 100) {
            Err(ServerMsg::Error { code, .. }) => code,
            other => panic!("expected an error for {text}, got {other:?}"),
        }
    }

    #[test]
    fn bad_input_gets_a_precise_code() {
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"client":1}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"explode"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"lock","lock":"a"}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"type":"lock","client":-1,"lock":"a"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"lock","client":101,"lock":"a"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"lock","client":1,"lock":""}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"set_slow_motion","delay_ms":999999}"#),
            ErrorCode::BadField
        );
        let big = format!(
            r#"{{"type":"lock","client":1,"lock":"{}"}}"#,
            "a".repeat(70_000)
        );
        assert_eq!(code(&big), ErrorCode::TooLarge);
    }

    #[test]
    fn impossible_fault_fields_are_refused_before_the_cluster_sees_them() {
        let refused = [
            r#"{"type":"set_link","from":"s1","to":"s2","drop":1.5}"#,
            r#"{"type":"set_link","from":"s1","to":"s2","duplicate":-0.1}"#,
            r#"{"type":"set_link","from":"s1","to":"s2","delay_ms":-5}"#,
            r#"{"type":"set_link","from":"s1","to":"s2","delay_ms":60001}"#,
            r#"{"type":"set_link","from":"s1","to":"s2","jitter_ms":18446744073709551615}"#,
            r#"{"type":"set_link","from":"c101","to":"s2"}"#,
            r#"{"type":"set_link","from":"s1"}"#,
            r#"{"type":"partition","groups":[["s1","c1"],["s2","c1"]]}"#,
            r#"{"type":"partition","groups":[["*"],["s2"]]}"#,
            r#"{"type":"partition","groups":"s1"}"#,
            r#"{"type":"crash_at","node":"s1","point":"after_reply"}"#,
            r#"{"type":"crash_at","node":"s1","point":"before_ack","dying_ms":600000}"#,
            r#"{"type":"crash","node":"s1","dying_ms":-1}"#,
            r#"{"type":"crash_client","client":101}"#,
            r#"{"type":"step","on":"yes"}"#,
            r#"{"type":"deliver","msg_id":-1}"#,
            r#"{"type":"set_seed"}"#,
        ];
        for text in refused {
            assert_eq!(code(text), ErrorCode::BadField, "{text}");
        }
        let accepted = [
            r#"{"type":"set_link","from":"*","to":"*","drop":1,"duplicate":0}"#,
            r#"{"type":"partition","groups":[]}"#,
            r#"{"type":"crash_at","node":"backup","point":"before_ack","dying_ms":60000}"#,
            r#"{"type":"crash","node":"*"}"#,
        ];
        let cfg = GatewayConfig::default();
        for text in accepted {
            assert!(parse_command(text, &cfg, 100).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_load_with_a_field_it_does_not_have_is_refused_by_name() {
        for text in [
            r#"{"type":"load","clients":4,"distrib":"hot"}"#,
            r#"{"type":"load","clients":4,"unlock-share":0.9,"tag":"t"}"#,
            r#"{"type":"load","client":4,"clients":4}"#,
        ] {
            match parse_command(text, &GatewayConfig::default(), 100) {
                Err(ServerMsg::Error {
                    code: ErrorCode::BadField,
                    message,
                    ..
                }) => assert!(
                    message.contains("has no field") && message.contains("unlock_share"),
                    "{text}: {message}"
                ),
                other => panic!("{text}: expected bad_field, got {other:?}"),
            }
        }
        // A long key is named by its start (found by review: a 60 KB key made a 60 KB error).
        let long = format!(
            r#"{{"type":"load","clients":1,"{}":1}}"#,
            "k".repeat(60_000)
        );
        match parse_command(&long, &GatewayConfig::default(), 100) {
            Err(ServerMsg::Error { message, .. }) => {
                assert!(
                    message.len() < 300 && message.contains("kkkk…"),
                    "{}",
                    message.len()
                )
            }
            other => panic!("expected bad_field, got {other:?}"),
        }
        // Every field the load has is accepted: the list is the serialized command's keys.
        let full = Command::Load {
            settings: shared::LoadSettings::STOPPED,
            tag: Some("t".into()),
        };
        let wire = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = wire
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut known = LOAD_FIELDS.to_vec();
        keys.sort_unstable();
        known.sort_unstable();
        assert_eq!(keys, known);
        let text = wire.to_string();
        assert_eq!(
            parse_command(&text, &GatewayConfig::default(), 100),
            Ok(full)
        );
    }

    #[test]
    fn errors_echo_the_tag_when_they_can() {
        let e = parse_command(
            r#"{"type":"crash","tag":"t9"}"#,
            &GatewayConfig::default(),
            5,
        );
        assert!(
            matches!(e, Err(ServerMsg::Error { code: ErrorCode::BadField, tag: Some(t), .. }) if t == "t9")
        );
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refuses() {
        let mut r = RateLimit::new(10);
        let allowed = (0..100).filter(|_| r.allow()).count();
        assert!(
            (20..=21).contains(&allowed),
            "burst of twice the rate, got {allowed}"
        );
        assert!(r.refused_in_a_row > 0);
    }
}
