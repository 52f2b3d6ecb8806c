//! Amazon SNS, HTTP/HTTPS subscriptions (how Amazon SP-API and most AWS
//! services deliver). The body is a JSON envelope; its `Signature` is the
//! base64 RSA PKCS#1 v1.5 signature (`SignatureVersion` 1: SHA1, 2: SHA256)
//! of a "string to sign" made of some of the envelope's fields, each written
//! as `Name\nValue\n`, in this order:
//! - `Notification`: Message, MessageId, Subject (only when present),
//!   Timestamp, TopicArn, Type;
//! - `SubscriptionConfirmation` and `UnsubscribeConfirmation`: Message,
//!   MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type.
//!
//! The key is that of the X.509 certificate at `SigningCertURL`.
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>
//!
//! This module is pure: it is GIVEN the certificate. Ingest checks the URL
//! with [`cert_url_allowed`] (https, host `sns.<region>.amazonaws.com[.cn]`,
//! path ending `.pem`; `allow_cert_hosts` add hosts and allow plain http for
//! exactly those), fetches and caches it, or uses the pinned
//! `signing_cert_file`. The certificate's own chain is not checked here: the
//! trust comes from fetching it over TLS from an AWS host (or pinning it).
//! The URL is checked again by [`SnsScheme::verify`], pinned or not.
//!
//! Choices: `SigningCertUrl` is accepted for `SigningCertURL` (some AWS
//! services spell it so); `Subject: null` counts as absent; no timestamp
//! window (SNS retries for hours with the original signature; MessageId makes
//! retries duplicates); a topic outside `topic_arns` is refused AFTER the
//! signature is checked, with `Unauthorized("topic not allowed")`, which
//! [`super::Rejection::status`] maps to 403. A body that is not a JSON object
//! is 400; a missing field or a bad signature, certificate or URL is 401.
//! Id = `MessageId`; type = `Type`, or for a `Notification` with `type_from`,
//! the value it names (a JSON pointer reads the inner `Message` as JSON, e.g.
//! `json:/notificationType`; SP-API puts `NotificationType` there).
//! `SubscriptionConfirmation` is stored like any event (no handshake);
//! visiting its `SubscribeURL` is ingest's job, see [`SnsScheme::confirm_url`].

use super::hmac_generic::{Source, set_pointer};
use super::util::{self, bad_request, unauthorized};
use super::{Input, Rejection, Secret, SignedRequest, Verified};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem, Encode};

pub const NOTIFICATION: &str = "Notification";
pub const SUBSCRIPTION_CONFIRMATION: &str = "SubscriptionConfirmation";
pub const UNSUBSCRIBE_CONFIRMATION: &str = "UnsubscribeConfirmation";
/// Header SNS adds with the message type (not signed; informative only).
pub const MESSAGE_TYPE_HEADER: &str = "x-amz-sns-message-type";

const SAMPLE_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:appliance-test";
const SAMPLE_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-appliance-test.pem";
const SAMPLE_TYPE: &str = "appliance.test";

/// The JSON envelope of an SNS message, field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    /// `Type`: Notification, SubscriptionConfirmation or UnsubscribeConfirmation.
    pub message_type: String,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    /// Base64, as sent.
    pub signature: String,
    /// `SigningCertURL` (or `SigningCertUrl`).
    pub signing_cert_url: String,
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
    pub unsubscribe_url: Option<String>,
}

impl SnsMessage {
    /// The envelope as SNS writes it (keys in alphabetical order).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |k: &str, v: &str| {
            map.insert(k.to_owned(), Value::String(v.to_owned()));
        };
        put("Type", &self.message_type);
        put("MessageId", &self.message_id);
        put("TopicArn", &self.topic_arn);
        put("Message", &self.message);
        put("Timestamp", &self.timestamp);
        put("SignatureVersion", &self.signature_version);
        put("Signature", &self.signature);
        put("SigningCertURL", &self.signing_cert_url);
        for (k, v) in [
            ("Subject", &self.subject),
            ("SubscribeURL", &self.subscribe_url),
            ("Token", &self.token),
            ("UnsubscribeURL", &self.unsubscribe_url),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        Value::Object(map)
    }
}

