//! The supervisor: spawns the server and client processes, reads their event streams, kills,
//! stops, resumes and restarts them on command.
//!
//! It is the observer and the fault controller, never a router: lock-service traffic goes from
//! clerk to server and server to server over their own TCP connections. Each process (`pbscope
//! node`, `pbscope client`) is spawned with `kill_on_drop` and a parent-death signal, and exits
//! when its control connection closes, so none outlives the supervisor however it ends.
//!
//! A client process reports its events like a node; the supervisor only keeps track of its call
//! in progress, so that `client_busy` is answered at once and exactly, and so that a client that
//! dies mid-call (`crash_client`, `reset`) ends its call with `op_failed`.

use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shared::{
    client_node, CrashCause, CrashPoint, Cut, Endpoint, ErrorCode, EventKind, FaultPlan, LinkRule,
    MsgId, NodeControl, NodeId, NodeRef, NodeReport, Op, Probability, RequestId, Role, StepAction,
    ANY, SUPERVISOR,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::clerk::{Busy, ClerkTiming};
use crate::clerk_runtime::{self, Call, ClerkHandle, ClerkSetup, Outlet, ServerAddr};
use crate::framing::{self, FramedConn};
use crate::load::LoadEngine;
use crate::oserror::AcceptPause;
use crate::slowmo::SlowMotion;

/// How the cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `pbscope` binary, run as `pbscope node ...` for each server.
    pub node_exe: PathBuf,
    pub slow_motion_ms: u64,
    pub clerk_timing: ClerkTiming,
    /// Largest client id a command may name (at most [`shared::LOAD_FIRST_CLIENT`] - 1: the
    /// ids from there on are the load generator's).
    pub max_client: u32,
    /// Most distinct lock names one cluster generation takes (the load generator's reserved
    /// names, `load-N` and `load-hot`, do not count).
    pub max_locks: usize,
    /// A deliberately broken protocol every node and clerk runs (`--variant`), or `None`.
    pub variant: Option<shared::Variant>,
}

/// Distinct lock names a generation takes unless configured otherwise: far beyond what a person
/// types, small enough that a script cannot grow every table and symbol list without bound.
pub const DEFAULT_MAX_LOCKS: usize = 10_000;

/// Why a cluster command failed; each maps to an [`ErrorCode`] on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no server or role named {0:?} (servers: {1}; roles: primary, backup)")]
    UnknownNode(String, String),
    #[error("{0}")]
    NodeDead(String),
    #[error(transparent)]
    ClientBusy(#[from] Busy),
    #[error(
        "this cluster already uses {0} distinct lock names, the most it takes; reuse one, or reset"
    )]
    TooManyLocks(usize),
    #[error("client id {0} is out of range (0..={1})")]
    BadClient(u32, u32),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotPaused(String),
    #[error("{0}")]
    NodeAlive(String),
    #[error("{0}")]
    NodePaused(String),
    /// A field (or a node name) this command can't take (say `"*"` where one server is needed).
    #[error("{0}")]
    BadField(String),
    #[error("{0}")]
    UnknownMessage(String),
    #[error("{0}")]
    NotStepping(String),
}

impl ClusterError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ClusterError::UnknownNode(..) => ErrorCode::UnknownNode,
            ClusterError::NodeDead(_) => ErrorCode::NodeDead,
            ClusterError::ClientBusy(_) => ErrorCode::ClientBusy,
            ClusterError::TooManyLocks(_) => ErrorCode::TooManyLocks,
            ClusterError::BadClient(..) => ErrorCode::BadField,
            ClusterError::Unavailable(_) => ErrorCode::Unavailable,
            ClusterError::NotPaused(_) => ErrorCode::NotPaused,
            ClusterError::NodeAlive(_) => ErrorCode::NodeAlive,
            ClusterError::NodePaused(_) => ErrorCode::NodePaused,
            ClusterError::BadField(_) => ErrorCode::BadField,
            ClusterError::UnknownMessage(_) => ErrorCode::UnknownMessage,
            ClusterError::NotStepping(_) => ErrorCode::NotStepping,
        }
    }
}

/// How a control command with a ticket ended: `Applied`, or `Failed` with the node's message.
/// A node that dies first drops the sender.
type ControlDone = oneshot::Sender<Result<(), String>>;

/// A control command for a process, with who to tell once it took effect.
type ControlSend = (NodeControl, Option<ControlDone>);

/// How long a fault-plan change waits for each process to confirm it. A stopped (paused)
/// process never answers: the change goes on without it, and it applies the plan when it runs.
const FAULTS_WAIT: Duration = Duration::from_secs(2);

/// Most link settings the fault plan holds. Every `faults_changed` carries the whole plan, every
/// snapshot carries many of them, and the plan goes to each process in one control frame: an
/// unbounded plan let one viewer make every event (and each snapshot) grow without end.
pub const MAX_LINK_RULES: usize = 128;

/// Most cuts the fault plan holds (see [`MAX_LINK_RULES`]).
pub const MAX_CUTS: usize = 128;

/// How long a step decision (`deliver`, `drop`, `duplicate`) waits for the inbox holding it.
const STEP_WAIT: Duration = Duration::from_secs(5);

/// Why the supervisor killed a process, and when (µs on the run's clock): published as
/// `crashed` once every event the process reported before it died has been published.
type KillCause = Arc<StdMutex<Option<(CrashCause, u64)>>>;

/// SIGKILLs `pid`, remembering why (the first cause given wins) for its `crashed` event.
fn sigkill(pid: u32, kill_cause: &KillCause, cause: CrashCause, t_us: u64) {
    if let Ok(mut c) = kill_cause.lock() {
        c.get_or_insert((cause, t_us));
    }
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// A running process (server or client) as the supervisor holds it.
#[derive(Debug)]
struct Proc {
    pid: u32,
    ctrl: mpsc::UnboundedSender<ControlSend>,
    kill_cause: KillCause,
    /// Becomes true once the process is reaped and its events are all published.
    exited: watch::Receiver<bool>,
}

impl Proc {
    /// SIGKILLs the process, remembering why for its `crashed` event.
    fn kill(&self, cause: CrashCause, t_us: u64) {
        sigkill(self.pid, &self.kill_cause, cause, t_us);
    }

    fn is_exited(&self) -> bool {
        *self.exited.borrow()
    }

    async fn wait_exited(&self, within: Duration) -> bool {
        let mut exited = self.exited.clone();
        let reaped = tokio::time::timeout(within, exited.wait_for(|e| *e))
            .await
            .is_ok();
        reaped
    }

    /// Sends a control command and waits (at most `within`) until the process applied it.
    /// False if it did not: it died, refused, or did not answer in time.
    async fn control(&self, cmd: NodeControl, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.ctrl.send((cmd, Some(tx))).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(Ok(()))))
    }
}

/// How a server is started, so a restart starts it the same way: its first role, its port
/// (the same one again: clerks and the primary know it by that address) and its backup.
#[derive(Debug, Clone)]
struct ServerSpec {
    role: Role,
    port: u16,
    backup: Option<String>,
}

/// A server of this generation: how it is started and its current (or last) process.
#[derive(Debug)]
struct ServerSlot {
    spec: ServerSpec,
    proc_: Proc,
    /// Stopped by `pause` (SIGSTOP) and not resumed since.
    paused: bool,
}

impl ServerSlot {
    /// A server just started: running, not paused.
    fn running(spec: ServerSpec, proc_: Proc) -> Self {
        Self {
            spec,
            proc_,
            paused: false,
        }
    }
}

/// The call a client process has in progress, as the supervisor tracks it: `client_busy` is
/// answered from here at once, and a process that dies with it ends it with `op_failed`.
#[derive(Debug)]
struct ClientCall {
    op: Op,
    lock: String,
    tag: Option<String>,
    /// Known once the process reported the call's `op_invoked`.
    req: Option<RequestId>,
    done: Option<oneshot::Sender<Option<bool>>>,
}

