//! The chart's RBAC proven by running both binaries against it.
//!
//! `helm install` the chart, read the Deployments' args from the installed objects, and run the
//! real `kelos-hooks-admission` and `kelos-hooks-dispatcher` locally with exactly those args (only
//! listen addresses and file paths replaced) and a kubeconfig that impersonates the chart's
//! ServiceAccount of each component. Everything the binaries do must then succeed with no 403:
//! self-managed certificates (Secret, caBundle), leader election, watching Tasks, reading hook
//! Secrets and spawners, recording delivery state, publishing Events. Finally the exact set of
//! permissions each ServiceAccount holds is compared with what the run needed.
//!
//! The API server is shared with concurrently running tests: the webhooks are scoped to a
//! namespace label no namespace carries (as in chart.rs), and the dispatcher is limited to this
//! test's Task namespace (the chart watches every namespace; here that would make this dispatcher
//! deliver other tests' hooks). The cluster-wide list/watch the chart's dispatcher makes is proven
//! separately, read-only, with the same impersonating client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::authorization::v1::{SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kelos_hooks_shared::annotations::{DELIVERIES, REPORT_PHASE};
use kelos_hooks_shared::api::{
    OnCompletion, Phase, SecretKeyRef, SecretRef, Task, TaskSpawner, TaskSpawnerSpec,
};
use kelos_hooks_shared::deliveries::{Deliveries, HookState};
use kelos_hooks_tests::admission_server::ca_bundles;
use kelos_hooks_tests::helm::{self, helm_command};
use kelos_hooks_tests::impersonate::{client_from, impersonating_kubeconfig};
use kelos_hooks_tests::receiver::Receiver;
use kelos_hooks_tests::tasks::{complete, create_secret, create_task, hook, wait_event};
use kelos_hooks_tests::{Cluster, bin, cluster, free_port, workspace_root};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `--set` scoping installed webhooks to a namespace label no namespace has: they match nothing.
const WEBHOOKS_MATCH_NO_NAMESPACE: &str =
    "webhooks.namespaceSelector.matchLabels.kelos-hooks\\.dev/test=chart-matches-no-namespace";
/// The chart renders `--ca-file` only with an extra-CA ConfigMap; its path is replaced locally.
const EXTRA_CA: &str = "dispatcher.extraCA.configMap=receiver-ca";
/// The receiver listens on loopback, which the chart opens like an in-cluster receiver.
const ALLOW_LOOPBACK: &str = "allowCidrs={127.0.0.1/32}";
const WAIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// helm and kubectl

fn chart_dir() -> PathBuf {
    workspace_root().join("charts/kelos-hooks")
}

/// helm with the test cluster's kubeconfig and its own cache/config dirs (nothing from $HOME).
fn helm_std(c: &Cluster) -> std::process::Command {
    helm_command(c, "rbacrun")
}

async fn run(cmd: std::process::Command, what: &str) -> Result<String> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    helm::run(cmd, what).await
}

// ---------------------------------------------------------------------------------------------
// The release and the local processes, torn down even when the test fails

/// Kills the local processes, then uninstalls the release, when dropped (also on panic).
struct Teardown {
    helm: std::process::Command,
    children: Vec<tokio::process::Child>,
}

