//! pbscope's page: connects to /ws, keeps the store, draws the cluster cards, the clients and
//! the space-time diagram. All WebSocket I/O is in `connect`.

use std::cell::RefCell;
use std::rc::Rc;

use shared::{Command, Event, Role, ServerMsg};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web::layout::{self, failover_window, ROW_H};
use web::store::{Action, Conn, State};
use web_sys::{HtmlInputElement, MessageEvent, WebSocket};
use yew::prelude::*;

/// Events drawn in the diagram: the most recent ones (the rest stay in the store).
const VISIBLE: usize = 220;

#[derive(Clone, PartialEq)]
struct Store(Rc<State>);

impl Reducible for Store {
    type Action = Action;
    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self.0).clone();
        s.reduce(action);
        Rc::new(Store(Rc::new(s)))
    }
}

type Socket = Rc<RefCell<Option<WebSocket>>>;

fn ws_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc.as_ref().and_then(|l| l.host().ok()).unwrap_or_default();
    let https = loc
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if https { "wss" } else { "ws" })
}

/// Opens the WebSocket; on close, reconnects with exponential backoff.
fn connect(socket: Socket, dispatch: UseReducerDispatcher<Store>, attempt: u32) {
    let Ok(ws) = WebSocket::new(&ws_url()) else {
        return;
    };
    let d = dispatch.clone();
    let onopen = Closure::<dyn FnMut()>::new(move || d.dispatch(Action::Connected));
    let d = dispatch.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if let Some(text) = e.data().as_string() {
            match serde_json::from_str::<ServerMsg>(&text) {
                Ok(msg) => {
                    if let ServerMsg::Events { events } = &msg {
                        count_ingested(events.len());
                    }
                    d.dispatch(Action::Server(msg))
                }
                Err(err) => web_sys::console::warn_1(&format!("undecodable message: {err}").into()),
            }
        }
    });
    let (s, d) = (socket.clone(), dispatch.clone());
    let onclose = Closure::<dyn FnMut()>::new(move || {
        d.dispatch(Action::Disconnected);
        let (s, d) = (s.clone(), d.clone());
        let delay = (250 * 2u32.saturating_pow(attempt.min(5))).min(8000);
        let retry = Closure::once_into_js(move || connect(s, d, attempt + 1));
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                retry.unchecked_ref(),
                delay as i32,
            );
        }
    });
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
    onopen.forget();
    onmessage.forget();
    onclose.forget();
    *socket.borrow_mut() = Some(ws);
}

/// `window.__pbscope.events_ingested`: events the page has taken in (read by page_bench).
fn count_ingested(n: usize) {
    let Some(w) = web_sys::window() else { return };
    let key = JsValue::from_str("__pbscope");
    let obj = js_sys::Reflect::get(&w, &key)
        .ok()
        .filter(|v| v.is_object())
        .unwrap_or_else(|| js_sys::Object::new().into());
    let field = JsValue::from_str("events_ingested");
    let before = js_sys::Reflect::get(&obj, &field)
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let _ = js_sys::Reflect::set(&obj, &field, &JsValue::from_f64(before + n as f64));
    let _ = js_sys::Reflect::set(&w, &key, &obj);
}

fn send(socket: &Socket, cmd: &Command) {
    if let Some(ws) = socket.borrow().as_ref() {
        if let Ok(text) = serde_json::to_string(cmd) {
            let _ = ws.send_with_str(&text);
        }
    }
}

