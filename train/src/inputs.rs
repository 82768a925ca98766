//! What a stage reads (its models and data files), checked before anything loads: a missing
//! reward model or a typo in `--data` fails in a second, not after the sampling or training
//! that came before it. Each input is named by the setting that gave it.
use std::path::Path;

use crate::{Error, Result};

/// A model or a file a stage reads, with the setting (config key) that names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    /// A `--model`-style spec: HF folder, hub id or .gguf.
    Model { key: &'static str, spec: &'a str },
    /// A file read whole (data rows, prompts).
    File { key: &'static str, path: &'a Path },
}

impl Input<'_> {
    /// The setting's name as in a config file (`eval_data`).
    pub fn key(&self) -> &'static str {
        match self {
            Input::Model { key, .. } | Input::File { key, .. } => key,
        }
    }

    /// The model spec or the path, as given.
    pub fn value(&self) -> String {
        match self {
            Input::Model { spec, .. } => spec.to_string(),
            Input::File { path, .. } => path.display().to_string(),
        }
    }

    /// Whether it is there and usable, without loading it: a model spec resolves to a folder
    /// with a config.json, a tokenizer and weights (or a .gguf file); a file can be opened and
    /// is not a folder. The error says what is wrong, naming the model or the path.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            Input::Model { spec, .. } => {
                lm::load::check(spec).map(|_| ()).map_err(|e| e.to_string())
            }
            Input::File { path, .. } => check_file(path),
        }
    }
}

/// The inputs among `models` and `files` that are set: what a stage's `inputs` returns.
pub fn set<'a>(
    models: &[(&'static str, Option<&'a str>)],
    files: &[(&'static str, Option<&'a Path>)],
) -> Vec<Input<'a>> {
    let models = models
        .iter()
        .filter_map(|&(key, spec)| spec.map(|spec| Input::Model { key, spec }));
    let files = files
        .iter()
        .filter_map(|&(key, path)| path.map(|path| Input::File { key, path }));
    models.chain(files).collect()
}

fn check_file(path: &Path) -> std::result::Result<(), String> {
    let at = |why: String| format!("{}: {why}", path.display());
    let file = std::fs::File::open(path).map_err(|e| at(e.to_string()))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => Err(at("a folder, not a file".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(at(e.to_string())),
    }
}

/// The command-line flag of setting `key`: `eval_data` → `--eval-data`.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Checks every input; the first that is not there fails, named by `by(key)` (a flag, or a
/// pipeline section's field): `--data: nope.jsonl: No such file or directory (os error 2)`.
pub fn check_inputs(inputs: &[Input], by: impl Fn(&str) -> String) -> Result<()> {
    for input in inputs {
        input.check().map_err(|reason| Error::Input {
            by: by(input.key()),
            reason,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_inputs_are_named_by_their_flag() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
        let model = format!("{fixtures}/tiny-llama");
        let data = Path::new(fixtures).join("README.md");
        let ok = [
            Input::Model {
                key: "model",
                spec: &model,
            },
            Input::File {
                key: "data",
                path: &data,
            },
        ];
        assert!(check_inputs(&ok, flag).is_ok());
        let nope = Path::new(fixtures).join("nope.jsonl");
        let bad = [Input::File {
            key: "eval_data",
            path: &nope,
        }];
        let e = check_inputs(&bad, flag).unwrap_err().to_string();
        assert!(
            e.starts_with("--eval-data: ") && e.contains("nope.jsonl: "),
            "{e}"
        );
        let folder = [Input::File {
            key: "data",
            path: Path::new(fixtures),
        }];
        let e = check_inputs(&folder, flag).unwrap_err().to_string();
        assert!(e.ends_with("a folder, not a file"), "{e}");
        let no_model = [Input::Model {
            key: "ref",
            spec: fixtures,
        }];
        let e = check_inputs(&no_model, flag).unwrap_err().to_string();
        assert!(e.starts_with("--ref: ") && e.contains("config.json"), "{e}");
    }
}
