//! Discord interactions endpoint: `X-Signature-Ed25519` is the hex Ed25519
//! signature, by the application's key, of `X-Signature-Timestamp` (as sent)
//! followed by the raw body. The configured secret is the application's
//! PUBLIC key, hex (64 digits, surrounding whitespace ignored); several
//! secrets are tried in order. Signatures are checked strictly
//! (`verify_strict`: no small-order keys, canonical signatures only).
//! <https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers>
//!
//! Discord requires no timestamp window; `tolerance` adds one (both ways)
//! when set. A `PING` (`"type":1`) is a handshake answered with
//! `{"type":1}` (PONG) and not stored. Other interactions are stored; what to
//! answer them is the caller's concern (config `deferred_response`, default
//! [`DEFAULT_DEFERRED`], a deferred channel message; an autocomplete
//! interaction needs a real answer and cannot be deferred).
//! Id: the body's `id`. Type: the interaction type's name, `ping`,
//! `application_command`, `message_component`,
//! `application_command_autocomplete`, `modal_submit`, or `interaction.<n>`
//! for a number Discord adds later.

use super::util::{self, bad_request, unauthorized};
use super::{Input, Rejection, Secret, SignedRequest, Verified};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use http::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "X-Signature-Ed25519";
pub const TIMESTAMP_HEADER: &str = "X-Signature-Timestamp";
/// Default answer to a stored (non-PING) interaction: deferred channel
/// message with source.
pub const DEFAULT_DEFERRED: &str = r#"{"type":5}"#;
/// The answer to a PING.
pub const PONG: &str = r#"{"type":1}"#;

/// Interaction type numbers and their names.
const TYPES: [(u64, &str); 5] = [
    (1, "ping"),
    (2, "application_command"),
    (3, "message_component"),
    (4, "application_command_autocomplete"),
    (5, "modal_submit"),
];

/// The event type of an interaction type number.
pub fn type_name(n: u64) -> String {
    TYPES.iter().find(|(k, _)| *k == n).map_or_else(
        || format!("interaction.{n}"),
        |(_, name)| (*name).to_owned(),
    )
}

fn type_number(name: &str) -> Option<u64> {
    TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
        .or_else(|| name.strip_prefix("interaction.")?.parse().ok())
}

/// 32 bytes from 64 hex digits (whitespace around ignored).
fn hex32(bytes: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(bytes).ok()?;
    util::hex_decode(text)?.try_into().ok()
}

/// The Ed25519 public key a secret holds; Err says why it is unusable (for
/// config validation).
pub fn public_key(secret: &Secret) -> Result<VerifyingKey, String> {
    let bytes =
        hex32(&secret.0).ok_or_else(|| "a Discord public key is 64 hex digits".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

/// The hex public key of a hex Ed25519 seed (the private key `sign` takes).
pub fn public_key_of_seed(seed: &Secret) -> Result<String, String> {
    Ok(hex::encode(signing_key(seed)?.verifying_key().to_bytes()))
}

fn signing_key(seed: &Secret) -> Result<SigningKey, String> {
    hex32(&seed.0)
        .map(|b| SigningKey::from_bytes(&b))
        .ok_or_else(|| "a Discord signing seed is 64 hex digits".to_owned())
}

/// Checks the signature (and the window, when `tolerance` is set); returns
/// the 0-based index of the key that matched.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Option<Duration>,
) -> Result<usize, Rejection> {
    if secrets.is_empty() {
        return Err(unauthorized(util::NO_SECRET));
    }
    let keys: Vec<Option<VerifyingKey>> = secrets.iter().map(|s| public_key(s).ok()).collect();
    if keys.iter().all(Option::is_none) {
        return Err(unauthorized(util::INVALID_PUBLIC_KEY));
    }
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let bytes: [u8; 64] = util::hex_decode(text)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    let signature = Signature::from_bytes(&bytes);
    let ts = match util::header(headers, TIMESTAMP_HEADER) {
        None => return Err(unauthorized(util::MISSING_TIMESTAMP)),
        Some(Err(())) => return Err(unauthorized(util::INVALID_TIMESTAMP)),
        Some(Ok(v)) if v.trim().is_empty() => return Err(unauthorized(util::MISSING_TIMESTAMP)),
        Some(Ok(v)) => v.trim(),
    };
    if let Some(tol) = tolerance {
        let t = util::parse_unix(ts).ok_or_else(|| unauthorized(util::INVALID_TIMESTAMP))?;
        util::check_window(t, now, tol, true)?;
    }
    let mut message = Vec::with_capacity(ts.len().saturating_add(body.len()));
    message.extend_from_slice(ts.as_bytes());
    message.extend_from_slice(body);
    keys.iter()
        .position(|k| k.is_some_and(|k| k.verify_strict(&message, &signature).is_ok()))
        .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
}

pub fn verify(input: &Input<'_>, tolerance: Option<Duration>) -> Result<Verified, Rejection> {
    let index = check_signature(
        input.headers,
        input.body,
        input.secrets,
        input.now,
        tolerance,
    )?;
    let doc = util::parse_json(input.body)?;
    let kind = doc
        .get("type")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad_request("missing interaction type"))?;
    let event_id = util::required_str(&doc, "id", "interaction id")?;
    Ok(Verified {
        event_id,
        event_type: type_name(kind),
        detail: format!(
            "discord ed25519 signature matched key #{}",
            index.saturating_add(1)
        ),
        handshake: (kind == 1).then(|| PONG.to_owned()),
    })
}

