//! The JSON the rules walk: one flat list of nodes per document, its strings borrowed from the
//! text wherever they hold no escapes.
//!
//! Parsing into `serde_json::Value` costs an allocation per object member and per string; this
//! tree costs one allocation per document (plus one per escaped string). It is built by serde from
//! JSON text or from a `&serde_json::Value`, so one implementation of the rules serves both. Text
//! in the plain form most objects take is scanned directly (`plain.rs`); the rest goes through
//! serde_json.
//!
//! The rules see exactly what `serde_json::Value` would hold: on duplicate keys the *last* value
//! counts, and [`super::fields::known_fields`] reports unknown keys in `serde_json::Map` order. The
//! one construct where `Value` parsing differs from a plain walk of the text — a key spelt like
//! serde_json's private markers (`$serde_json::private::RawValue`, which the `raw_value` feature
//! unwraps) — sends the text through `serde_json::Value` instead, so the result is the same either
//! way. (serde_json's `arbitrary_precision` feature, which turns numbers into such markers, is not
//! enabled in this workspace.)

mod plain;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Prefix of serde_json's private marker keys; objects with such a key parse specially.
const MARKER_PREFIX: &str = "$serde_json::private::";

/// One JSON value in pre-order: a container node is followed by its contents.
#[derive(Debug, PartialEq)]
enum Node<'a> {
    Null,
    Bool,
    Number,
    String(Cow<'a, str>),
    /// `len` items follow; the node after the last one is at `end`.
    Array {
        len: usize,
        end: usize,
    },
    /// `len` members follow, each a `String` node (the key) and then the value; the node after
    /// the last one is at `end`.
    Object {
        len: usize,
        end: usize,
    },
}

/// A parsed document.
#[derive(Debug)]
struct Doc<'a> {
    nodes: Vec<Node<'a>>,
}

impl Doc<'_> {
    /// The top-level value.
    fn root(&self) -> Json<'_> {
        Json {
            nodes: &self.nodes,
            at: 0,
        }
    }
}

/// A JSON value parsed ahead of validation: by a reader that met it inside a larger document
/// (the admission server's review reader), so the text is scanned once.
pub struct ParsedJson<'a> {
    doc: Doc<'a>,
    text: &'a str,
}

impl<'a> ParsedJson<'a> {
    /// The plain-form JSON value at the start of `text` and the offset just after it; `None` when
    /// the value is not in the plain form (escapes, fractions, …) or not JSON: the caller then
    /// finds its end itself and validates the text.
    pub fn read_prefix(text: &'a str) -> Option<(Self, usize)> {
        let (nodes, end) = plain::parse_prefix(text, 2048)?;
        let parsed = ParsedJson {
            doc: Doc { nodes },
            text: text.get(..end)?,
        };
        Some((parsed, end))
    }

    /// The value's text, as it was in the document.
    pub fn text(&self) -> &'a str {
        self.text
    }

    pub(crate) fn root(&self) -> Json<'_> {
        self.doc.root()
    }
}

/// Shows the value's text.
impl fmt::Debug for ParsedJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

/// Runs `rule` over the JSON document in `text`; the error is serde_json's, word for word, for
/// text that `serde_json::from_str::<Value>` refuses too.
pub(crate) fn read<R>(text: &str, rule: impl FnOnce(Json<'_>) -> R) -> serde_json::Result<R> {
    let nodes = match plain::parse(text) {
        Some(nodes) => nodes,
        None => match serde_nodes(text) {
            Ok(nodes) => nodes,
            Err(SerdeFailure::Error(e)) => return Err(e),
            Err(SerdeFailure::Marker) => {
                // Rare: let serde_json::Value decide what the text means (or which error it is).
                let value: Value = serde_json::from_str(text)?;
                return view(&value, rule);
            }
        },
    };
    let doc = Doc { nodes };
    Ok(rule(doc.root()))
}

/// Why [`serde_nodes`] built no tree.
#[derive(Debug)]
enum SerdeFailure {
    /// The text is not JSON: serde_json's error.
    Error(serde_json::Error),
    /// A serde_json marker key: only `serde_json::Value` knows what the text means.
    Marker,
}

/// The nodes of `text` as serde_json reads it.
fn serde_nodes(text: &str) -> Result<Vec<Node<'_>>, SerdeFailure> {
    let mut builder = Builder {
        nodes: Vec::with_capacity(text.len() / 8 + 4),
        from_text: true,
        marker_seen: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = NodeSeed(&mut builder)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(builder.nodes),
        Err(_) if builder.marker_seen => Err(SerdeFailure::Marker),
        Err(e) => Err(SerdeFailure::Error(e)),
    }
}

