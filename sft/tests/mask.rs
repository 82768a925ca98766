//! The loss mask: on hand-written ids, on real fixture rows, with packing; truncation; bad rows.
mod common;
use common::*;
use data::sft::{read_sft, SftExample};
use lm::{Message, TextOrMessages};
use sft::{encode, prepare, Sample, SftBatch};

fn sample(ids: &[u32], loss: &[u8]) -> Sample {
    Sample {
        ids: ids.to_vec(),
        loss: loss.iter().map(|&m| m == 1).collect(),
    }
}

#[test]
fn hand_written_ids_give_the_expected_targets() {
    // Row 0: prompt [1, 10] + completion [11, 12, eos 2]; positions 1, 2, 3 predict 11, 12, 2.
    let a = sample(&[1, 10, 11, 12, 2], &[0, 0, 1, 1, 1]);
    // Row 1: prompt [1] + completion [20, 21], padded to T = 5; flat positions 5, 6 predict them.
    let b = sample(&[1, 20, 21], &[0, 1, 1]);
    // Row 2: loss on all tokens; token 0 is never a target, so only 6 and 7 are (at 10, 11).
    let c = sample(&[5, 6, 7], &[1, 1, 1]);
    let batch = SftBatch::new(&[vec![&a], vec![&b], vec![&c]], 0);
    assert_eq!((batch.input.b, batch.input.t), (3, 5));
    assert_eq!(batch.gather, [1, 2, 3, 5, 6, 10, 11]);
    assert_eq!(batch.targets, [11, 12, 2, 20, 21, 6, 7]);
    assert_eq!(batch.input_tokens, 11);
    // Padding (id 0, segment 0) after row 1 and row 2.
    assert_eq!(&batch.input.ids[5..10], &[1, 20, 21, 0, 0]);
    assert_eq!(&batch.input.segments[5..10], &[1, 1, 1, 0, 0]);
}

#[test]
fn packed_rows_never_target_across_samples() {
    let a = sample(&[1, 10, 11, 12, 2], &[0, 0, 1, 1, 1]);
    let b = sample(&[1, 20, 21], &[0, 1, 1]);
    // One row holding a then b: a's targets at 1, 2, 3; position 4 (a's eos) would predict
    // b's first token and is not a target; b's targets at 5 + 0 and 5 + 1.
    let batch = SftBatch::new(&[vec![&a, &b]], 0);
    assert_eq!(batch.gather, [1, 2, 3, 5, 6]);
    assert_eq!(batch.targets, [11, 12, 2, 20, 21]);
    // Block-diagonal attention via segments, positions restart for b.
    assert_eq!(batch.input.segments, [1, 1, 1, 1, 1, 2, 2, 2]);
    assert_eq!(batch.input.positions, [0, 1, 2, 3, 4, 0, 1, 2]);
}

fn masked_text(tok: &lm::Tokenizer, s: &Sample) -> String {
    let ids: Vec<u32> = s
        .ids
        .iter()
        .zip(&s.loss)
        .filter(|(_, &m)| m)
        .map(|(&t, _)| t)
        .collect();
    tok.decode(&ids, false).expect("decode")
}

