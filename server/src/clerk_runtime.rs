//! The runtime around [`Clerk`]: real sockets, real timers, the clerk's own inbox.
//!
//! A clerk runs as one task, in its own `pbscope client` process (`client.rs`; its events go
//! over the control connection, [`Outlet::Control`]) or, for the load generator, inside the
//! supervisor (straight onto the bus, [`Outlet::Bus`]). The state machine sits behind a mutex
//! shared with its [`ClerkHandle`], so that a call starts (and its `op_invoked` is recorded) in
//! the same instant it is accepted, and a reset can end a call in progress with an `op_failed`
//! that no later answer can contradict. The task carries out the machine's sends, feeds it
//! replies, closes and timer ticks. Replies arrive in the clerk's own inbox, the same [`Wire`]
//! as a node's: slow motion, then the fault plan (lost, held by step mode, delayed,
//! duplicated). It must not decide anything the machine decides.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::StreamExt;
use shared::{Envelope, EventKind, FaultPlan, Msg, MsgId, NodeId, NodeReport, Op, StepAction};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::clerk::{Busy, Clerk, ClerkTiming, Failure, Now, Outcome, Output};
use crate::clock::RunClock;
use crate::framing::{self, FramedConn, Recorder};
use crate::oserror;
use crate::slowmo::SlowMotion;
use crate::wire::{Arrival, StepOrder, Wire, WireOut};

/// A server as a clerk knows it: a name and an address, in failover order.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// A report for a client process's control connection; `written` is told once it is in the
/// socket.
pub(crate) type Report = (NodeReport, Option<oneshot::Sender<()>>);

/// Where a clerk's events go: straight onto the bus (a clerk inside the supervisor), or over the
/// control connection of its `pbscope client` process, in the order made, each written before
/// the action it describes (a writer task drains `reports` into the socket).
#[derive(Debug)]
pub(crate) enum Outlet {
    Bus(Arc<Bus>),
    Control {
        reports: mpsc::UnboundedSender<Report>,
        clock: RunClock,
    },
}

impl Outlet {
    pub(crate) fn clock(&self) -> RunClock {
        match self {
            Outlet::Bus(bus) => bus.clock(),
            Outlet::Control { clock, .. } => *clock,
        }
    }

    /// Publishes an event that happened now.
    pub(crate) fn publish(&self, node: &str, kind: EventKind) {
        self.publish_at(node, self.clock().now_us(), kind);
    }

    /// Publishes an event stamped `t_us` (queued for the socket, in order, for a process).
    pub(crate) fn publish_at(&self, node: &str, t_us: u64, kind: EventKind) {
        match self {
            Outlet::Bus(bus) => bus.publish_at(node, t_us, kind),
            Outlet::Control { reports, .. } => {
                let _ = reports.send((NodeReport::Event { t_us, kind }, None));
            }
        }
    }

    /// Publishes events stamped by the clerk, in order: on the bus under one take of its lock
    /// (a call's events came four takes apart, and the load's clerks were most of the waits
    /// on that lock); for a process, queued for the socket one by one.
    pub(crate) fn publish_many(&self, node: &str, events: Vec<(u64, EventKind)>) {
        if events.is_empty() {
            return;
        }
        match self {
            Outlet::Bus(bus) => bus.publish_many(node, events),
            Outlet::Control { .. } => {
                for (t_us, kind) in events {
                    self.publish_at(node, t_us, kind);
                }
            }
        }
    }

    /// Records an event and returns once it is in the log's hands (for a process: written to
    /// the control socket, behind everything recorded before it).
    async fn record(&self, node: &str, kind: EventKind) -> anyhow::Result<()> {
        match self {
            Outlet::Bus(bus) => {
                bus.publish(node, kind);
                Ok(())
            }
            Outlet::Control { reports, clock } => {
                let (written, done) = oneshot::channel();
                let report = NodeReport::Event {
                    t_us: clock.now_us(),
                    kind,
                };
                reports
                    .send((report, Some(written)))
                    .map_err(|_| anyhow::anyhow!("control connection to the supervisor closed"))?;
                done.await
                    .map_err(|_| anyhow::anyhow!("control connection to the supervisor closed"))
            }
        }
    }
}

/// One call asked of a clerk.
#[derive(Debug)]
pub struct Call {
    pub op: Op,
    pub lock: String,
    pub tag: Option<String>,
    /// Told the answer (`Some(ok)`) or that the call was given up (`None`), for tools.
    pub done: Option<oneshot::Sender<Option<bool>>>,
}

/// The machine and what it asked for that the task has not done yet.
#[derive(Debug)]
struct Core {
    clerk: Clerk,
    /// Sends and disconnects, in the order the machine asked for them.
    io: VecDeque<Output>,
    done: Option<oneshot::Sender<Option<bool>>>,
}

