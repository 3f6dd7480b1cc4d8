//! Architecture checks in the spirit of rust-analyzer's `tidy`: the invariants of
//! ARCHITECTURE.md about who imports whom, checked on the source text of `src/`.
//!
//! - the domain core imports nothing outside itself but `std` and data crates;
//! - the gateway never imports the adapters (`crate::protocols`) or the wiring (`crate::app`);
//! - the parts of `src/` import each other one way only: domain < config < gateway <
//!   webhooks < protocols < app < bench < cli (`wire` sits on the domain, under webhooks);
//! - no two files of `src/` import each other, directly or round a longer circle.
//!
//! Simplification: paths are read with a small scanner, not a Rust parser. It sees
//! `crate::a::b`, `super::x` and `use` trees with braces, and skips comments and unit-test
//! modules (tests may reach anywhere), which is all this code base writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up. A part may import only parts below it.
const LAYERS: &[&str] = &[
    "domain",
    "config",
    "wire",
    "gateway",
    "webhooks",
    "protocols",
    "app",
    "devcerts",
    "bench",
    "cli",
    "main",
];

/// Crates the domain may use: the standard library, the runtime's channels and timers, and
/// crates about data (maps, digests, encodings). No protocol or HTTP crate.
const DOMAIN_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "tokio",
    "dashmap",
    "hmac",
    "sha2",
    "base64",
    "serde_json",
    "thiserror",
    "humantime",
];

/// One source file: its module path (`protocols::grpc::service`) and its code without
/// comments and unit tests.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap();
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                // `tests.rs` files are unit tests of their parent: they may reach anywhere.
                if module.last().is_some_and(|m| m == "tests") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.push(Source {
                    module,
                    file: rel.to_path_buf(),
                    code: strip(&text),
                });
            }
        }
    }
    out
}

/// The code without comments, string contents or the `#[cfg(test)]` module.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                // A string's text names modules without importing them.
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path the code names: `crate::a::b`, `super::c`, and each leaf of `use` trees.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || (!word(bytes[i - 1]) && bytes[i - 1] != b':')) {
            let start = i;
            // A path: words joined by `::`, possibly ending in a `{...}` group.
            let mut end = i;
            loop {
                while end < bytes.len() && word(bytes[end]) {
                    end += 1;
                }
                if code[end..].starts_with("::") {
                    end += 2;
                    if code[end..].starts_with('{') {
                        let close = matching_brace(code, end);
                        for leaf in expand(&code[start..end], &code[end + 1..close]) {
                            out.push(leaf);
                        }
                        end = close + 1;
                        break;
                    }
                } else {
                    out.push(code[start..end].to_owned());
                    break;
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    // A turbofish (`collect::<T>`) is a call, not a path.
    out.retain(|p| p.contains("::") && !p.ends_with("::"));
    out
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

/// The leaves of a `use prefix::{group}` tree.
fn expand(prefix: &str, group: &str) -> Vec<String> {
    let mut leaves = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in group.chars().chain(std::iter::once(',')) {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' => {
                depth -= 1;
                item.push(c);
            }
            ',' if depth == 0 => {
                let entry = item.trim();
                let entry = match entry.contains('{') {
                    true => entry.to_owned(),
                    false => entry.split(" as ").next().unwrap_or("").trim().to_owned(),
                };
                item.clear();
                if entry.is_empty() || entry == "self" {
                    if entry == "self" {
                        leaves.push(prefix.trim_end_matches("::").to_owned());
                    }
                    continue;
                }
                match entry.find("::{") {
                    Some(at) => {
                        let inner_prefix = format!("{prefix}{}::", &entry[..at]);
                        let inner = &entry[at + 3..entry.len() - 1];
                        leaves.extend(expand(&inner_prefix, inner));
                    }
                    None => leaves.push(format!("{prefix}{entry}")),
                }
            }
            _ => item.push(c),
        }
    }
    leaves
}

/// The module a path starting with `crate::` or `super::` names, from inside `module`.
fn absolute(path: &str, module: &[String]) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.split("::").collect();
    let (mut base, rest) = match segments[0] {
        "crate" => (Vec::new(), &segments[1..]),
        "super" => {
            let supers = segments.iter().take_while(|s| **s == "super").count();
            let mut base = module.to_vec();
            base.truncate(module.len().saturating_sub(supers));
            (base, &segments[supers..])
        }
        _ => return None,
    };
    base.extend(rest.iter().map(|s| (*s).to_owned()));
    Some(base)
}

/// The longest known module at the start of `path`.
fn resolve<'a>(path: &[String], modules: &'a BTreeSet<Vec<String>>) -> Option<&'a Vec<String>> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// `module -> the modules it imports`, one node per file of `src/`.
type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// The import graph of `src/`.
fn graph() -> Graph {
    let sources = sources();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges = BTreeMap::new();
    for source in &sources {
        let targets: &mut BTreeSet<Vec<String>> = edges.entry(source.module.clone()).or_default();
        for path in paths(&source.code) {
            let Some(abs) = absolute(&path, &source.module) else {
                continue;
            };
            if let Some(target) = resolve(&abs, &modules)
                && *target != source.module
                // A module declaring or re-exporting its own children is structure, not an
                // import arrow.
                && !target.starts_with(&source.module)
            {
                targets.insert(target.clone());
            }
        }
    }
    edges
}

