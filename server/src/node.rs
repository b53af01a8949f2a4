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
    CrashCause, CrashPoint, Envelope, Event, EventKind, FaultPlan, ForwardAckItem, ForwardOp, Msg,
    MsgId, NodeControl, NodeId, NodeReport, RequestId, Role,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::RunClock;
use crate::framing::{self, FramedConn};
use crate::group_commit::{self, ForwardQueue, Pacing};
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

/// Reports to the supervisor. The events of a round of work wait here and are written together
/// by [`Reporter::flush`], which returns once they are in the socket: the round's messages are
/// written only after it (so a SIGKILL can lose a message, never the record of one that left).
struct Reporter {
    sink: SplitSink<FramedConn, bytes::Bytes>,
    clock: RunClock,
    /// This node's name, written into its events (the supervisor goes by the connection).
    node: NodeId,
    pending: Vec<Event>,
}

impl Reporter {
    /// Records an event of this round (written by the next [`Reporter::flush`]).
    fn event(&mut self, kind: EventKind) {
        self.pending.push(Event {
            seq: 0,
            t_us: self.clock.now_us(),
            node: self.node.clone(),
            kind,
        });
    }

    /// Writes the round's events, in order, in one frame (a few when they are very many), and
    /// flushes the socket.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frames = framing::encode_events(&self.pending);
        self.pending.clear();
        for frame in frames {
            self.sink
                .feed(frame)
                .await
                .context("control connection to the supervisor")?;
        }
        self.sink
            .flush()
            .await
            .context("control connection to the supervisor")
    }

    /// Writes a control answer behind every event recorded before it.
    async fn report(&mut self, report: NodeReport) -> anyhow::Result<()> {
        self.flush().await?;
        self.sink
            .send(framing::encode(&report))
            .await
            .context("control connection to the supervisor")
    }
}

/// A frame (or a close) a round decided on, written once the round's events are reported.
#[derive(Debug)]
enum Outgoing {
    /// To a connection someone opened to us (a clerk, or the primary for acks).
    Client(ConnId, bytes::Bytes),
    /// Close that connection (after its frames of this round).
    Close(ConnId),
    /// To the backup.
    Backup(bytes::Bytes),
}

/// A crash point reached: fired once what came before it has left.
#[derive(Debug, Clone, Copy)]
struct Fire {
    point: CrashPoint,
    req: RequestId,
    dying_ms: Option<u64>,
}

/// Most inbound frames taken into one round (more wait for the next).
const ROUND_MAX_FRAMES: usize = 1024;

