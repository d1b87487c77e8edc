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
pub(super) fn parse_prefix(text: &str, size_hint: usize) -> Option<(Vec<Node<'_>>, usize)> {
    let mut scanner = Scanner {
        text,
        pos: 0,
        // About one node per 10 bytes of typical JSON: usually no regrowth.
        nodes: Vec::with_capacity(size_hint / 8 + 4),
    };
    scanner.value(0)?;
    Some((scanner.nodes, scanner.pos))
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    nodes: Vec<Node<'a>>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// JSON whitespace, as serde_json reads it.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        self.skip_whitespace();
        match self.peek()? {
            b'"' => {
                let s = self.string()?;
                self.nodes.push(Node::String(Cow::Borrowed(s)));
            }
            b'{' => self.object(depth + 1)?,
            b'[' => self.array(depth + 1)?,
            b't' => self.literal("true", Node::Bool)?,
            b'f' => self.literal("false", Node::Bool)?,
            b'n' => self.literal("null", Node::Null)?,
            b'-' | b'0'..=b'9' => self.integer()?,
            _ => return None,
        }
        Some(())
    }

    /// A string at `pos` (its opening quote) with no escape and no control character.
    fn string(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos + 1;
        let end = string_stop(bytes, start)?;
        if bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        // Both ends sit next to an ASCII quote, so on character boundaries.
        self.text.get(start..end)
    }

    fn literal(&mut self, word: &str, node: Node<'a>) -> Option<()> {
        let rest = self.text.get(self.pos..)?;
        if !rest.starts_with(word) {
            return None;
        }
        self.pos += word.len();
        self.nodes.push(node);
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)` of at most `MAX_DIGITS` digits. A fraction, an exponent or a second
    /// leading zero right after it is refused here: as a prefix (`read_prefix`) nothing after the
    /// value would catch `1e5` read as `1`.
    fn integer(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let start = self.pos;
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        if self.pos - start > MAX_DIGITS
            || matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            return None;
        }
        self.nodes.push(Node::Number);
        Some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.container(depth, Node::Array { len: 0, end: 0 }, b']', |s| {
            s.value(depth)
        })
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.container(depth, Node::Object { len: 0, end: 0 }, b'}', |s| {
            s.skip_whitespace();
            if s.peek() != Some(b'"') {
                return None;
            }
            let key = s.string()?;
            // serde_json's private marker keys change what `Value` makes of an object.
            if key.starts_with('$') {
                return None;
            }
            s.nodes.push(Node::String(Cow::Borrowed(key)));
            if !s.eat(b':') {
                return None;
            }
            s.value(depth)
        })
    }

    /// The array or object whose opening bracket is at `pos`: `open` (its node, completed by
    /// [`super::close`]), then `member` for each item or `key: value` pair up to `close`.
    fn container(
        &mut self,
        depth: usize,
        open: Node<'a>,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1; // `[` or `{`
        let at = self.nodes.len();
        self.nodes.push(open);
        let mut count = 0;
        if !self.eat(close) {
            loop {
                member(self)?;
                count += 1;
                if self.eat(b',') {
                    continue;
                }
                if self.eat(close) {
                    break;
                }
                return None;
            }
        }
        super::close(&mut self.nodes, at, count);
        Some(())
    }
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
