//! The supervisor: spawns the server processes, reads their event streams, kills them on
//! command, and owns the clerks.
//!
//! It is the observer and the fault controller, never a router: lock-service traffic goes from
//! clerk to server and server to server over their own TCP connections. Each server process is
//! spawned with `kill_on_drop` and a parent-death signal, and exits when its control connection
//! closes, so no node outlives the supervisor however it ends.

use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shared::{
    CrashCause, ErrorCode, EventKind, NodeControl, NodeId, NodeRef, NodeReport, Op, Role,
    SUPERVISOR,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::clerk::{Busy, ClerkTiming};
use crate::clerk_runtime::{self, Call, ClerkHandle, ServerAddr};
use crate::framing::{self, FramedConn};
use crate::oserror::AcceptPause;
use crate::slowmo::SlowMotion;

/// How the cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `pbscope` binary, run as `pbscope node ...` for each server.
    pub node_exe: PathBuf,
    pub slow_motion_ms: u64,
    pub clerk_timing: ClerkTiming,
    /// Largest client id a command may name.
    pub max_client: u32,
    /// Most distinct lock names one cluster generation takes.
    pub max_locks: usize,
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
        }
    }
}

/// A control command for a node, with who to tell once it took effect.
type ControlSend = (NodeControl, Option<oneshot::Sender<()>>);

/// Why the supervisor killed a process, and when (µs on the run's clock): published as
/// `crashed` once every event the process reported before it died has been published.
type KillCause = Arc<StdMutex<Option<(CrashCause, u64)>>>;

/// A running server process as the supervisor holds it.
#[derive(Debug)]
struct ServerProc {
    pid: u32,
    ctrl: mpsc::UnboundedSender<ControlSend>,
    kill_cause: KillCause,
    /// Becomes true once the process is reaped and its events are all published.
    exited: watch::Receiver<bool>,
}

