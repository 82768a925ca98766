//! Tokenizer and chat template against transformers (`fixtures/tokenizer_cases.json`, made by
//! `scripts/make_fixtures.py` with `tokenizer(text, add_special_tokens=False)` and
//! `tokenizer.apply_chat_template(messages, add_generation_prompt=...)`).
use lm::{LoadOptions, Message, TextOrMessages};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tokenizer_cases.json")).unwrap())
        .unwrap()
}

fn tokenizer() -> lm::Tokenizer {
    lm::load(
        root().join("tiny-llama").to_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap()
    .tokenizer
}

#[test]
fn text_ids_match_transformers() {
    let tok = tokenizer();
    for c in cases()["text_cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            c["decoded"].as_str().unwrap_or(text)
        );
    }
}

#[test]
fn chat_template_matches_transformers() {
    let tok = tokenizer();
    for c in cases()["chat_cases"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let rendered = tok.apply_chat_template(&messages, gen).unwrap();
        assert_eq!(rendered, c["rendered"].as_str().unwrap());
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        if gen {
            let ids = tok
                .encode_prompt(&TextOrMessages::Messages(messages))
                .unwrap();
            assert_eq!(ids, want);
        } else {
            assert_eq!(tok.encode(&rendered, false).unwrap(), want);
        }
    }
}

#[test]
fn special_ids_and_eos() {
    let tok = tokenizer();
    let c = cases();
    assert_eq!(
        tok.eos_ids,
        vec![c["eos_token_id"].as_u64().unwrap() as u32]
    );
    assert_eq!(tok.pad_id, c["pad_token_id"].as_u64().unwrap() as u32);
}

#[test]
fn pair_encoding_splits_prompt_and_completion() {
    let tok = tokenizer();
    let user = Message::new("user", "What is 2+2?");
    let asst = Message::new("assistant", "4");
    let pc = tok
        .encode_pair(
            &TextOrMessages::Messages(vec![user.clone()]),
            &TextOrMessages::Messages(vec![asst.clone()]),
            true,
        )
        .unwrap();
    let full = tok.apply_chat_template(&[user, asst], false).unwrap();
    assert_eq!(pc.full(), tok.encode(&full, false).unwrap());
    // The template closes the turn with <|im_end|>: no second EOS is appended.
    assert_eq!(pc.completion.iter().filter(|&&t| t == 2).count(), 1);
    let plain = tok
        .encode_pair(
            &TextOrMessages::Text("Hi".into()),
            &TextOrMessages::Text(" there".into()),
            true,
        )
        .unwrap();
    assert_eq!(*plain.completion.last().unwrap(), 2);
}

/// A message needs `content`, except a turn that calls tools; other fields are kept.
#[test]
fn messages_keep_extra_fields_and_need_content_unless_calling_tools() {
    let ok: lm::Message = serde_json::from_str(
        r#"{"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f"}}]}"#,
    )
    .unwrap();
    assert_eq!(ok.content, "");
    assert_eq!(ok.extra["tool_calls"][0]["function"]["name"], "f");
    let tool: lm::Message =
        serde_json::from_str(r#"{"role": "tool", "name": "f", "content": "1"}"#).unwrap();
    assert_eq!(
        (tool.content.as_str(), &tool.extra["name"]),
        ("1", &"f".into())
    );
    for bad in [
        r#"{"role": "user"}"#,
        r#"{"role": "user", "content": null}"#,
    ] {
        let e = serde_json::from_str::<lm::Message>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without `content`"), "{e}");
    }
}
