//! The roofline as SVG (plotters): arithmetic intensity against achieved GFLOP/s, one point
//! per kernel, each adapter's two measured ceilings as lines.

use std::path::Path;

use plotters::prelude::*;
use vlbridge::diagnostics::Ceilings;
use vlbridge::{Error, Result};

/// One adapter's ceilings and (label, FLOP/byte, GFLOP/s) points.
pub struct Series {
    pub label: String,
    pub ceilings: Ceilings,
    pub points: Vec<(String, f64, f64)>,
}

pub fn draw(path: &Path, series: &[Series]) -> Result<()> {
    draw_inner(path, series).map_err(|e| Error::File { path: path.display().to_string(), problem: e.to_string() })
}

fn draw_inner(path: &Path, series: &[Series]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_min = points().map(|p| p.1).fold(0.1f64, f64::min) / 2.0;
    let x_max = points().map(|p| p.1).fold(100.0f64, f64::max) * 2.0;
    let y_max = series.iter().map(|s| s.ceilings.gflops).fold(1.0f64, f64::max) * 3.0;
    let y_min = points().map(|p| p.2).filter(|v| *v > 0.0).fold(y_max / 1e4, f64::min) / 2.0;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("vlbridge roofline (measured ceilings)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart.configure_mesh().x_desc("arithmetic intensity (FLOP / byte)").y_desc("achieved GFLOP/s").draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // The roofline: bandwidth-bound slope until the ridge, then flat at peak FMA.
        let ridge = s.ceilings.gflops / s.ceilings.gbps;
        let line = vec![(x_min, x_min * s.ceilings.gbps), (ridge, s.ceilings.gflops), (x_max, s.ceilings.gflops)];
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(format!("{}: {:.0} GFLOP/s, {:.0} GB/s", s.label, s.ceilings.gflops, s.ceilings.gbps))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|p| Circle::new((p.1, p.2), 5, color.filled())))?;
        chart.draw_series(s.points.iter().map(|p| Text::new(p.0.clone(), (p.1, p.2), ("sans-serif", 12))))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
