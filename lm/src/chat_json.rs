//! `tojson` as transformers defines it for chat templates: Python's `json.dumps(x,
//! ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, so tool schemas render
//! byte for byte as in Python (`{"a": 1, "b": [1, 2]}`, keys in their given order).
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// The `tojson` filter, with json.dumps' keyword arguments.
pub fn tojson(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(i) if i.is_none() => None,
        Some(i) if i.kind() == ValueKind::Number => Some(" ".repeat(usize::try_from(i)?)),
        Some(i) => Some(i.as_str().unwrap_or_default().to_string()),
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => return Err(bad("separators must be a pair of strings")),
        // Python's defaults: no space before a newline when indenting.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style = Style {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_value(&v, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

fn bad(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson: {msg}"))
}

fn write_value(v: &Value, s: &Style, depth: usize, out: &mut String) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(v)?),
        ValueKind::String | ValueKind::Bytes => string(v.as_str().unwrap_or_default(), s, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            let mut parts = Vec::with_capacity(items.len());
            for item in &items {
                let mut p = String::new();
                write_value(item, s, depth + 1, &mut p)?;
                parts.push(p);
            }
            container('[', ']', parts, s, depth, out);
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if s.sort_keys {
                keys.sort();
            }
            let mut parts = Vec::with_capacity(keys.len());
            for k in &keys {
                let mut p = String::new();
                string(&k.to_string(), s, &mut p);
                p.push_str(&s.key_sep);
                write_value(&v.get_item(k)?, s, depth + 1, &mut p)?;
                parts.push(p);
            }
            container('{', '}', parts, s, depth, out);
        }
        _ => return Err(bad(&format!("cannot serialize a {}", v.kind()))),
    }
    Ok(())
}

fn container(
    open: char,
    close: char,
    parts: Vec<String>,
    s: &Style,
    depth: usize,
    out: &mut String,
) {
    out.push(open);
    if !parts.is_empty() {
        match &s.indent {
            Some(ind) => {
                let inner = format!("\n{}", ind.repeat(depth + 1));
                out.push_str(&inner);
                out.push_str(&parts.join(&format!("{}{inner}", s.item_sep)));
                out.push('\n');
                out.push_str(&ind.repeat(depth));
            }
            None => out.push_str(&parts.join(&s.item_sep)),
        }
    }
    out.push(close);
}

/// Python's float repr keeps a `.0` on whole floats (`1.0`), integers stay integers.
fn number(v: &Value) -> Result<String, Error> {
    if v.is_integer() {
        return Ok(v.to_string());
    }
    let f = f64::try_from(v.clone())?;
    if !f.is_finite() {
        return Ok(if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into());
    }
    Ok(serde_json::to_string(&f).unwrap_or_else(|_| f.to_string()))
}

/// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as `\u00XX`; non-ASCII as is, or as `\uXXXX` (surrogate pairs) with ensure_ascii.
fn string(text: &str, s: &Style, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (s.ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value printed by `{{ }}` or `|string` as Jinja2 prints it: Python's `str()`. Lists and
/// dicts appear as their Python repr (`{'type': 'function'}`), booleans as `True`/`False`,
/// none as `None`, undefined as nothing.
pub fn python_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => python_repr(v),
    }
}

fn python_repr(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number => number(v).unwrap_or_else(|_| v.to_string()),
        ValueKind::String => repr_str(v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| python_repr(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = v
                .try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let val = v.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&val))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`.
fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Jinja2's `indent(width=4, first=False, blank=False)`: every line after the first gets the
/// indent (blank lines too with `blank`), a trailing newline is kept (minijinja drops it).
pub fn indent(
    s: String,
    args: minijinja::value::Rest<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let arg = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        Ok(kwargs
            .get::<Option<Value>>(name)?
            .or_else(|| args.get(i).cloned()))
    };
    let pad = match arg(0, "width")? {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => " ".repeat(usize::try_from(w)?),
    };
    let first = arg(1, "first")?.is_some_and(|v| v.is_true());
    let blank = arg(2, "blank")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    // Python: `s += "\n"`, then `splitlines()` (which drops the one empty line that adds).
    let text = s + "\n";
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    lines.pop();
    let mut out = lines.first().copied().unwrap_or_default().to_string();
    for line in lines.iter().skip(1) {
        out.push('\n');
        if blank || !line.is_empty() {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    if first {
        out.insert_str(0, &pad);
    }
    Ok(out)
}
