//! Timings of the fused kernels against their composed forms at SmolLM2-135M's training shapes
//! (batch 4 × 256 tokens), forward and backward:
//! `cargo test --release -p lm --lib fused_kernel_timing -- --ignored --nocapture`.
use super::plain_ops;
use candle_core::{Device, Result, Tensor, Var};

/// Milliseconds per forward + backward of `f` (mean of 10 after one warm-up).
fn time(f: &dyn Fn() -> Result<Tensor>) -> Result<f64> {
    f()?.sum_all()?.backward()?;
    let t0 = std::time::Instant::now();
    for _ in 0..10 {
        f()?.sum_all()?.backward()?;
    }
    Ok(t0.elapsed().as_secs_f64() / 10.0 * 1e3)
}

/// Prints fused and composed timings of `f`.
fn report(name: &str, f: &dyn Fn() -> Result<Tensor>) -> Result<()> {
    let fused = time(f)?;
    let composed = plain_ops(|| time(f))?;
    println!("{name}: fused {fused:.2} ms, composed {composed:.2} ms (forward + backward)");
    Ok(())
}

#[test]
#[ignore]
fn fused_kernel_timing() -> Result<()> {
    let dev = Device::Cpu;
    let var = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev)?);
    let (x, w) = (var(&[4, 256, 576])?, var(&[576])?);
    report("rms_norm (4, 256, 576)", &|| {
        crate::ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)
    })?;
    let (g, u) = (var(&[4, 256, 1536])?, var(&[4, 256, 1536])?);
    report("swiglu (4, 256, 1536)", &|| {
        crate::ops::swiglu(g.as_tensor(), u.as_tensor())
    })?;
    let s = var(&[4, 9, 256, 256])?;
    let segs = vec![1u32; 4 * 256];
    let mask =
        crate::ops::attention_mask(&segs, &segs, 4, 256, 256, candle_core::DType::F32, &dev)?;
    report("masked_softmax (4, 9, 256, 256)", &|| {
        crate::ops::masked_softmax(s.as_tensor(), &mask, 0.125)
    })?;
    let logits = var(&[4, 256, 49152])?;
    let targets = Tensor::zeros((4, 256), candle_core::DType::U32, &dev)?;
    report("token_logprobs (4, 256, 49152)", &|| {
        crate::logprobs::token_logprobs(logits.as_tensor(), &targets)
            .map_err(candle_core::Error::wrap)
    })?;
    Ok(())
}
