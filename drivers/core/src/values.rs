//! How every driver maps engine values that JSON has no direct form for.
//!
//! One place decides the contract the tool descriptions and the test kit
//! promise: floats are JSON numbers (NaN and infinities, which JSON cannot
//! hold, become strings), single-precision floats print at their own
//! precision, and binary data is standard base64.

use base64::Engine as _;
use serde_json::{Number, Value};

/// A double as a JSON number; `"NaN"`, `"inf"`, `"-inf"` as strings.
pub fn float64(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::from(f.to_string()), Value::Number)
}

/// A single-precision float at its own precision: `0.1`, not
/// `0.10000000149011612` (what widening to f64 would print).
pub fn float32(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .map_or_else(|_| float64(f64::from(f)), float64)
}

/// Binary data as a standard base64 string.
pub fn bytes(b: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(b))
}

/// What a driver shows instead of one value (a LOB, a long string or
/// binary) larger than the call's byte limit: a notice that says how to read
/// it in parts, rather than a result that can never fit.
pub fn oversized(len: u64, max_bytes: u64, substring: &str) -> Value {
    Value::from(format!(
        "[a value of {len} bytes, over the {max_bytes}-byte limit of this call; read it in          parts, e.g. {substring}]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_and_bytes() {
        assert_eq!(float64(1.5), json!(1.5));
        assert_eq!(float64(f64::NAN), json!("NaN"));
        assert_eq!(float64(f64::INFINITY), json!("inf"));
        assert_eq!(float32(0.1), json!(0.1));
        assert_eq!(bytes(&[0x00, 0xff, 0x10]), json!("AP8Q"));
        let notice = oversized(10, 4, "SUBSTR(col, 1, 4)");
        assert!(
            notice
                .as_str()
                .is_some_and(|n| n.contains("10 bytes") && n.contains("SUBSTR"))
        );
    }
}
