//! The HTTP side of the gateway's port, answered through hyper: whether an upgrade to the
//! WebSocket may happen (Origin and Host checks, then the handshake's own headers), and the built
//! page from `dist/`, served by tower-http's `ServeDir` behind a check of ours that no path leaves
//! `dist/`, by `..` or by a symlink.
//!
//! The WebSocket can kill processes, so the checks are strict by default: the `Host` must be a
//! local name (against DNS rebinding) and an `Origin`, when present, must be a local page
//! (against cross-site WebSocket hijacking). Scripts send no `Origin` and are let in.
//!
//! This module must not parse HTTP itself (hyper does), must not serve a byte from outside
//! `dist/`, and serves files only for GET and HEAD. It knows nothing of the cluster: the gateway
//! decides what an accepted upgrade becomes.

use std::convert::Infallible;
use std::io;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tower_http::services::ServeDir;

/// The body of every response on the gateway's port: a file being streamed or a short text.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// What GET answers when no page is served from this port.
const NO_PAGE: &str = "pbscope is running. The WebSocket is at /ws.\n\
    No page is served from this port: start `pbscope serve --dist dist` after `trunk build`,\n\
    or open the page from `trunk serve` (http://127.0.0.1:8080).\n";

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
    /// Decides an upgrade from the request's headers. `Err` carries the reason given to the
    /// refused client.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(host) = headers.get(header::HOST) else {
            return Err("missing Host header".into());
        };
        let Ok(host) = host.to_str() else {
            return Err("the Host header is not plain text".into());
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
        if let Some(origin) = headers.get(header::ORIGIN) {
            let Ok(origin) = origin.to_str() else {
                return Err("the Origin header is not plain text".into());
            };
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

/// True when a header holds `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a request asks to become a WebSocket (`Upgrade: websocket`). Such a request gets
/// the WebSocket or a refusal, never a file.
pub(crate) fn wants_websocket<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), header::UPGRADE, "websocket")
}

/// The `Sec-WebSocket-Accept` value for a well-formed handshake request (RFC 6455, 4.2.1), or
/// the reason it is not one.
pub(crate) fn websocket_accept<B>(req: &Request<B>) -> Result<HeaderValue, &'static str> {
    if req.method() != Method::GET {
        return Err("a WebSocket handshake must be a GET");
    }
    if req.version() < hyper::Version::HTTP_11 {
        return Err("a WebSocket handshake needs HTTP/1.1");
    }
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err("a WebSocket handshake needs `Connection: Upgrade`");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err("only WebSocket version 13 is spoken here");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err("a WebSocket handshake needs a Sec-WebSocket-Key");
    };
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| "the Sec-WebSocket-Key cannot be answered")
}

/// The `101 Switching Protocols` that completes a WebSocket handshake.
pub(crate) fn switching_protocols(accept: HeaderValue) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

/// A short plain-text answer; hyper drops the body itself when the request was a HEAD.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body: String = body.into();
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A file to download: `body` with its type, saved by a browser as `file_name` (plain ASCII,
/// written by us), never cached (a run grows while it runs).
pub(crate) fn download(
    content_type: &'static str,
    file_name: &str,
    body: String,
) -> Response<Body> {
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// `405` for a method other than GET and HEAD.
pub(crate) fn get_and_head_only() -> Response<Body> {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only\n");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    res
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// The built page on this port, or the explanation that there is none.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    files: Option<Files>,
}

#[derive(Debug, Clone)]
struct Files {
    /// `--dist` as given; resolved again on every request, so a `trunk build` that replaces the
    /// folder after the start is served.
    root: PathBuf,
    serve: ServeDir,
}

/// Why a URL path is not looked up at all.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// `..`, an absolute path, a NUL or a path that is not UTF-8 once decoded: a bad request.
    BadPath,
    /// The file resolves (through a symlink) to somewhere outside `dist/`.
    Outside,
}

impl Site {
    pub(crate) fn new(dist: Option<&Path>) -> Site {
        Site {
            files: dist.map(|root| Files {
                root: root.to_owned(),
                serve: ServeDir::new(root),
            }),
        }
    }

    /// Answers a plain (non-WebSocket) request.
    pub(crate) async fn respond<B>(&self, req: Request<B>) -> Response<Body> {
        // A GET's body means nothing here; dropping it keeps `ServeDir`'s bounds simple.
        let req = req.map(|_| ());
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return get_and_head_only();
        }
        let Some(files) = &self.files else {
            return text(StatusCode::OK, NO_PAGE);
        };
        let mut res = match files.confine(req.uri().path()).await {
            Err(Refused::BadPath) => text(StatusCode::BAD_REQUEST, "bad path\n"),
            Err(Refused::Outside) => text(
                StatusCode::FORBIDDEN,
                "refused: this path leads outside the served folder\n",
            ),
            Ok(()) => match files.serve.clone().try_call(req).await {
                Ok(res) => res.map(BodyExt::boxed_unsync),
                Err(e) => {
                    tracing::warn!("serving a file failed: {e}");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not read the file\n",
                    )
                }
            },
        };
        // The page's index.html names the current build's files: a browser must ask again
        // (a 304 when unchanged) rather than show a stale page against a newer server.
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        res
    }
}

