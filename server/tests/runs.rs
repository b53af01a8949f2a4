//! Runs as files (`GET /run.jsonl`, `GET /run.shiviz`) from a real `pbscope serve` driven over
//! the WebSocket through a failover, a duplicated message, a lost one, a crash and restart and
//! a reset; the ShiViz export is checked by `shiviz_rules`, ShiViz's own rejection rules
//! written again from its source, which is also shown failing on hand-made bad logs.

mod support;

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use shared::{Event, EventKind, Op};
use support::*;

/// ShiViz's checks of a log, written from its source (DistributedClocks/shiviz at commit
/// ea00d3d), independently of `model::shiviz`. Each rule names the lines it comes from.
mod shiviz_rules {
    use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

    /// One parsed event: `ExecutionParser` (js/model/parser.js:137-156).
    #[derive(Debug, Clone)]
    pub struct LogEvent {
        /// Line within its execution's text, from 1 (parser.js:138-139).
        pub line: usize,
        pub host: String,
        /// Without zero entries (js/model/vectorTimestamp.js:34-38).
        pub clock: BTreeMap<String, u64>,
        /// `clock[host]` before zeros are dropped (vectorTimestamp.js:27).
        pub own: u64,
        pub event: String,
        /// The other named groups (parser.js:145-151).
        pub fields: HashMap<String, String>,
    }

    #[derive(Debug)]
    pub struct Execution {
        pub label: String,
        pub events: Vec<LogEvent>,
    }

