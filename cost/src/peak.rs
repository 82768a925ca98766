//! What a benchmark measures besides time: peak memory (resident, and on a GPU the device's)
//! and the peak FLOP/s that MFU is measured against.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{Device, DeviceLocation};

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(String::from)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The device's peak FLOP/s that MFU is measured against: the GPU class's dense bf16 peak
/// (NVML name), or the CPU's nominal f32 peak.
pub fn peak_flops(device: &Device) -> crate::DeviceInfo {
    match device.location() {
        DeviceLocation::Cuda { gpu_id } => {
            let name = crate::NvmlGpu::open(gpu_id).ok().and_then(|g| g.name());
            crate::gpu_info(gpu_id, name.as_deref())
        }
        _ => crate::this_cpu(),
    }
}

/// Peak device memory: candle keeps no high-water mark, so a thread polls NVML's used memory
/// (the whole GPU, CUDA context included) every 10 ms and keeps the maximum. None on the CPU.
pub struct PeakDeviceMemory {
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<u64>>,
}

impl PeakDeviceMemory {
    pub fn start(device: &Device) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gpu = match device.location() {
            DeviceLocation::Cuda { gpu_id } => crate::NvmlGpu::open(gpu_id).ok(),
            _ => None,
        };
        let poller = gpu.map(|gpu| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(gpu.memory_used().unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak
            })
        });
        Self { stop, poller }
    }

    /// MiB, or None without a GPU (or NVML).
    pub fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.poller?.join().ok()?;
        Some(peak as f64 / (1024.0 * 1024.0))
    }
}
