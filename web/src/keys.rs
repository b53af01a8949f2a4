//! Keyboard shortcuts: which key does what, and the table the help overlay shows.
//! Pure (the key listener lives in the app component).

/// Something a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    Help,
    Close,
    Lock,
    Unlock,
    SelectClient(u32),
    AddClient,
    CrashPrimary,
    CrashBeforeReply,
    CrashBackup,
    Reset,
    Demo,
    FailoverDemo,
    SlowMotionNext,
    SlowMotionOff,
    TogglePause,
    FollowLive,
    Clear,
    LargeText,
    Lecture,
}

/// The shortcut of a `KeyboardEvent.key`, when no modifier (other than Shift) is held.
pub fn shortcut(key: &str) -> Option<Shortcut> {
    use Shortcut::*;
    Some(match key {
        "?" => Help,
        "Escape" => Close,
        "l" => Lock,
        "u" => Unlock,
        "n" => AddClient,
        "k" => CrashPrimary,
        "b" => CrashBeforeReply,
        "K" => CrashBackup,
        "R" => Reset,
        "d" => Demo,
        "D" => FailoverDemo,
        "s" => SlowMotionNext,
        "0" => SlowMotionOff,
        " " | "p" => TogglePause,
        "f" | "End" => FollowLive,
        "c" => Clear,
        "z" => LargeText,
        "L" => Lecture,
        d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
            SelectClient(u32::from(d.as_bytes()[0] - b'0'))
        }
        _ => return None,
    })
}

/// The help overlay: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("1 – 9", "select client c1 … c9"),
    ("l / u", "selected client: Lock / Unlock its lock name"),
    ("n", "add a client"),
    ("d", "run the demo workload (again: stop it)"),
    (
        "Shift+D",
        "demo with a failover: the primary crashes before a reply",
    ),
    ("k", "crash the primary (SIGKILL)"),
    ("b", "crash the primary before its next reply"),
    ("Shift+K", "crash the backup"),
    ("Shift+R", "reset the cluster"),
    ("s / 0", "next slow-motion preset / slow motion off"),
    ("Space or p", "pause / resume the view"),
    ("f or End", "follow live (jump to the newest events)"),
    ("c", "clear the diagram and histories"),
    ("z", "large text (projector mode) on / off"),
    (
        "Shift+L",
        "open / close the lecture: every failure and tool, one click each",
    ),
    ("?", "show / hide this help"),
    ("Esc", "close help, deselect"),
];

/// The slow-motion presets, in the order `s` cycles through them.
pub const SLOW_MOTION_PRESETS: &[u64] = &[0, 250, 800, 2000];

/// The preset after `current` (wrapping; an unusual value goes to the first non-zero preset).
pub fn next_slow_motion(current: u64) -> u64 {
    match SLOW_MOTION_PRESETS.iter().position(|p| *p == current) {
        Some(i) => SLOW_MOTION_PRESETS[(i + 1) % SLOW_MOTION_PRESETS.len()],
        None => SLOW_MOTION_PRESETS[1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(shortcut("3"), Some(Shortcut::SelectClient(3)));
        assert_eq!(shortcut("0"), Some(Shortcut::SlowMotionOff));
        assert_eq!(shortcut("K"), Some(Shortcut::CrashBackup));
        assert_eq!(shortcut("k"), Some(Shortcut::CrashPrimary));
        assert_eq!(shortcut("L"), Some(Shortcut::Lecture));
        assert_eq!(shortcut("l"), Some(Shortcut::Lock));
        assert_eq!(shortcut("x"), None);
        assert_eq!(shortcut("Enter"), None);
    }

    #[test]
    fn slow_motion_cycles_through_presets() {
        assert_eq!(next_slow_motion(0), 250);
        assert_eq!(next_slow_motion(2000), 0);
        assert_eq!(next_slow_motion(123), 250);
    }
}
