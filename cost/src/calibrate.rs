//! This machine's speed and power for `rudder estimate`: a short calibration run metered as a
//! real run is, or the last `rudder bench train` stored for `--from-bench`.
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;

use crate::{Calibration, CostSettings, EnergyKind, FlopModel, Meter, StageKind};

/// Times `steps` calls of `step` (one training step of `flops_per_step` model FLOPs) after one
/// warm-up call, metering energy as a run does. `what` describes a step for the report.
pub fn calibrate<E>(
    device: &Device,
    settings: &CostSettings,
    flops_per_step: f64,
    steps: usize,
    what: &str,
    mut step: impl FnMut() -> Result<(), E>,
) -> Result<Calibration, E> {
    step()?;
    let mut meter = Meter::start(device, settings.clone());
    let t0 = Instant::now();
    for _ in 0..steps {
        step()?;
        meter.poll();
    }
    let secs = t0.elapsed().as_secs_f64();
    let flop_per_s = flops_per_step * steps as f64 / secs;
    let r = meter.report();
    Ok(Calibration {
        flop_per_s,
        watts: r.avg_power_w,
        energy: r.energy,
        source: format!(
            "calibration: {steps} steps of {what} in {secs:.1} s, {flop_per_s:.3e} FLOP/s, \
             {:.0} W",
            r.avg_power_w
        ),
        energy_source: r.energy_source,
    })
}

/// The FLOPs of one full-training SFT step of `batch` rows of `seq` tokens.
pub fn step_flops(model: &FlopModel, batch: usize, seq: usize) -> f64 {
    let fm = FlopModel {
        stage: StageKind::Sft,
        recompute: false,
        ..model.clone()
    };
    fm.step((batch * seq) as u64, batch, u64::MAX, true).total()
}

/// Where `rudder bench train` keeps its last result: `$RUDDER_CACHE`, else
/// `$XDG_CACHE_HOME/rudder`, else `~/.cache/rudder`.
pub fn bench_path() -> io::Result<PathBuf> {
    let dir = match (
        std::env::var_os("RUDDER_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
    ) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(x)) => PathBuf::from(x).join("rudder"),
        (None, None) => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| io::Error::other("no HOME for the bench cache"))?;
            PathBuf::from(home).join(".cache/rudder")
        }
    };
    Ok(dir.join("last-bench-train.json"))
}

/// Stores a `rudder bench train` result (`step_s` per step of `batch × seq` tokens) as the
/// calibration `rudder estimate --from-bench` uses (power: the defaults, estimated). Returns
/// the file written.
pub fn store_bench(
    model: &FlopModel,
    device: &Device,
    batch: usize,
    seq: usize,
    step_s: f64,
) -> io::Result<PathBuf> {
    let flops = step_flops(model, batch, seq);
    let watts = match device {
        Device::Cpu => crate::cpu_threads() as f64 * crate::CPU_WATTS_PER_THREAD,
        _ => crate::GPU_DEFAULT_WATTS,
    };
    let c = Calibration {
        flop_per_s: flops / step_s,
        watts,
        energy: EnergyKind::Estimated,
        source: format!(
            "rudder bench train: {batch}×{seq} tokens in {step_s:.2} s/step, {:.3e} FLOP/s",
            flops / step_s
        ),
        energy_source: format!("this machine: power estimated at {watts:.0} W (bench)"),
    };
    let path = bench_path()?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&c)?)?;
    Ok(path)
}

/// The stored `rudder bench train` calibration; the error says to run it first.
pub fn load_bench() -> io::Result<Calibration> {
    let path = bench_path()?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: {e} (run `rudder bench train` first)", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}
