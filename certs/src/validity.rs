//! Validity windows and serial numbers.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// How far `notBefore` is backdated, so a peer whose clock runs a little behind accepts a fresh
/// certificate.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Computes `(not_before, not_after)` for a certificate valid for `validity` from `now`.
///
/// `not_before` is backdated by [`BACKDATE`]. When `cap` is given (the issuing CA's `notAfter`),
/// `not_after` is capped to it: a leaf never outlives its CA. A CA already expired at `now` is an
/// error, since nothing it issues would verify.
pub fn window(
    now: OffsetDateTime,
    validity: Duration,
    cap: Option<OffsetDateTime>,
) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if validity.is_zero() {
        return Err(Error::InvalidValidity("validity must be positive".into()));
    }
    let too_large = || Error::InvalidValidity(format!("validity {validity:?} is too large"));
    let validity = time::Duration::try_from(validity).map_err(|_| too_large())?;
    let not_after = now.checked_add(validity).ok_or_else(too_large)?;
    // X.509 times end at year 9999.
    if not_after.year() > 9999 {
        return Err(too_large());
    }
    let backdate = time::Duration::try_from(BACKDATE).map_err(|_| too_large())?;
    let not_before = now.checked_sub(backdate).ok_or_else(too_large)?;
    let not_after = match cap {
        Some(cap) if cap <= now => {
            return Err(Error::InvalidValidity(format!(
                "the CA expired at {cap}; create a new CA"
            )));
        }
        Some(cap) => not_after.min(cap),
        None => not_after,
    };
    Ok((not_before, not_after))
}

/// A random, positive, 16-byte serial number.
pub fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    // Clear the sign bit (serials are positive) and set the next one so the encoding keeps all
    // 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn backdates_and_extends() {
        let (nb, na) = window(now(), Duration::from_secs(3600), None).unwrap();
        assert_eq!(now() - nb, time::Duration::minutes(5));
        assert_eq!(na - now(), time::Duration::hours(1));
    }

    #[test]
    fn caps_to_ca_expiry() {
        let cap = now() + time::Duration::minutes(30);
        let (_, na) = window(now(), Duration::from_secs(3600), Some(cap)).unwrap();
        assert_eq!(na, cap);
        let (_, na) = window(now(), Duration::from_secs(60), Some(cap)).unwrap();
        assert_eq!(na, now() + time::Duration::minutes(1));
    }

    #[test]
    fn rejects_expired_ca_zero_and_huge() {
        let expired = now() - time::Duration::seconds(1);
        assert!(window(now(), Duration::from_secs(60), Some(expired)).is_err());
        assert!(window(now(), Duration::ZERO, None).is_err());
        assert!(window(now(), Duration::MAX, None).is_err());
        assert!(window(now(), Duration::from_secs(86_400 * 365 * 9000), None).is_err());
    }

    #[test]
    fn serials_are_random_and_positive() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert_eq!(a[0] & 0x80, 0);
    }
}
