//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each v1 the
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed with the whole `whsec_...` string.
//! Any v1 may match (Stripe sends one per active secret); v0 and unknown keys
//! are ignored. Like Stripe's libraries, only stale timestamps are refused
//! (`now - t > tolerance`), not future ones. Event id/type: the body's `id`/`type`.
//! <https://docs.stripe.com/webhooks#verify-manually>

use super::util::{self, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::json;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
const SAMPLE_TYPE: &str = "customer.created";

/// `t` and the v1 signatures of a `Stripe-Signature` header; None when there
/// is no valid `t` or no v1 at all. Undecodable v1 values are kept out (they
/// can match nothing).
fn parse_header(text: &str) -> Option<(i64, Vec<Vec<u8>>)> {
    let mut t = None;
    let mut any_v1 = false;
    let mut v1 = Vec::new();
    for item in text.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if t.is_none() => t = Some(util::parse_unix(value.trim())?),
            "v1" => {
                any_v1 = true;
                if let Some(sig) = util::hex_decode(value) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    if any_v1 { t.map(|t| (t, v1)) } else { None }
}

/// Checks signature and tolerance; returns the 0-based index of the secret
/// that matched and the header's timestamp.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<(usize, i64), Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let (t, candidates) =
        parse_header(text).ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    let t_text = t.to_string();
    let index = util::match_keys(
        keys,
        Algorithm::Sha256,
        &[t_text.as_bytes(), b".", body],
        &candidates,
    )
    .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))?;
    util::check_window(t, now, tolerance, false)?;
    Ok((index, t))
}

pub fn verify(input: &Input<'_>, tolerance: Duration) -> Result<Verified, Rejection> {
    let (index, t) = check_signature(
        input.headers,
        input.body,
        input.secrets,
        input.now,
        tolerance,
    )?;
    let doc = util::parse_json(input.body)?;
    Ok(Verified {
        event_id: util::required_str(&doc, "id", "event id")?,
        event_type: util::required_str(&doc, "type", "event type")?,
        detail: format!(
            "stripe v1 signature matched secret #{}, t={t}",
            index.saturating_add(1)
        ),
        handshake: None,
    })
}

