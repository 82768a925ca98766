//! One PPO/RLOO/GRPO run end to end: prompts, trainable parameters (full or LoRA, plus the
//! value function), the frozen reference, the scorer, `train::run`, and the outputs.
use crate::config::{Algo, PpoConfig};
use crate::critic::Critic;
use crate::math::{KlController, RunningMoments};
use crate::prompts::load_prompts;
use crate::reward::Scorer;
use crate::stage::{PpoStage, PpoState};
use crate::{Error, Result};
use lm::{CausalLm, LoadOptions, Pretrained};
use reward_model::RewardModel;
use std::path::PathBuf;
use train::{StageSettings, TrainSummary, TrainerConfig};

/// What a run produced (also written to `ppo_run.json`).
#[derive(Debug, serde::Serialize)]
pub struct PpoOutcome {
    pub summary: TrainSummary,
    pub prompts: usize,
    pub truncated_prompts: usize,
    pub trainable_params: usize,
    /// Final KL controller, score statistics and rollout count.
    pub state: PpoState,
    /// Scores and KL over steps.
    pub plot: PathBuf,
}

/// The files a PPO/RLOO/GRPO run writes besides the loop's (and `samples.jsonl`).
pub const FILES: train::RunFiles = train::RunFiles {
    stage: "ppo",
    plot: "ppo.svg",
    series: &["objective/scores", "objective/rlhf_reward", "objective/kl"],
};

/// `rudder ppo` as a library call: checks the settings, writes `ppo.toml` into the run folder,
/// loads `cfg.model` (frozen with LoRA) and trains it ([`train_ppo`]).
pub fn run(cfg: &PpoConfig, trainer: &TrainerConfig, opts: &LoadOptions) -> Result<PpoOutcome> {
    cfg.validate(trainer)?;
    let pre = train::begin(cfg, trainer, opts)?;
    train_ppo(pre, opts, cfg, trainer)
}

/// Trains `pre` (loaded trainable for full training, frozen for LoRA) as `cfg` says, scoring
/// with `cfg.reward_model` or `cfg.reward_cmd`. Writes the policy (model folder, or the PEFT
/// adapter with LoRA), the value function, `ppo.svg`, `samples.jsonl` and `ppo_run.json`.
pub fn train_ppo(
    pre: Pretrained,
    opts: &LoadOptions,
    cfg: &PpoConfig,
    trainer: &TrainerConfig,
) -> Result<PpoOutcome> {
    train_ppo_with(pre, opts, cfg, trainer, None)
}

/// As [`train_ppo`], with an optional scorer of the caller's (e.g. a rule reward).
pub fn train_ppo_with(
    pre: Pretrained,
    opts: &LoadOptions,
    cfg: &PpoConfig,
    trainer: &TrainerConfig,
    scorer: Option<Scorer>,
) -> Result<PpoOutcome> {
    cfg.validate_with(trainer, scorer.is_some())?;
    let mut stage = build_stage(pre, opts, cfg, trainer, scorer)?;
    let mut vars = stage.trainable.clone();
    vars.extend(stage.critic.iter().flat_map(Critic::named_vars));
    let params = train::Params::new(vars)?;
    let trainable_params = params.num_elements();
    tracing::info!(
        prompts = stage.prompts.len(),
        params = trainable_params,
        updates_per_rollout = stage.updates,
        "ppo ({:?})",
        cfg.algo
    );
    let lora = cfg.lora()?;
    let base = cfg.model.as_deref().unwrap_or_default();
    let (summary, plot) = train::train_and_save(&mut stage, &params, trainer, &FILES, |s, out| {
        train::save_policy(&s.policy, &s.tok, lora.as_ref(), base, out)?;
        s.critic.as_ref().map_or(Ok(()), |c| c.save(out))
    })?;
    let outcome = PpoOutcome {
        summary,
        prompts: stage.prompts.len(),
        truncated_prompts: stage.truncated,
        trainable_params,
        state: stage.state.clone(),
        plot,
    };
    train::write_record(&FILES, trainer, cfg, &outcome)?;
    Ok(outcome)
}

/// Everything but the training: prompts, adapters, reference, critic, scorer.
pub fn build_stage(
    pre: Pretrained,
    opts: &LoadOptions,
    cfg: &PpoConfig,
    trainer: &TrainerConfig,
    scorer: Option<Scorer>,
) -> Result<PpoStage> {
    let Pretrained {
        mut model,
        tokenizer: tok,
        params,
        ..
    } = pre;
    let path = train::required(cfg.prompts.as_deref(), FILES.stage, "prompts")?;
    let (prompts, truncated) = load_prompts(path, &tok, cfg.max_prompt_len)?;
    let lora = cfg.lora()?;
    let trainable = model.trainable_vars(lora.as_ref(), params, trainer.seed)?;
    let frozen = LoadOptions {
        trainable: false,
        ..opts.clone()
    };
    let spec = cfg.model.as_deref().unwrap_or_default();
    let reference = train::load_reference(FILES.stage, &model, None, spec, lora.is_some(), opts)?;
    let mut critic = match cfg.algo {
        Algo::Ppo => Some(make_critic(&model, cfg, opts, lora.as_ref(), trainer.seed)?),
        _ => None,
    };
    // Only the trained models checkpoint (the reference has nothing to differentiate).
    model.checkpointing = trainer.gradient_checkpointing;
    if let Some(Critic::Model(rm)) = critic.as_mut() {
        rm.backbone.checkpointing = trainer.gradient_checkpointing;
    }
    let scorer = match (scorer, &cfg.reward_model, &cfg.reward_cmd) {
        (Some(s), _, _) => s,
        (None, Some(rm), _) => Scorer::model(RewardModel::load(rm, &frozen)?, &tok)?,
        (None, None, Some(cmd)) => Scorer::Command(cmd.clone()),
        (None, None, None) => return Err(Error::setting("ppo", "reward_model", "required")),
    };
    std::fs::create_dir_all(&trainer.out).map_err(Error::io(&trainer.out))?;
    Ok(PpoStage {
        policy: model,
        reference,
        critic,
        scorer,
        tok,
        prompts,
        truncated,
        trainable,
        cfg: cfg.clone(),
        seed: trainer.seed,
        micro_rows: cfg.micro_rows(trainer),
        updates: cfg.updates_per_rollout(trainer),
        state: PpoState {
            kl: KlController {
                value: cfg.kl_coef,
                target: cfg.target_kl,
                horizon: cfg.kl_horizon,
            },
            scores: RunningMoments::default(),
            rollouts: 0,
            step: 0,
        },
        out: trainer.out.clone(),
        update_kl: 0.0,
        last_update: None,
    })
}

/// A value head on the policy, or a critic model from `cfg.critic` (adapters too with LoRA).
fn make_critic(
    policy: &CausalLm,
    cfg: &PpoConfig,
    opts: &LoadOptions,
    lora: Option<&lm::lora::LoraSpec>,
    seed: u64,
) -> Result<Critic> {
    let Some(path) = &cfg.critic else {
        return Critic::head(policy.config.hidden_size, seed ^ 0x5EED, policy.device());
    };
    let mut rm = RewardModel::load(
        path,
        &LoadOptions {
            trainable: lora.is_none(),
            ..opts.clone()
        },
    )?;
    if let Some(why) = policy.vocab_mismatch(&rm.backbone) {
        return Err(Error::setting("ppo", "critic", why));
    }
    if let Some(spec) = lora {
        rm.backbone_params = rm
            .backbone
            .trainable_vars(Some(spec), vec![], seed ^ 0xC1)?;
    }
    Ok(Critic::Model(Box::new(rm)))
}
