//! The `pbscope` command: `serve` (supervisor + gateway), `node` (one server process, started by
//! `serve`), `client` (one clerk's process, started by `serve`), `bench` (lock operations per
//! second). Argument parsing and process setup only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};
use server::bus::{Bus, BusConfig};
use server::campaign::{self, CampaignConfig, FaultKind};
use server::clerk::ClerkTiming;
use server::client::{self, ClientConfig};
use server::clock::RunClock;
use server::cluster::{Cluster, ClusterConfig, DEFAULT_MAX_LOCKS};
use server::gateway::{
    self, GatewayConfig, ViewerSlots, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_VIEWERS,
};
use server::http::{is_local_name, AccessPolicy};
use server::node::{self, NodeConfig};
use server::say;
use shared::{Role, Variant};
use tokio_util::sync::CancellationToken;

/// Every process of a run (supervisor, nodes, clients) allocates for each frame and event it
/// handles; glibc's malloc was 10-15% of all CPU under load (docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "pbscope",
    version,
    about = "Watch primary/backup replication happen on real processes, and break it on purpose"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start the cluster (s1 primary, s2 backup) and the WebSocket gateway.
    Serve(ServeArgs),
    /// One server process. Started by `serve`; not for people.
    #[command(hide = true)]
    Node(NodeArgs),
    /// One client process (a clerk). Started by `serve`; not for people.
    #[command(hide = true)]
    Client(ClientArgs),
    /// Measure lock operations per second against a real cluster (and Redis), and the
    /// failover window.
    Bench(BenchArgs),
    /// Start, change or stop the load generator of a running `pbscope serve`.
    Load(LoadArgs),
    /// Run randomized fault schedules against real processes and check every history for
    /// linearizability; exit 1 on any violation, printing the command that reruns it.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Schedules to run (each a fresh cluster, 1.5 s of calls by default).
    #[arg(long, default_value_t = 40, value_parser = u64_in(1, 100_000))]
    schedules: u64,
    /// Seeds every schedule (schedule I's seed is derived from it and I). Random if absent.
    #[arg(long, value_parser = u64_in(0, (1u64 << 53) - 1))]
    seed: Option<u64>,
    /// Index of the first schedule: `--first I --schedules 1` reruns schedule I alone.
    #[arg(long, default_value_t = 0, value_parser = u64_in(0, (1u64 << 53) - 1))]
    first: u64,
    /// Run a deliberately broken protocol (the campaign must find its violations).
    #[arg(long, value_parser = variant_parser())]
    variant: Option<Variant>,
    /// Fault kinds, comma-separated; each schedule draws one. Default: Lab 1's own model, one
    /// server halting at any point (crash, crash-point).
    #[arg(long, value_delimiter = ',', default_value = "crash,crash-point", value_parser = fault_parser())]
    faults: Vec<FaultKind>,
    /// Client processes calling Lock/Unlock closed-loop.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    clients: u32,
    /// Locks they share.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    locks: u32,
    /// How long the clients call in each schedule, in ms (faults that act through timeouts
    /// get 3 s more).
    #[arg(long, default_value_t = 1500, value_parser = u64_in(100, 60_000))]
    ops_ms: u64,
    /// Each client waits a random 0 to this many ms before each call (0: back to back).
    #[arg(long, default_value_t = 0, value_parser = u64_in(0, 10_000))]
    think_ms: u64,
    /// Write the first failing schedule's run (its events and the checker's verdicts) to this
    /// file, which the page's Open run shows.
    #[arg(long)]
    save: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

