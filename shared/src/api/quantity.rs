//! A Kubernetes `resource.Quantity` as kelos stores one (`Task.status.usage.costUSD`).
//!
//! kelos parses the agent's `cost-usd: 0.42` into a Quantity, which Kubernetes writes in its
//! canonical form: `"420m"`. The CRD declares the field int-or-string, so a bare number is legal
//! too. Receivers want a plain decimal, so [`Quantity::to_decimal`] turns `"420m"` into `"0.42"`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A quantity as stored: a JSON string (`"420m"`, `"1.5"`, `"2e-3"`) or a bare number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A bare JSON number (int-or-string fields allow one).
    Number(serde_json::Number),
    /// The usual serialised form.
    Text(String),
}

impl Quantity {
    /// The value as a plain decimal string: `"420m"` → `"0.42"`, `"1k"` → `"1000"`, `3` → `"3"`.
    /// Text that is not a quantity (or too large to spell out) comes back unchanged, so nothing
    /// kelos wrote is lost.
    pub fn to_decimal(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(s) => decimal(s).unwrap_or_else(|| s.clone()),
        }
    }
}

/// Powers of ten written out at most (either way): a cost of `1E` has no place in a notification.
const MAX_EXPONENT: i32 = 30;

/// `s` in plain decimal notation, or `None` when it is not a Kubernetes quantity.
fn decimal(s: &str) -> Option<String> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let (exp10, binary_power) = suffix_scale(suffix)?;
    let mut exponent = exp10.checked_sub(i32::try_from(frac.len()).ok()?)?;
    let mut mantissa = format!("{int}{frac}");
    if binary_power > 0 {
        // Binary suffixes (Ki, Mi, …) multiply by 1024^n: exact in integers.
        let significant = mantissa.trim_start_matches('0');
        let value: u128 = if significant.is_empty() {
            0
        } else {
            significant.parse().ok()?
        };
        mantissa = value
            .checked_mul(1024u128.checked_pow(binary_power)?)?
            .to_string();
    }
    let mantissa = mantissa.trim_start_matches('0');
    if mantissa.is_empty() {
        return Some("0".to_owned());
    }
    let trailing = mantissa.len() - mantissa.trim_end_matches('0').len();
    let mantissa = &mantissa[..mantissa.len() - trailing];
    exponent = exponent.checked_add(i32::try_from(trailing).ok()?)?;
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exponent) {
        return None;
    }
    let plain = if exponent >= 0 {
        format!("{mantissa}{}", "0".repeat(exponent.unsigned_abs() as usize))
    } else {
        let shift = exponent.unsigned_abs() as usize;
        if shift >= mantissa.len() {
            format!("0.{}{mantissa}", "0".repeat(shift - mantissa.len()))
        } else {
            let (i, f) = mantissa.split_at(mantissa.len() - shift);
            format!("{i}.{f}")
        }
    };
    Some(if negative { format!("-{plain}") } else { plain })
}

/// (power of ten, power of 1024) of a quantity suffix; `None` for anything else.
fn suffix_scale(suffix: &str) -> Option<(i32, u32)> {
    let decimal = |e| Some((e, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Some((0, 1)),
        "Mi" => Some((0, 2)),
        "Gi" => Some((0, 3)),
        "Ti" => Some((0, 4)),
        "Pi" => Some((0, 5)),
        "Ei" => Some((0, 6)),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            decimal(exp.parse().ok()?)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        Quantity::Text(s.into()).to_decimal()
    }

    #[test]
    fn canonical_kubernetes_forms_become_plain_decimals() {
        assert_eq!(text("420m"), "0.42");
        assert_eq!(text("0.42"), "0.42");
        assert_eq!(text("1500m"), "1.5");
        assert_eq!(text("12"), "12");
        assert_eq!(text("1k"), "1000");
        assert_eq!(text("5n"), "0.000000005");
        assert_eq!(text("250u"), "0.00025");
        assert_eq!(text("1Ki"), "1024");
        assert_eq!(text("1.5Ki"), "1536");
        assert_eq!(text("2e-3"), "0.002");
        assert_eq!(text("2E3"), "2000");
        assert_eq!(text("+7"), "7");
        assert_eq!(text("-1m"), "-0.001");
        assert_eq!(text("0"), "0");
        assert_eq!(text("0m"), "0");
        assert_eq!(text(".5"), "0.5");
        assert_eq!(text("100"), "100");
    }

    #[test]
    fn numbers_and_non_quantities_are_kept() {
        let n: Quantity = serde_json::from_str("3").unwrap();
        assert_eq!(n, Quantity::Number(3.into()));
        assert_eq!(n.to_decimal(), "3");
        let s: Quantity = serde_json::from_str(r#""420m""#).unwrap();
        assert_eq!(s, Quantity::Text("420m".into()));
        for odd in [
            "",
            "abc",
            "1x",
            "1.2.3",
            "m",
            "1e",
            "1e+",
            "--1",
            "1e99",
            "1e-99",
            "9Ei9",
            "1e-2147483648",
        ] {
            assert_eq!(text(odd), odd, "{odd:?}");
        }
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""420m""#);
    }
}
