//! The project's tidy checks, as tests that `cargo test --workspace` runs.
//!
//! - layering: every crate's dependencies on workspace crates follow the allowed edges, read from
//!   `cargo metadata` (the crate graph of docs/ARCHITECTURE.md); a crate may be its own
//!   dev-dependency, to turn on its test-only features in its tests (alpo-core's `sim`);
//! - external dependencies: every crate's non-dev dependencies are on its allow-list;
//! - every `.rs` file starts with a `//!` comment;
//! - `alpo-core/src` names no thread, file, socket or clock API (a backstop to alpo-core's
//!   clippy.toml);
//! - no debug leftovers, trailing whitespace or lines over 100 characters in `.rs` files.
//!
//! Each failure names the file and line (`path:line: problem`), and a test reports every problem
//! it finds, not only the first. The checks are pure functions over text, tested on their own
//! below so that each one demonstrably fails on bad input. Directories named `target`,
//! `target-*` and hidden directories are skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Workspace crate → the workspace crates it may depend on (any dependency kind).
/// `None` means any: `xtask` drives everything.
const ALLOWED_EDGES: &[(&str, Option<&[&str]>)] = &[
    // The protocol, sans-IO: depends on nothing of ours.
    ("alpo-core", Some(&[])),
    // Opaque records: knows nothing of terms or elections.
    ("alpo-log", Some(&[])),
    // Message types only; never the log.
    ("alpo-net", Some(&["alpo-core"])),
    // The only crate that names all three.
    ("alpo-node", Some(&["alpo-core", "alpo-log", "alpo-net"])),
    // The server and its client, plus the layers its offline tools (log dump, verify) read
    // directly; the client protocol and its frames are alpo-node's, so never alpo-net.
    ("alpo-cli", Some(&["alpo-node", "alpo-core", "alpo-log"])),
    ("xtask", None),
];

/// Workspace crate → the external crates it may use as normal or build dependencies.
/// Dev-dependencies (proptest, criterion, tempfile…) are not restricted. Extend a row in the
/// same commit that adds the dependency, and say why in the commit message.
const ALLOWED_EXTERNAL: &[(&str, &[&str])] = &[
    // serde + postcard: the trace checkpoint (issue 15), the core's state serialised by derive;
    // crc32fast: a faulty entry's payload CRC (issue 13, `faulty::payload_crc`).
    (
        "alpo-core",
        &["bytes", "crc32fast", "tracing", "serde", "postcard"],
    ),
    ("alpo-log", &["bytes", "tracing", "crc32fast", "memmap2"]),
    // mio: epoll readiness for the inbox (no runtime; the workspace denies unsafe code).
    // rustls (+ its pki-types and webpki): TLS without OpenSSL, sans-IO so it fits the threads
    // and the epoll inbox; rcgen: the development CA and certificates (issue 16).
    (
        "alpo-net",
        &[
            "bytes",
            "tracing",
            "crc32fast",
            "crossbeam-channel",
            "parking_lot",
            "mio",
            "rustls",
            "rustls-pki-types",
            "rustls-webpki",
            "rcgen",
        ],
    ),
    // serde + toml: the node's TOML configuration file.
    // mio: epoll readiness for the client driver (many client sessions on one thread).
    // prometheus-client: the metrics' exposition format (issue 15), the official Rust client.
    (
        "alpo-node",
        &[
            "bytes",
            "tracing",
            "crossbeam-channel",
            "parking_lot",
            "serde",
            "toml",
            "mio",
            "prometheus-client",
        ],
    ),
    // ctrlc: SIGINT/SIGTERM handling so `alpo node` and `alpo dev` shut down cleanly.
    (
        "alpo-cli",
        &["anyhow", "clap", "ctrlc", "tracing", "tracing-subscriber"],
    ),
    // serde + serde_json: cargo metadata and the cluster test's JSON-lines histories; bytes: the
    // client protocol's value type, shared by the benchmarks' requests.
    ("xtask", &["anyhow", "bytes", "serde", "serde_json"]),
];

