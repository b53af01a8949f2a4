//! The harness's own tools (`page_bench`, the tours) as a person runs them: a tool stopped from
//! outside must take its server and browser down with it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// `pid`, parent pid, process group and name of every live process (zombies, already dead and
/// waiting to be reaped, are left out), from `/proc/<pid>/stat`: the name is in parentheses and
/// may hold spaces, so the fields are read after the last `)`.
fn processes() -> Vec<(i32, i32, i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let name = stat[open + 1..close].to_owned();
            let mut rest = stat[close + 1..].split_whitespace();
            if rest.next()? == "Z" {
                return None;
            }
            let ppid = rest.next()?.parse().ok()?;
            let pgrp = rest.next()?.parse().ok()?;
            Some((pid, ppid, pgrp, name))
        })
        .collect()
}

/// The live processes of process group `group`.
fn group_members(group: i32) -> Vec<(i32, String)> {
    processes()
        .into_iter()
        .filter(|&(_, _, pgrp, _)| pgrp == group)
        .map(|(pid, _, _, name)| (pid, name))
        .collect()
}

/// Kills what it was told of if the test ends early (a panic before page_bench was stopped
/// would otherwise leave its browser and server running: the very leak under test).
struct Cleanup {
    group: Option<i32>,
    pids: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        if let Some(group) = self.group {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Found by review: `timeout 600 page_bench ...` stopped the bench with SIGTERM, and its
/// chromedriver and about ten Chromium processes lived on, reparented to init, for as long as
/// nobody killed them by hand (and so did its `pbscope serve`, with its cluster).
#[tokio::test]
async fn a_page_bench_told_to_stop_takes_its_browser_down_with_it() {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_page_bench"))
        // A fill it never reaches: it waits in its first phase until told to stop.
        .args([
            "--ops-per-sec",
            "20",
            "--fill",
            "100000000",
            "--seconds",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("page_bench starts");
    let pid = bench.id().expect("running") as i32;
    let mut cleanup = Cleanup {
        group: None,
        pids: Vec::new(),
    };
    // Its chromedriver leads a process group that the browser joins; wait for the browser.
    let deadline = Instant::now() + Duration::from_secs(60);
    let group = loop {
        let driver = processes()
            .into_iter()
            .find(|&(_, ppid, _, ref name)| ppid == pid && name == "chromedriver");
        if let Some((driver, _, _, _)) = driver {
            cleanup.group = Some(driver);
            if group_members(driver).len() >= 3 {
                break driver;
            }
        }
        assert!(
            Instant::now() < deadline,
            "page_bench started no chromedriver with a browser within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let it reach its fill loop (the page connected, the load running).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = processes()
        .into_iter()
        .find(|&(_, ppid, _, ref name)| ppid == pid && name == "pbscope")
        .map(|(server, _, _, _)| server)
        .expect("page_bench's pbscope serve runs");
    // The server's nodes and clients, by pid: once it is gone they are init's children.
    let mut cluster: Vec<i32> = processes()
        .into_iter()
        .filter(|&(_, ppid, _, _)| ppid == server)
        .map(|(p, _, _, _)| p)
        .collect();
    cluster.push(server);
    cleanup.pids = cluster.clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal page_bench");
    let status = tokio::time::timeout(Duration::from_secs(30), bench.wait())
        .await
        .expect("page_bench exits when told to")
        .expect("its status");
    assert_eq!(status.code(), Some(143), "128 + SIGTERM: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = group_members(group);
        left.extend(
            processes()
                .into_iter()
                .filter(|&(p, _, _, _)| cluster.contains(&p))
                .map(|(p, _, _, name)| (p, name)),
        );
        if left.is_empty() {
            // Nothing left to kill (and a pid may be reused from here on).
            cleanup.group = None;
            cleanup.pids.clear();
            break;
        }
        if Instant::now() > deadline {
            cleanup.pids.extend(left.iter().map(|&(pid, _)| pid));
            panic!("left running after page_bench stopped: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
