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
    FaultPanel,
    PausePrimary,
    RestartDead,
    CrashAll,
    CrashClient,
    StepToggle,
    DeliverOldest,
    DropOldest,
    DuplicateOldest,
    Partition,
    Heal,
    /// Moves the focus to the link matrix (opening the fault panel): drop, duplicate, delay,
    /// jitter and cut are set there, per link.
    FocusLinks,
    /// Moves the focus to the primary's crash-point picker (a point, "dying", Arm).
    FocusCrashPoint,
    /// Shows the checker's calls at fault in the diagram.
    ShowVerdict,
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
        "F" => FaultPanel,
        "P" => PausePrimary,
        "r" => RestartDead,
        "X" => CrashAll,
        "C" => CrashClient,
        "t" => StepToggle,
        "." => DeliverOldest,
        "x" => DropOldest,
        ">" => DuplicateOldest,
        "g" => Partition,
        "h" => Heal,
        "m" => FocusLinks,
        "a" => FocusCrashPoint,
        "v" => ShowVerdict,
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
    ("Shift+F", "open / close the fault panel"),
    (
        "Shift+P",
        "pause the primary (SIGSTOP) / resume the paused servers",
    ),
    ("r", "restart the dead servers (they come back empty)"),
    ("Shift+X", "crash every server at once"),
    ("Shift+C", "crash the selected client's process"),
    ("t", "step mode on / off"),
    (
        ". / x / >",
        "step mode: deliver / drop / duplicate the oldest held message",
    ),
    ("g", "partition into the groups A and B chosen"),
    ("h", "heal: clear partitions, cuts and link settings"),
    (
        "m",
        "links: jump to the link matrix (Enter on a link: drop, duplicate, delay, jitter, cut)",
    ),
    (
        "a",
        "crash point: jump to the primary's picker (a point, silent ms for dying, then Arm)",
    ),
    (
        "v",
        "verdict: show the calls the checker found at fault in the diagram",
    ),
    (
        "← / →",
        "replaying a saved run: 1 % of the run back / on (Shift: one event; Home / End: start / end; Space: play / pause)",
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
        assert_eq!(shortcut("x"), Some(Shortcut::DropOldest));
        assert_eq!(shortcut("t"), Some(Shortcut::StepToggle));
        assert_eq!(shortcut("P"), Some(Shortcut::PausePrimary));
        assert_eq!(
            shortcut("p"),
            Some(Shortcut::TogglePause),
            "p still pauses the view"
        );
        assert_eq!(shortcut("q"), None);
        assert_eq!(shortcut("Enter"), None);
    }

    #[test]
    fn every_shortcut_has_one_key_and_the_help_lists_the_new_ones() {
        let keys = [
            "?", "Escape", "l", "u", "n", "k", "b", "K", "R", "d", "D", "s", "0", " ", "p", "f",
            "End", "c", "z", "F", "P", "r", "X", "C", "t", ".", "x", ">", "g", "h", "m", "a", "v",
        ];
        let mut seen = Vec::new();
        for k in keys {
            let sc = shortcut(k).unwrap_or_else(|| panic!("{k:?} does nothing"));
            seen.push(sc);
        }
        for (k, _) in HELP {
            assert!(!k.is_empty());
        }
        for needle in [
            "Shift+F",
            "Shift+P",
            "t",
            ". / x / >",
            "g",
            "h",
            "r",
            "Shift+X",
            "Shift+C",
            // The link faults and the crash points are faults too: each has its key.
            "m",
            "a",
            // The checker's verdict: jump to the calls at fault.
            "v",
        ] {
            assert!(
                HELP.iter().any(|(k, _)| *k == needle),
                "{needle} is in the help"
            );
        }
    }

    #[test]
    fn slow_motion_cycles_through_presets() {
        assert_eq!(next_slow_motion(0), 250);
        assert_eq!(next_slow_motion(2000), 0);
        assert_eq!(next_slow_motion(123), 250);
    }
}
