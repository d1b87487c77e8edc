//! The certificate Secret: what it holds, and what to do with it given the wanted names and the
//! clock. [`decide`] is pure; [`build`] makes the new material (fresh keys, no I/O).
//!
//! Keys: `ca.crt` is the CA bundle — the current CA first, then at most one previous CA kept
//! after a CA rotation until it expires, so serving certificates the previous CA signed (still
//! served by replicas that have not re-read the Secret yet) stay trusted. `ca.key` is the
//! current CA's key; `tls.crt`/`tls.key` the serving certificate issued by the current CA.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use kelos_hooks_certs::{
    Ca, Issued, San, certificate_pem, certificates_der, first_certificate_der, time_left,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Secret key of the serving certificate.
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving private key.
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle (current CA first).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the current CA's private key.
pub const CA_KEY: &str = "ca.key";

/// The four PEM documents of the Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`: current CA, then possibly the previous one. This is the webhooks' `caBundle`.
    pub ca_bundle: String,
    /// `ca.key`. Secret.
    pub ca_key: String,
    /// `tls.crt`.
    pub tls_crt: String,
    /// `tls.key`. Secret.
    pub tls_key: String,
}

impl std::fmt::Debug for Material {
    /// Never shows the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("ca_bundle", &self.ca_bundle)
            .field("tls_crt", &self.tls_crt)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// Reads the four keys of a Secret's `data`.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Result<Material, Unusable> {
        let get = |key: &'static str| -> Result<String, Unusable> {
            let bytes = data.get(key).ok_or(Unusable::Missing(key))?;
            String::from_utf8(bytes.0.clone()).map_err(|_| Unusable::NotUtf8(key))
        };
        Ok(Material {
            ca_bundle: get(CA_CRT)?,
            ca_key: get(CA_KEY)?,
            tls_crt: get(TLS_CRT)?,
            tls_key: get(TLS_KEY)?,
        })
    }

    /// The Secret `data` holding this material.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CRT, &self.ca_bundle),
            (CA_KEY, &self.ca_key),
            (TLS_CRT, &self.tls_crt),
            (TLS_KEY, &self.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    /// The serving pair, as written to the server's files.
    pub fn serving(&self) -> Issued {
        Issued {
            cert_pem: self.tls_crt.clone(),
            key_pem: self.tls_key.clone(),
        }
    }

    /// The serving certificate's serial number, hex (for logs).
    pub fn serving_serial(&self) -> String {
        first_certificate_der(&self.tls_crt)
            .ok()
            .and_then(|der| {
                X509Certificate::from_der(&der)
                    .ok()
                    .map(|(_, c)| c.raw_serial_as_string())
            })
            .unwrap_or_default()
    }
}

/// What the certificates must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Every name the serving certificate must carry.
    pub sans: Vec<San>,
    /// Common name of the serving certificate.
    pub common_name: String,
    /// Common name prefix of the CA (a timestamp is appended, telling rotated CAs apart).
    pub ca_common_name: String,
    /// Lifetime of a serving certificate.
    pub cert_validity: Duration,
    /// Lifetime of a CA.
    pub ca_validity: Duration,
    /// Renew when less than this is left.
    pub renew_before: Duration,
}

/// What to do with the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Valid: use it as is (restarts and upgrades do not churn certificates).
    Keep,
    /// No Secret: make a CA and serving certificate and create it.
    Create,
    /// The Secret exists but cannot be used: start over with a new CA.
    Regenerate {
        /// What is wrong (no key material).
        reason: String,
    },
    /// The CA is close to expiry: new CA and serving certificate; the bundle keeps the old CA.
    RotateCa {
        /// Why.
        reason: String,
    },
    /// The serving certificate is close to expiry, lacks a wanted name, or does not belong to
    /// the current CA: issue a new one from the same CA.
    RenewServing {
        /// Why.
        reason: String,
    },
    /// Only the bundle changes: an expired (or surplus) previous CA is dropped.
    PruneBundle,
}

impl Action {
    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Create => "create",
            Action::Regenerate { .. } => "regenerate",
            Action::RotateCa { .. } => "rotate_ca",
            Action::RenewServing { .. } => "renew_serving",
            Action::PruneBundle => "prune_bundle",
        }
    }
}

