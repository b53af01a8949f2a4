//! The fault panel: the network's faults in force and the controls that change them — links as
//! a matrix (from × to) with an editor for drop / duplicate / delay / jitter and a cut toggle,
//! a partition put together from chips (or the lane headers), heal, the seed, and step mode
//! with the messages it holds (Deliver / Drop / Duplicate each).
//!
//! Collapsible: closed, it is one line that says what is in force; while step mode is on its
//! held messages show either way. Every control is a button or a labelled field, and every
//! action also has a key (see `keys.rs`).

use shared::{Command, HeldMsg, MsgId, StepAction};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_feed, use_view, Dispatch};
use crate::faults::{self, Group, LinkForm};
use crate::store::{self, Action};
use crate::ws;

/// The link being edited and the values typed so far.
#[derive(Clone, PartialEq, Debug)]
struct Editing {
    from: String,
    to: String,
    form: LinkForm,
}

#[function_component(FaultPanel)]
pub fn fault_panel() -> Html {
    let ctx = use_dispatch();
    let cluster = use_cluster();
    let view = use_view();
    let feed = use_feed();
    let editing = use_state(|| None::<Editing>);
    let seed_typed = use_state(String::new);

    let plan = cluster.faults().clone();
    let open = view.faults_open;
    let servers: Vec<String> = cluster.nodes().map(|n| n.id.to_string()).collect();
    let clients = store::lane_clients(&feed, &cluster);
    let ends = faults::endpoints(&servers, &clients);
    let toggle = ctx.to(|_: MouseEvent| Action::ToggleFaultPanel);
    let summary = faults::summary(&plan);

    let step_toggle = {
        let send = ctx.send.clone();
        let on = plan.step;
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::Step {
                on: !on,
                tag: Some(ws::next_tag("step")),
            })
        })
    };
    let held = cluster.held();

    html! {
        <section class={classes!("panel", "faults-panel", open.then_some("open"))} data-testid="fault-panel"
            aria-labelledby="faults-title">
            <h2 class="panel-title">
                <span id="faults-title">{"Faults"}</span>
                <span class={classes!("hint", "faults-summary", (faults::any_in_force(&plan) || plan.step).then_some("active"))}
                    data-testid="faults-summary" title={summary.clone()}>{summary}</span>
                <button class={classes!("btn", "small", "step-toggle", plan.step.then_some("on"))} data-testid="step-toggle"
                    aria-pressed={plan.step.to_string()} onclick={step_toggle} aria-label="Step mode"
                    title="Step mode: every message waits in its receiver's inbox until you deliver, drop or duplicate it (t)">
                    {"❚▶ Step"}
                </button>
                <button class="btn ghost small" data-testid="faults-toggle" onclick={toggle}
                    aria-expanded={open.to_string()} aria-controls="faults-body"
                    title="Open / close the fault panel (Shift+F)">
                    {if open { "▾ Close" } else { "▸ Open" }}
                </button>
            </h2>
            if plan.step {
                <div class="muted small" data-testid="held-count">
                    {match held.len() {
                        0 => "Step mode: nothing held".to_string(),
                        1 => "Step mode: 1 message held".to_string(),
                        n => format!("Step mode: {n} messages held"),
                    }}
                </div>
            }
            if plan.step {
                {held_list(held, &ctx)}
            }
            if open {
                <div id="faults-body" class="faults-body">
                    {matrix(&ends, &plan, &editing, &ctx)}
                    {partition(&ends, &view.draft, &plan, &ctx)}
                    {seed(plan.seed, &seed_typed, &ctx)}
                </div>
            }
        </section>
    }
}

fn held_list(held: &[HeldMsg], ctx: &Dispatch) -> Html {
    let button = |id: MsgId, action: StepAction, text: &'static str, class: &'static str| {
        let send = ctx.send.clone();
        let onclick = Callback::from(move |_: MouseEvent| send.emit(step_command(action, id)));
        let what = match action {
            StepAction::Deliver => "deliver",
            StepAction::Drop => "drop",
            StepAction::Duplicate => "duplicate",
        };
        html! {
            <button class={classes!("btn", "small", class)} data-testid={format!("{what}-{id}")} {onclick}
                aria-label={format!("{what} message {id}")}>{text}</button>
        }
    };
    html! {
        <ol class="held-list" data-testid="held-list" aria-label="Messages held by step mode, oldest first">
            { for held.iter().map(|h| html! {
                <li class="held" data-testid="held-msg" data-msg-id={h.msg_id.to_string()}>
                    <div class="held-what">
                        <span class="mono">{format!("{} → {}", h.from, h.to)}</span>
                        <span class="held-msg">{faults::msg_text(&h.msg)}</span>
                        <span class="muted mono small">{format!("id {}", h.msg_id)}</span>
                    </div>
                    <div class="held-buttons">
                        {button(h.msg_id, StepAction::Deliver, "Deliver", "primary")}
                        {button(h.msg_id, StepAction::Drop, "Drop", "danger-outline")}
                        {button(h.msg_id, StepAction::Duplicate, "Dup", "")}
                    </div>
                </li>
            }) }
        </ol>
    }
}

