//! The space-time diagram: one lane per process, time flowing down, one arrow per message.
//!
//! Virtualised: the scroll area is as tall as the whole history, but only the rows in view
//! (plus overscan) are built (`layout::scene`) and drawn into one SVG placed at the scroll
//! offset. Follows the live edge unless the person scrolls up; animates in-flight messages in
//! slow motion with `requestAnimationFrame`.

use std::rc::Rc;

use gloo_render::request_animation_frame;
use shared::RequestId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::Element;
use yew::prelude::*;

use super::details::Details;
use super::legend::Legend;
use super::run_files::RunFiles;
use super::{use_cluster, use_dispatch, use_feed, use_load, use_session, use_view, Dispatch};
use crate::diagram::layout::{self, ArrowEnd, ArrowGeom, Glyph, MarkGeom, Viewport, GUTTER};
use crate::events::{MsgKind, SpanKind};
use crate::history::History;
use crate::store::{self, Action, Conn, Selection};
use crate::{faults, format, ws};

/// Height of the sticky lane header inside the scroll area.
const LANE_HEAD: f64 = 48.0;

#[derive(Clone, Copy, PartialEq)]
struct View {
    top: f64,
    height: f64,
    width: f64,
}

/// The person's last input on the diagram (see `input` in [`space_time`]).
struct PersonInput {
    at_ms: f64,
    held: bool,
}

/// A scroll event this long after the person's wheel, key or finger is theirs (a smooth scroll
/// by wheel or Page Down goes on for a few hundred ms after the input).
const PERSON_SCROLL_MS: f64 = 1_000.0;

impl PersonInput {
    fn is_recent(&self, now_ms: f64) -> bool {
        self.held || now_ms - self.at_ms <= PERSON_SCROLL_MS
    }
}

