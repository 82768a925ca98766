//! Each model's sampling cost on the tiny fixtures: counted tokens, generation FLOPs and the
//! energy label in `summary.json` and the HTML report's cost section, escaped.
use compare::{prompts, run, CompareSettings, ModelSpec, Report};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn report_has_each_sides_sampling_cost() -> anyhow::Result<()> {
    let ps = prompts::parse_jsonl(
        "{\"id\": \"a\", \"prompt\": \"Say hi\"}\n{\"id\": \"b\", \"prompt\": \"Fix this long one, please.\"}\n",
        "cost",
    )?;
    let models = vec![
        ModelSpec {
            name: "base".into(),
            spec: fixture("tiny-llama-ref"),
        },
        ModelSpec {
            name: "<b>aligned</b>".into(),
            spec: fixture("tiny-llama"),
        },
    ];
    let s = CompareSettings {
        temperature: 0.0,
        max_new_tokens: 5,
        batch_size: 2,
        ..Default::default()
    };
    let cost = cost::CostSettings {
        price_per_hour: Some(1.5),
        ..Default::default()
    };
    let sampled = run::run_models(&models, &ps, &s, &lm::LoadOptions::default(), &cost)?;
    assert_eq!(sampled.costs.len(), 2);
    for (m, c) in models.iter().zip(&sampled.costs) {
        let tok = lm::load(&m.spec, &lm::LoadOptions::default())?.tokenizer;
        let prompt_tokens: usize = ps
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt).map(|ids| ids.len()))
            .sum::<lm::Result<usize>>()?;
        let generated: usize = sampled
            .samples
            .iter()
            .filter(|r| r.model == m.name)
            .map(|r| r.completion_tokens)
            .sum();
        assert_eq!(c.model, m.name);
        assert_eq!((c.rows, c.generated_tokens), (2, generated as u64));
        assert_eq!(c.cost.tokens, (prompt_tokens + generated) as u64);
        // One batch of two prompts of different lengths: the grid has padding.
        assert!(c.cost.padded_tokens > c.cost.tokens, "{c:?}");
        assert!(c.cost.flops > 0.0 && c.cost.flops_backward == 0.0);
        assert!(c.cost.phases_s.contains_key("generation"));
        assert!(c.cost.cost.is_some());
    }

    let report = Report::build(&models, sampled.samples, &s, "cost").with_costs(sampled.costs);
    let dir = tempfile::tempdir()?;
    compare::write_report(dir.path(), &report)?;
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json"))?)?;
    let block = &summary["models"][1]["cost"];
    assert_eq!(block["model"], "<b>aligned</b>");
    assert!(block["cost"]["flops"].as_f64().is_some_and(|f| f > 0.0));
    let label = block["cost"]["energy"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(label == "measured" || label == "estimated", "{label}");

    let html = std::fs::read_to_string(dir.path().join("index.html"))?;
    let start = html.find("<h2 id=\"cost\">").expect("cost section");
    let section = &html[start..html[start..].find("<h2>").map_or(html.len(), |e| start + e)];
    assert!(section.contains("&lt;b&gt;aligned&lt;/b&gt;") && !section.contains("<b>aligned"));
    assert!(section.contains(&format!("<span class=\"meta\">{label}</span>")));
    assert!(section.contains("<td>total</td>"));
    assert!(section.contains("generation, forward only"));
    Ok(())
}
