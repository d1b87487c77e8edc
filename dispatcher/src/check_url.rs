//! `check-url`: the delivery path's verdict on a URL (every hook URL rule admission applies, then
//! every resolved address), without sending anything.

use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::redact::scheme_and_host;

use crate::send::resolve::{Lookup, Target, find_refusal, resolve_vetted, vet_url};

/// The verdict and the line to print.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every address allowed: `allowed: https://host -> 1.2.3.4, …`.
    Allowed(String),
    /// Refused: `blocked: <reason>`.
    Blocked(String),
}

/// Judges `url` with the same functions a delivery uses.
pub async fn check(url: &str, policy: &IpPolicy, lookup: &Lookup) -> Verdict {
    let (_, target) = match vet_url(url, policy) {
        Ok(v) => v,
        Err(refusal) => return Verdict::Blocked(format!("blocked: {refusal}")),
    };
    let shown = scheme_and_host(url);
    match target {
        Target::Ip(ip) => Verdict::Allowed(format!("allowed: {shown} -> {ip}")),
        Target::Name(host) => match resolve_vetted(&host, lookup, policy).await {
            Ok(ips) => {
                let list = ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                Verdict::Allowed(format!("allowed: {shown} -> {list}"))
            }
            Err(e) => match find_refusal(e.as_ref()) {
                Some(refusal) => Verdict::Blocked(format!("blocked: {refusal}")),
                None => Verdict::Blocked(format!("blocked: {e} (a delivery would retry)")),
            },
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::send::resolve::system_lookup;

    #[tokio::test]
    async fn verdicts() {
        let lookup = system_lookup();
        let deny = IpPolicy::default();
        let allow = IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128"]).unwrap();
        match check("https://localhost:8443/x?token=s3cr3t", &deny, &lookup).await {
            Verdict::Blocked(line) => {
                assert!(
                    line.starts_with("blocked: the URL host localhost always means the local host"),
                    "{line}"
                );
                assert!(!line.contains("s3cr3t"), "{line}");
            }
            v => panic!("{v:?}"),
        }
        match check("https://localhost:8443/x?token=s3cr3t", &allow, &lookup).await {
            Verdict::Allowed(line) => {
                assert!(line.starts_with("allowed: https://localhost"), "{line}");
                assert!(!line.contains("s3cr3t"), "{line}");
            }
            v => panic!("{v:?}"),
        }
        assert!(
            matches!(check("https://127.0.0.1/", &allow, &lookup).await, Verdict::Allowed(l) if l.ends_with("-> 127.0.0.1"))
        );
        assert!(
            matches!(check("https://127.0.0.1/", &deny, &lookup).await, Verdict::Blocked(l) if l.contains("127.0.0.0/8"))
        );
        assert!(
            matches!(check("http://example.com/", &deny, &lookup).await, Verdict::Blocked(l) if l.contains("must use https, not http"))
        );
        // The rules admission applies, before any lookup: user-info is refused even where the
        // address is allowed, and never echoed.
        match check("https://u:hunter2@localhost:8443/x", &allow, &lookup).await {
            Verdict::Blocked(line) => {
                assert!(line.contains("must not contain credentials"), "{line}");
                assert!(!line.contains("hunter2"), "{line}");
            }
            v => panic!("{v:?}"),
        }
    }
}
