//! Writing a reward model folder that transformers loads as `AutoModelForSequenceClassification`
//! (and Rudder as [`RewardModel::load`]) with the same scores.
use crate::model::{RewardModel, SCORE_WEIGHT};
use crate::{Error, Result};
use std::path::Path;

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| lm::Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Error::from(lm::Error::Json {
            path: path.to_path_buf(),
            source: e,
        })
    })
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| lm::Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| {
        Error::from(lm::Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    })
}

impl RewardModel {
    /// Saves weights (backbone with any LoRA merged, plus `score.weight`), config and tokenizer.
    /// config.json gets `architectures: [<Arch>ForSequenceClassification]`, `num_labels: 1`
    /// (with the matching `id2label`/`label2id`) and the `pad_token_id` the reward token rule
    /// uses, so transformers reads the reward at the same token.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let arch = format!(
            "{}ForSequenceClassification",
            self.backbone.config.arch.class_prefix()
        );
        let head = vec![(SCORE_WEIGHT.to_string(), self.score.as_tensor().clone())];
        lm::save::save_with(&self.backbone, &self.tokenizer, dir, &arch, &head)?;
        let path = dir.join("config.json");
        let mut cfg = read_json(&path)?;
        cfg["num_labels"] = 1.into();
        cfg["id2label"] = serde_json::json!({"0": "LABEL_0"});
        cfg["label2id"] = serde_json::json!({"LABEL_0": 0});
        cfg["pad_token_id"] = self.pad_id.into();
        write_json(&path, &cfg)?;
        // transformers pads with the tokenizer's pad token: make it the same id.
        let tpath = dir.join("tokenizer_config.json");
        let mut tcfg = read_json(&tpath)?;
        if let Some(tok) = self.tokenizer.inner.id_to_token(self.pad_id) {
            tcfg["pad_token"] = tok.into();
        }
        write_json(&tpath, &tcfg)
    }
}
