//! Does the installed TaskSpawner CRD keep `spec.onCompletion`? The API server prunes every field
//! a CRD schema does not declare, so a CRD without it makes every hook vanish without an error.
//! One pure judgement ([`judge`]) and one way of following a watch of the CRD ([`Follower`]),
//! used by both binaries.
//!
//! The judgement walks a TaskSpawner carrying every field of kelos-hooks' `onCompletion` through
//! the schema the way the API server prunes, so a schema that declares `onCompletion` but not,
//! say, `signingSecretRef` is caught too, and `x-kubernetes-preserve-unknown-fields` counts where
//! it applies (at the root only while `spec` itself is undeclared).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::api::{Format, Hook, OnCompletion, Phase, SecretKeyRef, SecretRef, VERSION, Webhook};

pub use crate::crd::TASKSPAWNER_CRD as CRD_NAME;

/// How to make the CRD keep the hooks.
const FIX: &str = "let kelos-hooks-admission extend kelos's CRD (chart value \
                   kelos.crdExtension.enabled=true, the default; flag --extend-kelos-crd), or, on a \
                   cluster without kelos, install kelos-hooks' CRDs (`kelos-hooks-admission crds | \
                   kubectl apply --server-side -f -`, chart value crds.install=true)";

/// What the installed TaskSpawner CRD means for hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The served v1alpha2 (and the storage version) keep every field of `onCompletion`.
    Keeps,
    /// kelos declares `spec.onCompletion` itself: a kelos build with its own onCompletion
    /// reporter. Not a fault: kelos-hooks leaves that schema alone and never delivers a Task whose
    /// snapshot kelos-spawner wrote in kelos's format (see [`crate::annotations`]).
    KelosReporter,
    /// What is wrong and how to fix it (for logs, `/readyz` and an Event).
    Problem(String),
}

/// Said in `/readyz` and an Event while [`Verdict::KelosReporter`] holds.
pub const KELOS_REPORTER_NOTE: &str = "kelos's own TaskSpawner CRD declares spec.onCompletion (a kelos build with its own onCompletion \
     reporter): kelos-hooks leaves that schema alone, and its dispatcher never delivers a Task whose \
     kelos.dev/on-completion annotation kelos-spawner wrote in kelos's format, so no hook is sent twice";

impl Verdict {
    /// The problem, when there is one.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Verdict::Problem(p) => Some(p),
            _ => None,
        }
    }
}

