//! Test support: start a real `pbscope serve` (real node processes) on a free port and talk to
//! it with a real WebSocket client.
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shared::{ErrorCode, Event, EventKind, Hello, NodeInfo, Op, ServerMsg, Snapshot};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(20);

/// A `pbscope serve` process.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Server {
        Self::start_under(&[], extra).await
    }

    /// Starts `pbscope serve` through a wrapper command: `prefix` (say `sh -c 'ulimit ...;
    /// exec "$0" "$@"'`) runs with the binary's path and the serve arguments after it, and must
    /// `exec` them so that the child's pid is the server's.
    pub async fn start_under(prefix: &[&str], extra: &[&str]) -> Server {
        {
            let mut cmd = match prefix.split_first() {
                None => Command::new(env!("CARGO_BIN_EXE_pbscope")),
                Some((program, args)) => {
                    let mut cmd = Command::new(program);
                    cmd.args(args).arg(env!("CARGO_BIN_EXE_pbscope"));
                    cmd
                }
            };
            let mut child = cmd
                .args(["serve", "--listen", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn pbscope serve");
            let stdout = child.stdout.take().expect("stdout piped");
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("pbscope serve printed its address in time")
                .expect("read stdout")
                .expect("a line");
            let addr = line
                .split("http://")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
                .to_owned();
            Server { child, addr }
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub async fn viewer(&self) -> Viewer {
        Viewer::connect(&self.ws_url()).await
    }
}

/// True while a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
    }
}

pub async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket viewer that keeps every event it received.
pub struct Viewer {
    pub ws: Ws,
    pub hello: Hello,
    pub snapshot: Snapshot,
    pub events: Vec<Event>,
    /// Messages other than events, in arrival order (acks, errors, later snapshots).
    pub others: Vec<ServerMsg>,
    tags: u64,
}

impl Viewer {
    pub async fn connect(url: &str) -> Viewer {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Self::from_ws(ws).await
    }

    pub async fn from_ws(mut ws: Ws) -> Viewer {
        let hello = match next_msg(&mut ws).await {
            ServerMsg::Hello(h) => h,
            other => panic!("first message must be hello, got {other:?}"),
        };
        let snapshot = match next_msg(&mut ws).await {
            ServerMsg::Snapshot(s) => s,
            other => panic!("second message must be snapshot, got {other:?}"),
        };
        Viewer {
            ws,
            hello,
            events: snapshot.events.clone(),
            snapshot: *snapshot,
            others: vec![],
            tags: 0,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Receives one message, recording it.
    pub async fn recv(&mut self) -> ServerMsg {
        let m = next_msg(&mut self.ws).await;
        match &m {
            ServerMsg::Events { events } => self.events.extend(events.iter().cloned()),
            other => self.others.push(other.clone()),
        }
        m
    }

    /// Reads until an event satisfies `pred` (also searching what was already received after
    /// index `from`).
    pub async fn wait_event_from(&mut self, from: usize, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut checked = from;
        loop {
            if let Some(e) = self.events[checked.min(self.events.len())..]
                .iter()
                .find(|e| pred(e))
            {
                return e.clone();
            }
            checked = self.events.len();
            if tokio::time::timeout_at(deadline, self.recv())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for an event; last events: {:#?}",
                    self.events.iter().rev().take(8).collect::<Vec<_>>()
                );
            }
        }
    }

    pub async fn wait_event(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        self.wait_event_from(0, pred).await
    }

    fn next_tag(&mut self) -> String {
        self.tags += 1;
        format!("t{}", self.tags)
    }

    /// Sends a command with a fresh tag and returns the ack's detail or the error.
    pub async fn command(&mut self, mut cmd: Value) -> Result<String, (ErrorCode, String)> {
        let tag = self.next_tag();
        cmd["tag"] = json!(tag);
        self.send(cmd).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = self.others.len();
        loop {
            for m in &self.others[seen..] {
                match m {
                    ServerMsg::Ack {
                        tag: Some(t),
                        detail,
                        ..
                    } if *t == tag => return Ok(detail.clone()),
                    ServerMsg::Error {
                        tag: Some(t),
                        code,
                        message,
                    } if *t == tag => return Err((*code, message.clone())),
                    _ => {}
                }
            }
            seen = self.others.len();
            tokio::time::timeout_at(deadline, self.recv())
                .await
                .expect("an answer to the command");
        }
    }

    /// Calls Lock/Unlock through clerk `client` and waits for the answer event.
    pub async fn call(&mut self, client: u32, op: Op, lock: &str) -> Event {
        let ty = match op {
            Op::Lock => "lock",
            Op::Unlock => "unlock",
        };
        let tag = self.next_tag();
        let from = self.events.len();
        self.send(json!({"type": ty, "client": client, "lock": lock, "tag": tag}))
            .await;
        self.answer_of(from, &tag).await
    }

    /// Waits for the end (`op_completed` or `op_failed`) of the call tagged `tag`, looking from
    /// event index `from` on.
    pub async fn answer_of(&mut self, from: usize, tag: &str) -> Event {
        self.wait_event_from(from, |e| match &e.kind {
            EventKind::OpCompleted { tag: Some(t), .. }
            | EventKind::OpFailed { tag: Some(t), .. } => t == tag,
            _ => false,
        })
        .await
    }

    /// The answer of a call, which must have completed.
    pub async fn call_ok(&mut self, client: u32, op: Op, lock: &str) -> bool {
        match self.call(client, op, lock).await.kind {
            EventKind::OpCompleted { ok, .. } => ok,
            other => panic!("call failed: {other:?}"),
        }
    }

    /// A fresh snapshot from the server.
    pub async fn fresh_snapshot(&mut self) -> Snapshot {
        self.send(json!({"type": "snapshot"})).await;
        loop {
            if let ServerMsg::Snapshot(s) = self.recv().await {
                return *s;
            }
        }
    }

    pub async fn nodes(&mut self) -> BTreeMap<String, NodeInfo> {
        self.fresh_snapshot()
            .await
            .nodes
            .into_iter()
            .map(|n| (n.id.to_string(), n))
            .collect()
    }
}

pub async fn next_msg(ws: &mut Ws) -> ServerMsg {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("valid frame");
        match frame {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("server sent invalid message {t}: {e}"))
            }
            Message::Close(c) => panic!("server closed the connection: {c:?}"),
            _ => continue,
        }
    }
}

