//! Reducing URLs to what may appear in logs, Events and metrics labels, and [`redact`]: the one
//! function every error, warning, log line and Event text goes through when it may quote input.
//!
//! Webhook URLs often carry secrets in their path (Slack) or query (`?token=`), so anything
//! written outside the Task annotation shows scheme and host only.

use std::borrow::Cow;

use url::Url;

/// What replaces a credential in free text.
pub const REDACTED: &str = "<redacted>";

/// Names of `name=value` and `name: value` pairs whose value is a credential, compared
/// case-insensitively with `-` read as `_` (query parameters and header names alike).
const CREDENTIAL_NAMES: &[&str] = &[
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
    "x_api_key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "sig",
    "signature",
    "auth",
    "code",
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "webhook_signature",
];

/// Authorization schemes (as written in an `Authorization` header) whose following word is a
/// credential. Case-sensitive, so plain prose ("basic checks") is left alone.
const AUTH_SCHEMES: &[&str] = &["Bearer", "Basic", "Digest"];

/// `text` with every credential it may quote removed: each URL (`scheme://…`) reduced to
/// [`scheme_and_host`] (no user-info, path, query or fragment), the value of every
/// credential-named pair (`token=…`, `password: …`, `"api_key":"…"`) and the word after an
/// authorization scheme (`Bearer …`) replaced by [`REDACTED`]. Borrowed unchanged when there is
/// nothing to remove. Use it on any text that quotes user input or another system's error
/// (serde, reqwest, the API server) before it reaches a log, an Event, an annotation or a
/// response.
pub fn redact(text: &str) -> Cow<'_, str> {
    let urls = redact_urls(text);
    match redact_pairs(&urls) {
        Cow::Borrowed(_) => urls,
        Cow::Owned(o) => Cow::Owned(o),
    }
}

/// Shortest known secret value [`redact_known`] looks for (shorter ones would match everywhere).
pub const KNOWN_MIN: usize = 4;

/// [`redact`], after replacing every occurrence of the `known` secret values (e.g. the Secret
/// header values just sent, which a receiver may echo in its answer) by [`REDACTED`]. Values
/// shorter than [`KNOWN_MIN`] are not looked for.
pub fn redact_known<'t>(text: &'t str, known: &[&str]) -> Cow<'t, str> {
    let mut replaced: Option<String> = None;
    for secret in known.iter().filter(|k| k.len() >= KNOWN_MIN) {
        let current = replaced.as_deref().unwrap_or(text);
        if current.contains(secret) {
            replaced = Some(current.replace(secret, REDACTED));
        }
    }
    match replaced {
        None => redact(text),
        Some(r) => Cow::Owned(redact(&r).into_owned()),
    }
}

/// Characters that end a URL quoted in free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '{' | '}' | ',' | ';' | '|'
        )
}

