//! `spec.onCompletion`: the webhooks a TaskSpawner declares for its Tasks' completion.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most hooks one TaskSpawner may declare.
pub const MAX_HOOKS: usize = 8;

/// `spec.onCompletion` of a TaskSpawner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnCompletion {
    /// Webhooks called when a spawned Task reaches a terminal phase (at most 8).
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub hooks: Vec<Hook>,
}

/// One completion webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// DNS-1123 label, unique within the list; part of the delivery's `webhook-id`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Terminal phases that fire this hook; both when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    pub phases: Option<Vec<Phase>>,
    /// Where and how to deliver.
    pub webhook: Webhook,
}

impl Hook {
    /// Whether this hook fires for `phase` (an omitted list means every terminal phase). A
    /// PagerDuty hook fires on Succeeded only with `pagerDuty.triggerOnSucceeded`: a Task that
    /// worked is not an incident.
    pub fn fires_on(&self, phase: Phase) -> bool {
        let listed = self.phases.as_ref().is_none_or(|p| p.contains(&phase));
        let pager_duty_success = phase == Phase::Succeeded
            && self.webhook.format == Some(Format::PagerDuty)
            && !self
                .webhook
                .pager_duty
                .as_ref()
                .is_some_and(|p| p.trigger_on_succeeded);
        listed && !pager_duty_success
    }
}

/// A terminal Task phase a hook can fire on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Phase {
    /// The agent finished its work.
    Succeeded,
    /// The agent's run failed.
    Failed,
}

impl Phase {
    /// Both terminal phases, in a stable order.
    pub const ALL: [Phase; 2] = [Phase::Succeeded, Phase::Failed];

    /// The phase as kelos writes it in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Parses a `status.phase` value; `None` for non-terminal phases.
    pub fn from_status(phase: &str) -> Option<Phase> {
        match phase {
            "Succeeded" => Some(Phase::Succeeded),
            "Failed" => Some(Phase::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP endpoint of a hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Absolute `https://` URL with a host and no user-info.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Secret (same namespace) whose every key is sent as an HTTP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Secret key holding the Standard Webhooks signing key (`whsec_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
    /// Payload format; `Generic` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// PagerDuty options: required with `format: PagerDuty`, refused with any other format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pager_duty: Option<PagerDutyOptions>,
    /// The body template: required with `format: Template`, refused with any other format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateOptions>,
}

impl Webhook {
    /// A webhook to `url` in `format` with no Secrets and no format options.
    pub fn new(url: impl Into<String>, format: Option<Format>) -> Self {
        Webhook {
            url: url.into(),
            secret_ref: None,
            signing_secret_ref: None,
            format,
            pager_duty: None,
            template: None,
        }
    }
}

/// `webhook.pagerDuty`: how a hook opens PagerDuty incidents (Events API v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyOptions {
    /// Secret key holding the integration's routing key (never put it in the URL).
    pub routing_key_secret_ref: SecretKeyRef,
    /// Also open an incident when a Task succeeds (by default only Failed triggers one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trigger_on_succeeded: bool,
}

/// `webhook.template`: a user-written body (minijinja) over the Generic payload's variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateOptions {
    /// The template source (minijinja syntax; variables `type`, `id`, `hook`, `timestamp`, `task`).
    #[schemars(length(min = 1, max = 16384))]
    pub body: String,
    /// `Content-Type` of the rendered body; `application/json` (output must parse) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 127))]
    pub content_type: Option<String>,
}

/// A Secret in the Task's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the Task's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Payload format of a hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Format {
    /// kelos-hooks' own JSON object (`application/json`).
    #[default]
    Generic,
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    CloudEvents,
    /// A Slack incoming-webhook message.
    Slack,
    /// A PagerDuty Events API v2 event (needs `pagerDuty.routingKeySecretRef`).
    PagerDuty,
    /// A Microsoft Teams (Workflows) message with an Adaptive Card.
    #[serde(rename = "MSTeams")]
    MsTeams,
    /// A Discord webhook message with an embed.
    Discord,
    /// The user's `template`, rendered over the Generic payload's variables.
    Template,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `docs/on-completion.schema.json` is the JSON Schema of `spec.onCompletion`, generated from
    /// these types (every format and its options). Refresh: `KELOS_HOOKS_BLESS_DOCS=1 cargo test
    /// -p kelos-hooks-shared docs_schema`.
    #[test]
    fn docs_schema_is_the_generated_one() {
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&schemars::schema_for!(OnCompletion)).unwrap()
        );
        let path = format!(
            "{}/../docs/on-completion.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        if std::env::var_os("KELOS_HOOKS_BLESS_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let in_docs = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            in_docs, generated,
            "{path} differs from the types; run with KELOS_HOOKS_BLESS_DOCS=1"
        );
        for format in ["PagerDuty", "MSTeams", "Discord", "Template"] {
            assert!(generated.contains(format), "{format}");
        }
    }
}
