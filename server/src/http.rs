//! The HTTP side of the gateway's port: reading a request head, deciding whether an upgrade to
//! the WebSocket may happen (Origin and Host checks), and serving the built page from `dist/`.
//!
//! The WebSocket can kill processes, so the checks are strict by default: the `Host` must be a
//! local name (against DNS rebinding) and an `Origin`, when present, must be a local page
//! (against cross-site WebSocket hijacking). Scripts send no `Origin` and are let in. This is
//! not a general web server: GET of files only, one request per connection.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Largest request head we read.
pub const MAX_HEAD: usize = 16 * 1024;

/// The parts of a request head the gateway looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// Parses a request head (up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Option<RequestHead> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    Some(RequestHead {
        method,
        path,
        headers,
    })
}

/// Reads until the end of the request head. Returns the head and every byte read (which the
/// WebSocket handshake must see again).
pub async fn read_head(stream: &mut TcpStream) -> io::Result<(RequestHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            let head = parse_head(&buf[..end])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed request"))?;
            return Ok((head, buf));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Which pages and host names may use the WebSocket.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Extra allowed `Origin`s, exactly as browsers send them (`http://myhost:8080`).
    pub allow_origins: Vec<String>,
    /// Extra allowed host names (without port) for the `Host` header.
    pub allow_hosts: Vec<String>,
}

/// The host part of a `Host` header or an origin's authority: no port, no brackets.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

pub fn is_local_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl AccessPolicy {
    /// Decides an upgrade. `Err` carries the reason given to the refused client.
    pub fn check(&self, head: &RequestHead) -> Result<(), String> {
        let Some(host) = head.header("host") else {
            return Err("missing Host header".into());
        };
        let name = host_name(host);
        if !is_local_name(name)
            && !self
                .allow_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "Host {host:?} is not a local name (allow it with --allow-host)"
            ));
        }
        if let Some(origin) = head.header("origin") {
            if self.allow_origins.iter().any(|o| o == origin) {
                return Ok(());
            }
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let local = authority.is_some_and(|a| is_local_name(host_name(a)));
            if !local {
                return Err(format!(
                    "Origin {origin:?} is not a local page (allow it with --allow-origin)"
                ));
            }
        }
        Ok(())
    }
}

/// A stream that first yields bytes already read, then the socket.
#[derive(Debug)]
pub struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Replay {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes a complete response and closes.
pub async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// Maps a URL path to a file under `root`, refusing anything that could leave it.
pub fn file_for(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("/");
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let rel = Path::new(rel);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Serves a GET for a file of the built page (or a short explanation without one).
pub async fn serve_file(
    stream: &mut TcpStream,
    dist: Option<&Path>,
    head: &RequestHead,
) -> io::Result<()> {
    if head.method != "GET" && head.method != "HEAD" {
        return respond(
            stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        )
        .await;
    }
    let Some(root) = dist else {
        let body = b"pbscope is running. The WebSocket is at /ws.\n\
            No page is served from this port: start `pbscope serve --dist dist` after `trunk build`,\n\
            or open the page from `trunk serve` (http://127.0.0.1:8080).\n";
        return respond(stream, "200 OK", "text/plain; charset=utf-8", body).await;
    };
    let Some(file) = file_for(root, &head.path) else {
        return respond(stream, "400 Bad Request", "text/plain", b"bad path\n").await;
    };
    match tokio::fs::read(&file).await {
        Ok(body) => respond(stream, "200 OK", content_type(&file), &body).await,
        Err(_) => respond(stream, "404 Not Found", "text/plain", b"not found\n").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(host: &str, origin: Option<&str>) -> RequestHead {
        let mut headers = vec![("Host".to_owned(), host.to_owned())];
        if let Some(o) = origin {
            headers.push(("Origin".to_owned(), o.to_owned()));
        }
        RequestHead {
            method: "GET".into(),
            path: "/ws".into(),
            headers,
        }
    }

    #[test]
    fn local_pages_and_scripts_pass() {
        let p = AccessPolicy::default();
        assert!(
            p.check(&head("127.0.0.1:9000", None)).is_ok(),
            "a script sends no Origin"
        );
        assert!(p
            .check(&head("127.0.0.1:9000", Some("http://127.0.0.1:8080")))
            .is_ok());
        assert!(p
            .check(&head("localhost:9000", Some("http://localhost:9000")))
            .is_ok());
        assert!(p
            .check(&head("[::1]:9000", Some("http://[::1]:8080")))
            .is_ok());
    }

    #[test]
    fn foreign_origin_and_rebinding_host_are_refused() {
        let p = AccessPolicy::default();
        let e = p
            .check(&head("127.0.0.1:9000", Some("https://evil.example")))
            .unwrap_err();
        assert!(e.contains("evil.example"), "{e}");
        assert!(p.check(&head("evil.example:9000", None)).is_err());
        assert!(p.check(&head("127.0.0.1:9000", Some("null"))).is_err());
        assert!(p.check(&head("localhost.evil.example:9000", None)).is_err());
    }

    #[test]
    fn allow_lists_extend_the_policy() {
        let p = AccessPolicy {
            allow_origins: vec!["http://lab.example:8080".into()],
            allow_hosts: vec!["lab.example".into()],
        };
        assert!(p
            .check(&head("lab.example:9000", Some("http://lab.example:8080")))
            .is_ok());
        assert!(p
            .check(&head("lab.example:9000", Some("http://other.example")))
            .is_err());
    }

    #[test]
    fn file_paths_cannot_escape_the_root() {
        let root = Path::new("/srv/dist");
        assert_eq!(file_for(root, "/").unwrap(), root.join("index.html"));
        assert_eq!(file_for(root, "/app.js?v=1").unwrap(), root.join("app.js"));
        assert!(file_for(root, "/../etc/passwd").is_none());
        assert!(file_for(root, "/a/../../x").is_none());
    }

    #[test]
    fn parses_a_request_head() {
        let raw = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUpgrade: websocket\r\n\r\n";
        let end = find_head_end(raw).unwrap();
        let h = parse_head(&raw[..end]).unwrap();
        assert_eq!(h.path, "/ws");
        assert!(h.is_websocket_upgrade());
        assert_eq!(h.header("HOST"), Some("127.0.0.1:9000"));
    }
}
