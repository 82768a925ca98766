//! The loop's cost accounting: every stage gets FLOPs, phase times, energy, CO2 and price in
//! `metrics.jsonl` and `summary.json` without code of its own (see [`cost`]).

use cost::{CostReport, FlopModel, Flops, Meter};

use super::*;

/// The config's FLOP model, counting the layers' recompute when checkpointing is on.
fn flop_model(cfg: &TrainerConfig) -> Option<FlopModel> {
    cfg.flops.as_ref().map(|f| FlopModel {
        recompute: cfg.gradient_checkpointing,
        ..f.clone()
    })
}

/// Starts the meter on the parameters' device, with the config's FLOP model and settings.
pub(super) fn meter(params: &Params, cfg: &TrainerConfig) -> Meter {
    let device = match params.iter().next() {
        Some((_, v)) => v.device().clone(),
        None => candle_core::Device::Cpu,
    };
    let mut m = Meter::start(&device, cfg.cost.clone());
    m.set_flop_rule(match flop_model(cfg) {
        Some(f) => f.rule(),
        None => "model shape not given: FLOPs not counted".into(),
    });
    m
}

impl Loop<'_> {
    /// Counts one update over the current micro-batches: `tokens` non-pad tokens in
    /// `self.batch_examples` examples, `shapes` the stage's padded grid of each micro-batch.
    /// FLOPs count the padded positions (what the device computes) when every micro-batch
    /// reports its grid, else the non-pad tokens. The stage's extra forward passes count on
    /// the first update of new data.
    pub(super) fn count_flops(
        &mut self,
        tokens: u64,
        shapes: &[Option<(usize, usize)>],
        update: usize,
    ) {
        let padded: Option<Vec<(usize, usize)>> = shapes.iter().copied().collect();
        let positions = padded
            .as_ref()
            .map_or(tokens, |s| s.iter().map(|&(b, t)| (b * t) as u64).sum());
        let flops = match &flop_model(self.cfg) {
            Some(f) => {
                let trainable = self.params.num_elements() as u64;
                match &padded {
                    Some(grids) => grids.iter().fold(Flops::default(), |mut acc, &(b, t)| {
                        acc += f.step_padded(b, t, trainable, update == 0);
                        acc
                    }),
                    None => f.step(tokens, self.batch_examples, trainable, update == 0),
                }
            }
            None => Default::default(),
        };
        self.cost.add(flops, tokens, positions);
    }

    /// The `cost` block for a log line or the summary.
    pub(super) fn cost_block(&mut self) -> CostReport {
        self.cost.report()
    }

    /// The final block, printed as the run's last lines (stderr) and returned for the summary.
    pub(super) fn final_cost(&mut self) -> CostReport {
        let report = self.cost.report();
        for line in report.lines() {
            eprintln!("{line}");
        }
        report
    }
}
