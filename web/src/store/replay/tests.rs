//! The replay's fold: the state at a time, scrubbing, refused files, back to live.

use std::rc::Rc;

use model::runfile::write_run;
use shared::{
    Event, EventKind as K, LockVerdict, RequestId, Role, RunHeader, ServerMsg, VerdictStatus,
    PROTOCOL_VERSION, RUN_FORMAT,
};

use super::*;
use crate::store::{Action, Conn, Level};
use crate::testkit::Script;

/// A run of `calls` Lab 1 calls by three clients through s1 and s2, with a few events reported
/// out of time order (as processes do), and a verdict at the end.
fn script(calls: u64) -> Script {
    let mut s = Script::default();
    s.ev(
        "s1",
        K::ProcessStarted {
            pid: 101,
            role: Role::Primary,
            port: 7001,
        },
    )
    .ev(
        "s2",
        K::ProcessStarted {
            pid: 102,
            role: Role::Backup,
            port: 7002,
        },
    );
    for i in 0..calls {
        let c = (i % 3) as u32 + 1;
        s.call(c, i / 3 + 1, "s1", "s2", 1 + i * 4);
    }
    // Every 97th event is reported 150 µs late: the diagram's order is not the log's.
    for e in s.events.iter_mut().filter(|e| e.seq % 97 == 0) {
        e.t_us -= 150;
    }
    s.ev(
        "checker",
        K::Verdict(LockVerdict {
            lock: "a".into(),
            status: VerdictStatus::Violation,
            ops: vec![RequestId::new(1, 1), RequestId::new(2, 1)],
            explanation: "Lock(a) was granted twice".into(),
            calls,
        }),
    );
    s
}

fn header(dropped: u64) -> RunHeader {
    RunHeader {
        format: RUN_FORMAT.into(),
        protocol: PROTOCOL_VERSION,
        server: "pbscope 0.1.0".into(),
        run: 42,
        first_seq: dropped + 1,
        dropped,
        source: "pbscope check --seed 7".into(),
        variant: None,
    }
}

fn file(s: &Script) -> String {
    write_run(&header(0), &s.events)
}

fn open(text: &str) -> State {
    let mut st = State::default();
    st.apply(Action::OpenRun {
        name: "run.jsonl".into(),
        text: text.into(),
    });
    st
}

/// The live page's own fold of `events` (no reorder hold): what the cards must show.
fn live_fold(events: &[Event]) -> State {
    let mut st = State::default();
    Rc::make_mut(&mut st.feed).reorder_hold_ms = 0.0;
    st.apply(Action::Receive {
        msgs: vec![ServerMsg::Events {
            events: events.to_vec(),
        }],
        local_ms: 1.0,
    });
    st
}

fn run(st: &State) -> &Replay {
    st.replay().run.as_ref().expect("replaying")
}

/// Everything a replayed state shows: cards, model, grants, and the diagram's rows, messages
/// and timeline.
fn assert_same_picture(a: &State, b: &State, why: &str) {
    assert_eq!(a.cluster().model, b.cluster().model, "model: {why}");
    assert_eq!(a.cluster().clients, b.cluster().clients, "cards: {why}");
    assert_eq!(a.cluster().grants, b.cluster().grants, "grants: {why}");
    let (ha, hb) = (&a.feed().history, &b.feed().history);
    let rows = |h: &History| h.events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    let msgs = |h: &History| h.msgs.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>();
    assert_eq!(rows(ha), rows(hb), "diagram rows: {why}");
    assert_eq!(msgs(ha), msgs(hb), "messages: {why}");
    assert_eq!(ha.failover, hb.failover, "timeline: {why}");
    assert_eq!(
        ha.in_flight_count(),
        hb.in_flight_count(),
        "in flight: {why}"
    );
}

