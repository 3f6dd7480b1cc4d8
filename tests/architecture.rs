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
//! `crate::a::b`, `super::x`, `::std::x` and `use` trees with braces, and skips comments,
//! string, raw-string and character literals and unit-test modules (tests may reach anywhere),
//! which is all this code base writes; its own test shows each case.

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
    "logline",
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

/// The code without comments, the contents of string and character literals, or the inline
/// `#[cfg(test)] mod tests { ... }` module (a `mod tests;` declaration is kept: its file is
/// skipped on its own).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' && starts_with(&chars, i, "#[cfg(test)]") {
            let mut j = i + "#[cfg(test)]".len();
            while at(j).is_whitespace() {
                j += 1;
            }
            if starts_with(&chars, j, "mod tests") {
                let mut k = j + "mod tests".len();
                while at(k).is_whitespace() {
                    k += 1;
                }
                if at(k) == '{' {
                    i = closing(&chars, k) + 1;
                    continue;
                }
            }
        }
        match c {
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
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
                continue;
            }
            // A raw string, r"..." or r#"..."#: no escapes, ends at the quote and as many `#`.
            'r' if (at(i + 1) == '"' || at(i + 1) == '#')
                && !at(i.wrapping_sub(1)).is_alphanumeric()
                && at(i.wrapping_sub(1)) != '_' =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                if at(j) == '"' {
                    let close: String = std::iter::once('"')
                        .chain(std::iter::repeat_n('#', hashes))
                        .collect();
                    j += 1;
                    while j < chars.len() && !starts_with(&chars, j, &close) {
                        j += 1;
                    }
                    out.push_str("\"\"");
                    i = j + close.chars().count();
                    continue;
                }
                out.push(c);
            }
            '"' => {
                // A string's text names modules without importing them.
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
            }
            // A character literal ('"', '\'', '{') is left out; a lifetime ('a) is kept.
            '\'' if at(i + 1) == '\\' => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                out.push_str("' '");
            }
            '\'' if at(i + 2) == '\'' => {
                i += 2;
                out.push_str("' '");
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn starts_with(chars: &[char], at: usize, pattern: &str) -> bool {
    pattern
        .chars()
        .enumerate()
        .all(|(n, p)| chars.get(at + n) == Some(&p))
}

/// The index of the `}` that closes the `{` at `open`.
fn closing(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

/// Every path the code names: `crate::a::b`, `super::c`, and each leaf of `use` trees.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        // A path starts at a word not after `::`, or at a leading `::` (`::std::mem`).
        let leading = code[i..].starts_with("::")
            && i + 2 < bytes.len()
            && word(bytes[i + 2])
            && (i == 0 || !(word(bytes[i - 1]) || bytes[i - 1] == b':' || bytes[i - 1] == b'>'));
        if leading {
            i += 2;
        }
        if word(bytes[i]) && (leading || i == 0 || (!word(bytes[i - 1]) && bytes[i - 1] != b':')) {
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
fn the_scanner_sees_use_trees_and_super_paths_and_skips_literals_comments_and_tests() {
    let code = strip(concat!(
        "use crate::a::{b, c::{D, e as f}, self};\n// crate::hidden::x\nlet s = \"crate::str::y\";\n",
        "let q = '\"'; let e = '\\''; fn f<'a>(x: &'a str) {}\n",
        "let r = r#\"crate::raw::z \"quoted\" \"#; /* crate::block::w */\nsuper::g::h();\n",
        "let m = ::std::mem::take(&mut v); crate::after::literals();\n",
        "#[cfg(test)]\nmod tests;\ncrate::after::declaration();\n",
        "#[cfg(test)]\nmod tests {\n    use crate::only::in_tests;\n}\ncrate::after::tests();\n",
    ));
    let found = paths(&code);
    for expected in [
        "crate::a::b",
        "crate::a::c::D",
        "crate::a::c::e",
        "crate::a",
        "super::g::h",
        "std::mem::take",
        "crate::after::literals",
        "crate::after::declaration",
        "crate::after::tests",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected} in {found:?}"
        );
    }
    assert!(
        !found
            .iter()
            .any(|p| ["hidden", "str", "raw", "block", "only"]
                .iter()
                .any(|w| p.contains(w))),
        "{found:?}"
    );
    assert_eq!(
        absolute("super::g", &["x".into(), "y".into()]),
        Some(vec!["x".into(), "g".into()])
    );
}
