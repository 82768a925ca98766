//! The per-run meter: FLOPs, phases, energy, and the report made from them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::device::{gpu_class, gpu_info, this_cpu, DeviceInfo};
use super::energy::{process_cpu_seconds, EnergyKind, GpuEnergy, Rapl};
use super::flops::Flops;
use super::nvml::NvmlGpu;
use super::{CPU_WATTS_PER_THREAD, GPU_DEFAULT_WATTS, WORLD_GCO2_PER_KWH};

/// The user's cost settings (`--device-watts`, `--grid-gco2-per-kwh`, `--price-per-hour`): every
/// trainer, `generate`, `compare` and `estimate` take them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct CostSettings {
    /// Device power at full use, W, for the energy estimate when no counter (RAPL, NVML) can be
    /// read [5 W per CPU thread, or the GPU class's TDP].
    #[arg(long)]
    pub device_watts: Option<f64>,
    /// Grid carbon intensity, gCO2-eq/kWh (481: the 2023 world average, Ember).
    #[arg(long, default_value_t = WORLD_GCO2_PER_KWH)]
    pub grid_gco2_per_kwh: f64,
    /// Machine price per hour (any currency), for the cost line [none].
    #[arg(long)]
    pub price_per_hour: Option<f64>,
}

impl Default for CostSettings {
    fn default() -> Self {
        lm::settings::defaults()
    }
}

/// A phase of a run's wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Data,
    Forward,
    Backward,
    Optimizer,
    Generation,
    Eval,
    Checkpoint,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
            Phase::Generation => "generation",
            Phase::Eval => "eval",
            Phase::Checkpoint => "checkpoint",
        }
    }
}

/// Where joules come from.
pub enum EnergySource {
    Rapl(Rapl),
    Nvml(Box<NvmlGpu>, GpuEnergy),
    /// `watts` at full use, scaled by utilisation (CPU time / wall / threads for CPUs, 1 for
    /// a GPU without NVML); `why` says why nothing was measured.
    Estimated {
        watts: f64,
        why: String,
    },
}

/// The `cost` block of `metrics.jsonl` and `summary.json`. Covers this process's run (a
/// resumed run reports its own part).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// Tokens the model processed (non-padding, as the stage counts them).
    pub tokens: u64,
    /// Positions the model computed: each batch's rows × padded length, padding included
    /// (equal to `tokens` for work without padding). Older blocks lack it: 0.
    #[serde(default)]
    pub padded_tokens: u64,
    /// Model FLOPs (forward + backward); 0 when the model's shape is unknown.
    pub flops: f64,
    pub flops_forward: f64,
    pub flops_backward: f64,
    /// How FLOPs were counted.
    pub flop_rule: String,
    pub wall_s: f64,
    /// Wall time by phase (data, forward, backward, optimizer, generation, eval, checkpoint).
    pub phases_s: BTreeMap<String, f64>,
    pub device: DeviceInfo,
    pub achieved_flop_s: f64,
    /// Achieved over peak FLOP/s (None when the peak is unknown).
    pub utilisation: Option<f64>,
    pub energy_kwh: f64,
    /// `measured` or `estimated`.
    pub energy: EnergyKind,
    /// Which counters, or the estimate's terms.
    pub energy_source: String,
    pub avg_power_w: f64,
    pub grid_gco2_per_kwh: f64,
    pub co2_g: f64,
    pub price_per_hour: Option<f64>,
    /// `price_per_hour × wall hours`.
    pub cost: Option<f64>,
}

impl CostReport {
    /// The sum of several runs' blocks (a pipeline's total): counts, times, energy, CO2 and
    /// price add up; `measured` only when every part was; the device is the first one's.
    pub fn total(parts: &[CostReport]) -> CostReport {
        let mut t = parts.first().cloned().unwrap_or_default();
        for p in parts.iter().skip(1) {
            t.tokens += p.tokens;
            t.padded_tokens += p.padded_tokens;
            t.flops += p.flops;
            t.flops_forward += p.flops_forward;
            t.flops_backward += p.flops_backward;
            t.wall_s += p.wall_s;
            for (k, v) in &p.phases_s {
                *t.phases_s.entry(k.clone()).or_default() += v;
            }
            t.energy_kwh += p.energy_kwh;
            t.co2_g += p.co2_g;
            t.cost = match (t.cost, p.cost) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
            if p.energy == EnergyKind::Estimated {
                t.energy = EnergyKind::Estimated;
            }
            if p.energy_source != t.energy_source {
                t.energy_source = "several sources (see each part)".into();
            }
        }
        if t.wall_s > 0.0 {
            t.achieved_flop_s = t.flops / t.wall_s;
            t.avg_power_w = t.energy_kwh * 3.6e6 / t.wall_s;
        }
        t.utilisation =
            (t.device.peak_flop_s > 0.0).then(|| t.achieved_flop_s / t.device.peak_flop_s);
        t
    }

