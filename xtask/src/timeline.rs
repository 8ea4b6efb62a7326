//! A self-contained SVG picture of a cluster test run: fault bands, the leader of each term as a
//! lane per node, throughput (ok operations per second) and latency over time.
//!
//! The input is a plain [`Timeline`] value, not the cluster, so the picture can be drawn from a
//! kept run directory or from a synthetic run in a test. The output is one SVG document with no
//! external references (no fonts, scripts or images to fetch), so it opens anywhere.
//!
//! Invariants: every text from the input is XML-escaped; every coordinate is finite and inside
//! the canvas (times are clamped to `0..=duration_ms`); the document is well formed.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::history::{History, Outcome};
use crate::nemesis::FaultSpan;

/// What to draw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Shown at the top (seed, cluster size, verdict…).
    pub title: String,
    /// Length of the run in milliseconds; the x axis spans `0..=duration_ms`.
    pub duration_ms: u64,
    /// Number of nodes (one leader lane each).
    pub node_count: usize,
    /// Fault periods.
    pub faults: Vec<FaultBand>,
    /// Who led when.
    pub leaders: Vec<LeaderSpan>,
    /// Client operations.
    pub ops: Vec<OpSample>,
}

/// A fault from start to heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultBand {
    /// Start, milliseconds after the run started.
    pub start_ms: u64,
    /// Heal, milliseconds after the run started.
    pub end_ms: u64,
    /// Short description (`kill n2`, `split {n0} | rest`).
    pub label: String,
}

/// A period in which `node` was leader of `term`, as the runner observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSpan {
    /// The leader's index, `0..node_count`.
    pub node: usize,
    /// Its term.
    pub term: u64,
    /// First observation, milliseconds after the run started.
    pub start_ms: u64,
    /// Last observation (or the end of its leadership).
    pub end_ms: u64,
}

/// How an operation ended, for the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Answered.
    Ok,
    /// Definitely not applied.
    Failed,
    /// No answer.
    Indeterminate,
}

/// One client operation, reduced to what the picture needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSample {
    /// When it was sent, microseconds after the run started.
    pub invoke_us: u64,
    /// When it ended (`None` if indeterminate).
    pub complete_us: Option<u64>,
    /// How it ended.
    pub outcome: SampleOutcome,
}

impl OpSample {
    /// The samples of a recorded history.
    pub fn from_history(history: &History) -> Vec<OpSample> {
        history
            .ops
            .iter()
            .map(|op| OpSample {
                invoke_us: op.invoke_us,
                complete_us: op.complete_us(),
                outcome: match op.outcome {
                    Outcome::Ok { .. } => SampleOutcome::Ok,
                    Outcome::Failed { .. } => SampleOutcome::Failed,
                    Outcome::Indeterminate => SampleOutcome::Indeterminate,
                },
            })
            .collect()
    }
}

impl From<&FaultSpan> for FaultBand {
    fn from(span: &FaultSpan) -> Self {
        FaultBand {
            start_ms: span.start_ms,
            end_ms: span.end_ms,
            label: span.label.clone(),
        }
    }
}

/// One observation of a leader by the runner's status poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderObservation {
    /// When, milliseconds after the run started.
    pub at_ms: u64,
    /// The node that said it is leader.
    pub node: usize,
    /// Its term.
    pub term: u64,
}

impl LeaderSpan {
    /// Merges observations (in any order) into spans: one span per (node, term), from its
    /// first observation to its last, extended to the next observation of another leader (or
    /// `end_ms` for the last one), since the poll only samples. Sorted by start time.
    pub fn from_observations(observations: &[LeaderObservation], end_ms: u64) -> Vec<LeaderSpan> {
        let mut sorted = observations.to_vec();
        sorted.sort_by_key(|seen| (seen.at_ms, seen.term, seen.node));
        let mut spans: Vec<LeaderSpan> = Vec::new();
        for seen in sorted {
            match spans
                .iter_mut()
                .find(|span| span.node == seen.node && span.term == seen.term)
            {
                Some(span) => span.end_ms = span.end_ms.max(seen.at_ms),
                None => spans.push(LeaderSpan {
                    node: seen.node,
                    term: seen.term,
                    start_ms: seen.at_ms,
                    end_ms: seen.at_ms,
                }),
            }
        }
        // A leader is drawn until the next leader appears: the poll cannot see the end.
        for index in 0..spans.len() {
            let next_start = spans.get(index + 1).map_or(end_ms, |next| next.start_ms);
            spans[index].end_ms = spans[index].end_ms.max(next_start.min(end_ms));
        }
        spans
    }
}