#[test]
fn a_run_opens_at_its_end_and_folds_to_the_scrubbed_time() {
    let s = script(700); // 7,003 events: three checkpoints and a tail
    let n = s.events.len();
    let mut st = open(&file(&s));
    assert!(st.replaying());
    assert_eq!(st.session().conn, Conn::Replay);
    assert_eq!(st.session().run, Some(42));
    let r = run(&st);
    assert_eq!((r.len(), r.placed(), r.folded()), (n, n, n));
    assert_eq!(r.at_us, r.end_us());
    assert_eq!(st.feed().history.len(), n);
    assert_eq!(
        st.cluster().model.verdicts().count(),
        1,
        "the file's verdict is drawn"
    );
    assert_eq!(st.cluster().clerk(1).map(|c| c.completed), Some(234));
    // The whole run, as the live page would have folded it.
    assert_same_picture(&st, &live_fold(&s.events), "at the end");

    // Back to the time of event #3,500: the cards are the log up to the first event after
    // that time; the diagram holds every event at or before it.
    let t = s.events[3_499].t_us;
    st.apply(Action::ReplaySeek(t));
    let r = run(&st);
    let on_diagram = s.events.iter().filter(|e| e.t_us <= t).count();
    assert_eq!(r.placed(), on_diagram);
    assert_eq!(st.feed().history.len(), on_diagram);
    assert!(st.feed().history.events.iter().all(|(_, e)| e.t_us <= t));
    let k = s
        .events
        .iter()
        .position(|e| e.t_us > t)
        .expect("later events");
    assert_eq!(r.folded(), k);
    assert_eq!(
        st.cluster().model,
        live_fold(&s.events[..k]).cluster().model
    );
    assert_eq!(
        st.cluster().model.verdicts().count(),
        0,
        "no verdict yet at that time"
    );
    assert!(r.folded() < n && r.placed() < n);

    // The start: the two servers' starts only.
    let start = run(&st).start_us();
    st.apply(Action::ReplaySeek(0));
    assert_eq!(run(&st).at_us, start, "clamped to the run");
    assert_eq!(st.feed().history.len(), 1);
}

#[test]
fn scrubbing_back_then_forward_equals_a_straight_fold() {
    let s = script(900);
    let text = file(&s);
    let mut st = open(&text);
    let target = s.events[6_123].t_us;
    // Back and forth: far back, near steps forward, one event at a time, past the target and
    // back to it.
    for t in [
        s.events[10].t_us,
        s.events[4_000].t_us,
        s.events[4_500].t_us,
        s.events[8_000].t_us,
        s.events[100].t_us,
        target - 5_000,
    ] {
        st.apply(Action::ReplaySeek(t));
    }
    for _ in 0..40 {
        st.apply(Action::ReplayStep(true));
    }
    for _ in 0..15 {
        st.apply(Action::ReplayStep(false));
    }
    st.apply(Action::ReplaySeek(target));
    // A fresh open, straight to the target (from its checkpoint).
    let mut straight = open(&text);
    straight.apply(Action::ReplaySeek(target));
    assert_eq!(run(&st).placed(), run(&straight).placed());
    assert_same_picture(&st, &straight, "scrubbed vs. straight");
    // And the cards equal the live page's fold of the same events.
    let k = run(&st).folded();
    assert_same_picture_cards(&st, &live_fold(&s.events[..k]));
}

fn assert_same_picture_cards(a: &State, b: &State) {
    assert_eq!(a.cluster().model, b.cluster().model);
    assert_eq!(a.cluster().clients, b.cluster().clients);
}

