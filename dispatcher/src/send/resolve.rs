//! Resolve once, judge every address, hand only vetted addresses to the connector.
//!
//! reqwest asks [`VettingResolver`] for a host's addresses and connects to exactly what it returns,
//! so there is no second lookup a DNS rebinding could exploit. IP-literal hosts bypass resolvers in
//! reqwest, so [`vet_url`] judges them (with every other URL rule) before a request is built.
//! `check-url` uses the same code.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use kelos_hooks_shared::ip::{Blocked, IpPolicy};
use kelos_hooks_shared::validation::{Context, UrlRejected, judge_hook_url};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A boxed future of a lookup's answers.
pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves a host name to addresses (getaddrinfo in production; a table in tests).
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// The system resolver through tokio (getaddrinfo: honours /etc/hosts and nsswitch).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            ips.dedup();
            Ok(ips)
        })
    })
}

/// Why a URL's destination was refused or could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An address the host name resolved to is in a blocked range.
    Blocked {
        /// The host as written in the URL.
        host: String,
        /// The first blocked address and its range.
        blocked: Blocked,
    },
    /// The URL breaks a hook URL rule (scheme, host, user-info, port, blocked IP-literal host):
    /// the shared verdict admission gives too.
    Rules(UrlRejected),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Blocked { host, blocked } => write!(f, "{host} resolves to {blocked}"),
            Refusal::Rules(rejected) => rejected.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

/// A lookup that failed or found nothing (retryable: DNS may recover).
#[derive(Debug)]
pub struct LookupFailed {
    /// The host name.
    pub host: String,
    /// What the resolver said.
    pub error: String,
}

impl fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not resolve {}: {}", self.host, self.error)
    }
}

impl std::error::Error for LookupFailed {}

/// The host of a URL to deliver to: a name to resolve, or an address already judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name; the resolver judges its answers.
    Name(String),
    /// An IP literal, already allowed by the policy.
    Ip(IpAddr),
}

/// Applies every hook URL rule through the shared verdict admission uses
/// ([`judge_hook_url`]): hooks reach the dispatcher from objects the validating webhook never saw
/// (the spawner fallback, Tasks created before the webhooks were registered). An IP-literal host
/// is judged there; a host name is judged by [`VettingResolver`] on every answer.
pub fn vet_url(url: &str, policy: &IpPolicy) -> Result<(Url, Target), Refusal> {
    let parsed = judge_hook_url(url, &Context { ip_policy: policy }).map_err(Refusal::Rules)?;
    let target = match parsed.host() {
        Some(Host::Ipv4(ip)) => Target::Ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Target::Ip(IpAddr::V6(ip)),
        Some(Host::Domain(d)) => Target::Name(d.to_owned()),
        // The rules refuse a URL without a host; say so rather than panic if that ever changes.
        None => {
            return Err(Refusal::Rules(UrlRejected(vec![
                "must have a host, as in https://hooks.example.com/path".into(),
            ])));
        }
    };
    Ok((parsed, target))
}

/// Every address must pass; the first blocked one is reported.
pub fn judge_all(host: &str, ips: &[IpAddr], policy: &IpPolicy) -> Result<(), Refusal> {
    for ip in ips {
        policy.judge(*ip).map_err(|blocked| Refusal::Blocked {
            host: host.to_owned(),
            blocked,
        })?;
    }
    Ok(())
}

/// Resolves `host` once and judges every answer: the vetted addresses, or why not.
pub async fn resolve_vetted(
    host: &str,
    lookup: &Lookup,
    policy: &IpPolicy,
) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let ips = lookup(host.to_owned()).await.map_err(|e| LookupFailed {
        host: host.to_owned(),
        error: e.to_string(),
    })?;
    if ips.is_empty() {
        return Err(Box::new(LookupFailed {
            host: host.to_owned(),
            error: "no addresses".into(),
        }));
    }
    judge_all(host, &ips, policy)?;
    Ok(ips)
}

