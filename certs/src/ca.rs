//! The certificate authority: generate or reload one, and issue serving and client certificates.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::inspect;
use crate::san::San;
use crate::subject;
use crate::validity::{random_serial, window};

/// A certificate and its private key, both PEM (`CERTIFICATE`, PKCS#8 `PRIVATE KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (leaf only, no chain).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Secret: never log it.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    /// Shows the certificate but never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority able to issue certificates (ECDSA P-256 keys, SHA-256 signatures).
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a new self-signed CA valid for `validity` (`notBefore` backdated a few minutes):
    /// `basicConstraints CA:TRUE, pathlen:0`, key usage `keyCertSign, cRLSign, digitalSignature`.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Ca> {
        let (not_before, not_after) = window(OffsetDateTime::now_utc(), validity, None)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_only(common_name)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            not_after,
        })
    }

    /// Reloads an existing CA (certificate PEM and PKCS#8 private key PEM) to issue more
    /// certificates. Checks that the certificate is a CA and that the key belongs to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let der = inspect::first_certificate_der(cert_pem)?;
        let info = inspect::ca_info(&der)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::InvalidKey(e.to_string()))?;
        if key.subject_public_key_info() != info.spki_der {
            return Err(Error::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_string(),
            not_after: info.not_after,
        })
    }

    /// The CA certificate, PEM (what clients trust, e.g. a webhook `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM. Secret: never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a TLS server certificate for `sans` (at least one) with extended key usage
    /// `serverAuth`, valid for `validity` but never past the CA's own expiry.
    pub fn issue_server(
        &self,
        common_name: &str,
        sans: &[San],
        validity: Duration,
    ) -> Result<Issued> {
        if sans.is_empty() {
            return Err(Error::InvalidSan {
                value: String::new(),
                reason: "a serving certificate needs at least one subject alternative name".into(),
            });
        }
        let mut params = self.leaf_params(common_name, validity)?;
        params.subject_alt_names = sans.iter().map(san_type).collect::<Result<_>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a TLS client certificate with extended key usage `clientAuth` and subject
    /// `O=<each organization>, CN=<common_name>` (Kubernetes reads CN as the user name and each
    /// O as a group, e.g. `system:masters`), valid for `validity` but never past the CA's expiry.
    pub fn issue_client(
        &self,
        common_name: &str,
        organizations: &[String],
        validity: Duration,
    ) -> Result<Issued> {
        if let Some(empty) = organizations.iter().find(|o| o.trim().is_empty()) {
            return Err(Error::InvalidSubject(format!(
                "organization {empty:?} is empty"
            )));
        }
        let mut params = self.leaf_params(common_name, validity)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let der = subject::replace_subject(
            cert.der(),
            &subject::encode_name(common_name, organizations),
            self.issuer.key(),
        )?;
        Ok(Issued {
            cert_pem: inspect::certificate_pem(&der),
            key_pem: key.serialize_pem(),
        })
    }

    /// Parameters common to every leaf: subject CN, not a CA, `digitalSignature`, authority key
    /// identifier, random serial, validity capped to the CA's.
    fn leaf_params(&self, common_name: &str, validity: Duration) -> Result<CertificateParams> {
        let (not_before, not_after) =
            window(OffsetDateTime::now_utc(), validity, Some(self.not_after))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_only(common_name)?;
        params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys sign; keyEncipherment applies to RSA key transport only.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        Ok(params)
    }
}

fn common_name_only(common_name: &str) -> Result<DistinguishedName> {
    if common_name.trim().is_empty() {
        return Err(Error::InvalidSubject("the common name is empty".into()));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn san_type(san: &San) -> Result<SanType> {
    Ok(match san {
        San::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
        San::Ip(ip) => SanType::IpAddress(*ip),
    })
}
