//! Reading certificates: PEM decoding, expiry, and the checks a reloaded CA must pass.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// The `notAfter` of the first certificate in `cert_pem`; renew before this.
pub fn not_after(cert_pem: &str) -> Result<SystemTime> {
    let der = first_certificate_der(cert_pem)?;
    let cert = parse(&der)?;
    Ok(to_system_time(cert.validity().not_after.timestamp()))
}

/// DER of every `CERTIFICATE` block in `pem_text`, in order (other blocks are ignored).
pub fn certificates_der(pem_text: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(pem_text)
        .map_err(|e| Error::InvalidCertificate(format!("not valid PEM: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect())
}

/// DER of the first `CERTIFICATE` block in `pem_text`.
pub fn first_certificate_der(pem_text: &str) -> Result<Vec<u8>> {
    certificates_der(pem_text)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidCertificate("no CERTIFICATE PEM block found".into()))
}

/// PEM (`CERTIFICATE`, 64-column lines, LF line endings) of a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

/// Time left at `now` before the DER certificate `der` expires (zero once expired).
pub fn time_left(der: &[u8], now: SystemTime) -> Result<Duration> {
    let not_after = to_system_time(parse(der)?.validity().not_after.timestamp());
    Ok(not_after.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What [`crate::Ca::from_pem`] needs from a CA certificate.
pub(crate) struct CaInfo {
    /// DER SubjectPublicKeyInfo, to check the key belongs to the certificate.
    pub spki_der: Vec<u8>,
    pub not_after: OffsetDateTime,
}

/// Checks `der` is a CA certificate rcgen can issue from, and extracts [`CaInfo`].
pub(crate) fn ca_info(der: &[u8]) -> Result<CaInfo> {
    let cert = parse(der)?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| Error::InvalidCertificate(format!("bad basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(Error::NotCa);
    }
    // rcgen copies the subject as the issuer name only for one attribute per RDN (and panics on
    // an empty RDN), so refuse other shapes here with an error.
    if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(Error::InvalidCertificate(
            "the CA subject must have exactly one attribute per RDN".into(),
        ));
    }
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| Error::InvalidCertificate(format!("bad notAfter: {e}")))?;
    Ok(CaInfo {
        spki_der: cert.public_key().raw.to_vec(),
        not_after,
    })
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::InvalidCertificate(format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::InvalidCertificate(
            "trailing data after the certificate".into(),
        ));
    }
    Ok(cert)
}

fn to_system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_an_error() {
        for bad in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            assert!(
                matches!(not_after(bad), Err(Error::InvalidCertificate(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pem_round_trip() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = certificate_pem(&der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(first_certificate_der(&pem).unwrap(), der);
        let two = format!("{pem}{}", certificate_pem(&[0x30, 0x00]));
        assert_eq!(certificates_der(&two).unwrap(), [der, vec![0x30, 0x00]]);
        assert!(certificates_der("").unwrap().is_empty());
    }

    #[test]
    fn negative_timestamps() {
        assert_eq!(to_system_time(-5), UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(to_system_time(7), UNIX_EPOCH + Duration::from_secs(7));
    }
}
