//! Preference files to pairs: every accepted format, and bad input reported with its line.
mod common;

use lm::Tokenizer;
use reward_model::{load_pairs, RewardConfig};
use std::path::{Path, PathBuf};

fn tokenizer() -> Tokenizer {
    Tokenizer::from_folder(&common::fixtures().join("tiny-llama"), &[2]).expect("tokenizer")
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n")).expect("write");
    p
}

const GOOD: [&str; 5] = [
    r#"{"prompt": "Hi", "chosen": " there!", "rejected": " go away", "margin": 0.5}"#,
    r#"{"chosen": [{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}], "rejected": [{"role":"user","content":"Hi"},{"role":"assistant","content":"No."}]}"#,
    r#"{"prompt": [{"role":"user","content":"2+2?"}], "chosen": [{"role":"assistant","content":"4"}], "rejected": [{"role":"assistant","content":"5"}], "votes": {"chosen": 2, "rejected": 1, "tie": 0}, "agreement": 0.6666666666666666, "margin": 0.3333}"#,
    r#"{"conversations": [{"from":"human","value":"Name a color"}], "chosen": {"from":"gpt","value":"Blue"}, "rejected": {"from":"gpt","value":"Seven"}}"#,
    r#"{"prompt": "Q", "chosen": "yes", "rejected": "no", "votes": {"chosen": 3, "rejected": 0}}"#,
];

#[test]
fn every_format_becomes_a_pair() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = write(tmp.path(), "prefs.jsonl", &GOOD);
    let data = load_pairs(&path, &tokenizer(), &RewardConfig::default()).expect("pairs");
    assert_eq!(data.pairs.len(), 5);
    assert_eq!(
        data.pairs.iter().map(|p| p.line).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(data.pairs[0].margin, Some(0.5));
    assert_eq!(data.pairs[2].agreement, Some(0.6666666666666666));
    assert_eq!(data.pairs[4].agreement, Some(1.0), "agreement from votes");
    for p in &data.pairs {
        assert_ne!(p.chosen, p.rejected);
        // Both sides share the prompt and end with <|im_end|> (EOS or the template's turn end).
        assert!(p.chosen.contains(&2) && p.rejected.contains(&2), "{p:?}");
    }
    assert_eq!(data.truncated, 0);
}

#[test]
fn bad_rows_name_their_line_and_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tok = tokenizer();
    let cfg = RewardConfig::default();
    let same = write(
        tmp.path(),
        "same.jsonl",
        &[
            GOOD[0],
            r#"{"prompt": "a", "chosen": "b", "rejected": "b"}"#,
        ],
    );
    let err = load_pairs(&same, &tok, &cfg)
        .expect_err("identical")
        .to_string();
    assert!(
        err.contains("same.jsonl:2") && err.contains("identical"),
        "{err}"
    );
    let missing = write(
        tmp.path(),
        "missing.jsonl",
        &[GOOD[0], GOOD[1], r#"{"prompt": "a", "chosen": "b"}"#],
    );
    let err = load_pairs(&missing, &tok, &cfg)
        .expect_err("missing")
        .to_string();
    assert!(
        err.contains("missing.jsonl:3") && err.contains("`rejected`"),
        "{err}"
    );
    let skip = RewardConfig {
        skip_bad_rows: true,
        ..cfg
    };
    let data = load_pairs(&missing, &tok, &skip).expect("skipping");
    assert_eq!(
        (data.pairs.len(), data.skipped.len(), data.skipped[0].0),
        (2, 1, 3)
    );
    assert!(data
        .summary(&missing)
        .contains("1 bad rows skipped (lines [3])"));
}

#[test]
fn long_pairs_are_truncated_and_counted_or_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tok = tokenizer();
    let long = format!(
        r#"{{"prompt": "{}", "chosen": " yes", "rejected": " no"}}"#,
        "word ".repeat(60)
    );
    let path = write(tmp.path(), "long.jsonl", &[GOOD[0], &long]);
    let cfg = RewardConfig {
        max_seq_len: Some(24),
        ..Default::default()
    };
    let data = load_pairs(&path, &tok, &cfg).expect("truncating");
    assert_eq!((data.pairs.len(), data.truncated), (2, 1));
    let p = &data.pairs[1];
    assert!(p.chosen.len() <= 24 && p.rejected.len() <= 24);
    assert_eq!(
        p.chosen.last(),
        Some(&2),
        "the prompt is cut from the left, the answer kept"
    );
    let drop = RewardConfig {
        drop_long: true,
        ..cfg
    };
    let data = load_pairs(&path, &tok, &drop).expect("dropping");
    assert_eq!((data.pairs.len(), data.dropped.clone()), (1, vec![2]));
}
