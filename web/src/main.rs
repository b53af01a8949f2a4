//! pbscope's page (placeholder until the page issue lands).
use yew::prelude::*;

#[function_component]
fn App() -> Html {
    html! { <h1>{ "pbscope" }</h1> }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
