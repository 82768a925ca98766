//! The training loop's cost block: every run logs one and summarises it; padded positions are
//! counted and carry the FLOPs. (The energy readers' own tests are cost/tests/energy.rs.)

/// A stage with one 2-element weight: each example is "10 tokens", so FLOPs are known.
struct Tiny {
    w: candle_core::Var,
}

impl train::Stage for Tiny {
    type Batch = usize;
    fn num_examples(&self) -> usize {
        4
    }
    fn make_batch(&mut self, indices: &[usize]) -> train::Result<usize> {
        Ok(indices.len())
    }
    fn loss(&mut self, rows: &usize) -> train::Result<train::StepOutput> {
        Ok(train::StepOutput {
            loss: self.w.as_tensor().sqr()?.sum_all()?,
            tokens: 10 * rows,
            metrics: Default::default(),
        })
    }
}

#[test]
fn every_run_logs_a_cost_block_and_summarises_it() -> train::Result<()> {
    use cost::{FlopModel, ModelDims, StageKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let w = candle_core::Var::new(&[1f32, 2.0], &candle_core::Device::Cpu)?;
    let params = train::Params::new(vec![("w".into(), w.clone())])?;
    let cfg = train::TrainerConfig {
        out: dir.path().to_path_buf(),
        batch_size: 2,
        max_steps: Some(3),
        log_every: 1,
        quiet: true,
        cost: cost::CostSettings {
            price_per_hour: Some(2.0),
            ..Default::default()
        },
        flops: Some(FlopModel {
            dims: ModelDims {
                hidden_size: 8,
                intermediate_size: 16,
                mlp_matrices: 3,
                num_layers: 2,
                num_heads: 2,
                num_kv_heads: 1,
                head_dim: 4,
                vocab_size: 32,
            },
            stage: StageKind::Sft,
            recompute: false,
        }),
        gradient_checkpointing: false,
        ..Default::default()
    };
    let summary = train::run(&mut Tiny { w }, &params, &cfg)?;
    // Per step 2 rows of 10 tokens, 2 trainable parameters. Per token (flops.rs's tiny
    // model): forward 3456; backward 2·1408 + 2·2 + 2·640 = 4100. 3 steps × 20 tokens.
    let per_step = 20.0 * (3456.0 + 4100.0);
    let cost = summary.cost.expect("summary has a cost block");
    assert_eq!(cost.flops, 3.0 * per_step);
    assert_eq!(cost.tokens, 60);
    assert!(cost.price_per_hour == Some(2.0) && cost.cost.is_some());
    for phase in ["data", "forward", "backward", "optimizer", "checkpoint"] {
        assert!(cost.phases_s.contains_key(phase), "{phase} missing");
    }
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics");
    let flops: Vec<f64> = text
        .lines()
        .map(|l| serde_json::from_str::<train::LogEvent>(l).expect("line"))
        .map(|e| e.cost.expect("cost block").flops)
        .collect();
    assert_eq!(flops, [per_step, 2.0 * per_step, 3.0 * per_step]);
    let json = std::fs::read_to_string(dir.path().join("summary.json")).expect("summary");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["cost"]["flops"], 3.0 * per_step);
    assert!(matches!(
        v["cost"]["energy"].as_str(),
        Some("measured" | "estimated")
    ));
    Ok(())
}

/// Rows of 3, 7, 5 and 9 tokens, right-padded to the longest of each micro-batch.
struct Ragged {
    w: candle_core::Var,
}

const LENS: [usize; 4] = [3, 7, 5, 9];

impl train::Stage for Ragged {
    type Batch = Vec<usize>;
    fn num_examples(&self) -> usize {
        LENS.len()
    }
    fn make_batch(&mut self, indices: &[usize]) -> train::Result<Vec<usize>> {
        Ok(indices.iter().map(|&i| LENS[i]).collect())
    }
    fn loss(&mut self, lens: &Vec<usize>) -> train::Result<train::StepOutput> {
        Ok(train::StepOutput {
            loss: self.w.as_tensor().sqr()?.sum_all()?,
            tokens: lens.iter().sum(),
            metrics: Default::default(),
        })
    }
    fn padded_shape(&self, lens: &Vec<usize>, _update: usize) -> Option<(usize, usize)> {
        Some((lens.len(), lens.iter().copied().max().unwrap_or(0)))
    }
}

#[test]
fn padded_positions_are_counted_and_carry_the_flops() -> train::Result<()> {
    use cost::{FlopModel, ModelDims, StageKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let w = candle_core::Var::new(&[1f32, 2.0], &candle_core::Device::Cpu)?;
    let params = train::Params::new(vec![("w".into(), w.clone())])?;
    let model = FlopModel {
        dims: ModelDims {
            hidden_size: 8,
            intermediate_size: 16,
            mlp_matrices: 3,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            vocab_size: 32,
        },
        stage: StageKind::Sft,
        // The loop's default, gradient checkpointing, adds the layers' recompute.
        recompute: true,
    };
    let cfg = train::TrainerConfig {
        out: dir.path().to_path_buf(),
        batch_size: 4,
        max_steps: Some(1),
        quiet: true,
        flops: Some(model.clone()),
        ..Default::default()
    };
    train::run(&mut Ragged { w }, &params, &cfg)?;
    let json = std::fs::read_to_string(dir.path().join("summary.json")).expect("summary");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    // One batch of all four rows: 24 real tokens, a 4 × 9 grid of 36 computed positions.
    assert_eq!(
        (
            v["cost"]["tokens"].as_u64(),
            v["cost"]["padded_tokens"].as_u64()
        ),
        (Some(24), Some(36))
    );
    let padded = model.step_padded(4, 9, 2, true).total();
    assert_eq!(v["cost"]["flops"].as_f64(), Some(padded));
    assert!(padded > model.step(24, 4, 2, true).total());
    assert!(v["cost"]["flop_rule"]
        .as_str()
        .is_some_and(|r| r.contains("padding included") && r.contains("recomputes")));
    Ok(())
}
