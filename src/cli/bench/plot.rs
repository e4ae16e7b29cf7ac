//! The chart of a sweep: calls/s and p99 latency against player count, as SVG.

use super::load::Protocol;
use super::Outcome;
use plotters::prelude::*;
use std::path::Path;

pub fn write_svg(
    path: &Path,
    outcomes: &[Outcome],
    protocol: Protocol,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    let max_players = outcomes
        .iter()
        .map(|o| o.players)
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let max_rate = outcomes.iter().map(|o| o.calls_per_sec).fold(1.0, f64::max) * 1.15;
    let max_p99 = outcomes
        .iter()
        .map(|o| o.p99_us as f64 / 1000.0)
        .fold(0.1, f64::max)
        * 1.15;
    let name = format!("{protocol:?}").to_lowercase();

    let mut rate = ChartBuilder::on(&left)
        .caption(format!("{name}: calls/s"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((1f64..max_players).log_scale(), 0f64..max_rate)?;
    rate.configure_mesh()
        .x_desc("players")
        .y_desc("calls/s")
        .draw()?;
    let points: Vec<(f64, f64)> = outcomes
        .iter()
        .map(|o| (o.players as f64, o.calls_per_sec))
        .collect();
    rate.draw_series(LineSeries::new(points.clone(), &BLUE))?;
    rate.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;

    let mut p99 = ChartBuilder::on(&right)
        .caption(format!("{name}: p99 latency"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((1f64..max_players).log_scale(), 0f64..max_p99)?;
    p99.configure_mesh()
        .x_desc("players")
        .y_desc("p99 (ms)")
        .draw()?;
    let points: Vec<(f64, f64)> = outcomes
        .iter()
        .map(|o| (o.players as f64, o.p99_us as f64 / 1000.0))
        .collect();
    p99.draw_series(LineSeries::new(points.clone(), &RED))?;
    p99.draw_series(points.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
    root.present()?;
    Ok(())
}
