//! The loss settings: `loss` (one or several [`LossType`]s), `loss_weights`, and the checks of
//! the settings only some losses read.
use super::DpoConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A preference loss (`--loss`; several, comma-separated, are summed with `--loss-weights`). The
/// names are TRL 1.16's `loss_type` values; each formula is in `loss/kinds.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LossType {
    /// DPO: `-log σ(β d)`; with `label_smoothing` the conservative (cDPO) form.
    #[default]
    Sigmoid,
    /// IPO, length-normalised as TRL 1.16: `(d_c/n_c - d_r/n_r - 1/(2β))²`.
    Ipo,
    /// SLiC hinge: `relu(1 - β d)`.
    Hinge,
    /// Robust DPO: the label-noise-unbiased loss (needs `label_smoothing`).
    Robust,
    /// SimPO: reference-free, length-normalised, `-log σ(β (m_c - m_r) - γ)`.
    Simpo,
    /// EXO (pairwise): KL from the model's pair distribution to `[1-ε, ε]`, ε = label_smoothing > 0.
    ExoPair,
    /// NCA (pairwise): `-logσ(β r_c) - ½logσ(-β r_c) - ½logσ(-β r_r)`, r = log-ratio.
    NcaPair,
    /// BCO (pairwise, TRL 1.16: no running reward mean): `-logσ(β r_c) - logσ(-β r_r)`.
    BcoPair,
    /// SPPO with hard labels: `(r_c - 1/(2β))² + (r_r + 1/(2β))²`.
    SppoHard,
    /// AOT (paired): sigmoid loss on the batch-sorted policy and reference log-ratios.
    Aot,
    /// AOT (unpaired): sigmoid loss on the batch-sorted chosen and rejected log-ratios.
    AotUnpaired,
    /// APO-zero: `1 - σ(β r_c) + σ(β r_r)` (chosen better than the model's own outputs).
    ApoZero,
    /// APO-down: `σ(β r_c) + 1 - σ(β (r_c - r_r))` (chosen worse than the model's outputs).
    ApoDown,
    /// DiscoPOP: logistic and exponential losses blended by `σ(β d / τ)`, τ = discopop_tau.
    Discopop,
    /// NLL of the chosen completions, token-weighted over the batch (no reference needed).
    Sft,
    /// Sigmoid on length-normalised log-ratios: `-log σ(β (r_c/n_c - r_r/n_r))`.
    SigmoidNorm,
}

impl LossType {
    /// The TOML / flag name (`bco_pair`).
    pub fn name(self) -> &'static str {
        use LossType::*;
        match self {
            Sigmoid => "sigmoid",
            Ipo => "ipo",
            Hinge => "hinge",
            Robust => "robust",
            Simpo => "simpo",
            ExoPair => "exo_pair",
            NcaPair => "nca_pair",
            BcoPair => "bco_pair",
            SppoHard => "sppo_hard",
            Aot => "aot",
            AotUnpaired => "aot_unpaired",
            ApoZero => "apo_zero",
            ApoDown => "apo_down",
            Discopop => "discopop",
            Sft => "sft",
            SigmoidNorm => "sigmoid_norm",
        }
    }

    /// Whether it reads the reference log-probs (all but `simpo` and `sft`).
    pub fn uses_reference(self) -> bool {
        !matches!(self, LossType::Simpo | LossType::Sft)
    }

    /// Whether `label_smoothing` enters its formula.
    pub fn uses_label_smoothing(self) -> bool {
        use LossType::*;
        matches!(self, Sigmoid | Robust | Simpo | ExoPair | Aot | AotUnpaired)
    }
}

/// `loss` in a settings file: one name, a comma-separated string of names, or a list of names
/// (the flag's own comma list and the TOML list both land here).
pub(super) fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<LossType>, D::Error> {
    use serde::de::{self, IntoDeserializer, SeqAccess, Visitor};
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<LossType>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a loss name, a comma-separated string of names or a list of names")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
            s.split(',')
                .map(|n| {
                    let de: de::value::StrDeserializer<E> = n.trim().into_deserializer();
                    LossType::deserialize(de)
                })
                .collect()
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = vec![];
            while let Some(l) = seq.next_element()? {
                out.push(l);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Names)
}

impl DpoConfig {
    /// `loss` as the flag would spell it: `sigmoid,bco_pair,sft`.
    fn loss_names(&self) -> String {
        let v: Vec<&str> = self.loss.iter().map(|l| l.name()).collect();
        v.join(",")
    }

