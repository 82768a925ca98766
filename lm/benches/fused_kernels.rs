//! The fused CPU kernels against the composed candle ops they replace (the path a GPU takes,
//! `lm::fused::plain_ops`), at SmolLM2-135M's training shapes (batch 4 × 256 tokens), forward +
//! backward, and RoPE reading the transposed heads through their strides against a contiguous
//! copy first: `cargo bench -p lm --bench fused_kernels`.
use candle_core::{DType, Device, Result, Tensor, Var};
use lm::fused::plain_ops;
use std::time::Instant;

/// Milliseconds per call of `f` (mean of `reps` after one warm-up).
fn time(reps: usize, f: &dyn Fn() -> Result<()>) -> Result<f64> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t0.elapsed().as_secs_f64() / reps as f64 * 1e3)
}

/// Prints fused and composed timings of `f`'s forward + backward.
fn report(name: &str, f: &dyn Fn() -> Result<Tensor>) -> Result<()> {
    let pass = || f()?.sum_all()?.backward().map(|_| ());
    let fused = time(10, &pass)?;
    let composed = plain_ops(|| time(10, &pass))?;
    println!("{name}: fused {fused:.2} ms, composed {composed:.2} ms (forward + backward)");
    Ok(())
}

fn rope_strided() -> Result<()> {
    let dev = Device::Cpu;
    let (b, h, t, d) = (4, 9, 256, 64);
    let positions: Vec<u32> = (0..(b * t) as u32).map(|p| p % t as u32).collect();
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / 1e4f32.powf(i as f32 / 32.0))
        .collect();
    let (cos, sin) = lm::ops::rope_tables(&inv_freq, 1.0, &positions, b, t, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev)?.transpose(1, 2)?;
    let strided = time(50, &|| lm::fused::rope(&x, &cos, &sin).map(|_| ()))?;
    let copied = time(50, &|| {
        lm::fused::rope(&x.contiguous()?, &cos, &sin).map(|_| ())
    })?;
    let composed = time(50, &|| {
        plain_ops(|| lm::ops::rope(&x, &cos, &sin)).map(|_| ())
    })?;
    println!("rope forward (4, 9, 256, 64): strided {strided:.3} ms, contiguous first {copied:.3} ms, composed {composed:.3} ms");
    Ok(())
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let var = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev)?);
    let (x, w) = (var(&[4, 256, 576])?, var(&[576])?);
    report("rms_norm (4, 256, 576)", &|| {
        lm::ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)
    })?;
    let (g, u) = (var(&[4, 256, 1536])?, var(&[4, 256, 1536])?);
    report("swiglu (4, 256, 1536)", &|| {
        lm::ops::swiglu(g.as_tensor(), u.as_tensor())
    })?;
    let s = var(&[4, 9, 256, 256])?;
    let segs = vec![1u32; 4 * 256];
    let mask = lm::ops::attention_mask(&segs, &segs, 4, 256, 256, DType::F32, &dev)?;
    report("masked_softmax (4, 9, 256, 256)", &|| {
        lm::ops::masked_softmax(s.as_tensor(), &mask, 0.125)
    })?;
    let logits = var(&[4, 256, 49152])?;
    let targets = Tensor::zeros((4, 256), DType::U32, &dev)?;
    report("token_logprobs (4, 256, 49152)", &|| {
        lm::logprobs::token_logprobs(logits.as_tensor(), &targets).map_err(candle_core::Error::wrap)
    })?;
    rope_strided()
}