impl ServerProc {
    /// SIGKILLs the process, remembering why for its `crashed` event.
    fn kill(&self, cause: CrashCause, t_us: u64) {
        if let Ok(mut c) = self.kill_cause.lock() {
            c.get_or_insert((cause, t_us));
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    async fn wait_exited(&self, within: Duration) -> bool {
        let mut exited = self.exited.clone();
        let reaped = tokio::time::timeout(within, exited.wait_for(|e| *e))
            .await
            .is_ok();
        reaped
    }
}

/// One generation of the cluster: the servers and clerks that a `reset` replaces.
#[derive(Debug, Default)]
struct Generation {
    number: u64,
    servers: BTreeMap<String, ServerProc>,
    addrs: Vec<ServerAddr>,
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
    /// The slow-motion delay and its recent changes; every clerk follows it.
    slow_motion: watch::Sender<SlowMotion>,
    next_origin: AtomicU64,
    next_ticket: AtomicU64,
    accept_task: tokio::task::JoinHandle<()>,
}

/// The servers of a cluster: id and initial role, primary first.
const SERVERS: [(&str, Role); 2] = [("s1", Role::Primary), ("s2", Role::Backup)];

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
            cfg,
            control_addr,
            waiting_ready,
            gen: Mutex::new(Generation::default()),
            next_origin: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            accept_task,
        });
        {
            let mut gen = cluster.gen.lock().await;
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

    /// Starts the servers of a generation. All or nothing: if one fails to start, the ones
    /// already started are killed (and reaped) and the generation has no servers.
    async fn start_servers(&self, gen: &mut Generation) -> anyhow::Result<()> {
        gen.addrs.clear();
        gen.servers.clear();
        // The backup first, so the primary starts knowing where to forward.
        let mut started: Vec<(String, ServerProc, u16)> = Vec::new();
        let mut backup = None;
        for (id, role) in SERVERS.iter().rev() {
            match self.spawn_server(id, *role, backup.clone()).await {
                Ok(s) => {
                    if *role == Role::Backup {
                        backup = Some(format!("{id}=127.0.0.1:{}", s.2));
                    }
                    started.push(s);
                }
                Err(e) => {
                    let t = self.bus.clock().now_us();
                    for (_, p, _) in &started {
                        p.kill(CrashCause::Reset, t);
                    }
                    for (_, p, _) in &started {
                        p.wait_exited(Duration::from_secs(5)).await;
                    }
                    return Err(e);
                }
            }
        }
        started.reverse();
        for (id, proc_, port) in started {
            gen.addrs.push(ServerAddr {
                id: id.as_str().into(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            });
            gen.servers.insert(id, proc_);
        }
        Ok(())
    }

    /// Spawns one `pbscope node` process and waits until it is listening.
    async fn spawn_server(
        &self,
        id: &str,
        role: Role,
        backup: Option<String>,
    ) -> anyhow::Result<(String, ServerProc, u16)> {
        let token = random_u64();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.lock_waiters().insert(token, ready_tx);
        let origin = self.origin();
        let mut cmd = tokio::process::Command::new(&self.cfg.node_exe);
        cmd.arg("node");
        if let Some(b) = backup {
            cmd.args(["--backup", &b]);
        }
        let mut child = cmd
            .args(["--id", id])
            .args(["--role", role_name(role)])
            .args(["--control", &self.control_addr.to_string()])
            .args(["--token", &token.to_string()])
            .args(["--epoch-ns", &self.bus.clock().epoch_ns().to_string()])
            .args(["--origin", &origin.to_string()])
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(["--slow-motion-ms", &self.slow_motion_ms().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} node {id}", self.cfg.node_exe.display()))?;
        let ready = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), ready_rx) => r,
            status = child.wait() => {
                self.lock_waiters().remove(&token);
                return Err(anyhow!("node {id} exited before it was ready ({status:?})"));
            }
        };
        let (report, conn) = match ready {
            Ok(Ok(r)) => r,
            _ => {
                self.lock_waiters().remove(&token);
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(anyhow!("node {id} did not report ready within 10 s"));
            }
        };
        let NodeReport::Ready { pid, port, .. } = report else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(anyhow!("node {id} sent something else than ready first"));
        };
        self.bus
            .publish(id, EventKind::ProcessStarted { pid, role, port });
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (exited_tx, exited_rx) = watch::channel(false);
        let kill_cause = KillCause::default();
        tokio::spawn(watch_node(
            NodeWatch {
                id: id.to_owned(),
                pid,
                bus: self.bus.clone(),
                kill_cause: kill_cause.clone(),
                exited: exited_tx,
            },
            child,
            conn,
            ctrl_rx,
        ));
        Ok((
            id.to_owned(),
            ServerProc {
                pid,
                ctrl: ctrl_tx,
                kill_cause,
                exited: exited_rx,
            },
            port,
        ))
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<(NodeReport, FramedConn)>>> {
        self.waiting_ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a stable id or a role to a live server of this generation.
    fn resolve<'g>(
        &self,
        gen: &'g Generation,
        node: &NodeRef,
    ) -> Result<(NodeId, &'g ServerProc), ClusterError> {
        let id = match node {
            NodeRef::Role(role) => self
                .bus
                .view(|v| v.holder_of(*role))
                .ok_or_else(|| ClusterError::NodeDead(format!("no live server is {node} now")))?,
            NodeRef::Server(id) if gen.servers.contains_key(id.as_str()) => id.clone(),
            NodeRef::All => {
                return Err(ClusterError::Unavailable(
                    "\"*\" (every server) is not supported by this command yet".into(),
                ))
            }
            NodeRef::Server(other) => {
                let known: Vec<&str> = gen.servers.keys().map(String::as_str).collect();
                return Err(ClusterError::UnknownNode(
                    other.to_string(),
                    known.join(", "),
                ));
            }
        };
        if !self.bus.view(|v| v.is_alive(&id)) {
            return Err(ClusterError::NodeDead(format!("{id} is already dead")));
        }
        // The picture and the generation can disagree for a moment (a reset that failed half
        // way): only a process this generation holds can be acted on.
        let proc_ = gen.servers.get(id.as_str()).ok_or_else(|| {
            ClusterError::NodeDead(format!("{id} is not running in this cluster"))
        })?;
        Ok((id, proc_))
    }

    /// SIGKILLs a server and waits until it is reaped and its `crashed` is published (after
    /// everything it reported before it died). Returns what was done.
    pub async fn crash(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let (id, proc_) = self.resolve(&gen, node)?;
        proc_.kill(CrashCause::Command, self.bus.clock().now_us());
        if !proc_.wait_exited(Duration::from_secs(5)).await {
            return Err(ClusterError::Unavailable(format!(
                "{id} (pid {}) did not exit after SIGKILL",
                proc_.pid
            )));
        }
        Ok(format!(
            "SIGKILL sent to {id} (pid {}); it is gone",
            proc_.pid
        ))
    }

    /// Arms `crash_before_reply` on a server.
    pub async fn crash_before_reply(&self, node: &NodeRef) -> Result<String, ClusterError> {
        let gen = self.gen.lock().await;
        let (id, proc_) = self.resolve(&gen, node)?;
        proc_
            .ctrl
            .send((NodeControl::ArmCrashBeforeReply, None))
            .map_err(|_| ClusterError::NodeDead(format!("{id} is exiting")))?;
        Ok(format!(
            "{id} will execute its next client request and die before replying"
        ))
    }

    /// Ends every call in progress (`op_failed`: its effect is unknown), kills everything and
    /// starts generation n+1.
    pub async fn reset(&self) -> Result<String, ClusterError> {
        let mut gen = self.gen.lock().await;
        for clerk in gen.clerks.values() {
            clerk.abandon("the cluster was reset while the call was in progress");
        }
        gen.clerks.clear();
        gen.locks.clear();
        self.stop_servers(&mut gen, CrashCause::Reset).await;
        gen.number += 1;
        self.bus.cluster_reset(gen.number);
        let delay = self.slow_motion_ms();
        if delay > 0 {
            self.bus
                .publish(SUPERVISOR, EventKind::SlowMotionSet { delay_ms: delay });
        }
        self.start_servers(&mut gen)
            .await
            .map_err(|e| ClusterError::Unavailable(format!("restarting the cluster: {e:#}")))?;
        let pids: Vec<String> = gen
            .servers
            .iter()
            .map(|(id, p)| format!("{id} pid {}", p.pid))
            .collect();
        Ok(format!(
            "cluster generation {} started ({})",
            gen.number,
            pids.join(", ")
        ))
    }

    async fn stop_servers(&self, gen: &mut Generation, cause: CrashCause) {
        let t = self.bus.clock().now_us();
        for p in gen.servers.values() {
            if !*p.exited.borrow() {
                p.kill(cause, t);
            }
        }
        for p in gen.servers.values() {
            p.wait_exited(Duration::from_secs(5)).await;
        }
        gen.servers.clear();
        gen.addrs.clear();
    }

    /// Kills every node and waits for them: the supervisor's last act.
    pub async fn shutdown(&self) {
        let mut gen = self.gen.lock().await;
        for clerk in gen.clerks.values() {
            clerk.abandon("pbscope was shut down while the call was in progress");
        }
        gen.clerks.clear();
        self.stop_servers(&mut gen, CrashCause::Reset).await;
        self.accept_task.abort();
    }

    /// Changes the slow-motion delay. Returns once every live server has applied it (clerks
    /// read it from a watch channel, at once), so a caller that goes on after the answer knows
    /// every message from then on waits the new delay.
    pub async fn set_slow_motion(&self, delay_ms: u64) -> String {
        let gen = self.gen.lock().await;
        self.slow_motion
            .send_modify(|s| s.set(Duration::from_millis(delay_ms), tokio::time::Instant::now()));
        let mut applied = Vec::new();
        for p in gen.servers.values() {
            let (tx, rx) = oneshot::channel();
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            let cmd = NodeControl::SetSlowMotion { delay_ms, ticket };
            if p.ctrl.send((cmd, Some(tx))).is_ok() {
                applied.push(rx);
            }
        }
        // All at once: a stopped node costs one timeout, not one each. A node that dies
        // meanwhile drops the sender: it has nothing left to delay.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(applied),
        )
        .await;
        self.bus
            .publish(SUPERVISOR, EventKind::SlowMotionSet { delay_ms });
        if delay_ms == 0 {
            "slow motion off".to_owned()
        } else {
            format!("every message now waits {delay_ms} ms in its receiver's inbox")
        }
    }

    /// Hands a call to clerk `client`, creating it on first use. The call has started (its
    /// `op_invoked` is published) when this returns `Ok`.
    pub async fn submit(
        &self,
        client: u32,
        op: Op,
        lock: String,
        tag: Option<String>,
        done: Option<oneshot::Sender<Option<bool>>>,
    ) -> Result<(), ClusterError> {
        if client > self.cfg.max_client {
            return Err(ClusterError::BadClient(client, self.cfg.max_client));
        }
        let mut gen = self.gen.lock().await;
        if gen.addrs.is_empty() {
            return Err(ClusterError::Unavailable(
                "the cluster is not running".into(),
            ));
        }
        if !gen.locks.contains(&lock) {
            if gen.locks.len() >= self.cfg.max_locks {
                return Err(ClusterError::TooManyLocks(gen.locks.len()));
            }
            gen.locks.insert(lock.clone());
        }
        if !gen.clerks.contains_key(&client) {
            let handle = clerk_runtime::spawn(
                client,
                gen.addrs.clone(),
                self.bus.clone(),
                self.origin(),
                self.slow_motion.subscribe(),
                self.cfg.clerk_timing.clone(),
            );
            gen.clerks.insert(client, handle);
        }
        let Some(clerk) = gen.clerks.get(&client) else {
            return Err(ClusterError::Unavailable("the clerk is gone".into()));
        };
        clerk.submit(Call {
            op,
            lock,
            tag,
            done,
        })?;
        Ok(())
    }

    /// The slow-motion delay in force now.
    fn slow_motion_ms(&self) -> u64 {
        self.slow_motion.borrow().current().as_millis() as u64
    }

    pub fn max_client(&self) -> u32 {
        self.cfg.max_client
    }

    pub fn max_locks(&self) -> usize {
        self.cfg.max_locks
    }

    /// The PIDs of the live server processes (for tests and tools).
    pub async fn pids(&self) -> Vec<(String, u32)> {
        let gen = self.gen.lock().await;
        gen.servers
            .iter()
            .filter(|(_, p)| !*p.exited.borrow())
            .map(|(id, p)| (id.clone(), p.pid))
            .collect()
    }
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

