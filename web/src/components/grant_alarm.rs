//! The banner that says, in red and in words, that the same lock was granted twice with no
//! Unlock between (`grants.rs`). It stays until the cluster is reset: never hidden, never
//! smoothed over.

use yew::prelude::*;

use super::use_cluster;

#[function_component(GrantAlarm)]
pub fn grant_alarm() -> Html {
    let cluster = use_cluster();
    let Some(latest) = cluster.grants.latest() else {
        return html! {};
    };
    let more = cluster.grants.found().len().saturating_sub(1);
    html! {
        <div class="grant-alarm" role="alert" data-testid="double-grant"
            data-lock={latest.lock.clone()}>
            <strong>{"Double grant. "}</strong>
            {format!("{}.", latest.sentence())}
            if more > 0 {
                {format!(" ({more} more since the reset.)")}
            }
            <span class="grant-why">
                {" Two clients were told they hold the same lock: Lab 1 is wrong here. The checker of the next issue marks it."}
            </span>
        </div>
    }
}