/// A string field: absent or null -> None; a string -> Some; anything else
/// is refused (the message cannot be checked as AWS signed it).
fn optional(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::Unauthorized(format!("{key} is not a string"))),
    }
}

fn required(doc: &Map<String, Value>, key: &str) -> Result<String, Rejection> {
    optional(doc, key)?.ok_or_else(|| Rejection::Unauthorized(format!("missing {key}")))
}

/// Parses the JSON envelope. Not a JSON object: 400; a required field
/// missing or not a string: 401 (the message cannot be authenticated).
pub fn parse(body: &[u8]) -> Result<SnsMessage, Rejection> {
    let doc = util::parse_json(body)?;
    let Value::Object(doc) = doc else {
        return Err(bad_request("body is not an SNS message"));
    };
    let signature = optional(&doc, "Signature")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| unauthorized(util::MISSING_BODY_SIGNATURE))?;
    let signing_cert_url = match optional(&doc, "SigningCertURL")? {
        Some(u) => u,
        None => required(&doc, "SigningCertUrl")
            .map_err(|_| Rejection::Unauthorized("missing SigningCertURL".to_owned()))?,
    };
    Ok(SnsMessage {
        message_type: required(&doc, "Type")?,
        message_id: required(&doc, "MessageId")?,
        topic_arn: required(&doc, "TopicArn")?,
        subject: optional(&doc, "Subject")?,
        message: required(&doc, "Message")?,
        timestamp: required(&doc, "Timestamp")?,
        signature_version: required(&doc, "SignatureVersion")?,
        signature,
        signing_cert_url,
        subscribe_url: optional(&doc, "SubscribeURL")?,
        token: optional(&doc, "Token")?,
        unsubscribe_url: optional(&doc, "UnsubscribeURL")?,
    })
}

/// The string AWS signs for this message (see the module doc); 401 for an
/// unknown `Type` or a confirmation without `SubscribeURL`/`Token`.
pub fn string_to_sign(msg: &SnsMessage) -> Result<String, Rejection> {
    let missing = |name: &str| Rejection::Unauthorized(format!("missing {name}"));
    let mut out = String::new();
    match msg.message_type.as_str() {
        NOTIFICATION => {
            push_field(&mut out, "Message", &msg.message);
            push_field(&mut out, "MessageId", &msg.message_id);
            if let Some(subject) = &msg.subject {
                push_field(&mut out, "Subject", subject);
            }
            push_field(&mut out, "Timestamp", &msg.timestamp);
        }
        SUBSCRIPTION_CONFIRMATION | UNSUBSCRIBE_CONFIRMATION => {
            let subscribe = msg
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = msg.token.as_deref().ok_or_else(|| missing("Token"))?;
            push_field(&mut out, "Message", &msg.message);
            push_field(&mut out, "MessageId", &msg.message_id);
            push_field(&mut out, "SubscribeURL", subscribe);
            push_field(&mut out, "Timestamp", &msg.timestamp);
            push_field(&mut out, "Token", token);
        }
        _ => return Err(unauthorized(util::UNKNOWN_MESSAGE_TYPE)),
    }
    push_field(&mut out, "TopicArn", &msg.topic_arn);
    push_field(&mut out, "Type", &msg.message_type);
    Ok(out)
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push('\n');
    out.push_str(value);
    out.push('\n');
}

/// Hash of the string to sign for a `SignatureVersion`, with its scheme.
fn digest(version: &str, text: &str) -> Result<(Pkcs1v15Sign, Vec<u8>), Rejection> {
    match version {
        "1" => Ok((
            Pkcs1v15Sign::new::<sha1::Sha1>(),
            sha1::Sha1::digest(text.as_bytes()).to_vec(),
        )),
        "2" => Ok((
            Pkcs1v15Sign::new::<sha2::Sha256>(),
            sha2::Sha256::digest(text.as_bytes()).to_vec(),
        )),
        _ => Err(unauthorized(util::UNSUPPORTED_VERSION)),
    }
}