    /// The `loss` list and `loss_weights`, then the settings only some losses read.
    pub(super) fn validate_losses(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(Error::setting("dpo", field, why));
        if self.loss.is_empty() {
            return bad("loss", "give at least one (--loss)".into());
        }
        if let Some(i) = (1..self.loss.len()).find(|&i| self.loss[..i].contains(&self.loss[i])) {
            return bad("loss", format!("`{}` is given twice", self.loss[i].name()));
        }
        let (weights, losses) = (self.loss_weights.len(), self.loss.len());
        if weights > 0 && weights != losses {
            return bad(
                "loss_weights",
                format!(
                    "{weights} weights (--loss-weights) for {losses} losses (--loss {}): give one \
                     per loss, or none for 1 each",
                    self.loss_names()
                ),
            );
        }
        if let Some(w) = self
            .loss_weights
            .iter()
            .find(|w| !(w.is_finite() && **w >= 0.0))
        {
            return bad("loss_weights", format!("must be finite and >= 0, got {w}"));
        }
        if !(self.discopop_tau.is_finite() && self.discopop_tau > 0.0) {
            let tau = self.discopop_tau;
            return bad("discopop_tau", format!("must be > 0, got {tau}"));
        }
        if self.rpo_alpha > 0.0 && self.loss.contains(&LossType::Sft) {
            let why = "`--loss sft` already adds the chosen NLL: give its weight in --loss-weights";
            return bad("rpo_alpha", why.into());
        }
        self.validate_smoothing()
    }

    /// `label_smoothing` only with a loss that reads it; `exo_pair` needs it.
    fn validate_smoothing(&self) -> Result<()> {
        use clap::ValueEnum;
        if self.label_smoothing > 0.0 && !self.loss.iter().any(|l| l.uses_label_smoothing()) {
            let users: Vec<&str> = LossType::value_variants()
                .iter()
                .filter(|l| l.uses_label_smoothing())
                .map(|l| l.name())
                .collect();
            let why = format!(
                "only {} use it (--loss {})",
                users.join(", "),
                self.loss_names()
            );
            return Err(Error::setting("dpo", "label_smoothing", why));
        }
        if self.loss.contains(&LossType::ExoPair) && self.label_smoothing <= 0.0 {
            let why = "exo_pair needs it > 0 (its ε; the EXO paper uses 1e-3)";
            return Err(Error::setting("dpo", "label_smoothing", why));
        }
        Ok(())
    }

