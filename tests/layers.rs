//! The house's shape, checked: imports inside the library run one way, from the edges down to
//! the pure domain (see `docs/architecture.md`), and `src/` keeps at most five loose files.
//!
//! Every `crate::<module>` path in a module's code (comments and `#[cfg(test)]` blocks aside) is
//! an import of that top-level module; a module may import only modules of a lower layer. A
//! cycle between modules is impossible under that rule, so this test is also the check that
//! there is none.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom to top. A module imports only modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // pure policy: no IO, no other module
    &["domain"],
    // time stamps, reloadable values
    &["clock", "live"],
    // the rustls provider, identities bound to their CA, TLS failures
    &["tls"],
    // age streaming seal, key files
    &["seal"],
    // the project's CA; the transfer log's records, chain, key and verification (pure); what
    // the layers above count (the store's commits included)
    &["pki", "log", "metrics"],
    // configuration, validated; the store (all SQL, the spool, checkpoints)
    &["config", "store"],
    // the HTTP client
    &["client"],
    // receiving into an organisation's inbox (ingest's /v1/inbound and the inbox channel)
    &["inbox"],
    // the delivery worker and its channels
    &["deliver"],
    // the API listener
    &["ingest"],
    // the people's pages: sign-in, sessions, the share flow (on ingest's path)
    &["web"],
    // daemon assembly, reload, ops listener, logging, development material
    &["runtime"],
    // tests' and benchmarks' tools: may use anything, used by nothing
    &["testkit"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code names as `crate::<module>`, tests and comments aside.
fn imports(code: &str) -> BTreeSet<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: every first segment in the group (on this line)
                let group = group.split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn imports_run_from_the_edges_down_to_the_domain() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        // The binary (main.rs, cli/) is the top edge and may use anything; lib.rs only
        // declares the modules.
        if ["main", "lib", "cli"].contains(&module.as_str()) {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let code = std::fs::read_to_string(file).expect("read");
        for used in imports(&code) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                _ => wrong.push(format!("{} uses crate::{used}", rel.display())),
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/layers.rs (add them to LAYERS and to docs/architecture.md): {unplaced:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways (a module may use only the layers below it):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_an_import_that_runs_up() {
    let code = "use crate::store::Store;\nuse crate::{clock, log::verify};\n// crate::runtime in a comment\n#[cfg(test)]\nmod tests { use crate::ingest; }\n";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["clock", "log", "store"]);
}

#[test]
fn src_keeps_at_most_five_loose_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let loose: Vec<String> = std::fs::read_dir(&src)
        .expect("read src")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        loose.len() <= 5,
        "src/ holds {} loose files (at most five; group the rest by the flow): {loose:?}",
        loose.len()
    );
}

