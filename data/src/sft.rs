//! Supervised fine-tuning rows in TRL's dataset formats, plus Alpaca.
//!
//! One row is one of (detected by its fields, in this order):
//! - `{"messages": [{"role", "content"}, ...]}`: a conversation (loss on assistant turns);
//! - `{"prompt", "completion"}`: each a string or a message list (loss on the completion);
//! - `{"conversations": [{"from", "value"}, ...], "system"?}`: ShareGPT, as LLaMA-Factory reads it
//!   (`human`/`gpt`/`system`/`observation` become `user`/`assistant`/`system`/`tool`);
//! - `{"instruction", "input"?, "output", "system"?, "history"?}`: Alpaca / LLaMA-Factory, turned
//!   into a conversation the way LLaMA-Factory does (`instruction + "\n" + input` as the user turn);
//! - `{"text"}`: plain language modelling (loss on every token).
//!
//! Files are JSONL or a JSON array (see [`lm::jsonl`]). Every error names the file, the line
//! (the element number for a JSON array) and the field.
use lm::jsonl::{read_rows, Row};
use lm::{Error, Message, Result, TextOrMessages};
use serde_json::{Map, Value};
use std::path::Path;

/// Roles a message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// One parsed SFT example.
#[derive(Debug, Clone, PartialEq)]
pub enum SftExample {
    /// Language modelling on the whole text.
    Text(String),
    /// A prompt and its completion; by default only the completion is trained on.
    PromptCompletion {
        prompt: TextOrMessages,
        completion: TextOrMessages,
    },
    /// A conversation; by default only the assistant turns are trained on. `tools` are the
    /// row's tool schemas (TRL's `tools` column), handed to the chat template.
    Messages {
        messages: Vec<Message>,
        tools: Option<Value>,
    },
}

impl SftExample {
    /// A conversation without tools.
    pub fn conversation(messages: Vec<Message>) -> Self {
        SftExample::Messages {
            messages,
            tools: None,
        }
    }
}

/// An example and the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SftRow {
    pub line: usize,
    pub example: SftExample,
}

/// The rows of a file, and (with `skip_bad`) the errors of the rows that were left out.
#[derive(Debug, Default)]
pub struct SftFile {
    pub rows: Vec<SftRow>,
    pub skipped: Vec<Error>,
}

