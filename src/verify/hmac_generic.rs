//! Generic HMAC scheme (`kind = "hmac"`) for senders without a preset
//! (Flipkart, Selloship, in-house): one signature header holding the hex or
//! base64 HMAC (SHA-1/256/512) of a signed-content template over the raw body,
//! with an optional prefix (`sha256=`) and an optional timestamp header.
//! Event id and type come from a header, a JSON pointer into the body, or a
//! fixed value. Pattern as in GitHub's and Stripe's docs:
//! <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>
//!
//! Choices: the header holds exactly one signature (after the prefix, which is
//! matched ASCII-case-insensitively); hex is compared as decoded bytes, so its
//! case does not matter; `{timestamp}` is replaced by the timestamp header's
//! text exactly as sent; a `tolerance` needs a timestamp in Unix seconds and
//! refuses both stale and future requests.

use super::util::{self, bad_request, unauthorized};
use super::{Input, Rejection, Secret, SignedRequest, Verified};
use http::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

/// Hash function of the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// `sha1` | `sha256` | `sha512` (case-insensitive).
    pub fn parse(s: &str) -> Result<Algorithm, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sha1" => Ok(Algorithm::Sha1),
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(format!(
                "unknown algorithm {s:?}: expected sha1, sha256 or sha512"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// How the signature header writes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    /// `hex` | `base64` (case-insensitive).
    pub fn parse(s: &str) -> Result<Encoding, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            _ => Err(format!("unknown encoding {s:?}: expected hex or base64")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => util::hex_decode(text),
            Encoding::Base64 => util::b64_decode(text),
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => util::b64_encode(bytes),
        }
    }
}

/// Where the event id or type is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The value of this request header.
    Header(String),
    /// A JSON pointer (RFC 6901) into the body, e.g. `/data/id`; a string is
    /// taken as is, a number is written in decimal.
    Json(String),
    /// This fixed text.
    Fixed(String),
}

impl Source {
    /// `header:NAME`, `json:/POINTER` or `fixed:VALUE`.
    pub fn parse(s: &str) -> Result<Source, String> {
        const EXPECTED: &str = "expected header:NAME, json:/POINTER or fixed:VALUE";
        let Some((kind, value)) = s.split_once(':') else {
            return Err(format!("{s:?}: {EXPECTED}"));
        };
        match kind.trim().to_ascii_lowercase().as_str() {
            "header" => {
                let name = value.trim();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!("{s:?}: {name:?} is not a valid header name"));
                }
                Ok(Source::Header(name.to_owned()))
            }
            "json" => {
                if !value.starts_with('/') {
                    return Err(format!(
                        "{s:?}: a JSON pointer starts with '/', e.g. json:/data/id"
                    ));
                }
                Ok(Source::Json(value.to_owned()))
            }
            "fixed" => {
                if value.is_empty() {
                    return Err(format!("{s:?}: the fixed value is empty"));
                }
                Ok(Source::Fixed(value.to_owned()))
            }
            _ => Err(format!("{s:?}: {EXPECTED}")),
        }
    }

    /// The value for one request; `doc` is the parsed body when any source
    /// reads JSON.
    pub(crate) fn extract(
        &self,
        headers: &HeaderMap,
        doc: Option<&Value>,
    ) -> Result<String, Rejection> {
        match self {
            Source::Header(name) => util::required_header(headers, name),
            Source::Fixed(v) => Ok(v.clone()),
            Source::Json(ptr) => {
                let v = doc
                    .and_then(|d| d.pointer(ptr))
                    .ok_or_else(|| bad_request(format!("nothing at {ptr} in the body")))?;
                match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(bad_request(format!(
                        "the value at {ptr} is not a string or number"
                    ))),
                }
            }
        }
    }
}

/// The generic scheme's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    /// Header carrying the signature, e.g. `X-Acme-Signature`.
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Text before the encoded MAC, e.g. `sha256=`; required when set.
    pub prefix: Option<String>,
    /// Header carrying the timestamp substituted for `{timestamp}`.
    pub timestamp_header: Option<String>,
    /// What is signed; placeholders `{timestamp}` and `{body}` (raw bytes).
    pub signed_content: String,
    /// Max |now - timestamp|; only with `timestamp_header` (Unix seconds).
    pub tolerance: Option<Duration>,
    /// Event id; default: SHA-256 hex of the body.
    pub id_from: Option<Source>,
    /// Event type; default: "webhook".
    pub type_from: Option<Source>,
}