/// Every `scheme://…` in `text` reduced to scheme and host.
fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` before `://`, starting with a letter.
        let before = &rest[..at];
        let scheme_len = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .count();
        let mut start = at - scheme_len;
        while start < at && !before[start..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            start += 1;
        }
        let end = rest[at + 3..]
            .find(ends_url)
            .map_or(rest.len(), |i| at + 3 + i);
        if start == at || end == at + 3 {
            // No scheme, or nothing after `://` (prose such as "an https:// URL"): keep it.
            out.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(&scheme_and_host(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// The entry of [`CREDENTIAL_NAMES`] that `name` (unquoted) is, ignoring ASCII case and reading
/// `-` as `_`: the names redacted here and the query parameters the URL rules warn about.
pub(crate) fn credential_name(name: &str) -> Option<&'static str> {
    let name = name.trim_matches(|c| c == '"' || c == '\'');
    CREDENTIAL_NAMES.iter().copied().find(|c| {
        c.len() == name.len()
            && name.bytes().zip(c.bytes()).all(|(n, c)| {
                (if n == b'-' {
                    b'_'
                } else {
                    n.to_ascii_lowercase()
                }) == c
            })
    })
}

fn is_credential_name(name: &str) -> bool {
    credential_name(name).is_some()
}

/// The values of credential-named pairs and the word after an authorization scheme.
fn redact_pairs(text: &str) -> Cow<'_, str> {
    let is_name = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '~');
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut redact_next = false;
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        // One token: a run of name characters, or one other character.
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_name(c))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            out.push(first);
            rest = &rest[first.len_utf8()..];
            continue;
        }
        let (word, tail) = rest.split_at(len);
        rest = tail;
        if redact_next {
            out.push_str(REDACTED);
            changed = true;
            // `Authorization: Bearer abc`: the scheme was the value, the credential follows.
            redact_next = is_auth_scheme(word) && space_then_word(tail).is_some();
            continue;
        }
        out.push_str(word);
        if let Some(sep) = pair_separator(tail)
            && is_credential_name(word)
            && !tail[sep..].starts_with(REDACTED)
        {
            out.push_str(&tail[..sep]);
            rest = &tail[sep..];
            redact_next = true;
            continue;
        }
        if is_auth_scheme(word)
            && let Some(spaces) = space_then_word(tail)
        {
            out.push_str(&tail[..spaces]);
            rest = &tail[spaces..];
            redact_next = true;
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

fn is_auth_scheme(word: &str) -> bool {
    AUTH_SCHEMES.contains(&word)
}

/// The number of spaces at the start of `tail` when at least one is followed by a word.
fn space_then_word(tail: &str) -> Option<usize> {
    let after = tail.trim_start_matches(' ');
    let spaces = tail.len() - after.len();
    (spaces > 0 && after.starts_with(|c: char| c.is_alphanumeric())).then_some(spaces)
}

/// The length of a `=`, `: `, `":"` or `" = "` separator (with quotes and spaces) at the start
/// of `tail` when a value follows it.
fn pair_separator(tail: &str) -> Option<usize> {
    let bytes = tail.as_bytes();
    let mut i = 0;
    // A closing quote of a quoted name.
    if matches!(bytes.first(), Some(b'"' | b'\'')) {
        i += 1;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if !matches!(bytes.get(i), Some(b'=' | b':')) {
        return None;
    }
    i += 1;
    while matches!(bytes.get(i), Some(b' ' | b'"' | b'\'')) {
        i += 1;
    }
    // A value follows (not the end of the text, not another separator).
    tail[i..]
        .starts_with(|c: char| {
            c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '~')
        })
        .then_some(i)
}

/// Placeholder for a URL that does not parse; the input is never echoed, it may hold a secret.
pub const INVALID_URL: &str = "<invalid url>";

/// `scheme://host[:port]` of `url` — never path, query, fragment or user-info. The port is shown
/// only when it is not the scheme's default. [`INVALID_URL`] when `url` does not parse or has no
/// host.
pub fn scheme_and_host(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return INVALID_URL.to_owned();
    };
    // `host_str` puts IPv6 addresses in brackets and IDNs in punycode: safe to print as is.
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return INVALID_URL.to_owned();
    };
    match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_every_credential_it_quotes() {
        for (text, want) in [
            (
                "invalid type: string \"https://user:hunter2@hooks.example.com/x?token=abc\", expected a sequence",
                "invalid type: string \"https://hooks.example.com\", expected a sequence",
            ),
            (
                "error sending request for url (https://h.example/services/T0/B0/SECRET): timed out",
                "error sending request for url (https://h.example): timed out",
            ),
            ("GET /x?token=abc123&ok=1", "GET /x?token=<redacted>&ok=1"),
            ("api-key: abc123 rest", "api-key: <redacted> rest"),
            (
                "{\"password\":\"hunter2\"}",
                "{\"password\":\"<redacted>\"}",
            ),
            (
                "Authorization: Bearer eyJabc.def",
                "Authorization: <redacted> <redacted>",
            ),
            (
                "sent Bearer eyJabc.def to it",
                "sent Bearer <redacted> to it",
            ),
            (
                "see https://u:p@h.example:8443/a b",
                "see https://h.example:8443 b",
            ),
            ("http://[bad", "<invalid url>"),
            ("a://b:c@[::1]:8/p x", "a://[::1]:8 x"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    #[test]
    fn known_values_are_removed_wherever_they_are() {
        let echoed = "HTTP 400: {\"headers\":{\"x-team\":\"s3cr3t-v4lue\"}} (s3cr3t-v4lue)";
        let out = redact_known(echoed, &["s3cr3t-v4lue", "ab"]);
        assert_eq!(
            out,
            "HTTP 400: {\"headers\":{\"x-team\":\"<redacted>\"}} (<redacted>)"
        );
        assert_eq!(redact_known("ab cd", &["ab"]), "ab cd");
        assert_eq!(redact_known("token=x", &[]), "token=<redacted>");
    }

    #[test]
    fn redact_leaves_plain_text_alone() {
        for text in [
            "",
            "must use https, not http: webhooks carry Task data and secret headers; use an https:// URL",
            "spec.onCompletion.hooks[0].webhook.url: query parameter \"token\" looks like a credential",
            "Secret ns/sig has no key \"secret\"",
            "key \"X-Api-Key\" holds a value that is not a valid HTTP header value",
            "10.1.2.3 is in blocked range 10.0.0.0/8 (private-use)",
            "timed out after 2s",
            "the token is missing",
        ] {
            assert!(
                matches!(redact(text), Cow::Borrowed(_)),
                "{text} -> {}",
                redact(text)
            );
        }
    }

    #[test]
    fn keeps_scheme_host_and_explicit_port() {
        assert_eq!(
            scheme_and_host("https://hooks.example.com:8443/x?y=1#z"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(
            scheme_and_host("https://hooks.example.com/services/T0/B0/SECRET"),
            "https://hooks.example.com"
        );
        assert_eq!(
            scheme_and_host("https://hooks.example.com:443/x"),
            "https://hooks.example.com"
        );
        assert_eq!(
            scheme_and_host("HTTPS://Hooks.Example.COM/"),
            "https://hooks.example.com"
        );
        assert_eq!(scheme_and_host("http://10.0.0.1:80/"), "http://10.0.0.1");
        assert_eq!(
            scheme_and_host("https://[::1]:9443/p"),
            "https://[::1]:9443"
        );
    }

    #[test]
    fn drops_user_info_query_and_fragment() {
        let out = scheme_and_host("https://user:hunter2@hooks.example.com/p?token=abc#frag");
        assert_eq!(out, "https://hooks.example.com");
        assert!(!out.contains("hunter2") && !out.contains("abc") && !out.contains("user"));
    }

    #[test]
    fn invalid_urls_are_not_echoed() {
        for bad in [
            "",
            "not a url",
            "/relative/path?token=secret",
            "https://",
            "https://exa mple.com/secret",
            "mailto:secret@example.com",
        ] {
            assert_eq!(scheme_and_host(bad), INVALID_URL, "{bad}");
        }
    }
}
