//! What each model's sampling cost in a comparison: tokens (prompt + new, and the padded
//! grid), generation FLOPs, wall time, energy (measured or estimated), CO2-eq and price, from
//! `cost`'s meter.
use cost::{CostReport, CostSettings, GenerationCount, Meter, ModelDims, Phase};
use lm::ModelConfig;
use serde::{Deserialize, Serialize};

/// One model's sampling cost, in `summary.json` and the report's cost section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingCost {
    pub model: String,
    /// Completions generated.
    pub rows: usize,
    /// New tokens generated (EOS included).
    pub generated_tokens: u64,
    /// The meter's block: `tokens` = prompt + new tokens, `padded_tokens` = the computed grid.
    pub cost: CostReport,
}

/// Meters one model's generation: started when the model is loaded, fed each batch.
pub struct SamplingMeter {
    meter: Meter,
    count: GenerationCount,
    dims: ModelDims,
}

impl SamplingMeter {
    pub fn start(device: &candle_core::Device, config: &ModelConfig, s: &CostSettings) -> Self {
        Self {
            meter: Meter::start(device, s.clone()),
            count: GenerationCount::default(),
            dims: cost::model_dims(config),
        }
    }

    /// Records one generated batch that started at `since`: `(prompt, generated)` per row.
    pub fn batch(
        &mut self,
        since: std::time::Instant,
        rows: impl IntoIterator<Item = (usize, usize)>,
    ) {
        self.meter.phase(Phase::Generation, since);
        self.meter.poll();
        self.count.add_batch(rows);
    }

    /// The cost so far, named `model`.
    pub fn finish(mut self, model: &str) -> SamplingCost {
        self.meter.add_generation(Some(&self.dims), &self.count);
        SamplingCost {
            model: model.into(),
            rows: self.count.num_rows(),
            generated_tokens: self.count.generated(),
            cost: self.meter.report(),
        }
    }
}
