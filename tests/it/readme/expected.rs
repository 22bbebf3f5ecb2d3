//! Matching what a command printed against the output a document shows for it.
//!
//! The output is a sequence of items: JSON documents (a line starting with `{` or `[`, however
//! many lines the document spans) and text lines. The document's version is the same, where `…`
//! stands for what changes from run to run or is left out:
//!
//! - in a string or a text line, `…` matches any characters (`"…"` any string, `"token=…"` any
//!   string starting with `token=`);
//! - as an object member, `…` allows members not shown; an object without one must have exactly
//!   the members shown;
//! - as an array element, or alone on a line between documents, `…` matches any number of
//!   elements or items.
//!
//! Text lines are compared with runs of whitespace collapsed; JSON by value (key order and layout
//! do not matter, `"2"` is not `2`).

use std::fmt;

use serde_json::Value;

pub const ELLIPSIS: char = '…';

/// A JSON value as a document shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// With `…` as a wildcard.
    String(String),
    Array(Vec<Element>),
    Object {
        members: Vec<(String, Pattern)>,
        /// Written with `…`: other members are allowed.
        open: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// `…`: any number of elements.
    Any,
    Value(Pattern),
}

/// One item of the output a document shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// `…` alone on a line: any number of items.
    Any,
    Json(Pattern),
    /// Whitespace collapsed, with `…` as a wildcard.
    Line(String),
}

/// One item of what a command printed.
#[derive(Debug, Clone, PartialEq)]
pub enum Actual {
    Json(Value),
    Line(String),
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Null => write!(f, "null"),
            Pattern::Bool(b) => write!(f, "{b}"),
            Pattern::Number(n) => write!(f, "{n}"),
            Pattern::String(s) => write!(f, "{}", Value::String(s.clone())),
            Pattern::Array(elements) => {
                let shown: Vec<String> = elements
                    .iter()
                    .map(|e| match e {
                        Element::Any => ELLIPSIS.to_string(),
                        Element::Value(p) => p.to_string(),
                    })
                    .collect();
                write!(f, "[{}]", shown.join(", "))
            }
            Pattern::Object { members, open } => {
                let mut shown: Vec<String> = members
                    .iter()
                    .map(|(k, p)| format!("{}: {p}", Value::String(k.clone())))
                    .collect();
                if *open {
                    shown.push(ELLIPSIS.to_string());
                }
                write!(f, "{{{}}}", shown.join(", "))
            }
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Any => write!(f, "{ELLIPSIS}"),
            Expected::Json(pattern) => write!(f, "{pattern}"),
            Expected::Line(line) => write!(f, "{line}"),
        }
    }
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Json(value) => write!(f, "{value}"),
            Actual::Line(line) => write!(f, "{line}"),
        }
    }
}

/// Parses a document's output block(s).
pub fn parse_expected(text: &str) -> Vec<Expected> {
    let mut items = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return items;
        }
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..line_end].trim();
        if line == ELLIPSIS.to_string() {
            items.push(Expected::Any);
            rest = &rest[line_end..];
            continue;
        }
        if line.starts_with(['{', '[']) {
            let mut parser = PatternParser { text: rest, pos: 0 };
            if let Ok(pattern) = parser.value() {
                let after = &rest[parser.pos..];
                let tail_end = after.find('\n').unwrap_or(after.len());
                if after[..tail_end].trim().is_empty() {
                    items.push(Expected::Json(pattern));
                    rest = after;
                    continue;
                }
            }
        }
        items.push(Expected::Line(collapse(line)));
        rest = &rest[line_end..];
    }
}

/// Splits what a command printed into items. With `partial` (a stream still being written), a
/// JSON document or line cut short at the end is left out.
pub fn parse_actual(text: &str, partial: bool) -> Vec<Actual> {
    let mut items = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return items;
        }
        let line_end = rest.find('\n').unwrap_or(rest.len());
        if rest.starts_with(['{', '[']) {
            let mut documents = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            match documents.next() {
                Some(Ok(value)) => {
                    items.push(Actual::Json(value));
                    rest = &rest[documents.byte_offset()..];
                    continue;
                }
                Some(Err(error)) if partial && error.is_eof() => return items,
                _ => {}
            }
        }
        if partial && line_end == rest.len() && !text.ends_with('\n') {
            return items;
        }
        items.push(Actual::Line(collapse(&rest[..line_end])));
        rest = &rest[line_end..];
    }
}

