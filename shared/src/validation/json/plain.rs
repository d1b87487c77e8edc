//! A scanner for plain JSON, the form nearly every `onCompletion` takes: strings without escapes
//! or control characters, integers of at most 18 digits, nesting at most 64 deep, no `$`-keys.
//!
//! Within that subset JSON has one reading, so the nodes built here are the ones serde_json hands
//! the builder for the same text (the tests compare both). Anything else — an escape, a fraction or
//! exponent, a syntax error, trailing text — returns `None` and the caller parses with serde_json,
//! which then decides (and words any error) exactly as `serde_json::from_str::<Value>` would. This
//! skips serde's per-token indirection, which costs more than the rules themselves.

use std::borrow::Cow;

use super::Node;
use crate::json_scan::string_stop;

/// Deepest nesting scanned here (serde_json's own limit, 128, is left to serde_json).
const MAX_DEPTH: usize = 64;
/// Longest integer scanned here: 18 digits always fit an `i64`/`u64`.
const MAX_DIGITS: usize = 18;

/// The nodes of `text`, or `None` when `text` is outside the plain subset.
pub(super) fn parse(text: &str) -> Option<Vec<Node<'_>>> {
    let (nodes, end) = parse_prefix(text, text.len())?;
    text.get(end..)?
        .bytes()
        .all(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
        .then_some(nodes)
}

/// The nodes of the value at the start of `text` (after whitespace) and the offset just after
/// it, or `None` when that value is outside the plain subset. `size_hint`: the value's likely
/// length in bytes, for the node list's capacity.
///
/// One loop with an explicit stack of open containers rather than a recursive descent: a value
/// costs a few branches, not a call.
pub(super) fn parse_prefix(text: &str, size_hint: usize) -> Option<(Vec<Node<'_>>, usize)> {
    let bytes = text.as_bytes();
    // About one node per 10 bytes of typical JSON: usually no regrowth.
    let mut nodes = Vec::with_capacity(size_hint / 8 + 4);
    // Each open container, outermost first (`depth` of them): its node index, members so far.
    let mut open = [(0usize, 0usize); MAX_DEPTH];
    let mut depth = 0;
    let mut pos = 0;
    'value: loop {
        pos = skip_whitespace(bytes, pos);
        match *bytes.get(pos)? {
            b'"' => {
                let (s, end) = string(text, pos)?;
                nodes.push(Node::String(Cow::Borrowed(s)));
                pos = end;
            }
            bracket @ (b'{' | b'[') => {
                let at = nodes.len();
                *open.get_mut(depth)? = (at, 0);
                depth += 1;
                let object = bracket == b'{';
                nodes.push(if object {
                    Node::Object { len: 0, end: 0 }
                } else {
                    Node::Array { len: 0, end: 0 }
                });
                pos = skip_whitespace(bytes, pos + 1);
                if bytes.get(pos) != Some(&if object { b'}' } else { b']' }) {
                    if object {
                        pos = key(text, pos, &mut nodes)?;
                    }
                    continue 'value;
                }
                // Empty: closed here, with no members.
                pos += 1;
                depth -= 1;
                super::close(&mut nodes, at, 0);
            }
            b't' => pos = literal(bytes, pos, b"true", Node::Bool, &mut nodes)?,
            b'f' => pos = literal(bytes, pos, b"false", Node::Bool, &mut nodes)?,
            b'n' => pos = literal(bytes, pos, b"null", Node::Null, &mut nodes)?,
            b'-' | b'0'..=b'9' => {
                pos = integer(bytes, pos)?;
                nodes.push(Node::Number);
            }
            _ => return None,
        }
        // A value ended: it was the last member of zero or more containers.
        loop {
            let Some((at, count)) = depth.checked_sub(1).and_then(|top| open.get_mut(top)) else {
                return Some((nodes, pos));
            };
            *count += 1;
            let (at, count) = (*at, *count);
            let object = matches!(nodes.get(at), Some(Node::Object { .. }));
            pos = skip_whitespace(bytes, pos);
            match *bytes.get(pos)? {
                b',' => {
                    pos += 1;
                    if object {
                        pos = key(text, skip_whitespace(bytes, pos), &mut nodes)?;
                    }
                    continue 'value;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            pos += 1;
            depth -= 1;
            super::close(&mut nodes, at, count);
        }
    }
}

/// JSON whitespace from `pos` on, as serde_json reads it; the offset after it.
fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        pos += 1;
    }
    pos
}

