//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time:
//! machines without the driver build and run the same binary and fall back to estimates).

use super::energy::GpuSample;

/// One GPU opened through NVML.
pub struct NvmlGpu {
    nvml: nvml_wrapper::Nvml,
    index: u32,
}

/// The NVML index of CUDA device `cuda_index`: `CUDA_VISIBLE_DEVICES` renumbers devices for
/// CUDA but not for NVML (numeric lists only; UUID lists keep the index as is).
fn nvml_index(cuda_index: usize) -> u32 {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    visible
        .split(',')
        .nth(cuda_index)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(cuda_index as u32)
}

impl NvmlGpu {
    /// Loads NVML and opens the GPU behind CUDA device `cuda_index`; `Err` says why not.
    pub fn open(cuda_index: usize) -> Result<Self, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
        let index = nvml_index(cuda_index);
        nvml.device_by_index(index)
            .map_err(|e| format!("NVML device {index}: {e}"))?;
        Ok(Self { nvml, index })
    }

    pub fn name(&self) -> Option<String> {
        self.nvml.device_by_index(self.index).ok()?.name().ok()
    }

    /// Device memory in use now (all processes), bytes; `None` when NVML cannot say.
    pub fn memory_used(&self) -> Option<u64> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        d.memory_info().ok().map(|m| m.used)
    }

    /// The counters now; a field NVML cannot give stays `None`.
    pub fn sample(&self, t_s: f64) -> GpuSample {
        let Ok(d) = self.nvml.device_by_index(self.index) else {
            return GpuSample {
                t_s,
                ..Default::default()
            };
        };
        GpuSample {
            t_s,
            total_energy_mj: d.total_energy_consumption().ok(),
            power_mw: d.power_usage().ok(),
            utilization_pct: d.utilization_rates().ok().map(|u| u.gpu),
        }
    }
}
