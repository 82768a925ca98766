//! Saving: the folder Rudder writes reloads with the same rewards (the goldens of
//! transformers), and its config carries what transformers' `AutoModelForSequenceClassification`
//! needs. `scripts/check_rm_export.py` checks the transformers side on the same folder.
mod common;

use common::{assert_close, floats, golden_rows, goldens};
use lm::LoadOptions;
use reward_model::RewardModel;

#[test]
fn saved_model_reloads_with_the_golden_rewards() {
    let src = common::fixtures().join("tiny-llama-rm");
    let rm =
        RewardModel::load(src.to_str().unwrap_or_default(), &LoadOptions::default()).expect("load");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("rm");
    rm.save(&dir).expect("save");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(
        cfg["architectures"],
        serde_json::json!(["LlamaForSequenceClassification"])
    );
    assert_eq!(cfg["num_labels"], 1);
    assert_eq!(cfg["id2label"], serde_json::json!({"0": "LABEL_0"}));
    assert_eq!(cfg["pad_token_id"], 0);
    let back = RewardModel::load(dir.to_str().unwrap_or_default(), &LoadOptions::default())
        .expect("reload");
    let g = goldens();
    let got = back.score(&golden_rows(&g)).expect("score");
    assert_close(&got, &floats(&g["rewards"]["unpadded"]), 1e-4, "reloaded");
}

#[test]
fn a_causal_lm_is_not_a_reward_model_without_an_init() {
    let src = common::fixtures().join("tiny-llama");
    let err = RewardModel::load(src.to_str().unwrap_or_default(), &LoadOptions::default())
        .expect_err("no head");
    assert!(err.to_string().contains("score.weight"), "{err}");
}
