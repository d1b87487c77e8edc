//! The rules for a hook's URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::fields::Path;
use super::{Context, Report};
use crate::redact::credential_name;

/// Longest URL accepted.
pub(crate) const URL_MAX: usize = 2048;

/// Checks a webhook URL, adding every violation (and warning) at `path` to `report`. Returns the
/// parsed URL only when it broke no rule.
///
/// Rules: at most 2048 characters; absolute; `https`; a host; no user-info; an IP-literal host
/// (the `url` crate normalises decimal, hex and octal IPv4 forms) must pass `ctx.ip_policy`, and
/// `localhost`/`*.localhost` is judged as both 127.0.0.1 and ::1. Host names are not resolved here:
/// the dispatcher judges every resolved address at delivery time.
pub fn validate_url(url: &str, path: &str, ctx: &Context, report: &mut Report) -> Option<Url> {
    check_url(url, &Path::Root(path), ctx, report)
}

/// Why a URL fails the hook URL rules: every violation, worded as admission words it (without a
/// field path). Never holds the URL itself, which may carry a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRejected(pub Vec<String>);

impl std::fmt::Display for UrlRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the URL {}", self.0.join("; "))
    }
}

impl std::error::Error for UrlRejected {}

/// The one verdict on a hook URL, shared by admission's rules (through [`validate_url`] and the
/// hook rules), the dispatcher at delivery time and `check-url`: every rule of [`validate_url`]
/// (length, characters, absolute `https://`, a host, no user-info, port, blocked IP-literal and
/// `localhost` hosts judged against `ctx.ip_policy`), in that order. Warnings (a credential-like
/// query parameter, a fragment) are advice for the author and do not refuse the URL. The
/// addresses a host name resolves to are judged by the caller that resolves it.
pub fn judge_hook_url(url: &str, ctx: &Context) -> Result<Url, UrlRejected> {
    let mut report = Report::default();
    match check_url(url, &Path::Root(""), ctx, &mut report) {
        Some(parsed) => Ok(parsed),
        None => Err(UrlRejected(
            report.errors.into_iter().map(|e| e.message).collect(),
        )),
    }
}

/// [`validate_url`] at a lazily built path (rendered only when something is reported).
pub(crate) fn check_url(
    url: &str,
    path: &Path<'_>,
    ctx: &Context,
    report: &mut Report,
) -> Option<Url> {
    if !precheck(url, path, report) {
        return None;
    }
    parse_and_judge(url, path, ctx, report)
}

/// [`check_url`] without the parsed URL, for the rules: the same findings, and the common plain
/// form (`https://host.example/path`, see [`plain_https_host`]) skips the URL parser.
pub(crate) fn judge_url(url: &str, path: &Path<'_>, ctx: &Context, report: &mut Report) {
    if !precheck(url, path, report) {
        return;
    }
    match plain_https_host(url) {
        Some(host) => judge_domain(host, path, ctx, report),
        None => {
            parse_and_judge(url, path, ctx, report);
        }
    }
}

/// The checks on the text before parsing; false (with the error reported) when one fails.
fn precheck(url: &str, path: &Path<'_>, report: &mut Report) -> bool {
    if url.trim().is_empty() {
        report.error(path, "must not be empty; set the receiver's https:// URL");
        return false;
    }
    if has_space_or_control(url) {
        // The url crate would silently strip or encode these; the receiver would see another URL.
        report.error(
            path,
            "must not contain spaces, line breaks or control characters; percent-encode them (%20)",
        );
        return false;
    }
    if url.len() > URL_MAX {
        report.error(
            path,
            format!(
                "must be at most {URL_MAX} characters, has {}; shorten it (move long parameters into the payload \
                 or secretRef headers)",
                url.len()
            ),
        );
        return false;
    }
    true
}

