//! Test inputs shared by this crate's unit tests, integration tests and examples (the
//! `fixtures` feature; never in a release build).

/// A small deterministic generator for generated test documents (no randomness crate needed).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'p>(&mut self, items: &[&'p str]) -> &'p str {
        items[self.below(items.len())]
    }
}

/// The benchmarks' `onCompletion`: 8 valid hooks (every format, both phases, header and signing
/// Secrets), 2,051 bytes as written here.
pub fn eight_hooks_json() -> String {
    const FORMATS: [&str; 3] = ["Generic", "CloudEvents", "Slack"];
    let hooks: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"name": "hook-{i}", "phases": ["Succeeded", "Failed"], "webhook": {{"url": "https://hooks{i}.example.com/services/kelos/notify", "secretRef": {{"name": "hook-{i}-headers"}}, "signingSecretRef": {{"name": "hook-{i}-signing", "key": "secret"}}, "format": "{}"}}}}"#,
                FORMATS[i % 3]
            )
        })
        .collect();
    format!(r#"{{"hooks": [{}]}}"#, hooks.join(", "))
}
