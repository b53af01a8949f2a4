//! The gateway's HTTP side against a real `pbscope serve`, spoken over raw TCP so that every byte
//! the server writes is seen: percent-decoding, paths and symlinks that try to leave `dist/`,
//! HEAD, keep-alive, revalidation, a slow request head, and WebSocket upgrades beside the files.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const INDEX: &str = "<!doctype html><h1>pbscope test page</h1>";
const SPACED: &str = "a file whose name has a space";
/// Lives beside `dist/`, never inside it: no answer may contain it.
const SECRET: &str = "secret-outside-dist";

/// A folder with `dist/` (the served page) and a secret file next to it; removed on drop.
struct Site {
    top: PathBuf,
}

impl Site {
    fn new(name: &str) -> Site {
        let top = std::env::temp_dir().join(format!("pbscope-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let dist = top.join("dist");
        std::fs::create_dir_all(dist.join("sub")).unwrap();
        std::fs::write(dist.join("index.html"), INDEX).unwrap();
        std::fs::write(dist.join("a b.txt"), SPACED).unwrap();
        std::fs::write(dist.join("sub").join("index.html"), "sub page").unwrap();
        std::fs::write(top.join("secret.txt"), SECRET).unwrap();
        Site { top }
    }

    fn dist(&self) -> PathBuf {
        self.top.join("dist")
    }

    async fn serve(&self, extra: &[&str]) -> Server {
        let dist = self.dist();
        let mut args = vec!["--dist", dist.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start_with(&args).await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

/// One parsed response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client connection that reads responses one at a time.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, extra_headers: &str) {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n");
        self.stream.write_all(req.as_bytes()).await.expect("write");
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response. A HEAD's response has no body, whatever Content-Length says.
    async fn reply(&mut self, to_head: bool) -> Reply {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(self.fill().await > 0, "closed before a response head");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("head is text");
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: vec![],
        };
        if to_head || status == 304 {
            return reply;
        }
        let len: usize = reply
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .parse()
            .unwrap();
        while self.buf.len() < len {
            assert!(self.fill().await > 0, "closed inside a body");
        }
        reply.body = self.buf.drain(..len).collect();
        reply
    }

    /// Everything the server still sends until it closes.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }
}

/// One request on a fresh connection that asks to be closed after it.
async fn get(addr: &str, path: &str) -> Reply {
    let mut c = Conn::open(addr).await;
    c.send("GET", path, "Connection: close\r\n").await;
    c.reply(false).await
}

#[tokio::test]
async fn percent_encoded_paths_are_decoded() {
    let site = Site::new("percent");
    let server = site.serve(&[]).await;
    let r = get(&server.addr, "/a%20b.txt").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), SPACED);
    let r = get(&server.addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), INDEX);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = get(&server.addr, "/sub/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "sub page"));
    assert_eq!(get(&server.addr, "/a%20c.txt").await.status, 404);
}

#[tokio::test]
async fn paths_that_climb_out_of_dist_are_refused() {
    let site = Site::new("climb");
    let server = site.serve(&[]).await;
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/%2fetc%2fpasswd",
        "/index.html%00.txt",
    ] {
        let r = get(&server.addr, path).await;
        assert!(
            r.status == 400 || r.status == 404,
            "{path} must be refused, got {r:?}"
        );
        assert!(!r.text().contains(SECRET), "{path} leaked the secret");
    }
    // The refusals harmed nothing.
    assert_eq!(get(&server.addr, "/a%20b.txt").await.status, 200);
}

#[tokio::test]
async fn a_symlink_out_of_dist_is_refused() {
    let site = Site::new("symlink");
    let dist = site.dist();
    std::os::unix::fs::symlink(site.top.join("secret.txt"), dist.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&site.top, dist.join("up")).unwrap();
    std::os::unix::fs::symlink(Path::new("a b.txt"), dist.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink(&site.top, dist.join("sub").join("deeper")).unwrap();
    let server = site.serve(&[]).await;
    for path in [
        "/leak.txt",
        "/up/secret.txt",
        "/sub/deeper/secret.txt",
        "/up/dist/../secret.txt",
    ] {
        let r = get(&server.addr, path).await;
        assert!(
            [400, 403, 404].contains(&r.status),
            "{path} must be refused, got {r:?}"
        );
        assert!(!r.text().contains(SECRET), "{path} leaked the secret");
    }
    // A folder symlinked from outside may not lend its index.html either.
    std::fs::write(site.top.join("index.html"), SECRET).unwrap();
    let r = get(&server.addr, "/up/").await;
    assert!(!r.text().contains(SECRET), "/up/ leaked: {r:?}");
    // A symlink that stays inside dist/ is an ordinary file.
    let r = get(&server.addr, "/alias.txt").await;
    assert_eq!((r.status, r.text().as_str()), (200, SPACED));
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let site = Site::new("head");
    let server = site.serve(&[]).await;
    let mut c = Conn::open(&server.addr).await;
    c.send("HEAD", "/index.html", "Connection: close\r\n").await;
    let r = c.reply(true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*INDEX.len().to_string()));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let rest = c.rest().await;
    assert!(
        rest.is_empty(),
        "a HEAD response has no body, got {:?}",
        String::from_utf8_lossy(&rest)
    );

    // Without a page, the explanation's HEAD is bodiless too.
    let bare = Server::start().await;
    let mut c = Conn::open(&bare.addr).await;
    c.send("HEAD", "/", "Connection: close\r\n").await;
    let r = c.reply(true).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    assert!(c.rest().await.is_empty(), "a HEAD response has no body");
    let r = get(&bare.addr, "/").await;
    assert!(r.text().contains("The WebSocket is at /ws"), "{r:?}");
}

