//! Fuzz target bodies for this crate's parsers and rules (feature `fuzzing`).
//!
//! Each target takes the fuzzer's bytes, runs one parser or rule the way the servers do, and
//! panics when a property the contract promises does not hold. The cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` call them, and so do this crate's tests, which replay every input ever
//! kept in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` on stable (see [`replay`]).
//! Assertions, not `Result`s: a failed property is a bug, and libFuzzer records a panic as a
//! crash with the input that caused it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use url::Host;

use crate::annotations::{
    ON_COMPLETION, decode_snapshot, encode_snapshot, is_kelos_reporter_snapshot,
};
use crate::api::{OnCompletion, Phase};
use crate::deliveries::Deliveries;
use crate::ip::{IpPolicy, blocked_range};
use crate::retry_after::parse_retry_after;
use crate::validation::{
    Context, Report, Validate, judge_hook_url, validate_on_completion, validate_on_completion_json,
    validate_snapshot, validate_url,
};

/// The input as text, or `None` for bytes no caller could pass (annotation values, URLs and
/// header values reach these functions as `&str`).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An operator's `--allow-cidr 10.0.0.0/8 --allow-cidr fd00::/8`, to judge allowlisted literals too.
static ALLOW_PRIVATE: LazyLock<IpPolicy> =
    LazyLock::new(|| IpPolicy::from_cidrs(&["10.0.0.0/8", "fd00::/8"]).unwrap_or_default());

/// `fuzz_targets/snapshot.rs`: the `kelos.dev/on-completion` annotation, parsed and judged.
///
/// Properties: whatever the rules accept decodes into [`OnCompletion`], is not mistaken for a
/// kelos reporter snapshot, is accepted again after re-encoding (same hooks) and by the typed
/// rules; every error names a path under the annotation; the text rules and the annotation rules
/// agree on every value but `null` (which only the annotation refuses).
pub fn snapshot(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let ctx = Context::default();
    let report = validate_snapshot(text, &ctx);
    let prefix = format!("metadata.annotations[{ON_COMPLETION}]");
    for e in &report.errors {
        assert!(
            e.path.starts_with(&prefix),
            "error outside the annotation: {e}"
        );
        assert!(!e.message.is_empty(), "empty message at {}", e.path);
    }
    let as_text = validate_on_completion_json(text, &prefix, &ctx);
    if serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| !v.is_null()) {
        assert_eq!(report, as_text, "annotation and text rules disagree");
    }
    let decoded = decode_snapshot(text);
    if !report.is_valid() {
        return;
    }
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => panic!("accepted by the rules but does not decode: {e}"),
    };
    assert!(
        !is_kelos_reporter_snapshot(text),
        "accepted snapshot reads as kelos's own reporter format"
    );
    let mut typed = Report::default();
    decoded.validate(&prefix, &ctx, &mut typed);
    assert!(
        typed.is_valid(),
        "typed rules refuse: {}",
        typed.error_summary()
    );
    let encoded = encode_snapshot(&decoded.hooks);
    let again = validate_snapshot(&encoded, &ctx);
    assert!(
        again.is_valid(),
        "re-encoded snapshot refused: {}",
        again.error_summary()
    );
    let round: OnCompletion = match decode_snapshot(&encoded) {
        Ok(r) => r,
        Err(e) => panic!("re-encoded snapshot does not decode: {e}"),
    };
    assert_eq!(round, decoded, "snapshot changed through encode/decode");
}

/// `fuzz_targets/url.rs`: the URL judgement of a hook, on its own and inside `onCompletion`.
///
/// Properties (DESIGN.md URL rules): whatever is allowed starts with `https://`, parses with the
/// `https` scheme, has a non-empty host that is not `localhost`, no user-info, a port other than
/// 0, and an IP-literal host outside every blocked range (with no allowlist) or allowed by the
/// allowlist; `validate_url` and the rules over a whole `onCompletion` (which skip the parser for
/// plain URLs) report exactly the same errors and warnings.
pub fn url(data: &[u8]) {
    let Some(url) = text(data) else { return };
    for ctx in [
        Context::default(),
        Context {
            ip_policy: &ALLOW_PRIVATE,
        },
    ] {
        judge_one_url(url, &ctx);
    }
}

fn judge_one_url(url: &str, ctx: &Context) {
    const PATH: &str = "spec.onCompletion.hooks[0].webhook.url";
    let mut alone = Report::default();
    let parsed = validate_url(url, PATH, ctx, &mut alone);
    assert_eq!(
        parsed.is_some(),
        alone.is_valid(),
        "URL returned despite errors or refused without one"
    );

    // Signed, so the hook rules have nothing to say but about the URL.
    let webhook = json!({"url": url, "signingSecretRef": {"name": "s", "key": "k"}});
    let hooks = json!({"hooks": [{"name": "a", "webhook": webhook}]});
    let in_hooks = validate_on_completion(&hooks, "spec.onCompletion", ctx);
    assert_eq!(
        alone.errors, in_hooks.errors,
        "URL rules disagree with the hook rules"
    );
    assert_eq!(
        alone.warnings, in_hooks.warnings,
        "URL warnings disagree with the hook rules"
    );

    // The verdict delivery and `check-url` use is the same as admission's.
    assert_eq!(
        judge_hook_url(url, ctx).is_ok(),
        parsed.is_some(),
        "judge_hook_url disagrees with validate_url"
    );

    let Some(parsed) = parsed else { return };
    assert!(url.starts_with("https://"), "allowed without https://");
    assert_eq!(
        parsed.scheme(),
        "https",
        "allowed with scheme {}",
        parsed.scheme()
    );
    assert!(
        parsed.username().is_empty() && parsed.password().is_none(),
        "allowed with user-info"
    );
    assert_ne!(parsed.port(), Some(0), "allowed with port 0");
    let ip = match parsed.host() {
        None => panic!("allowed without a host"),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            assert!(!d.is_empty(), "allowed with an empty host");
            assert!(
                d != "localhost" && !d.ends_with(".localhost"),
                "allowed localhost"
            );
            // A domain the url crate kept as text must not read as an address elsewhere.
            d.parse::<IpAddr>().ok()
        }
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip {
        assert!(
            ctx.ip_policy.judge(ip).is_ok(),
            "allowed a blocked literal {ip}"
        );
        if ctx.ip_policy.allow_list().is_empty() {
            assert_eq!(blocked_range(ip), None, "allowed a blocked literal {ip}");
        }
    }
}

