//! Plays the lecture's preset that runs (`lecture.rs`): after each change of the view (the
//! run's progress), sends the command its step is due to send, once; wakes the store up when
//! only time can move the run (a wait, or a timeout). Draws nothing.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use super::{use_dispatch, use_view};
use crate::store::Action;
use crate::ws;

#[function_component(LectureDriver)]
pub fn lecture_driver() -> Html {
    let ctx = use_dispatch();
    let view = use_view();
    // (run, step) of the last command sent: a render before its `Sent` is reduced must not
    // send it again.
    let sent: Rc<RefCell<Option<(u64, usize)>>> = use_mut_ref(|| None);
    use_effect_with(view, move |view| {
        let mut timer = None;
        if let Some(run) = view.lecture.as_ref().filter(|r| r.running()) {
            if let Some(cmd) = run.to_send() {
                let at = Some((run.run, run.step));
                if *sent.borrow() != at {
                    *sent.borrow_mut() = at;
                    ctx.send.emit(cmd);
                }
            } else if let Some(ms) = run.wake_in_ms(ws::now_ms()) {
                let ctx = ctx.clone();
                timer = Some(Timeout::new(ms.ceil() as u32 + 5, move || {
                    ctx.dispatch(Action::LectureTick {
                        local_ms: ws::now_ms(),
                    })
                }));
            }
        }
        move || drop(timer)
    });
    html! {}
}
