//! Helpers shared by the schemes: header lookup, HMAC computation and
//! constant-time comparison, base64/hex decoding, JSON field extraction, the
//! rejection reasons and their snake_case codes, and a tiny RFC 3339 formatter.
//! Nothing here panics on any input.

use super::{Algorithm, Rejection, Secret};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Digest as _;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub(crate) const MISSING_SIGNATURE: &str = "missing signature header";
pub(crate) const MALFORMED_SIGNATURE: &str = "malformed signature header";
pub(crate) const SIGNATURE_MISMATCH: &str = "signature mismatch";
pub(crate) const OUTSIDE_TOLERANCE: &str = "timestamp outside tolerance";
pub(crate) const MISSING_TIMESTAMP: &str = "missing timestamp header";
pub(crate) const INVALID_TIMESTAMP: &str = "invalid timestamp";
pub(crate) const NO_SECRET: &str = "no secret configured";
pub(crate) const WEBHOOK_SECRET_MISMATCH: &str = "webhook secret mismatch";
pub(crate) const NOT_JSON: &str = "body is not valid JSON";
pub(crate) const URL_UNKNOWN: &str = "request url unknown";
pub(crate) const NO_CERTIFICATE: &str = "no signing certificate";
pub(crate) const INVALID_CERTIFICATE: &str = "invalid signing certificate";
pub(crate) const UNTRUSTED_CERT_URL: &str = "untrusted certificate url";
pub(crate) const UNTRUSTED_SUBSCRIBE_URL: &str = "untrusted subscribe url";
pub(crate) const TOPIC_NOT_ALLOWED: &str = "topic not allowed";
pub(crate) const UNSUPPORTED_VERSION: &str = "unsupported signature version";
pub(crate) const UNKNOWN_MESSAGE_TYPE: &str = "unknown message type";
pub(crate) const MISSING_BODY_SIGNATURE: &str = "missing signature";
pub(crate) const MALFORMED_BODY_SIGNATURE: &str = "malformed signature";
pub(crate) const BODY_HASH_MISMATCH: &str = "body hash mismatch";
pub(crate) const UNSUPPORTED_ALGORITHM: &str = "unsupported signature algorithm";
pub(crate) const INVALID_PUBLIC_KEY: &str = "invalid public key";

/// Maps a rejection reason to the snake_case code of the `{"error","code"}`
/// answer and of the metrics label.
pub(crate) fn code_for(reason: &str) -> &'static str {
    match reason {
        SIGNATURE_MISMATCH => "signature_mismatch",
        OUTSIDE_TOLERANCE => "timestamp_outside_tolerance",
        MISSING_SIGNATURE => "missing_signature",
        MALFORMED_SIGNATURE => "malformed_signature",
        MISSING_TIMESTAMP => "missing_timestamp",
        INVALID_TIMESTAMP => "invalid_timestamp",
        NO_SECRET => "no_secret",
        WEBHOOK_SECRET_MISMATCH => "webhook_secret_mismatch",
        URL_UNKNOWN => "url_unknown",
        NO_CERTIFICATE => "no_certificate",
        INVALID_CERTIFICATE => "invalid_certificate",
        UNTRUSTED_CERT_URL => "untrusted_certificate_url",
        UNTRUSTED_SUBSCRIBE_URL => "untrusted_subscribe_url",
        TOPIC_NOT_ALLOWED => "topic_not_allowed",
        UNSUPPORTED_VERSION => "unsupported_signature_version",
        UNKNOWN_MESSAGE_TYPE => "unknown_message_type",
        MISSING_BODY_SIGNATURE => "missing_signature",
        MALFORMED_BODY_SIGNATURE => "malformed_signature",
        BODY_HASH_MISMATCH => "body_hash_mismatch",
        UNSUPPORTED_ALGORITHM => "unsupported_signature_algorithm",
        INVALID_PUBLIC_KEY => "invalid_public_key",
        _ => "unauthorized",
    }
}

pub(crate) fn unauthorized(reason: &str) -> Rejection {
    Rejection::Unauthorized(reason.to_owned())
}

pub(crate) fn bad_request(reason: impl Into<String>) -> Rejection {
    Rejection::BadRequest(reason.into())
}

// ---------------------------------------------------------------- headers

/// First value of header `name` as text: `None` when absent, `Some(Err(()))`
/// when present but not UTF-8. Header names are case-insensitive; an invalid
/// name simply finds nothing.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<Result<&'a str, ()>> {
    headers
        .get(name)
        .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| ()))
}

/// The trimmed value of a signature header: absent or blank -> "missing
/// signature header"; not UTF-8 -> "malformed signature header".
pub(crate) fn signature_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a str, Rejection> {
    match header(headers, name) {
        None => Err(unauthorized(MISSING_SIGNATURE)),
        Some(Err(())) => Err(unauthorized(MALFORMED_SIGNATURE)),
        Some(Ok(v)) if v.trim().is_empty() => Err(unauthorized(MISSING_SIGNATURE)),
        Some(Ok(v)) => Ok(v.trim()),
    }
}

