//! Slack: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 (signing secret) of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`; requests more than `tolerance`
//! away from now, either way, are refused.
//! <https://api.slack.com/authentication/verifying-requests-from-slack>
//!
//! Id and type, by body:
//! - JSON (Events API): `url_verification` is a handshake answered with
//!   `{"challenge": ...}`; `event_callback` -> id `event_id`, type `event.type`;
//!   any other JSON -> id `event_id` (else SHA-256 of the body), type `type`.
//! - form, interactivity (`payload=<json>`): type = the payload's `type`
//!   (`block_actions`, `view_submission`, ...), id = its `trigger_id`, else
//!   SHA-256 hex of the body.
//! - form, slash command: type = `command` (e.g. `/deploy`), id = `trigger_id`,
//!   else SHA-256 hex of the body.
//! - form `ssl_check=1` (Slack probing a slash-command URL): a handshake
//!   answered with `{}`, not stored.
//!
//! Anything else genuine is a 400.

use super::util::{self, bad_request, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
const SAMPLE_TYPE: &str = "app_mention";

/// Checks the signature and the window; returns the 0-based index of the
/// secret that matched and the timestamp.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<(usize, i64), Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let received = text
        .strip_prefix("v0=")
        .and_then(util::hex_decode)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    let (ts, ts_text) = util::timestamp_header(headers, TIMESTAMP_HEADER)?;
    util::check_window(ts, now, tolerance, true)?;
    let index = util::match_keys(
        keys,
        Algorithm::Sha256,
        &[b"v0:", ts_text.as_bytes(), b":", body],
        &[received],
    )
    .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))?;
    Ok((index, ts))
}

pub fn verify(input: &Input<'_>, tolerance: Duration) -> Result<Verified, Rejection> {
    let (index, ts) = check_signature(
        input.headers,
        input.body,
        input.secrets,
        input.now,
        tolerance,
    )?;
    let (event_id, event_type, handshake) = classify(input.body)?;
    Ok(Verified {
        event_id,
        event_type,
        detail: format!(
            "slack v0 signature matched secret #{}, ts={ts}",
            index.saturating_add(1)
        ),
        handshake,
    })
}

type Classified = (String, String, Option<String>);

/// Id, type and handshake answer of a genuine body (see the module doc).
fn classify(body: &[u8]) -> Result<Classified, Rejection> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return classify_json(body, &util::parse_json(body)?);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(bad_request("body is neither JSON nor form data"));
    }
    let mut payload = None;
    let mut command = None;
    let mut trigger_id = None;
    let mut ssl_check = false;
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "payload" => payload = Some(value.into_owned()),
            "command" => command = Some(value.into_owned()),
            "trigger_id" => trigger_id = Some(value.into_owned()),
            "ssl_check" => ssl_check = value == "1",
            _ => {}
        }
    }
    let trigger_id = trigger_id.filter(|t| !t.is_empty());
    if let Some(payload) = payload {
        let doc: Value =
            serde_json::from_str(&payload).map_err(|_| bad_request("payload is not valid JSON"))?;
        let kind = util::required_str(&doc, "type", "payload type")?;
        let id = util::json_str(&doc, "trigger_id")
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| util::sha256_hex(body));
        return Ok((id, kind, None));
    }
    if let Some(command) = command.filter(|c| !c.is_empty()) {
        let id = trigger_id.unwrap_or_else(|| util::sha256_hex(body));
        return Ok((id, command, None));
    }
    if ssl_check {
        return Ok((
            util::sha256_hex(body),
            "ssl_check".to_owned(),
            Some("{}".to_owned()),
        ));
    }
    Err(bad_request("body has no event, command or payload"))
}

