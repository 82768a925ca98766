//! The generic training loop every stage (SFT, reward model, DPO, PPO) drives.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_resume, save_checkpoint, CheckpointState, TrainerState};
use crate::data::DataOrder;
use crate::metrics::{progress_bar, progress_message, LogEvent, MetricsWriter};
use crate::{AdamW, Error, GradAccumulator, LrSchedule, Params, Result, TrainerConfig};
use cost::{CostReport, Meter, Phase};

/// What a stage's loss function returns for one micro-batch.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// Scalar, differentiable w.r.t. the trainable `Var`s; the mean over the batch.
    pub loss: Tensor,
    /// Non-padding tokens in the micro-batch that the loss covers (for tokens/s).
    pub tokens: usize,
    /// Extra numbers to log (averaged over micro-batches between log events).
    pub metrics: BTreeMap<String, f64>,
}

/// A training stage: owns the model and data, knows how to turn example indices
/// into a batch and a batch into a loss.
pub trait Stage {
    type Batch;
    /// Size of the training set; the loop shuffles `0..num_examples()` per epoch.
    fn num_examples(&self) -> usize;
    /// Builds the micro-batch for these example indices (at most `batch_size`).
    fn make_batch(&mut self, indices: &[usize]) -> Result<Self::Batch>;
    /// Forward pass: the mean loss of the micro-batch.
    fn loss(&mut self, batch: &Self::Batch) -> Result<StepOutput>;
    /// Evaluation metrics (logged with an `eval_` prefix). Default: none.
    fn evaluate(&mut self) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
    /// Called after each optimizer step with the number of steps completed
    /// (e.g. to update a KL controller). Default: nothing.
    fn on_step_end(&mut self, _global_step: usize) -> Result<()> {
        Ok(())
    }
    /// Stage state to store in checkpoints (e.g. a KL controller). Default: null.
    fn extra_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what `extra_state` returned, when resuming.
    fn restore_extra_state(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Optimizer updates made from one batch of data (PPO: `ppo_epochs × minibatches` per
    /// rollout). Each update calls [`Stage::update_loss`] once per micro-batch. Evaluation and
    /// checkpoints happen only between batches, so a checkpoint never splits one. Default 1.
    fn updates_per_batch(&self) -> usize {
        1
    }
    /// The loss of update `update` (`0..updates_per_batch()`) of a micro-batch. Default:
    /// [`Stage::loss`].
    fn update_loss(&mut self, batch: &Self::Batch, _update: usize) -> Result<StepOutput> {
        self.loss(batch)
    }
    /// Seconds of making `batch` that belong to phases other than data (PPO: generating and
    /// scoring its rollout), for the cost block. Default: none.
    fn batch_phases(&self, _batch: &Self::Batch) -> Vec<(Phase, f64)> {
        Vec::new()
    }
    /// Called with the micro-batch's [`Position`] before its training forward and with `None`
    /// after its backward (not around evaluation). Nothing needs it for adapter dropout: the
    /// loop itself keys every training forward ([`lm::dropout::training_key`]). Default:
    /// nothing.
    fn set_position(&mut self, _position: Option<Position>) {}
    /// Asked after each update: skip the rest of this batch's updates (PPO's early stop when
    /// the approximate KL to the rollout policy is too large). Default false.
    fn stop_batch_early(&mut self) -> bool {
        false
    }
    /// The padded `(rows, row length)` grid that update `update` of `batch` runs through the
    /// model: every position of it is computed, padding included, so the cost block's
    /// `padded_tokens` and the FLOP count use it. Default `None`: the stage does not pad, and
    /// its [`StepOutput::tokens`] are the computed positions.
    fn padded_shape(&self, _batch: &Self::Batch, _update: usize) -> Option<(usize, usize)> {
        None
    }
}

/// Where a micro-batch's forward and backward sit in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The run's seed (`--seed`).
    pub seed: u64,
    /// The optimizer step being computed, from 1 (restored on `--resume`).
    pub step: usize,
    /// The micro-batch within the step (gradient accumulation).
    pub micro_batch: usize,
    /// The update made from the current batch (PPO's epochs × minibatches; else 0).
    pub update: usize,
}

impl Position {
    /// A 64-bit key for this position and seed (a SplitMix64 mix of each field in turn):
    /// distinct positions give unrelated keys.
    pub fn key(&self) -> u64 {
        [self.step, self.micro_batch, self.update]
            .iter()
            .fold(self.seed, |k, &x| {
                crate::data::SplitMix64::new(k ^ (x as u64).rotate_left(32)).next_u64()
            })
    }
}

/// What [`run`] returns, also written to `<out>/summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Optimizer steps completed, including resumed ones.
    pub steps: usize,
    /// Steps taken by this call.
    pub steps_this_run: usize,
    pub final_loss: Option<f64>,
    /// Tokens trained on, including resumed steps.
    pub tokens: u64,
    /// Wall time of this call.
    pub wall_time_s: f64,
    /// Tokens per second during this call.
    pub tokens_per_s: f64,
    /// Loss of every step of this call, in order.
    pub losses: Vec<f64>,
    /// The last evaluation results.
    pub eval: BTreeMap<String, f64>,
    /// What this call cost: FLOPs, time by phase, energy, CO2-eq, price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
}