/// Default `signed_content`.
pub const DEFAULT_SIGNED_CONTENT: &str = "{body}";
/// Default event type when `type_from` is not set.
pub const DEFAULT_EVENT_TYPE: &str = "webhook";
const SAMPLE_EVENT_TYPE: &str = "test.event";

impl HmacScheme {
    /// HMAC-SHA256, hex, no prefix, no timestamp, signed content `{body}`.
    pub fn new(header: impl Into<String>) -> HmacScheme {
        HmacScheme {
            header: header.into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: None,
            timestamp_header: None,
            signed_content: DEFAULT_SIGNED_CONTENT.to_owned(),
            tolerance: None,
            id_from: None,
            type_from: None,
        }
    }

    /// Every problem of the configuration, as (config key, message); empty
    /// when it is usable.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let valid_name = |n: &str| http::HeaderName::from_bytes(n.as_bytes()).is_ok();
        if !valid_name(&self.header) {
            out.push((
                "header",
                format!("{:?} is not a valid header name", self.header),
            ));
        }
        if let Some(h) = &self.timestamp_header
            && !valid_name(h)
        {
            out.push((
                "timestamp_header",
                format!("{h:?} is not a valid header name"),
            ));
        }
        if !self.signed_content.contains("{body}") {
            out.push(("signed_content", "must contain {body}".to_owned()));
        }
        if self.signed_content.contains("{timestamp}") && self.timestamp_header.is_none() {
            out.push((
                "signed_content",
                "uses {timestamp} but timestamp_header is not set".to_owned(),
            ));
        }
        if let Some(p) = unknown_placeholder(&self.signed_content) {
            out.push((
                "signed_content",
                format!("unknown placeholder {p}: only {{timestamp}} and {{body}} exist"),
            ));
        }
        if self.tolerance.is_some() && self.timestamp_header.is_none() {
            out.push(("tolerance", "needs timestamp_header".to_owned()));
        }
        if self.prefix.as_deref() == Some("") {
            out.push(("prefix", "is empty: leave it out instead".to_owned()));
        }
        for (key, src) in [("id_from", &self.id_from), ("type_from", &self.type_from)] {
            match src {
                Some(Source::Header(h)) if !valid_name(h) => {
                    out.push((key, format!("{h:?} is not a valid header name")));
                }
                Some(Source::Json(p)) if !p.starts_with('/') => {
                    out.push((key, format!("{p:?}: a JSON pointer starts with '/'")));
                }
                _ => {}
            }
        }
        out
    }

    /// Checks the signature (and timestamp window) only; returns the 0-based
    /// index of the secret that matched.
    pub fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
        now: i64,
    ) -> Result<usize, Rejection> {
        let keys = util::raw_keys(secrets)?;
        let text = util::signature_header(headers, &self.header)?;
        let encoded = match self.prefix.as_deref().filter(|p| !p.is_empty()) {
            None => text,
            Some(p) => strip_prefix_ignore_case(text, p)
                .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?,
        };
        let received = self
            .encoding
            .decode(encoded)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| unauthorized(util::MALFORMED_SIGNATURE))?;

        let timestamp = match &self.timestamp_header {
            None => "",
            Some(h) => match self.tolerance {
                Some(tol) => {
                    let (ts, text) = util::timestamp_header(headers, h)?;
                    util::check_window(ts, now, tol, true)?;
                    text
                }
                None => match util::header(headers, h) {
                    Some(Ok(v)) if !v.trim().is_empty() => v.trim(),
                    Some(Err(())) => return Err(unauthorized(util::INVALID_TIMESTAMP)),
                    _ => return Err(unauthorized(util::MISSING_TIMESTAMP)),
                },
            },
        };
        let parts = render(&self.signed_content, timestamp, body);
        util::match_keys(keys, self.algorithm, &parts, &[received])
            .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
    }

    pub fn verify(&self, input: &Input<'_>) -> Result<Verified, Rejection> {
        let index = self.check_signature(input.headers, input.body, input.secrets, input.now)?;
        let needs_json = [&self.id_from, &self.type_from]
            .iter()
            .any(|s| matches!(s, Some(Source::Json(_))));
        let doc = if needs_json {
            Some(util::parse_json(input.body)?)
        } else {
            None
        };
        let event_id = match &self.id_from {
            Some(src) => src.extract(input.headers, doc.as_ref())?,
            None => util::sha256_hex(input.body),
        };
        let event_type = match &self.type_from {
            Some(src) => src.extract(input.headers, doc.as_ref())?,
            None => DEFAULT_EVENT_TYPE.to_owned(),
        };
        let mut detail = format!(
            "hmac {} signature matched secret #{}",
            self.algorithm.name(),
            index.saturating_add(1)
        );
        if let Some(h) = &self.timestamp_header
            && let Some(Ok(t)) = util::header(input.headers, h)
            && let Some(t) = util::parse_unix(t.trim())
        {
            detail.push_str(&format!(", t={t}"));
        }
        Ok(Verified {
            event_id,
            event_type,
            detail,
            handshake: None,
        })
    }

    /// Builds a request as this sender would: the sample payload puts `nonce`
    /// and the type where `id_from`/`type_from` look for them (JSON pointer or
    /// header); a timestamp header carries `now`.
    pub fn sign(
        &self,
        secret: &Secret,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        if let Some((key, msg)) = self.problems().into_iter().next() {
            return Err(format!("{key}: {msg}"));
        }
        let kind = event_type.unwrap_or(SAMPLE_EVENT_TYPE);
        let body = match payload {
            Some(p) => p.to_vec(),
            None => {
                let mut doc = json!({
                    "id": nonce,
                    "type": kind,
                    "created_at": util::rfc3339(now),
                    "data": { "message": "hello from appliance send-test" },
                });
                if let Some(Source::Json(ptr)) = &self.id_from {
                    set_pointer(&mut doc, ptr, Value::String(nonce.to_owned()));
                }
                if let Some(Source::Json(ptr)) = &self.type_from {
                    set_pointer(&mut doc, ptr, Value::String(kind.to_owned()));
                }
                serde_json::to_vec(&doc).map_err(|e| e.to_string())?
            }
        };
        let ts = now.to_string();
        let parts = render(&self.signed_content, &ts, &body);
        let mac = util::hmac(self.algorithm, &secret.0, &parts)
            .ok_or_else(|| "the secret cannot be used as an HMAC key".to_owned())?;
        let signature = format!(
            "{}{}",
            self.prefix.as_deref().unwrap_or(""),
            self.encoding.encode(&mac)
        );
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (self.header.clone(), signature),
        ];
        if let Some(h) = &self.timestamp_header {
            headers.push((h.clone(), ts));
        }
        if let Some(Source::Header(h)) = &self.id_from {
            headers.push((h.clone(), nonce.to_owned()));
        }
        if let Some(Source::Header(h)) = &self.type_from {
            headers.push((h.clone(), kind.to_owned()));
        }
        Ok(SignedRequest { headers, body })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// The signed content as byte slices, `{timestamp}` and `{body}` replaced;
