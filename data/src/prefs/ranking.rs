//! Ranking rows (the labeling app's `rudder label export --raw` of a ranking project):
//! `{"ranking_id", "prompt", "responses": [..], "tiers": [[i, ..], ..], "unacceptable": [..]}`,
//! `tiers` best first holding positions into `responses`, a tier of two or more being a tie.
//! Each row becomes one pair per (better, worse) response in distinct tiers, all with
//! `group` = the ranking id (or `line N` without one), so a trainer can batch a ranking's pairs
//! together. Unacceptable responses are already in the last tiers; the flag adds no pairs.
use super::{bad, Object, PrefExample};
use lm::{Message, Result, TextOrMessages};
use serde_json::Value;
use std::path::Path;

/// True when the row is a ranking (it has `tiers`).
pub fn is_ranking(obj: &Object) -> bool {
    obj.contains_key("tiers")
}

/// Expands one ranking row into its pairs. Pairs of identical texts carry no preference and
/// are left out.
pub fn ranking_examples(path: &Path, line: usize, obj: &Object) -> Result<Vec<PrefExample>> {
    let prompt: TextOrMessages = serde_json::from_value(
        obj.get("prompt")
            .cloned()
            .ok_or_else(|| bad(path, line, "prompt", "missing"))?,
    )
    .map_err(|_| {
        bad(
            path,
            line,
            "prompt",
            "expected a string or a list of messages",
        )
    })?;
    let responses: Vec<String> = obj
        .get("responses")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| bad(path, line, "responses", "expected a list of strings"))?;
    let tiers: Vec<Vec<usize>> = obj
        .get("tiers")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| bad(path, line, "tiers", "expected a list of lists of positions"))?;
    check_tiers(&tiers, responses.len()).map_err(|e| bad(path, line, "tiers", e))?;
    let group = group_of(path, line, obj)?;
    let side = |i: usize| match &prompt {
        // As the expanded export writes them: TRL's conversational format.
        TextOrMessages::Messages(_) => {
            TextOrMessages::Messages(vec![Message::new("assistant", responses[i].clone())])
        }
        TextOrMessages::Text(_) => TextOrMessages::Text(responses[i].clone()),
    };
    let mut out = vec![];
    for (t, better) in tiers.iter().enumerate() {
        for worse in &tiers[t + 1..] {
            for &c in better {
                for &r in worse.iter().filter(|&&r| responses[r] != responses[c]) {
                    out.push(PrefExample {
                        line,
                        prompt: Some(prompt.clone()),
                        chosen: side(c),
                        rejected: side(r),
                        margin: None,
                        votes: None,
                        agreement: None,
                        tie: false,
                        group: Some(group.clone()),
                        tools: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The ranking id as the pairs' group; `line N` when the row has none.
fn group_of(path: &Path, line: usize, obj: &Object) -> Result<String> {
    match obj.get("ranking_id") {
        None | Some(Value::Null) => Ok(format!("line {line}")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(bad(
            path,
            line,
            "ranking_id",
            format!("expected a string or number, got {v}"),
        )),
    }
}

/// Every position of `0..n` exactly once, no empty tier.
fn check_tiers(tiers: &[Vec<usize>], n: usize) -> std::result::Result<(), String> {
    let mut seen = vec![false; n];
    for &p in tiers.iter().flatten() {
        match seen.get_mut(p) {
            None => return Err(format!("position {p} is past the {n} responses")),
            Some(true) => return Err(format!("position {p} ranked twice")),
            Some(s) => *s = true,
        }
    }
    if let Some(p) = seen.iter().position(|s| !s) {
        return Err(format!("response {p} is not ranked"));
    }
    if tiers.iter().any(Vec::is_empty) {
        return Err("empty tier".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::prefs::{read_prefs, ReadOptions};
    use lm::TextOrMessages;

    fn read(text: &str) -> lm::Result<crate::prefs::PrefData> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("rankings.jsonl");
        std::fs::write(&p, text).expect("write");
        read_prefs(&p, &ReadOptions::default())
    }

    fn texts(d: &crate::prefs::PrefData) -> Vec<(String, String, Option<String>)> {
        let s = |t: &TextOrMessages| match t {
            TextOrMessages::Text(s) => s.clone(),
            TextOrMessages::Messages(m) => format!("msg:{}", m[0].content),
        };
        d.examples
            .iter()
            .map(|e| (s(&e.chosen), s(&e.rejected), e.group.clone()))
            .collect()
    }

    #[test]
    fn raw_ranking_rows_expand_to_their_pairs() {
        // b > (a = d) > c with c unacceptable: 5 pairs; then a message prompt, strict 2-way.
        let text = concat!(
            r#"{"ranking_id": 7, "prompt": "p", "responses": ["a", "b", "c", "d"], "tiers": [[1], [0, 3], [2]], "unacceptable": [2]}"#,
            "\n",
            r#"{"prompt": [{"role": "user", "content": "q"}], "responses": ["x", "y", "z"], "tiers": [[2], [0, 1]]}"#,
            "\n",
            r#"{"prompt": "2+2?", "chosen": "4", "rejected": "5", "rank_gap": 1, "group": 9, "labeler": "ann"}"#,
            "\n"
        );
        let d = read(text).expect("reads");
        let g = |s: &str| Some(s.to_string());
        let want = vec![
            ("b".into(), "a".into(), g("7")),
            ("b".into(), "d".into(), g("7")),
            ("b".into(), "c".into(), g("7")),
            ("a".into(), "c".into(), g("7")),
            ("d".into(), "c".into(), g("7")),
            ("msg:z".into(), "msg:x".into(), g("line 2")),
            ("msg:z".into(), "msg:y".into(), g("line 2")),
            ("4".into(), "5".into(), g("9")),
        ];
        assert_eq!(texts(&d), want);
        assert!(d.examples[..5]
            .iter()
            .all(|e| e.line == 1 && e.prompt == Some(TextOrMessages::Text("p".into()))));
    }

    #[test]
    fn bad_ranking_rows_name_line_and_field() {
        let cases = [
            (
                r#"{"prompt": "p", "responses": ["a", "b"], "tiers": [[0], [0, 1]]}"#,
                "ranked twice",
            ),
            (
                r#"{"prompt": "p", "responses": ["a", "b"], "tiers": [[0]]}"#,
                "not ranked",
            ),
            (
                r#"{"prompt": "p", "responses": ["a", "b"], "tiers": [[0], [2]]}"#,
                "past the 2",
            ),
            (
                r#"{"prompt": "p", "responses": ["a", "b"], "tiers": "01"}"#,
                "lists of positions",
            ),
            (
                r#"{"prompt": "p", "responses": [1, 2], "tiers": [[0], [1]]}"#,
                "`responses`",
            ),
            (
                r#"{"responses": ["a", "b"], "tiers": [[0], [1]]}"#,
                "`prompt`: missing",
            ),
        ];
        for (row, want) in cases {
            let err = read(&format!("\n{row}\n")).expect_err(row).to_string();
            assert!(
                err.contains("rankings.jsonl:2") && err.contains(want),
                "{row}: {err}"
            );
        }
    }
}
