//! The `onCompletion` rules, one by one: each passing and failing, with its field path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use kelos_hooks_shared::annotations::encode_snapshot;
use kelos_hooks_shared::api::{Hook, OnCompletion, Phase, SecretKeyRef, Webhook};
use kelos_hooks_shared::ip::{IpPolicy, blocked_ranges};
use kelos_hooks_shared::validation::{
    Context, FieldError, Report, Validate, validate_on_completion, validate_on_completion_json,
    validate_snapshot, validate_task_spawner, validate_url,
};
use serde_json::{Value, json};

const OC: &str = "spec.onCompletion";

fn ctx() -> Context<'static> {
    Context::default()
}

fn spawner(on_completion: Value) -> Value {
    json!({
        "apiVersion": "kelos.dev/v1alpha2",
        "kind": "TaskSpawner",
        "metadata": {"name": "weekly", "namespace": "default"},
        "spec": {
            "when": {"cron": {"schedule": "0 9 * * 1"}},
            "taskTemplate": {"type": "claude-code", "credentials": {"type": "api-key", "secretRef": {"name": "k"}}},
            "onCompletion": on_completion,
        }
    })
}

/// A hook that breaks no rule and draws no warning.
fn good_hook(name: &str) -> Value {
    json!({
        "name": name,
        "webhook": {
            "url": format!("https://hooks.example.com/{name}"),
            "signingSecretRef": {"name": "team-hook-signing", "key": "secret"},
        }
    })
}

fn with_hooks(hooks: Vec<Value>) -> Report {
    validate_task_spawner(&spawner(json!({ "hooks": hooks })), &ctx())
}

/// A report for one hook at hooks[0], built from `good_hook` with `edit` applied.
fn one_hook(edit: impl FnOnce(&mut Value)) -> Report {
    let mut hook = good_hook("notify-team");
    edit(&mut hook);
    with_hooks(vec![hook])
}

fn lines(report: &Report) -> Vec<String> {
    report.errors.iter().map(ToString::to_string).collect()
}

/// Asserts exactly one error, at `path`, whose message contains `needle`.
#[track_caller]
fn assert_only_error(report: &Report, path: &str, needle: &str) {
    assert_eq!(
        report.errors.len(),
        1,
        "expected one error, got {:#?}",
        report.errors
    );
    let error = &report.errors[0];
    assert_eq!(error.path, path, "{error}");
    assert!(
        error.message.contains(needle),
        "{error:?} should contain {needle:?}"
    );
}

#[track_caller]
fn assert_valid(report: &Report) {
    assert!(report.is_valid(), "unexpected errors: {:#?}", report.errors);
}

fn url_report(url: &str, policy: &IpPolicy) -> (Report, Option<url::Url>) {
    let mut report = Report::default();
    let parsed = validate_url(url, "u", &Context { ip_policy: policy }, &mut report);
    (report, parsed)
}

fn url_errors(url: &str) -> Vec<String> {
    let (report, parsed) = url_report(url, &IpPolicy::default());
    assert_eq!(
        parsed.is_some(),
        report.is_valid(),
        "Some(url) exactly when valid: {url}"
    );
    report.errors.iter().map(|e| e.message.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The whole object

#[test]
fn contract_example_is_valid_without_warnings() {
    let report = validate_task_spawner(
        &spawner(json!({
            "hooks": [{
                "name": "notify-team",
                "phases": ["Succeeded", "Failed"],
                "webhook": {
                    "url": "https://hooks.example.com/x",
                    "secretRef": {"name": "team-hook-headers"},
                    "signingSecretRef": {"name": "team-hook-signing", "key": "secret"},
                    "format": "Generic",
                }
            }]
        })),
        &ctx(),
    );
    assert_eq!(report, Report::default());
    assert_eq!(report.error_summary(), "");
}

#[test]
fn absent_or_null_on_completion_is_valid() {
    let mut obj = spawner(Value::Null);
    assert_eq!(validate_task_spawner(&obj, &ctx()), Report::default());
    obj["spec"].as_object_mut().unwrap().remove("onCompletion");
    assert_eq!(validate_task_spawner(&obj, &ctx()), Report::default());
    obj.as_object_mut().unwrap().remove("spec");
    assert_eq!(validate_task_spawner(&obj, &ctx()), Report::default());
    assert_eq!(
        validate_on_completion(&Value::Null, OC, &ctx()),
        Report::default()
    );
}

#[test]
fn kelos_fields_are_not_judged() {
    let mut obj = spawner(json!({"hooks": [good_hook("a")]}));
    obj["spec"]["whatever"] = json!({"kelos": ["owns", "this"]});
    obj["spec"]["taskTemplate"]["url"] = json!("http://not-ours.example");
    assert_eq!(validate_task_spawner(&obj, &ctx()), Report::default());
}

#[test]
fn object_and_spec_must_be_objects() {
    let report = validate_task_spawner(&json!("TaskSpawner"), &ctx());
    assert_only_error(&report, "", "must be a JSON/YAML object, got a string");
    let report = validate_task_spawner(&json!({"spec": [1]}), &ctx());
    assert_only_error(&report, "spec", "must be an object, got an array");
}

#[test]
fn on_completion_must_be_an_object() {
    for (value, got) in [
        (json!([]), "an array"),
        (json!("hooks"), "a string"),
        (json!(3), "a number"),
        (json!(true), "a boolean"),
    ] {
        let report = validate_task_spawner(&spawner(value), &ctx());
        assert_only_error(
            &report,
            OC,
            &format!("must be an object with a hooks list, got {got}"),
        );
    }
}

#[test]
fn empty_on_completion_and_empty_hooks_are_valid() {
    assert_eq!(
        validate_task_spawner(&spawner(json!({})), &ctx()),
        Report::default()
    );
    assert_eq!(with_hooks(vec![]), Report::default());
}

#[test]
fn hooks_must_be_an_array() {
    for (value, got) in [
        (json!({"a": 1}), "an object"),
        (json!("x"), "a string"),
        (Value::Null, "null"),
    ] {
        let report = validate_task_spawner(&spawner(json!({ "hooks": value })), &ctx());
        assert_only_error(
            &report,
            "spec.onCompletion.hooks",
            &format!("must be a list of hooks, got {got}"),
        );
    }
}

#[test]
fn eight_hooks_pass_nine_fail() {
    let hooks: Vec<Value> = (0..8).map(|i| good_hook(&format!("hook-{i}"))).collect();
    assert_eq!(with_hooks(hooks.clone()), Report::default());
    let mut nine = hooks;
    nine.push(good_hook("hook-8"));
    let report = with_hooks(nine);
    assert_only_error(
        &report,
        "spec.onCompletion.hooks",
        "must have at most 8 hooks, has 9",
    );
}

#[test]
fn too_many_hooks_still_checks_each_hook() {
    let mut hooks: Vec<Value> = (0..9).map(|i| good_hook(&format!("hook-{i}"))).collect();
    hooks[8]["name"] = json!("Bad_Name");
    let report = with_hooks(hooks);
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    assert_eq!(report.errors[1].path, "spec.onCompletion.hooks[8].name");
}

// ---------------------------------------------------------------------------------------------
// Hook names

#[test]
fn hook_must_be_an_object() {
    let report = with_hooks(vec![json!("notify-team")]);
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0]",
        "must be an object with name, phases and webhook, got a string",
    );
}

