//! The library's layers, kept: every path into the crate (`use crate::…`, `crate::a::b` in
//! code, `super::…`) is read from the sources and checked against [`LAYERS`], the one
//! table of them. A file may use its own folder and the layers above it in the table, never
//! one below; it names the file an item lives in (`crate::objective::terms::Objective`),
//! not a re-export of `lib.rs` or a folder's `mod.rs`; and no files use each other in a
//! circle, directly or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first: each top-level module of `src/` (a file or a folder), and what
/// it holds. `lib.rs` and each folder's `mod.rs` only declare and re-export.
const LAYERS: &[(&str, &str)] = &[
    ("error", "the library's error type"),
    (
        "image",
        "decoding, colour, the structure figure, contact sheets",
    ),
    (
        "model",
        "device, VGG, weights files, fast CPU layers, tensor read-back",
    ),
    ("config", "every setting, its default and its range"),
    (
        "objective",
        "loss terms, W2, masks, tiling, the tiled evaluation, style statistics",
    ),
    (
        "run",
        "inputs, network, plan, memory, optimisers, checkpoints, events, the stages",
    ),
    ("video", "optical flow and the temporal guide"),
];

/// One path into the crate that breaks the layering.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    why: String,
}

/// A source file as a module path: `objective/terms.rs` → `["objective", "terms"]`;
/// `run/mod.rs` → `["run"]`.
fn module_of(relative: &str) -> Vec<String> {
    let stem = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|(name, _)| name == top)
}

