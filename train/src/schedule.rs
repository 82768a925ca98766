//! Learning-rate schedules: linear warmup, then constant / linear / cosine decay.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Shape of the learning rate after warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Stay at the peak learning rate (`get_constant_schedule_with_warmup`).
    Constant,
    /// Linear decay to `min_lr_ratio * lr` (`get_linear_schedule_with_warmup`).
    Linear,
    /// Half-cosine decay to `min_lr_ratio * lr` (`get_cosine_schedule_with_warmup`,
    /// `num_cycles = 0.5`). The default.
    #[default]
    Cosine,
}

/// A learning-rate schedule over `total_steps` optimizer steps.
///
/// `lr(step)` takes the number of optimizer steps already taken (0 for the first
/// update), exactly like a transformers `LambdaLR`. This means that with warmup the
/// very first update uses lr 0, as in transformers; it still advances Adam's moments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Final lr as a fraction of the peak (0 reproduces transformers exactly).
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Validates and builds a schedule.
    pub fn new(
        kind: ScheduleKind,
        lr: f64,
        warmup_steps: usize,
        total_steps: usize,
        min_lr_ratio: f64,
    ) -> Result<Self> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Config(format!(
                "learning rate must be >= 0, got {lr}"
            )));
        }
        if !(0.0..=1.0).contains(&min_lr_ratio) {
            return Err(Error::Config(format!(
                "min_lr_ratio must be in [0, 1], got {min_lr_ratio}"
            )));
        }
        Ok(Self {
            kind,
            lr,
            warmup_steps,
            total_steps,
            min_lr_ratio,
        })
    }

    /// Learning rate for the update that follows `step` completed updates.
    pub fn lr(&self, step: usize) -> f64 {
        self.lr * self.factor(step)
    }

    /// Multiplier applied to the peak lr (the transformers `lr_lambda`).
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        // Clamped so that steps past the end stay at the minimum; transformers'
        // cosine would start rising again there (only reachable by misuse).
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let decayed = match self.kind {
            ScheduleKind::Constant => return 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            // num_cycles = 0.5: cos(pi * 2 * 0.5 * progress) goes from 1 to -1 once.
            ScheduleKind::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.min_lr_ratio + (1.0 - self.min_lr_ratio) * decayed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    // Values from transformers (checked against its output):
    //   opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    //   s = get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=10)
    //   [s.lr_lambdas[0](i) for i in range(11)]
    // i.e. warmup i/2, then 0.5*(1+cos(pi*(i-2)/8)). The 12th value (step 11, past
    // the end) is our clamp; transformers would rise again to 0.038 there.
    #[test]
    fn cosine_matches_transformers() -> Result<()> {
        let s = LrSchedule::new(ScheduleKind::Cosine, 1.0, 2, 10, 0.0)?;
        let want = [
            0.0,
            0.5,
            1.0,
            0.961_939_766_255_643_4,
            0.853_553_390_593_273_8,
            0.691_341_716_182_544_9,
            0.5,
            0.308_658_283_817_455_1,
            0.146_446_609_406_726_24,
            0.038_060_233_744_356_62,
            0.0,
            0.0,
        ];
        for (i, w) in want.iter().enumerate() {
            close(s.factor(i), *w);
        }
        Ok(())
    }

    #[test]
    fn cosine_with_min_ratio_and_scaled_lr() -> Result<()> {
        let s = LrSchedule::new(ScheduleKind::Cosine, 3e-4, 0, 4, 0.1)?;
        close(s.lr(0), 3e-4);
        close(s.lr(2), 3e-4 * (0.1 + 0.9 * 0.5));
        close(s.lr(4), 3e-5);
        close(s.lr(100), 3e-5);
        Ok(())
    }

    // get_linear_schedule_with_warmup(opt, 2, 10): i/2, then (10-i)/8.
    #[test]
    fn linear_and_constant() -> Result<()> {
        let s = LrSchedule::new(ScheduleKind::Linear, 1.0, 2, 10, 0.0)?;
        let want = [
            0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0,
        ];
        for (i, w) in want.iter().enumerate() {
            close(s.factor(i), *w);
        }
        let c = LrSchedule::new(ScheduleKind::Constant, 2.0, 4, 10, 0.5)?;
        close(c.lr(1), 0.5);
        close(c.lr(4), 2.0);
        close(c.lr(50), 2.0);
        Ok(())
    }

    #[test]
    fn rejects_bad_values() {
        assert!(LrSchedule::new(ScheduleKind::Cosine, -1.0, 0, 1, 0.0).is_err());
        assert!(LrSchedule::new(ScheduleKind::Cosine, 1.0, 0, 1, 1.5).is_err());
    }
}
