//! SnapTrade: the `Signature` header is the base64 HMAC-SHA256, keyed with the
//! consumer key, of the body as canonical JSON: what Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"))` writes (ASCII only).
//! A signature over the raw body bytes is accepted too. Optional legacy check:
//! the body's `webhookSecret` must equal the configured one. No timestamp window
//! (`eventTimestamp` is not checked). Id `webhookId` (or the misspelt `webookId`), type `eventType`.
//! <https://docs.snaptrade.com/docs/webhooks>, <https://docs.snaptrade.com/docs/request-signatures>
//!
//! Canonical numbers: serde_json (without `arbitrary_precision`) keeps i64/u64
//! integers exactly and prints them as integers; every other number is an f64
//! printed as Python's `repr` does. Integers beyond the i64/u64 range (which
//! Python keeps exact) and the integer `-0` (which serde_json reads as the
//! float -0.0) therefore canonicalise differently; the raw-body match still applies.

use super::util::{self, bad_request, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::{Number, Value, json};
use std::fmt::Write as _;

pub const SIGNATURE_HEADER: &str = "Signature";
const SAMPLE_TYPE: &str = "CONNECTION_ADDED";

/// Which bytes the matching signature was computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedForm {
    /// The body as canonical JSON (what SnapTrade signs).
    CanonicalJson,
    /// The body bytes exactly as received.
    RawBody,
}

// ---------------------------------------------------------------- canonical JSON

/// `v` as Python's `json.dumps(v, sort_keys=True, separators=(",", ":"))`
/// writes it: keys sorted by code point, no whitespace, non-ASCII and control
/// characters escaped as lowercase `\uXXXX` (astral ones as surrogate pairs),
/// floats as Python's `repr`.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here, not trusted to the map: another crate in the build
            // may turn on serde_json's `preserve_order`.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, value);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

fn number_text(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        n.as_f64().map_or_else(|| n.to_string(), python_float_repr)
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional
/// form for decimal exponents -4..=15 (always with a fractional part, `100.0`)
/// and scientific otherwise (`1e-05`, `1.5e+16`).
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut rest = digits.chars();
    let first = rest.next().unwrap_or('0');
    let rest: String = rest.collect();
    if !(-4..16).contains(&exp) {
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = usize::try_from(exp).unwrap_or(0).saturating_add(1);
    if digits.len() <= int_len {
        let zeros = "0".repeat(int_len.saturating_sub(digits.len()));
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int_part, frac) = (digits.get(..int_len), digits.get(int_len..));
        format!("{sign}{}.{}", int_part.unwrap_or("0"), frac.unwrap_or("0"))
    }
}

/// The `Signature` header value of a SnapTrade REST API call: base64
/// HMAC-SHA256 (consumer key) of the canonical JSON of
/// `{"content": body or null, "path": path, "query": query without '?'}`.
pub fn rest_signature(consumer_key: &[u8], path: &str, query: &str, content: &Value) -> String {
    let payload = json!({ "content": content, "path": path, "query": query });
    let mac = util::hmac_sha256(consumer_key, &[canonical_json(&payload).as_bytes()]);
    util::b64_encode(&mac)
}

// ---------------------------------------------------------------- verify

/// The signature check, plus the parsed body when it is JSON.
fn check(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<(usize, SignedForm, Option<Value>), Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let received = vec![
        util::b64_decode(text)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?,
    ];
    let doc = serde_json::from_slice::<Value>(body).ok();
    let canonical = doc.as_ref().map(canonical_json);
    if let Some(canonical) = &canonical {
        let parts: [&[u8]; 1] = [canonical.as_bytes()];
        if let Some(i) = util::match_keys(keys.iter(), Algorithm::Sha256, &parts, &received) {
            return Ok((i, SignedForm::CanonicalJson, doc));
        }
    }
    match util::match_keys(keys.iter(), Algorithm::Sha256, &[body], &received) {
        Some(i) => Ok((i, SignedForm::RawBody, doc)),
        None => Err(unauthorized(util::SIGNATURE_MISMATCH)),
    }
}

/// Checks the signature only (canonical JSON first, then the raw bytes);
/// returns the 0-based index of the secret that matched and what it signed.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<(usize, SignedForm), Rejection> {
    check(headers, body, secrets).map(|(i, form, _)| (i, form))
}

