//! Standard Webhooks (and Svix, its origin): headers `webhook-id`,
//! `webhook-timestamp`, `webhook-signature` (or the same under `svix-`); the
//! signature header is a space-separated list of `v1,<base64>`, each the
//! HMAC-SHA256 of `{id}.{timestamp}.{raw body}`; other versions (`v1a,` ...)
//! are ignored. Timestamps more than `tolerance` away, either way, are refused.
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//!
//! Key: a `whsec_<base64>` secret's base64 part, decoded. A secret without the
//! prefix is base64-decoded whole (as the official libraries do) and, when it
//! is not base64 at all, used as raw bytes. Event id: the id header; type: the
//! body's string `type` when the body is a JSON object that has one, else
//! "webhook" (the body need not be JSON).

use super::util::{self, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET_PREFIX: &str = "whsec_";
/// Event type when the body carries none.
pub const DEFAULT_EVENT_TYPE: &str = "webhook";
const SAMPLE_TYPE: &str = "appliance.test";

/// The HMAC key of a configured secret (see the module doc).
pub fn signing_key(secret: &Secret) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(&secret.0) else {
        return secret.0.clone();
    };
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    util::b64_decode(encoded)
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| secret.0.clone())
}

/// `whsec_<base64 of key>`: the text form of a (generated) key.
pub fn format_secret(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", util::b64_encode(key))
}

/// Which header family the request uses: `webhook-` when it has a
/// `webhook-signature`, else `svix-`.
fn family(headers: &HeaderMap) -> &'static str {
    if headers.contains_key("webhook-signature") || !headers.contains_key("svix-signature") {
        "webhook"
    } else {
        "svix"
    }
}

/// The decoded `v1` signatures of the header; Err when no entry has the
/// `version,signature` form at all.
fn parse_signatures(text: &str) -> Result<Vec<Vec<u8>>, Rejection> {
    let mut well_formed = false;
    let mut v1 = Vec::new();
    for entry in text.split_ascii_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        well_formed = true;
        if version == "v1"
            && let Some(bytes) = util::b64_decode(sig).filter(|b| !b.is_empty())
        {
            v1.push(bytes);
        }
    }
    if well_formed {
        Ok(v1)
    } else {
        Err(unauthorized(util::MALFORMED_SIGNATURE))
    }
}

/// Checks the window and the signature; returns the 0-based index of the
/// secret that matched.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<usize, Rejection> {
    if secrets.is_empty() {
        return Err(unauthorized(util::NO_SECRET));
    }
    let fam = family(headers);
    let text = util::signature_header(headers, &format!("{fam}-signature"))?;
    let candidates = parse_signatures(text)?;
    let id = match util::header(headers, &format!("{fam}-id")) {
        Some(Ok(v)) if !v.trim().is_empty() => v.trim(),
        _ => return Err(unauthorized("missing message id header")),
    };
    let (ts, ts_text) = util::timestamp_header(headers, &format!("{fam}-timestamp"))?;
    util::check_window(ts, now, tolerance, true)?;
    util::match_keys(
        secrets.iter().map(signing_key),
        Algorithm::Sha256,
        &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
        &candidates,
    )
    .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
}

