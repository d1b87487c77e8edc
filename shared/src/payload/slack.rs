//! Slack incoming-webhook messages: a `text` fallback plus blocks, kept within Slack's documented
//! block limits (`tests/fixtures/formats/slack-block-limits.json`) by cutting long texts rather
//! than being refused.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::facts::{Facts, is_web_url, lines_within, truncate};
use super::generic::generic;
use crate::api::{Hook, Phase, Task};

/// Slack's limits for the blocks we send (characters).
pub(super) mod limits {
    /// `header` block text.
    pub const HEADER_TEXT: usize = 150;
    /// `section` block text.
    pub const SECTION_TEXT: usize = 3000;
    /// Items of a `section` block's `fields`.
    pub const SECTION_FIELDS: usize = 10;
    /// One `section` field's text.
    pub const FIELD_TEXT: usize = 2000;
    /// Top-level `text`.
    pub const MESSAGE_TEXT: usize = 40000;
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `raw` escaped and cut to `max` characters, never in the middle of an `&…;` escape.
fn escaped_within(raw: &str, max: usize) -> String {
    let escaped = slack_escape(raw);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

fn field(label: &str, value: &str) -> Value {
    let label = format!("*{label}*\n");
    let room = limits::FIELD_TEXT - label.chars().count();
    json!({"type": "mrkdwn", "text": format!("{label}{}", escaped_within(value, room))})
}

/// An output as a Slack link when it is a web URL, otherwise as inline code.
fn slack_link(output: &str) -> String {
    if is_web_url(output) {
        format!("<{output}>")
    } else {
        format!("`{}`", escaped_within(output, 500))
    }
}

/// A Slack incoming-webhook message: a `text` fallback plus blocks that read well in a channel.
pub fn slack(task: &Task, hook: &Hook, phase: Phase, id: &str, timestamp: DateTime<Utc>) -> Value {
    let facts = Facts::of(&generic(task, hook, phase, id, timestamp), phase);
    let emoji = match phase {
        Phase::Succeeded => ":white_check_mark:",
        Phase::Failed => ":x:",
    };
    let text = truncate(
        &format!("{emoji} {}", facts.headline()),
        limits::MESSAGE_TEXT,
    );
    let fields: Vec<Value> = facts
        .fields()
        .iter()
        .take(limits::SECTION_FIELDS)
        .map(|(label, value)| field(label, value))
        .collect();
    let header = format!("Task {} {}", facts.name, facts.verb());
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&header, limits::HEADER_TEXT), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(message) = &facts.message {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": escaped_within(message, limits::SECTION_TEXT)}}));
    }
    if !facts.outputs.is_empty() {
        let title = "*Outputs*\n";
        let list: Vec<String> = facts
            .outputs
            .iter()
            .map(|o| format!("• {}", slack_link(o)))
            .collect();
        let room = limits::SECTION_TEXT - title.chars().count();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{title}{}", lines_within(&list, room))}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("hook `{}` · delivery `{}`", slack_escape(&hook.name), slack_escape(id))}]}));
    json!({"text": text, "blocks": blocks})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::payload::tests::{fixture, hook, task, ts};

    fn n(doc: &Value, key: &str) -> usize {
        doc[key].as_u64().unwrap() as usize
    }

    fn chars(v: &Value) -> usize {
        v.as_str().map_or(0, |s| s.chars().count())
    }

    /// Every documented block limit of `slack-block-limits.json` that applies to `msg`.
    fn check(doc: &Value, msg: &Value) -> Result<(), String> {
        if chars(&msg["text"]) > n(doc, "message_text_max") {
            return Err("text too long".into());
        }
        let blocks = msg["blocks"].as_array().unwrap();
        if blocks.len() > n(doc, "message_blocks_max") {
            return Err("too many blocks".into());
        }
        let types: Vec<&str> = doc["block_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for b in blocks {
            let t = b["type"].as_str().unwrap_or_default();
            if !types.contains(&t) {
                return Err(format!("unknown block type {t}"));
            }
            match t {
                "header" if chars(&b["text"]["text"]) > n(doc, "header_text_max") => {
                    return Err("header too long".into());
                }
                "section" => {
                    if chars(&b["text"]["text"]) > n(doc, "section_text_max") {
                        return Err(format!(
                            "section text has {} characters",
                            chars(&b["text"]["text"])
                        ));
                    }
                    let fields = b["fields"].as_array().cloned().unwrap_or_default();
                    if fields.len() > n(doc, "section_fields_max") {
                        return Err("too many fields".into());
                    }
                    if fields
                        .iter()
                        .any(|f| chars(&f["text"]) > n(doc, "section_field_text_max"))
                    {
                        return Err("field too long".into());
                    }
                }
                "context"
                    if b["elements"].as_array().unwrap().len() > n(doc, "context_elements_max") =>
                {
                    return Err("too many context elements".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    #[test]
    fn long_tasks_are_cut_to_slacks_block_limits() {
        let doc = fixture("slack-block-limits.json");
        check(&doc, &doc["example"]).unwrap();
        let mut bad = doc["example"].clone();
        bad["blocks"][0]["text"]["text"] = json!("x".repeat(3001));
        assert!(check(&doc, &bad).is_err(), "the checker is not vacuous");

        check(
            &doc,
            &slack(&task(), &hook(None), Phase::Failed, "id", ts()),
        )
        .unwrap();
        let mut big = task();
        big.metadata.name = Some("n".repeat(253));
        big.spec.model = Some("m".repeat(3000));
        let status = big.status.as_mut().unwrap();
        // Escaping turns each & into five characters: the cut must count after escaping.
        status.message = Some("&".repeat(5000));
        status.outputs = Some(
            (0..500)
                .map(|i| format!("https://github.com/o/r/pull/{i}"))
                .collect(),
        );
        let v = slack(&big, &hook(None), Phase::Failed, "id", ts());
        check(&doc, &v).unwrap();
        let message = v["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            message.ends_with("&amp;…"),
            "an escape is never cut in half: {message}"
        );
        let outputs = v["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(outputs.ends_with("more"), "{outputs}");
        assert!(!outputs.contains("<https://github.com/o/r/pull/499>"));
    }

    #[test]
    fn escapes_are_never_cut_in_half() {
        assert_eq!(escaped_within("a<b", 10), "a&lt;b");
        assert_eq!(escaped_within("aaaa<b", 6), "aaaa…");
        assert_eq!(escaped_within("<<<<", 11), "&lt;&lt;…");
    }
}