#[test]
fn a_refused_file_leaves_the_state_untouched() {
    // A live page with something on it.
    let s = script(3);
    let mut st = live_fold(&s.events);
    let text = file(&script(300));
    let lines: Vec<&str> = text.lines().collect();
    let truncated = lines[..lines.len() - 1].join("\n");
    let newer = text.replacen(
        &format!("\"protocol\":{PROTOCOL_VERSION}"),
        "\"protocol\":99",
        1,
    );
    for (bad, says) in [
        (truncated.as_str(), "cut short"),
        (newer.as_str(), "newer"),
        ("{\"hello\":1}\n", "not a pbscope run"),
        ("not json at all", "not a pbscope run"),
        ("", "empty"),
    ] {
        let before = st.clone();
        st.apply(Action::OpenRun {
            name: "bad.jsonl".into(),
            text: bad.into(),
        });
        assert!(!st.replaying(), "{says}");
        assert!(Rc::ptr_eq(st.session(), before.session()), "{says}");
        assert!(Rc::ptr_eq(st.cluster(), before.cluster()), "{says}");
        assert!(Rc::ptr_eq(st.feed(), before.feed()), "{says}");
        assert!(Rc::ptr_eq(st.view(), before.view()), "{says}");
        let toast = st.toasts().list.last().expect("a toast says why");
        assert_eq!(toast.level, Level::Error);
        assert_eq!(toast.title, "Not opened: bad.jsonl");
        assert!(toast.text.contains(says), "{says}: {}", toast.text);
    }
    // Refused while replaying: the replay stays as it was.
    let mut st = open(&text);
    let before = st.clone();
    st.apply(Action::OpenRun {
        name: "bad.jsonl".into(),
        text: truncated,
    });
    assert!(Rc::ptr_eq(st.replay(), before.replay()));
    assert!(Rc::ptr_eq(st.feed(), before.feed()));
}

#[test]
fn back_to_live_restores_the_live_page_and_nothing_live_reaches_a_replay() {
    let s = script(5);
    let mut st = live_fold(&s.events);
    st.apply(Action::Connected);
    let live = st.clone();
    st.apply(Action::OpenRun {
        name: "run.jsonl".into(),
        text: file(&script(50)),
    });
    assert!(st.replaying());
    let shown = st.clone();
    // Frames still on their way, a tick, a lost connection: none of them touches the replay.
    st.apply(Action::Receive {
        msgs: vec![ServerMsg::Events {
            events: script(8).events,
        }],
        local_ms: 5.0,
    });
    st.apply(Action::Disconnected {
        attempt: 1,
        retry_in_ms: 250,
    });
    st.apply(Action::Clear);
    assert!(Rc::ptr_eq(st.feed(), shown.feed()));
    assert!(Rc::ptr_eq(st.cluster(), shown.cluster()));
    assert!(Rc::ptr_eq(st.session(), shown.session()));
    // A command cannot be sent: said plainly.
    st.apply(Action::NotSent {
        cmd: shared::Command::Reset { tag: None },
    });
    assert!(st
        .toasts()
        .list
        .iter()
        .any(|t| t.title == "Replaying a file" && t.text.contains("`reset` was not sent")));
    st.apply(Action::LeaveReplay);
    assert!(!st.replaying());
    assert!(Rc::ptr_eq(st.session(), live.session()));
    assert!(Rc::ptr_eq(st.cluster(), live.cluster()));
    assert!(Rc::ptr_eq(st.feed(), live.feed()));
    assert_eq!(st.session().conn, Conn::Connected);
}

#[test]
fn play_moves_time_at_the_chosen_speed_and_stops_at_the_end() {
    let s = script(20);
    let mut st = open(&file(&s));
    let r = run(&st);
    let (start, end) = (r.start_us(), r.end_us());
    // Play from the end starts over.
    st.apply(Action::ReplayPlay(true));
    assert!(run(&st).playing);
    assert_eq!(run(&st).at_us, start);
    st.apply(Action::ReplayAdvance(1.0)); // 1 ms at 1×
    assert_eq!(run(&st).at_us, start + 1_000);
    st.apply(Action::ReplaySpeed(4.0));
    st.apply(Action::ReplayAdvance(1.0));
    assert_eq!(run(&st).at_us, start + 5_000);
    // Space (pause view, live) plays and pauses a replay.
    st.apply(Action::TogglePause);
    assert!(!run(&st).playing);
    st.apply(Action::ReplayAdvance(1.0));
    assert_eq!(run(&st).at_us, start + 5_000, "paused: time stands");
    st.apply(Action::TogglePause);
    st.apply(Action::ReplayAdvance(10_000.0));
    assert_eq!(run(&st).at_us, end);
    assert!(!run(&st).playing, "stops at the end");
}

