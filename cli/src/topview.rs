//! `rudder generate --show-top K`: the next-token view. After every generated token it shows
//! the K most likely next tokens with their probabilities once the sampling settings are applied,
//! marks the sampled one, and, with several `--temperature` values, shows the distribution under
//! each of them side by side (the sequence itself is sampled with the first).
use anyhow::Result;
use lm::generate::{generate_observed, top_tokens, SamplingConfig, Step};
use lm::{Pretrained, TextOrMessages};
use serde_json::{json, Value};

/// One temperature's view of a step.
struct Column {
    temperature: f32,
    /// `(token, probability)`, most likely first.
    top: Vec<(u32, f32)>,
    /// Probability of the sampled token under this temperature (0 when filtered out).
    sampled: f32,
}

/// One step of one row: the chosen token and, per temperature, the top-K list.
struct View {
    step: usize,
    token: u32,
    columns: Vec<Column>,
}

/// A token as text; a token that is only part of a UTF-8 character (it decodes to U+FFFD) is
/// shown as its vocabulary entry instead (byte-level BPE: `Ã`, `<0xE2>`).
fn piece(p: &Pretrained, id: u32) -> String {
    let text = p.tokenizer.decode(&[id], false).unwrap_or_default();
    if text.contains('\u{FFFD}') {
        if let Some(raw) = p.tokenizer.inner.id_to_token(id) {
            return raw;
        }
    }
    text
}

fn views_for(step: &Step<'_>, cfg: &SamplingConfig, temps: &[f32], k: usize) -> View {
    let columns = temps
        .iter()
        .map(|&t| {
            let c = SamplingConfig {
                temperature: t,
                ..cfg.clone()
            };
            // The full filtered distribution, to report the sampled token's probability even
            // when it is not among the top K.
            let all = top_tokens(step.logits, step.seen, &c, usize::MAX);
            let p_tok = all.iter().find(|x| x.0 == step.token).map_or(0.0, |x| x.1);
            Column {
                temperature: t,
                top: all.into_iter().take(k).collect(),
                sampled: p_tok,
            }
        })
        .collect();
    View {
        step: step.step,
        token: step.token,
        columns,
    }
}

/// Generates each prompt alone and prints its steps (table or JSON lines) to stdout.
pub fn run(
    p: &Pretrained,
    rows: &[(Value, TextOrMessages)],
    cfg: &SamplingConfig,
    temps: &[f32],
    k: usize,
    as_json: bool,
) -> Result<()> {
    for (row, (_, prompt)) in rows.iter().enumerate() {
        let ids = p.tokenizer.encode_prompt(prompt)?;
        let mut views = vec![];
        let mut observer = |s: Step<'_>| views.push(views_for(&s, cfg, temps, k));
        let gens = generate_observed(
            &p.model,
            &p.tokenizer,
            std::slice::from_ref(&ids),
            cfg,
            &mut observer,
        )?;
        let completion = &gens[0].text;
        if as_json {
            for v in &views {
                println!("{}", step_json(p, row, v));
            }
            println!("{}", json!({ "row": row, "completion": completion }));
        } else {
            print_table(p, row, &views, k);
            println!("completion: {completion:?}\n");
        }
    }
    Ok(())
}

fn step_json(p: &Pretrained, row: usize, v: &View) -> Value {
    let cols: Vec<Value> = v
        .columns
        .iter()
        .map(|c| {
            let top: Vec<Value> = c
                .top
                .iter()
                .map(|&(id, prob)| json!({ "id": id, "text": piece(p, id), "prob": prob }))
                .collect();
            json!({ "temperature": c.temperature, "top": top, "sampled_prob": c.sampled })
        })
        .collect();
    json!({
        "row": row,
        "step": v.step,
        "token": v.token,
        "text": piece(p, v.token),
        "distributions": cols,
    })
}

fn print_table(p: &Pretrained, row: usize, views: &[View], k: usize) {
    const W: usize = 28;
    for v in views {
        println!(
            "[row {row}] step {:>3}  sampled {:?} (id {})",
            v.step + 1,
            piece(p, v.token),
            v.token
        );
        let head: Vec<String> = v
            .columns
            .iter()
            .map(|c| {
                let head = format!("T={} (sampled p={:.4})", c.temperature, c.sampled);
                format!("{head:<W$}")
            })
            .collect();
        println!("    {}", head.join(" | "));
        for r in 0..k {
            let cells: Vec<String> = v
                .columns
                .iter()
                .map(|c| match c.top.get(r) {
                    Some(&(id, prob)) => {
                        let mark = if id == v.token { '*' } else { ' ' };
                        let text = format!("{mark} {prob:.4} {:?}", piece(p, id));
                        format!("{text:<W$}")
                    }
                    None => format!("{:<W$}", ""),
                })
                .collect();
            println!("    {}", cells.join(" | "));
        }
    }
}