#[test]
fn name_is_required() {
    let report = one_hook(|h| {
        h.as_object_mut().unwrap().remove("name");
    });
    assert_only_error(&report, "spec.onCompletion.hooks[0].name", "required");
    let report = one_hook(|h| h["name"] = Value::Null);
    assert_only_error(&report, "spec.onCompletion.hooks[0].name", "required");
}

#[test]
fn name_must_not_be_empty() {
    let report = one_hook(|h| h["name"] = json!(""));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].name",
        "must not be empty",
    );
}

#[test]
fn name_must_be_a_string() {
    let report = one_hook(|h| h["name"] = json!(42));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].name",
        "must be a string, got a number",
    );
}

#[test]
fn name_must_be_a_dns1123_label() {
    for ok in ["a", "notify-team", "0day", "a1-b2", &"a".repeat(63)] {
        assert_valid(&one_hook(|h| h["name"] = json!(ok)));
    }
    for bad in [
        "Notify",
        "notify_team",
        "-notify",
        "notify-",
        "notify.team",
        "notify team",
        "ñ",
        &"a".repeat(64),
    ] {
        let report = one_hook(|h| h["name"] = json!(bad));
        assert_only_error(
            &report,
            "spec.onCompletion.hooks[0].name",
            "is not a DNS-1123 label",
        );
        assert!(
            report.errors[0]
                .message
                .contains("lowercase letters, digits and '-'")
        );
    }
}

#[test]
fn names_must_be_unique_and_the_duplicate_names_the_first() {
    let report = with_hooks(vec![
        good_hook("a"),
        good_hook("b"),
        good_hook("a"),
        good_hook("b"),
        good_hook("a"),
    ]);
    assert_eq!(
        lines(&report),
        [
            "spec.onCompletion.hooks[2].name: duplicate name \"a\", already used by hooks[0]; hook names must be unique",
            "spec.onCompletion.hooks[3].name: duplicate name \"b\", already used by hooks[1]; hook names must be unique",
            "spec.onCompletion.hooks[4].name: duplicate name \"a\", already used by hooks[0]; hook names must be unique",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Phases

#[test]
fn phases_are_optional_and_accept_each_terminal_phase() {
    for phases in [
        json!(["Succeeded"]),
        json!(["Failed"]),
        json!(["Succeeded", "Failed"]),
        json!(["Failed", "Succeeded"]),
        Value::Null,
    ] {
        assert_eq!(
            one_hook(|h| h["phases"] = phases.clone()),
            Report::default(),
            "{phases}"
        );
    }
}

#[test]
fn phases_must_not_be_empty() {
    let report = one_hook(|h| h["phases"] = json!([]));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].phases",
        "must not be empty",
    );
    assert!(
        report.errors[0]
            .message
            .contains("omit phases to fire on both")
    );
}

#[test]
fn unknown_phases_are_named_with_the_allowed_values() {
    for bad in ["Completed", "succeeded", "Running", ""] {
        let report = one_hook(|h| h["phases"] = json!(["Succeeded", bad]));
        assert_only_error(
            &report,
            "spec.onCompletion.hooks[0].phases[1]",
            &format!("unknown phase {bad:?}; allowed: Succeeded, Failed"),
        );
    }
}

#[test]
fn duplicate_phases_are_refused() {
    let report = one_hook(|h| h["phases"] = json!(["Failed", "Succeeded", "Failed"]));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].phases[2]",
        "duplicate phase \"Failed\", already at phases[0]",
    );
}

#[test]
fn phases_must_be_a_list_of_strings() {
    let report = one_hook(|h| h["phases"] = json!("Succeeded"));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].phases",
        "must be a list of phases (Succeeded, Failed), got a string",
    );
    let report = one_hook(|h| h["phases"] = json!([1]));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].phases[0]",
        "must be a string",
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook and URL

#[test]
fn webhook_is_required_and_an_object() {
    let report = one_hook(|h| {
        h.as_object_mut().unwrap().remove("webhook");
    });
    assert_only_error(&report, "spec.onCompletion.hooks[0].webhook", "required");
    let report = one_hook(|h| h["webhook"] = json!("https://hooks.example.com/"));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook",
        "must be an object with url",
    );
}