/// The node's whole state: the state machine plus its sockets.
struct Node {
    cfg: NodeConfig,
    server: LockServer,
    reporter: Reporter,
    clients: HashMap<ConnId, SplitSink<FramedConn, bytes::Bytes>>,
    /// Connections closed this round: their frames of the round go first, then the close.
    closing: HashMap<ConnId, SplitSink<FramedConn, bytes::Bytes>>,
    /// The round's frames and closes, in the order decided.
    outgoing: Vec<Outgoing>,
    /// Acks owed to the primary for the forward message being applied (its connection, its
    /// name, the answers in order): they leave as one message once all of it is applied.
    acks: Option<(ConnId, NodeId, Vec<ForwardAckItem>)>,
    /// A crash point this round reached.
    to_fire: Option<Fire>,
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
    /// Operations owed to the backup: not sent yet (group commit, or a shortage on our side
    /// kept the connection from opening, which is not the backup's failure), and sent but not
    /// acknowledged. Their ack deadlines start when they leave.
    queue: ForwardQueue,
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
            node: cfg.id.clone(),
            pending: Vec::new(),
        },
        clients: HashMap::new(),
        closing: HashMap::new(),
        outgoing: Vec::new(),
        acks: None,
        to_fire: None,
        backup: cfg.backup.clone().map(|(id, addr)| BackupLink {
            id,
            addr,
            sink: None,
            queue: ForwardQueue::default(),
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
        // One round: take in what is ready, run the state machine on it, then write the
        // round's reports (one frame) and after them its messages (`end_round`).
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
                node.on_inbound(inbound);
                // Whatever else has arrived joins this round.
                for _ in 1..ROUND_MAX_FRAMES {
                    match rx.try_recv() {
                        Ok(more) => node.on_inbound(more),
                        Err(_) => break,
                    }
                }
                // Frames already due (always, without slow motion) go now: a timer would round
                // each hop up to the timer wheel's millisecond.
                node.deliver_due();
            }
            _ = sleep_until_opt(due) => {
                node.deliver_due();
            }
            _ = sleep_until_opt(accept_resume) => accept_pause.resume(),
            _ = tick.tick(), if !node.silent => {
                node.check_ack_deadline();
            }
        }
        node.end_round().await?;
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
                );
            }
            NodeControl::ArmCrash { point, dying_ms } => {
                self.arm(Armed { point, dying_ms }, true);
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
                self.deliver_due();
                self.end_round().await?;
                self.reporter.report(NodeReport::Applied { ticket }).await?;
            }
            NodeControl::Step {
                msg_id,
                action,
                ticket,
            } => match self.inbox.step(msg_id, action) {
                Ok(()) => {
                    // The decision's events (and messages) come before its answer.
                    self.deliver_due();
                    self.end_round().await?;
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
    fn arm(&mut self, armed: Armed, named: bool) {
        self.armed = Some(armed);
        self.fatal = None;
        self.reporter.event(EventKind::CrashArmed {
            point: named.then_some(armed.point),
            dying_ms: armed.dying_ms,
        });
    }

    /// Whether the armed crash fires at `point` now.
    fn fires_at(&self, point: CrashPoint) -> bool {
        self.armed.is_some_and(|a| a.point == point)
    }

    /// The armed crash reached `point` for `req`: nothing after it in this round is done, and
    /// it fires at the round's end, once what came before it has left.
    fn reach(&mut self, point: CrashPoint, req: RequestId, dying_ms: Option<u64>) {
        self.to_fire = Some(Fire {
            point,
            req,
            dying_ms,
        });
    }

    /// The armed crash fires at its point: die now (the crash's cause recorded first), or,
    /// with `dying_ms`, go silent and let the supervisor kill us that much later.
    async fn fire(&mut self, f: Fire) -> anyhow::Result<()> {
        self.armed = None;
        self.fatal = None;
        match f.dying_ms {
            Some(ms) => self.go_silent(ms, Some(f.point)).await,
            None => {
                let cause = match f.point {
                    CrashPoint::BeforeForward => CrashCause::BeforeForward,
                    CrashPoint::AfterForward => CrashCause::AfterForward,
                    CrashPoint::BeforeReply => CrashCause::BeforeReply,
                    CrashPoint::BeforeAck => CrashCause::BeforeAck,
                };
                self.die(cause, f.req).await
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
        self.to_fire = None;
        self.acks = None;
        self.reporter.event(EventKind::Dying {
            pid: std::process::id(),
            dies_in_ms,
            point,
        });
        self.reporter.flush().await
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Frame { conn, arrived, env } => self.inbox.push(conn, arrived, env),
            Inbound::Closed { conn, reason } => {
                self.inbox.push_closed(conn, Instant::now(), reason)
            }
        }
    }

    /// Hands the state machine everything that has waited out the wire, and records what the
    /// wire lost or holds. Stops at a crash point: the rest stays unheard.
    fn deliver_due(&mut self) {
        // A dying server hands its state machine nothing more: what arrives stays unheard.
        while !self.silent && self.to_fire.is_none() {
            let Some(out) = self.inbox.pop(Instant::now()) else {
                break;
            };
            match out {
                WireOut::Deliver {
                    conn,
                    env,
                    duplicate,
                } => self.deliver(conn, env, duplicate),
                WireOut::Lost { env, reason } => self.reporter.event(EventKind::MsgLost {
                    msg_id: env.msg_id,
                    from: env.from,
                    to: self.cfg.id.clone(),
                    reason: reason.as_str().to_owned(),
                }),
                WireOut::Held { env } => self.reporter.event(EventKind::MsgHeld {
                    msg_id: env.msg_id,
                    from: env.from,
                    to: self.cfg.id.clone(),
                    msg: env.msg,
                }),
                WireOut::Closed { conn, reason } if conn == BACKUP_LINK => {
                    self.backup_lost(&format!("backup connection ended ({reason})"))
                }
                WireOut::Closed { conn, .. } => self.close_client(conn),
            }
        }
    }

    /// The frame has waited out the wire: the state machine sees it now (`duplicate`: the
    /// network's second copy).
    fn deliver(&mut self, conn: ConnId, env: Envelope, duplicate: bool) {
        self.reporter.event(EventKind::MsgDelivered {
            msg_id: env.msg_id,
            from: env.from.clone(),
            to: self.cfg.id.clone(),
            duplicate,
        });
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
            Msg::ForwardBatch { ops } => {
                // Applied in order, as if they had come one by one.
                for ForwardOp { req, op, lock } in ops {
                    self.server.on_forward(req, op, &lock, &mut out);
                }
                // A server that refuses refuses them all: the first refusal says it.
                let mut refused = false;
                out.retain(|o| {
                    !matches!(o, Output::ForwardRefused { .. })
                        || !std::mem::replace(&mut refused, true)
                });
            }
            // Answers to forwards count only on the link this primary opened to its backup: a
            // stranger's frame cannot make it reply, or step down.
            Msg::ForwardAck { .. } | Msg::ForwardAckBatch { .. } | Msg::ForwardRefused { .. }
                if conn != BACKUP_LINK => {}
            Msg::ForwardAck { req, ok } => {
                if let Some(link) = self.backup.as_mut() {
                    link.queue.acked(req);
                }
                self.server.on_forward_ack(req, ok, &mut out);
            }
            Msg::ForwardAckBatch { acks } => {
                for ForwardAckItem { req, ok } in acks {
                    if let Some(link) = self.backup.as_mut() {
                        link.queue.acked(req);
                    }
                    self.server.on_forward_ack(req, ok, &mut out);
                }
            }
            Msg::ForwardRefused { req } => {
                if let Some(link) = self.backup.as_mut() {
                    link.queue.acked(req);
                }
                self.server.on_forward_refused(req, &mut out);
            }
            // Servers are not sent replies; a confused peer's frame is ignored.
            Msg::Reply { .. } => {}
        }
        if self.server.role() == Role::Deposed {
            // A server that stepped down waits for no ack and forwards nothing more: nothing
            // of its own will be answered.
            if let Some(link) = self.backup.as_mut() {
                link.queue.clear();
            }
            // An armed crash waiting for that answer stays armed, as the card says.
            if let Some((_, dying_ms)) = self.fatal.take() {
                self.armed = Some(Armed {
                    point: CrashPoint::BeforeReply,
                    dying_ms,
                });
            }
        }
        self.carry_out(out, conn, &env.from);
        // One ack message answers one forward message (a duplicate's copy gets its own).
        self.emit_acks();
    }

    /// Performs the state machine's outputs, in order, into this round. A forward that finds
    /// no backup feeds the state machine's reaction back into the same queue. A crash point
    /// reached ends it: what came after is never done.
    fn carry_out(&mut self, out: Vec<Output>, conn: ConnId, peer: &str) {
        let mut queue = std::collections::VecDeque::from(out);
        while let Some(o) = queue.pop_front() {
            if self.silent || self.to_fire.is_some() {
                // Dying, or about to: nothing more leaves this server.
                return;
            }
            match o {
                Output::Event(kind) => self.reporter.event(kind),
                Output::Reply { to, req, ok } => {
                    if let Some((fatal, dying_ms)) = self.fatal.filter(|(f, _)| *f == req) {
                        self.reach(CrashPoint::BeforeReply, fatal, dying_ms);
                        continue;
                    }
                    let to_name = shared::client_node(req.client);
                    self.send_to_client(to, &to_name, Msg::Reply { req, ok });
                }
                Output::ForwardAck { req, ok } => {
                    // Owed; the acks of one forward message leave together once all of it is
                    // applied (a crash at `before_ack` fires there: no ack leaves).
                    match self.acks.as_mut() {
                        Some((c, _, acks)) if *c == conn => acks.push(ForwardAckItem { req, ok }),
                        _ => {
                            self.emit_acks();
                            self.acks = Some((conn, peer.into(), vec![ForwardAckItem { req, ok }]));
                        }
                    }
                }
                Output::ForwardRefused { req } => {
                    // Behind the acks owed before it, as it was decided.
                    self.emit_acks();
                    self.send_to_client(conn, peer, Msg::ForwardRefused { req });
                }
                Output::Close { to } => self.close_client(to),
                Output::Forward { req, op, lock } => {
                    if self.fires_at(CrashPoint::BeforeForward) {
                        // Applied here; the forward never leaves.
                        let dying_ms = self.armed.and_then(|a| a.dying_ms);
                        self.reach(CrashPoint::BeforeForward, req, dying_ms);
                        continue;
                    }
                    match self.backup.as_mut() {
                        None => {
                            let mut more = Vec::new();
                            self.mark_backup_lost("no backup configured", &mut more);
                            queue.extend(more);
                        }
                        // A primary serving alone forwards nothing.
                        Some(link) if link.lost => {}
                        Some(link) => link.queue.push(ForwardOp { req, op, lock }),
                    }
                }
            }
        }
    }

    /// The acks owed for one forward message leave as one message (`forward_ack` for one, else
    /// `forward_ack_batch`), or, with a crash armed at `before_ack`, never.
    fn emit_acks(&mut self) {
        let Some((conn, peer, acks)) = self.acks.take() else {
            return;
        };
        if self.silent || acks.is_empty() {
            return;
        }
        if self.fires_at(CrashPoint::BeforeAck) {
            // The backup applied the forwards; their ack never leaves.
            let dying_ms = self.armed.and_then(|a| a.dying_ms);
            self.reach(CrashPoint::BeforeAck, acks[0].req, dying_ms);
            return;
        }
        self.send_to_client(conn, &peer, group_commit::ack_msg(acks));
    }

    /// How forwards leave now: one message in flight at a time (group commit), or, under slow
    /// motion or step mode, each round's at once (so a lecture's messages look as they always
    /// did, and a held forward holds back nothing else).
    fn pacing(&self) -> Pacing {
        if self.slow_motion.current().is_zero() && !self.inbox.plan().step {
            Pacing::OneInFlight
        } else {
            Pacing::Eager
        }
    }

    /// Sends the forwards that may leave now, connecting to the backup first if needed. A
    /// crash armed at `after_forward` fires once the first of them is written.
    async fn emit_forwards(&mut self) -> anyhow::Result<()> {
        loop {
            let Some(link) = self.backup.as_ref() else {
                return Ok(());
            };
            if self.silent || link.lost || !link.queue.has_waiting() {
                return Ok(());
            }
            if matches!(
                self.to_fire,
                Some(Fire {
                    point: CrashPoint::AfterForward,
                    ..
                })
            ) {
                return Ok(());
            }
            if link.sink.is_none() {
                let addr = link.addr.clone();
                match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await
                {
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
                        return Ok(());
                    }
                    Ok(Err(e)) => {
                        self.backup_lost(&format!("backup unreachable ({e})"));
                        return Ok(());
                    }
                    Err(_) => {
                        self.backup_lost("backup connect timed out");
                        return Ok(());
                    }
                }
            }
            let pacing = self.pacing();
            let Some(link) = self.backup.as_mut() else {
                return Ok(());
            };
            let Some(ops) = link.queue.take_batch(pacing, Instant::now()) else {
                return Ok(());
            };
            let first = ops[0].req;
            let to = link.id.clone();
            let msg_id = self.next_msg_id();
            let env = Envelope {
                msg_id,
                from: self.cfg.id.clone(),
                msg: group_commit::forward_msg(ops),
            };
            let frame = framing::encode(&env);
            self.reporter.event(EventKind::MsgSent {
                msg_id,
                from: env.from,
                to,
                msg: env.msg,
            });
            self.outgoing.push(Outgoing::Backup(frame));
            if self.fires_at(CrashPoint::AfterForward) {
                // The forward is on the wire (once written); the backup's ack will find us gone.
                let dying_ms = self.armed.and_then(|a| a.dying_ms);
                self.reach(CrashPoint::AfterForward, first, dying_ms);
                return Ok(());
            }
        }
    }

    /// Ends a round: the acks and forwards it owes become messages, its events are written
    /// (one frame) and only then its messages, each connection flushed once. A broken backup
    /// connection found on the way is handled in another pass; a crash point reached fires last.
    async fn end_round(&mut self) -> anyhow::Result<()> {
        loop {
            self.emit_acks();
            self.emit_forwards().await?;
            self.reporter.flush().await?;
            if let Some(reason) = self.write_outgoing().await {
                self.backup_lost(reason);
                continue;
            }
            if let Some(f) = self.to_fire.take() {
                self.fire(f).await?;
            }
            return Ok(());
        }
    }

    /// Writes the round's frames and closes in order, then flushes each connection once.
    /// Returns why the backup is lost, if writing to it failed.
    async fn write_outgoing(&mut self) -> Option<&'static str> {
        if self.outgoing.is_empty() {
            return None;
        }
        let outgoing = std::mem::take(&mut self.outgoing);
        if self.silent {
            return None;
        }
        let mut touched: Vec<ConnId> = Vec::new();
        let mut broken: Vec<ConnId> = Vec::new();
        let mut backup_written = false;
        let mut backup_broken = false;
        for o in outgoing {
            match o {
                Outgoing::Client(conn, frame) => {
                    if broken.contains(&conn) {
                        continue;
                    }
                    let sink = match self.clients.get_mut(&conn) {
                        Some(s) => s,
                        None => match self.closing.get_mut(&conn) {
                            Some(s) => s,
                            // That peer hung up; a real server's reply would go nowhere too.
                            None => continue,
                        },
                    };
                    if sink.feed(frame).await.is_err() {
                        broken.push(conn);
                    } else if !touched.contains(&conn) {
                        touched.push(conn);
                    }
                }
                Outgoing::Close(conn) => {
                    if let Some(mut sink) = self.closing.remove(&conn) {
                        // The peer sees the connection end, as when a server goes away.
                        let _ = sink.close().await;
                    }
                }
                Outgoing::Backup(frame) => {
                    if let Some(sink) = self.backup.as_mut().and_then(|l| l.sink.as_mut()) {
                        if backup_broken || sink.feed(frame).await.is_err() {
                            backup_broken = true;
                        } else {
                            backup_written = true;
                        }
                    }
                }
            }
        }
        for conn in touched {
            if let Some(sink) = self.clients.get_mut(&conn) {
                if sink.flush().await.is_err() {
                    broken.push(conn);
                }
            }
        }
        for conn in broken {
            self.clients.remove(&conn);
        }
        if backup_written && !backup_broken {
            if let Some(sink) = self.backup.as_mut().and_then(|l| l.sink.as_mut()) {
                backup_broken = sink.flush().await.is_err();
            }
        }
        backup_broken.then_some("backup connection broken")
    }

    /// Closes a connection someone opened to us, after its frames of this round.
    fn close_client(&mut self, conn: ConnId) {
        if let Some(sink) = self.clients.remove(&conn) {
            self.closing.insert(conn, sink);
            self.outgoing.push(Outgoing::Close(conn));
        }
    }

    /// Sends on a connection someone opened to us (a clerk, or the primary for acks): recorded
    /// now, written at the round's end.
    fn send_to_client(&mut self, conn: ConnId, to: &str, msg: Msg) {
        if !self.clients.contains_key(&conn) {
            // That peer hung up; a real server's reply would go nowhere too.
            return;
        }
        let msg_id = self.next_msg_id();
        let env = Envelope {
            msg_id,
            from: self.cfg.id.clone(),
            msg,
        };
        let frame = framing::encode(&env);
        self.reporter.event(EventKind::MsgSent {
            msg_id,
            from: env.from,
            to: to.into(),
            msg: env.msg,
        });
        self.outgoing.push(Outgoing::Client(conn, frame));
    }

    /// Declares the backup lost when the oldest forward's ack is overdue. The allowance is
    /// re-read every time: a slow-motion rise while the forward travels extends it.
    fn check_ack_deadline(&mut self) {
        let now = Instant::now();
        let overdue = self
            .backup
            .as_ref()
            .and_then(|l| l.queue.oldest_sent())
            .is_some_and(|sent| self.slow_motion.deadline(sent, ACK_TIMEOUT, ACK_HOPS) <= now);
        if overdue {
            self.backup_lost("backup did not acknowledge in time");
        }
    }

    fn backup_lost(&mut self, reason: &str) {
        let mut out = Vec::new();
        self.mark_backup_lost(reason, &mut out);
        self.carry_out(out, BACKUP_LINK, "");
    }

    fn mark_backup_lost(&mut self, reason: &str, out: &mut Vec<Output>) {
        if let Some(link) = self.backup.as_mut() {
            if link.lost {
                return;
            }
            link.lost = true;
            link.sink = None;
            link.queue.clear();
        }
        self.server.on_backup_lost(reason, out);
    }

    /// An armed crash fires at its point of `req`'s operation: record why we die, then die the
    /// way a crash does (SIGKILL), with whatever came next unsent.
    async fn die(&mut self, cause: CrashCause, req: RequestId) -> ! {
        self.reporter.event(EventKind::Crashed {
            pid: std::process::id(),
            cause,
            req: Some(req),
        });
        let _ = self.reporter.flush().await;
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