/// `fuzz_targets/deliveries.rs`: the `kelos.dev/webhook-deliveries` annotation.
///
/// Properties: whatever parses survives encode/parse unchanged, is what `resume` returns for its
/// phase, and merging it into a fresh state or into itself gives it back.
pub fn deliveries(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = Deliveries::resume(Some(text), Phase::Failed);
    let Ok(parsed) = Deliveries::parse(text) else {
        return;
    };
    let encoded = parsed.encode();
    match Deliveries::parse(&encoded) {
        Ok(again) => assert_eq!(again, parsed, "changed through encode/parse: {encoded}"),
        Err(e) => panic!("encoded annotation does not parse ({e}): {encoded}"),
    }
    assert_eq!(Deliveries::resume(Some(text), parsed.phase), parsed);
    let mut fresh = Deliveries::new(parsed.phase);
    fresh.merge_from(&parsed);
    assert_eq!(fresh, parsed, "merge into a fresh state lost records");
    let mut itself = parsed.clone();
    itself.merge_from(&parsed);
    assert_eq!(itself, parsed, "merge with itself changed records");
    let _ = parsed.all_final(parsed.hooks.keys().map(String::as_str));
}

/// The clock of [`retry_after`]: a fixed instant, so a replayed input behaves the same forever.
fn fuzz_now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000, 0)
        .single()
        .unwrap_or_default()
}

/// `fuzz_targets/retry_after.rs`: a receiver's `Retry-After` header.
///
/// Properties: delay-seconds read as exactly that many seconds; an HTTP-date gives the time
/// until it (zero when past), never more; surrounding whitespace does not matter.
pub fn retry_after(data: &[u8]) {
    let Some(value) = text(data) else { return };
    let now = fuzz_now();
    let got = parse_retry_after(value, now);
    let trimmed = value.trim();
    assert_eq!(
        got,
        parse_retry_after(trimmed, now),
        "whitespace changed the reading"
    );
    if let Ok(secs) = trimmed.parse::<u64>() {
        assert_eq!(got.map(|d| d.as_secs()), Some(secs));
        return;
    }
    if let Ok(at) = DateTime::parse_from_rfc2822(trimmed) {
        let until = at.with_timezone(&Utc) - now;
        let want = until.to_std().unwrap_or_default();
        assert_eq!(got, Some(want), "HTTP-date {trimmed:?} misread");
    } else {
        assert_eq!(
            got, None,
            "{trimmed:?} is neither delay-seconds nor an HTTP-date"
        );
    }
}

/// Where a target's kept inputs live: `fuzz/corpus/<target>/` (what `hack/fuzz.sh` minimised)
/// and `fuzz/regressions/<target>/` (every input that once crashed, kept whatever `cmin` says).
pub fn input_dirs(target: &str) -> [PathBuf; 2] {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    [
        fuzz.join("corpus").join(target),
        fuzz.join("regressions").join(target),
    ]
}

/// Runs `body` over every kept input of `target` (see [`input_dirs`]) and panics listing each
/// input that failed. A missing or empty corpus fails too: CI must never replay nothing.
pub fn replay(target: &str, body: fn(&[u8])) {
    let [corpus, regressions] = input_dirs(target);
    let mut files = Vec::new();
    for dir in [&corpus, &regressions] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file()),
        );
    }
    let seeds = files.iter().filter(|f| f.starts_with(&corpus)).count();
    assert!(
        seeds > 0,
        "no corpus for fuzz target {target} in {}: run hack/fuzz.sh",
        corpus.display()
    );
    files.sort();
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = match std::fs::read(file) {
                Ok(d) => d,
                Err(e) => panic!("cannot read {}: {e}", file.display()),
            };
            std::panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} kept inputs fail (replay one with `cargo +nightly fuzz run {target} FILE` \
         in fuzz/): {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_corpus() {
        replay("snapshot", snapshot);
    }

    #[test]
    fn url_corpus() {
        replay("url", url);
    }

    #[test]
    fn deliveries_corpus() {
        replay("deliveries", deliveries);
    }

    #[test]
    fn retry_after_corpus() {
        replay("retry_after", retry_after);
    }

    #[test]
    fn replay_fails_on_a_failing_input_and_on_a_missing_corpus() {
        let panics = |_: &[u8]| panic!("property broken");
        assert!(std::panic::catch_unwind(|| replay("url", panics)).is_err());
        assert!(std::panic::catch_unwind(|| replay("no-such-target", url)).is_err());
    }
}