/// Runs `rule` over `value` (a `Value` always converts; the error is for completeness).
pub(crate) fn view<R>(value: &Value, rule: impl FnOnce(Json<'_>) -> R) -> serde_json::Result<R> {
    let mut builder = Builder {
        nodes: Vec::new(),
        from_text: false,
        marker_seen: false,
    };
    NodeSeed(&mut builder).deserialize(value)?;
    let doc = Doc {
        nodes: builder.nodes,
    };
    Ok(rule(doc.root()))
}

/// One value of a document: a cheap handle to be matched through [`Json::view`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Json<'d> {
    nodes: &'d [Node<'d>],
    at: usize,
}

/// What a [`Json`] holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum View<'d> {
    Null,
    Bool,
    Number,
    String(&'d str),
    Array(Items<'d>),
    Object(Members<'d>),
}

impl<'d> Json<'d> {
    /// The value's type and contents.
    pub(crate) fn view(self) -> View<'d> {
        match self.nodes.get(self.at) {
            // Never out of range (built that way); read as null rather than panic.
            None | Some(Node::Null) => View::Null,
            Some(Node::Bool) => View::Bool,
            Some(Node::Number) => View::Number,
            Some(Node::String(s)) => View::String(s),
            Some(Node::Array { len, .. }) => View::Array(Items {
                nodes: self.nodes,
                next: self.at + 1,
                left: *len,
            }),
            Some(Node::Object { len, .. }) => View::Object(Members {
                nodes: self.nodes,
                next: self.at + 1,
                left: *len,
            }),
        }
    }

    /// True for `null`.
    pub(crate) fn is_null(self) -> bool {
        matches!(self.view(), View::Null)
    }

    /// The index of the node after this value and everything in it.
    fn after(self) -> usize {
        match self.nodes.get(self.at) {
            Some(Node::Array { end, .. } | Node::Object { end, .. }) => *end,
            _ => self.at + 1,
        }
    }
}

/// The items of an array, in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Items<'d> {
    nodes: &'d [Node<'d>],
    next: usize,
    left: usize,
}

impl<'d> Iterator for Items<'d> {
    type Item = Json<'d>;

    fn next(&mut self) -> Option<Json<'d>> {
        if self.left == 0 {
            return None;
        }
        let item = Json {
            nodes: self.nodes,
            at: self.next,
        };
        self.next = item.after();
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// The members of an object, in document order (duplicates included: the last one counts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Members<'d> {
    nodes: &'d [Node<'d>],
    next: usize,
    left: usize,
}

impl<'d> Iterator for Members<'d> {
    type Item = (&'d str, Json<'d>);

