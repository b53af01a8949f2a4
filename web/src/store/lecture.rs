//! The lecture's hooks in the reducer: the preset that plays ([`LectureRun`], in the view slice)
//! and the double-grant watch ([`GrantWatch`], in the cluster slice). Kept apart from the rest
//! of the reducer; `mod.rs` calls in here at five points: an event, a command sent, a command
//! refused, a batch or tick, and the lecture's own actions.

use std::rc::Rc;

use shared::{Command, ErrorCode, Event};

use super::{Action, Conn, Level, State};
use crate::format;
use crate::grants::GrantWatch;
use crate::lecture::{presets, Effect, LectureRun};

impl State {
    /// The lecture's own actions (the reducer's other arms come first).
    pub(super) fn lecture_action(&mut self, action: Action) {
        match action {
            Action::ShowLecture(open) if self.view.lecture_open != open => {
                self.view_mut().lecture_open = open;
            }
            Action::StartLecture { preset, local_ms } => self.start_lecture(preset, local_ms),
            Action::StopLecture => self.stop_lecture(""),
            Action::CloseLectureRun if self.view.lecture.as_ref().is_some_and(|r| !r.running()) => {
                self.view_mut().lecture = None;
            }
            Action::LectureTick { local_ms } => self.lecture_advance(local_ms),
            _ => {}
        }
    }

    /// Starts preset `preset` on the cluster (a demo that runs stops: both send commands).
    fn start_lecture(&mut self, preset: usize, local_ms: f64) {
        if preset >= presets().len() || self.view.lecture.as_ref().is_some_and(LectureRun::running)
        {
            return;
        }
        if self.session.conn != Conn::Connected {
            self.toast(
                Level::Warn,
                "Not connected",
                "the lecture runs on the real cluster; it can start once the page is connected",
            );
            return;
        }
        let last_seq = self.feed.last_seq.unwrap_or(0);
        let view = self.view_mut();
        view.lecture_runs += 1;
        view.lecture = Some(LectureRun::new(
            view.lecture_runs,
            preset,
            local_ms,
            last_seq,
        ));
        view.lecture_open = true;
        view.demo = None;
        self.go_live();
    }

    /// Stops the preset that plays; `why` (if any) goes to a toast.
    pub(super) fn stop_lecture(&mut self, why: &str) {
        if self.view.lecture.as_ref().is_some_and(LectureRun::running) {
            if let Some(run) = self.view_mut().lecture.as_mut() {
                run.stop();
            }
            if !why.is_empty() {
                self.toast(Level::Warn, "Lecture stopped", why);
            }
        }
    }

    /// A new event of the log: the double-grant watch and the preset that plays fold it in.
    pub(super) fn lecture_observe(&mut self, e: &Event) {
        if GrantWatch::cares(e) {
            Rc::make_mut(&mut self.cluster_mut().grants).observe(e);
        }
        let playing = self.view.lecture.as_ref().is_some_and(LectureRun::running);
        if playing && LectureRun::cares(e) {
            if let Some(run) = self.view_mut().lecture.as_mut() {
                run.observe(e);
            }
        }
    }

    /// A command left the page: the preset moves past it if it was its step.
    pub(super) fn lecture_sent(&mut self, cmd: &Command) {
        let Some(tag) = cmd.tag() else {
            return;
        };
        if self.view.lecture.as_ref().is_some_and(|r| r.owns(tag)) {
            // `Sent` carries no time: the step's time starts from the newest the run knows
            // (the action that made the step due, a moment ago).
            let now = self.lecture_now();
            if let Some(run) = self.view_mut().lecture.as_mut() {
                run.on_sent(tag, now);
            }
            self.lecture_advance(now);
        }
    }

    /// The server refused a command: the preset stops if it was one of its own.
    pub(super) fn lecture_refused(&mut self, tag: &str, code: ErrorCode, message: &str) {
        if self
            .view
            .lecture
            .as_ref()
            .is_some_and(|r| r.running() && r.owns(tag))
        {
            if let Some(run) = self.view_mut().lecture.as_mut() {
                run.on_error(tag, format::error_code(code), message);
            }
        }
    }

    /// Moves the preset past every step that is over, doing what the steps ask of the page.
    pub(super) fn lecture_advance(&mut self, local_ms: f64) {
        let Some(run) = self.view.lecture.as_ref().filter(|r| r.running()) else {
            return;
        };
        let mut next = run.clone();
        let effects = next.advance(local_ms, self.feed.last_seq.unwrap_or(0));
        // Time alone passing changes nothing to show: the view is replaced only when the run
        // moved (then with the time it moved at, which its next send is timed by).
        if next.moved_since(run) {
            self.view_mut().lecture = Some(next);
        }
        for effect in effects {
            match effect {
                // Everything before it goes, the old cluster's last events still waiting for
                // their place in time too: otherwise the reset's kill of the old s1 lands after
                // the clear and reads as a crash of this story's s1.
                Effect::ClearView => {
                    self.release(local_ms, true);
                    self.apply(Action::Clear);
                }
            }
        }
    }

    /// Whether `tag` is a command of the lecture's run (the one playing or the last).
    pub(super) fn lecture_owns(&self, tag: &str) -> bool {
        self.view.lecture.as_ref().is_some_and(|r| r.owns(tag))
    }