fn classify_json(body: &[u8], doc: &Value) -> Result<Classified, Rejection> {
    let kind = util::required_str(doc, "type", "event type")?;
    match kind.as_str() {
        "url_verification" => {
            let challenge = doc
                .get("challenge")
                .ok_or_else(|| bad_request("missing challenge"))?;
            let answer = serde_json::to_string(&json!({ "challenge": challenge }))
                .map_err(|_| bad_request("challenge cannot be answered"))?;
            Ok((util::sha256_hex(body), kind, Some(answer)))
        }
        "event_callback" => {
            let id = util::required_str(doc, "event_id", "event_id")?;
            let inner = doc
                .get("event")
                .and_then(|e| util::json_str(e, "type"))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad_request("missing event.type"))?;
            Ok((id, inner.to_owned(), None))
        }
        _ => {
            let id = util::json_str(doc, "event_id")
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| util::sha256_hex(body));
            Ok((id, kind, None))
        }
    }
}

/// The `X-Slack-Signature` value for `body` sent at `ts`.
pub fn signature_header_value(secret: &Secret, ts: i64, body: &[u8]) -> String {
    let ts = ts.to_string();
    let mac = util::hmac_sha256(&secret.0, &[b"v0:", ts.as_bytes(), b":", body]);
    format!("v0={}", hex::encode(mac))
}