    fn next(&mut self) -> Option<(&'d str, Json<'d>)> {
        if self.left == 0 {
            return None;
        }
        let key = match self.nodes.get(self.next) {
            Some(Node::String(key)) => key,
            _ => "",
        };
        let value = Json {
            nodes: self.nodes,
            at: self.next + 1,
        };
        self.next = value.after();
        self.left -= 1;
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Records in the container node at `at` (pushed with `len` and `end` 0) its item count and the
/// index just past its contents: the nodes pushed since.
fn close(nodes: &mut [Node<'_>], at: usize, count: usize) {
    let end = nodes.len();
    if let Some(Node::Array { len, end: e } | Node::Object { len, end: e }) = nodes.get_mut(at) {
        *len = count;
        *e = end;
    }
}

/// The node list under construction.
struct Builder<'a> {
    nodes: Vec<Node<'a>>,
    /// Parsing text (where marker keys mean something to `Value`), not converting a `Value`.
    from_text: bool,
    /// A marker key stopped the parse: the caller goes through `Value`.
    marker_seen: bool,
}

impl<'a> Builder<'a> {
    /// Appends a container node to be completed by [`Builder::close`]; returns its index.
    fn open(&mut self, node: Node<'a>) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Records the length and end of the container opened at `at`.
    fn close(&mut self, at: usize, count: usize) {
        close(&mut self.nodes, at, count);
    }

    fn string<E: de::Error>(&mut self, s: Cow<'a, str>, key: bool) -> Result<(), E> {
        if key && self.from_text && s.starts_with(MARKER_PREFIX) {
            self.marker_seen = true;
            return Err(E::custom("serde_json marker key"));
        }
        self.nodes.push(Node::String(s));
        Ok(())
    }
}

/// Deserialises one value, and everything in it, onto the builder.
struct NodeSeed<'b, 'a>(&'b mut Builder<'a>);

/// Deserialises one object key onto the builder.
struct KeySeed<'b, 'a>(&'b mut Builder<'a>);

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.nodes.push(Node::Null);
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.0.nodes.push(Node::Bool);
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.nodes.push(Node::Number);
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.0.nodes.push(Node::Number);
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.nodes.push(Node::Number);
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.string(Cow::Borrowed(s), false)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.string(Cow::Owned(s.to_owned()), false)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<(), E> {
        self.0.string(Cow::Owned(s), false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.0.open(Node::Array { len: 0, end: 0 });
        let mut count = 0;
        while seq.next_element_seed(NodeSeed(&mut *self.0))?.is_some() {
            count += 1;
        }
        self.0.close(at, count);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.0.open(Node::Object { len: 0, end: 0 });
        let mut count = 0;
        while map.next_key_seed(KeySeed(&mut *self.0))?.is_some() {
            map.next_value_seed(NodeSeed(&mut *self.0))?;
            count += 1;
        }
        self.0.close(at, count);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.string(Cow::Borrowed(s), true)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.string(Cow::Owned(s.to_owned()), true)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<(), E> {
        self.0.string(Cow::Owned(s), true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The document written back as compact JSON (keys in document order), for comparisons.
    fn render(value: Json<'_>) -> String {
        match value.view() {
            View::Null => "null".into(),
            View::Bool => "bool".into(),
            View::Number => "num".into(),
            View::String(s) => format!("{s:?}"),
            View::Array(items) => {
                let items: Vec<String> = items.map(render).collect();
                format!("[{}]", items.join(","))
            }
            View::Object(members) => {
                let members: Vec<String> = members
                    .map(|(k, v)| format!("{k:?}:{}", render(v)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    #[test]
    fn text_keeps_document_order_and_nesting() {
        let text =
            r#"{"b": [1, {"x": null, "y": [true, []]}, "s"], "a": {}, "c": "\u0068i", "b": 2}"#;
        let rendered = read(text, render).unwrap();
        assert_eq!(
            rendered,
            r#"{"b":[num,{"x":null,"y":[bool,[]]},"s"],"a":{},"c":"hi","b":num}"#
        );
        let items = read("[1, [2, 3], {\"k\": [4]}, 5]", |root| match root.view() {
            View::Array(items) => (items.len(), items.map(render).collect::<Vec<_>>()),
            _ => (0, vec![]),
        })
        .unwrap();
        assert_eq!(items.0, 4);
        assert_eq!(items.1, ["num", "[num,num]", "{\"k\":[num]}", "num"]);
    }

    /// `value` rendered as [`render`] does, walking the `Value` itself.
    fn render_value(value: &Value) -> String {
        match value {
            Value::Null => "null".into(),
            Value::Bool(_) => "bool".into(),
            Value::Number(_) => "num".into(),
            Value::String(s) => format!("{s:?}"),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(render_value).collect();
                format!("[{}]", items.join(","))
            }
            Value::Object(map) => {
                let members: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{}", render_value(v)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    #[test]
    fn a_value_converts_to_the_same_tree_in_map_order() {
        let text = r#"{"z": [1, "two", null, {"q": false}], "a": "é\n", "m": {"k": {}}, "z": 5}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        // In `serde_json::Map` order (sorted keys unless serde_json's preserve_order is on).
        let rendered = view(&value, render).unwrap();
        assert_eq!(rendered, render_value(&value));
        assert!(rendered.contains(r#""a":"é\n""#) && rendered.contains(r#""z":num"#));
        assert_eq!(view(&Value::Null, render).unwrap(), "null");
        assert_eq!(read("  null ", render).unwrap(), "null");
    }

    #[test]
    fn errors_are_serde_jsons_word_for_word() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "nul",
            "\"\\ud800\"",
            "1e400",
            "{} x",
            "\"a\u{1}\"",
            &"[".repeat(200),
        ] {
            let ours = read(text, |_| ()).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn marker_keys_go_through_value() {
        let text = r#"{"a": {"$serde_json::private::RawValue": "[1]"}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            read(text, render).unwrap(),
            view(&value, render).unwrap(),
            "same tree as Value gives, whichever serde_json features are on"
        );
        let broken = r#"{"$serde_json::private::RawValue": 5"#;
        assert_eq!(
            read(broken, |_| ()).unwrap_err().to_string(),
            serde_json::from_str::<Value>(broken)
                .unwrap_err()
                .to_string()
        );
    }
}
