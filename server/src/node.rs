//! One server process (`pbscope node`): the runtime around [`LockServer`].
//!
//! It listens on TCP for clerks, keeps one connection to the backup (when primary), and reports
//! every event to the supervisor over a control connection. The order of effects is the point:
//! an event is written to the control socket *before* the action it describes, so a SIGKILL can
//! never lose the record of a message that left.
//!
//! The inbox is "the wire" ([`Wire`]): every arriving frame is held until `arrival + slow-motion
//! delay` (per connection, in order), then meets the fault plan's verdict (lost, held by step
//! mode, delayed, duplicated) before the state machine sees it, so slow motion and network
//! faults act on real messages. This module must not decide lock-service semantics; it only
//! carries out what [`LockServer`] asks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use shared::{
    CrashCause, CrashPoint, Envelope, EventKind, FaultPlan, Msg, MsgId, NodeControl, NodeId,
    NodeReport, RequestId, Role,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::RunClock;
use crate::framing::{self, FramedConn, Recorder};
use crate::lockservice::{ConnId, LockServer, Output};
use crate::oserror::{self, AcceptPause};
use crate::slowmo::SlowMotion;
use crate::wire::{Wire, WireOut};

/// Everything a node process is started with (its command line).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub role: Role,
    /// The supervisor's control listener.
    pub control: SocketAddr,
    /// Proves to the supervisor that this process is the one it spawned.
    pub token: u64,
    /// The supervisor's CLOCK_MONOTONIC reading at the start of the run.
    pub epoch_ns: u64,
    /// High bits of this process's message ids, unique in the run.
    pub origin: u64,
    /// Exit at once if this process is no longer our parent.
    pub parent_pid: Option<u32>,
    pub slow_motion_ms: u64,
    /// The backup to forward to (id, address), for a primary.
    pub backup: Option<(NodeId, String)>,
    /// The port to listen on (0: any free one). A restarted server takes its old port, so
    /// clerks and its primary find it where it was.
    pub port: u16,
    /// A deliberately broken protocol (`--variant`), or `None`.
    pub variant: Option<shared::Variant>,
}

/// A crash armed by `crash_before_reply` or `crash_at`: where it fires, and whether the server
/// goes silent there for `dying_ms` (the supervisor kills it then) instead of dying at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Armed {
    point: CrashPoint,
    dying_ms: Option<u64>,
}

/// How long the primary waits for the backup's ack before it declares the backup lost,
/// on top of the slow-motion holds the forward and its ack go through.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Inboxes a forward and its ack wait in (the backup's, then ours), with one to spare.
pub(crate) const ACK_HOPS: u32 = 3;

/// How often the primary checks whether its oldest forward's ack is overdue.
pub(crate) const ACK_CHECK_EVERY: Duration = Duration::from_millis(50);

/// The connection id of the link to the backup (client connections count up from 1).
const BACKUP_LINK: ConnId = 0;

/// Something for the node's main loop.
#[derive(Debug)]
enum Inbound {
    Frame {
        conn: ConnId,
        arrived: Instant,
        env: Envelope,
    },
    Closed {
        conn: ConnId,
        reason: String,
    },
}

/// Reports to the supervisor. Each write completes (into the socket) before the caller goes on.
struct Reporter {
    sink: SplitSink<FramedConn, bytes::Bytes>,
    clock: RunClock,
}

impl Reporter {
    async fn event(&mut self, kind: EventKind) -> anyhow::Result<()> {
        let report = NodeReport::Event {
            t_us: self.clock.now_us(),
            kind,
        };
        self.report(report).await
    }

    async fn report(&mut self, report: NodeReport) -> anyhow::Result<()> {
        self.sink
            .send(framing::encode(&report))
            .await
            .context("control connection to the supervisor")
    }
}

impl Recorder for Reporter {
    async fn record(&mut self, kind: EventKind) -> anyhow::Result<()> {
        self.event(kind).await
    }
}

/// The node's whole state: the state machine plus its sockets.
struct Node {
    cfg: NodeConfig,
    server: LockServer,
    reporter: Reporter,
    clients: HashMap<ConnId, SplitSink<FramedConn, bytes::Bytes>>,
    backup: Option<BackupLink>,
    inbox: Wire<ConnId>,
    slow_motion: SlowMotion,
    next_msg: u64,
    /// An armed crash. At `before_reply` the next client request that will be answered becomes
    /// the fatal one; the other points fire where that operation reaches them.
    armed: Option<Armed>,
    /// The request whose reply must never leave, and the armed crash's `dying_ms`.
    fatal: Option<(RequestId, Option<u64>)>,
    /// Dying: the server sends nothing and hands its state machine nothing more; its
    /// connections stay open until the supervisor kills it.
    silent: bool,
    tx: mpsc::UnboundedSender<Inbound>,
}