/// The handle the supervisor keeps for a clerk; dropping it stops the clerk.
#[derive(Debug)]
pub struct ClerkHandle {
    core: Arc<Mutex<Core>>,
    bus: Arc<Outlet>,
    wake: Arc<Notify>,
    /// Step mode's decisions about messages held in the clerk's inbox.
    steps: mpsc::UnboundedSender<StepOrder>,
    task: JoinHandle<()>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

fn now(bus: &Outlet) -> Now {
    Now {
        at: Instant::now(),
        us: bus.clock().now_us(),
    }
}

/// Publishes `events` and then the machine's, at once, in order, and queues the rest for the
/// task. A call's events are handed to the bus before its outcome goes to its caller; they are
/// in the log by then unless the bus holds the reply's delivery until the server's report of
/// its send is read (`Bus::publish_locked`), and the completion with it.
fn carry(
    core: &mut Core,
    bus: &Outlet,
    t_us: u64,
    out: Vec<Output>,
    mut events: Vec<(u64, EventKind)>,
) {
    for o in out {
        match o {
            Output::Event(kind) => events.push((t_us, kind)),
            Output::Done(outcome) => {
                bus.publish_many(core.clerk.name(), std::mem::take(&mut events));
                if let Some(done) = core.done.take() {
                    let _ = done.send(match outcome {
                        Outcome::Answered(ok) => Some(ok),
                        Outcome::GaveUp => None,
                    });
                }
            }
            io @ (Output::Send { .. } | Output::Disconnect { .. }) => core.io.push_back(io),
        }
    }
    bus.publish_many(core.clerk.name(), events);
}

impl ClerkHandle {
    /// Starts the call now, unless the clerk is busy with another.
    pub fn submit(&self, call: Call) -> Result<(), Busy> {
        let mut core = lock(&self.core);
        let now = now(&self.bus);
        let mut out = Vec::new();
        core.clerk
            .invoke(call.op, &call.lock, call.tag, now, &mut out)?;
        core.done = call.done;
        carry(&mut core, &self.bus, now.us, out, Vec::new());
        drop(core);
        self.wake.notify_one();
        Ok(())
    }

    /// Step mode: carry out `action` on the message `msg_id` held in the clerk's inbox. The
    /// answer says whether the inbox held it.
    pub fn step(&self, msg_id: MsgId, action: StepAction) -> oneshot::Receiver<Result<(), String>> {
        let (done, answer) = oneshot::channel();
        // A clerk that stopped drops the order, and with it the answer: it holds nothing.
        let _ = self.steps.send(StepOrder {
            msg_id,
            action,
            done,
        });
        answer
    }

