//! Chat templates: Jinja as transformers renders it (trim_blocks, lstrip_blocks, Python string
//! methods, `raise_exception`, `strftime_now`, `tojson`, the `{% generation %}` block).
//! `scripts/check_chat_templates.py` compares the renders with transformers' on real models'
//! templates.
use crate::error::{Error, Result};
use crate::tokenizer::Message;
use minijinja::{context, Environment, ErrorKind, Value};

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// The current local date and time in `fmt`, as transformers' `datetime.now().strftime(fmt)`:
/// Llama 3.x, Granite, gpt-oss and others stamp today's date into the system prompt.
fn strftime_now(fmt: String) -> std::result::Result<String, minijinja::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&fmt)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: bad format {fmt:?}"),
        )
    })?;
    Ok(out)
}

/// Jinja2's `length`: an undefined value has length 0 (templates test `tools|length` without
/// passing `tools`); minijinja's refuses it.
fn length(v: Value) -> std::result::Result<usize, minijinja::Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot calculate length of value of type {}", v.kind()),
        )
    })
}

/// Jinja2's `iterable` test: none is not iterable (`tools is iterable and tools|length > 0`
/// guards templates against `tools=None`), an undefined value is (as an empty sequence).
fn is_iterable(v: Value) -> bool {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined => true,
        ValueKind::None | ValueKind::Bool | ValueKind::Number => false,
        _ => v.try_iter().is_ok(),
    }
}

/// Marks the start and end of a `{% generation %}` block in a render (Private Use characters
/// and a word no template writes), removed again by [`render_generation_spans`].
const GEN_OPEN: &str = "\u{F8F0}gen-open\u{F8F1}";
const GEN_CLOSE: &str = "\u{F8F0}gen-close\u{F8F1}";

/// A render and the byte spans of its `{% generation %}` blocks.
pub type MarkedRender = (String, Vec<(usize, usize)>);

/// Whether the template has transformers' `{% generation %}` blocks.
pub fn has_generation_blocks(template: &str) -> bool {
    let plain = generation_blocks_as_if(template, false);
    plain != template
}

