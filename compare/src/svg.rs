//! Inline SVG plots for the report (no scripts, no external resources).
use crate::html::esc;
use std::fmt::Write;

pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
];

pub fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

/// One model's values.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

/// Finite min and max over all series (widened when they coincide).
fn range(xs: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = xs
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if lo > hi {
        return None;
    }
    Some(if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    })
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Small multiples: one histogram per model over shared bins, so the shapes line up.
pub fn histograms(series: &[Series], xlabel: &str) -> String {
    const BINS: usize = 24;
    let (w, row_h, left, top) = (640.0, 70.0, 110.0, 10.0);
    let Some((lo, hi)) = range(series.iter().flat_map(|s| s.values.iter().copied())) else {
        return "<p>No values to plot.</p>".into();
    };
    let plot_w = w - left - 20.0;
    let h = top + row_h * series.len() as f64 + 40.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(xlabel)
    );
    for (i, se) in series.iter().enumerate() {
        let mut counts = [0usize; BINS];
        for &v in se.values.iter().filter(|v| v.is_finite()) {
            let b = (((v - lo) / (hi - lo)) * BINS as f64) as usize;
            counts[b.min(BINS - 1)] += 1;
        }
        let max = *counts.iter().max().unwrap_or(&1).max(&1) as f64;
        let y0 = top + row_h * (i as f64 + 1.0) - 8.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text><line x1="{left}" x2="{}" y1="{y0}" y2="{y0}" stroke="#999"/>"##,
            left - 8.0,
            y0 - 4.0,
            esc(se.name),
            left + plot_w
        );
        let bw = plot_w / BINS as f64;
        for (b, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            let bh = (row_h - 16.0) * c as f64 / max;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}" opacity="0.8"><title>{c}</title></rect>"#,
                left + b as f64 * bw,
                y0 - bh,
                bw - 1.0,
                se.color
            );
        }
    }
    let yb = top + row_h * series.len() as f64 + 8.0;
    for (t, anchor) in [(lo, "start"), ((lo + hi) / 2.0, "middle"), (hi, "end")] {
        let x = left + plot_w * (t - lo) / (hi - lo);
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{yb}" text-anchor="{anchor}" font-size="11">{}</text>"#,
            fmt(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text></svg>"#,
        left + plot_w / 2.0,
        yb + 20.0,
        esc(xlabel)
    );
    s
}

/// Scatter of per-sample points (small, faint) and one large marker per model mean.
pub fn scatter(series: &[(Series, Series)], xlabel: &str, ylabel: &str) -> String {
    let (w, h, left, bottom, top, right) = (640.0, 360.0, 70.0, 50.0, 10.0, 20.0);
    let xs = range(series.iter().flat_map(|(x, _)| x.values.iter().copied()));
    let ys = range(series.iter().flat_map(|(_, y)| y.values.iter().copied()));
    let (Some((x0, x1)), Some((y0, y1))) = (xs, ys) else {
        return "<p>No values to plot.</p>".into();
    };
    // 5% margins so points on the extremes are not cut by the frame.
    let pad = |a: f64, b: f64| ((a - (b - a) * 0.05), (b + (b - a) * 0.05));
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let (pw, ph) = (w - left - right, h - top - bottom);
    let px = |x: f64| left + pw * (x - x0) / (x1 - x0);
    let py = |y: f64| top + ph * (1.0 - (y - y0) / (y1 - y0));
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{} vs {}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##,
        esc(ylabel),
        esc(xlabel)
    );
    for (xse, yse) in series {
        for (&x, &y) in xse.values.iter().zip(&yse.values) {
            if x.is_finite() && y.is_finite() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}" opacity="0.35"/>"#,
                    px(x),
                    py(y),
                    xse.color
                );
            }
        }
    }
    for (i, (xse, yse)) in series.iter().enumerate() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (mx, my) = (mean(&xse.values), mean(&yse.values));
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="7" fill="{}" stroke="#000"><title>{} mean</title></circle><text x="{}" y="{}" font-size="12" fill="{}">● {}</text>"##,
            px(mx),
            py(my),
            xse.color,
            esc(xse.name),
            left + 8.0,
            top + 16.0 + 15.0 * i as f64,
            xse.color,
            esc(xse.name)
        );
    }
    for (t, a) in [(x0, "start"), (x1, "end")] {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="{a}" font-size="11">{}</text>"#,
            px(t),
            h - bottom + 16.0,
            fmt(t)
        );
    }
    for t in [y0, y1] {
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
            left - 6.0,
            py(t) + 4.0,
            fmt(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text><text x="16" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 16 {})">{}</text></svg>"#,
        left + pw / 2.0,
        h - 12.0,
        esc(xlabel),
        top + ph / 2.0,
        top + ph / 2.0,
        esc(ylabel)
    );
    s
}
