//! The self-contained `index.html`: inline CSS and SVG, no scripts (the CSP forbids them), no
//! external resources. Everything a model or a user wrote goes through [`esc`].
use crate::cost::SamplingCost;
use crate::report::{GroupShift, Report};
use crate::stats::Estimate;
use crate::svg::{color, histograms, scatter, Series};
use cost::{human_co2, human_energy, CostReport};
use lm::TextOrMessages;
use std::fmt::Write;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}\
.answers{display:grid;gap:8px}.answer{border:1px solid #ddd;border-radius:4px;padding:6px}\
.answer h4{margin:0 0 4px}.answer pre{white-space:pre-wrap;word-break:break-word;margin:0;font:13px/1.4 ui-monospace,monospace}\
.prompt{background:#f7f7f7;padding:6px;white-space:pre-wrap;font:13px/1.4 ui-monospace,monospace}\
.meta{color:#666;font-size:12px}details{margin:6px 0}summary{cursor:pointer}";

pub fn render(r: &Report) -> String {
    let mut s = String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    let names: Vec<&str> = r.models.iter().map(|m| m.name.as_str()).collect();
    let _ = write!(
        s,
        "<title>rudder compare: {}</title><style>{STYLE}</style></head><body><h1>rudder compare: {}</h1>",
        esc(&names.join(" vs ")),
        esc(&names.join(" vs "))
    );
    let st = &r.settings;
    let _ = write!(
        s,
        "<p class=\"meta\">Prompts: {} · {} sample(s) per prompt · temperature {} · top-p {} · max {} new tokens · seed {} (sample j uses seed + j for every model) · reward model: {}</p>",
        esc(&r.prompts), st.samples, st.temperature, st.top_p, st.max_new_tokens, st.seed,
        esc(st.reward_model.as_deref().unwrap_or("none"))
    );
    if let Some(made) = &r.reward_made {
        let _ = write!(s, "<p class=\"meta\">Reward model: {}</p>", made_html(made));
    }
    summary_table(&mut s, r);
    cost_section(&mut s, r);
    plots(&mut s, r);
    s.push_str("<h2>Behaviour across rephrasings</h2><p class=\"meta\">Per group: each model's mean reward, completion length (tokens) and refusal-like openings on each rephrasing; the last row is the spread (max − min) across rephrasings.</p>");
    for g in &r.groups {
        group_table(&mut s, r, g);
    }
    answers(&mut s, r);
    s.push_str("</body></html>\n");
    s
}

fn est(e: &Option<Estimate>, digits: usize) -> String {
    match e {
        Some(e) => format!(
            "{:.d$} <span class=\"meta\">[{:.d$}, {:.d$}]</span>",
            e.value,
            e.lo,
            e.hi,
            d = digits
        ),
        None => "–".into(),
    }
}

fn summary_table(s: &mut String, r: &Report) {
    s.push_str("<h2>Summary</h2><table><tr><th>model</th><th>path and how it was made</th><th>samples</th><th>mean reward [95% CI]</th><th>KL to base [95% CI]</th><th>completion tokens [95% CI]</th><th>refusal-like [Wilson 95%]</th><th>ended on EOS</th></tr>");
    for m in &r.models {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td></tr>",
            esc(&m.name), spec_html(m), m.samples, est(&m.reward, 3), est(&m.kl, 2),
            est(&m.completion_tokens, 1), est(&m.refusal, 2), 100.0 * m.finished
        );
    }
    s.push_str("</table><p class=\"meta\">Reward intervals: mean ± 1.96·s/√n. KL of a model to the base (the first model) is estimated on the model's own samples: the mean over samples of Σ over completion tokens of log p_model − log p_base (0 for the base itself). Refusal-like: the first 200 characters contain a refusal or apology phrase (a heuristic).</p>");
}

/// A model's path, and how it was trained when its run folder has a record.
fn spec_html(m: &crate::report::ModelSummary) -> String {
    match &m.made {
        Some(made) => format!(
            "{}<br><span class=\"meta\">{}</span>",
            esc(&m.spec),
            made_html(made)
        ),
        None => esc(&m.spec),
    }
}

/// `stage: steps on rows …; settings` and a link to the run folder.
fn made_html(made: &crate::provenance::Provenance) -> String {
    let url = format!("file://{}", made.folder.display());
    format!(
        "{} (<a href=\"{}\">run folder</a>)",
        esc(&made.line),
        esc(&url)
    )
}

/// What each model's sampling cost; left out when no model has a cost (a report rebuilt from
/// `results.jsonl`).
fn cost_section(s: &mut String, r: &Report) {
    let costs: Vec<&SamplingCost> = r.models.iter().filter_map(|m| m.cost.as_ref()).collect();
    let Some(first) = costs.first() else {
        return;
    };
    s.push_str("<h2 id=\"cost\">Cost of sampling</h2><table><tr><th>model</th><th>completions</th><th>tokens (prompt + new)</th><th>new tokens</th><th>padded positions</th><th>generation FLOPs</th><th>time</th><th>energy</th><th>CO2-eq</th><th>price</th></tr>");
    for c in &costs {
        cost_row(s, &c.model, c.rows, c.generated_tokens, &c.cost);
    }
    if costs.len() > 1 {
        let parts: Vec<CostReport> = costs.iter().map(|c| c.cost.clone()).collect();
        let rows = costs.iter().map(|c| c.rows).sum();
        let new = costs.iter().map(|c| c.generated_tokens).sum();
        cost_row(s, "total", rows, new, &CostReport::total(&parts));
    }
    // One energy source for all models unless they differ (then each model's).
    let src = &first.cost.energy_source;
    let sources = if costs.iter().all(|c| &c.cost.energy_source == src) {
        src.clone()
    } else {
        let each: Vec<String> = costs
            .iter()
            .map(|c| format!("{}: {}", c.model, c.cost.energy_source))
            .collect();
        each.join("; ")
    };
    let d = &first.cost.device;
    let _ = write!(
        s,
        "</table><p class=\"meta\">Generation only (not the log-prob and reward scoring passes), on {} [{}]. FLOPs: {}. Energy: {}. CO2-eq at {} g/kWh.</p>",
        esc(&d.name), esc(&d.device), esc(&first.cost.flop_rule),
        esc(&sources), first.cost.grid_gco2_per_kwh
    );
}

fn cost_row(s: &mut String, name: &str, rows: usize, new: u64, c: &CostReport) {
    let kind = serde_json::to_value(c.energy)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let price = c.cost.map_or("–".into(), |p| format!("{p:.4}"));
    let _ = write!(
        s,
        "<tr><td>{}</td><td class=\"num\">{rows}</td><td class=\"num\">{}</td><td class=\"num\">{new}</td><td class=\"num\">{}</td><td class=\"num\">{:.3e}</td><td class=\"num\">{}</td><td class=\"num\">{} <span class=\"meta\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        esc(name), c.tokens, c.padded_tokens, c.flops, secs(c.wall_s),
        esc(&human_energy(c.energy_kwh)), esc(&kind), esc(&human_co2(c.co2_g)), esc(&price)
    );
}

/// `4.6 ms`, `12.3 s` (sampling a few prompts takes milliseconds on the test fixtures).
fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

fn series<'a>(r: &'a Report, f: impl Fn(&crate::run::Sample) -> Option<f64>) -> Vec<Series<'a>> {
    r.models
        .iter()
        .enumerate()
        .map(|(i, m)| Series {
            name: &m.name,
            color: color(i),
            values: r
                .samples
                .iter()
                .filter(|s| s.model == m.name)
                .filter_map(&f)
                .collect(),
        })
        .collect()
}

