//! Twilio: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the auth
//! token, of the full URL Twilio requested (query string included) followed
//! by every POST form parameter sorted by name, each written as name+value
//! with no separator (a repeated name: its values sorted, duplicates once).
//! JSON bodies are signed differently: the URL carries a `bodySHA256` query
//! parameter (the hex SHA-256 of the raw body), the URL alone is signed, and
//! the body must hash to that parameter.
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-security>
//! <https://www.twilio.com/docs/usage/security#validating-requests>
//! (algorithm as in twilio-node `src/webhooks/webhooks.ts`.)
//!
//! The URL is an input: the caller builds it ([`signed_url`]: `public_url` +
//! the request's own query string, or Host and X-Forwarded-Proto from a
//! trusted proxy). As Twilio's libraries do, the URL is tried as given,
//! without its port, and with the scheme's default port (Twilio is not
//! consistent about `:443`). A `X-Twilio-Webhooks-Signature-Settings:
//! ...algorithm=HMAC_SHA256` header (Webhooks Rules with a shared key)
//! switches the hash to SHA-256; configure that shared key as a secret.
//!
//! Id: `I-Twilio-Idempotency-Token` when present (every status callback of
//! one message shares its `MessageSid`), else the form's `MessageSid`,
//! `SmsSid` or `CallSid`, else the SHA-256 hex of the body. Type: `type_from`
//! when configured, else the form's `MessageStatus`, `SmsStatus` or
//! `CallStatus` (e.g. `delivered`, `ringing`), else `webhook`.

use super::hmac_generic::Source;
use super::util::{self, unauthorized};
use super::{Algorithm, Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use std::collections::{BTreeMap, BTreeSet};

pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
pub const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";
pub const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";
pub const BODY_HASH_PARAM: &str = "bodySHA256";
/// Event type when neither `type_from` nor a status parameter gives one.
pub const DEFAULT_EVENT_TYPE: &str = "webhook";
const SAMPLE_STATUS: &str = "delivered";
const ID_PARAMS: [&str; 3] = ["MessageSid", "SmsSid", "CallSid"];
const TYPE_PARAMS: [&str; 3] = ["MessageStatus", "SmsStatus", "CallStatus"];

/// The `twilio` scheme's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwilioScheme {
    /// The public URL of this endpoint as configured in Twilio (behind a
    /// tunnel the local URL differs). The caller uses it to build the URL
    /// it passes to [`TwilioScheme::verify`]; `sign` signs for it.
    pub public_url: Option<String>,
    /// Event type instead of the status parameter, e.g. `fixed:sms`.
    pub type_from: Option<Source>,
}

/// `public_url` with the request's own query string (`query` without the
/// `?`): the URL Twilio signed. The request's query replaces any query of
/// `public_url`; an empty or absent one keeps `public_url` as it is.
pub fn signed_url(public_url: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        None => public_url.to_owned(),
        Some(q) => {
            let base = public_url.split(['?', '#']).next().unwrap_or(public_url);
            format!("{base}?{q}")
        }
    }
}

/// `url` with `bodySHA256=<hex SHA-256 of body>` appended, as Twilio builds
/// the URL of a JSON webhook.
pub fn with_body_hash(url: &str, body: &[u8]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{BODY_HASH_PARAM}={}", util::sha256_hex(body))
}

/// The query string of a URL (after `?`, before `#`).
fn query_of(url: &str) -> Option<&str> {
    let (_, q) = url.split_once('?')?;
    q.split('#').next()
}

/// The `bodySHA256` query parameter, percent-decoded.
fn body_hash_param(url: &str) -> Option<String> {
    form_urlencoded::parse(query_of(url)?.as_bytes())
        .find(|(k, _)| k == BODY_HASH_PARAM)
        .map(|(_, v)| v.into_owned())
}

/// The URL as given, and without its port or with the default port.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Some(v) = port_variant(url)
        && v != url
    {
        out.push(v);
    }
    out
}