#[test]
fn url_is_required_and_a_string() {
    let report = one_hook(|h| {
        h["webhook"].as_object_mut().unwrap().remove("url");
    });
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook.url",
        "required",
    );
    let report = one_hook(|h| h["webhook"]["url"] = json!(["https://a.example"]));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook.url",
        "must be a string (an https:// URL), got an array",
    );
}

#[test]
fn url_must_not_be_empty() {
    for empty in ["", "   "] {
        let report = one_hook(|h| h["webhook"]["url"] = json!(empty));
        assert_only_error(
            &report,
            "spec.onCompletion.hooks[0].webhook.url",
            "must not be empty",
        );
    }
}

#[test]
fn url_length_limit_is_2048() {
    let base = "https://hooks.example.com/";
    let at_limit = format!("{base}{}", "a".repeat(2048 - base.len()));
    assert_eq!(at_limit.len(), 2048);
    assert!(url_errors(&at_limit).is_empty());
    let over = format!("{at_limit}a");
    assert_eq!(
        url_errors(&over),
        [
            "must be at most 2048 characters, has 2049; shorten it (move long parameters into the payload or secretRef headers)"
        ]
    );
}

#[test]
fn url_must_use_https() {
    for url in [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/",
        "ws://hooks.example.com/",
        "file:///etc/passwd",
    ] {
        let errors = url_errors(url);
        assert!(
            errors.iter().any(|e| e.starts_with("must use https")),
            "{url}: {errors:?}"
        );
    }
    let report = one_hook(|h| h["webhook"]["url"] = json!("http://hooks.example.com/x"));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook.url",
        "must use https, not http",
    );
}

#[test]
fn url_must_be_absolute() {
    for url in ["/hooks/x", "hooks.example.com/x", "//hooks.example.com/x"] {
        assert_eq!(
            url_errors(url),
            ["must be an absolute URL such as https://hooks.example.com/path"],
            "{url}"
        );
    }
}

#[test]
fn url_must_have_a_host() {
    for url in ["https://", "https:///x", "https://:443/"] {
        let errors = url_errors(url);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(
            errors[0].contains("host") || errors[0].contains("not a valid URL"),
            "{url}: {errors:?}"
        );
    }
    let errors = url_errors("mailto:ops@example.com");
    assert!(
        errors.iter().any(|e| e.contains("must have a host")),
        "{errors:?}"
    );
}

#[test]
fn url_must_be_written_plainly() {
    for url in [
        "HTTPS://hooks.example.com/",
        "https:hooks.example.com/",
        "https:/hooks.example.com/",
        "https:\\\\hooks.example.com/",
    ] {
        assert_eq!(
            url_errors(url),
            ["must start with https:// (lowercase) followed directly by the host"],
            "{url}"
        );
    }
}

#[test]
fn url_must_not_contain_whitespace() {
    for url in [
        "https://hooks.example.com/a b",
        " https://hooks.example.com/",
        "https://hooks.example.com/\n",
        "https://hooks.\texample.com/",
    ] {
        let errors = url_errors(url);
        assert_eq!(errors.len(), 1, "{url:?}");
        assert!(errors[0].contains("must not contain spaces"), "{errors:?}");
    }
}

#[test]
fn url_is_not_echoed_in_parse_errors() {
    let errors = url_errors("https://hooks.example.com:99999/secret-path-token");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("not a valid URL"), "{errors:?}");
    assert!(!errors[0].contains("secret-path-token"), "{errors:?}");
}

#[test]
fn url_must_not_contain_credentials() {
    for url in [
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://:pass@hooks.example.com/",
        "https://@hooks.example.com/",
    ] {
        let errors = url_errors(url);
        assert_eq!(
            errors,
            ["must not contain credentials; put them in secretRef"],
            "{url}"
        );
        assert!(!errors[0].contains("pass"), "never echo the password");
    }
}

#[test]
fn url_port_zero_is_refused_other_ports_fine() {
    assert_eq!(url_errors("https://hooks.example.com:0/").len(), 1);
    assert!(url_errors("https://hooks.example.com:8443/x").is_empty());
}

#[test]
fn url_valid_forms() {
    for url in [
        "https://hooks.example.com",
        "https://hooks.example.com/x",
        "https://hooks.example.com:8443/a/b?team=core&x=1",
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "https://bücher.example/",
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/hook",
        "https://internal.svc.cluster.local/", // host names are judged at delivery time, after resolution
    ] {
        let (report, parsed) = url_report(url, &IpPolicy::default());
        assert_valid(&report);
        assert!(parsed.is_some(), "{url}");
    }
}

#[test]
fn url_returns_parsed_url_only_when_valid() {
    let (_, parsed) = url_report("https://hooks.example.com:8443/x", &IpPolicy::default());
    assert_eq!(parsed.unwrap().port(), Some(8443));
    let (_, parsed) = url_report("https://10.0.0.1/x", &IpPolicy::default());
    assert!(parsed.is_none());
}

/// One IP-literal URL in every blocked range (the last address of each) is refused with the range.
#[test]
fn ip_literal_hosts_in_every_blocked_range() {
    for (range, reason) in blocked_ranges() {
        let net: ipnet::IpNet = range.parse().unwrap();
        let ip = net.broadcast();
        let url = match ip {
            IpAddr::V4(v4) => format!("https://{v4}/hook"),
            IpAddr::V6(v6) => format!("https://[{v6}]/hook"),
        };
        let errors = url_errors(&url);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(
            errors[0].contains(&format!("is in blocked range {range} ({reason})")),
            "{url}: {errors:?}"
        );
        assert!(
            errors[0].contains("--allow-cidr"),
            "says what to do: {errors:?}"
        );
    }
}