    /// Ends the call in progress, if any, with an `op_failed` saying why; the clerk stops.
    pub fn abandon(&self, reason: &str) {
        self.task.abort();
        let mut core = lock(&self.core);
        let mut out = Vec::new();
        core.clerk.abandon(reason, &mut out);
        let t = self.bus.clock().now_us();
        carry(&mut core, &self.bus, t, out, Vec::new());
    }
}

impl Drop for ClerkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which clerk to start, and what it starts with.
#[derive(Debug)]
pub(crate) struct ClerkSetup {
    pub id: u32,
    /// Which process of the client lane this is (0 first): part of every request id.
    pub incarnation: u32,
    /// Primary first.
    pub servers: Vec<ServerAddr>,
    /// High bits of its message ids, unique in the run.
    pub origin: u64,
    pub timing: ClerkTiming,
    /// A deliberately broken protocol (`--variant`), or `None`.
    pub variant: Option<shared::Variant>,
}

/// Starts clerk `id` talking to `servers` (primary first).
pub(crate) fn spawn(
    setup: ClerkSetup,
    bus: Arc<Outlet>,
    slow_motion: watch::Receiver<SlowMotion>,
    faults: watch::Receiver<Arc<FaultPlan>>,
) -> ClerkHandle {
    let ClerkSetup {
        id,
        incarnation,
        servers,
        origin,
        timing,
        variant,
    } = setup;
    let clerk = Clerk::new(
        id,
        servers.iter().map(|s| s.id.clone()).collect(),
        timing.clone(),
        slow_motion.borrow().clone(),
    )
    .with_incarnation(incarnation)
    .with_variant(variant);
    let core = Arc::new(Mutex::new(Core {
        clerk,
        io: VecDeque::new(),
        done: None,
    }));
    let wake = Arc::new(Notify::new());
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    let (steps_tx, steps) = mpsc::unbounded_channel();
    let name = shared::client_node(id);
    let plan = faults.borrow().clone();
    let delay = slow_motion.borrow().current();
    let runtime = Runtime {
        core: core.clone(),
        inbox: Wire::new(name.clone(), plan, delay),
        name,
        servers: servers.iter().map(|s| s.id.clone()).collect(),
        bus: bus.clone(),
        wake: wake.clone(),
        addrs: servers.iter().map(|s| s.addr).collect(),
        conns: servers.iter().map(|_| None).collect(),
        next_conn: 0,
        frames_tx,
        frames_rx,
        slow_motion,
        faults,
        steps,
        origin,
        next_msg: 0,
        connect_timeout: timing.connect_timeout,
    };
    let task = tokio::spawn(runtime.run());
    ClerkHandle {
        core,
        bus,
        wake,
        steps: steps_tx,
        task,
    }
}

/// One open connection to a server, with the task reading it.
#[derive(Debug)]
struct Conn {
    id: u64,
    sink: SplitSink<FramedConn, bytes::Bytes>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Runtime {
    core: Arc<Mutex<Core>>,
    /// The clerk's node name and its servers' (fixed for its life), kept here so a send or a
    /// delivery does not take the machine's lock to read them.
    name: NodeId,
    servers: Vec<NodeId>,
    bus: Arc<Outlet>,
    wake: Arc<Notify>,
    addrs: Vec<SocketAddr>,
    conns: Vec<Option<Conn>>,
    next_conn: u64,
    frames_tx: mpsc::UnboundedSender<(usize, u64, Arrival)>,
    frames_rx: mpsc::UnboundedReceiver<(usize, u64, Arrival)>,
    /// The clerk's inbox ("the wire"), per connection `(server, conn)`: replies wait out slow
    /// motion and meet the fault plan; a connection's end waits behind its replies.
    inbox: Wire<(usize, u64)>,
    /// The supervisor's slow-motion history (the delay in force now, and what is still held).
    slow_motion: watch::Receiver<SlowMotion>,
    /// The fault plan for arrivals from now on.
    faults: watch::Receiver<Arc<FaultPlan>>,
    /// Step mode's decisions about the messages this inbox holds.
    steps: mpsc::UnboundedReceiver<StepOrder>,
    origin: u64,
    next_msg: u64,
    connect_timeout: Duration,
}

/// The clerk's sends are recorded where its events go ([`Outlet`]) before they are written.
struct BusRecorder<'a> {
    bus: &'a Outlet,
    name: &'a str,
}

impl Recorder for BusRecorder<'_> {
    async fn record(&mut self, kind: EventKind) -> anyhow::Result<()> {
        self.bus.record(self.name, kind).await
    }
}

impl Runtime {
    /// Runs the machine's inputs through it and carries out what it asks.
    fn step(&self, f: impl FnOnce(&mut Clerk, Now, &mut Vec<Output>)) {
        self.step_after(Vec::new(), f);
    }

    /// [`Runtime::step`], with `events` (the wire's, about this input) published first and
    /// together with the machine's.
    fn step_after(
        &self,
        events: Vec<(u64, EventKind)>,
        f: impl FnOnce(&mut Clerk, Now, &mut Vec<Output>),
    ) {
        let mut core = lock(&self.core);
        let now = now(&self.bus);
        let mut out = Vec::new();
        f(&mut core.clerk, now, &mut out);
        carry(&mut core, &self.bus, now.us, out, events);
    }

    async fn run(mut self) {
        loop {
            self.do_io().await;
            let wake = lock(&self.core).clerk.next_wake();
            let due = self.inbox.next_due();
            let next = match (wake, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                Some((server, conn, arrival)) = self.frames_rx.recv() => {
                    self.on_arrival(server, conn, arrival);
                }
                _ = sleep_until_opt(next) => {
                    self.deliver_due();
                    self.step(|c, now, out| c.on_tick(now, out));
                }
                changed = self.slow_motion.changed() => {
                    if changed.is_err() {
                        return; // the supervisor is gone
                    }
                    let history = self.slow_motion.borrow_and_update().clone();
                    self.inbox.set_delay(history.current());
                    lock(&self.core).clerk.follow_slow_motion(history);
                }
                changed = self.faults.changed() => {
                    if changed.is_err() {
                        return; // the supervisor is gone
                    }
                    self.follow_faults();
                    // Step mode's end released what it held.
                    self.deliver_due();
                }
                Some(order) = self.steps.recv() => {
                    let result = self.inbox.step(order.msg_id, order.action);
                    if result.is_ok() {
                        self.deliver_due();
                    }
                    let _ = order.done.send(result);
                }
            }
        }
    }

    /// The plan in force changes for arrivals from now on; step mode stops the clerk's waits.
    fn follow_faults(&mut self) {
        let plan = self.faults.borrow_and_update().clone();
        lock(&self.core)
            .clerk
            .follow_step(plan.step, Instant::now());
        self.inbox.set_plan(plan);
    }

