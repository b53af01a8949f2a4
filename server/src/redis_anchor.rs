//! The Redis anchor of `pbscope bench`: the same closed-loop lock workload against a Redis primary
//! with one replica, each write acknowledged only once the replica has it (`WAIT 1 0`), so that
//! pbscope's numbers have something well known next to them.
//!
//! - [`RedisPair`] starts `redis-server` twice on free loopback ports (a primary and a
//!   `--replicaof` replica, no persistence, in a temporary directory), as child processes of this
//!   one, and waits until the replica is in sync. Dropping it kills both and reaps them; a
//!   parent-death signal kills them too if this process dies without dropping it, so no
//!   `redis-server` outlives pbscope.
//! - [`closed_loop`] runs K clients, each on its own connection, calling Lock and Unlock back to
//!   back: Lock is `SET k 1 NX` then `WAIT 1 0`, Unlock is `DEL k` then `WAIT 1 0`. One operation's
//!   latency covers both commands. Every `WAIT` must answer 1 (the replica acknowledged), or the
//!   run fails: an anchor that is not really replicated would flatter Redis.
//! - [`RespConn`] and [`parse`] are a minimal RESP2 client of our own (commands as arrays of bulk
//!   strings; replies: simple strings, errors, integers, bulk strings, nil, arrays). Closed loop,
//!   so no pipelining.
//!
//! Lab 1's Lock answers true iff the lock was free, Unlock true iff it was held: `SET k 1 NX`
//! (`OK` or nil) and `DEL k` (1 or 0) answer the same questions.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to tell a person whose machine has no `redis-server`.
pub const INSTALL_HINT: &str =
    "redis-server is not installed (not found on PATH); install it with `apt-get install -y redis-server` \
     (scripts/setup does this on Debian)";

