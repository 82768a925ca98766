//! Renders chat templates with Rudder's engine, for `scripts/check_chat_templates.py` (which
//! renders the same cases with transformers and compares). Reads JSONL cases on stdin:
//! `{"template", "messages", "tools"?, "add_generation_prompt", "bos_token", "eos_token"}`; writes one
//! line per case: `{"ok": rendered}` (with `"generation": [text of each block]` when the
//! template has `{% generation %}` blocks) or `{"err": message}`.
use lm::Message;
use std::io::{BufRead, Write};

fn render(case: &serde_json::Value) -> Result<serde_json::Value, String> {
    let text = |k: &str| case[k].as_str().unwrap_or_default();
    let messages: Vec<Message> =
        serde_json::from_value(case["messages"].clone()).map_err(|e| e.to_string())?;
    let gen = case["add_generation_prompt"].as_bool().unwrap_or(false);
    let tools = case.get("tools").filter(|t| !t.is_null());
    let (template, specials) = (text("template"), (text("bos_token"), text("eos_token")));
    if !lm::chat::has_generation_blocks(template) {
        let out = lm::chat::render(template, &messages, tools, gen, specials.0, specials.1);
        return out
            .map(|s| serde_json::json!({ "ok": s }))
            .map_err(|e| e.to_string());
    }
    let (s, spans) = lm::chat::render_generation_spans(template, &messages, tools, gen, specials)
        .map_err(|e| e.to_string())?;
    let blocks: Vec<&str> = spans.iter().map(|&(a, b)| &s[a..b]).collect();
    Ok(serde_json::json!({ "ok": s, "generation": blocks }))
}

fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let case: serde_json::Value = serde_json::from_str(&line?)?;
        let result = render(&case).unwrap_or_else(|e| serde_json::json!({ "err": e }));
        writeln!(out, "{result}")?;
    }
    Ok(())
}
