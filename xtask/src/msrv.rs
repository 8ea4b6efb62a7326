//! The minimum supported Rust version (MSRV) check, as a test that `cargo test --workspace` runs,
//! offline and with whatever toolchain is installed (CI cannot download another one).
//!
//! The workspace declares its MSRV once, as `rust-version` in `[workspace.package]` of the root
//! `Cargo.toml`. The check holds that:
//! - every workspace crate inherits it (`rust-version.workspace = true`), none overrides it;
//! - the toolchain running the tests is not older than it (else the declaration is untested);
//! - no dependency in the resolved graph for this platform declares a newer `rust-version`, so
//!   a dependency update cannot raise the MSRV unnoticed.
//!
//! What the standard library offers is checked by clippy's `incompatible_msrv` lint (on by
//! default, and CI denies warnings), which reads the same `rust-version`. Language features
//! newer than the MSRV are not caught by either: only a build with that toolchain would.
//!
//! Each problem names the manifest (or the package) and what is wrong.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A Rust version, `major.minor.patch` (a missing patch reads as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u64, u64, u64);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One package of the resolved graph, as `cargo metadata` lists it.
#[derive(Debug)]
struct Package {
    name: String,
    rust_version: Option<String>,
    /// The manifest's text for a workspace crate; `None` for a dependency.
    member_manifest: Option<(String, String)>,
}

/// `"1.89"`, `"1.89.0"` or `"rustc 1.95.0 (59807616e 2026-04-14)"` → the version.
fn parse_version(text: &str) -> Option<Version> {
    let word = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let core = word.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(str::parse::<u64>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some(Version(major, minor, patch))
}

/// The `rust-version` of the root manifest's `[workspace.package]` table.
fn workspace_rust_version(manifest: &str) -> Option<&str> {
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[workspace.package]";
        } else if in_table && let Some(rest) = line.strip_prefix("rust-version") {
            return rest
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .strip_prefix('"')?
                .split('"')
                .next();
        }
    }
    None
}

/// Every way the declared MSRV is not what the workspace and its dependencies need.
fn check_msrv(msrv: Version, rustc: Version, packages: &[Package]) -> Vec<String> {
    let mut problems = Vec::new();
    if rustc < msrv {
        problems.push(format!(
            "the installed rustc {rustc} is older than the declared rust-version {msrv}"
        ));
    }
    for package in packages {
        let declared = package.rust_version.as_deref().and_then(parse_version);
        if let Some((path, text)) = &package.member_manifest {
            let inherits = text
                .lines()
                .any(|line| line.replace(' ', "") == "rust-version.workspace=true");
            if !inherits || declared != Some(msrv) {
                problems.push(format!(
                    "{path}: {} must inherit the workspace's rust-version ({msrv}) with \
                     `rust-version.workspace = true`",
                    package.name
                ));
            }
        } else if let Some(needed) = declared.filter(|needed| msrv < *needed) {
            problems.push(format!(
                "dependency {} needs Rust {needed}, newer than the workspace's rust-version \
                 {msrv}: pin an older version or raise rust-version (and say why)",
                package.name
            ));
        }
    }
    problems
}

fn run(program: &str, args: &[&str], dir: &Path) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The packages of the resolved graph for this machine's platform (offline: the platform's
/// dependencies are already downloaded by the build that runs this test).
fn resolved_packages(root: &Path, host: &str) -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let args = [
        "metadata",
        "--format-version",
        "1",
        "--offline",
        "--filter-platform",
        host,
    ];
    let json: Value = serde_json::from_slice(&run(&cargo, &args, root)).expect("metadata JSON");
    let members: Vec<&str> = json["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = json["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|package| {
            let id = package["id"].as_str().unwrap_or_default();
            let path = package["manifest_path"].as_str().unwrap_or_default();
            let member_manifest = members.contains(&id).then(|| {
                let text = std::fs::read_to_string(path).expect("read a member's manifest");
                (path.to_owned(), text)
            });
            Package {
                name: package["name"].as_str().unwrap_or_default().to_owned(),
                rust_version: package["rust_version"].as_str().map(str::to_owned),
                member_manifest,
            }
        })
        .collect()
}

#[test]
fn the_declared_msrv_holds_for_the_workspace_and_its_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let declared = workspace_rust_version(&manifest).expect("[workspace.package] rust-version");
    let msrv = parse_version(declared).expect("rust-version is major.minor[.patch]");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let verbose = String::from_utf8(run(&rustc, &["-vV"], root)).expect("rustc -vV is UTF-8");
    let installed = parse_version(&verbose).expect("rustc -vV names its version");
    let host = verbose
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names its host");
    let packages = resolved_packages(root, host);
    assert!(
        packages.len() > 6,
        "only {} packages resolved",
        packages.len()
    );
    let problems = check_msrv(msrv, installed, &packages);
    assert!(problems.is_empty(), "msrv:\n{}", problems.join("\n"));
}

#[test]
fn versions_parse_from_manifests_and_rustc() {
    assert_eq!(parse_version("1.89"), Some(Version(1, 89, 0)));
    assert_eq!(parse_version("1.85.1"), Some(Version(1, 85, 1)));
    let rustc = "rustc 1.95.0-nightly (59807616e 2026-04-14)";
    assert_eq!(parse_version(rustc), Some(Version(1, 95, 0)));
    assert_eq!(parse_version("soon"), None);
    let manifest = "[workspace]\nrust-version = \"9.9\"\n[workspace.package]\n\
                    edition = \"2024\"\nrust-version = \"1.89\"\n";
    assert_eq!(workspace_rust_version(manifest), Some("1.89"));
    assert_eq!(
        workspace_rust_version("[package]\nrust-version = \"1.0\"\n"),
        None
    );
}

#[test]
fn the_check_names_each_way_the_msrv_breaks() {
    let member = |text: &str, version: &str| Package {
        name: "alpo-x".into(),
        rust_version: Some(version.into()),
        member_manifest: Some(("alpo-x/Cargo.toml".into(), text.into())),
    };
    let dependency = |version: Option<&str>| Package {
        name: "dep".into(),
        rust_version: version.map(str::to_owned),
        member_manifest: None,
    };
    let msrv = Version(1, 89, 0);
    let good = [
        member("rust-version.workspace = true\n", "1.89"),
        dependency(Some("1.85")),
        dependency(None),
    ];
    assert!(check_msrv(msrv, Version(1, 95, 0), &good).is_empty());
    let bad = [
        member("rust-version = \"1.80\"\n", "1.80"),
        dependency(Some("1.90")),
    ];
    let problems = check_msrv(msrv, Version(1, 88, 0), &bad);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("older than the declared rust-version 1.89.0"));
    assert!(problems[1].starts_with("alpo-x/Cargo.toml: alpo-x must inherit"));
    assert!(problems[2].contains("dependency dep needs Rust 1.90.0"));
}
