//! The `onCompletion` rules a CRD schema can express, as CEL `x-kubernetes-validations` carrying
//! the admission server's wording (`crate::validation`), so that when the API server answers
//! before the webhook a user still reads `spec.onCompletion.hooks[1].name: duplicate name "a"…`.
//!
//! Why not `pattern`, `enum` or `minLength`: the API server's messages for those quote the raw
//! regex and echo the value, a URL's password included. A CEL rule on a string echoes its value
//! too, so every URL rule sits on the `webhook` object with `fieldPath: .url` (an object is never
//! echoed). What the derived schema says about the limits (`maxItems`, `maxLength`, the name
//! pattern, the enum values: all from the Rust types) becomes the rules; the structural bounds
//! left are looser ([`Bounds`]), there only for CEL's cost budget, so inside them only our
//! messages fire. The webhook stays the full check (IP ranges, `--allow-cidr`, localhost,
//! warnings) and lists every violation at once.

use serde_json::{Value, json};

/// Structural bounds left in the schema: CEL's cost estimate needs a size on every list and
/// string a rule walks. Each is looser than the rule about the same limit.
struct Bounds;

impl Bounds {
    const HOOKS: u64 = 16;
    const PHASES: u64 = 8;
    const STRING: u64 = 1024;
    const URL: u64 = 8192;
    const TEMPLATE: u64 = 65536;
}

/// Adds the rules to the derived `onCompletion` schema node (and loosens its bounds).
pub(super) fn add_rules(on_completion: &mut Value) {
    let hooks = &mut on_completion["properties"]["hooks"];
    hook_list(hooks);
    let props = &mut hooks["items"]["properties"];
    hook_name(&mut props["name"]);
    phases(&mut props["phases"]);
    webhook(&mut props["webhook"]);
}

fn take(node: &mut Value, key: &str) -> Option<Value> {
    node.as_object_mut()?.remove(key)
}

fn take_u64(node: &mut Value, key: &str, fallback: u64) -> u64 {
    take(node, key).and_then(|v| v.as_u64()).unwrap_or(fallback)
}

/// The node's `enum` values, removed from it, as a CEL list literal and as `a, b` for messages.
fn take_enum(node: &mut Value) -> (String, String) {
    let values: Vec<String> = take(node, "enum")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let literal = values
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    (format!("[{literal}]"), values.join(", "))
}

/// CEL text of a number below `below` computed by `int`. CEL's `string(int)` would do, but its
/// result has no size the cost estimate knows, which makes any message built with it "too
/// expensive"; an index into a list of literals has one.
fn as_text(int: &str, below: u64) -> String {
    let digits: Vec<String> = (0..below).map(|i| format!("'{i}'")).collect();
    format!("[{}][{int}]", digits.join(", "))
}

fn set_rules(node: &mut Value, rules: Vec<Value>) {
    node["x-kubernetes-validations"] = Value::Array(rules);
}

/// A rule with a fixed message.
fn with_message(rule: &str, message: &str) -> Value {
    json!({"rule": rule, "message": message})
}

/// A rule whose message is computed (CEL) when it fails.
fn with_expression(rule: &str, message_expression: &str) -> Value {
    json!({"rule": rule, "messageExpression": message_expression})
}

/// A rule of the `webhook` object about its `url`: reported at `….webhook.url`, value not shown.
fn url_rule(rule: &str, message: &str) -> Value {
    json!({
        "rule": format!("!has(self.url) || ({rule})"),
        "message": message,
        "fieldPath": ".url",
    })
}