/// The first `BEGIN CERTIFICATE` block of a PEM text, markers included.
fn first_pem_block(text: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)?;
    let rest = text.get(start..)?;
    let end = rest.find(END)?;
    rest.get(..end.checked_add(END.len())?)
}

/// The RSA public key of a PEM (first certificate of the file) or DER X.509
/// certificate. RSA keys above 4096 bits are refused by the `rsa` crate.
pub fn public_key(cert: &[u8]) -> Result<RsaPublicKey, Rejection> {
    let bad = || unauthorized(util::INVALID_CERTIFICATE);
    let certificate = match std::str::from_utf8(cert).ok().and_then(first_pem_block) {
        Some(pem) => Certificate::from_pem(pem.as_bytes()).map_err(|_| bad())?,
        None => Certificate::from_der(cert).map_err(|_| bad())?,
    };
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| bad())?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|_| bad())
}

/// Checks the signature of `msg` with the certificate (PEM or DER) of its
/// `SigningCertURL`. Does not check the URL: see [`cert_url_allowed`].
pub fn verify_with_cert(msg: &SnsMessage, cert_pem: &[u8]) -> Result<(), Rejection> {
    let text = string_to_sign(msg)?;
    let (scheme, hashed) = digest(&msg.signature_version, &text)?;
    let signature = util::b64_decode(&msg.signature)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized(util::MALFORMED_BODY_SIGNATURE))?;
    let key = public_key(cert_pem)?;
    key.verify(scheme, &hashed, &signature)
        .map_err(|_| unauthorized(util::SIGNATURE_MISMATCH))
}

/// The scheme, host and path of an absolute http(s) URL, strictly: ASCII
/// without spaces, controls or backslashes, no userinfo, no percent-escapes
/// in the host. `None` for anything else.
struct UrlParts<'a> {
    https: bool,
    /// Host, or host:port, lowercased by the caller when compared.
    authority: &'a str,
    path: &'a str,
    /// Query and fragment, if any (starting with `?` or `#`).
    rest: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('\\') {
        return None;
    }
    let (https, after) = if let Some(a) = strip_prefix_ci(url, "https://") {
        (true, a)
    } else {
        (false, strip_prefix_ci(url, "http://")?)
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = after.get(..end)?;
    let tail = after.get(end..)?;
    if authority.is_empty() || authority.contains(['@', '%']) {
        return None;
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let path = tail.get(..path_end)?;
    let rest = tail.get(path_end..)?;
    if !path.starts_with('/') {
        return None;
    }
    Some(UrlParts {
        https,
        authority,
        path,
        rest,
    })
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, region
/// = a lowercase letter then lowercase letters, digits and dashes. No port.
pub fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let Some((region, domain)) = rest.split_once('.') else {
        return false;
    };
    let region_ok = region
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    region_ok && (domain == "amazonaws.com" || domain == "amazonaws.com.cn")
}

/// Whether the URL's host is trusted: an SNS host over https, or one of
/// `extra_hosts` (compared with the URL's host[:port], case-insensitively)
/// over https or plain http.
fn host_trusted(parts: &UrlParts<'_>, extra_hosts: &[String]) -> bool {
    let extra = extra_hosts
        .iter()
        .any(|h| h.trim().eq_ignore_ascii_case(parts.authority));
    extra || (parts.https && is_sns_host(parts.authority))
}

/// Whether a `SigningCertURL` may be fetched (see the module doc); else 401
/// `untrusted certificate url`. The path must end in `.pem`, with no query
/// or fragment.
pub fn cert_url_allowed(url: &str, extra_hosts: &[String]) -> Result<(), Rejection> {
    let ok = split_url(url).is_some_and(|p| {
        p.rest.is_empty() && p.path.ends_with(".pem") && host_trusted(&p, extra_hosts)
    });
    if ok {
        Ok(())
    } else {
        Err(unauthorized(util::UNTRUSTED_CERT_URL))
    }
}

/// Whether a `SubscribeURL` may be visited: the host rule of
/// [`cert_url_allowed`], any path and query; else 401 `untrusted subscribe url`.
pub fn subscribe_url_allowed(url: &str, extra_hosts: &[String]) -> Result<(), Rejection> {
    if split_url(url).is_some_and(|p| host_trusted(&p, extra_hosts)) {
        Ok(())
    } else {
        Err(unauthorized(util::UNTRUSTED_SUBSCRIBE_URL))
    }
}

/// The `sns` scheme's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnsScheme {
    /// Allowed `TopicArn`s (exact match); None = any topic.
    pub topic_arns: Option<Vec<String>>,
    /// `allow_cert_hosts`: hosts (host or host:port) trusted besides
    /// `sns.<region>.amazonaws.com[.cn]`, over https or plain http.
    pub extra_cert_hosts: Vec<String>,
    /// Event type of a `Notification`; a JSON pointer reads the inner
    /// `Message` as JSON. None: the envelope's `Type`.
    pub type_from: Option<Source>,
    /// Visit the `SubscribeURL` of a `SubscriptionConfirmation` (ingest does
    /// it; see [`SnsScheme::confirm_url`]).
    pub auto_confirm: bool,
}

