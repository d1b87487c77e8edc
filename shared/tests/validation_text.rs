//! Validation from JSON text (`validate_on_completion_json`, `validate_snapshot`) reports exactly
//! what parsing a `serde_json::Value` and validating it reports: same errors, paths, messages,
//! warnings and order, for valid input, every kind of violation and text that is not JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kelos_hooks_shared::annotations::ON_COMPLETION;
use kelos_hooks_shared::fixtures::{Lcg, eight_hooks_json};
use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::{
    Context, ParsedJson, Report, validate_on_completion, validate_on_completion_json,
    validate_on_completion_parsed, validate_snapshot,
};
use serde_json::Value;

const OC: &str = "spec.onCompletion";

/// What the text path must report: parse a `Value`, validate it; or `unreadable: …`.
fn by_value(text: &str, path: &str, ctx: &Context) -> Report {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => validate_on_completion(&value, path, ctx),
        Err(e) => {
            let mut report = Report::default();
            report.error(path, format!("unreadable: {e}"));
            report
        }
    }
}

/// What `validate_snapshot` reported when it parsed a `Value` first.
fn snapshot_by_value(text: &str, ctx: &Context) -> Report {
    let path = format!("metadata.annotations[{ON_COMPLETION}]");
    let mut report = Report::default();
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => report.error(
            path,
            "must be a JSON object such as {\"hooks\":[…]}, got null; kelos-hooks writes this \
             annotation at Task creation, remove it",
        ),
        Ok(value) => return validate_on_completion(&value, &path, ctx),
        Err(e) => report.error(
            path,
            format!(
                "not valid JSON ({e}); kelos-hooks writes this annotation at Task creation, remove \
                 it rather than writing it by hand"
            ),
        ),
    }
    report
}

fn policies() -> [IpPolicy; 2] {
    [
        IpPolicy::default(),
        IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128", "10.0.0.0/8"]).unwrap(),
    ]
}

/// Asserts the text path equals the Value path for `text` (and the snapshot likewise); returns
/// the report under the default policy.
#[track_caller]
fn same(text: &str) -> Report {
    let mut first = None;
    for policy in &policies() {
        let ctx = Context { ip_policy: policy };
        let expected = by_value(text, OC, &ctx);
        assert_eq!(
            validate_on_completion_json(text, OC, &ctx),
            expected,
            "{text}"
        );
        assert_eq!(
            validate_snapshot(text, &ctx),
            snapshot_by_value(text, &ctx),
            "snapshot {text}"
        );
        // Met inside a larger document: read from the front, the rest left alone.
        let inside = format!("{text},\"next\":[1,{{}}]}}");
        if let Some((parsed, end)) = ParsedJson::read_prefix(&inside)
            && end == text.trim_end().len()
        {
            assert_eq!(parsed.text().trim_start(), text.trim());
            assert_eq!(
                validate_on_completion_parsed(&parsed, OC, &ctx),
                expected,
                "parsed {text}"
            );
        }
        first.get_or_insert(expected);
    }
    first.unwrap()
}

fn hook(name: &str, url: &str) -> String {
    format!(
        r#"{{"name": "{name}", "webhook": {{"url": "{url}", "signingSecretRef": {{"name": "s", "key": "k"}}}}}}"#
    )
}

