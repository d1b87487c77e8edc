//! The rules for a hook's URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::fields::Path;
use super::{Context, Report};

/// Longest URL accepted.
pub(crate) const URL_MAX: usize = 2048;

/// Query parameter names that usually carry a credential (compared case-insensitively, `-` as `_`).
const CREDENTIAL_PARAMS: &[&str] = &[
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
];

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

/// [`validate_url`] at a lazily built path (rendered only when something is reported).
pub(crate) fn check_url(
    url: &str,
    path: &Path<'_>,
    ctx: &Context,
    report: &mut Report,
) -> Option<Url> {
    let errors_before = report.errors.len();
    if url.trim().is_empty() {
        report.error(path, "must not be empty; set the receiver's https:// URL");
        return None;
    }
    if has_space_or_control(url) {
        // The url crate would silently strip or encode these; the receiver would see another URL.
        report.error(
            path,
            "must not contain spaces, line breaks or control characters; percent-encode them (%20)",
        );
        return None;
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
        return None;
    }
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
        Some(Host::Domain("")) => report.error(
            path,
            "must have a host, as in https://hooks.example.com/path",
        ),
        Some(Host::Ipv4(ip)) => judge_ip(IpAddr::V4(ip), path, ctx, report),
        Some(Host::Ipv6(ip)) => judge_ip(IpAddr::V6(ip), path, ctx, report),
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.');
            if is_localhost(domain) {
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
        }
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
        let Some(credential) = CREDENTIAL_PARAMS
            .iter()
            .copied()
            .find(|param| same_param(&name, param))
        else {
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

/// Whether query parameter `name` is `param` ignoring ASCII case and reading `-` as `_`.
fn same_param(name: &str, param: &str) -> bool {
    name.len() == param.len()
        && name.bytes().zip(param.bytes()).all(|(n, p)| {
            (if n == b'-' {
                b'_'
            } else {
                n.to_ascii_lowercase()
            }) == p
        })
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