    fn on_arrival(&mut self, server: usize, conn: u64, arrival: Arrival) {
        // The wire: a reply, too, waits out the slow-motion delay and meets the fault plan in
        // force when it arrives (read here, so no change is missed), and the connection's end
        // waits behind it.
        if self.faults.has_changed().unwrap_or(false) {
            self.follow_faults();
        }
        let now = Instant::now();
        self.inbox.set_delay(self.slow_motion.borrow().current());
        match arrival {
            Arrival::Frame(env) => self.inbox.push((server, conn), now, env),
            Arrival::Closed(reason) => self.inbox.push_closed((server, conn), now, reason),
        }
        self.deliver_due();
    }

    /// Carries out what the inbox hands out now: reports, then deliveries and ends.
    fn deliver_due(&mut self) {
        while let Some(out) = self.inbox.pop(Instant::now()) {
            let (server, env, duplicate) = match out {
                WireOut::Deliver {
                    conn: (server, _),
                    env,
                    duplicate,
                } => (server, env, duplicate),
                WireOut::Lost { env, reason } => {
                    self.bus.publish(
                        &self.name,
                        EventKind::MsgLost {
                            msg_id: env.msg_id,
                            from: env.from,
                            to: self.name.clone(),
                            reason: reason.as_str().to_owned(),
                        },
                    );
                    continue;
                }
                WireOut::Held { env } => {
                    self.bus.publish(
                        &self.name,
                        EventKind::MsgHeld {
                            msg_id: env.msg_id,
                            from: env.from,
                            to: self.name.clone(),
                            msg: env.msg,
                        },
                    );
                    continue;
                }
                WireOut::Closed {
                    conn: (server, conn),
                    reason,
                } => {
                    if self.conns[server].as_ref().is_some_and(|c| c.id == conn) {
                        self.conns[server] = None;
                        self.step(|c, now, out| c.on_closed(server, &reason, now, out));
                    }
                    continue;
                }
            };
            let delivered = EventKind::MsgDelivered {
                msg_id: env.msg_id,
                from: env.from.clone(),
                to: self.name.clone(),
                duplicate,
            };
            let delivered = vec![(self.bus.clock().now_us(), delivered)];
            if let Msg::Reply { req, ok } = env.msg {
                self.step_after(delivered, |c, now, out| {
                    c.on_reply(server, req, ok, now, out)
                });
            } else {
                self.bus.publish_many(&self.name, delivered);
            }
        }
    }

    async fn do_io(&mut self) {
        loop {
            let next = lock(&self.core).io.pop_front();
            match next {
                None => return,
                Some(Output::Disconnect { server }) => self.conns[server] = None,
                Some(Output::Send {
                    server,
                    req,
                    op,
                    lock: name,
                }) => {
                    if let Err(failure) = self
                        .send(
                            server,
                            Msg::Request {
                                req,
                                op,
                                lock: name,
                            },
                        )
                        .await
                    {
                        self.conns[server] = None;
                        self.step(|c, now, out| c.on_send_failed(server, failure, now, out));
                    }
                }
                Some(_) => {}
            }
        }
    }

    async fn connect(&mut self, server: usize) -> Result<(), Failure> {
        if self.conns[server].is_some() {
            return Ok(());
        }
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.addrs[server]),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if oserror::is_local_resource_error(&e) => {
                return Err(Failure::Local(e.to_string()))
            }
            Ok(Err(e)) => return Err(Failure::Server(format!("connection failed: {e}"))),
            Err(_) => return Err(Failure::Server("connect timed out".into())),
        };
        let (sink, mut stream) = framing::framed(stream).split();
        self.next_conn += 1;
        let id = self.next_conn;
        let tx = self.frames_tx.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match framing::recv::<Envelope, _>(&mut stream).await {
                    Ok(env) => {
                        if tx.send((server, id, Arrival::Frame(env))).is_err() {
                            return;
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            let _ = tx.send((server, id, Arrival::Closed(reason)));
        });
        self.conns[server] = Some(Conn { id, sink, reader });
        Ok(())
    }

    async fn send(&mut self, server: usize, msg: Msg) -> Result<(), Failure> {
        self.connect(server).await?;
        self.next_msg += 1;
        let env = Envelope {
            msg_id: MsgId::new(self.origin, self.next_msg),
            from: self.name.clone(),
            msg,
        };
        let Some(conn) = self.conns[server].as_mut() else {
            return Err(Failure::Server("connection closed".into()));
        };
        let mut recorder = BusRecorder {
            bus: &self.bus,
            name: &self.name,
        };
        match framing::send_recorded(&mut recorder, &mut conn.sink, &env, &self.servers[server])
            .await
        {
            Ok(true) => Ok(()),
            _ => Err(Failure::Server("connection closed".into())),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
