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
    client_node, CrashCause, Cut, Endpoint, ErrorCode, EventKind, FaultPlan, LinkRule, MsgId,
    NodeControl, NodeId, NodeRef, NodeReport, Op, Probability, Role, StepAction, ANY, SUPERVISOR,
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
            ClusterError::BadField(_) => ErrorCode::BadField,
            ClusterError::UnknownMessage(_) => ErrorCode::UnknownMessage,
            ClusterError::NotStepping(_) => ErrorCode::NotStepping,
        }
    }
}

/// How a control command with a ticket ended: `Applied`, or `Failed` with the node's message.
/// A node that dies first drops the sender.
type ControlDone = oneshot::Sender<Result<(), String>>;

/// A control command for a node, with who to tell once it took effect.
type ControlSend = (NodeControl, Option<ControlDone>);

/// How long a fault-plan change waits for each process to confirm it. A stopped (paused)
/// process never answers: the change goes on without it, and it applies the plan when it runs.
const FAULTS_WAIT: Duration = Duration::from_secs(2);

/// How long a step decision (`deliver`, `drop`, `duplicate`) waits for the inbox holding it.
const STEP_WAIT: Duration = Duration::from_secs(5);

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
    /// The slow-motion delay and its recent changes (and whether step mode stops the clocks);
    /// every clerk follows it.
    slow_motion: watch::Sender<SlowMotion>,
    /// The fault plan in force, every name resolved; every clerk's inbox follows it, every node
    /// is sent it (`set_faults`).
    faults: watch::Sender<Arc<FaultPlan>>,
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
            faults: watch::Sender::new(Arc::new(FaultPlan {
                seed: random_u64(),
                ..FaultPlan::default()
            })),
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
        if !matches!(
            tokio::time::timeout(FAULTS_WAIT, plan_rx).await,
            Ok(Ok(Ok(())))
        ) {
            tracing::warn!("{id} did not confirm the fault plan in time");
        }
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
        // The network heals and step mode ends; the seed stays. The new processes start with it.
        let healed = FaultPlan {
            seed: self.plan().seed,
            ..FaultPlan::default()
        };
        self.publish_plan_locally(&healed);
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
        for (id, p) in &gen.servers {
            if *p.exited.borrow() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            let cmd = NodeControl::SetFaults {
                plan: plan.clone(),
                ticket,
            };
            if p.ctrl.send((cmd, Some(tx))).is_ok() {
                waits.push(async move { (id, tokio::time::timeout(FAULTS_WAIT, rx).await) });
            }
        }
        // All at once: a stopped node costs one timeout, not one each. A node that dies
        // meanwhile drops the sender: it has no inbox left to apply the plan to.
        let late: Vec<&str> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(id, _)| id.as_str())
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
        let answer = match to.client_id() {
            Some(client) => gen.clerks.get(&client).map(|c| c.step(msg_id, action)),
            None => gen.servers.get(to.as_str()).and_then(|p| {
                let (tx, rx) = oneshot::channel();
                let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
                let cmd = NodeControl::Step {
                    msg_id,
                    action,
                    ticket,
                };
                p.ctrl.send((cmd, Some(tx))).ok().map(|_| rx)
            }),
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
                self.faults.subscribe(),
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

/// The ticket of a control command that is answered (`applied` or `failed`).
fn ticket_of(cmd: &NodeControl) -> Option<u64> {
    match cmd {
        NodeControl::SetSlowMotion { ticket, .. }
        | NodeControl::SetFaults { ticket, .. }
        | NodeControl::Step { ticket, .. } => Some(*ticket),
        NodeControl::ArmCrashBeforeReply
        | NodeControl::ArmCrash { .. }
        | NodeControl::GoSilent { .. } => None,
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
        match framing::recv::<NodeReport, _>(&mut stream).await {
            Ok(NodeReport::Event { t_us, kind }) => w.bus.publish_at(&w.id, t_us, kind),
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
    let _ = w.exited.send(true);
}
