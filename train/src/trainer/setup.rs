//! Setting the loop up (fresh or resumed) and wrapping it up.

use std::time::Instant;

use crate::checkpoint::{list_checkpoints, Checkpoint};

use super::*;

impl<'a> Loop<'a> {
    pub(super) fn new<S: Stage>(
        stage: &mut S,
        params: &'a Params,
        cfg: &'a TrainerConfig,
    ) -> Result<Self> {
        let n = stage.num_examples();
        if n == 0 {
            return Err(Error::Config("the stage has no training examples".into()));
        }
        let (data, schedule) = plan(n, stage.updates_per_batch().max(1), cfg)?;
        let total = schedule.total_steps;
        let ck = load_for_resume(params, cfg)?;
        let start_step = ck.as_ref().map_or(0, |c| c.trainer.global_step);
        let state = TrainerState {
            seed: cfg.seed,
            num_examples: n,
            batch_size: cfg.batch_size,
            ..Default::default()
        };
        let mut lp = Loop {
            params,
            cfg,
            opt: AdamW::new(cfg.adamw())?,
            schedule,
            data,
            grads: GradAccumulator::new(params),
            state,
            // On resume, drops log lines the interrupted run wrote after the checkpoint.
            metrics: MetricsWriter::open(&cfg.out.join("metrics.jsonl"), Some(start_step))?,
            bar: progress_bar(total, start_step, cfg.quiet),
            start_step,
            start_tokens: 0,
            started: Instant::now(),
            elapsed_before: 0.0,
            interval: Interval::default(),
            summary: TrainSummary::default(),
            cost: cost_hooks::meter(params, cfg),
            batch_examples: 0,
        };
        if let Some(ck) = ck {
            lp.restore(stage, ck)?;
        }
        lp.interval.start = Some(Instant::now());
        Ok(lp)
    }

    /// Puts a checkpoint into the params, optimizer, data order and stage.
    fn restore<S: Stage>(&mut self, stage: &mut S, ck: Checkpoint) -> Result<()> {
        let t = &ck.trainer;
        let now = (self.state.num_examples, self.cfg.batch_size, self.cfg.seed);
        if (t.num_examples, t.batch_size, t.seed) != now {
            let msg = format!(
                "saved with (examples, batch_size, seed) = {:?}, now {now:?}: \
                 the data order would differ",
                (t.num_examples, t.batch_size, t.seed)
            );
            return Err(Error::checkpoint(&ck.path, msg));
        }
        self.params.load(&ck.params)?;
        self.opt.set_state(ck.optimizer);
        stage.restore_extra_state(ck.trainer.extra.clone())?;
        self.data.seek(ck.trainer.data);
        self.elapsed_before = ck.trainer.elapsed_s;
        self.start_tokens = ck.trainer.tokens;
        self.state = ck.trainer;
        tracing::info!(path = %ck.path.display(), step = self.start_step, "resumed");
        Ok(())
    }

    /// Final eval and checkpoint, then `summary.json`.
    pub(super) fn finish<S: Stage>(mut self, stage: &mut S) -> Result<TrainSummary> {
        let step = self.state.global_step;
        if step != self.start_step {
            if self.cfg.eval_every.is_some() {
                self.eval(stage, step)?;
            }
            if self.cfg.save_every != Some(0) {
                self.save(stage)?;
            }
        }
        self.bar.finish();
        let wall = self.started.elapsed().as_secs_f64();
        let run_tokens = self.state.tokens - self.start_tokens;
        let mut summary = std::mem::take(&mut self.summary);
        summary.steps = step;
        summary.steps_this_run = step - self.start_step;
        summary.final_loss = self.state.last_loss;
        summary.tokens = self.state.tokens;
        summary.wall_time_s = wall;
        summary.tokens_per_s = if wall > 0.0 {
            run_tokens as f64 / wall
        } else {
            0.0
        };
        summary.cost = Some(self.final_cost());
        write_json(&self.cfg.out.join("summary.json"), &summary)?;
        Ok(summary)
    }
}

/// The data order and, from its length, the LR schedule. Without `max_steps` the
/// run lasts `epochs` passes of `ceil(n / batch_size)` micro-batches each, every
/// `grad_accum` of them making `per_batch` optimizer updates.
fn plan(n: usize, per_batch: usize, cfg: &TrainerConfig) -> Result<(DataOrder, LrSchedule)> {
    let max_epochs = cfg.max_steps.is_none().then_some(cfg.epochs);
    let data = DataOrder::new(n, cfg.batch_size, cfg.seed, max_epochs);
    let total = cfg.max_steps.unwrap_or_else(|| {
        (cfg.epochs * data.batches_per_epoch()).div_ceil(cfg.grad_accum) * per_batch
    });
    let schedule = LrSchedule::new(
        cfg.schedule,
        cfg.learning_rate,
        cfg.warmup_steps,
        total,
        cfg.min_lr_ratio,
    )?;
    Ok((data, schedule))
}

/// The checkpoint to resume from, if `cfg.resume` is set. A fresh run refuses an
/// `out` folder that already holds checkpoints, so two runs never mix.
fn load_for_resume(params: &Params, cfg: &TrainerConfig) -> Result<Option<Checkpoint>> {
    let Some(path) = &cfg.resume else {
        if !list_checkpoints(&cfg.out)?.is_empty() {
            let msg = "already holds checkpoints: set `resume` or use another `out`";
            return Err(Error::checkpoint(&cfg.out, msg));
        }
        std::fs::create_dir_all(&cfg.out).map_err(Error::io(&cfg.out))?;
        return Ok(None);
    };
    let device = match params.iter().next() {
        Some((_, v)) => v.device().clone(),
        None => candle_core::Device::Cpu,
    };
    std::fs::create_dir_all(&cfg.out).map_err(Error::io(&cfg.out))?;
    load_resume(path, &device).map(Some)
}
