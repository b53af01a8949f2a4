//! The replay's banner and time scrubber, shown above the timeline while a saved run is open:
//! which file, its source, how many events, its run id, "not live"; a slider over the run's
//! time, start / one event back / play-pause / one event on / end, the speed, and *Back to
//! live*. While playing, each animation frame moves the time on by the frame's length × the
//! speed (`Action::ReplayAdvance`).

use gloo_render::{request_animation_frame, AnimationFrame};
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};
use yew::prelude::*;

use super::{use_dispatch, use_replay, Dispatch};
use crate::format;
use crate::store::{Action, Replay, SPEEDS};

/// What a key does to the replay (the slider's own keys, and the page's while replaying):
/// ←/→ 1 % of the run (Shift: one event), Page Up/Down 10 %, Home/End, Space play/pause.
/// The speed of the menu's option `index` (its options are [`SPEEDS`] in order; -1 when none is
/// selected gives 1×). Read by index rather than by parsing the option's value: `str::parse::<f64>`
/// would bring 10 KB of decimal tables into the wasm for this alone.
pub fn speed_at(index: i32) -> f64 {
    usize::try_from(index)
        .ok()
        .and_then(|i| SPEEDS.get(i))
        .copied()
        .unwrap_or(1.0)
}

pub fn replay_key(r: &Replay, e: &KeyboardEvent) -> Option<Action> {
    let span = (r.end_us() - r.start_us()) as f64;
    let by = |f: f64| {
        let t = r.at_us as f64 + span * f;
        Action::ReplaySeek(t.clamp(r.start_us() as f64, r.end_us() as f64).round() as u64)
    };
    Some(match e.key().as_str() {
        "ArrowLeft" | "ArrowDown" if e.shift_key() => Action::ReplayStep(false),
        "ArrowRight" | "ArrowUp" if e.shift_key() => Action::ReplayStep(true),
        "ArrowLeft" | "ArrowDown" => by(-0.01),
        "ArrowRight" | "ArrowUp" => by(0.01),
        "PageDown" => by(-0.1),
        "PageUp" => by(0.1),
        "Home" => Action::ReplaySeek(r.start_us()),
        "End" => Action::ReplaySeek(r.end_us()),
        " " => Action::ReplayPlay(!r.playing),
        _ => return None,
    })
}

fn speed_label(s: f64) -> String {
    if s < 1.0 {
        format!("{s}×")
    } else {
        format!("{}×", s as u64)
    }
}

#[function_component(ReplayBar)]
pub fn replay_bar() -> Html {
    let replay = use_replay();
    let ctx = use_dispatch();
    let last_frame = use_mut_ref(|| None::<f64>);
    let run = replay.run.as_ref();
    let playing = run.is_some_and(|r| r.playing);
    let at = run.map_or(0, |r| r.at_us);
    {
        // One animation frame at a time while playing: each moves the time on.
        let ctx = ctx.clone();
        let last_frame = last_frame.clone();
        use_effect_with((playing, at), move |(playing, _)| {
            if !*playing {
                // The next play measures its first frame from itself.
                *last_frame.borrow_mut() = None;
            }
            let frame: Option<AnimationFrame> = playing.then(|| {
                request_animation_frame(move |ts| {
                    let last = last_frame.borrow_mut().replace(ts);
                    let dt = last.map_or(0.0, |last| (ts - last).clamp(0.0, 250.0));
                    ctx.dispatch(Action::ReplayAdvance(dt));
                })
            });
            move || drop(frame)
        });
    }
    let Some(r) = run else {
        return html! {};
    };
    bar(r, &ctx)
}

