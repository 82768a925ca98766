//! What the run is on: CPU (threads, nominal peak FLOP/s) or an NVIDIA GPU (NVML name, class
//! peak), and the GPU classes `rudder estimate` compares against.

use serde::{Deserialize, Serialize};

/// A GPU class's datasheet figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuClass {
    pub name: &'static str,
    /// Dense bf16 tensor-core peak (no sparsity), TFLOP/s.
    pub bf16_tflops: f64,
    /// Board power (TDP / TBP), W.
    pub tdp_w: f64,
    /// Where the figures come from.
    pub source: &'static str,
}

/// NVIDIA datasheet figures (dense, i.e. half the "with sparsity" numbers). Matched against
/// NVML device names by substring, longest name first (so "H100" does not match "H100 NVL").
pub const GPU_CLASSES: &[GpuClass] = &[
    GpuClass {
        name: "B200",
        bf16_tflops: 2250.0,
        tdp_w: 1000.0,
        source: "NVIDIA DGX B200 datasheet (HGX B200, 4.5 PFLOPS sparse bf16)",
    },
    GpuClass {
        name: "H200",
        bf16_tflops: 989.0,
        tdp_w: 700.0,
        source: "NVIDIA H200 datasheet (SXM)",
    },
    GpuClass {
        name: "H100",
        bf16_tflops: 989.0,
        tdp_w: 700.0,
        source: "NVIDIA H100 datasheet (SXM)",
    },
    GpuClass {
        name: "A100",
        bf16_tflops: 312.0,
        tdp_w: 400.0,
        source: "NVIDIA A100 datasheet (SXM)",
    },
    GpuClass {
        name: "L40S",
        bf16_tflops: 362.0,
        tdp_w: 350.0,
        source: "NVIDIA L40S datasheet",
    },
    GpuClass {
        name: "A10",
        bf16_tflops: 125.0,
        tdp_w: 150.0,
        source: "NVIDIA A10 datasheet",
    },
    GpuClass {
        name: "L4",
        bf16_tflops: 121.0,
        tdp_w: 72.0,
        source: "NVIDIA L4 datasheet",
    },
    GpuClass {
        name: "RTX 4090",
        bf16_tflops: 165.0,
        tdp_w: 450.0,
        source: "NVIDIA Ada architecture whitepaper (bf16, fp32 accumulate)",
    },
];

/// The class named `name` (case-insensitive; "h100" finds H100), or the class whose name an
/// NVML device name contains ("NVIDIA H200" -> H200).
pub fn gpu_class(name: &str) -> Option<&'static GpuClass> {
    let up = name.to_ascii_uppercase();
    let mut classes: Vec<&GpuClass> = GPU_CLASSES.iter().collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.name.len()));
    classes
        .into_iter()
        .find(|c| up == c.name.to_ascii_uppercase() || up.contains(&c.name.to_ascii_uppercase()))
}

/// The machine a run used, as reported in every cost block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// CPU model or GPU name.
    pub name: String,
    /// Threads the CPU kernels use.
    pub threads: usize,
    /// Peak FLOP/s utilisation is measured against (0 when unknown).
    pub peak_flop_s: f64,
    /// How the peak was made.
    pub peak_source: String,
}

/// Threads candle's CPU kernels run on: `RAYON_NUM_THREADS`, else every available CPU.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The CPU's model name and nominal f32 peak: threads × clock × FLOPs per cycle from the ISA
/// flags in `/proc/cpuinfo` (2 FMA pipes: AVX-512 64 on Intel, 32 on AMD Zen 4, which splits
/// 512-bit ops; AVX2+FMA 32; else 8).
pub fn cpu_info(cpuinfo: &str, threads: usize) -> DeviceInfo {
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let mhz: f64 = field("cpu MHz").and_then(|m| m.parse().ok()).unwrap_or(0.0);
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let amd = field("vendor_id").is_some_and(|v| v.contains("AMD"));
    let per_cycle = match (has("avx512f"), has("avx2") && has("fma")) {
        (true, _) if !amd => 64.0,
        (true, _) | (false, true) => 32.0,
        _ => 8.0,
    };
    let peak = threads as f64 * mhz * 1e6 * per_cycle;
    DeviceInfo {
        device: "cpu".into(),
        name,
        threads,
        peak_flop_s: peak,
        peak_source: format!(
            "nominal f32: {threads} threads × {mhz:.0} MHz × {per_cycle} FLOP/cycle"
        ),
    }
}

/// This machine's CPU.
pub fn this_cpu() -> DeviceInfo {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_info(&text, cpu_threads())
}

/// A GPU known by name (from NVML, or unknown).
pub fn gpu_info(index: usize, name: Option<&str>) -> DeviceInfo {
    let class = name.and_then(gpu_class);
    DeviceInfo {
        device: format!("cuda:{index}"),
        name: name.unwrap_or("unknown NVIDIA GPU").to_string(),
        threads: cpu_threads(),
        peak_flop_s: class.map_or(0.0, |c| c.bf16_tflops * 1e12),
        peak_source: class.map_or("unknown GPU class: no peak".into(), |c| {
            format!(
                "{} dense bf16 {} TFLOP/s ({})",
                c.name, c.bf16_tflops, c.source
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_cpu_peak() {
        assert_eq!(gpu_class("NVIDIA H200").map(|c| c.name), Some("H200"));
        assert_eq!(gpu_class("h100").map(|c| c.bf16_tflops), Some(989.0));
        assert_eq!(gpu_class("NVIDIA L40S").map(|c| c.name), Some("L40S"));
        assert_eq!(gpu_class("NVIDIA L4").map(|c| c.name), Some("L4"));
        assert!(gpu_class("Tesla K80").is_none());
        let info = "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2500.000\n\
                    flags\t\t: fpu avx2 fma avx512f\n";
        let d = cpu_info(info, 2);
        assert_eq!(d.name, "AMD EPYC");
        assert_eq!(d.peak_flop_s, 2.0 * 2500e6 * 32.0);
        let intel = info.replace("AuthenticAMD", "GenuineIntel");
        assert_eq!(cpu_info(&intel, 1).peak_flop_s, 2500e6 * 64.0);
    }
}