/// Lines in `.rs` files longer than this (in characters) are reported.
const LINE_CHARS_MAX: usize = 100;

/// Text that must not appear in `alpo-core/src`: the core does no I/O and reads no clock.
const CORE_BANNED: &[&str] = &[
    "std::thread",
    "std::fs",
    "std::net",
    "Instant::now",
    "SystemTime",
];

/// Debug leftovers. Spelled with `concat!` so that this file does not trip its own check.
const LEFTOVERS: &[&str] = &[
    concat!("dbg", "!"),
    concat!("todo", "!"),
    concat!("FIX", "ME"),
];

/// One dependency of a workspace crate, as `cargo metadata` lists it.
#[derive(Debug)]
struct Dependency {
    name: String,
    /// `None` for a normal dependency, `Some("dev")` or `Some("build")`.
    kind: Option<String>,
}

/// One workspace crate.
#[derive(Debug)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo_metadata() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = workspace_root().join("Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    parse_packages(&json)
}

fn parse_packages(json: &Value) -> Vec<Package> {
    let packages = json["packages"]
        .as_array()
        .expect("metadata has a packages array");
    packages
        .iter()
        .map(|package| Package {
            name: package["name"].as_str().expect("package name").to_owned(),
            manifest_path: PathBuf::from(package["manifest_path"].as_str().expect("manifest")),
            dependencies: package["dependencies"]
                .as_array()
                .expect("dependencies array")
                .iter()
                .map(|dependency| Dependency {
                    name: dependency["name"]
                        .as_str()
                        .expect("dependency name")
                        .to_owned(),
                    kind: dependency["kind"].as_str().map(str::to_owned),
                })
                .collect(),
        })
        .collect()
}

/// The line of `manifest` (1-based) that declares dependency `name`, or 1 if none is found.
fn manifest_line(manifest: &str, name: &str) -> usize {
    manifest
        .lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['.', ' ', '=']))
                || line.contains(&format!("package = \"{name}\""))
        })
        .map_or(1, |index| index + 1)
}

fn kind_name(kind: Option<&str>) -> &str {
    kind.unwrap_or("normal")
}

/// Checks the workspace-internal edges and the external allow-lists; `manifests` gives the text
/// of each package's Cargo.toml (for line numbers).
fn check_dependencies(
    packages: &[Package],
    manifest_text: &dyn Fn(&Path) -> String,
) -> Vec<String> {
    let workspace: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let manifest = manifest_text(&package.manifest_path);
        let location = |name: &str| {
            format!(
                "{}:{}",
                package.manifest_path.display(),
                manifest_line(&manifest, name)
            )
        };
        let edges = ALLOWED_EDGES.iter().find(|(name, _)| *name == package.name);
        let external = ALLOWED_EXTERNAL
            .iter()
            .find(|(name, _)| *name == package.name);
        let (Some((_, edges)), Some((_, external))) = (edges, external) else {
            problems.push(format!(
                "{}:1: crate {} has no row in tidy.rs ALLOWED_EDGES / ALLOWED_EXTERNAL; add one",
                package.manifest_path.display(),
                package.name
            ));
            continue;
        };
        for dependency in &package.dependencies {
            let name = dependency.name.as_str();
            let kind = kind_name(dependency.kind.as_deref());
            if name == package.name && kind == "dev" {
                // A crate's tests turning on its own test-only features (alpo-core's `sim`).
                continue;
            }
            if workspace.contains(&name) || name.starts_with("alpo-") {
                if edges.is_some_and(|allowed| !allowed.contains(&name)) {
                    problems.push(format!(
                        "{}: {} may not depend on {name} ({kind} dependency); allowed: {:?} \
                         (docs/ARCHITECTURE.md)",
                        location(name),
                        package.name,
                        edges.unwrap_or_default()
                    ));
                }
            } else if kind != "dev" && !external.contains(&name) {
                problems.push(format!(
                    "{}: {} uses external crate {name} ({kind} dependency), not on its allow-list \
                     {external:?}; extend ALLOWED_EXTERNAL in xtask/src/tidy.rs with a reason",
                    location(name),
                    package.name
                ));
            }
        }
    }
    problems
}

