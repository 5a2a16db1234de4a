//! SVG charts (plotters, SVG backend only: no fonts or bitmaps to depend on).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// A vertical bar chart of `values` labelled by `labels`.
pub fn bars(
    path: &Path,
    title: &str,
    labels: &[String],
    values: &[f32],
    y_label: &str,
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let top = values.iter().fold(0f32, |m, v| m.max(*v)).max(1e-6) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..labels.len()).into_segmented(), 0f32..top)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(labels.len())
        .x_label_style(("sans-serif", 11))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(59, 111, 216).filled())
                .margin(6)
                .data(values.iter().enumerate().map(|(i, v)| (i, *v))),
        )
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Lines `(name, xs, ys)` on one chart; x is each series' own axis, scaled to [0, 1].
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<f32>, Vec<f32>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f32..1f32, 0f32..1.02f32)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("accuracy")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (k, (name, xs, ys)) in series.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        let (lo, hi) = (
            xs.first().copied().unwrap_or(0.0),
            xs.last().copied().unwrap_or(1.0),
        );
        let span = (hi - lo).max(1e-9);
        chart
            .draw_series(LineSeries::new(
                xs.iter().zip(ys).map(|(x, y)| ((x - lo) / span, *y)),
                colour.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
