//! `cargo xtask check-history`: the verdicts and exit codes on kept history files.

// Helpers outside #[test] functions fail the test by panicking, like the tests themselves.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command as Process;

use xtask::history::{ClientId, Command, History, OpId, Operation, Outcome, Reply};

fn write(name: &str, read_value: Option<&str>) -> PathBuf {
    let put = Operation {
        id: OpId(0),
        client: ClientId(0),
        invoke_us: 0,
        command: Command::Put {
            key: "k".into(),
            value: "1".into(),
        },
        outcome: Outcome::Ok {
            reply: Reply::Written,
            complete_us: 10,
        },
    };
    let get = Operation {
        id: OpId(1),
        client: ClientId(1),
        invoke_us: 20,
        command: Command::Get { key: "k".into() },
        outcome: Outcome::Ok {
            reply: Reply::Read {
                value: read_value.map(str::to_owned),
            },
            complete_us: 30,
        },
    };
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    History {
        ops: vec![put, get],
    }
    .save(&path)
    .expect("write history");
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Process::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn verdicts_and_exit_codes() {
    let good = write("good.jsonl", Some("1"));
    let (code, stdout, _) = run(&["check-history", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.ends_with("good.jsonl: 2 operations, linearizable\n"),
        "{stdout}"
    );

    let stale = write("stale.jsonl", None);
    let (code, stdout, _) = run(&["check-history", stale.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("key \"k\" is not linearizable"), "{stdout}");

    let (code, stdout, _) = run(&["check-history", stale.to_str().unwrap(), "--steps", "1"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("unknown"), "{stdout}");
}

#[test]
fn bad_arguments_and_files_are_named() {
    let (code, _, stderr) = run(&["check-history"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("usage: cargo xtask check-history FILE"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["check-history", "x", "--steps", "many"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--steps wants a number, found \"many\""),
        "{stderr}"
    );
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("missing.jsonl");
    let (code, _, stderr) = run(&["check-history", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
    let (code, stdout, _) = run(&[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("check-history") && stdout.contains("help"),
        "{stdout}"
    );
}