/// reqwest resolver that returns only vetted addresses.
#[derive(Clone)]
pub struct VettingResolver {
    /// How names are looked up.
    pub lookup: Lookup,
    /// The address policy.
    pub policy: Arc<IpPolicy>,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = resolve_vetted(name.as_str(), &this.lookup, &this.policy).await?;
            // Port 0: the connector sets the URL's port.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Finds a [`Refusal`] anywhere in an error's source chain (reqwest wraps resolver errors).
pub fn find_refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn table(answers: Vec<(&'static str, Vec<&'static str>)>) -> Lookup {
        let answers: std::collections::HashMap<String, Vec<IpAddr>> = answers
            .into_iter()
            .map(|(h, ips)| {
                (
                    h.to_owned(),
                    ips.into_iter().map(|i| i.parse().unwrap()).collect(),
                )
            })
            .collect();
        Arc::new(move |host: String| {
            let found = answers.get(&host).cloned();
            Box::pin(async move {
                found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "NXDOMAIN"))
            })
        })
    }

    #[tokio::test]
    async fn one_blocked_answer_rejects_the_name() {
        let lookup = table(vec![
            ("mixed.example", vec!["93.184.216.34", "10.1.2.3"]),
            ("ok.example", vec!["93.184.216.34"]),
        ]);
        let policy = IpPolicy::default();
        let err = resolve_vetted("mixed.example", &lookup, &policy)
            .await
            .unwrap_err();
        let refusal = find_refusal(err.as_ref()).unwrap();
        assert!(
            refusal
                .to_string()
                .starts_with("mixed.example resolves to 10.1.2.3 is in blocked range 10.0.0.0/8 ("),
            "{refusal}"
        );
        assert!(refusal.to_string().contains("10.0.0.0/8"));
        assert_eq!(
            resolve_vetted("ok.example", &lookup, &policy)
                .await
                .unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        let nx = resolve_vetted("nx.example", &lookup, &policy)
            .await
            .unwrap_err();
        assert!(find_refusal(nx.as_ref()).is_none());
        assert!(nx.to_string().contains("could not resolve nx.example"));
        let open = IpPolicy::from_cidrs(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            resolve_vetted("mixed.example", &lookup, &open)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn localhost_is_blocked_through_the_system_resolver() {
        let err = resolve_vetted("localhost", &system_lookup(), &IpPolicy::default())
            .await
            .unwrap_err();
        let refusal = find_refusal(err.as_ref()).expect("localhost must be refused");
        assert!(
            refusal.to_string().contains("localhost resolves to"),
            "{refusal}"
        );
    }

    #[test]
    fn literal_hosts_and_schemes() {
        let p = IpPolicy::default();
        for url in [
            "https://127.0.0.1:8443/x",
            "https://[::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://localhost/x",
        ] {
            let err = vet_url(url, &p).unwrap_err();
            assert!(matches!(err, Refusal::Rules(_)), "{url}: {err:?}");
            assert!(err.to_string().contains("blocked range"), "{url}: {err}");
        }
        let err = vet_url("http://example.com/", &p).unwrap_err();
        assert!(
            err.to_string().contains("must use https, not http"),
            "{err}"
        );
        assert!(matches!(vet_url("not a url", &p), Err(Refusal::Rules(_))));
        assert_eq!(
            vet_url("https://example.com/x", &p).unwrap().1,
            Target::Name("example.com".into())
        );
        assert_eq!(
            vet_url("https://8.8.8.8/x", &p).unwrap().1,
            Target::Ip("8.8.8.8".parse().unwrap())
        );
        let open = IpPolicy::from_cidrs(&["127.0.0.0/8"]).unwrap();
        assert!(vet_url("https://127.0.0.1:8443/x", &open).is_ok());
    }

    /// Every rule admission applies is applied at delivery, even where the address is allowed,
    /// and the refusal never echoes the credential.
    #[test]
    fn every_admission_rule_applies_at_delivery() {
        let open = IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128"]).unwrap();
        for (url, why) in [
            ("https://user:hunter2@127.0.0.1:8443/x", "credentials"),
            ("https://:hunter2@localhost/x", "credentials"),
            ("https://hunter2@example.com/x", "credentials"),
            ("http://example.com/x", "https"),
            ("HTTPS://example.com/x", "lowercase"),
            ("https:///x", "host"),
            ("https://example.com:0/x", "port 0"),
            ("https://exa mple.com/x", "spaces"),
            ("/relative?token=hunter2", "absolute"),
        ] {
            let err = vet_url(url, &open).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
        // Advice is not a refusal.
        assert!(vet_url("https://example.com/x?token=t#f", &open).is_ok());
    }
}
