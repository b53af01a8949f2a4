//! The lecture panel: the ten failures of the lecture and the three tools against them, each a
//! preset that one click plays on the real processes (`lecture.rs`). While one plays it shows
//! the step it is at and, in plain words, what the processes really did; when it is over, what
//! to notice and what Lab 1 does under that failure. A double grant is said here too.

use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_view};
use crate::lecture::{presets, LectureRun, Part, Preset, Status, Verdict};
use crate::store::Action;
use crate::ws;

#[function_component(LecturePanel)]
pub fn lecture_panel() -> Html {
    let ctx = use_dispatch();
    let view = use_view();
    let open = view.lecture_open;
    let toggle = ctx.to(move |_: MouseEvent| Action::ShowLecture(!open));
    let body = if !open {
        html! {}
    } else if let Some(run) = view.lecture.as_ref() {
        html! { <RunView run={run.clone()} /> }
    } else {
        html! { <PresetList running={false} /> }
    };
    html! {
        <section class="panel lecture" aria-labelledby="lecture-title" data-testid="lecture">
            <h2 class="panel-title" id="lecture-title">
                {"Lecture"}
                <span class="hint">{"10 failures · 3 tools · 1 more"}</span>
                <button class="btn ghost small" data-testid="lecture-toggle" onclick={toggle}
                    aria-expanded={open.to_string()} aria-controls="lecture-body"
                    title="Open or close the lecture (Shift+L)">
                    { if open { "Hide" } else { "Show" } }
                </button>
            </h2>
            if open {
                <div id="lecture-body" class="lecture-body">{body}</div>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ListProps {
    running: bool,
}

#[function_component(PresetList)]
fn preset_list(props: &ListProps) -> Html {
    let ctx = use_dispatch();
    let item = |(i, p): (usize, &'static Preset)| {
        let onclick = ctx.to(move |_: MouseEvent| Action::StartLecture {
            preset: i,
            local_ms: ws::now_ms(),
        });
        let badge = match p.verdict {
            Verdict::Copes => None,
            Verdict::Breaks => Some("Lab 1 breaks"),
            Verdict::Stuck => Some("Lab 1 gets stuck"),
        };
        html! {
            <li>
                <button class="lec-item" data-testid={format!("preset-{}", p.id)} {onclick}
                    disabled={props.running} title={format!("Play “{}” on the real processes", p.title)}>
                    <span class="lec-name">{p.title}</span>
                    if let Some(badge) = badge {
                        <span class="lec-badge">{badge}</span>
                    }
                    <span class="lec-teaser">{p.teaser}</span>
                </button>
            </li>
        }
    };
    let part = |part: Part| {
        presets()
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.part == part)
    };
    html! {
        <>
            <p class="lec-intro">{"One click plays a story on the real processes: it resets the cluster, slows the messages down, and breaks something."}</p>
            <h3 class="lec-sub">{"Failures"}</h3>
            <ul class="lec-list">{ for part(Part::Failure).map(item) }</ul>
            <h3 class="lec-sub">{"Tools"}</h3>
            <ul class="lec-list">{ for part(Part::Tool).map(item) }</ul>
            <h3 class="lec-sub">{"Beyond the lecture's list"}</h3>
            <ul class="lec-list">{ for part(Part::Beyond).map(item) }</ul>
        </>
    }
}

#[derive(Properties, PartialEq)]
struct RunProps {
    run: LectureRun,
}

#[function_component(RunView)]
fn run_view(props: &RunProps) -> Html {
    let ctx = use_dispatch();
    let cluster = use_cluster();
    let run = &props.run;
    let p = run.preset();
    let total = p.steps.len();
    let (status, status_text) = match &run.status {
        Status::Running => (
            "running",
            format!("Step {} of {total}", (run.step + 1).min(total)),
        ),
        Status::Done => ("done", "Done".to_owned()),
        Status::Stopped => ("stopped", format!("Stopped at step {}", run.step + 1)),
        Status::Failed(_) => ("failed", format!("Did not finish (step {})", run.step + 1)),
    };
    let stop = ctx.to(|_: MouseEvent| Action::StopLecture);
    let back = ctx.to(|_: MouseEvent| Action::CloseLectureRun);
    let again = {
        let preset = run.preset;
        ctx.to(move |_: MouseEvent| Action::StartLecture {
            preset,
            local_ms: ws::now_ms(),
        })
    };
    let notice = html! {
        <>
            <p>{p.notice}</p>
            <p class="lec-lab1"><b>{"Lab 1: "}</b>{p.lab1}</p>
        </>
    };
    html! {
        <div class={classes!("lec-run", status)} data-testid="lecture-run" data-status={status}
            data-preset={p.id}>
            <div class="lec-run-head">
                <h3>{p.title}</h3>
                <span class="lec-status" data-testid="lecture-status">{status_text}</span>
            </div>
            if let Some(step) = run.current().filter(|_| run.running()) {
                <p class="lec-step" data-testid="lecture-step" aria-live="polite">
                    <span class="spinner"></span>{step.caption.clone()}
                </p>
            }
            if let Status::Failed(why) = &run.status {
                <p class="lec-failed" data-testid="lecture-failed">{why.clone()}</p>
            }
            if let Some(d) = cluster.grants.latest() {
                <p class="lec-alarm" data-testid="lecture-double-grant">
                    <strong>{"The same lock was granted twice: "}</strong>{format!("{}.", d.sentence())}
                </p>
            }
            if run.status == Status::Done {
                <div class="lec-notice" data-testid="lecture-notice">
                    <h4>{"What to notice"}</h4>
                    {notice}
                </div>
            } else if !run.running() {
                <details class="lec-notice">
                    <summary>{"What this preset shows when it runs through"}</summary>
                    {notice}
                </details>
            }
            <div class="lec-actions">
                if run.running() {
                    <button class="btn danger-outline small" data-testid="lecture-stop" onclick={stop}
                        title="Stop sending this preset's commands (the cluster stays as it is)">{"■ Stop"}</button>
                } else {
                    <button class="btn small" data-testid="lecture-again" onclick={again}>{"↻ Run again"}</button>
                    <button class="btn ghost small" data-testid="lecture-back" onclick={back}>{"All presets"}</button>
                }
            </div>
            if !run.notes.is_empty() {
                <h4 class="lec-sub">{"What happened"}</h4>
                <ol class="lec-notes" data-testid="lecture-notes">
                    { for run.notes.iter().map(|n| html! { <li>{n.clone()}</li> }) }
                </ol>
            }
        </div>
    }
}
