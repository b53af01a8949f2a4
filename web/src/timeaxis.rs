//! The diagram's vertical axis, "compressed time": every event takes at least one row ([`ROW`]),
//! and the time since the previous event adds up to [`MAX_IDLE_PX`] more ([`row_gap`]). A burst
//! of messages 100 µs apart stays readable, slow-motion hops are visibly longer, and a pause of a
//! person shows as a gap without wasting the screen.
//!
//! `history` places each event on this axis once, when it arrives; `diagram::layout` turns those
//! positions into screen pixels. Plain numbers: it must not know about events or the screen.

/// Height of one event row, pixels.
pub const ROW: f64 = 22.0;
/// Extra pixels per millisecond of idle time between two events.
pub const PX_PER_MS: f64 = 0.075;
/// Most extra pixels a single gap gets (1.6 s of idle time).
pub const MAX_IDLE_PX: f64 = 120.0;

/// Vertical distance from an event to the next one, `dt_us` later.
pub fn row_gap(dt_us: u64) -> f64 {
    ROW + (dt_us as f64 / 1000.0 * PX_PER_MS).min(MAX_IDLE_PX)
}
