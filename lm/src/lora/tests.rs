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

/// Tiny-llama with dropout-`p` adapters on every projection and random B (so they matter).
fn with_dropout(p: f64, checkpointing: bool) -> Result<(CausalLm, Vec<(String, Var)>)> {
    let mut m = tiny(false)?.model;
    let s = LoraSpec {
        dropout: p,
        ..spec(&["all-linear"])
    };
    let vars = m.attach_lora(&s, 5)?;
    for (name, v) in &vars {
        if name.ends_with("lora_B.weight") {
            // Fixed values, so that every call builds the same model.
            let n = v.elem_count();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
            v.set(&Tensor::from_vec(b, v.shape(), &Device::Cpu)?)?;
        }
    }
    m.checkpointing = checkpointing;
    Ok((m, vars))
}

/// PEFT's `lora_B(lora_A(dropout(x))) * scale`: the mask is on the adapter's input only, drawn
/// from the key and the module number; without a key (eval) nothing is dropped.
#[test]
fn dropout_masks_the_adapter_input_in_training_forwards_only() -> Result<()> {
    use crate::linear::{Adapters, Lora};
    let dev = Device::Cpu;
    let (w, x) = (
        Tensor::randn(0f32, 1.0, (6, 8), &dev)?,
        Tensor::randn(0f32, 1.0, (2, 5, 8), &dev)?,
    );
    let (a, b) = (
        Tensor::randn(0f32, 1.0, (4, 8), &dev)?,
        Tensor::randn(0f32, 1.0, (6, 4), &dev)?,
    );
    let mut lin = crate::linear::Linear::new(w.clone(), None);
    lin.lora = Some(Lora {
        a: Var::from_tensor(&a)?,
        b: Var::from_tensor(&b)?,
        scale: 2.0,
        dropout: 0.5,
        module: 3,
    });
    let train = Adapters {
        on: true,
        dropout_key: Some(9),
    };
    let mask = crate::dropout::mask(9, 3, x.shape(), 0.5, DType::F32, &dev)?;
    // x Wᵀ + 2 (x_a Aᵀ) Bᵀ, x_a the adapter's input.
    let want = |x_a: &Tensor| -> Result<Tensor> {
        let delta = x_a.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
        Ok((x.broadcast_matmul(&w.t()?)? + (delta * 2.0)?)?)
    };
    assert!(max_diff(&lin.forward(&x, train)?, &want(&(&x * &mask)?)?)? < 1e-4);
    assert!(max_diff(&lin.forward(&x, Adapters::ON)?, &want(&x)?)? < 1e-4);
    Ok(())
}

/// The model in training mode: the same key gives the same output, another key another one,
/// no key the evaluation output; generation never drops anything, key or not.
#[test]
fn model_dropout_follows_the_key_and_stays_out_of_generation() -> Result<()> {
    let (m, _) = with_dropout(0.5, false)?;
    let eval = m.forward(&batch())?;
    let key = crate::dropout::training_key(Some(1));
    let (one, again) = (m.forward(&batch())?, m.forward(&batch())?);
    assert_eq!(max_diff(&one, &again)?, 0.0);
    assert!(max_diff(&one, &eval)? > 1e-3);
    let inner = crate::dropout::training_key(Some(2));
    assert!(max_diff(&m.forward(&batch())?, &one)? > 1e-3);
    drop(inner); // back to key 1
    assert_eq!(max_diff(&m.forward(&batch())?, &one)?, 0.0);
    let tok = tiny(false)?.tokenizer;
    let cfg = crate::generate::SamplingConfig {
        max_new_tokens: 6,
        ..Default::default()
    };
    let prompts = [vec![5u32, 9, 17], vec![40, 41, 42, 43]];
    let keyed = crate::generate::generate(&m, &tok, &prompts, &cfg)?;
    drop(key);
    assert_eq!(max_diff(&m.forward(&batch())?, &eval)?, 0.0);
    assert_eq!(keyed, crate::generate::generate(&m, &tok, &prompts, &cfg)?);
    Ok(())
}

/// A checkpointed layer recomputed in the backward pass draws its first forward's masks: the
/// adapters' gradients equal the plain backward's, and differ from the gradients without dropout.
#[test]
fn checkpointed_gradients_equal_plain_ones_under_dropout() -> Result<()> {
    let grads = |checkpointing: bool, key: Option<u64>| -> Result<Vec<Tensor>> {
        let (m, vars) = with_dropout(0.3, checkpointing)?;
        let _key = crate::dropout::training_key(key);
        let logits = m.forward(&batch())?; // (1, T, V)
        let loss = logits.sqr()?.mean_all()?;
        let g = crate::checkpoint::backward(&loss)?;
        vars.iter()
            .map(|(n, v)| {
                g.get(v.as_tensor())
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("no gradient for {n}")))
            })
            .collect()
    };
    let plain = grads(false, Some(7))?;
    let recomputed = grads(true, Some(7))?;
    let undropped = grads(false, None)?;
    let mut moved = 0;
    for ((p, r), u) in plain.iter().zip(&recomputed).zip(&undropped) {
        let scale = p.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-6);
        assert!(max_diff(p, r)? / scale < 1e-4, "checkpointed grad differs");
        moved += usize::from(max_diff(p, u)? / scale > 1e-3);
    }
    assert!(
        moved > plain.len() / 2,
        "dropout changed only {moved} gradients"
    );
    Ok(())
}

/// The count from the config alone equals the adapters `attach_lora` creates, on every
/// architecture family: GPT-2's fused projections, Qwen2-MoE's shared expert and dense
/// `mlp_only_layers`, Mixtral's routed-only blocks (no adapters there).
#[test]
fn adapter_count_from_the_config_matches_the_attached_adapters() -> Result<()> {
    let names = [
        "tiny-llama",
        "tiny-gpt2",
        "tiny-qwen2-moe",
        "tiny-qwen3-moe",
        "tiny-mixtral",
    ];
    for name in names {
        let opts = LoadOptions::default();
        let mut pre = load(&fixture(name).display().to_string(), &opts)?;
        let targets: &[&str] = if name == "tiny-gpt2" {
            &["c_attn", "c_fc"]
        } else {
            &["q_proj", "down_proj"]
        };
        for t in [targets, &["all-linear"][..]] {
            let s = spec(t);
            let vars = pre.model.attach_lora(&s, 0)?;
            let attached: usize = vars.iter().map(|(_, v)| v.as_tensor().elem_count()).sum();
            let counted = adapter_params(&pre.model.config, &s)?;
            assert_eq!(counted, attached as u64, "{name} {t:?}");
            assert!(counted > 0, "{name} {t:?}");
        }
    }
    Ok(())
}
