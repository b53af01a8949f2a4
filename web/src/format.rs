//! How numbers and names read on the page: durations, clock times, request ids, roles.
//! Pure text, shared by the diagram, the cards and the timeline so they always agree.

use shared::{CrashPoint, ErrorCode, Op, RequestId, Role};

pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Lock => "Lock",
        Op::Unlock => "Unlock",
    }
}

/// `c1.7`: client 1, call 7 — the at-most-once key, as the diagram labels it. A restarted
/// client's process is a new identity: `c1.7/i1` is call 7 of its incarnation 1.
pub fn req(r: RequestId) -> String {
    r.to_string()
}

pub fn role(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Backup => "backup",
        Role::Deposed => "deposed",
    }
}

/// Where an armed crash fires, for people: `before forward`, `before the backup's ack`.
pub fn crash_point(p: CrashPoint) -> &'static str {
    match p {
        CrashPoint::BeforeForward => "before forward",
        CrashPoint::AfterForward => "after forward",
        CrashPoint::BeforeReply => "before reply",
        CrashPoint::BeforeAck => "before ack",
    }
}

/// A duration for people: `85 µs`, `0.42 ms`, `214 ms`, `3.9 s`, `2 min 5 s`.
pub fn duration(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..10_000 => format!("{:.2} ms", us as f64 / 1000.0),
        10_000..1_000_000 => format!("{} ms", (us + 500) / 1000),
        1_000_000..60_000_000 => format!("{:.1} s", us as f64 / 1e6),
        _ => {
            let s = us / 1_000_000;
            format!("{} min {} s", s / 60, s % 60)
        }
    }
}

/// Milliseconds, for the failover window (`214 ms`; `0.4 ms` below 10 ms, where a failover
/// on a refused connection lands and "0 ms" would read as "nothing happened").
pub fn millis(us: u64) -> String {
    let ms = (us + 500) / 1000;
    if ms >= 10_000 {
        format!("{:.1} s ({ms} ms)", us as f64 / 1e6)
    } else if us < 9_950 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{ms} ms")
    }
}

/// A point on the run's clock (microseconds since the supervisor started): `12.345 s`.
pub fn clock(t_us: u64) -> String {
    let s = t_us / 1_000_000;
    let ms = (t_us % 1_000_000) / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}.{ms:03}", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}:{:02}.{ms:03}", s / 60, s % 60)
    } else {
        format!("{s}.{ms:03} s")
    }
}

/// A point on the run's clock to the microsecond, for rows less than 1 ms apart: `27.233 412`,
/// `2:30.069 777` (the minutes were left out once, and 2:08.804 read as 8.8 s).
pub fn clock_us(t_us: u64) -> String {
    let rest = t_us % 1_000_000;
    let whole = clock(t_us - rest);
    let whole = whole.trim_end_matches(" s");
    let whole = whole.strip_suffix(".000").unwrap_or(whole);
    format!("{whole}.{:03} {:03}", rest / 1000, rest % 1000)
}

/// The wire name of an error code (`client_busy`).
pub fn error_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadJson => "bad_json",
        ErrorCode::UnknownType => "unknown_type",
        ErrorCode::BadField => "bad_field",
        ErrorCode::UnknownNode => "unknown_node",
        ErrorCode::NodeDead => "node_dead",
        ErrorCode::ClientBusy => "client_busy",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::TooManyLocks => "too_many_locks",
        ErrorCode::TooManyViewers => "too_many_viewers",
        ErrorCode::QueueFull => "queue_full",
        ErrorCode::UnknownMessage => "unknown_message",
        ErrorCode::NotStepping => "not_stepping",
        ErrorCode::NotPaused => "not_paused",
        ErrorCode::NodeAlive => "node_alive",
        ErrorCode::NodePaused => "node_paused",
    }
}

/// Thousands separated by a thin space: `100 000`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// A count and its noun, singular for one: `1 event`, `2 events`, `100 000 events`.
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", count(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_a_thing_is_singular() {
        assert_eq!(counted(1, "event"), "1 event");
        assert_eq!(counted(0, "event"), "0 events");
        assert_eq!(counted(2, "event"), "2 events");
        assert_eq!(counted(100_000, "event"), "100\u{2009}000 events");
    }

    #[test]
    fn a_request_id_names_the_client_s_incarnation_after_a_restart() {
        assert_eq!(req(RequestId::new(1, 7)), "c1.7");
        let mut r = RequestId::new(1, 7);
        r.incarnation = 2;
        assert_eq!(req(r), "c1.7/i2");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(85), "85 µs");
        assert_eq!(duration(420), "420 µs");
        assert_eq!(duration(4_200), "4.20 ms");
        assert_eq!(duration(214_400), "214 ms");
        assert_eq!(duration(3_900_000), "3.9 s");
        assert_eq!(duration(125_000_000), "2 min 5 s");
        assert_eq!(millis(214_600), "215 ms");
        assert_eq!(millis(415), "0.4 ms");
        assert_eq!(millis(9_949), "9.9 ms");
        assert_eq!(millis(9_950), "10 ms");
        assert_eq!(millis(12_000_000), "12.0 s (12000 ms)");
    }

    #[test]
    fn clock_and_ids() {
        assert_eq!(clock(12_345_678), "12.345 s");
        assert_eq!(clock(75_001_000), "1:15.001");
        assert_eq!(clock_us(27_233_412), "27.233 412");
        assert_eq!(clock_us(75_001_042), "1:15.001 042");
        assert_eq!(clock_us(128_804_626), "2:08.804 626");
        assert_eq!(clock_us(3_725_000_001), "1:02:05.000 001");
        assert_eq!(req(RequestId::new(1, 7)), "c1.7");
        assert_eq!(count(100_000), "100\u{2009}000");
        assert_eq!(count(999), "999");
    }
}