pub fn verify(input: &Input<'_>, tolerance: Duration) -> Result<Verified, Rejection> {
    let index = check_signature(
        input.headers,
        input.body,
        input.secrets,
        input.now,
        tolerance,
    )?;
    let fam = family(input.headers);
    let event_id = util::required_header(input.headers, &format!("{fam}-id"))?;
    let ts = util::header(input.headers, &format!("{fam}-timestamp"))
        .and_then(Result::ok)
        .unwrap_or("")
        .trim();
    let event_type = serde_json::from_slice::<Value>(input.body)
        .ok()
        .and_then(|doc| util::json_str(&doc, "type").map(str::to_owned))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| DEFAULT_EVENT_TYPE.to_owned());
    let name = if fam == "svix" {
        "svix"
    } else {
        "standard-webhooks"
    };
    Ok(Verified {
        event_id,
        event_type,
        detail: format!(
            "{name} v1 signature matched secret #{}, t={ts}",
            index.saturating_add(1)
        ),
        handshake: None,
    })
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`:
/// what a Standard Webhooks sender adds (the outbox signs forwards with it).
pub fn signature_headers(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let ts = timestamp.to_string();
    let mac = util::hmac_sha256(
        &signing_key(secret),
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    vec![
        ("webhook-id".to_owned(), msg_id.to_owned()),
        ("webhook-timestamp".to_owned(), ts),
        (
            "webhook-signature".to_owned(),
            format!("v1,{}", util::b64_encode(&mac)),
        ),
    ]
}

/// Builds a message `{"type", "timestamp", "data"}` (type = `event_type`),
/// `webhook-id` = `msg_<nonce>`, or signs `payload` as given.
pub fn sign(
    secret: &Secret,
    event_type: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
    nonce: &str,
) -> Result<SignedRequest, String> {
    let body = match payload {
        Some(p) => p.to_vec(),
        None => serde_json::to_vec(&json!({
            "type": event_type.unwrap_or(SAMPLE_TYPE),
            "timestamp": util::rfc3339(now),
            "data": {
                "id": nonce,
                "message": "hello from appliance send-test"
            }
        }))
        .map_err(|e| e.to_string())?,
    };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(signature_headers(
        secret,
        &format!("msg_{nonce}"),
        now,
        &body,
    ));
    Ok(SignedRequest { headers, body })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    const TOL: Duration = Duration::from_secs(300);
    const NAME: &str = "standard_webhooks";

    fn vector_headers(prefix: &str, sig: &str) -> HeaderMap {
        headers(&[
            (&format!("{prefix}-id"), &field(NAME, "webhook-id")),
            (
                &format!("{prefix}-timestamp"),
                &field(NAME, "webhook-timestamp"),
            ),
            (&format!("{prefix}-signature"), sig),
        ])
    }

    fn run(h: &HeaderMap, body: &[u8], s: &[Secret], now: i64) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, now), TOL)
    }

    #[test]
    fn vector_both_header_families() {
        let body = field(NAME, "body");
        let s = secrets(&[&field(NAME, "secret")]);
        let now = 1_614_265_330;
        for prefix in ["webhook", "svix"] {
            let h = vector_headers(prefix, &field(NAME, "webhook-signature"));
            let v = run(&h, body.as_bytes(), &s, now).unwrap();
            assert_eq!(v.event_id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
            assert_eq!(v.event_type, "webhook");
            assert!(
                v.detail
                    .ends_with("signature matched secret #1, t=1614265330"),
                "{}",
                v.detail
            );
        }
    }

    #[test]
    fn rejections() {
        let body = field(NAME, "body");
        let good = field(NAME, "webhook-signature");
        let s = secrets(&[&field(NAME, "secret")]);
        let now = 1_614_265_330;
        let h = vector_headers("webhook", &good);
        assert_eq!(
            run(&h, b"{\"test\": 2432232315}", &s, now),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            run(
                &h,
                body.as_bytes(),
                &secrets(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
                now
            ),
            Err(denied("signature mismatch"))
        );
        let rotated = secrets(&["whsec_AAAA", &field(NAME, "secret")]);
        assert!(
            run(&h, body.as_bytes(), &rotated, now)
                .unwrap()
                .detail
                .contains("#2")
        );
        assert_eq!(
            run(&h, body.as_bytes(), &s, now + 301),
            Err(denied("timestamp outside tolerance"))
        );
        assert_eq!(
            run(&h, body.as_bytes(), &s, now - 301),
            Err(denied("timestamp outside tolerance"))
        );
        let mut no_sig = h.clone();
        no_sig.remove("webhook-signature");
        assert_eq!(
            run(&no_sig, body.as_bytes(), &s, now),
            Err(denied("missing signature header"))
        );
        let mut no_ts = h.clone();
        no_ts.remove("webhook-timestamp");
        assert_eq!(
            run(&no_ts, body.as_bytes(), &s, now),
            Err(denied("missing timestamp header"))
        );
        // several signatures, other versions ignored
        let sig = good.strip_prefix("v1,").unwrap();
        let list = format!("v1a,{sig} v1,AAAA v1,{sig} v2,zzz");
        assert!(run(&vector_headers("webhook", &list), body.as_bytes(), &s, now).is_ok());
        let only_other = format!("v1a,{sig}");
        assert_eq!(
            run(
                &vector_headers("webhook", &only_other),
                body.as_bytes(),
                &s,
                now
            ),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            run(&vector_headers("webhook", sig), body.as_bytes(), &s, now),
            Err(denied("malformed signature header"))
        );
    }

    #[test]
    fn secret_forms() {
        let key = b"0123456789abcdef0123456789abcdef";
        let prefixed = format_secret(key);
        assert!(prefixed.starts_with("whsec_"));
        assert_eq!(signing_key(&Secret(prefixed.into_bytes())), key);
        assert_eq!(
            signing_key(&Secret(util::b64_encode(key).into_bytes())),
            key
        );
        assert_eq!(
            signing_key(&Secret(b"not base64!".to_vec())),
            b"not base64!"
        );
        assert_eq!(signing_key(&Secret(vec![0xff, 0xfe])), vec![0xff, 0xfe]);
    }

    #[test]
    fn round_trip_and_type() {
        let secret = Secret(format_secret(b"appliance-test-key").into_bytes());
        let req = sign(&secret, Some("invoice.paid"), None, 1_700_000_000, "n1").unwrap();
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            1_700_000_100,
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("msg_n1", "invoice.paid")
        );
        let req = sign(&secret, None, None, 1_700_000_000, "n2").unwrap();
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("msg_n2", "appliance.test")
        );
        // non-JSON and non-object bodies are fine; type defaults
        for body in [
            &b"plain text"[..],
            b"[1,2]",
            br#"{"type":5}"#,
            &[0xff, 0x00],
        ] {
            let req = sign(&secret, None, Some(body), 10, "n3").unwrap();
            let v = run(
                &signed_headers(&req),
                &req.body,
                std::slice::from_ref(&secret),
                10,
            )
            .unwrap();
            assert_eq!(v.event_type, "webhook");
        }
        // a raw (non-base64) secret works both ways too
        let raw = Secret(b"plain secret!".to_vec());
        let req = sign(&raw, None, None, 10, "n4").unwrap();
        assert!(run(&signed_headers(&req), &req.body, &[raw], 10).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            for family in ["webhook", "svix"] {
                let mut h = HeaderMap::new();
                for suffix in ["id", "timestamp", "signature"] {
                    h.insert(
                        http::HeaderName::from_bytes(format!("{family}-{suffix}").as_bytes())
                            .unwrap(),
                        v.clone(),
                    );
                }
                for body in odd_bodies() {
                    for now in [0, i64::MIN, i64::MAX] {
                        assert!(run(&h, &body, &s, now).is_err());
                    }
                }
            }
        }
        assert_eq!(
            run(&vector_headers("webhook", "v1,AAAA"), b"", &[], 0),
            Err(denied("no secret configured"))
        );
    }
}
