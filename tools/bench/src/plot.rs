//! bench.png: latency CDF of the 14 B ping-pong (log-scale x) and throughput by chunk.
//!
//! Text goes through plotters' `ab_glyph` renderer with a TrueType font read at run time
//! (default DejaVu Sans, Debian package `fonts-dejavu-core`; `SMCD_BENCH_FONT` overrides):
//! no fontconfig/freetype system libraries, and no font file in the repository.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::analyze::{label, size_label, Analysis, CHUNKS, CONFIGS};

/// Default font path.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The font file to use.
pub fn font_path() -> PathBuf {
    std::env::var_os("SMCD_BENCH_FONT").map_or_else(|| PathBuf::from(DEFAULT_FONT), PathBuf::from)
}

fn load_font() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = font_path();
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read the plot font {}: {e} (install it: apt-get install -y fonts-dejavu-core, \
                     or set SMCD_BENCH_FONT to a .ttf file)",
                    path.display()
                )
            })?;
            // plotters keeps fonts for the process lifetime: leak the bytes once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{}: not a TrueType font plotters can use", path.display()))
        })
        .clone()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("plot: {e}")
}

/// Draws bench.png (1200x500) at `path`.
pub fn draw(a: &Analysis, path: &Path) -> Result<(), String> {
    load_font()?;
    // The CDF series: (name, 101 percentiles in µs).
    // Colours follow CONFIGS (the same in both panels); the floors take the last two.
    let mut cdfs: Vec<(String, &Vec<f64>, RGBColor)> = Vec::new();
    for (i, (id, name)) in CONFIGS.iter().enumerate() {
        if let Some(c) = a.pp(id, 14).and_then(|l| l.cdf.as_ref()) {
            cdfs.push((name.to_string(), c, COLORS[i]));
        }
    }
    if let Some(c) = a.floor_shm.as_ref().and_then(|l| l.cdf.as_ref()) {
        cdfs.push(("floor: shm ping-pong".into(), c, COLORS[4]));
    }
    if let Some(c) = a.floor_doorbell.as_ref().and_then(|l| l.cdf.as_ref()) {
        cdfs.push(("floor: doorbell".into(), c, COLORS[5]));
    }
    let positive = cdfs
        .iter()
        .flat_map(|(_, c, _)| c.iter().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        (lo / 1.5, hi * 1.5)
    } else {
        (1.0, 1000.0)
    };

    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);

    let mut chart = ChartBuilder::on(&left)
        .caption("14 B ping-pong latency CDF", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round trip (µs, log scale)")
        .y_desc("percentile")
        .draw()
        .map_err(err)?;
    for (name, c, color) in &cdfs {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                c.iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(p, v)| (*v, p as f64)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let max_mbs = a
        .stream
        .values()
        .flat_map(|m| m.values())
        .filter_map(|s| s.receiver_bps)
        .fold(0.0f64, f64::max)
        / 1e6;
    let mut chart = ChartBuilder::on(&right)
        .caption("stream throughput by chunk", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(
            (512.0..2.0 * (1u64 << 20) as f64).log_scale(),
            0.0..(max_mbs * 1.15).max(1.0),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("chunk (bytes, log scale)")
        .y_desc("receiver MB/s")
        .x_label_formatter(&|v| size_label(v.round() as u64))
        .draw()
        .map_err(err)?;
    for (i, (id, _)) in CONFIGS.iter().enumerate() {
        let pts: Vec<(f64, f64)> = CHUNKS
            .iter()
            .filter_map(|c| Some((*c as f64, a.st(id, *c)?.receiver_bps? / 1e6)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = COLORS[i];
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label(id))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{analyze, tests::fixture};

    #[test]
    fn draws_a_png_from_the_fixture() {
        if !font_path().exists() {
            panic!(
                "plot font {} missing: apt-get install -y fonts-dejavu-core",
                font_path().display()
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let png = tmp.path().join("bench.png");
        draw(&analyze(&fixture()), &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.len() > 1000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width 1200, height 500.
        assert_eq!(&bytes[16..24], &[0, 0, 4, 176, 0, 0, 1, 244]);
    }
}
