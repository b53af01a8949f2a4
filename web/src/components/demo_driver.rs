//! Runs the demo (`demo.rs`): after each change of the view (the demo's progress) or the
//! cluster (who is busy), sends the steps that are due; wakes itself up when a step is waiting
//! only for its pace. Draws nothing.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use super::{use_cluster, use_dispatch, use_view};
use crate::{demo, ws};

#[function_component(DemoDriver)]
pub fn demo_driver() -> Html {
    let ctx = use_dispatch();
    let view = use_view();
    let cluster = use_cluster();
    let wake = use_state(|| 0u64);
    {
        let wake = wake.clone();
        use_effect_with((view, cluster, *wake), move |(view, cluster, _)| {
            let mut timer = None;
            if let Some(run) = view.demo.as_ref() {
                let plan = demo::plan(run, ws::now_ms(), |c| cluster.busy(c));
                for cmd in plan.send {
                    ctx.send.emit(cmd);
                }
                if let Some(ms) = plan.wake_in_ms {
                    let wake = wake.clone();
                    timer = Some(Timeout::new(ms.ceil() as u32 + 5, move || {
                        wake.set(wake.wrapping_add(1))
                    }));
                }
            }
            move || drop(timer)
        });
    }
    html! {}
}
