//! A stage's settings from one flat table: the loop's keys ([`TrainerConfig`]) and the stage's
//! own (its config struct) side by side, as a `--config` TOML file or a pipeline section holds
//! them. Missing keys take the structs' defaults; an unknown key or a bad value is an error
//! naming the file, the stage and the key. What resolved is written back as `<stage>.toml`.
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Error, Result, TrainerConfig};

/// Splits `table` into the loop's settings and the stage's `S`. `file` and `stage` name the
/// source in errors (`pipeline.toml: [dpo] field `betta`: unknown field`).
pub fn from_table<S: DeserializeOwned + Serialize + Default>(
    table: Map<String, Value>,
    file: &str,
    stage: &str,
) -> Result<(TrainerConfig, S)> {
    let trainer_keys = keys_of(&TrainerConfig::default());
    let stage_keys = keys_of(&S::default());
    let (mut t, mut s) = (Map::new(), Map::new());
    for (k, v) in table {
        if trainer_keys.contains(&k) {
            t.insert(k, v);
        } else if stage_keys.contains(&k) {
            s.insert(k, v);
        } else {
            return Err(Error::Settings(format!(
                "{file}: [{stage}] field `{k}`: unknown field"
            )));
        }
    }
    Ok((from_map(t, file, stage)?, from_map(s, file, stage)?))
}

/// As [`from_table`], then the model's FLOP shape filled in for the cost block (from the
/// stage's `model` setting) and the loop's settings checked: what a stage runs with.
pub fn resolve_table<S: DeserializeOwned + Serialize + Default>(
    table: Map<String, Value>,
    file: &str,
    stage: &str,
) -> Result<(TrainerConfig, S)> {
    let (mut trainer, cfg): (TrainerConfig, S) = from_table(table, file, stage)?;
    let model = serde_json::to_value(&cfg)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(String::from));
    trainer.flops = model.and_then(|m| cost::flop_model(&m, stage));
    trainer
        .validate()
        .map_err(|e| Error::Settings(format!("{file}: [{stage}] {e}")))?;
    Ok((trainer, cfg))
}

/// Every key `v` serialises to (a settings struct with all its defaults shows all its keys).
pub fn keys_of<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(Value::Object(o)) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// serde names no field in a type error ("invalid type: string, expected u64"), so on failure
/// each key is tried alone (every settings field has a default) to find the one to name.
fn from_map<T: DeserializeOwned>(m: Map<String, Value>, file: &str, stage: &str) -> Result<T> {
    serde_json::from_value(m.clone().into()).map_err(|e| {
        let bad = m.iter().find(|(k, v)| {
            let one = Map::from_iter([((*k).clone(), (*v).clone())]);
            serde_json::from_value::<T>(one.into()).is_err()
        });
        Error::Settings(match bad {
            Some((k, _)) => format!("{file}: [{stage}] field `{k}`: {e}"),
            None => format!("{file}: [{stage}] {e}"),
        })
    })
}

/// Writes `<trainer.out>/<stage>.toml`: every resolved loop and stage setting, reusable as
/// `--config` (the run's record of what it actually used).
pub fn write_resolved(stage: &str, trainer: &TrainerConfig, cfg: &impl Serialize) -> Result<()> {
    let path = trainer.out.join(format!("{stage}.toml"));
    let mut table = Map::new();
    for v in [serde_json::to_value(trainer), serde_json::to_value(cfg)] {
        if let Value::Object(o) = v.map_err(Error::json(&path))? {
            // TOML has no null: an unset optional field is left out; resuming is per run.
            table.extend(o.into_iter().filter(|(k, v)| !v.is_null() && k != "resume"));
        }
    }
    let text = toml::to_string_pretty(&Value::Object(table))
        .map_err(|e| Error::Settings(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(Error::io(&path))
}

/// Reads a TOML settings file as a flat table of JSON values.
pub fn read_toml(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Settings(format!("{}: {}", path.display(), e)))?;
    match serde_json::to_value(table).map_err(Error::json(path))? {
        Value::Object(o) => Ok(o),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Stage {
        beta: f64,
    }

    #[test]
    fn splits_keys_and_names_bad_ones() -> Result<()> {
        let table: Map<String, Value> =
            serde_json::from_str(r#"{"beta": 0.5, "learning_rate": 0.001}"#)
                .map_err(|e| Error::Config(e.to_string()))?;
        let (t, s): (TrainerConfig, Stage) = from_table(table, "f.toml", "dpo")?;
        assert_eq!((t.learning_rate, s.beta, t.batch_size), (0.001, 0.5, 8));
        let bad = |json: &str| {
            let m: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
            from_table::<Stage>(m, "f.toml", "dpo")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(r#"{"betta": 1}"#).contains("f.toml: [dpo] field `betta`: unknown field"));
        assert!(bad(r#"{"batch_size": "x"}"#).contains("[dpo] field `batch_size`"));
        Ok(())
    }
}
