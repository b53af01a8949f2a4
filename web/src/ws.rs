//! All network I/O of the page: the WebSocket to `/ws` on the page's own origin.
//!
//! Frames are decoded as they arrive and queued; once per animation frame the whole queue is
//! handed to the store as one [`Action::Receive`], so a burst of thousands of events costs one
//! reducer pass and one render, not one per frame. A closed socket is reopened with exponential
//! backoff (250 ms doubling to 5 s, with jitter; a click on the status retries at once); the
//! server then sends a fresh snapshot, which the store merges or resyncs from. Commands go out
//! as JSON text. The page asks for `events` frames in binary (`compact` with `binary`: a
//! quarter of the bytes of JSON rows, docs/protocol.md "Events in binary"); everything else
//! arrives as JSON text. Nothing the server sends is trusted to be well-formed: undecodable
//! frames are reported, never unwrapped.
//!
//! The perf counters for benchmarks live on `window.__pbscope` (see docs/page.md).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_render::{request_animation_frame, AnimationFrame};
use gloo_timers::callback::Timeout;
use shared::{Command, ServerMsg};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::store::{Action, Level};

const BACKOFF_START_MS: u64 = 250;
const BACKOFF_MAX_MS: u64 = 5_000;
/// Flush without waiting for a frame when this many frames are queued (a hidden tab gets no
/// animation frames).
const QUEUE_FLUSH_AT: usize = 4096;

/// The page clock in milliseconds (`performance.now()`).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

thread_local! {
    static TAGS: Cell<u64> = const { Cell::new(0) };
}

/// A fresh tag for a command, so its answer can be matched (`ui-12`).
pub fn next_tag(prefix: &str) -> String {
    TAGS.with(|t| {
        t.set(t.get() + 1);
        format!("{prefix}-{}", t.get())
    })
}

/// `ws://host/ws` or `wss://host/ws` for the page's own origin.
fn ws_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc
        .as_ref()
        .and_then(|l| l.host().ok())
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let secure = loc
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

/// The backoff before attempt `attempt` (1-based), with up to 20 % jitter.
fn backoff_ms(attempt: u32) -> u64 {
    let base = BACKOFF_START_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX_MS);
    base + (js_sys::Math::random() * 0.2 * base as f64) as u64
}

