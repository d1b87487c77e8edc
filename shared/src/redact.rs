//! Reducing URLs to what may appear in logs, Events and metrics labels.
//!
//! Webhook URLs often carry secrets in their path (Slack) or query (`?token=`), so anything
//! written outside the Task annotation shows scheme and host only.

use url::Url;

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
