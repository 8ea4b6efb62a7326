//! Draws a sample timeline from a synthetic run (a real nemesis schedule, made-up leaders and
//! client operations) into the target directory, so the picture can be looked at by a person,
//! and checks that the drawing holds what the run holds.

use xtask::history::{ClientId, Command, History, OpId, Operation, Outcome, Reply};
use xtask::nemesis::{FaultKind, FaultSpan, NemesisConfig, schedule};
use xtask::timeline::{FaultBand, LeaderSpan, OpSample, Timeline, write_svg};

const DURATION_MS: u64 = 30_000;

#[test]
fn sample_timeline_from_a_synthetic_run() {
    let config = NemesisConfig::new(11, 5, DURATION_MS, &FaultKind::ALL);
    let schedule = schedule(&config).unwrap();
    let faults: Vec<FaultBand> = schedule.faults.iter().map(FaultBand::from).collect();
    let history = synthetic_history(&schedule.faults);
    history.validate().unwrap();
    let timeline = Timeline {
        title: format!(
            "synthetic run: seed 11, 5 nodes, {} faults",
            schedule.faults.len()
        ),
        duration_ms: DURATION_MS,
        node_count: 5,
        faults,
        leaders: synthetic_leaders(&schedule.faults),
        ops: OpSample::from_history(&history),
    };
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("timeline-sample.svg");
    write_svg(&timeline, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.ends_with("</svg>\n"));
    assert_eq!(
        svg.matches("<rect class=\"fault\"").count(),
        schedule.faults.len()
    );
    assert_eq!(
        svg.matches("<rect class=\"leader\"").count(),
        timeline.leaders.len()
    );
    assert!(svg.contains("<polyline class=\"throughput\""));
}

/// A new leader after every fault that starts, in a fresh term.
fn synthetic_leaders(faults: &[FaultSpan]) -> Vec<LeaderSpan> {
    let mut leaders = Vec::new();
    let (mut start_ms, mut term, mut node) = (150, 1, 1);
    for span in faults {
        leaders.push(LeaderSpan {
            node,
            term,
            start_ms,
            end_ms: span.start_ms,
        });
        start_ms = span.start_ms + 300;
        term += 1;
        node = (node + 1) % 5;
    }
    leaders.push(LeaderSpan {
        node,
        term,
        start_ms,
        end_ms: DURATION_MS,
    });
    leaders
}

/// Reads every 5 ms: slow and sometimes unanswered inside faults.
fn synthetic_history(faults: &[FaultSpan]) -> History {
    let mut history = History::default();
    for i in 0..DURATION_MS / 5 {
        let invoke_us = i * 5_000;
        let at_ms = i * 5;
        let faulty = faults
            .iter()
            .any(|f| f.start_ms <= at_ms && at_ms < f.end_ms);
        let reply = Reply::Read { value: None };
        let outcome = match (faulty, i % 13) {
            (true, 0) => Outcome::Indeterminate,
            (true, _) => Outcome::Ok {
                reply,
                complete_us: invoke_us + 40_000 + (i % 50) * 1_000,
            },
            (false, _) => Outcome::Ok {
                reply,
                complete_us: invoke_us + 1_500 + (i % 9) * 200,
            },
        };
        let (id, client, command) = (OpId(i), ClientId(i % 8), Command::Get { key: "k".into() });
        history.ops.push(Operation {
            id,
            client,
            invoke_us,
            command,
            outcome,
        });
    }
    history
}
