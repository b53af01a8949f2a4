//! pbscope's page. `store` and `layout` are pure and tested natively; `app` renders them.

pub mod layout;
pub mod store;
