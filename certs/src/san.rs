//! Subject alternative names: an IP address or a validated DNS name.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A subject alternative name for a serving certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name, e.g. `kelos-hooks.kelos-system.svc`. A leading `*.` wildcard label is allowed.
    Dns(String),
    /// An IP address, e.g. `127.0.0.1` or `::1`.
    Ip(IpAddr),
}

impl FromStr for San {
    type Err = Error;

    /// Parses an IP address (IPv6 optionally in brackets); anything else must be a valid DNS name.
    fn from_str(s: &str) -> Result<Self> {
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        validate_dns_name(s).map_err(|reason| Error::InvalidSan {
            value: s.to_string(),
            reason,
        })?;
        // DNS is case-insensitive; certificates conventionally carry lower case.
        Ok(San::Dns(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl From<IpAddr> for San {
    fn from(ip: IpAddr) -> Self {
        San::Ip(ip)
    }
}

/// Checks a DNS name: 1..=253 characters, dot-separated labels of 1..=63 ASCII letters, digits
/// or '-', no label starting or ending with '-'; only the first label may be the wildcard `*`.
/// An all-numeric last label is refused so a mistyped IP (`10.0.0.256`) is not taken as a name.
fn validate_dns_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err("empty label (leading, trailing or double dot)".into());
        }
        if *label == "*" {
            if i == 0 && labels.len() > 1 {
                continue;
            }
            return Err("'*' is only allowed as the whole first label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("character {c:?} is not allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if labels
        .last()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("the last label is all digits (not an IP address, not a host name)".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips() {
        assert_eq!(
            "127.0.0.1".parse::<San>().unwrap(),
            San::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            "::1".parse::<San>().unwrap(),
            San::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            "[::1]".parse::<San>().unwrap(),
            San::Ip("::1".parse().unwrap())
        );
    }

    #[test]
    fn parses_dns_names() {
        for ok in [
            "localhost",
            "kelos-hooks.kelos-system.svc",
            "kelos-hooks.kelos-system.svc.cluster.local",
            "*.example.com",
            "a1-b2.c3",
        ] {
            assert_eq!(ok.parse::<San>().unwrap(), San::Dns(ok.to_string()), "{ok}");
        }
        assert_eq!(
            "LocalHost".parse::<San>().unwrap(),
            San::Dns("localhost".into())
        );
    }

    #[test]
    fn rejects_bad_names() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            "a_b",
            "a b",
            "https://a.b",
            "a/b",
            "*",
            "a.*.b",
            "*a.b",
            "10.0.0.256",
            "1.2.3",
            long_label.as_str(),
            long_name.as_str(),
            "ünï.de",
        ] {
            let err = bad.parse::<San>().unwrap_err();
            assert!(matches!(err, Error::InvalidSan { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1", "::1", "svc.ns.svc"] {
            let san: San = s.parse().unwrap();
            assert_eq!(san.to_string(), s);
        }
    }
}