/// `--faults a,b`: fault kind names, or clap refuses them and lists the kinds.
fn fault_parser() -> impl clap::builder::TypedValueParser<Value = FaultKind> {
    clap::builder::PossibleValuesParser::new(FaultKind::ALL.map(FaultKind::name))
        .map(|name| FaultKind::from_name(&name).expect("one of the possible values"))
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address of the gateway (HTTP + WebSocket at /ws). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Serve the built page (trunk's dist/) from the same port.
    #[arg(long)]
    dist: Option<PathBuf>,
    /// Also accept WebSocket upgrades from this page origin (e.g. http://lab.example:8080).
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Also accept this host name in the Host header (needed when binding beyond loopback).
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Events kept in the history ring.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    history: u32,
    /// Most events in a snapshot.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    snapshot_events: u32,
    /// Events a viewer may fall behind before it is resynchronised by a snapshot.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    viewer_buffer: u32,
    /// Initial slow-motion delay of every message, in ms (0 = real speed).
    #[arg(long, default_value_t = 0, value_parser = u64_in(0, MAX_DELAY_MS))]
    slow_motion_ms: u64,
    /// Sustained commands per second per viewer.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    commands_per_sec: u32,
    /// Largest client id of a person's clients (the load generator's clerks come after 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=(shared::LOAD_FIRST_CLIENT as i64 - 1)))]
    max_client: u32,
    /// An HTTP request head must arrive within this many ms (slow clients are cut off; idle
    /// keep-alive connections close after it too).
    #[arg(long, default_value_t = 10_000, value_parser = u64_in(100, 600_000))]
    header_timeout_ms: u64,
    /// Most distinct lock names one cluster generation takes.
    #[arg(long, default_value_t = DEFAULT_MAX_LOCKS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_locks: u32,
    /// HTTP connections served at once (WebSocket viewers count separately); more get 503.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    max_connections: u32,
    /// WebSocket viewers connected at once.
    #[arg(long, default_value_t = DEFAULT_MAX_VIEWERS as u32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_viewers: u32,
    /// Do not check the clients' history live (no `verdict` events).
    #[arg(long)]
    no_check: bool,
    /// Run a deliberately broken protocol, to see the checker catch it (never the default).
    #[arg(long, value_parser = variant_parser())]
    variant: Option<Variant>,
    /// Threads running the supervisor's tasks (the bus, the gateway, the load's clerks). One
    /// did 5-30% more calls/s than two on 2 cores (docs/performance.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
}

/// `--variant NAME`: one of [`Variant::ALL`]'s names, or clap refuses it and lists them.
fn variant_parser() -> impl clap::builder::TypedValueParser<Value = Variant> {
    clap::builder::PossibleValuesParser::new(Variant::ALL.map(Variant::name))
        .map(|name| Variant::from_name(&name).expect("one of the possible values"))
}

/// The largest slow-motion delay, on the command line as on the wire.
const MAX_DELAY_MS: u64 = 10_000;

/// What every process the supervisor spawns is told: where to report, how to prove it is the
/// process spawned, the run's clock and message-id origin, and whose death it dies with.
#[derive(clap::Args, Debug)]
struct ProcessArgs {
    #[arg(long)]
    control: SocketAddr,
    #[arg(long)]
    token: u64,
    #[arg(long)]
    epoch_ns: u64,
    #[arg(long)]
    origin: u64,
    #[arg(long)]
    parent_pid: Option<u32>,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    #[arg(long)]
    id: String,
    #[arg(long, value_parser = parse_role)]
    role: Role,
    #[command(flatten)]
    process: ProcessArgs,
    #[arg(long, default_value_t = 0, value_parser = u64_in(0, MAX_DELAY_MS))]
    slow_motion_ms: u64,
    /// The backup to forward to, as ID=ADDR (for a primary).
    #[arg(long, value_parser = parse_backup)]
    backup: Option<(String, String)>,
    /// Port to listen on (0: any free one; a restart reuses the old one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, value_parser = variant_parser())]
    variant: Option<Variant>,
}

#[derive(clap::Args, Debug)]
struct ClientArgs {
    /// The client lane (1 for c1).
    #[arg(long)]
    client: u32,
    #[arg(long, default_value_t = 0)]
    incarnation: u32,
    #[command(flatten)]
    process: ProcessArgs,
    /// A server as ID=ADDR, in failover order (the primary first).
    #[arg(long = "server", value_parser = parse_server, required = true)]
    servers: Vec<(String, SocketAddr)>,
    /// The slow-motion history as AGO_US:DELAY_MS pairs, oldest first.
    #[arg(long, value_delimiter = ',', value_parser = parse_age)]
    slow_motion: Vec<(Duration, Duration)>,
    #[arg(long)]
    reply_timeout_ms: u64,
    #[arg(long)]
    connect_timeout_ms: u64,
    #[arg(long)]
    give_up_ms: u64,
    #[arg(long)]
    retry_pause_ms: u64,
    #[arg(long, value_parser = variant_parser())]
    variant: Option<Variant>,
}

fn parse_server(s: &str) -> Result<(String, SocketAddr), String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=ADDR")?;
    Ok((
        id.to_owned(),
        addr.parse().map_err(|e| format!("{addr}: {e}"))?,
    ))
}

