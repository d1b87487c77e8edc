//! The kelos `TaskSpawner`, typed only where kelos-hooks reads it.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::OnCompletion;

/// `TaskSpawner.spec`: `onCompletion` typed, every kelos field kept verbatim in `rest`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kelos.dev",
    version = "v1alpha2",
    kind = "TaskSpawner",
    plural = "taskspawners",
    namespaced,
    status = "Value",
    schema = "derived"
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpawnerSpec {
    /// Webhooks fired when a spawned Task reaches a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_completion: Option<OnCompletion>,
    /// kelos' own fields (`when`, `taskTemplate`, …), preserved untouched.
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: BTreeMap<String, Value>,
}

impl TaskSpawner {
    /// The hooks this spawner declares (empty when it has none).
    pub fn hooks(&self) -> &[super::Hook] {
        self.spec
            .on_completion
            .as_ref()
            .map_or(&[], |o| o.hooks.as_slice())
    }
}