/// Decides what to do with the Secret `data` (`None`: no Secret) at `now`.
pub fn decide(
    data: Option<&BTreeMap<String, ByteString>>,
    wanted: &Wanted,
    now: SystemTime,
) -> Action {
    let Some(data) = data else {
        return Action::Create;
    };
    let regenerate = |reason: String| Action::Regenerate { reason };
    let material = match Material::from_data(data) {
        Ok(m) => m,
        Err(e) => return regenerate(e.to_string()),
    };
    let cas = match certificates_der(&material.ca_bundle) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return regenerate(format!("{CA_CRT} holds no certificate")),
        Err(e) => return regenerate(format!("{CA_CRT}: {e}")),
    };
    if let Err(e) = Ca::from_pem(&certificate_pem(&cas[0]), &material.ca_key) {
        return regenerate(format!("{CA_CRT}/{CA_KEY}: {e}"));
    }
    match time_left(&cas[0], now) {
        Ok(left) if left > wanted.renew_before => {}
        Ok(left) => {
            return Action::RotateCa {
                reason: format!("the CA expires in {}", human(left)),
            };
        }
        Err(e) => return regenerate(format!("{CA_CRT}: {e}")),
    }
    if let Some(reason) = serving_problem(&material, &cas[0], wanted, now) {
        return Action::RenewServing { reason };
    }
    if previous_cas(&cas[1..], now).len() != cas.len() - 1 {
        return Action::PruneBundle;
    }
    Action::Keep
}

/// Makes the material `action` calls for from `current` (the Secret's material, `None` when
/// there is none). `Keep` returns `current` unchanged.
pub fn build(
    action: &Action,
    current: Option<&Material>,
    wanted: &Wanted,
    now: SystemTime,
) -> kelos_hooks_certs::Result<Material> {
    let fresh_ca = || {
        let stamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Ca::generate(
            &format!("{}-{stamp}", wanted.ca_common_name),
            wanted.ca_validity,
        )
    };
    let issue = |ca: &Ca| ca.issue_server(&wanted.common_name, &wanted.sans, wanted.cert_validity);
    // The current CA's certificate and the still-valid previous one of `current`.
    let parts = |m: &Material| -> kelos_hooks_certs::Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut cas = certificates_der(&m.ca_bundle)?.into_iter();
        let first = cas.next().ok_or_else(|| {
            kelos_hooks_certs::Error::InvalidCertificate(format!("{CA_CRT} holds no certificate"))
        })?;
        Ok((first, previous_cas(&cas.collect::<Vec<_>>(), now)))
    };
    let (current, action) = match current {
        Some(c) => (c, action),
        // Nothing to keep or renew from: everything is new.
        None => return fresh(fresh_ca()?, &issue, Vec::new()),
    };
    match action {
        Action::Keep => Ok(current.clone()),
        Action::Create | Action::Regenerate { .. } => fresh(fresh_ca()?, &issue, Vec::new()),
        Action::RotateCa { .. } => {
            let (old, _) = parts(current)?;
            // The old CA stays in the bundle (until it expires) so serving certificates it
            // signed keep working while every replica moves to the new one.
            let keep = previous_cas(&[old], now);
            fresh(fresh_ca()?, &issue, keep)
        }
        Action::RenewServing { .. } => {
            let (ca_der, previous) = parts(current)?;
            let ca = Ca::from_pem(&certificate_pem(&ca_der), &current.ca_key)?;
            let leaf = issue(&ca)?;
            Ok(Material {
                ca_bundle: bundle(&ca_der, &previous),
                ca_key: current.ca_key.clone(),
                tls_crt: leaf.cert_pem,
                tls_key: leaf.key_pem,
            })
        }
        Action::PruneBundle => {
            let (ca_der, previous) = parts(current)?;
            Ok(Material {
                ca_bundle: bundle(&ca_der, &previous),
                ..current.clone()
            })
        }
    }
}