/// How long [`RedisPair::start`] waits for both servers to answer and the replica to be in sync.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one operation (both commands) of [`closed_loop`] may take before the run fails.
/// `WAIT 1 0` blocks until the replica acknowledges, forever if it never does.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many clients in one [`closed_loop`] (each is a connection and a task).
pub const MAX_CLIENTS: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// RESP2

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`
    Nil,
    /// `*2\r\n...`
    Array(Vec<Resp>),
}

/// A reply that is not RESP2: the connection cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad RESP reply: {0}")]
pub struct RespError(pub String);

/// Arrays nested deeper than this are refused (Redis's own replies nest two or three deep).
const MAX_DEPTH: usize = 64;
/// Redis's own limit for a bulk string (proto-max-bulk-len).
const MAX_BULK: i64 = 512 * 1024 * 1024;
/// A line (type byte, text, CRLF) longer than this without its CRLF is refused.
const MAX_LINE: usize = 64 * 1024;

/// Parses one reply from the start of `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` when
/// `buf` holds only part of a reply (read more and call again), or an error when the bytes are
/// not RESP2.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Resp, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError(format!("arrays nested deeper than {MAX_DEPTH}")));
    }
    let Some((line, next)) = line_at(buf, at)? else {
        return Ok(None);
    };
    let (kind, text) = line
        .split_first()
        .ok_or_else(|| RespError("empty line".into()))?;
    let text_str = || {
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| RespError("a line that is not UTF-8".into()))
    };
    match kind {
        b'+' => Ok(Some((Resp::Simple(text_str()?), next))),
        b'-' => Ok(Some((Resp::Error(text_str()?), next))),
        b':' => Ok(Some((Resp::Integer(integer(text)?), next))),
        b'$' => {
            let len = integer(text)?;
            if len == -1 {
                return Ok(Some((Resp::Nil, next)));
            }
            if !(0..=MAX_BULK).contains(&len) {
                return Err(RespError(format!("bulk string length {len}")));
            }
            let len = len as usize;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError(format!(
                    "bulk string of {len} bytes not followed by CRLF"
                )));
            }
            Ok(Some((Resp::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let n = integer(text)?;
            if n == -1 {
                return Ok(Some((Resp::Nil, next)));
            }
            if n < 0 {
                return Err(RespError(format!("array length {n}")));
            }
            // Never trust the announced length for an allocation: the elements prove it.
            let mut items = Vec::with_capacity((n as usize).min(1024));
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), pos)))
        }
        other => Err(RespError(format!(
            "unknown type byte {:?}",
            char::from(*other)
        ))),
    }
}

/// The line starting at `at` (without its CRLF) and the offset after the CRLF.
fn line_at(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], at + i + 2))),
        None if rest.len() > MAX_LINE => {
            Err(RespError(format!("a line longer than {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

fn integer(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            RespError(format!(
                "{:?} is not an integer",
                String::from_utf8_lossy(text)
            ))
        })
}

/// Writes `args` as a RESP2 command: an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection to a Redis server, one command at a time.
#[derive(Debug)]
pub struct RespConn {
    stream: TcpStream,
    addr: SocketAddr,
    inbuf: BytesMut,
    outbuf: Vec<u8>,
}

impl RespConn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RespConn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to redis at {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            stream,
            addr,
            inbuf: BytesMut::with_capacity(4096),
            outbuf: Vec::with_capacity(256),
        })
    }

    /// Sends one command and reads its reply. A Redis error reply is returned as
    /// [`Resp::Error`], not as `Err`: `Err` means the connection failed or spoke no RESP2.
    pub async fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Resp> {
        self.outbuf.clear();
        encode_command(args, &mut self.outbuf);
        self.stream
            .write_all(&self.outbuf)
            .await
            .with_context(|| format!("writing to redis at {}", self.addr))?;
        loop {
            if let Some((reply, used)) = parse(&self.inbuf)? {
                self.inbuf.advance(used);
                return Ok(reply);
            }
            let n = self
                .stream
                .read_buf(&mut self.inbuf)
                .await
                .with_context(|| format!("reading from redis at {}", self.addr))?;
            if n == 0 {
                bail!("redis at {} closed the connection", self.addr);
            }
        }
    }

    /// `INFO section` as its `key:value` lines.
    pub async fn info(&mut self, section: &str) -> anyhow::Result<String> {
        match self.command(&[b"INFO", section.as_bytes()]).await? {
            Resp::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => bail!("INFO {section} answered {other:?}"),
        }
    }
}

/// The value of `key` in an INFO text (`key:value` lines).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

// ---------------------------------------------------------------------------------------------
// The pair of servers

/// A Redis primary and its replica, child processes of this one on loopback ports.
///
/// Both are spawned from the thread that calls [`RedisPair::start`], with a parent-death signal
/// (SIGKILL) tied to that thread, as Linux does: call it from a thread that lives as long as the
/// pair (the main thread, or a runtime's worker), not from `spawn_blocking`.
#[derive(Debug)]
pub struct RedisPair {
    // Fields drop in this order: the processes (killed and reaped), then their directory.
    primary: RedisProcess,
    replica: RedisProcess,
    version: String,
    _dir: TempDir,
}

impl RedisPair {
    /// Starts a primary and a replica and waits until the replica is in sync (its
    /// `master_link_status` is `up` and the primary counts it online), at most [`START_TIMEOUT`].
    pub async fn start() -> anyhow::Result<RedisPair> {
        let exe = find_redis_server(std::env::var_os("PATH").as_deref())?;
        Self::start_with(&exe).await
    }

    /// [`RedisPair::start`] with a given `redis-server` executable.
    pub async fn start_with(redis_server: &Path) -> anyhow::Result<RedisPair> {
        let setpriv =
            find_on_path("setpriv", std::env::var_os("PATH").as_deref()).ok_or_else(|| {
                anyhow!(
                    "setpriv (util-linux) is not on PATH; pbscope needs it to give redis-server a \
                 parent-death signal"
                )
            })?;
        // A port picked free can be taken by someone else before redis binds it: then (only
        // then) try again with new ports.
        let mut attempt = 1;
        loop {
            match Self::try_start(redis_server, &setpriv).await {
                Ok(pair) => return Ok(pair),
                Err(e) if attempt < 3 && is_port_taken(&e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_start(redis_server: &Path, setpriv: &Path) -> anyhow::Result<RedisPair> {
        let dir = TempDir::new()?;
        let (p_port, r_port) = two_free_ports()?;
        let primary =
            RedisProcess::spawn("primary", redis_server, setpriv, &dir.path, p_port, None)?;
        let replica = RedisProcess::spawn(
            "replica",
            redis_server,
            setpriv,
            &dir.path,
            r_port,
            Some(p_port),
        )?;
        let mut pair = RedisPair {
            primary,
            replica,
            version: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut p = pair.primary.connect_until(deadline).await?;
        let mut r = pair.replica.connect_until(deadline).await?;
        loop {
            pair.primary.check_alive()?;
            pair.replica.check_alive()?;
            let (r_info, p_info) = tokio::time::timeout_at(deadline.into(), async {
                anyhow::Ok((r.info("replication").await?, p.info("replication").await?))
            })
            .await
            .map_err(|_| {
                anyhow!("redis did not answer INFO replication within {START_TIMEOUT:?}")
            })??;
            let link = info_field(&r_info, "master_link_status").unwrap_or("?");
            let online = info_field(&p_info, "slave0").is_some_and(|s| s.contains("state=online"));
            if link == "up" && online {
                break;
            }
            let last = format!(
                "replica master_link_status:{link}, primary slave0:{}",
                info_field(&p_info, "slave0").unwrap_or("(none)")
            );
            if Instant::now() >= deadline {
                bail!(
                    "the redis replica (port {}) did not get in sync with the primary (port {}) \
                     within {START_TIMEOUT:?}: {last}\nreplica log:\n{}",
                    pair.replica.addr.port(),
                    pair.primary.addr.port(),
                    pair.replica.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let server = tokio::time::timeout_at(deadline.into(), p.info("server"))
            .await
            .map_err(|_| anyhow!("redis did not answer INFO server within {START_TIMEOUT:?}"))??;
        pair.version = info_field(&server, "redis_version")
            .unwrap_or("unknown")
            .to_owned();
        Ok(pair)
    }

    /// The Redis version, as its `INFO server` says (e.g. "7.0.15").
    pub fn version(&self) -> String {
        self.version.clone()
    }

    pub fn primary_addr(&self) -> SocketAddr {
        self.primary.addr
    }

    pub fn replica_addr(&self) -> SocketAddr {
        self.replica.addr
    }

    /// The process ids: primary, then replica.
    pub fn pids(&self) -> [u32; 2] {
        [self.primary.child.id(), self.replica.child.id()]
    }
}

impl Drop for RedisPair {
    fn drop(&mut self) {
        // Kill both first so they die together; each `RedisProcess` then reaps its own.
        self.primary.kill();
        self.replica.kill();
    }
}

/// One `redis-server` child: SIGKILLed and reaped when dropped.
#[derive(Debug)]
struct RedisProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// Run by `/bin/sh` between `setpriv --pdeathsig KILL` and `redis-server`: if the parent died
/// before the parent-death signal was set, nobody would kill redis, so it is not started (the
/// same check as `node::die_with_parent`).
const PARENT_CHECK: &str =
    r#"[ "$PPID" = "$1" ] || { echo "parent $1 is gone" >&2; exit 97; }; shift; exec "$@""#;

impl RedisProcess {
    fn spawn(
        name: &'static str,
        redis_server: &Path,
        setpriv: &Path,
        dir: &Path,
        port: u16,
        replica_of: Option<u16>,
    ) -> anyhow::Result<RedisProcess> {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(setpriv);
        cmd.args(["--pdeathsig", "KILL", "--", "/bin/sh", "-c", PARENT_CHECK])
            .arg("redis-anchor")
            .arg(std::process::id().to_string())
            .arg(redis_server)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(["--dbfilename", &format!("{name}.rdb")])
            .arg("--logfile")
            .arg(&log)
            // Sync the replica straight from memory, at once (Redis 7 waits 5 s by default).
            .args(["--repl-diskless-sync", "yes"])
            .args(["--repl-diskless-sync-delay", "0"]);
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting redis-server ({name}) from {}",
                    redis_server.display()
                )
            })?;
        Ok(RedisProcess {
            name,
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
        })
    }

    /// An error if the process has exited (with the end of its log).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "redis-server ({}, port {}) exited ({status}); its log:\n{}",
                self.name,
                self.addr.port(),
                self.log_tail()
            ),
            Err(e) => Err(e).context("waiting on redis-server"),
        }
    }

    async fn connect_until(&mut self, deadline: Instant) -> anyhow::Result<RespConn> {
        loop {
            self.check_alive()?;
            // Bounded: whatever else may listen on the port (it was free a moment ago) need not
            // answer at all.
            let attempt = tokio::time::timeout(Duration::from_millis(500), async {
                let mut c = RespConn::connect(self.addr).await.ok()?;
                match c.command(&[b"PING"]).await {
                    Ok(Resp::Simple(s)) if s == "PONG" => Some(c),
                    _ => None,
                }
            });
            if let Ok(Some(c)) = attempt.await {
                return Ok(c);
            }
            if Instant::now() >= deadline {
                bail!(
                    "redis-server ({}) did not answer PING on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn kill(&mut self) {
        // An error means it is already gone (and reaped below).
        let _ = self.child.kill();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        // SIGKILL is immediate; this only collects the exit status so no zombie is left.
        let _ = self.child.wait();
    }
}

/// A directory of our own under the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "pbscope-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        remove_stale_dirs();
        // Left over by a process with the same pid that was killed: ours now.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

/// Removes the directories of pairs whose process was killed before it could drop them
/// (`pbscope-redis-<pid>-<n>` with no such pid running).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pbscope-redis-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether a start failed because a port was taken (redis's own words, in the log we quote).
fn is_port_taken(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("Address already in use")
}

fn two_free_ports() -> anyhow::Result<(u16, u16)> {
    // Both held at once so they differ; released just before redis binds them.
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// `redis-server` on `path` (a PATH value), or an error that says how to install it.
pub fn find_redis_server(path: Option<&OsStr>) -> anyhow::Result<PathBuf> {
    find_on_path("redis-server", path).ok_or_else(|| anyhow!(INSTALL_HINT))
}

fn find_on_path(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path: OsString = path.map(OsStr::to_owned).unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

// ---------------------------------------------------------------------------------------------
// The closed loop

/// The numbers of one [`closed_loop`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorResult {
    pub clients: u32,
    /// Lock and Unlock operations completed (each = the write and its `WAIT 1 0`).
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Operations that answered true (Lock got a free lock, Unlock found it held): all of them
    /// when `locks >= clients`.
    pub granted: u64,
    /// `WAIT 1 0` replies of 1 (the replica acknowledged), one per operation: equal to `ops`,
    /// or the run failed.
    pub waits_acked: u64,
}

/// The name the issue-10 contract gives it.
pub type LoadResult = AnchorResult;

/// The key client `c` (from 0) works on: its own when `locks >= clients`, else shared round-robin.
pub fn key_of(c: u32, locks: u32) -> String {
    format!("load-{}", c % locks.max(1))
}

/// Runs `clients` closed-loop clients for `duration` against `pair`'s primary, each alternating
/// Lock and Unlock on [`key_of`] its number, starting with Lock (the keys are deleted first).
/// Fails if any `WAIT 1 0` answers other than 1, any command fails, or one operation takes longer
/// than [`OP_TIMEOUT`].
pub async fn closed_loop(
    pair: &RedisPair,
    clients: u32,
    locks: u32,
    duration: Duration,
) -> anyhow::Result<AnchorResult> {
    closed_loop_with_timeout(pair, clients, locks, duration, OP_TIMEOUT).await
}

/// [`closed_loop`] with a given per-operation timeout.
pub async fn closed_loop_with_timeout(
    pair: &RedisPair,
    clients: u32,
    locks: u32,
    duration: Duration,
    op_timeout: Duration,
) -> anyhow::Result<AnchorResult> {
    if clients == 0 || clients > MAX_CLIENTS {
        bail!("clients must be from 1 to {MAX_CLIENTS}, not {clients}");
    }
    if locks == 0 {
        bail!("locks must be at least 1");
    }
    if duration.is_zero() {
        bail!("the duration must be more than zero");
    }
    let addr = pair.primary_addr();
    // Start from free locks, on the replica too (a previous run may have ended on a Lock). A
    // server that accepts but does not answer (stopped, hung) fails this within `op_timeout`.
    let prepare = async {
        let mut c = RespConn::connect(addr).await?;
        let keys: Vec<String> = (0..clients.min(locks)).map(|i| key_of(i, locks)).collect();
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        match c.command(&args).await? {
            Resp::Integer(_) => {}
            other => bail!("DEL of the bench keys answered {other:?}"),
        }
        match c.command(&[b"WAIT", b"1", b"0"]).await? {
            Resp::Integer(1) => {}
            other => bail!("WAIT 1 0 answered {other:?}, not 1"),
        }
        let mut conns = Vec::with_capacity(clients as usize);
        for _ in 0..clients {
            conns.push(RespConn::connect(addr).await?);
        }
        anyhow::Ok(conns)
    };
    let conns = tokio::time::timeout(op_timeout, prepare)
        .await
        .map_err(|_| {
            anyhow!(
                "redis did not get ready for the run within {op_timeout:?} (DEL of the keys, then \
             WAIT 1 0, which waits for the replica): is the primary or the replica stopped?"
            )
        })??;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let stop = stop.clone();
        let key = key_of(c as u32, locks);
        tasks.spawn(async move {
            let r = client_loop(conn, &key, deadline, op_timeout, &stop).await;
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            r.with_context(|| format!("redis anchor client {c} on {key}"))
        });
    }
    let mut lat = Vec::new();
    let mut granted = 0;
    let mut waits_acked = 0;
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(done)) => {
                lat.extend(done.latencies_us);
                granted += done.granted;
                waits_acked += done.waits_acked;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow!("a redis anchor client task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let ops = lat.len() as u64;
    Ok(AnchorResult {
        clients,
        ops,
        seconds,
        ops_per_s: ops as f64 / seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: lat.last().copied().unwrap_or(0),
        granted,
        waits_acked,
    })
}

struct ClientDone {
    latencies_us: Vec<u64>,
    granted: u64,
    waits_acked: u64,
}

async fn client_loop(
    mut conn: RespConn,
    key: &str,
    deadline: Instant,
    op_timeout: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<ClientDone> {
    let mut done = ClientDone {
        latencies_us: Vec::new(),
        granted: 0,
        waits_acked: 0,
    };
    let mut lock = true;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let what = if lock { "Lock" } else { "Unlock" };
        let granted = tokio::time::timeout(op_timeout, one_op(&mut conn, key, lock))
            .await
            .map_err(|_| {
                anyhow!(
                    "{what} got no answer within {op_timeout:?} (WAIT 1 0 waits until the replica \
                     acknowledges: is the replica alive?)"
                )
            })??;
        done.latencies_us.push(t.elapsed().as_micros() as u64);
        done.granted += u64::from(granted);
        // one_op returns only once its WAIT answered 1.
        done.waits_acked += 1;
        lock = !lock;
    }
    Ok(done)
}

/// Lock (`SET k 1 NX`) or Unlock (`DEL k`), then `WAIT 1 0`; true if granted.
async fn one_op(conn: &mut RespConn, key: &str, lock: bool) -> anyhow::Result<bool> {
    let granted = if lock {
        match conn.command(&[b"SET", key.as_bytes(), b"1", b"NX"]).await? {
            Resp::Simple(s) if s == "OK" => true,
            Resp::Nil => false,
            other => bail!("SET {key} 1 NX answered {other:?}"),
        }
    } else {
        match conn.command(&[b"DEL", key.as_bytes()]).await? {
            Resp::Integer(1) => true,
            Resp::Integer(0) => false,
            other => bail!("DEL {key} answered {other:?}"),
        }
    };
    match conn.command(&[b"WAIT", b"1", b"0"]).await? {
        Resp::Integer(1) => Ok(granted),
        other => bail!(
            "WAIT 1 0 answered {other:?}, not 1: the replica did not acknowledge, so the anchor \
             would not be replicated"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Resp {
        let (r, used) = parse(bytes).unwrap().expect("complete");
        assert_eq!(used, bytes.len(), "{bytes:?}");
        r
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(one(b"+OK\r\n"), Resp::Simple("OK".into()));
        assert_eq!(
            one(b"-ERR wrong number of arguments\r\n"),
            Resp::Error("ERR wrong number of arguments".into())
        );
        assert_eq!(one(b":1\r\n"), Resp::Integer(1));
        assert_eq!(one(b":-42\r\n"), Resp::Integer(-42));
        assert_eq!(one(b"$1\r\n1\r\n"), Resp::Bulk(b"1".to_vec()));
        assert_eq!(one(b"$0\r\n\r\n"), Resp::Bulk(Vec::new()));
        // A bulk string may hold CRLF itself: its length decides.
        assert_eq!(one(b"$4\r\na\r\nb\r\n"), Resp::Bulk(b"a\r\nb".to_vec()));
        assert_eq!(one(b"$-1\r\n"), Resp::Nil);
        assert_eq!(one(b"*-1\r\n"), Resp::Nil);
        assert_eq!(one(b"*0\r\n"), Resp::Array(vec![]));
    }

    #[test]
    fn parses_nested_arrays_with_nil_and_errors_inside() {
        let bytes = b"*3\r\n*2\r\n:1\r\n$3\r\nabc\r\n$-1\r\n*1\r\n-ERR x\r\n";
        assert_eq!(
            one(bytes),
            Resp::Array(vec![
                Resp::Array(vec![Resp::Integer(1), Resp::Bulk(b"abc".to_vec())]),
                Resp::Nil,
                Resp::Array(vec![Resp::Error("ERR x".into())]),
            ])
        );
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete_not_an_error() {
        let bytes: &[u8] = b"*3\r\n*2\r\n:1\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n";
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(bytes).unwrap().is_some());
    }

    #[test]
    fn leaves_the_next_reply_in_the_buffer() {
        let bytes = b":1\r\n+OK\r\n";
        let (r, used) = parse(bytes).unwrap().unwrap();
        assert_eq!((r, used), (Resp::Integer(1), 4));
        let (r, used) = parse(&bytes[used..]).unwrap().unwrap();
        assert_eq!((r, used), (Resp::Simple("OK".into()), 5));
    }

    #[test]
    fn refuses_what_is_not_resp2() {
        for bad in [
            &b"?what\r\n"[..],
            b":12x\r\n",
            b":\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$3\r\nabcXY",
            b"\r\n",
            b"$99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        let long = vec![b'+'; MAX_LINE + 2];
        assert!(parse(&long).is_err());
    }

    #[test]
    fn a_huge_announced_array_does_not_allocate_it() {
        // Claims 2^40 elements, holds one: incomplete, and no 2^40-element allocation.
        assert_eq!(parse(b"*1099511627776\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k", b"1", b"NX"], &mut out);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$2\r\nNX\r\n"
        );
        // What we write, we read back the same way.
        assert_eq!(
            one(&out),
            Resp::Array(
                [&b"SET"[..], b"k", b"1", b"NX"]
                    .iter()
                    .map(|a| Resp::Bulk(a.to_vec()))
                    .collect()
            )
        );
    }

    #[test]
    fn reads_fields_of_info() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave0:ip=127.0.0.1,state=online\r\n";
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link"), None);
        assert_eq!(
            info_field(info, "slave0"),
            Some("ip=127.0.0.1,state=online")
        );
    }

    #[test]
    fn a_missing_redis_server_names_the_install_command() {
        let err = find_redis_server(Some(OsStr::new("/nonexistent-dir-for-pbscope"))).unwrap_err();
        assert!(
            err.to_string().contains("apt-get install -y redis-server"),
            "{err}"
        );
        assert!(find_redis_server(None).is_err());
    }

    #[test]
    fn the_parent_check_starts_the_program_only_under_the_expected_parent() {
        let run = |parent: u32| {
            Command::new("/bin/sh")
                .args(["-c", PARENT_CHECK, "redis-anchor"])
                .arg(parent.to_string())
                .args(["/bin/sh", "-c", "exit 5"])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .code()
        };
        // Under us it execs the program (which exits 5); under any other parent it refuses (97).
        assert_eq!(run(std::process::id()), Some(5));
        assert_eq!(run(std::process::id() + 1), Some(97));
    }

    /// Writes a reply as a server would (test side only: the client never writes replies).
    fn write_reply(r: &Resp, out: &mut Vec<u8>) {
        match r {
            Resp::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Resp::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Resp::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Resp::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Resp::Nil => out.extend_from_slice(b"$-1\r\n"),
            Resp::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for i in items {
                    write_reply(i, out);
                }
            }
        }
    }

    fn any_reply() -> impl proptest::strategy::Strategy<Value = Resp> {
        use proptest::prelude::*;
        // Simple strings and errors cannot hold CR or LF.
        let line = "[^\r\n]{0,20}";
        let leaf = prop_oneof![
            line.prop_map(Resp::Simple),
            line.prop_map(Resp::Error),
            any::<i64>().prop_map(Resp::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Resp::Bulk),
            Just(Resp::Nil),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Resp::Array)
        })
    }

    proptest::proptest! {
        /// Any reply, cut anywhere, is incomplete until its last byte, then read back whole.
        #[test]
        fn any_reply_reads_back_and_its_prefixes_wait(r in any_reply()) {
            let mut bytes = Vec::new();
            write_reply(&r, &mut bytes);
            for cut in 0..bytes.len() {
                proptest::prop_assert_eq!(parse(&bytes[..cut]), Ok(None));
            }
            proptest::prop_assert_eq!(parse(&bytes), Ok(Some((r, bytes.len()))));
        }

        /// Whatever a peer sends, the parser answers (a reply, more please, or an error) and
        /// never claims more bytes than it was given.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(
            proptest::prelude::prop_oneof![
                proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'),
                proptest::prelude::Just(b'*'), proptest::prelude::Just(b'$'),
                proptest::prelude::Just(b':'), proptest::prelude::Just(b'-'),
                proptest::prelude::any::<u8>(), (b'0'..=b'9'),
            ], 0..200)) {
            if let Ok(Some((_, used))) = parse(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }

    /// The retry of [`RedisPair::start_with`] rests on Redis's words for a taken port.
    #[tokio::test]
    async fn a_taken_port_is_recognised_from_the_log() {
        let path = std::env::var_os("PATH");
        let exe = find_redis_server(path.as_deref()).unwrap();
        let setpriv = find_on_path("setpriv", path.as_deref()).unwrap();
        let dir = TempDir::new().unwrap();
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let mut p = RedisProcess::spawn("primary", &exe, &setpriv, &dir.path, port, None).unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        let err = p.connect_until(deadline).await.unwrap_err();
        assert!(is_port_taken(&err), "{err:#}");
    }

    /// A port taken by something that accepts and never answers used to hang the start on its
    /// PING forever: now each try is bounded and the start gives up at its deadline.
    #[tokio::test]
    async fn a_silent_listener_on_the_port_does_not_hang_the_start() {
        let dir = TempDir::new().unwrap();
        let silent = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = silent.local_addr().unwrap();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = silent.accept().await {
                held.push(sock);
            }
        });
        // A live child that is not redis, so only the port's silence can end the wait.
        let mut p = RedisProcess {
            name: "primary",
            child: Command::new("sleep").arg("600").spawn().unwrap(),
            addr,
            log: dir.path.join("none.log"),
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        let r = tokio::time::timeout(Duration::from_secs(20), p.connect_until(deadline)).await;
        let err = r.expect("connect_until hung").unwrap_err();
        assert!(err.to_string().contains("did not answer PING"), "{err:#}");
    }

    #[test]
    fn keys_are_own_when_there_are_enough_locks() {
        let keys: std::collections::BTreeSet<String> = (0..16).map(|c| key_of(c, 16)).collect();
        assert_eq!(keys.len(), 16);
        assert_eq!(key_of(5, 2), key_of(1, 2));
    }
}