#[function_component(SpaceTime)]
pub fn space_time() -> Html {
    let ctx = use_dispatch();
    let feed = use_feed();
    let view_slice = use_view();
    let cluster = use_cluster();
    let session = use_session();
    let load = use_load();
    let scroll = use_node_ref();
    // The latest measurement, shared with the scroll and resize callbacks (never stale).
    let view_cell = use_mut_ref(|| View {
        top: 0.0,
        height: 560.0,
        width: 900.0,
    });
    let redraw = use_force_update();
    // The scroll offset this component set itself: its scroll event is not the person's.
    let ours = use_mut_ref(|| None::<i32>);
    // When the person last used the wheel, a key, a finger or the pointer on the diagram, and
    // whether a pointer is held down on it (dragging the scroll bar): only a scroll that comes
    // with such input is theirs. Any other (the browser clamping the offset when the history
    // was replaced by a snapshot, a render racing a scroll event under a heavy load, a
    // screenshot tool resizing the page) must never stop the view following live.
    let input = use_mut_ref(|| PersonInput {
        at_ms: f64::NEG_INFINITY,
        held: false,
    });
    let hovered = use_state(|| None::<RequestId>);
    let pointer = use_mut_ref(|| (i32::MIN, i32::MIN));
    let hover = Hover {
        req: hovered.clone(),
        pointer: pointer.clone(),
    };
    let tick = use_state(|| 0u64);
    // The history's origin at the last render (see `shift` below).
    let last_origin = use_mut_ref(|| None::<f64>);
    // How far the scroll offset still has to move up for those shifts: the sum of every
    // render's shift until the effect below applies it (several renders may come before it
    // runs), and then the fraction of a pixel left over (scroll offsets are whole pixels).
    let owed = use_mut_ref(|| 0.0f64);

    // Measure the scroll area now and whenever it is resized.
    {
        let scroll = scroll.clone();
        let view_cell = view_cell.clone();
        let redraw = redraw.clone();
        use_effect_with((), move |_| {
            let measure = {
                let scroll = scroll.clone();
                move || {
                    if let Some(el) = scroll.cast::<Element>() {
                        let v = View {
                            top: el.scroll_top() as f64,
                            height: (el.client_height() as f64 - LANE_HEAD).max(100.0),
                            width: el.client_width() as f64,
                        };
                        let changed = *view_cell.borrow() != v;
                        if changed {
                            *view_cell.borrow_mut() = v;
                            redraw.force_update();
                        }
                    }
                }
            };
            measure();
            let cb = Closure::<dyn FnMut()>::new(measure);
            let observer = web_sys::ResizeObserver::new(cb.as_ref().unchecked_ref()).ok();
            if let (Some(o), Some(el)) = (&observer, scroll.cast::<Element>()) {
                o.observe(&el);
            }
            move || {
                if let Some(o) = observer {
                    o.disconnect();
                }
                drop(cb);
            }
        });
    }

    let shown: &History = feed.shown();
    // At the cap the oldest rows leave from the top and every row moves up by their height.
    // Someone reading back must keep the same events in view: move the scroll offset with
    // them (following, the view sticks to the bottom anyway).
    let origin = shown.origin_y();
    let shift = last_origin
        .borrow_mut()
        .replace(origin)
        .map_or(0.0, |before| origin - before);
    if !view_slice.follow && shift > 0.0 {
        *owed.borrow_mut() += shift;
        let mut v = view_cell.borrow_mut();
        v.top = (v.top - shift).max(0.0);
    }
    let view = *view_cell.borrow();
    let animating = !feed.paused() && cluster.slow_motion_ms() > 0 && shown.in_flight_count() > 0;
    let now_us = if animating {
        store::server_now_us(&session, &feed, ws::now_ms())
    } else {
        shown.last_t().unwrap_or(0) as f64
    };

    // In slow motion, re-render every animation frame while messages are in flight.
    {
        let tick = tick.clone();
        use_effect_with(
            (animating, *tick, feed.clone()),
            move |(animating, _, _)| {
                let frame = animating
                    .then(|| request_animation_frame(move |_| tick.set(tick.wrapping_add(1))));
                move || drop(frame)
            },
        );
    }

    let servers: Vec<Rc<str>> = cluster.nodes().map(|n| Rc::from(n.id.as_str())).collect();
    let clients = store::lane_clients(&feed, &cluster);
    let load_lane = shown.load_seen() || load.running();
    let (lanes, width) = layout::lanes_with_load(&clients, load_lane, &servers, view.width);
    // Under a heavy load the gateway sends a sample of the load's calls: say so, with the
    // counts per lane and link of the newest window.
    let sample_every = load.sample_every();
    let aggregated = load
        .charts
        .latest
        .as_ref()
        .filter(|_| load.running() && sample_every > 1);
    let lane_rate = |name: &str| -> Option<u64> {
        let s = aggregated?;
        let msgs: u64 = s
            .links
            .iter()
            .filter(|l| l.from == name || l.to == name)
            .map(|l| l.msgs)
            .sum();
        Some(crate::load::per_second(msgs, s.window_ms))
    };
    let canvas_h = layout::total_height(shown, now_us).max(view.height - 1.0);
    // Following: draw the bottom now, not after the scroll event the effect below causes.
    let top = if view_slice.follow {
        (canvas_h - view.height).max(0.0)
    } else {
        view.top
    };
    let vp = Viewport {
        top,
        height: view.height,
    };
    let mut scene = layout::scene(shown, &lanes, vp, now_us, cluster.slow_motion_ms());
    // The checker's calls at fault, and the messages that carried them, stay marked in red.
    let board = cluster.verdicts();
    layout::mark_faults(&mut scene, shown, board.faulty());

    // After every render: following, stick to the bottom; reading back, move with the rows
    // the cap shifted (relative to where the person is now, in case they scrolled meanwhile).
    {
        let scroll = scroll.clone();
        let follow = view_slice.follow;
        let ours = ours.clone();
        let owed = owed.clone();
        let hovered = hovered.clone();
        let input = input.clone();
        use_effect(move || {
            if let Some(el) = scroll.cast::<Element>() {
                if follow {
                    *owed.borrow_mut() = 0.0;
                    let bottom = el.scroll_height() - el.client_height();
                    // Not while the person scrolls: their scroll event is on its way and
                    // decides (a render between their scroll and its event put the view back
                    // at the bottom, and the event then looked like ours: CI saw the person's
                    // scroll to the top lost).
                    if el.scroll_top() < bottom && !input.borrow().is_recent(ws::now_ms()) {
                        el.set_scroll_top(bottom);
                        *ours.borrow_mut() = Some(el.scroll_top());
                        // The call under a resting pointer just scrolled away from it.
                        if hovered.is_some() {
                            hovered.set(None);
                        }
                    }
                } else {
                    let mut owed = owed.borrow_mut();
                    if owed.abs() >= 0.5 {
                        let want = el.scroll_top() as f64 - *owed;
                        let to = want.max(0.0).round();
                        *owed = if want > 0.0 { to - want } else { 0.0 };
                        el.set_scroll_top(to as i32);
                        *ours.borrow_mut() = Some(el.scroll_top());
                    }
                }
            }
        });
    }

    // Bring a selection made elsewhere (the timeline) into view.
    {
        let scroll = scroll.clone();
        let target = match view_slice.selected {
            Some(Selection::Event(i)) => shown.event(i).map(|e| layout::screen_y(shown, e.y)),
            Some(Selection::Msg(i)) => shown.msg(i).map(|m| layout::screen_y(shown, m.sent_y)),
            None => None,
        };
        let dispatch = ctx.clone();
        let vh = view.height;
        let ours = ours.clone();
        use_effect_with((view_slice.selected, view_slice.jumps), move |_| {
            if let (Some(y), Some(el)) = (target, scroll.cast::<Element>()) {
                let top = el.scroll_top() as f64;
                if y < top || y > top + vh {
                    dispatch.dispatch(Action::SetFollow(false));
                    // A quarter down: the details drawer that opens with the selection takes
                    // the bottom of the view (measured before it opened).
                    el.set_scroll_top((y - vh / 4.0).max(0.0) as i32);
                    *ours.borrow_mut() = Some(el.scroll_top());
                }
            }
        });
    }

    // A pointer let go anywhere (the scroll bar's drag can end outside the diagram), or taken
    // over by the browser (a touch that becomes a pan ends in `pointercancel`, not `pointerup`).
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            let release: Vec<gloo_events::EventListener> = web_sys::window()
                .map(|w| {
                    ["pointerup", "pointercancel"]
                        .into_iter()
                        .map(|kind| {
                            let input = input.clone();
                            gloo_events::EventListener::new(&w, kind, move |_| {
                                input.borrow_mut().held = false;
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            move || drop(release)
        });
    }
    let mark_input = {
        let input = input.clone();
        move |held: Option<bool>| {
            let mut i = input.borrow_mut();
            i.at_ms = ws::now_ms();
            if let Some(h) = held {
                i.held = h;
            }
        }
    };
    let onwheel = {
        let mark = mark_input.clone();
        Callback::from(move |_: WheelEvent| mark(None))
    };
    let onkeydown = {
        let mark = mark_input.clone();
        Callback::from(move |_: KeyboardEvent| mark(None))
    };
    let ontouchmove = {
        let mark = mark_input.clone();
        Callback::from(move |_: TouchEvent| mark(None))
    };
    let onpointerdown = {
        let mark = mark_input.clone();
        Callback::from(move |_: PointerEvent| mark(Some(true)))
    };

    let onscroll = {
        let input = input.clone();
        let view_cell = view_cell.clone();
        let redraw = redraw.clone();
        let scroll = scroll.clone();
        let ctx = ctx.clone();
        let following = view_slice.follow;
        let ours = ours.clone();
        Callback::from(move |_: Event| {
            let Some(el) = scroll.cast::<Element>() else {
                return;
            };
            let top = el.scroll_top() as f64;
            let programmatic = ours
                .borrow_mut()
                .take()
                .is_some_and(|t| (t - el.scroll_top()).abs() <= 2);
            let moved = (top - view_cell.borrow().top).abs() >= 1.0;
            if moved {
                view_cell.borrow_mut().top = top;
                if !(programmatic && following) {
                    redraw.force_update();
                }
            }
            if programmatic {
                return;
            }
            let at_bottom = el.scroll_top() + el.client_height() >= el.scroll_height() - 40;
            if input.borrow().is_recent(ws::now_ms()) {
                // The person scrolled: follow the live edge only if they went to the bottom.
                if at_bottom != following {
                    ctx.dispatch(Action::SetFollow(at_bottom));
                }
            } else if following && !at_bottom {
                // Not the person: back to the live edge at once (with no new event there
                // would be no render to put it back).
                let bottom = el.scroll_height() - el.client_height();
                el.set_scroll_top(bottom);
                *ours.borrow_mut() = Some(el.scroll_top());
            }
        })
    };

    let hl = *hovered;
    let selected = view_slice.selected;
    let arrows = scene.arrows.iter().map(|a| {
        let sel = selected == Some(Selection::Msg(a.msg));
        render_arrow(a, hl, sel, &ctx, &hover)
    });
    let marks = scene.marks.iter().map(|m| {
        let sel = selected == Some(Selection::Event(m.event));
        render_mark(m, hl, sel, &ctx, &hover)
    });
    let svg_top = (top - layout::OVERSCAN).max(0.0);
    let svg_h = view.height + 2.0 * layout::OVERSCAN;
    let view_box = format!("0 {svg_top} {width} {svg_h}");
    let lane_bottom = scene.live_y.max(svg_top);

    let plan = cluster.faults();
    let faults_shown = faults::any_in_force(plan) || view_slice.faults_open || aggregated.is_some();
    let lane_head_h = if faults_shown {
        LANE_HEAD + 14.0
    } else {
        LANE_HEAD
    };
    let lane_heads = lanes.iter().map(|l| {
        let is_load = &*l.name == layout::LOAD_LANE;
        let (class, sub) = if is_load {
            let k = load.clerks();
            ("load", if k > 0 { format!("{} clerks", format::count(k.into())) } else { "clerks".to_owned() })
        } else if l.server {
            match cluster.node(&l.name) {
                Some(n) if !n.alive => ("dead", "dead".to_string()),
                Some(n) if n.paused => ("paused", "paused".to_string()),
                Some(n) if n.dying => ("dying", "dying".to_string()),
                Some(n) if n.serving_alone => ("alone", "serving alone".to_string()),
                Some(n) => (format::role(n.role), format::role(n.role).to_string()),
                None => ("", String::new()),
            }
        } else {
            let clerk = shared::NodeId::from(&*l.name)
                .client_id()
                .and_then(|c| cluster.clerk(c));
            match clerk {
                Some(k) if k.pid.is_some() && !k.alive => ("dead", "crashed".to_string()),
                Some(k) if k.incarnation > 0 => ("client", format!("client · inc {}", k.incarnation)),
                _ => ("client", "client".to_string()),
            }
        };
        let name = l.name.to_string();
        // The partition in force colours the header; the one being put together outlines it.
        let in_force = faults::group_in_force(plan, &name).map(|g| ["group-a", "group-b", "group-c"][g.min(2)]);
        let draft = view_slice
            .faults_open
            .then(|| view_slice.draft.get(&name).copied())
            .flatten();
        let note = match lane_rate(&name) {
            Some(r) if r > 0 => format!("{} msg/s", crate::load::rate_label(r as f64)),
            _ => faults::lane_note(plan, &name),
        };
        let classes = classes!(
            "lane-tag",
            class,
            in_force,
            draft.map(|g| format!("draft-{}", g.as_str().to_ascii_lowercase()))
        );
        let style = format!("left:{}px", l.x);
        let body = html! {
            <>
                <span class="lane-name">{name.clone()}</span>
                <span class="lane-sub">{sub}</span>
                if !note.is_empty() {
                    <span class="lane-note" title={note.clone()}>{note.clone()}</span>
                }
            </>
        };
        if view_slice.faults_open {
            let next = faults::Group::cycle(draft).map_or("neither group", faults::Group::as_str);
            let onclick = {
                let name = name.clone();
                ctx.to(move |_: MouseEvent| Action::CycleGroup(name.clone()))
            };
            html! {
                <button class={classes} {style} data-lane={name.clone()} data-testid={format!("lane-{name}")} {onclick}
                    aria-label={format!("{name}: put into partition group {next}")}
                    title="Click: partition group A, then B, then neither">{body}</button>
            }
        } else {
            html! {
                <div class={classes} {style} data-lane={name.clone()} data-testid={format!("lane-{name}")}>{body}</div>
            }
        }
    });

    // A replay at its start is not waiting for anything: no empty-state advice.
    let empty = shown.msgs.is_empty() && session.conn != Conn::Replay;
    // Below the live edge, so the overlay never hides marks already drawn (starts, crashes).
    let empty_style = format!(
        "top:{}px",
        if shown.is_empty() {
            90.0
        } else {
            (scene.live_y + 36.0).max(90.0)
        }
    );
    let connected = session.conn == Conn::Connected;
    let jump = { ctx.to(|_: MouseEvent| Action::GoLive) };
    let start_demo = |failover: bool| {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            ctx.dispatch(Action::StartDemo {
                local_ms: ws::now_ms(),
                failover,
            })
        })
    };
    let clear_hover = {
        let hovered = hovered.clone();
        Callback::from(move |_| hovered.set(None))
    };
    let track_pointer = Callback::from(move |e: MouseEvent| {
        *pointer.borrow_mut() = (e.client_x(), e.client_y());
    });

    html! {
        <section class="diagram-card" aria-labelledby="diagram-title">
            <div class="diagram-bar">
                <h2 class="panel-title" id="diagram-title">{"Space-time diagram"}<span class="hint">{"time flows down · one lane per process"}</span></h2>
                <Legend />
                <span class="stats" data-testid="diagram-stats">
                    {format!("{} events", format::count(shown.len() as u64))}
                    if shown.in_flight_count() > 0 {
                        {format!(" · {} in flight", shown.in_flight_count())}
                    }
                    if feed.paused() {
                        <span class="paused-pill">{"paused"}</span>
                    }
                </span>
                <RunFiles />
            </div>
            if let Some(s) = aggregated {
                <div class="aggregate-note" data-testid="aggregate-note" role="status"
                    title="Under a heavy load the page asks the server for a sample of the load's calls (detail): the others are counted, not drawn">
                    <b>{crate::load::aggregate_note(sample_every, s.ops_per_s, load.catching_up())}</b>
                    <span class="links">
                        { for s.links.iter().map(|l| html! {
                            <span class="link mono">{format!("{}→{} {}/s", l.from, l.to, crate::load::rate_label(crate::load::per_second(l.msgs, s.window_ms) as f64))}</span>
                        }) }
                    </span>
                </div>
            }
            <div class="st-wrap">
            <div class="st-scroll" ref={scroll} {onscroll} {onwheel} {onkeydown} {ontouchmove} {onpointerdown}
                data-testid="diagram" tabindex="0" role="region"
                aria-label="Space-time diagram: one lane per process, time flowing down (arrow keys scroll)">
                <div class={classes!("lane-head", layout::is_compact(&lanes).then_some("compact"))} style={format!("width:{width}px;height:{lane_head_h}px")}>
                    <div class="gutter-head" style={format!("width:{GUTTER}px")}>{"time"}</div>
                    { for lane_heads }
                </div>
                <div class="st-canvas" style={format!("height:{canvas_h}px;width:{width}px")} onmouseleave={clear_hover} onmousemove={track_pointer}>
                    <svg class={classes!("st-svg", hl.is_some().then_some("hovering"), layout::is_compact(&lanes).then_some("compact"))}
                         style={format!("top:{svg_top}px;height:{svg_h}px;width:{width}px")}
                         width={width.to_string()} height={svg_h.to_string()} viewBox={view_box}>
                        <defs>
                            { for MsgKind::ALL.iter().map(|k| html! {
                                <marker id={format!("head-{}", k.as_str())} viewBox="0 0 10 10" refX="9.5" refY="5"
                                        markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">
                                    <path d="M0,0 L10,5 L0,10 z" class={format!("fill-{}", k.as_str())} />
                                </marker>
                            }) }
                            <pattern id="dead-hatch" width="7" height="7" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
                                <rect width="7" height="7" class="hatch-bg" />
                                <rect width="2.5" height="7" class="hatch" />
                            </pattern>
                            <pattern id="paused-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">
                                <rect width="8" height="8" class="hatch-bg paused" />
                                <rect width="3" height="8" class="hatch paused" />
                            </pattern>
                            <pattern id="dying-hatch" width="6" height="6" patternUnits="userSpaceOnUse">
                                <rect width="6" height="6" class="hatch-bg dying" />
                                <circle cx="3" cy="3" r="1.3" class="hatch dying" />
                            </pattern>
                            <marker id="head-dup" viewBox="0 0 10 10" refX="9.5" refY="5"
                                    markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">
                                <path d="M0,0 L10,5 L0,10 z" class="fill-dup" />
                            </marker>
                        </defs>
                        <line class="gutter-rule" x1={(GUTTER - 4.0).to_string()} x2={(GUTTER - 4.0).to_string()}
                              y1={svg_top.to_string()} y2={(svg_top + svg_h).to_string()} />
                        { for lanes.iter().map(|l| html! {
                            <line class={classes!("lane", if l.server { "server" } else { "client" })}
                                  x1={l.x.to_string()} x2={l.x.to_string()}
                                  y1={svg_top.to_string()} y2={lane_bottom.to_string()} />
                        }) }
                        // Each variable-length group sits in a <g> of its own: Yew matches unkeyed
                        // siblings from the end, so a flat list whose length changes would make every
                        // element before it (the defs, the lanes) be rebuilt on each render.
                        <g class="spans">
                        { for scene.dead.iter().map(|d| {
                            let kind = d.kind.as_str();
                            let fill = format!("url(#{kind}-hatch)");
                            html! {
                                <g class={classes!("span", kind)} data-testid={format!("{kind}-{}", d.server)} data-span={kind}>
                                    <rect x={(d.x - 8.0).to_string()} y={d.y1.to_string()} width="16"
                                          height={(d.y2 - d.y1).max(0.0).to_string()} fill={fill} />
                                    if d.kind != SpanKind::Dead && d.y2 - d.y1 > 36.0 {
                                        <text class="span-label" x={(d.x + 12.0).to_string()} y={(d.y1 + 30.0).to_string()}>{kind}</text>
                                    }
                                </g>
                            }
                        }) }
                        </g>
                        <g class="ticks">
                        { for scene.ticks.iter().map(|t| html! {
                            <g class="tick">
                                <text class="tick-label" x={(GUTTER - 12.0).to_string()} y={(t.y + 4.0).to_string()}>{&t.label}</text>
                                if let Some(idle) = &t.idle {
                                    <text class="idle-label" x={(GUTTER - 12.0).to_string()} y={(t.y - 14.0).to_string()}>{idle.clone()}</text>
                                }
                            </g>
                        }) }
                        </g>
                        <g class="dividers">
                        { for scene.dividers.iter().map(|d| {
                            let onclick = d.verdict.map(|i| {
                                let ctx = ctx.clone();
                                Callback::from(move |e: MouseEvent| {
                                    e.stop_propagation();
                                    ctx.dispatch(Action::Select(Some(Selection::Event(i))));
                                })
                            });
                            let sel = d.verdict.is_some_and(|i| selected == Some(Selection::Event(i)));
                            html! {
                                <g class={classes!("divider", d.reset.then_some("reset"), d.fault.then_some("fault"),
                                                   d.verdict.map(|_| "verdict"), sel.then_some("selected"))}
                                   data-testid={d.verdict.map(|_| "verdict-line")} {onclick}>
                                    if d.verdict.is_some() {
                                        <title>{"The checker's verdict: click for what went wrong"}</title>
                                    }
                                    <line x1={GUTTER.to_string()} x2={width.to_string()} y1={d.y.to_string()} y2={d.y.to_string()} />
                                    <text x={(GUTTER + 8.0).to_string()} y={(d.y - 5.0).to_string()}>{&d.label}</text>
                                </g>
                            }
                        }) }
                        </g>
                        if !shown.is_empty() {
                            <g class="live-edge">
                                <line x1={GUTTER.to_string()} x2={width.to_string()}
                                      y1={scene.live_y.to_string()} y2={scene.live_y.to_string()} />
                                <text x={(GUTTER - 12.0).to_string()} y={(scene.live_y + 4.0).to_string()}>
                                    {if feed.paused() { "paused" } else { "now" }}
                                </text>
                            </g>
                        }
                        <g class="arrows">{ for arrows }</g>
                        <g class="marks">{ for marks }</g>
                    </svg>
                    if empty && !connected {
                        <div class="empty-state" data-testid="diagram-empty" style={empty_style.clone()}>
                            <div class="empty-title">{"Waiting for the server…"}</div>
                            <div>{"The page talks to "}<code>{"pbscope serve"}</code>{" over a WebSocket at "}<code>{"/ws"}</code>{"."}</div>
                            <div class="muted">{"Start it (or restart it); the page reconnects by itself."}</div>
                        </div>
                    } else if empty && cluster.nodes().next().is_some() && cluster.nodes().all(|n| !n.alive) {
                        <div class="empty-state" data-testid="diagram-empty" style={empty_style.clone()}>
                            <div class="empty-title">{"Every server is dead"}</div>
                            <div>{"No call can be answered now: clients would try each server and give up."}</div>
                            <div class="muted">{"Reset cluster (Shift+R) starts a new primary and backup."}</div>
                        </div>
                    } else if empty {
                        <div class="empty-state" data-testid="diagram-empty" style={empty_style.clone()}>
                            <div class="empty-title">{"No messages yet"}</div>
                            <div>{"Run a short workload, or press "}<b>{"Lock"}</b>{" on a client card."}</div>
                            <div class="empty-actions">
                                <button class="btn primary" data-testid="empty-demo" onclick={start_demo(false)}>{"▶ Demo (d)"}</button>
                                <button class="btn danger-outline" data-testid="empty-failover-demo" onclick={start_demo(true)}>
                                    {"▶ Demo with a failover (Shift+D)"}
                                </button>
                            </div>
                            <div class="muted">{"Each call travels client → primary → backup → primary → client."}</div>
                        </div>
                    }
                </div>
            </div>
            if !view_slice.follow || feed.paused() {
                if session.conn == Conn::Replay {
                    // Nothing is live in a replay: this scrolls to the newest event shown.
                    <button class="btn jump" data-testid="jump-live" onclick={jump}
                        title="Scroll to the newest event shown (the scrubber's time)">{"⤓ Jump to end"}</button>
                } else {
                    <button class="btn jump" data-testid="jump-live" onclick={jump}>{"⤓ Jump to live"}</button>
                }
            }
            </div>
            // Docked under the diagram, so it never covers the lanes it describes.
            <Details />
        </section>
    }
}

/// The request under the pointer, and where the pointer last moved. While the view follows
/// live, content scrolls under a pointer that rests on the diagram and fires `mouseenter` on
/// whatever passes; the highlight must follow the hand, not the content.
#[derive(Clone)]
struct Hover {
    req: UseStateHandle<Option<RequestId>>,
    pointer: Rc<std::cell::RefCell<(i32, i32)>>,
}

impl Hover {
    fn on_enter(&self, req: Option<RequestId>) -> Callback<MouseEvent> {
        let this = self.clone();
        Callback::from(move |e: MouseEvent| {
            // A real move fires `mouseenter` before its `mousemove`, so the recorded position
            // is still the old one; content moving under a still pointer comes with the same,
            // and highlights nothing (the follow effect cleared the highlight already).
            if *this.pointer.borrow() == (e.client_x(), e.client_y()) {
                return;
            }
            if *this.req != req {
                this.req.set(req);
            }
        })
    }
}

fn highlight(hl: Option<RequestId>, req: Option<RequestId>) -> Option<&'static str> {
    match (hl, req) {
        (Some(h), Some(r)) if h == r => Some("hl"),
        (Some(_), _) => Some("dim"),
        _ => None,
    }
}