fn fresh(
    ca: Ca,
    issue: &dyn Fn(&Ca) -> kelos_hooks_certs::Result<Issued>,
    previous: Vec<Vec<u8>>,
) -> kelos_hooks_certs::Result<Material> {
    let leaf = issue(&ca)?;
    let ca_der = first_certificate_der(ca.cert_pem())?;
    Ok(Material {
        ca_bundle: bundle(&ca_der, &previous),
        ca_key: ca.key_pem(),
        tls_crt: leaf.cert_pem,
        tls_key: leaf.key_pem,
    })
}

/// Previous CAs worth keeping in the bundle: parseable, not expired, at most one.
fn previous_cas(previous: &[Vec<u8>], now: SystemTime) -> Vec<Vec<u8>> {
    previous
        .iter()
        .filter(|der| time_left(der, now).is_ok_and(|left| !left.is_zero()))
        .take(1)
        .cloned()
        .collect()
}

fn bundle(current: &[u8], previous: &[Vec<u8>]) -> String {
    std::iter::once(current)
        .chain(previous.iter().map(Vec::as_slice))
        .map(certificate_pem)
        .collect()
}

/// Why the serving pair cannot be kept, if it cannot.
fn serving_problem(
    material: &Material,
    ca_der: &[u8],
    wanted: &Wanted,
    now: SystemTime,
) -> Option<String> {
    if let Err(e) = crate::tls::load_pair(material.tls_crt.as_bytes(), material.tls_key.as_bytes())
    {
        return Some(format!("the serving pair does not load: {e}"));
    }
    let leaf_der = match first_certificate_der(&material.tls_crt) {
        Ok(der) => der,
        Err(e) => return Some(format!("{TLS_CRT}: {e}")),
    };
    let (leaf, ca) = match (
        X509Certificate::from_der(&leaf_der),
        X509Certificate::from_der(ca_der),
    ) {
        (Ok((_, leaf)), Ok((_, ca))) => (leaf, ca),
        (Err(e), _) => return Some(format!("{TLS_CRT} is not an X.509 certificate: {e}")),
        (_, Err(e)) => return Some(format!("{CA_CRT} is not an X.509 certificate: {e}")),
    };
    if leaf.issuer().as_raw() != ca.subject().as_raw()
        || leaf.verify_signature(Some(ca.public_key())).is_err()
    {
        return Some("the serving certificate was not issued by the current CA".into());
    }
    let have = match sans_of(&leaf) {
        Ok(have) => have,
        Err(e) => return Some(format!("bad subjectAltName: {e}")),
    };
    let missing: Vec<String> = wanted
        .sans
        .iter()
        .filter(|s| !have.contains(*s))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "the serving certificate lacks {}",
            missing.join(", ")
        ));
    }
    match time_left(&leaf_der, now) {
        Ok(left) if left <= wanted.renew_before => Some(format!(
            "the serving certificate expires in {}",
            human(left)
        )),
        Ok(_) => None,
        Err(e) => Some(format!("{TLS_CRT}: {e}")),
    }
}