fn bar(r: &Replay, ctx: &Dispatch) -> Html {
    let h = &r.data.header;
    let start = r.start_us();
    let span = r.end_us() - start;
    let source = if h.source.is_empty() {
        "source not recorded".to_owned()
    } else {
        h.source.clone()
    };
    let midrun = (h.dropped > 0).then(|| {
        html! {
            <div class="replay-midrun" data-testid="replay-midrun">
                {format!(
                    "Starts mid-run: {} of the run (before #{}) {} not in this file, so servers, clients and calls from before then may be missing or incomplete.",
                    if h.dropped == 1 { "the first event".to_owned() } else { format!("the first {} events", format::count(h.dropped)) },
                    h.first_seq,
                    if h.dropped == 1 { "is" } else { "are" }
                )}
            </div>
        }
    });
    let seek = |t: u64| ctx.to(move |_: MouseEvent| Action::ReplaySeek(t));
    let on_input = ctx.to(move |e: InputEvent| {
        let input: HtmlInputElement = e.target_unchecked_into();
        let v = input.value_as_number();
        Action::ReplaySeek(start + if v.is_finite() { v.max(0.0) as u64 } else { 0 })
    });
    let on_key = {
        let r = r.clone();
        let dispatcher = ctx.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.ctrl_key() || e.alt_key() || e.meta_key() {
                return;
            }
            if let Some(a) = replay_key(&r, &e) {
                e.prevent_default();
                e.stop_propagation();
                dispatcher.dispatch(a);
            }
        })
    };
    let on_speed = ctx.to(|e: Event| {
        let sel: HtmlSelectElement = e.target_unchecked_into();
        Action::ReplaySpeed(speed_at(sel.selected_index()))
    });
    let play = if r.playing {
        html! { <button class="btn small" data-testid="replay-play" aria-pressed="true"
        onclick={ctx.to(|_: MouseEvent| Action::ReplayPlay(false))} title="Pause (space)">{"❚❚ Pause"}</button> }
    } else {
        html! { <button class="btn small" data-testid="replay-play" aria-pressed="false"
        onclick={ctx.to(|_: MouseEvent| Action::ReplayPlay(true))} title="Play from here (space)">{"▶ Play"}</button> }
    };
    if r.is_empty() {
        return html! {
            <section class="replay-bar panel" data-testid="replay" aria-label="Replay of a saved run">
                <div class="replay-banner" role="status">
                    <span class="replay-tag">{"REPLAY"}</span>
                    <span class="replay-what" data-testid="replay-banner">
                        {"Replaying "}<b>{&r.data.name}</b>{format!(" ({source}, no events, run {}) — not live", h.run)}
                    </span>
                    <button class="btn small live-back" data-testid="replay-leave"
                        onclick={ctx.to(|_: MouseEvent| Action::LeaveReplay)}>{"⟵ Back to live"}</button>
                </div>
            </section>
        };
    }
    let time_text = r.position_text();
    html! {
        <section class="replay-bar panel" data-testid="replay" aria-label="Replay of a saved run">
            <div class="replay-banner" role="status">
                <span class="replay-tag">{"REPLAY"}</span>
                <span class="replay-what" data-testid="replay-banner">
                    {"Replaying "}<b>{&r.data.name}</b>
                    {format!(" ({source}, {}, run {}) — not live", format::counted(r.len() as u64, "event"), h.run)}
                </span>
                <button class="btn small live-back" data-testid="replay-leave"
                    onclick={ctx.to(|_: MouseEvent| Action::LeaveReplay)}
                    title="Close the file and show the live cluster again">{"⟵ Back to live"}</button>
            </div>
            {for midrun}
            <div class="scrubber">
                <button class="btn small" data-testid="replay-start" onclick={seek(start)}
                    title="To the start (Home)">{"Start"}</button>
                <button class="btn small icon" data-testid="replay-prev"
                    onclick={ctx.to(|_: MouseEvent| Action::ReplayStep(false))}
                    title="One event back (Shift+←)" aria-label="One event back">{"◂"}</button>
                {play}
                <button class="btn small icon" data-testid="replay-next"
                    onclick={ctx.to(|_: MouseEvent| Action::ReplayStep(true))}
                    title="One event on (Shift+→)" aria-label="One event on">{"▸"}</button>
                <button class="btn small" data-testid="replay-end" onclick={seek(r.end_us())}
                    title="To the end (End)">{"End"}</button>
                <input class="scrub" type="range" data-testid="replay-scrubber" min="0"
                    max={span.to_string()} step="any" value={(r.at_us - start).to_string()}
                    aria-label="Time in the run" aria-valuetext={time_text.clone()}
                    oninput={on_input} onkeydown={on_key} />
                <span class="replay-time" data-testid="replay-time" data-at-us={r.at_us.to_string()}
                    data-placed={r.placed().to_string()}>{time_text}</span>
                <label class="replay-speed">
                    <span class="sr-only">{"Playback speed"}</span>
                    <select data-testid="replay-speed" onchange={on_speed} title="Playback speed (× the run's own pace)">
                        { for SPEEDS.iter().map(|&s| html! {
                            <option value={s.to_string()} selected={s == r.speed}>{speed_label(s)}</option>
                        }) }
                    </select>
                </label>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_speed_option_is_read_by_its_place_in_the_menu() {
        // The menu lists SPEEDS in order, so option i is SPEEDS[i]: 0.25× first, 64× last.
        assert_eq!(speed_at(0), 0.25);
        assert_eq!(speed_at(1), 1.0);
        assert_eq!(speed_at(SPEEDS.len() as i32 - 1), 64.0);
        for (i, &s) in SPEEDS.iter().enumerate() {
            assert_eq!(speed_at(i as i32), s);
        }
        // No option selected, or one past the list: 1×, as an unreadable value was before.
        assert_eq!(speed_at(-1), 1.0);
        assert_eq!(speed_at(SPEEDS.len() as i32), 1.0);
    }
}
