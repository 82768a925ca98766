//! LoRA reward training end to end through the library entry point: a frozen backbone with
//! adapters plus the head learn, the saved folder (adapters merged) scores as the trained model.
mod common;

use lm::LoadOptions;
use reward_model::{build_stage, train_reward, RewardConfig, RewardModel};
use train::TrainerConfig;

fn write_prefs(path: &std::path::Path, n: usize) {
    let words = [
        "apple", "river", "stone", "cloud", "green", "music", "paper", "light",
    ];
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let prompt = format!(
                "Tell me about {} and {}.",
                words[i % 8],
                words[(i * 3 + 1) % 8]
            );
            let chosen = format!("Sure: {} is nice.", words[(i + 2) % 8]);
            serde_json::json!({"prompt": prompt, "chosen": chosen, "rejected": "No."}).to_string()
        })
        .collect();
    std::fs::write(path, rows.join("\n")).expect("write");
}

#[test]
fn lora_reward_training_learns_and_saves_merged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("prefs.jsonl");
    write_prefs(&data, 24);
    let cfg = RewardConfig {
        model: Some(common::fixtures().join("tiny-llama").display().to_string()),
        data: Some(data.clone()),
        eval_data: Some(data),
        lora: lm::lora::LoraConfig {
            lora_r: Some(4),
            lora_targets: vec!["all-linear".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let out = tmp.path().join("rm");
    let trainer = TrainerConfig {
        learning_rate: 3e-3,
        batch_size: 8,
        max_steps: Some(24),
        save_every: None,
        out: out.clone(),
        quiet: true,
        ..Default::default()
    };
    // The init is seeded: a second build of the same stage gives the starting weights.
    let init = build_stage(&cfg, &trainer, &LoadOptions::default())
        .and_then(|s| s.params()?.snapshot())
        .expect("init");
    let o = train_reward(&cfg, &trainer, &LoadOptions::default()).expect("train");
    // 2 layers x 7 projections x (A, B) + the head; the backbone itself is frozen.
    let params = o.stage.params().expect("params");
    assert_eq!(params.len(), 2 * 7 * 2 + 1);
    assert!(o.stage.model.backbone_params.is_empty());
    for ((name, old), (_, var)) in init.iter().zip(params.iter()) {
        let moved = (old - var.as_tensor())
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("diff");
        assert!(moved > 0.0, "{name} did not change");
    }
    let l = &o.summary.losses;
    assert!(
        l[l.len() - 4..].iter().sum::<f64>() < 0.5 * l[..4].iter().sum::<f64>(),
        "loss falls: {l:?}"
    );
    assert!(o.eval["accuracy"] >= 0.95, "{:?}", o.eval);
    let back = RewardModel::load(out.to_str().unwrap_or_default(), &LoadOptions::default())
        .expect("reload");
    let rows: Vec<Vec<u32>> = o
        .stage
        .eval
        .iter()
        .flat_map(|p| [p.chosen.clone(), p.rejected.clone()])
        .collect();
    let (a, b) = (
        o.stage.model.score(&rows).expect("a"),
        back.score(&rows).expect("b"),
    );
    common::assert_close(&b, &a, 1e-4, "merged reload vs trained");
    assert!(out.join("eval.json").exists() && out.join("reward_run.json").exists());

    // lora_dropout on the backbone's adapters: the same run with dropout takes other steps
    // (the head and A move from step 1, so step 2 differs), and repeats itself exactly.
    let mut dropped = cfg.clone();
    dropped.lora.lora_dropout = 0.3;
    let short = |name: &str| TrainerConfig {
        max_steps: Some(4),
        out: tmp.path().join(name),
        ..trainer.clone()
    };
    let losses = |c: &RewardConfig, name: &str| {
        train_reward(c, &short(name), &LoadOptions::default())
            .expect("train")
            .summary
            .losses
    };
    let (plain, with) = (losses(&cfg, "plain"), losses(&dropped, "dropout"));
    assert!(
        plain[1..].iter().zip(&with[1..]).all(|(a, b)| a != b),
        "{plain:?} {with:?}"
    );
    assert_eq!(with, losses(&dropped, "dropout-again"));
}