/// A member's key at `pos` (its opening quote) and the `:` after it; the offset after the `:`.
fn key<'a>(text: &'a str, pos: usize, nodes: &mut Vec<Node<'a>>) -> Option<usize> {
    if text.as_bytes().get(pos) != Some(&b'"') {
        return None;
    }
    let (key, end) = string(text, pos)?;
    // serde_json's private marker keys change what `Value` makes of an object.
    if key.starts_with('$') {
        return None;
    }
    nodes.push(Node::String(Cow::Borrowed(key)));
    let colon = skip_whitespace(text.as_bytes(), end);
    (text.as_bytes().get(colon) == Some(&b':')).then_some(colon + 1)
}

/// The string whose opening quote is at `pos`, with no escape and no control character, and the
/// offset after its closing quote.
fn string(text: &str, pos: usize) -> Option<(&str, usize)> {
    let start = pos + 1;
    let end = string_stop(text.as_bytes(), start)?;
    if text.as_bytes().get(end) != Some(&b'"') {
        return None;
    }
    // Both ends sit next to an ASCII quote, so on character boundaries.
    Some((text.get(start..end)?, end + 1))
}

fn literal<'a>(
    bytes: &[u8],
    pos: usize,
    word: &[u8],
    node: Node<'a>,
    nodes: &mut Vec<Node<'a>>,
) -> Option<usize> {
    let end = pos + word.len();
    if bytes.get(pos..end)? != word {
        return None;
    }
    nodes.push(node);
    Some(end)
}

