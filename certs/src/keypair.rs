//! Key pairs for Kubernetes service-account token signing.

use rcgen::KeyPair;

/// A private key and its public key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    /// PKCS#8 `PRIVATE KEY` PEM (kube-apiserver `--service-account-signing-key-file`). Secret.
    pub private_pem: String,
    /// SubjectPublicKeyInfo `PUBLIC KEY` PEM (kube-apiserver `--service-account-key-file`).
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPairPem {
    /// Shows the public key but never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("private_pem", &"<redacted>")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates an ECDSA P-256 key pair (kube-apiserver signs service-account tokens with it as
/// ES256).
pub fn generate_key_pair() -> crate::Result<KeyPairPem> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(KeyPairPem {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pem_labels_and_distinct_keys() {
        let a = generate_key_pair().unwrap();
        let b = generate_key_pair().unwrap();
        assert!(a.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(a.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_ne!(a.private_pem, b.private_pem);
        assert!(!format!("{a:?}").contains(&a.private_pem));
        // The private key reloads and still matches the public key.
        let reloaded = KeyPair::from_pem(&a.private_pem).unwrap();
        assert_eq!(reloaded.public_key_pem(), a.public_pem);
        assert_eq!(reloaded.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    }
}
