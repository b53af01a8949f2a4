//! The root component: owns the store and the connection, provides each slice of the store
//! and the [`Dispatch`] as contexts, lays out the page and maps keyboard shortcuts to actions
//! and commands.

use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use shared::{Command, Op, StepAction};
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;
use yew::prelude::*;

use super::client_card::ClientCard;
use super::conn_status::ConnStatus;
use super::demo_driver::DemoDriver;
use super::failover_timeline::FailoverTimeline;
use super::fault_panel::{step_command, FaultPanel};
use super::grant_alarm::GrantAlarm;
use super::help::Help;
use super::lecture_driver::LectureDriver;
use super::lecture_panel::LecturePanel;
use super::load_card::LoadCard;
use super::load_charts::LoadCharts;
use super::load_panel::LoadPanel;
use super::replay_bar::{replay_key, ReplayBar};
use super::server_card::ServerCard;
use super::space_time::SpaceTime;
use super::toasts::Toasts;
use super::toolbar::Toolbar;
use super::verdict_badge::VerdictBadge;
use super::{
    ClusterCtx, Dispatch, FeedCtx, LoadCtx, ReplayCtx, SessionCtx, Slice, ToastsCtx, ViewCtx,
    REPLAY_DISABLED,
};
use crate::faults;
use crate::keys::{self, Shortcut};
use crate::store::{Action, Level, State, REORDER_HOLD_MS};
use crate::ws::{self, Connection};

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(State::default);
    let conn = use_mut_ref(|| None::<Connection>);

    {
        let dispatch = state.dispatcher();
        let conn = conn.clone();
        use_effect_with((), move |_| {
            let cb = Callback::from(move |a: Action| dispatch.dispatch(a));
            *conn.borrow_mut() = Some(Connection::start(cb));
        });
    }

    let send = {
        let conn = conn.clone();
        let dispatch = state.dispatcher();
        use_callback((), move |cmd: Command, _| {
            let sent = conn.borrow().as_ref().is_some_and(|c| c.send(&cmd));
            dispatch.dispatch(if sent {
                Action::Sent { cmd }
            } else {
                Action::NotSent { cmd }
            });
        })
    };
    // A saved run is shown without the server: the socket closes, and opens again on the way
    // back to live.
    {
        let conn = conn.clone();
        let replaying = state.replaying();
        use_effect_with(replaying, move |replaying| {
            if let Some(c) = conn.borrow().as_ref() {
                if *replaying {
                    c.suspend();
                } else {
                    c.resume();
                }
            }
        });
    }
    let reconnect = {
        let conn = conn.clone();
        use_callback((), move |_: (), _| {
            if let Some(c) = conn.borrow().as_ref() {
                c.reconnect_now();
            }
        })
    };
    // The same value for the page's whole life: reading it re-renders nobody.
    let dispatch = Dispatch {
        dispatcher: state.dispatcher(),
        send,
        reconnect,
    };

    // Keyboard shortcuts act on the state as it is when the key is pressed: the listener reads
    // the slices this render leaves here (every change renders the app before the next event).
    let latest = use_mut_ref(State::default);
    *latest.borrow_mut() = (*state).clone();
    {
        let dispatch = dispatch.clone();
        let latest = latest.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().and_then(|w| w.document()).map(|doc| {
                EventListener::new(&doc, "keydown", move |e| {
                    if let Some(e) = e.dyn_ref::<KeyboardEvent>() {
                        let st = latest.borrow().clone();
                        on_key(&st, &dispatch, e);
                    }
                })
            });
            move || drop(listener)
        });
    }

    // Events wait a moment before they are placed in time order (`Feed::pending`); make sure
    // the last ones are placed even when nothing else arrives. `ticks` re-arms the timer after
    // a tick, whether or not it placed anything.
    {
        let waiting = state.feed().pending_len() > 0;
        let ticks = use_state(|| 0u64);
        let dispatch = state.dispatcher();
        let feed = Slice(state.feed().clone());
        use_effect_with((feed, waiting, *ticks), move |(_, waiting, _)| {
            let timer = waiting.then(|| {
                Timeout::new(REORDER_HOLD_MS as u32 + 5, move || {
                    dispatch.dispatch(Action::Tick {
                        local_ms: ws::now_ms(),
                    });
                    ticks.set(ticks.wrapping_add(1));
                })
            });
            move || drop(timer)
        });
    }

    // The perf hook also reports how many events the page holds.
    {
        let held = state.feed().history.len();
        use_effect_with(held, move |held| {
            if let Some(w) = web_sys::window() {
                if let Ok(obj) = js_sys::Reflect::get(&w, &"__pbscope".into()) {
                    if obj.is_object() {
                        let _ =
                            js_sys::Reflect::set(&obj, &"history".into(), &(*held as f64).into());
                    }
                }
            }
        });
    }

    let servers: Vec<Rc<str>> = state
        .cluster()
        .nodes()
        .map(|n| Rc::from(n.id.as_str()))
        .collect();
    let clients: Vec<u32> = state.cluster().clients.keys().copied().collect();
    let on_add_client = dispatch.to(|_: MouseEvent| Action::AddClient);
    let crash_all = {
        let send = dispatch.send.clone();
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::Crash {
                node: shared::NodeRef::All,
                dying_ms: None,
                tag: Some(ws::next_tag("crashall")),
            })
        })
    };
    let any_alive = state.cluster().nodes().any(|n| n.alive);
    let replaying = state.replaying();

    // One provider per slice: a component is rendered again only when a slice it reads is
    // replaced (children here take no props, or equal ones).
    html! {
        <ContextProvider<Dispatch> context={dispatch}>
        <ContextProvider<SessionCtx> context={Slice(state.session().clone())}>
        <ContextProvider<ClusterCtx> context={Slice(state.cluster().clone())}>
        <ContextProvider<FeedCtx> context={Slice(state.feed().clone())}>
        <ContextProvider<ViewCtx> context={Slice(state.view().clone())}>
        <ContextProvider<ToastsCtx> context={Slice(state.toasts().clone())}>
        <ContextProvider<ReplayCtx> context={Slice(state.replay().clone())}>
        <ContextProvider<LoadCtx> context={Slice(state.load().clone())}>
            <div class={classes!("app", state.view().large_text.then_some("large"), state.replaying().then_some("replaying"))}>
                <header class="topbar">
                    <div class="brand">
                        <h1 class="logo">{"pb"}<b>{"scope"}</b></h1>
                        <VerdictBadge />
                        <span class="brand-sub">{"MIT 6.824 Lab 1 · primary/backup lock service, live"}</span>
                    </div>
                    <Toolbar />
                    <ConnStatus />
                </header>
                <main class="layout">
                    <section class="side" aria-label="Lecture, faults, load, servers and clients">
                        <LecturePanel />
                        <FaultPanel />
                        <LoadPanel />
                        <section class="panel">
                            <h2 class="panel-title">
                                {"Servers"}
                                <button class="btn ghost small danger-text" data-testid="crash-all" onclick={crash_all}
                                    disabled={replaying || !any_alive}
                                    title={if replaying { REPLAY_DISABLED } else { "Kill every server at once (Shift+X)" }}>{"✕ Crash all"}</button>
                            </h2>
                            if servers.is_empty() {
                                <div class="empty small">{"Waiting for the cluster…"}</div>
                            }
                            { for servers.iter().map(|s| html! { <ServerCard key={s.to_string()} id={AttrValue::from(s.to_string())} /> }) }
                        </section>
                        <section class="panel">
                            <h2 class="panel-title">
                                {"Clients"}
                                <button class="btn ghost small" data-testid="add-client" onclick={on_add_client}
                                    disabled={replaying}
                                    title={if replaying { REPLAY_DISABLED } else { "Add a client (n)" }}>{"+ Add client"}</button>
                            </h2>
                            <LoadCard />
                            { for clients.iter().map(|c| html! { <ClientCard key={*c} id={*c} /> }) }
                        </section>
                    </section>
                    <section class="main" aria-label="Failover timeline and space-time diagram">
                        <ReplayBar />
                        <GrantAlarm />
                        <FailoverTimeline />
                        <LoadCharts />
                        <SpaceTime />
                    </section>
                </main>
                <Toasts />
                <Help />
                <DemoDriver />
                <LectureDriver />
            </div>
        </ContextProvider<LoadCtx>>
        </ContextProvider<ReplayCtx>>
        </ContextProvider<ToastsCtx>>
        </ContextProvider<ViewCtx>>
        </ContextProvider<FeedCtx>>
        </ContextProvider<ClusterCtx>>
        </ContextProvider<SessionCtx>>
        </ContextProvider<Dispatch>>
    }
}