/// `url` without its explicit port, or with the scheme's default port when
/// it has none; None when it is not an http(s) URL with a host.
fn port_variant(url: &str) -> Option<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let (scheme_len, default_port) = if lower.starts_with("https://") {
        (8, "443")
    } else if lower.starts_with("http://") {
        (7, "80")
    } else {
        return None;
    };
    let head = url.get(..scheme_len)?;
    let after = url.get(scheme_len..)?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = after.get(..end)?;
    let tail = after.get(end..)?;
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (authority.get(..=i)?, authority.get(i.checked_add(1)?..)?),
        None => ("", authority),
    };
    if hostport.is_empty() || hostport.ends_with(':') {
        return None;
    }
    match hostport.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(format!("{head}{userinfo}{host}{tail}"))
        }
        _ => Some(format!("{head}{userinfo}{hostport}:{default_port}{tail}")),
    }
}

/// The form parameters, sorted by name, each name+value (a name's values
/// sorted and deduplicated), concatenated.
fn form_params(body: &[u8]) -> String {
    let mut params: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        params
            .entry(k.into_owned())
            .or_default()
            .insert(v.into_owned());
    }
    let mut out = String::new();
    for (name, values) in &params {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// The first value of a form parameter, if non-empty.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// SHA-1 by default; the signature-settings header may ask for SHA-256.
fn algorithm(headers: &HeaderMap) -> Result<Algorithm, Rejection> {
    let Some(value) = util::header(headers, SETTINGS_HEADER) else {
        return Ok(Algorithm::Sha1);
    };
    let value = value.map_err(|()| unauthorized(util::UNSUPPORTED_ALGORITHM))?;
    let named = value
        .split(',')
        .filter_map(|item| item.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("algorithm"))
        .map(|(_, v)| v.trim().to_ascii_uppercase());
    match named.as_deref() {
        None | Some("HMAC_SHA1") => Ok(Algorithm::Sha1),
        Some("HMAC_SHA256") => Ok(Algorithm::Sha256),
        Some(_) => Err(unauthorized(util::UNSUPPORTED_ALGORITHM)),
    }
}

/// Checks the signature for `url` (and, for a `bodySHA256` URL, the body
/// hash); returns the 0-based index of the secret that matched.
pub fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    url: &str,
) -> Result<usize, Rejection> {
    let keys = util::raw_keys(secrets)?;
    let text = util::signature_header(headers, SIGNATURE_HEADER)?;
    let received = util::b64_decode(text)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;
    let alg = algorithm(headers)?;
    let body_hash = body_hash_param(url);
    let params = match body_hash {
        Some(_) => String::new(),
        None => form_params(body),
    };
    let index = url_variants(url)
        .iter()
        .find_map(|u| {
            util::match_keys(
                keys.iter(),
                alg,
                &[u.as_bytes(), params.as_bytes()],
                std::slice::from_ref(&received),
            )
        })
        .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))?;
    if let Some(expected) = body_hash {
        let computed = sha2_digest(body);
        let given = util::hex_decode(&expected).unwrap_or_default();
        if !util::ct_eq(&computed, &given) {
            return Err(unauthorized(util::BODY_HASH_MISMATCH));
        }
    }
    Ok(index)
}

fn sha2_digest(body: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(body).to_vec()
}

/// [`TwilioScheme::verify`] with the defaults (type from the status).
pub fn verify(input: &Input<'_>, url: &str) -> Result<Verified, Rejection> {
    TwilioScheme::default().verify(input, url)
}