#[tokio::test]
async fn keep_alive_answers_several_requests_on_one_connection() {
    let site = Site::new("keepalive");
    // Larger than any buffer on the way, like the page's wasm.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.dist().join("app_bg.wasm"), &big).unwrap();
    let server = site.serve(&[]).await;
    let mut c = Conn::open(&server.addr).await;
    c.send("GET", "/app_bg.wasm", "").await;
    let wasm = c.reply(false).await;
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert!(wasm.body == big, "the whole file, byte for byte");
    c.send("GET", "/", "").await;
    let first = c.reply(false).await;
    assert_eq!((first.status, first.text().as_str()), (200, INDEX));
    c.send("HEAD", "/a%20b.txt", "").await;
    assert_eq!(c.reply(true).await.status, 200);
    c.send("GET", "/a%20b.txt", "Connection: close\r\n").await;
    let third = c.reply(false).await;
    assert_eq!((third.status, third.text().as_str()), (200, SPACED));
    assert!(c.rest().await.is_empty(), "closed after the last, as asked");
}

#[tokio::test]
async fn files_can_be_revalidated_and_are_never_cached_stale() {
    let site = Site::new("cache");
    let server = site.serve(&[]).await;
    let r = get(&server.addr, "/").await;
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let modified = r
        .header("last-modified")
        .expect("a Last-Modified to revalidate against")
        .to_owned();
    let mut c = Conn::open(&server.addr).await;
    c.send(
        "GET",
        "/",
        &format!("If-Modified-Since: {modified}\r\nConnection: close\r\n"),
    )
    .await;
    let r = c.reply(false).await;
    assert_eq!(r.status, 304, "{r:?}");
    assert!(c.rest().await.is_empty(), "a 304 has no body");
    let mut c = Conn::open(&server.addr).await;
    c.send("POST", "/", "Content-Length: 0\r\nConnection: close\r\n")
        .await;
    assert_eq!(c.reply(false).await.status, 405);
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_and_others_are_served() {
    let site = Site::new("slow");
    let server = site.serve(&["--header-timeout-ms", "1000"]).await;
    let started = Instant::now();
    let mut slow = Conn::open(&server.addr).await;
    let mut idle = Conn::open(&server.addr).await;
    slow.stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // A header byte every 200 ms, never the blank line that ends the head.
    let mut closed_after = None;
    for _ in 0..25 {
        if slow.stream.write_all(b"X").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), slow.stream.read(&mut byte)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {} // an error response before the close is fine
        }
    }
    let closed_after = closed_after.expect("the trickling client is cut off within 5 s");
    assert!(
        closed_after >= Duration::from_millis(800),
        "not before its deadline: {closed_after:?}"
    );
    // A connection that never sends anything is closed as well.
    let mut byte = [0u8; 1];
    let idle_end = tokio::time::timeout(Duration::from_secs(3), idle.stream.read(&mut byte)).await;
    assert!(
        matches!(idle_end, Ok(Ok(0) | Err(_))),
        "an idle connection is closed: {idle_end:?}"
    );
    // The gateway goes on serving.
    assert_eq!(get(&server.addr, "/").await.text(), INDEX);
    let v = server.viewer().await;
    assert!(v.snapshot.nodes.iter().all(|n| n.alive));
}

#[tokio::test]
async fn websocket_upgrades_beside_the_files() {
    let site = Site::new("ws");
    let server = site.serve(&[]).await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    let mut c = Conn::open(&server.addr).await;
    c.send("GET", "/ws", upgrade).await;
    let r = c.reply(true).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    let mut c = Conn::open(&server.addr).await;
    c.send(
        "GET",
        "/ws",
        &format!("{upgrade}Origin: https://evil.example\r\n"),
    )
    .await;
    let r = c.reply(false).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("not a local page"), "{r:?}");

    let mut c = Conn::open(&server.addr).await;
    let no_version = upgrade.replace("Sec-WebSocket-Version: 13\r\n", "");
    c.send("GET", "/ws", &no_version).await;
    assert_eq!(c.reply(false).await.status, 400);

    let mut c = Conn::open(&server.addr).await;
    c.send("GET", "/index.html", upgrade).await;
    let r = c.reply(false).await;
    assert_eq!(r.status, 404, "an upgrade elsewhere than /ws: {r:?}");

    // The real client still gets hello and a snapshot, files still flow.
    let mut v = server.viewer().await;
    assert!(v.snapshot.nodes.iter().all(|n| n.alive));
    assert!(v.call_ok(1, shared::Op::Lock, "a").await);
    assert_eq!(get(&server.addr, "/a%20b.txt").await.text(), SPACED);
}