impl Teardown {
    fn new(c: &Cluster, release: &str, ns: &str) -> Teardown {
        let mut helm = helm_std(c);
        // --no-hooks: no Job controller here (see chart.rs); crd_coexist.rs runs the hook's command.
        helm.args(["uninstall", release, "--namespace", ns, "--no-hooks"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Teardown {
            helm,
            children: Vec::new(),
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        // Blocking, but this is the end of the test and must finish before the runtime goes.
        if let Ok(status) = self.helm.status()
            && !status.success()
        {
            eprintln!("helm uninstall failed with {status}");
        }
    }
}

/// A local process started from a Deployment's args.
struct Local {
    name: &'static str,
    log: PathBuf,
    metrics_port: u16,
}

impl Local {
    fn spawn(
        name: &'static str,
        args: &[String],
        kubeconfig: &Path,
        env: &[(&str, &str)],
        dir: &Path,
        metrics_port: u16,
        guard: &mut Teardown,
    ) -> Result<Local> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(bin(name));
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBE_RS_DEBUG_IMPERSONATE_USER")
            .env_remove("KUBE_RS_DEBUG_IMPERSONATE_GROUP")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        guard
            .children
            .push(cmd.spawn().with_context(|| format!("starting {name}"))?);
        Ok(Local {
            name,
            log,
            metrics_port,
        })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let text = self.logs();
        let lines: Vec<&str> = text.lines().rev().take(40).collect();
        format!(
            "--- last lines of {} ({}):\n{}",
            self.name,
            self.log.display(),
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    async fn get(&self, path: &str) -> Result<u16> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(200) = self.get("/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {WAIT:?}\n{}", self.name, self.tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// No request of the run was refused by authorization.
    fn assert_never_forbidden(&self) {
        let logs = self.logs();
        let refused: Vec<&str> = logs
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("forbidden") || l.contains("code: 403") || l.contains("\"code\":403")
            })
            .collect();
        assert!(
            refused.is_empty(),
            "{} was refused by RBAC:\n{}",
            self.name,
            refused.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment args → local args (pure)

/// What kubelet does to `$(VAR)` in args.
fn expand(arg: &str, env: &BTreeMap<&str, &str>) -> String {
    env.iter()
        .fold(arg.to_owned(), |a, (k, v)| a.replace(&format!("$({k})"), v))
}

/// The chart's args with the flags in `replace` given local values; fails when the chart does
/// not render one of them (the test would otherwise silently run something else).
fn localize(
    chart: &[String],
    replace: &[(&str, String)],
    env: &BTreeMap<&str, &str>,
) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    let args = chart
        .iter()
        .map(|a| {
            let a = expand(a, env);
            match replace
                .iter()
                .find(|(flag, _)| a.starts_with(&format!("{flag}=")))
            {
                Some((flag, value)) => {
                    seen.insert(*flag);
                    format!("{flag}={value}")
                }
                None => a,
            }
        })
        .collect();
    for (flag, _) in replace {
        ensure!(
            seen.contains(flag),
            "the chart no longer renders {flag}: {chart:?}"
        );
    }
    Ok(args)
}

/// The value of `--flag=value` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Result<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
        .with_context(|| format!("{flag} not among {args:?}"))
}

#[test]
fn localize_replaces_only_named_flags_and_expands_env() {
    let chart: Vec<String> = [
        "run",
        "--metrics-listen=0.0.0.0:8081",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--max-age=1h",
    ]
    .map(String::from)
    .into();
    let env = BTreeMap::from([("POD_NAMESPACE", "ns1")]);
    let got = localize(&chart, &[("--metrics-listen", "127.0.0.1:9".into())], &env).unwrap();
    assert_eq!(
        got,
        [
            "run",
            "--metrics-listen=127.0.0.1:9",
            "--lease-namespace=ns1",
            "--max-age=1h"
        ]
    );
    assert!(localize(&chart, &[("--listen", "x".into())], &env).is_err());
    assert_eq!(flag(&got, "--max-age").unwrap(), "1h");
}

// ---------------------------------------------------------------------------------------------
// Impersonation

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// One granted permission: (API group, resource, resource name or "", verb).
type Grant = (String, String, String, String);

/// Everything `client`'s user may do in `ns` (cluster-wide grants included), flattened.
async fn grants(client: &kube::Client, ns: &str) -> Result<BTreeSet<Grant>> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(ns.to_owned()),
        },
        ..Default::default()
    };
    let got = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    let status = got
        .status
        .context("SelfSubjectRulesReview without status")?;
    ensure!(
        !status.incomplete,
        "rules review incomplete: {:?}",
        status.evaluation_error
    );
    let mut out = BTreeSet::new();
    for rule in status.resource_rules {
        let names = rule
            .resource_names
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| vec![String::new()]);
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for name in &names {
                    for verb in &rule.verbs {
                        out.insert((group.clone(), resource.clone(), name.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    for rule in status.non_resource_rules {
        for url in rule.non_resource_urls.unwrap_or_default() {
            for verb in &rule.verbs {
                out.insert(("<url>".into(), url.clone(), String::new(), verb.clone()));
            }
        }
    }
    Ok(out)
}

fn expect(rows: &[(&str, &str, &str, &[&str])]) -> BTreeSet<Grant> {
    rows.iter()
        .flat_map(|(g, r, n, verbs)| {
            verbs
                .iter()
                .map(|v| ((*g).into(), (*r).into(), (*n).into(), (*v).into()))
        })
        .collect()
}

/// What `who` holds in `ns` beyond what any ServiceAccount without bindings holds must be exactly
/// `want`; then, named explicitly, the dangerous things must be absent.
async fn assert_exact_grants(
    who: &str,
    sa: &kube::Client,
    nobody: &kube::Client,
    ns: &str,
    want: &BTreeSet<Grant>,
) -> Result<()> {
    let baseline = grants(nobody, ns).await?;
    let extra: BTreeSet<Grant> = grants(sa, ns)
        .await?
        .difference(&baseline)
        .cloned()
        .collect();
    let wildcards: Vec<&Grant> = extra
        .iter()
        .filter(|(g, r, n, v)| [g, r, n, v].iter().any(|s| s.contains('*')))
        .collect();
    ensure!(
        wildcards.is_empty(),
        "{who} in {ns}: wildcards {wildcards:?}"
    );
    // The TaskSpawner CRD by name is not "the CRDs": a named list/watch only works with the field
    // selector metadata.name (the CRD watch).
    let has = |g: &str, r: &str, v: &str| {
        extra
            .iter()
            .any(|x| x.0 == g && x.1 == r && x.3 == v && x.2 != "taskspawners.kelos.dev")
    };
    for (g, r, v) in [
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "secrets", "delete"),
        ("kelos.dev", "tasks", "delete"),
        ("kelos.dev", "tasks", "deletecollection"),
        ("kelos.dev", "tasks", "update"),
        ("kelos.dev", "taskspawners", "delete"),
        ("kelos.dev", "taskspawners", "patch"),
        ("kelos.dev", "taskspawners", "update"),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "create",
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "create",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "delete",
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "update",
        ),
        ("", "serviceaccounts", "impersonate"),
        ("", "users", "impersonate"),
        ("", "pods", "create"),
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ] {
        ensure!(!has(g, r, v), "{who} in {ns} may {v} {r}.{g}");
    }
    let unneeded: Vec<&Grant> = extra.difference(want).collect();
    let missing: Vec<&Grant> = want.difference(&extra).collect();
    ensure!(
        unneeded.is_empty() && missing.is_empty(),
        "{who} in {ns}:\n  granted beyond what the run needs: {unneeded:?}\n  \
         needed but not granted: {missing:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Objects

async fn deployment_of(c: &Cluster, ns: &str, container: &str) -> Result<Value> {
    let mut cmd = std::process::Command::new(c.tools_dir().join("kubectl"));
    cmd.arg("--kubeconfig").arg(c.kubeconfig()).args([
        "get",
        "deployments",
        "-n",
        ns,
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&run(cmd, "kubectl get deployments").await?)?;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["spec"]["template"]["spec"]["containers"][0]["name"] == container)
        .cloned()
        .with_context(|| format!("no Deployment with container {container} in {ns}"))
}

fn pod_spec_args(d: &Value) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

fn service_account(d: &Value) -> Result<String> {
    d["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .map(String::from)
        .context("Deployment without serviceAccountName")
}

/// Waits until every hook of Task `name` is Delivered and the phase reported.
async fn wait_delivered(api: &Api<Task>, name: &str, hooks: &[&str], d: &Local) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = api.get(name).await?;
        let ann = t.metadata.annotations.clone().unwrap_or_default();
        let deliveries = ann.get(DELIVERIES).and_then(|v| Deliveries::parse(v).ok());
        let delivered = deliveries.as_ref().is_some_and(|ds| {
            hooks.iter().all(|h| {
                ds.hooks
                    .get(*h)
                    .is_some_and(|x| x.state == HookState::Delivered)
            })
        });
        if delivered && ann.get(REPORT_PHASE).map(String::as_str) == Some("Succeeded") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Task {name} not delivered after {WAIT:?}: {ann:?}\n{}",
                d.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binaries_run_on_the_installed_rbac_which_grants_nothing_more() -> Result<()> {
    let c = cluster().await?;
    let admin = c.client().await?;
    let ns = c.namespace("rbacrun").await?;
    let tasks_ns = c.namespace("rbacrun-tasks").await?;
    let release = ns.clone();
    let dir = tempfile::tempdir()?;
    let rx = Receiver::start().await?;

    let mut guard = Teardown::new(c, &release, &ns);
    let mut install = helm_std(c);
    install
        .args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", &ns]);
    for set in [WEBHOOKS_MATCH_NO_NAMESPACE, ALLOW_LOOPBACK, EXTRA_CA] {
        install.args(["--set", set]);
    }
    run(install, "helm install").await?;

    let admission_deploy = deployment_of(c, &ns, "admission").await?;
    let dispatcher_deploy = deployment_of(c, &ns, "dispatcher").await?;
    let admission_sa = service_account(&admission_deploy)?;
    let dispatcher_sa = service_account(&dispatcher_deploy)?;

    // One impersonating kubeconfig per component (and one for a ServiceAccount with no bindings,
    // the baseline every authenticated ServiceAccount has).
    let admin_kubeconfig = std::fs::read_to_string(c.kubeconfig())?;
    let mut kubeconfigs = BTreeMap::new();
    for sa in [
        admission_sa.as_str(),
        dispatcher_sa.as_str(),
        "rbacrun-nobody",
    ] {
        let path = dir.path().join(format!("{sa}.kubeconfig"));
        std::fs::write(&path, impersonating_kubeconfig(&admin_kubeconfig, &ns, sa)?)?;
        kubeconfigs.insert(sa.to_owned(), path);
    }
    let admission_client = client_from(&kubeconfigs[&admission_sa]).await?;
    let dispatcher_client = client_from(&kubeconfigs[&dispatcher_sa]).await?;
    let nobody_client = client_from(&kubeconfigs["rbacrun-nobody"]).await?;

    // Control: the kubeconfigs really impersonate (through kube-rs, as the binaries use them).
    let denied = Api::<Secret>::namespaced(dispatcher_client.clone(), &ns)
        .list(&ListParams::default())
        .await;
    ensure!(
        denied.as_ref().is_err_and(is_forbidden),
        "listing Secrets as the dispatcher must be refused: {denied:?}"
    );

    // ---- admission, with the chart's args
    let admission_pod = format!(
        "{}-local",
        admission_deploy["metadata"]["name"].as_str().unwrap()
    );
    let env = BTreeMap::from([
        ("POD_NAMESPACE", ns.as_str()),
        ("POD_NAME", admission_pod.as_str()),
    ]);
    let chart_args = pod_spec_args(&admission_deploy);
    let metrics_port = free_port();
    let mut args = localize(
        &chart_args,
        &[
            ("--listen", format!("127.0.0.1:{}", free_port())),
            ("--metrics-listen", format!("127.0.0.1:{metrics_port}")),
            (
                "--tls-cert-file",
                dir.path().join("tls/tls.crt").display().to_string(),
            ),
            (
                "--tls-key-file",
                dir.path().join("tls/tls.key").display().to_string(),
            ),
        ],
        &env,
    )?;
    args.extend([
        "--cert-extra-san=127.0.0.1".to_owned(),
        format!("--cert-namespace={ns}"),
    ]);
    for kept in ["--self-managed-certs", "--allow-cidr=127.0.0.1/32"] {
        ensure!(
            chart_args.iter().any(|a| a == kept),
            "chart renders no {kept}: {chart_args:?}"
        );
    }
    let cert_secret = flag(&args, "--cert-secret")?.to_owned();
    let vwc_name = flag(&args, "--validating-webhook-config")?.to_owned();
    let mwc_name = flag(&args, "--mutating-webhook-config")?.to_owned();
    let dispatcher_identity = flag(&args, "--dispatcher-identity")?.to_owned();
    ensure!(
        dispatcher_identity == format!("system:serviceaccount:{ns}:{dispatcher_sa}"),
        "the admission server must trust the identity the dispatcher runs as: {dispatcher_identity}"
    );
    let admission = Local::spawn(
        "kelos-hooks-admission",
        &args,
        &kubeconfigs[&admission_sa],
        &env.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
        dir.path(),
        metrics_port,
        &mut guard,
    )?;
    admission.wait_ready().await?;

    // Its Secret, created through its own permissions, and caBundle patched with its CA.
    let secret = Api::<Secret>::namespaced(admin.clone(), &ns)
        .get(&cert_secret)
        .await
        .with_context(|| admission.tail())?;
    let data = secret.data.unwrap_or_default();
    for key in ["tls.crt", "tls.key", "ca.crt", "ca.key"] {
        ensure!(data.contains_key(key), "{cert_secret} lacks {key}");
    }
    let ca = data["ca.crt"].0.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let v = Api::<ValidatingWebhookConfiguration>::all(admin.clone())
            .get(&vwc_name)
            .await?;
        let m = Api::<MutatingWebhookConfiguration>::all(admin.clone())
            .get(&mwc_name)
            .await?;
        let bundles = ca_bundles(&v, &m);
        // The TaskSpawner validating and mutating webhooks, the Task mutating webhook and the
        // redelivery requester stamp (the Task annotation rules are a ValidatingAdmissionPolicy,
        // which calls no server).
        if bundles.len() == 4 && bundles.iter().all(|b| b.as_deref() == Some(ca.as_slice())) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "caBundle not patched: {} of 4 set\n{}",
                bundles.iter().filter(|b| b.is_some()).count(),
                admission.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ---- dispatcher, with the chart's args
    let dispatcher_pod = format!(
        "{}-local",
        dispatcher_deploy["metadata"]["name"].as_str().unwrap()
    );
    let env = BTreeMap::from([
        ("POD_NAMESPACE", ns.as_str()),
        ("POD_NAME", dispatcher_pod.as_str()),
    ]);
    let chart_args = pod_spec_args(&dispatcher_deploy);
    ensure!(
        !chart_args.iter().any(|a| a.starts_with("--namespace")),
        "the chart now limits the dispatcher's namespaces; revisit the scoping below: {chart_args:?}"
    );
    let metrics_port = free_port();
    let mut args = localize(
        &chart_args,
        &[
            ("--metrics-listen", format!("127.0.0.1:{metrics_port}")),
            ("--ca-file", rx.ca_file().display().to_string()),
        ],
        &env,
    )?;
    // The one addition: see the module docs.
    args.push(format!("--namespace={tasks_ns}"));
    ensure!(flag(&args, "--lease-namespace")? == ns, "{args:?}");
    ensure!(flag(&args, "--allow-cidr")? == "127.0.0.1/32", "{args:?}");
    let lease_name = flag(&args, "--lease-name")?.to_owned();

    let signing = format!(
        "whsec_{}",
        STANDARD.encode(b"rbac-run signing key: 32 bytes!!")
    );
    create_secret(&admin, &tasks_ns, "signing", &[("secret", &signing)]).await?;
    create_secret(&admin, &tasks_ns, "headers", &[("X-Team", "rbac")]).await?;
    let spawner = TaskSpawner::new(
        "issues",
        TaskSpawnerSpec {
            on_completion: Some(OnCompletion {
                hooks: vec![hook("from-spawner", rx.url("/from-spawner"))],
            }),
            ..Default::default()
        },
    );
    Api::<TaskSpawner>::namespaced(admin.clone(), &tasks_ns)
        .create(&PostParams::default(), &spawner)
        .await?;

    let dispatcher = Local::spawn(
        "kelos-hooks-dispatcher",
        &args,
        &kubeconfigs[&dispatcher_sa],
        &env.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
        dir.path(),
        metrics_port,
        &mut guard,
    )?;
    dispatcher.wait_ready().await?;

    // Leader through the chart's Lease, in the release namespace.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
    let deadline = Instant::now() + WAIT;
    let first_renew = loop {
        let lease = leases.get_opt(&lease_name).await?;
        let spec = lease.and_then(|l| l.spec).unwrap_or_default();
        if spec.holder_identity.as_deref() == Some(dispatcher_pod.as_str()) {
            break spec.renew_time;
        }
        if Instant::now() > deadline {
            bail!(
                "Lease {ns}/{lease_name} not held by {dispatcher_pod}: {spec:?}\n{}",
                dispatcher.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A Task with hooks in its annotation (one plain, one with secretRef + signingSecretRef), and
    // one without, whose hooks come from its TaskSpawner.
    let tasks: Api<Task> = Api::namespaced(admin.clone(), &tasks_ns);
    let mut secret_hook = hook("with-secrets", rx.url("/with-secrets"));
    secret_hook.webhook.secret_ref = Some(SecretRef {
        name: "headers".into(),
    });
    secret_hook.webhook.signing_secret_ref = Some(SecretKeyRef {
        name: "signing".into(),
        key: "secret".into(),
    });
    let hooks = [hook("plain", rx.url("/plain")), secret_hook];
    create_task(&tasks, "annotated", Some(&hooks), None).await?;
    create_task(&tasks, "orphan", None, Some("issues")).await?;
    complete(&tasks, "annotated", Phase::Succeeded, Duration::ZERO).await?;
    complete(&tasks, "orphan", Phase::Succeeded, Duration::ZERO).await?;

    wait_delivered(&tasks, "annotated", &["plain", "with-secrets"], &dispatcher).await?;
    wait_delivered(&tasks, "orphan", &["from-spawner"], &dispatcher).await?;
    for path in ["/plain", "/with-secrets", "/from-spawner"] {
        ensure!(
            rx.requests_to(path).len() == 1,
            "{path}: {:?}",
            rx.requests_to(path)
        );
    }
    let signed = &rx.requests_to("/with-secrets")[0];
    ensure!(
        signed.header("x-team") == Some("rbac"),
        "secretRef headers not sent: {:?}",
        signed.headers
    );
    ensure!(
        signed
            .header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,")),
        "not signed: {:?}",
        signed.headers
    );
    ensure!(
        rx.requests_to("/plain")[0]
            .header("webhook-signature")
            .is_none()
    );
    let events = wait_event(&admin, &tasks_ns, "annotated", "WebhookDelivered", "").await?;
    ensure!(
        events
            .iter()
            .any(|e| e.reason == "WebhookDelivered" && e.reporter == "kelos-hooks-dispatcher"),
        "{events:?}"
    );
    let events = wait_event(&admin, &tasks_ns, "orphan", "HooksFromSpawner", "").await?;
    ensure!(
        events
            .iter()
            .any(|e| e.reason == "HooksFromSpawner" && e.reporter == "kelos-hooks-dispatcher"),
        "{events:?}"
    );

    // The Lease is renewed (update by name), not only created.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spec = leases.get(&lease_name).await?.spec.unwrap_or_default();
        ensure!(
            spec.holder_identity.as_deref() == Some(dispatcher_pod.as_str()),
            "{spec:?}"
        );
        if spec.renew_time != first_renew {
            break;
        }
        if Instant::now() > deadline {
            bail!("Lease not renewed within 20s\n{}", dispatcher.tail());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The chart's dispatcher watches every namespace: cluster-wide list and watch, read-only.
    let all_tasks: Api<Task> = Api::all(dispatcher_client.clone());
    let list = all_tasks.list(&ListParams::default().limit(1)).await?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut watch = all_tasks
        .watch(&WatchParams::default().timeout(1), &rv)
        .await?
        .boxed();
    while let Some(event) = watch.next().await {
        event.context("cluster-wide Task watch as the dispatcher")?;
    }

    admission.assert_never_forbidden();
    dispatcher.assert_never_forbidden();
    ensure!(
        admission.get("/readyz").await? == 200,
        "{}",
        admission.tail()
    );

    // ---- no broader than needed: the exact grants, each used above or by a rarer path.
    let common_dispatcher: &[(&str, &str, &str, &[&str])] = &[
        // watch Tasks (list+watch), re-read one before writing (get), record delivery (patch)
        ("kelos.dev", "tasks", "", &["get", "list", "watch", "patch"]),
        // hooks of a Task without snapshot (get); list/watch: the watch for test requests
        // (kelos.dev/webhook-test).
        ("kelos.dev", "taskspawners", "", &["get", "list", "watch"]),
        // the watch of the TaskSpawner CRD (by name)
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "taskspawners.kelos.dev",
            &["get", "list", "watch"],
        ),
        // Events: create; patch when the recorder aggregates a repeat
        ("events.k8s.io", "events", "", &["create", "patch"]),
        // secretRef / signingSecretRef: get by name only
        ("", "secrets", "", &["get"]),
    ];
    let tests_lease = format!("{lease_name}-tests");
    let lease_rows: &[(&str, &str, &str, &[&str])] = &[
        (
            "coordination.k8s.io",
            "leases",
            &lease_name,
            &["get", "update"],
        ),
        // which TaskSpawner test requests were answered
        (
            "coordination.k8s.io",
            "leases",
            &tests_lease,
            &["get", "update"],
        ),
        ("coordination.k8s.io", "leases", "", &["create"]),
    ];
    let mut in_release = expect(common_dispatcher);
    in_release.extend(expect(lease_rows));
    assert_exact_grants(
        "dispatcher",
        &dispatcher_client,
        &nobody_client,
        &ns,
        &in_release,
    )
    .await?;
    assert_exact_grants(
        "dispatcher",
        &dispatcher_client,
        &nobody_client,
        &tasks_ns,
        &expect(common_dispatcher),
    )
    .await?;

    let common_admission: &[(&str, &str, &str, &[&str])] = &[
        ("kelos.dev", "taskspawners", "", &["get", "list", "watch"]),
        // the watch of the TaskSpawner CRD; patch when kelos's CRD lacks onCompletion (here it
        // does not: kelos_coexist.rs and crd_coexist.rs prove that path)
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "taskspawners.kelos.dev",
            &["get", "list", "watch", "patch"],
        ),
        ("events.k8s.io", "events", "", &["create", "patch"]),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            &vwc_name,
            &["get", "patch"],
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            &mwc_name,
            &["get", "patch"],
        ),
    ];
    let cert_rows: &[(&str, &str, &str, &[&str])] = &[
        // get + create used above; update at rotation (self_managed_certs.rs)
        ("", "secrets", &cert_secret, &["get", "update"]),
        ("", "secrets", "", &["create"]),
    ];
    let mut in_release = expect(common_admission);
    in_release.extend(expect(cert_rows));
    assert_exact_grants(
        "admission",
        &admission_client,
        &nobody_client,
        &ns,
        &in_release,
    )
    .await?;
    assert_exact_grants(
        "admission",
        &admission_client,
        &nobody_client,
        &tasks_ns,
        &expect(common_admission),
    )
    .await?;

    drop(guard);
    Ok(())
}
