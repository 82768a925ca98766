//! One function per `--loss`: the loss of each pair `(B,)` when chosen is preferred (label 1),
//! as TRL 1.16's `DPOTrainer._compute_loss` computes it (SimPO: `CPOTrainer.cpo_loss`). The
//! reference numbers are `fixtures/goldens/dpo.json` and `dpo_losses.json`
//! (`scripts/make_pref_goldens.py`), checked in `tests/goldens.rs`.
//!
//! Notation, every tensor `(B,)` f32: `π`, `ρ` summed completion log-probs of policy and
//! reference; `r_c = π_c - ρ_c`, `r_r = π_r - ρ_r` the log-ratios; `d = r_c - r_r`; `n` token
//! counts; `ls` label_smoothing.
use super::PairLogps;
use crate::config::{DpoConfig, LossType};
use candle_core::{Result, Tensor};
use train::loss::log_sigmoid;

/// The loss of each pair `(B,)`, label 1. `sft` is no pair loss (it is the batch's chosen NLL,
/// [`super::chosen_nll`]): zeros here.
pub fn pair_loss(kind: LossType, cfg: &DpoConfig, lp: &PairLogps) -> Result<Tensor> {
    let (beta, ls) = (cfg.beta, cfg.label_smoothing);
    let (rc, rr) = lp.log_ratios()?; // (B,), (B,)
    let d = (&rc - &rr)?;
    match kind {
        LossType::Sigmoid => smoothed_logistic(&(d * beta)?, ls),
        LossType::Robust => robust(&(d * beta)?, ls),
        LossType::Hinge => (d * beta)?.neg()?.affine(1.0, 1.0)?.relu(),
        LossType::Ipo => ipo(lp, beta),
        LossType::Simpo => simpo(lp, beta, cfg.gamma, ls),
        LossType::ExoPair => exo_pair(&(d * beta)?, ls),
        LossType::NcaPair => nca_pair(&(rc * beta)?, &(rr * beta)?),
        LossType::BcoPair => bco_pair(&(rc * beta)?, &(rr * beta)?),
        LossType::SppoHard => sppo_hard(&rc, &rr, beta),
        LossType::Aot => aot(lp, beta, ls),
        LossType::AotUnpaired => aot_unpaired(&rc, &rr, beta, ls),
        LossType::ApoZero => apo_zero(&(rc * beta)?, &(rr * beta)?),
        LossType::ApoDown => apo_down(&(&rc * beta)?, &(d * beta)?),
        LossType::Discopop => discopop(&(d * beta)?, cfg.discopop_tau),
        LossType::SigmoidNorm => sigmoid_norm(lp, beta),
        LossType::Sft => rc.zeros_like(),
    }
}

/// `σ(x) = exp(logσ(x))`, stable for large `|x|`.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    log_sigmoid(x)?.exp()
}

/// Ascending sort of a `(B,)` tensor; the gradient flows back to the element at each rank.
fn sorted(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.sort_last_dim(true)?.0)
}

/// sigmoid (cDPO with `ls`), and the shape of simpo, aot, aot_unpaired:
/// `-(1-ls)·logσ(x) - ls·logσ(-x)`, x `(B,)`. TRL 1.16's own `sigmoid` has no `ls`.
fn smoothed_logistic(x: &Tensor, ls: f64) -> Result<Tensor> {
    (log_sigmoid(x)? * -(1.0 - ls))? - (log_sigmoid(&x.neg()?)? * ls)?
}

/// robust: `(-(1-ls)·logσ(x) + ls·logσ(-x)) / (1-2ls)`, x = βd.
fn robust(x: &Tensor, ls: f64) -> Result<Tensor> {
    let l = ((log_sigmoid(x)? * -(1.0 - ls))? + (log_sigmoid(&x.neg()?)? * ls)?)?;
    l / (1.0 - 2.0 * ls)
}

/// ipo (length-normalised): `(r_c/n_c - r_r/n_r - 1/(2β))²`.
fn ipo(lp: &PairLogps, beta: f64) -> Result<Tensor> {
    let (rc, rr) = lp.log_ratios()?;
    let z = ((rc / &lp.n_chosen)? - (rr / &lp.n_rejected)?)?;
    z.affine(1.0, -1.0 / (2.0 * beta))?.sqr()
}

/// simpo (no reference): `smoothed_logistic(β(π_c/n_c - π_r/n_r) - γ)`.
fn simpo(lp: &PairLogps, beta: f64, gamma: f64, ls: f64) -> Result<Tensor> {
    let mc = (&lp.policy_chosen / &lp.n_chosen)?; // (B,) mean log-prob
    let mr = (&lp.policy_rejected / &lp.n_rejected)?;
    smoothed_logistic(&(mc - mr)?.affine(beta, -gamma)?, ls)
}