impl SnsScheme {
    /// Parses, checks the certificate URL, the signature (with `cert_pem`,
    /// the certificate of that URL) and the topic; extracts id and type.
    pub fn verify(&self, input: &Input<'_>, cert_pem: &[u8]) -> Result<Verified, Rejection> {
        let msg = parse(input.body)?;
        cert_url_allowed(&msg.signing_cert_url, &self.extra_cert_hosts)?;
        verify_with_cert(&msg, cert_pem)?;
        if let Some(topics) = &self.topic_arns
            && !topics.contains(&msg.topic_arn)
        {
            return Err(unauthorized(util::TOPIC_NOT_ALLOWED));
        }
        if msg.message_id.trim().is_empty() {
            return Err(bad_request("missing MessageId"));
        }
        let event_type = match (&self.type_from, msg.message_type.as_str()) {
            (Some(source), NOTIFICATION) => {
                let inner = match source {
                    Source::Json(_) => Some(
                        serde_json::from_str::<Value>(&msg.message)
                            .map_err(|_| bad_request("Message is not valid JSON"))?,
                    ),
                    _ => None,
                };
                source.extract(input.headers, inner.as_ref())?
            }
            _ => msg.message_type.clone(),
        };
        Ok(Verified {
            event_id: msg.message_id.clone(),
            event_type,
            detail: format!(
                "sns v{} signature matched, topic {}",
                msg.signature_version, msg.topic_arn
            ),
            handshake: None,
        })
    }

