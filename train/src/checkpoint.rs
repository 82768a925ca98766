//! Atomic, rotating training checkpoints.
//!
//! Layout of `<dir>`:
//! ```text
//! checkpoint-<step>/model.safetensors      parameters, name -> tensor
//! checkpoint-<step>/optimizer.safetensors  AdamW moments (f32)
//! checkpoint-<step>/optimizer.json         AdamW step counts
//! checkpoint-<step>/trainer_state.json     TrainerState
//! latest                                   "checkpoint-<step>"
//! ```
//! A checkpoint is written into `.tmp-checkpoint-<step>`, fsynced, then renamed into
//! place, so a `checkpoint-<step>` folder is always complete. Leftover `.tmp-*`
//! folders from a crash are ignored when loading and deleted by the next save.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::DataPosition;
use crate::{AdamWState, Error, Params, Result};

const MODEL: &str = "model.safetensors";
const OPT_TENSORS: &str = "optimizer.safetensors";
const OPT_META: &str = "optimizer.json";
const TRAINER: &str = "trainer_state.json";
const LATEST: &str = "latest";
const PREFIX: &str = "checkpoint-";
const TMP_PREFIX: &str = ".tmp-";

/// Loop bookkeeping saved with every checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub global_step: usize,
    /// Where the next micro-batch starts in the shuffled data stream.
    pub data: DataPosition,
    /// Seed of the data order (the order is a pure function of seed and epoch).
    pub seed: u64,
    /// Dataset size and micro-batch size at save time; resuming with other values
    /// would silently change the data order, so the loop refuses.
    pub num_examples: usize,
    pub batch_size: usize,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Training wall time so far, over all resumed runs.
    pub elapsed_s: f64,
    /// Loss of the last optimizer step.
    pub last_loss: Option<f64>,
    /// Stage-specific state (e.g. a KL controller), from `Stage::extra_state`.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// What [`save_checkpoint`] writes (borrowed, nothing is copied).
#[derive(Clone, Copy, Debug)]
pub struct CheckpointState<'a> {
    pub params: &'a Params,
    pub optimizer: &'a AdamWState,
    pub trainer: &'a TrainerState,
}

/// A checkpoint read back from disk.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub params: HashMap<String, Tensor>,
    pub optimizer: AdamWState,
    pub trainer: TrainerState,
}

/// Writes `<dir>/checkpoint-<global_step>` atomically, points `latest` at it and
/// deletes the oldest checkpoints beyond `keep_last` (if given; never the new one).
pub fn save_checkpoint(
    dir: &Path,
    state: &CheckpointState<'_>,
    keep_last: Option<usize>,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    remove_temp_dirs(dir)?;
    let name = format!("{PREFIX}{}", state.trainer.global_step);
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    fs::create_dir(&tmp).map_err(Error::io(&tmp))?;
    write_contents(&tmp, state)?;
    let fin = dir.join(&name);
    if fin.exists() {
        // Same step saved again (e.g. after a resume): move the old one aside first,
        // since rename cannot replace a non-empty folder.
        let old = dir.join(format!("{TMP_PREFIX}old-{name}"));
        fs::rename(&fin, &old).map_err(Error::io(&fin))?;
    }
    fs::rename(&tmp, &fin).map_err(Error::io(&fin))?;
    sync_dir(dir)?;
    write_atomic(dir, LATEST, name.as_bytes())?;
    remove_temp_dirs(dir)?;
    if let Some(k) = keep_last {
        rotate(dir, k.max(1), &fin)?;
    }
    Ok(fin)
}

fn write_contents(tmp: &Path, state: &CheckpointState<'_>) -> Result<()> {
    let tensors: HashMap<String, Tensor> = state
        .params
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&tensors, tmp.join(MODEL))?;
    state
        .optimizer
        .save(&tmp.join(OPT_TENSORS), &tmp.join(OPT_META))?;
    let path = tmp.join(TRAINER);
    let text = serde_json::to_vec_pretty(state.trainer).map_err(Error::json(&path))?;
    fs::write(&path, text).map_err(Error::io(&path))?;
    for f in [MODEL, OPT_TENSORS, OPT_META, TRAINER] {
        let p = tmp.join(f);
        fs::File::open(&p)
            .and_then(|file| file.sync_all())
            .map_err(Error::io(&p))?;
    }
    sync_dir(tmp)
}

/// Writes `dir/name` via a temp file + rename, so readers see old or new, never half.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let fin = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &fin)
    };
    write().map_err(Error::io(&fin))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the renames themselves durable. Directories cannot be opened as files
    // on every platform; on Unix they can, and that is where this matters.
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir))?;
    Ok(())
}

fn remove_temp_dirs(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        let is_tmp = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        if is_tmp && path.is_dir() {
            fs::remove_dir_all(&path).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

/// `(step, path)` of every complete `checkpoint-<step>` folder, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(step) = step.filter(|_| path.join(TRAINER).is_file()) {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

fn rotate(dir: &Path, keep: usize, newest: &Path) -> Result<()> {
    let all = list_checkpoints(dir)?;
    let excess = all.len().saturating_sub(keep);
    for (_, path) in all.iter().filter(|(_, p)| p != newest).take(excess) {
        fs::remove_dir_all(path).map_err(Error::io(path))?;
    }
    Ok(())
}

/// Loads the checkpoint `latest` points to, falling back to the highest complete
/// `checkpoint-<step>` if the pointer is missing or stale. `None` if there is none.
pub fn load_latest_checkpoint(dir: &Path, device: &Device) -> Result<Option<Checkpoint>> {
    let pointed = fs::read_to_string(dir.join(LATEST))
        .ok()
        .map(|name| dir.join(name.trim()))
        .filter(|p| p.join(TRAINER).is_file());
    let path = match pointed {
        Some(p) => Some(p),
        None => list_checkpoints(dir)?.pop().map(|(_, p)| p),
    };
    path.map(|p| load_checkpoint(&p, device)).transpose()
}

/// Loads one checkpoint folder.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let state_path = path.join(TRAINER);
    let text = fs::read_to_string(&state_path).map_err(Error::io(&state_path))?;
    let trainer: TrainerState = serde_json::from_str(&text).map_err(Error::json(&state_path))?;
    let params = candle_core::safetensors::load(path.join(MODEL), device)?;
    let optimizer = AdamWState::load(&path.join(OPT_TENSORS), &path.join(OPT_META), device)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        params,
        optimizer,
        trainer,
    })
}

/// Resolves `--resume PATH`: a checkpoint folder itself, or a run folder whose
/// latest checkpoint is used.
pub fn load_resume(path: &Path, device: &Device) -> Result<Checkpoint> {
    if path.join(TRAINER).is_file() {
        return load_checkpoint(path, device);
    }
    load_latest_checkpoint(path, device)?
        .ok_or_else(|| Error::checkpoint(path, "no checkpoint found to resume from"))
}

#[cfg(test)]
mod tests;
