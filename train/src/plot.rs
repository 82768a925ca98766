//! A dependency-free SVG line plot of `metrics.jsonl` series (e.g. the loss curve).

use std::fmt::Write as _;
use std::path::Path;

use crate::{Error, Result};

const W: f64 = 800.0;
const H: f64 = 400.0;
const MARGIN: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

type Series = (String, Vec<(f64, f64)>);

/// Plots the given keys of `metrics.jsonl` against `step` into `out_svg`.
/// Lines without a key (or with a non-finite value) are skipped for that series.
pub fn write_svg_plot(metrics_jsonl: &Path, out_svg: &Path, series: &[&str]) -> Result<()> {
    let text = std::fs::read_to_string(metrics_jsonl).map_err(Error::io(metrics_jsonl))?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let data: Vec<Series> = series
        .iter()
        .map(|key| {
            let pts = rows
                .iter()
                .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(*key)?.as_f64()?)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            (key.to_string(), pts)
        })
        .collect();
    std::fs::write(out_svg, render(&data)).map_err(Error::io(out_svg))
}

/// `(min, max)` over the values, widened when flat so the scale is never 0.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

fn render(data: &[Series]) -> String {
    let all = || data.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = range(all().map(|p| p.0));
    let (y0, y1) = range(all().map(|p| p.1));
    let sx = |x: f64| MARGIN + (x - x0) / (x1 - x0) * (W - 2.0 * MARGIN);
    let sy = |y: f64| H - MARGIN - (y - y0) / (y1 - y0) * (H - 2.0 * MARGIN);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // Writing into a String cannot fail, hence the ignored fmt results.
    let (l, r, b, t) = (MARGIN, W - MARGIN, H - MARGIN, MARGIN);
    let _ = writeln!(
        svg,
        "<path d=\"M{l} {t} L{l} {b} L{r} {b}\" stroke=\"black\" fill=\"none\"/>"
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (xv, yv) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            sx(xv),
            b + 18.0,
            fmt_num(xv)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            l - 6.0,
            sy(yv) + 4.0,
            fmt_num(yv)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">step</text>",
        W / 2.0,
        H - 15.0
    );
    for (i, (name, pts)) in data.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" stroke=\"{color}\" fill=\"none\" stroke-width=\"1.5\"/>",
            coords.join(" ")
        );
        let ly = t - 30.0 + 14.0 * i as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{color}\">{}</text>",
            r - 150.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn fmt_num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_present_series() -> Result<()> {
        let dir = tempfile::tempdir().map_err(Error::io(Path::new("tmp")))?;
        let (m, out) = (dir.path().join("m.jsonl"), dir.path().join("p.svg"));
        let lines =
            "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.0,\"eval_loss\":1.5}\nnot json\n";
        std::fs::write(&m, lines).map_err(Error::io(&m))?;
        write_svg_plot(&m, &out, &["loss", "eval_loss", "absent"])?;
        let svg = std::fs::read_to_string(&out).map_err(Error::io(&out))?;
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("eval_loss"));
        Ok(())
    }
}