/// The `Stripe-Signature` value for `body` signed at `t`.
pub fn signature_header_value(secret: &Secret, t: i64, body: &[u8]) -> String {
    let t = t.to_string();
    let mac = util::hmac_sha256(&secret.0, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

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
            "id": format!("evt_{nonce}"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": now,
            "type": event_type.unwrap_or(SAMPLE_TYPE),
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "data": {
                "object": {
                    "id": format!("cus_{nonce}"),
                    "object": "customer",
                    "email": "jenny.rosen@example.com",
                    "created": now,
                }
            }
        }))
        .map_err(|e| e.to_string())?,
    };
    Ok(SignedRequest {
        headers: vec![
            (
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            (
                "user-agent".to_owned(),
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_owned(),
            ),
            (
                SIGNATURE_HEADER.to_owned(),
                signature_header_value(secret, now, &body),
            ),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    const TOL: Duration = Duration::from_secs(300);

    fn run(h: &HeaderMap, body: &[u8], s: &[Secret], now: i64) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, now), TOL)
    }

    #[test]
    fn vector() {
        let body = field("stripe", "body");
        let h = headers(&[("Stripe-Signature", &field("stripe", "Stripe-Signature"))]);
        let s = secrets(&[&field("stripe", "secret")]);
        let v = run(&h, body.as_bytes(), &s, 1_700_000_000).unwrap();
        assert_eq!(v.event_id, "evt_1NG8Du2eZvKYlo2CUI79vXWy");
        assert_eq!(v.event_type, "customer.created");
        assert_eq!(
            v.detail,
            "stripe v1 signature matched secret #1, t=1700000000"
        );
        assert_eq!(v.handshake, None);

        let mut tampered = body.clone().into_bytes();
        tampered.push(b' ');
        assert_eq!(
            run(&h, &tampered, &s, 1_700_000_000),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            run(
                &h,
                body.as_bytes(),
                &secrets(&["whsec_other"]),
                1_700_000_000
            ),
            Err(denied("signature mismatch"))
        );
        let rotated = secrets(&["whsec_old", &field("stripe", "secret")]);
        let v = run(&h, body.as_bytes(), &rotated, 1_700_000_000).unwrap();
        assert!(v.detail.contains("#2"));
        assert_eq!(
            run(&h, body.as_bytes(), &s, 1_700_000_301),
            Err(denied("timestamp outside tolerance"))
        );
        // future timestamps pass, as in Stripe's libraries
        assert!(run(&h, body.as_bytes(), &s, 1_699_000_000).is_ok());
        assert_eq!(
            run(&headers(&[]), body.as_bytes(), &s, 1_700_000_000),
            Err(denied("missing signature header"))
        );
    }

    #[test]
    fn header_forms() {
        let body = field("stripe", "body");
        let sig = field("stripe", "Stripe-Signature");
        let v1 = sig.split_once(",v1=").unwrap().1.to_owned();
        let s = secrets(&[&field("stripe", "secret")]);
        let ok = [
            format!("t=1700000000,v1={},v1={v1}", "ab".repeat(32)),
            format!("t=1700000000,v0=deadbeef,v1={v1},foo=bar"),
            format!("v1={v1}, t=1700000000"),
            format!("t=1700000000,v1=zz,v1={}", v1.to_uppercase()),
        ];
        for value in ok {
            let h = headers(&[("Stripe-Signature", &value)]);
            assert!(
                run(&h, body.as_bytes(), &s, 1_700_000_000).is_ok(),
                "{value}"
            );
        }
        let malformed = [
            format!("v1={v1}"),
            "t=1700000000".to_owned(),
            "t=1700000000,v0=abc".to_owned(),
            format!("t=abc,v1={v1}"),
            "garbage".to_owned(),
        ];
        for value in malformed {
            let h = headers(&[("Stripe-Signature", &value)]);
            assert_eq!(
                run(&h, body.as_bytes(), &s, 1_700_000_000),
                Err(denied("malformed signature header")),
                "{value}"
            );
        }
    }

    #[test]
    fn round_trip_and_bad_bodies() {
        let secret = Secret(b"whsec_abc".to_vec());
        let req = sign(&secret, Some("invoice.paid"), None, 1_800_000_000, "n42").unwrap();
        let h = signed_headers(&req);
        let v = run(&h, &req.body, std::slice::from_ref(&secret), 1_800_000_000).unwrap();
        assert_eq!(v.event_id, "evt_n42");
        assert_eq!(v.event_type, "invoice.paid");

        let req = sign(&secret, None, None, 1_800_000_000, "n43").unwrap();
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("evt_n43", "customer.created")
        );

        for body in [
            &b"not json"[..],
            br#"{"type":"x"}"#,
            br#"{"id":5,"type":"x"}"#,
            &[0xff, 0xfe],
        ] {
            let req = sign(&secret, None, Some(body), 1_800_000_000, "n").unwrap();
            assert_eq!(req.body, body);
            assert!(matches!(
                run(
                    &signed_headers(&req),
                    &req.body,
                    std::slice::from_ref(&secret),
                    1_800_000_000
                ),
                Err(Rejection::BadRequest(_))
            ));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["whsec_x"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("stripe-signature", v);
            for body in odd_bodies() {
                for now in [0, i64::MIN, i64::MAX] {
                    assert!(run(&h, &body, &s, now).is_err());
                }
            }
        }
        assert_eq!(
            run(
                &headers(&[("Stripe-Signature", "t=1,v1=00")]),
                b"{}",
                &[],
                1
            ),
            Err(denied("no secret configured"))
        );
    }
}