/// What the supervisor and a client process's watcher share.
#[derive(Debug, Default)]
struct ClientShared {
    call: StdMutex<Option<ClientCall>>,
    /// Why a call in progress ends if the process dies (set before the supervisor kills it).
    end_reason: StdMutex<Option<String>>,
}

impl ClientShared {
    fn call(&self) -> std::sync::MutexGuard<'_, Option<ClientCall>> {
        self.call.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_end_reason(&self, reason: &str) {
        *self.end_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    /// Follows the process's reports (before they are published): the call's id once it is
    /// invoked, its end once it is answered or given up (the client is free again at once).
    fn observe(&self, kind: &EventKind) {
        let ended = match kind {
            EventKind::OpInvoked { req, .. } => {
                if let Some(call) = self.call().as_mut() {
                    call.req = Some(*req);
                }
                return;
            }
            EventKind::OpCompleted { req, ok, .. } => (*req, Some(*ok)),
            EventKind::OpFailed { req, .. } => (*req, None),
            _ => return,
        };
        let mut call = self.call();
        if call.as_ref().is_some_and(|c| c.req == Some(ended.0)) {
            if let Some(done) = call.take().and_then(|c| c.done) {
                let _ = done.send(ended.1);
            }
        }
    }
}

/// A client process as the supervisor holds it.
#[derive(Debug)]
struct ClientProc {
    proc_: Proc,
    shared: Arc<ClientShared>,
}

/// A client lane: its current (or last) process, and how many it started (the next one's
/// incarnation).
#[derive(Debug, Default)]
struct ClientSlot {
    started: u32,
    proc_: Option<ClientProc>,
}

impl ClientSlot {
    fn live(&self) -> Option<&ClientProc> {
        self.proc_.as_ref().filter(|p| !p.proc_.is_exited())
    }
}

/// One generation of the cluster: the servers and clerks that a `reset` replaces.
#[derive(Debug, Default)]
struct Generation {
    number: u64,
    servers: BTreeMap<String, ServerSlot>,
    addrs: Vec<ServerAddr>,
    /// Client processes (`pbscope serve`).
    clients: HashMap<u32, ClientSlot>,
    /// The load generator's clerks (clients from [`shared::LOAD_FIRST_CLIENT`]), inside this
    /// process: one process for all of them, their events straight onto the bus.
    clerks: HashMap<u32, ClerkHandle>,
    /// Lock names used in this generation (bounded by `max_locks`).
    locks: HashSet<String>,
}

type ReadyWaiters = StdMutex<HashMap<u64, oneshot::Sender<(NodeReport, FramedConn)>>>;

/// See the module docs.
#[derive(Debug)]
pub struct Cluster {
    bus: Arc<Bus>,
    cfg: ClusterConfig,
    control_addr: SocketAddr,
    waiting_ready: Arc<ReadyWaiters>,
    gen: Mutex<Generation>,
    /// The slow-motion delay and its recent changes (and whether step mode stops the clocks);
    /// every clerk follows it.
    slow_motion: watch::Sender<SlowMotion>,
    /// The fault plan in force, every name resolved; every clerk's inbox follows it, every node
    /// is sent it (`set_faults`).
    faults: watch::Sender<Arc<FaultPlan>>,
    next_origin: AtomicU64,
    next_ticket: AtomicU64,
    accept_task: tokio::task::JoinHandle<()>,
    /// True while a reset replaces the generation (commands that would wait for it are
    /// refused at once instead).
    resetting: AtomicBool,
    /// The load generator, made on first use.
    load: std::sync::OnceLock<Arc<LoadEngine>>,
}

/// The servers of a cluster: id and initial role, primary first.
const SERVERS: [(&str, Role); 2] = [("s1", Role::Primary), ("s2", Role::Backup)];

/// How long a process has to apply a control command (slow motion, a call) before the
/// supervisor goes on without it.
const CONTROL_WAIT: Duration = Duration::from_secs(5);

/// Why a call in progress ended when its client's process was killed, by cause.
const CLIENT_CRASHED: &str = "client crashed: its effect is unknown";
const RESET_REASON: &str = "the cluster was reset while the call was in progress";
const SHUTDOWN_REASON: &str = "pbscope was shut down while the call was in progress";

/// A process the supervisor is starting: what it is, for its command line and its watcher.
enum Starting<'a> {
    Server {
        id: &'a str,
        spec: &'a ServerSpec,
    },
    Client {
        id: u32,
        incarnation: u32,
        servers: &'a [ServerAddr],
    },
}

impl Starting<'_> {
    fn name(&self) -> String {
        match self {
            Starting::Server { id, .. } => (*id).to_owned(),
            Starting::Client { id, .. } => shared::client_node(*id).to_string(),
        }
    }
}

impl Cluster {
    /// Opens the control listener and starts the first generation.
    pub async fn start(bus: Arc<Bus>, cfg: ClusterConfig) -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the control listener")?;
        let control_addr = listener.local_addr()?;
        let waiting_ready: Arc<ReadyWaiters> = Arc::default();
        let accept_task = tokio::spawn(accept_nodes(listener, waiting_ready.clone()));
        let cluster = Arc::new(Self {
            bus,
            slow_motion: watch::Sender::new(SlowMotion::new(
                Duration::from_millis(cfg.slow_motion_ms),
                tokio::time::Instant::now(),
            )),
            faults: watch::Sender::new(Arc::new(FaultPlan {
                // Within JavaScript's exact integers (2^53), so any viewer can replay it.
                seed: random_u64() >> 11,
                ..FaultPlan::default()
            })),
            cfg,
            control_addr,
            waiting_ready,
            gen: Mutex::new(Generation::default()),
            next_origin: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            accept_task,
            resetting: AtomicBool::new(false),
            load: std::sync::OnceLock::new(),
        });
        {
            let mut gen = cluster.gen.lock().await;
            let plan = cluster.plan();
            cluster.bus.publish(
                SUPERVISOR,
                EventKind::FaultsChanged {
                    change: format!("seed {} (chosen at random at start)", plan.seed),
                    plan: (*plan).clone(),
                },
            );
            cluster.start_servers(&mut gen).await?;
        }
        Ok(cluster)
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// A new sender's message-id origin, announced to the bus (which orders deliveries only
    /// of messages from senders it knows).
    fn origin(&self) -> u64 {
        let origin = self.next_origin.fetch_add(1, Ordering::Relaxed);
        self.bus.expect_origin(origin);
        origin
    }

    fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts the servers of a generation. All or nothing: if one fails to start, the ones
    /// already started are killed (and reaped) and the generation has no servers.
    async fn start_servers(&self, gen: &mut Generation) -> anyhow::Result<()> {
        gen.addrs.clear();
        gen.servers.clear();
        // The backup first, so the primary starts knowing where to forward.
        let mut started: Vec<(String, ServerSpec, Proc)> = Vec::new();
        let mut backup = None;
        for (id, role) in SERVERS.iter().rev() {
            let mut spec = ServerSpec {
                role: *role,
                port: 0,
                backup: backup.clone(),
            };
            match self.spawn_server(id, &spec).await {
                Ok((proc_, port)) => {
                    spec.port = port;
                    if *role == Role::Backup {
                        backup = Some(format!("{id}=127.0.0.1:{port}"));
                    }
                    started.push((id.to_string(), spec, proc_));
                }
                Err(e) => {
                    let t = self.bus.clock().now_us();
                    for (_, _, p) in &started {
                        p.kill(CrashCause::Reset, t);
                    }
                    for (_, _, p) in &started {
                        p.wait_exited(Duration::from_secs(5)).await;
                    }
                    return Err(e);
                }
            }
        }
        started.reverse();
        for (id, spec, proc_) in started {
            gen.addrs.push(ServerAddr {
                id: id.as_str().into(),
                addr: SocketAddr::from(([127, 0, 0, 1], spec.port)),
            });
            gen.servers.insert(id, ServerSlot::running(spec, proc_));
        }
        Ok(())
    }