fn render_arrow(
    a: &ArrowGeom,
    hl: Option<RequestId>,
    selected: bool,
    ctx: &Dispatch,
    hover: &Hover,
) -> Html {
    let kind = a.kind.as_str();
    let req = format::req(a.req);
    let (lost, in_flight, held) = match a.end {
        ArrowEnd::Lost => (true, None, false),
        ArrowEnd::InFlight { progress } => (false, Some(progress), false),
        ArrowEnd::Held => (false, None, true),
        ArrowEnd::Delivered => (false, None, false),
    };
    let onclick = {
        let ctx = ctx.clone();
        let msg = a.msg;
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            ctx.dispatch(Action::Select(Some(Selection::Msg(msg))));
        })
    };
    let landed = !lost && !held && in_flight.is_none();
    let marker = landed.then(|| format!("url(#head-{kind})"));
    let title = format!(
        "{kind} #{req} · {} → {}{}\nmsg_id {}{}{}",
        a.from,
        a.to,
        if a.retry {
            " (retry: same request id)"
        } else {
            ""
        },
        a.msg_id,
        match a.end {
            ArrowEnd::Lost => format!(" · lost: {}", a.reason.as_deref().unwrap_or("?")),
            ArrowEnd::InFlight { progress } => format!(" · in flight ({:.0} %)", progress * 100.0),
            ArrowEnd::Held => " · held by step mode: not delivered yet".to_string(),
            ArrowEnd::Delivered => String::new(),
        },
        if a.dup_y.is_some() {
            " · delivered twice (duplicate)"
        } else {
            ""
        }
    );
    let title = if a.fault {
        format!("{title}\ncarries a call at fault: the checker found its lock's history not linearizable")
    } else {
        title
    };
    let fault = a.fault_loss();
    html! {
        <g class={classes!("arrow", kind, lost.then_some("lost"), in_flight.map(|_| "in-flight"), held.then_some("held"),
                           a.retry.then_some("retry"), a.dup_y.map(|_| "dup"), selected.then_some("selected"), highlight(hl, Some(a.req)),
                           a.fault.then_some("at-fault"))}
           data-msg-id={a.msg_id.to_string()} data-kind={kind} data-from={a.from.to_string()} data-to={a.to.to_string()}
           data-req={req.clone()} data-lost={lost.to_string()} data-reason={a.reason.as_ref().map(|r| r.to_string())}
           data-held={held.then_some("true")} data-dup={a.dup_y.map(|_| "true")} data-fault={a.fault.then_some("true")}
           onclick={onclick} onmouseenter={hover.on_enter(Some(a.req))}>
            <title>{title}</title>
            <line class="hit" x1={a.x1.to_string()} y1={a.y1.to_string()} x2={a.x2.to_string()} y2={a.y2.to_string()} />
            if in_flight.is_some() {
                <line class="guide" x1={a.x2.to_string()} y1={a.y2.to_string()} x2={a.target_x.to_string()} y2={a.y2.to_string()} />
            }
            <line class="shaft" x1={a.x1.to_string()} y1={a.y1.to_string()} x2={a.x2.to_string()} y2={a.y2.to_string()}
                  marker-end={marker} />
            if let Some(dy) = a.dup_y {
                <g class="dup-branch">
                    <line class="shaft" x1={a.x1.to_string()} y1={a.y1.to_string()} x2={a.target_x.to_string()} y2={dy.to_string()}
                          marker-end="url(#head-dup)" />
                    <text class="dup-label" x={(a.target_x + if a.target_x >= a.x1 { -8.0 } else { 8.0 }).to_string()} y={(dy - 7.0).to_string()}
                          text-anchor={if a.target_x >= a.x1 { "end" } else { "start" }}>{"dup"}</text>
                </g>
            }
            <circle class="tail" cx={a.x1.to_string()} cy={a.y1.to_string()} r="2.5" />
            if lost {
                <g class="cross">
                    <line x1={(a.x2 - 6.0).to_string()} y1={(a.y2 - 6.0).to_string()} x2={(a.x2 + 6.0).to_string()} y2={(a.y2 + 6.0).to_string()} />
                    <line x1={(a.x2 - 6.0).to_string()} y1={(a.y2 + 6.0).to_string()} x2={(a.x2 + 6.0).to_string()} y2={(a.y2 - 6.0).to_string()} />
                </g>
                if let Some(why) = fault {
                    <text class="lost-reason" x={a.x2.to_string()} y={(a.y2 + 19.0).to_string()} text-anchor="middle">{why}</text>
                }
            }
            if in_flight.is_some() {
                <circle class="head" cx={a.x2.to_string()} cy={a.y2.to_string()} r="6" />
            }
            if held {
                <rect class="held-box" x={(a.x2 - 6.0).to_string()} y={(a.y2 - 6.0).to_string()} width="12" height="12" rx="2" />
            }
            <text class="label" x={a.label_x.to_string()} y={a.label_y.to_string()}>{&a.label}</text>
        </g>
    }
}