/// A Unix-seconds timestamp header, returned parsed and as the exact text
/// that was sent (trimmed), since the text is what gets signed.
pub(crate) fn timestamp_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<(i64, &'a str), Rejection> {
    match header(headers, name) {
        None => Err(unauthorized(MISSING_TIMESTAMP)),
        Some(Ok(v)) if v.trim().is_empty() => Err(unauthorized(MISSING_TIMESTAMP)),
        Some(Err(())) => Err(unauthorized(INVALID_TIMESTAMP)),
        Some(Ok(v)) => {
            let text = v.trim();
            parse_unix(text)
                .map(|t| (t, text))
                .ok_or_else(|| unauthorized(INVALID_TIMESTAMP))
        }
    }
}

/// Decimal Unix seconds, digits only (an optional leading `-`).
pub(crate) fn parse_unix(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A header that carries the event id or type: absent, blank or not UTF-8 is
/// a 400 (the request is genuine but unusable).
pub(crate) fn required_header(headers: &HeaderMap, name: &str) -> Result<String, Rejection> {
    match header(headers, name) {
        Some(Ok(v)) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(bad_request(format!("missing {name} header"))),
    }
}

/// Seconds of a tolerance, saturated into i64.
fn tolerance_secs(tolerance: Duration) -> i64 {
    i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX)
}

/// `now - ts > tolerance` -> stale. With `both_ways`, `ts - now > tolerance`
/// (a timestamp from the future) is refused as well. No overflow on any input.
pub(crate) fn check_window(
    ts: i64,
    now: i64,
    tolerance: Duration,
    both_ways: bool,
) -> Result<(), Rejection> {
    let tol = i128::from(tolerance_secs(tolerance));
    let age = i128::from(now) - i128::from(ts);
    if age > tol || (both_ways && -age > tol) {
        Err(unauthorized(OUTSIDE_TOLERANCE))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- MACs

fn run_mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = <M as Mac>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// HMAC of the concatenation of `parts` under `key`. `None` only if the key is
/// refused, which HMAC never does (any key length is valid).
pub(crate) fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    match alg {
        Algorithm::Sha1 => run_mac::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run_mac::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run_mac::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// HMAC-SHA256, for the schemes that sign. Empty only in the impossible case
/// that the key is refused.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    hmac(Algorithm::Sha256, key, parts).unwrap_or_default()
}

/// Constant-time equality of a computed tag and a received one. Lengths are
/// not secret; an empty tag never matches.
pub(crate) fn ct_eq(tag: &[u8], candidate: &[u8]) -> bool {
    !tag.is_empty() && tag.len() == candidate.len() && bool::from(tag.ct_eq(candidate))
}

/// Index (0-based) of the first key whose HMAC over `parts` equals one of the
/// `candidates`, compared in constant time.
pub(crate) fn match_keys<K: AsRef<[u8]>>(
    keys: impl IntoIterator<Item = K>,
    alg: Algorithm,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Option<usize> {
    keys.into_iter().position(|key| {
        hmac(alg, key.as_ref(), parts).is_some_and(|tag| candidates.iter().any(|c| ct_eq(&tag, c)))
    })
}

/// The raw bytes of every secret, or "no secret configured".
pub(crate) fn raw_keys(secrets: &[Secret]) -> Result<Vec<&[u8]>, Rejection> {
    if secrets.is_empty() {
        return Err(unauthorized(NO_SECRET));
    }
    Ok(secrets.iter().map(|s| s.0.as_slice()).collect())
}

// ---------------------------------------------------------------- encodings

/// Standard-alphabet base64, padding optional, surrounding whitespace ignored.
pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(text.trim())
        .ok()
}

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Hex of either case.
pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------- JSON

/// The body as JSON (UTF-8 required), or 400.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, Rejection> {
    serde_json::from_slice(body).map_err(|_| bad_request(NOT_JSON))
}

/// A JSON value as text: a non-empty string as is, a number in decimal.
pub(crate) fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `v[key]` when it is a string.
pub(crate) fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// `v[key]` as a required string field, else 400 "missing `<what>`".
pub(crate) fn required_str(
    v: &serde_json::Value,
    key: &str,
    what: &str,
) -> Result<String, Rejection> {
    json_str(v, key)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad_request(format!("missing {what}")))
}

// ---------------------------------------------------------------- time

