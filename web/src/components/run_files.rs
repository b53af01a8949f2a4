//! *Save run*, *Save ShiViz log* and *Open run* in a small menu on the diagram's bar (*Run ▾*,
//! beside the event count: the run is the diagram's events), and a run file dropped on the
//! page. Saving is a download of the server's `GET /run.jsonl` / `GET /run.shiviz` (same
//! origin; `trunk serve` proxies both); opening reads the file here and hands its text to the
//! store (`Action::OpenRun`), which refuses what is not a whole run.

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DragEvent, File, FileReader, HtmlInputElement, KeyboardEvent};
use yew::prelude::*;

use super::{use_dispatch, use_replay, Dispatch};
use crate::format;
use crate::store::{Action, Level, MAX_RUN_BYTES};

/// Reads `file` as text and opens it as a run (or says why it cannot).
fn open_file(file: File, ctx: Dispatch) {
    let name = file.name();
    let size = file.size();
    if size > MAX_RUN_BYTES {
        ctx.dispatch(Action::Toast {
            level: Level::Error,
            title: format!("Not opened: {name}"),
            text: format!(
                "the file is {} MB; a run file this page opens is at most {} MB",
                format::count((size / 1e6) as u64),
                format::count((MAX_RUN_BYTES / 1e6) as u64)
            ),
        });
        return;
    }
    let Ok(reader) = FileReader::new() else {
        return;
    };
    let r = reader.clone();
    let on_end = Closure::once_into_js(move |_: JsValue| {
        match r.result().ok().and_then(|v| v.as_string()) {
            Some(text) => ctx.dispatch(Action::OpenRun { name, text }),
            None => ctx.dispatch(Action::Toast {
                level: Level::Error,
                title: format!("Not opened: {name}"),
                text: "the browser could not read the file".into(),
            }),
        }
    });
    reader.set_onloadend(Some(on_end.unchecked_ref()));
    let _ = reader.read_as_text(&file);
}

#[function_component(RunFiles)]
pub fn run_files() -> Html {
    let ctx = use_dispatch();
    let replaying = use_replay().run.is_some();

    // A file dropped anywhere on the page opens like one picked.
    {
        let ctx = ctx.clone();
        use_effect_with((), move |_| {
            let listeners = web_sys::window().and_then(|w| w.document()).map(|doc| {
                let opts = EventListenerOptions::enable_prevent_default();
                let over = EventListener::new_with_options(&doc, "dragover", opts, |e| {
                    let has_files = e
                        .dyn_ref::<DragEvent>()
                        .and_then(DragEvent::data_transfer)
                        .is_some_and(|dt| dt.types().includes(&"Files".into(), 0));
                    if has_files {
                        e.prevent_default();
                    }
                });
                let drop = EventListener::new_with_options(&doc, "drop", opts, move |e| {
                    let file = e
                        .dyn_ref::<DragEvent>()
                        .and_then(DragEvent::data_transfer)
                        .and_then(|dt| dt.files())
                        .and_then(|files| files.get(0));
                    if let Some(file) = file {
                        e.prevent_default();
                        open_file(file, ctx.clone());
                    }
                });
                (over, drop)
            });
            move || drop(listeners)
        });
    }

    let open = use_state(|| false);
    let wrap = use_node_ref();
    let button = use_node_ref();
    // While open, a press anywhere outside the menu closes it (as a menu does).
    {
        let open = open.clone();
        let wrap = wrap.clone();
        use_effect_with(*open, move |is_open| {
            let listener = is_open
                .then(|| web_sys::window().and_then(|w| w.document()))
                .flatten()
                .map(|doc| {
                    EventListener::new(&doc, "pointerdown", move |e| {
                        let inside = e
                            .target()
                            .and_then(|t| t.dyn_into::<web_sys::Node>().ok())
                            .zip(wrap.get())
                            .is_some_and(|(t, w)| w.contains(Some(&t)));
                        if !inside {
                            open.set(false);
                        }
                    })
                });
            move || drop(listener)
        });
    }
    // Focus leaving the menu (Tab past its last item, or back past the button) closes it.
    let on_focus_out = {
        let open = open.clone();
        let wrap = wrap.clone();
        Callback::from(move |e: FocusEvent| {
            let to = e
                .related_target()
                .and_then(|t| t.dyn_into::<web_sys::Node>().ok());
            let inside = wrap
                .get()
                .is_some_and(|w| to.is_some_and(|t| w.contains(Some(&t))));
            if !inside {
                open.set(false);
            }
        })
    };
    let toggle = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let close = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(false))
    };
    // Esc closes it and gives the focus back to *Run ▾*, where the person opened it.
    let on_menu_key = {
        let open = open.clone();
        let button = button.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" && *open {
                e.stop_propagation();
                open.set(false);
                if let Some(b) = button.cast::<web_sys::HtmlElement>() {
                    let _ = b.focus();
                }
            }
        })
    };
    let input = use_node_ref();
    // The label is the menu's item: Enter or Space on it opens the picker too.
    let on_label_key = {
        let input = input.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" || e.key() == " " {
                e.prevent_default();
                if let Some(el) = input.cast::<HtmlInputElement>() {
                    el.click();
                }
            }
        })
    };
    let on_pick = {
        let open = open.clone();
        let ctx = ctx.clone();
        Callback::from(move |e: Event| {
            open.set(false);
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Some(file) = input.files().and_then(|f| f.get(0)) {
                open_file(file, ctx.clone());
            }
            // The same file picked again is a new open.
            input.set_value("");
        })
    };

    html! {
        <div class="runfiles" ref={wrap} onkeydown={on_menu_key} onfocusout={on_focus_out}>
            <button ref={button} class="btn small runs-toggle" data-testid="runs-menu"
                aria-haspopup="true" aria-expanded={open.to_string()} aria-controls="runs-menu" onclick={toggle}
                title="Run files: save this run, or open a saved one (also: drop a file on the page)">
                {"Run ▾"}</button>
            <input id="open-run-input" ref={input} class="sr-only" type="file" data-testid="open-run" tabindex="-1" aria-label="Open a run file"
                accept=".jsonl,.json,.txt,.log,application/json,text/plain" onchange={on_pick} />
            <div id="runs-menu" class={classes!("runs-menu", (*open).then_some("open"))} role="group" aria-label="Run files">
                if !replaying {
                    <a class="runs-item" data-testid="save-run" href="/run.jsonl" download="" onclick={close.clone()}
                        title="One JSON event a line; Open run shows it again, without a server">
                        {"⤓ Save run"}<span class="runs-sub">{".jsonl"}</span></a>
                    <a class="runs-item" data-testid="save-shiviz" href="/run.shiviz" download="" onclick={close.clone()}
                        title="Hosts and vector clocks, for ShiViz">
                        {"⤓ Save ShiViz log"}<span class="runs-sub">{".shiviz"}</span></a>
                }
                <label class="runs-item" for="open-run-input" data-testid="open-run-label" tabindex="0" role="button"
                    onkeydown={on_label_key}>
                    {"⤒ Open run…"}<span class="runs-sub">{"or drop it on the page"}</span></label>
            </div>
        </div>
    }
}