    /// ShiViz's `NamedRegExp` (js/util/regexp.js:14-50): the names of `(?<name>` groups in
    /// order, refusing one used twice (regexp.js:22-30), and the expression as Rust's regex
    /// reads JavaScript's: `.` stops at every JS line terminator, a `{` or `}` that is not a
    /// counted repetition is a literal (JS's Annex B, which ShiViz's own default parser
    /// `{.*}` relies on), and `^`/`$` are per line (ShiViz compiles with the `m` flag,
    /// js/shiviz.js:240,246).
    pub fn named_regex(js: &str) -> Result<(regex::Regex, Vec<String>), String> {
        let mut names = Vec::new();
        let mut out = String::from("(?m)");
        let chars: Vec<char> = js.chars().collect();
        let mut i = 0;
        let mut in_class = false;
        let counted = regex::Regex::new(r"^\{\d+(,\d*)?\}").unwrap();
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\\' if i + 1 < chars.len() => {
                    out.push(c);
                    out.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                '[' if !in_class => in_class = true,
                ']' if in_class => in_class = false,
                '.' if !in_class => {
                    out.push_str("[^\\n\\r\\u{2028}\\u{2029}]");
                    i += 1;
                    continue;
                }
                '{' if !in_class => {
                    let rest: String = chars[i..].iter().collect();
                    if let Some(m) = counted.find(&rest) {
                        out.push_str(m.as_str());
                        i += m.as_str().chars().count();
                    } else {
                        out.push_str("\\{");
                        i += 1;
                    }
                    continue;
                }
                '}' if !in_class => {
                    out.push_str("\\}");
                    i += 1;
                    continue;
                }
                '(' if !in_class
                    && chars.get(i + 1) == Some(&'?')
                    && chars.get(i + 2) == Some(&'<')
                    && !matches!(chars.get(i + 3), Some('=') | Some('!')) =>
                {
                    let name: String = chars[i + 3..]
                        .iter()
                        .take_while(|c| c.is_alphanumeric() || **c == '_')
                        .collect();
                    if names.contains(&name) {
                        return Err(format!(
                            "The regular expression you entered was invalid: there are multiple capture groups named {name}"
                        ));
                    }
                    names.push(name);
                }
                _ => {}
            }
            out.push(c);
            i += 1;
        }
        regex::Regex::new(&out)
            .map(|r| (r, names))
            .map_err(|e| format!("The following regular expression entered was invalid: {e}"))
    }

    /// `JSON.parse`, then the retry with `\"` unescaped (parser.js:161-186), as a map of
    /// numbers. (ShiViz compares whatever JSON values it finds as JavaScript would; this
    /// reader asks for non-negative integers, which is what a vector clock holds.)
    fn parse_clock(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let value: serde_json::Value = serde_json::from_str(text)
            .or_else(|_| serde_json::from_str(&text.replace("\\\"", "\"")))
            .map_err(|e| {
                format!("An error occured while trying to parse the vector timestamp {text:?}: {e}")
            })?;
        match value {
            serde_json::Value::Object(m) => Ok(m),
            other => Err(format!("the vector timestamp {other} is not a JSON object")),
        }
    }

    /// Reads an uploaded file as ShiViz does and applies every check it makes, in its order.
    /// `Ok` holds the executions ShiViz would draw.
    pub fn validate(file: &str) -> Result<Vec<Execution>, String> {
        // js/shiviz.js:129-165: line 1 the parser (wrapped in ^...$), line 2 the delimiter
        // (trimmed, wrapped, or none when blank), the log after the second newline.
        let mut first_two = file.splitn(3, '\n');
        let line0 = first_two.next().unwrap_or("");
        let Some(line1) = first_two.next() else {
            return Err("the file has no second line (shiviz.js:151 reads lines[1])".into());
        };
        let parser = if line0.trim().is_empty() {
            r"(?<event>.*)\n(?<host>\S*) (?<clock>{.*})".to_owned()
        } else {
            format!("^{line0}$")
        };
        let delimiter = if line1.trim().is_empty() {
            None
        } else {
            Some(format!("^{}$", line1.trim()))
        };
        let log = first_two.next().unwrap_or(file);
        // shiviz.js:239-247.
        if parser.trim().is_empty() {
            return Err("The parser regexp field must not be empty.".into());
        }
        let (regex, names) = named_regex(parser.trim())?;
        let delimiter = delimiter.map(|d| named_regex(&d)).transpose()?;
        // parser.js:36, 50-55.
        let raw = log.trim();
        for needed in ["clock", "host", "event"] {
            if !names.iter().any(|n| n == needed) {
                return Err(
                    "The parser RegExp you entered does not have the necessary named capture groups."
                        .into(),
                );
            }
        }
        let mut executions = Vec::new();
        match delimiter {
            // parser.js:79-82.
            None => executions.push(Execution {
                label: String::new(),
                events: parse_execution(raw, "", &regex, &names)?,
            }),
            // parser.js:57-78.
            Some((delim, delim_names)) => {
                let mut labels = vec![Some(String::new())];
                if delim_names.iter().any(|n| n == "trace") {
                    for c in delim.captures_iter(raw) {
                        labels.push(c.name("trace").map(|m| m.as_str().to_owned()));
                    }
                }
                let mut seen = HashSet::new();
                for (i, text) in delim.split(raw).enumerate() {
                    if text.trim().is_empty() {
                        continue;
                    }
                    // A missing label is JavaScript's `undefined`, a key like any other.
                    let label = labels
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "undefined".into());
                    if !seen.insert(label.clone()) {
                        return Err(format!(
                            "Execution names must be unique. There are multiple executions called {label:?}"
                        ));
                    }
                    let events = parse_execution(text, &label, &regex, &names)?;
                    executions.push(Execution { label, events });
                }
            }
        }
        for exec in &executions {
            model_graph(&exec.events)?;
        }
        Ok(executions)
    }

    /// `ExecutionParser` (parser.js:122-199) and `VectorTimestamp` (vectorTimestamp.js:19-39).
    fn parse_execution(
        text: &str,
        label: &str,
        regex: &regex::Regex,
        names: &[String],
    ) -> Result<Vec<LogEvent>, String> {
        let mut events = Vec::new();
        for caps in regex.captures_iter(text) {
            let whole = caps.get(0).unwrap();
            let line = text[..whole.start()].matches('\n').count() + 1;
            let get = |n: &str| caps.name(n).map_or("", |m| m.as_str()).to_owned();
            let host = get("host");
            let clock_text = get("clock");
            let map = parse_clock(&clock_text).map_err(|e| format!("line {line}: {e}"))?;
            // vectorTimestamp.js:29-32.
            if !map.contains_key(&host) {
                return Err(format!(
                    "line {line}: Local host {host:?} is missing from timestamp {clock_text}"
                ));
            }
            let mut clock = BTreeMap::new();
            for (h, v) in &map {
                let t = v
                    .as_u64()
                    .ok_or_else(|| format!("line {line}: clock entry {h:?} is {v}, not a count"))?;
                if t != 0 {
                    clock.insert(h.clone(), t);
                }
            }
            let own = map[&host].as_u64().unwrap_or(0);
            let fields = names
                .iter()
                .filter(|n| *n != "clock" && *n != "event")
                .map(|n| (n.clone(), get(n)))
                .collect();
            events.push(LogEvent {
                line,
                host,
                clock,
                own,
                event: get("event"),
                fields,
            });
        }
        // parser.js:158-159.
        if events.is_empty() {
            return Err(format!(
                "The parser RegExp you entered does not capture any events for the execution {label:?}"
            ));
        }
        Ok(events)
    }

    /// `ModelGraph` (js/model/modelGraph.js:16-272), with its `stepThroughAndVerify`
    /// (modelGraph.js:176-228), which ShiViz defines but, at ea00d3d, never calls: the
    /// "max-merge of what the host received" rule is checked here all the same.
    fn model_graph(events: &[LogEvent]) -> Result<(), String> {
        // initHosts (36-71): hosts in order of first appearance.
        let mut hosts: Vec<&str> = Vec::new();
        let mut on_host: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if !on_host.contains_key(e.host.as_str()) {
                hosts.push(&e.host);
            }
            on_host.entry(&e.host).or_default().push(i);
        }
        // initPrevNext (74-96): sorted by own time, which must be 1, 2, 3, ...
        for h in &hosts {
            let list = on_host.get_mut(h).unwrap();
            list.sort_by_key(|i| events[*i].own);
            for (k, i) in list.iter().enumerate() {
                let e = &events[*i];
                if e.own != k as u64 + 1 {
                    return Err(if k == 0 {
                        format!(
                            "Logical clock values for each host must start at 1. The clock value for the first event for host {h:?} is {} (line {})",
                            e.own, e.line
                        )
                    } else {
                        format!(
                            "Clock values for a host must increase monotonically by 1. The clock for host {h:?} goes from {} to {} (line {})",
                            events[list[k - 1]].own, e.own, e.line
                        )
                    });
                }
            }
        }
        let node = |h: &str, t: u64| on_host[h][(t - 1) as usize];
        // initParentChild (99-174), with AbstractNode's one parent and one child per host
        // (js/graph/abstractNode.js, addParent).
        let mut parent_on: HashMap<usize, HashMap<String, usize>> = HashMap::new();
        let mut child_on: HashMap<usize, HashMap<String, usize>> = HashMap::new();
        for h in &hosts {
            let mut latest: HashMap<&str, u64> = HashMap::new();
            for &cur in &on_host[h] {
                let e = &events[cur];
                latest.insert(h, e.own);
                let mut candidates = Vec::new();
                for (other, &time) in &e.clock {
                    if latest.get(other.as_str()).is_none_or(|t| *t < time) {
                        latest.insert(other, time);
                        // 126-128.
                        if !on_host.contains_key(other.as_str()) {
                            return Err(format!(
                                "line {}: The following event's vector clock contains an entry for an unrecognized host {other:?}",
                                e.line
                            ));
                        }
                        // 130-132.
                        if time < 1 || time as usize > on_host[other.as_str()].len() {
                            return Err(format!(
                                "line {}: The following event's vector clock contains an invalid clock value {time} for host {other:?}",
                                e.line
                            ));
                        }
                        candidates.push(node(other, time));
                    }
                }
                // 139-154: a candidate another candidate already knows is not a parent.
                let mut connections: BTreeMap<(String, u64), usize> = candidates
                    .iter()
                    .map(|&c| ((events[c].host.clone(), events[c].own), c))
                    .collect();
                for &c in &candidates {
                    for (other, &t) in &events[c].clock {
                        if *other != events[c].host {
                            connections.remove(&(other.clone(), t));
                        }
                    }
                }
                // 157-169 and addParent.
                for (_, p) in connections {
                    let ph = events[p].host.clone();
                    if let Some(old) = parent_on.get(&cur).and_then(|m| m.get(&ph)).copied() {
                        if events[p].own <= events[old].own {
                            continue;
                        }
                        child_on.get_mut(&old).map(|m| m.remove(h.to_owned()));
                    }
                    if let Some(old_child) = child_on.get(&p).and_then(|m| m.get(*h)).copied() {
                        parent_on.get_mut(&old_child).map(|m| m.remove(&ph));
                    }
                    parent_on.entry(cur).or_default().insert(ph.clone(), p);
                    child_on.entry(p).or_default().insert(h.to_string(), cur);
                }
            }
        }
        // getNodesTopologicallySorted (js/graph/abstractGraph.js:250-295).
        let next_on_host: HashMap<usize, usize> = hosts
            .iter()
            .flat_map(|h| on_host[h].windows(2).map(|w| (w[0], w[1])))
            .collect();
        let successors = |n: usize| -> Vec<usize> {
            let mut s: Vec<usize> = child_on
                .get(&n)
                .map(|m| m.values().copied().collect())
                .unwrap_or_default();
            s.extend(next_on_host.get(&n));
            s
        };
        let mut in_degree: HashMap<usize, usize> = (0..events.len()).map(|n| (n, 0)).collect();
        for n in 0..events.len() {
            for s in successors(n) {
                *in_degree.get_mut(&s).unwrap() += 1;
            }
        }
        let mut ready: VecDeque<usize> = (0..events.len()).filter(|n| in_degree[n] == 0).collect();
        let mut sorted = Vec::new();
        while let Some(n) = ready.pop_back() {
            sorted.push(n);
            for s in successors(n) {
                let d = in_degree.get_mut(&s).unwrap();
                *d -= 1;
                if *d == 0 {
                    ready.push_back(s);
                }
            }
        }
        if sorted.len() != events.len() {
            return Err("An error occured. The log is intransitive. That is, there are three events x, y, and z such that x occurs before y, y occurs before z, and z before x.".into());
        }
        // stepThroughAndVerify (176-228): each clock must be the max-merge of its host's
        // previous event and its parents, its own entry ticked.
        let mut computed: Vec<BTreeMap<String, u64>> = events
            .iter()
            .map(|e| BTreeMap::from([(e.host.clone(), e.own)]))
            .collect();
        for n in sorted {
            for s in successors(n) {
                let from = computed[n].clone();
                for (h, t) in from {
                    let v = computed[s].entry(h).or_insert(0);
                    *v = (*v).max(t);
                }
            }
            if computed[n] != events[n].clock {
                return Err(format!(
                    "line {}: The following event has an impermissible vector clock {:?}. We think it should be: {:?}",
                    events[n].line, events[n].clock, computed[n]
                ));
            }
        }
        Ok(())
    }
}