/// Parses `url` (which passed [`precheck`]) and judges the parts.
fn parse_and_judge(url: &str, path: &Path<'_>, ctx: &Context, report: &mut Report) -> Option<Url> {
    let errors_before = report.errors.len();
    let parsed = match Url::parse(url) {
        Ok(parsed) => parsed,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            report.error(
                path,
                "must be an absolute URL such as https://hooks.example.com/path",
            );
            return None;
        }
        // The parse error names the problem, never the input (which may hold a secret).
        Err(e) => {
            report.error(
                path,
                format!("is not a valid URL ({e}); use the form https://host[:port]/path"),
            );
            return None;
        }
    };

    if parsed.scheme() != "https" {
        report.error(
            path,
            format!(
                "must use https, not {}: webhooks carry Task data and secret headers; use an https:// URL",
                parsed.scheme()
            ),
        );
    } else if url
        .strip_prefix("https://")
        .is_none_or(|rest| rest.starts_with(['/', '\\']))
    {
        // The url crate forgives `HTTPS:`, `https:host` and `https:///host`; the CRD schema and
        // other tools do not, so ask for the plain form.
        report.error(
            path,
            "must start with https:// (lowercase) followed directly by the host",
        );
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || authority_has_at(url) {
        report.error(path, "must not contain credentials; put them in secretRef");
    }
    if parsed.port() == Some(0) {
        report.error(
            path,
            "port 0 cannot be connected to; remove the port or use the receiver's port",
        );
    }
    match parsed.host() {
        None => report.error(
            path,
            "must have a host, as in https://hooks.example.com/path",
        ),
        // `https://./` parses with the DNS root `.` as its host: no host to deliver to either.
        Some(Host::Domain(domain)) if domain.trim_end_matches('.').is_empty() => report.error(
            path,
            "must have a host, as in https://hooks.example.com/path",
        ),
        Some(Host::Ipv4(ip)) => judge_ip(IpAddr::V4(ip), path, ctx, report),
        Some(Host::Ipv6(ip)) => judge_ip(IpAddr::V6(ip), path, ctx, report),
        Some(Host::Domain(domain)) => judge_domain(domain, path, ctx, report),
    }

    warn_credential_params(&parsed, path, report);
    if parsed.fragment().is_some() {
        report.warn_at(
            path,
            "has a #fragment, which is never sent to the receiver; remove it",
        );
    }
    (report.errors.len() == errors_before).then_some(parsed)
}

/// A host name (not an IP literal): only `localhost` and `*.localhost` are judged here.
fn judge_domain(domain: &str, path: &Path<'_>, ctx: &Context, report: &mut Report) {
    let domain = domain.trim_end_matches('.');
    if !is_localhost(domain) {
        return;
    }
    // RFC 6761: always loopback, whatever DNS says; judge both address families.
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if let Err(blocked) = ctx.ip_policy.judge(ip) {
            let domain = domain.to_ascii_lowercase();
            report.error(
                path,
                format!(
                    "host {domain} always means the local host and is refused: {blocked}; use the \
                     receiver's address, or ask the operator to add {ip} to --allow-cidr"
                ),
            );
            break;
        }
    }
}

/// The host of a URL in the plain form most webhooks use, for which every rule but the host's
/// own judgement is known to pass without parsing: `https://` (lowercase), then a host name
/// whose labels are each a lowercase letter followed by letters, digits and `-`, not ending in
/// `-` and without `--` at the third and fourth characters (the labels the IDNA mapping passes
/// through unchanged, and which cannot end in a number, so no IPv4 reading), then nothing or a
/// path (`/…`) without `?` or `#` (no query, no fragment).
///
/// For such a URL (one that passed [`precheck`]), `Url::parse` succeeds with scheme `https`, no
/// user-info (no `@` before the path), no port (no `:` in the host), this exact host as a domain,
/// no query and no fragment — so [`parse_and_judge`] reports what [`judge_domain`] reports on this
/// host and nothing else. The tests compare both over many generated URLs.
fn plain_https_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let bytes = rest.as_bytes();
    // One pass over the host: `start` is where the current label began.
    let mut start = 0;
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' => {}
            b'0'..=b'9' | b'-' if i > start => {}
            b'.' | b'/' => {
                if !label_ends_plainly(bytes, start, i) {
                    return None;
                }
                if b == b'/' {
                    end = i;
                    break;
                }
                start = i + 1;
            }
            _ => return None,
        }
    }
    if end == bytes.len() && !label_ends_plainly(bytes, start, end) {
        return None;
    }
    let tail = bytes.get(end..).unwrap_or_default();
    if tail.iter().any(|b| matches!(b, b'?' | b'#')) {
        return None;
    }
    rest.get(..end)
}

/// Whether `bytes[start..end]`, a run of lowercase letters, digits and `-` starting with a letter
/// (or empty), is a non-empty label not ending in `-` and without `--` at its third character.
fn label_ends_plainly(bytes: &[u8], start: usize, end: usize) -> bool {
    end > start
        && bytes.get(end - 1) != Some(&b'-')
        && !(end - start >= 4 && bytes.get(start + 2..start + 4) == Some(b"--"))
}

