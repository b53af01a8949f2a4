//! Runs the demo (`demo.rs`): after each change of the store, sends the steps that are due;
//! wakes itself up when a step is waiting only for its pace. Draws nothing.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use super::use_ctx;
use crate::{demo, ws};

#[function_component(DemoDriver)]
pub fn demo_driver() -> Html {
    let ctx = use_ctx();
    let wake = use_state(|| 0u64);
    {
        let ctx = ctx.clone();
        let wake = wake.clone();
        use_effect_with((ctx.state.rev(), *wake), move |_| {
            let mut timer = None;
            if let Some(run) = ctx.state.demo.as_ref() {
                let st = &ctx.state;
                let plan = demo::plan(run, ws::now_ms(), |c| st.busy(c));
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