struct BackupLink {
    id: NodeId,
    addr: String,
    sink: Option<SplitSink<FramedConn, bytes::Bytes>>,
    /// Forwards sent and not yet acknowledged, oldest first, with when they were sent.
    unacked: std::collections::VecDeque<(shared::RequestId, Instant)>,
    /// Forwards not sent yet because a shortage on our side (no descriptor, no port) kept the
    /// connection from opening: that is not the backup's failure. Retried on every tick, sent
    /// in order; their ack deadlines start when they leave.
    waiting: std::collections::VecDeque<Msg>,
    lost: bool,
}

/// Runs a node process until the supervisor goes away. Never returns `Ok` while it should run.
pub async fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    let clock = RunClock::from_epoch(cfg.epoch_ns);
    let listener = TcpListener::bind(("127.0.0.1", cfg.port))
        .await
        .with_context(|| format!("binding the node's listener on 127.0.0.1:{}", cfg.port))?;
    let port = listener.local_addr()?.port();

    let control = TcpStream::connect(cfg.control)
        .await
        .with_context(|| format!("connecting to the supervisor at {}", cfg.control))?;
    let (mut ctl_sink, mut ctl_stream) = framing::framed(control).split();
    let ready = NodeReport::Ready {
        id: cfg.id.clone(),
        pid: std::process::id(),
        port,
        token: cfg.token,
    };
    ctl_sink.send(framing::encode(&ready)).await?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut node = Node {
        server: LockServer::new(cfg.role).with_variant(cfg.variant),
        reporter: Reporter {
            sink: ctl_sink,
            clock,
        },
        clients: HashMap::new(),
        backup: cfg.backup.clone().map(|(id, addr)| BackupLink {
            id,
            addr,
            sink: None,
            unacked: Default::default(),
            waiting: Default::default(),
            lost: false,
        }),
        inbox: Wire::new(
            cfg.id.clone(),
            Arc::new(FaultPlan::default()),
            Duration::from_millis(cfg.slow_motion_ms),
        ),
        slow_motion: SlowMotion::new(Duration::from_millis(cfg.slow_motion_ms), Instant::now()),
        next_msg: 0,
        armed: None,
        fatal: None,
        silent: false,
        tx,
        cfg,
    };
    let mut next_conn: ConnId = 1;
    let mut tick = tokio::time::interval(ACK_CHECK_EVERY);
    // An accept error (say EMFILE) pauses accepting only; the node goes on serving meanwhile.
    let mut accept_pause = AcceptPause::default();

    loop {
        // A dying server hands its state machine nothing more: what arrives stays in the inbox.
        let due = if node.silent {
            None
        } else {
            node.inbox.next_due()
        };
        let accept_resume = accept_pause.resume_at();
        tokio::select! {
            accepted = listener.accept(), if accept_resume.is_none() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        accept_pause.failed(Instant::now(), &e, "node listener");
                        continue;
                    }
                };
                accept_pause.accepted("node listener");
                let conn = next_conn;
                next_conn += 1;
                let (sink, stream) = framing::framed(stream).split();
                node.clients.insert(conn, sink);
                tokio::spawn(read_frames(conn, stream, node.tx.clone()));
            }
            ctl = framing::recv::<NodeControl, _>(&mut ctl_stream) => {
                match ctl {
                    Ok(c) => node.on_control(c).await?,
                    // The supervisor is gone: a node never outlives it.
                    Err(_) => return Ok(()),
                }
            }
            Some(inbound) = rx.recv() => {
                node.on_inbound(inbound).await?;
                // Frames already due (always, without slow motion) go now: a timer would round
                // each hop up to the timer wheel's millisecond.
                node.deliver_due().await?;
            }
            _ = sleep_until_opt(due) => {
                node.deliver_due().await?;
            }
            _ = sleep_until_opt(accept_resume) => accept_pause.resume(),
            _ = tick.tick(), if !node.silent => {
                if let Some(reason) = node.retry_waiting_forwards().await? {
                    node.backup_lost(&reason).await?;
                }
                node.check_ack_deadline().await?;
            }
        }
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads frames off one connection into the main loop, stamping their arrival.
async fn read_frames(
    conn: ConnId,
    mut stream: futures_util::stream::SplitStream<FramedConn>,
    tx: mpsc::UnboundedSender<Inbound>,
) {
    let reason = loop {
        match framing::recv::<Envelope, _>(&mut stream).await {
            Ok(env) => {
                let frame = Inbound::Frame {
                    conn,
                    arrived: Instant::now(),
                    env,
                };
                if tx.send(frame).is_err() {
                    return;
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    let _ = tx.send(Inbound::Closed { conn, reason });
}

impl Node {
    fn next_msg_id(&mut self) -> MsgId {
        self.next_msg += 1;
        MsgId::new(self.cfg.origin, self.next_msg)
    }

    async fn on_control(&mut self, c: NodeControl) -> anyhow::Result<()> {
        match c {
            NodeControl::ArmCrashBeforeReply => {
                self.arm(
                    Armed {
                        point: CrashPoint::BeforeReply,
                        dying_ms: None,
                    },
                    false,
                )
                .await?;
            }
            NodeControl::ArmCrash { point, dying_ms } => {
                self.arm(Armed { point, dying_ms }, true).await?;
            }
            NodeControl::GoSilent { dies_in_ms } => self.go_silent(dies_in_ms, None).await?,
            NodeControl::SetSlowMotion { delay_ms, ticket } => {
                self.slow_motion
                    .set(Duration::from_millis(delay_ms), Instant::now());
                self.inbox.set_delay(self.slow_motion.current());
                self.reporter.report(NodeReport::Applied { ticket }).await?;
            }
            NodeControl::SetFaults { plan, ticket } => {
                // Step mode stops the ack deadline; its end restarts it.
                self.slow_motion.set_frozen(plan.step, Instant::now());
                self.inbox.set_plan(Arc::new(plan));
                // Step mode's end released what it held: delivered before the answer.
                self.deliver_due().await?;
                self.reporter.report(NodeReport::Applied { ticket }).await?;
            }
            NodeControl::Step {
                msg_id,
                action,
                ticket,
            } => match self.inbox.step(msg_id, action) {
                Ok(()) => {
                    // The decision's events come before its answer.
                    self.deliver_due().await?;
                    self.reporter.report(NodeReport::Applied { ticket }).await?;
                }
                Err(message) => {
                    self.reporter
                        .report(NodeReport::Failed { ticket, message })
                        .await?
                }
            },
            other => tracing::warn!("{}: control {other:?} is not built yet", self.cfg.id),
        }
        Ok(())
    }

    /// Arms a crash (a new one replaces an armed one, a fatal request included). `crash_at`
    /// names its point in `crash_armed`; `crash_before_reply` does not.
    async fn arm(&mut self, armed: Armed, named: bool) -> anyhow::Result<()> {
        self.armed = Some(armed);
        self.fatal = None;
        self.reporter
            .event(EventKind::CrashArmed {
                point: named.then_some(armed.point),
                dying_ms: armed.dying_ms,
            })
            .await
    }

    /// Whether the armed crash fires at `point` now.
    fn fires_at(&self, point: CrashPoint) -> bool {
        self.armed.is_some_and(|a| a.point == point)
    }

    /// The armed crash fires at `point` for `req`: die now (the crash's cause recorded first),
    /// or, with `dying_ms`, go silent and let the supervisor kill us that much later.
    async fn fire(&mut self, point: CrashPoint, req: RequestId, dying_ms: Option<u64>) {
        self.armed = None;
        self.fatal = None;
        match dying_ms {
            Some(ms) => {
                // If the report cannot be written the supervisor is gone, and so are we.
                let _ = self.go_silent(ms, Some(point)).await;
            }
            None => {
                let cause = match point {
                    CrashPoint::BeforeForward => CrashCause::BeforeForward,
                    CrashPoint::AfterForward => CrashCause::AfterForward,
                    CrashPoint::BeforeReply => CrashCause::BeforeReply,
                    CrashPoint::BeforeAck => CrashCause::BeforeAck,
                };
                self.die(cause, req).await
            }
        }
    }

    /// Goes silent: reports `dying`, then sends nothing more and hands the state machine
    /// nothing more (connections stay open; what arrives waits in the inbox). The supervisor
    /// kills the process `dies_in_ms` after the report.
    async fn go_silent(
        &mut self,
        dies_in_ms: u64,
        point: Option<CrashPoint>,
    ) -> anyhow::Result<()> {
        self.silent = true;
        self.armed = None;
        self.fatal = None;
        self.reporter
            .event(EventKind::Dying {
                pid: std::process::id(),
                dies_in_ms,
                point,
            })
            .await
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> anyhow::Result<()> {
        match inbound {
            Inbound::Frame { conn, arrived, env } => self.inbox.push(conn, arrived, env),
            Inbound::Closed { conn, reason } => {
                self.inbox.push_closed(conn, Instant::now(), reason)
            }
        }
        Ok(())
    }

    /// Hands the state machine everything that has waited out the wire, and reports what the
    /// wire lost or holds (each report before its effect).
    async fn deliver_due(&mut self) -> anyhow::Result<()> {
        // A dying server hands its state machine nothing more: what arrives stays unheard.
        while let Some(out) = (!self.silent)
            .then(|| self.inbox.pop(Instant::now()))
            .flatten()
        {
            match out {
                WireOut::Deliver {
                    conn,
                    env,
                    duplicate,
                } => self.deliver(conn, env, duplicate).await?,
                WireOut::Lost { env, reason } => {
                    self.reporter
                        .event(EventKind::MsgLost {
                            msg_id: env.msg_id,
                            from: env.from,
                            to: self.cfg.id.clone(),
                            reason: reason.as_str().to_owned(),
                        })
                        .await?
                }
                WireOut::Held { env } => {
                    self.reporter
                        .event(EventKind::MsgHeld {
                            msg_id: env.msg_id,
                            from: env.from,
                            to: self.cfg.id.clone(),
                            msg: env.msg,
                        })
                        .await?
                }
                WireOut::Closed { conn, reason } if conn == BACKUP_LINK => {
                    self.backup_lost(&format!("backup connection ended ({reason})"))
                        .await?
                }
                WireOut::Closed { conn, .. } => {
                    self.clients.remove(&conn);
                }
            }
        }
        Ok(())
    }

    /// The frame has waited out the wire: the state machine sees it now (`duplicate`: the
    /// network's second copy).
    async fn deliver(
        &mut self,
        conn: ConnId,
        env: Envelope,
        duplicate: bool,
    ) -> anyhow::Result<()> {
        self.reporter
            .event(EventKind::MsgDelivered {
                msg_id: env.msg_id,
                from: env.from.clone(),
                to: self.cfg.id.clone(),
                duplicate,
            })
            .await?;
        let mut out = Vec::new();
        match env.msg {
            Msg::Request { req, op, lock } => {
                self.server.on_request(conn, req, op, &lock, &mut out);
                // The armed crash takes the next request that will be answered (at once, or
                // once the backup acks); one that gets no answer here (a stale duplicate, a
                // server that stepped down) leaves it armed for the next.
                let answers = out.iter().any(|o| {
                    matches!(o, Output::Reply { req: r, .. } | Output::Forward { req: r, .. } if *r == req)
                });
                if answers && self.fires_at(CrashPoint::BeforeReply) {
                    let dying_ms = self.armed.take().and_then(|a| a.dying_ms);
                    self.fatal = Some((req, dying_ms));
                }
            }
            Msg::Forward { req, op, lock } => {
                self.server.on_forward(req, op, &lock, &mut out);
            }
            // Answers to forwards count only on the link this primary opened to its backup: a
            // stranger's frame cannot make it reply, or step down.
            Msg::ForwardAck { .. } | Msg::ForwardRefused { .. } if conn != BACKUP_LINK => {}
            Msg::ForwardAck { req, ok } => {
                if let Some(link) = self.backup.as_mut() {
                    link.unacked.retain(|(r, _)| *r != req);
                }
                self.server.on_forward_ack(req, ok, &mut out);
            }
            Msg::ForwardRefused { req } => {
                if let Some(link) = self.backup.as_mut() {
                    link.unacked.retain(|(r, _)| *r != req);
                }
                self.server.on_forward_refused(req, &mut out);
            }
            // Servers are not sent replies; a confused peer's frame is ignored.
            Msg::Reply { .. } => {}
        }
        if self.server.role() == Role::Deposed {
            // A server that stepped down waits for no ack: nothing of its own will be answered.
            if let Some(link) = self.backup.as_mut() {
                link.unacked.clear();
            }
            // An armed crash waiting for that answer stays armed, as the card says.
            if let Some((_, dying_ms)) = self.fatal.take() {
                self.armed = Some(Armed {
                    point: CrashPoint::BeforeReply,
                    dying_ms,
                });
            }
        }
        self.carry_out(out, conn, &env.from).await
    }

    /// Performs the state machine's outputs, in order. A forward that finds the backup gone
    /// feeds the state machine's reaction back into the same queue.
    async fn carry_out(
        &mut self,
        out: Vec<Output>,
        conn: ConnId,
        peer: &str,
    ) -> anyhow::Result<()> {
        let mut queue = std::collections::VecDeque::from(out);
        while let Some(o) = queue.pop_front() {
            if self.silent {
                // Dying: nothing more leaves this server.
                return Ok(());
            }
            match o {
                Output::Event(kind) => self.reporter.event(kind).await?,
                Output::Reply { to, req, ok } => {
                    if let Some((fatal, dying_ms)) = self.fatal.filter(|(f, _)| *f == req) {
                        self.fire(CrashPoint::BeforeReply, fatal, dying_ms).await;
                        continue;
                    }
                    let to_name = shared::client_node(req.client);
                    self.send_to_client(to, &to_name, Msg::Reply { req, ok })
                        .await?;
                }
                Output::ForwardAck { req, ok } => {
                    if self.fires_at(CrashPoint::BeforeAck) {
                        // The backup applied the forward; its ack never leaves.
                        let dying_ms = self.armed.and_then(|a| a.dying_ms);
                        self.fire(CrashPoint::BeforeAck, req, dying_ms).await;
                        continue;
                    }
                    self.send_to_client(conn, peer, Msg::ForwardAck { req, ok })
                        .await?;
                }
                Output::ForwardRefused { req } => {
                    self.send_to_client(conn, peer, Msg::ForwardRefused { req })
                        .await?;
                }
                Output::Close { to } => {
                    if let Some(mut sink) = self.clients.remove(&to) {
                        // The peer sees the connection end, as when a server goes away.
                        let _ = sink.close().await;
                    }
                }
                Output::Forward { req, op, lock } => {
                    if self.fires_at(CrashPoint::BeforeForward) {
                        // Applied here; the forward never leaves.
                        let dying_ms = self.armed.and_then(|a| a.dying_ms);
                        self.fire(CrashPoint::BeforeForward, req, dying_ms).await;
                        continue;
                    }
                    if let Some(reason) = self.forward(Msg::Forward { req, op, lock }).await? {
                        let mut more = Vec::new();
                        self.mark_backup_lost(&reason, &mut more);
                        queue.extend(more);
                    } else if self.fires_at(CrashPoint::AfterForward) && self.forwarded(req) {
                        // The forward is on the wire; the backup's ack will find us gone.
                        let dying_ms = self.armed.and_then(|a| a.dying_ms);
                        self.fire(CrashPoint::AfterForward, req, dying_ms).await;
                        continue;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the forward of `req` has left (it waits for its ack).
    fn forwarded(&self, req: RequestId) -> bool {
        self.backup
            .as_ref()
            .is_some_and(|l| l.unacked.iter().any(|(r, _)| *r == req))
    }

    /// Sends on a connection someone opened to us (a clerk, or the primary for acks).
    async fn send_to_client(&mut self, conn: ConnId, to: &str, msg: Msg) -> anyhow::Result<()> {
        if !self.clients.contains_key(&conn) {
            // That peer hung up; a real server's reply would go nowhere too.
            return Ok(());
        }
        let msg_id = self.next_msg_id();
        let env = Envelope {
            msg_id,
            from: self.cfg.id.clone(),
            msg,
        };
        let sent = match self.clients.get_mut(&conn) {
            Some(sink) => framing::send_recorded(&mut self.reporter, sink, &env, to).await?,
            None => false,
        };
        if !sent {
            self.clients.remove(&conn);
        }
        Ok(())
    }

    /// Sends a forward to the backup, connecting first if needed. Returns why the backup is
    /// lost, if this showed it is.
    async fn forward(&mut self, msg: Msg) -> anyhow::Result<Option<String>> {
        let Some(link) = self.backup.as_mut() else {
            return Ok(Some("no backup configured".into()));
        };
        if link.lost {
            return Ok(None);
        }
        if link.sink.is_none() || !link.waiting.is_empty() {
            // Behind the forwards already waiting for a connection, never ahead of them.
            link.waiting.push_back(msg);
            return self.retry_waiting_forwards().await;
        }
        self.send_forward(msg).await
    }

    /// Opens the backup connection if it is not open, then sends the forwards waiting for it.
    /// Returns why the backup is lost, if this showed it is; a shortage on our side leaves the
    /// forwards waiting for the next try.
    async fn retry_waiting_forwards(&mut self) -> anyhow::Result<Option<String>> {
        let Some(link) = self.backup.as_ref() else {
            return Ok(None);
        };
        if link.lost || link.waiting.is_empty() {
            return Ok(None);
        }
        if link.sink.is_none() {
            let addr = link.addr.clone();
            match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await {
                Ok(Ok(stream)) => {
                    let (sink, stream) = framing::framed(stream).split();
                    tokio::spawn(read_frames(BACKUP_LINK, stream, self.tx.clone()));
                    if let Some(link) = self.backup.as_mut() {
                        link.sink = Some(sink);
                    }
                }
                Ok(Err(e)) if oserror::is_local_resource_error(&e) => {
                    tracing::debug!(
                        "{}: no connection to the backup yet, local: {e}",
                        self.cfg.id
                    );
                    return Ok(None);
                }
                Ok(Err(e)) => return Ok(Some(format!("backup unreachable ({e})"))),
                Err(_) => return Ok(Some("backup connect timed out".into())),
            }
        }
        while let Some(msg) = self.backup.as_mut().and_then(|l| l.waiting.pop_front()) {
            if let Some(reason) = self.send_forward(msg).await? {
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }

    /// Writes one forward on the open backup connection.
    async fn send_forward(&mut self, msg: Msg) -> anyhow::Result<Option<String>> {
        let msg_id = self.next_msg_id();
        let req = match &msg {
            Msg::Forward { req, .. } => *req,
            _ => bail!("only forwards go to the backup"),
        };
        let env = Envelope {
            msg_id,
            from: self.cfg.id.clone(),
            msg,
        };
        let Some(link) = self.backup.as_mut() else {
            bail!("checked above");
        };
        link.unacked.push_back((req, Instant::now()));
        let sent = match link.sink.as_mut() {
            Some(sink) => framing::send_recorded(&mut self.reporter, sink, &env, &link.id).await?,
            None => false,
        };
        Ok((!sent).then(|| "backup connection broken".to_owned()))
    }

    /// Declares the backup lost when the oldest forward's ack is overdue. The allowance is
    /// re-read every time: a slow-motion rise while the forward travels extends it.
    async fn check_ack_deadline(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let overdue = self
            .backup
            .as_ref()
            .and_then(|l| l.unacked.front())
            .is_some_and(|(_, sent)| {
                self.slow_motion.deadline(*sent, ACK_TIMEOUT, ACK_HOPS) <= now
            });
        if overdue {
            self.backup_lost("backup did not acknowledge in time")
                .await?;
        }
        Ok(())
    }

    async fn backup_lost(&mut self, reason: &str) -> anyhow::Result<()> {
        let mut out = Vec::new();
        self.mark_backup_lost(reason, &mut out);
        self.carry_out(out, BACKUP_LINK, "").await
    }

    fn mark_backup_lost(&mut self, reason: &str, out: &mut Vec<Output>) {
        if let Some(link) = self.backup.as_mut() {
            if link.lost {
                return;
            }
            link.lost = true;
            link.sink = None;
            link.unacked.clear();
            link.waiting.clear();
        }
        self.server.on_backup_lost(reason, out);
    }

    /// An armed crash fires at its point of `req`'s operation: record why we die, then die the
    /// way a crash does (SIGKILL), with whatever came next unsent.
    async fn die(&mut self, cause: CrashCause, req: RequestId) -> ! {
        let _ = self
            .reporter
            .event(EventKind::Crashed {
                pid: std::process::id(),
                cause,
                req: Some(req),
            })
            .await;
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this is never reached.
        std::process::abort()
    }
}

/// Makes this process die with its parent, even if the parent is SIGKILLed.
pub fn die_with_parent(parent_pid: Option<u32>) -> anyhow::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("setting the parent-death signal")?;
    if let Some(expected) = parent_pid {
        // The parent may have died before prctl took effect.
        if nix::unistd::getppid().as_raw() as u32 != expected {
            bail!("the supervisor (pid {expected}) is already gone");
        }
    }
    Ok(())
}