struct Handlers {
    _open: Closure<dyn FnMut()>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

struct Inner {
    dispatch: Callback<Action>,
    socket: RefCell<Option<WebSocket>>,
    handlers: RefCell<Option<Handlers>>,
    queue: RefCell<Vec<ServerMsg>>,
    frame: RefCell<Option<AnimationFrame>>,
    retry: RefCell<Option<Timeout>>,
    attempt: Cell<u32>,
    /// Sockets closed in a row because a binary frame did not read: the backoff starts there
    /// rather than from the first attempt, so a server the page cannot read is not asked for a
    /// snapshot four times a second (back to 0 once a binary frame reads).
    unreadable: Cell<u32>,
    /// Closed on purpose (a replay): no reconnecting.
    suspended: Cell<bool>,
    /// The names this socket's binary frames have defined (a new socket starts empty).
    names: RefCell<shared::binary::Names>,
    perf: Perf,
}

/// The page's connection to the gateway. Cheap to clone.
#[derive(Clone)]
pub struct Connection(Rc<Inner>);

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Connection {
    /// Opens the socket; every change of its state and every frame goes to `dispatch`.
    pub fn start(dispatch: Callback<Action>) -> Connection {
        let conn = Connection(Rc::new(Inner {
            dispatch,
            socket: RefCell::new(None),
            handlers: RefCell::new(None),
            queue: RefCell::new(Vec::new()),
            frame: RefCell::new(None),
            retry: RefCell::new(None),
            attempt: Cell::new(0),
            unreadable: Cell::new(0),
            suspended: Cell::new(false),
            names: RefCell::new(shared::binary::Names::default()),
            perf: Perf::install(),
        }));
        open(&conn.0);
        conn
    }

    /// Skips the rest of the backoff and tries to connect now (no-op while connected).
    pub fn reconnect_now(&self) {
        if self.0.suspended.get() {
            return;
        }
        let open_now = self
            .0
            .socket
            .borrow()
            .as_ref()
            .is_some_and(|ws| ws.ready_state() <= WebSocket::OPEN);
        if !open_now {
            self.0.retry.replace(None);
            open(&self.0);
        }
    }

    /// Closes the socket and stops reconnecting (a saved run is shown instead): nothing from
    /// the server reaches the store until [`Connection::resume`].
    pub fn suspend(&self) {
        let inner = &self.0;
        inner.suspended.set(true);
        inner.retry.replace(None);
        inner.frame.replace(None);
        inner.queue.borrow_mut().clear();
        if let Some(old) = inner.socket.replace(None) {
            old.set_onopen(None);
            old.set_onmessage(None);
            old.set_onclose(None);
            let _ = old.close();
        }
        inner.handlers.replace(None);
    }

    /// Connects again after [`Connection::suspend`] (no-op otherwise).
    pub fn resume(&self) {
        if self.0.suspended.replace(false) {
            self.0.attempt.set(0);
            open(&self.0);
        }
    }

    /// Sends a command; false when there is no open socket.
    pub fn send(&self, cmd: &Command) -> bool {
        let Ok(text) = serde_json::to_string(cmd) else {
            return false;
        };
        let socket = self.0.socket.borrow();
        match socket.as_ref() {
            Some(ws) if ws.ready_state() == WebSocket::OPEN => ws.send_with_str(&text).is_ok(),
            _ => false,
        }
    }
}

fn open(inner: &Rc<Inner>) {
    inner.dispatch.emit(Action::Connecting);
    let ws = match WebSocket::new(&ws_url()) {
        Ok(ws) => ws,
        Err(_) => {
            schedule_reconnect(inner);
            return;
        }
    };
    let weak = Rc::downgrade(inner);
    let on_open = {
        let weak = weak.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.attempt.set(inner.unreadable.get());
                // Events frames in binary: the events every call makes as rows of about a
                // twelfth of their JSON objects' bytes (docs/protocol.md, "compact").
                if let (Some(ws), Ok(text)) = (
                    inner.socket.borrow().as_ref(),
                    serde_json::to_string(&Command::Compact {
                        on: true,
                        binary: true,
                        tag: None,
                    }),
                ) {
                    let _ = ws.send_with_str(&text);
                }
                inner.dispatch.emit(Action::Connected);
            }
        })
    };
    let on_message = {
        let weak = weak.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(inner) = weak.upgrade() {
                on_frame(&inner, e);
            }
        })
    };
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_e: CloseEvent| {
        if let Some(inner) = weak.upgrade() {
            flush(&inner);
            schedule_reconnect(&inner);
        }
    });
    ws.set_binary_type(BinaryType::Arraybuffer);
    inner.names.replace(shared::binary::Names::default());
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    if let Some(old) = inner.socket.replace(Some(ws)) {
        old.set_onopen(None);
        old.set_onmessage(None);
        old.set_onclose(None);
        let _ = old.close();
    }
    inner.handlers.replace(Some(Handlers {
        _open: on_open,
        _message: on_message,
        _close: on_close,
    }));
}

fn schedule_reconnect(inner: &Rc<Inner>) {
    let attempt = inner.attempt.get() + 1;
    inner.attempt.set(attempt);
    let delay = backoff_ms(attempt);
    inner.dispatch.emit(Action::Disconnected {
        attempt,
        retry_in_ms: delay,
    });
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let timeout = Timeout::new(delay.min(u32::MAX as u64) as u32, move || {
        if let Some(inner) = weak.upgrade() {
            open(&inner);
        }
    });
    inner.retry.replace(Some(timeout));
}

/// A message the page could not read: why, its start (or size), and whether it was binary.
struct Unreadable {
    err: String,
    head: String,
    binary: bool,
}

/// Reads one message: an events frame in binary, or JSON text.
fn decode(inner: &Inner, data: JsValue) -> Result<ServerMsg, Unreadable> {
    if let Some(text) = data.as_string() {
        // Events frames come in binary once `compact` is in force; the few before it, the
        // snapshots and the answers are read through serde.
        return serde_json::from_str::<ServerMsg>(&text).map_err(|err| Unreadable {
            err: err.to_string(),
            head: text.chars().take(120).collect(),
            binary: false,
        });
    }
    let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() else {
        return Err(Unreadable {
            err: "neither text nor binary".into(),
            head: String::new(),
            binary: false,
        });
    };
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    inner.perf.binary(bytes.len());
    let mut names = inner.names.borrow_mut();
    shared::binary::read_frame(&bytes, &mut names)
        .map(|events| {
            inner.unreadable.set(0);
            ServerMsg::Events { events }
        })
        .map_err(|err| Unreadable {
            err: err.to_string(),
            head: format!("{} bytes", bytes.len()),
            binary: true,
        })
}