/// Runs a shortcut. Keys typed into a text field, or with Ctrl/Alt/Meta, are left alone.
fn on_key(st: &State, ctx: &Dispatch, e: &KeyboardEvent) {
    if e.ctrl_key() || e.alt_key() || e.meta_key() || e.repeat() {
        return;
    }
    let typing = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
    if typing {
        if e.key() == "Escape" {
            if let Some(el) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let _ = el.blur();
            }
        }
        return;
    }
    // Space and Enter on a control are the control's own (a focused button clicks, a link
    // follows): the page's Space must not act too, or a clicked ▶ Play toggles twice.
    let on_control = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|el| {
            el.closest("button, [role=button], a[href], summary, [contenteditable=true]")
                .ok()
                .flatten()
                .is_some()
        });
    if on_control && matches!(e.key().as_str(), " " | "Enter" | "Spacebar") {
        return;
    }
    if let Some(r) = st.replay().run.as_ref() {
        // While a saved run is shown the arrows, Home/End and Space move through it (the
        // diagram, focused, keeps its arrows for scrolling).
        let in_diagram = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|el| el.closest("[data-testid=diagram]").ok().flatten().is_some());
        let arrow = e.key().starts_with("Arrow") || e.key().starts_with("Page");
        if !(in_diagram && arrow) {
            if let Some(a) = replay_key(r, e) {
                e.prevent_default();
                ctx.dispatch(a);
                return;
            }
        }
    }
    let Some(sc) = keys::shortcut(&e.key()) else {
        return;
    };
    e.prevent_default();
    let (cluster, view) = (st.cluster(), st.view());
    let client = cluster.selected_client;
    let tag = || Some(ws::next_tag("key"));
    match sc {
        Shortcut::Help => ctx.dispatch(Action::ShowHelp(!view.help)),
        Shortcut::Close => {
            ctx.dispatch(Action::ShowHelp(false));
            ctx.dispatch(Action::Select(None));
        }
        Shortcut::Lock => ctx
            .send
            .emit(cluster.call(client, Op::Lock, ws::next_tag("key"))),
        Shortcut::Unlock => ctx
            .send
            .emit(cluster.call(client, Op::Unlock, ws::next_tag("key"))),
        Shortcut::SelectClient(c) => ctx.dispatch(Action::SelectClient(c)),
        Shortcut::AddClient => ctx.dispatch(Action::AddClient),
        Shortcut::CrashPrimary => ctx.send.emit(Command::Crash {
            node: "primary".into(),
            dying_ms: None,
            tag: tag(),
        }),
        Shortcut::CrashBeforeReply => ctx.send.emit(Command::CrashBeforeReply {
            node: "primary".into(),
            tag: tag(),
        }),
        Shortcut::CrashBackup => ctx.send.emit(Command::Crash {
            node: "backup".into(),
            dying_ms: None,
            tag: tag(),
        }),
        Shortcut::Reset => ctx.send.emit(Command::Reset { tag: tag() }),
        Shortcut::Demo => ctx.dispatch(Action::ToggleDemo {
            local_ms: ws::now_ms(),
        }),
        Shortcut::FailoverDemo => ctx.dispatch(Action::StartDemo {
            local_ms: ws::now_ms(),
            failover: true,
        }),
        Shortcut::SlowMotionNext => ctx.send.emit(Command::SetSlowMotion {
            delay_ms: keys::next_slow_motion(cluster.slow_motion_ms()),
            tag: tag(),
        }),
        Shortcut::SlowMotionOff => ctx.send.emit(Command::SetSlowMotion {
            delay_ms: 0,
            tag: tag(),
        }),
        Shortcut::TogglePause => ctx.dispatch(Action::TogglePause),
        Shortcut::FollowLive => ctx.dispatch(Action::GoLive),
        Shortcut::Clear => ctx.dispatch(Action::Clear),
        Shortcut::LargeText => ctx.dispatch(Action::ToggleLargeText),
        Shortcut::Lecture => ctx.dispatch(Action::ShowLecture(!view.lecture_open)),
        Shortcut::FaultPanel => ctx.dispatch(Action::ToggleFaultPanel),
        Shortcut::ShowVerdict => {
            let calls = cluster.verdicts().faulty().iter().copied().collect();
            ctx.dispatch(Action::JumpToCalls(calls));
        }
        Shortcut::PausePrimary => {
            // Anything paused is resumed first: the key undoes what it did.
            let paused: Vec<String> = cluster
                .nodes()
                .filter(|n| n.alive && n.paused)
                .map(|n| n.id.to_string())
                .collect();
            if paused.is_empty() {
                ctx.send.emit(Command::Pause {
                    node: "primary".into(),
                    tag: tag(),
                });
            }
            for id in paused {
                ctx.send.emit(Command::Resume {
                    node: id.as_str().into(),
                    tag: tag(),
                });
            }
        }
        Shortcut::RestartDead => ctx.send.emit(Command::Restart {
            node: shared::NodeRef::All,
            tag: tag(),
        }),
        Shortcut::CrashAll => ctx.send.emit(Command::Crash {
            node: shared::NodeRef::All,
            dying_ms: None,
            tag: tag(),
        }),
        Shortcut::CrashClient => ctx.send.emit(Command::CrashClient {
            client,
            tag: tag(),
        }),
        Shortcut::StepToggle => ctx.send.emit(Command::Step {
            on: !cluster.faults().step,
            tag: tag(),
        }),
        Shortcut::DeliverOldest | Shortcut::DropOldest | Shortcut::DuplicateOldest => {
            let action = match sc {
                Shortcut::DeliverOldest => StepAction::Deliver,
                Shortcut::DropOldest => StepAction::Drop,
                _ => StepAction::Duplicate,
            };
            match cluster.held().first() {
                Some(h) => ctx.send.emit(step_command(action, h.msg_id)),
                None => ctx.dispatch(Action::Toast {
                    level: Level::Info,
                    title: "Nothing held".into(),
                    text: if cluster.faults().step {
                        "no message waits for a decision now".into()
                    } else {
                        "step mode is off: turn it on with t".into()
                    },
                }),
            }
        }
        Shortcut::Partition => match faults::partition_command(&view.draft, tag()) {
            Some(c) => ctx.send.emit(c),
            None => ctx.dispatch(Action::Toast {
                level: Level::Info,
                title: "No partition chosen".into(),
                text: "open the fault panel (Shift+F) and click lane headers or chips into groups A and B".into(),
            }),
        },
        Shortcut::Heal => ctx.send.emit(Command::Heal { tag: tag() }),
        Shortcut::FocusLinks => {
            if !view.faults_open {
                ctx.dispatch(Action::ToggleFaultPanel);
            }
            focus_soon("[data-testid=link-matrix] button.cell");
        }
        Shortcut::FocusCrashPoint => {
            let primary = cluster
                .nodes()
                .find(|n| n.alive && !n.paused && n.role == shared::Role::Primary)
                .map(|n| n.id.to_string());
            match primary {
                Some(id) => focus_soon(&format!("[data-testid=crash-point-{id}]")),
                None => ctx.dispatch(Action::Toast {
                    level: Level::Info,
                    title: "No primary to arm".into(),
                    text: "no live, running primary now: restart (r) or resume (Shift+P) one first"
                        .into(),
                }),
            }
        }
    }
}

/// Focuses the first element matching `css` once the page has rendered what the key just
/// opened, and scrolls it into view.
fn focus_soon(css: &str) {
    let css = css.to_owned();
    Timeout::new(0, move || {
        let el = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(&css).ok().flatten())
            .and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(el) = el {
            let _ = el.focus();
            el.scroll_into_view_with_bool(false);
        }
    })
    .forget();
}
