//! Microsoft Teams: the message with one Adaptive Card (1.4) that a Teams Workflows "webhook
//! request received" flow posts to a channel
//! (`tests/fixtures/formats/msteams-workflows-message.example.json`, checked against
//! `adaptive-card-1.4.excerpt.schema.json`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::facts::{Facts, is_web_url, lines_within, truncate};
use super::generic::generic;
use crate::api::{Hook, Phase, Task};

/// `contentType` of an Adaptive Card attachment.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";
/// The card schema version: what Teams renders on desktop, web and mobile.
pub const CARD_VERSION: &str = "1.4";
/// Longest message text on the card; Teams refuses messages over about 28 KB.
const MESSAGE_MAX: usize = 4000;
/// Room for the outputs list.
const OUTPUTS_MAX: usize = 2000;
/// Buttons for web outputs (Teams shows at most 6 actions).
const ACTIONS_MAX: usize = 5;

fn text_block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

/// A Teams Workflows message with one Adaptive Card.
pub fn ms_teams(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
) -> Value {
    let facts = Facts::of(&generic(task, hook, phase, id, timestamp), phase);
    let color = match phase {
        Phase::Succeeded => "good",
        Phase::Failed => "attention",
    };
    let facts_list: Vec<Value> = facts
        .fields()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": truncate(&value, 256)}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": truncate(&format!("Task {} {}", facts.name, facts.verb()), 256), "weight": "bolder", "size": "medium", "color": color, "wrap": true}),
        json!({"type": "FactSet", "facts": facts_list}),
    ];
    if let Some(message) = &facts.message {
        body.push(text_block(truncate(message, MESSAGE_MAX)));
    }
    if !facts.outputs.is_empty() {
        let lines: Vec<String> = facts
            .outputs
            .iter()
            .map(|o| {
                if is_web_url(o) {
                    format!("- [{o}]({o})")
                } else {
                    format!("- {}", truncate(o, 500))
                }
            })
            .collect();
        body.push(text_block(format!(
            "**Outputs**\n\n{}",
            lines_within(&lines, OUTPUTS_MAX)
        )));
    }
    body.push(json!({"type": "TextBlock", "text": format!("hook {} · delivery {id}", hook.name), "isSubtle": true, "size": "small", "wrap": true}));
    let actions: Vec<Value> = facts
        .web_outputs()
        .take(ACTIONS_MAX)
        .enumerate()
        .map(|(i, url)| json!({"type": "Action.OpenUrl", "title": format!("Output {}", i + 1), "url": url}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "fallbackText": facts.headline(),
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": null, "content": card}],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::payload::tests::{fixture, hook, schema_errors, task, ts};

    #[test]
    fn the_message_has_the_documented_shape_and_a_valid_adaptive_card() {
        let schema = fixture("adaptive-card-1.4.excerpt.schema.json");
        let example = fixture("msteams-workflows-message.example.json");
        // Not vacuous: Microsoft's example card passes, an unknown element property does not.
        let example_card = &example["attachments"][0]["content"];
        assert_eq!(schema_errors(&schema, example_card), Vec::<String>::new());
        let mut bad = example_card.clone();
        bad["body"][0]["colour"] = json!("red");
        assert!(!schema_errors(&schema, &bad).is_empty());
        let mut no_text = example_card.clone();
        no_text["body"][0].as_object_mut().unwrap().remove("text");
        assert!(!schema_errors(&schema, &no_text).is_empty());

        for phase in Phase::ALL {
            let v = ms_teams(&task(), &hook(None), phase, "id1", ts());
            // The envelope is the documented one: same keys, same attachment keys and type.
            let keys = |v: &Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            };
            assert_eq!(keys(&v), keys(&example));
            assert_eq!(v["type"], example["type"]);
            let attachment = &v["attachments"][0];
            assert_eq!(keys(attachment), keys(&example["attachments"][0]));
            assert_eq!(
                attachment["contentType"],
                example["attachments"][0]["contentType"]
            );
            assert_eq!(attachment["contentUrl"], Value::Null);
            let card = &attachment["content"];
            assert_eq!(card["$schema"], example_card["$schema"]);
            assert_eq!(schema_errors(&schema, card), Vec::<String>::new(), "{card}");
        }
    }

    #[test]
    fn the_card_reads_well() {
        let v = ms_teams(&task(), &hook(None), Phase::Failed, "id1", ts());
        let card = &v["attachments"][0]["content"];
        assert_eq!(card["version"], CARD_VERSION);
        assert_eq!(card["body"][0]["text"], "Task fix-123 failed");
        assert_eq!(card["body"][0]["color"], "attention");
        let facts = card["body"][1]["facts"].as_array().unwrap();
        assert!(
            facts.contains(&json!({"title": "Agent", "value": "claude-code (opus)"})),
            "{facts:?}"
        );
        assert_eq!(card["body"][2]["text"], "Opened <PR> & done");
        assert_eq!(
            card["actions"],
            json!([{"type": "Action.OpenUrl", "title": "Output 1", "url": "https://github.com/o/r/pull/1"}])
        );
        let ok = ms_teams(&task(), &hook(None), Phase::Succeeded, "id1", ts());
        assert_eq!(ok["attachments"][0]["content"]["body"][0]["color"], "good");
    }
}