/// The events of one call (one request id), in log order.
pub fn events_of(events: &[Event], client: u32, seq: u64) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| match &e.kind {
            // A batch belongs to every call it carries.
            EventKind::MsgSent { msg, .. } => msg
                .reqs()
                .iter()
                .any(|req| req.client == client && req.seq == seq),
            EventKind::Executed { req, .. } => req.client == client && req.seq == seq,
            _ => false,
        })
        .collect()
}

/// Asserts that nothing in `events` is a failover or a role change.
#[track_caller]
pub fn assert_no_failover(events: &[Event]) {
    let trouble: Vec<&Event> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::RpcFailed { .. } | EventKind::RoleChanged { .. }
            )
        })
        .collect();
    assert!(
        trouble.is_empty(),
        "no failover, no role change: {trouble:?}"
    );
}

/// `(ok, server, attempts, req)` of a call that must have completed.
#[track_caller]
pub fn completed(e: &Event) -> (bool, String, u32, shared::RequestId) {
    match &e.kind {
        EventKind::OpCompleted {
            ok,
            server,
            attempts,
            req,
            ..
        } => (*ok, server.to_string(), *attempts, *req),
        other => panic!("expected op_completed, got {other:?}"),
    }
}

impl Viewer {
    /// The reason of the clerk's `rpc_failed` for `req`, looking from event index `from` on.
    pub async fn rpc_failed_reason(&mut self, from: usize, req: shared::RequestId) -> String {
        let failed = self
            .wait_event_from(
                from,
                |e| matches!(&e.kind, EventKind::RpcFailed { req: r, .. } if *r == req),
            )
            .await;
        match failed.kind {
            EventKind::RpcFailed { reason, .. } => reason,
            _ => unreachable!(),
        }
    }
}

/// One plain HTTP/1.1 request on its own connection (`Connection: close`): the status, the
/// headers (names lowercased) and the whole body. `headers` are extra lines, each ending in
/// `\r\n`; the `Host` is 127.0.0.1 unless they carry their own.
pub async fn http_get(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let host = if headers.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        "Host: 127.0.0.1\r\n".to_owned()
    };
    let req = format!("{method} {path} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the whole answer in time")
        .expect("read");
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8(all[..end].to_vec()).expect("head is text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, all[end..].to_vec())
}
