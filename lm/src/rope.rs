//! RoPE frequencies from `config.json`'s `rope_scaling` / `rope_parameters`, as transformers'
//! `ROPE_INIT_FUNCTIONS` compute them (default, linear, llama3, yarn).
use crate::config::{ModelConfig, RopeScaling};

/// RoPE inverse frequencies, with transformers' linear / llama3 / yarn scaling.
pub(crate) fn inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base = cfg.rope_theta as f32;
    let freqs = (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / d as f32));
    match &cfg.rope_scaling {
        // Dynamic NTK changes nothing below max_position_embeddings (past it: refused).
        None | Some(RopeScaling::Dynamic { .. }) => freqs.collect(),
        Some(RopeScaling::Linear { factor }) => freqs.map(|f| f / *factor as f32).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        }) => freqs
            .map(|f| {
                let (f, factor) = (f as f64, *factor);
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                if wavelen < high_wl {
                    f as f32
                } else if wavelen > low_wl {
                    (f / factor) as f32
                } else {
                    let s =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    ((1.0 - s) * f / factor + s * f) as f32
                }
            })
            .collect(),
        Some(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: original,
            beta_fast,
            beta_slow,
            truncate,
            ..
        }) => yarn_inv_freq(
            d,
            base,
            *factor,
            *original,
            (*beta_fast, *beta_slow),
            *truncate,
        ),
    }
}

/// transformers' `_compute_yarn_parameters`: each frequency is a blend of itself (extrapolated)
/// and itself / factor (interpolated), the blend ramping linearly over the dimensions between
/// the ones that make `beta_fast` and `beta_slow` rotations in the original context.
fn yarn_inv_freq(
    d: usize,
    base: f32,
    factor: f64,
    original: f64,
    betas: (f64, f64),
    truncate: bool,
) -> Vec<f32> {
    let dim = |rotations: f64| {
        d as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * (base as f64).ln())
    };
    let (mut low, mut high) = (dim(betas.0), dim(betas.1));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0) as f32, high.min(d as f64 - 1.0) as f32);
    if low == high {
        high += 0.001;
    }
    (0..d / 2)
        .map(|i| {
            let pos = base.powf((2 * i) as f32 / d as f32);
            let (extrapolated, interpolated) = (1.0 / pos, 1.0 / (factor as f32 * pos));
            let keep = 1.0 - ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            interpolated * (1.0 - keep) + extrapolated * keep
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn yarn_config(extra: serde_json::Value) -> ModelConfig {
        let mut rope = serde_json::json!({"rope_type": "yarn", "factor": 4.0,
            "original_max_position_embeddings": 512, "rope_theta": 10000.0});
        for (k, v) in extra.as_object().unwrap() {
            rope[k] = v.clone();
        }
        let v = serde_json::json!({"model_type": "qwen2", "vocab_size": 64, "hidden_size": 128,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "head_dim": 32, "max_position_embeddings": 2048, "rope_parameters": rope});
        ModelConfig::from_json(v, Path::new("config.json")).unwrap()
    }

    /// Against transformers 5.24:
    /// ```python
    /// rp = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512,
    ///       "rope_theta": 10000.0, **extra}
    /// c = Qwen2Config(hidden_size=128, num_attention_heads=4, head_dim=32,
    ///                 max_position_embeddings=2048, rope_parameters=rp)
    /// inv, att = ROPE_INIT_FUNCTIONS["yarn"](c, "cpu")
    /// ```
    /// with `extra` empty, then mscale 1 / mscale_all_dim 0.5, betas 8 and 2, no truncation.
    #[test]
    fn yarn_frequencies_and_attention_factor_match_transformers() {
        let cases = [
            (
                serde_json::json!({}),
                [
                    1.0,
                    0.5623413324356079,
                    0.2823462188243866,
                    0.13972194492816925,
                    0.06785713881254196,
                    0.032133787870407104,
                    0.014682004228234291,
                    0.00635099783539772,
                    0.0024999999441206455,
                    0.0014058533124625683,
                    0.0007905694656074047,
                    0.00044456985779106617,
                    0.0002500000118743628,
                    0.00014058532542549074,
                    7.905694656074047e-05,
                    4.4456985051510856e-05,
                ],
                1.138629436111989,
            ),
            (
                serde_json::json!({"mscale": 1.0, "mscale_all_dim": 0.5, "beta_fast": 8,
                    "beta_slow": 2, "truncate": false}),
                [
                    1.0,
                    0.5623413324356079,
                    0.3162277638912201,
                    0.17782793939113617,
                    0.10000000149011612,
                    0.03928152099251747,
                    0.012241318821907043,
                    0.004445698577910662,
                    0.0024999999441206455,
                    0.0014058533124625683,
                    0.0007905694656074047,
                    0.00044456985779106617,
                    0.0002500000118743628,
                    0.00014058532542549074,
                    7.905694656074047e-05,
                    4.4456985051510856e-05,
                ],
                1.0648216253695715,
            ),
        ];
        for (extra, want, factor) in cases {
            let cfg = yarn_config(extra);
            let got = inv_freq(&cfg);
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w as f32).abs() <= 1e-6 * w as f32,
                    "dim {i}: {g} vs {w}"
                );
            }
            let att = cfg.rope_scaling.as_ref().unwrap().attention_factor();
            assert!((att - factor).abs() < 1e-12, "{att} vs {factor}");
        }
    }
}