/// Trains `params` on `stage` as configured; see the crate docs for the layout of
/// `cfg.out`. Resumes from `cfg.resume` if set, reproducing exactly the losses an
/// uninterrupted run would have had.
pub fn run<S: Stage>(stage: &mut S, params: &Params, cfg: &TrainerConfig) -> Result<TrainSummary> {
    cfg.validate()?;
    let mut lp = Loop::new(stage, params, cfg)?;
    lp.train(stage)?;
    lp.finish(stage)
}

/// Sums since the last log event.
#[derive(Default)]
struct Interval {
    steps: usize,
    loss: f64,
    tokens: u64,
    metrics: BTreeMap<String, (f64, usize)>,
    start: Option<Instant>,
}

struct Loop<'a> {
    params: &'a Params,
    cfg: &'a TrainerConfig,
    opt: AdamW,
    schedule: LrSchedule,
    data: DataOrder,
    grads: GradAccumulator,
    state: TrainerState,
    metrics: MetricsWriter,
    bar: ProgressBar,
    start_step: usize,
    start_tokens: u64,
    started: Instant,
    elapsed_before: f64,
    interval: Interval,
    summary: TrainSummary,
    cost: Meter,
    /// Examples in the current micro-batches (for the FLOP count's row length).
    batch_examples: usize,
}

mod setup;

mod cost_hooks;