fn hooks(items: &[String]) -> String {
    format!(r#"{{"hooks": [{}]}}"#, items.join(", "))
}

#[test]
fn valid_input_is_valid_both_ways() {
    let report = same(&eight_hooks_json());
    assert_eq!(report, Report::default());
    // The plain form is read in one pass from inside a larger document.
    let inside = format!("{},\"next\":1}}", eight_hooks_json());
    let (_, end) = ParsedJson::read_prefix(&inside).unwrap();
    assert_eq!(end, eight_hooks_json().len());
    for text in [
        "null",
        " null\n",
        "{}",
        r#"{"hooks": []}"#,
        &hooks(&[hook("a", "https://hooks.example.com/x")]),
        // Escapes decode before the rules see them.
        &hooks(&[hook(r"\u0068ook", r"\u0068ttps://hooks.example.com/\u00e9")]),
        r#"{"hooks":[{"name":"a","phases":["F\u0061iled"],"webhook":{"url":"https://h.example/x","secretRef":{"n\u0061me":"s"}}}]}"#,
        "{\n\t\"hooks\" :\r\n [ ]\n}\n",
    ] {
        assert_eq!(same(text), Report::default(), "{text}");
    }
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
        &("[".repeat(200) + &"]".repeat(200)),
        r#"{"hooks": [{"name": "a" "webhook": {}}]}"#,
    ] {
        let report = same(text);
        assert_eq!(report.errors.len(), 1, "{text:?}: {report:?}");
        assert_eq!(report.errors[0].path, OC);
        assert!(
            report.errors[0].message.starts_with("unreadable: "),
            "{report:?}"
        );
        assert!(report.warnings.is_empty());
    }
    let report = validate_snapshot("{", &Context::default());
    assert!(report.errors[0].message.starts_with("not valid JSON (EOF"));
}

#[test]
fn every_kind_of_violation_matches() {
    let cases = [
        // Wrong types at each level.
        r#""hooks""#.to_owned(),
        "[]".into(),
        "5".into(),
        "true".into(),
        r#"{"hooks": null}"#.into(),
        r#"{"hooks": {}}"#.into(),
        r#"{"hooks": "x"}"#.into(),
        r#"{"hooks": [5, "x", null, [], true]}"#.into(),
        r#"{"hooks": [{}]}"#.into(),
        r#"{"hooks": [{"name": 5, "phases": "Failed", "webhook": "x"}]}"#.into(),
        r#"{"hooks": [{"name": null, "phases": null, "webhook": null}]}"#.into(),
        r#"{"hooks": [{"name": ["a"], "phases": [1, null, {}], "webhook": []}]}"#.into(),
        // Names.
        hooks(&[hook("", "https://h.example/")]),
        hooks(&[hook("Bad_Name", "https://h.example/")]),
        hooks(&[hook(&"a".repeat(64), "https://h.example/")]),
        hooks(&[hook("-a", "https://h.example/")]),
        hooks(&[hook("名前", "https://h.example/")]),
        hooks(&[hook("hööks", "https://h.example/")]),
        hooks(&[hook("🎉", "https://h.example/")]),
        hooks(&[
            hook("a", "https://h.example/"),
            hook("b", "https://h.example/"),
            hook("a", "https://h.example/"),
            hook(r"\u0061", "https://h.example/"),
        ]),
        // Phases.
        r#"{"hooks": [{"name": "a", "phases": [], "webhook": {"url": "https://h.example/"}}]}"#
            .into(),
        r#"{"hooks": [{"name": "a", "phases": ["Running", "succeeded", "Failed", "Failed", "Succeeded", "Succeeded"], "webhook": {"url": "https://h.example/"}}]}"#.into(),
        // Webhook fields.
        r#"{"hooks": [{"name": "a", "webhook": {}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": 5, "format": 5}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "format": "generic"}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "secretRef": "x", "signingSecretRef": 5}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "secretRef": {}, "signingSecretRef": {}}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "secretRef": {"name": "", "key": "k"}, "signingSecretRef": {"name": "Bad", "key": ".."}}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "secretRef": {"name": 5}, "signingSecretRef": {"name": "a..b", "key": ""}}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "signingSecretRef": {"name": "s", "key": "a/b"}}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "signingSecretRef": {"name": "s", "key": 5}}}]}"#.into(),
        // Unknown fields, with and without suggestions, in an order unlike the map's.
        r#"{"zz": 1, "hooks": [], "aa": [1, {"x": null}], "Hooks": 2}"#.into(),
        r#"{"hooks": [{"webHook": {}, "nmae": "a", "phase": [], "name": "a", "extra": {"deep": [[[]]]}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"URL": "x", "signingSecretref": {}, "formt": "Slack", "headers": {}, "url": "https://h.example/", "Url": 1}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "secretRef": {"nme": "s", "key": "k"}, "signingSecretRef": {"name": "s", "kye": "k", "": 1}}}]}"#.into(),
        r#"{"hooks": [{"name": "a", "webhook": {"url": "https://h.example/", "$x": 1, "\u0075rl": "http://h.example/"}}]}"#.into(),
        // Duplicate keys: the last one counts; unknown duplicates are reported once.
        r#"{"hooks": [{"name": "Bad_Name"}], "hooks": [{"name": "a", "name": "b", "webhook": {"url": "http://x.example/", "url": "https://x.example/"}}]}"#.into(),
        r#"{"hooks": [], "zz": 1, "aa": 2, "zz": 3, "hooks": [5]}"#.into(),
        // Numbers of every form, where the rules only see "a number".
        r#"{"hooks": [{"name": -0, "phases": [1.5e3, 12345678901234567890123, -7], "webhook": {"url": 0.5}}]}"#.into(),
        // serde_json's private marker keys (meaningful to Value with the raw_value feature).
        r#"{"$serde_json::private::RawValue": "{\"hooks\": 5}"}"#.into(),
        r#"{"hooks": [{"$serde_json::private::RawValue": "{\"name\": \"a\"}"}]}"#.into(),
        r#"{"hooks": [], "$serde_json::private::RawValue": 1}"#.into(),
    ];
    let mut with_errors = 0;
    for text in &cases {
        if !same(text).is_valid() {
            with_errors += 1;
        }
    }
    assert!(with_errors >= cases.len() - 1, "{with_errors}");
}