/// Every `.rs` file under `root`, sorted, skipping `target`, `target-*` and hidden directories.
/// Symbolic links are followed, down to a bounded depth so that a link cycle cannot hang it.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    const DEPTH_MAX: usize = 32;
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        assert!(
            depth < DEPTH_MAX,
            "{}: directories nested too deep",
            dir.display()
        );
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skip = name == "target" || name.starts_with("target-") || name.starts_with('.');
                if !skip {
                    pending.push((path, depth + 1));
                }
            } else if path.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()))
}

/// The file's first line is a `//!` comment.
fn check_module_doc(path: &str, text: &str) -> Vec<String> {
    if text
        .lines()
        .next()
        .is_some_and(|line| line.starts_with("//!"))
    {
        Vec::new()
    } else {
        vec![format!(
            "{path}:1: file does not start with a `//!` comment saying what it owns"
        )]
    }
}

/// Marks a line of test-only code in alpo-core that may name a banned API; the comment must say
/// why. Used for `std::thread::panicking` in the coverage-mark guard, which runs only in tests.
const CORE_ALLOW_MARKER: &str = "tidy: test-only, not I/O";

/// Backstop to alpo-core's clippy.toml: no thread, file, socket or clock API named in alpo-core.
fn check_core_is_sans_io(path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.contains(CORE_ALLOW_MARKER) {
            continue;
        }
        for banned in CORE_BANNED {
            if line.contains(banned) {
                problems.push(format!(
                    "{path}:{}: alpo-core mentions `{banned}`; the core is sans-IO: time, I/O and \
                     threads belong to the driver",
                    index + 1
                ));
            }
        }
    }
    problems
}

/// No debug leftovers, trailing whitespace, or overlong lines.
fn check_lines(path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = format!("{path}:{}", index + 1);
        for leftover in LEFTOVERS {
            if line.contains(leftover) {
                problems.push(format!("{at}: `{leftover}` left in the code"));
            }
        }
        if line.ends_with([' ', '\t']) {
            problems.push(format!("{at}: trailing whitespace"));
        }
        let chars = line.chars().count();
        if LINE_CHARS_MAX < chars {
            problems.push(format!(
                "{at}: line is {chars} characters, over {LINE_CHARS_MAX}"
            ));
        }
    }
    problems
}

/// Runs `check` on every `.rs` file under `root` for which `select` holds.
fn check_files(
    select: &dyn Fn(&str) -> bool,
    check: &dyn Fn(&str, &str) -> Vec<String>,
) -> Vec<String> {
    rust_files(&workspace_root())
        .iter()
        .map(|path| (relative(path), path))
        .filter(|(name, _)| select(name))
        .flat_map(|(name, path)| check(&name, &read(path)))
        .collect()
}

fn assert_clean(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "tidy: {what}:\n{}\n",
        problems.join("\n")
    );
}

#[test]
fn layering_and_external_dependencies_follow_the_allow_lists() {
    let packages = cargo_metadata();
    assert!(
        packages.iter().any(|p| p.name == "alpo-core"),
        "metadata lists the workspace"
    );
    let problems = check_dependencies(&packages, &|path| read(path));
    assert_clean("dependencies", &problems);
}

#[test]
fn every_rust_file_starts_with_a_module_comment() {
    assert_clean("module docs", &check_files(&|_| true, &check_module_doc));
}

#[test]
fn alpo_core_does_no_io() {
    let problems = check_files(
        &|name| name.starts_with("alpo-core/src/"),
        &check_core_is_sans_io,
    );
    assert_clean("alpo-core is sans-IO", &problems);
}

#[test]
fn no_leftovers_trailing_whitespace_or_long_lines() {
    assert_clean("line checks", &check_files(&|_| true, &check_lines));
}

