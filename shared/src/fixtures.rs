//! Test inputs shared by this crate's unit tests, integration tests and examples (the
//! `fixtures` feature; never in a release build).

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