/// everything else is literal.
fn render<'a>(template: &'a str, timestamp: &'a str, body: &'a [u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = template;
    loop {
        let next = [("{body}", body), ("{timestamp}", timestamp.as_bytes())]
            .into_iter()
            .filter_map(|(p, v)| rest.find(p).map(|i| (i, p.len(), v)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, len, value)) = next else {
            break;
        };
        let (Some(literal), Some(after)) = (rest.get(..i), rest.get(i.saturating_add(len)..))
        else {
            break;
        };
        if !literal.is_empty() {
            parts.push(literal.as_bytes());
        }
        parts.push(value);
        rest = after;
    }
    if !rest.is_empty() {
        parts.push(rest.as_bytes());
    }
    parts
}

/// The first `{word}` in the template that is not a known placeholder.
fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open.saturating_add(1)..)?;
        let close = after.find('}')?;
        let word = after.get(..close)?;
        if !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && word != "body"
            && word != "timestamp"
        {
            return Some(format!("{{{word}}}"));
        }
        rest = after;
    }
    None
}

/// Sets `doc[ptr] = value`, creating (or replacing with) objects on the way.
pub(crate) fn set_pointer(doc: &mut Value, ptr: &str, value: Value) {
    let Some(path) = ptr.strip_prefix('/') else {
        return;
    };
    let tokens: Vec<String> = path
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut cur = doc;
    let last = tokens.len().saturating_sub(1);
    for (i, token) in tokens.into_iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = cur else {
            return;
        };
        if i == last {
            map.insert(token, value);
            return;
        }
        cur = map.entry(token).or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    fn acme() -> HmacScheme {
        HmacScheme {
            prefix: Some("sha256=".into()),
            timestamp_header: Some("X-Acme-Timestamp".into()),
            signed_content: "{timestamp}.{body}".into(),
            tolerance: Some(Duration::from_secs(300)),
            id_from: Some(Source::parse("header:X-Acme-Delivery").unwrap()),
            type_from: Some(Source::parse("json:/event").unwrap()),
            ..HmacScheme::new("X-Acme-Signature")
        }
    }

    fn configs() -> Vec<HmacScheme> {
        vec![
            HmacScheme::new("X-Signature"),
            HmacScheme {
                algorithm: Algorithm::Sha1,
                ..HmacScheme::new("X-Hub-Signature")
            },
            HmacScheme {
                algorithm: Algorithm::Sha512,
                encoding: Encoding::Base64,
                ..HmacScheme::new("X-Sig")
            },
            HmacScheme {
                encoding: Encoding::Base64,
                prefix: Some("v1=".into()),
                id_from: Some(Source::Json("/data/id".into())),
                type_from: Some(Source::Fixed("acme.thing".into())),
                ..HmacScheme::new("X-Sig")
            },
            HmacScheme {
                algorithm: Algorithm::Sha1,
                timestamp_header: Some("X-Ts".into()),
                signed_content: "v0:{timestamp}:{body}".into(),
                type_from: Some(Source::Header("X-Event".into())),
                ..HmacScheme::new("X-Sig")
            },
            acme(),
        ]
    }

    fn verify(
        s: &HmacScheme,
        req: &SignedRequest,
        secrets: &[Secret],
        now: i64,
    ) -> Result<Verified, Rejection> {
        let h = signed_headers(req);
        s.verify(&input(&h, &req.body, secrets, now))
    }

    #[test]
    fn python_computed_vectors() {
        // hmac.new(b"k3y", b"hello", sha1).hexdigest() etc.
        let body = b"hello";
        let cases = [
            (
                Algorithm::Sha1,
                Encoding::Hex,
                "48ecc7cb158b5419864a2a988f4f32561b80b583",
            ),
            (
                Algorithm::Sha256,
                Encoding::Hex,
                "876e76604d6817debfcac7bda97f616a5641178941207e9d557beac9e44bc25a",
            ),
            (
                Algorithm::Sha512,
                Encoding::Base64,
                "QD8Ql1rvszhy5TsOX0nwB2sNHKz5YCtCl5wNHIomve08ODg+3Xb6sChoFiAJHLOHQMepWwm5bE36o3ea3WYBtA==",
            ),
        ];
        for (alg, enc, sig) in cases {
            let s = HmacScheme {
                algorithm: alg,
                encoding: enc,
                ..HmacScheme::new("X-Sig")
            };
            let h = headers(&[("X-Sig", sig)]);
            let got = s.check_signature(&h, body, &secrets(&["k3y"]), 0);
            assert_eq!(got, Ok(0), "{alg:?} {enc:?}");
        }
    }

    #[test]
    fn round_trips() {
        let now = 1_700_000_000;
        for s in configs() {
            assert!(s.problems().is_empty(), "{s:?}: {:?}", s.problems());
            let req = s
                .sign(
                    &Secret(b"s3cret".to_vec()),
                    Some("order.paid"),
                    None,
                    now,
                    "n-1",
                )
                .unwrap();
            let v = verify(&s, &req, &secrets(&["s3cret"]), now).unwrap();
            assert!(v.detail.contains(s.algorithm.name()), "{}", v.detail);
            assert!(v.detail.contains("#1"));
            match &s.type_from {
                Some(Source::Fixed(f)) => assert_eq!(&v.event_type, f),
                Some(_) => assert_eq!(v.event_type, "order.paid"),
                None => assert_eq!(v.event_type, "webhook"),
            }
            match &s.id_from {
                Some(_) => assert_eq!(v.event_id, "n-1"),
                None => assert_eq!(v.event_id, util::sha256_hex(&req.body)),
            }
            // a second nonce is a distinct event
            let req2 = s
                .sign(&Secret(b"s3cret".to_vec()), None, None, now, "n-2")
                .unwrap();
            let v2 = verify(&s, &req2, &secrets(&["s3cret"]), now).unwrap();
            if !matches!(s.id_from, Some(Source::Fixed(_))) {
                assert_ne!(v.event_id, v2.event_id);
            }
        }
    }

    #[test]
    fn custom_payload_is_signed_as_given() {
        let s = acme();
        let body = br#"{"event":"invoice.created","x":1}"#;
        let req = s
            .sign(&Secret(b"k".to_vec()), None, Some(body), 1000, "abc")
            .unwrap();
        assert_eq!(req.body, body);
        let v = verify(&s, &req, &secrets(&["k"]), 1000).unwrap();
        assert_eq!(v.event_id, "abc");
        assert_eq!(v.event_type, "invoice.created");
        assert!(v.detail.contains("t=1000"));
    }

    #[test]
    fn tampered_wrong_secret_rotation() {
        for s in configs() {
            let req = s
                .sign(&Secret(b"right".to_vec()), None, None, 500, "n")
                .unwrap();
            let mut tampered = req.clone();
            tampered.body.push(b' ');
            assert_eq!(
                verify(&s, &tampered, &secrets(&["right"]), 500),
                Err(denied("signature mismatch"))
            );
            assert_eq!(
                verify(&s, &req, &secrets(&["wrong"]), 500),
                Err(denied("signature mismatch"))
            );
            let v = verify(&s, &req, &secrets(&["old", "right"]), 500).unwrap();
            assert!(v.detail.contains("#2"), "{}", v.detail);
            assert_eq!(
                verify(&s, &req, &[], 500),
                Err(denied("no secret configured"))
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers() {
        let s = acme();
        let req = s
            .sign(&Secret(b"k".to_vec()), None, None, 500, "n")
            .unwrap();
        let keep = |drop: &str| SignedRequest {
            headers: req
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(drop))
                .cloned()
                .collect(),
            body: req.body.clone(),
        };
        assert_eq!(
            verify(&s, &keep("X-Acme-Signature"), &secrets(&["k"]), 500),
            Err(denied("missing signature header"))
        );
        assert_eq!(
            verify(&s, &keep("X-Acme-Timestamp"), &secrets(&["k"]), 500),
            Err(denied("missing timestamp header"))
        );
        assert!(matches!(
            verify(&s, &keep("X-Acme-Delivery"), &secrets(&["k"]), 500),
            Err(Rejection::BadRequest(_))
        ));
        // prefix missing -> malformed
        let h = headers(&[("X-Acme-Signature", "abcdef"), ("X-Acme-Timestamp", "500")]);
        assert_eq!(
            s.check_signature(&h, b"{}", &secrets(&["k"]), 500),
            Err(denied("malformed signature header"))
        );
        // prefix case does not matter, hex case does not matter
        let sig = req
            .headers
            .iter()
            .find(|(k, _)| k == "X-Acme-Signature")
            .unwrap();
        let upper = sig.1.replace("sha256=", "SHA256=").to_uppercase();
        let h = headers(&[("X-Acme-Signature", &upper), ("X-Acme-Timestamp", "500")]);
        assert_eq!(
            s.check_signature(&h, &req.body, &secrets(&["k"]), 500),
            Ok(0)
        );
    }

    #[test]
    fn timestamp_window_both_ways() {
        let s = acme();
        for (signed_at, now) in [(1000, 1301), (1301, 1000)] {
            let req = s
                .sign(&Secret(b"k".to_vec()), None, None, signed_at, "n")
                .unwrap();
            assert_eq!(
                verify(&s, &req, &secrets(&["k"]), now),
                Err(denied("timestamp outside tolerance"))
            );
        }
        let req = s
            .sign(&Secret(b"k".to_vec()), None, None, 1000, "n")
            .unwrap();
        assert!(verify(&s, &req, &secrets(&["k"]), 1300).is_ok());
        let h = headers(&[
            ("X-Acme-Signature", "sha256=00"),
            ("X-Acme-Timestamp", "soon"),
        ]);
        assert_eq!(
            s.check_signature(&h, b"", &secrets(&["k"]), 0),
            Err(denied("invalid timestamp"))
        );
    }

    #[test]
    fn json_sources() {
        let s = HmacScheme {
            id_from: Some(Source::Json("/data/id".into())),
            type_from: Some(Source::Json("/kind".into())),
            ..HmacScheme::new("X-Sig")
        };
        let sign = |body: &[u8]| {
            s.sign(&Secret(b"k".to_vec()), None, Some(body), 0, "n")
                .unwrap()
        };
        let v = verify(
            &s,
            &sign(br#"{"data":{"id":42},"kind":"a.b"}"#),
            &secrets(&["k"]),
            0,
        )
        .unwrap();
        assert_eq!((v.event_id.as_str(), v.event_type.as_str()), ("42", "a.b"));
        for body in [
            &br#"{"kind":"a.b"}"#[..],
            br#"{"data":{"id":null},"kind":"a.b"}"#,
            br#"{"data":{"id":1},"kind":{}}"#,
            b"not json",
            &[0xff, 0xfe],
        ] {
            assert!(
                matches!(
                    verify(&s, &sign(body), &secrets(&["k"]), 0),
                    Err(Rejection::BadRequest(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn source_parse() {
        assert_eq!(
            Source::parse("header:X-Id"),
            Ok(Source::Header("X-Id".into()))
        );
        assert_eq!(Source::parse("json:/a/b"), Ok(Source::Json("/a/b".into())));
        assert_eq!(
            Source::parse("fixed:acme.event"),
            Ok(Source::Fixed("acme.event".into()))
        );
        assert_eq!(Source::parse("fixed:a:b"), Ok(Source::Fixed("a:b".into())));
        for bad in [
            "",
            "header:",
            "header:bad name",
            "json:a/b",
            "fixed:",
            "body:/x",
            "nocolon",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Algorithm::parse("SHA512"), Ok(Algorithm::Sha512));
        assert!(Algorithm::parse("md5").is_err());
        assert_eq!(Encoding::parse("base64"), Ok(Encoding::Base64));
        assert!(Encoding::parse("b64").is_err());
    }

    #[test]
    fn problems_are_reported() {
        let s = HmacScheme {
            header: "bad header".into(),
            signed_content: "{timestamp}.{nonce}".into(),
            tolerance: Some(Duration::from_secs(1)),
            ..HmacScheme::new("x")
        };
        let keys: Vec<&str> = s.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "header",
                "signed_content",
                "signed_content",
                "signed_content",
                "tolerance"
            ]
        );
        assert!(s.sign(&Secret(b"k".to_vec()), None, None, 0, "n").is_err());
    }

    #[test]
    fn render_template() {
        let parts = render("{timestamp}.{body}.{body}{x}", "12", b"B");
        assert_eq!(parts.concat(), b"12.B.B{x}");
        assert_eq!(render("{body}", "", b"").concat(), b"");
        assert_eq!(render("{bod", "1", b"B").concat(), b"{bod");
    }

    #[test]
    fn set_pointer_creates_path() {
        let mut v = json!({"a": 1});
        set_pointer(&mut v, "/a/b~1c", json!("x"));
        set_pointer(&mut v, "/d", json!(2));
        assert_eq!(v, json!({"a": {"b/c": "x"}, "d": 2}));
    }

    #[test]
    fn misconfigured_scheme_refuses_without_panic() {
        let s = HmacScheme {
            timestamp_header: Some("bad header".into()),
            id_from: Some(Source::Header("also bad".into())),
            signed_content: "{timestamp}{body}{nope}".into(),
            tolerance: Some(Duration::from_secs(1)),
            ..HmacScheme::new("bad header")
        };
        assert!(!s.problems().is_empty());
        let h = headers(&[("x", "y")]);
        assert_eq!(
            s.verify(&input(&h, b"{}", &secrets(&["k"]), 0)),
            Err(denied("missing signature header"))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in configs() {
            for value in odd_header_values() {
                let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                    continue;
                };
                let mut h = HeaderMap::new();
                h.insert(
                    http::HeaderName::from_bytes(s.header.as_bytes()).unwrap(),
                    v.clone(),
                );
                h.insert("X-Ts", v.clone());
                h.insert("X-Acme-Timestamp", v);
                for body in odd_bodies() {
                    assert!(s.verify(&input(&h, &body, &secrets(&["k"]), 0)).is_err());
                }
            }
        }
    }
}
