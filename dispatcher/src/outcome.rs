//! How an attempt's result is classed: delivered, worth retrying, or final.

/// The class of an attempt's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2xx: delivered.
    Success,
    /// 408, 429, 5xx, timeouts, connection errors: try again later.
    Retry,
    /// Other 4xx, 410, 3xx (redirects are not followed), refusals: give up now.
    Final,
}

/// Classes an HTTP status code.
pub fn classify_status(status: u16) -> Class {
    match status {
        200..=299 => Class::Success,
        408 | 429 => Class::Retry,
        500..=599 => Class::Retry,
        // 1xx never reaches us as a final answer; treat anything odd as final rather than loop.
        _ => Class::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(s), Class::Success, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s), Class::Retry, "{s}");
        }
        for s in [
            300, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 422, 499, 100,
            600,
        ] {
            assert_eq!(classify_status(s), Class::Final, "{s}");
        }
    }
}
