//! The top bar's controls: demo, slow motion, the view (pause, follow live, clear), reset, help.

use shared::Command;
use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_feed, use_view};
use crate::keys::SLOW_MOTION_PRESETS;
use crate::store::Action;
use crate::{format, ws};

#[function_component(Toolbar)]
pub fn toolbar() -> Html {
    let ctx = use_dispatch();
    let view = use_view();
    let feed = use_feed();
    let slow_motion_ms = use_cluster().slow_motion_ms();

    let demo_btn = {
        let running = view.demo.as_ref().map(|d| (d.answered, d.total));
        let onclick = ctx.to(|_: MouseEvent| Action::ToggleDemo {
            local_ms: ws::now_ms(),
        });
        match running {
            Some((done, total)) => html! {
                <button class="btn demo running" data-testid="demo" {onclick} title="Stop the demo (d)">
                    <span class="spinner"></span>{format!("Demo {done}/{total} · stop")}
                </button>
            },
            None => html! {
                <button class="btn demo" data-testid="demo" {onclick}
                    title="Three clients lock and unlock a, b and c, one call at a time each (d; Shift+D: with a failover)">
                    {"▶ Demo"}
                </button>
            },
        }
    };

    let slow = SLOW_MOTION_PRESETS.iter().map(|&ms| {
        let active = slow_motion_ms == ms;
        let send = ctx.send.clone();
        let onclick = Callback::from(move |_| {
            send.emit(Command::SetSlowMotion { delay_ms: ms, tag: Some(ws::next_tag("slow")) })
        });
        // Whole seconds read "2 s" where the bar is tight ("2000 ms" elsewhere).
        let label = match ms {
            0 => html! { {"off"} },
            ms if ms >= 1000 && ms % 1000 == 0 => html! {
                <>
                    <span class="wide-only">{format!("{ms} ms")}</span>
                    <span class="narrow-only">{format!("{} s", ms / 1000)}</span>
                </>
            },
            ms => html! { {format!("{ms} ms")} },
        };
        html! {
            <button class={classes!("seg", active.then_some("active"))} data-testid={format!("slow-{ms}")}
                aria-pressed={active.to_string()} {onclick}>{label}</button>
        }
    });
    let custom = (!SLOW_MOTION_PRESETS.contains(&slow_motion_ms))
        .then(|| html! { <span class="seg active">{format!("{slow_motion_ms} ms")}</span> });

    let pause = {
        let onclick = ctx.to(|_: MouseEvent| Action::TogglePause);
        if feed.paused() {
            html! {
                <button class="btn warn" data-testid="pause" {onclick} title="Resume the view (space)">
                    {format!("▶ Resume · {} new", format::count(feed.unseen()))}
                </button>
            }
        } else {
            html! { <button class="btn" data-testid="pause" {onclick} title="Freeze the view; events keep arriving (space)">{"❚❚ Pause"}</button> }
        }
    };
    let follow = {
        let onclick = ctx.to(|_: MouseEvent| Action::GoLive);
        let on = view.follow && !feed.paused();
        html! {
            <button class={classes!("btn", on.then_some("on"))} data-testid="follow" {onclick}
                aria-pressed={on.to_string()} title="Keep the newest events in view (f)">
                if on {
                    {"● Live"}
                } else {
                    <span class="wide-only">{"⤓ Follow live"}</span>
                    <span class="narrow-only">{"⤓ Live"}</span>
                }
            </button>
        }
    };
    let clear = {
        let onclick = ctx.to(|_: MouseEvent| Action::Clear);
        html! { <button class="btn ghost" data-testid="clear" {onclick} title="Clear the diagram and histories (c)">{"Clear"}</button> }
    };
    let reset = {
        let send = ctx.send.clone();
        let onclick = Callback::from(move |_| {
            send.emit(Command::Reset {
                tag: Some(ws::next_tag("reset")),
            })
        });
        html! {
            <button class="btn danger-outline" data-testid="reset" {onclick}
                title="Kill every node and start a fresh cluster (Shift+R)">{"↺ Reset"}<span class="wide-only">{" cluster"}</span></button>
        }
    };
    let large = {
        let on = view.large_text;
        let onclick = ctx.to(|_: MouseEvent| Action::ToggleLargeText);
        html! {
            <button class={classes!("btn", "round", on.then_some("on"))} data-testid="large-text" {onclick}
                aria-pressed={on.to_string()} title="Large text for a projector (z)" aria-label="Aa: large text for a projector">{"Aa"}</button>
        }
    };
    let help = {
        let shown = view.help;
        let onclick = ctx.to(move |_: MouseEvent| Action::ShowHelp(!shown));
        html! { <button class="btn round" data-testid="help-button" {onclick} title="Keyboard shortcuts (?)"
        aria-label="? keyboard shortcuts" aria-haspopup="dialog">{"?"}</button> }
    };

    html! {
        <div class="toolbar">
            {demo_btn}
            <div class="group" role="group" aria-label="Slow motion"
                title="Slow motion: every message waits this long before its receiver sees it (s cycles, 0 = off)">
                <span class="group-label">{"Slow motion"}</span>
                <div class="segmented">{ for slow }{ for custom }</div>
            </div>
            <div class="group" role="group" aria-label="View">
                {pause}{follow}{clear}
            </div>
            {reset}
            {large}
            {help}
        </div>
    }
}
