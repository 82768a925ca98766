//! What a run costs: tokens (non-pad and padded), model FLOPs, wall time by phase, energy
//! (measured or estimated), CO2-eq and price. A [`Meter`] is started by the training loop
//! (`train::run`, from the `TrainerConfig`'s [`CostSettings`] and [`FlopModel`]) and by
//! sampling (`rudder generate`, `rudder compare`), fed FLOPs and phase times, and turned into a
//! [`CostReport`] for `metrics.jsonl` and `summary.json`. Before a run, [`estimate`] prices
//! its FLOPs on this machine ([`calibrate`]) and on GPU classes. Knows no stage: it depends on
//! `lm` only (for model configs and LoRA's adapted projections).

pub mod calibrate;
mod device;
mod energy;
mod estimate;
mod flops;
mod generation;
mod meter;
mod model;
mod nvml;
mod peak;
mod report;

pub use device::{
    cpu_info, cpu_threads, gpu_class, gpu_info, this_cpu, DeviceInfo, GpuClass, GPU_CLASSES,
};
pub use energy::{counter_delta, process_cpu_seconds, EnergyKind, GpuEnergy, GpuSample, Rapl};
pub use estimate::{estimate, gpu_estimate, plan_flops, Calibration, Estimate, Plan};
pub use flops::{backward_flops, forward_flops, FlopModel, Flops, ModelDims, StageKind};
pub use generation::{GenerationCount, GENERATION_FLOP_RULE};
pub use meter::{
    cpu_source, human_co2, human_energy, CostReport, CostSettings, EnergySource, Meter, Phase,
};
pub use model::{flop_model, model_config, model_dims};
pub use nvml::NvmlGpu;
pub use peak::{peak_flops, peak_rss_mib, PeakDeviceMemory};
pub use report::{cost_line, estimate_table, human_time, pipeline_cost_lines};

/// Default grid carbon intensity, gCO2-eq/kWh: the 2023 world average of electricity
/// generation, lifecycle emissions (Ember, Global Electricity Review 2024 / Ember electricity
/// data, July 2024).
pub const WORLD_GCO2_PER_KWH: f64 = 481.0;

/// Where [`WORLD_GCO2_PER_KWH`] comes from, for reports.
pub const WORLD_GCO2_SOURCE: &str = "2023 world average, Ember electricity data 2024";

/// Estimated CPU power per busy thread, W, when `--device-watts` is not given: a server CPU's
/// TDP over its threads (e.g. 360 W / 192 threads ≈ 1.9 W for an EPYC 9654, 350 W / 112 ≈
/// 3.1 W for a Xeon 8480+), rounded up to 5 W to cover DRAM and idle package power.
pub const CPU_WATTS_PER_THREAD: f64 = 5.0;

/// Estimated GPU power, W, when NVML is unavailable, the GPU class is unknown and
/// `--device-watts` is not given.
pub const GPU_DEFAULT_WATTS: f64 = 300.0;
