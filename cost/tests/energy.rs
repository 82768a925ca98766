//! Energy readers on fixture copies of powercap and NVML readings, the measured / estimated
//! labels of the cost block, and a pipeline's total.

use std::path::{Path, PathBuf};

use cost::{
    cpu_source, CostSettings, DeviceInfo, EnergyKind, EnergySource, GpuEnergy, GpuSample, Meter,
    Rapl,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies the powercap fixture so the test can move its counters.
fn powercap_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixtures().join("powercap");
    for zone in std::fs::read_dir(&src).expect("fixture") {
        let zone = zone.expect("entry").path();
        let to = dir.path().join(zone.file_name().expect("name"));
        std::fs::create_dir(&to).expect("mkdir");
        for f in std::fs::read_dir(&zone).expect("zone") {
            let f = f.expect("file").path();
            std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

fn set(root: &Path, zone: &str, uj: u64) {
    std::fs::write(root.join(zone).join("energy_uj"), format!("{uj}\n")).expect("write");
}

#[test]
fn rapl_counts_package_and_dram_across_a_wrap() {
    let dir = powercap_copy();
    let mut rapl = Rapl::open(dir.path()).expect("zones");
    // psys contains the package and core is inside it: only package-0 and dram count.
    assert_eq!(
        rapl.describe(),
        "RAPL package-0 + dram (whole CPU package and DRAM, all processes)"
    );
    // The package wraps: 262143000000 -> max 262143328850 -> 0 -> 1000000 (1.32885 J);
    // dram 5000000 -> 7000000 (2 J). psys and core moves are ignored.
    set(dir.path(), "intel-rapl:0", 1_000_000);
    set(dir.path(), "intel-rapl:0:1", 7_000_000);
    set(dir.path(), "intel-rapl:1", 999_999_999_999);
    set(dir.path(), "intel-rapl:0:0", 1);
    let j = rapl.poll().expect("poll");
    assert!((j - 3.32885).abs() < 1e-9, "{j}");
    // No change since: still the same total.
    assert!((rapl.poll().expect("poll") - 3.32885).abs() < 1e-9);
    // A counter that is not a number names the file.
    std::fs::write(dir.path().join("intel-rapl:0/energy_uj"), "n/a").expect("write");
    let err = rapl.poll().expect_err("bad counter");
    assert!(err.contains("intel-rapl:0/energy_uj"), "{err}");
}

#[test]
fn nvml_readings_with_driver_reload_and_missing_counter() {
    let text = std::fs::read_to_string(fixtures().join("nvml_samples.jsonl")).expect("fixture");
    let mut g = GpuEnergy::default();
    for line in text.lines() {
        g.add(serde_json::from_str::<GpuSample>(line).expect("sample"));
    }
    // 300 J + 450 J, reload: 412 J, then power (430 + 440) / 2 W × 1 s = 435 J.
    assert!((g.joules - 1597.0).abs() < 1e-9, "{}", g.joules);
    assert!(g.sampled_power);
    // (0 + 97 + 99 + 98 + 96) / 5 %
    assert!((g.utilization().expect("util") - 0.78).abs() < 1e-12);
}

#[test]
fn without_counters_the_energy_is_estimated_and_says_so() {
    let settings = CostSettings {
        device_watts: Some(10.0),
        grid_gco2_per_kwh: 500.0,
        price_per_hour: Some(3.6),
    };
    let dir = powercap_copy();
    let (_, measured) = cpu_source(dir.path(), &settings);
    assert!(matches!(measured, EnergySource::Rapl(_)));
    let (_, fallback) = cpu_source(&dir.path().join("missing"), &settings);
    let EnergySource::Estimated { watts, .. } = &fallback else {
        panic!("expected an estimate without powercap");
    };
    assert_eq!(*watts, 10.0);

    let cpu = DeviceInfo {
        device: "cpu".into(),
        name: "test CPU".into(),
        threads: 2,
        peak_flop_s: 1e9,
        peak_source: "test".into(),
    };
    let mut m = Meter::with_source(cpu.clone(), fallback, settings.clone());
    m.add(
        cost::Flops {
            forward: 1e10,
            backward: 2e10,
        },
        500,
        600,
    );
    // 100 s with 100 CPU-seconds on 2 threads: 50% × 10 W × 100 s = 500 J = 1/7200 kWh.
    let r = m.report_at(100.0, Some(100.0));
    assert_eq!(r.energy, EnergyKind::Estimated);
    assert!(
        r.energy_source.starts_with("10 W × 50% utilisation"),
        "{}",
        r.energy_source
    );
    assert!((r.energy_kwh - 500.0 / 3.6e6).abs() < 1e-15);
    assert!((r.co2_g - 500.0 / 3.6e6 * 500.0).abs() < 1e-12);
    assert_eq!(r.cost, Some(0.1));
    assert_eq!((r.flops, r.achieved_flop_s), (3e10, 3e8));
    assert_eq!((r.tokens, r.padded_tokens), (500, 600));
    assert_eq!(r.utilisation, Some(0.3));
    assert!(r.lines()[1].contains("estimated"));

    // The same meter over readable counters reports measured joules.
    let (_, rapl) = cpu_source(dir.path(), &settings);
    let mut m = Meter::with_source(cpu, rapl, settings);
    set(dir.path(), "intel-rapl:0:1", 5_000_000 + 3_600_000); // 3.6 J of DRAM
    m.poll();
    let r = m.report_at(10.0, Some(0.0));
    assert_eq!(r.energy, EnergyKind::Measured);
    assert!((r.energy_kwh - 1e-6).abs() < 1e-15);
    assert!((r.avg_power_w - 0.36).abs() < 1e-12);
    let block = serde_json::to_value(&r).expect("json");
    assert_eq!(block["energy"], "measured");

    // A pipeline's total: sums, and `estimated` as soon as one part is.
    let est = cost::CostReport {
        energy: EnergyKind::Estimated,
        energy_kwh: 2e-6,
        wall_s: 10.0,
        tokens: 5,
        cost: Some(1.0),
        ..r.clone()
    };
    let t = cost::CostReport::total(&[r.clone(), est]);
    assert_eq!(
        (t.tokens, t.wall_s, t.energy),
        (r.tokens + 5, 20.0, EnergyKind::Estimated)
    );
    assert!((t.energy_kwh - 3e-6).abs() < 1e-15);
    assert!((t.avg_power_w - 3e-6 * 3.6e6 / 20.0).abs() < 1e-9);
    assert_eq!(t.cost, Some(1.0 + r.cost.unwrap_or(0.0)));
}
