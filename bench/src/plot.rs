//! `--plot FILE.svg`: throughput and p99 latency against requests in flight (ECDSA P-256) for
//! the Go signer, signerd and the token alone, side by side in one SVG. Text is left to the SVG
//! viewer's fonts (plotters' SVG backend without a font engine), so nothing depends on the
//! fonts installed where the benchmark runs.

use std::path::Path;

use plotters::prelude::*;

use crate::args::RunArgs;
use crate::load::RunResult;
use crate::report::{Results, Signer};
use crate::token_loop::TokenLoopReport;

/// The algorithm whose in-flight series is drawn.
const ALGORITHM: &str = "ecdsa";

/// One line on a panel.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// A flat reference (the token alone), drawn without point marks.
    reference: bool,
}

/// Draws the two panels into `path`.
pub fn draw(path: &Path, results: &Results, args: &RunArgs) -> Result<(), String> {
    let levels = args.levels(ALGORITHM);
    let x_max = levels.iter().copied().max().unwrap_or(1) as f64 * 1.05;
    let server_line = |signer: Signer, color: RGBColor, f: fn(&RunResult) -> f64| Line {
        label: signer.name().to_owned(),
        color,
        points: levels
            .iter()
            .filter_map(|&n| {
                results
                    .server(signer, ALGORITHM, n, f)
                    .map(|s| (n as f64, s.median))
            })
            .collect(),
        reference: false,
    };
    let flat = |label: String, color: RGBColor, value: Option<f64>| Line {
        label,
        color,
        points: value.map_or(Vec::new(), |v| vec![(0.0, v), (x_max, v)]),
        reference: true,
    };
    let go_color = RGBColor(0, 114, 178);
    let signerd_color = RGBColor(213, 94, 0);
    let token_color = RGBColor(0, 158, 115);
    let token2_color = RGBColor(120, 120, 120);

    let throughput = vec![
        server_line(Signer::Go, go_color, RunResult::rate),
        server_line(Signer::Signerd, signerd_color, RunResult::rate),
        flat(
            "token only, 1 thread".into(),
            token_color,
            results
                .token(ALGORITHM, 1, TokenLoopReport::rate)
                .map(|s| s.median),
        ),
        flat(
            "token only, 2 threads (2 CPUs)".into(),
            token2_color,
            results
                .token(ALGORITHM, 2, TokenLoopReport::rate)
                .map(|s| s.median),
        ),
    ];
    let p99 = vec![
        server_line(Signer::Go, go_color, |r| r.latency.p99_us / 1e3),
        server_line(Signer::Signerd, signerd_color, |r| r.latency.p99_us / 1e3),
        flat(
            "token only, one C_Sign".into(),
            token_color,
            results
                .token(ALGORITHM, 1, |r| r.latency.p99_us / 1e3)
                .map(|s| s.median),
        ),
    ];

    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    panel(
        &left,
        "ECDSA P-256: signatures per second",
        "signatures/s",
        x_max,
        &throughput,
    )
    .map_err(|e| format!("plot {}: {e}", path.display()))?;
    panel(
        &right,
        "ECDSA P-256: p99 latency",
        "p99 latency (ms)",
        x_max,
        &p99,
    )
    .map_err(|e| format!("plot {}: {e}", path.display()))?;
    root.present().map_err(err)?;
    Ok(())
}

/// One chart: the lines against requests in flight, y from zero.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    x_max: f64,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1e-3)
        // Headroom above the highest line keeps the legend off the data.
        * 1.4;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("requests in flight (one HTTP/2 connection)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y_max >= 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()?;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if !line.reference {
            chart.draw_series(
                line.points
                    .iter()
                    .map(|&p| Circle::new(p, 4, color.filled())),
            )?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
