//! The page's components, one per file. Each reads the store's slices it needs through the
//! hooks below ([`use_session`], [`use_cluster`], [`use_feed`], [`use_view`], [`use_toasts`])
//! and turns them into HTML/SVG; geometry comes from `diagram::layout`, text from `format`.
//! Actions go out through [`use_dispatch`], commands through `Dispatch::send`, never from a
//! component directly to the socket.
//!
//! Each slice is its own context, equal while it is the same allocation: Yew re-renders a
//! consumer only when a context it reads changes (and a child only when its props change), so
//! a component that reads the toasts is not rendered again for a batch of events.

pub mod app;
pub mod client_card;
pub mod conn_status;
pub mod demo_driver;
pub mod details;
pub mod failover_timeline;
pub mod fault_panel;
pub mod grant_alarm;
pub mod help;
pub mod lecture_driver;
pub mod lecture_panel;
pub mod legend;
pub mod load_card;
pub mod load_charts;
pub mod load_panel;
pub mod replay_bar;
pub mod run_files;
pub mod server_card;
pub mod space_time;
pub mod toast_item;
pub mod toasts;
pub mod toolbar;
pub mod verdict_badge;

use std::ops::Deref;
use std::rc::Rc;

use shared::Command;
use yew::prelude::*;

use crate::store::{
    Action, ClusterState, Feed, LoadState, ReplayState, Session, State, ToastList, ViewState,
};

/// One slice of the store as a context value: equal to another while it is the same
/// allocation (the reducer gives a slice a new one exactly when it changes it).
#[derive(Debug)]
pub struct Slice<T>(pub Rc<T>);

impl<T> Clone for Slice<T> {
    fn clone(&self) -> Self {
        Slice(Rc::clone(&self.0))
    }
}

impl<T> PartialEq for Slice<T> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Deref for Slice<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

pub type SessionCtx = Slice<Session>;
pub type ClusterCtx = Slice<ClusterState>;
pub type FeedCtx = Slice<Feed>;
pub type ViewCtx = Slice<ViewState>;
pub type ToastsCtx = Slice<ToastList>;
pub type ReplayCtx = Slice<ReplayState>;
pub type LoadCtx = Slice<LoadState>;

/// What changes the store and the world: the same for the page's whole life, so reading it
/// never re-renders anyone.
#[derive(Clone, PartialEq, Debug)]
pub struct Dispatch {
    pub(crate) dispatcher: UseReducerDispatcher<State>,
    /// Sends a command (and records it in the store), or reports that it could not.
    pub send: Callback<Command>,
    /// Reconnects now instead of waiting for the backoff.
    pub reconnect: Callback<()>,
}

impl Dispatch {
    pub fn dispatch(&self, action: Action) {
        self.dispatcher.dispatch(action);
    }

    /// A callback that dispatches the action `f` makes of its argument.
    pub fn to<E: 'static>(&self, f: impl Fn(E) -> Action + 'static) -> Callback<E> {
        let dispatcher = self.dispatcher.clone();
        Callback::from(move |e| dispatcher.dispatch(f(e)))
    }
}

#[hook]
fn use_slice<T: 'static>() -> Slice<T> {
    use_context::<Slice<T>>().expect("components are rendered inside the app's slice providers")
}

/// The title of a control that acts on the live cluster, disabled while a file is replayed.
pub const REPLAY_DISABLED: &str =
    "Replaying a saved run: nothing can be sent. ⟵ Back to live to act on the cluster";

/// Whether a saved run is shown instead of the live cluster (the session's `conn` says so,
/// and changes only on opening or leaving one: cards that read it re-render then only).
#[hook]
pub fn use_replaying() -> bool {
    use_session().conn == crate::store::Conn::Replay
}

/// The connection and the server process.
#[hook]
pub fn use_session() -> SessionCtx {
    use_slice::<Session>()
}

/// Servers, clerks and client cards.
#[hook]
pub fn use_cluster() -> ClusterCtx {
    use_slice::<ClusterState>()
}

/// The event history (the diagram's and the timeline's).
#[hook]
pub fn use_feed() -> FeedCtx {
    use_slice::<Feed>()
}

/// Follow, selection, help, large text, the demo.
#[hook]
pub fn use_view() -> ViewCtx {
    use_slice::<ViewState>()
}

#[hook]
pub fn use_toasts() -> ToastsCtx {
    use_slice::<ToastList>()
}

/// The run file being replayed, if any.
#[hook]
pub fn use_replay() -> ReplayCtx {
    use_slice::<ReplayState>()
}

/// The load generator: its settings, the panel's draft, the charts' rings, the sampling.
#[hook]
pub fn use_load() -> LoadCtx {
    use_slice::<LoadState>()
}

/// Dispatch actions and send commands (never re-renders the caller).
#[hook]
pub fn use_dispatch() -> Dispatch {
    use_context::<Dispatch>()
        .expect("components are rendered inside the app's ContextProvider<Dispatch>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_context_is_equal_only_to_the_same_allocation() {
        let feed = Rc::new(Feed::default());
        assert_eq!(Slice(feed.clone()), Slice(feed.clone()), "the same slice");
        assert_ne!(
            Slice(feed),
            Slice(Rc::new(Feed::default())),
            "an equal-looking copy is a change: the reducer copies only what it changes"
        );
    }
}