    /// The human summary printed at the end of a run.
    pub fn lines(&self) -> Vec<String> {
        let phases: Vec<String> = self
            .phases_s
            .iter()
            .filter(|(_, s)| **s > 0.0)
            .map(|(k, s)| format!("{k} {s:.1}s"))
            .collect();
        let util = self
            .utilisation
            .map(|u| format!(" = {:.1}% of peak", u * 100.0))
            .unwrap_or_default();
        let mut out = vec![
            format!(
                "cost: {} tokens ({} padded), {:.3e} FLOPs in {:.1}s ({}) on {} [{}], {:.3e} FLOP/s{util}",
                self.tokens,
                self.padded_tokens,
                self.flops,
                self.wall_s,
                phases.join(", "),
                self.device.device,
                self.device.name,
                self.achieved_flop_s,
            ),
            format!(
                "cost: {} {} ({}; {:.1} W average), {} CO2-eq at {} g/kWh{}",
                human_energy(self.energy_kwh),
                serde_json::to_value(self.energy)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                self.energy_source,
                self.avg_power_w,
                human_co2(self.co2_g),
                self.grid_gco2_per_kwh,
                self.cost
                    .map(|c| format!(", cost {c:.4} at {}/h", self.price_per_hour.unwrap_or(0.0)))
                    .unwrap_or_default(),
            ),
        ];
        if self.flops == 0.0 {
            out[0].push_str(" (model shape unknown: FLOPs not counted)");
        }
        out
    }
}

/// `3.2 kWh`, `41 Wh`, `0.52 mWh`.
pub fn human_energy(kwh: f64) -> String {
    match kwh {
        k if k >= 1.0 => format!("{k:.2} kWh"),
        k if k >= 1e-3 => format!("{:.1} Wh", k * 1e3),
        k => format!("{:.2} mWh", k * 1e6),
    }
}

/// `12 kg`, `3.4 g`, `0.012 g`.
pub fn human_co2(g: f64) -> String {
    match g {
        g if g >= 1000.0 => format!("{:.1} kg", g / 1000.0),
        g if g >= 1.0 => format!("{g:.1} g"),
        g => format!("{g:.3} g"),
    }
}

/// Counts one run. Poll it at least every few minutes (every step does) so energy counters
/// never wrap twice between readings.
pub struct Meter {
    settings: CostSettings,
    device: DeviceInfo,
    source: EnergySource,
    started: Instant,
    cpu_start: Option<f64>,
    joules: f64,
    flops: Flops,
    tokens: u64,
    padded_tokens: u64,
    flop_rule: String,
    phases: BTreeMap<&'static str, f64>,
}