/// Reads and parses an SFT file. With `skip_bad`, a bad row is recorded in `skipped` instead
/// of failing the whole file (a file that is not valid JSON at all still fails).
pub fn read_sft(path: &Path, skip_bad: bool) -> Result<SftFile> {
    let mut out = SftFile::default();
    for row in read_rows(path)? {
        match parse_sft_row(path, &row) {
            Ok(example) => out.rows.push(SftRow {
                line: row.line,
                example,
            }),
            Err(e) if skip_bad => out.skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Parses one row; the error names `path`, the row's line and the offending field.
pub fn parse_sft_row(path: &Path, row: &Row) -> Result<SftExample> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        line: row.line,
        reason,
    };
    let obj = row
        .value
        .as_object()
        .ok_or_else(|| bad(format!("expected a JSON object, got {}", kind(&row.value))))?;
    parse_object(obj).map_err(bad)
}

fn parse_object(obj: &Map<String, Value>) -> std::result::Result<SftExample, String> {
    if let Some(v) = obj.get("messages") {
        let messages = messages("messages", v)?;
        check_conversation("messages", &messages)?;
        let tools = tools(obj)?;
        return Ok(SftExample::Messages { messages, tools });
    }
    if let Some(v) = obj.get("conversations") {
        let messages = sharegpt(obj, v)?;
        check_conversation("conversations", &messages)?;
        let tools = tools(obj)?;
        return Ok(SftExample::Messages { messages, tools });
    }
    if obj.contains_key("prompt") || obj.contains_key("completion") {
        return prompt_completion(obj);
    }
    if obj.contains_key("instruction") || obj.contains_key("output") {
        return alpaca(obj);
    }
    if let Some(v) = obj.get("text") {
        let text = string("text", v)?;
        if text.is_empty() {
            return Err("field `text`: empty".into());
        }
        return Ok(SftExample::Text(text));
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    Err(format!(
        "no SFT fields (expected `text`, `prompt`+`completion`, `messages`, ShareGPT \
         `conversations`, or Alpaca `instruction`+`output`); the row has {keys:?}"
    ))
}

fn prompt_completion(obj: &Map<String, Value>) -> std::result::Result<SftExample, String> {
    let get = |f: &str| obj.get(f).ok_or_else(|| format!("field `{f}`: missing"));
    let prompt = text_or_messages("prompt", get("prompt")?)?;
    let completion = text_or_messages("completion", get("completion")?)?;
    let empty = match &completion {
        TextOrMessages::Text(t) => t.is_empty(),
        TextOrMessages::Messages(m) => m.is_empty() || m.iter().all(|m| m.content.is_empty()),
    };
    if empty {
        return Err("field `completion`: empty completion".into());
    }
    if matches!(
        (&prompt, &completion),
        (TextOrMessages::Text(_), TextOrMessages::Messages(_))
    ) {
        return Err(
            "field `completion`: a message list after a text `prompt`; use messages for both"
                .into(),
        );
    }
    Ok(SftExample::PromptCompletion { prompt, completion })
}

/// LLaMA-Factory's Alpaca conversion: optional `system`, `history` as earlier
/// `[user, assistant]` turns, then `instruction` (+ `"\n"` + `input` when non-empty) as the
/// user turn and `output` as the assistant turn.
fn alpaca(obj: &Map<String, Value>) -> std::result::Result<SftExample, String> {
    let opt = |f: &str| {
        obj.get(f)
            .filter(|v| !v.is_null())
            .map(|v| string(f, v))
            .transpose()
    };
    let instruction = opt("instruction")?.ok_or("field `instruction`: missing")?;
    let input = opt("input")?.unwrap_or_default();
    let output = opt("output")?.ok_or("field `output`: missing")?;
    if output.is_empty() {
        return Err("field `output`: empty completion".into());
    }
    let user = match (instruction.is_empty(), input.is_empty()) {
        (true, true) => return Err("field `instruction`: empty (and no `input`)".into()),
        (false, false) => format!("{instruction}\n{input}"),
        _ => format!("{instruction}{input}"),
    };
    let mut msgs = vec![];
    if let Some(system) = opt("system")?.filter(|s| !s.is_empty()) {
        msgs.push(msg("system", system));
    }
    if let Some(h) = obj.get("history").filter(|v| !v.is_null()) {
        msgs.extend(history(h)?);
    }
    msgs.push(msg("user", user));
    msgs.push(msg("assistant", output));
    Ok(SftExample::conversation(msgs))
}

fn history(v: &Value) -> std::result::Result<Vec<Message>, String> {
    let turns = v
        .as_array()
        .ok_or("field `history`: expected a list of [user, assistant] pairs")?;
    let mut out = vec![];
    for (i, t) in turns.iter().enumerate() {
        let field = format!("history[{i}]");
        match t.as_array().map(Vec::as_slice) {
            Some([q, a]) => {
                out.push(msg("user", string(&format!("{field}[0]"), q)?));
                out.push(msg("assistant", string(&format!("{field}[1]"), a)?));
            }
            _ => {
                return Err(format!(
                    "field `{field}`: expected a [user, assistant] pair"
                ))
            }
        }
    }
    Ok(out)
}

fn msg(role: &str, content: String) -> Message {
    Message::new(role, content)
}

fn text_or_messages(field: &str, v: &Value) -> std::result::Result<TextOrMessages, String> {
    match v {
        Value::String(s) => Ok(TextOrMessages::Text(s.clone())),
        Value::Array(_) => Ok(TextOrMessages::Messages(messages(field, v)?)),
        other => Err(format!(
            "field `{field}`: expected a string or a message list, got {}",
            kind(other)
        )),
    }
}

/// ShareGPT role names (LLaMA-Factory's defaults) to chat-template roles.
pub(crate) fn sharegpt_role(from: &str) -> Option<&'static str> {
    match from {
        "human" | "user" => Some("user"),
        "gpt" | "assistant" => Some("assistant"),
        "system" => Some("system"),
        "observation" | "tool" => Some("tool"),
        _ => None,
    }
}

/// A ShareGPT conversation: `{"from", "value"}` turns after the row's optional `system`.
fn sharegpt(obj: &Map<String, Value>, v: &Value) -> std::result::Result<Vec<Message>, String> {
    let turns = v.as_array().ok_or_else(|| {
        format!(
            "field `conversations`: expected a list of turns, got {}",
            kind(v)
        )
    })?;
    let mut out = vec![];
    // An empty `system` means none, as for LLaMA-Factory and the pairwise reader.
    if let Some(sys) = obj.get("system").filter(|v| !v.is_null()) {
        let sys = string("system", sys)?;
        if !sys.is_empty() {
            out.push(msg("system", sys));
        }
    }
    for (i, t) in turns.iter().enumerate() {
        let at = format!("conversations[{i}]");
        let get = |k: &str| string(&format!("{at}.{k}"), t.get(k).unwrap_or(&Value::Null));
        let from = get("from")?;
        if from == "function_call" {
            out.push(function_call(&at, &get("value")?)?);
            continue;
        }
        let role = sharegpt_role(&from).ok_or_else(|| {
            format!(
                "field `{at}.from`: unknown role `{from}` (human, gpt, system, function_call, \
                 observation)"
            )
        })?;
        out.push(msg(role, get("value")?));
    }
    Ok(out)
}

/// A ShareGPT `function_call` turn (`{"name", "arguments"}` or a list of them, as JSON text)
/// as an assistant turn with OpenAI-style `tool_calls`, which chat templates render.
fn function_call(at: &str, value: &str) -> std::result::Result<Message, String> {
    let parsed: Value = serde_json::from_str(value)
        .map_err(|e| format!("field `{at}.value`: a function call that is not JSON: {e}"))?;
    let calls = match parsed {
        Value::Array(list) => list,
        one => vec![one],
    };
    let mut tool_calls = vec![];
    for c in calls {
        let (Some(name), Some(arguments)) = (c.get("name"), c.get("arguments")) else {
            return Err(format!(
                "field `{at}.value`: expected {{\"name\", \"arguments\"}} for a function call"
            ));
        };
        let function = serde_json::json!({"name": name, "arguments": arguments});
        tool_calls.push(serde_json::json!({"type": "function", "function": function}));
    }
    let mut m = msg("assistant", String::new());
    m.extra
        .insert("tool_calls".into(), Value::Array(tool_calls));
    Ok(m)
}

/// A message list with known roles and string contents.
pub fn messages(field: &str, v: &Value) -> std::result::Result<Vec<Message>, String> {
    let items = v.as_array().ok_or_else(|| {
        format!(
            "field `{field}`: expected a list of messages, got {}",
            kind(v)
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let o = m
            .as_object()
            .ok_or_else(|| format!("field `{at}`: expected an object with `role` and `content`"))?;
        let role = string(&format!("{at}.role"), o.get("role").unwrap_or(&Value::Null))?;
        if !ROLES.contains(&role.as_str()) {
            return Err(format!(
                "field `{at}.role`: unknown role `{role}` (expected one of {ROLES:?})"
            ));
        }
        let calls = o.get("tool_calls").is_some_and(|c| !c.is_null());
        let content = match o.get("content") {
            // An assistant turn that only calls tools has no content (OpenAI's format).
            None | Some(Value::Null) if calls => String::new(),
            c => string(&format!("{at}.content"), c.unwrap_or(&Value::Null))?,
        };
        let mut m = Message::new(role, content);
        // `tool_calls`, `name`, `tool_call_id`, `reasoning_content`, ...: for the template.
        m.extra = o
            .iter()
            .filter(|(k, _)| k.as_str() != "role" && k.as_str() != "content")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push(m);
    }
    Ok(out)
}

/// The row's `tools`: a list of tool schemas, or that list as a JSON string (LLaMA-Factory).
pub(crate) fn tools(obj: &Map<String, Value>) -> std::result::Result<Option<Value>, String> {
    let parsed = match obj.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| format!("field `tools`: a string that is not JSON: {e}"))?,
        Some(v) => v.clone(),
    };
    match parsed {
        Value::Array(list) if list.is_empty() => Ok(None),
        list @ Value::Array(_) => Ok(Some(list)),
        other => Err(format!(
            "field `tools`: expected a list of tool schemas, got {}",
            kind(&other)
        )),
    }
}

/// A trainable conversation has an assistant turn, and no assistant turn is empty (one that
/// calls tools may have no text).
fn check_conversation(field: &str, msgs: &[Message]) -> std::result::Result<(), String> {
    if !msgs.iter().any(|m| m.role == "assistant") {
        return Err(format!("field `{field}`: no assistant turn to train on"));
    }
    if let Some(i) = msgs.iter().position(|m| {
        m.role == "assistant" && m.content.is_empty() && !m.extra.contains_key("tool_calls")
    }) {
        return Err(format!(
            "field `{field}[{i}].content`: empty assistant turn"
        ));
    }
    Ok(())
}

fn string(field: &str, v: &Value) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err(format!("field `{field}`: missing")),
        other => Err(format!(
            "field `{field}`: expected a string, got {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