/// Unix seconds -> `YYYY-MM-DDTHH:MM:SSZ` (UTC), by Howard Hinnant's
/// civil-from-days algorithm. Clamped to years 0001..=9999.
pub(crate) fn rfc3339(secs: i64) -> String {
    const MIN: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = secs.clamp(MIN, MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);

    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let mo = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared by the schemes' table tests.
    use super::super::{Input, Rejection, Secret, SignedRequest};
    use http::{HeaderMap, HeaderName, HeaderValue};

    pub fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/signatures.json"
        )))
        .unwrap()
    }

    /// `vectors()[name][field]` as a string.
    pub fn field(name: &str, key: &str) -> String {
        vectors()[name][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}.{key}"))
            .to_owned()
    }

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        map
    }

    pub fn signed_headers(req: &SignedRequest) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers(&pairs)
    }

    pub fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret(s.as_bytes().to_vec())).collect()
    }

    pub fn input<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        secrets: &'a [Secret],
        now: i64,
    ) -> Input<'a> {
        Input::new(headers, body, secrets, now)
    }

    pub fn denied(reason: &str) -> Rejection {
        Rejection::Unauthorized(reason.to_owned())
    }

    /// Header values an attacker might send: huge, odd bytes, many commas.
    pub fn odd_header_values() -> Vec<Vec<u8>> {
        vec![
            b"".to_vec(),
            b" ".to_vec(),
            b",,,,=,=,".to_vec(),
            b"t=,v1=".to_vec(),
            b"t=99999999999999999999999999,v1=zz".to_vec(),
            b"t=-9223372036854775808,v1=00".to_vec(),
            b"sha256=".to_vec(),
            b"v0=".to_vec(),
            b"v1,".to_vec(),
            b"v1,!!!! v1 v2,abc".to_vec(),
            vec![0xff, 0xfe, 0x80, b'=', 0xc3],
            "é=ü,v1=ß".as_bytes().to_vec(),
            "a".repeat(64 * 1024).into_bytes(),
            ",".repeat(10_000).into_bytes(),
            "v1=".repeat(5_000).into_bytes(),
        ]
    }

    /// Bodies that are not what anyone expects.
    pub fn odd_bodies() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            vec![0xff, 0x00, 0xfe, 0x80],
            b"{".to_vec(),
            b"[]".to_vec(),
            b"null".to_vec(),
            "[".repeat(100_000).into_bytes(),
            b"payload=%ZZ%&&&=".to_vec(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(code_for("signature mismatch"), "signature_mismatch");
        assert_eq!(
            code_for("timestamp outside tolerance"),
            "timestamp_outside_tolerance"
        );
        assert_eq!(code_for("missing signature header"), "missing_signature");
        assert_eq!(code_for("something else"), "unauthorized");
        assert_eq!(
            Rejection::Unauthorized("signature mismatch".into()).code(),
            "signature_mismatch"
        );
        assert_eq!(Rejection::BadRequest("x".into()).code(), "bad_request");
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_653_995_617), "2022-05-31T11:13:37Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn window_never_overflows() {
        let tol = Duration::from_secs(300);
        assert!(check_window(i64::MIN, i64::MAX, tol, true).is_err());
        assert!(check_window(i64::MAX, i64::MIN, tol, true).is_err());
        assert!(check_window(i64::MAX, i64::MIN, tol, false).is_ok());
        assert!(check_window(100, 400, tol, true).is_ok());
        assert!(check_window(100, 401, tol, true).is_err());
        assert!(check_window(401, 100, tol, true).is_err());
        assert!(check_window(0, 0, Duration::MAX, true).is_ok());
    }

    #[test]
    fn unix_parsing() {
        assert_eq!(parse_unix("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_unix("-5"), Some(-5));
        for bad in ["", "-", "+5", "1e9", " 1", "1.0", "99999999999999999999"] {
            assert_eq!(parse_unix(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_lookup_never_panics() {
        let mut h = HeaderMap::new();
        h.insert("x-a", http::HeaderValue::from_static(" v "));
        h.insert("x-b", http::HeaderValue::from_bytes(&[0xff, b'a']).unwrap());
        assert_eq!(header(&h, "X-A"), Some(Ok(" v ")));
        assert_eq!(header(&h, "x-b"), Some(Err(())));
        for bad in ["", "bad header", "\u{0}", "é", "x:y"] {
            assert_eq!(header(&h, bad), None);
            assert_eq!(
                signature_header(&h, bad),
                Err(unauthorized(MISSING_SIGNATURE))
            );
        }
        assert_eq!(
            signature_header(&h, "x-b"),
            Err(unauthorized(MALFORMED_SIGNATURE))
        );
        assert_eq!(
            timestamp_header(&h, "x-b"),
            Err(unauthorized(INVALID_TIMESTAMP))
        );
        assert_eq!(
            timestamp_header(&h, "x-a"),
            Err(unauthorized(INVALID_TIMESTAMP))
        );
        assert!(matches!(
            required_header(&h, "x-b"),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(required_header(&h, "x-a"), Ok("v".to_owned()));
    }

    #[test]
    fn ct_eq_rules() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b""));
    }
}
