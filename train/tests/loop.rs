//! End-to-end tests of `train::run` with a tiny MLP regression stage.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use train::data::SplitMix64;
use train::{Error, Params, Position, Result, ScheduleKind, Stage, StepOutput, TrainerConfig};

const N: usize = 20;

/// y = sin(x0) + x1 * x2 regressed by a 3-8-1 tanh MLP.
struct Regression {
    xs: Tensor, // (N, 3)
    ys: Tensor, // (N, 1)
    vars: Vec<Var>,
    loss_calls: usize,
    nan_at_call: Option<usize>,
    seen: u64,
}

fn uniform(rng: &mut SplitMix64, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale) as f32)
        .collect()
}

impl Regression {
    fn new(init_seed: u64) -> Result<Self> {
        let dev = Device::Cpu;
        let mut data_rng = SplitMix64::new(1234);
        let x = uniform(&mut data_rng, N * 3, 1.0);
        let y: Vec<f32> = x.chunks(3).map(|r| r[0].sin() + r[1] * r[2]).collect();
        let mut rng = SplitMix64::new(init_seed);
        let shapes: [&[usize]; 4] = [&[3, 8], &[8], &[8, 1], &[1]];
        let vars = shapes
            .iter()
            .map(|s| {
                let n = s.iter().product();
                Var::from_tensor(&Tensor::from_vec(uniform(&mut rng, n, 0.5), *s, &dev)?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            xs: Tensor::from_vec(x, (N, 3), &dev)?,
            ys: Tensor::from_vec(y, (N, 1), &dev)?,
            vars,
            loss_calls: 0,
            nan_at_call: None,
            seen: 0,
        })
    }

    fn params(&self) -> Result<Params> {
        let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
        Params::new(
            names
                .iter()
                .map(|n| n.to_string())
                .zip(self.vars.iter().cloned())
                .collect(),
        )
    }

    fn mse(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let v = &self.vars;
        let h = x
            .matmul(v[0].as_tensor())?
            .broadcast_add(v[1].as_tensor())?
            .tanh()?; // (B, 8)
        let pred = h
            .matmul(v[2].as_tensor())?
            .broadcast_add(v[3].as_tensor())?; // (B, 1)
        Ok((pred - y)?.sqr()?.mean_all()?)
    }
}

impl Stage for Regression {
    type Batch = (Tensor, Tensor);

    fn num_examples(&self) -> usize {
        N
    }

    fn make_batch(&mut self, indices: &[usize]) -> Result<Self::Batch> {
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &Device::Cpu)?;
        self.seen += indices.len() as u64;
        Ok((
            self.xs.index_select(&idx, 0)?,
            self.ys.index_select(&idx, 0)?,
        ))
    }

    fn loss(&mut self, (x, y): &Self::Batch) -> Result<StepOutput> {
        let mut loss = self.mse(x, y)?;
        if self.nan_at_call == Some(self.loss_calls) {
            loss = (loss * f64::NAN)?;
        }
        self.loss_calls += 1;
        let mut metrics = BTreeMap::new();
        metrics.insert("batch_rows".to_string(), x.dim(0)? as f64);
        Ok(StepOutput {
            loss,
            tokens: x.dim(0)?,
            metrics,
        })
    }

    fn evaluate(&mut self) -> Result<BTreeMap<String, f64>> {
        let loss = self.mse(&self.xs, &self.ys)?.to_scalar::<f32>()?;
        Ok(BTreeMap::from([("loss".to_string(), loss as f64)]))
    }

    fn extra_state(&self) -> serde_json::Value {
        serde_json::json!({ "seen": self.seen })
    }

    fn restore_extra_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.seen = state["seen"]
            .as_u64()
            .ok_or_else(|| Error::stage("missing `seen`"))?;
        Ok(())
    }
}

