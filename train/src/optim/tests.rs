use super::*;
use candle_core::Var;

fn tensor(v: &[f32]) -> Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn values(p: &Params, name: &str) -> Result<Vec<f32>> {
    let var = p
        .get(name)
        .ok_or_else(|| Error::MissingParam(name.into()))?;
    Ok(var.to_vec1()?)
}

/// Gradient store where every listed parameter gets the given gradient: the loss
/// `sum(p * g)` has gradient exactly `g`.
fn grads_for(p: &Params, gs: &[(&str, &[f32])]) -> Result<GradAccumulator> {
    let mut loss = tensor(&[0.0])?.sum_all()?;
    for (name, g) in gs {
        let var = p
            .get(name)
            .ok_or_else(|| Error::MissingParam((*name).into()))?;
        loss = (loss + var.as_tensor().mul(&tensor(g)?)?.sum_all()?)?;
    }
    GradAccumulator::from_store(p, &loss.backward()?)
}

const GS: [[f32; 3]; 3] = [[0.1, -0.2, 0.3], [-0.5, 0.4, 0.0], [0.2, 0.2, -0.1]];
const LRS: [f64; 3] = [0.1, 0.05, 0.02];

fn cfg() -> AdamWConfig {
    AdamWConfig {
        weight_decay: 0.1,
        ..Default::default()
    }
}

// Reference numbers from:
//   import torch
//   p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
//   opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
//   for g, lr in zip([[0.1, -0.2, 0.3], [-0.5, 0.4, 0.0], [0.2, 0.2, -0.1]], [0.1, 0.05, 0.02]):
//       opt.param_groups[0]["lr"] = lr
//       p.grad = torch.tensor(g, dtype=torch.float64); opt.step(); print(p.tolist())
// First produced with a float64 line-by-line transcription of torch's
// `_single_tensor_adamw`, then confirmed digit for digit with torch 2.15 (above).
// Our update runs in f32, hence the 2e-6 tolerance (torch in f32 lands within 1e-7
// of the same numbers: [0.91758066, -1.89551222, 0.35302037] after step 3).
#[test]
fn matches_torch_adamw_three_steps() -> Result<()> {
    let want = [
        [0.890000009999999, -1.8800000049999999, 0.3950000033333332],
        [0.9154677182261666, -1.8889051807480184, 0.35952209218957715],
        [0.9175806812541033, -1.8955121863436475, 0.35302034105922186],
    ];
    let p = Params::new(vec![(
        "w".into(),
        Var::from_tensor(&tensor(&[1.0, -2.0, 0.5])?)?,
    )])?;
    let mut opt = AdamW::new(cfg())?;
    for ((g, lr), w) in GS.iter().zip(LRS).zip(want) {
        opt.step(&p, &grads_for(&p, &[("w", g)])?, lr)?;
        for (got, w) in values(&p, "w")?.iter().zip(w) {
            assert!((*got as f64 - w).abs() < 2e-6, "{got} vs {w}");
        }
    }
    let m = &opt.state().moments["w"];
    assert_eq!(m.step, 3);
    let v: Vec<f32> = m.exp_avg_sq.to_vec1()?;
    assert!((v[0] as f64 - 0.00029973001).abs() < 1e-9);
    Ok(())
}

#[test]
fn missing_grad_is_skipped_and_no_decay_filter() -> Result<()> {
    let dev = Device::Cpu;
    let p = Params::new(vec![
        ("w".into(), Var::from_tensor(&tensor(&[1.0, 1.0, 1.0])?)?),
        ("ln.bias".into(), Var::ones(3, DType::F32, &dev)?),
        ("other".into(), Var::ones(3, DType::F32, &dev)?),
    ])?;
    let c = AdamWConfig {
        weight_decay: 0.5,
        no_decay: vec!["bias".into()],
        ..Default::default()
    };
    let mut opt = AdamW::new(c)?.with_no_decay_filter(|n| n == "other");
    assert!(opt.decays("w") && !opt.decays("ln.bias") && !opt.decays("other"));
    // Zero gradients: only weight decay moves a parameter.
    let zero: &[f32] = &[0.0; 3];
    opt.step(&p, &grads_for(&p, &[("w", zero), ("ln.bias", zero)])?, 0.1)?;
    assert_eq!(values(&p, "w")?, [0.95; 3]);
    assert_eq!(values(&p, "ln.bias")?, [1.0; 3]);
    assert_eq!(values(&p, "other")?, [1.0; 3]);
    assert!(!opt.state().moments.contains_key("other"));
    opt.step(&p, &grads_for(&p, &[("w", zero)])?, 0.1)?;
    assert_eq!(opt.state().moments["ln.bias"].step, 1);
    assert_eq!(opt.state().moments["w"].step, 2);
    assert_eq!(opt.step_count(), 2);
    Ok(())
}