#[test]
fn ip_literal_hosts_just_outside_blocked_ranges_pass() {
    for url in [
        "https://9.255.255.255/",
        "https://11.0.0.0/",
        "https://100.63.255.255/",
        "https://100.128.0.0/",
        "https://126.255.255.255/",
        "https://128.0.0.0/",
        "https://172.15.255.255/",
        "https://172.32.0.0/",
        "https://192.167.255.255/",
        "https://192.169.0.0/",
        "https://223.255.255.255/",
        "https://[2001:200::]/",
        "https://[2003::1]/",
        "https://[fe00::1]/",
    ] {
        assert!(url_errors(url).is_empty(), "{url}: {:?}", url_errors(url));
    }
}

#[test]
fn decimal_hex_octal_ipv4_forms_are_normalised_and_caught() {
    for url in [
        "https://2130706433/",          // decimal 127.0.0.1
        "https://0x7f.1/",              // hex + shorthand
        "https://0x7f000001/",          // hex
        "https://0177.0.0.1/",          // octal
        "https://017700000001/",        // octal, one part
        "https://127.1/",               // shorthand
        "https://127.0.0.1./",          // trailing dot
        "https://0/",                   // 0.0.0.0
        "https://0x0A.0.0.1/",          // 10.0.0.1
        "https://3232235777/",          // 192.168.1.1
        "https://0251.0376.0251.0376/", // 169.254.169.254
    ] {
        let errors = url_errors(url);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(
            errors[0].contains("is in blocked range"),
            "{url}: {errors:?}"
        );
    }
    let errors = url_errors("https://0x7f.1/");
    assert!(
        errors[0].contains("127.0.0.1 is in blocked range 127.0.0.0/8 (loopback)"),
        "{errors:?}"
    );
    assert!(
        url_errors("https://134744072/").is_empty(),
        "8.8.8.8 in decimal is public"
    );
}

#[test]
fn ipv6_literals_and_ipv4_mapped() {
    assert!(url_errors("https://[::ffff:8.8.8.8]/").is_empty());
    for (url, range) in [
        ("https://[::ffff:127.0.0.1]/", "127.0.0.0/8"),
        ("https://[::ffff:7f00:1]/", "127.0.0.0/8"),
        ("https://[::ffff:10.0.0.1]/", "10.0.0.0/8"),
        ("https://[::ffff:169.254.169.254]/", "169.254.0.0/16"),
        ("https://[::1]/", "::1/128"),
        ("https://[::]/", "::/128"),
        ("https://[::127.0.0.1]/", "::/96"),
        ("https://[0:0:0:0:0:0:0:1]/", "::1/128"),
        ("https://[fd00::1]/", "fc00::/7"),
        ("https://[FE80::1]/", "fe80::/10"),
    ] {
        let errors = url_errors(url);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(
            errors[0].contains(&format!("blocked range {range}")),
            "{url}: {errors:?}"
        );
    }
}

#[test]
fn blocked_ipv4_mapped_suggests_the_plain_ipv4_for_the_allowlist() {
    let errors = url_errors("https://[::ffff:10.0.0.1]/");
    assert!(
        errors[0].contains("::ffff:10.0.0.1 is in blocked range 10.0.0.0/8"),
        "{errors:?}"
    );
    assert!(
        errors[0].contains("add 10.0.0.1 to --allow-cidr"),
        "{errors:?}"
    );
}

#[test]
fn allowlist_opens_blocked_ranges() {
    let policy = IpPolicy::from_cidrs(&["127.0.0.0/8", "10.0.0.0/8"]).unwrap();
    for url in [
        "https://127.0.0.1:8443/hook",
        "https://2130706433/",
        "https://[::ffff:10.1.2.3]/",
        "https://10.9.9.9/",
    ] {
        let (report, parsed) = url_report(url, &policy);
        assert_valid(&report);
        assert!(parsed.is_some());
    }
    let (report, _) = url_report("https://192.168.0.1/", &policy);
    assert!(!report.is_valid());
    // The same via a whole TaskSpawner.
    let obj = spawner(
        json!({"hooks": [{"name": "a", "webhook": {"url": "https://10.0.0.5/x", "secretRef": {"name": "h"}}}]}),
    );
    assert_valid(&validate_task_spawner(
        &obj,
        &Context { ip_policy: &policy },
    ));
    assert!(!validate_task_spawner(&obj, &ctx()).is_valid());
}

