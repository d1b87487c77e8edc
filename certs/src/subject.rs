//! Subject names with several `O=` attributes.
//!
//! Kubernetes maps each `O=` of a client certificate to a group, so a client certificate may need
//! several. rcgen's `DistinguishedName` holds one value per attribute type, so the client
//! certificate is built by rcgen with a `CN`-only subject and then its subject is replaced with
//! the full name and the TBS re-signed with the CA key (same signature algorithm).

use rcgen::SigningKey;
use yasna::models::ObjectIdentifier;

use crate::error::{Error, Result};

const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
/// Index of `subject` in a v3 TBSCertificate:
/// version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, extensions.
const TBS_SUBJECT_INDEX: usize = 5;
const TBS_ELEMENTS: usize = 8;

/// DER of a Name `O=org1, O=org2, …, CN=common_name`, one attribute per RDN, UTF8String values.
pub fn encode_name(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let attributes = organizations
        .iter()
        .map(|o| (OID_ORGANIZATION, o.as_str()))
        .chain(std::iter::once((OID_COMMON_NAME, common_name)));
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for (oid, value) in attributes {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                        w.next().write_utf8_string(value);
                    })
                });
            }
        })
    })
}

/// Replaces the subject of `cert_der` (a v3 certificate signed by `signer`) with `subject_der`
/// and re-signs it with `signer`, keeping its signature algorithm.
pub fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl SigningKey,
) -> Result<Vec<u8>> {
    let malformed = |e: yasna::ASN1Error| {
        Error::InvalidCertificate(format!("unexpected certificate structure: {e}"))
    };
    let (tbs, algorithm) = yasna::parse_der(cert_der, |r| {
        r.read_sequence(|r| {
            let tbs = r.next().read_der()?;
            let algorithm = r.next().read_der()?;
            let _signature = r.next().read_bitvec_bytes()?;
            Ok((tbs, algorithm))
        })
    })
    .map_err(malformed)?;
    let mut elements = yasna::parse_der(&tbs, |r| {
        r.read_sequence(|r| {
            (0..TBS_ELEMENTS)
                .map(|_| r.next().read_der())
                .collect::<Result<Vec<_>, _>>()
        })
    })
    .map_err(malformed)?;
    elements[TBS_SUBJECT_INDEX] = subject_der.to_vec();
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for element in &elements {
                w.next().write_der(element);
            }
        })
    });
    let signature = signer.sign(&tbs)?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_der(&algorithm);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn name_has_every_org_then_cn() {
        let der = encode_name("alice", &["system:masters".into(), "team-a".into()]);
        use x509_parser::prelude::FromDer;
        let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(orgs, ["system:masters", "team-a"]);
        let cns: Vec<_> = name
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cns, ["alice"]);
        assert_eq!(name.iter().count(), 3);
    }

    #[test]
    fn garbage_is_an_error() {
        let key = rcgen::KeyPair::generate().unwrap();
        assert!(replace_subject(b"\x30\x03\x02\x01\x01", &[], &key).is_err());
        assert!(replace_subject(b"not der", &[], &key).is_err());
    }
}
