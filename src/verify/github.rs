//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body
//! (for both `application/json` and `application/x-www-form-urlencoded`
//! deliveries, the bytes as sent). The legacy SHA-1 `X-Hub-Signature` is not
//! accepted. Event id: `X-GitHub-Delivery`; type: `X-GitHub-Event` (`ping` is an
//! ordinary event). No timestamp, so no replay window.
//! <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>

use super::util::{self, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::json;

pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";
pub const EVENT_HEADER: &str = "X-GitHub-Event";
const SAMPLE_TYPE: &str = "ping";

/// Checks the signature only; returns the 0-based index of the secret that
/// matched.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<usize, Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let received = text
        .strip_prefix("sha256=")
        .and_then(util::hex_decode)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    util::match_keys(keys, Algorithm::Sha256, &[body], &[received])
        .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
}

pub fn verify(input: &Input<'_>) -> Result<Verified, Rejection> {
    let index = check_signature(input.headers, input.body, input.secrets)?;
    Ok(Verified {
        event_id: util::required_header(input.headers, DELIVERY_HEADER)?,
        event_type: util::required_header(input.headers, EVENT_HEADER)?,
        detail: format!(
            "github sha256 signature matched secret #{}",
            index.saturating_add(1)
        ),
        handshake: None,
    })
}

/// Builds a delivery as GitHub sends it: a small `ping`-like payload (the
/// event header carries `event_type`), `X-GitHub-Delivery` = `nonce`, and both
/// the SHA-256 and the legacy SHA-1 signature headers.
pub fn sign(
    secret: &Secret,
    event_type: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
    nonce: &str,
) -> Result<SignedRequest, String> {
    let hook_id = 123_456_789;
    let body = match payload {
        Some(p) => p.to_vec(),
        None => serde_json::to_vec(&json!({
            "zen": "Keep it logically awesome.",
            "hook_id": hook_id,
            "hook": {
                "type": "Repository",
                "id": hook_id,
                "name": "web",
                "active": true,
                "events": ["*"],
                "config": {
                    "content_type": "json",
                    "insecure_ssl": "0",
                    "url": "https://example.com/webhooks/github"
                },
                "created_at": util::rfc3339(now),
            },
            "repository": {
                "id": 1_296_269,
                "name": "hello-world",
                "full_name": "octocat/hello-world",
                "private": false
            },
            "sender": { "login": "octocat", "id": 1, "type": "User" },
            "delivery_nonce": nonce,
        }))
        .map_err(|e| e.to_string())?,
    };
    let sha256 = util::hmac_sha256(&secret.0, &[&body]);
    let sha1 = util::hmac(Algorithm::Sha1, &secret.0, &[&body]).unwrap_or_default();
    Ok(SignedRequest {
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                "GitHub-Hookshot/appliance".to_owned(),
            ),
            (DELIVERY_HEADER.to_owned(), nonce.to_owned()),
            (
                EVENT_HEADER.to_owned(),
                event_type.unwrap_or(SAMPLE_TYPE).to_owned(),
            ),
            ("X-GitHub-Hook-ID".to_owned(), hook_id.to_string()),
            (
                "X-GitHub-Hook-Installation-Target-Type".to_owned(),
                "repository".to_owned(),
            ),
            (
                "X-GitHub-Hook-Installation-Target-ID".to_owned(),
                "1296269".to_owned(),
            ),
            (
                "X-Hub-Signature".to_owned(),
                format!("sha1={}", hex::encode(sha1)),
            ),
            (
                SIGNATURE_HEADER.to_owned(),
                format!("sha256={}", hex::encode(sha256)),
            ),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    #[test]
    fn docs_vector() {
        let secret = field("github_doc", "secret");
        let body = field("github_doc", "body");
        let sig = field("github_doc", "X-Hub-Signature-256");
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&[&secret])),
            Ok(0)
        );
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&["nope", &secret])),
            Ok(1)
        );
        assert_eq!(
            check_signature(&h, b"Hello, World?", &secrets(&[&secret])),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            check_signature(&h, body.as_bytes(), &secrets(&["It's a Secret to Nobody"])),
            Err(denied("signature mismatch"))
        );
        let upper = headers(&[(
            "X-Hub-Signature-256",
            &sig.replace(&sig[7..], &sig[7..].to_uppercase()),
        )]);
        assert_eq!(
            check_signature(&upper, body.as_bytes(), &secrets(&[&secret])),
            Ok(0)
        );

        // with id and type headers the full verify passes, and names #2 on rotation
        let h = headers(&[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Event", "ping"),
        ]);
        let s = secrets(&["old", &secret]);
        let v = verify(&input(&h, body.as_bytes(), &s, 0)).unwrap();
        assert_eq!(v.event_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(v.event_type, "ping");
        assert_eq!(v.detail, "github sha256 signature matched secret #2");
    }

    #[test]
    fn missing_and_malformed() {
        let s = secrets(&["k"]);
        assert_eq!(
            check_signature(&headers(&[]), b"x", &s),
            Err(denied("missing signature header"))
        );
        // only the legacy SHA-1 header: refused
        let sha1 = headers(&[(
            "X-Hub-Signature",
            "sha1=0000000000000000000000000000000000000000",
        )]);
        assert_eq!(
            check_signature(&sha1, b"x", &s),
            Err(denied("missing signature header"))
        );
        for bad in ["0123", "sha1=00", "sha256=", "sha256=xyz", "SHA256 =00"] {
            assert_eq!(
                check_signature(&headers(&[("X-Hub-Signature-256", bad)]), b"x", &s),
                Err(denied("malformed signature header")),
                "{bad}"
            );
        }
        assert_eq!(
            check_signature(&headers(&[("X-Hub-Signature-256", "sha256=00")]), b"x", &[]),
            Err(denied("no secret configured"))
        );
    }

    #[test]
    fn round_trip_json_and_form() {
        let secret = Secret(b"gh-secret".to_vec());
        let req = sign(&secret, Some("push"), None, 1_700_000_000, "d-1").unwrap();
        let h = signed_headers(&req);
        let v = verify(&input(&h, &req.body, std::slice::from_ref(&secret), 0)).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("d-1", "push")
        );

        let req = sign(&secret, None, None, 1_700_000_000, "d-2").unwrap();
        let v = verify(&input(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            0,
        ))
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("d-2", "ping")
        );

        // form-encoded delivery: signed as sent
        let form = b"payload=%7B%22zen%22%3A%22Design+for+failure.%22%7D";
        let mut req = sign(&secret, Some("ping"), Some(form), 0, "d-3").unwrap();
        for (k, v) in req.headers.iter_mut() {
            if k == "content-type" {
                *v = "application/x-www-form-urlencoded".into();
            }
        }
        let v = verify(&input(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            0,
        ))
        .unwrap();
        assert_eq!(v.event_id, "d-3");

        // genuine but without id/type headers: 400
        let h = headers(&[(
            "X-Hub-Signature-256",
            &format!(
                "sha256={}",
                hex::encode(util::hmac_sha256(b"gh-secret", &[b"{}"]))
            ),
        )]);
        assert!(matches!(
            verify(&input(&h, b"{}", &[secret], 0)),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["k"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("x-hub-signature-256", v.clone());
            h.insert("x-github-delivery", v.clone());
            h.insert("x-github-event", v);
            for body in odd_bodies() {
                assert!(verify(&input(&h, &body, &s, 0)).is_err());
            }
        }
    }
}