#[test]
fn localhost_is_judged_as_both_loopback_addresses() {
    for host in [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
        "a.b.localhost",
    ] {
        let url = format!("https://{host}:8443/hook");
        let errors = url_errors(&url);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(
            errors[0].contains("always means the local host"),
            "{errors:?}"
        );
        assert!(errors[0].contains("127.0.0.0/8 (loopback)"), "{errors:?}");
    }
    let only_v4 = IpPolicy::from_cidrs(&["127.0.0.0/8"]).unwrap();
    let (report, _) = url_report("https://localhost/", &only_v4);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].message.contains("::1/128"),
        "{:?}",
        report.errors
    );
    let both = IpPolicy::from_cidrs(&["127.0.0.0/8", "::1"]).unwrap();
    assert_valid(&url_report("https://localhost/", &both).0);
    // Merely containing "localhost" is an ordinary name.
    assert!(url_errors("https://localhost.example.com/").is_empty());
    assert!(url_errors("https://mylocalhost/").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Secret references and format

#[test]
fn secret_ref_rules() {
    assert_eq!(
        one_hook(|h| h["webhook"]["secretRef"] = json!({"name": "team.hook-headers"})),
        Report::default()
    );
    let path = "spec.onCompletion.hooks[0].webhook.secretRef";
    assert_only_error(
        &one_hook(|h| h["webhook"]["secretRef"] = json!("headers")),
        path,
        "must be an object with name, got a string",
    );
    assert_only_error(
        &one_hook(|h| h["webhook"]["secretRef"] = json!({})),
        &format!("{path}.name"),
        "required",
    );
    assert_only_error(
        &one_hook(|h| h["webhook"]["secretRef"] = json!({"name": ""})),
        &format!("{path}.name"),
        "must not be empty",
    );
    for bad in ["Team", "team_headers", "-team", "team.", &"a".repeat(254)] {
        let report = one_hook(|h| h["webhook"]["secretRef"] = json!({"name": bad}));
        assert_only_error(
            &report,
            &format!("{path}.name"),
            "is not a valid Secret name",
        );
    }
    assert_only_error(
        &one_hook(|h| h["webhook"]["secretRef"] = json!({"name": 1})),
        &format!("{path}.name"),
        "must be a string",
    );
    let report = one_hook(|h| h["webhook"]["secretRef"] = json!({"name": "h", "key": "x"}));
    assert_only_error(
        &report,
        &format!("{path}.key"),
        "unknown field; allowed: name",
    );
}

#[test]
fn signing_secret_ref_rules() {
    let path = "spec.onCompletion.hooks[0].webhook.signingSecretRef";
    for key in ["secret", "SIGNING_KEY", "whsec.key-1", &"k".repeat(253)] {
        assert_eq!(
            one_hook(|h| h["webhook"]["signingSecretRef"]["key"] = json!(key)),
            Report::default()
        );
    }
    let report = one_hook(|h| h["webhook"]["signingSecretRef"] = json!({"name": "s"}));
    assert_only_error(&report, &format!("{path}.key"), "required");
    let report = one_hook(|h| h["webhook"]["signingSecretRef"] = json!({"key": "secret"}));
    assert_only_error(&report, &format!("{path}.name"), "required");
    for bad in ["a/b", "with space", ".", "..", "..x", &"k".repeat(254)] {
        let report = one_hook(|h| h["webhook"]["signingSecretRef"]["key"] = json!(bad));
        assert_only_error(&report, &format!("{path}.key"), "is not a valid Secret key");
    }
    let report = one_hook(|h| h["webhook"]["signingSecretRef"]["key"] = json!(""));
    assert_only_error(&report, &format!("{path}.key"), "must not be empty");
    let report = one_hook(|h| h["webhook"]["signingSecretRef"] = json!([]));
    assert_only_error(
        &report,
        path,
        "must be an object with name and key, got an array",
    );
}

#[test]
fn format_rules() {
    for format in ["Generic", "CloudEvents", "Slack", "MSTeams", "Discord"] {
        assert_eq!(
            one_hook(|h| h["webhook"]["format"] = json!(format)),
            Report::default()
        );
    }
    let path = "spec.onCompletion.hooks[0].webhook.format";
    for bad in ["slack", "JSON", ""] {
        let report = one_hook(|h| h["webhook"]["format"] = json!(bad));
        assert_only_error(
            &report,
            path,
            &format!(
                "unknown format {bad:?}; allowed: Generic, CloudEvents, Slack, PagerDuty, MSTeams, \
                 Discord, Template"
            ),
        );
    }
    // A URL pasted into `format` is named without its credentials.
    let report =
        one_hook(|h| h["webhook"]["format"] = json!("https://u:pw@h.example.com/x?token=t"));
    assert_only_error(&report, path, "unknown format \"https://h.example.com\"");
    assert_only_error(
        &one_hook(|h| h["webhook"]["format"] = json!(1)),
        path,
        "must be a string",
    );
}

fn pager_duty_hook(h: &mut Value) {
    h["webhook"] = json!({
        "url": "https://events.pagerduty.com/v2/enqueue",
        "format": "PagerDuty",
        "pagerDuty": {"routingKeySecretRef": {"name": "pd", "key": "routing-key"}},
    });
}

#[test]
fn pager_duty_rules() {
    // The routing key authenticates: no "add signingSecretRef" warning.
    assert_eq!(one_hook(pager_duty_hook), Report::default());
    let path = "spec.onCompletion.hooks[0].webhook.pagerDuty";
    assert_only_error(
        &one_hook(|h| {
            pager_duty_hook(h);
            h["webhook"].as_object_mut().unwrap().remove("pagerDuty");
        }),
        path,
        "required with format PagerDuty; set pagerDuty.routingKeySecretRef",
    );
    assert_only_error(
        &one_hook(|h| {
            pager_duty_hook(h);
            h["webhook"]["pagerDuty"] = json!({"triggerOnSucceeded": true});
        }),
        &format!("{path}.routingKeySecretRef"),
        "required",
    );
    let report = one_hook(|h| {
        pager_duty_hook(h);
        h["webhook"]["pagerDuty"]["routingKeySecretRef"] = json!({"name": "pd"});
        h["webhook"]["pagerDuty"]["triggerOnSucceeded"] = json!("yes");
    });
    assert_eq!(
        lines(&report),
        [
            format!(
                "{path}.routingKeySecretRef.key: required; the key in the Secret that holds the PagerDuty routing key"
            ),
            format!("{path}.triggerOnSucceeded: must be true or false, got a string"),
        ]
    );
    assert_only_error(
        &one_hook(|h| {
            h["webhook"]["pagerDuty"] = json!({"routingKeySecretRef": {"name": "pd", "key": "k"}})
        }),
        path,
        "only for format PagerDuty, but format is Generic",
    );
    // [Succeeded] alone never fires without the opt-in.
    assert_only_error(
        &one_hook(|h| {
            pager_duty_hook(h);
            h["phases"] = json!(["Succeeded"]);
        }),
        "spec.onCompletion.hooks[0].phases",
        "would never fire; add Failed, or set webhook.pagerDuty.triggerOnSucceeded: true",
    );
    assert_eq!(
        one_hook(|h| {
            pager_duty_hook(h);
            h["phases"] = json!(["Succeeded"]);
            h["webhook"]["pagerDuty"]["triggerOnSucceeded"] = json!(true);
        }),
        Report::default()
    );
}

#[test]
fn pager_duty_fires_on_succeeded_only_when_asked() {
    let mut v = good_hook("pd");
    pager_duty_hook(&mut v);
    let mut hook: Hook = serde_json::from_value(v).unwrap();
    assert!(hook.fires_on(Phase::Failed));
    assert!(!hook.fires_on(Phase::Succeeded));
    hook.webhook
        .pager_duty
        .as_mut()
        .unwrap()
        .trigger_on_succeeded = true;
    assert!(hook.fires_on(Phase::Succeeded));
    hook.phases = Some(vec![Phase::Failed]);
    assert!(!hook.fires_on(Phase::Succeeded), "phases still rule");
}

fn template_hook(body: &str) -> impl FnOnce(&mut Value) + '_ {
    move |h| {
        h["webhook"]["format"] = json!("Template");
        h["webhook"]["template"] = json!({"body": body});
    }
}