    /// For a verified message: the `SubscribeURL` ingest should visit (Ok(None)
    /// when `auto_confirm` is off or this is not a `SubscriptionConfirmation`);
    /// 401 `untrusted subscribe url` when its host is not trusted.
    pub fn confirm_url<'m>(&self, msg: &'m SnsMessage) -> Result<Option<&'m str>, Rejection> {
        if !self.auto_confirm || msg.message_type != SUBSCRIPTION_CONFIRMATION {
            return Ok(None);
        }
        let url = msg
            .subscribe_url
            .as_deref()
            .ok_or_else(|| Rejection::Unauthorized("missing SubscribeURL".to_owned()))?;
        subscribe_url_allowed(url, &self.extra_cert_hosts)?;
        Ok(Some(url))
    }

    /// Builds a `Notification` as SNS would send it, signed (v2) with
    /// `key`, the PEM private key of the certificate the server pins. Its
    /// `SigningCertURL` is an AWS-looking URL, so the server must pin the
    /// certificate (`signing_cert_file`). The `Message` is `payload` (UTF-8
    /// text) or a sample JSON document that carries `event_type` where
    /// `type_from` looks (default `/notificationType`); the topic is the
    /// first of `topic_arns`.
    pub fn sign(
        &self,
        key: &Secret,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        let kind = event_type.unwrap_or(SAMPLE_TYPE);
        let message = match payload {
            Some(p) => String::from_utf8(p.to_vec())
                .map_err(|_| "an SNS Message is text: the payload is not UTF-8".to_owned())?,
            None => {
                let mut doc = json!({
                    "notificationType": kind,
                    "notificationId": nonce,
                    "eventTime": util::rfc3339(now),
                    "payload": { "message": "hello from appliance send-test" },
                });
                if let Some(Source::Json(ptr)) = &self.type_from {
                    set_pointer(&mut doc, ptr, Value::String(kind.to_owned()));
                }
                serde_json::to_string(&doc).map_err(|e| e.to_string())?
            }
        };
        let topic = self
            .topic_arns
            .as_ref()
            .and_then(|t| t.first())
            .map_or(SAMPLE_TOPIC, String::as_str);
        let ts = util::rfc3339(now);
        let mut msg = SnsMessage {
            message_type: NOTIFICATION.to_owned(),
            message_id: uuid_like(nonce),
            topic_arn: topic.to_owned(),
            subject: Some("appliance send-test".to_owned()),
            message,
            timestamp: format!("{}.000Z", ts.trim_end_matches('Z')),
            signature_version: "2".to_owned(),
            signature: String::new(),
            signing_cert_url: SAMPLE_CERT_URL.to_owned(),
            subscribe_url: None,
            token: None,
            unsubscribe_url: Some(format!(
                "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:appliance"
            )),
        };
        msg.signature = sign_with_key(&key.0, &msg)?;
        let body = serde_json::to_vec(&msg.to_json()).map_err(|e| e.to_string())?;
        Ok(SignedRequest {
            headers: vec![
                (
                    "content-type".to_owned(),
                    "text/plain; charset=UTF-8".to_owned(),
                ),
                (
                    "user-agent".to_owned(),
                    "Amazon Simple Notification Service Agent".to_owned(),
                ),
                (MESSAGE_TYPE_HEADER.to_owned(), msg.message_type.clone()),
                ("x-amz-sns-message-id".to_owned(), msg.message_id.clone()),
                ("x-amz-sns-topic-arn".to_owned(), msg.topic_arn.clone()),
            ],
            body,
        })
    }
}

