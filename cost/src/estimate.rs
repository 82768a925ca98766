//! `rudder estimate`'s arithmetic: a run's FLOPs from its plan, and time, energy, CO2 and
//! price from a calibration (this machine) or a GPU class's datasheet figures.

use serde::{Deserialize, Serialize};

use super::device::GpuClass;
use super::energy::EnergyKind;
use super::flops::{backward_flops, forward_flops, FlopModel, Flops};
use super::meter::CostSettings;

/// What a run will process.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub model: FlopModel,
    /// Training tokens per epoch (non-padding).
    pub tokens: u64,
    pub epochs: f64,
    /// Mean row length, tokens (the attention term).
    pub row_len: f64,
    /// Trainable parameters (full training: the model's; LoRA: the adapters').
    pub trainable: u64,
    /// Optimizer passes over each batch (PPO epochs; 1 otherwise).
    pub updates_per_batch: f64,
}

/// The plan's FLOPs: per token, `updates_per_batch ×` the trained model's forward and
/// backward, plus the stage's extra forward passes once.
pub fn plan_flops(p: &Plan) -> Flops {
    let d = &p.model.dims;
    let s = p.model.stage;
    let t = p.tokens as f64 * p.epochs;
    let fwd = forward_flops(d, s.lm_head(), t, p.row_len);
    let recompute = if p.model.recompute {
        forward_flops(d, false, t, p.row_len)
    } else {
        0.0
    };
    Flops {
        forward: p.updates_per_batch * fwd
            + s.extra_forwards() * forward_flops(d, true, t, p.row_len),
        backward: p.updates_per_batch
            * (backward_flops(d, s.lm_head(), p.trainable, t, p.row_len) + recompute),
    }
}

/// A machine's measured speed and power.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Achieved model FLOP/s.
    pub flop_per_s: f64,
    /// Average power while achieving it, W.
    pub watts: f64,
    pub energy: EnergyKind,
    /// How the figures were made.
    pub source: String,
    /// How the energy was measured or estimated (RAPL zones, or watts × utilisation and why),
    /// said once under the table however many rows share it.
    #[serde(default)]
    pub energy_source: String,
}

/// Expected time, energy, emissions and price of some FLOPs on one machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub machine: String,
    pub flops: f64,
    pub seconds: f64,
    pub energy_kwh: f64,
    pub energy: EnergyKind,
    pub co2_g: f64,
    pub cost: Option<f64>,
    pub how: String,
    /// The calibration's energy source: a note under the table, not in every row.
    pub energy_source: String,
}

/// `flops` at the calibration's speed and power; price from `settings.price_per_hour`.
pub fn estimate(machine: &str, flops: f64, c: &Calibration, settings: &CostSettings) -> Estimate {
    let seconds = if c.flop_per_s > 0.0 {
        flops / c.flop_per_s
    } else {
        f64::INFINITY
    };
    let kwh = c.watts * seconds / 3.6e6;
    Estimate {
        machine: machine.to_string(),
        flops,
        seconds,
        energy_kwh: kwh,
        energy: c.energy,
        co2_g: kwh * settings.grid_gco2_per_kwh,
        cost: settings.price_per_hour.map(|p| p * seconds / 3600.0),
        how: c.source.clone(),
        energy_source: c.energy_source.clone(),
    }
}

/// How every GPU class row's energy is reckoned.
pub const GPU_ENERGY: &str =
    "GPU classes: full board power (TDP) for the whole time, an upper bound";

/// `flops` on a GPU class at `mfu` of its dense bf16 peak, drawing its full board power (an
/// upper bound); no price (the given price is this machine's).
pub fn gpu_estimate(flops: f64, g: &GpuClass, mfu: f64, settings: &CostSettings) -> Estimate {
    let c = Calibration {
        flop_per_s: g.bf16_tflops * 1e12 * mfu,
        watts: g.tdp_w,
        energy: EnergyKind::Estimated,
        source: format!(
            "{:.0}% of {} TFLOP/s dense bf16 at {} W TDP ({})",
            mfu * 100.0,
            g.bf16_tflops,
            g.tdp_w,
            g.source
        ),
        energy_source: GPU_ENERGY.into(),
    };
    let settings = CostSettings {
        price_per_hour: None,
        ..settings.clone()
    };
    estimate(g.name, flops, &c, &settings)
}

#[cfg(test)]
mod tests {
    use super::super::device::gpu_class;
    use super::super::flops::tests::tiny;
    use super::super::flops::StageKind;
    use super::*;

    fn plan(stage: StageKind) -> Plan {
        Plan {
            model: FlopModel {
                dims: tiny(),
                stage,
                recompute: false,
            },
            tokens: 1000,
            epochs: 2.0,
            row_len: 10.0,
            trainable: u64::MAX,
            updates_per_batch: 1.0,
        }
    }

    #[test]
    fn plan_flops_by_stage() {
        // 2000 tokens × (3456 forward + 6912 backward) per token (see flops.rs) = 20,736,000.
        let sft = plan_flops(&plan(StageKind::Sft));
        assert_eq!(sft.total(), 20_736_000.0);
        // DPO adds one reference forward: + 2000 × 3456.
        assert_eq!(plan_flops(&plan(StageKind::Dpo)).total(), 27_648_000.0);
        // PPO, 4 updates: 4 × 10368 + 3 × 3456 = 51,840 per token.
        let ppo = Plan {
            updates_per_batch: 4.0,
            ..plan(StageKind::Ppo)
        };
        assert_eq!(plan_flops(&ppo).total(), 2000.0 * 51_840.0);
    }

    #[test]
    fn time_energy_co2_cost_from_a_fixed_calibration() {
        let c = Calibration {
            flop_per_s: 2e10,
            watts: 60.0,
            energy: EnergyKind::Measured,
            source: "fixed".into(),
            energy_source: "RAPL package-0".into(),
        };
        let s = CostSettings {
            device_watts: None,
            grid_gco2_per_kwh: 400.0,
            price_per_hour: Some(1.8),
        };
        // 7.2e13 FLOPs / 2e10 = 3600 s; 60 W × 1 h = 0.06 kWh; × 400 g = 24 g; 1.8 × 1 h.
        let e = estimate("here", 7.2e13, &c, &s);
        assert_eq!(e.seconds, 3600.0);
        assert!((e.energy_kwh - 0.06).abs() < 1e-12);
        assert!((e.co2_g - 24.0).abs() < 1e-9);
        assert_eq!(e.cost, Some(1.8));
        assert_eq!(e.energy, EnergyKind::Measured);
        // H100 at 50% of 989 TFLOP/s: 9.89e17 FLOPs take 2000 s at 700 W = 0.3889 kWh.
        let h = gpu_class("H100").expect("H100 in the table");
        let g = gpu_estimate(9.89e17, h, 0.5, &s);
        assert!((g.seconds - 2000.0).abs() < 1e-6);
        assert!((g.energy_kwh - 700.0 * 2000.0 / 3.6e6).abs() < 1e-12);
        assert_eq!((g.energy, g.cost), (EnergyKind::Estimated, None));
    }
}