fn sans_of(
    cert: &X509Certificate<'_>,
) -> Result<HashSet<San>, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    let ext = cert.subject_alternative_name()?;
    let mut out = HashSet::new();
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => {
                out.insert(San::Dns(d.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                    _ => None,
                };
                if let Some(ip) = ip {
                    out.insert(San::Ip(ip));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Why a Secret's data cannot be read as [`Material`].
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// A key of the four is absent.
    #[error("key {0} is missing")]
    Missing(&'static str),
    /// A key's value is not text.
    #[error("key {0} is not UTF-8 PEM")]
    NotUtf8(&'static str),
}

/// `30d`, `2m 50s`: whole days as days (humantime would say `1month 5h 30m`), else humantime.
pub(super) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(Duration::from_secs(secs)).to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::net::Ipv4Addr;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn wanted() -> Wanted {
        Wanted {
            sans: vec![
                San::Dns("svc".into()),
                San::Dns("svc.ns.svc".into()),
                San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            common_name: "svc.ns.svc".into(),
            ca_common_name: "test-ca".into(),
            cert_validity: 365 * DAY,
            ca_validity: 3650 * DAY,
            renew_before: 30 * DAY,
        }
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn created(w: &Wanted) -> Material {
        build(&Action::Create, None, w, now()).unwrap()
    }

    fn ca_ders(m: &Material) -> Vec<Vec<u8>> {
        certificates_der(&m.ca_bundle).unwrap()
    }

    #[test]
    fn missing_secret_is_created_and_the_result_is_kept() {
        let w = wanted();
        assert_eq!(decide(None, &w, now()), Action::Create);
        let m = created(&w);
        assert_eq!(ca_ders(&m).len(), 1);
        assert_eq!(decide(Some(&m.to_data()), &w, now()), Action::Keep);
        assert_eq!(Material::from_data(&m.to_data()).unwrap(), m);
        // Keep hands back exactly what was there: no churn.
        assert_eq!(build(&Action::Keep, Some(&m), &w, now()).unwrap(), m);
    }

    #[test]
    fn debug_never_shows_keys() {
        let m = created(&wanted());
        let shown = format!("{m:?}");
        assert!(!shown.contains(&m.tls_key) && !shown.contains(&m.ca_key));
        assert!(!shown.contains("PRIVATE KEY"));
    }

    #[test]
    fn garbage_data_regenerates() {
        let w = wanted();
        let good = created(&w).to_data();
        let mut cases = Vec::new();
        let mut missing = good.clone();
        missing.remove(CA_KEY);
        cases.push(("missing ca.key", missing));
        let mut not_utf8 = good.clone();
        not_utf8.insert(TLS_CRT.into(), ByteString(vec![0xff, 0xfe]));
        cases.push(("not UTF-8", not_utf8));
        let mut garbage_ca = good.clone();
        garbage_ca.insert(CA_CRT.into(), ByteString(b"garbage".to_vec()));
        cases.push(("garbage ca.crt", garbage_ca));
        let mut wrong_key = good.clone();
        wrong_key.insert(CA_KEY.into(), good[TLS_KEY].clone());
        cases.push(("ca.key of another cert", wrong_key));
        cases.push(("empty", BTreeMap::new()));
        for (what, data) in cases {
            let action = decide(Some(&data), &w, now());
            assert!(
                matches!(action, Action::Regenerate { .. }),
                "{what}: {action:?}"
            );
            let current = Material::from_data(&data).ok();
            let m = build(&action, current.as_ref(), &w, now()).unwrap();
            assert_eq!(
                decide(Some(&m.to_data()), &w, now()),
                Action::Keep,
                "{what}"
            );
        }
    }

    #[test]
    fn garbage_serving_pair_is_renewed_from_the_same_ca() {
        let w = wanted();
        let m = created(&w);
        for (key, value) in [
            (TLS_CRT, "garbage".to_owned()),
            (TLS_KEY, created(&w).tls_key),
        ] {
            let mut data = m.to_data();
            data.insert(key.into(), ByteString(value.into_bytes()));
            let action = decide(Some(&data), &w, now());
            assert!(
                matches!(&action, Action::RenewServing { reason } if reason.contains("does not load")),
                "{key}: {action:?}"
            );
        }
    }

    #[test]
    fn near_expiry_serving_certificate_is_renewed_from_the_same_ca() {
        let w = wanted();
        let m = created(&w);
        // 340 days on, 25 days are left: inside the 30-day window.
        let later = now() + 340 * DAY;
        let action = decide(Some(&m.to_data()), &w, later);
        assert!(
            matches!(&action, Action::RenewServing { reason } if reason.contains("expires in")),
            "{action:?}"
        );
        let renewed = build(&action, Some(&m), &w, now()).unwrap();
        assert_eq!(renewed.ca_bundle, m.ca_bundle);
        assert_eq!(renewed.ca_key, m.ca_key);
        assert_ne!(renewed.tls_crt, m.tls_crt);
        assert_ne!(renewed.serving_serial(), m.serving_serial());
        assert_eq!(decide(Some(&renewed.to_data()), &w, now()), Action::Keep);
        // Outside the window nothing happens.
        assert_eq!(
            decide(Some(&m.to_data()), &w, now() + 300 * DAY),
            Action::Keep
        );
    }

    #[test]
    fn changed_sans_renew_the_serving_certificate() {
        let w = wanted();
        let m = created(&w);
        let mut more = w.clone();
        more.sans.push("other.example".parse().unwrap());
        let action = decide(Some(&m.to_data()), &more, now());
        assert!(
            matches!(&action, Action::RenewServing { reason } if reason.contains("lacks other.example")),
            "{action:?}"
        );
        let renewed = build(&action, Some(&m), &more, now()).unwrap();
        assert_eq!(renewed.ca_bundle, m.ca_bundle);
        assert_eq!(decide(Some(&renewed.to_data()), &more, now()), Action::Keep);
        // Fewer names than the certificate has is still covered.
        let mut fewer = w.clone();
        fewer.sans.truncate(1);
        assert_eq!(decide(Some(&m.to_data()), &fewer, now()), Action::Keep);
    }

    #[test]
    fn serving_certificate_of_another_ca_is_renewed() {
        let w = wanted();
        let m = created(&w);
        let other = created(&w);
        let mut data = m.to_data();
        data.insert(TLS_CRT.into(), ByteString(other.tls_crt.into_bytes()));
        data.insert(TLS_KEY.into(), ByteString(other.tls_key.into_bytes()));
        let action = decide(Some(&data), &w, now());
        assert!(
            matches!(&action, Action::RenewServing { reason } if reason.contains("current CA")),
            "{action:?}"
        );
    }

    #[test]
    fn near_expiry_ca_rotates_and_the_bundle_keeps_the_old_ca() {
        let mut w = wanted();
        w.ca_validity = 40 * DAY;
        w.cert_validity = 35 * DAY;
        let m = created(&w);
        let old_ca = ca_ders(&m)[0].clone();
        let later = now() + 15 * DAY; // 25 days left of the CA
        let action = decide(Some(&m.to_data()), &w, later);
        assert!(
            matches!(&action, Action::RotateCa { reason } if reason.contains("CA expires")),
            "{action:?}"
        );
        w.ca_validity = 3650 * DAY;
        w.cert_validity = 365 * DAY;
        let rotated = build(&action, Some(&m), &w, later).unwrap();
        let cas = ca_ders(&rotated);
        assert_eq!(cas.len(), 2, "new CA then old CA");
        assert_ne!(cas[0], old_ca);
        assert_eq!(cas[1], old_ca);
        assert_ne!(rotated.ca_key, m.ca_key);
        // The new serving certificate chains to the new CA and the result is stable.
        assert_eq!(decide(Some(&rotated.to_data()), &w, later), Action::Keep);
        // Once the old CA has expired it leaves the bundle.
        let after = now() + 41 * DAY;
        assert_eq!(
            decide(Some(&rotated.to_data()), &w, after),
            Action::PruneBundle
        );
        let pruned = build(&Action::PruneBundle, Some(&rotated), &w, after).unwrap();
        assert_eq!(ca_ders(&pruned), vec![cas[0].clone()]);
        assert_eq!(pruned.tls_crt, rotated.tls_crt);
        assert_eq!(decide(Some(&pruned.to_data()), &w, after), Action::Keep);
    }

    #[test]
    fn expired_old_ca_is_not_carried_into_a_rotation() {
        let w = wanted();
        let m = created(&w);
        let far = now() + 4000 * DAY;
        let action = decide(Some(&m.to_data()), &w, far);
        assert!(matches!(action, Action::RotateCa { .. }), "{action:?}");
        // Issuing "in the future" is not possible with real clocks, so only the bundle logic
        // is checked: an expired CA is not kept.
        assert!(previous_cas(&ca_ders(&m), far).is_empty());
        assert_eq!(previous_cas(&ca_ders(&m), now()).len(), 1);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(30 * DAY), "30d");
        assert_eq!(human(Duration::from_secs(170)), "2m 50s");
    }

    #[test]
    fn pem_round_trip() {
        let m = created(&wanted());
        let der = ca_ders(&m).remove(0);
        assert_eq!(certificates_der(&certificate_pem(&der)).unwrap(), vec![der]);
        assert_eq!(certificate_pem(&ca_ders(&m)[0]), m.ca_bundle);
    }
}