/// A UUID-shaped id derived from `nonce` (8-4-4-4-12 hex digits).
fn uuid_like(nonce: &str) -> String {
    let h = util::sha256_hex(nonce.as_bytes());
    let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// The base64 `Signature` of `msg` for its `SignatureVersion` (1 or 2), made
/// with `key_pem` (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
/// PKCS#1 v1.5 is deterministic: the same key and message give the same
/// signature, which the vectors check.
pub fn sign_with_key(key_pem: &[u8], msg: &SnsMessage) -> Result<String, String> {
    let text = std::str::from_utf8(key_pem).map_err(|_| "the key is not PEM text".to_owned())?;
    let key = RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(text))
        .map_err(|_| "the key is not a PEM RSA private key".to_owned())?;
    let to_sign = string_to_sign(msg).map_err(|r| r.to_string())?;
    let (scheme, hashed) = digest(&msg.signature_version, &to_sign).map_err(|r| r.to_string())?;
    let sig = key.sign(scheme, &hashed).map_err(|e| e.to_string())?;
    Ok(util::b64_encode(&sig))
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;
    use http::HeaderMap;

    macro_rules! vector {
        ($file:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/sns/",
                $file
            ))
        };
    }

    const CERT: &str = vector!("test-signing-cert.pem");
    const KEY: &str = vector!("test-signing-key.pem");
    const FIXTURES: [(&str, &str); 3] = [
        (
            vector!("notification_v1.json"),
            vector!("notification_v1.string-to-sign.txt"),
        ),
        (
            vector!("notification_v2_nosubject.json"),
            vector!("notification_v2_nosubject.string-to-sign.txt"),
        ),
        (
            vector!("subscription_confirmation_v2.json"),
            vector!("subscription_confirmation_v2.string-to-sign.txt"),
        ),
    ];

    fn run(scheme: &SnsScheme, body: &[u8]) -> Result<Verified, Rejection> {
        let h = HeaderMap::new();
        scheme.verify(&input(&h, body, &[], 0), CERT.as_bytes())
    }

    /// The fixture with one top-level field replaced.
    fn edited(json: &str, key: &str, value: Value) -> Vec<u8> {
        let mut doc: Value = serde_json::from_str(json).unwrap();
        doc[key] = value;
        serde_json::to_vec(&doc).unwrap()
    }

    #[test]
    fn strings_to_sign_match_byte_for_byte() {
        for (json, expected) in FIXTURES {
            let msg = parse(json.as_bytes()).unwrap();
            assert_eq!(string_to_sign(&msg).unwrap(), expected);
        }
    }

    #[test]
    fn fixtures_verify_v1_and_v2() {
        let versions: Vec<String> = FIXTURES
            .iter()
            .map(|(json, _)| {
                let msg = parse(json.as_bytes()).unwrap();
                verify_with_cert(&msg, CERT.as_bytes()).unwrap();
                msg.signature_version
            })
            .collect();
        assert_eq!(versions, ["1", "2", "2"]);

        let v = run(&SnsScheme::default(), FIXTURES[0].0.as_bytes()).unwrap();
        assert_eq!(v.event_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
        assert_eq!(v.event_type, "Notification");
        assert_eq!(
            v.detail,
            "sns v1 signature matched, topic arn:aws:sns:us-east-1:123456789012:MyTopic"
        );
        assert_eq!(v.handshake, None);
        let v = run(&SnsScheme::default(), FIXTURES[2].0.as_bytes()).unwrap();
        assert_eq!(v.event_type, "SubscriptionConfirmation");
        assert_eq!(v.handshake, None, "a confirmation is stored, not answered");
    }

    #[test]
    fn tampering_is_refused_with_its_reason() {
        let s = SnsScheme::default();
        let v1 = FIXTURES[0].0;
        // a flipped byte in the Message
        let flipped = v1.replace("Hello world!", "Hello world?");
        assert_eq!(
            run(&s, flipped.as_bytes()),
            Err(denied("signature mismatch"))
        );
        // a changed Type
        let body = edited(v1, "Type", json!("UnsubscribeConfirmation"));
        assert_eq!(run(&s, &body), Err(denied("missing SubscribeURL")));
        let body = edited(v1, "Type", json!("Bogus"));
        assert_eq!(run(&s, &body), Err(denied("unknown message type")));
        let confirmation = FIXTURES[2].0;
        let body = edited(confirmation, "Type", json!("UnsubscribeConfirmation"));
        assert_eq!(run(&s, &body), Err(denied("signature mismatch")));
        // a cert URL on another host, or on http
        for url in [
            "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
            "https://evil.example/SimpleNotificationService-0000000000000000000000.pem",
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        ] {
            let body = edited(v1, "SigningCertURL", json!(url));
            assert_eq!(
                run(&s, &body),
                Err(denied("untrusted certificate url")),
                "{url}"
            );
        }
        // other versions, garbage signatures
        let body = edited(v1, "SignatureVersion", json!("3"));
        assert_eq!(run(&s, &body), Err(denied("unsupported signature version")));
        let body = edited(v1, "Signature", json!("!!!"));
        assert_eq!(run(&s, &body), Err(denied("malformed signature")));
        let body = edited(v1, "Signature", json!(""));
        assert_eq!(run(&s, &body), Err(denied("missing signature")));
        let body = edited(v1, "MessageId", json!(5));
        assert_eq!(run(&s, &body), Err(denied("MessageId is not a string")));
    }

    #[test]
    fn extra_hosts_allow_exactly_those_over_http() {
        let v1 = FIXTURES[0].0;
        let local = "http://127.0.0.1:8089/certs/test.pem";
        let body = edited(v1, "SigningCertURL", json!(local));
        assert_eq!(
            run(&SnsScheme::default(), &body),
            Err(denied("untrusted certificate url"))
        );
        let s = SnsScheme {
            extra_cert_hosts: vec!["127.0.0.1:8089".into()],
            ..SnsScheme::default()
        };
        assert!(run(&s, &body).is_ok());
        let other = edited(
            v1,
            "SigningCertURL",
            json!("http://127.0.0.1:8090/certs/test.pem"),
        );
        assert_eq!(run(&s, &other), Err(denied("untrusted certificate url")));
    }

    #[test]
    fn cert_url_rules() {
        let extra = vec!["mirror.internal".to_owned(), "127.0.0.1:9000".to_owned()];
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
            "https://sns.us-gov-west-1.amazonaws.com/a/b.pem",
            "HTTPS://sns.eu-west-1.amazonaws.com/x.pem",
            "http://mirror.internal/x.pem",
            "https://MIRROR.internal/x.pem",
            "http://127.0.0.1:9000/x.pem",
        ] {
            assert_eq!(cert_url_allowed(good, &extra), Ok(()), "{good}");
        }
        for bad in [
            "",
            "sns.us-east-1.amazonaws.com/x.pem",
            "ftp://sns.us-east-1.amazonaws.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/x.pem#f",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com",
            "https://sns.us-east-1.amazonaws.com:443/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://evil.example@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            "https://sns.US-EAST-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns.us-east-1.evil.amazonaws.com/x.pem",
            "https://sns.us_east_1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://xsns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com%2F@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com /x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem\n",
            "https://snş.us-east-1.amazonaws.com/x.pem",
            "http://127.0.0.1:9001/x.pem",
            "http://127.0.0.1/x.pem",
            "https://-1.amazonaws.com/x.pem",
        ] {
            assert_eq!(
                cert_url_allowed(bad, &extra),
                Err(denied("untrusted certificate url")),
                "{bad}"
            );
        }
        assert_eq!(
            subscribe_url_allowed(
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
                &[]
            ),
            Ok(())
        );
        assert_eq!(
            subscribe_url_allowed("http://sns.us-east-1.amazonaws.com/?Action=x", &[]),
            Err(denied("untrusted subscribe url"))
        );
    }

    #[test]
    fn topics_and_types() {
        let v2 = FIXTURES[1].0;
        let s = SnsScheme {
            topic_arns: Some(vec!["arn:aws:sns:us-east-1:123456789012:Other".into()]),
            ..SnsScheme::default()
        };
        let refused = run(&s, v2.as_bytes()).unwrap_err();
        assert_eq!(refused, denied("topic not allowed"));
        assert_eq!(refused.status(), 403);
        // a bad signature is still a 401, whatever the topic
        let flipped = v2.replace("json in a string", "json in a strinG");
        assert_eq!(
            run(&s, flipped.as_bytes()),
            Err(denied("signature mismatch"))
        );
        let s = SnsScheme {
            topic_arns: Some(vec!["arn:aws:sns:us-east-1:123456789012:MyTopic".into()]),
            type_from: Some(Source::Json("/default".into())),
            ..SnsScheme::default()
        };
        assert_eq!(
            run(&s, v2.as_bytes()).unwrap().event_type,
            "json in a string"
        );
        let s = SnsScheme {
            type_from: Some(Source::Json("/n".into())),
            ..SnsScheme::default()
        };
        assert_eq!(run(&s, v2.as_bytes()).unwrap().event_type, "1");
        let s = SnsScheme {
            type_from: Some(Source::Json("/NotificationType".into())),
            ..SnsScheme::default()
        };
        assert!(matches!(
            run(&s, v2.as_bytes()),
            Err(Rejection::BadRequest(_))
        ));
        // the v1 Message is not JSON: 400; a confirmation keeps its Type
        assert!(matches!(
            run(&s, FIXTURES[0].0.as_bytes()),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(
            run(&s, FIXTURES[2].0.as_bytes()).unwrap().event_type,
            "SubscriptionConfirmation"
        );
        let s = SnsScheme {
            type_from: Some(Source::Fixed("sp-api".into())),
            ..SnsScheme::default()
        };
        assert_eq!(run(&s, v2.as_bytes()).unwrap().event_type, "sp-api");
    }

    #[test]
    fn confirmation_url() {
        let confirmation = parse(FIXTURES[2].0.as_bytes()).unwrap();
        let notification = parse(FIXTURES[0].0.as_bytes()).unwrap();
        let off = SnsScheme::default();
        assert_eq!(off.confirm_url(&confirmation), Ok(None));
        let on = SnsScheme {
            auto_confirm: true,
            ..SnsScheme::default()
        };
        assert_eq!(
            on.confirm_url(&confirmation),
            Ok(confirmation.subscribe_url.as_deref())
        );
        assert_eq!(on.confirm_url(&notification), Ok(None));
        let mut local = confirmation.clone();
        local.subscribe_url = Some("http://127.0.0.1:9000/confirm?Token=x".into());
        assert_eq!(
            on.confirm_url(&local),
            Err(denied("untrusted subscribe url"))
        );
        let trusting = SnsScheme {
            extra_cert_hosts: vec!["127.0.0.1:9000".into()],
            ..on
        };
        assert_eq!(
            trusting.confirm_url(&local),
            Ok(Some("http://127.0.0.1:9000/confirm?Token=x"))
        );
    }

    #[test]
    fn signing_reproduces_the_fixtures() {
        for (json, _) in FIXTURES {
            let msg = parse(json.as_bytes()).unwrap();
            assert_eq!(sign_with_key(KEY.as_bytes(), &msg).unwrap(), msg.signature);
        }
        assert!(sign_with_key(b"not a key", &parse(FIXTURES[0].0.as_bytes()).unwrap()).is_err());
    }

    #[test]
    fn round_trip() {
        let key = Secret(KEY.as_bytes().to_vec());
        let s = SnsScheme {
            topic_arns: Some(vec!["arn:aws:sns:eu-west-1:1:orders".into()]),
            type_from: Some(Source::Json("/NotificationType".into())),
            ..SnsScheme::default()
        };
        let req = s
            .sign(&key, Some("ORDER_CHANGE"), None, 1_700_000_000, "n1")
            .unwrap();
        let h = signed_headers(&req);
        let v = s
            .verify(&input(&h, &req.body, &[], 0), CERT.as_bytes())
            .unwrap();
        assert_eq!(v.event_type, "ORDER_CHANGE");
        let msg = parse(&req.body).unwrap();
        assert_eq!(v.event_id, msg.message_id);
        assert_eq!(msg.timestamp, "2023-11-14T22:13:20.000Z");
        let again = s
            .sign(&key, Some("ORDER_CHANGE"), None, 1_700_000_000, "n2")
            .unwrap();
        assert_ne!(parse(&again.body).unwrap().message_id, msg.message_id);

        let req = SnsScheme::default()
            .sign(&key, None, Some(b"plain text"), 5, "n")
            .unwrap();
        let v = run(&SnsScheme::default(), &req.body).unwrap();
        assert_eq!(v.event_type, "Notification");
        assert_eq!(parse(&req.body).unwrap().message, "plain text");
        assert!(
            SnsScheme::default()
                .sign(&key, None, Some(&[0xff]), 5, "n")
                .is_err()
        );
    }

    #[test]
    fn bad_certificates_and_bodies() {
        let msg = parse(FIXTURES[0].0.as_bytes()).unwrap();
        for cert in [
            &b""[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"garbage",
            KEY.as_bytes(),
            &[0x30, 0x82, 0xff, 0xff],
        ] {
            assert_eq!(
                verify_with_cert(&msg, cert),
                Err(denied("invalid signing certificate"))
            );
        }
        // DER works as well as PEM
        let pem = first_pem_block(CERT).unwrap();
        let der = Certificate::from_pem(pem.as_bytes())
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(verify_with_cert(&msg, &der), Ok(()));
        for body in odd_bodies() {
            assert!(run(&SnsScheme::default(), &body).is_err());
        }
        assert!(matches!(
            run(&SnsScheme::default(), b"[]"),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(
            run(&SnsScheme::default(), b"{}"),
            Err(denied("missing signature"))
        );
        // SigningCertUrl is accepted too; Subject null counts as absent
        let mut doc: Value = serde_json::from_str(FIXTURES[1].0).unwrap();
        let url = doc["SigningCertURL"].take();
        doc.as_object_mut().unwrap().remove("SigningCertURL");
        doc["SigningCertUrl"] = url;
        doc["Subject"] = Value::Null;
        assert!(run(&SnsScheme::default(), &serde_json::to_vec(&doc).unwrap()).is_ok());
    }
}