impl Files {
    /// Refuses a URL path that names something outside `root`: `..` (also percent-encoded) or
    /// a symlink whose target is elsewhere. `ServeDir` refuses the first itself but follows
    /// symlinks wherever they point. A path that does not exist passes: `ServeDir` answers 404.
    async fn confine(&self, url_path: &str) -> Result<(), Refused> {
        let rel = relative_path(url_path)?;
        let Ok(root) = tokio::fs::canonicalize(&self.root).await else {
            return Ok(());
        };
        let wanted = self.root.join(&rel);
        // A folder is answered with its index.html, which must stay inside too.
        for candidate in [wanted.join("index.html"), wanted] {
            if let Ok(real) = tokio::fs::canonicalize(&candidate).await {
                if !real.starts_with(&root) {
                    return Err(Refused::Outside);
                }
            }
        }
        Ok(())
    }
}

/// The percent-decoded URL path as a relative file path, made only of plain names.
fn relative_path(url_path: &str) -> Result<PathBuf, Refused> {
    let decoded = percent_encoding::percent_decode_str(url_path.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| Refused::BadPath)?;
    if decoded.contains('\0') {
        return Err(Refused::BadPath);
    }
    let mut rel = PathBuf::new();
    for part in Path::new(&*decoded).components() {
        match part {
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Refused::BadPath)
            }
        }
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, o.parse().unwrap());
        }
        headers
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
        assert!(p.check(&HeaderMap::new()).is_err(), "no Host at all");
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
    fn url_paths_cannot_climb_out_of_the_root() {
        assert_eq!(relative_path("/"), Ok(PathBuf::new()));
        assert_eq!(relative_path("/a%20b.txt"), Ok(PathBuf::from("a b.txt")));
        assert_eq!(relative_path("/x/./y.js"), Ok(PathBuf::from("x/y.js")));
        assert_eq!(relative_path("/../etc/passwd"), Err(Refused::BadPath));
        assert_eq!(relative_path("/a/../../x"), Err(Refused::BadPath));
        assert_eq!(relative_path("/%2e%2e/etc/passwd"), Err(Refused::BadPath));
        assert_eq!(relative_path("/a/%2E%2E/%2e%2E/x"), Err(Refused::BadPath));
        assert_eq!(relative_path("/%2fetc/passwd"), Err(Refused::BadPath));
        assert_eq!(relative_path("/%ff.js"), Err(Refused::BadPath), "not UTF-8");
        assert_eq!(
            relative_path("/a%00.js"),
            Err(Refused::BadPath),
            "no file has a NUL"
        );
    }

    fn upgrade_request(method: Method, connection: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/ws")
            .header(header::HOST, "127.0.0.1:9000")
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, connection)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap()
    }

    #[test]
    fn a_well_formed_handshake_is_answered_as_rfc_6455_says() {
        let req = upgrade_request(Method::GET, "keep-alive, Upgrade");
        assert!(wants_websocket(&req));
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            websocket_accept(&req).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(websocket_accept(&upgrade_request(Method::POST, "Upgrade")).is_err());
        assert!(websocket_accept(&upgrade_request(Method::GET, "keep-alive")).is_err());
    }
}