/// Judges the installed CRD (`None`: not installed).
pub fn judge(crd: Option<&CustomResourceDefinition>) -> Verdict {
    let Some(crd) = crd else {
        return Verdict::Problem(format!("CRD {CRD_NAME} is not installed; {FIX}"));
    };
    let versions = &crd.spec.versions;
    let Some(ours) = versions.iter().find(|v| v.name == VERSION && v.served) else {
        return Verdict::Problem(format!(
            "CRD {CRD_NAME} does not serve {VERSION}, the version kelos-hooks reads and writes; \
             install a kelos release that serves kelos.dev/{VERSION}"
        ));
    };
    if kelos_declares_its_own(ours) {
        return Verdict::KelosReporter;
    }
    let storage = versions.iter().find(|v| v.storage && v.name != VERSION);
    let mut problems = Vec::new();
    for version in std::iter::once(ours).chain(storage) {
        let pruned = pruned_fields(version);
        if pruned.iter().any(|p| p == "spec.onCompletion") {
            problems.push(format!(
                "version {} does not declare spec.onCompletion, so the API server silently drops every hook",
                version.name
            ));
        } else if !pruned.is_empty() {
            problems.push(format!(
                "version {} prunes {}, so those settings are silently dropped",
                version.name,
                pruned.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Verdict::Keeps
    } else {
        Verdict::Problem(format!("CRD {CRD_NAME}: {}; {FIX}", problems.join("; ")))
    }
}

fn open_api_schema(version: &CustomResourceDefinitionVersion) -> Value {
    version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// `spec.onCompletion` is declared, but not by kelos-hooks.
fn kelos_declares_its_own(version: &CustomResourceDefinitionVersion) -> bool {
    let declared = &open_api_schema(version)["properties"]["spec"]["properties"]["onCompletion"];
    declared.is_object() && !crate::crd::is_ours(declared)
}

/// A TaskSpawner with every field of kelos-hooks' `onCompletion` set.
fn every_field() -> Value {
    let hook = Hook {
        name: "h".into(),
        phases: Some(vec![Phase::Succeeded]),
        webhook: Webhook {
            url: "https://hooks.example.com/x".into(),
            secret_ref: Some(SecretRef { name: "s".into() }),
            signing_secret_ref: Some(SecretKeyRef {
                name: "s".into(),
                key: "k".into(),
            }),
            format: Some(Format::Generic),
            pager_duty: None,
            template: None,
        },
    };
    let on_completion =
        serde_json::to_value(OnCompletion { hooks: vec![hook] }).unwrap_or_default();
    json!({"spec": {"onCompletion": on_completion}})
}

/// The fields of [`every_field`] the version's schema prunes (`a.b[].c`), outermost only.
fn pruned_fields(version: &CustomResourceDefinitionVersion) -> Vec<String> {
    let mut out = Vec::new();
    walk(&open_api_schema(version), &every_field(), "", &mut out);
    out.dedup();
    out
}

/// Records in `out` the paths of `value` that pruning by `schema` would remove.
fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            let preserves = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
            for (key, child) in fields {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let declared = &schema["properties"][key.as_str()];
                let additional = &schema["additionalProperties"];
                if declared.is_object() {
                    walk(declared, child, &child_path, out);
                } else if additional.is_object() {
                    walk(additional, child, &child_path, out);
                } else if !preserves && *additional != json!(true) {
                    out.push(child_path);
                }
                // Else kept as an unknown field, with everything under it.
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(&schema["items"], item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Follows a kube-runtime watch of the one CRD (field selector `metadata.name`): feed it every
/// event; it says what is installed and when the verdict changes. A relist that finds nothing
/// means the CRD is not installed.
#[derive(Debug, Default)]
pub struct Follower {
    last: Option<Verdict>,
    seen_in_relist: bool,
}

/// What one item of the watch stream means.
#[derive(Debug)]
pub enum Step {
    /// The installed CRD (`None`: not installed): judge it.
    Seen(Option<Box<CustomResourceDefinition>>),
    /// Nothing to judge yet (a relist began).
    Wait,
    /// The watch failed (it retries with backoff): keep the last verdict, log this.
    Failed(String),
    /// The stream ended.
    End,
}

impl Follower {
    /// What the next item of the watch stream (`None`: ended) means.
    pub fn step(
        &mut self,
        item: Option<Result<watcher::Event<CustomResourceDefinition>, watcher::Error>>,
    ) -> Step {
        match item {
            None => Step::End,
            Some(Err(e)) => Step::Failed(format!("cannot watch CRD {CRD_NAME} (retrying): {e}")),
            Some(Ok(event)) => self
                .event(event)
                .map_or(Step::Wait, |seen| Step::Seen(seen.map(Box::new))),
        }
    }

    /// The installed CRD after `event` (`Some(None)`: not installed), or `None` when the event
    /// says nothing yet (the start of a relist).
    pub fn event(
        &mut self,
        event: watcher::Event<CustomResourceDefinition>,
    ) -> Option<Option<CustomResourceDefinition>> {
        match event {
            watcher::Event::Init => {
                self.seen_in_relist = false;
                None
            }
            watcher::Event::InitApply(crd) => {
                self.seen_in_relist = true;
                Some(Some(crd))
            }
            watcher::Event::InitDone => (!self.seen_in_relist).then_some(None),
            watcher::Event::Apply(crd) => Some(Some(crd)),
            watcher::Event::Delete(_) => Some(None),
        }
    }

    /// Judges `crd`; the verdict when it differs from the last one (the first always does).
    pub fn judge(&mut self, crd: Option<&CustomResourceDefinition>) -> Option<Verdict> {
        let verdict = judge(crd);
        if self.last.as_ref() == Some(&verdict) {
            return None;
        }
        self.last = Some(verdict.clone());
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn crd(versions: Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME},
            "spec": {"group": "kelos.dev", "scope": "Namespaced",
                     "names": {"plural": "taskspawners", "kind": "TaskSpawner"},
                     "versions": versions}
        }))
        .unwrap()
    }

    fn version(name: &str, storage: bool, root: Value) -> Value {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": root}})
    }

    fn with_spec(spec: Value) -> Value {
        json!({"type": "object", "properties": {"spec": spec}})
    }

    fn problem(c: &CustomResourceDefinition) -> String {
        judge(Some(c)).problem().unwrap_or_default().to_owned()
    }

    #[test]
    fn our_generated_crd_keeps_everything() {
        assert_eq!(judge(Some(&crate::crd::task_spawner())), Verdict::Keeps);
    }

    #[test]
    fn kelos_own_crd_does_not_declare_it() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/kelos-src/internal/manifests/charts/kelos/charts/kelos-crds/templates/taskspawner-crd.yaml"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (the kelos source snapshot must be there)"));
        // A Helm template: drop the template lines.
        let plain: String = text
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        let kelos: CustomResourceDefinition = serde_saphyr::from_str(&plain).unwrap();
        let p = problem(&kelos);
        assert!(
            p.contains("version v1alpha2 does not declare spec.onCompletion"),
            "{p}"
        );
        assert!(p.contains("--extend-kelos-crd"), "{p}");
    }

    #[test]
    fn preserve_unknown_fields_counts_where_it_applies() {
        let root_preserves =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(
            judge(Some(&crd(json!([version(
                "v1alpha2",
                true,
                root_preserves
            )])))),
            Verdict::Keeps,
            "root preserves and spec is undeclared: spec is kept whole"
        );
        let root_preserves_spec_declared = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object", "properties": {"when": {"type": "object"}}}}});
        assert!(
            problem(&crd(json!([version(
                "v1alpha2",
                true,
                root_preserves_spec_declared
            )])))
            .contains("does not declare spec.onCompletion")
        );
        let spec_preserves =
            with_spec(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        assert_eq!(
            judge(Some(&crd(json!([version(
                "v1alpha2",
                true,
                spec_preserves
            )])))),
            Verdict::Keeps
        );
    }

    #[test]
    fn a_partial_schema_names_what_it_drops() {
        let mut ours = crate::crd::on_completion_schema();
        let webhook =
            &mut ours["properties"]["hooks"]["items"]["properties"]["webhook"]["properties"];
        webhook.as_object_mut().unwrap().remove("signingSecretRef");
        webhook.as_object_mut().unwrap().remove("format");
        let root = with_spec(json!({"type": "object", "properties": {"onCompletion": ours}}));
        let p = problem(&crd(json!([version("v1alpha2", true, root)])));
        assert!(
            p.contains("prunes spec.onCompletion.hooks[].webhook.signingSecretRef, spec.onCompletion.hooks[].webhook.format")
                || p.contains("prunes spec.onCompletion.hooks[].webhook.format, spec.onCompletion.hooks[].webhook.signingSecretRef"),
            "{p}"
        );
    }

    #[test]
    fn only_v1alpha2_and_the_storage_version_matter() {
        let ours = with_spec(
            json!({"type": "object", "properties": {"onCompletion": crate::crd::on_completion_schema()}}),
        );
        let bare = with_spec(json!({"type": "object", "properties": {}}));
        // kelos's v1alpha1 never carries onCompletion (its conversion drops it): not judged.
        let c = crd(json!([
            version("v1alpha1", false, bare.clone()),
            version("v1alpha2", true, ours.clone())
        ]));
        assert_eq!(judge(Some(&c)), Verdict::Keeps);
        let other_storage = crd(json!([
            version("v1alpha2", false, ours),
            version("v1beta1", true, bare)
        ]));
        assert!(problem(&other_storage).contains("version v1beta1 does not declare"));
        let unserved = crd(json!([{"name": "v1alpha2", "served": false, "storage": true}]));
        assert!(problem(&unserved).contains("does not serve v1alpha2"));
        assert!(judge(None).problem().unwrap().contains("not installed"));
    }

    #[test]
    fn kelos_declaring_its_own_is_told_apart() {
        let kelos_own = with_spec(json!({"type": "object", "properties": {"onCompletion": {
            "type": "object", "description": "OnCompletion configures outbound notifications",
            "properties": {"hooks": {"type": "array", "items": {"type": "object"}}}}}}));
        assert_eq!(
            judge(Some(&crd(json!([version("v1alpha2", true, kelos_own)])))),
            Verdict::KelosReporter
        );
    }

    #[test]
    fn the_follower_reports_changes_and_a_relist_that_finds_nothing() {
        let ours = crate::crd::task_spawner();
        let mut f = Follower::default();
        assert_eq!(f.event(watcher::Event::Init), None);
        let seen = f.event(watcher::Event::InitApply(ours.clone())).unwrap();
        assert_eq!(f.judge(seen.as_ref()), Some(Verdict::Keeps));
        assert_eq!(f.event(watcher::Event::InitDone), None, "already judged");
        let again = f.event(watcher::Event::Apply(ours.clone())).unwrap();
        assert_eq!(f.judge(again.as_ref()), None, "unchanged verdict");
        let gone = f.event(watcher::Event::Delete(ours.clone())).unwrap();
        assert!(
            f.judge(gone.as_ref())
                .unwrap()
                .problem()
                .unwrap()
                .contains("not installed")
        );
        assert_eq!(f.event(watcher::Event::Init), None);
        assert_eq!(
            f.event(watcher::Event::InitDone),
            Some(None),
            "relisted: still nothing"
        );
    }
}
