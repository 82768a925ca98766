//! The labeling app's ranking export as training data: a raw ranking row becomes its pairs,
//! and with `group_pairs` one ranking's pairs are one training example (they share a batch).
mod common;

use lm::{LoadOptions, Tokenizer};
use reward_model::{group_indices, load_pairs, HeadInit, RewardConfig, RewardModel, RewardStage};
use train::Stage;

const ROWS: [&str; 3] = [
    // Raw ranking rows (`rudder label export --raw`): b > a > c, then z > (x = y).
    r#"{"ranking_id": 1, "prompt": "Pick", "responses": [" a", " b", " c"], "tiers": [[1], [0], [2]], "unacceptable": []}"#,
    r#"{"ranking_id": 2, "prompt": "More", "responses": [" x", " y", " z"], "tiers": [[2], [0, 1]], "unacceptable": [0, 1]}"#,
    r#"{"prompt": "Q", "chosen": " yes", "rejected": " no"}"#,
];

#[test]
fn rankings_become_grouped_pairs_and_groups_share_a_batch() {
    let dir = common::fixtures().join("tiny-llama");
    let tok = Tokenizer::from_folder(&dir, &[2]).expect("tokenizer");
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("rankings.jsonl");
    std::fs::write(&path, ROWS.join("\n")).expect("write");
    let data = load_pairs(&path, &tok, &RewardConfig::default()).expect("pairs");
    let lines: Vec<usize> = data.pairs.iter().map(|p| p.line).collect();
    assert_eq!(
        lines,
        [1, 1, 1, 2, 2, 3],
        "3 pairs, 2 (the tie gives none), 1"
    );
    let groups = group_indices(&data.pairs);
    assert_eq!(groups, vec![vec![0, 1, 2], vec![3, 4], vec![5]]);

    let init = HeadInit {
        seed: 42,
        std: None,
    };
    let model = RewardModel::load_with(
        dir.to_str().unwrap_or_default(),
        &LoadOptions::default(),
        Some(init),
    )
    .expect("load");
    let mut stage = RewardStage {
        model,
        train: data.pairs.clone(),
        eval: vec![],
        use_margin: true,
        center_rewards_coefficient: None,
        extra_params: vec![],
        groups: Some(groups),
    };
    assert_eq!(stage.num_examples(), 3, "one example per ranking");
    let batch = stage.make_batch(&[1, 2]).expect("batch");
    let p = &data.pairs;
    let want: Vec<Vec<u32>> = [3, 4, 5]
        .iter()
        .map(|&i| p[i].chosen.clone())
        .chain([3, 4, 5].iter().map(|&i| p[i].rejected.clone()))
        .collect();
    assert_eq!(batch.rows, want, "groups 1 and 2 expand to pairs 3, 4, 5");
    stage.groups = None;
    assert_eq!(stage.num_examples(), 6);
    assert_eq!(stage.make_batch(&[1]).expect("batch").rows.len(), 2);
}