/// exo_pair, ε = ls > 0: `σ(x)(logσ(x) - log(1-ε)) + σ(-x)(logσ(-x) - log ε)`, x = βd: the KL
/// from `softmax(β r)` over {chosen, rejected} to `[1-ε, ε]`.
fn exo_pair(x: &Tensor, eps: f64) -> Result<Tensor> {
    let (lw, ll) = (log_sigmoid(x)?, log_sigmoid(&x.neg()?)?);
    let win = (lw.exp()? * lw.affine(1.0, -(-eps).ln_1p())?)?;
    let lose = (ll.exp()? * ll.affine(1.0, -eps.ln())?)?;
    win + lose
}

/// nca_pair: `-logσ(c) - ½logσ(-c) - ½logσ(-r)`, c = β r_c, r = β r_r.
fn nca_pair(c: &Tensor, r: &Tensor) -> Result<Tensor> {
    let chosen = (log_sigmoid(c)? + (log_sigmoid(&c.neg()?)? * 0.5)?)?;
    (chosen + (log_sigmoid(&r.neg()?)? * 0.5)?)?.neg()
}

/// bco_pair: `-logσ(c) - logσ(-r)`, c = β r_c, r = β r_r. TRL 1.16 dropped the running reward
/// mean δ of the BCO paper (`-logσ(c - δ) - logσ(-(r - δ))`): there is no state across steps.
fn bco_pair(c: &Tensor, r: &Tensor) -> Result<Tensor> {
    (log_sigmoid(c)? + log_sigmoid(&r.neg()?)?)?.neg()
}

/// sppo_hard: `(r_c - 1/(2β))² + (r_r + 1/(2β))²`.
fn sppo_hard(rc: &Tensor, rr: &Tensor, beta: f64) -> Result<Tensor> {
    let half = 0.5 / beta;
    rc.affine(1.0, -half)?.sqr()? + rr.affine(1.0, half)?.sqr()?
}

/// aot: `smoothed_logistic(β(sort(π_c - π_r) - sort(ρ_c - ρ_r)))`, sorted over the batch (so
/// pair i is matched by rank, not by index).
fn aot(lp: &PairLogps, beta: f64, ls: f64) -> Result<Tensor> {
    let policy = sorted(&(&lp.policy_chosen - &lp.policy_rejected)?)?; // (B,)
    let reference = sorted(&(&lp.ref_chosen - &lp.ref_rejected)?)?;
    smoothed_logistic(&((policy - reference)? * beta)?, ls)
}

/// aot_unpaired: `smoothed_logistic(β(sort(r_c) - sort(r_r)))`, sorted over the batch.
fn aot_unpaired(rc: &Tensor, rr: &Tensor, beta: f64, ls: f64) -> Result<Tensor> {
    smoothed_logistic(&((sorted(rc)? - sorted(rr)?)? * beta)?, ls)
}

/// apo_zero: `1 - σ(c) + σ(r)`, c = β r_c, r = β r_r.
fn apo_zero(c: &Tensor, r: &Tensor) -> Result<Tensor> {
    sigmoid(c)?.neg()?.affine(1.0, 1.0)? + sigmoid(r)?
}

/// apo_down: `σ(c) + 1 - σ(x)`, c = β r_c, x = βd.
fn apo_down(c: &Tensor, x: &Tensor) -> Result<Tensor> {
    sigmoid(c)? + sigmoid(x)?.neg()?.affine(1.0, 1.0)?
}

/// discopop: `-logσ(x)·(1 - m) + exp(-x)·m`, `m = σ(x/τ)`, x = βd.
fn discopop(x: &Tensor, tau: f64) -> Result<Tensor> {
    let m = sigmoid(&(x / tau)?)?;
    let logistic = (log_sigmoid(x)?.neg()? * m.neg()?.affine(1.0, 1.0)?)?;
    logistic + (x.neg()?.exp()? * m)?
}

/// sigmoid_norm: `-logσ(β(r_c/n_c - r_r/n_r))`.
fn sigmoid_norm(lp: &PairLogps, beta: f64) -> Result<Tensor> {
    let (rc, rr) = lp.log_ratios()?;
    let z = ((rc / &lp.n_chosen)? - (rr / &lp.n_rejected)?)?;
    log_sigmoid(&(z * beta)?)?.neg()
}