fn config(out: &Path) -> TrainerConfig {
    TrainerConfig {
        learning_rate: 0.05,
        batch_size: 4,
        grad_accum: 2,
        max_steps: Some(10),
        warmup_steps: 2,
        schedule: ScheduleKind::Cosine,
        weight_decay: 0.01,
        no_decay: vec!["bias".into()],
        max_grad_norm: Some(1.0),
        log_every: 1,
        eval_every: Some(5),
        save_every: Some(5),
        save_total_limit: Some(2),
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn values(p: &Params) -> Result<Vec<Vec<f32>>> {
    p.iter()
        .map(|(_, v)| Ok(v.flatten_all()?.to_vec1()?))
        .collect()
}

fn tmpdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(Error::stage)
}

#[test]
fn loss_falls_and_every_param_changes() -> Result<()> {
    let dir = tmpdir()?;
    let mut stage = Regression::new(7)?;
    let params = stage.params()?;
    let before = values(&params)?;
    let cfg = TrainerConfig {
        max_steps: None,
        epochs: 30,
        grad_accum: 1,
        log_every: 5,
        ..config(dir.path())
    };
    let summary = train::run(&mut stage, &params, &cfg)?;
    // 20 examples / batch 4 = 5 micro-batches per epoch, 30 epochs.
    assert_eq!(summary.steps, 150);
    let first: f64 = summary.losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = summary.losses[140..].iter().sum::<f64>() / 10.0;
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");
    for (b, a) in before.iter().zip(values(&params)?) {
        assert!(
            b.iter().zip(&a).any(|(x, y)| x != y),
            "a parameter did not change"
        );
    }
    assert_eq!(summary.tokens, 30 * N as u64);
    assert!(summary.eval["loss"] < first);
    let text = std::fs::read_to_string(dir.path().join("summary.json")).map_err(Error::stage)?;
    assert!(text.contains("\"final_loss\""));
    // A fresh run must not reuse a folder that already has checkpoints.
    let again = train::run(&mut Regression::new(7)?, &params, &cfg);
    assert!(matches!(again, Err(Error::Checkpoint { .. })));
    Ok(())
}

/// `save_every: 0` is TRL's `save_strategy="no"`: the run trains as usual and writes its
/// summary, but no checkpoint, not even at the end.
#[test]
fn save_every_zero_writes_no_checkpoint() -> Result<()> {
    let dir = tmpdir()?;
    let mut stage = Regression::new(7)?;
    let params = stage.params()?;
    let cfg = TrainerConfig {
        save_every: Some(0),
        ..config(dir.path())
    };
    let summary = train::run(&mut stage, &params, &cfg)?;
    assert_eq!(summary.steps, 10);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .map_err(Error::stage)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::stage)?;
    assert!(names.iter().any(|n| n == "summary.json"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("checkpoint")),
        "{names:?}"
    );
    Ok(())
}

#[test]
fn resume_after_crash_reproduces_uninterrupted_run() -> Result<()> {
    let (straight_dir, crash_dir) = (tmpdir()?, tmpdir()?);
    let mut straight = Regression::new(7)?;
    let straight_params = straight.params()?;
    let full = train::run(
        &mut straight,
        &straight_params,
        &config(straight_dir.path()),
    )?;
    assert_eq!(full.losses.len(), 10);

    // Same run, but the loss of step 6, micro-batch 1 (the 12th loss call) is NaN.
    let mut crashing = Regression::new(7)?;
    crashing.nan_at_call = Some(11);
    let crash_params = crashing.params()?;
    let err = train::run(&mut crashing, &crash_params, &config(crash_dir.path()));
    assert!(
        matches!(
            err,
            Err(Error::NonFiniteLoss {
                step: 6,
                micro_batch: 1,
                ..
            })
        ),
        "{err:?}"
    );

    // Resume into a model with a different init: everything must come from the checkpoint.
    let mut resumed = Regression::new(99)?;
    let resumed_params = resumed.params()?;
    let cfg = TrainerConfig {
        resume: Some(crash_dir.path().to_path_buf()),
        ..config(crash_dir.path())
    };
    let rest = train::run(&mut resumed, &resumed_params, &cfg)?;
    assert_eq!(rest.steps, 10);
    assert_eq!(rest.losses, full.losses[5..]);
    assert_eq!(values(&resumed_params)?, values(&straight_params)?);
    assert_eq!(resumed.seen, straight.seen);
    assert_eq!(rest.tokens, full.tokens);

    // metrics.jsonl: the crashed run's lines after step 5 were dropped on resume.
    let read = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).map_err(Error::stage);
    let steps = |t: &str| -> Vec<u64> {
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
            .collect()
    };
    assert_eq!(
        steps(&read(crash_dir.path())?),
        steps(&read(straight_dir.path())?)
    );
    let ckpts = train::checkpoint::list_checkpoints(crash_dir.path())?;
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), [5, 10]);
    Ok(())
}

