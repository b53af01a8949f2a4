//! The space-time diagram: `layout` computes the geometry (pure, tested natively); the
//! `SpaceTime` component in `components/space_time.rs` draws it.

pub mod layout;