fn judge_ip(ip: IpAddr, path: &Path<'_>, ctx: &Context, report: &mut Report) {
    if let Err(blocked) = ctx.ip_policy.judge(ip) {
        report.error(
            path,
            format!(
                "must not point at a blocked address: {blocked}; use a public address or host name, or ask \
                 the operator to add {} to --allow-cidr",
                // The allowlist matches a mapped address by its IPv4 form too; suggest the plain one.
                ip.to_canonical()
            ),
        );
    }
}

/// One warning per query parameter whose name looks like a credential.
fn warn_credential_params(parsed: &Url, path: &Path<'_>, report: &mut Report) {
    if parsed.query().is_none() {
        return;
    }
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in parsed.query_pairs() {
        let Some(credential) = credential_name(&name) else {
            continue;
        };
        if !seen.contains(&credential) {
            report.warn_at(
                path,
                format!(
                    "query parameter {name:?} looks like a credential; URLs are copied into Task \
                     annotations, so put credentials in secretRef (sent as headers)"
                ),
            );
            seen.push(credential);
        }
    }
}

/// `localhost` or `*.localhost`, in any ASCII case (a trailing dot already removed).
fn is_localhost(domain: &str) -> bool {
    const SUFFIX: &str = ".localhost";
    domain.eq_ignore_ascii_case("localhost")
        || (domain.len() >= SUFFIX.len()
            && domain
                .get(domain.len() - SUFFIX.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(SUFFIX)))
}

