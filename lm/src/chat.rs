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

/// transformers' `{% generation %}...{% endgeneration %}` marks assistant text for its
/// assistant-token mask and renders its body unchanged; minijinja has no such tag, so each one
/// becomes an `if true` / `endif` with the same whitespace control.
fn generation_blocks_as_if(template: &str) -> String {
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
        let replacement = match &inner[..word_end] {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let word_at = at + body_start + (tag[body_start..].len() - inner.len());
                out.push_str(&rest[at..word_at]);
                out.push_str(r);
                rest = &rest[word_at + word_end..];
            }
            None => {
                out.push_str("{%");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders `template` for `messages`.
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
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
    let template = generation_blocks_as_if(template);
    env.add_template_owned("chat", template)
        .map_err(|e| Error::Template(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::Template(e.to_string()))?;
    tmpl.render(context! {
        messages => messages,
        // transformers passes these even when unused: `tools is defined` holds, `tools` is none.
        tools => Value::from(()),
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
        Message {
            role: role.into(),
            content: content.into(),
        }
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
        let out = render(t, &msgs, false, "", "").unwrap();
        assert_eq!(out, "[no tools][0]<user>hi<assistant>yo</s>");
    }

    #[test]
    fn generation_tags_become_ifs_with_their_whitespace_control() {
        let t =
            "a{%- generation -%} b {%+ endgeneration %}{% if x %}{% endif %}{# {% generation %} #}";
        assert_eq!(
            generation_blocks_as_if(t),
            "a{%- if true -%} b {%+ endif %}{% if x %}{% endif %}{# {% if true %} #}"
        );
    }

    /// `strftime_now` is today's local date in the template's format, as transformers renders
    /// it (Llama 3.x puts "Today Date: 29 Nov 2026" into its system prompt).
    #[test]
    fn strftime_now_is_today_in_the_given_format() {
        let t = "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}";
        let before = chrono::Local::now().date_naive();
        let out = render(t, &[], false, "", "").unwrap();
        let after = chrono::Local::now().date_naive();
        let (iso, human) = out.split_once('|').unwrap();
        let day = chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d").unwrap();
        assert!(day == before || day == after, "{out}");
        assert_eq!(human, day.format("%d %b %Y").to_string());
    }
}