/// `deliver`, `drop` or `duplicate` of one held message.
pub fn step_command(action: StepAction, msg_id: MsgId) -> Command {
    let tag = Some(ws::next_tag("step"));
    match action {
        StepAction::Deliver => Command::Deliver { msg_id, tag },
        StepAction::Drop => Command::DropMsg { msg_id, tag },
        StepAction::Duplicate => Command::Duplicate { msg_id, tag },
    }
}

fn matrix(
    ends: &[String],
    plan: &shared::FaultPlan,
    editing: &UseStateHandle<Option<Editing>>,
    ctx: &Dispatch,
) -> Html {
    let head = ends.iter().map(|to| html! { <th scope="col">{to}</th> });
    let rows = ends.iter().map(|from| {
        let cells = ends.iter().map(|to| {
            if from == to && from != shared::ANY {
                return html! { <td class="self" aria-label={format!("{from} to itself")}>{"·"}</td> };
            }
            let st = faults::link(plan, from, to);
            let (word, figure) = st.short();
            let chosen = editing
                .as_ref()
                .is_some_and(|e| &e.from == from && &e.to == to);
            let onclick = {
                let editing = editing.clone();
                let (from, to, rule) = (from.clone(), to.clone(), st.rule.clone());
                Callback::from(move |_: MouseEvent| {
                    let again = editing.as_ref().is_some_and(|e| e.from == from && e.to == to);
                    editing.set((!again).then(|| Editing {
                        from: from.clone(),
                        to: to.clone(),
                        form: LinkForm::of(rule.as_ref()),
                    }));
                })
            };
            html! {
                <td>
                    <button class={classes!("cell", st.class(), chosen.then_some("chosen"))}
                        data-testid={format!("link-{from}-{to}")} data-state={st.label()} {onclick}
                        aria-label={format!("link {from} to {to}: {}; edit", st.label())}
                        aria-pressed={chosen.to_string()} title={format!("{from} → {to}: {}", st.label())}>
                        <span class="w">{word}</span>
                        if !figure.is_empty() { <span class="n">{figure}</span> }
                    </button>
                </td>
            }
        });
        html! { <tr><th scope="row">{from}</th>{ for cells }</tr> }
    });
    html! {
        <div class="faults-section">
            <h3 class="faults-h">{"Links"}<span class="muted small">{" row: from · column: to"}</span></h3>
            <table class="link-matrix" data-testid="link-matrix">
                <caption class="sr-only">{"What the network does to messages from each process (rows) to each process (columns); * is every process"}</caption>
                <thead><tr><th scope="col" class="corner">{"from \\ to"}</th>{ for head }</tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
            if let Some(e) = editing.as_ref() {
                {editor(e, plan, editing, ctx)}
            }
        </div>
    }
}

fn editor(
    e: &Editing,
    plan: &shared::FaultPlan,
    editing: &UseStateHandle<Option<Editing>>,
    ctx: &Dispatch,
) -> Html {
    let field = |label: &'static str, key: &'static str, value: u64, max: u64| {
        let editing = editing.clone();
        let oninput = Callback::from(move |ev: InputEvent| {
            let input: HtmlInputElement = ev.target_unchecked_into();
            let v = input.value().trim().parse::<u64>().unwrap_or(0).min(max);
            if let Some(mut cur) = (*editing).clone() {
                match key {
                    "drop" => cur.form.drop_pct = v as u32,
                    "dup" => cur.form.dup_pct = v as u32,
                    "delay" => cur.form.delay_ms = v,
                    _ => cur.form.jitter_ms = v,
                }
                editing.set(Some(cur));
            }
        });
        let id = format!("link-{key}");
        html! {
            <label class="field" for={id.clone()}>
                <span>{label}</span>
                <input id={id.clone()} data-testid={id} type="number" min="0" max={max.to_string()}
                    value={value.to_string()} {oninput} />
            </label>
        }
    };
    let (from, to) = (e.from.clone(), e.to.clone());
    let apply = {
        let send = ctx.send.clone();
        let (from, to, form) = (from.clone(), to.clone(), e.form);
        Callback::from(move |_: MouseEvent| {
            send.emit(form.command(&from, &to, Some(ws::next_tag("link"))))
        })
    };
    let cut_now = faults::link(plan, &from, &to).cut;
    let cut = {
        let send = ctx.send.clone();
        let plan = plan.clone();
        let (from, to) = (from.clone(), to.clone());
        Callback::from(move |_: MouseEvent| {
            if cut_now {
                for c in faults::without_cut(&plan, &from, &to, || Some(ws::next_tag("uncut"))) {
                    send.emit(c);
                }
            } else {
                send.emit(faults::cut_command(&from, &to, Some(ws::next_tag("cut"))));
            }
        })
    };
    let close = {
        let editing = editing.clone();
        Callback::from(move |_: MouseEvent| editing.set(None))
    };
    html! {
        <div class="link-editor" data-testid="link-editor" role="group" aria-label={format!("link {from} to {to}")}>
            <div class="editor-head">
                <b>{format!("{from} → {to}")}</b>
                <button class="btn ghost small" onclick={close} aria-label="Close the link editor">{"✕"}</button>
            </div>
            <div class="fields">
                {field("drop %", "drop", u64::from(e.form.drop_pct), 100)}
                {field("dup %", "dup", u64::from(e.form.dup_pct), 100)}
                {field("delay ms", "delay", e.form.delay_ms, 60_000)}
                {field("jitter ms", "jitter", e.form.jitter_ms, 60_000)}
            </div>
            <div class="buttons">
                <button class="btn primary small" data-testid="link-apply" onclick={apply}
                    title="set_link: replaces this link's whole setting (all zeros removes it)">{"Apply"}</button>
                <button class={classes!("btn", "small", if cut_now { "on" } else { "danger-outline" })} data-testid="link-cut"
                    aria-pressed={cut_now.to_string()} onclick={cut}
                    title={if cut_now { "Lift this cut (heal, then put the rest of the plan back)" } else { "Cut: nothing from this sender reaches this receiver (one way)" }}>
                    {if cut_now { "✂ Cut · lift" } else { "✂ Cut" }}
                </button>
            </div>
        </div>
    }
}