/// Canvas width in pixels.
const WIDTH: f64 = 1200.0;
/// Left margin (lane names and axis labels).
const LEFT: f64 = 110.0;
/// Right margin.
const RIGHT: f64 = 20.0;
/// Height of the fault-label rows, the leader lanes, and each chart.
const ROW: f64 = 16.0;
const LANE: f64 = 20.0;
const CHART: f64 = 140.0;
/// Estimated width of one label character at the 11 px font size, for stacking labels.
const LABEL_CHAR_PIXELS: f64 = 6.5;
/// Largest number of time bins in the charts, whatever the run length.
const BINS_MAX: u64 = 300;

/// Renders the run as an SVG document.
pub fn render_svg(timeline: &Timeline) -> String {
    let layout = Layout::new(timeline);
    let mut svg = String::new();
    let height = layout.height;
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    svg.push_str(STYLE);
    let _ = writeln!(
        svg,
        "<rect class=\"background\" width=\"{WIDTH}\" height=\"{height:.0}\"/>"
    );
    let title = escape(&timeline.title);
    let _ = writeln!(
        svg,
        "<text class=\"title\" x=\"{LEFT}\" y=\"20\">{title}</text>"
    );
    draw_faults(&mut svg, timeline, &layout);
    draw_leaders(&mut svg, timeline, &layout);
    let bins = Bins::new(timeline, &layout);
    draw_throughput(&mut svg, &bins, &layout);
    draw_latency(&mut svg, &bins, &layout);
    draw_time_axis(&mut svg, timeline, &layout);
    svg.push_str("</svg>\n");
    svg
}

/// Writes [`render_svg`]'s output to `path`.
pub fn write_svg(timeline: &Timeline, path: &Path) -> io::Result<()> {
    std::fs::write(path, render_svg(timeline))
}

