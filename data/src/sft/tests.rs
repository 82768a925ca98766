use super::*;

fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn m(role: &str, content: &str) -> Message {
    msg(role, content.into())
}

#[test]
fn every_format_parses() -> Result<()> {
    let text = [
        r#"{"text": "hello"}"#,
        r#"{"prompt": "2+2=", "completion": "4"}"#,
        r#"{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}"#,
        r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#,
        r#"{"instruction": "Add", "input": "2 and 2", "output": "4"}"#,
        r#"{"instruction": "Say hi", "input": "", "output": "hi", "system": "be nice", "history": [["q0", "a0"]]}"#,
        r#"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}], "system": "s"}"#,
    ]
    .join("\n");
    let (_d, path) = write("train.jsonl", &text);
    let f = read_sft(&path, false)?;
    let ex: Vec<SftExample> = f.rows.iter().map(|r| r.example.clone()).collect();
    assert_eq!(
        f.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(ex[0], SftExample::Text("hello".into()));
    assert_eq!(
        ex[1],
        SftExample::PromptCompletion {
            prompt: TextOrMessages::Text("2+2=".into()),
            completion: TextOrMessages::Text("4".into()),
        }
    );
    assert!(
        matches!(&ex[2], SftExample::PromptCompletion { prompt: TextOrMessages::Messages(p), .. } if p[0].role == "user")
    );
    assert_eq!(
        ex[3],
        SftExample::conversation(vec![m("system", "s"), m("user", "q"), m("assistant", "a")])
    );
    // LLaMA-Factory joins instruction and input with a newline.
    assert_eq!(
        ex[4],
        SftExample::conversation(vec![m("user", "Add\n2 and 2"), m("assistant", "4")])
    );
    let expected = vec![
        m("system", "be nice"),
        m("user", "q0"),
        m("assistant", "a0"),
        m("user", "Say hi"),
        m("assistant", "hi"),
    ];
    assert_eq!(ex[5], SftExample::conversation(expected));
    // ShareGPT (LLaMA-Factory's default tags): the row's system first, then the turns.
    let expected = vec![
        m("system", "s"),
        m("user", "q"),
        m("assistant", "a"),
        m("user", "q2"),
        m("assistant", "a2"),
    ];
    assert_eq!(ex[6], SftExample::conversation(expected));
    Ok(())
}

#[test]
fn json_array_files_parse() -> Result<()> {
    let (_d, path) = write(
        "a.json",
        r#"[{"instruction": "a", "input": "", "output": "b"}, {"text": "t"}]"#,
    );
    let f = read_sft(&path, false)?;
    assert_eq!(f.rows.len(), 2);
    assert_eq!(f.rows[1].line, 2);
    Ok(())
}

/// Each bad row, the line it is on, and a word its reason must contain.
#[test]
fn bad_rows_name_file_line_and_field() -> Result<()> {
    let cases = [
        (r#"{"prompt": "only a prompt"}"#, "`completion`: missing"),
        (r#"{"prompt": "p", "completion": ""}"#, "empty completion"),
        (
            r#"{"messages": [{"role": "bot", "content": "x"}]}"#,
            "unknown role `bot`",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "q"}]}"#,
            "no assistant turn",
        ),
        (
            r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"instruction": "x", "output": 3}"#,
            "`output`: expected a string",
        ),
        (r#"{"instruction": "x", "output": ""}"#, "empty completion"),
        (r#"{"foo": 1}"#, "no SFT fields"),
        (
            r#"{"conversations": [{"from": "bot", "value": "x"}]}"#,
            "`conversations[0].from`: unknown role `bot`",
        ),
        (
            r#"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}"#,
            "`conversations[1].value`: missing",
        ),
        (
            r#"{"conversations": [{"from": "human", "value": "q"}]}"#,
            "no assistant turn",
        ),
        (r#"[1, 2]"#, "expected a JSON object"),
        (r#"{"text": "#, "invalid JSON"),
    ];
    for (i, (row, reason)) in cases.iter().enumerate() {
        // The bad row sits on line 3, after a blank line and a good row.
        let text = format!("{{\"text\": \"ok\"}}\n\n{row}\n");
        let (_d, path) = write("bad.jsonl", &text);
        let err = read_sft(&path, false).expect_err("bad row accepted");
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Data { line: 3, .. }),
            "case {i}: {msg}"
        );
        assert!(
            msg.contains("bad.jsonl:3:") && msg.contains(reason),
            "case {i}: {msg}"
        );
    }
    Ok(())
}

#[test]
fn skip_bad_rows_counts_them() -> Result<()> {
    let text = "{\"text\": \"a\"}\n{\"prompt\": \"p\"}\n{\"text\": \"b\"}\n{\"messages\": []}\n";
    let (_d, path) = write("mixed.jsonl", text);
    let f = read_sft(&path, true)?;
    assert_eq!(f.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
    let lines: Vec<usize> = f
        .skipped
        .iter()
        .filter_map(|e| match e {
            Error::Data { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(lines, [2, 4]);
    Ok(())
}

/// Tool calling as TRL reads it: assistant `tool_calls` (content may be absent or null), `tool`
/// turns with their extra fields, and the row's `tools` (a list, or a JSON string as
/// LLaMA-Factory stores it); ShareGPT `function_call` turns become OpenAI-style `tool_calls`.
#[test]
fn tool_calls_and_tools_are_kept_for_the_template() -> Result<()> {
    let call = r#"{"type": "function", "function": {"name": "w", "arguments": {"city": "Paris"}}}"#;
    let text = [
        format!(
            r#"{{"messages": [{{"role": "user", "content": "q"}}, {{"role": "assistant", "content": null, "tool_calls": [{call}]}}, {{"role": "tool", "name": "w", "tool_call_id": "c1", "content": "22 C"}}, {{"role": "assistant", "content": "Warm."}}], "tools": [{{"type": "function", "function": {{"name": "w"}}}}]}}"#
        ),
        r#"{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}"}, {"from": "observation", "value": "22 C"}, {"from": "gpt", "value": "Warm."}], "tools": "[{\"name\": \"w\"}]"}"#.to_string(),
    ]
    .join("\n");
    let (_d, path) = write("tools.jsonl", &text);
    let f = read_sft(&path, false)?;
    let SftExample::Messages { messages, tools } = &f.rows[0].example else {
        panic!("not a conversation")
    };
    assert_eq!(messages[1].content, "");
    let want_call: serde_json::Value = serde_json::from_str(call).unwrap();
    assert_eq!(
        messages[1].extra["tool_calls"],
        serde_json::json!([want_call])
    );
    assert_eq!(messages[2].extra["name"], "w");
    assert_eq!(messages[2].extra["tool_call_id"], "c1");
    assert_eq!(tools.as_ref().unwrap()[0]["function"]["name"], "w");
    let SftExample::Messages { messages, tools } = &f.rows[1].example else {
        panic!("not a conversation")
    };
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(
        messages[1].extra["tool_calls"],
        serde_json::json!([want_call])
    );
    assert_eq!(tools.as_ref().unwrap(), &serde_json::json!([{"name": "w"}]));

    // Bad tool rows name their field.
    let bad = [
        (
            r#"{"messages": [{"role": "assistant", "content": "a"}], "tools": 3}"#,
            "`tools`",
        ),
        (
            r#"{"messages": [{"role": "assistant", "content": "a"}], "tools": "[oops"}"#,
            "`tools`: a string that is not JSON",
        ),
        (
            r#"{"messages": [{"role": "assistant", "content": null}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"conversations": [{"from": "function_call", "value": "{\"x\": 1}"}]}"#,
            "conversations[0].value",
        ),
    ];
    for (row, reason) in bad {
        let (_d, path) = write("bad.jsonl", row);
        let e = read_sft(&path, false).expect_err(row).to_string();
        assert!(e.contains("bad.jsonl:1:") && e.contains(reason), "{e}");
    }
    Ok(())
}

/// An empty ShareGPT `system` is no system turn (LLaMA-Factory's reading, and the pairwise
/// reader's).
#[test]
fn empty_sharegpt_system_adds_no_turn() -> Result<()> {
    let row = r#"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": ""}"#;
    let (_d, path) = write("sys.jsonl", row);
    let f = read_sft(&path, false)?;
    assert_eq!(
        f.rows[0].example,
        SftExample::conversation(vec![m("user", "q"), m("assistant", "a")])
    );
    Ok(())
}