fn plots(s: &mut String, r: &Report) {
    s.push_str("<h2>Plots</h2>");
    if r.has_rewards() {
        s.push_str("<h3>Reward distributions</h3>");
        s.push_str(&histograms(&series(r, |x| x.reward), "reward"));
        s.push_str("<h3>Reward vs KL to base</h3>");
        let pairs = series(r, |x| Some(x.kl))
            .into_iter()
            .zip(series(r, |x| x.reward))
            .collect::<Vec<_>>();
        s.push_str(&scatter(&pairs, "KL to base (nats, per sample)", "reward"));
    } else {
        s.push_str("<p class=\"meta\">No reward model given (--reward-model): reward plots are left out.</p>");
    }
    s.push_str("<h3>Completion length</h3>");
    s.push_str(&histograms(
        &series(r, |x| Some(x.completion_tokens as f64)),
        "completion tokens",
    ));
}

fn group_table(s: &mut String, r: &Report, g: &GroupShift) {
    let _ = write!(
        s,
        "<h3>{} <span class=\"meta\">({})</span></h3><table><tr><th>rephrasing</th>",
        esc(&g.group),
        esc(&g.category)
    );
    for m in &r.models {
        let _ = write!(s, "<th>{}</th>", esc(&m.name));
    }
    s.push_str("</tr>");
    for (vi, v) in g.variants.iter().enumerate() {
        let _ = write!(s, "<tr><td>{}</td>", esc(v));
        for row in &g.cells {
            let c = &row[vi];
            let reward = c
                .reward
                .map(|x| format!("reward {x:.3} · "))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<td class=\"num\">{reward}{:.0} tok · refuses {}/{}</td>",
                c.completion_tokens, c.refusals, c.n
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("<tr><th>spread</th>");
    for (rs, fs) in g.reward_shift.iter().zip(&g.refusal_shift) {
        let reward = rs.map(|x| format!("reward {x:.3} · ")).unwrap_or_default();
        let _ = write!(
            s,
            "<td class=\"num\">{reward}refusal {:.0} pts</td>",
            100.0 * fs
        );
    }
    s.push_str("</tr></table>");
}

fn prompt_text(p: &TextOrMessages) -> String {
    match p {
        TextOrMessages::Text(t) => t.clone(),
        TextOrMessages::Messages(ms) => ms
            .iter()
            .map(|m| format!("[{}] {}", m.role, m.content))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn answers(s: &mut String, r: &Report) {
    let cols = r.models.len().max(1);
    s.push_str("<h2 id=\"answers\">Answers side by side</h2>");
    let base = r.models.first().map(|m| m.name.as_str()).unwrap_or("");
    let firsts = r.samples.iter().filter(|x| x.model == base);
    for p in firsts {
        let _ = write!(
            s,
            "<details open><summary><b>{}</b> <span class=\"meta\">{} · {} · sample {}</span></summary><div class=\"prompt\">{}</div><div class=\"answers\" style=\"grid-template-columns:repeat({cols},1fr)\">",
            esc(&p.prompt_id), esc(&p.group), esc(&p.variant), p.sample, esc(&prompt_text(&p.prompt))
        );
        for m in &r.models {
            let Some(a) = r
                .samples
                .iter()
                .find(|x| x.model == m.name && x.prompt_id == p.prompt_id && x.sample == p.sample)
            else {
                continue;
            };
            let reward = a
                .reward
                .map(|x| format!("reward {x:.3} · "))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<div class=\"answer\"><h4>{}</h4><div class=\"meta\">{reward}KL {:.2} · {} tok{}</div><pre>{}</pre></div>",
                esc(&m.name), a.kl, a.completion_tokens, if a.finished { "" } else { " (cut)" }, esc(&a.completion)
            );
        }
        s.push_str("</div></details>");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::esc("<script>a&\"b'</script>"),
            "&lt;script&gt;a&amp;&quot;b&#39;&lt;/script&gt;"
        );
    }
}