#[test]
fn every_url_rule_matches() {
    let urls = [
        "https://hooks.example.com/x",
        "http://hooks.example.com/x",
        "ftp://h.example/",
        "",
        "   ",
        "/relative",
        "https://exa mple.com",
        r"https://h.example/\u0000",
        r"https://h.example/\t",
        "HTTPS://h.example/",
        "https:h.example",
        "https:///h.example",
        "https://",
        "https://user:pw@h.example/",
        "https://h.example@evil.example/",
        r"https://h.example\\@evil.example/",
        "https://h.example:0/",
        "https://h.example:8443/",
        "https://h.example/#frag",
        "https://h.example/?token=1&TOKEN=2&api-key=3&x=4&sig=5",
        "https://10.0.0.1/x",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://169.254.169.254/latest",
        "https://localhost/x",
        "https://a.LocalHost./",
        "https://localhost.example/",
        "https://ex%41mple.com/",
        "https://xn--nxasmq6b.com/",
        "https://xn--a.com/",
        "https://münchen.de/",
        "https://EXAMPLE.com/",
        "https://a..b/",
        "https://1.2.3/",
        "https://a.0x10/",
        "https://[::1",
        "https://h.example/a@b",
        r"https://h.example/\\x",
        r"\u0068ttps://hooks.example.com/x",
    ];
    for url in urls {
        same(&hooks(&[hook("a", url)]));
    }
    let long = format!("https://h.example/{}", "x".repeat(2030));
    let longer = format!("https://h.example/{}", "x".repeat(2031));
    same(&hooks(&[hook("a", &long)]));
    assert!(!same(&hooks(&[hook("a", &longer)])).is_valid());
}

#[test]
fn long_lists_match() {
    let nine: Vec<String> = (0..9)
        .map(|i| hook(&format!("h{i}"), "https://h.example/"))
        .collect();
    let report = same(&hooks(&nine));
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].path, "spec.onCompletion.hooks");

    // Past the inline name list: duplicates found through the map, first use kept.
    let many: Vec<String> = (0..2_000)
        .map(|i| {
            hook(
                &format!("h{}", i % 700),
                if i % 3 == 0 {
                    "http://h.example/"
                } else {
                    "https://h.example/"
                },
            )
        })
        .collect();
    let report = same(&hooks(&many));
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

