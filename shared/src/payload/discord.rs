//! Discord: an Execute Webhook body with one embed, within Discord's documented embed limits
//! (`tests/fixtures/formats/discord-webhook.limits.json`). Mentions are disabled so a Task message
//! containing `@everyone` pings nobody.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::facts::{Facts, is_web_url, lines_within, truncate};
use super::generic::generic;
use crate::api::{Hook, Phase, Task};

/// Discord's embed limits (characters) for the parts we fill.
pub(super) mod limits {
    /// Embed title.
    pub const TITLE: usize = 256;
    /// Embed description (Discord allows 4096; we keep room for the fields under the total).
    pub const DESCRIPTION: usize = 2000;
    /// One field's value.
    pub const FIELD_VALUE: usize = 1024;
    /// Our short fields (Namespace, Agent, …): keeps the embed under the 6000 total.
    pub const SHORT_FIELD_VALUE: usize = 256;
    /// Footer text.
    pub const FOOTER: usize = 300;
}

/// Embed colour: green for Succeeded, red for Failed.
pub fn colour(phase: Phase) -> u32 {
    match phase {
        Phase::Succeeded => 0x2E_CC_71,
        Phase::Failed => 0xE7_4C_3C,
    }
}

/// A Discord webhook message with one embed.
pub fn discord(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
) -> Value {
    let g = generic(task, hook, phase, id, timestamp);
    let facts = Facts::of(&g, phase);
    let mut fields: Vec<Value> = facts
        .fields()
        .into_iter()
        .filter(|(label, _)| *label != "Task")
        .map(|(name, value)| json!({"name": name, "value": non_empty(truncate(&value, limits::SHORT_FIELD_VALUE)), "inline": true}))
        .collect();
    if !facts.outputs.is_empty() {
        let lines: Vec<String> = facts
            .outputs
            .iter()
            .map(|o| {
                if is_web_url(o) {
                    o.clone()
                } else {
                    format!("`{}`", truncate(&o.replace('`', "'"), 300))
                }
            })
            .collect();
        fields.push(json!({"name": "Outputs", "value": non_empty(lines_within(&lines, limits::FIELD_VALUE)), "inline": false}));
    }
    let mut embed = json!({
        "title": truncate(&format!("Task {} {}", facts.name, facts.verb()), limits::TITLE),
        "color": colour(phase),
        "timestamp": g["timestamp"],
        "fields": fields,
        "footer": {"text": truncate(&format!("hook {} · delivery {id}", hook.name), limits::FOOTER)},
    });
    if let Some(message) = &facts.message {
        embed["description"] = json!(truncate(message, limits::DESCRIPTION));
    }
    if let Some(url) = facts.web_outputs().next() {
        embed["url"] = json!(url);
    }
    json!({
        "username": "kelos-hooks",
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    })
}

