//! The SFT loss: mean next-token cross-entropy over the trained targets (completion or
//! assistant tokens, or all with `loss_on_all`), as TRL's `SFTTrainer`; plus the router
//! load-balancing loss of MoE models, as transformers adds it.
use crate::batch::SftBatch;
use candle_core::{DType, Tensor, D};
use lm::logprobs::token_logprobs;
use lm::CausalLm;
use std::collections::BTreeMap;

/// Log-probabilities of the batch's targets `(N,)` and the logits that gave them `(N, V)`.
pub fn target_logprobs(
    model: &CausalLm,
    batch: &SftBatch,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = batch.targets.len();
    let dev = model.device();
    // (B, T, H) -> (B*T, H) -> (N, H): only positions with a target reach the LM head, so
    // the (N, V) logits are all that is materialised (prompt positions never are).
    let hidden = model.hidden_states(&batch.input)?;
    let (b, t, h) = hidden.dims3()?;
    let gather = Tensor::from_slice(&batch.gather, n, dev)?;
    let picked = hidden.reshape((b * t, h))?.index_select(&gather, 0)?;
    let logits = model.logits(&picked)?; // (N, V) f32
    let targets = Tensor::from_slice(&batch.targets, n, dev)?;
    let lp = token_logprobs(&logits, &targets).map_err(candle_core::Error::wrap)?; // (N,)
    Ok((lp, logits))
}

/// Sum of the target NLLs `()`, correct argmax predictions, and the target count of a batch.
pub fn batch_nll(model: &CausalLm, batch: &SftBatch) -> candle_core::Result<(Tensor, f64, usize)> {
    let n = batch.targets.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, model.device())?, 0.0, 0));
    }
    let (lp, logits) = target_logprobs(model, batch)?;
    let targets = Tensor::from_slice(&batch.targets, n, model.device())?;
    let correct = logits
        .detach()
        .argmax(D::Minus1)?
        .eq(&targets)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok((lp.sum_all()?.neg()?, correct as f64, n))
}

/// The training loss of a micro-batch `()`: the mean NLL over its targets (plus the MoE router
/// loss), with `mean_token_accuracy`, `loss_tokens` and the router's metrics.
pub fn sft_loss(
    model: &CausalLm,
    batch: &SftBatch,
) -> candle_core::Result<(Tensor, BTreeMap<String, f64>)> {
    let (sum, correct, n) = batch_nll(model, batch)?;
    let denom = n.max(1) as f64;
    let mut metrics = BTreeMap::new();
    metrics.insert("mean_token_accuracy".into(), correct / denom);
    metrics.insert("loss_tokens".into(), n as f64);
    let mut loss = sum.affine(1.0 / denom, 0.0)?;
    if let Some((aux, m)) =
        lm::moe::training_aux(model, &batch.input.segments).map_err(candle_core::Error::wrap)?
    {
        loss = (loss + aux)?;
        metrics.extend(m);
    }
    Ok((loss, metrics))
}