#[test]
fn template_rules() {
    let good = r#"{"text": {{ ("kelos Task " ~ task.name ~ " " ~ task.phase) | tojson }}}"#;
    assert_eq!(one_hook(template_hook(good)), Report::default());
    let body = "spec.onCompletion.hooks[0].webhook.template.body";
    assert_only_error(
        &one_hook(template_hook("{% if %}")),
        body,
        "syntax error: syntax error",
    );
    assert_only_error(
        &one_hook(template_hook(r#"{"a": {{ task.costUSD | tojson }}}"#)),
        body,
        "unknown variable(s) task.costUSD; available: type, id, hook, timestamp, task",
    );
    assert_only_error(
        &one_hook(template_hook(r#"{"text": "{{ task.message }}"}"#)),
        body,
        "fails for a sample Succeeded Task (message with quotes and a line break): rendered body is \
         not valid JSON",
    );
    let report = one_hook(|h| {
        template_hook("{{ task.message }}")(h);
        h["webhook"]["template"]["contentType"] = json!("text/plain");
    });
    assert_eq!(report, Report::default());
    assert_only_error(
        &one_hook(|h| {
            template_hook("{{ task.message }}")(h);
            h["webhook"]["template"]["contentType"] = json!("plain text");
        }),
        "spec.onCompletion.hooks[0].webhook.template.contentType",
        "must be a media type",
    );
    assert_only_error(
        &one_hook(|h| h["webhook"]["format"] = json!("Template")),
        "spec.onCompletion.hooks[0].webhook.template",
        "required with format Template",
    );
    assert_only_error(
        &one_hook(|h| h["webhook"]["template"] = json!({"body": "x"})),
        "spec.onCompletion.hooks[0].webhook.template",
        "only for format Template, but format is Generic",
    );
    assert_only_error(
        &one_hook(|h| {
            template_hook("x")(h);
            h["webhook"]["template"] = json!({"body": 1, "contentType": "text/plain"});
        }),
        body,
        "must be a string (the template), got a number",
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown fields

#[test]
fn unknown_fields_are_errors_with_suggestions() {
    let report = validate_task_spawner(
        &spawner(json!({
            "hook": [],
            "hooks": [{
                "name": "a",
                "phase": ["Failed"],
                "webhook": {
                    "url": "https://hooks.example.com/",
                    "signingSecretref": {"name": "s", "key": "k"},
                    "headers": {"X": "y"},
                },
            }],
        })),
        &ctx(),
    );
    assert_eq!(
        lines(&report),
        [
            "spec.onCompletion.hook: unknown field; allowed: hooks (did you mean hooks?)",
            "spec.onCompletion.hooks[0].phase: unknown field; allowed: name, phases, webhook (did you mean phases?)",
            "spec.onCompletion.hooks[0].webhook.headers: unknown field; allowed: url, secretRef, signingSecretRef, format, pagerDuty, template",
            "spec.onCompletion.hooks[0].webhook.signingSecretref: unknown field; allowed: url, secretRef, signingSecretRef, format, pagerDuty, template (did you mean signingSecretRef?)",
        ]
    );
    let report = one_hook(|h| h["webhook"]["signingSecretRef"]["Key"] = json!("x"));
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook.signingSecretRef.Key",
        "did you mean key?",
    );
}

// ---------------------------------------------------------------------------------------------
// All at once

#[test]
fn every_violation_is_reported_at_once_with_its_path() {
    let report = with_hooks(vec![
        json!({"name": "Bad", "phases": [], "webhook": {"url": "https://hooks.example.com/", "secretRef": {"name": "h"}}}),
        json!({"name": "ok", "phases": ["Done", "Failed", "Failed"], "webhook": {"url": "https://user:pw@10.0.0.1/", "format": "xml", "secretRef": {"name": "h"}}}),
        json!({"name": "ok", "webhook": {"url": "http://hooks.example.com/", "secretRef": {"name": "h"}}}),
        json!({"webhook": {"secretRef": {}}}),
    ]);
    let paths: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.onCompletion.hooks[0].name",
            "spec.onCompletion.hooks[0].phases",
            "spec.onCompletion.hooks[1].phases[0]",
            "spec.onCompletion.hooks[1].phases[2]",
            "spec.onCompletion.hooks[1].webhook.url",
            "spec.onCompletion.hooks[1].webhook.url",
            "spec.onCompletion.hooks[1].webhook.format",
            "spec.onCompletion.hooks[2].name",
            "spec.onCompletion.hooks[2].webhook.url",
            "spec.onCompletion.hooks[3].name",
            "spec.onCompletion.hooks[3].webhook.url",
            "spec.onCompletion.hooks[3].webhook.secretRef.name",
        ]
    );
    let summary = report.error_summary();
    assert!(
        summary.contains("spec.onCompletion.hooks[2].webhook.url: must use https"),
        "{summary}"
    );
    assert!(summary.contains("spec.onCompletion.hooks[1].webhook.url: must not contain credentials; put them in secretRef"));
    assert!(summary.contains(
        "spec.onCompletion.hooks[2].name: duplicate name \"ok\", already used by hooks[1]"
    ));
    assert_eq!(
        summary.matches("; spec.onCompletion").count(),
        report.errors.len() - 1,
        "{summary}"
    );
}

#[test]
fn report_helpers() {
    let mut report = Report::default();
    assert!(report.is_valid());
    report.error("a.b", "first");
    report.error("", "second");
    report.warn("a.c", "careful");
    assert!(!report.is_valid());
    assert_eq!(report.error_summary(), "a.b: first; second");
    assert_eq!(report.warnings, ["a.c: careful"]);
    let error = FieldError {
        path: "spec.onCompletion.hooks[0].name".into(),
        message: "required".into(),
    };
    assert_eq!(
        error.to_string(),
        "spec.onCompletion.hooks[0].name: required"
    );
    let mut other = Report::default();
    other.merge(report.clone());
    assert_eq!(other, report);
}

// ---------------------------------------------------------------------------------------------
// Warnings

#[test]
fn warns_about_credential_like_query_parameters() {
    for name in [
        "token",
        "access_token",
        "key",
        "api_key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "sig",
        "signature",
        "auth",
        "code",
        "TOKEN",
        "Api-Key",
        "ApiKey",
    ] {
        let url = format!("https://hooks.example.com/x?team=a&{name}=abc123");
        let report = one_hook(|h| h["webhook"]["url"] = json!(url));
        assert_valid(&report);
        assert_eq!(report.warnings.len(), 1, "{name}: {:?}", report.warnings);
        let warning = &report.warnings[0];
        assert!(
            warning.starts_with("spec.onCompletion.hooks[0].webhook.url: "),
            "{warning}"
        );
        assert!(
            warning.contains("URLs are copied into Task annotations"),
            "{warning}"
        );
        assert!(warning.contains("secretRef"), "{warning}");
        assert!(
            !warning.contains("abc123"),
            "the value is never echoed: {warning}"
        );
    }
    for url in [
        "https://hooks.example.com/x?team=a&tokens=1",
        "https://hooks.example.com/token/x",
        "https://hooks.example.com/?monkey=1",
    ] {
        assert_eq!(
            one_hook(|h| h["webhook"]["url"] = json!(url)),
            Report::default(),
            "{url}"
        );
    }
    // Repeated parameter: one warning.
    let report = one_hook(|h| {
        h["webhook"]["url"] = json!("https://hooks.example.com/?token=a&token=b&sig=c")
    });
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
}

#[test]
fn warns_about_fragments() {
    let report = one_hook(|h| h["webhook"]["url"] = json!("https://hooks.example.com/x#section"));
    assert_valid(&report);
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].starts_with(
        "spec.onCompletion.hooks[0].webhook.url: has a #fragment, which is never sent"
    ));
}

#[test]
fn warns_when_the_receiver_cannot_authenticate_the_sender() {
    let report = with_hooks(vec![
        json!({"name": "a", "webhook": {"url": "https://hooks.example.com/"}}),
    ]);
    assert_valid(&report);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0]
            .starts_with("spec.onCompletion.hooks[0].webhook: no signingSecretRef or secretRef")
    );
    assert!(report.warnings[0].contains("cannot authenticate the sender"));
    let with_headers = json!({"name": "a", "webhook": {"url": "https://hooks.example.com/", "secretRef": {"name": "h"}}});
    assert_eq!(with_hooks(vec![with_headers]), Report::default());
}