/// The source without comments (doc links name modules without importing them) and without
/// the contents of string literals.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '"' {
            in_string = true;
            out.push('"');
        } else if c == '\'' {
            // A character literal ('x', '\n', b'{') is dropped; a lifetime ('a) is kept.
            let mut ahead = chars.clone();
            match (ahead.next(), ahead.next()) {
                (Some('\\'), _) => {
                    chars.next();
                    chars.next();
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
                (Some(_), Some('\'')) => {
                    chars.next();
                    chars.next();
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One path into the crate.
struct CratePath {
    line: usize,
    /// Whether it starts at `super::` rather than `crate::`.
    from_super: bool,
    /// Whether it is inside an inline module (`mod tests { … }`).
    inline: bool,
    /// The names after `crate::` or `super::`, up to the first that is not a plain name.
    names: Vec<String>,
}

/// Every path into the crate in `code`, with grouped imports (`use crate::{a::b, c}`)
/// expanded.
fn crate_paths(code: &str) -> Vec<CratePath> {
    let bytes: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let (mut line, mut depth) = (1, 0usize);
    // Brace depths at which an inline `mod name {` opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let word_at = |i: usize, w: &str| {
        let end = i + w.chars().count();
        end <= bytes.len()
            && bytes[i..end].iter().copied().eq(w.chars())
            && (i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_'))
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if inline_mods.last() == Some(&depth) {
                    inline_mods.pop();
                }
            }
            _ => {}
        }
        if word_at(i, "mod ") {
            let rest: String = bytes[i + 4..].iter().take_while(|c| **c != ';').collect();
            if rest
                .split_whitespace()
                .nth(1)
                .is_some_and(|t| t.starts_with('{'))
            {
                inline_mods.push(depth);
            }
        }
        for (prefix, is_super) in [("crate::", false), ("super::", true)] {
            if !word_at(i, prefix) {
                continue;
            }
            let start = i + prefix.len();
            let path = |names| CratePath {
                line,
                from_super: is_super,
                inline: !inline_mods.is_empty(),
                names,
            };
            let end = use_tree_end(&bytes, start);
            let tree: String = bytes[start..end].iter().collect();
            for names in expand(&tree) {
                if !names.is_empty() {
                    found.push(path(names));
                }
            }
        }
        i += 1;
    }
    found
}

/// Where the path or use tree starting at `start` ends: after its names, `::` and
/// balanced braces.
fn use_tree_end(bytes: &[char], start: usize) -> usize {
    let (mut j, mut level) = (start, 0usize);
    while j < bytes.len() {
        match bytes[j] {
            '{' => level += 1,
            '}' if level == 0 => break,
            '}' => level -= 1,
            c if level == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => break,
            _ => {}
        }
        j += 1;
        if level == 0 && j > start && bytes[j - 1] == '}' {
            break;
        }
    }
    j
}

/// The paths of a use tree: `a::{b::C, d}` → `[a, b, C]`, `[a, d]`; each cut at the first
/// name that is not a plain identifier (`*`, `self`, generics).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let names = tree
            .split("::")
            .map(str::trim)
            .take_while(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .map(str::to_string)
            .collect();
        return vec![names];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut level, mut entry, mut out) = (0, String::new(), Vec::new());
    for c in inner.chars().chain([',']) {
        match c {
            '{' => level += 1,
            '}' => level -= 1,
            _ => {}
        }
        if c == ',' && level == 0 {
            for tail in expand(&std::mem::take(&mut entry)) {
                let tail: Vec<String> = tail.into_iter().filter(|n| n != "self").collect();
                out.push(prefix.iter().cloned().chain(tail).collect());
            }
        } else {
            entry.push(c);
        }
    }
    out
}

/// Checks `files` (path relative to `src/`, source) against the rules of this file's
/// header.
fn check(files: &[(String, String)]) -> Vec<Violation> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(f, _)| module_of(f)).collect();
    // The folders: modules whose file is a `mod.rs`.
    let folders: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|(f, _)| f.ends_with("/mod.rs"))
        .map(|(f, _)| module_of(f))
        .collect();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (file, source) in files {
        let me = module_of(file);
        let face = file == "lib.rs" || file.ends_with("/mod.rs");
        for CratePath {
            line,
            from_super,
            inline,
            names: path,
        } in crate_paths(&code_only(source))
        {
            if from_super && inline {
                continue; // `super::` in `mod tests`: the file itself.
            }
            let mut violation = |why: String| {
                violations.push(Violation {
                    file: file.clone(),
                    line,
                    why,
                })
            };
            // The module path named, `super::` resolved against this file's folder.
            let mut named = if from_super {
                me[..me.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            named.extend(path);
            // The longest prefix that is a file of the crate.
            let target = (1..=named.len())
                .rev()
                .map(|n| named[..n].to_vec())
                .find(|m| modules.contains(m));
            let Some(target) = target else {
                if !face {
                    violation(format!(
                        "`{}` goes through lib.rs: name the module the item lives in",
                        named.join("::")
                    ));
                }
                continue;
            };
            if face || target == me {
                continue;
            }
            if folders.contains(&target) && named.len() > target.len() {
                violation(format!(
                    "`{}` goes through {}/mod.rs: name the file the item lives in",
                    named.join("::"),
                    target.join("/")
                ));
                continue;
            }
            match (layer_of(&me), layer_of(&target)) {
                (Some(mine), Some(theirs)) if theirs > mine => violation(format!(
                    "`{}` is in layer {} ({}), above this file's layer {} ({})",
                    named.join("::"),
                    theirs,
                    LAYERS[theirs].0,
                    mine,
                    LAYERS[mine].0
                )),
                (None, _) | (_, None) => violation(format!(
                    "{} or {} is in no layer of the table",
                    me.join("::"),
                    target.join("::")
                )),
                _ => {}
            }
            // A test module may use the file that tests it from beside it (fastconv's tests
            // run a whole VGG): only the files' own code counts for circles.
            if !inline {
                edges.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        violations.push(Violation {
            file: format!("{}.rs", circle[0].join("/")),
            line: 0,
            why: format!(
                "files use each other in a circle: {}",
                circle
                    .iter()
                    .map(|m| m.join("::"))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        });
    }
    violations
}

/// A circle in the graph, as the modules along it with the first repeated at the end.
fn find_circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit<'a>(
        node: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node, 1);
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut circle: Vec<Vec<String>> =
                        stack[from..].iter().map(|n| (*n).clone()).collect();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(c) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// Every `.rs` file under `dir`, relative to `root`, with its text.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under src");
            let relative = relative.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.push((relative, text));
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect()
}

#[test]
fn the_library_keeps_its_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    sources(&src, &src, &mut all);
    assert!(all.len() > 30, "read {} files", all.len());
    for (file, _) in &all {
        let module = module_of(file);
        assert!(
            module.is_empty() || layer_of(&module).is_some(),
            "src/{file} is in no layer: add its top-level module to LAYERS"
        );
    }
    let violations = check(&all);
    assert!(
        violations.is_empty(),
        "the layering is broken:\n{}",
        violations
            .iter()
            .map(|v| format!("  src/{}:{}: {}", v.file, v.line, v.why))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_lower_layer_importing_a_higher_one_is_refused() {
    let violations = check(&files(&[
        ("model/vgg.rs", "use crate::run::plan::Plan;\n"),
        ("run/plan.rs", ""),
    ]));
    assert_eq!(
        violations,
        [Violation {
            file: "model/vgg.rs".into(),
            line: 1,
            why: "`run::plan::Plan` is in layer 5 (run), above this file's layer 2 (model)".into(),
        }]
    );
}

#[test]
fn grouped_imports_and_paths_in_code_are_read() {
    let source = "use crate::{config::Size, run::{plan::Plan, memory}};\nfn f() { crate::video::guide::x(); }\n";
    let violations = check(&files(&[
        ("objective/loss.rs", source),
        ("config.rs", ""),
        ("run/plan.rs", ""),
        ("run/memory.rs", ""),
        ("video/guide.rs", ""),
    ]));
    let lines: Vec<(usize, &str)> = violations
        .iter()
        .map(|v| (v.line, v.why.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(
        lines,
        [
            (1, "`run::plan::Plan`"),
            (1, "`run::memory`"),
            (2, "`video::guide::x`")
        ]
    );
}

#[test]
fn a_circle_within_a_layer_is_refused() {
    let violations = check(&files(&[
        ("objective/terms.rs", "use super::tiled::evaluate;\n"),
        (
            "objective/tiled.rs",
            "use crate::objective::terms::Objective;\n",
        ),
    ]));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(
        violations[0].why,
        "files use each other in a circle: objective::terms -> objective::tiled -> objective::terms"
    );
}

#[test]
fn re_exports_and_folder_faces_are_not_paths_into_a_layer() {
    let violations = check(&files(&[
        ("lib.rs", "pub use run::plan::Plan;\n"),
        (
            "objective/mod.rs",
            "pub mod terms;\npub use terms::Objective;\n",
        ),
        ("objective/terms.rs", ""),
        (
            "run/plan.rs",
            "use crate::Image;\nuse crate::objective::Objective;\n",
        ),
    ]));
    let whys: Vec<&str> = violations.iter().map(|v| v.why.as_str()).collect();
    assert_eq!(
        whys,
        [
            "`Image` goes through lib.rs: name the module the item lives in",
            "`objective::Objective` goes through objective/mod.rs: name the file the item lives in",
        ]
    );
}

#[test]
fn super_inside_a_test_module_means_the_file_itself() {
    let source = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    assert!(check(&files(&[("model/vgg.rs", source)])).is_empty());
}
