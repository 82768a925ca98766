//! Reward models on GPT-2 and a Mixture-of-Experts backbone: a few Bradley–Terry steps move
//! every weight (backbone and head), and the saved folder (`GPT2ForSequenceClassification` /
//! `MixtralForSequenceClassification`) loads back with the same rewards.
mod common;

use lm::LoadOptions;
use reward_model::{HeadInit, Pair, RewardModel, RewardStage};
use train::TrainerConfig;

fn pairs() -> Vec<Pair> {
    (0..8u32)
        .map(|i| Pair {
            line: i as usize + 1,
            chosen: vec![5 + i, 40, 41, 100 + i, 2],
            rejected: vec![5 + i, 40, 41, 200 + i, 201, 2],
            margin: None,
            agreement: None,
            group: None,
        })
        .collect()
}

#[test]
fn reward_steps_move_every_weight_and_the_folder_reloads() {
    for name in ["tiny-gpt2", "tiny-mixtral"] {
        let dir = common::fixtures().join(name);
        let opts = LoadOptions {
            trainable: true,
            ..Default::default()
        };
        let init = HeadInit { seed: 1, std: None };
        let model = RewardModel::load_with(dir.to_str().unwrap_or_default(), &opts, Some(init))
            .expect("load");
        let mut stage = RewardStage {
            model,
            train: pairs(),
            eval: vec![],
            use_margin: false,
            center_rewards_coefficient: None,
            extra_params: vec![],
            groups: None,
        };
        let params = stage.params().expect("params");
        let before = params.snapshot().expect("snapshot");
        let out = tempfile::tempdir().expect("tmp");
        let cfg = TrainerConfig {
            learning_rate: 2e-3,
            batch_size: 8,
            max_steps: Some(3),
            save_every: None,
            out: out.path().to_path_buf(),
            quiet: true,
            ..Default::default()
        };
        train::run(&mut stage, &params, &cfg).expect("train");
        for ((n, old), (_, var)) in before.iter().zip(params.iter()) {
            let diff = (old - var.as_tensor())
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(diff > 0.0, "{name}: {n} did not change");
        }
        let saved = out.path().join("rm");
        stage.model.save(&saved).expect("save");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap())
                .unwrap();
        let class = format!(
            "{}ForSequenceClassification",
            stage.model.backbone.config.arch.class_prefix()
        );
        assert_eq!(cfg["architectures"][0], class.as_str());
        let back =
            RewardModel::load(saved.to_str().unwrap(), &LoadOptions::default()).expect("reload");
        let rows = vec![pairs()[0].chosen.clone(), pairs()[1].rejected.clone()];
        let a: Vec<f32> = stage
            .model
            .rewards(&rows, false)
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = back.rewards(&rows, false).unwrap().to_vec1().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{name}: {x} vs {y}");
        }
    }
}