fn parse_age(s: &str) -> Result<(Duration, Duration), String> {
    let (ago, delay) = s.split_once(':').ok_or("expected AGO_US:DELAY_MS")?;
    let n = |v: &str| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
    Ok((
        Duration::from_micros(n(ago)?),
        Duration::from_millis(n(delay)?),
    ))
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Client counts to measure, one run each (1 to 256 clerks).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64", value_parser = parse_client_count)]
    clients: Vec<u32>,
    /// Length of each run, in seconds (0.1 to 3600).
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Also run each count with a real WebSocket viewer reading every event through the gateway.
    #[arg(long)]
    viewer: bool,
    /// Kill the primary this many times under load and report the failover window.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    failover: u32,
    /// Clerks calling closed loop while `--failover` kills the primary (1 to 256).
    #[arg(long, default_value_t = server::bench::FAILOVER_CLIENTS, value_parser = parse_client_count,
          requires = "failover")]
    failover_clients: u32,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
    /// Run the same workload against Redis (primary + replica, WAIT 1 0) and print the ratios
    /// (needs redis-server: scripts/bench installs it).
    #[arg(long)]
    redis: bool,
    /// Run each client count's phases this many times, interleaved (1 to 20), and report each
    /// system's middle round: on a shared machine one round can be slowed by its neighbours.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Threads running the supervisor's tasks, as `pbscope serve --workers`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// The `pbscope serve` to drive (its gateway's address).
    #[arg(long, default_value = "127.0.0.1:9000")]
    server: String,
    /// Clerks calling at once (0 stops).
    #[arg(long, required_unless_present = "stop",
          value_parser = clap::value_parser!(u32).range(0..=shared::MAX_LOAD_CLIENTS as i64))]
    clients: Option<u32>,
    /// Target calls per second for all the clerks together (0: closed loop).
    #[arg(long, default_value_t = 0, value_parser = u64_in(0, shared::MAX_LOAD_RATE))]
    rate: u64,
    /// Lock names to spread the calls over (load-0 ..).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=shared::MAX_LOAD_LOCKS as i64))]
    locks: u32,
    /// Every call on one lock, load-hot.
    #[arg(long)]
    hot: bool,
    /// Fraction of the calls that are Unlock (0 to 1).
    #[arg(long, default_value_t = 0.5, value_parser = parse_share)]
    unlock_share: f64,
    /// Stop the load.
    #[arg(long, conflicts_with_all = ["clients", "hot"])]
    stop: bool,
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from 0 to 1, not {s}"))
    }
}

/// A whole number option from `lo` to `hi` (at most 2^53). Read as a signed number first, so a
/// negative value gets the range in its message ("-1 is not in 0..=10000") rather than
/// "invalid digit found in string".
fn u64_in(lo: u64, hi: u64) -> impl clap::builder::TypedValueParser<Value = u64> {
    let (lo, hi) = (
        i64::try_from(lo).unwrap_or(i64::MAX),
        i64::try_from(hi).unwrap_or(i64::MAX),
    );
    clap::value_parser!(i64)
        .range(lo..=hi)
        .map(|v| u64::try_from(v).unwrap_or_default())
}