#[test]
fn a_file_that_starts_mid_run_opens_and_says_what_it_lacks() {
    let s = script(10);
    // The first 25 events were dropped by the server's ring.
    let events = s.events[25..].to_vec();
    let text = write_run(&header(25), &events);
    let st = open(&text);
    let r = run(&st);
    assert_eq!(r.data.header.dropped, 25);
    assert_eq!(r.len(), s.events.len() - 25);
    assert_eq!(st.feed().history.len(), r.len());
}

#[test]
fn a_broken_protocols_run_says_which_one_it_ran() {
    let s = script(3);
    assert_eq!(open(&file(&s)).session().variant, None);
    let broken = RunHeader {
        variant: Some("backup-reexecutes".into()),
        ..header(0)
    };
    let st = open(&write_run(&broken, &s.events));
    assert_eq!(st.session().variant.as_deref(), Some("backup-reexecutes"));
}

#[test]
fn stepping_passes_events_that_share_one_time() {
    // Ten events to each millisecond: ties everywhere (a reset's `crashed` events share one).
    let mut s = script(30);
    for e in &mut s.events {
        e.t_us = e.t_us / 1_000 * 1_000;
    }
    let mut times: Vec<u64> = s.events.iter().map(|e| e.t_us).collect();
    times.sort_unstable();
    times.dedup();
    assert!(times.len() * 5 < s.events.len(), "the run has ties");
    let mut st = open(&file(&s));
    let on_diagram = |t: u64| s.events.iter().filter(|e| e.t_us <= t).count();
    // ◂ from the end: one distinct time at a time, down to the start.
    for &want in times.iter().rev().skip(1) {
        st.apply(Action::ReplayStep(false));
        let r = run(&st);
        assert_eq!(r.at_us, want, "one step back");
        assert_eq!(r.placed(), on_diagram(want));
    }
    st.apply(Action::ReplayStep(false));
    assert_eq!(run(&st).at_us, times[0], "the start stays the start");
    // ▸ back up to the end, the same times.
    for &want in times.iter().skip(1) {
        st.apply(Action::ReplayStep(true));
        assert_eq!(run(&st).at_us, want, "one step on");
        assert_eq!(run(&st).placed(), on_diagram(want));
    }
    assert_eq!(run(&st).placed(), s.events.len());
    // From a time between two events, ◂ drops the newest shown.
    let between = times[3] + 500;
    st.apply(Action::ReplaySeek(between));
    assert_eq!(run(&st).placed(), on_diagram(times[3]));
    st.apply(Action::ReplayStep(false));
    assert_eq!(run(&st).at_us, times[2]);
}

#[test]
fn the_scrubber_reads_the_diagrams_clock() {
    // A file that starts mid-run, 3 min 27 s into it: its first event is not "0.000 s".
    let mut s = script(10);
    for e in &mut s.events {
        e.t_us += 207_388_000;
    }
    let mut st = open(&write_run(&header(25), &s.events[25..]));
    let first = s.events[25..].iter().map(|e| e.t_us).min().expect("events");
    st.apply(Action::ReplaySeek(0));
    let r = run(&st);
    assert_eq!(r.at_us, first);
    let text = r.position_text();
    // The diagram's rows and the timeline say `format::clock(t_us)`.
    assert!(
        text.starts_with(&format!("{} of ", crate::format::clock(first))),
        "{text}"
    );
    assert!(text.starts_with("3:27.3"), "{text}");
    assert!(text.contains(&crate::format::clock(r.end_us())), "{text}");
    // One event: singular.
    let one = open(&write_run(&header(0), &s.events[..1]));
    assert_eq!(
        run(&one).position_text(),
        format!(
            "{0} of {0} · 1 of 1 event",
            crate::format::clock(s.events[0].t_us)
        )
    );
}