fn partition(
    ends: &[String],
    draft: &faults::Draft,
    plan: &shared::FaultPlan,
    ctx: &Dispatch,
) -> Html {
    let chips = ends.iter().filter(|e| *e != shared::ANY).map(|n| {
        let g = draft.get(n).copied();
        let next = Group::cycle(g).map_or("neither group", Group::as_str);
        let now = g.map_or("in no group", Group::as_str);
        let onclick = {
            let n = n.clone();
            ctx.to(move |_: MouseEvent| Action::CycleGroup(n.clone()))
        };
        html! {
            <button class={classes!("chip", "group-chip", g.map(|g| format!("group-{}", g.as_str().to_ascii_lowercase())))}
                data-testid={format!("group-{n}")} data-group={g.map(Group::as_str)} {onclick}
                aria-label={format!("{n}: {now}; click for {next}")}>
                {n}<span class="g">{g.map_or("–", Group::as_str)}</span>
            </button>
        }
    });
    let cmd_ok = faults::partition_command(draft, None).is_some();
    let go = {
        let send = ctx.send.clone();
        let draft = draft.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(c) = faults::partition_command(&draft, Some(ws::next_tag("part"))) {
                send.emit(c);
            }
        })
    };
    let heal = {
        let send = ctx.send.clone();
        Callback::from(move |_: MouseEvent| {
            send.emit(Command::Heal {
                tag: Some(ws::next_tag("heal")),
            })
        })
    };
    html! {
        <div class="faults-section">
            <h3 class="faults-h">{"Partition"}<span class="muted small">{" click: A, B, neither (or a lane's header)"}</span></h3>
            <div class="group-chips">{ for chips }</div>
            <div class="buttons">
                <button class="btn small danger-outline" data-testid="partition" onclick={go} disabled={!cmd_ok}
                    title="Processes in A and B can't reach each other, both ways (g)">{"Partition A | B"}</button>
                <button class="btn small" data-testid="heal" onclick={heal}
                    disabled={!faults::any_in_force(plan)}
                    title="Clear partitions, cuts and link settings (h)">{"Heal"}</button>
            </div>
        </div>
    }
}

fn seed(current: u64, typed: &UseStateHandle<String>, ctx: &Dispatch) -> Html {
    let oninput = {
        let typed = typed.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            typed.set(input.value());
        })
    };
    let parsed = typed.trim().parse::<u64>().ok();
    let set = {
        let send = ctx.send.clone();
        let typed = typed.clone();
        Callback::from(move |_: MouseEvent| {
            if let Ok(seed) = typed.trim().parse::<u64>() {
                send.emit(Command::SetSeed {
                    seed,
                    tag: Some(ws::next_tag("seed")),
                });
                typed.set(String::new());
            }
        })
    };
    html! {
        <div class="faults-section seed-row">
            <label for="fault-seed" class="faults-h">{"Seed"}</label>
            <span class="mono" data-testid="seed">{current}</span>
            <input id="fault-seed" data-testid="seed-input" type="number" min="0" placeholder="new seed"
                value={typed.to_string()} {oninput} aria-label="new seed for the fault decisions" />
            <button class="btn small" data-testid="seed-set" onclick={set} disabled={parsed.is_none()}
                title="Seed every random fault decision, so a run's decisions replay">{"Set"}</button>
        </div>
    }
}
