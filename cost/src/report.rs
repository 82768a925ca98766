//! Cost as text: the one-line summary every run prints, the pipeline's lines per stage, and
//! `rudder estimate`'s table.
use std::path::PathBuf;

use crate::{human_co2, human_energy, CostReport, Estimate, WORLD_GCO2_SOURCE};

/// `1.2 h`, `35 s`, ...
pub fn human_time(s: f64) -> String {
    match s {
        s if !s.is_finite() => "n/a".into(),
        s if s < 1.0 => format!("{:.2} ms", s * 1e3),
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

fn energy_kind(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|k| k.as_str().map(String::from))
        .unwrap_or_default()
}

/// One line: FLOPs, time, energy (measured or estimated), CO2-eq, price.
pub fn cost_line(c: &CostReport) -> String {
    format!(
        "cost: {:.3e} FLOPs, {}, {} {}, {} CO2-eq{}",
        c.flops,
        human_time(c.wall_s),
        human_energy(c.energy_kwh),
        energy_kind(c.energy),
        human_co2(c.co2_g),
        c.cost
            .map(|p| format!(", price {p:.2}"))
            .unwrap_or_default()
    )
}

/// One line per stage from its `summary.json` cost block (a trainer's loop; compare: its
/// models' sampling), and their total (stages that did not run are left out). The total's time
/// is `wall_s`, the wall time of every stage with its loading, scoring and saving, when known.
pub fn pipeline_cost_lines(stages: &[(&str, PathBuf)], wall_s: Option<f64>) -> Vec<String> {
    let (mut parts, mut lines) = (vec![], vec![]);
    for (stage, dir) in stages {
        let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) else {
            continue;
        };
        let cost = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| summary_cost(&v));
        if let Some(c) = cost {
            lines.push(format!("pipeline: [{stage}] {}", cost_line(&c)));
            parts.push(c);
        }
    }
    if parts.len() > 1 || wall_s.is_some() {
        let mut total = CostReport::total(&parts);
        let wall = wall_s.map(|s| {
            total.wall_s = s;
            " (time: wall clock of every stage, loading and scoring included)"
        });
        let line = cost_line(&total);
        lines.push(format!("pipeline: [total] {line}{}", wall.unwrap_or("")));
    }
    lines
}

/// A trainer's `cost` block, or the total of `rudder compare`'s per-model sampling costs.
fn summary_cost(v: &serde_json::Value) -> Option<CostReport> {
    if let Ok(c) = serde_json::from_value::<CostReport>(v["cost"].clone()) {
        return Some(c);
    }
    let parts: Vec<CostReport> = v["models"]
        .as_array()?
        .iter()
        .filter_map(|m| serde_json::from_value(m["cost"]["cost"].clone()).ok())
        .collect();
    (!parts.is_empty()).then(|| CostReport::total(&parts))
}

