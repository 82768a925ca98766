//! Training through `train::run`: from chance to near-perfect pairwise accuracy on a small
//! separable synthetic set, with every trainable weight moving.
mod common;

use lm::LoadOptions;
use reward_model::{evaluate_pairs, HeadInit, Pair, RewardModel, RewardStage};
use train::{Stage, TrainerConfig};

/// Pairs that differ only in their answer tokens: chosen answers use ids 100..120, rejected
/// ones 200..220, after a random prompt drawn from the rest of the vocabulary. Separable by
/// token identity, and nothing a random head already knows.
fn synthetic(n: usize, seed: u64) -> Vec<Pair> {
    let mut s = seed;
    let mut next = move |m: u32| {
        // splitmix-style LCG step; good enough for picking token ids
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as u32) % m
    };
    (0..n)
        .map(|i| {
            let plen = 4 + next(6) as usize;
            let prompt: Vec<u32> = (0..plen).map(|_| 3 + next(90)).collect();
            let alen = 2 + next(3) as usize;
            let answer = |base: u32, next: &mut dyn FnMut(u32) -> u32| -> Vec<u32> {
                let mut a: Vec<u32> = (0..alen).map(|_| base + next(20)).collect();
                a.push(2); // <|im_end|>
                a
            };
            let chosen = [prompt.clone(), answer(100, &mut next)].concat();
            let rejected = [prompt, answer(200, &mut next)].concat();
            Pair {
                line: i + 1,
                chosen,
                rejected,
                margin: None,
                agreement: Some(if i % 2 == 0 { 1.0 } else { 2.0 / 3.0 }),
                group: None,
            }
        })
        .collect()
}

#[test]
fn accuracy_goes_from_chance_to_near_perfect_and_every_weight_moves() {
    let dir = common::fixtures().join("tiny-llama");
    let opts = LoadOptions {
        trainable: true,
        ..Default::default()
    };
    let init = HeadInit {
        seed: 42,
        std: None,
    };
    let model =
        RewardModel::load_with(dir.to_str().unwrap_or_default(), &opts, Some(init)).expect("load");
    let mut stage = RewardStage {
        model,
        train: synthetic(48, 7),
        eval: synthetic(32, 99),
        use_margin: true,
        center_rewards_coefficient: Some(0.01),
        extra_params: vec![],
        groups: None,
    };
    let params = stage.params().expect("params");
    assert_eq!(
        params.len(),
        2 * 9 + 2 + 1,
        "embeddings, 2 layers of 9, final norm, head"
    );
    let before = params.snapshot().expect("snapshot");
    let start = stage.evaluate().expect("eval");
    assert!(
        (0.2..=0.75).contains(&start["accuracy"]),
        "starts near chance: {start:?}"
    );
    let out = tempfile::tempdir().expect("tmp");
    let cfg = TrainerConfig {
        learning_rate: 2e-3,
        batch_size: 8,
        max_steps: Some(80),
        warmup_steps: 3,
        eval_every: Some(40),
        save_every: None,
        log_every: 10,
        out: out.path().to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    let summary = train::run(&mut stage, &params, &cfg).expect("train");
    let end = &summary.eval;
    assert!(
        end["accuracy"] >= 0.95,
        "near-perfect after training: {end:?}"
    );
    assert!(
        end["accuracy_unanimous"] >= 0.9 && end["pairs_unanimous"] == 16.0,
        "{end:?}"
    );
    let first: f64 = summary.losses[..6].iter().sum::<f64>() / 6.0;
    let last: f64 = summary.losses[summary.losses.len() - 6..]
        .iter()
        .sum::<f64>()
        / 6.0;
    assert!(last < 0.5 * first, "loss falls: {first} -> {last}");
    for ((name, old), (_, var)) in before.iter().zip(params.iter()) {
        let diff = (old - var.as_tensor())
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("diff");
        assert!(diff > 0.0, "{name} did not change");
    }
    // The library-side evaluation agrees with what the loop logged at the end.
    let again = evaluate_pairs(&stage.model, &stage.eval, true, Some(0.01)).expect("eval");
    assert!((again["loss"] - end["loss"]).abs() < 1e-6);
    assert!(out.path().join("metrics.jsonl").exists() && out.path().join("summary.json").exists());
}
