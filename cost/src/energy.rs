//! Energy counters: Linux powercap (Intel/AMD RAPL) for the CPU package and DRAM, NVML for
//! NVIDIA GPUs, or an estimate from utilisation × a device power. Every figure says which.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Whether an energy figure was read from a counter or estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyKind {
    Measured,
    #[default]
    Estimated,
}

/// Joules between two readings of a counter that wraps to 0 after `max` (powercap's
/// `max_energy_range_uj`): a smaller reading means it wrapped once.
pub fn counter_delta(prev: u64, now: u64, max: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        max.saturating_sub(prev) + now
    }
}

struct Zone {
    name: String,
    energy: PathBuf,
    max_uj: u64,
    last_uj: u64,
}

/// The RAPL zones under a powercap root (normally `/sys/class/powercap`): every package
/// (`intel-rapl:N`, not `psys`, which contains the packages) and every `dram` subzone
/// (`intel-rapl:N:M`; core/uncore subzones are inside their package).
pub struct Rapl {
    zones: Vec<Zone>,
    total_uj: u128,
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: `{}`: {e}", path.display(), text.trim()))
}

impl Rapl {
    /// Opens the zones, reading each counter once. `Err` says why there is no measurement
    /// (no powercap, or `energy_uj` readable only by root, as on most distributions).
    pub fn open(root: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:"))
            })
            .collect();
        dirs.sort();
        let mut zones = Vec::new();
        for dir in dirs {
            let id = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let sub = id.matches(':').count() > 1;
            let name = std::fs::read_to_string(dir.join("name")).unwrap_or_default();
            let name = name.trim().to_string();
            if (sub && name != "dram") || (!sub && name == "psys") {
                continue;
            }
            let energy = dir.join("energy_uj");
            zones.push(Zone {
                last_uj: read_u64(&energy)?,
                max_uj: read_u64(&dir.join("max_energy_range_uj"))?,
                name,
                energy,
            });
        }
        if zones.is_empty() {
            return Err(format!("{}: no RAPL zones", root.display()));
        }
        Ok(Self { zones, total_uj: 0 })
    }

    /// Reads every counter and returns the joules since `open`. Call it more often than the
    /// counters wrap (minutes at full load) so no wrap goes unseen.
    pub fn poll(&mut self) -> Result<f64, String> {
        for z in &mut self.zones {
            let now = read_u64(&z.energy)?;
            self.total_uj += counter_delta(z.last_uj, now, z.max_uj) as u128;
            z.last_uj = now;
        }
        Ok(self.total_uj as f64 * 1e-6)
    }

    /// `RAPL package-0 + dram` and so on.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        format!(
            "RAPL {} (whole CPU package and DRAM, all processes)",
            names.join(" + ")
        )
    }
}

/// One reading of an NVIDIA GPU as NVML reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// Seconds since the first sample.
    pub t_s: f64,
    /// `nvmlDeviceGetTotalEnergyConsumption`: mJ since the driver loaded (Volta and newer).
    pub total_energy_mj: Option<u64>,
    /// `nvmlDeviceGetPowerUsage`: mW now.
    pub power_mw: Option<u32>,
    /// `nvmlDeviceGetUtilizationRates().gpu`: percent of time a kernel ran.
    pub utilization_pct: Option<u32>,
}

/// Joules from a series of [`GpuSample`]s: differences of the energy counter (a smaller value
/// means the driver reloaded and the counter restarted from 0), else power × time between
/// samples (trapezoids).
#[derive(Clone, Debug, Default)]
pub struct GpuEnergy {
    last: Option<GpuSample>,
    pub joules: f64,
    /// Whether any interval had to use sampled power.
    pub sampled_power: bool,
    util_sum: f64,
    util_n: usize,
}

impl GpuEnergy {
    pub fn add(&mut self, s: GpuSample) {
        if let Some(u) = s.utilization_pct {
            self.util_sum += u as f64 / 100.0;
            self.util_n += 1;
        }
        if let Some(prev) = self.last {
            self.joules += match (prev.total_energy_mj, s.total_energy_mj) {
                (Some(a), Some(b)) => (if b >= a { b - a } else { b }) as f64 * 1e-3,
                _ => {
                    self.sampled_power = true;
                    let (a, b) = (prev.power_mw.unwrap_or(0), s.power_mw.unwrap_or(0));
                    (a as f64 + b as f64) * 0.5e-3 * (s.t_s - prev.t_s).max(0.0)
                }
            };
        }
        self.last = Some(s);
    }

    /// Mean utilisation over the samples that had one.
    pub fn utilization(&self) -> Option<f64> {
        (self.util_n > 0).then(|| self.util_sum / self.util_n as f64)
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat, clock_ticks())
}

fn clock_ticks() -> f64 {
    // _SC_CLK_TCK is 100 on every Linux ABI Rudder builds for.
    100.0
}

/// utime + stime (fields 14 and 15, after the parenthesised command name) in seconds.
fn parse_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_resets() {
        assert_eq!(counter_delta(100, 250, 1000), 150);
        // 950 -> wrapped at 1000 -> 30: 50 + 30.
        assert_eq!(counter_delta(950, 30, 1000), 80);
        let mut g = GpuEnergy::default();
        let s = |t_s, e: Option<u64>, p| GpuSample {
            t_s,
            total_energy_mj: e,
            power_mw: p,
            utilization_pct: Some(50),
        };
        g.add(s(0.0, Some(1_000), None));
        g.add(s(1.0, Some(301_000), None)); // +300 J
        g.add(s(2.0, Some(20_000), None)); // driver reload: +20 J
        g.add(s(4.0, None, Some(100_000))); // counter gone, 100 W, previous power unknown (0)
        g.add(s(6.0, None, Some(200_000))); // (100 + 200)/2 W × 2 s = 300 J
        assert!((g.joules - (300.0 + 20.0 + 100.0 + 300.0)).abs() < 1e-9);
        assert!(g.sampled_power);
        assert_eq!(g.utilization(), Some(0.5));
    }

    #[test]
    fn parses_proc_stat() {
        // A command name with spaces and parentheses; utime 250 ticks, stime 50.
        let stat = "42 (my (odd) cmd) R 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 2 0";
        assert_eq!(parse_cpu_seconds(stat, 100.0), Some(3.0));
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