    /// Spawns one `pbscope node` process and waits until it is listening.
    async fn spawn_server(&self, id: &str, spec: &ServerSpec) -> anyhow::Result<(Proc, u16)> {
        let (proc_, report, _) = self.spawn(Starting::Server { id, spec }).await?;
        let NodeReport::Ready { port, .. } = report else {
            unreachable!("spawn returns the ready report")
        };
        Ok((proc_, port))
    }

    /// Spawns a process (`pbscope node` or `pbscope client`), waits for its `ready`, publishes
    /// its start and sets a watcher on its reports.
    async fn spawn(
        &self,
        what: Starting<'_>,
    ) -> anyhow::Result<(Proc, NodeReport, Option<Arc<ClientShared>>)> {
        let name = what.name();
        let token = random_u64();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.lock_waiters().insert(token, ready_tx);
        let origin = self.origin();
        let mut cmd = tokio::process::Command::new(&self.cfg.node_exe);
        match &what {
            Starting::Server { id, spec } => {
                cmd.arg("node");
                if let Some(b) = &spec.backup {
                    cmd.args(["--backup", b]);
                }
                cmd.args(["--id", id])
                    .args(["--role", role_name(spec.role)])
                    .args(["--port", &spec.port.to_string()])
                    .args(["--slow-motion-ms", &self.slow_motion_ms().to_string()]);
            }
            Starting::Client {
                id,
                incarnation,
                servers,
            } => {
                let t = &self.cfg.clerk_timing;
                let ages: Vec<String> = self
                    .slow_motion
                    .borrow()
                    .to_ages(tokio::time::Instant::now())
                    .iter()
                    .map(|(ago, delay)| format!("{}:{}", ago.as_micros(), delay.as_millis()))
                    .collect();
                cmd.arg("client")
                    .args(["--client", &id.to_string()])
                    .args(["--incarnation", &incarnation.to_string()])
                    .args(["--slow-motion", &ages.join(",")])
                    .args(["--reply-timeout-ms", &ms(t.reply_timeout)])
                    .args(["--connect-timeout-ms", &ms(t.connect_timeout)])
                    .args(["--give-up-ms", &ms(t.give_up_after)])
                    .args(["--retry-pause-ms", &ms(t.retry_pause)]);
                for s in *servers {
                    cmd.args(["--server", &format!("{}={}", s.id, s.addr)]);
                }
            }
        }
        if let Some(v) = self.cfg.variant {
            cmd.args(["--variant", v.name()]);
        }
        let spawned = cmd
            .args(["--control", &self.control_addr.to_string()])
            .args(["--token", &token.to_string()])
            .args(["--epoch-ns", &self.bus.clock().epoch_ns().to_string()])
            .args(["--origin", &origin.to_string()])
            .args(["--parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} for {name}", self.cfg.node_exe.display()));
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.lock_waiters().remove(&token);
                return Err(e);
            }
        };
        let ready = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), ready_rx) => r,
            status = child.wait() => {
                self.lock_waiters().remove(&token);
                return Err(anyhow!("{name} exited before it was ready ({status:?})"));
            }
        };
        let (report, conn) = match ready {
            Ok(Ok(r)) => r,
            _ => {
                self.lock_waiters().remove(&token);
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(anyhow!("{name} did not report ready within 10 s"));
            }
        };
        let NodeReport::Ready { pid, port, .. } = report else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(anyhow!("{name} sent something else than ready first"));
        };
        let client = match &what {
            Starting::Server { spec, .. } => {
                self.bus.publish(
                    &name,
                    EventKind::ProcessStarted {
                        pid,
                        role: spec.role,
                        port,
                    },
                );
                None
            }
            Starting::Client { incarnation, .. } => {
                self.bus.publish(
                    &name,
                    EventKind::ClientStarted {
                        pid,
                        incarnation: *incarnation,
                    },
                );
                Some(Arc::new(ClientShared::default()))
            }
        };
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        // The plan in force before anything can reach the process: nobody sends to it before
        // this returns.
        let (plan_tx, plan_rx) = oneshot::channel();
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let plan = (*self.plan()).clone();
        let _ = ctrl_tx.send((NodeControl::SetFaults { plan, ticket }, Some(plan_tx)));
        let (exited_tx, exited_rx) = watch::channel(false);
        let kill_cause = KillCause::default();
        tokio::spawn(watch_node(
            NodeWatch {
                id: name,
                pid,
                bus: self.bus.clone(),
                kill_cause: kill_cause.clone(),
                exited: exited_tx,
                exited_rx: exited_rx.clone(),
                client: client.clone(),
            },
            child,
            conn,
            ctrl_rx,
        ));
        if !matches!(
            tokio::time::timeout(FAULTS_WAIT, plan_rx).await,
            Ok(Ok(Ok(())))
        ) {
            tracing::warn!("{} did not confirm the fault plan in time", what.name());
        }
        let proc_ = Proc {
            pid,
            ctrl: ctrl_tx,
            kill_cause,
            exited: exited_rx,
        };
        Ok((proc_, report, client))
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<(NodeReport, FramedConn)>>> {
        self.waiting_ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids of this generation's servers, for error messages.
    fn server_names(gen: &Generation) -> String {
        let known: Vec<&str> = gen.servers.keys().map(String::as_str).collect();
        known.join(", ")
    }

    /// Resolves a stable id or a role to a live server of this generation.
    fn resolve(&self, gen: &Generation, node: &NodeRef) -> Result<String, ClusterError> {
        let id = match node {
            NodeRef::Role(role) => self
                .bus
                .view(|v| v.holder_of(*role))
                .ok_or_else(|| ClusterError::NodeDead(format!("no live server is {node} now")))?,
            NodeRef::Server(id) if gen.servers.contains_key(id.as_str()) => id.clone(),
            NodeRef::All => {
                return Err(ClusterError::BadField(
                    "\"*\" (every server) can't be used here: name one server".into(),
                ))
            }
            NodeRef::Server(other) => {
                return Err(ClusterError::UnknownNode(
                    other.to_string(),
                    Self::server_names(gen),
                ));
            }
        };
        // The picture and the generation can disagree for a moment (a reset that failed half
        // way): only a process this generation holds can be acted on.
        let slot = gen.servers.get(id.as_str()).ok_or_else(|| {
            ClusterError::NodeDead(format!("{id} is not running in this cluster"))
        })?;
        if !self.bus.view(|v| v.is_alive(&id)) || slot.proc_.is_exited() {
            return Err(ClusterError::NodeDead(format!("{id} is already dead")));
        }
        Ok(id.to_string())
    }

    /// The live servers a command names: one (by id or role), or every live one for `"*"`.
    fn resolve_many(&self, gen: &Generation, node: &NodeRef) -> Result<Vec<String>, ClusterError> {
        if *node != NodeRef::All {
            return Ok(vec![self.resolve(gen, node)?]);
        }
        let live: Vec<String> = gen
            .servers
            .iter()
            .filter(|(id, s)| !s.proc_.is_exited() && self.bus.view(|v| v.is_alive(id)))
            .map(|(id, _)| id.clone())
            .collect();
        if live.is_empty() {
            return Err(ClusterError::NodeDead("every server is dead".into()));
        }
        Ok(live)
    }

    /// A live server that is not paused (commands that need it to run refuse a paused one).
    fn resolve_running(&self, gen: &Generation, node: &NodeRef) -> Result<String, ClusterError> {
        let id = self.resolve(gen, node)?;
        if gen.servers.get(&id).is_some_and(|s| s.paused) {
            return Err(ClusterError::NodePaused(format!(
                "{id} is paused (it runs nothing, so it can't be armed or go silent); resume it first"
            )));
        }
        Ok(id)
    }

    /// SIGKILLs a server (or every live server at once, `"*"`) and waits until each is reaped
    /// and its `crashed` is published (after everything it reported before it died).
    pub async fn crash(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let mut gen = self.gen.lock().await;
        let ids = self.resolve_many(&gen, node)?;
        let t = self.bus.clock().now_us();
        for id in &ids {
            if let Some(s) = gen.servers.get_mut(id) {
                // SIGKILL ends a stopped process too.
                s.proc_.kill(CrashCause::Command, t);
                s.paused = false;
            }
        }
        let waits = ids.iter().filter_map(|id| {
            let s = gen.servers.get(id)?;
            Some(async move {
                (
                    id,
                    s.proc_.pid,
                    s.proc_.wait_exited(Duration::from_secs(5)).await,
                )
            })
        });
        let mut done = Vec::new();
        for (id, pid, exited) in futures_util::future::join_all(waits).await {
            if !exited {
                return Err(ClusterError::Unavailable(format!(
                    "{id} (pid {pid}) did not exit after SIGKILL"
                )));
            }
            done.push(format!("{id} (pid {pid})"));
        }
        Ok(format!("SIGKILL sent to {}; gone", done.join(", ")))
    }

    /// `crash` with `dying_ms`: the server (or every live one) goes silent now and is killed
    /// `dying_ms` later (its watcher kills it when it reports `dying`).
    pub async fn crash_dying(&self, node: &NodeRef, dying_ms: u64) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let ids = if *node == NodeRef::All {
            self.resolve_many(&gen, node)?
        } else {
            vec![self.resolve(&gen, node)?]
        };
        for id in &ids {
            if gen.servers.get(id).is_some_and(|s| s.paused) {
                return Err(ClusterError::NodePaused(format!(
                    "{id} is paused: it can't go silent by itself; resume it first, or crash it without dying_ms"
                )));
            }
        }
        for id in &ids {
            if let Some(s) = gen.servers.get(id) {
                let _ = s.proc_.ctrl.send((
                    NodeControl::GoSilent {
                        dies_in_ms: dying_ms,
                    },
                    None,
                ));
            }
        }
        Ok(format!(
            "{} go{} silent now and {} killed in {dying_ms} ms",
            ids.join(", "),
            if ids.len() == 1 { "es" } else { "" },
            if ids.len() == 1 { "is" } else { "are" }
        ))
    }

    /// Arms `crash_before_reply` on a server.
    pub async fn crash_before_reply(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let id = self.resolve_running(&gen, node)?;
        self.send_control(&gen, &id, NodeControl::ArmCrashBeforeReply)?;
        Ok(format!(
            "{id} will execute its next client request and die before replying"
        ))
    }

    /// Arms a crash at `point` of the next operation that reaches the server there. A point of
    /// the other role is armed too: it fires if the server comes to play that role.
    pub async fn crash_at(
        &self,
        node: &NodeRef,
        point: CrashPoint,
        dying_ms: Option<u64>,
    ) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let id = self.resolve_running(&gen, node)?;
        self.send_control(&gen, &id, NodeControl::ArmCrash { point, dying_ms })?;
        let how = match dying_ms {
            Some(ms) => format!("go silent and die {ms} ms later"),
            None => "die".to_owned(),
        };
        Ok(format!(
            "{id} will {how} at {} of its next operation",
            point.name()
        ))
    }

    fn send_control(
        &self,
        gen: &Generation,
        id: &str,
        cmd: NodeControl,
    ) -> Result<(), ClusterError> {
        gen.servers
            .get(id)
            .and_then(|s| s.proc_.ctrl.send((cmd, None)).ok())
            .ok_or_else(|| ClusterError::NodeDead(format!("{id} is exiting")))
    }

    /// SIGSTOPs a server (or every live one, `"*"`): alive, running nothing.
    pub async fn pause(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let mut gen = self.gen.lock().await;
        let ids = self.resolve_many(&gen, node)?;
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| gen.servers.get(id).is_some_and(|s| !s.paused))
            .collect();
        let done = self.stop_or_continue(&mut gen, ids, true)?;
        if done.is_empty() {
            return Ok("already paused".to_owned());
        }
        Ok(format!("SIGSTOP sent to {}", done.join(", ")))
    }

    /// SIGCONTs a paused server (or every paused one, `"*"`). Control commands it missed while
    /// stopped (slow motion) are waiting in its socket: it applies them now.
    pub async fn resume(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let mut gen = self.gen.lock().await;
        let ids: Vec<String> = match node {
            NodeRef::All => gen
                .servers
                .iter()
                .filter(|(_, s)| s.paused && !s.proc_.is_exited())
                .map(|(id, _)| id.clone())
                .collect(),
            one => {
                let id = self.resolve(&gen, one)?;
                if !gen.servers.get(&id).is_some_and(|s| s.paused) {
                    return Err(ClusterError::NotPaused(format!("{id} is not paused")));
                }
                vec![id]
            }
        };
        if ids.is_empty() {
            return Err(ClusterError::NotPaused("no server is paused".into()));
        }
        let done = self.stop_or_continue(&mut gen, ids, false)?;
        Ok(format!("SIGCONT sent to {}", done.join(", ")))
    }

    /// SIGSTOPs (`stop`) or SIGCONTs the servers `ids` and publishes `paused` or `resumed` for
    /// each; returns them as "s1 (pid 42)".
    fn stop_or_continue(
        &self,
        gen: &mut Generation,
        ids: Vec<String>,
        stop: bool,
    ) -> Result<Vec<String>, ClusterError> {
        let mut done = Vec::new();
        for id in ids {
            let Some(s) = gen.servers.get_mut(&id) else {
                continue;
            };
            let pid = s.proc_.pid;
            let (signal, event) = if stop {
                (Signal::SIGSTOP, EventKind::Paused { pid })
            } else {
                (Signal::SIGCONT, EventKind::Resumed { pid })
            };
            kill(Pid::from_raw(pid as i32), signal).map_err(|e| {
                ClusterError::Unavailable(format!("{signal} to {id} (pid {pid}): {e}"))
            })?;
            s.paused = stop;
            self.bus.publish(&id, event);
            done.push(format!("{id} (pid {pid})"));
        }
        Ok(done)
    }

    /// Starts a fresh process for a dead server (or every dead one, `"*"`): same port, first
    /// role, first backup address, empty lock table (Lab 1 has no recovery).
    pub async fn restart(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let mut gen = self.gen.lock().await;
        if gen.servers.is_empty() {
            return Err(ClusterError::Unavailable(
                "the cluster is not running".into(),
            ));
        }
        let dead = |gen: &Generation, id: &str| {
            gen.servers
                .get(id)
                .is_some_and(|s| s.proc_.is_exited() || !self.bus.view(|v| v.is_alive(id)))
        };
        let ids: Vec<String> = match node {
            NodeRef::All => {
                let ids: Vec<String> = gen
                    .servers
                    .keys()
                    .filter(|id| dead(&gen, id))
                    .cloned()
                    .collect();
                if ids.is_empty() {
                    return Err(ClusterError::NodeAlive("every server is alive".into()));
                }
                ids
            }
            NodeRef::Role(role) => {
                return Err(match self.bus.view(|v| v.holder_of(*role)) {
                    Some(id) => ClusterError::NodeAlive(format!("{id}, the {node}, is alive")),
                    None => ClusterError::NodeDead(format!(
                        "no live server is {node}; name the dead server to restart ({})",
                        Self::server_names(&gen)
                    )),
                });
            }
            NodeRef::Server(id) => {
                if !gen.servers.contains_key(id.as_str()) {
                    return Err(ClusterError::UnknownNode(
                        id.to_string(),
                        Self::server_names(&gen),
                    ));
                }
                if !dead(&gen, id) {
                    return Err(ClusterError::NodeAlive(format!(
                        "{id} is alive; only a dead server can be restarted"
                    )));
                }
                vec![id.to_string()]
            }
        };
        let mut done = Vec::new();
        for id in ids {
            let Some(spec) = gen.servers.get(&id).map(|s| s.spec.clone()) else {
                continue;
            };
            // The old process is gone: its reports are all published before the new one's.
            if let Some(s) = gen.servers.get(&id) {
                s.proc_.wait_exited(Duration::from_secs(5)).await;
            }
            let (proc_, _) = self.spawn_server(&id, &spec).await.map_err(|e| {
                ClusterError::Unavailable(format!(
                    "{id} did not restart on port {}: {e:#}",
                    spec.port
                ))
            })?;
            done.push(format!("{id} (pid {}, port {})", proc_.pid, spec.port));
            gen.servers.insert(id, ServerSlot::running(spec, proc_));
        }
        Ok(format!(
            "restarted {}, empty, in its first role",
            done.join(", ")
        ))
    }

    /// SIGKILLs client `client`'s process. Its call in progress ends with `op_failed` (published
    /// after the process's last report); its next call starts a new process, a new identity.
    pub async fn crash_client(&self, client: u32) -> Result<String, ClusterError> {
        if client > self.max_client() {
            return Err(ClusterError::BadClient(client, self.max_client()));
        }
        let gen = self.gen.lock().await;
        let Some(c) = gen.clients.get(&client).and_then(ClientSlot::live) else {
            return Err(ClusterError::NodeDead(format!(
                "client {client} has no live process (one starts with its next lock or unlock)"
            )));
        };
        c.shared.set_end_reason(CLIENT_CRASHED);
        c.proc_.kill(CrashCause::Command, self.bus.clock().now_us());
        if !c.proc_.wait_exited(Duration::from_secs(5)).await {
            return Err(ClusterError::Unavailable(format!(
                "c{client} (pid {}) did not exit after SIGKILL",
                c.proc_.pid
            )));
        }
        Ok(format!(
            "SIGKILL sent to c{client} (pid {}); it is gone",
            c.proc_.pid
        ))
    }

    /// Ends every call in progress (`op_failed`: its effect is unknown), kills everything and
    /// starts generation n+1.
    pub async fn reset(&self) -> Result<String, ClusterError> {
        self.resetting.store(true, Ordering::SeqCst);
        let mut gen = self.gen.lock().await;
        let result = self.reset_locked(&mut gen).await;
        self.resetting.store(false, Ordering::SeqCst);
        result
    }

    /// True while a reset is under way.
    pub fn is_resetting(&self) -> bool {
        self.resetting.load(Ordering::SeqCst)
    }

    /// True when a generation's servers are up (not during a reset, not after shutdown).
    pub async fn is_running(&self) -> bool {
        !self.is_resetting() && !self.gen.lock().await.addrs.is_empty()
    }

    async fn reset_locked(&self, gen: &mut Generation) -> Result<String, ClusterError> {
        // The network heals and step mode ends; the seed stays. The new processes start with it.
        let healed = FaultPlan {
            seed: self.plan().seed,
            ..FaultPlan::default()
        };
        self.publish_plan_locally(&healed);
        self.stop_all(gen, RESET_REASON).await;
        gen.locks.clear();
        gen.number += 1;
        self.bus.cluster_reset(gen.number);
        let delay = self.slow_motion_ms();
        if delay > 0 {
            self.bus
                .publish(SUPERVISOR, EventKind::SlowMotionSet { delay_ms: delay });
        }
        self.bus.publish(
            SUPERVISOR,
            EventKind::FaultsChanged {
                change: format!(
                    "reset: the network is healed and step mode is off (seed {} kept)",
                    healed.seed
                ),
                plan: healed,
            },
        );
        self.start_servers(gen)
            .await
            .map_err(|e| ClusterError::Unavailable(format!("restarting the cluster: {e:#}")))?;
        let pids: Vec<String> = gen
            .servers
            .iter()
            .map(|(id, s)| format!("{id} pid {}", s.proc_.pid))
            .collect();
        Ok(format!(
            "cluster generation {} started ({})",
            gen.number,
            pids.join(", ")
        ))
    }

    /// Kills every client and server process of the generation at once and waits for them;
    /// calls in progress end with `op_failed` saying `reason`.
    async fn stop_all(&self, gen: &mut Generation, reason: &str) {
        for clerk in gen.clerks.values() {
            clerk.abandon(reason);
        }
        gen.clerks.clear();
        let t = self.bus.clock().now_us();
        let mut procs: Vec<&Proc> = Vec::new();
        for c in gen.clients.values().filter_map(|c| c.proc_.as_ref()) {
            c.shared.set_end_reason(reason);
            procs.push(&c.proc_);
        }
        procs.extend(gen.servers.values().map(|s| &s.proc_));
        for p in &procs {
            if !p.is_exited() {
                p.kill(CrashCause::Reset, t);
            }
        }
        futures_util::future::join_all(procs.iter().map(|p| p.wait_exited(Duration::from_secs(5))))
            .await;
        gen.clients.clear();
        gen.servers.clear();
        gen.addrs.clear();
    }

    /// The load generator of this cluster (made on first use; idle until told to run).
    pub fn load(self: &Arc<Self>) -> &Arc<LoadEngine> {
        self.load
            .get_or_init(|| LoadEngine::new(Arc::downgrade(self), self.bus.clone()))
    }

    /// Kills every process and waits for them: the supervisor's last act.
    pub async fn shutdown(&self) {
        if let Some(load) = self.load.get() {
            load.halt();
        }
        let mut gen = self.gen.lock().await;
        self.stop_all(&mut gen, SHUTDOWN_REASON).await;
        self.accept_task.abort();
    }

    /// Changes the slow-motion delay. Returns once every live process has applied it (in-process
    /// clerks read it from a watch channel, at once), so a caller that goes on after the answer
    /// knows every message from then on waits the new delay. A paused server can't answer: it
    /// is not waited for; the command waits in its control socket and it applies it when it
    /// resumes.
    pub async fn set_slow_motion(&self, delay_ms: u64) -> String {
        let gen = self.gen.lock().await;
        self.slow_motion
            .send_modify(|s| s.set(Duration::from_millis(delay_ms), tokio::time::Instant::now()));
        let servers = gen
            .servers
            .values()
            .filter(|s| !s.proc_.is_exited())
            .map(|s| (&s.proc_, s.paused));
        let clients = gen
            .clients
            .values()
            .filter_map(ClientSlot::live)
            .map(|c| (&c.proc_, false));
        let mut applied = Vec::new();
        for (p, paused) in servers.chain(clients) {
            let cmd = NodeControl::SetSlowMotion {
                delay_ms,
                ticket: self.ticket(),
            };
            if paused {
                let _ = p.ctrl.send((cmd, None));
            } else {
                applied.push(p.control(cmd, CONTROL_WAIT));
            }
        }
        // All at once: a stopped node costs one timeout, not one each. A node that dies
        // meanwhile drops the sender: it has nothing left to delay.
        futures_util::future::join_all(applied).await;
        self.bus
            .publish(SUPERVISOR, EventKind::SlowMotionSet { delay_ms });
        if delay_ms == 0 {
            "slow motion off".to_owned()
        } else {
            format!("every message now waits {delay_ms} ms in its receiver's inbox")
        }
    }

    /// The fault plan in force.
    fn plan(&self) -> Arc<FaultPlan> {
        self.faults.borrow().clone()
    }

    /// Makes `plan` the one in force in this process: the clerks' inboxes read it at once, and
    /// the clocks of every wait stop while step mode is on.
    fn publish_plan_locally(&self, plan: &FaultPlan) {
        let now = tokio::time::Instant::now();
        if self.plan().step != plan.step {
            self.slow_motion
                .send_modify(|s| s.set_frozen(plan.step, now));
        }
        self.faults.send_replace(Arc::new(plan.clone()));
    }

    /// Resolves one end of a link: a role to the server holding it now, a client to its name.
    fn resolve_endpoint(&self, gen: &Generation, e: &Endpoint) -> Result<NodeId, ClusterError> {
        match e {
            Endpoint::Any => Ok(NodeId::from(ANY)),
            Endpoint::Client(c) => Ok(client_node(*c)),
            Endpoint::Role(role) => self
                .bus
                .view(|v| v.holder_of(*role))
                .ok_or_else(|| ClusterError::NodeDead(format!("no live server is {e} now"))),
            Endpoint::Server(id) if gen.servers.contains_key(id.as_str()) => Ok(id.clone()),
            Endpoint::Server(id) => {
                let known: Vec<&str> = gen.servers.keys().map(String::as_str).collect();
                Err(ClusterError::UnknownNode(id.to_string(), known.join(", ")))
            }
        }
    }

    /// Changes the fault plan: `change` edits it and says what it did, for people. The change
    /// is published (`faults_changed`), then sent to every live node; returns once each
    /// confirmed it (a node that does not answer in time, say a paused one, is named in the
    /// answer and does not fail the command).
    async fn change_plan(
        &self,
        gen: &Generation,
        change: impl FnOnce(&mut FaultPlan) -> String,
    ) -> String {
        let mut plan = (*self.plan()).clone();
        let text = change(&mut plan);
        self.publish_plan_locally(&plan);
        self.bus.publish(
            SUPERVISOR,
            EventKind::FaultsChanged {
                plan: plan.clone(),
                change: text.clone(),
            },
        );
        let mut waits = Vec::new();
        let servers = gen
            .servers
            .iter()
            .map(|(id, slot)| (id.clone(), &slot.proc_));
        let clients = gen
            .clients
            .iter()
            .filter_map(|(c, slot)| slot.live().map(|p| (client_node(*c).to_string(), &p.proc_)));
        for (id, p) in servers.chain(clients) {
            if p.is_exited() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let ticket = self.ticket();
            let cmd = NodeControl::SetFaults {
                plan: plan.clone(),
                ticket,
            };
            if p.ctrl.send((cmd, Some(tx))).is_ok() {
                waits.push(async move { (id, tokio::time::timeout(FAULTS_WAIT, rx).await) });
            }
        }
        // All at once: a stopped process costs one timeout, not one each. One that dies
        // meanwhile drops the sender: it has no inbox left to apply the plan to.
        let late: Vec<String> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(id, _)| id)
            .collect();
        if late.is_empty() {
            format!("{text}: in force at every process")
        } else {
            format!(
                "{text}: in force; {} did not confirm within {} s (paused?) and will apply it when it runs",
                late.join(", "),
                FAULTS_WAIT.as_secs()
            )
        }
    }

    /// `set_link`: what the network does to the messages from `from` to `to` (replacing that
    /// link's setting; all zeros removes it).
    pub async fn set_link(
        &self,
        from: &Endpoint,
        to: &Endpoint,
        drop: Probability,
        duplicate: Probability,
        delay_ms: u64,
        jitter_ms: u64,
    ) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let from = self.resolve_endpoint(&gen, from)?;
        let to = self.resolve_endpoint(&gen, to)?;
        let adds = drop.0 > 0.0 || duplicate.0 > 0.0 || delay_ms > 0 || jitter_ms > 0;
        let links = &self.plan().links;
        if adds
            && links.len() >= MAX_LINK_RULES
            && !links.iter().any(|r| r.from == from && r.to == to)
        {
            return Err(ClusterError::BadField(format!(
                "the fault plan already has {MAX_LINK_RULES} link settings, the most it takes: \
                 change or remove one (all zeros), use \"*\", or heal"
            )));
        }
        let detail = self
            .change_plan(&gen, |plan| {
                plan.links.retain(|r| !(r.from == from && r.to == to));
                let mut parts = Vec::new();
                if drop.0 > 0.0 {
                    parts.push(format!("drop {}", percent(drop)));
                }
                if duplicate.0 > 0.0 {
                    parts.push(format!("duplicate {}", percent(duplicate)));
                }
                if delay_ms > 0 || jitter_ms > 0 {
                    parts.push(match jitter_ms {
                        0 => format!("delay {delay_ms} ms"),
                        j => format!("delay {delay_ms}±{j} ms"),
                    });
                }
                let what = if parts.is_empty() {
                    "no faults".to_owned()
                } else {
                    plan.links.push(LinkRule {
                        from: from.clone(),
                        to: to.clone(),
                        drop,
                        duplicate,
                        delay_ms,
                        jitter_ms,
                    });
                    parts.join(", ")
                };
                format!("link {from} → {to}: {what}")
            })
            .await;
        Ok(detail)
    }

    /// `partition`: processes in different groups can't reach each other. Replaces the one in
    /// force; no groups ends it.
    pub async fn partition(&self, groups: &[Vec<Endpoint>]) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let mut resolved: Vec<Vec<NodeId>> = Vec::new();
        let mut seen: HashMap<NodeId, String> = HashMap::new();
        for group in groups.iter().filter(|g| !g.is_empty()) {
            let mut members = Vec::new();
            for member in group {
                let id = self.resolve_endpoint(&gen, member)?;
                if let Some(first) = seen.insert(id.clone(), member.to_string()) {
                    let named = if first == member.to_string() {
                        format!("{id} is named twice")
                    } else {
                        format!("{first} and {member} are both {id} now")
                    };
                    return Err(ClusterError::BadField(format!(
                        "{named}: a process may be in one group only"
                    )));
                }
                members.push(id);
            }
            resolved.push(members);
        }
        let detail = self
            .change_plan(&gen, |plan| {
                plan.partition = resolved;
                if plan.partition.is_empty() {
                    "partition ended".to_owned()
                } else {
                    let groups: Vec<String> =
                        plan.partition.iter().map(|g| group_text(g)).collect();
                    format!("partition {}", groups.join(" | "))
                }
            })
            .await;
        Ok(detail)
    }

    /// `cut`: nothing from `from` reaches `to` (one way).
    pub async fn cut(&self, from: &Endpoint, to: &Endpoint) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let from = self.resolve_endpoint(&gen, from)?;
        let to = self.resolve_endpoint(&gen, to)?;
        let cuts = &self.plan().cuts;
        if cuts.len() >= MAX_CUTS && !cuts.iter().any(|c| c.from == from && c.to == to) {
            return Err(ClusterError::BadField(format!(
                "the fault plan already has {MAX_CUTS} cuts, the most it takes: use \"*\", a partition, or heal"
            )));
        }
        let detail = self
            .change_plan(&gen, |plan| {
                let cut = Cut {
                    from: from.clone(),
                    to: to.clone(),
                };
                if !plan.cuts.contains(&cut) {
                    plan.cuts.push(cut);
                }
                format!("cut {from} → {to}")
            })
            .await;
        Ok(detail)
    }

    /// `heal`: no partition, cut or link setting any more (step mode and the seed stay).
    pub async fn heal(&self) -> String {
        let gen = self.gen.lock().await;
        self.change_plan(&gen, |plan| {
            plan.links.clear();
            plan.partition.clear();
            plan.cuts.clear();
            "heal".to_owned()
        })
        .await
    }

    /// `set_seed`: the seed of every random fault decision from now on.
    pub async fn set_seed(&self, seed: u64) -> String {
        let gen = self.gen.lock().await;
        self.change_plan(&gen, |plan| {
            plan.seed = seed;
            format!("seed {seed}")
        })
        .await
    }

    /// `step`: step mode on or off. Off releases every held message.
    pub async fn step(&self, on: bool) -> String {
        let gen = self.gen.lock().await;
        let held = self.bus.view(|v| v.held().len());
        let detail = self
            .change_plan(&gen, |plan| {
                plan.step = on;
                if on {
                    "step on".to_owned()
                } else {
                    "step off".to_owned()
                }
            })
            .await;
        match (on, held) {
            (true, _) => {
                format!("{detail}; every message now waits for deliver, drop or duplicate")
            }
            (false, 0) => detail,
            (false, n) => format!("{detail}; the {n} held messages went on"),
        }
    }

    /// `deliver`, `drop`, `duplicate`: a person's decision about a message step mode holds,
    /// carried out by the inbox that holds it.
    pub async fn step_message(
        &self,
        msg_id: MsgId,
        action: StepAction,
    ) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        if !self.plan().step {
            return Err(ClusterError::NotStepping(
                "step mode is off: turn it on with {\"type\":\"step\",\"on\":true}".into(),
            ));
        }
        let Some(held) = self.bus.view(|v| v.held_msg(msg_id).cloned()) else {
            return Err(ClusterError::UnknownMessage(format!(
                "no inbox holds message {msg_id} (never held, or decided already)"
            )));
        };
        let to = held.to.clone();
        let by_control = |p: &Proc| {
            let (tx, rx) = oneshot::channel();
            let cmd = NodeControl::Step {
                msg_id,
                action,
                ticket: self.ticket(),
            };
            p.ctrl.send((cmd, Some(tx))).ok().map(|_| rx)
        };
        let answer = match to.client_id() {
            Some(client) => match gen.clients.get(&client).and_then(ClientSlot::live) {
                Some(p) => by_control(&p.proc_),
                None => gen.clerks.get(&client).map(|c| c.step(msg_id, action)),
            },
            None => gen
                .servers
                .get(to.as_str())
                .and_then(|slot| by_control(&slot.proc_)),
        };
        let Some(answer) = answer else {
            return Err(ClusterError::UnknownMessage(format!(
                "{to}, which held message {msg_id}, is gone, and the message with it"
            )));
        };
        match tokio::time::timeout(STEP_WAIT, answer).await {
            Ok(Ok(Ok(()))) => {
                let verb = match action {
                    StepAction::Deliver => "delivered",
                    StepAction::Drop => "dropped",
                    StepAction::Duplicate => "delivered twice",
                };
                Ok(format!(
                    "message {msg_id} ({} {} → {to}) {verb}",
                    msg_kind(&held.msg),
                    held.from
                ))
            }
            Ok(Ok(Err(message))) => Err(ClusterError::UnknownMessage(message)),
            Ok(Err(_)) => Err(ClusterError::UnknownMessage(format!(
                "{to} went away holding message {msg_id}: it is lost"
            ))),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "{to} did not answer within {} s (paused?); message {msg_id} is still held",
                STEP_WAIT.as_secs()
            ))),
        }
    }

    /// Hands a call to client `client`, starting its process on first use or after a crash.
    /// The call has started (its `op_invoked` is published) when this returns `Ok`.
    pub async fn submit(
        &self,
        client: u32,
        op: Op,
        lock: String,
        tag: Option<String>,
        done: Option<oneshot::Sender<Option<bool>>>,
    ) -> Result<(), ClusterError> {
        if client > self.max_client() {
            return Err(ClusterError::BadClient(client, self.max_client()));
        }
        let mut gen = self.gen.lock().await;
        if gen.addrs.is_empty() {
            return Err(ClusterError::Unavailable(
                "the cluster is not running".into(),
            ));
        }
        // Busy first: a refused call must not count a lock name.
        let busy = gen
            .clients
            .get(&client)
            .and_then(ClientSlot::live)
            .is_some_and(|c| c.shared.call().is_some());
        if busy {
            return Err(ClusterError::ClientBusy(Busy(client)));
        }
        if !gen.locks.contains(&lock) {
            if gen.locks.len() >= self.cfg.max_locks {
                return Err(ClusterError::TooManyLocks(gen.locks.len()));
            }
            gen.locks.insert(lock.clone());
        }
        let live = gen
            .clients
            .get(&client)
            .and_then(ClientSlot::live)
            .is_some();
        if !live {
            let incarnation = gen.clients.get(&client).map_or(0, |c| c.started);
            let servers = gen.addrs.clone();
            let (proc_, _, shared) = self
                .spawn(Starting::Client {
                    id: client,
                    incarnation,
                    servers: &servers,
                })
                .await
                .map_err(|e| {
                    ClusterError::Unavailable(format!("client {client} did not start: {e:#}"))
                })?;
            let slot = gen.clients.entry(client).or_default();
            slot.started = incarnation + 1;
            slot.proc_ = Some(ClientProc {
                proc_,
                shared: shared.unwrap_or_default(),
            });
        }
        let Some(c) = gen.clients.get(&client).and_then(ClientSlot::live) else {
            return Err(ClusterError::Unavailable(format!(
                "client {client}'s process is gone"
            )));
        };
        *c.shared.call() = Some(ClientCall {
            op,
            lock: lock.clone(),
            tag: tag.clone(),
            req: None,
            done,
        });
        let invoke = NodeControl::Invoke {
            op,
            lock,
            tag,
            ticket: self.ticket(),
        };
        if c.proc_.control(invoke, CONTROL_WAIT).await {
            return Ok(());
        }
        // Not started (the process died, or did not answer): the call never was, unless its
        // `op_invoked` got out, in which case its end will come as for any other call.
        let mut call = c.shared.call();
        if call.as_ref().is_some_and(|c| c.req.is_none()) {
            *call = None;
        }
        Err(ClusterError::Unavailable(format!(
            "client {client}'s process did not take the call"
        )))
    }

    /// Hands a call to the load generator's clerk `client` (from
    /// [`shared::LOAD_FIRST_CLIENT`]), a clerk inside this process, created on first use in
    /// each generation. Lab 1's clerk all the same: one call at a time, the same retries and
    /// failover; `done` is told the answer, or `None` when the call ends in `op_failed`. Its
    /// lock names are the load's reserved ones and take nothing of `max_locks`.
    pub async fn submit_load(
        &self,
        client: u32,
        op: Op,
        lock: String,
        done: oneshot::Sender<Option<bool>>,
    ) -> Result<(), ClusterError> {
        if !shared::is_load_client(client)
            || client >= shared::LOAD_FIRST_CLIENT + shared::MAX_LOAD_CLIENTS
        {
            return Err(ClusterError::BadClient(client, self.max_client()));
        }
        if self.is_resetting() {
            return Err(ClusterError::Unavailable(
                "the cluster is being reset".into(),
            ));
        }
        let mut gen = self.gen.lock().await;
        if gen.addrs.is_empty() {
            return Err(ClusterError::Unavailable(
                "the cluster is not running".into(),
            ));
        }
        if !gen.clerks.contains_key(&client) {
            let handle = clerk_runtime::spawn(
                ClerkSetup {
                    id: client,
                    incarnation: 0,
                    servers: gen.addrs.clone(),
                    origin: self.origin(),
                    timing: self.cfg.clerk_timing.clone(),
                    variant: self.cfg.variant,
                },
                Arc::new(Outlet::Bus(self.bus.clone())),
                self.slow_motion.subscribe(),
                self.faults.subscribe(),
            );
            gen.clerks.insert(client, handle);
        }
        let Some(clerk) = gen.clerks.get(&client) else {
            return Err(ClusterError::Unavailable("the clerk is gone".into()));
        };
        clerk.submit(Call {
            op,
            lock,
            tag: None,
            done: Some(done),
        })?;
        Ok(())
    }

    /// The slow-motion delay in force now.
    fn slow_motion_ms(&self) -> u64 {
        self.slow_motion.borrow().current().as_millis() as u64
    }

    /// Largest client id a person's command may name (the load's clerks come after it).
    pub fn max_client(&self) -> u32 {
        self.cfg.max_client.min(shared::LOAD_FIRST_CLIENT - 1)
    }

    pub fn max_locks(&self) -> usize {
        self.cfg.max_locks
    }

    /// The deliberately broken protocol this cluster runs, if any.
    pub fn variant(&self) -> Option<shared::Variant> {
        self.cfg.variant
    }

    /// The PIDs of the live server processes (for tests and tools).
    pub async fn pids(&self) -> Vec<(String, u32)> {
        let gen = self.gen.lock().await;
        gen.servers
            .iter()
            .filter(|(_, s)| !s.proc_.is_exited())
            .map(|(id, s)| (id.clone(), s.proc_.pid))
            .collect()
    }

    /// The PIDs of the live client processes (for tests and tools).
    pub async fn client_pids(&self) -> Vec<(u32, u32)> {
        let gen = self.gen.lock().await;
        let mut pids: Vec<(u32, u32)> = gen
            .clients
            .iter()
            .filter_map(|(id, c)| Some((*id, c.live()?.proc_.pid)))
            .collect();
        pids.sort_unstable();
        pids
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Backup => "backup",
        Role::Deposed => "deposed",
    }
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::monotonic_ns());
    h.finish()
}

