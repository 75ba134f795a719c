//! `--plot out.svg`: the run at a glance (plotters, SVG backend): hand-over
//! distributions per system and backend (graceful and crash; granted, confirmed and
//! retrieved; every sample a dot, the median a bar), and failover time by number of
//! jobs.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Measurement;
use crate::BoxResult;

/// One row of a distribution panel.
struct Row<'a> {
    label: String,
    m: &'a Measurement,
}

fn rows<'a>(ms: &'a [Measurement], names: &[(&str, &str)]) -> Vec<Row<'a>> {
    let mut out = Vec::new();
    for m in ms {
        if let Some((_, short)) = names.iter().find(|(n, _)| *n == m.name) {
            // Rows of ha-rs carry the bare backend name.
            let system = match m.backend.as_str() {
                b @ ("embedded" | "zookeeper" | "etcd" | "kubernetes") => format!("ha-rs {b}"),
                other => other.to_string(),
            };
            out.push(Row {
                label: format!("{system} {short}"),
                m,
            });
        }
    }
    out
}

/// Draws one distribution panel on a log-scale time axis.
fn distribution(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    rows: &[Row<'_>],
) -> BoxResult<()> {
    let all = rows
        .iter()
        .flat_map(|r| r.m.samples.iter().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo / 1.5, hi * 1.5) } else { (0.1, 10.0) };
    let n = rows.len().max(1) as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(250)
        .build_cartesian_2d((lo..hi).log_scale(), -1..n)?;
    chart
        .configure_mesh()
        .y_labels(rows.len() + 2)
        .y_label_formatter(&|y| {
            usize::try_from(*y)
                .ok()
                .and_then(|i| rows.get(i))
                .map(|r| r.label.clone())
                .unwrap_or_default()
        })
        .x_desc("ms (log scale)")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let y = i as i32;
        chart.draw_series(
            r.m.samples
                .iter()
                .filter(|v| **v > 0.0)
                .map(|&v| Circle::new((v, y), 3, color.mix(0.6).filled())),
        )?;
        if r.m.median > 0.0 {
            chart.draw_series(std::iter::once(Cross::new((r.m.median, y), 7, BLACK.stroke_width(2))))?;
        }
    }
    Ok(())
}

/// Failover time (granted, all recovered) against the number of jobs, per backend.
fn failover(area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, ms: &[Measurement]) -> BoxResult<()> {
    let points = |backend: &str, name: &str| -> Vec<(f64, f64)> {
        ms.iter()
            .filter(|m| m.backend == backend && m.name == name)
            .filter_map(|m| Some((m.extra.get("jobs")?.as_f64()?, m.median)))
            .collect()
    };
    let mut backends: Vec<&str> = ms
        .iter()
        .filter(|m| m.name == "failover_granted")
        .map(|m| m.backend.as_str())
        .collect();
    backends.dedup();
    let values = ms.iter().filter(|m| m.name.starts_with("failover_"));
    let (max_jobs, max_ms) = values.fold((10.0f64, 100.0f64), |(j, t), m| {
        let jobs = m.extra.get("jobs").and_then(|v| v.as_f64()).unwrap_or(1.0);
        (j.max(jobs), t.max(m.median))
    });
    let mut chart = ChartBuilder::on(area)
        .caption("failover after a crash, by number of jobs", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((0.7..max_jobs * 1.5).log_scale(), (50.0..max_ms * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("jobs")
        .y_desc("ms after the crash")
        .draw()?;
    for (i, b) in backends.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (name, what, dashed) in [
            ("failover_granted", "granted", false),
            ("failover_all_recovered", "all recovered", true),
        ] {
            let pts = points(b, name);
            let style = if dashed {
                color.stroke_width(1)
            } else {
                color.stroke_width(2)
            };
            chart
                .draw_series(std::iter::once(PathElement::new(pts.clone(), style)))?
                .label(format!("ha-rs {b} {what}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Writes the SVG of the measurements `ms` to `path`.
pub(crate) fn draw(path: &Path, ms: &[Measurement], title: &str) -> BoxResult<()> {
    let graceful = rows(
        ms,
        &[
            ("graceful_handover_granted", "granted"),
            ("graceful_handover", "confirmed"),
            ("graceful_handover_retrieved", "retrieved"),
        ],
    );
    let crash = rows(
        ms,
        // Granted and confirmed differ by milliseconds here: one of them suffices.
        &[
            ("crash_handover", "confirmed"),
            ("crash_handover_retrieved", "retrieved"),
        ],
    );
    let height = 120 + 22 * (graceful.len() + crash.len()) as u32 + 420;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let g_h = 60 + 22 * graceful.len() as u32;
    let c_h = 60 + 22 * crash.len() as u32;
    let (top, rest) = root.split_vertically(g_h);
    let (middle, bottom) = rest.split_vertically(c_h);
    distribution(&top, "graceful hand-over: leader closes its services", &graceful)?;
    distribution(&middle, "crash hand-over: leader SIGKILLed (includes the TTL)", &crash)?;
    failover(&bottom, ms)?;
    root.present()?;
    Ok(())
}