/// A log made of (host, clock) pairs in our layout, with ShiViz's default-style parser.
fn hand_made(events: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "(?<event>.*)\\n(?<host>\\S*) (?<clock>{.*})\n=== (?<trace>.*) ===\n=== one ===\n",
    );
    for (i, (host, clock)) in events.iter().enumerate() {
        s.push_str(&format!("event {i}\n{host} {clock}\n"));
    }
    s
}

#[test]
fn the_rules_accept_a_good_log_and_refuse_each_kind_of_bad_one() {
    let good = hand_made(&[
        ("a", r#"{"a":1}"#),
        ("b", r#"{"b":1}"#),
        ("b", r#"{"a":1,"b":2}"#),
        ("a", r#"{"a":2}"#),
        ("c", r#"{"a":1,"b":2,"c":1}"#),
    ]);
    let execs = shiviz_rules::validate(&good).expect("a good log");
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].label, "one");
    assert_eq!(execs[0].events.len(), 5);

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let bad: &[Case] = &[
        (
            "own host missing",
            &[("a", r#"{"a":1}"#), ("b", r#"{"a":1}"#)],
            "missing from timestamp",
        ),
        (
            "does not start at 1",
            &[("a", r#"{"a":2}"#)],
            "must start at 1",
        ),
        (
            "skips a value",
            &[("a", r#"{"a":1}"#), ("a", r#"{"a":3}"#)],
            "increase monotonically by 1",
        ),
        (
            "repeats a value",
            &[("a", r#"{"a":1}"#), ("a", r#"{"a":1}"#)],
            "increase monotonically by 1",
        ),
        (
            "names a host with no events",
            &[("a", r#"{"a":1,"ghost":1}"#)],
            "unrecognized host \"ghost\"",
        ),
        (
            "names an event that host does not have",
            &[("a", r#"{"a":1}"#), ("b", r#"{"a":2,"b":1}"#)],
            "invalid clock value 2",
        ),
        (
            "knows an event but not that event's past",
            &[
                ("c", r#"{"c":1}"#),
                ("a", r#"{"a":1,"c":1}"#),
                ("b", r#"{"a":1,"b":1}"#),
            ],
            "impermissible vector clock",
        ),
        (
            "two events that each happened before the other",
            &[("a", r#"{"a":1,"b":1}"#), ("b", r#"{"a":1,"b":1}"#)],
            "intransitive",
        ),
        (
            "a clock that is not JSON",
            &[("a", r#"{a:1}"#)],
            "parse the vector timestamp",
        ),
    ];
    for (what, events, expected) in bad {
        let err = shiviz_rules::validate(&hand_made(events))
            .expect_err(&format!("{what} must be refused"));
        assert!(err.contains(expected), "{what}: {err}");
    }

    // File-level rules: the named groups, unique execution names, no empty execution.
    let no_clock = good.replacen("(?<clock>{.*})", "({.*})", 1);
    assert!(shiviz_rules::validate(&no_clock)
        .unwrap_err()
        .contains("necessary named capture groups"));
    let twice = format!("{good}=== one ===\nevent\na {{\"a\":1}}\n");
    assert!(shiviz_rules::validate(&twice)
        .unwrap_err()
        .contains("must be unique"));
    let empty = format!("{good}=== two ===\nnothing that matches\n");
    assert!(shiviz_rules::validate(&empty)
        .unwrap_err()
        .contains("does not capture any events"));
    // Without a `trace` group a second execution is JavaScript's `undefined` twice.
    let unnamed = good.replace("=== (?<trace>.*) ===", "=== .* ===")
        + "=== x ===\nevent\na {\"a\":1}\n=== y ===\nevent\na {\"a\":1}\n";
    assert!(shiviz_rules::validate(&unnamed)
        .unwrap_err()
        .contains("must be unique"));
}

/// `/run.shiviz` of a run with everything the export must get right: several clients and
/// locks, a duplicated message, a lost one, a failover, a crash and a restart of a server, and
/// a reset. ShiViz's rules accept it; every event of the run file is in it, on its node's
/// line, with the clock the run's messages give it.
#[tokio::test]
async fn a_run_with_faults_exports_as_a_shiviz_log_that_shiviz_accepts() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    assert!(v.call_ok(1, Op::Lock, "a").await);
    assert!(!v.call_ok(2, Op::Lock, "a").await);
    // A duplicate: the forward s1 -> s2 is delivered twice.
    v.command(json!({"type":"set_link","from":"s1","to":"s2","duplicate":1.0}))
        .await
        .unwrap();
    assert!(v.call_ok(2, Op::Unlock, "a").await);
    v.command(json!({"type":"heal"})).await.unwrap();
    // A loss and a failover: c3's request to s1 is dropped, c3 turns to s2.
    v.command(json!({"type":"set_link","from":"c3","to":"s1","drop":1.0}))
        .await
        .unwrap();
    let failed_over = v.call(3, Op::Lock, "b").await;
    v.command(json!({"type":"heal"})).await.unwrap();
    // A crash and a restart of the same server id.
    v.command(json!({"type":"crash","node":"s1"}))
        .await
        .unwrap();
    v.call(1, Op::Lock, "c").await;
    v.command(json!({"type":"restart","node":"s1"}))
        .await
        .unwrap();
    v.call(2, Op::Lock, "d").await;
    // A reset, and a call in the new generation.
    v.command(json!({"type":"reset"})).await.unwrap();
    assert!(v.call_ok(1, Op::Lock, "a").await);

    let (status, headers, body) = http_get(&server.addr, "GET", "/run.shiviz", "").await;
    assert_eq!(status, 200);
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(header("content-type").starts_with("text/plain"));
    assert!(header("content-disposition").contains(&format!("pbscope-run-{}.shiviz", v.hello.run)));
    let shiviz = String::from_utf8(body).expect("utf-8");
    let execs =
        shiviz_rules::validate(&shiviz).unwrap_or_else(|e| panic!("ShiViz refuses it: {e}"));

    let (status, _, body) = http_get(&server.addr, "GET", "/run.jsonl", "").await;
    assert_eq!(status, 200);
    let run = model::runfile::parse_run(std::str::from_utf8(&body).unwrap()).expect("a run");
    let events = &run.events;
    let has = |p: &dyn Fn(&EventKind) -> bool| events.iter().any(|e| p(&e.kind));
    assert!(
        has(&|k| matches!(
            k,
            EventKind::MsgDelivered {
                duplicate: true,
                ..
            }
        )),
        "a duplicate"
    );
    assert!(has(&|k| matches!(k, EventKind::MsgLost { .. })), "a loss");
    assert!(
        has(&|k| matches!(k, EventKind::RpcFailed { .. })),
        "a failover"
    );
    assert!(
        has(&|k| matches!(k, EventKind::ClusterReset { .. })),
        "a reset"
    );
    let s1_starts = events
        .iter()
        .filter(|e| e.node == "s1" && matches!(e.kind, EventKind::ProcessStarted { .. }))
        .count();
    assert!(
        s1_starts >= 3,
        "s1 started, restarted, and started after the reset"
    );
    assert!(
        matches!(failed_over.kind, EventKind::OpCompleted { ref server, .. } if server == "s2"),
        "{failed_over:?}"
    );

    // One execution per generation, named by it.
    let labels: Vec<&str> = execs.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["generation 0", "generation 1"]);
    let merged = check_against_the_run(&execs, events).unwrap_or_else(|e| panic!("{e}"));
    assert!(merged > 20, "{merged} deliveries carried causality");
    tampered_exports_are_refused(&shiviz, events);
    shiviz_itself_reads(&shiviz);
}

/// With `SHIVIZ_JS` naming the `js/` folder of a DistributedClocks/shiviz checkout and `node`
/// on the PATH, ShiViz's own parser and graph builder read the export too
/// (`scripts/shiviz-check.js`), also with its uncalled `stepThroughAndVerify` switched on, and
/// refuse a copy with one clock skipped. Without them this part says so and is skipped.
fn shiviz_itself_reads(shiviz: &str) {
    let Some(js) = std::env::var_os("SHIVIZ_JS") else {
        eprintln!("SHIVIZ_JS is not set: ShiViz's own parser was not run on the export");
        return;
    };
    let dir = std::env::temp_dir().join(format!("pbscope-shiviz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("run.shiviz");
    std::fs::write(&good, shiviz).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/shiviz-check.js");
    let run = |file: &std::path::Path, strict: bool| {
        let mut cmd = std::process::Command::new("node");
        cmd.arg(script).arg(&js).arg(file);
        if strict {
            cmd.arg("strict");
        }
        let out = cmd.output().expect("node runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for strict in [false, true] {
        let (ok, said) = run(&good, strict);
        assert!(ok, "ShiViz (strict: {strict}) refuses the export: {said}");
        assert!(said.contains("\"generation 1\""), "{said}");
        eprintln!("ShiViz (strict: {strict}) reads the export:\n{said}");
    }
    // The last clock line's own entry one too high.
    let mut lines: Vec<String> = shiviz.lines().map(str::to_owned).collect();
    let last = lines.last_mut().unwrap();
    let (host, clock) = last.split_once(' ').unwrap();
    let mut clock: BTreeMap<String, u64> = serde_json::from_str(clock).unwrap();
    *clock.get_mut(host).unwrap() += 1;
    *last = format!("{host} {}", serde_json::to_string(&clock).unwrap());
    let bad = dir.join("bad.shiviz");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let (ok, said) = run(&bad, false);
    assert!(!ok && said.contains("REFUSED"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every event of the run file (the exports were taken one after the other: the ShiViz log
/// is a prefix) is in the ShiViz log, on its node's line, and its clock is its line's previous
/// clock ticked, merged with its send's clock when it is a delivery of a message sent in the
/// same execution. Returns how many deliveries carried a send's clock.
fn check_against_the_run(
    execs: &[shiviz_rules::Execution],
    events: &[Event],
) -> Result<usize, String> {
    let mut by_seq: HashMap<u64, (usize, &shiviz_rules::LogEvent)> = HashMap::new();
    for (x, exec) in execs.iter().enumerate() {
        for e in &exec.events {
            let seq: u64 = e.fields["seq"].parse().map_err(|_| "no seq".to_owned())?;
            if by_seq.insert(seq, (x, e)).is_some() {
                return Err(format!("#{seq} twice"));
            }
        }
    }
    let mut last_on: HashMap<(usize, String), BTreeMap<String, u64>> = HashMap::new();
    let mut sends: HashMap<u64, (usize, BTreeMap<String, u64>)> = HashMap::new();
    let mut merged = 0;
    let mut matched = 0;
    for e in events.iter().filter(|e| by_seq.contains_key(&e.seq)) {
        matched += 1;
        let (x, got) = by_seq[&e.seq];
        if got.host != e.node.as_str() || !got.event.starts_with(e.kind.name()) {
            return Err(format!(
                "#{} is {} {:?} in ShiViz",
                e.seq, got.host, got.event
            ));
        }
        let mut want = last_on
            .get(&(x, got.host.clone()))
            .cloned()
            .unwrap_or_default();
        if let EventKind::MsgDelivered { msg_id, .. } = &e.kind {
            if let Some((sx, sent)) = sends.get(&msg_id.0) {
                if *sx == x {
                    merged += 1;
                    for (h, t) in sent {
                        let v = want.entry(h.clone()).or_insert(0);
                        *v = (*v).max(*t);
                    }
                }
            }
        }
        *want.entry(got.host.clone()).or_insert(0) += 1;
        if got.clock != want {
            return Err(format!(
                "#{} {:?}: clock {:?}, the run's messages give {want:?}",
                e.seq, e.kind, got.clock
            ));
        }
        if let EventKind::MsgSent { msg_id, .. } = &e.kind {
            sends.insert(msg_id.0, (x, want.clone()));
        }
        last_on.insert((x, got.host.clone()), want);
    }
    if matched != by_seq.len() {
        return Err("the ShiViz log has events the run file does not".into());
    }
    Ok(merged)
}

/// The real export with one thing changed: ShiViz's rules or the run's messages refuse it.
fn tampered_exports_are_refused(shiviz: &str, events: &[Event]) {
    let lines: Vec<&str> = shiviz.lines().collect();
    // A clock line whose event is a delivery with more than its own entry.
    let (i, line) = lines
        .iter()
        .enumerate()
        .skip(3)
        .find(|(i, l)| lines[i - 1].contains(" msg_delivered ") && l.matches(':').count() >= 2)
        .expect("a delivery that merged a clock");
    let (host, clock) = line.split_once(' ').unwrap();
    let mut clock: BTreeMap<String, u64> = serde_json::from_str(clock).unwrap();
    let edit = |with: &BTreeMap<String, u64>| {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        l[i] = format!("{host} {}", serde_json::to_string(with).unwrap());
        l.join("\n")
    };
    // Its own entry one too high: the host's clock no longer rises by exactly 1.
    let mut bumped = clock.clone();
    *bumped.get_mut(host).unwrap() += 1;
    let err = shiviz_rules::validate(&edit(&bumped)).expect_err("a skipped tick");
    assert!(err.contains("increase monotonically by 1"), "{err}");
    // The merge forgotten: ShiViz cannot know (it sees no messages), the run file can.
    let other = clock.keys().find(|h| *h != host).unwrap().clone();
    clock.remove(&other);
    let forgot = edit(&clock);
    let verdict = shiviz_rules::validate(&forgot)
        .map_err(|e| e.to_string())
        .and_then(|execs| check_against_the_run(&execs, events));
    assert!(
        verdict.is_err(),
        "a delivery without its send's clock is refused"
    );
}

/// A ring smaller than the run: the files start mid-run (`dropped` says how much is gone), and
/// deliveries whose sends fell out of the ring merge nothing, so ShiViz still accepts it.
#[tokio::test]
async fn a_run_longer_than_the_ring_exports_its_tail() {
    let server = Server::start_with(&["--history", "150"]).await;
    let mut v = server.viewer().await;
    // Calls until the ring begins between a send and its delivery (within a few calls: a call
    // is about ten events, half of them deliveries).
    let mut found = None;
    for i in 0..60 {
        v.call(
            1 + i % 3,
            if i % 2 == 0 { Op::Lock } else { Op::Unlock },
            "a",
        )
        .await;
        let (_, _, body) = http_get(&server.addr, "GET", "/run.jsonl", "").await;
        let text = String::from_utf8(body).unwrap();
        let run = model::runfile::parse_run(&text).expect("a run");
        let sent: std::collections::HashSet<u64> = run
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::MsgSent { msg_id, .. } => Some(msg_id.0),
                _ => None,
            })
            .collect();
        let orphan = run.events.iter().any(|e| {
            matches!(&e.kind, EventKind::MsgDelivered { msg_id, .. } if !sent.contains(&msg_id.0))
        });
        if run.header.dropped > 0 && orphan {
            found = Some(run);
            break;
        }
    }
    let run = found.expect("the ring began between a send and its delivery at some call");
    assert_eq!(run.events.len(), 150);
    assert_eq!(run.header.first_seq, run.header.dropped + 1);
    assert_eq!(run.header.source, "pbscope serve");
    let (_, _, body) = http_get(&server.addr, "GET", "/run.shiviz", "").await;
    let execs = shiviz_rules::validate(std::str::from_utf8(&body).unwrap())
        .unwrap_or_else(|e| panic!("ShiViz refuses it: {e}"));
    assert_eq!(execs.len(), 1);
    assert!(execs[0].events.len() >= 150);
}

/// The run files answer as `/ws` does to strangers: a foreign Origin or a rebinding Host gets
/// 403 and no byte of the run; only GET and HEAD are answered; HEAD has the headers only.
#[tokio::test]
async fn run_files_keep_the_websocket_s_host_and_origin_rules() {
    let server = Server::start().await;
    let mut v = server.viewer().await;
    v.call(1, Op::Lock, "secret-lock").await;
    for path in ["/run.jsonl", "/run.shiviz"] {
        let (status, _, body) = http_get(
            &server.addr,
            "GET",
            path,
            "Origin: https://evil.example\r\n",
        )
        .await;
        assert_eq!(status, 403, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret-lock"));
        let (status, _, body) =
            http_get(&server.addr, "GET", path, "Host: evil.example:9000\r\n").await;
        assert_eq!(status, 403, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret-lock"));
        let (status, headers, _) =
            http_get(&server.addr, "POST", path, "Content-Length: 0\r\n").await;
        assert_eq!(status, 405, "{path}");
        assert!(headers
            .iter()
            .any(|(k, v)| k == "allow" && v == "GET, HEAD"));
        // A local page may fetch it.
        let (status, _, body) = http_get(
            &server.addr,
            "GET",
            path,
            "Origin: http://127.0.0.1:8080\r\n",
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("secret-lock"));
        let (status, headers, body) = http_get(&server.addr, "HEAD", path, "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.is_empty());
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-disposition" && v.starts_with("attachment")));
    }
}
