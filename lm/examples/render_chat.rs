//! Renders chat templates with Rudder's engine, for `scripts/check_chat_templates.py` (which
//! renders the same cases with transformers and compares). Reads JSONL cases on stdin:
//! `{"template", "messages", "tools"?, "add_generation_prompt", "bos_token", "eos_token"}`; writes one
//! line per case: `{"ok": rendered}` or `{"err": message}`.
use lm::Message;
use std::io::{BufRead, Write};

fn render(case: &serde_json::Value) -> Result<String, String> {
    let text = |k: &str| case[k].as_str().unwrap_or_default();
    let messages: Vec<Message> =
        serde_json::from_value(case["messages"].clone()).map_err(|e| e.to_string())?;
    let gen = case["add_generation_prompt"].as_bool().unwrap_or(false);
    let tools = case.get("tools").filter(|t| !t.is_null());
    lm::chat::render(
        text("template"),
        &messages,
        tools,
        gen,
        text("bos_token"),
        text("eos_token"),
    )
    .map_err(|e| e.to_string())
}

fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let case: serde_json::Value = serde_json::from_str(&line?)?;
        let result = match render(&case) {
            Ok(s) => serde_json::json!({ "ok": s }),
            Err(e) => serde_json::json!({ "err": e }),
        };
        writeln!(out, "{result}")?;
    }
    Ok(())
}