/// A stage making several optimizer updates per batch (as PPO does per rollout).
struct MultiUpdate {
    inner: Regression,
    per_batch: usize,
    stop_after: Option<usize>,
    made: usize,
    updates: Vec<usize>,
    /// What `set_position` last said, and its value at every update's forward.
    position: Option<Position>,
    positions: Vec<Position>,
}

impl Stage for MultiUpdate {
    type Batch = (Tensor, Tensor);
    fn num_examples(&self) -> usize {
        N
    }
    fn make_batch(&mut self, indices: &[usize]) -> Result<Self::Batch> {
        self.made += 1;
        self.inner.make_batch(indices)
    }
    fn loss(&mut self, _: &Self::Batch) -> Result<StepOutput> {
        Err(Error::stage("update_loss must be called instead"))
    }
    fn updates_per_batch(&self) -> usize {
        self.per_batch
    }
    fn update_loss(&mut self, batch: &Self::Batch, update: usize) -> Result<StepOutput> {
        self.updates.push(update);
        let at = self.position.ok_or_else(|| Error::stage("no position"))?;
        self.positions.push(at);
        self.inner.loss(batch)
    }
    fn set_position(&mut self, position: Option<Position>) {
        self.position = position;
    }
    fn stop_batch_early(&mut self) -> bool {
        let done = self.updates.last().map_or(0, |u| u + 1);
        self.stop_after.is_some_and(|k| done >= k)
    }
}

#[test]
fn several_updates_per_batch_and_early_stop() -> Result<()> {
    let dir = tmpdir()?;
    let mut stage = MultiUpdate {
        inner: Regression::new(7)?,
        per_batch: 3,
        stop_after: None,
        made: 0,
        updates: vec![],
        position: None,
        positions: vec![],
    };
    let params = stage.inner.params()?;
    let cfg = TrainerConfig {
        max_steps: None,
        grad_accum: 1,
        eval_every: None,
        save_every: Some(4),
        save_total_limit: None,
        ..config(dir.path())
    };
    // 5 batches of 4 examples, 3 updates each.
    let summary = train::run(&mut stage, &params, &cfg)?;
    assert_eq!((summary.steps, stage.made), (15, 5));
    assert_eq!(stage.updates, [0, 1, 2].repeat(5));
    // Every forward knew where it was (step from 1), and the position is cleared after it.
    let want: Vec<Position> = (1..=15)
        .map(|step| Position {
            seed: cfg.seed,
            step,
            micro_batch: 0,
            update: (step - 1) % 3,
        })
        .collect();
    assert_eq!((stage.positions.clone(), stage.position), (want, None));
    let mut keys: Vec<u64> = stage.positions.iter().map(Position::key).collect();
    keys.extend(
        stage
            .positions
            .iter()
            .map(|p| Position { seed: 1, ..*p }.key()),
    );
    keys.extend(stage.positions.iter().map(|p| {
        Position {
            micro_batch: 1,
            ..*p
        }
        .key()
    }));
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "positions share a key");
    // Checkpoints only between batches: the first boundary after each multiple of 4, and the end.
    let ckpts = train::checkpoint::list_checkpoints(dir.path())?;
    assert_eq!(
        ckpts.iter().map(|c| c.0).collect::<Vec<_>>(),
        [6, 9, 12, 15]
    );
    // Early stop after 2 updates of each batch: the data runs out after 10 updates.
    let dir = tmpdir()?;
    let mut stage = MultiUpdate {
        inner: Regression::new(7)?,
        per_batch: 3,
        stop_after: Some(2),
        made: 0,
        updates: vec![],
        position: None,
        positions: vec![],
    };
    let params = stage.inner.params()?;
    let summary = train::run(
        &mut stage,
        &params,
        &TrainerConfig {
            out: dir.path().into(),
            ..cfg
        },
    )?;
    assert_eq!((summary.steps, stage.made), (10, 5));
    assert_eq!(stage.updates, [0, 1].repeat(5));
    Ok(())
}
