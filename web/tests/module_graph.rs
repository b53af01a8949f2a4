//! The page's modules import each other in one direction only (the order written in
//! `src/lib.rs`'s module doc). Reads `src/**/*.rs`, collects every `crate::…` and `super::…`
//! path outside comments, string literals and `#[cfg(test)]` items, resolves it to the module
//! it names, and fails with the cycle if the graph has one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (`diagram::layout`; the crate root is "") -> modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_module_graph_of_web_src_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.contains_key("history") && graph.contains_key("components::app"),
        "the walk found the modules: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import circle in web/src: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            render(&graph)
        );
    }
    // `cargo test -p web --test module_graph -- --nocapture` shows it.
    println!("{}", render(&graph));
}

#[test]
fn the_checker_sees_a_circle_and_ignores_tests_comments_and_strings() {
    let files = [
        ("a", "use crate::b::Thing;\n// crate::c in a comment\nconst S: &str = \"crate::c\";\n"),
        (
            "b",
            "use crate::{symbols, a::{X, Y}};\n#[cfg(test)]\nmod tests {\n    use crate::c::T;\n    fn f() { let _ = '{'; }\n}\nfn g() -> crate::d::D { todo!() }\n",
        ),
        ("c", "use crate::a;"),
        ("d", ""),
        ("symbols", ""),
    ];
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.to_string()).collect();
    let mut graph = Graph::new();
    for (m, text) in files {
        graph.insert(m.into(), references(m, text, &known));
    }
    let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        graph["a"],
        set(&["b"]),
        "comments and strings are not imports"
    );
    assert_eq!(
        graph["b"],
        set(&["a", "d", "symbols"]),
        "groups and paths in code count; the test module does not"
    );
    let cycle = find_cycle(&graph).expect("a -> b -> a is a circle");
    assert!(cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()));
    if let Some(b) = graph.get_mut("b") {
        b.remove("a");
    }
    assert_eq!(find_cycle(&graph), None, "c -> a -> b is not a circle");
}

#[test]
fn every_import_goes_down_the_layers_written_in_lib_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    assert!(layers.len() >= 5, "lib.rs lists its layers: {layers:?}");
    let layer_of = |m: &str| {
        layers
            .iter()
            .filter(|(name, _)| m == name || m.starts_with(&format!("{name}::")))
            .max_by_key(|(name, _)| name.len())
            .map(|(name, n)| (name.as_str(), *n))
    };
    let mut wrong = Vec::new();
    for (m, deps) in module_graph(&src) {
        let test_only = m == "testkit" || m.ends_with("::tests");
        if test_only || deps.is_empty() && layer_of(&m).is_none() {
            continue; // `testkit` or a `tests.rs` beside its module, or a folder's `mod.rs` that only declares its modules
        }
        let Some((home, n)) = layer_of(&m) else {
            wrong.push(format!("{m} is in no layer of lib.rs's list"));
            continue;
        };
        for d in deps {
            match layer_of(&d) {
                Some((_, k)) if k < n => {}
                Some((h, _)) if h == home => {} // within one folder, e.g. the components
                _ => wrong.push(format!("{m} (layer {n}) imports {d}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "against lib.rs's layers:\n{}",
        wrong.join("\n")
    );
}

/// The numbered list in lib.rs's doc: "//! 3. `failover`" -> ("failover", 3).
fn layers(lib: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for line in lib.lines() {
        let Some(item) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((n, names)) = item.split_once(". ") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        for name in names.split(',') {
            out.push((name.trim().trim_matches('`').to_owned(), n));
        }
    }
    out
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: Vec<(String, PathBuf)> =
        files.into_iter().map(|f| (module_of(src, &f), f)).collect();
    let known: BTreeSet<String> = modules.iter().map(|(m, _)| m.clone()).collect();
    modules
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, f)| {
            let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (m.clone(), references(m, &text, &known))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `src/diagram/layout.rs` -> `diagram::layout`; `src/components/mod.rs` -> `components`;
/// `src/lib.rs` and `src/main.rs` -> "" (the roots, left out of the graph).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The modules that `module`'s source refers to (itself and the crate root left out).
fn references(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = strip_tests(&strip_comments_and_strings(text));
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `my_crate::`, not `crate::`
            }
            for path in paths_at(rest) {
                let full = if base.is_empty() {
                    path
                } else {
                    format!("{base}::{path}")
                };
                if let Some(m) = longest_module(&full, known) {
                    if m != module && !m.is_empty() {
                        out.insert(m);
                    }
                }
            }
        }
    }
    out
}

/// The paths spelled right after `crate::`: `a::b::C`, or each one of a `{a, b::{C, D}}` group.
fn paths_at(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0usize;
        let mut end = group.len();
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let inner = &group[..end];
        let mut items = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[start..]);
        items
            .into_iter()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .flat_map(|item| {
                // `a::{X, Y}` names module `a` (and maybe submodules: resolve the group too).
                let head: String = item
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let head = head.trim_end_matches(':').to_owned();
                match item[head.len()..].trim_start_matches(':').strip_prefix('{') {
                    Some(_) => {
                        let sub = item[head.len()..].trim_start_matches(':');
                        let mut v: Vec<String> = paths_at(sub)
                            .into_iter()
                            .map(|p| format!("{head}::{p}"))
                            .collect();
                        v.push(head);
                        v
                    }
                    None => vec![head],
                }
            })
            .collect()
    } else {
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        vec![path.trim_end_matches(':').to_owned()]
    }
}

fn longest_module(path: &str, known: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| known.contains(m))
}

/// Blanks comments, string and char literals (keeping line breaks), so that only code is read.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && is_raw_start(&chars, i) {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_raw_start(chars: &[char], i: usize) -> bool {
    let before = i.checked_sub(1).map(|j| chars[j]);
    if before.is_some_and(|b| b.is_alphanumeric() || b == '_') {
        return false;
    }
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// `'x'` or `'\n'`, not a lifetime `'a`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// Removes each item marked `#[cfg(test)]` (a `mod tests { … }`, a `mod testkit;`, a function).
fn strip_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        rest = &rest[at + MARK.len()..];
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A cycle as a list of modules (first = last), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_owned(), Mark::Open);
        stack.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut marks, &mut Vec::new()))
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, deps)| {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            format!("  {m} -> {}\n", deps.join(", "))
        })
        .collect()
}