impl Loop<'_> {
    fn train<S: Stage>(&mut self, stage: &mut S) -> Result<()> {
        let per_batch = stage.updates_per_batch().max(1);
        let mut batches: Vec<S::Batch> = Vec::new();
        // Updates already made from `batches`; `per_batch` means "fetch new data".
        let mut update = per_batch;
        let mut boundary = self.start_step;
        while self.state.global_step < self.schedule.total_steps {
            let step = self.state.global_step;
            // 1. learning rate
            let lr = self.schedule.lr(step);
            if update == per_batch {
                // 2. eval / checkpoint of the state after `step` updates, between batches
                //    (skipped at the step we started or resumed from: already done, or
                //    nothing trained yet)
                if step != self.start_step {
                    self.eval_and_save(stage, boundary, step)?;
                }
                boundary = step;
                // 3. data: up to grad_accum micro-batches
                batches = self.next_batches(stage)?;
                if batches.is_empty() {
                    break; // epochs used up
                }
                update = 0;
            }
            // 4. forward / backward over the micro-batches
            let (loss, tokens) = self.forward_backward(stage, &batches, update, step + 1)?;
            // 5. clip (norm measured before clipping, as torch returns it)
            let t = Instant::now();
            let grad_norm = self.clip(step + 1)?;
            // 6. optimizer step
            self.opt.step(self.params, &self.grads, lr)?;
            self.grads.clear();
            self.cost.phase(Phase::Optimizer, t);
            self.cost.poll();
            self.advance(loss, tokens);
            stage.on_step_end(self.state.global_step)?;
            update += 1;
            if stage.stop_batch_early() {
                update = per_batch;
            }
            // 7. log
            self.log(lr, loss, grad_norm, tokens)?;
        }
        Ok(())
    }

    /// Evaluates and saves when an `eval_every` / `save_every` multiple lies in
    /// `(prev, step]`: every multiple when each batch is one update, else the first boundary
    /// after it.
    fn eval_and_save<S: Stage>(&mut self, stage: &mut S, prev: usize, step: usize) -> Result<()> {
        let due = |every: Option<usize>| every.is_some_and(|k| k > 0 && step / k > prev / k);
        if due(self.cfg.eval_every) {
            self.eval(stage, step)?;
        }
        if due(self.cfg.save_every) {
            self.save(stage)?;
        }
        Ok(())
    }

    /// Up to `grad_accum` micro-batches of the next example indices.
    fn next_batches<S: Stage>(&mut self, stage: &mut S) -> Result<Vec<S::Batch>> {
        let t = Instant::now();
        let indices: Vec<Vec<usize>> = (0..self.cfg.grad_accum)
            .map_while(|_| self.data.next_batch())
            .collect();
        self.batch_examples = indices.iter().map(Vec::len).sum();
        let batches: Vec<S::Batch> = indices
            .iter()
            .map(|i| stage.make_batch(i))
            .collect::<Result<_>>()?;
        // Work a stage does while making a batch (PPO's rollout) is booked under its own
        // phases; the rest is data.
        let mut inner = 0.0;
        for (phase, s) in batches.iter().flat_map(|b| stage.batch_phases(b)) {
            self.cost.add_seconds(phase, s);
            inner += s;
        }
        let total = t.elapsed().as_secs_f64();
        self.cost.add_seconds(Phase::Data, (total - inner).max(0.0));
        Ok(batches)
    }

    /// Runs update `update` of the micro-batches, each loss scaled by `1/n` so the
    /// accumulated gradient is the mean. Returns the mean loss and the token count.
    fn forward_backward<S: Stage>(
        &mut self,
        stage: &mut S,
        batches: &[S::Batch],
        update: usize,
        step: usize,
    ) -> Result<(f64, u64)> {
        let scale = 1.0 / batches.len() as f64;
        let (mut loss_sum, mut tokens) = (0.0, 0u64);
        let shapes: Vec<_> = batches
            .iter()
            .map(|b| stage.padded_shape(b, update))
            .collect();
        for (micro_batch, batch) in batches.iter().enumerate() {
            let at = Position {
                seed: self.cfg.seed,
                step,
                micro_batch,
                update,
            };
            // The micro-batch's random draws (adapter dropout masks) derive from where it sits
            // in the run, so a resumed run and a checkpointed recompute draw the same ones.
            let key = lm::dropout::training_key(Some(at.key()));
            stage.set_position(Some(at));
            let out = self.micro_step(stage, batch, update, scale, (step, micro_batch));
            stage.set_position(None);
            drop(key);
            let (loss, out) = out?;
            loss_sum += loss as f64 * scale;
            tokens += out.tokens as u64;
            for (k, v) in out.metrics {
                let e = self.interval.metrics.entry(k).or_insert((0.0, 0));
                *e = (e.0 + v, e.1 + 1);
            }
        }
        self.count_flops(tokens, &shapes, update);
        Ok((loss_sum, tokens))
    }

    /// Forward and backward of one micro-batch; its gradient (scaled by `scale`) is
    /// accumulated. Returns its loss as a number too. Stops on a non-finite loss, naming
    /// `at` = (step, micro-batch).
    fn micro_step<S: Stage>(
        &mut self,
        stage: &mut S,
        batch: &S::Batch,
        update: usize,
        scale: f64,
        at: (usize, usize),
    ) -> Result<(f32, StepOutput)> {
        let t = Instant::now();
        let out = stage.update_loss(batch, update)?; // out.loss: () scalar, micro-batch mean
        let loss = out.loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        self.cost.phase(Phase::Forward, t);
        if !loss.is_finite() {
            let (step, micro_batch) = at;
            return Err(Error::NonFiniteLoss {
                step,
                micro_batch,
                loss,
            });
        }
        let t = Instant::now();
        // Every stage's backward adds the gradients of activation-checkpointed layers, which
        // come out of their recomputation (without checkpointing: exactly `loss.backward()`).
        let scaled = out.loss.affine(scale, 0.0)?;
        self.grads.add(&lm::checkpoint::backward(&scaled)?)?;
        self.cost.phase(Phase::Backward, t);
        Ok((loss, out))
    }

    fn clip(&mut self, step: usize) -> Result<f32> {
        let norm = match self.cfg.max_grad_norm {
            Some(max) => self.grads.clip_grad_norm(max)?,
            None => self.grads.global_norm()?,
        };
        if !norm.is_finite() {
            return Err(Error::NonFiniteGradNorm { step, norm });
        }
        Ok(norm)
    }

    fn advance(&mut self, loss: f64, tokens: u64) {
        self.state.global_step += 1;
        self.state.data = self.data.position();
        self.state.tokens += tokens;
        self.state.last_loss = Some(loss);
        self.summary.losses.push(loss);
        self.interval.steps += 1;
        self.interval.loss += loss;
        self.interval.tokens += tokens;
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn log(&mut self, lr: f64, loss: f64, grad_norm: f32, tokens: u64) -> Result<()> {
        let step = self.state.global_step;
        self.bar.set_position(step as u64);
        let due = step % self.cfg.log_every == 0 || step == self.schedule.total_steps;
        if !due {
            return Ok(());
        }
        let iv = std::mem::take(&mut self.interval);
        let secs = iv.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let event = LogEvent {
            step,
            epoch: self.data.epoch_f64(),
            lr,
            loss: iv.loss / iv.steps.max(1) as f64,
            grad_norm: grad_norm as f64,
            tokens: iv.tokens,
            tokens_per_s: if secs > 0.0 {
                iv.tokens as f64 / secs
            } else {
                0.0
            },
            elapsed_s: self.elapsed(),
            metrics: iv
                .metrics
                .into_iter()
                .map(|(k, (s, n))| (k, s / n as f64))
                .collect(),
            cost: Some(self.cost_block()),
        };
        self.interval.start = Some(Instant::now());
        tracing::debug!(step, loss, tokens, "train step");
        self.bar.set_message(progress_message(&event));
        self.metrics.write(&event)
    }

    fn eval<S: Stage>(&mut self, stage: &mut S, step: usize) -> Result<()> {
        let t = Instant::now();
        let results = stage.evaluate()?;
        self.cost.phase(Phase::Eval, t);
        let mut record: BTreeMap<String, serde_json::Value> = results
            .iter()
            .map(|(k, v)| (format!("eval_{k}"), serde_json::json!(v)))
            .collect();
        record.insert("step".into(), step.into());
        record.insert("epoch".into(), self.data.epoch_f64().into());
        self.metrics.write(&record)?;
        tracing::info!(step, ?results, "eval");
        self.summary.eval = results;
        Ok(())
    }

    fn save<S: Stage>(&mut self, stage: &S) -> Result<()> {
        let t = Instant::now();
        self.state.extra = stage.extra_state();
        self.state.elapsed_s = self.elapsed();
        let state = CheckpointState {
            params: self.params,
            optimizer: self.opt.state(),
            trainer: &self.state,
        };
        let path = save_checkpoint(&self.cfg.out, &state, self.cfg.save_total_limit)?;
        tracing::info!(path = %path.display(), "saved checkpoint");
        self.cost.phase(Phase::Checkpoint, t);
        Ok(())
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(Error::json(path))?;
    std::fs::write(path, text).map_err(Error::io(path))
}