#[test]
fn sql_lives_in_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|f| {
            let rel = f.strip_prefix(&src).expect("under src");
            // the store; the test kit's synthetic log and the load generator (built only with
            // the `testkit` feature) read the database they measure
            !(rel.starts_with("store") || rel.starts_with("testkit") || rel.starts_with("cli/load"))
        })
        .filter(|f| {
            let code = std::fs::read_to_string(f).expect("read");
            [
                "rusqlite",
                "prepare_cached(",
                "query_row(",
                "query_map(",
                ".execute(",
                "execute_batch(",
            ]
            .iter()
            .any(|sql| code.contains(sql))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(outside.is_empty(), "SQL outside src/store/: {outside:?}");
}

/// The statements of the binary, the tests and the fuzz targets that name the library: each
/// `use postern_gateway::...;` whole, and each `postern_gateway::...` path written inline.
fn library_mentions() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("src/main.rs")];
    rust_files(&root.join("src/cli"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("fuzz/fuzz_targets"), &mut files);
    let mut mentions = Vec::new();
    for f in files {
        let code = std::fs::read_to_string(&f).expect("read a file");
        let mut rest = code.as_str();
        while let Some(at) = rest.find("postern_gateway::") {
            rest = &rest[at..];
            // A `use` runs to its `;`; an inline path ends sooner, and reading on to the `;`
            // only makes the check more lenient.
            let end = rest.find(';').unwrap_or(rest.len());
            mentions.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    mentions
}

/// A module the binary, the tests and the fuzz targets never name is `pub(crate)`: the
/// library's public surface is what they need, no more.
#[test]
fn a_public_module_is_one_the_binary_or_the_tests_use() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mentions = library_mentions();
    let mut unused = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.starts_with("cli/") || rel == "main.rs" {
            continue;
        }
        let parent = rel
            .trim_end_matches(".rs")
            .trim_end_matches("/mod")
            .trim_start_matches("lib")
            .replace('/', "::");
        let code = std::fs::read_to_string(&file).expect("read a file");
        for line in code.lines() {
            let Some(name) = line.trim_start().strip_prefix("pub mod ") else {
                continue;
            };
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let path: Vec<&str> = parent
                .split("::")
                .filter(|s| !s.is_empty())
                .chain([name.as_str()])
                .collect();
            let used = mentions.iter().any(|m| names_in_order(m, &path));
            if !used {
                unused.push(path.join("::"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "public modules nothing outside the library uses (make them pub(crate)): {unused:?}"
    );
}

/// Whether `mention` names each segment of `path`, in order (as a path or a grouped import
/// does).
fn names_in_order(mention: &str, path: &[&str]) -> bool {
    let mut rest = mention;
    for segment in path {
        let Some(at) = word_at(rest, segment) else {
            return false;
        };
        rest = &rest[at + segment.len()..];
    }
    true
}

fn word_at(text: &str, word: &str) -> Option<usize> {
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_public_module_check_sees_a_grouped_import() {
    let m = "postern_gateway::store::{inbox::InboxItem, Store}";
    assert!(names_in_order(m, &["store", "inbox"]));
    assert!(!names_in_order(m, &["inbox", "store"]));
    assert!(!names_in_order(m, &["store", "box"]));
}

/// The second type argument of each `Result<...>` in `code`, brackets matched (so that
/// `Result<Vec<u8>, String>` is seen as well as `Result<(), String>`).
fn result_errors(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("Result<") {
        let start = from + at + "Result<".len();
        let (mut depth, mut comma, mut end) = (1usize, None, None);
        for (i, ch) in code[start..].char_indices() {
            match ch {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + i);
                        break;
                    }
                }
                ',' if depth == 1 && comma.is_none() => comma = Some(start + i),
                _ => {}
            }
        }
        if let (Some(c), Some(e)) = (comma, end) {
            let line = code[..start].matches('\n').count() + 1;
            found.push((
                line,
                code[c + 1..e]
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .to_owned(),
            ));
        }
        from = start;
    }
    found
}

/// A file's code without its comments and its trailing `mod tests`.
fn product_code(code: &str) -> String {
    let end = code.find("#[cfg(test)]\nmod tests").unwrap_or(code.len());
    code[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Errors are types outside the command line: no `Result<_, String>` in the library (its tests
/// aside), so that every failure a caller may meet has a variant to match on.
#[test]
fn the_library_returns_no_string_errors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("cli/") || rel == "main.rs" {
            continue;
        }
        let code = product_code(&std::fs::read_to_string(&file).expect("read a file"));
        for (line, error) in result_errors(&code) {
            if error == "String" {
                found.push(format!("{rel}:{line}"));
            }
        }
    }
    assert!(found.is_empty(), "string errors in the library: {found:?}");
}

#[test]
fn the_string_error_check_sees_nested_and_multiline_results() {
    let code = "fn a() -> Result<Vec<u8>, String> {}\nfn b() -> Result<\n    (u8, u8),\n    String,\n> {}\nfn c() -> Result<(), Error> {}";
    let got = result_errors(code);
    assert_eq!(
        got,
        [
            (1, "String".to_owned()),
            (2, "String".to_owned()),
            (6, "Error".to_owned())
        ]
    );
    assert!(product_code("a\n#[cfg(test)]\nfn only_in_tests() {}\nb").contains('b'));
}
