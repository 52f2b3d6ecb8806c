//! Shopify: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body,
//! keyed with the app's client secret. No timestamp, so no replay window.
//! Event id: `X-Shopify-Webhook-Id`; type: `X-Shopify-Topic` (e.g. `orders/create`).
//! <https://shopify.dev/docs/apps/build/webhooks/subscribe/https>

use super::util::{self, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::json;

pub const SIGNATURE_HEADER: &str = "X-Shopify-Hmac-Sha256";
pub const ID_HEADER: &str = "X-Shopify-Webhook-Id";
pub const TOPIC_HEADER: &str = "X-Shopify-Topic";
const SAMPLE_TOPIC: &str = "orders/create";
const SAMPLE_SHOP: &str = "appliance-test.myshopify.com";

/// Checks the signature only; returns the 0-based index of the secret that
/// matched.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<usize, Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let received = util::b64_decode(text)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    util::match_keys(keys, Algorithm::Sha256, &[body], &[received])
        .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
}

pub fn verify(input: &Input<'_>) -> Result<Verified, Rejection> {
    let index = check_signature(input.headers, input.body, input.secrets)?;
    Ok(Verified {
        event_id: util::required_header(input.headers, ID_HEADER)?,
        event_type: util::required_header(input.headers, TOPIC_HEADER)?,
        detail: format!(
            "shopify hmac-sha256 matched secret #{}",
            index.saturating_add(1)
        ),
        handshake: None,
    })
}

/// A numeric id (below 2^53, as Shopify's are) derived from the nonce.
fn numeric_id(nonce: &str) -> u64 {
    let digest = util::sha256_hex(nonce.as_bytes());
    let head = digest.get(..13).unwrap_or("1");
    u64::from_str_radix(head, 16).unwrap_or(1)
}

/// Builds a delivery as Shopify sends it: a small order payload (the topic
/// header carries `event_type`), `X-Shopify-Webhook-Id` = `nonce`.
pub fn sign(
    secret: &Secret,
    event_type: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
    nonce: &str,
) -> Result<SignedRequest, String> {
    let topic = event_type.unwrap_or(SAMPLE_TOPIC);
    let body = match payload {
        Some(p) => p.to_vec(),
        None => serde_json::to_vec(&json!({
            "id": numeric_id(nonce),
            "admin_graphql_api_id": format!("gid://shopify/Order/{}", numeric_id(nonce)),
            "email": "jon@example.com",
            "created_at": util::rfc3339(now),
            "currency": "USD",
            "total_price": "10.00",
            "financial_status": "paid",
            "line_items": [{
                "id": 866_550_311_766_439_020_u64,
                "title": "IPod Nano - 8GB",
                "quantity": 1,
                "price": "10.00",
                "sku": "IPOD2008PINK"
            }]
        }))
        .map_err(|e| e.to_string())?,
    };
    let mac = util::hmac_sha256(&secret.0, &[&body]);
    Ok(SignedRequest {
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (TOPIC_HEADER.to_owned(), topic.to_owned()),
            (SIGNATURE_HEADER.to_owned(), util::b64_encode(&mac)),
            ("X-Shopify-Shop-Domain".to_owned(), SAMPLE_SHOP.to_owned()),
            ("X-Shopify-API-Version".to_owned(), "2025-01".to_owned()),
            (ID_HEADER.to_owned(), nonce.to_owned()),
            ("X-Shopify-Event-Id".to_owned(), nonce.to_owned()),
            ("X-Shopify-Triggered-At".to_owned(), util::rfc3339(now)),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    #[test]
    fn vector() {
        let body = field("shopify", "body");
        let sig = field("shopify", "X-Shopify-Hmac-Sha256");
        let secret = field("shopify", "client_secret");
        let h = headers(&[("X-Shopify-Hmac-Sha256", &sig)]);
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&[&secret])),
            Ok(0)
        );
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&["a", &secret])),
            Ok(1)
        );
        assert_eq!(
            check_signature(
                &h,
                body.replace("jon", "jan").as_bytes(),
                &secrets(&[&secret])
            ),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&["hush!"])),
            Err(denied("signature mismatch"))
        );
        // full verify with the id/topic headers, rotation named in detail
        let h = headers(&[
            ("X-Shopify-Hmac-Sha256", &sig),
            (
                "X-Shopify-Webhook-Id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
            ("X-Shopify-Topic", "orders/create"),
        ]);
        let v = verify(&input(&h, body.as_bytes(), &secrets(&["old", &secret]), 0)).unwrap();
        assert_eq!(v.event_id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
        assert_eq!(v.event_type, "orders/create");
        assert!(v.detail.contains("#2"));
    }

    #[test]
    fn missing_and_malformed() {
        let s = secrets(&["k"]);
        assert_eq!(
            check_signature(&headers(&[]), b"{}", &s),
            Err(denied("missing signature header"))
        );
        for bad in ["***", "ab$", "=", "sha256=abcd"] {
            assert_eq!(
                check_signature(&headers(&[("X-Shopify-Hmac-Sha256", bad)]), b"{}", &s),
                Err(denied("malformed signature header")),
                "{bad}"
            );
        }
        let secret = Secret(b"k".to_vec());
        let mut req = sign(&secret, None, None, 0, "n").unwrap();
        req.headers.retain(|(k, _)| k != TOPIC_HEADER);
        assert!(matches!(
            verify(&input(&signed_headers(&req), &req.body, &[secret], 0)),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn round_trip() {
        let secret = Secret(b"shpss_abc".to_vec());
        let req = sign(&secret, Some("products/update"), None, 1_700_000_000, "w1").unwrap();
        let v = verify(&input(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            0,
        ))
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("w1", "products/update")
        );
        let other = sign(&secret, None, None, 1_700_000_000, "w2").unwrap();
        assert_ne!(other.body, req.body);
        let v = verify(&input(&signed_headers(&other), &other.body, &[secret], 0)).unwrap();
        assert_eq!(v.event_type, "orders/create");
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["k"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("x-shopify-hmac-sha256", v.clone());
            h.insert("x-shopify-topic", v.clone());
            h.insert("x-shopify-webhook-id", v);
            for body in odd_bodies() {
                assert!(verify(&input(&h, &body, &s, 0)).is_err());
            }
        }
    }
}