fn msg(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

#[test]
fn fixture_rows_train_on_completions_and_assistant_turns() {
    let tok = tiny("tiny-llama", false).tokenizer;
    let pc = SftExample::PromptCompletion {
        prompt: TextOrMessages::Text("The cat".into()),
        completion: TextOrMessages::Text(" sat".into()),
    };
    let s = encode(&tok, &pc, false).expect("encode");
    // TRL: prompt ids + completion ids + eos; loss on the completion and the eos only.
    let prompt = tok.encode("The cat", true).expect("enc");
    assert_eq!(&s.ids[..prompt.len()], prompt.as_slice());
    assert_eq!(s.ids.last(), Some(&2));
    assert_eq!(masked_text(&tok, &s), " sat<|im_end|>");

    let conv = vec![
        msg("system", "Be brief."),
        msg("user", "Sky?"),
        msg("assistant", "Blue."),
        msg("user", "Grass?"),
        msg("assistant", "Green."),
    ];
    let s = encode(&tok, &SftExample::conversation(conv.clone()), false).expect("encode");
    let rendered = tok.apply_chat_template(&conv, false).expect("render");
    assert_eq!(tok.decode(&s.ids, false).expect("decode"), rendered);
    // Both assistant turns (content, end-of-turn, newline), nothing of the user turns.
    assert_eq!(masked_text(&tok, &s), "Blue.<|im_end|>\nGreen.<|im_end|>\n");

    let all = encode(&tok, &SftExample::conversation(conv), true).expect("encode");
    assert!(all.loss.iter().all(|&m| m));

    let text = encode(&tok, &SftExample::Text("plain words".into()), false).expect("encode");
    assert_eq!(text.ids.last(), Some(&2), "eos appended to text rows");
    assert!(text.loss.iter().all(|&m| m));
}

/// A tool-calling conversation (TRL's `messages` with `tool_calls` + `tools`): the template sees
/// the tool schemas and the calls, both assistant turns are trained on, the tool's result is not.
/// Golden render and assistant text from transformers 5.24 on the same template:
/// ```python
/// tools = [{"type": "function", "function": {"name": "w", "parameters": {"city": "string"}}}]
/// msgs = [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "",
///          "tool_calls": [{"type": "function", "function": {"name": "w",
///                          "arguments": {"city": "Paris"}}}]},
///         {"role": "tool", "name": "w", "content": "22 C"},
///         {"role": "assistant", "content": "Warm."}]
/// render_jinja_template([msgs], chat_template=T, tools=tools)[0][0]
/// ```
#[test]
fn tool_calls_render_with_their_schemas_and_train_the_calling_turn() {
    let mut tok = tiny("tiny-llama", false).tokenizer;
    tok.chat_template = Some(
        "{%- if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}\n\
         {%- for m in messages %}\n{%- if m.role == 'assistant' and m.tool_calls %}\
         <|im_start|>assistant\n{% for c in m.tool_calls %}<call>{{ c.function | tojson }}</call>\
         {% endfor %}<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
         {% endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}<|im_start|>assistant\n\
         {% endif %}\n"
            .into(),
    );
    let mut call = msg("assistant", "");
    call.extra.insert(
        "tool_calls".into(),
        serde_json::json!([{"type": "function",
            "function": {"name": "w", "arguments": {"city": "Paris"}}}]),
    );
    let mut result = msg("tool", "22 C");
    result.extra.insert("name".into(), "w".into());
    let messages = vec![msg("user", "Sky?"), call, result, msg("assistant", "Warm.")];
    let tools = serde_json::json!([{"type": "function",
        "function": {"name": "w", "parameters": {"city": "string"}}}]);
    let ex = SftExample::Messages {
        messages,
        tools: Some(tools),
    };
    let s = encode(&tok, &ex, false).expect("encode");
    let want = "<|im_start|>system\nTools: [{\"type\": \"function\", \"function\": {\"name\": \"w\", \
                \"parameters\": {\"city\": \"string\"}}}]<|im_end|>\n<|im_start|>user\nSky?<|im_end|>\n\
                <|im_start|>assistant\n<call>{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}\
                </call><|im_end|>\n<|im_start|>tool\n22 C<|im_end|>\n<|im_start|>assistant\n\
                Warm.<|im_end|>\n";
    assert_eq!(tok.decode(&s.ids, false).expect("decode"), want);
    assert_eq!(
        masked_text(&tok, &s),
        "<call>{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}</call><|im_end|>\nWarm.<|im_end|>\n"
    );
}

/// A template with `{% generation %}` blocks marks the assistant text itself, as transformers'
/// `return_assistant_tokens_mask` reads it. This one renders the last turn differently from an
/// earlier one (a `<think></think>` line), so the render up to an earlier turn is no prefix of
/// the whole and only the blocks can locate it. Golden from transformers 5.24:
/// ```python
/// out = tok.apply_chat_template(msgs, chat_template=T, tokenize=True, return_dict=True,
///                               return_assistant_tokens_mask=True)
/// tok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
/// # 'Blue.<|im_end|>Green.<|im_end|>'
/// ```
#[test]
fn generation_blocks_mark_the_assistant_tokens_as_transformers_does() {
    let mut tok = tiny("tiny-llama", false).tokenizer;
    tok.chat_template = Some(
        "{%- for m in messages %}\n{%- if m.role == 'assistant' %}<|im_start|>assistant\n\
         {% if loop.last %}<think></think>\n{% endif %}\n{%- generation -%}\n\
         {{ m.content }}<|im_end|>\n{%- endgeneration %}\n\n{% else %}<|im_start|>{{ m.role }}\n\
         {{ m.content }}<|im_end|>\n{% endif %}\n{%- endfor %}\n\
         {%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}\n"
            .into(),
    );
    let conv = vec![
        msg("user", "Sky?"),
        msg("assistant", "Blue."),
        msg("user", "Grass?"),
        msg("assistant", "Green."),
    ];
    let s = encode(&tok, &SftExample::conversation(conv), false).expect("encode");
    assert_eq!(
        tok.decode(&s.ids, false).expect("decode"),
        "<|im_start|>user\nSky?<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n\
         <|im_start|>user\nGrass?<|im_end|>\n<|im_start|>assistant\n<think></think>\n\
         Green.<|im_end|>\n"
    );
    assert_eq!(masked_text(&tok, &s), "Blue.<|im_end|>Green.<|im_end|>");
}

#[test]
fn truncation_is_counted_and_bad_rows_name_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tiny("tiny-llama", false).tokenizer;
    let path = write(dir.path(), "train.jsonl", TRAIN_ROWS);
    let file = read_sft(&path, false).expect("parse");
    let (samples, stats) = prepare(&tok, &path, file, 12, false, false).expect("prepare");
    assert!(samples.iter().all(|s| s.ids.len() <= 12));
    let longer = read_sft(&path, false).expect("parse");
    let (_, full) = prepare(&tok, &path, longer, 4096, false, false).expect("prepare");
    assert!(stats.truncated > 0 && full.truncated == 0);
    assert_eq!(stats.truncated, full_lengths_over(&tok, &path, 12));
    assert!(samples.iter().all(|s| s.loss_tokens() > 0));

    // A prompt longer than max_seq_len leaves nothing to train on: the row is dropped, counted.
    let long = "{\"prompt\": \"one two three four five six seven eight nine ten eleven\", \
                \"completion\": \" done\"}\n{\"prompt\": \"a\", \"completion\": \" b\"}\n";
    let p = write(dir.path(), "long.jsonl", long);
    let (kept, st) = prepare(&tok, &p, read_sft(&p, false).unwrap(), 12, false, false).unwrap();
    assert_eq!((st.rows, st.truncated, st.dropped), (1, 1, 1));
    assert_eq!(kept.len(), 1);
    assert!(kept[0].loss_tokens() > 0);

    // Line 2 lacks its completion (a parse error); line 3 needs a template that fails.
    let text = "{\"text\": \"fine\"}\n{\"prompt\": \"p\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n";
    let bad = write(dir.path(), "bad.jsonl", text);
    let err = read_sft(&bad, false)
        .expect_err("missing completion")
        .to_string();
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("`completion`: missing"),
        "{err}"
    );
    let mut broken = tok.clone();
    broken.chat_template = Some("{{ raise_exception('no chat here') }}".into());
    let file = read_sft(&bad, true).expect("lenient parse");
    let err = prepare(&broken, &bad, file, 64, false, false)
        .expect_err("template fails")
        .to_string();
    assert!(
        err.contains("bad.jsonl:3:") && err.contains("no chat here"),
        "{err}"
    );
    // --skip-bad-rows: both bad rows counted, the good one kept.
    let file = read_sft(&bad, true).expect("lenient parse");
    let (kept, stats) = prepare(&broken, &bad, file, 64, false, true).expect("skips");
    assert_eq!((kept.len(), stats.skipped), (1, 2));
}

fn full_lengths_over(tok: &lm::Tokenizer, path: &std::path::Path, n: usize) -> usize {
    let file = read_sft(path, false).expect("parse");
    file.rows
        .iter()
        .filter(|r| encode(tok, &r.example, false).expect("encode").ids.len() > n)
        .count()
}