#[test]
fn the_domain_imports_nothing_outside_itself_but_std_and_data_crates() {
    let mut wrong = Vec::new();
    for source in sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "domain"))
    {
        for path in paths(&source.code) {
            let root = path.split("::").next().unwrap_or_default();
            let inside = match root {
                "crate" => path.starts_with("crate::domain"),
                "super" | "self" | "Self" => true,
                _ => {
                    // A lower-case root is a primitive, a crate, or a name brought in by `use`
                    // (then the `use` itself was checked).
                    !root.starts_with(|c: char| c.is_ascii_lowercase())
                        || PRIMITIVES.contains(&root)
                        || DOMAIN_CRATES.contains(&root)
                        || imported_from_allowed(&source.code, root)
                }
            };
            if !inside {
                wrong.push(format!("{}: {path}", source.file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the domain reaches outside itself:\n{}",
        wrong.join("\n")
    );
}

/// Primitive types, whose associated items (`i64::from`, `str::trim`) are paths too.
const PRIMITIVES: &[&str] = &[
    "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize", "f32",
    "f64", "bool", "char", "str",
];

/// True when `name` is brought into scope by a `use` of something the domain may use (inside
/// itself, or an allowed crate), e.g. `use super::feed;` or `use tokio::sync::broadcast;`.
fn imported_from_allowed(code: &str, name: &str) -> bool {
    paths(code).iter().any(|p| {
        let root = p.split("::").next().unwrap_or_default();
        let allowed = matches!(root, "super" | "self")
            || p.starts_with("crate::domain")
            || DOMAIN_CRATES.contains(&root);
        allowed && p.rsplit("::").next() == Some(name)
    }) || code.contains(&format!("mod {name}"))
}

#[test]
fn the_gateway_never_imports_the_adapters_or_the_wiring() {
    let edges = graph();
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        if from.first().is_some_and(|m| m == "gateway") {
            for to in targets {
                if matches!(
                    to.first().map(String::as_str),
                    Some("protocols" | "app" | "webhooks")
                ) {
                    wrong.push(format!("{} -> {}", from.join("::"), to.join("::")));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the gateway reaches up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parts_of_src_import_each_other_one_way_only() {
    let edges = graph();
    let rank = |m: &Vec<String>| {
        m.first()
            .and_then(|p| LAYERS.iter().position(|l| l == p))
            .unwrap_or(usize::MAX)
    };
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if from.first() != to.first() && rank(to) > rank(from) {
                wrong.push(format!("{} -> {} (upward)", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run upward:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_of_src_import_each_other_in_a_circle() {
    let edges = graph();
    // Tarjan's strongly connected components: any component of more than one file is a circle.
    struct Walk<'a> {
        edges: &'a Graph,
        index: BTreeMap<&'a Vec<String>, (usize, usize)>,
        stack: Vec<&'a Vec<String>>,
        next: usize,
        circles: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            self.index.insert(v, (self.next, self.next));
            self.next += 1;
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flatten() {
                match self.index.get(w) {
                    None => {
                        self.visit(w);
                        let low = self.index[w].1.min(self.index[v].1);
                        self.index.get_mut(v).unwrap().1 = low;
                    }
                    Some(&(index, _)) if self.stack.contains(&w) => {
                        let low = index.min(self.index[v].1);
                        self.index.get_mut(v).unwrap().1 = low;
                    }
                    Some(_) => {}
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut circle = Vec::new();
                while let Some(w) = self.stack.pop() {
                    circle.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if circle.len() > 1 {
                    circle.sort();
                    self.circles.push(circle);
                }
            }
        }
    }
    let mut walk = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        circles: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    let circles: Vec<String> = walk.circles.iter().map(|c| c.join(" <-> ")).collect();
    assert!(
        circles.is_empty(),
        "files that import each other in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_scanner_sees_use_trees_and_super_paths() {
    let code = strip(
        "use crate::a::{b, c::{D, e as f}, self};\n// crate::hidden::x\nlet s = \"crate::str::y\";\nsuper::g::h();",
    );
    let found = paths(&code);
    for expected in [
        "crate::a::b",
        "crate::a::c::D",
        "crate::a::c::e",
        "crate::a",
        "super::g::h",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected} in {found:?}"
        );
    }
    assert!(
        !found
            .iter()
            .any(|p| p.contains("hidden") || p.contains("str")),
        "{found:?}"
    );
    assert_eq!(
        absolute("super::g", &["x".into(), "y".into()]),
        Some(vec!["x".into(), "g".into()])
    );
}