fn render_mark(
    m: &MarkGeom,
    hl: Option<RequestId>,
    selected: bool,
    ctx: &Dispatch,
    hover: &Hover,
) -> Html {
    let onclick = {
        let ctx = ctx.clone();
        let event = m.event;
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            ctx.dispatch(Action::Select(Some(Selection::Event(event))));
        })
    };
    let (x, y) = (m.x, m.y);
    let testid = match m.glyph {
        Glyph::Crash => Some(format!("crash-mark-{}", m.node)),
        Glyph::Retry => Some(format!("retry-mark-{}", m.node)),
        Glyph::Pause => Some(format!("pause-mark-{}", m.node)),
        Glyph::Armed => Some(format!("armed-mark-{}", m.node)),
        _ => None,
    };
    let shape = match m.glyph {
        Glyph::Invoke => {
            html! { <circle class="g" cx={x.to_string()} cy={y.to_string()} r="4.5" /> }
        }
        Glyph::Answer { .. } | Glyph::GaveUp => {
            html! { <circle class="g" cx={x.to_string()} cy={y.to_string()} r="5.5" /> }
        }
        Glyph::Execute { .. } | Glyph::Exit => html! {
            <rect class="g" x={(x - 4.0).to_string()} y={(y - 4.0).to_string()} width="8" height="8" rx="1.5" />
        },
        Glyph::Crash => html! {
            <g class="g">
                <circle cx={x.to_string()} cy={y.to_string()} r="10" />
                <line x1={(x - 4.5).to_string()} y1={(y - 4.5).to_string()} x2={(x + 4.5).to_string()} y2={(y + 4.5).to_string()} />
                <line x1={(x - 4.5).to_string()} y1={(y + 4.5).to_string()} x2={(x + 4.5).to_string()} y2={(y - 4.5).to_string()} />
            </g>
        },
        Glyph::Start => html! {
            <path class="g" d={format!("M{},{} l6,10 l-12,0 z", x, y - 6.0)} />
        },
        Glyph::Role | Glyph::Armed => html! {
            <path class="g" d={format!("M{},{} l6,6 l-6,6 l-6,-6 z", x, y - 6.0)} />
        },
        Glyph::Pause => html! {
            <g class="g">
                <rect x={(x - 5.0).to_string()} y={(y - 6.0).to_string()} width="4" height="12" />
                <rect x={(x + 1.0).to_string()} y={(y - 6.0).to_string()} width="4" height="12" />
            </g>
        },
        Glyph::Resume => html! {
            <path class="g" d={format!("M{},{} l10,6 l-10,6 z", x - 4.0, y - 6.0)} />
        },
        Glyph::Dying => html! {
            <g class="g">
                <circle cx={x.to_string()} cy={y.to_string()} r="7" />
                <line x1={(x - 4.0).to_string()} y1={y.to_string()} x2={(x + 4.0).to_string()} y2={y.to_string()} />
            </g>
        },
        Glyph::Retry => html! {
            <g class="g">
                <circle cx={x.to_string()} cy={y.to_string()} r="8" />
                <text x={x.to_string()} y={(y + 4.0).to_string()}>{"↻"}</text>
            </g>
        },
    };
    let title = format!(
        "{} · seq {}\n{}{}",
        m.node,
        m.seq,
        m.label,
        if m.fault {
            "\nat fault: the checker found this call in a history that is not linearizable"
        } else {
            ""
        }
    );
    let gap = if matches!(m.glyph, Glyph::Crash) {
        15.0
    } else {
        10.0
    };
    let label_x = if m.label_left { x - gap } else { x + gap };
    html! {
        <g class={classes!("mark", m.glyph.class(), selected.then_some("selected"), highlight(hl, m.req), m.fault.then_some("at-fault"))}
           data-testid={testid} data-seq={m.seq.to_string()} data-node={m.node.to_string()} data-fault={m.fault.then_some("true")}
           data-req={m.req.map(format::req)}
           onclick={onclick} onmouseenter={hover.on_enter(m.req)}>
            <title>{title}</title>
            {shape}
            <text class="mark-label" x={label_x.to_string()} y={(y + 4.0).to_string()}
                  text-anchor={if m.label_left { "end" } else { "start" }}>{&m.label}</text>
        </g>
    }
}