// ---------------------------------------------------------------------------------------------
// Generated documents: random mixes of good and bad values, fields, duplicates and truncation.

/// Test-only helpers on the shared generator.
trait Space {
    fn space(&mut self) -> &'static str;
}

impl Space for Lcg {
    fn space(&mut self) -> &'static str {
        self.pick(&["", "", "", " ", "\n  ", "\t"])
    }
}

type Maker<'m> = &'m dyn Fn(&mut Lcg) -> String;

/// An object of a random subset of `known` (sometimes repeated) and some `unknown` keys, shuffled.
fn object(r: &mut Lcg, known: &[(&str, Maker<'_>)], unknown: &[&str]) -> String {
    let mut members = Vec::new();
    for (key, make) in known {
        if r.below(6) != 0 {
            members.push(format!("\"{key}\":{}{}", r.space(), make(r)));
        }
        if r.below(25) == 0 {
            members.push(format!("\"{key}\": {}", make(r)));
        }
    }
    if r.below(5) == 0 {
        for _ in 0..1 + r.below(3) {
            let key = r.pick(unknown);
            let value = r.pick(&["1", "null", "\"x\"", "[]", "{\"a\":[1,{}]}"]);
            members.push(format!("{key}: {value}"));
        }
    }
    for i in (1..members.len()).rev() {
        let j = r.below(i + 1);
        members.swap(i, j);
    }
    let space = r.space();
    format!("{{{space}{}}}", members.join(", "))
}

fn pick_of(items: &'static [&'static str]) -> impl Fn(&mut Lcg) -> String {
    move |r| r.pick(items).to_owned()
}

fn gen_url(r: &mut Lcg) -> String {
    if r.below(40) == 0 {
        return format!("\"https://a.com/{}\"", "x".repeat(2040 + r.below(20)));
    }
    r.pick(&[
        "\"https://hooks.example.com/x\"",
        "\"https://hooks0.example.com/services/kelos/notify\"",
        "\"http://hooks.example.com/x\"",
        "\"https://10.0.0.1/x\"",
        "\"https://[::1]/\"",
        "\"https://0x7f.1/\"",
        "\"https://localhost/x\"",
        "\"https://a.LocalHost./\"",
        "\"https://user:pw@h.com/\"",
        "\"https://h.com:0/\"",
        "\"https://h.com/#frag\"",
        "\"https://h.com/?token=1&TOKEN=2&api-key=3\"",
        "\"\"",
        "\"/relative\"",
        "\"https://exa mple.com\"",
        "\"\\u0068ttps://hooks.example.com/x\"",
        "\"HTTPS://h.com/\"",
        "\"https:///h.com\"",
        "\"https://münchen.de/\"",
        "\"https://a..b/\"",
        "\"https://xn--a.com/\"",
        "5",
        "null",
        "{}",
    ])
    .to_owned()
}

fn gen_secret_ref(r: &mut Lcg) -> String {
    if r.below(3) == 0 {
        return r.pick(&["\"x\"", "null", "[]", "5", "{}"]).to_owned();
    }
    let names = pick_of(&[
        "\"s\"",
        "\"\"",
        "\"Bad\"",
        "5",
        "null",
        "\"a..b\"",
        "\"s\\u0061\"",
    ]);
    object(r, &[("name", &names)], &["\"key\"", "\"nme\"", "\"Name\""])
}

fn gen_signing_ref(r: &mut Lcg) -> String {
    if r.below(4) == 0 {
        return r.pick(&["\"x\"", "null", "[]", "5", "{}"]).to_owned();
    }
    let names = pick_of(&["\"s\"", "\"\"", "\"Bad\"", "5", "null"]);
    let keys = pick_of(&[
        "\"k\"",
        "\"\"",
        "\"..\"",
        "\".\"",
        "\"a/b\"",
        "5",
        "null",
        "\"KEY_1\"",
    ]);
    object(
        r,
        &[("name", &names), ("key", &keys)],
        &["\"kye\"", "\"Key\"", "\"extra\""],
    )
}

fn gen_webhook(r: &mut Lcg) -> String {
    if r.below(8) == 0 {
        return r.pick(&["\"x\"", "null", "[]", "5", "{}"]).to_owned();
    }
    let formats = pick_of(&["\"Generic\"", "\"Slack\"", "\"generic\"", "5", "null"]);
    object(
        r,
        &[
            ("url", &gen_url),
            ("secretRef", &gen_secret_ref),
            ("signingSecretRef", &gen_signing_ref),
            ("format", &formats),
        ],
        &[
            "\"URL\"",
            "\"secretref\"",
            "\"signingSecretref\"",
            "\"formt\"",
            "\"headers\"",
            "\"\\u0075rl\"",
            "\"$x\"",
        ],
    )
}

fn gen_hook(r: &mut Lcg) -> String {
    if r.below(12) == 0 {
        return r.pick(&["\"x\"", "null", "[]", "5"]).to_owned();
    }
    let names = pick_of(&[
        "\"notify-team\"",
        "\"a\"",
        "\"\"",
        "\"Bad_Name\"",
        "5",
        "null",
        "\"hook-1\"",
        "\"hook-2\"",
        "\"h\\u006fok\"",
        "\"hook\"",
        "\"名前\"",
        "\"-a\"",
    ]);
    let phases = pick_of(&[
        "[\"Succeeded\"]",
        "[\"Succeeded\",\"Failed\"]",
        "[]",
        "\"Succeeded\"",
        "[\"Running\"]",
        "[\"Failed\",\"Failed\"]",
        "[1, null]",
        "null",
        "[\"F\\u0061iled\"]",
    ]);
    object(
        r,
        &[
            ("name", &names),
            ("phases", &phases),
            ("webhook", &gen_webhook),
        ],
        &[
            "\"nmae\"",
            "\"Name\"",
            "\"phase\"",
            "\"webHook\"",
            "\"na\\u006de\"",
            "\"\"",
            "\"zz\"",
            "\"aa\"",
        ],
    )
}

fn gen_hooks(r: &mut Lcg) -> String {
    let n = [0, 1, 1, 2, 3, 3, 8, 9, 17, 40][r.below(10)];
    let items: Vec<String> = (0..n).map(|_| gen_hook(r)).collect();
    format!("[{}]", items.join(", "))
}

fn gen_doc(r: &mut Lcg) -> String {
    match r.below(16) {
        0 => r
            .pick(&[
                "null",
                "{}",
                "[]",
                "\"x\"",
                "5",
                "{\"hooks\": null}",
                "{\"Hooks\": []}",
            ])
            .to_owned(),
        1 => format!(
            r#"{{"hooks": {}, "hooks": {}}}"#,
            gen_hooks(r),
            gen_hooks(r)
        ),
        2 => format!(
            r#"{{"hooks": {}, "extra": 1, "zzz": {{}}, "aaa": 2, "extra": 3}}"#,
            gen_hooks(r)
        ),
        3 => {
            let mut text = format!(r#"{{"hooks": {}}}"#, gen_hooks(r));
            let mut cut = r.below(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text
        }
        _ => format!(
            r#"{{{}"hooks":{}{}{}}}"#,
            r.space(),
            r.space(),
            gen_hooks(r),
            r.space()
        ),
    }
}

#[test]
fn generated_documents_match() {
    let mut r = Lcg(0x6b656c6f73);
    let (mut valid, mut invalid, mut unreadable) = (0, 0, 0);
    for _ in 0..3_000 {
        let text = gen_doc(&mut r);
        let report = same(&text);
        if report
            .errors
            .first()
            .is_some_and(|e| e.message.starts_with("unreadable"))
        {
            unreadable += 1;
        } else if report.is_valid() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid > 100 && invalid > 1_000 && unreadable > 100,
        "{valid} valid, {invalid} invalid, {unreadable} unreadable"
    );
}