/// transformers' `{% generation %}...{% endgeneration %}` marks assistant text for its
/// assistant-token mask and renders its body unchanged; minijinja has no such tag, so each one
/// becomes an `if true` / `endif` with the same whitespace control. With `mark`, a marker is
/// printed right after each tag, the tag's own right-hand trimming carried over to it (`-}}`
/// for `-%}`; trim_blocks' one newline dropped from the text), so the render is the unmarked
/// one with markers at the block's edges.
fn generation_blocks_as_if(template: &str, mark: bool) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let body_start = 2 + tag[2..].find(|c: char| c != '-' && c != '+').unwrap_or(0);
        let inner = tag[body_start..].trim_start();
        let word_end = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (replacement, marker) = match &inner[..word_end] {
            "generation" => ("if true", GEN_OPEN),
            "endgeneration" => ("endif", GEN_CLOSE),
            _ => {
                out.push_str("{%");
                rest = &rest[at + 2..];
                continue;
            }
        };
        let word_at = at + body_start + (tag[body_start..].len() - inner.len());
        out.push_str(&rest[at..word_at]);
        out.push_str(replacement);
        rest = &rest[word_at + word_end..];
        let Some(close) = rest.find("%}") else {
            continue;
        };
        out.push_str(&rest[..close + 2]);
        let trim_right = rest[..close].ends_with('-');
        let keep_newline = rest[..close].ends_with('+');
        rest = &rest[close + 2..];
        if mark {
            if trim_right {
                out.push_str(&format!("{{{{- \"{marker}\" -}}}}"));
            } else {
                out.push_str(&format!("{{{{ \"{marker}\" }}}}"));
                if !keep_newline {
                    rest = rest
                        .strip_prefix("\r\n")
                        .or_else(|| rest.strip_prefix('\n'))
                        .unwrap_or(rest);
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders like [`render`] and returns, besides the text, the byte spans of its
/// `{% generation %}` blocks (what transformers' `return_assistant_tokens_mask` trains on).
pub fn render_generation_spans(
    template: &str,
    messages: &[Message],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    specials: (&str, &str),
) -> Result<MarkedRender> {
    let marked = generation_blocks_as_if(template, true);
    let text = render_prepared(&marked, messages, tools, add_generation_prompt, specials)?;
    let (mut clean, mut spans, mut open) = (String::with_capacity(text.len()), vec![], None);
    let mut rest = text.as_str();
    while let Some(at) = rest.find('\u{F8F0}') {
        clean.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix(GEN_OPEN) {
            open = Some(clean.len());
            rest = after;
        } else if let Some(after) = rest.strip_prefix(GEN_CLOSE) {
            spans.extend(open.take().map(|start| (start, clean.len())));
            rest = after;
        } else {
            clean.push('\u{F8F0}');
            rest = &rest['\u{F8F0}'.len_utf8()..];
        }
    }
    clean.push_str(rest);
    Ok((clean, spans))
}

/// Renders `template` for `messages`, with the tool schemas `tools` when given.
pub fn render(
    template: &str,
    messages: &[Message],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let plain = generation_blocks_as_if(template, false);
    let specials = (bos_token, eos_token);
    render_prepared(&plain, messages, tools, add_generation_prompt, specials)
}

/// Renders a template whose `{% generation %}` tags are already rewritten.
fn render_prepared(
    template: &str,
    messages: &[Message],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    (bos_token, eos_token): (&str, &str),
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_test("iterable", is_iterable);
    env.add_filter("tojson", crate::chat_json::tojson);
    env.add_filter("string", |v: Value| crate::chat_json::python_str(&v));
    env.add_filter("indent", crate::chat_json::indent);
    env.set_formatter(|out, _state, v| {
        out.write_str(&crate::chat_json::python_str(v))
            .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
    });
    env.add_template_owned("chat", template.to_string())
        .map_err(|e| Error::Template(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::Template(e.to_string()))?;
    tmpl.render(context! {
        messages => messages,
        // transformers passes these even when unused: `tools is defined` holds, `tools` is none.
        tools => tools.map(Value::from_serialize).unwrap_or(Value::from(())),
        documents => Value::from(()),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| Error::Template(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    /// Jinja2 behaviours minijinja lacks, against transformers 5.24:
    /// ```python
    /// from transformers.utils.chat_template_utils import render_jinja_template
    /// msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    /// render_jinja_template([msgs], chat_template=T, add_generation_prompt=False)[0][0]
    /// # '[no tools][0]<user>hi<assistant>yo</s>'
    /// ```
    /// `none is iterable` is false, `tools` is defined and none, an undefined value has length
    /// 0, and `{% generation %}` renders its body with the tags' whitespace control.
    #[test]
    fn jinja2_semantics_match_transformers() {
        let t = "{%- if tools is iterable and tools | length > 0 %}TOOLS{% endif %}\
                 {%- if tools is defined and tools is none %}[no tools]{% endif %}\
                 [{{ undefined_thing | length }}]\
                 {%- for m in messages %}\n<{{ m.role }}>\n\
                 {%- if m.role == 'assistant' %}\n  {%- generation -%}\n  {{ m.content }}</s>\n  \
                 {%- endgeneration %}\n{%- else %}{{ m.content }}{% endif %}\n{% endfor %}";
        let msgs = [msg("user", "hi"), msg("assistant", "yo")];
        let out = render(t, &msgs, None, false, "", "").unwrap();
        assert_eq!(out, "[no tools][0]<user>hi<assistant>yo</s>");
    }

    /// Printing and JSON as Python does them, against transformers 5.24:
    /// ```python
    /// T = ("{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ tools[0] }}|{{ flag }}|"
    ///      "{{ nothing }}|{{ 'a\\nb\\n' | indent(2, first=true) }}|"
    ///      "{{ messages[0].tool_calls[0].function.arguments | tojson }}")
    /// tools = [{"name": "f", "description": "Say \"hi\" in 日本語",
    ///           "parameters": {"z": 1, "a": [1.5, True, None]}}]
    /// msgs = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function",
    ///          "function": {"name": "f", "arguments": {"city": "Zürich", "n": 2}}}]}]
    /// render_jinja_template([msgs], chat_template=T, tools=tools, add_generation_prompt=False,
    ///                       flag=True, nothing=None)[0][0]
    /// ```
    /// (`flag`/`nothing` are given here as literals; keys keep their order, `z` before `a`.)
    #[test]
    fn tojson_printing_and_indent_match_python() {
        let t = "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ tools[0] }}|\
                 {{ true }}|{{ none }}|{{ 'a\nb\n' | indent(2, first=true) }}|\
                 {{ messages[0].tool_calls[0].function.arguments | tojson }}";
        let tools = serde_json::json!([{"name": "f", "description": "Say \"hi\" in 日本語",
            "parameters": {"z": 1, "a": [1.5, true, null]}}]);
        let mut m = msg("assistant", "");
        m.extra.insert(
            "tool_calls".into(),
            serde_json::json!([{"type": "function",
                "function": {"name": "f", "arguments": {"city": "Zürich", "n": 2}}}]),
        );
        let out = render(t, &[m], Some(&tools), false, "", "").unwrap();
        let want = "[{\"name\": \"f\", \"description\": \"Say \\\"hi\\\" in 日本語\", \"parameters\": \
                    {\"z\": 1, \"a\": [1.5, true, null]}}]|{\n  \"name\": \"f\",\n  \"description\": \
                    \"Say \\\"hi\\\" in 日本語\",\n  \"parameters\": {\n    \"z\": 1,\n    \"a\": [\n      \
                    1.5,\n      true,\n      null\n    ]\n  }\n}|{'name': 'f', 'description': 'Say \"hi\" in \
                    日本語', 'parameters': {'z': 1, 'a': [1.5, True, None]}}|True|None|  a\n  b\n|\
                    {\"city\": \"Zürich\", \"n\": 2}";
        assert_eq!(out, want);
    }

    #[test]
    fn generation_tags_become_ifs_with_their_whitespace_control() {
        let t =
            "a{%- generation -%} b {%+ endgeneration %}{% if x %}{% endif %}{# {% generation %} #}";
        assert_eq!(
            generation_blocks_as_if(t, false),
            "a{%- if true -%} b {%+ endif %}{% if x %}{% endif %}{# {% if true %} #}"
        );
    }

    /// Marking `{% generation %}` blocks changes nothing else in the render, whatever the tags'
    /// whitespace control, and the spans cover exactly the blocks' output.
    #[test]
    fn generation_spans_leave_the_render_unchanged() {
        let bodies = [
            "{% generation %}\n  A{{ x }}\n{% endgeneration %}\n  B",
            "{%- generation -%}\n  A{{ x }}\n  {%- endgeneration -%}\n  B",
            "{%+ generation +%}\n  A{{ x }}\n  {%+ endgeneration +%}\n  B",
            "  {% generation %}\nA{{ x }}\n  {% endgeneration %}\nB",
        ];
        for body in bodies {
            let t = format!("x{{% set x = 1 %}}[{body}]{{% for m in messages %}}{{{{ m.content }}}}{{% endfor %}}");
            let msgs = [msg("user", "hi")];
            let plain = render(&t, &msgs, None, false, "", "").unwrap();
            let (text, spans) = render_generation_spans(&t, &msgs, None, false, ("", "")).unwrap();
            assert_eq!(text, plain, "{body}");
            assert_eq!(spans.len(), 1, "{body}");
            let (a, b) = spans[0];
            assert!(
                text[a..b].contains("A1") && !text[a..b].contains('B'),
                "{body}: {:?}",
                &text[a..b]
            );
        }
    }

    /// `strftime_now` is today's local date in the template's format, as transformers renders
    /// it (Llama 3.x puts "Today Date: 29 Nov 2026" into its system prompt).
    #[test]
    fn strftime_now_is_today_in_the_given_format() {
        let t = "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}";
        let before = chrono::Local::now().date_naive();
        let out = render(t, &[], None, false, "", "").unwrap();
        let after = chrono::Local::now().date_naive();
        let (iso, human) = out.split_once('|').unwrap();
        let day = chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d").unwrap();
        assert!(day == before || day == after, "{out}");
        assert_eq!(human, day.format("%d %b %Y").to_string());
    }
}