    /// Each loss with its weight (1 when `loss_weights` is empty).
    pub fn weighted_losses(&self) -> impl Iterator<Item = (LossType, f64)> + '_ {
        let w = |i: usize| self.loss_weights.get(i).copied().unwrap_or(1.0);
        self.loss.iter().enumerate().map(move |(i, &l)| (l, w(i)))
    }

    /// The weight of the chosen-NLL term: `sft`'s weight plus `rpo_alpha`.
    pub fn nll_weight(&self) -> f64 {
        let sft: f64 = self
            .weighted_losses()
            .filter(|(l, _)| *l == LossType::Sft)
            .map(|(_, w)| w)
            .sum();
        sft + self.rpo_alpha
    }

    /// Whether any loss reads reference log-probs (`simpo` and `sft` alone do not).
    pub fn uses_reference(&self) -> bool {
        self.loss.iter().any(|l| l.uses_reference())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<DpoConfig, String> {
        use clap::{Args, FromArgMatches};
        let cmd = DpoConfig::augment_args(clap::Command::new("dpo").no_binary_name(true));
        let m = cmd.try_get_matches_from(args).map_err(|e| e.to_string())?;
        DpoConfig::from_arg_matches(&m).map_err(|e| e.to_string())
    }

    #[test]
    fn losses_and_weights_from_flags_and_files() {
        use LossType::*;
        let mpo = parse(&[
            "--loss",
            "sigmoid,bco_pair,sft",
            "--loss-weights",
            "0.8,0.2,1.0",
        ])
        .unwrap_or_default();
        assert_eq!(mpo.loss, vec![Sigmoid, BcoPair, Sft]);
        assert_eq!(mpo.loss_weights, vec![0.8, 0.2, 1.0]);
        assert_eq!(mpo.nll_weight(), 1.0);
        assert!(mpo.uses_reference());
        // Defaults: sigmoid, no weights (1 each), TRL's discopop_tau.
        let d = DpoConfig::default();
        assert_eq!(
            (d.loss.clone(), d.loss_weights.len(), d.discopop_tau),
            (vec![Sigmoid], 0, 0.05)
        );
        assert_eq!(
            d.weighted_losses().collect::<Vec<_>>(),
            vec![(Sigmoid, 1.0)]
        );
        // An unknown name: clap names the flag and lists every valid name.
        let err = parse(&["--loss", "sigmoid,kto"]).err().unwrap_or_default();
        assert!(err.contains("--loss") && err.contains("kto"), "{err}");
        for name in [
            "exo_pair",
            "nca_pair",
            "aot_unpaired",
            "apo_down",
            "discopop",
            "sigmoid_norm",
        ] {
            assert!(err.contains(name), "{err}");
        }
        // Every name, as `name()` spells it, is the flag's and the file's.
        for &l in <LossType as clap::ValueEnum>::value_variants() {
            let flag = parse(&["--loss", l.name()]).map(|c| c.loss);
            assert_eq!(flag.unwrap_or_default(), vec![l]);
            let file: Option<DpoConfig> =
                serde_json::from_str(&format!(r#"{{"loss": "{}"}}"#, l.name())).ok();
            assert_eq!(file.map(|c| c.loss), Some(vec![l]));
        }
        // Settings files: one name (as dpo.toml always had), a comma string, or a list; each
        // name is as the flag spells it, and the file's error names the valid ones too.
        for (v, want) in [
            (r#""ipo""#, vec![Ipo]),
            (r#""aot, apo_zero""#, vec![Aot, ApoZero]),
            (r#"["sppo_hard", "sft"]"#, vec![SppoHard, Sft]),
        ] {
            let cfg: DpoConfig =
                serde_json::from_str(&format!(r#"{{"loss": {v}}}"#)).unwrap_or_default();
            assert_eq!(cfg.loss, want, "{v}");
            let names: Vec<&str> = want.iter().map(|l| l.name()).collect();
            let joined = names.join(",");
            let flags = parse(&["--loss", joined.as_str()]).map(|c| c.loss);
            assert_eq!(flags.unwrap_or_default(), want);
        }
        let err = serde_json::from_str::<DpoConfig>(r#"{"loss": ["sigmoid", "kto"]}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("kto") && err.contains("bco_pair"), "{err}");
        // A written config reads back.
        let text = serde_json::to_string(&mpo).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<DpoConfig>(&text).ok(),
            Some(mpo.clone())
        );
        // Checks, each naming the setting.
        let ok = DpoConfig {
            model: Some("m".into()),
            data: Some("d".into()),
            ..mpo
        };
        assert!(ok.validate().is_ok());
        let bad = |c: DpoConfig| {
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let msg = bad(DpoConfig {
            loss_weights: vec![0.8, 0.2],
            ..ok.clone()
        });
        assert!(
            msg.contains("`loss_weights`") && msg.contains("--loss sigmoid,bco_pair,sft"),
            "{msg}"
        );
        assert!(bad(DpoConfig {
            loss_weights: vec![1.0, f64::NAN, 1.0],
            ..ok.clone()
        })
        .contains("`loss_weights`"));
        assert!(bad(DpoConfig {
            loss: vec![],
            loss_weights: vec![],
            ..ok.clone()
        })
        .contains("`loss`"));
        assert!(bad(DpoConfig {
            loss: vec![Aot, Aot],
            loss_weights: vec![],
            ..ok.clone()
        })
        .contains("twice"));
        assert!(bad(DpoConfig {
            loss: vec![ExoPair],
            loss_weights: vec![],
            ..ok.clone()
        })
        .contains("exo_pair"));
        assert!(bad(DpoConfig {
            rpo_alpha: 0.5,
            ..ok.clone()
        })
        .contains("`rpo_alpha`"));
        let msg = bad(DpoConfig {
            loss: vec![Ipo, ApoDown],
            loss_weights: vec![],
            label_smoothing: 0.1,
            ..ok.clone()
        });
        assert!(
            msg.contains("`label_smoothing`") && msg.contains("aot_unpaired"),
            "{msg}"
        );
        assert!(bad(DpoConfig {
            discopop_tau: 0.0,
            ..ok.clone()
        })
        .contains("`discopop_tau`"));
        // sft and simpo alone read no reference.
        let free = DpoConfig {
            loss: vec![Simpo, Sft],
            loss_weights: vec![],
            ..ok
        };
        assert!(!free.uses_reference() && free.validate().is_ok());
    }

    /// A settings file: a list (or one name) reads, `dpo.toml` writes the list back, and an
    /// unknown name is named with the file, the field and the valid names.
    #[test]
    fn a_settings_file_round_trips_a_loss_list(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        use train::settings::{from_table, read_toml, write_resolved};
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("dpo.toml");
        let text = "loss = [\"sigmoid\", \"bco_pair\", \"sft\"]\nloss_weights = [0.8, 0.2, 1]\n";
        std::fs::write(&file, text)?;
        let (trainer, cfg): (train::TrainerConfig, DpoConfig) =
            from_table(read_toml(&file)?, "dpo.toml", "dpo")?;
        use LossType::*;
        assert_eq!(cfg.loss, vec![Sigmoid, BcoPair, Sft]);
        assert_eq!(cfg.loss_weights, vec![0.8, 0.2, 1.0]);
        let trainer = train::TrainerConfig {
            out: dir.path().to_path_buf(),
            ..trainer
        };
        write_resolved("written", &trainer, &cfg)?;
        let (_, again): (train::TrainerConfig, DpoConfig) =
            from_table(read_toml(&dir.path().join("written.toml"))?, "w", "dpo")?;
        assert_eq!(again, cfg);
        std::fs::write(&file, "loss = \"sigmoid,kto\"\n")?;
        let err = from_table::<DpoConfig>(read_toml(&file)?, "dpo.toml", "dpo")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("dpo.toml: [dpo] field `loss`")
                && err.contains("kto")
                && err.contains("aot"),
            "{err}"
        );
        Ok(())
    }
}