/// Discord refuses empty field values.
fn non_empty(s: String) -> String {
    if s.trim().is_empty() { "-".into() } else { s }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::payload::tests::{fixture, hook, task, ts};

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    fn chars(v: &Value) -> usize {
        v.as_str().map_or(0, |s| s.chars().count())
    }

    /// Every documented rule of `discord-webhook.limits.json` that applies to `body`.
    fn check(doc: &Value, body: &Value) -> Result<(), String> {
        let limits = &doc["limits"];
        let limit = |k: &str| limits[k].as_u64().unwrap() as usize;
        let top = body.as_object().unwrap();
        let params = strings(&doc["execute_webhook_params"]);
        if let Some(k) = top.keys().find(|k| !params.contains(&k.as_str())) {
            return Err(format!("unknown parameter {k}"));
        }
        if !strings(&doc["one_of_required"])
            .iter()
            .any(|k| top.contains_key(*k))
        {
            return Err("no content, embeds, components, files or poll".into());
        }
        if chars(&body["content"]) > doc["content_max"].as_u64().unwrap() as usize {
            return Err("content too long".into());
        }
        let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
        if embeds.len() > doc["embeds_max"].as_u64().unwrap() as usize {
            return Err("too many embeds".into());
        }
        for embed in &embeds {
            let fields = strings(&doc["embed_fields"]);
            if let Some(k) = embed
                .as_object()
                .unwrap()
                .keys()
                .find(|k| !fields.contains(&k.as_str()))
            {
                return Err(format!("unknown embed field {k}"));
            }
            let mut total = chars(&embed["title"])
                + chars(&embed["description"])
                + chars(&embed["footer"]["text"]);
            if chars(&embed["title"]) > limit("title")
                || chars(&embed["description"]) > limit("description")
                || chars(&embed["footer"]["text"]) > limit("footer.text")
            {
                return Err(format!("title, description or footer too long: {embed}"));
            }
            let list = embed["fields"].as_array().cloned().unwrap_or_default();
            if list.len() > limit("fields") {
                return Err("too many fields".into());
            }
            for f in &list {
                let allowed = strings(&doc["embed_field_fields"]);
                if let Some(k) = f
                    .as_object()
                    .unwrap()
                    .keys()
                    .find(|k| !allowed.contains(&k.as_str()))
                {
                    return Err(format!("unknown field key {k}"));
                }
                for k in strings(&doc["embed_field_required"]) {
                    if chars(&f[k]) == 0 {
                        return Err(format!("field without {k}: {f}"));
                    }
                }
                if chars(&f["name"]) > limit("field.name")
                    || chars(&f["value"]) > limit("field.value")
                {
                    return Err(format!("field too long: {f}"));
                }
                total += chars(&f["name"]) + chars(&f["value"]);
            }
            if total > limit("total") {
                return Err(format!("embed has {total} characters"));
            }
        }
        if let Some(parse) = body["allowed_mentions"]["parse"].as_array() {
            let ok = strings(&doc["allowed_mentions_parse_values"]);
            if parse
                .iter()
                .any(|p| !ok.contains(&p.as_str().unwrap_or_default()))
            {
                return Err("bad allowed_mentions".into());
            }
        }
        Ok(())
    }

    #[test]
    fn the_message_keeps_discords_documented_rules() {
        let doc = fixture("discord-webhook.limits.json");
        // Not vacuous: the documented example passes, an over-long title or unknown key does not.
        check(&doc, &doc["example"]).unwrap();
        let mut bad = doc["example"].clone();
        bad["embeds"][0]["title"] = json!("t".repeat(257));
        assert!(check(&doc, &bad).is_err());
        let mut bad = doc["example"].clone();
        bad["colour"] = json!(1);
        assert!(check(&doc, &bad).is_err());

        for phase in Phase::ALL {
            check(&doc, &discord(&task(), &hook(None), phase, "id1", ts())).unwrap();
        }
        // A Task that says too much is cut, not refused.
        let mut big = task();
        let status = big.status.as_mut().unwrap();
        status.message = Some("m".repeat(10_000));
        status.outputs = Some(
            (0..200)
                .map(|i| format!("https://github.com/o/r/pull/{i}"))
                .collect(),
        );
        big.spec.model = Some("x".repeat(5000));
        let v = discord(&big, &hook(None), Phase::Failed, "id1", ts());
        check(&doc, &v).unwrap();
        assert!(v["embeds"][0]["fields"].to_string().contains("more"), "{v}");
    }

    #[test]
    fn the_embed_reads_well_and_pings_nobody() {
        let v = discord(&task(), &hook(None), Phase::Failed, "id1", ts());
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        let e = &v["embeds"][0];
        assert_eq!(e["title"], "Task fix-123 failed");
        assert_eq!(e["color"], 0xE7_4C_3C);
        assert_eq!(e["description"], "Opened <PR> & done");
        assert_eq!(e["url"], "https://github.com/o/r/pull/1");
        assert_eq!(e["timestamp"], "2026-01-01T10:05:00Z");
        assert!(
            e["fields"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "Cost", "value": "$0.42", "inline": true}))
        );
        let outputs = e["fields"].as_array().unwrap().last().unwrap();
        assert_eq!(
            outputs["value"],
            "https://github.com/o/r/pull/1\n`branch: fix-123`"
        );
        let ok = discord(&task(), &hook(None), Phase::Succeeded, "id1", ts());
        assert_eq!(ok["embeds"][0]["color"], 0x2E_CC_71);
    }
}