/// Any whitespace or control character. ASCII ones are `<= ' '` or DEL, checked bytewise; the
/// char-wise test runs only for non-ASCII text.
fn has_space_or_control(url: &str) -> bool {
    // No early exit, so the byte scan vectorises.
    url.bytes()
        .fold(false, |found, b| found | (b <= b' ') | (b == 0x7f))
        || (!url.is_ascii() && url.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Whether the authority as written (between the first `//` and the next `/`, backslash, `?` or
/// `#`) holds an `@`, which the url crate may have taken apart. Most URLs have no `@` at all.
fn authority_has_at(url: &str) -> bool {
    url.contains('@')
        && url.split_once("//").is_some_and(|(_, rest)| {
            rest.split(['/', '\\', '?', '#'])
                .next()
                .unwrap_or_default()
                .contains('@')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ip::IpPolicy;

    /// Every combination of these parts, some plain and most not.
    fn urls() -> Vec<String> {
        let prefixes = [
            "https://",
            "HTTPS://",
            "Https://",
            "http://",
            "https:/",
            "https:",
            "https:///",
            "ftp://",
            "https:\\\\",
            "",
        ];
        let labels = [
            "a",
            "hooks0",
            "example",
            "com",
            "xn--nxasmq6b",
            "xn--a",
            "ab--c",
            "a-b",
            "-a",
            "a-",
            "1a",
            "0x1",
            "0",
            "255",
            "localhost",
            "LOCALHOST",
            "Example",
            "a_b",
            "",
            "münchen",
            "%41",
            "ex%2ecom",
            "[::1]",
            "a:443",
            "a:0",
            "u@a",
            "u:p@a",
            "10",
        ];
        let tails = [
            "",
            "/",
            "/x/y",
            "/a?token=1",
            "/?",
            "/#f",
            "#f",
            "?q",
            "/ü",
            "\\x",
            "/@x",
            "/..",
            "/%zz",
            ":443/x",
            ":0",
            "./x",
            "/a'b\"c",
        ];
        let mut urls = Vec::new();
        for prefix in prefixes {
            for (i, first) in labels.iter().enumerate() {
                for second in [None, Some(labels[(i * 7 + 3) % labels.len()]), Some("com")] {
                    for trailing_dot in [false, true] {
                        for tail in tails {
                            let mut host = (*first).to_owned();
                            if let Some(second) = second {
                                host = format!("{host}.{second}");
                            }
                            if trailing_dot {
                                host.push('.');
                            }
                            urls.push(format!("{prefix}{host}{tail}"));
                        }
                    }
                }
            }
        }
        for label in labels {
            for other in labels {
                urls.push(format!("https://{label}.{other}/p"));
                urls.push(format!("https://{other}.{label}"));
            }
        }
        // Hosts of one to three labels that all look plain, for the shortcut's own cases.
        let plain_labels = [
            "a",
            "hooks0",
            "example",
            "com",
            "localhost",
            "a-b",
            "z9",
            "b1-2",
            "x-n",
            "local",
        ];
        let mut hosts: Vec<String> = plain_labels.iter().map(|l| (*l).to_owned()).collect();
        for _ in 0..2 {
            let longer: Vec<String> = hosts
                .iter()
                .flat_map(|h| plain_labels.iter().map(move |l| format!("{h}.{l}")))
                .collect();
            hosts.extend(longer);
        }
        hosts.sort();
        hosts.dedup();
        for host in &hosts {
            for tail in [
                "", "/", "/x/y", "/ü", "\\x", "/@x", "/..", "/%zz", "/a:b", "/a'b",
            ] {
                urls.push(format!("https://{host}{tail}"));
            }
        }
        urls.push(format!("https://a.com/{}", "x".repeat(URL_MAX)));
        urls.push(format!("https://{}.com/", "a".repeat(300)));
        urls
    }

    /// `judge_url` (which skips the parser for plain URLs) finds exactly what the full parse
    /// finds, for blocked and allowed loopback alike.
    #[test]
    fn plain_form_shortcut_agrees_with_the_parser() {
        let allow_loopback = IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128"]).unwrap();
        let allow_v4_only = IpPolicy::from_cidrs(&["127.0.0.1/32"]).unwrap();
        let policies = [IpPolicy::default(), allow_loopback, allow_v4_only];
        let urls = urls();
        let mut plain = 0;
        for url in &urls {
            if plain_https_host(url).is_some() {
                plain += 1;
            }
            for policy in &policies {
                let ctx = Context { ip_policy: policy };
                let path = Path::Root("u");
                let mut parsed = Report::default();
                check_url(url, &path, &ctx, &mut parsed);
                let mut judged = Report::default();
                judge_url(url, &path, &ctx, &mut judged);
                assert_eq!(judged, parsed, "{url:?}");
            }
        }
        assert!(
            plain > 10_000,
            "the shortcut took only {plain} of {}",
            urls.len()
        );
        assert!(plain < urls.len() - 10_000, "{plain} of {}", urls.len());
    }

    /// The shared verdict refuses exactly what the admission rules refuse, with their messages,
    /// and never names the URL.
    #[test]
    fn judge_hook_url_is_the_admission_verdict() {
        let policies = [
            IpPolicy::default(),
            IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128"]).unwrap(),
        ];
        for url in urls().iter().step_by(7) {
            for policy in &policies {
                let ctx = Context { ip_policy: policy };
                let mut report = Report::default();
                let parsed = validate_url(url, "", &ctx, &mut report);
                match judge_hook_url(url, &ctx) {
                    Ok(u) => assert_eq!(Some(u), parsed, "{url:?}"),
                    Err(rejected) => {
                        assert!(parsed.is_none(), "{url:?}");
                        let messages: Vec<String> =
                            report.errors.into_iter().map(|e| e.message).collect();
                        assert_eq!(rejected.0, messages, "{url:?}");
                    }
                }
            }
        }
        let err = judge_hook_url(
            "https://u:pw-123@127.0.0.1/x?token=t-456",
            &Context::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("the URL must not contain credentials"),
            "{err}"
        );
        assert!(err.contains("blocked range 127.0.0.0/8"), "{err}");
        assert!(!err.contains("pw-123") && !err.contains("t-456"), "{err}");
    }

    #[test]
    fn plain_form() {
        for (url, host) in [
            (
                "https://hooks0.example.com/services/kelos/notify",
                "hooks0.example.com",
            ),
            ("https://a", "a"),
            ("https://localhost/x", "localhost"),
            ("https://a-b.c9/p@q\\r", "a-b.c9"),
        ] {
            assert_eq!(plain_https_host(url), Some(host), "{url}");
        }
        for url in [
            "https://a.com/x?y",
            "https://a.com/#y",
            "https://a.com./",
            "https://a..com/",
            "https://.a.com/",
            "https://1.2.3.4/",
            "https://a.0x1/",
            "https://xn--a.com/",
            "https://ab--c.com/",
            "https://a-.com/",
            "https://A.com/",
            "https://a.com:443/",
            "https://u@a.com/",
            "https://a%2ecom/",
            "https://",
            "https:///a",
            "http://a.com/",
            "HTTPS://a.com/",
        ] {
            assert_eq!(plain_https_host(url), None, "{url}");
        }
    }

    #[test]
    fn dots_alone_are_no_host() {
        // Found by fuzzing (fuzz/regressions/url/): the url crate keeps `.` and `..` as domains.
        for url in ["https://./", "https://../x", "https://.//.example.com/"] {
            let mut report = Report::default();
            assert!(
                validate_url(url, "u", &Context::default(), &mut report).is_none(),
                "{url}"
            );
            assert!(
                report.error_summary().contains("must have a host"),
                "{url}: {report:?}"
            );
        }
    }
}
