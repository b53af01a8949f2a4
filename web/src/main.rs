//! Entry point of the page (wasm32): mounts the app on `<body>`.

fn main() {
    #[cfg(target_arch = "wasm32")]
    yew::Renderer::<web::App>::new().render();
}