#[test]
fn warnings_fit_kubectl() {
    // The API server may truncate admission warnings longer than 256 characters.
    let report = with_hooks(vec![
        json!({"name": "a", "webhook": {"url": "https://hooks.example.com/?api_key=1#f"}}),
    ]);
    assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
    for warning in &report.warnings {
        assert!(warning.len() <= 256, "{} chars: {warning}", warning.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The Task annotation and typed values

fn typed_hook(name: &str, url: &str) -> Hook {
    Hook {
        name: name.into(),
        phases: Some(vec![Phase::Failed]),
        webhook: Webhook {
            url: url.into(),
            secret_ref: None,
            signing_secret_ref: Some(SecretKeyRef {
                name: "s".into(),
                key: "k".into(),
            }),
            format: None,
            pager_duty: None,
            template: None,
        },
    }
}

#[test]
fn snapshot_annotation_uses_the_same_rules() {
    let good = encode_snapshot(&[typed_hook("a", "https://hooks.example.com/")]);
    assert_eq!(validate_snapshot(&good, &ctx()), Report::default());

    let bad = encode_snapshot(&[
        typed_hook("a", "https://127.0.0.1/"),
        typed_hook("a", "http://x.example/"),
    ]);
    let report = validate_snapshot(&bad, &ctx());
    assert_eq!(
        report
            .errors
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        [
            "metadata.annotations[kelos.dev/on-completion].hooks[0].webhook.url",
            "metadata.annotations[kelos.dev/on-completion].hooks[1].name",
            "metadata.annotations[kelos.dev/on-completion].hooks[1].webhook.url",
        ]
    );

    for garbage in ["", "{", "not json", "[1,2"] {
        let report = validate_snapshot(garbage, &ctx());
        assert_only_error(
            &report,
            "metadata.annotations[kelos.dev/on-completion]",
            "not valid JSON",
        );
    }
    assert_only_error(
        &validate_snapshot("null", &ctx()),
        "metadata.annotations[kelos.dev/on-completion]",
        "got null",
    );
    assert_only_error(
        &validate_snapshot("[]", &ctx()),
        "metadata.annotations[kelos.dev/on-completion]",
        "must be an object",
    );
    assert_eq!(validate_snapshot("{}", &ctx()), Report::default());
}

#[test]
fn typed_values_validate_by_the_same_rules() {
    let typed = OnCompletion {
        hooks: vec![
            typed_hook("a", "https://hooks.example.com/"),
            typed_hook("a", "https://[::1]/"),
        ],
    };
    let mut report = Report::default();
    typed.validate(OC, &ctx(), &mut report);
    assert_eq!(
        lines(&report)
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default())
            .collect::<Vec<_>>(),
        [
            "spec.onCompletion.hooks[1].name",
            "spec.onCompletion.hooks[1].webhook.url"
        ]
    );
    let mut report = Report::default();
    typed_hook("Bad", "https://hooks.example.com/").validate("h", &ctx(), &mut report);
    assert_only_error(&report, "h.name", "DNS-1123");
    let mut report = Report::default();
    typed_hook("a", "http://hooks.example.com/")
        .webhook
        .validate("w", &ctx(), &mut report);
    assert_only_error(&report, "w.url", "must use https");
}

/// What validation accepts, the typed API can read (the admission server and dispatcher rely on it).
#[test]
fn accepted_values_deserialise_into_the_typed_api() {
    let cases = [
        json!({}),
        json!({"hooks": []}),
        json!({"hooks": [good_hook("a")]}),
        json!({"hooks": [{"name": "a", "phases": null, "webhook": {"url": "https://h.example/", "secretRef": null, "format": null}}]}),
        json!({"hooks": [{"name": "b", "phases": ["Failed"], "webhook": {"url": "https://h.example/?token=1#x", "format": "Slack", "secretRef": {"name": "h"}}}]}),
    ];
    for case in cases {
        assert_valid(&validate_on_completion(&case, OC, &ctx()));
        let typed: OnCompletion =
            serde_json::from_value(case.clone()).unwrap_or_else(|e| panic!("{case}: {e}"));
        let mut report = Report::default();
        typed.validate(OC, &ctx(), &mut report);
        assert_valid(&report);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON text (the admission review's `spec.onCompletion`, the Task annotation)

fn text_hook(name: &str, url: &str) -> String {
    format!(
        r#"{{"name": "{name}", "webhook": {{"url": "{url}", "signingSecretRef": {{"name": "s", "key": "k"}}}}}}"#
    )
}

fn text_hooks(items: &[String]) -> String {
    format!(r#"{{"hooks": [{}]}}"#, items.join(", "))
}

#[test]
fn valid_text_is_valid_and_escapes_decode_before_the_rules() {
    let eight = kelos_hooks_shared::fixtures::eight_hooks_json();
    assert_eq!(
        validate_on_completion_json(&eight, OC, &ctx()),
        Report::default()
    );
    for text in [
        "null",
        " null\n",
        "{}",
        r#"{"hooks": []}"#,
        &text_hooks(&[text_hook(
            r"\u0068ook",
            r"\u0068ttps://hooks.example.com/\u00e9",
        )]),
        r#"{"hooks":[{"name":"a","phases":["F\u0061iled"],"webhook":{"url":"https://h.example/x","signingSecretRef":{"n\u0061me":"s","key":"k"}}}]}"#,
        "{\n\t\"hooks\" :\r\n [ ]\n}\n",
    ] {
        assert_eq!(
            validate_on_completion_json(text, OC, &ctx()),
            Report::default(),
            "{text}"
        );
    }
    // An escaped misspelling is still a misspelling, named as decoded.
    let report = validate_on_completion_json(
        r#"{"hooks":[{"name":"a","webhook":{"url":"https://h.example/","\u0055RL":1}}]}"#,
        OC,
        &ctx(),
    );
    assert_only_error(
        &report,
        "spec.onCompletion.hooks[0].webhook.URL",
        "did you mean url?",
    );
}

#[test]
fn text_that_is_not_json_is_unreadable() {
    for text in [
        "",
        " ",
        "{",
        r#"{"hooks": [}"#,
        r#"{"hooks": [1,]}"#,
        "nul",
        "{} x",
        "{'hooks': []}",
        r#"{"hooks": "\ud800"}"#,
        "{\"hooks\": \"a\u{1}b\"}",
        r#"{"hooks": 1e400}"#,
        // Deeper than serde_json's recursion limit: an error, never a stack overflow.
        &("[".repeat(200) + &"]".repeat(200)),
        &("[".repeat(100_000)),
        r#"{"hooks": [{"name": "a" "webhook": {}}]}"#,
    ] {
        let report = validate_on_completion_json(text, OC, &ctx());
        assert_eq!(report.errors.len(), 1, "{text:?}: {report:?}");
        assert_eq!(report.errors[0].path, OC);
        assert!(
            report.errors[0].message.starts_with("unreadable: "),
            "{report:?}"
        );
        assert!(report.warnings.is_empty());
    }
    let report = validate_snapshot("{", &ctx());
    assert!(report.errors[0].message.starts_with("not valid JSON (EOF"));
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    // As the API server (Go's encoding/json) reads them.
    let report = validate_on_completion_json(
        r#"{"hooks": [{"name": "Bad_Name"}], "hooks": [{"name": "a", "name": "b", "webhook": {"url": "http://x.example/", "url": "https://x.example/", "signingSecretRef": {"name": "s", "key": "k"}}}]}"#,
        OC,
        &ctx(),
    );
    assert_valid(&report);
}

#[test]
fn long_lists_report_every_duplicate_once() {
    let nine: Vec<String> = (0..9)
        .map(|i| text_hook(&format!("h{i}"), "https://h.example/"))
        .collect();
    let report = validate_on_completion_json(&text_hooks(&nine), OC, &ctx());
    assert_only_error(&report, "spec.onCompletion.hooks", "at most 8 hooks");

    let many: Vec<String> = (0..2_000)
        .map(|i| {
            text_hook(
                &format!("h{}", i % 700),
                if i % 3 == 0 {
                    "http://h.example/"
                } else {
                    "https://h.example/"
                },
            )
        })
        .collect();
    let report = validate_on_completion_json(&text_hooks(&many), OC, &ctx());
    // Too many hooks, 1,300 duplicate names, 667 http URLs.
    assert_eq!(report.errors.len(), 1 + 1_300 + 667);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.path == "spec.onCompletion.hooks[1999].name"
                && e.message.contains("already used by hooks[599]"))
    );
}