/// One of `bench --clients`' counts. An empty one is a comma too many (`1,,16`), not a number
/// that failed to parse.
fn parse_client_count(s: &str) -> Result<u32, String> {
    let max = shared::MAX_LOAD_CLIENTS;
    if s.trim().is_empty() {
        return Err(format!(
            "a client count is missing: give counts from 1 to {max} with one comma between them (1,16,64)"
        ));
    }
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=i64::from(max)).contains(&n) => Ok(n as u32),
        Ok(n) => Err(format!("{n} is not in 1..={max}")),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

/// A count named twice in `bench --clients` would run its phases twice and print two rows
/// that look like one measured twice: refused, naming it.
fn repeated_client_count(counts: &[u32]) -> Option<u32> {
    counts
        .iter()
        .enumerate()
        .find(|(i, c)| counts[..*i].contains(c))
        .map(|(_, c)| *c)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from 0.1 to 3600 seconds, not {s}"))
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "primary" => Ok(Role::Primary),
        "backup" => Ok(Role::Backup),
        other => Err(format!("role must be primary or backup, not {other:?}")),
    }
}

fn parse_backup(s: &str) -> Result<(String, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=ADDR")?;
    Ok((id.to_owned(), addr.to_owned()))
}

fn main() -> anyhow::Result<()> {
    let cli = parse_cli();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Every command, `serve` and each `node` process alike, before anything opens a socket.
    server::oserror::raise_fd_limit();
    match cli.command {
        Cmd::Node(args) => run_node(args),
        Cmd::Client(args) => run_client(args),
        Cmd::Serve(args) => runtime_of(args.workers)?.block_on(serve(args)),
        Cmd::Bench(args) => runtime_of(args.workers)?.block_on(bench(args)),
        Cmd::Load(args) => {
            let ok = runtime()?.block_on(load(args))?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Check(args) => {
            let violations = runtime()?.block_on(check(args))?;
            if violations {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Parses the command line. Every option that takes a value accepts one that starts with a
/// hyphen, so `--clients -3` (or `-3,5`, or `--seconds -inf`) is refused by the option's own
/// check ("-3 is not in 1..=256") instead of clap's "unexpected argument '-3'". (An option
/// followed by another, `--clients --viewer`, is then told that `--viewer` is not a valid value.)
fn parse_cli() -> Cli {
    fn negatives_are_values(cmd: clap::Command) -> clap::Command {
        let valued: Vec<clap::Id> = cmd
            .get_arguments()
            .filter(|a| a.get_action().takes_values())
            .map(|a| a.get_id().clone())
            .collect();
        let cmd = valued
            .into_iter()
            .fold(cmd, |c, id| c.mut_arg(id, |a| a.allow_hyphen_values(true)));
        let subs: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        subs.into_iter()
            .fold(cmd, |c, name| c.mut_subcommand(name, negatives_are_values))
    }
    let matches = negatives_are_values(<Cli as clap::CommandFactory>::command()).get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The supervisor's runtime: `workers` threads for its tasks (blocking work, the snapshots and
/// run files, goes to tokio's blocking threads; the live checker has a thread of its own). On 2
/// cores one worker beat two: the bus's lock, its chunks and the tasks' wake-ups stay on one
/// core, and the servers' processes get the other (docs/performance.md, "One worker").
fn runtime_of(workers: u32) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1) as usize)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let p = args.process;
    node::die_with_parent(p.parent_pid)?;
    let cfg = NodeConfig {
        id: args.id.into(),
        role: args.role,
        control: p.control,
        token: p.token,
        epoch_ns: p.epoch_ns,
        origin: p.origin,
        parent_pid: p.parent_pid,
        slow_motion_ms: args.slow_motion_ms,
        backup: args.backup.map(|(id, addr)| (id.into(), addr)),
        port: args.port,
        variant: args.variant,
    };
    // One thread: a node is a small sequential server, and its event order is its program order.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(node::run(cfg))
}

fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let p = args.process;
    node::die_with_parent(p.parent_pid)?;
    let cfg = ClientConfig {
        id: args.client,
        incarnation: args.incarnation,
        control: p.control,
        token: p.token,
        epoch_ns: p.epoch_ns,
        origin: p.origin,
        servers: args
            .servers
            .into_iter()
            .map(|(id, addr)| (id.into(), addr))
            .collect(),
        slow_motion: args.slow_motion,
        timing: ClerkTiming {
            reply_timeout: Duration::from_millis(args.reply_timeout_ms),
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            give_up_after: Duration::from_millis(args.give_up_ms),
            retry_pause: Duration::from_millis(args.retry_pause_ms),
        },
        variant: args.variant,
    };
    // One thread, like a node: one clerk, one call at a time.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client::run(cfg))
}

fn cluster_config(
    slow_motion_ms: u64,
    max_client: u32,
    max_locks: usize,
    variant: Option<Variant>,
) -> anyhow::Result<ClusterConfig> {
    Ok(ClusterConfig {
        node_exe: std::env::current_exe().context("locating the pbscope binary")?,
        slow_motion_ms,
        clerk_timing: ClerkTiming::default(),
        max_client,
        max_locks,
        variant,
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            "listening on {} beyond loopback: anyone who can reach it can kill processes",
            args.listen
        );
    }
    if let Some(dist) = args.dist.as_deref().filter(|d| !d.is_dir()) {
        tracing::warn!(
            "--dist {} is not a folder (yet): every page request will be answered 404",
            dist.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut allow_hosts = args.allow_hosts;
    if !is_local_name(&addr.ip().to_string()) && !addr.ip().is_unspecified() {
        allow_hosts.push(addr.ip().to_string());
    }
    let bus = Bus::new(
        RunClock::start(),
        BusConfig {
            history: args.history as usize,
            snapshot_events: args.snapshot_events as usize,
            viewer_buffer: args.viewer_buffer as usize,
            ..BusConfig::default()
        },
    );
    if !args.no_check {
        server::live_check::spawn(&bus, checker::Budget::default())
            .context("starting the checker's thread")?;
    }
    let cluster = Cluster::start(
        bus,
        cluster_config(
            args.slow_motion_ms,
            args.max_client,
            args.max_locks as usize,
            args.variant,
        )?,
    )
    .await?;
    if args.slow_motion_ms > 0 {
        cluster.set_slow_motion(args.slow_motion_ms).await;
    }
    let shutdown = CancellationToken::new();
    let gateway_cfg = GatewayConfig {
        access: AccessPolicy {
            allow_origins: args.allow_origins,
            allow_hosts,
        },
        dist: args.dist,
        commands_per_sec: args.commands_per_sec.max(1),
        header_read_timeout: Duration::from_millis(args.header_timeout_ms),
        max_delay_ms: MAX_DELAY_MS,
        viewer_slots: ViewerSlots::new(args.max_viewers as usize),
        max_connections: args.max_connections as usize,
        ..GatewayConfig::default()
    };
    let pids: Vec<String> = cluster
        .pids()
        .await
        .into_iter()
        .map(|(id, pid)| format!("{id}={pid}"))
        .collect();
    // Nobody may be reading (`pbscope serve | head -1`): a closed stdout must not stop it.
    say!(
        "pbscope listening on http://{addr} (WebSocket ws://{addr}/ws); servers {}",
        pids.join(" ")
    );
    if let Some(v) = args.variant {
        say!("pbscope: running the deliberately BROKEN protocol variant {v}");
        tracing::warn!("protocol variant {v}: broken on purpose, not Lab 1's design");
    }
    let gw = tokio::spawn(gateway::run(
        listener,
        cluster.clone(),
        gateway_cfg,
        shutdown.clone(),
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("pbscope: shutting down, stopping the cluster");
    shutdown.cancel();
    cluster.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), gw).await;
    Ok(())
}

/// `--save PATH` must be a file this process can write, checked before any schedule runs. A
/// file that did not exist is not left behind.
fn check_save_path(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{} is a directory, not a file", path.display()));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// `pbscope check`: returns whether a violation was found.
async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    if let Some(path) = &args.save {
        if let Err(why) = check_save_path(path) {
            eprintln!("error: invalid value for '--save <SAVE>': {why}");
            std::process::exit(2);
        }
    }
    let mut faults = args.faults;
    faults.sort_unstable();
    faults.dedup();
    let cfg = CampaignConfig {
        node_exe: std::env::current_exe().context("locating the pbscope binary")?,
        seed: args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                & ((1u64 << 53) - 1)
        }),
        first: args.first,
        schedules: args.schedules,
        variant: args.variant,
        faults,
        clients: args.clients,
        locks: args.locks,
        ops: Duration::from_millis(args.ops_ms),
        think: Duration::from_millis(args.think_ms),
    };
    say!(
        "pbscope check: {} schedules from #{} (seed {}), faults {}, {} clients on {} locks, {} ms of calls each, {}",
        cfg.schedules,
        cfg.first,
        cfg.seed,
        cfg.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        cfg.clients,
        cfg.locks,
        cfg.ops.as_millis(),
        cfg.variant.map_or("the correct protocol".to_owned(), |v| format!("the BROKEN variant {v}")),
    );
    let report = campaign::run_campaign(&cfg, args.save, args.quiet).await?;
    say!();
    say!("{}", report.table().trim_end_matches('\n'));
    if report.violating.is_empty() {
        say!("no violation in {} schedules", report.schedules);
        return Ok(false);
    }
    say!(
        "{} of {} schedules violated linearizability (first after {} schedules); rerun one with:",
        report.violating.len(),
        report.schedules,
        report.schedules_to_first.unwrap_or(0)
    );
    for (_, cmd, _) in report.violating.iter().take(10) {
        say!("  {cmd}");
    }
    if report.violating.len() > 10 {
        say!("  ... and {} more", report.violating.len() - 10);
    }
    if let Some(path) = &report.saved {
        say!(
            "the first failing run is saved in {} (open it on the page: Open run)",
            path.display()
        );
    }
    Ok(true)
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(twice) = repeated_client_count(&args.clients) {
        let list: Vec<String> = args.clients.iter().map(u32::to_string).collect();
        eprintln!(
            "error: invalid value '{}' for '--clients <CLIENTS>': {twice} is given more than once (each count is one row of the table)",
            list.join(",")
        );
        std::process::exit(2);
    }
    let run = Box::pin(server::bench::run(server::bench::BenchConfig {
        cluster: cluster_config(0, 1000, DEFAULT_MAX_LOCKS, None)?,
        clients: args.clients,
        seconds: args.seconds,
        viewer: args.viewer,
        failover: args.failover,
        failover_clients: args.failover_clients,
        redis: args.redis,
        json: args.json,
        rounds: args.rounds,
    }));
    // Ctrl-C, SIGTERM or SIGHUP (the terminal closed): the run is dropped first, which kills and reaps the Redis pair and
    // removes its directory, and stops the clusters; then the exit status says which signal.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let code = tokio::select! {
        done = run => return done,
        _ = tokio::signal::ctrl_c() => 130,
        _ = term.recv() => 143,
        _ = hangup.recv() => 129,
    };
    eprintln!("pbscope bench: interrupted; the servers it started are stopped");
    std::process::exit(code)
}

/// `pbscope load`: sends the command, prints the answer; false on an error.
async fn load(args: LoadArgs) -> anyhow::Result<bool> {
    let cmd = if args.stop {
        shared::Command::LoadStop { tag: None }
    } else {
        shared::Command::Load {
            settings: shared::LoadSettings {
                clients: args.clients.unwrap_or(0),
                rate: args.rate,
                locks: args.locks,
                distribution: if args.hot {
                    shared::LoadDistribution::Hot
                } else {
                    shared::LoadDistribution::Uniform
                },
                unlock_share: args.unlock_share,
            },
            tag: None,
        }
    };
    match server::load::send_command(&args.server, cmd).await? {
        shared::ServerMsg::Ack { detail, .. } => {
            say!("{detail}");
            Ok(true)
        }
        shared::ServerMsg::Error { code, message, .. } => {
            eprintln!("pbscope load: refused ({code:?}): {message}");
            Ok(false)
        }
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}