fn on_frame(inner: &Rc<Inner>, e: MessageEvent) {
    match decode(inner, e.data()) {
        Ok(msg) => {
            let len = {
                let mut q = inner.queue.borrow_mut();
                q.push(msg);
                q.len()
            };
            if len >= QUEUE_FLUSH_AT {
                flush(inner);
            } else if inner.frame.borrow().is_none() {
                let weak = Rc::downgrade(inner);
                let frame = request_animation_frame(move |_| {
                    if let Some(inner) = weak.upgrade() {
                        flush(&inner);
                    }
                });
                inner.frame.replace(Some(frame));
            }
        }
        Err(Unreadable { err, head, binary }) => {
            web_sys::console::warn_1(&format!("pbscope: undecodable frame ({err}): {head}").into());
            // A binary frame read wrong may leave this socket's names out of step, and then no
            // frame after it would read: start again on a new socket (a fresh snapshot).
            inner.dispatch.emit(Action::Toast {
                level: Level::Warn,
                title: "Unreadable message".into(),
                text: if binary {
                    format!("the server sent a binary frame this page could not read ({err}); reconnecting")
                } else {
                    format!("the server sent a frame this page does not understand: {err}")
                },
            });
            if binary {
                inner
                    .unreadable
                    .set(inner.unreadable.get().saturating_add(1));
                if let Some(ws) = inner.socket.borrow().as_ref() {
                    let _ = ws.close();
                }
            }
        }
    }
}

/// Hands everything queued to the store in one action.
fn flush(inner: &Rc<Inner>) {
    inner.frame.replace(None);
    let msgs = std::mem::take(&mut *inner.queue.borrow_mut());
    if msgs.is_empty() {
        return;
    }
    let events: u64 = msgs
        .iter()
        .map(|m| match m {
            ServerMsg::Events { events } => events.len() as u64,
            ServerMsg::Snapshot(s) => s.events.len() as u64,
            _ => 0,
        })
        .sum();
    let start = now_ms();
    inner.dispatch.emit(Action::Receive {
        msgs,
        local_ms: start,
    });
    inner.perf.frame(events, now_ms() - start);
}

/// Size of the wasm linear memory: where the history, the store and Yew's tree live.
fn wasm_memory_bytes() -> f64 {
    let buffer = js_sys::Reflect::get(&wasm_bindgen::memory(), &"buffer".into());
    buffer
        .and_then(|b| js_sys::Reflect::get(&b, &"byteLength".into()))
        .ok()
        .and_then(|n| n.as_f64())
        .unwrap_or(0.0)
}

/// `window.__pbscope`: counters a benchmark can read.
struct Perf {
    obj: Option<js_sys::Object>,
    events: Cell<f64>,
    frames: Cell<f64>,
    /// Binary events frames read, and their bytes.
    binary_frames: Cell<f64>,
    binary_bytes: Cell<f64>,
}

impl Perf {
    fn install() -> Perf {
        let obj = web_sys::window().map(|w| {
            let obj = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&w, &"__pbscope".into(), &obj);
            obj
        });
        let perf = Perf {
            obj,
            events: Cell::new(0.0),
            frames: Cell::new(0.0),
            binary_frames: Cell::new(0.0),
            binary_bytes: Cell::new(0.0),
        };
        perf.publish(0.0);
        perf
    }

    fn frame(&self, events: u64, ms: f64) {
        self.events.set(self.events.get() + events as f64);
        self.frames.set(self.frames.get() + 1.0);
        self.publish(ms);
    }

    fn binary(&self, bytes: usize) {
        self.binary_frames.set(self.binary_frames.get() + 1.0);
        self.binary_bytes
            .set(self.binary_bytes.get() + bytes as f64);
    }

    fn publish(&self, last_frame_ms: f64) {
        if let Some(obj) = &self.obj {
            let set = |k: &str, v: f64| {
                let _ = js_sys::Reflect::set(obj, &k.into(), &v.into());
            };
            set("events_ingested", self.events.get());
            set("frames", self.frames.get());
            set("binary_frames", self.binary_frames.get());
            set("binary_bytes", self.binary_bytes.get());
            set("last_frame_ms", last_frame_ms);
            set("wasm_memory_bytes", wasm_memory_bytes());
        }
    }
}