/// What the supervisor knows of one node process while it watches it.
struct NodeWatch {
    id: String,
    pid: u32,
    bus: Arc<Bus>,
    kill_cause: KillCause,
    exited: watch::Sender<bool>,
}

/// Reads one node's reports into the bus until the process is gone; then reaps it and publishes
/// its end: `crashed` (if the supervisor killed it) and `process_exited`, after every event the
/// node wrote before it died. Control goes to the node from a task of its own, so a node that
/// stops reading its control connection can never stop the supervisor from reading its reports.
async fn watch_node(
    w: NodeWatch,
    mut child: tokio::process::Child,
    conn: FramedConn,
    mut ctrl_rx: mpsc::UnboundedReceiver<ControlSend>,
) {
    let (mut sink, mut stream) = conn.split();
    let tickets: Arc<StdMutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
    let writer_tickets = tickets.clone();
    let writer = tokio::spawn(async move {
        while let Some((cmd, applied)) = ctrl_rx.recv().await {
            if let (NodeControl::SetSlowMotion { ticket, .. }, Some(tx)) = (&cmd, applied) {
                if let Ok(mut t) = writer_tickets.lock() {
                    t.insert(*ticket, tx);
                }
            }
            if sink.send(framing::encode(&cmd)).await.is_err() {
                return; // the reader sees the end too
            }
        }
    });
    loop {
        match framing::recv::<NodeReport, _>(&mut stream).await {
            Ok(NodeReport::Event { t_us, kind }) => w.bus.publish_at(&w.id, t_us, kind),
            Ok(NodeReport::Applied { ticket }) => {
                let tx = tickets.lock().ok().and_then(|mut t| t.remove(&ticket));
                if let Some(tx) = tx {
                    let _ = tx.send(());
                }
            }
            Ok(NodeReport::Failed { ticket, message }) => {
                tracing::debug!("{}: control ticket {ticket} failed: {message}", w.id);
                let tx = tickets.lock().ok().and_then(|mut t| t.remove(&ticket));
                drop(tx);
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
    let _ = w.exited.send(true);
}