#[function_component]
fn App() -> Html {
    let store = use_reducer(|| Store(Rc::new(State::default())));
    let socket: Socket = use_mut_ref(|| None);
    let lock_names = use_mut_ref(std::collections::BTreeMap::<u32, String>::new);
    {
        let (socket, dispatch) = (socket.clone(), store.dispatcher());
        use_effect_with((), move |_| connect(socket, dispatch, 0));
    }
    let state = &store.0;
    let cmd = |c: Command| {
        let socket = socket.clone();
        Callback::from(move |_: MouseEvent| send(&socket, &c))
    };
    let conn = match state.conn {
        Conn::Connecting => ("connecting…", "conn wait"),
        Conn::Connected => ("connected", "conn ok"),
        Conn::Reconnecting => ("reconnecting…", "conn bad"),
    };

    let servers: Vec<String> = state.nodes.iter().map(|n| n.id.clone()).collect();
    let log = state.events.borrow();
    let window: Vec<&Event> = log.iter().skip(log.len().saturating_sub(VISIBLE)).collect();
    let all: Vec<&Event> = log.iter().collect();
    let d = layout::layout(&window, &servers);
    let failover = failover_window(&all).map(|(node, from, to)| match to {
        Some(to) => format!(
            "{node} crashed: clients got no answer for {:.1} ms",
            (to - from) as f64 / 1000.0
        ),
        None => format!(
            "{node} crashed: clients waiting… (since {:.1} ms)",
            from as f64 / 1000.0
        ),
    });

    let cards = state.nodes.iter().map(|n| {
        let role = if !n.alive {
            "dead".to_owned()
        } else if n.role == Role::Primary && n.serving_alone {
            "serving alone".to_owned()
        } else if n.role == Role::Primary {
            "primary".to_owned()
        } else {
            "backup".to_owned()
        };
        let id = n.id.clone();
        html! {
            <div class={classes!("card", (!n.alive).then_some("dead"))} data-testid={format!("card-{id}")}>
                <div class="card-head"><b>{ &id }</b>
                    <span class="role" data-testid={format!("role-{id}")}>{ role }</span></div>
                <div>{"pid "}<span data-testid={format!("pid-{id}")}>{ n.pid.map(|p| p.to_string()).unwrap_or_default() }</span>
                    { if n.armed { html!{<span class="armed">{" · armed: dies before next reply"}</span>} } else { html!{} } }</div>
                <div>{"locks held: "}<span data-testid={format!("locks-{id}")}>{ if n.locks.is_empty() { "—".to_owned() } else { n.locks.join(", ") } }</span></div>
                <div class="muted">{ format!("served {} · applied forwards {}", n.served, n.applied_forwards) }</div>
                <div class="buttons">
                    <button disabled={!n.alive} data-testid={format!("crash-{id}")} onclick={cmd(Command::Crash { node: id.clone(), tag: None })}>{"Crash (SIGKILL)"}</button>
                    <button disabled={!n.alive} data-testid={format!("crash-before-reply-{id}")} onclick={cmd(Command::CrashBeforeReply { node: id.clone(), tag: None })}>{"Crash before next reply"}</button>
                </div>
            </div>
        }
    });

    let clients = state.clients.iter().map(|(id, history)| {
        let id = *id;
        let name = lock_names.borrow().get(&id).cloned().unwrap_or_else(|| "a".into());
        let on_input = {
            let lock_names = lock_names.clone();
            Callback::from(move |e: InputEvent| {
                if let Some(i) = e.target_dyn_into::<HtmlInputElement>() {
                    lock_names.borrow_mut().insert(id, i.value());
                }
            })
        };
        let call = |lock: bool| {
            let (socket, lock_names) = (socket.clone(), lock_names.clone());
            Callback::from(move |_: MouseEvent| {
                let name = lock_names.borrow().get(&id).cloned().unwrap_or_else(|| "a".into());
                let c = if lock { Command::Lock { client: id, lock: name, tag: None } } else { Command::Unlock { client: id, lock: name, tag: None } };
                send(&socket, &c);
            })
        };
        html! {
            <div class="card client" data-testid={format!("client-c{id}")}>
                <div class="card-head"><b>{ format!("c{id}") }</b></div>
                <div class="buttons">
                    <input value={name} oninput={on_input} data-testid={format!("lockname-c{id}")} size="6" />
                    <button data-testid={format!("lock-c{id}")} onclick={call(true)}>{"Lock"}</button>
                    <button data-testid={format!("unlock-c{id}")} onclick={call(false)}>{"Unlock"}</button>
                </div>
                <ol class="history" data-testid={format!("history-c{id}")}>
                    { for history.iter().rev().take(6).map(|l| html!{ <li>{ &l.text }</li> }) }
                </ol>
            </div>
        }
    });

    let add_client = {
        let dispatch = store.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::AddClient))
    };
    let slow = |ms: u64| {
        cmd(Command::SetSlowMotion {
            delay_ms: ms,
            tag: None,
        })
    };

    html! {
        <div class="app">
            <header>
                <h1>{"pbscope"}<span class="sub">{" primary/backup replication, live — MIT 6.824 Lab 1 lock service on real processes"}</span></h1>
                <span class={conn.1} data-testid="conn-status">{ conn.0 }</span>
            </header>
            <section class="row">
                { for cards }
                { for clients }
                <div class="card tools">
                    <button data-testid="add-client" onclick={add_client}>{"+ client"}</button>
                    <button data-testid="reset" onclick={cmd(Command::Reset { tag: None })}>{"Reset cluster"}</button>
                    <div class="muted">{"slow motion"}</div>
                    <div class="buttons">
                        <button onclick={slow(0)}>{"off"}</button>
                        <button onclick={slow(250)}>{"250 ms"}</button>
                        <button onclick={slow(800)}>{"800 ms"}</button>
                    </div>
                </div>
            </section>
            { for state.notices.iter().rev().take(3).map(|n| html!{ <div class="notice">{ n }</div> }) }
            <section class="timeline" data-testid="failover-window">{ failover.unwrap_or_else(|| "No failover yet: crash the primary to see one.".into()) }</section>
            <section class="legend">
                <span class="k request">{"request"}</span><span class="k forward">{"forward"}</span>
                <span class="k forward_ack">{"backup ack"}</span><span class="k reply">{"reply"}</span>
                <span class="k lost">{"✕ lost"}</span>
                <span class="muted">{ format!("{} events held; showing the latest {}", state.events.len(), window.len()) }</span>
            </section>
            <svg class="diagram" width={d.width.to_string()} height={d.height.to_string()}>
                <defs>{ for ["request","forward","forward_ack","reply"].iter().map(|k| html!{
                    <marker id={format!("head-{k}")} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z" class={format!("fill-{k}")} />
                    </marker> }) }</defs>
                { for d.lanes.iter().map(|(name, x)| html!{ <g>
                    <text x={x.to_string()} y="20" class="lane-name" text-anchor="middle">{ name }</text>
                    <line x1={x.to_string()} y1="28" x2={x.to_string()} y2={d.height.to_string()} class="lane" />
                </g> }) }
                { for d.dead.iter().map(|(lane, x, y0, y1)| html!{
                    <rect x={(x - 6.0).to_string()} y={y0.to_string()} width="12" height={(y1 - y0).max(1.0).to_string()} class="dead-lane" data-lane={lane.clone()} /> }) }
                { for d.arrows.iter().map(|a| html!{ <g class={classes!("arrow", a.kind, a.in_flight.then_some("in-flight"))}
                        data-msg-id={a.msg_id.to_string()} data-kind={a.kind} data-from={a.from.clone()} data-to={a.to.clone()} data-req={a.req.clone()} data-lost={a.lost.to_string()}>
                    <title>{ format!("{} {} -> {} (msg {})", a.label, a.from, a.to, a.msg_id) }</title>
                    <line x1={a.x1.to_string()} y1={a.y1.to_string()} x2={a.x2.to_string()} y2={a.y2.to_string()}
                        marker-end={(!a.lost).then(|| format!("url(#head-{})", a.kind))} />
                    <text x={((a.x1 + a.x2) / 2.0).to_string()} y={((a.y1 + a.y2) / 2.0 - 3.0).to_string()} text-anchor="middle">{ &a.label }</text>
                    { if a.lost { html!{ <text x={a.x2.to_string()} y={(a.y2 + 4.0).to_string()} class="cross" text-anchor="middle">{"✕"}</text> } } else { html!{} } }
                </g> }) }
                { for d.crashes.iter().map(|m| html!{ <g data-testid={format!("crash-mark-{}", m.lane)}>
                    <circle cx={m.x.to_string()} cy={m.y.to_string()} r="7" class="crash" />
                    <text x={(m.x + 10.0).to_string()} y={(m.y + 4.0).to_string()} class="crash-label">{ &m.label }</text>
                </g> }) }
                <text x="4" y={(d.height - ROW_H / 2.0).to_string()} class="muted">{"now ↓"}</text>
            </svg>
        </div>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