#[test]
fn state_round_trip_resumes_bit_identically() -> Result<()> {
    let dir = tempfile::tempdir().map_err(Error::io(Path::new("tmp")))?;
    let (st, meta) = (dir.path().join("o.safetensors"), dir.path().join("o.json"));
    let init = [1.0f32, -2.0, 0.5];
    let straight = Params::new(vec![("w".into(), Var::from_tensor(&tensor(&init)?)?)])?;
    let mut opt = AdamW::new(cfg())?;
    let resumed = Params::new(vec![("w".into(), Var::from_tensor(&tensor(&init)?)?)])?;
    let mut opt2 = AdamW::new(cfg())?;
    for (i, (g, lr)) in GS.iter().zip(LRS).enumerate() {
        opt.step(&straight, &grads_for(&straight, &[("w", g)])?, lr)?;
        if i < 2 {
            opt2.step(&resumed, &grads_for(&resumed, &[("w", g)])?, lr)?;
        }
    }
    opt2.state().save(&st, &meta)?;
    let mut opt3 = AdamW::new(cfg())?;
    opt3.set_state(AdamWState::load(&st, &meta, &Device::Cpu)?);
    assert_eq!(opt3.step_count(), 2);
    opt3.step(&resumed, &grads_for(&resumed, &[("w", &GS[2])])?, LRS[2])?;
    assert_eq!(values(&straight, "w")?, values(&resumed, "w")?);
    Ok(())
}

#[test]
fn rejects_bad_config_and_mismatched_grads() -> Result<()> {
    let bad = AdamWConfig {
        beta1: 1.0,
        ..Default::default()
    };
    assert!(AdamW::new(bad).is_err());
    let p = Params::new(vec![("w".into(), Var::from_tensor(&tensor(&[1.0])?)?)])?;
    let empty = GradAccumulator::new(&Params::default());
    assert!(matches!(
        AdamW::new(cfg())?.step(&p, &empty, 0.1),
        Err(Error::GradCountMismatch { .. })
    ));
    Ok(())
}

/// The in-place CPU update equals the composed one bit for bit, over several steps with weight
/// decay (the composed path is what a GPU runs).
#[test]
fn fused_update_is_bit_identical_to_the_composed_one() -> Result<()> {
    let cfg = AdamWConfig {
        weight_decay: 0.1,
        ..Default::default()
    };
    let dev = Device::Cpu;
    let p0 = Tensor::randn(0f32, 1.0, 5000, &dev)?;
    let fused_p = Var::from_tensor(&p0)?;
    let mut composed_p = p0.clone();
    let zeros = || p0.zeros_like();
    let mut fused = Moments {
        step: 0,
        exp_avg: zeros()?,
        exp_avg_sq: zeros()?,
    };
    let mut composed = fused.clone();
    composed.exp_avg = zeros()?;
    composed.exp_avg_sq = zeros()?;
    for (i, lr) in [1e-3, 5e-4, 2e-4, 1e-4].into_iter().enumerate() {
        let g = Tensor::randn(0f32, 1.0 + i as f32, 5000, &dev)?;
        let used =
            crate::optim_fused::try_update(&cfg, &mut fused, fused_p.as_tensor(), &g, lr, 0.1)?;
        assert!(used, "CPU f32 takes the fused path");
        composed_p = update(&cfg, &mut composed, &composed_p, &g, lr, 0.1)?;
        let (a, b): (Vec<f32>, Vec<f32>) = (fused_p.to_vec1()?, composed_p.to_vec1()?);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || x == y),
            "step {i}"
        );
        assert_eq!(
            fused.exp_avg_sq.to_vec1::<f32>()?,
            composed.exp_avg_sq.to_vec1::<f32>()?
        );
    }
    assert_ne!(fused_p.to_vec1::<f32>()?, p0.to_vec1::<f32>()?);
    Ok(())
}
