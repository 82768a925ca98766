//! Samples, log-probs and the KL estimate against transformers on the tiny fixtures (base =
//! `tiny-llama-ref`, aligned = `tiny-llama`), greedy so both sides take the same tokens.
//! Goldens: `.venv/bin/python scripts/make_compare_golden.py` (transformers 5.24): per sample,
//! completion ids, Σ log p_model, Σ log p_base over the completion tokens and their difference.
use compare::{prompts, run, CompareSettings, ModelSpec};
use std::path::PathBuf;

/// (model, prompt id, completion ids, logprob, logprob_base, kl).
type Golden = (&'static str, &'static str, [u32; 6], f64, f64, f64);

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn kl_and_logprobs_match_transformers() {
    let ps = prompts::parse_jsonl(
        "{\"id\": \"a\", \"prompt\": [{\"role\": \"user\", \"content\": \"Say hi\"}]}\n\
         {\"id\": \"b\", \"prompt\": [{\"role\": \"user\", \"content\": \"Fix it.\"}]}\n",
        "golden",
    )
    .unwrap();
    let models = vec![
        ModelSpec {
            name: "base".into(),
            spec: fixture("tiny-llama-ref"),
        },
        ModelSpec {
            name: "aligned".into(),
            spec: fixture("tiny-llama"),
        },
    ];
    let s = CompareSettings {
        temperature: 0.0,
        max_new_tokens: 6,
        batch_size: 2,
        ..Default::default()
    };
    let cost = cost::CostSettings::default();
    let rows = run::run_models(&models, &ps, &s, &lm::LoadOptions::default(), &cost)
        .unwrap()
        .samples;
    // (model, prompt id, completion ids, logprob, logprob_base, kl) from the script above.
    let golden: [Golden; 4] = [
        (
            "base",
            "a",
            [153, 150, 154, 75, 66, 298],
            -17.53436,
            -17.53436,
            0.0,
        ),
        (
            "aligned",
            "a",
            [82, 258, 311, 177, 18, 47],
            -18.96619,
            -26.36741,
            7.40123,
        ),
        (
            "base",
            "b",
            [27, 379, 154, 208, 207, 297],
            -19.56094,
            -19.56094,
            0.0,
        ),
        (
            "aligned",
            "b",
            [368, 131, 286, 36, 85, 77],
            -18.52016,
            -21.62686,
            3.10670,
        ),
    ];
    assert_eq!(rows.len(), 4);
    for (m, id, ids, lp, lb, kl) in golden {
        let r = rows
            .iter()
            .find(|r| r.model == m && r.prompt_id == id)
            .unwrap();
        assert_eq!(r.ids.as_ref().unwrap().completion, ids, "{m} {id}");
        assert_eq!(r.completion_tokens, 6);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        assert!(
            close(r.logprob, lp) && close(r.logprob_base, lb) && close(r.kl, kl),
            "{m} {id}: {r:?}"
        );
    }
}
