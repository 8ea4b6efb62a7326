//! Minimal JSON output for `--json`: objects of numbers, strings, booleans and nulls, written
//! by hand so the CLI needs no serialization crate.
//!
//! Invariants: every string is escaped per RFC 8259 (quote, backslash, control characters), so
//! the output always parses; byte values that are not UTF-8 are shown with replacement
//! characters (the text form does the same).

use std::fmt::Write;

/// One JSON value.
#[derive(Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
    Object(Vec<(&'static str, Value)>),
}

impl Value {
    /// A string from bytes (lossy UTF-8).
    pub(crate) fn bytes(bytes: &[u8]) -> Value {
        Value::String(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The value as compact JSON text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Value::Number(value) => {
                let _ = write!(out, "{value}");
            }
            Value::String(value) => write_string(out, value),
            Value::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if 0 < i {
                        out.push(',');
                    }
                    write_string(out, name);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_json() {
        let value = Value::Object(vec![
            ("index", Value::Number(3)),
            ("value", Value::String("a\"b\\c\n\u{1}".into())),
            ("found", Value::Bool(false)),
            ("leader", Value::Null),
        ]);
        let expected = r#"{"index":3,"value":"a\"b\\c\n\u0001","found":false,"leader":null}"#;
        assert_eq!(value.render(), expected);
    }
}