const STYLE: &str = "<style>
.background { fill: #ffffff; }
.title { font-size: 14px; font-weight: bold; fill: #222; }
.section { font-weight: bold; fill: #444; }
.fault { fill: #e4572e; fill-opacity: 0.12; }
.fault-label { fill: #b03a1e; }
.lane { fill: #f4f4f4; }
.axis { stroke: #888; stroke-width: 1; }
.grid { stroke: #ddd; stroke-width: 1; }
.throughput { fill: none; stroke: #2e86ab; stroke-width: 1.5; }
.errors { fill: #e4572e; }
.p50 { fill: none; stroke: #3b8b3b; stroke-width: 1.5; }
.p99 { fill: none; stroke: #f0a202; stroke-width: 1.5; }
.max { fill: none; stroke: #999; stroke-width: 1; stroke-dasharray: 3 2; }
</style>
";

/// Vertical positions of the sections and the time-to-x mapping.
struct Layout {
    duration_ms: u64,
    fault_rows: Vec<usize>,
    faults_top: f64,
    leaders_top: f64,
    throughput_top: f64,
    latency_top: f64,
    height: f64,
}

impl Layout {
    fn new(timeline: &Timeline) -> Layout {
        // A label is drawn from the band's start and may be wider than the band: a row is busy
        // until the later of the band's end and the label's end.
        let ms_per_pixel = to_f64(timeline.duration_ms.max(1)) / (WIDTH - LEFT - RIGHT);
        let fault_rows = stack_rows(&timeline.faults, |fault| {
            let label_pixels = LABEL_CHAR_PIXELS * to_f64(fault.label.chars().count()) + 8.0;
            // `as` from f64 saturates; the value is a small positive number of milliseconds.
            let label_ms = (label_pixels * ms_per_pixel).ceil() as u64;
            fault.end_ms.max(fault.start_ms.saturating_add(label_ms))
        });
        let row_count = fault_rows.iter().max().map_or(0, |row| row + 1);
        let faults_top = 40.0;
        let leaders_top = faults_top + ROW * to_f64(row_count) + 24.0;
        let throughput_top = leaders_top + LANE * to_f64(timeline.node_count) + 30.0;
        let latency_top = throughput_top + CHART + 30.0;
        let height = latency_top + CHART + 40.0;
        Layout {
            duration_ms: timeline.duration_ms.max(1),
            fault_rows,
            faults_top,
            leaders_top,
            throughput_top,
            latency_top,
            height,
        }
    }

    /// The x coordinate of a time in milliseconds, clamped to the run.
    fn x(&self, ms: u64) -> f64 {
        let fraction = to_f64(ms.min(self.duration_ms)) / to_f64(self.duration_ms);
        LEFT + fraction * (WIDTH - LEFT - RIGHT)
    }
}

/// Assigns each fault the first label row that is free at its start; `busy_until` says until
/// when a fault occupies its row.
fn stack_rows(faults: &[FaultBand], busy_until: impl Fn(&FaultBand) -> u64) -> Vec<usize> {
    let mut row_ends: Vec<u64> = Vec::new();
    faults
        .iter()
        .map(|fault| {
            let row = row_ends.iter().position(|&end| end <= fault.start_ms);
            let row = row.unwrap_or(row_ends.len());
            if row == row_ends.len() {
                row_ends.push(0);
            }
            row_ends[row] = busy_until(fault);
            row
        })
        .collect()
}

fn draw_faults(svg: &mut String, timeline: &Timeline, layout: &Layout) {
    let top = layout.faults_top;
    let bottom = layout.latency_top + CHART;
    let _ = writeln!(
        svg,
        "<text class=\"section\" x=\"8\" y=\"{:.1}\">faults</text>",
        top + 12.0
    );
    for (fault, row) in timeline.faults.iter().zip(&layout.fault_rows) {
        let (x0, x1) = (
            layout.x(fault.start_ms),
            layout.x(fault.end_ms.max(fault.start_ms)),
        );
        let width = (x1 - x0).max(1.0);
        let label = escape(&fault.label);
        let _ = writeln!(
            svg,
            "<rect class=\"fault\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" \
             height=\"{:.1}\"><title>{label} ({}–{} ms)</title></rect>",
            bottom - top,
            fault.start_ms,
            fault.end_ms
        );
        let y = top + ROW * to_f64(*row) + 12.0;
        let _ = writeln!(
            svg,
            "<text class=\"fault-label\" x=\"{:.1}\" y=\"{y:.1}\">{label}</text>",
            x0 + 2.0
        );
    }
}

fn draw_leaders(svg: &mut String, timeline: &Timeline, layout: &Layout) {
    let top = layout.leaders_top;
    let _ = writeln!(
        svg,
        "<text class=\"section\" x=\"8\" y=\"{:.1}\">leader</text>",
        top - 6.0
    );
    for node in 0..timeline.node_count {
        let y = top + LANE * to_f64(node);
        let (x0, width) = (layout.x(0), layout.x(layout.duration_ms) - layout.x(0));
        let _ = writeln!(
            svg,
            "<rect class=\"lane\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{:.1}\"/><text x=\"8\" y=\"{:.1}\">n{node}</text>",
            LANE - 2.0,
            y + 13.0
        );
    }
    for span in &timeline.leaders {
        if timeline.node_count <= span.node {
            continue;
        }
        let y = top + LANE * to_f64(span.node);
        let (x0, x1) = (
            layout.x(span.start_ms),
            layout.x(span.end_ms.max(span.start_ms)),
        );
        let width = (x1 - x0).max(1.0);
        let _ = write!(
            svg,
            "<rect class=\"leader\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{:.1}\" fill=\"{}\"><title>n{} leader of term {}</title></rect>",
            LANE - 2.0,
            term_colour(span.term),
            span.node,
            span.term
        );
        // The term number where it fits.
        if 24.0 <= width {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\">t{}</text>",
                x0 + 3.0,
                y + 13.0,
                span.term
            );
        }
        svg.push('\n');
    }
}

/// A distinct, stable colour per term (golden-angle hue steps).
fn term_colour(term: u64) -> String {
    let hue = (term % 360) * 137 % 360;
    format!("hsl({hue},55%,45%)")
}

/// Per-bin figures for the charts.
struct Bins {
    bin_ms: u64,
    ok_per_second: Vec<f64>,
    errors: Vec<u64>,
    /// Latency of the bin's ok operations, `None` for a bin without any.
    latency_ms: Vec<Option<Latency>>,
}

/// Latency percentiles of one bin, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Bins {
    fn new(timeline: &Timeline, layout: &Layout) -> Bins {
        let duration_ms = layout.duration_ms;
        // One-second bins, or wider so that there are at most BINS_MAX of them.
        let bin_ms = 1_000u64.max(duration_ms.div_ceil(BINS_MAX));
        let count = usize::try_from(duration_ms.div_ceil(bin_ms))
            .unwrap_or(0)
            .max(1);
        let mut ok_count = vec![0u64; count];
        let mut errors = vec![0u64; count];
        let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count];
        let bin_of = |us: u64| {
            usize::try_from(us / 1_000 / bin_ms)
                .unwrap_or(count)
                .min(count - 1)
        };
        for op in &timeline.ops {
            match (op.outcome, op.complete_us) {
                (SampleOutcome::Ok, Some(complete_us)) => {
                    let bin = bin_of(complete_us);
                    ok_count[bin] += 1;
                    latencies[bin].push(complete_us.saturating_sub(op.invoke_us));
                }
                (SampleOutcome::Failed, Some(complete_us)) => errors[bin_of(complete_us)] += 1,
                _ => errors[bin_of(op.invoke_us)] += 1,
            }
        }
        let seconds = to_f64(bin_ms) / 1_000.0;
        Bins {
            bin_ms,
            ok_per_second: ok_count.iter().map(|&n| to_f64(n) / seconds).collect(),
            errors,
            latency_ms: latencies
                .iter_mut()
                .map(|bin| percentiles_ms(bin))
                .collect(),
        }
    }

    fn x(&self, layout: &Layout, bin: usize) -> f64 {
        let bin = u64::try_from(bin).unwrap_or(u64::MAX);
        layout.x(bin
            .saturating_mul(self.bin_ms)
            .saturating_add(self.bin_ms / 2))
    }
}

fn percentiles_ms(latencies_us: &mut [u64]) -> Option<Latency> {
    if latencies_us.is_empty() {
        return None;
    }
    latencies_us.sort_unstable();
    let at = |fraction: f64| {
        let last = latencies_us.len() - 1;
        // Nearest rank.
        // `as` from f64 saturates, and the value is in 0..=last anyway.
        let index = ((fraction * to_f64(last)).round() as usize).min(last);
        to_f64(latencies_us[index]) / 1_000.0
    };
    Some(Latency {
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    })
}

fn draw_throughput(svg: &mut String, bins: &Bins, layout: &Layout) {
    let top = layout.throughput_top;
    let peak = bins.ok_per_second.iter().copied().fold(0.0, f64::max);
    let scale = nice_ceiling(peak);
    chart_frame(svg, layout, top, "ok ops/s", scale);
    let y = |value: f64| top + CHART - value / scale * CHART;
    let points: Vec<String> = (0..bins.ok_per_second.len())
        .map(|bin| {
            format!(
                "{:.1},{:.1}",
                bins.x(layout, bin),
                y(bins.ok_per_second[bin])
            )
        })
        .collect();
    let _ = writeln!(
        svg,
        "<polyline class=\"throughput\" points=\"{}\"/>",
        points.join(" ")
    );
    for (bin, &count) in bins
        .errors
        .iter()
        .enumerate()
        .filter(|(_, count)| 0 < **count)
    {
        let _ = writeln!(
            svg,
            "<circle class=\"errors\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\">\
             <title>{count} failed or indeterminate</title></circle>",
            bins.x(layout, bin),
            top + CHART - 3.0
        );
    }
}

fn draw_latency(svg: &mut String, bins: &Bins, layout: &Layout) {
    let top = layout.latency_top;
    let peak = bins
        .latency_ms
        .iter()
        .flatten()
        .map(|latency| latency.p99)
        .fold(0.0, f64::max);
    let scale = nice_ceiling(peak);
    chart_frame(svg, layout, top, "latency ms", scale);
    let y = |value: f64| top + CHART - value.min(scale) / scale * CHART;
    for class in ["p50", "p99", "max"] {
        let pick = |latency: &Latency| match class {
            "p50" => latency.p50,
            "p99" => latency.p99,
            _ => latency.max,
        };
        let points: Vec<String> = bins
            .latency_ms
            .iter()
            .enumerate()
            .filter_map(|(bin, l)| l.as_ref().map(|l| (bin, pick(l))))
            .map(|(bin, value)| format!("{:.1},{:.1}", bins.x(layout, bin), y(value)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline class=\"{class}\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    let legend_x = WIDTH - RIGHT - 150.0;
    for (i, class) in ["p50", "p99", "max"].iter().enumerate() {
        let x = legend_x + 50.0 * to_f64(i);
        let _ = writeln!(
            svg,
            "<line class=\"{class}\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{class}</text>",
            top - 8.0,
            x + 14.0,
            top - 8.0,
            x + 17.0,
            top - 4.0
        );
    }
}

/// Axis, grid lines and the section name of a chart whose y axis spans `0..=scale`.
fn chart_frame(svg: &mut String, layout: &Layout, top: f64, name: &str, scale: f64) {
    let (x0, x1) = (layout.x(0), layout.x(layout.duration_ms));
    let _ = writeln!(
        svg,
        "<text class=\"section\" x=\"8\" y=\"{:.1}\">{name}</text>",
        top + 12.0
    );
    for step in 0..=4u64 {
        let value = scale * to_f64(step) / 4.0;
        let y = top + CHART - CHART * to_f64(step) / 4.0;
        let class = if step == 0 { "axis" } else { "grid" };
        let _ = writeln!(
            svg,
            "<line class=\"{class}\" x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 4.0,
            y + 4.0,
            format_number(value)
        );
    }
}

fn draw_time_axis(svg: &mut String, timeline: &Timeline, layout: &Layout) {
    let y = layout.latency_top + CHART;
    let step_s = nice_ceiling(to_f64(timeline.duration_ms) / 1_000.0 / 10.0).max(1.0);
    let duration_s = to_f64(layout.duration_ms) / 1_000.0;
    let mut second = 0.0;
    // Bounded: at most about ten ticks, since step_s >= duration / 10.
    while second <= duration_s {
        let x = LEFT + second / duration_s * (WIDTH - LEFT - RIGHT);
        let _ = writeln!(
            svg,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}s</text>",
            y + 4.0,
            y + 16.0,
            format_number(second)
        );
        second += step_s;
    }
}

/// The smallest of 1, 2, 5 × 10^k that is at least `value` (and at least 1).
fn nice_ceiling(value: f64) -> f64 {
    let mut nice = 1.0;
    // Bounded: grows tenfold every three steps, and `value` is finite.
    while nice < value && nice < f64::MAX / 10.0 {
        for factor in [2.0, 2.5, 2.0] {
            if value <= nice {
                break;
            }
            nice *= factor;
        }
    }
    nice
}

fn format_number(value: f64) -> String {
    if value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Converts a count or a time to a coordinate-space number. Exact below 2^53, far above any
/// time in milliseconds or count drawn here; beyond, only sub-pixel precision is lost.
fn to_f64(value: impl Into<Wide>) -> f64 {
    match value.into() {
        Wide(value) => value as f64,
    }
}

/// A `u64` or `usize` on its way to `f64`.
struct Wide(u64);

impl From<u64> for Wide {
    fn from(value: u64) -> Self {
        Wide(value)
    }
}

impl From<usize> for Wide {
    fn from(value: usize) -> Self {
        Wide(u64::try_from(value).unwrap_or(u64::MAX))
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small synthetic run: two faults, three terms, steady load with a gap.
    pub(crate) fn synthetic() -> Timeline {
        let mut ops = Vec::new();
        for i in 0..2_000u64 {
            let invoke_us = i * 5_000;
            let in_gap = (3_000_000..4_000_000).contains(&invoke_us);
            let latency_us = if in_gap {
                900_000
            } else {
                2_000 + (i % 7) * 300
            };
            let outcome = if i % 97 == 0 {
                SampleOutcome::Failed
            } else {
                SampleOutcome::Ok
            };
            ops.push(OpSample {
                invoke_us,
                complete_us: Some(invoke_us + latency_us),
                outcome,
            });
        }
        ops.push(OpSample {
            invoke_us: 3_100_000,
            complete_us: None,
            outcome: SampleOutcome::Indeterminate,
        });
        Timeline {
            title: "seed 7 <3 nodes> & \"quotes\"".into(),
            duration_ms: 10_000,
            node_count: 3,
            faults: vec![
                FaultBand {
                    start_ms: 3_000,
                    end_ms: 4_000,
                    label: "kill leader".into(),
                },
                FaultBand {
                    start_ms: 3_500,
                    end_ms: 6_000,
                    label: "slow n1 <-> n2".into(),
                },
            ],
            leaders: vec![
                LeaderSpan {
                    node: 0,
                    term: 1,
                    start_ms: 200,
                    end_ms: 3_000,
                },
                LeaderSpan {
                    node: 2,
                    term: 3,
                    start_ms: 3_400,
                    end_ms: 10_000,
                },
                LeaderSpan {
                    node: 9,
                    term: 4,
                    start_ms: 0,
                    end_ms: 1,
                },
            ],
            ops,
        }
    }

    /// A minimal well-formedness check: tags nest and close in order, attributes are quoted.
    pub(crate) fn assert_well_formed(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("tag name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(!rest.contains('>'), "stray '>'");
    }

    #[test]
    fn svg_is_well_formed_and_has_every_part() {
        let svg = render_svg(&synthetic());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_well_formed(&svg);
        assert!(svg.contains("seed 7 &lt;3 nodes&gt; &amp; &quot;quotes&quot;"));
        assert_eq!(svg.matches("<rect class=\"fault\"").count(), 2);
        assert!(svg.contains("slow n1 &lt;-&gt; n2"));
        // Lanes for n0..n2 only; the span of the out-of-range node 9 is skipped.
        assert_eq!(svg.matches("<rect class=\"lane\"").count(), 3);
        assert_eq!(svg.matches("<rect class=\"leader\"").count(), 2);
        assert!(svg.contains("n2 leader of term 3"));
        for class in ["throughput", "p50", "p99", "max"] {
            assert!(
                svg.contains(&format!("<polyline class=\"{class}\"")),
                "{class}"
            );
        }
        assert!(svg.contains("<circle class=\"errors\""));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn bins_count_ok_operations_per_second_and_latency_percentiles() {
        let timeline = synthetic();
        let layout = Layout::new(&timeline);
        let bins = Bins::new(&timeline, &layout);
        assert_eq!(bins.bin_ms, 1_000);
        assert_eq!(bins.ok_per_second.len(), 10);
        // 200 ops complete in the first second, 3 of them (i = 0, 97, 194) failed.
        assert_eq!(bins.ok_per_second[0], 197.0);
        let second = bins.latency_ms[1].unwrap();
        assert!((2.0..=3.8).contains(&second.p50), "{second:?}");
        assert!(second.max <= 3.8);
        // The slow second shows up in the latency of the bins where those ops completed.
        assert_eq!(bins.latency_ms[4].unwrap().max, 900.0);
        assert_eq!(bins.errors.iter().sum::<u64>(), 21 + 1);
    }

    #[test]
    fn empty_and_degenerate_runs_still_render() {
        let empty = Timeline::default();
        assert_well_formed(&render_svg(&empty));
        let odd = Timeline {
            duration_ms: 5,
            node_count: 1,
            faults: vec![FaultBand {
                start_ms: 9,
                end_ms: 2,
                label: String::new(),
            }],
            leaders: vec![LeaderSpan {
                node: 0,
                term: 1,
                start_ms: 10,
                end_ms: 0,
            }],
            ops: vec![OpSample {
                invoke_us: 99_000_000,
                complete_us: Some(1),
                outcome: SampleOutcome::Ok,
            }],
            ..Timeline::default()
        };
        let svg = render_svg(&odd);
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn overlapping_faults_get_separate_label_rows() {
        let band = |start_ms, end_ms| FaultBand {
            start_ms,
            end_ms,
            label: String::new(),
        };
        let bands = [band(0, 10), band(5, 20), band(10, 12), band(21, 30)];
        assert_eq!(stack_rows(&bands, |band| band.end_ms), [0, 1, 0, 0]);
        assert_eq!(stack_rows(&bands, |band| band.end_ms + 10), [0, 1, 2, 0]);
    }

    #[test]
    fn leader_spans_merge_observations() {
        let seen = |at_ms, node, term| LeaderObservation { at_ms, node, term };
        let observations = [
            seen(100, 0, 1),
            seen(300, 0, 1),
            seen(900, 2, 3),
            seen(200, 0, 1),
        ];
        let spans = LeaderSpan::from_observations(&observations, 1_000);
        assert_eq!(
            spans,
            [
                LeaderSpan {
                    node: 0,
                    term: 1,
                    start_ms: 100,
                    end_ms: 900
                },
                LeaderSpan {
                    node: 2,
                    term: 3,
                    start_ms: 900,
                    end_ms: 1_000
                },
            ]
        );
        assert!(LeaderSpan::from_observations(&[], 5).is_empty());
    }

    #[test]
    fn nice_ceilings() {
        let cases = [
            (0.0, 1.0),
            (1.0, 1.0),
            (1.5, 2.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (120.0, 200.0),
        ];
        for (value, nice) in cases {
            assert_eq!(nice_ceiling(value), nice, "{value}");
        }
    }
}
