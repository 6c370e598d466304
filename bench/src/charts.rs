//! The SVG charts next to RESULTS.md: the start-time distributions of
//! table 1, the memory per container and per pod, and the counts along
//! `make soak`, drawn with plotters.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const WASMBOX: RGBColor = RGBColor(0x65, 0x4f, 0xf0);
const RUNC: RGBColor = RGBColor(0x8a, 0x8a, 0x8a);

/// Tick labels: wasmbox under the left column (x = 0.5), runc under the
/// right one (x = 1.5), nothing elsewhere.
fn label(x: f64) -> String {
    if (x - 0.5).abs() < 0.01 {
        "wasmbox".into()
    } else if (x - 1.5).abs() < 0.01 {
        "runc".into()
    } else {
        String::new()
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart with wasmbox in the left column and runc in the right one, from
/// 0 to `top` on the y axis; `draw` puts the data on it.
fn two_columns(
    path: &Path,
    caption: &str,
    y_desc: &str,
    top: f64,
    draw: impl FnOnce(&mut Chart) -> Result<()>,
) -> Result<()> {
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..2.0, 0.0..top)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| label(*x))
        .y_desc(y_desc)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    draw(&mut chart)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Every run as a dot, per runtime, with the median as a bar.
pub fn start_times(path: &Path, wasm: &[Duration], runc: &[Duration]) -> Result<()> {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let top = wasm.iter().chain(runc).map(ms).fold(0.0, f64::max) * 1.15;
    two_columns(
        path,
        "ctr run --rm hello: start time per run",
        "milliseconds",
        top,
        |chart| {
            for (i, (samples, color)) in [(wasm, WASMBOX), (runc, RUNC)].into_iter().enumerate() {
                let center = i as f64 + 0.5;
                let n = samples.len().max(1) as f64;
                chart
                    .draw_series(samples.iter().enumerate().map(|(j, d)| {
                        let jitter = (j as f64 / n - 0.5) * 0.3;
                        Circle::new((center + jitter, ms(d)), 4, color.mix(0.7).filled())
                    }))
                    .map_err(|e| anyhow!("{e}"))?;
                let median = crate::measure::Stats::of(samples).median;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(center - 0.25, ms(&median)), (center + 0.25, ms(&median))],
                        color.stroke_width(3),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            Ok(())
        },
    )
}

/// One bar per runtime (wasmbox, runc) of MiB per unit (container, pod).
pub fn memory(path: &Path, caption: &str, y_desc: &str, mib: [f64; 2]) -> Result<()> {
    let top = mib[0].max(mib[1]) * 1.25;
    two_columns(path, caption, y_desc, top, |chart| {
        for (i, (value, color)) in [(mib[0], WASMBOX), (mib[1], RUNC)].into_iter().enumerate() {
            let center = i as f64 + 0.5;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(center - 0.3, 0.0), (center + 0.3, value)],
                    color.filled(),
                )))
                .map_err(|e| anyhow!("{e}"))?;
        }
        Ok(())
    })
}

/// The growth of each count along the soak, against the cycles done.
pub fn soak(path: &Path, samples: &[(usize, crate::soak::Census)]) -> Result<()> {
    const SERIES: [(&str, &str, f64); 6] = [
        ("wasmbox processes (shims, runners)", "processes", 1.0),
        ("containerd's open fds", "containerd fds", 1.0),
        ("all shims' open fds", "shims' fds", 1.0),
        ("cgroup directories of containers", "cgroup dirs", 1.0),
        ("mounts on the node", "mounts", 1.0),
        (
            "the long-lived pod shim's RSS (KiB)",
            "pod shim RSS (MiB)",
            1.0 / 1024.0,
        ),
    ];
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let growth = |census: &crate::soak::Census, row: &str, scale: f64| {
        (census[row] as f64 - first[row] as f64) * scale
    };
    let last_x = samples.last().map(|(x, _)| *x).unwrap_or(1).max(1) as f64;
    let (mut low, mut high) = (-1.0f64, 1.0f64);
    for (_, census) in samples {
        for (row, _, scale) in SERIES {
            let g = growth(census, row, scale);
            low = low.min(g);
            high = high.max(g);
        }
    }
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "make soak: growth of each count since the start",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last_x, (low * 1.2)..(high * 1.2))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("life cycles done (ctr, then CRI pods)")
        .y_desc("growth")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (row, label, scale)) in SERIES.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                samples
                    .iter()
                    .map(|(x, c)| (*x as f64, growth(c, row, scale))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
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