impl Meter {
    /// Meters a run on `device`: NVML for a CUDA device, RAPL under `/sys/class/powercap` for
    /// the CPU, else an estimate.
    pub fn start(device: &candle_core::Device, settings: CostSettings) -> Self {
        let (info, source) = match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => gpu_source(gpu_id, &settings),
            _ => cpu_source(Path::new("/sys/class/powercap"), &settings),
        };
        Self::with_source(info, source, settings)
    }

    /// Meters with a given device description and energy source (tests, fixtures).
    pub fn with_source(device: DeviceInfo, source: EnergySource, settings: CostSettings) -> Self {
        let mut m = Self {
            settings,
            device,
            source,
            started: Instant::now(),
            cpu_start: process_cpu_seconds(),
            joules: 0.0,
            flops: Flops::default(),
            tokens: 0,
            padded_tokens: 0,
            flop_rule: String::new(),
            phases: BTreeMap::new(),
        };
        m.poll();
        m
    }

    /// States how [`Meter::add`]'s FLOPs were counted.
    pub fn set_flop_rule(&mut self, rule: String) {
        self.flop_rule = rule;
    }

    /// Adds the work of one pass: its FLOPs, non-pad tokens and computed (padded) positions.
    pub fn add(&mut self, flops: Flops, tokens: u64, padded_tokens: u64) {
        self.flops += flops;
        self.tokens += tokens;
        self.padded_tokens += padded_tokens;
    }

    /// Adds `since.elapsed()` to `phase`.
    pub fn phase(&mut self, phase: Phase, since: Instant) {
        self.add_seconds(phase, since.elapsed().as_secs_f64());
    }

    /// Adds `seconds` to `phase`.
    pub fn add_seconds(&mut self, phase: Phase, seconds: f64) {
        *self.phases.entry(phase.name()).or_default() += seconds;
    }

    /// Reads the energy counters.
    pub fn poll(&mut self) {
        let t = self.started.elapsed().as_secs_f64();
        match &mut self.source {
            EnergySource::Rapl(r) => {
                if let Ok(j) = r.poll() {
                    self.joules = j;
                }
            }
            EnergySource::Nvml(gpu, acc) => {
                acc.add(gpu.sample(t));
                self.joules = acc.joules;
            }
            EnergySource::Estimated { .. } => {}
        }
    }

    /// The report so far.
    pub fn report(&mut self) -> CostReport {
        self.poll();
        let wall = self.started.elapsed().as_secs_f64();
        let cpu_used = process_cpu_seconds()
            .zip(self.cpu_start)
            .map(|(now, start)| now - start);
        self.report_at(wall, cpu_used)
    }

    /// The report after `wall` seconds in which the process used `cpu_used` CPU seconds.
    pub fn report_at(&self, wall: f64, cpu_used: Option<f64>) -> CostReport {
        let (joules, kind, source) = self.energy(wall, cpu_used);
        let kwh = joules / 3.6e6;
        let achieved = if wall > 0.0 {
            self.flops.total() / wall
        } else {
            0.0
        };
        CostReport {
            tokens: self.tokens,
            padded_tokens: self.padded_tokens,
            flops: self.flops.total(),
            flops_forward: self.flops.forward,
            flops_backward: self.flops.backward,
            flop_rule: self.flop_rule.clone(),
            wall_s: wall,
            phases_s: self
                .phases
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            device: self.device.clone(),
            achieved_flop_s: achieved,
            utilisation: (self.device.peak_flop_s > 0.0)
                .then(|| achieved / self.device.peak_flop_s),
            energy_kwh: kwh,
            energy: kind,
            energy_source: source,
            avg_power_w: if wall > 0.0 { joules / wall } else { 0.0 },
            grid_gco2_per_kwh: self.settings.grid_gco2_per_kwh,
            co2_g: kwh * self.settings.grid_gco2_per_kwh,
            price_per_hour: self.settings.price_per_hour,
            cost: self.settings.price_per_hour.map(|p| p * wall / 3600.0),
        }
    }

    fn energy(&self, wall: f64, cpu_used: Option<f64>) -> (f64, EnergyKind, String) {
        match &self.source {
            EnergySource::Rapl(r) => (self.joules, EnergyKind::Measured, r.describe()),
            EnergySource::Nvml(gpu, acc) => {
                let how = if acc.sampled_power {
                    "sampled power"
                } else {
                    "energy counter"
                };
                let name = gpu.name().unwrap_or_default();
                let src = format!("NVML {how} of {name} (GPU board only)");
                (self.joules, EnergyKind::Measured, src)
            }
            EnergySource::Estimated { watts, why } => {
                let util = match (self.device.device.as_str(), cpu_used) {
                    ("cpu", Some(used)) if wall > 0.0 => {
                        (used / wall / self.device.threads.max(1) as f64).clamp(0.0, 1.0)
                    }
                    _ => 1.0,
                };
                let src = format!(
                    "{watts:.0} W × {:.0}% utilisation × time ({why})",
                    util * 100.0
                );
                (watts * util * wall, EnergyKind::Estimated, src)
            }
        }
    }
}

/// CPU: RAPL when its counters are readable, else threads × [`CPU_WATTS_PER_THREAD`] (or
/// `--device-watts`) × CPU utilisation.
pub fn cpu_source(powercap: &Path, settings: &CostSettings) -> (DeviceInfo, EnergySource) {
    let info = this_cpu();
    let source = match Rapl::open(powercap) {
        Ok(r) => EnergySource::Rapl(r),
        Err(why) => EnergySource::Estimated {
            why: format!("no RAPL counters: {why}"),
            watts: settings
                .device_watts
                .unwrap_or(info.threads as f64 * CPU_WATTS_PER_THREAD),
        },
    };
    (info, source)
}

fn gpu_source(index: usize, settings: &CostSettings) -> (DeviceInfo, EnergySource) {
    match NvmlGpu::open(index) {
        Ok(gpu) => {
            let info = gpu_info(index, gpu.name().as_deref());
            (
                info,
                EnergySource::Nvml(Box::new(gpu), GpuEnergy::default()),
            )
        }
        Err(why) => {
            let info = gpu_info(index, None);
            let watts = settings
                .device_watts
                .or_else(|| gpu_class(&info.name).map(|c| c.tdp_w))
                .unwrap_or(GPU_DEFAULT_WATTS);
            let why = format!("{why}; utilisation assumed 100%");
            (info, EnergySource::Estimated { watts, why })
        }
    }
}
