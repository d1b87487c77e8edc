//! Retry delays: exponential backoff with full jitter, and `Retry-After` within bounds (the
//! header itself is read by `kelos_hooks_shared::retry_after`).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Ceiling of any delay (also the most a `Retry-After` is honoured for).
    pub max: Duration,
}

impl Backoff {
    /// The exponential ceiling after `attempts` failed attempts: `base * 2^(attempts-1)`, capped.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// Full jitter: uniform in `[ceiling/10, ceiling]` (a tenth as floor so a retry never spins).
    pub fn delay(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempts);
        let floor = ceiling / 10;
        let span = ceiling.saturating_sub(floor).as_millis() as u64;
        floor
            + Duration::from_millis(if span == 0 {
                0
            } else {
                rng.random_range(0..=span)
            })
    }

    /// The delay to use: the receiver's `Retry-After` clamped to `[base, max]` when it sent one,
    /// otherwise the jittered backoff.
    pub fn next(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match retry_after {
            Some(ra) => ra.clamp(self.base.min(self.max), self.max),
            None => self.delay(attempts, rng),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn ceiling_grows_and_caps() {
        assert_eq!(B.ceiling(1), Duration::from_secs(1));
        assert_eq!(B.ceiling(2), Duration::from_secs(2));
        assert_eq!(B.ceiling(4), Duration::from_secs(8));
        assert_eq!(B.ceiling(7), Duration::from_secs(60));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(60));
        assert_eq!(B.ceiling(0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for attempts in 1..12 {
            for _ in 0..200 {
                let d = B.delay(attempts, &mut rng);
                let c = B.ceiling(attempts);
                assert!(d <= c && d >= c / 10, "{d:?} vs {c:?}");
                seen.insert(d);
            }
        }
        assert!(seen.len() > 100, "jitter should spread delays");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            B.next(1, Some(Duration::from_secs(5)), &mut rng),
            Duration::from_secs(5)
        );
        assert_eq!(
            B.next(1, Some(Duration::from_secs(3600)), &mut rng),
            Duration::from_secs(60)
        );
        assert_eq!(
            B.next(1, Some(Duration::ZERO), &mut rng),
            Duration::from_secs(1)
        );
    }
}
