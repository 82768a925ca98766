use super::*;
use crate::{AdamW, AdamWConfig, GradAccumulator};
use candle_core::Var;

struct Fixture {
    params: Params,
    opt: AdamW,
    trainer: TrainerState,
}

fn fixture() -> Result<Fixture> {
    let w = Var::from_tensor(&Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?)?;
    let params = Params::new(vec![("layer.w".into(), w.clone())])?;
    let mut opt = AdamW::new(AdamWConfig::default())?;
    let grads = GradAccumulator::from_store(&params, &w.as_tensor().sqr()?.sum_all()?.backward()?)?;
    opt.step(&params, &grads, 0.1)?;
    let trainer = TrainerState {
        global_step: 1,
        seed: 42,
        extra: serde_json::json!({"kl_coef": 0.2}),
        ..Default::default()
    };
    Ok(Fixture {
        params,
        opt,
        trainer,
    })
}

fn save(dir: &Path, f: &Fixture, step: usize, keep: Option<usize>) -> Result<PathBuf> {
    let trainer = TrainerState {
        global_step: step,
        ..f.trainer.clone()
    };
    let state = CheckpointState {
        params: &f.params,
        optimizer: f.opt.state(),
        trainer: &trainer,
    };
    save_checkpoint(dir, &state, keep)
}

fn tmpdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(Error::io(Path::new("tempdir")))
}

#[test]
fn round_trip() -> Result<()> {
    let dir = tmpdir()?;
    let f = fixture()?;
    let path = save(dir.path(), &f, 1, None)?;
    assert_eq!(path, dir.path().join("checkpoint-1"));
    let ck = load_latest_checkpoint(dir.path(), &Device::Cpu)?
        .ok_or_else(|| Error::checkpoint(dir.path(), "missing"))?;
    assert_eq!(ck.trainer, f.trainer);
    let w: Vec<Vec<f32>> = ck.params["layer.w"].to_vec2()?;
    let want: Vec<Vec<f32>> = f
        .params
        .get("layer.w")
        .map(|v| v.to_vec2())
        .transpose()?
        .unwrap_or_default();
    assert_eq!(w, want);
    let (m, m0) = (
        &ck.optimizer.moments["layer.w"],
        &f.opt.state().moments["layer.w"],
    );
    assert_eq!(m.step, 1);
    assert_eq!(
        m.exp_avg_sq.to_vec2::<f32>()?,
        m0.exp_avg_sq.to_vec2::<f32>()?
    );
    assert_eq!(ck.optimizer.step, 1);
    // A run folder and a checkpoint folder both work as --resume targets.
    assert_eq!(load_resume(dir.path(), &Device::Cpu)?.path, path);
    assert_eq!(load_resume(&path, &Device::Cpu)?.path, path);
    Ok(())
}

#[test]
fn keeps_last_k_and_resaves_same_step() -> Result<()> {
    let dir = tmpdir()?;
    let f = fixture()?;
    for step in 1..=5 {
        save(dir.path(), &f, step, Some(2))?;
    }
    let steps: Vec<usize> = list_checkpoints(dir.path())?.iter().map(|c| c.0).collect();
    assert_eq!(steps, [4, 5]);
    save(dir.path(), &f, 5, Some(2))?;
    let steps: Vec<usize> = list_checkpoints(dir.path())?.iter().map(|c| c.0).collect();
    assert_eq!(steps, [4, 5]);
    assert_eq!(
        fs::read_to_string(dir.path().join("latest"))
            .ok()
            .as_deref(),
        Some("checkpoint-5")
    );
    Ok(())
}

#[test]
fn simulated_crash_leaves_latest_valid() -> Result<()> {
    let dir = tmpdir()?;
    let f = fixture()?;
    save(dir.path(), &f, 2, None)?;
    // Crash while writing step 3: a half-written temp folder is left behind.
    let tmp = dir.path().join(".tmp-checkpoint-3");
    fs::create_dir(&tmp).map_err(Error::io(&tmp))?;
    fs::write(tmp.join(MODEL), b"trunc").map_err(Error::io(&tmp))?;
    let ck = load_latest_checkpoint(dir.path(), &Device::Cpu)?;
    assert_eq!(ck.map(|c| c.trainer.global_step), Some(2));
    // A stale pointer (pointing at a deleted folder) falls back to scanning.
    fs::write(dir.path().join(LATEST), "checkpoint-9").map_err(Error::io(dir.path()))?;
    let ck = load_latest_checkpoint(dir.path(), &Device::Cpu)?;
    assert_eq!(ck.map(|c| c.trainer.global_step), Some(2));
    // The next save cleans the leftovers up.
    save(dir.path(), &f, 3, None)?;
    assert!(!tmp.exists());
    let ck = load_latest_checkpoint(dir.path(), &Device::Cpu)?;
    assert_eq!(ck.map(|c| c.trainer.global_step), Some(3));
    Ok(())
}

#[test]
fn empty_or_missing_dir_has_no_checkpoint() -> Result<()> {
    let dir = tmpdir()?;
    assert!(load_latest_checkpoint(dir.path(), &Device::Cpu)?.is_none());
    assert!(load_latest_checkpoint(&dir.path().join("nope"), &Device::Cpu)?.is_none());
    assert!(matches!(
        load_resume(dir.path(), &Device::Cpu),
        Err(Error::Checkpoint { .. })
    ));
    Ok(())
}