#[test]
fn the_walk_finds_the_workspace_sources_and_skips_targets() {
    let files: Vec<String> = rust_files(&workspace_root())
        .iter()
        .map(|p| relative(p))
        .collect();
    assert!(files.contains(&"xtask/src/tidy.rs".to_owned()), "{files:?}");
    assert!(
        files.contains(&"alpo-core/src/lib.rs".to_owned()),
        "{files:?}"
    );
    assert!(files.iter().all(|f| !f.starts_with("target")), "{files:?}");
}

#[test]
fn each_check_fails_on_bad_input_and_names_the_line() {
    assert_eq!(
        check_module_doc("a.rs", "//! Owns x.\nfn f() {}\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        check_module_doc("a.rs", "// x\n//! y\n")[0],
        "a.rs:1: file does not start with \
        a `//!` comment saying what it owns"
    );
    let core = "//! Core.\nuse std::fs::File;\nfn f() { let _ = std::time::Instant::now(); }\n";
    let found = check_core_is_sans_io("alpo-core/src/x.rs", core);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("alpo-core/src/x.rs:2: alpo-core mentions `std::fs`"));
    assert!(found[1].starts_with("alpo-core/src/x.rs:3: alpo-core mentions `Instant::now`"));
    let allowed = "if std::thread::panicking() { // tidy: test-only, not I/O (drop guard)\n";
    assert_eq!(
        check_core_is_sans_io("alpo-core/src/x.rs", allowed).len(),
        0
    );
    let long = format!("//! {}\n", "x".repeat(97));
    assert_eq!(
        check_lines("a.rs", &long)[0],
        "a.rs:1: line is 101 characters, over 100"
    );
    // 100 characters of which some are multi-byte: fine.
    assert!(check_lines("a.rs", &format!("//! {}\n", "é".repeat(96))).is_empty());
    let text = format!(
        "ok\nlet x = 1; \n{}(x);\n// {}\n",
        LEFTOVERS[0], LEFTOVERS[2]
    );
    let found = check_lines("b.rs", &text);
    assert_eq!(
        found,
        [
            "b.rs:2: trailing whitespace".to_owned(),
            format!("b.rs:3: `{}` left in the code", LEFTOVERS[0]),
            format!("b.rs:4: `{}` left in the code", LEFTOVERS[2]),
        ]
    );
}

#[test]
fn dependency_check_names_the_manifest_line() {
    let json = serde_json::json!({ "packages": [
        { "name": "alpo-net", "manifest_path": "/w/alpo-net/Cargo.toml", "dependencies": [
            { "name": "alpo-core", "kind": null },
            { "name": "alpo-log", "kind": null },
            { "name": "serde", "kind": null },
            { "name": "proptest", "kind": "dev" },
        ]},
        { "name": "alpo-log", "manifest_path": "/w/alpo-log/Cargo.toml", "dependencies": [
            { "name": "alpo-core", "kind": "dev" },
        ]},
        { "name": "alpo-new", "manifest_path": "/w/alpo-new/Cargo.toml", "dependencies": [] },
        { "name": "xtask", "manifest_path": "/w/xtask/Cargo.toml", "dependencies": [
            { "name": "alpo-node", "kind": null },
        ]},
    ]});
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nalpo-core.workspace = true\n\
                    alpo-log = { path = \"../alpo-log\" }\nserde = \"1\"\n";
    let problems = check_dependencies(&parse_packages(&json), &|_| manifest.to_owned());
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].starts_with("/w/alpo-net/Cargo.toml:6: alpo-net may not depend on alpo-log")
    );
    assert!(
        problems[1].starts_with("/w/alpo-net/Cargo.toml:7: alpo-net uses external crate serde")
    );
    assert!(
        problems[2]
            .starts_with("/w/alpo-log/Cargo.toml:5: alpo-log may not depend on alpo-core (dev")
    );
    assert!(
        problems[3].contains("crate alpo-new has no row"),
        "{}",
        problems[3]
    );
}