/// Builds an Events API `event_callback` (its `event.type` = `event_type`,
/// `event_id` derived from `nonce`), or signs `payload` as given (JSON bodies
/// are sent as JSON, anything else as a form).
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
            "token": "XXYYZZ",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event": {
                "type": event_type.unwrap_or(SAMPLE_TYPE),
                "user": "U0001",
                "text": "<@U0LAN0Z89> hello from appliance send-test",
                "ts": format!("{now}.000100"),
                "channel": "C0001",
                "event_ts": format!("{now}.000100"),
            },
            "type": "event_callback",
            "event_id": format!("Ev{nonce}"),
            "event_time": now,
            "authorizations": [{
                "enterprise_id": null,
                "team_id": "T0001",
                "user_id": "U0LAN0Z89",
                "is_bot": true
            }],
        }))
        .map_err(|e| e.to_string())?,
    };
    let is_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let content_type = if is_json {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    Ok(SignedRequest {
        headers: vec![
            ("content-type".to_owned(), content_type.to_owned()),
            (
                "user-agent".to_owned(),
                "Slackbot 1.0 (+https://api.slack.com/robots)".to_owned(),
            ),
            (TIMESTAMP_HEADER.to_owned(), now.to_string()),
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

    fn vector(name: &str) -> (HeaderMap, String, Vec<Secret>, i64) {
        let ts = field(name, "X-Slack-Request-Timestamp");
        let h = headers(&[
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", &field(name, "X-Slack-Signature")),
        ]);
        (
            h,
            field(name, "body"),
            secrets(&[&field(name, "signing_secret")]),
            ts.parse().unwrap(),
        )
    }

    fn run(h: &HeaderMap, body: &[u8], s: &[Secret], now: i64) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, now), TOL)
    }

    #[test]
    fn doc_vector_slash_command() {
        let (h, body, s, now) = vector("slack_doc");
        let v = run(&h, body.as_bytes(), &s, now).unwrap();
        assert_eq!(v.event_type, "/webhook-collect");
        assert_eq!(
            v.event_id,
            "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
        );
        assert_eq!(
            v.detail,
            "slack v0 signature matched secret #1, ts=1531420618"
        );
        assert_eq!(v.handshake, None);
    }

    #[test]
    fn json_vector_event_callback() {
        let (h, body, s, now) = vector("slack_json");
        let v = run(&h, body.as_bytes(), &s, now).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("Ev0123", "app_mention")
        );
    }

    #[test]
    fn rejections() {
        for name in ["slack_doc", "slack_json"] {
            let (h, body, s, now) = vector(name);
            let mut tampered = body.clone().into_bytes();
            tampered.push(b'x');
            assert_eq!(
                run(&h, &tampered, &s, now),
                Err(denied("signature mismatch"))
            );
            assert_eq!(
                run(&h, body.as_bytes(), &secrets(&["wrong"]), now),
                Err(denied("signature mismatch"))
            );
            let rotated = [Secret(b"old".to_vec()), s[0].clone()];
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
            assert!(run(&h, body.as_bytes(), &s, now + 300).is_ok());
            let mut no_sig = h.clone();
            no_sig.remove("X-Slack-Signature");
            assert_eq!(
                run(&no_sig, body.as_bytes(), &s, now),
                Err(denied("missing signature header"))
            );
            let mut no_ts = h.clone();
            no_ts.remove("X-Slack-Request-Timestamp");
            assert_eq!(
                run(&no_ts, body.as_bytes(), &s, now),
                Err(denied("missing timestamp header"))
            );
        }
    }

    fn signed(body: &str) -> Result<Verified, Rejection> {
        let secret = Secret(b"sk".to_vec());
        let req = sign(&secret, None, Some(body.as_bytes()), 1000, "n").unwrap();
        run(&signed_headers(&req), &req.body, &[secret], 1000)
    }

    #[test]
    fn url_verification_handshake() {
        let v = signed(r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#).unwrap();
        assert_eq!(
            v.handshake.as_deref(),
            Some(r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#)
        );
        assert_eq!(v.event_type, "url_verification");
        let v = signed(r#"{"challenge":"a\"b<\u00e9>","type":"url_verification"}"#).unwrap();
        assert_eq!(v.handshake.as_deref(), Some(r#"{"challenge":"a\"b<é>"}"#));
        assert!(matches!(
            signed(r#"{"type":"url_verification"}"#),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn other_bodies() {
        let interactive =
            "payload=%7B%22type%22%3A%22block_actions%22%2C%22trigger_id%22%3A%2212.34.ab%22%7D";
        let v = signed(interactive).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("12.34.ab", "block_actions")
        );

        let closed = "payload=%7B%22type%22%3A%22view_closed%22%7D";
        let v = signed(closed).unwrap();
        assert_eq!(v.event_type, "view_closed");
        assert_eq!(v.event_id, util::sha256_hex(closed.as_bytes()));

        let v = signed("command=%2Fdeploy&text=prod").unwrap();
        assert_eq!(v.event_type, "/deploy");
        assert_eq!(v.event_id, util::sha256_hex(b"command=%2Fdeploy&text=prod"));

        let v = signed("ssl_check=1&token=abc").unwrap();
        assert_eq!(v.handshake.as_deref(), Some("{}"));

        let v = signed(r#"{"type":"app_rate_limited","minute_rate_limited":1518467820}"#).unwrap();
        assert_eq!(v.event_type, "app_rate_limited");

        for bad in [
            "",
            "text=hello",
            "payload=not-json",
            "payload=%7B%7D",
            "{not json",
            r#"{"type":"event_callback","event":{"type":"message"}}"#,
            r#"{"type":"event_callback","event_id":"Ev1"}"#,
            r#"{"event_id":"Ev1"}"#,
        ] {
            assert!(
                matches!(signed(bad), Err(Rejection::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn round_trip() {
        let secret = Secret(b"8f742231b10e8888abcd99yyyzzz85a5".to_vec());
        let req = sign(&secret, Some("message"), None, 1_700_000_000, "abc").unwrap();
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            1_700_000_010,
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("Evabc", "message")
        );
        let req = sign(&secret, None, None, 1_700_000_000, "abd").unwrap();
        let v = run(&signed_headers(&req), &req.body, &[secret], 1_700_000_000).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("Evabd", "app_mention")
        );
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["k"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            for ts in [v.clone(), http::HeaderValue::from_static("0")] {
                let mut h = HeaderMap::new();
                h.insert("x-slack-signature", v.clone());
                h.insert("x-slack-request-timestamp", ts);
                for body in odd_bodies() {
                    for now in [0, i64::MIN, i64::MAX] {
                        assert!(run(&h, &body, &s, now).is_err());
                    }
                }
            }
        }
        // genuine but odd bodies: 400, no panic
        let secret = Secret(b"k".to_vec());
        for body in odd_bodies() {
            let h = headers(&[
                ("X-Slack-Request-Timestamp", "5"),
                (
                    "X-Slack-Signature",
                    &signature_header_value(&secret, 5, &body),
                ),
            ]);
            assert!(matches!(
                run(&h, &body, std::slice::from_ref(&secret), 5),
                Err(Rejection::BadRequest(_))
            ));
        }
    }
}