/// A snowflake-looking decimal id derived from `nonce`.
fn snowflake(nonce: &str) -> String {
    let digest = util::sha256_hex(nonce.as_bytes());
    let n = u64::from_str_radix(digest.get(..15).unwrap_or("1"), 16).unwrap_or(1);
    n.to_string()
}

/// Builds an interaction as Discord sends it, signed with `seed` (the hex
/// Ed25519 seed whose public key the server is configured with; see
/// [`public_key_of_seed`]). `event_type` is a type name (default
/// `application_command`); `ping` builds a PING.
pub fn sign(
    seed: &Secret,
    event_type: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
    nonce: &str,
) -> Result<SignedRequest, String> {
    let key = signing_key(seed)?;
    let body = match payload {
        Some(p) => p.to_vec(),
        None => {
            let name = event_type.unwrap_or("application_command");
            let kind =
                type_number(name).ok_or_else(|| format!("unknown interaction type {name:?}"))?;
            let mut doc = json!({
                "type": kind,
                "id": snowflake(nonce),
                "application_id": "1100000000000000000",
                "token": format!("aW50ZXJhY3Rpb246{}", util::sha256_hex(nonce.as_bytes())),
                "version": 1,
            });
            if kind != 1
                && let Value::Object(map) = &mut doc
            {
                map.insert(
                    "data".to_owned(),
                    json!({ "id": "1100000000000000001", "name": "appliance-test", "type": 1 }),
                );
                map.insert("channel_id".to_owned(), json!("1100000000000000002"));
                map.insert("guild_id".to_owned(), json!("1100000000000000003"));
            }
            serde_json::to_vec(&doc).map_err(|e| e.to_string())?
        }
    };
    let ts = now.to_string();
    let mut message = ts.clone().into_bytes();
    message.extend_from_slice(&body);
    let signature = key.sign(&message);
    Ok(SignedRequest {
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                "Discord-Interactions/1.0 (+https://discord.com)".to_owned(),
            ),
            (
                SIGNATURE_HEADER.to_owned(),
                hex::encode(signature.to_bytes()),
            ),
            (TIMESTAMP_HEADER.to_owned(), ts),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    const NAME: &str = "discord";

    fn vector() -> (HeaderMap, String, Vec<Secret>) {
        let h = headers(&[
            (SIGNATURE_HEADER, &field(NAME, "X-Signature-Ed25519")),
            (TIMESTAMP_HEADER, &field(NAME, "X-Signature-Timestamp")),
        ]);
        (
            h,
            field(NAME, "body"),
            secrets(&[&format!(" {}\n", field(NAME, "public_key_hex"))]),
        )
    }

    fn run(
        h: &HeaderMap,
        body: &[u8],
        s: &[Secret],
        now: i64,
        tol: Option<Duration>,
    ) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, now), tol)
    }

    #[test]
    fn vector_ping_is_answered() {
        let (h, body, s) = vector();
        let v = run(&h, body.as_bytes(), &s, 0, None).unwrap();
        assert_eq!(v.handshake.as_deref(), Some(r#"{"type":1}"#));
        assert_eq!((v.event_id.as_str(), v.event_type.as_str()), ("1", "ping"));
        assert_eq!(v.detail, "discord ed25519 signature matched key #1");
        // the seed in the vector is the public key's
        let seed = Secret(field(NAME, "private_seed_hex").into_bytes());
        assert_eq!(
            public_key_of_seed(&seed).unwrap(),
            field(NAME, "public_key_hex")
        );
        // sign() with the vector's seed, timestamp and body gives its signature
        let req = sign(&seed, None, Some(body.as_bytes()), 1_700_000_000, "n").unwrap();
        let h2 = signed_headers(&req);
        assert_eq!(h2.get(SIGNATURE_HEADER), h.get(SIGNATURE_HEADER));
    }

    #[test]
    fn rejections() {
        let (h, body, s) = vector();
        let now = 1_700_000_000;
        let tampered = body.replace("\"t\"", "\"u\"");
        assert_eq!(
            run(&h, tampered.as_bytes(), &s, now, None),
            Err(denied("signature mismatch"))
        );
        let mut later = h.clone();
        later.insert(TIMESTAMP_HEADER, "1700000001".parse().unwrap());
        assert_eq!(
            run(&later, body.as_bytes(), &s, now, None),
            Err(denied("signature mismatch"))
        );
        // no window unless configured
        assert!(run(&h, body.as_bytes(), &s, now + 86_400, None).is_ok());
        let tol = Some(Duration::from_secs(5));
        assert!(run(&h, body.as_bytes(), &s, now + 5, tol).is_ok());
        assert_eq!(
            run(&h, body.as_bytes(), &s, now + 6, tol),
            Err(denied("timestamp outside tolerance"))
        );
        assert_eq!(
            run(&h, body.as_bytes(), &s, now - 6, tol),
            Err(denied("timestamp outside tolerance"))
        );
        let other = secrets(&[&"11".repeat(32), &field(NAME, "public_key_hex")]);
        let v = run(&h, body.as_bytes(), &other, now, None);
        // "11..11" may or may not be a valid point; either way key #2 matches
        assert_eq!(
            v.unwrap().detail,
            "discord ed25519 signature matched key #2"
        );
        assert_eq!(
            run(&h, body.as_bytes(), &secrets(&["zz"]), now, None),
            Err(denied("invalid public key"))
        );
        assert_eq!(
            run(&h, body.as_bytes(), &[], now, None),
            Err(denied("no secret configured"))
        );
        let mut no_ts = h.clone();
        no_ts.remove(TIMESTAMP_HEADER);
        assert_eq!(
            run(&no_ts, body.as_bytes(), &s, now, None),
            Err(denied("missing timestamp header"))
        );
        let mut short = h.clone();
        short.insert(SIGNATURE_HEADER, "abcd".parse().unwrap());
        assert_eq!(
            run(&short, body.as_bytes(), &s, now, None),
            Err(denied("malformed signature header"))
        );
    }

    #[test]
    fn round_trip_and_types() {
        let seed =
            Secret(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_vec());
        let public = Secret(public_key_of_seed(&seed).unwrap().into_bytes());
        for (name, handshake) in [
            (None, None),
            (Some("ping"), Some(PONG)),
            (Some("modal_submit"), None),
            (Some("interaction.9"), None),
        ] {
            let req = sign(&seed, name, None, 1_800_000_000, "n1").unwrap();
            let v = run(
                &signed_headers(&req),
                &req.body,
                std::slice::from_ref(&public),
                1_800_000_000,
                Some(Duration::from_secs(5)),
            )
            .unwrap();
            assert_eq!(v.event_type, name.unwrap_or("application_command"));
            assert_eq!(v.handshake.as_deref(), handshake);
            assert_eq!(v.event_id, snowflake("n1"));
        }
        assert!(sign(&seed, Some("nope"), None, 0, "n").is_err());
        assert!(
            sign(&public, None, None, 0, "n").is_ok(),
            "any 32 bytes is a seed"
        );
        assert!(sign(&Secret(b"xy".to_vec()), None, None, 0, "n").is_err());
        // genuine but unusable bodies: 400
        for body in [
            &b"not json"[..],
            br#"{"id":"1"}"#,
            br#"{"type":2}"#,
            br#"{"type":"2","id":"1"}"#,
        ] {
            let req = sign(&seed, None, Some(body), 0, "n").unwrap();
            assert!(matches!(
                run(
                    &signed_headers(&req),
                    body,
                    std::slice::from_ref(&public),
                    0,
                    None
                ),
                Err(Rejection::BadRequest(_))
            ));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let (_, _, s) = vector();
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("x-signature-ed25519", v.clone());
            h.insert("x-signature-timestamp", v);
            for body in odd_bodies() {
                for now in [0, i64::MIN, i64::MAX] {
                    for tol in [None, Some(Duration::from_secs(1)), Some(Duration::MAX)] {
                        assert!(run(&h, &body, &s, now, tol).is_err());
                    }
                }
            }
        }
    }
}