    /// The page time the run last heard of.
    fn lecture_now(&self) -> f64 {
        self.view.lecture.as_ref().map_or(0.0, |r| r.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use shared::{EventKind as K, Op, RequestId, Role, ServerMsg};

    use super::*;
    use crate::lecture::Status;
    use crate::testkit::Script;

    fn connected() -> State {
        let mut st = State::default();
        st.apply(Action::Connected);
        st
    }

    fn receive(st: &mut State, events: Vec<Event>, local_ms: f64) {
        st.apply(Action::Receive {
            msgs: vec![ServerMsg::Events { events }],
            local_ms,
        });
    }

    fn partition_index() -> usize {
        presets().iter().position(|p| p.id == "partition").unwrap()
    }

    /// Sends what the run has due, as the driver would, until it waits for something.
    fn send_due(st: &mut State) -> Vec<Command> {
        let mut sent = Vec::new();
        while let Some(cmd) = st.view().lecture.as_ref().and_then(LectureRun::to_send) {
            st.apply(Action::Sent { cmd: cmd.clone() });
            sent.push(cmd);
        }
        sent
    }

    #[test]
    fn a_preset_needs_the_connection_and_stops_the_demo() {
        let mut st = State::default();
        st.apply(Action::StartLecture {
            preset: 0,
            local_ms: 0.0,
        });
        assert!(st.view().lecture.is_none());
        assert_eq!(st.toasts().list.len(), 1);

        let mut st = connected();
        st.apply(Action::StartDemo {
            local_ms: 0.0,
            failover: false,
        });
        st.apply(Action::StartLecture {
            preset: 0,
            local_ms: 0.0,
        });
        assert!(st.view().demo.is_none());
        assert!(st.view().lecture_open);
        assert!(st.view().lecture.as_ref().is_some_and(LectureRun::running));
    }

    #[test]
    fn a_preset_plays_through_sends_clears_and_ends_with_the_double_grant_said() {
        let mut st = connected();
        st.apply(Action::StartLecture {
            preset: partition_index(),
            local_ms: 0.0,
        });
        let sent = send_due(&mut st);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].name(), "reset");

        // The fresh servers start: the diagram is cleared, slow motion and the partition go out.
        let mut s = Script::default();
        s.ev(
            "s1",
            K::Crashed {
                pid: 5,
                cause: shared::CrashCause::Reset,
                req: None,
            },
        );
        s.ev("supervisor", K::ClusterReset { generation: 1 });
        for (id, role) in [("s1", Role::Primary), ("s2", Role::Backup)] {
            s.ev(
                id,
                K::ProcessStarted {
                    pid: 7,
                    role,
                    port: 1,
                },
            );
        }
        receive(&mut st, s.events.clone(), 100.0);
        assert!(
            st.feed().history.is_empty() && st.feed().pending_len() == 0,
            "the clear takes the old cluster's kill with it, even before its place in time"
        );
        let names: Vec<&str> = send_due(&mut st).iter().map(Command::name).collect();
        assert_eq!(names, ["set_slow_motion", "partition", "lock", "lock"]);

        // Both clients are granted z: the watch says so, and the run ends after its pause.
        let run = st.view().lecture.clone().unwrap();
        let grant = |s: &mut Script, client: u32, server: &str| {
            s.ev(
                &format!("c{client}"),
                K::OpCompleted {
                    client,
                    op: Op::Lock,
                    lock: "z".into(),
                    tag: Some(format!("lec{}-c{client}-z", run.run)),
                    ok: true,
                    req: RequestId::new(client, 1),
                    server: server.into(),
                    latency_us: 150,
                    attempts: 1,
                },
            );
        };
        grant(&mut s, 1, "s1");
        grant(&mut s, 2, "s2");
        receive(&mut st, s.events[4..].to_vec(), 200.0);
        assert_eq!(
            st.cluster().grants.latest().map(|d| d.sentence()),
            Some("Lock(z) was granted to c1 by s1 and to c2 by s2 with no Unlock between".into())
        );
        assert!(st.view().lecture.as_ref().unwrap().running());
        st.apply(Action::LectureTick { local_ms: 5000.0 });
        let run = st.view().lecture.clone().unwrap();
        assert_eq!(run.status, Status::Done);
        st.apply(Action::CloseLectureRun);
        assert!(st.view().lecture.is_none());
    }

    #[test]
    fn a_refused_command_stops_the_run_and_the_connection_lost_stops_it_too() {
        let mut st = connected();
        st.apply(Action::StartLecture {
            preset: 0,
            local_ms: 0.0,
        });
        let sent = send_due(&mut st);
        st.apply(Action::Receive {
            msgs: vec![ServerMsg::Error {
                code: ErrorCode::Unavailable,
                message: "not built yet".into(),
                tag: sent[0].tag().map(str::to_owned),
            }],
            local_ms: 10.0,
        });
        let run = st.view().lecture.clone().unwrap();
        assert!(matches!(&run.status, Status::Failed(w) if w.contains("not built yet")));
        // Over: the same preset can start again.
        st.apply(Action::StartLecture {
            preset: 0,
            local_ms: 20.0,
        });
        assert!(st.view().lecture.as_ref().unwrap().running());
        st.apply(Action::Disconnected {
            attempt: 1,
            retry_in_ms: 250,
        });
        assert_eq!(st.view().lecture.as_ref().unwrap().status, Status::Stopped);
    }

    #[test]
    fn events_that_tell_nothing_leave_the_view_alone() {
        let mut st = connected();
        st.apply(Action::StartLecture {
            preset: 0,
            local_ms: 0.0,
        });
        send_due(&mut st);
        let before = st.view().clone();
        let mut s = Script::default();
        s.ev(
            "s1",
            K::CrashArmed {
                point: None,
                dying_ms: None,
            },
        );
        receive(&mut st, s.events, 10.0);
        assert!(
            Rc::ptr_eq(&before, st.view()),
            "a crash_armed changes no run"
        );
    }
}
