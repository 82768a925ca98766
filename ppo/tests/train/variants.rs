//! GRPO's TRL loss types and options (issue #23 item 4), REINFORCE++ and REINFORCE++-baseline
//! on the tiny Llama fixture with the rule reward: the reward rises and every trainable
//! parameter changes; the other loss types train and log TRL's metrics.
use super::*;
use ppo::{ImportanceSamplingLevel, LossType, ScaleRewards};

/// DAPO's token-mean loss with clip-higher, GSPO's per-sequence ratios and dynamic sampling.
#[test]
fn grpo_dapo_clip_higher_sequence_ratios_raises_a_rule_reward() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = PpoConfig {
        loss_type: LossType::Dapo,
        epsilon_high: Some(0.28),
        importance_sampling_level: ImportanceSamplingLevel::Sequence,
        dynamic_sampling: true,
        ..config(write_prompts(dir.path())?, Algo::Grpo)
    };
    reward_rises(cfg, 24, 0.3)
}

#[test]
fn reinforce_pp_raises_a_rule_reward() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = config(write_prompts(dir.path())?, Algo::Reinforce);
    reward_rises(cfg, 24, 0.3)
}

#[test]
fn reinforce_pp_baseline_raises_a_rule_reward() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = PpoConfig {
        mini_batch_size: Some(8),
        ..config(write_prompts(dir.path())?, Algo::ReinforceBaseline)
    };
    reward_rises(cfg, 24, 0.3)
}

/// cispo, dr_grpo with unscaled rewards and bnpo with batch-scaled rewards: 4 steps each,
/// finite losses, TRL's clip metrics and `frac_reward_zero_std` logged; dynamic sampling logs
/// how many groups it dropped.
#[test]
fn grpo_loss_types_train_and_log_their_metrics() -> R {
    let dir = tempfile::tempdir()?;
    let prompts = write_prompts(dir.path())?;
    let cases = [
        (LossType::Cispo, ScaleRewards::Group, "cispo_clip_ratio"),
        (LossType::DrGrpo, ScaleRewards::None, "clip_ratio/high_mean"),
        (LossType::Bnpo, ScaleRewards::Batch, "clip_ratio/low_mean"),
    ];
    for (i, (loss_type, scale_rewards, metric)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let cfg = PpoConfig {
            loss_type,
            scale_rewards,
            dynamic_sampling: true,
            ..config(prompts.clone(), Algo::Grpo)
        };
        let o = train_ppo_with(
            load(true)?,
            &Default::default(),
            &cfg,
            &trainer(&out, 4),
            Some(rule()),
        )?;
        assert!(
            o.summary.losses.iter().all(|l| l.is_finite()),
            "{loss_type:?}"
        );
        for key in [
            metric,
            "frac_reward_zero_std",
            "dynamic_sampling/dropped_groups",
        ] {
            let series = metric_series(&out, key)?;
            assert!(
                !series.is_empty() && series.iter().all(|x| x.is_finite()),
                "{loss_type:?}: {key} {series:?}"
            );
        }
    }
    Ok(())
}