impl TwilioScheme {
    /// Verifies a request Twilio sent to `url` (see the module doc).
    pub fn verify(&self, input: &Input<'_>, url: &str) -> Result<Verified, Rejection> {
        let index = check_signature(input.headers, input.body, input.secrets, url)?;
        let is_json = body_hash_param(url).is_some();
        let form = |names: &[&str]| {
            if is_json {
                return None;
            }
            names.iter().find_map(|n| form_value(input.body, n))
        };
        let event_id = match util::header(input.headers, IDEMPOTENCY_HEADER) {
            Some(Ok(v)) if !v.trim().is_empty() => v.trim().to_owned(),
            _ => form(&ID_PARAMS).unwrap_or_else(|| util::sha256_hex(input.body)),
        };
        let event_type = match &self.type_from {
            Some(source) => {
                let doc = match source {
                    Source::Json(_) if is_json => Some(util::parse_json(input.body)?),
                    _ => None,
                };
                source.extract(input.headers, doc.as_ref())?
            }
            None => form(&TYPE_PARAMS).unwrap_or_else(|| DEFAULT_EVENT_TYPE.to_owned()),
        };
        let alg = algorithm(input.headers)?;
        Ok(Verified {
            event_id,
            event_type,
            detail: format!(
                "twilio hmac-{} signature matched secret #{}{}",
                alg.name(),
                index.saturating_add(1),
                if is_json { ", body hash matched" } else { "" }
            ),
            handshake: None,
        })
    }

