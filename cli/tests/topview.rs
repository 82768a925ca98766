//! `rudder generate --show-top K --json` on the tiny fixture: every step lists K tokens whose
//! probabilities sum to at most 1, the sampled token is marked with its probability under the
//! sampling temperature, and two temperatures reshape the same logits consistently.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn show_top_json_is_consistent_across_temperatures() {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "generate",
            "--model",
            &fixture("tiny-llama"),
            "--prompt",
            "The quick brown",
        ])
        .args(["--max-new-tokens", "4", "--seed", "3", "--top-k", "20"])
        .args(["--show-top", "5", "--json", "--temperature", "0.7,1.5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "4 steps and the completion");
    let mut text = String::new();
    for (i, s) in lines[..4].iter().enumerate() {
        assert_eq!(s["step"], i);
        text += s["text"].as_str().unwrap();
        let d = s["distributions"].as_array().unwrap();
        assert_eq!(d.len(), 2);
        let mut per_t: Vec<HashMap<u64, f64>> = vec![];
        for col in d {
            let top = col["top"].as_array().unwrap();
            assert_eq!(top.len(), 5);
            let probs: Vec<f64> = top.iter().map(|x| x["prob"].as_f64().unwrap()).collect();
            assert!(probs.windows(2).all(|w| w[0] >= w[1]), "sorted");
            assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-6);
            per_t.push(
                top.iter()
                    .map(|x| (x["id"].as_u64().unwrap(), x["prob"].as_f64().unwrap()))
                    .collect(),
            );
        }
        // The first temperature sampled this token: it had a non-zero probability there.
        assert!(d[0]["sampled_prob"].as_f64().unwrap() > 0.0);
        // p ∝ exp(l / T): for two tokens listed under both, T·ln(p_a / p_b) is the logit gap
        // l_a - l_b whatever the temperature.
        let common: Vec<u64> = per_t[0]
            .keys()
            .filter(|k| per_t[1].contains_key(k))
            .copied()
            .collect();
        assert!(common.len() >= 2);
        let (a, b) = (common[0], common[1]);
        let gap0 = 0.7 * (per_t[0][&a] / per_t[0][&b]).ln();
        let gap1 = 1.5 * (per_t[1][&a] / per_t[1][&b]).ln();
        assert!((gap0 - gap1).abs() < 1e-3, "{gap0} vs {gap1}");
        // The hotter column is flatter.
        let max = |m: &HashMap<u64, f64>| m.values().cloned().fold(0.0, f64::max);
        assert!(max(&per_t[1]) < max(&per_t[0]));
    }
    assert_eq!(lines[4]["row"], 0);
    // Pieces decoded one by one may split a multi-byte character; compare lossily.
    assert!(!lines[4]["completion"].as_str().unwrap().is_empty() || text.is_empty());
}

#[test]
fn several_temperatures_need_the_view() {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "generate",
            "--model",
            &fixture("tiny-llama"),
            "--prompt",
            "Hi",
        ])
        .args(["--temperature", "0.7,1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--show-top"));
}