/// Accepts node control connections and hands each to the spawner waiting for its token.
async fn accept_nodes(listener: TcpListener, waiting: Arc<ReadyWaiters>) {
    let mut pause = AcceptPause::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, the failed connection stays queued and `accept` fails
                // again at once: without this pause the loop would spin.
                let resume = pause.failed(Instant::now(), &e, "control listener");
                tokio::time::sleep_until(resume).await;
                pause.resume();
                continue;
            }
        };
        pause.accepted("control listener");
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let mut conn = framing::framed(stream);
            let first = tokio::time::timeout(
                Duration::from_secs(5),
                framing::recv::<NodeReport, _>(&mut conn),
            )
            .await;
            let Ok(Ok(report @ NodeReport::Ready { token, .. })) = first else {
                tracing::warn!("a control connection did not introduce itself; closed");
                return;
            };
            let waiter = waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&token);
            match waiter {
                Some(tx) => {
                    let _ = tx.send((report, conn));
                }
                None => tracing::warn!("a control connection had an unknown token; closed"),
            }
        });
    }
}

/// A message's kind, for people: its wire name (`"forward"`).
fn msg_kind(msg: &shared::Msg) -> String {
    serde_json::to_value(msg)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A probability as people read it: 0.3 -> "30%".
fn percent(p: Probability) -> String {
    format!("{}%", (p.0 * 1000.0).round() / 10.0)
}

/// "{s1, c1}".
fn group_text(group: &[NodeId]) -> String {
    let names: Vec<&str> = group.iter().map(NodeId::as_str).collect();
    format!("{{{}}}", names.join(", "))
}

/// What the supervisor knows of one process while it watches it.
struct NodeWatch {
    id: String,
    pid: u32,
    bus: Arc<Bus>,
    kill_cause: KillCause,
    exited: watch::Sender<bool>,
    exited_rx: watch::Receiver<bool>,
    /// For a client process: its call in progress.
    client: Option<Arc<ClientShared>>,
}

impl NodeWatch {
    /// What the supervisor does with a report before it is published.
    fn before_publish(&self, kind: &EventKind) {
        if let Some(client) = &self.client {
            // Before it is published: whoever sees the call end finds the client free.
            client.observe(kind);
        }
        if let (EventKind::Dying { dies_in_ms, .. }, None) = (kind, &self.client) {
            kill_when_dying_ends(self, *dies_in_ms);
        }
    }
}

/// The control command's ticket, for those answered by `applied` or `failed`.
fn ticket_of(cmd: &NodeControl) -> Option<u64> {
    match cmd {
        NodeControl::SetSlowMotion { ticket, .. }
        | NodeControl::SetFaults { ticket, .. }
        | NodeControl::Step { ticket, .. }
        | NodeControl::Invoke { ticket, .. } => Some(*ticket),
        NodeControl::ArmCrashBeforeReply
        | NodeControl::ArmCrash { .. }
        | NodeControl::GoSilent { .. } => None,
    }
}

/// A dying server is killed `dies_in_ms` after it reported `dying` (unless it is gone by then).
fn kill_when_dying_ends(w: &NodeWatch, dies_in_ms: u64) {
    let (pid, kill_cause, mut exited, clock) = (
        w.pid,
        w.kill_cause.clone(),
        w.exited_rx.clone(),
        w.bus.clock(),
    );
    tokio::spawn(async move {
        let ended =
            tokio::time::timeout(Duration::from_millis(dies_in_ms), exited.wait_for(|e| *e))
                .await
                .is_ok();
        if !ended {
            sigkill(pid, &kill_cause, CrashCause::Dying, clock.now_us());
        }
    });
}

/// Reads one process's reports into the bus until the process is gone; then reaps it and
/// publishes its end: `crashed` (if the supervisor killed it) and `process_exited`, after every
/// event the process wrote before it died; for a client, then the `op_failed` of its call in
/// progress. A server's `dying` report sets the timer that kills it. Control goes to the node from a task of its own, so a node that
/// stops reading its control connection can never stop the supervisor from reading its reports.
async fn watch_node(
    w: NodeWatch,
    mut child: tokio::process::Child,
    conn: FramedConn,
    mut ctrl_rx: mpsc::UnboundedReceiver<ControlSend>,
) {
    let (mut sink, mut stream) = conn.split();
    let tickets: Arc<StdMutex<HashMap<u64, ControlDone>>> = Arc::default();
    let writer_tickets = tickets.clone();
    let writer = tokio::spawn(async move {
        while let Some((cmd, applied)) = ctrl_rx.recv().await {
            if let (Some(ticket), Some(tx)) = (ticket_of(&cmd), applied) {
                if let Ok(mut t) = writer_tickets.lock() {
                    t.insert(ticket, tx);
                }
            }
            if sink.send(framing::encode(&cmd)).await.is_err() {
                return; // the reader sees the end too
            }
        }
    });
    loop {
        match framing::recv_report(&mut stream).await {
            Ok(NodeReport::Event { t_us, kind }) => {
                w.before_publish(&kind);
                w.bus.publish_at(&w.id, t_us, kind)
            }
            Ok(NodeReport::Events { events }) => {
                for e in &events {
                    w.before_publish(&e.kind);
                }
                w.bus
                    .publish_many(&w.id, events.into_iter().map(|e| (e.t_us, e.kind)))
            }
            Ok(NodeReport::Applied { ticket }) => {
                let tx = tickets.lock().ok().and_then(|mut t| t.remove(&ticket));
                if let Some(tx) = tx {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(NodeReport::Failed { ticket, message }) => {
                tracing::debug!("{}: control ticket {ticket} failed: {message}", w.id);
                let tx = tickets.lock().ok().and_then(|mut t| t.remove(&ticket));
                if let Some(tx) = tx {
                    let _ = tx.send(Err(message));
                }
            }
            Ok(NodeReport::Ready { .. }) => {}
            Err(framing::FrameError::Decode(e)) => {
                tracing::warn!("{} sent an undecodable report: {e}", w.id);
            }
            Err(_) => break,
        }
    }
    writer.abort();
    let status = child.wait().await;
    let (signal, code) = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            (s.signal(), s.code())
        }
        Err(_) => (None, None),
    };
    let killed = w.kill_cause.lock().ok().and_then(|c| *c);
    if let Some((cause, t_us)) = killed {
        w.bus.publish_at(
            &w.id,
            t_us,
            EventKind::Crashed {
                pid: w.pid,
                cause,
                req: None,
            },
        );
    }
    w.bus.node_exited(&w.id, w.pid, signal, code);
    if let Some(client) = &w.client {
        // Its call in progress (if it got as far as `op_invoked`) ends here, unknown.
        let call = client.call().take();
        if let Some((call, req)) = call.and_then(|c| c.req.map(|r| (c, r))) {
            let reason = client
                .end_reason
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .unwrap_or_else(|| {
                    format!(
                        "the client's process ended ({signal:?}, {code:?}): its effect is unknown"
                    )
                });
            let id =
                w.id.strip_prefix('c')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            w.bus.publish(
                &w.id,
                EventKind::OpFailed {
                    client: id,
                    op: call.op,
                    lock: call.lock,
                    tag: call.tag,
                    req,
                    reason,
                },
            );
            if let Some(done) = call.done {
                let _ = done.send(None);
            }
        }
    }
    let _ = w.exited.send(true);
}