    /// Builds a status callback as Twilio sends it to `url`: a form with
    /// `MessageStatus`/`SmsStatus` = `event_type` (default `delivered`) and a
    /// `MessageSid` derived from `nonce`, plus `I-Twilio-Idempotency-Token`.
    /// A custom `payload` is sent as a form, or, when `url` has a
    /// `bodySHA256` parameter (see [`with_body_hash`]), as JSON.
    pub fn sign(
        &self,
        secret: &Secret,
        url: &str,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        let _ = now;
        let is_json = body_hash_param(url).is_some();
        let body = match payload {
            Some(p) => p.to_vec(),
            None if is_json => {
                return Err("a bodySHA256 URL signs a JSON payload: give one".to_owned());
            }
            None => {
                let digest = util::sha256_hex(nonce.as_bytes());
                let sid = digest.get(..32).unwrap_or("0");
                let status = event_type.unwrap_or(SAMPLE_STATUS);
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("AccountSid", &format!("AC{sid}"))
                    .append_pair("ApiVersion", "2010-04-01")
                    .append_pair("From", "+15005550006")
                    .append_pair("MessageSid", &format!("SM{sid}"))
                    .append_pair("MessageStatus", status)
                    .append_pair("SmsSid", &format!("SM{sid}"))
                    .append_pair("SmsStatus", status)
                    .append_pair("To", "+15005550001")
                    .finish()
                    .into_bytes()
            }
        };
        if let Some(expected) = body_hash_param(url)
            && expected != util::sha256_hex(&body)
        {
            return Err("the URL's bodySHA256 is not the payload's hash".to_owned());
        }
        let params = if is_json {
            String::new()
        } else {
            form_params(&body)
        };
        let mac = util::hmac(
            Algorithm::Sha1,
            &secret.0,
            &[url.as_bytes(), params.as_bytes()],
        )
        .ok_or_else(|| "the secret cannot be used as an HMAC key".to_owned())?;
        let content_type = if is_json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded; charset=utf-8"
        };
        Ok(SignedRequest {
            headers: vec![
                ("content-type".to_owned(), content_type.to_owned()),
                ("user-agent".to_owned(), "TwilioProxy/1.1".to_owned()),
                (IDEMPOTENCY_HEADER.to_owned(), format!("{nonce}-appliance")),
                (SIGNATURE_HEADER.to_owned(), util::b64_encode(&mac)),
            ],
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    const NAME: &str = "twilio";

    fn vector_body() -> Vec<u8> {
        let v = vectors();
        let params = v[NAME]["form_params"].as_object().unwrap();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        // the order in the body does not matter: the signature sorts
        for (k, v) in params.iter().rev() {
            ser.append_pair(k, v.as_str().unwrap());
        }
        ser.finish().into_bytes()
    }

    fn run(h: &HeaderMap, body: &[u8], s: &[Secret], url: &str) -> Result<Verified, Rejection> {
        verify(&input(h, body, s, 0), url)
    }

    #[test]
    fn vector() {
        let url = field(NAME, "url");
        let h = headers(&[(SIGNATURE_HEADER, &field(NAME, "X-Twilio-Signature"))]);
        let s = secrets(&[&field(NAME, "auth_token")]);
        let body = vector_body();
        let v = run(&h, &body, &s, &url).unwrap();
        assert_eq!(v.event_id, "CA1234567890ABCDE");
        assert_eq!(v.event_type, "webhook");
        assert_eq!(v.detail, "twilio hmac-sha1 signature matched secret #1");
        // Twilio may or may not have put the default port in what it signed
        let with_port = url.replace(".com/", ".com:443/");
        assert!(run(&h, &body, &s, &with_port).is_ok());
        // as in Twilio's libraries, any explicit port may be left out
        let other_port = url.replace(".com/", ".com:8443/");
        assert!(run(&h, &body, &s, &other_port).is_ok());

        // tampered parameter, other URL, wrong token, rotation
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("1234", "1235");
        assert_eq!(
            run(&h, tampered.as_bytes(), &s, &url),
            Err(denied("signature mismatch"))
        );
        for other in [
            url.replace("foo=1", "foo=2"),
            url.replace("https", "http"),
            format!("{url}&x=1"),
        ] {
            assert_eq!(
                run(&h, &body, &s, &other),
                Err(denied("signature mismatch")),
                "{other}"
            );
        }
        assert_eq!(
            run(&h, &body, &secrets(&["other"]), &url),
            Err(denied("signature mismatch"))
        );
        let rotated = secrets(&["old", &field(NAME, "auth_token")]);
        assert!(
            run(&h, &body, &rotated, &url)
                .unwrap()
                .detail
                .contains("#2")
        );
        assert_eq!(
            run(&headers(&[]), &body, &s, &url),
            Err(denied("missing signature header"))
        );
        assert_eq!(
            run(&h, &body, &[], &url),
            Err(denied("no secret configured"))
        );
    }

    #[test]
    fn json_body_hash_variant() {
        let secret = Secret(b"12345".to_vec());
        let body = br#"{"sid":"xyz","status":"ok"}"#;
        let url = with_body_hash("https://hooks.example.com/twilio?x=1", body);
        assert!(url.contains("&bodySHA256="));
        let req = TwilioScheme::default()
            .sign(&secret, &url, None, Some(body), 0, "n")
            .unwrap();
        let h = signed_headers(&req);
        let s = std::slice::from_ref(&secret);
        let v = run(&h, body, s, &url).unwrap();
        assert_eq!(v.event_id, "n-appliance");
        assert_eq!(v.event_type, "webhook");
        assert!(v.detail.ends_with("body hash matched"));
        // the signature covers the URL (and so the hash), the hash the body
        let other = br#"{"sid":"xyz","status":"no"}"#;
        assert_eq!(run(&h, other, s, &url), Err(denied("body hash mismatch")));
        let forged_url = with_body_hash("https://hooks.example.com/twilio?x=1", other);
        assert_eq!(
            run(&h, other, s, &forged_url),
            Err(denied("signature mismatch"))
        );
        // type from the JSON body when configured
        let scheme = TwilioScheme {
            type_from: Some(Source::Json("/status".into())),
            ..TwilioScheme::default()
        };
        assert_eq!(
            scheme
                .verify(&input(&h, body, s, 0), &url)
                .unwrap()
                .event_type,
            "ok"
        );
    }

    #[test]
    fn round_trip_status_callback() {
        let secret = Secret(b"tok".to_vec());
        let url = "https://abc.trycloudflare.com/webhooks/twilio";
        let scheme = TwilioScheme::default();
        let req = scheme
            .sign(&secret, url, Some("undelivered"), None, 0, "n7")
            .unwrap();
        let h = signed_headers(&req);
        let v = scheme
            .verify(&input(&h, &req.body, std::slice::from_ref(&secret), 0), url)
            .unwrap();
        assert_eq!(v.event_type, "undelivered");
        assert_eq!(v.event_id, "n7-appliance");
        // without the idempotency header: the MessageSid
        let mut h2 = h.clone();
        h2.remove(IDEMPOTENCY_HEADER);
        let v = scheme
            .verify(
                &input(&h2, &req.body, std::slice::from_ref(&secret), 0),
                url,
            )
            .unwrap();
        assert!(v.event_id.starts_with("SM"), "{}", v.event_id);
        // a fixed type
        let fixed = TwilioScheme {
            type_from: Some(Source::Fixed("sms".into())),
            ..TwilioScheme::default()
        };
        let v = fixed
            .verify(&input(&h, &req.body, std::slice::from_ref(&secret), 0), url)
            .unwrap();
        assert_eq!(v.event_type, "sms");
        // a call: CallSid and CallStatus
        let body = b"CallSid=CA1&CallStatus=ringing&From=%2B1";
        let req = scheme.sign(&secret, url, None, Some(body), 0, "n").unwrap();
        let mut h = signed_headers(&req);
        h.remove(IDEMPOTENCY_HEADER);
        let v = scheme
            .verify(&input(&h, body, std::slice::from_ref(&secret), 0), url)
            .unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("CA1", "ringing")
        );
    }

    #[test]
    fn sha256_settings_and_params() {
        let key = b"shared-key";
        let url = "https://h.example/t";
        let body = b"b=2&a=1&a=0&a=1";
        assert_eq!(form_params(body), "a0a1b2");
        let mac = util::hmac(Algorithm::Sha256, key, &[url.as_bytes(), b"a0a1b2"]).unwrap();
        let h = headers(&[
            (SIGNATURE_HEADER, &util::b64_encode(&mac)),
            (SETTINGS_HEADER, "key=ks1,algorithm=HMAC_SHA256"),
        ]);
        let v = run(&h, body, &[Secret(key.to_vec())], url).unwrap();
        assert!(v.detail.starts_with("twilio hmac-sha256"));
        let h = headers(&[
            (SIGNATURE_HEADER, &util::b64_encode(&mac)),
            (SETTINGS_HEADER, "algorithm=HMAC_MD5"),
        ]);
        assert_eq!(
            run(&h, body, &[Secret(key.to_vec())], url),
            Err(denied("unsupported signature algorithm"))
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            signed_url("https://a.example/hook", Some("x=1&y=2")),
            "https://a.example/hook?x=1&y=2"
        );
        assert_eq!(
            signed_url("https://a.example/hook?old=1", Some("x=1")),
            "https://a.example/hook?x=1"
        );
        assert_eq!(
            signed_url("https://a.example/hook?old=1", Some("")),
            "https://a.example/hook?old=1"
        );
        assert_eq!(
            signed_url("https://a.example/hook", None),
            "https://a.example/hook"
        );
        assert_eq!(
            url_variants("https://a.example/p?q"),
            ["https://a.example/p?q", "https://a.example:443/p?q"]
        );
        assert_eq!(
            url_variants("http://u:p@a.example:8080"),
            ["http://u:p@a.example:8080", "http://u:p@a.example"]
        );
        assert_eq!(
            url_variants("https://[::1]/p"),
            ["https://[::1]/p", "https://[::1]:443/p"]
        );
        assert_eq!(url_variants("ftp://x/"), ["ftp://x/"]);
        for odd in ["", "https://", "http://:", "https://a:", "é", "https://@/"] {
            let _ = url_variants(odd);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let s = secrets(&["tok"]);
        for value in odd_header_values() {
            let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert("x-twilio-signature", v.clone());
            h.insert("x-twilio-webhooks-signature-settings", v);
            for body in odd_bodies() {
                for url in [
                    "",
                    "https://a/?bodySHA256=zz",
                    "é://x",
                    "https://a:99999999999/",
                ] {
                    assert!(run(&h, &body, &s, url).is_err());
                }
            }
        }
    }
}