pub fn verify(input: &Input<'_>, legacy_secret: Option<&Secret>) -> Result<Verified, Rejection> {
    let (index, form, doc) = check(input.headers, input.body, input.secrets)?;
    // Genuine (raw-body match) but not JSON: unusable.
    let doc = doc.ok_or_else(|| bad_request(util::NOT_JSON))?;
    if let Some(legacy) = legacy_secret {
        let sent = util::json_str(&doc, "webhookSecret").unwrap_or("");
        if !util::ct_eq(&legacy.0, sent.as_bytes()) {
            return Err(unauthorized(util::WEBHOOK_SECRET_MISMATCH));
        }
    }
    let event_id = ["webhookId", "webookId"]
        .iter()
        .find_map(|k| util::json_str(&doc, k).filter(|s| !s.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| bad_request("missing webhookId"))?;
    let event_type = util::required_str(&doc, "eventType", "eventType")?;
    let what = match form {
        SignedForm::CanonicalJson => "canonical JSON",
        SignedForm::RawBody => "raw body",
    };
    let mut detail = format!(
        "snaptrade signature over {what} matched secret #{}",
        index.saturating_add(1)
    );
    if legacy_secret.is_some() {
        detail.push_str(", webhookSecret matched");
    }
    Ok(Verified {
        event_id,
        event_type,
        detail,
        handshake: None,
    })
}

// ---------------------------------------------------------------- sign

/// A UUID-shaped id derived from `seed`.
fn uuid_from(seed: &str) -> String {
    let h = util::sha256_hex(seed.as_bytes());
    let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
    format!(
        "{}-{}-4{}-8{}-{}",
        part(0, 8),
        part(8, 12),
        part(13, 16),
        part(17, 20),
        part(20, 32)
    )
}

/// Builds a webhook as SnapTrade sends it: a CONNECTION_ADDED-like payload
/// (`eventType` = `event_type`, `webhookId` = `nonce`, `eventTimestamp` = now,
/// `webhookSecret` when a legacy secret is configured), indented as SnapTrade
/// sends it, signed over its canonical JSON. A custom payload is sent as
/// given and signed over its canonical JSON (raw bytes if it is not JSON).
pub fn sign(
    secret: &Secret,
    legacy_secret: Option<&Secret>,
    event_type: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
    nonce: &str,
) -> Result<SignedRequest, String> {
    let body = match payload {
        Some(p) => p.to_vec(),
        None => {
            let kind = event_type.unwrap_or(SAMPLE_TYPE);
            let timestamp = util::rfc3339(now).replace('Z', ".000000+00:00");
            let mut doc = json!({
                "webhookId": nonce,
                "clientId": "APPLIANCE-TEST",
                "eventTimestamp": timestamp,
                "userId": "appliance-test-user",
                "eventType": kind,
                "brokerageId": uuid_from("brokerage"),
                "brokerageAuthorizationId": uuid_from(&format!("authorization:{nonce}")),
            });
            if (kind.starts_with("ACCOUNT_") || kind == "TRANSACTIONS_UPDATED")
                && let Value::Object(map) = &mut doc
            {
                map.insert(
                    "accountId".to_owned(),
                    Value::String(uuid_from(&format!("account:{nonce}"))),
                );
            }
            if let (Some(legacy), Value::Object(map)) = (legacy_secret, &mut doc) {
                let text = String::from_utf8_lossy(&legacy.0).into_owned();
                map.insert("webhookSecret".to_owned(), Value::String(text));
            }
            serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?
        }
    };
    let signed: Vec<u8> = match serde_json::from_slice::<Value>(&body) {
        Ok(doc) => canonical_json(&doc).into_bytes(),
        Err(_) => body.clone(),
    };
    let mac = util::hmac_sha256(&secret.0, &[&signed]);
    Ok(SignedRequest {
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (SIGNATURE_HEADER.to_owned(), util::b64_encode(&mac)),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    fn run(
        h: &HeaderMap,
        body: &[u8],
        s: &[Secret],
        legacy: Option<&Secret>,
    ) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, 1_900_000_000), legacy)
    }

    #[test]
    fn webhook_vector_canonical_and_raw() {
        let name = "snaptrade_webhook";
        let key = field(name, "consumer_key");
        let raw = field(name, "raw_body_example");
        let doc: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(canonical_json(&doc), field(name, "canonical"));

        let h = headers(&[("Signature", &field(name, "Signature"))]);
        let v = run(&h, raw.as_bytes(), &secrets(&[&key]), None).unwrap();
        assert_eq!(v.event_id, "7467e5e4-4b59-4514-9d04-d05dbc10dea9");
        assert_eq!(v.event_type, "CONNECTION_ADDED");
        assert_eq!(
            v.detail,
            "snaptrade signature over canonical JSON matched secret #1"
        );
        assert_eq!(
            check_signature(&h, field(name, "canonical").as_bytes(), &secrets(&[&key])),
            Ok((0, SignedForm::CanonicalJson))
        );

        // signature over the raw bytes (computed with Python's hmac)
        let h = headers(&[("Signature", "GQcgLjqt2IhPkB9HqGDC0DApxWfolHf8kty/Ntc29pQ=")]);
        assert_eq!(
            check_signature(&h, raw.as_bytes(), &secrets(&["x", &key])),
            Ok((1, SignedForm::RawBody))
        );
        let v = run(&h, raw.as_bytes(), &secrets(&[&key]), None).unwrap();
        assert!(v.detail.contains("raw body"));

        // legacy webhookSecret check
        let right = Secret(b"ZSDkaLCRJndeZGgeaJnV".to_vec());
        let v = run(&h, raw.as_bytes(), &secrets(&[&key]), Some(&right)).unwrap();
        assert!(v.detail.contains("webhookSecret matched"));
        assert_eq!(
            run(
                &h,
                raw.as_bytes(),
                &secrets(&[&key]),
                Some(&Secret(b"other".to_vec()))
            ),
            Err(denied("webhook secret mismatch"))
        );
    }

    #[test]
    fn webhook_vector_non_ascii() {
        let name = "snaptrade_webhook_non_ascii";
        let payload = &vectors()[name]["payload"];
        assert_eq!(
            canonical_json(payload),
            field(name, "canonical_python_ensure_ascii")
        );
        let body = serde_json::to_vec(payload).unwrap(); // UTF-8, not escaped
        let h = headers(&[("Signature", &field(name, "Signature"))]);
        let v = run(&h, &body, &secrets(&[&field(name, "consumer_key")]), None).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("w1", "USER_REGISTERED")
        );
    }

    #[test]
    fn rest_vectors() {
        for name in ["snaptrade_rest_docs_example", "snaptrade_rest_get_accounts"] {
            let vector = &vectors()[name];
            let (path, query) = field(name, "path_and_query")
                .split_once('?')
                .map(|(p, q)| (p.to_owned(), q.to_owned()))
                .unwrap();
            let sig = rest_signature(
                field(name, "consumer_key").as_bytes(),
                &path,
                &query,
                &vector["body"],
            );
            assert_eq!(sig, field(name, "Signature"), "{name}");
            if let Some(canonical) = vector["canonical"].as_str() {
                let doc = json!({"content": vector["body"], "path": path, "query": query});
                assert_eq!(canonical_json(&doc), canonical);
            }
        }
    }

    #[test]
    fn canonical_strings_and_numbers() {
        let doc: Value = serde_json::from_str(
            r#"{"b":[1,0,1.0,100.0,1e-5,0.0001,1e16,1.5e16,12345.678,-2.5e-7,1e22,
                18446744073709551615,-9223372036854775808,true,null],
               "a":"\u007f\u0000\u001f é 𝄞 \"\\ /\b\f\n\r\t","é":{},"Z":[]}"#,
        )
        .unwrap();
        // expected output from Python 3's json.dumps(..., sort_keys=True, separators=(",", ":"))
        assert_eq!(
            canonical_json(&doc),
            concat!(
                r#"{"Z":[],"a":"\u007f\u0000\u001f \u00e9 \ud834\udd1e \"\\ /\b\f\n\r\t","#,
                r#""b":[1,0,1.0,100.0,1e-05,0.0001,1e+16,1.5e+16,12345.678,-2.5e-07,1e+22,"#,
                r#"18446744073709551615,-9223372036854775808,true,null],"\u00e9":{}}"#
            )
        );
    }

    #[test]
    fn float_repr() {
        for (f, want) in [
            (1.5, "1.5"),
            (100.0, "100.0"),
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.1, "0.1"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e15, "1000000000000000.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e-7, "-2.5e-07"),
            (0.00012, "0.00012"),
            (123.0e100, "1.23e+102"),
        ] {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn rejections() {
        let key = "TEST_CONSUMER_KEY_abc123";
        let raw = field("snaptrade_webhook", "raw_body_example");
        let h = headers(&[("Signature", &field("snaptrade_webhook", "Signature"))]);
        let tampered = raw.replace("CONNECTION_ADDED", "CONNECTION_DELETED");
        assert_eq!(
            run(&h, tampered.as_bytes(), &secrets(&[key]), None),
            Err(denied("signature mismatch"))
        );
        assert_eq!(
            run(&h, raw.as_bytes(), &secrets(&["wrong"]), None),
            Err(denied("signature mismatch"))
        );
        let v = run(&h, raw.as_bytes(), &secrets(&["old", key]), None).unwrap();
        assert!(v.detail.contains("#2"));
        assert_eq!(
            run(&headers(&[]), raw.as_bytes(), &secrets(&[key]), None),
            Err(denied("missing signature header"))
        );
        assert_eq!(
            run(
                &headers(&[("Signature", "%%%")]),
                raw.as_bytes(),
                &secrets(&[key]),
                None
            ),
            Err(denied("malformed signature header"))
        );
        assert_eq!(
            run(&h, raw.as_bytes(), &[], None),
            Err(denied("no secret configured"))
        );
    }

    #[test]
    fn genuine_but_unusable_is_400() {
        let secret = Secret(b"ck".to_vec());
        for body in [
            &b"not json"[..],
            &[0xff, 0xfe, 0x00],
            br#"{"eventType":"X"}"#,
            br#"{"webhookId":"w"}"#,
            br#"{"webhookId":7,"eventType":"X"}"#,
        ] {
            let req = sign(&secret, None, None, Some(body), 0, "n").unwrap();
            assert!(
                matches!(
                    run(
                        &signed_headers(&req),
                        &req.body,
                        std::slice::from_ref(&secret),
                        None
                    ),
                    Err(Rejection::BadRequest(_))
                ),
                "{body:?}"
            );
        }
        // the misspelt id field is accepted
        let body = br#"{"webookId":"w9","eventType":"USER_DELETED"}"#;
        let req = sign(&secret, None, None, Some(body), 0, "n").unwrap();
        let v = run(&signed_headers(&req), &req.body, &[secret], None).unwrap();
        assert_eq!(v.event_id, "w9");
    }

    #[test]
    fn round_trip() {
        let secret = Secret(b"consumer-key".to_vec());
        let legacy = Secret(b"legacy-webhook-secret".to_vec());
        let req = sign(
            &secret,
            Some(&legacy),
            Some("ACCOUNT_HOLDINGS_UPDATED"),
            None,
            1_700_000_000,
            "wh-1",
        )
        .unwrap();
        let text = String::from_utf8(req.body.clone()).unwrap();
        assert!(
            text.contains("\"eventTimestamp\": \"2023-11-14T22:13:20.000000+00:00\""),
            "{text}"
        );
        assert!(text.contains("accountId"));
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            Some(&legacy),
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("wh-1", "ACCOUNT_HOLDINGS_UPDATED")
        );
        assert!(v.detail.contains("canonical JSON"), "{}", v.detail);

        let req = sign(&secret, None, None, None, 1_700_000_000, "wh-2").unwrap();
        let v = run(
            &signed_headers(&req),
            &req.body,
            std::slice::from_ref(&secret),
            None,
        )
        .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("wh-2", "CONNECTION_ADDED")
        );
        // without webhookSecret in the body, a configured legacy secret refuses it
        assert_eq!(
            run(&signed_headers(&req), &req.body, &[secret], Some(&legacy)),
            Err(denied("webhook secret mismatch"))
        );
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["k"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("signature", v);
            for body in odd_bodies() {
                assert!(run(&h, &body, &s, Some(&Secret(b"x".to_vec()))).is_err());
            }
        }
        // a deeply nested but valid JSON body canonicalises without trouble
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        let doc: Value = serde_json::from_str(&deep).unwrap();
        assert_eq!(canonical_json(&doc), deep);
    }
}