fn hook_list(hooks: &mut Value) {
    let max = take_u64(hooks, "maxItems", Bounds::HOOKS);
    hooks["maxItems"] = json!(Bounds::HOOKS);
    // An atomic list: the map list type would answer duplicates first, with the API server's
    // `Duplicate value: map[…]` instead of our message.
    take(hooks, "x-kubernetes-list-type");
    take(hooks, "x-kubernetes-list-map-keys");
    // The first hook whose name an earlier hook has (`later`) and that earlier hook (`first`),
    // found by index: the cost estimate knows the size of `self[i].name` but not of an element
    // `filter` returns.
    let indexes = format!(
        "[{}]",
        (0..Bounds::HOOKS)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let later = format!(
        "{indexes}.filter(i, i < self.size() && has(self[i].name) && {indexes}.exists(j, j < i && \
         has(self[j].name) && self[j].name == self[i].name))[0]"
    );
    let first = format!(
        "{indexes}.filter(j, j < {later} && has(self[j].name) && self[j].name == self[{later}].name)[0]"
    );
    set_rules(
        hooks,
        vec![
            with_expression(
                &format!("self.size() <= {max}"),
                &format!(
                    "'must have at most {max} hooks, has ' + {} + '; remove ' + {} + ' or fan out \
                     from one receiver'",
                    as_text("self.size()", Bounds::HOOKS + 1),
                    as_text(&format!("self.size() - {max}"), Bounds::HOOKS + 1),
                ),
            ),
            with_expression(
                "self.all(h, !has(h.name) || self.filter(o, has(o.name) && o.name == h.name).size() == 1)",
                &format!(
                    "'spec.onCompletion.hooks[' + {} + '].name: duplicate name \"' + self[{later}].name + \
                     '\", already used by hooks[' + {} + ']; hook names must be unique'",
                    as_text(&later, Bounds::HOOKS),
                    as_text(&first, Bounds::HOOKS),
                ),
            ),
        ],
    );
}

fn hook_name(name: &mut Value) {
    let max = take_u64(name, "maxLength", Bounds::STRING);
    take(name, "minLength");
    let pattern = take(name, "pattern")
        .and_then(|p| p.as_str().map(str::to_owned))
        .unwrap_or_else(|| ".*".to_owned());
    name["maxLength"] = json!(Bounds::STRING);
    set_rules(
        name,
        vec![with_expression(
            &format!("self.size() > 0 && self.size() <= {max} && self.matches(r'{pattern}')"),
            &format!(
                "self.size() == 0 ? 'must not be empty; name the hook, e.g. notify-team' : \"is not a \
                 DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a \
                 letter or digit, at most {max} characters (e.g. notify-team)\""
            ),
        )],
    );
}

fn phases(phases: &mut Value) {
    take(phases, "minItems");
    take(phases, "maxItems");
    take(phases, "x-kubernetes-list-type");
    phases["maxItems"] = json!(Bounds::PHASES);
    let item = &mut phases["items"];
    let (allowed, shown) = take_enum(item);
    item["maxLength"] = json!(Bounds::STRING);
    set_rules(
        item,
        vec![with_message(
            &format!("self in {allowed}"),
            &format!("unknown phase; allowed: {shown}"),
        )],
    );
    let dup = "self.filter(p, self.indexOf(p) != self.lastIndexOf(p))[0]";
    set_rules(
        phases,
        vec![
            with_message(
                "self.size() > 0",
                &format!("must not be empty; list some of {shown}, or omit phases to fire on both"),
            ),
            with_expression(
                "self.all(p, self.filter(q, q == p).size() == 1)",
                &format!(
                    "'duplicate phase \"' + {dup} + '\", already at phases[' + {} + ']; list each \
                     phase once'",
                    as_text(&format!("self.indexOf({dup})"), Bounds::PHASES)
                ),
            ),
        ],
    );
}

fn webhook(webhook: &mut Value) {
    let props = &mut webhook["properties"];
    let url = &mut props["url"];
    let max = take_u64(url, "maxLength", Bounds::URL);
    take(url, "minLength");
    take(url, "pattern");
    url["maxLength"] = json!(Bounds::URL);

    secret_name(&mut props["secretRef"]["properties"]["name"]);
    let signing = &mut props["signingSecretRef"]["properties"];
    secret_name(&mut signing["name"]);
    secret_key(&mut signing["key"], "the signing key");
    let routing = &mut props["pagerDuty"]["properties"]["routingKeySecretRef"]["properties"];
    secret_name(&mut routing["name"]);
    secret_key(&mut routing["key"], "the PagerDuty routing key");
    let template = &mut props["template"]["properties"];
    template_body(&mut template["body"]);
    content_type(&mut template["contentType"]);

    // Judged on the webhook object (reported at `.format`) so that the API server does not quote
    // the value back: a URL pasted into the wrong field may carry credentials.
    let format = &mut props["format"];
    let (allowed, shown) = take_enum(format);
    format["maxLength"] = json!(Bounds::STRING);
    let format_rule = json!({
        "rule": format!("!has(self.format) || self.format in {allowed}"),
        "message": format!("unknown format; allowed: {shown} (default Generic)"),
        "fieldPath": ".format",
    });

    // Each condition judges only URLs the ones before it let through, as the webhook does, so a
    // URL gets the message that says what to change first.
    let scheme = r"self.url.matches(r'^[A-Za-z][A-Za-z0-9+.-]*:')";
    let https = r"self.url.matches(r'^(?i)https:')";
    let mut rules = vec![
        url_rule(
            "self.url.trim().size() > 0",
            "must not be empty; set the receiver's https:// URL",
        ),
        url_rule(
            r"!self.url.matches(r'[\p{Cc}\p{Z}\s]')",
            "must not contain spaces, line breaks or control characters; percent-encode them (%20)",
        ),
        url_rule(
            &format!("self.url.size() <= {max}"),
            &format!(
                "must be at most {max} characters; shorten it (move long parameters into the payload \
                 or secretRef headers)"
            ),
        ),
        url_rule(
            &format!("self.url.trim().size() == 0 || {scheme}"),
            "must be an absolute URL such as https://hooks.example.com/path",
        ),
        url_rule(
            &format!("!{scheme} || {https}"),
            "must use https: webhooks carry Task data and secret headers; use an https:// URL",
        ),
        url_rule(
            &format!(
                r"!{https} || (self.url.startsWith('https://') && !self.url.matches(r'^https://[/\\]'))"
            ),
            "must start with https:// (lowercase) followed directly by the host",
        ),
        url_rule(
            r"!self.url.matches(r'^(?:[^/]|/[^/])*//[^/\\?#]*@')",
            "must not contain credentials; put them in secretRef",
        ),
    ];
    rules.push(url_rule(
        r"!self.url.startsWith('https://') || self.url.matches(r'^https://[/\\]') || self.url.matches(r'^https://([^/\\?#@]*@)?[^/\\?#@:]')",
        "must have a host, as in https://hooks.example.com/path",
    ));
    rules.push(format_rule);
    rules.extend(format_option_rules());
    set_rules(webhook, rules);
}

fn secret_name(name: &mut Value) {
    let max = take_u64(name, "maxLength", Bounds::STRING);
    take(name, "minLength");
    name["maxLength"] = json!(Bounds::STRING);
    set_rules(
        name,
        vec![with_expression(
            &format!(
                r"self.size() > 0 && self.size() <= {max} && self.matches(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.split('.').all(l, l.size() <= 63)"
            ),
            &format!(
                "self.size() == 0 ? \"must not be empty; the name of a Secret in the Task's namespace\" : \
                 \"is not a valid Secret name: use lowercase letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most {max} characters\""
            ),
        )],
    );
}

/// `pagerDuty` goes with `format: PagerDuty` and `template` with `format: Template`, each way.
fn format_option_rules() -> Vec<Value> {
    let option = |field: &str, format: &str, required: &str| {
        [
            json!({
                "rule": format!("!has(self.format) || self.format != '{format}' || has(self.{field})"),
                "message": format!("required with format {format}; {required}"),
                "fieldPath": format!(".{field}"),
            }),
            json!({
                "rule": format!("!has(self.{field}) || (has(self.format) && self.format == '{format}')"),
                "message": format!("only for format {format}; remove {field} or set format: {format}"),
                "fieldPath": format!(".{field}"),
            }),
        ]
    };
    let mut rules = option(
        "pagerDuty",
        "PagerDuty",
        "set pagerDuty.routingKeySecretRef to the Secret key holding the Events API v2 \
         integration's routing key",
    )
    .to_vec();
    rules.extend(option(
        "template",
        "Template",
        "set template.body to the body to send",
    ));
    rules
}

fn template_body(body: &mut Value) {
    let max = take_u64(body, "maxLength", Bounds::TEMPLATE);
    take(body, "minLength");
    body["maxLength"] = json!(Bounds::TEMPLATE);
    set_rules(
        body,
        vec![with_message(
            &format!("self.size() > 0 && self.size() <= {max}"),
            &format!("must not be empty and at most {max} bytes; shorten the template"),
        )],
    );
}

fn content_type(ct: &mut Value) {
    let max = take_u64(ct, "maxLength", Bounds::STRING);
    take(ct, "minLength");
    ct["maxLength"] = json!(Bounds::STRING);
    set_rules(
        ct,
        vec![with_message(
            &format!(
                r"self.size() <= {max} && self.matches(r'^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[ -~\t]*)?$')"
            ),
            "must be a media type such as application/json or text/plain; charset=utf-8",
        )],
    );
}

fn secret_key(key: &mut Value, holds: &str) {
    let max = take_u64(key, "maxLength", Bounds::STRING);
    take(key, "minLength");
    key["maxLength"] = json!(Bounds::STRING);
    set_rules(
        key,
        vec![with_expression(
            &format!(
                r"self.size() > 0 && self.size() <= {max} && self.matches(r'^[-._a-zA-Z0-9]+$') && self != '.' && !self.startsWith('..')"
            ),
            &format!(
                "self.size() == 0 ? \"must not be empty; the key in the Secret that holds {holds}\" : \
                 \"is not a valid Secret key: use letters, digits, '-', '_' and '.', at most {max} \
                 characters, not starting with '..'\""
            ),
        )],
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema() -> Value {
        crate::crd::on_completion_schema()
    }

    /// Every node of the contributed schema, with its path.
    fn nodes(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
        out.push((path.clone(), v.clone()));
        for (k, child) in v["properties"].as_object().into_iter().flatten() {
            nodes(child, format!("{path}.{k}"), out);
        }
        if v["items"].is_object() {
            nodes(&v["items"], format!("{path}[]"), out);
        }
    }

    #[test]
    fn no_raw_regex_enum_or_list_type_is_left() {
        let mut all = Vec::new();
        nodes(&schema(), "onCompletion".into(), &mut all);
        for (path, node) in &all {
            for key in [
                "pattern",
                "enum",
                "minLength",
                "minItems",
                "x-kubernetes-list-type",
            ] {
                assert!(node.get(key).is_none(), "{path} still has {key}: {node}");
            }
            if node["type"] == "string" {
                assert!(node["maxLength"].is_u64(), "{path}: strings need a bound");
                // `url` and `format` are judged on the webhook object (values never quoted).
                assert!(
                    node.get("x-kubernetes-validations").is_some()
                        || path.ends_with(".url")
                        || path.ends_with(".format"),
                    "{path}: a string without rules"
                );
            }
        }
    }

    #[test]
    fn limits_come_from_the_rust_types() {
        let s = schema();
        let hooks = &s["properties"]["hooks"];
        assert!(hooks.to_string().contains("self.size() <= 8"), "{hooks}");
        let name = &hooks["items"]["properties"]["name"];
        assert!(
            name.to_string()
                .contains("self.size() <= 63 && self.matches(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"),
            "{name}"
        );
        let webhook = &hooks["items"]["properties"]["webhook"];
        assert!(webhook.to_string().contains("self.url.size() <= 2048"));
        assert_eq!(as_text("i", 3), "['0', '1', '2'][i]");
        let phase = &hooks["items"]["properties"]["phases"]["items"];
        assert_eq!(
            phase["x-kubernetes-validations"][0]["rule"],
            "self in ['Succeeded', 'Failed']"
        );
        let format_rule = webhook["x-kubernetes-validations"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["fieldPath"] == ".format"));
        assert_eq!(
            format_rule.map(|r| r["rule"].clone()),
            Some(json!(
                "!has(self.format) || self.format in ['Generic', 'CloudEvents', 'Slack', 'PagerDuty', 'MSTeams', 'Discord', 'Template']"
            ))
        );
        let template = &webhook["properties"]["template"]["properties"]["body"];
        assert!(
            template.to_string().contains("self.size() <= 16384"),
            "{template}"
        );
    }

    #[test]
    fn url_rules_never_sit_on_the_url_string() {
        let s = schema();
        let webhook = &s["properties"]["hooks"]["items"]["properties"]["webhook"];
        assert!(
            webhook["properties"]["url"]
                .get("x-kubernetes-validations")
                .is_none()
        );
        let rules = webhook["x-kubernetes-validations"].as_array().unwrap();
        let (url_rules, option_rules): (Vec<&Value>, Vec<&Value>) = rules
            .iter()
            .filter(|r| r["fieldPath"] != ".format")
            .partition(|r| r["fieldPath"] == ".url");
        // The format-option rules name their own field and never touch the URL.
        assert_eq!(option_rules.len(), 4, "{option_rules:?}");
        for rule in &option_rules {
            assert!(
                [".pagerDuty", ".template"].contains(&rule["fieldPath"].as_str().unwrap()),
                "{rule}"
            );
            assert!(
                !rule["rule"].as_str().unwrap().contains("self.url"),
                "{rule}"
            );
        }
        for rule in url_rules {
            assert!(
                rule["rule"]
                    .as_str()
                    .unwrap()
                    .starts_with("!has(self.url) || ")
            );
            assert!(
                rule.get("messageExpression")
                    .is_none_or(|m| !m.as_str().unwrap().contains("self.url +")),
                "a message must not echo the URL: {rule}"
            );
        }
    }
}
