use super::*;
use lm::{Message, Tokenizer};
use std::path::PathBuf;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

fn read(text: &str, skip: bool) -> Result<PrefData> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "prefs.jsonl", text);
    read_prefs(
        &p,
        &ReadOptions {
            skip_bad_rows: skip,
        },
    )
}

fn msgs(pairs: &[(&str, &str)]) -> TextOrMessages {
    TextOrMessages::Messages(
        pairs
            .iter()
            .map(|(r, c)| Message::new(r.to_string(), c.to_string()))
            .collect(),
    )
}

fn text(s: &str) -> TextOrMessages {
    TextOrMessages::Text(s.into())
}

fn fixture_tokenizer() -> Tokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-llama");
    Tokenizer::from_folder(&dir, &[2]).expect("fixture tokenizer")
}

#[test]
fn trl_explicit_prompt_strings_and_messages() -> Result<()> {
    let data = read(
        r#"{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 1.5}

{"prompt": [{"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}], "group": 7}
"#,
        false,
    )?;
    let [a, b] = &data.examples[..] else {
        panic!("two rows expected")
    };
    assert_eq!((a.line, b.line), (1, 3));
    assert_eq!(a.prompt, Some(text("The sky is")));
    assert_eq!(
        (&a.chosen, &a.rejected, a.margin),
        (&text(" blue."), &text(" green."), Some(1.5))
    );
    assert_eq!(b.prompt, Some(msgs(&[("user", "Sky?")])));
    assert_eq!(b.chosen, msgs(&[("assistant", "Blue.")]));
    assert_eq!(b.group.as_deref(), Some("7"));
    assert!(!b.tie && b.votes.is_none() && b.chosen_prob() == 1.0);
    Ok(())
}

#[test]
fn implicit_prompt_messages_take_the_shared_prefix() -> Result<()> {
    let data = read(
        r#"{"chosen": [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "It is blue."}], "rejected": [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "It is green."}]}"#,
        false,
    )?;
    let ex = &data.examples[0];
    // TRL's own docstring example of `extract_prompt`.
    assert_eq!(ex.prompt, Some(msgs(&[("user", "What color is the sky?")])));
    assert_eq!(ex.chosen, msgs(&[("assistant", "It is blue.")]));
    assert_eq!(ex.rejected, msgs(&[("assistant", "It is green.")]));
    Ok(())
}

#[test]
fn implicit_prompt_strings_split_per_character_like_trl() {
    // TRL: for idx in range(min(len)): if c[idx] != r[idx]: if c[idx-1] == " ": idx -= 1; break
    let split = |c: &str, r: &str| extract_prompt(text(c), text(r)).expect("split");
    let (p, c, r) = split("The sky is blue.", "The sky is green.");
    assert_eq!(
        (p, c, r),
        (Some(text("The sky is")), text(" blue."), text(" green."))
    );
    // No shared prefix: no prompt.
    assert_eq!(split("Yes.", "No.").0, None);
    // One a prefix of the other: TRL leaves idx at the last compared position.
    let (p, c, r) = split("ab", "abc");
    assert_eq!((p, c, r), (Some(text("a")), text("b"), text("bc")));
    assert!(extract_prompt(text("a"), msgs(&[("user", "a")])).is_err());
}

#[test]
fn labeling_export_votes_agreement_tie_and_extra_fields() -> Result<()> {
    let data = read(
        r#"{"prompt": "Q", "chosen": "A", "rejected": "B", "votes": {"chosen": 2, "rejected": 1, "tie": 0}, "agreement": 0.667, "margin": 0.5, "task_id": 12, "annotators": ["x", "y"]}
{"prompt": "Q2", "chosen": "C", "rejected": "D", "votes": {"chosen": 1, "rejected": 1, "tie": 1}, "agreement": 0.333, "tie": true}"#,
        false,
    )?;
    let [a, b] = &data.examples[..] else {
        panic!("two rows expected")
    };
    let v = a.votes.expect("votes");
    assert_eq!((v.chosen, v.rejected, v.tie), (2.0, 1.0, 0.0));
    assert!((v.chosen_share().unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        (a.agreement, a.margin, a.tie),
        (Some(0.667), Some(0.5), false)
    );
    assert!(b.tie && b.chosen_prob() == 0.5 && b.margin.is_none());
    Ok(())
}

#[test]
fn llama_factory_rows_from_dpo_en_demo() -> Result<()> {
    // Rows of LLaMA-Factory 0.9.5 data/dpo_en_demo.json (values shortened to 70 characters).
    let rows = r#"[
{"conversations": [{"from": "human", "value": "Hi! I'd like to create a new language game simulating the first person"}], "chosen": {"from": "gpt", "value": "That sounds like a fun and engaging idea! Here are some tips to help y"}, "rejected": {"from": "gpt", "value": "Hello! I'd be happy to help you create a language game simulating the "}},
{"conversations": [{"from": "system", "value": "You are a teacher. Given a task, you explain in simple steps what the "}, {"from": "human", "value": "Q: In this task, you need to provide the parts-of-speech tag of a word"}], "chosen": {"from": "gpt", "value": "In this task, you are asked to identify the part-of-speech (POS) tag f"}, "rejected": {"from": "gpt", "value": "Sure, I'd be happy to help! Here are the steps to find the part of spe"}},
{"conversations": [{"from": "human", "value": "Who wrote the classic novel \"Pride and Prejudice\", published in 1813, "}, {"from": "gpt", "value": "Jane Austen"}, {"from": "human", "value": "Elaborate on the societal norms and values depicted in Jane Austen's \""}, {"from": "gpt", "value": "\"Pride and Prejudice\" provides a vivid portrayal of early 19th-century"}, {"from": "human", "value": "Drawing from the societal norms and values discussed, how might the ch"}], "chosen": {"from": "gpt", "value": "If \"Pride and Prejudice\" was set in the present day, many of the chara"}, "rejected": {"from": "gpt", "value": "In a contemporary setting, the characters' decisions and actions in \"P"}}
]"#;
    let data = read(rows, false)?;
    assert_eq!(data.examples.len(), 3);
    let roles = |t: &Option<TextOrMessages>| match t {
        Some(TextOrMessages::Messages(m)) => m.iter().map(|m| m.role.clone()).collect::<Vec<_>>(),
        _ => vec![],
    };
    assert_eq!(roles(&data.examples[0].prompt), ["user"]);
    assert_eq!(roles(&data.examples[1].prompt), ["system", "user"]);
    assert_eq!(
        roles(&data.examples[2].prompt),
        ["user", "assistant", "user", "assistant", "user"]
    );
    let TextOrMessages::Messages(c) = &data.examples[2].chosen else {
        panic!("messages expected")
    };
    assert_eq!(c[0].role, "assistant");
    assert!(c[0].content.starts_with("If \"Pride"));
    // Each prompt renders through the chat template and the completion is one assistant turn.
    let tok = fixture_tokenizer();
    let (p, ch, _) = tokenize_pair(&tok, &data.examples[1])?;
    assert!(tok.decode(&p, false)?.ends_with("<|im_start|>assistant\n"));
    assert!(tok.decode(&ch, false)?.ends_with("<|im_end|>\n"));
    Ok(())
}

#[test]
fn errors_name_file_line_and_field() {
    let err = |text: &str| read(text, false).expect_err("must fail").to_string();
    let e = err("{\"prompt\": \"Q\", \"chosen\": \"A\", \"rejected\": \"B\"}\n{\"prompt\": \"Q\", \"rejected\": \"B\"}");
    assert!(
        e.contains("prefs.jsonl:2:") && e.contains("`chosen`: missing"),
        "{e}"
    );
    let e = err(r#"{"prompt": "Q", "chosen": "A", "rejected": "A"}"#);
    assert!(
        e.contains(":1:") && e.contains("`rejected`: identical to `chosen`"),
        "{e}"
    );
    let e = err(r#"{"prompt": "Q", "chosen": "A", "rejected": "B", "margin": "big"}"#);
    assert!(e.contains("`margin`"), "{e}");
    let e = err(r#"{"prompt": "Q", "chosen": 3, "rejected": "B"}"#);
    assert!(e.contains("`chosen`: expected a string"), "{e}");
    let e = err(
        r#"{"conversations": [{"from": "gpt", "value": "x"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}"#,
    );
    assert!(
        e.contains("`conversations`: must end with a `human` turn"),
        "{e}"
    );
    let e = err(
        r#"{"conversations": [{"from": "alien", "value": "x"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}"#,
    );
    assert!(
        e.contains("`conversations[0]`: unknown role `alien`"),
        "{e}"
    );
    let e = err(
        r#"{"prompt": "Q", "chosen": [{"role": "assistant", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]}"#,
    );
    assert!(
        e.contains("`chosen`: a message list after a text prompt"),
        "{e}"
    );
}

#[test]
fn skip_bad_rows_counts_and_keeps_the_good_ones() -> Result<()> {
    let text = "{\"prompt\": \"Q\", \"chosen\": \"A\", \"rejected\": \"B\"}\nnot json\n{\"chosen\": \"A\"}\n{\"prompt\": \"Q\", \"chosen\": \"C\", \"rejected\": \"D\"}\n";
    assert!(read(text, false).is_err());
    let data = read(text, true)?;
    assert_eq!(
        data.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 4]
    );
    let lines: Vec<usize> = data.skipped.iter().map(|s| s.0).collect();
    assert_eq!(lines, [2, 3]);
    assert!(data.skipped[1].1.contains("`rejected`: missing"));
    Ok(())
}

#[test]
fn tokenizes_like_the_dpo_goldens() -> Result<()> {
    // fixtures/goldens/dpo.json `prompt_format`: apply_chat_template([{role: user, content:
    // prompt_text}], add_generation_prompt=True); completion = tokenize(text,
    // add_special_tokens=False) + [eos_token_id]
    let goldens: serde_json::Value =
        serde_json::from_str(include_str!("../../../fixtures/goldens/dpo.json"))
            .map_err(|e| Error::Invalid(e.to_string()))?;
    let tok = fixture_tokenizer();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        serde_json::from_value(v.clone()).unwrap_or_default()
    };
    for pair in goldens["pairs"].as_array().into_iter().flatten() {
        let s = |k: &str| pair[k].as_str().unwrap_or_default().to_string();
        let ex = PrefExample {
            line: 1,
            prompt: Some(msgs(&[("user", &s("prompt_text"))])),
            chosen: text(&s("chosen_text")),
            rejected: text(&s("rejected_text")),
            margin: None,
            votes: None,
            agreement: None,
            tie: false,
            group: None,
            tools: None,
        };
        let (p, c, r) = tokenize_pair(&tok, &ex)?;
        assert_eq!(p, ids(&pair["prompt_ids"]));
        assert_eq!(c, ids(&pair["chosen_ids"]));
        assert_eq!(r, ids(&pair["rejected_ids"]));
    }
    Ok(())
}

fn example(
    prompt: TextOrMessages,
    chosen: TextOrMessages,
    rejected: TextOrMessages,
) -> PrefExample {
    PrefExample {
        line: 1,
        prompt: Some(prompt),
        chosen,
        rejected,
        margin: None,
        votes: None,
        agreement: None,
        tie: false,
        group: None,
        tools: None,
    }
}

#[test]
fn tokenizes_strings_and_messages_like_trl_dpo_trainer() -> Result<()> {
    // Goldens from TRL 1.16: DPOTrainer(model=tiny-llama, processing_class=tokenizer,
    // train_dataset=Dataset.from_list([row])).train_dataset[0][prompt_ids/chosen_ids/rejected_ids]
    let tok = fixture_tokenizer();
    let ex = example(text("The sky is"), text(" blue."), text(" green."));
    let got = tokenize_pair(&tok, &ex)?;
    assert_eq!(
        got,
        (
            vec![274, 286, 77, 91, 273],
            vec![316, 78, 87, 71, 16, 2],
            vec![379, 262, 277, 16, 2]
        )
    );
    let ex = example(
        msgs(&[("user", "Sky?")]),
        msgs(&[("assistant", "Blue.")]),
        msgs(&[("assistant", "Green.")]),
    );
    let (p, c, r) = tokenize_pair(&tok, &ex)?;
    #[rustfmt::skip]
    let want: Vec<u32> = vec![1, 85, 91, 269, 71, 79, 201, 59, 369, 259, 262, 259, 223, 261, 78, 82, 72, 87, 78, 223, 35, 43, 318, 373, 275, 86, 381, 67, 79, 289, 223, 53, 292, 78, 46, 47, 14, 260, 372, 289, 316, 91, 223, 42, 87, 73, 73, 345, 223, 40, 67, 279, 2, 201, 1, 299, 268, 201, 53, 77, 91, 33, 2, 201, 1, 326, 373, 275, 86, 201];
    assert_eq!(p, want);
    assert_eq!(
        (c, r),
        (
            vec![36, 78, 87, 71, 16, 2, 201],
            vec![41, 262, 277, 16, 2, 201]
        )
    );
    Ok(())
}

#[test]
fn max_seq_len_truncates_the_prompt_from_the_left_or_drops() -> Result<()> {
    let tok = fixture_tokenizer();
    let long = example(
        text("one two three four five six seven"),
        text(" yes"),
        text(" no, never"),
    );
    let short = example(text("Hi"), text(" a"), text(" b"));
    let (p, c, r) = tokenize_pair(&tok, &long)?;
    let max = c.len().max(r.len()) + 2;
    assert!(p.len() > 2);
    let path = Path::new("prefs.jsonl");
    let opts = TokenizeOptions {
        max_seq_len: Some(max),
        drop_long: false,
    };
    let out = tokenize_all(path, &tok, &[long.clone(), short.clone()], &opts)?;
    assert_eq!((out.truncated, out.pairs.len()), (1, 2));
    assert_eq!(out.pairs[0].prompt, p[p.len() - 2..]);
    assert_eq!((&out.pairs[0].chosen, &out.pairs[0].rejected), (&c, &r));
    assert!(out.pairs.iter().all(|t| t.max_len() <= max));
    // Completions longer than the limit keep their start and one prompt token.
    let out = tokenize_all(
        path,
        &tok,
        std::slice::from_ref(&long),
        &TokenizeOptions {
            max_seq_len: Some(3),
            drop_long: false,
        },
    )?;
    assert_eq!(
        (out.pairs[0].prompt.len(), out.pairs[0].rejected.clone()),
        (1, r[..2].to_vec())
    );
    let out = tokenize_all(
        path,
        &tok,
        &[long, short],
        &TokenizeOptions {
            max_seq_len: Some(max),
            drop_long: true,
        },
    )?;
    assert_eq!(
        (out.dropped, out.pairs.len(), out.pairs[0].index),
        (vec![1], 1, 1)
    );
    Ok(())
}

/// TRL's `tools` column reaches the chat template of a preference pair (the rendered prompt
/// carries the schemas), and a bad one names its line and field.
#[test]
fn tools_column_reaches_the_template() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::Invalid(e.to_string()))?;
    let path = dir.path().join("p.jsonl");
    let rows = concat!(
        r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}], "tools": [{"name": "w"}]}"#,
        "\n"
    );
    std::fs::write(&path, rows).map_err(|e| Error::Invalid(e.to_string()))?;
    let data = read_prefs(&path, &ReadOptions::default())?;
    let ex = &data.examples[0];
    assert_eq!(ex.tools, Some(serde_json::json!([{"name": "w"}])));
    let mut tok = fixture_tokenizer();
    tok.chat_template = Some(
        "{% if tools %}T{{ tools | tojson }}|{% endif %}{% for m in messages %}{{ m.content }};\
         {% endfor %}{% if add_generation_prompt %}>{% endif %}"
            .into(),
    );
    let (p, c, r) = tokenize_pair(&tok, ex)?;
    let text = |ids: &[u32]| tok.decode(ids, false);
    // The prompt is what it shares with both sides (this template's generation prompt `>` is
    // not part of the rendered answers), as for pairs without tools.
    assert_eq!(text(&p)?, "T[{\"name\": \"w\"}]|q;");
    // Each side's ids follow the prompt's: the completion alone.
    assert_eq!((text(&c)?, text(&r)?), ("a;".into(), "b;".into()));

    std::fs::write(&path, rows.replace("[{\"name\": \"w\"}]", "7"))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let e = read_prefs(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.jsonl:1:") && e.contains("`tools`"), "{e}");
    Ok(())
}
