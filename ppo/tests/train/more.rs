//! Resume, the critic from a reward model, the reward command, and bad input.
use super::*;
use ppo::Item;

/// A run interrupted after 4 steps and resumed to 8 matches an uninterrupted 8-step run: the
/// same losses, weights, value head and adaptive KL coefficient.
#[test]
fn resumed_run_matches_uninterrupted_run() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = PpoConfig {
        target_kl: Some(0.5),
        normalize_scores: true,
        ..config(write_prompts(dir.path())?, Algo::Ppo)
    };
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    let straight = train_ppo_with(
        load(true)?,
        &Default::default(),
        &cfg,
        &trainer(&a, 8),
        Some(rule()),
    )?;
    let first = TrainerConfig {
        save_every: Some(4),
        ..trainer(&b, 4)
    };
    train_ppo_with(load(true)?, &Default::default(), &cfg, &first, Some(rule()))?;
    let rest = TrainerConfig {
        resume: Some(b.clone()),
        ..trainer(&b, 8)
    };
    let resumed = train_ppo_with(load(true)?, &Default::default(), &cfg, &rest, Some(rule()))?;
    assert_eq!(resumed.summary.losses, straight.summary.losses[4..]);
    assert_eq!(resumed.state, straight.state);
    assert_ne!(
        straight.state.kl.value, cfg.kl_coef,
        "the KL controller never moved"
    );
    for f in ["model.safetensors", "value_head.safetensors"] {
        assert_eq!(std::fs::read(a.join(f))?, std::fs::read(b.join(f))?, "{f}");
    }
    assert!(a.join("ppo.svg").exists() && a.join("samples.jsonl").exists());
    Ok(())
}

#[test]
fn critic_from_a_reward_model_trains_with_the_policy() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = PpoConfig {
        critic: Some(fixture("tiny-llama-rm")),
        ..config(write_prompts(dir.path())?, Algo::Ppo)
    };
    let t = trainer(dir.path(), 2);
    let pre = load(true)?;
    let mut stage = ppo::build_stage(pre, &LoadOptions::default(), &cfg, &t, Some(rule()))?;
    let critic = stage
        .critic
        .as_ref()
        .map(|c| c.named_vars())
        .unwrap_or_default();
    assert!(critic.iter().any(|(n, _)| n == "critic.score.weight") && critic.len() > 2);
    let before: Vec<Vec<f32>> = critic
        .iter()
        .map(|(_, v)| v.flatten_all()?.to_vec1())
        .collect::<candle_core::Result<_>>()?;
    let mut vars = stage.trainable.clone();
    vars.extend(critic.clone());
    train::run(&mut stage, &train::Params::new(vars)?, &t)?;
    let changed = critic
        .iter()
        .zip(&before)
        .filter(|((_, v), b)| {
            v.flatten_all()
                .and_then(|x| x.to_vec1::<f32>())
                .ok()
                .as_ref()
                != Some(b)
        })
        .count();
    // Every critic tensor (body and score head) takes part in the value, so all must move.
    assert_eq!(changed, critic.len());
    Ok(())
}

#[test]
fn reward_command_reads_jsonl_and_answers_one_number_per_line() -> R {
    let prompt = ppo::Prompt {
        value: serde_json::json!("hi"),
        text: "hi".into(),
        ids: vec![1, 2],
    };
    let items: Vec<Item> = ["a", "bb", "ccc"]
        .iter()
        .map(|t| Item {
            prompt: &prompt,
            completion_ids: &[],
            completion_text: t,
        })
        .collect();
    // awk sees one JSON row per line: answer the row number.
    let ok = Scorer::Command("awk '/\"completion\"/ { print NR }'".into()).score(&items)?;
    assert_eq!(ok, [1.0, 2.0, 3.0]);
    for (cmd, want) in [
        ("exit 3", "exited"),
        ("echo 1", "wrote 1 rewards for 3"),
        ("awk '{ print \"x\" }'", "`x` is not a number"),
    ] {
        let err = Scorer::Command(cmd.into())
            .score(&items)
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains(want) && err.contains(cmd), "{cmd}: {err}");
    }
    Ok(())
}

#[test]
fn a_non_finite_reward_stops_the_run_naming_the_rollout() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = config(write_prompts(dir.path())?, Algo::Ppo);
    let nan = Scorer::Rule(Box::new(|_, _, _| f64::NAN));
    let err = train_ppo_with(
        load(true)?,
        &Default::default(),
        &cfg,
        &trainer(dir.path(), 2),
        Some(nan),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("rollout 0") && err.contains("non-finite reward"),
        "{err}"
    );
    Ok(())
}

#[test]
fn bad_prompts_name_file_line_and_field() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"ok\"}\n\n{\"question\": \"no prompt\"}\n",
    )?;
    let cfg = config(path, Algo::Ppo);
    let err = train_ppo_with(
        load(true)?,
        &Default::default(),
        &cfg,
        &trainer(dir.path(), 1),
        Some(rule()),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("bad.jsonl:3: field `prompt`: missing"),
        "{err}"
    );
    Ok(())
}

/// An epoch's last rollout can be smaller than the rest (4 prompts in batches of 3): it still
/// gets `ppo_epochs × minibatches` updates, with smaller minibatches.
#[test]
fn a_short_last_rollout_keeps_the_update_count() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = PpoConfig {
        mini_batch_size: Some(1),
        ..config(write_prompts(dir.path())?, Algo::Ppo)
    };
    let t = TrainerConfig {
        batch_size: 3,
        max_steps: None,
        epochs: 1,
        ..trainer(dir.path(), 0)
    };
    let o = train_ppo_with(load(true)?, &Default::default(), &cfg, &t, Some(rule()))?;
    // 2 rollouts × (2 epochs × 3 minibatches)
    assert_eq!((o.summary.steps, o.state.rollouts), (12, 2));
    assert!(o.summary.losses.iter().all(|l| l.is_finite()));
    Ok(())
}
