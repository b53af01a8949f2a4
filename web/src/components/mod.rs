//! The page's components, one per file. Each reads the store through [`Ctx`] and turns it into
//! HTML/SVG; geometry comes from `diagram::layout`, text from `format`. Commands go out through
//! `Ctx::send`, never from a component directly to the socket.

pub mod app;
pub mod client_card;
pub mod conn_status;
pub mod demo_driver;
pub mod details;
pub mod failover_timeline;
pub mod help;
pub mod legend;
pub mod server_card;
pub mod space_time;
pub mod toast_item;
pub mod toasts;
pub mod toolbar;

use shared::Command;
use yew::prelude::*;

use crate::store::{Action, State};

/// What every component gets from the app: the store and the way to send commands.
#[derive(Clone, PartialEq, Debug)]
pub struct Ctx {
    pub state: UseReducerHandle<State>,
    /// Sends a command (and records it in the store), or reports that it could not.
    pub send: Callback<Command>,
    /// Reconnects now instead of waiting for the backoff.
    pub reconnect: Callback<()>,
}

impl Ctx {
    pub fn dispatch(&self, action: Action) {
        self.state.dispatch(action);
    }
}

/// The app context; every component is rendered inside the provider.
#[hook]
pub fn use_ctx() -> Ctx {
    use_context::<Ctx>().expect("components are rendered inside the app's ContextProvider<Ctx>")
}
