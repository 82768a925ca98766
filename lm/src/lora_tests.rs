use super::*;
use crate::{load, InputBatch, LoadOptions};
use candle_core::Device;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn tiny(trainable: bool) -> Result<crate::Pretrained> {
    let opts = LoadOptions {
        trainable,
        ..Default::default()
    };
    load(&fixture("tiny-llama").display().to_string(), &opts)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn spec(targets: &[&str]) -> LoraSpec {
    LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        rslora: false,
    }
}

fn batch() -> InputBatch {
    InputBatch::padded(&[vec![1, 88, 120, 45, 200, 17, 300, 2, 64]], 0, false)
}

#[test]
fn fresh_adapters_use_peft_init_and_names() -> Result<()> {
    let mut p = tiny(false)?;
    let before = p.model.forward(&batch())?;
    let vars = p.model.attach_lora(&spec(&["q_proj", "v_proj"]), 7)?;
    // 2 layers x 2 targets x (A, B).
    assert_eq!(vars.len(), 8);
    assert_eq!(
        vars[0].0,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    assert_eq!(
        vars[1].0,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    );
    // A ~ U(-1/sqrt(64), 1/sqrt(64)), not all zero; B = 0 so the model is unchanged.
    let a = vars[0].1.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    assert!(a.iter().all(|x| x.abs() <= 0.125) && a.iter().any(|x| x.abs() > 0.05));
    assert_eq!(
        vars[1].1.as_tensor().abs()?.sum_all()?.to_scalar::<f32>()?,
        0.0
    );
    assert!(max_diff(&before, &p.model.forward(&batch())?)? == 0.0);
    // Same seed, same init.
    let again = tiny(false)?
        .model
        .attach_lora(&spec(&["q_proj", "v_proj"]), 7)?;
    assert_eq!(
        again[0].1.as_tensor().to_vec2::<f32>()?,
        vars[0].1.as_tensor().to_vec2::<f32>()?
    );
    assert!(spec(&["qkv"]).modules().is_err());
    Ok(())
}

/// The golden is PEFT 0.21's own output: `scripts/make_lora_golden.py` builds a LoRA (r=4,
/// alpha=8, q/v/down_proj, random B) on tiny-llama with `get_peft_model`, saves it, reloads it
/// with `PeftModel.from_pretrained` and stores `model(ids).logits`.
#[test]
fn peft_adapter_matches_peft_logits_and_merges() -> Result<()> {
    let dir = fixture("tiny-llama-lora");
    let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)?;
    let ids: Vec<u32> = r["ids"]
        .flatten_all()?
        .to_vec1::<i64>()?
        .iter()
        .map(|&x| x as u32)
        .collect();
    let input = InputBatch::padded(&[ids], 0, false);
    let mut p = tiny(false)?;
    let (spec, vars) = p.model.load_adapter(&dir)?;
    assert_eq!((spec.r, spec.alpha, vars.len()), (4, 8.0, 12));
    let adapted = p.model.forward(&input)?;
    assert!(max_diff(&adapted, &r["logits"])? < 1e-4);
    // Disabled adapters give the base model back.
    p.model.set_adapters_enabled(false);
    let base = p.model.forward(&input)?;
    assert!(max_diff(&base, &r["logits"])? > 0.1);
    assert!(max_diff(&base, &tiny(false)?.model.forward(&input)?)? == 0.0);
    // Merged weights (what `rudder merge` saves) reproduce the adapted logits.
    let merged: HashMap<String, Tensor> = p.model.named_tensors()?.into_iter().collect();
    let cfg = p.model.config.clone();
    let (m, _) =
        CausalLm::from_tensors(cfg, merged, Path::new("merged"), Default::default(), false)?;
    assert!(max_diff(&m.forward(&input)?, &r["logits"])? < 1e-4);
    Ok(())
}

#[test]
fn saved_adapter_round_trips_with_peft_names() -> Result<()> {
    let mut p = tiny(false)?;
    let targets = ["q_proj", "v_proj", "down_proj"];
    let vars = p.model.attach_lora(&spec(&targets), 3)?;
    for (_, v) in &vars {
        // Non-zero B so the round trip is visible in the logits.
        v.set(&v.as_tensor().ones_like()?.affine(0.01, 0.0)?)?;
    }
    let want = p.model.forward(&batch())?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    save_adapter(&p.model, &spec(&targets), "fixtures/tiny-llama", dir.path())?;
    let mut q = tiny(false)?;
    q.model.load_adapter(dir.path())?;
    assert!(max_diff(&want, &q.model.forward(&batch())?)? < 1e-6);
    // Same tensor names and shapes as the file PEFT wrote.
    let ours =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)?;
    let peft = candle_core::safetensors::load(
        fixture("tiny-llama-lora").join("adapter_model.safetensors"),
        &Device::Cpu,
    )?;
    let mut a: Vec<_> = ours
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    let mut b: Vec<_> = peft
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    Ok(())
}