/// `rudder estimate`'s table: one row per machine, and the grid intensity used.
pub fn estimate_table(rows: &[Estimate], grid: f64) -> String {
    let mut out = format!(
        "{:<14} {:>11} {:>11} {:>10} {:>10} {:>9}  how\n",
        "machine", "time", "energy", "", "CO2-eq", "cost"
    );
    for e in rows {
        out += &format!(
            "{:<14} {:>11} {:>11} {:>10} {:>10} {:>9}  {}\n",
            e.machine,
            human_time(e.seconds),
            human_energy(e.energy_kwh),
            energy_kind(e.energy),
            human_co2(e.co2_g),
            e.cost
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            e.how
        );
    }
    // Each energy source once, under the table, however many rows share it.
    let mut sources: Vec<&str> = vec![];
    for e in rows.iter().filter(|e| !e.energy_source.is_empty()) {
        if !sources.contains(&e.energy_source.as_str()) {
            sources.push(&e.energy_source);
            out += &format!("energy: {}\n", e.energy_source);
        }
    }
    out + &format!("CO2-eq at {grid} g/kWh (default {WORLD_GCO2_SOURCE}; --grid-gco2-per-kwh)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_lines_per_stage_and_total() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let block = |kwh: f64, kind: &str| {
            serde_json::json!({"steps": 1, "cost": {
                "tokens": 10, "flops": 1e9, "flops_forward": 0.0, "flops_backward": 0.0,
                "flop_rule": "", "wall_s": 30.0, "phases_s": {}, "device": {"device": "cpu",
                "name": "x", "threads": 1, "peak_flop_s": 0.0, "peak_source": ""},
                "achieved_flop_s": 0.0, "utilisation": null, "energy_kwh": kwh,
                "energy": kind, "energy_source": "s", "avg_power_w": 0.0,
                "grid_gco2_per_kwh": 500.0, "co2_g": kwh * 500.0, "price_per_hour": null,
                "cost": null}})
        };
        for (stage, kwh, kind) in [("sft", 0.002, "measured"), ("dpo", 0.001, "estimated")] {
            std::fs::create_dir(dir.path().join(stage))?;
            let text = block(kwh, kind).to_string();
            std::fs::write(dir.path().join(stage).join("summary.json"), text)?;
        }
        let stages = ["sft", "reward", "dpo"].map(|s| (s, dir.path().join(s)));
        let lines = pipeline_cost_lines(&stages, None);
        assert_eq!(lines.len(), 3, "{lines:?}");
        // compare: its models' sampling costs add up into one line.
        // As compare's summary.json: models[i].cost = {model, rows, generated_tokens, cost}.
        let side = |kwh| {
            let c = block(kwh, "measured")["cost"].clone();
            serde_json::json!({"name": "m", "cost": {"model": "m", "rows": 1, "cost": c}})
        };
        let compare = serde_json::json!({"models": [side(0.001), side(0.002)]});
        std::fs::create_dir(dir.path().join("compare"))?;
        std::fs::write(dir.path().join("compare/summary.json"), compare.to_string())?;
        let with = pipeline_cost_lines(&[("compare", dir.path().join("compare"))], None);
        assert_eq!(
            with,
            ["pipeline: [compare] cost: 2.000e9 FLOPs, 60.0 s, 3.0 Wh measured, 1.5 g CO2-eq"]
        );
        assert_eq!(
            lines[0],
            "pipeline: [sft] cost: 1.000e9 FLOPs, 30.0 s, 2.0 Wh measured, 1.0 g CO2-eq"
        );
        assert_eq!(
            lines[2],
            "pipeline: [total] cost: 2.000e9 FLOPs, 60.0 s, 3.0 Wh estimated, 1.5 g CO2-eq"
        );
        assert_eq!(human_time(5400.0), "90.0 min");
        // The energy note is said once under the estimate table, not in every row.
        let row = |machine: &str, src: &str| Estimate {
            machine: machine.into(),
            flops: 1e12,
            seconds: 60.0,
            energy_kwh: 1e-3,
            energy: crate::EnergyKind::Estimated,
            co2_g: 0.5,
            cost: None,
            how: format!("{machine} speed"),
            energy_source: src.into(),
        };
        let rapl = "10 W × 50% utilisation × time (no RAPL counters: none)";
        let gpu = crate::estimate::GPU_ENERGY;
        let table = estimate_table(
            &[row("here", rapl), row("H100", gpu), row("L4", gpu)],
            481.0,
        );
        assert_eq!(table.matches("no RAPL counters").count(), 1, "{table}");
        assert_eq!(table.matches("upper bound").count(), 1, "{table}");
        let notes: Vec<&str> = table.lines().skip(4).collect();
        assert!(
            notes[0].starts_with("energy: 10 W") && notes[1].starts_with("energy: GPU"),
            "{table}"
        );
        // The pipeline's wall time replaces the sum of the metered parts (60 s) in the total.
        let walled = pipeline_cost_lines(&stages, Some(408.0));
        assert!(walled[2].contains(", 6.8 min, 3.0 Wh"), "{walled:?}");
        assert!(
            walled[2].ends_with("loading and scoring included)"),
            "{walled:?}"
        );
        Ok(())
    }
}