/// `-?(0|[1-9][0-9]*)` of at most `MAX_DIGITS` digits at `pos`; the offset after it. A fraction,
/// an exponent or a second leading zero right after it is refused here: as a prefix
/// (`read_prefix`) nothing after the value would catch `1e5` read as `1`.
fn integer(bytes: &[u8], mut pos: usize) -> Option<usize> {
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    let start = pos;
    match *bytes.get(pos)? {
        b'0' => pos += 1,
        b'1'..=b'9' => {
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
        }
        _ => return None,
    }
    if pos - start > MAX_DIGITS || matches!(bytes.get(pos), Some(b'.' | b'e' | b'E' | b'0'..=b'9'))
    {
        return None;
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::{SerdeFailure, serde_nodes};
    use super::*;
    use crate::fixtures::Lcg;

    const STRINGS: &[&str] = &[
        r#""""#,
        r#""name""#,
        r#""hooks""#,
        r#""https://hooks.example.com/x?y=1#z""#,
        r#""\u0068ttps""#,
        r#""a\"b""#,
        r#""a\\b""#,
        r#""\n""#,
        "\"tab\there\"",
        "\"nul\u{0}\"",
        r#""ünïcødé 名前 🎉""#,
        r#""$serde_json::private::RawValue""#,
        r#""$dollar""#,
        r#""eight888""#,
        r#""sixteen-sixteen!""#,
        r#""\ud83c\udf89""#,
        r#""\ud800""#,
        "\"unterminated",
    ];
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "7",
        "-12",
        "123456789012345678",
        "-123456789012345678",
        "1234567890123456789",
        "99999999999999999999999",
        "1.5",
        "-0.0",
        "1e3",
        "2E-2",
        "1e400",
        "01",
        "-",
        "+1",
        ".5",
        "1.",
    ];
    const SPACE: &[&str] = &["", "", " ", "\n", "\t", "\r\n  ", "\u{a0}", "\u{b}"];

    fn value(rng: &mut Lcg, depth: usize, out: &mut String) {
        let space = |rng: &mut Lcg, out: &mut String| out.push_str(rng.pick(SPACE));
        match rng.below(if depth > 4 { 4 } else { 7 }) {
            0 => out.push_str(rng.pick(STRINGS)),
            1 => out.push_str(rng.pick(NUMBERS)),
            2 => out.push_str(rng.pick(&["true", "false", "null", "nul", "True", "nulll"])),
            3 => out.push_str(rng.pick(&["[]", "{}", "[ ]", "{ }", "[,]", "{,}"])),
            4 | 5 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(rng.pick(&[",", ",", ",", ", ", ",,", " "]));
                    }
                    space(rng, out);
                    value(rng, depth + 1, out);
                    space(rng, out);
                }
                out.push_str(rng.pick(&["]", "]", "]", ",]", ""]));
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(rng.pick(&[",", ",", ",", ", ", ",,", " "]));
                    }
                    space(rng, out);
                    out.push_str(rng.pick(STRINGS));
                    space(rng, out);
                    out.push_str(rng.pick(&[":", ":", ":", " : ", "", "="]));
                    space(rng, out);
                    value(rng, depth + 1, out);
                }
                out.push_str(rng.pick(&["}", "}", "}", ",}", ""]));
            }
        }
    }

    /// Wherever the scanner builds a tree, serde_json builds the same one; wherever serde_json
    /// refuses the text, the scanner builds nothing.
    #[test]
    fn scanner_agrees_with_serde_json() {
        let mut rng = Lcg(0x5eed);
        let mut texts: Vec<String> = vec![
            String::new(),
            " ".into(),
            "null".into(),
            " {\"hooks\": []} \n".into(),
            "{} {}".into(),
            "[1]x".into(),
            "[".repeat(63) + &"]".repeat(63),
            "[".repeat(64) + &"]".repeat(64),
            "[".repeat(65) + &"]".repeat(65),
            "[".repeat(200) + &"]".repeat(200),
        ];
        for _ in 0..20_000 {
            let mut text = String::new();
            if rng.below(3) == 0 {
                text.push_str(rng.pick(SPACE));
            }
            value(&mut rng, 0, &mut text);
            if rng.below(3) == 0 {
                text.push_str(rng.pick(SPACE));
            }
            // Now and then cut the text short.
            if rng.below(8) == 0 && !text.is_empty() {
                let mut cut = rng.below(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            texts.push(text);
        }
        let (mut scanned, mut refused) = (0, 0);
        for text in &texts {
            let by_serde = serde_nodes(text);
            match parse(text) {
                Some(nodes) => {
                    scanned += 1;
                    match by_serde {
                        Ok(expected) => assert_eq!(nodes, expected, "{text:?}"),
                        Err(e) => panic!("scanned {text:?}, which serde_json refuses: {e:?}"),
                    }
                }
                None => {
                    if matches!(by_serde, Err(SerdeFailure::Error(_))) {
                        refused += 1;
                    }
                }
            }
        }
        assert!(scanned > 3_000, "scanned only {scanned} of {}", texts.len());
        assert!(refused > 3_000, "only {refused} refused of {}", texts.len());
    }

    /// A prefix ends where its value does, and a number is never cut short: `1e5` is not read
    /// as `1` followed by something for the caller.
    #[test]
    fn prefixes_end_with_their_value() {
        let end = |text: &str| parse_prefix(text, 0).map(|(_, end)| end);
        assert_eq!(end(r#"{"hooks":[]},"x":1}"#), Some(12));
        assert_eq!(end("12,"), Some(2));
        assert_eq!(end("-0}"), Some(2));
        assert_eq!(end("true\"hooks\""), Some(4));
        for cut_short in ["1e5", "1E5", "1.5", "01", "-01", "[1e5]", "{\"a\":2.0}"] {
            assert_eq!(end(cut_short), None, "{cut_short}");
        }
    }
}