fn collapse(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` matches `expected` from its first item to its last.
pub fn matches(expected: &[Expected], actual: &[Actual]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((Expected::Any, rest)) => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((item, rest)) => {
            !actual.is_empty() && item_matches(item, &actual[0]) && matches(rest, &actual[1..])
        }
    }
}

/// Whether `expected` matches a run of consecutive items anywhere in `actual`.
pub fn contained_in(expected: &[Expected], actual: &[Actual]) -> bool {
    let mut anywhere = vec![Expected::Any];
    anywhere.extend_from_slice(expected);
    anywhere.push(Expected::Any);
    matches(&anywhere, actual)
}

fn item_matches(expected: &Expected, actual: &Actual) -> bool {
    match (expected, actual) {
        (Expected::Json(pattern), Actual::Json(value)) => value_matches(pattern, value),
        (Expected::Line(pattern), Actual::Line(line)) => glob(pattern, line),
        _ => false,
    }
}

pub fn value_matches(pattern: &Pattern, value: &Value) -> bool {
    match (pattern, value) {
        (Pattern::Null, Value::Null) => true,
        (Pattern::Bool(a), Value::Bool(b)) => a == b,
        (Pattern::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (Pattern::String(a), Value::String(b)) => glob(a, b),
        (Pattern::Array(elements), Value::Array(values)) => elements_match(elements, values),
        (Pattern::Object { members, open }, Value::Object(object)) => {
            members.iter().all(|(key, pattern)| {
                object
                    .get(key)
                    .is_some_and(|value| value_matches(pattern, value))
            }) && (*open
                || object
                    .keys()
                    .all(|key| members.iter().any(|(k, _)| k == key)))
        }
        _ => false,
    }
}

fn elements_match(elements: &[Element], values: &[Value]) -> bool {
    match elements.split_first() {
        None => values.is_empty(),
        Some((Element::Any, rest)) => {
            (0..=values.len()).any(|skip| elements_match(rest, &values[skip..]))
        }
        Some((Element::Value(pattern), rest)) => {
            !values.is_empty()
                && value_matches(pattern, &values[0])
                && elements_match(rest, &values[1..])
        }
    }
}

/// `text` matches `pattern`, where `…` stands for any characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ELLIPSIS).collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Where `actual` first departs from `expected`, as a hint for a failure message.
pub fn first_difference(expected: &[Expected], actual: &[Actual]) -> String {
    let mut position = 0;
    for item in expected {
        if *item == Expected::Any {
            continue;
        }
        match actual[position.min(actual.len())..]
            .iter()
            .position(|a| item_matches(item, a))
        {
            Some(found) => position += found + 1,
            None => {
                let near = actual.get(position).map_or_else(
                    || "the end of the output".to_string(),
                    |a| match (item, a) {
                        (Expected::Json(pattern), Actual::Json(value)) => {
                            why(pattern, value, "$".into())
                                .unwrap_or_else(|| "a match elsewhere".into())
                        }
                        _ => a.to_string(),
                    },
                );
                return format!(
                    "nothing in the output after its item {position} matches this item of the \
                     document's:\n  {item}\nthere the output has: {near}"
                );
            }
        }
    }
    "the output has items the document does not show (add them, or `…`)".into()
}

/// The first place where `value` departs from `pattern`.
fn why(pattern: &Pattern, value: &Value, path: String) -> Option<String> {
    if value_matches(pattern, value) {
        return None;
    }
    match (pattern, value) {
        (Pattern::Object { members, open }, Value::Object(object)) => {
            for (key, pattern) in members {
                match object.get(key) {
                    None => return Some(format!("{path}.{key} is missing")),
                    Some(value) => {
                        if let Some(reason) = why(pattern, value, format!("{path}.{key}")) {
                            return Some(reason);
                        }
                    }
                }
            }
            if !open {
                let extra: Vec<&String> = object
                    .keys()
                    .filter(|key| !members.iter().any(|(k, _)| k == *key))
                    .collect();
                return Some(format!(
                    "{path} has members the document does not show (add them, or `…`): {extra:?}"
                ));
            }
            None
        }
        (Pattern::Array(elements), Value::Array(values))
            if !elements.contains(&Element::Any) && elements.len() == values.len() =>
        {
            elements
                .iter()
                .zip(values)
                .enumerate()
                .find_map(|(i, (e, v))| match e {
                    Element::Value(p) => why(p, v, format!("{path}[{i}]")),
                    Element::Any => None,
                })
        }
        _ => Some(format!("{path} is {value}, the document shows {pattern}")),
    }
}

/// JSON with `…` for members, elements and parts of strings, and trailing commas allowed.
struct PatternParser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> PatternParser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_whitespace();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Pattern, String> {
        self.skip_whitespace();
        let rest = self.rest();
        if self.eat('{') {
            let mut members = Vec::new();
            let mut open = false;
            loop {
                if self.eat('}') {
                    return Ok(Pattern::Object { members, open });
                }
                if self.eat(ELLIPSIS) {
                    open = true;
                } else {
                    let key = self.string()?;
                    if !self.eat(':') {
                        return Err(format!("expected ':' after {key:?}"));
                    }
                    members.push((key, self.value()?));
                }
                self.eat(',');
            }
        } else if self.eat('[') {
            let mut elements = Vec::new();
            loop {
                if self.eat(']') {
                    return Ok(Pattern::Array(elements));
                }
                if self.eat(ELLIPSIS) {
                    elements.push(Element::Any);
                } else {
                    elements.push(Element::Value(self.value()?));
                }
                self.eat(',');
            }
        } else if rest.starts_with('"') {
            Ok(Pattern::String(self.string()?))
        } else {
            for (word, pattern) in [
                ("true", Pattern::Bool(true)),
                ("false", Pattern::Bool(false)),
                ("null", Pattern::Null),
            ] {
                if rest.starts_with(word) {
                    self.pos += word.len();
                    return Ok(pattern);
                }
            }
            let len = rest
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .unwrap_or(rest.len());
            let number = rest[..len]
                .parse()
                .map_err(|_| format!("not JSON at {:?}", &rest[..rest.len().min(20)]))?;
            self.pos += len;
            Ok(Pattern::Number(number))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_whitespace();
        let rest = self.rest();
        if !rest.starts_with('"') {
            return Err(format!(
                "expected a string at {:?}",
                &rest[..rest.len().min(20)]
            ));
        }
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let literal = &rest[..=i];
                    self.pos += i + 1;
                    return serde_json::from_str(literal).map_err(|e| e.to_string());
                }
                _ => {}
            }
        }
        Err("unterminated string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expected: &str, actual: &str) -> bool {
        matches(&parse_expected(expected), &parse_actual(actual, false))
    }

    #[test]
    fn glob_matches_literal_parts_in_order() {
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("…", ""));
        assert!(glob("token=…", "token=xyz"));
        assert!(!glob("token=…", "tok=xyz"));
        assert!(glob("a…c…e", "abcde"));
        assert!(!glob("a…c…e", "abde"));
        assert!(!glob("ab…ba", "aba"));
    }

    #[test]
    fn objects_are_exact_unless_open() {
        let actual = "{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n";
        assert!(check("{\"a\": 1, \"b\": \"x\"}", actual));
        assert!(check("{\"b\": \"x\", …}", actual));
        assert!(!check("{\"b\": \"x\"}", actual));
        assert!(
            !check("{\"a\": \"1\", …}", actual),
            "a string is not a number"
        );
        assert!(!check("{\"a\": 1, \"c\": null, …}", actual));
    }

    #[test]
    fn arrays_take_ellipsis_for_any_elements() {
        assert!(check("[1, …, 4]", "[1, 2, 3, 4]"));
        assert!(check("[1, …]", "[1]"));
        assert!(!check("[1, 2]", "[1, 2, 3]"));
        assert!(!check("[2, …]", "[1, 2]"));
    }

    #[test]
    fn documents_and_lines_match_in_sequence() {
        let actual = "[\"a\",1]\nERROR:\n  Code: NotFound\n{\n  \"x\": true\n}\n";
        assert!(check(
            "[\"a\", 1]\nERROR:\n  Code:   NotFound\n{\"x\": true}",
            actual
        ));
        assert!(check("…\n{\"x\": true}", actual));
        assert!(!check("ERROR:\n  Code: NotFound\n{\"x\": true}", actual));
        assert!(!check(
            "[\"a\",1]\nERROR:\n  Code: Internal\n{\"x\": true}",
            actual
        ));
        assert!(contained_in(
            &parse_expected("Code: NotFound"),
            &parse_actual(actual, false)
        ));
    }

    #[test]
    fn readme_layout_parses() {
        let expected = parse_expected(
            "{\n  \"membership\": {\n    \"userId\": \"22…\",\n    \"roles\": [\"member\"],\n    …\n  },\n  \"cursor\": \"3\"\n}\n…\n",
        );
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[1], Expected::Any);
        let actual = parse_actual(
            "{\n  \"membership\": {\"userId\": \"2222\", \"roles\": [\"member\"], \"etag\": \"1\"},\n  \"cursor\": \"3\"\n}\n",
            false,
        );
        assert!(matches(&expected, &actual));
    }

    #[test]
    fn a_document_still_being_written_is_left_out() {
        let text = "{\"a\": 1}\n{\"progress\": {\n";
        assert_eq!(
            parse_actual(text, true),
            [Actual::Json(serde_json::json!({"a": 1}))]
        );
        assert_eq!(
            parse_actual(text, false).len(),
            2,
            "a finished output keeps what it ends with"
        );
    }
}
