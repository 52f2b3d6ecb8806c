//! Presets: providers whose scheme is a combination of generic parts (a
//! token header, an HMAC over some parts of the request, Standard Webhooks),
//! kept as data in [`PRESETS`], so adding a provider is one table entry: where
//! the signature is and how it is written, what is signed, where the
//! timestamp, event id and event type are, and the provider's published docs.
//!
//! Rules shared by every preset:
//! - `checks` are alternatives: a check applies when its signature is present
//!   in the request, and the request is genuine when an applicable check
//!   passes (GitLab sends its plain token and, with a signing token, a
//!   Standard Webhooks signature too: either configured secret works). No
//!   applicable check: 401 missing signature; all fail: the first failure.
//! - A signature may be named in several places (Forgejo's `X-Forgejo-
//!   Signature`, else `X-Gitea-Signature`): the first one present is used.
//! - Signatures are compared as decoded bytes in constant time; every
//!   configured secret is tried (rotation).
//! - A timestamp with a tolerance (the preset's, unless the provider config
//!   sets `tolerance`) is checked both ways after the signature.
//! - Event id: the first of `id_from` present, else the SHA-256 hex of the
//!   body. Event type: the first of `type_from` present, else `default_type`,
//!   else 400.
//! - A body that must be JSON (a signature, timestamp, id or type read from
//!   it) and is not: 400.

use super::hmac_generic::set_pointer;
use super::util::{self, bad_request, unauthorized};
use super::{
    Algorithm, Encoding, Input, Rejection, Secret, SignedRequest, Verified, standard_webhooks,
};
use http::HeaderMap;
use serde_json::Value;
use std::borrow::Cow;
use std::time::Duration;

/// A place in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A request header (trimmed, non-empty).
    Header(&'static str),
    /// A JSON pointer into the body: a non-empty string, or a number in
    /// decimal.
    Json(&'static str),
}

/// How the signature value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFormat {
    /// One encoded MAC after an optional prefix (matched ignoring ASCII case).
    Plain { prefix: Option<&'static str> },
    /// `key=value` items split by `separator` (Paddle: `ts=..;h1=..`): the
    /// timestamp under `ts_key`, MACs under `sig_key` (may repeat during a
    /// secret rotation; undecodable ones are skipped).
    KeyValue {
        separator: char,
        ts_key: &'static str,
        sig_key: &'static str,
    },
}

/// One piece of the signed content; the pieces are concatenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The raw body.
    Body,
    /// With `Content-Type: application/x-www-form-urlencoded`, the decoded
    /// `payload` form field; else the raw body (Gitea, Forgejo: the JSON is
    /// signed, the form carries it).
    PayloadOrBody,
    /// `Input::url`, the full public URL of the request (Square).
    Url,
    /// The timestamp's text exactly as sent.
    Timestamp,
    Literal(&'static str),
    /// The text of a header or JSON field.
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsUnit {
    Seconds,
    Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsSource {
    Field(Field),
    /// The `ts_key` item of a [`SigFormat::KeyValue`] signature.
    SignatureKey,
}

/// Where a signed timestamp is and how far from now it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub source: TsSource,
    pub unit: TsUnit,
    /// Absent timestamp: 401 when required, else no window check.
    pub required: bool,
    /// The provider's documented window (both ways); None: no check unless
    /// configured.
    pub tolerance: Option<Duration>,
}

/// An HMAC over parts of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmacCheck {
    /// Where the signature is; the first present is used.
    pub signature: &'static [Field],
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub format: SigFormat,
    pub signed: &'static [Part],
    pub timestamp: Option<Timestamp>,
}

/// One way a request proves it is genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The header's value equals a secret (constant-time): a shared token,
    /// not a signature (the body is not protected).
    Token {
        header: &'static str,
    },
    Hmac(HmacCheck),
    /// `webhook-id`/`webhook-timestamp`/`webhook-signature` as in
    /// [`standard_webhooks`] (window: the configured tolerance, else 5 min).
    StandardWebhooks,
}

/// A provider, as data.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// The `kind` in the config.
    pub kind: &'static str,
    /// The provider's documentation this entry was checked against.
    pub docs: &'static [&'static str],
    pub checks: &'static [Check],
    pub id_from: &'static [Field],
    pub type_from: &'static [Field],
    /// Type when no `type_from` is present; None: 400.
    pub default_type: Option<&'static str>,
    /// Content type and body of `sign`'s sample; placeholders (inside JSON
    /// strings or as numbers): `{nonce}`, `{type}`, `{now}`, `{now_ms}`,
    /// `{rfc3339}`. The sample puts `{nonce}`/`{type}` where `id_from`/
    /// `type_from` read JSON; header sources get them as headers.
    pub content_type: &'static str,
    pub sample: &'static str,
    /// Event type of the sample when `sign` is given none.
    pub sample_type: &'static str,
}

/// Gitea and Forgejo: hex HMAC-SHA256 of the JSON payload.
const fn sha256_hex_payload(signature: &'static [Field]) -> Check {
    Check::Hmac(HmacCheck {
        signature,
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        format: SigFormat::Plain { prefix: None },
        signed: &[Part::PayloadOrBody],
        timestamp: None,
    })
}

/// Every preset. Each entry names the documentation it follows; each has a
/// vector in `tests/vectors/presets.json`.
pub static PRESETS: &[Preset] = &[
    Preset {
        kind: "gitlab",
        docs: &[
            "https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook",
            "https://docs.gitlab.com/user/project/integrations/webhooks/#delivery-headers",
            "https://gitlab.com/gitlab-org/gitlab/-/merge_requests/160952 (Idempotency-Key, 17.4)",
            "https://gitlab.com/gitlab-org/gitlab/-/merge_requests/230944 (signing token)",
        ],
        checks: &[
            Check::Token {
                header: "X-Gitlab-Token",
            },
            Check::StandardWebhooks,
        ],
        id_from: &[
            Field::Header("Idempotency-Key"),
            Field::Header("X-Gitlab-Event-UUID"),
        ],
        type_from: &[Field::Header("X-Gitlab-Event")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"object_kind":"push","event_name":"push","before":"0000000000000000000000000000000000000000","after":"{nonce}","ref":"refs/heads/main","user_name":"appliance","project":{"path_with_namespace":"appliance/send-test"},"commits":[],"total_commits_count":0}"#,
        sample_type: "Push Hook",
    },
    Preset {
        kind: "gitea",
        docs: &[
            "https://docs.gitea.com/usage/repository/webhooks",
            "https://github.com/go-gitea/gitea/blob/main/services/webhook/deliver.go (addDefaultHeaders)",
        ],
        checks: &[sha256_hex_payload(&[Field::Header("X-Gitea-Signature")])],
        id_from: &[Field::Header("X-Gitea-Delivery")],
        type_from: &[Field::Header("X-Gitea-Event")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"{nonce}","commits":[],"repository":{"full_name":"appliance/send-test"},"pusher":{"login":"appliance"}}"#,
        sample_type: "push",
    },
    Preset {
        kind: "forgejo",
        docs: &[
            "https://forgejo.org/docs/latest/user/webhooks/",
            "https://codeberg.org/forgejo/forgejo/src/branch/forgejo/services/webhook/shared/payloader.go (AddDefaultHeaders)",
        ],
        checks: &[sha256_hex_payload(&[
            Field::Header("X-Forgejo-Signature"),
            Field::Header("X-Gitea-Signature"),
        ])],
        id_from: &[
            Field::Header("X-Forgejo-Delivery"),
            Field::Header("X-Gitea-Delivery"),
        ],
        type_from: &[
            Field::Header("X-Forgejo-Event"),
            Field::Header("X-Gitea-Event"),
        ],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"{nonce}","commits":[],"repository":{"full_name":"appliance/send-test"},"pusher":{"login":"appliance"}}"#,
        sample_type: "push",
    },
    Preset {
        kind: "linear",
        docs: &[
            "https://linear.app/developers/webhooks#securing-webhooks",
            "https://github.com/linear/linear/blob/master/packages/sdk/src/webhooks (LinearWebhooks.verify: |now - webhookTimestamp| <= 60 s)",
        ],
        checks: &[Check::Hmac(HmacCheck {
            signature: &[Field::Header("Linear-Signature")],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            format: SigFormat::Plain { prefix: None },
            signed: &[Part::Body],
            timestamp: Some(Timestamp {
                source: TsSource::Field(Field::Json("/webhookTimestamp")),
                unit: TsUnit::Millis,
                required: false,
                tolerance: Some(Duration::from_secs(60)),
            }),
        })],
        id_from: &[Field::Header("Linear-Delivery")],
        type_from: &[Field::Header("Linear-Event")],
        default_type: None,
        content_type: "application/json; charset=utf-8",
        sample: r#"{"action":"create","type":"{type}","data":{"id":"{nonce}","title":"hello from appliance send-test"},"url":"https://linear.app/appliance/issue/APP-1","createdAt":"{rfc3339}","webhookTimestamp":{now_ms},"webhookId":"{nonce}"}"#,
        sample_type: "Issue",
    },
    Preset {
        kind: "paddle",
        docs: &["https://developer.paddle.com/webhooks/signature-verification"],
        checks: &[Check::Hmac(HmacCheck {
            signature: &[Field::Header("Paddle-Signature")],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            format: SigFormat::KeyValue {
                separator: ';',
                ts_key: "ts",
                sig_key: "h1",
            },
            signed: &[Part::Timestamp, Part::Literal(":"), Part::Body],
            timestamp: Some(Timestamp {
                source: TsSource::SignatureKey,
                unit: TsUnit::Seconds,
                required: true,
                // Paddle's SDKs allow 5 s; set `tolerance` for drifting clocks.
                tolerance: Some(Duration::from_secs(5)),
            }),
        })],
        id_from: &[Field::Json("/event_id")],
        type_from: &[Field::Json("/event_type")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"event_id":"evt_{nonce}","event_type":"{type}","occurred_at":"{rfc3339}","notification_id":"ntf_{nonce}","data":{"id":"txn_{nonce}","status":"completed"}}"#,
        sample_type: "transaction.completed",
    },
    Preset {
        kind: "typeform",
        docs: &["https://www.typeform.com/developers/webhooks/secure-your-webhooks/"],
        checks: &[Check::Hmac(HmacCheck {
            signature: &[Field::Header("Typeform-Signature")],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Base64,
            format: SigFormat::Plain {
                prefix: Some("sha256="),
            },
            signed: &[Part::Body],
            timestamp: None,
        })],
        id_from: &[Field::Json("/event_id")],
        type_from: &[Field::Json("/event_type")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"event_id":"{nonce}","event_type":"{type}","form_response":{"form_id":"lT4Z3j","token":"{nonce}","submitted_at":"{rfc3339}","definition":{"id":"lT4Z3j","title":"appliance send-test"},"answers":[]}}"#,
        sample_type: "form_response",
    },
    Preset {
        kind: "square",
        docs: &[
            "https://developer.squareup.com/docs/webhooks/step3validate",
            "https://developer.squareup.com/docs/webhooks/step2subscribe",
        ],
        checks: &[Check::Hmac(HmacCheck {
            signature: &[Field::Header("x-square-hmacsha256-signature")],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Base64,
            format: SigFormat::Plain { prefix: None },
            signed: &[Part::Url, Part::Body],
            timestamp: None,
        })],
        id_from: &[Field::Json("/event_id")],
        type_from: &[Field::Json("/type")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"merchant_id":"6SSW7HV8K2ST5","type":"{type}","event_id":"{nonce}","created_at":"{rfc3339}","data":{"type":"payment","id":"{nonce}","object":{"payment":{"id":"{nonce}","status":"COMPLETED"}}}}"#,
        sample_type: "payment.updated",
    },
    Preset {
        kind: "mailgun",
        docs: &[
            "https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks",
        ],
        checks: &[Check::Hmac(HmacCheck {
            signature: &[Field::Json("/signature/signature")],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            format: SigFormat::Plain { prefix: None },
            signed: &[
                Part::Field(Field::Json("/signature/timestamp")),
                Part::Field(Field::Json("/signature/token")),
            ],
            timestamp: Some(Timestamp {
                source: TsSource::Field(Field::Json("/signature/timestamp")),
                unit: TsUnit::Seconds,
                required: true,
                tolerance: None,
            }),
        })],
        id_from: &[
            Field::Json("/event-data/id"),
            Field::Json("/signature/token"),
        ],
        type_from: &[Field::Json("/event-data/event")],
        default_type: None,
        content_type: "application/json",
        sample: r#"{"signature":{"timestamp":"{now}","token":"{nonce}","signature":""},"event-data":{"id":"{nonce}","event":"{type}","timestamp":{now},"recipient":"alice@example.com","message":{"headers":{"message-id":"{nonce}@appliance.test"}}}}"#,
        sample_type: "delivered",
    },
];

/// The preset of a kind.
pub fn find(kind: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.kind == kind)
}

/// Fallback window of [`Check::StandardWebhooks`] when none is configured.
const STANDARD_WEBHOOKS_TOLERANCE: Duration = Duration::from_secs(300);

impl Field {
    fn reads_json(self) -> bool {
        matches!(self, Field::Json(_))
    }

    /// The field's text, if present.
    fn text(self, headers: &HeaderMap, doc: Option<&Value>) -> Option<String> {
        match self {
            Field::Header(name) => match util::header(headers, name) {
                Some(Ok(v)) if !v.trim().is_empty() => Some(v.trim().to_owned()),
                _ => None,
            },
            Field::Json(ptr) => doc.and_then(|d| d.pointer(ptr)).and_then(util::json_text),
        }
    }

    fn describe(self) -> String {
        match self {
            Field::Header(h) => format!("{h} header"),
            Field::Json(p) => format!("body {p}"),
        }
    }
}

impl Check {
    fn reads_json(&self) -> bool {
        match self {
            Check::Hmac(h) => {
                h.signature.iter().any(|f| f.reads_json())
                    || h.signed
                        .iter()
                        .any(|p| matches!(p, Part::Field(f) if f.reads_json()))
                    || h.timestamp
                        .is_some_and(|t| matches!(t.source, TsSource::Field(f) if f.reads_json()))
            }
            Check::Token { .. } | Check::StandardWebhooks => false,
        }
    }
}

impl Preset {
    fn fields_read_json(&self) -> bool {
        self.id_from
            .iter()
            .chain(self.type_from)
            .any(|f| f.reads_json())
    }

    /// Whether `sign`/`verify` need the request URL.
    pub fn needs_url(&self) -> bool {
        self.checks
            .iter()
            .any(|c| matches!(c, Check::Hmac(h) if h.signed.contains(&Part::Url)))
    }
}

/// A configured preset: the table entry and the provider's `tolerance`
/// (None: the preset's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetScheme {
    pub preset: &'static Preset,
    pub tolerance: Option<Duration>,
}

/// The signature of an HMAC check as found in the request.
struct Found {
    candidates: Vec<Vec<u8>>,
    /// The timestamp carried in the signature value (KeyValue format).
    ts: Option<String>,
}

/// Parses a signature value; None when it is not of the format.
fn parse_signature(text: &str, spec: &HmacCheck) -> Option<Found> {
    let decode = |t: &str| -> Option<Vec<u8>> {
        match spec.encoding {
            Encoding::Hex => util::hex_decode(t),
            Encoding::Base64 => util::b64_decode(t),
        }
        .filter(|b| !b.is_empty())
    };
    match spec.format {
        SigFormat::Plain { prefix } => {
            let encoded = match prefix {
                None => text,
                Some(p) => {
                    let head = text.get(..p.len())?;
                    if !head.eq_ignore_ascii_case(p) {
                        return None;
                    }
                    text.get(p.len()..)?
                }
            };
            Some(Found {
                candidates: vec![decode(encoded)?],
                ts: None,
            })
        }
        SigFormat::KeyValue {
            separator,
            ts_key,
            sig_key,
        } => {
            let mut ts = None;
            let mut any_sig = false;
            let mut candidates = Vec::new();
            for item in text.split(separator) {
                let Some((k, v)) = item.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim());
                if k == ts_key && ts.is_none() {
                    ts = Some(v.to_owned());
                } else if k == sig_key {
                    any_sig = true;
                    candidates.extend(decode(v));
                }
            }
            any_sig.then_some(Found { candidates, ts })
        }
    }
}

/// The signed `payload` form field when the request is a form.
fn form_payload(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let ct = match util::header(headers, "content-type") {
        Some(Ok(v)) => v.trim().to_ascii_lowercase(),
        _ => return None,
    };
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
}

/// What the parts of a signed content are made from.
struct Material<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    doc: Option<&'a Value>,
    url: Option<&'a str>,
    ts: Option<&'a str>,
}

/// The signed content of `parts`, in order.
fn render<'a>(parts: &[Part], m: &Material<'a>) -> Result<Vec<Cow<'a, [u8]>>, Rejection> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        out.push(match part {
            Part::Body => Cow::Borrowed(m.body),
            Part::PayloadOrBody => match form_payload(m.headers, m.body) {
                Some(p) => Cow::Owned(p),
                None => Cow::Borrowed(m.body),
            },
            Part::Url => Cow::Borrowed(
                m.url
                    .ok_or_else(|| unauthorized(util::URL_UNKNOWN))?
                    .as_bytes(),
            ),
            Part::Timestamp => Cow::Borrowed(
                m.ts.ok_or_else(|| unauthorized(util::MISSING_TIMESTAMP))?
                    .as_bytes(),
            ),
            Part::Literal(s) => Cow::Borrowed(s.as_bytes()),
            Part::Field(f) => Cow::Owned(
                f.text(m.headers, m.doc)
                    .ok_or_else(|| unauthorized(util::MALFORMED_BODY_SIGNATURE))?
                    .into_bytes(),
            ),
        });
    }
    Ok(out)
}

/// Unix seconds of a timestamp's text in `unit`.
fn ts_seconds(text: &str, unit: TsUnit) -> Option<i64> {
    let n = util::parse_unix(text)?;
    Some(match unit {
        TsUnit::Seconds => n,
        TsUnit::Millis => n.div_euclid(1000),
    })
}

impl PresetScheme {
    fn kind(&self) -> &'static str {
        self.preset.kind
    }

    /// Verifies a request by the preset's rules (see the module doc);
    /// presets that sign the URL need `input.url`.
    pub fn verify(&self, input: &Input<'_>) -> Result<Verified, Rejection> {
        let p = self.preset;
        let mut doc = if p.checks.iter().any(Check::reads_json) {
            Some(util::parse_json(input.body)?)
        } else {
            None
        };
        let mut first_failure = None;
        let mut detail = None;
        for check in p.checks {
            match self.run_check(check, input, doc.as_ref()) {
                Ok(None) => {}
                Ok(Some(d)) => {
                    detail = Some(d);
                    break;
                }
                Err(r) => {
                    first_failure.get_or_insert(r);
                }
            }
        }
        let detail = match (detail, first_failure) {
            (Some(d), _) => d,
            (None, Some(r)) => return Err(r),
            (None, None) => {
                let in_body = p.checks.iter().any(Check::reads_json);
                return Err(unauthorized(if in_body {
                    util::MISSING_BODY_SIGNATURE
                } else {
                    util::MISSING_SIGNATURE
                }));
            }
        };
        if doc.is_none() && p.fields_read_json() {
            doc = Some(util::parse_json(input.body)?);
        }
        let first = |fields: &[Field]| {
            fields
                .iter()
                .find_map(|f| f.text(input.headers, doc.as_ref()))
        };
        let event_id = first(p.id_from).unwrap_or_else(|| util::sha256_hex(input.body));
        let event_type = match (first(p.type_from), p.default_type) {
            (Some(t), _) => t,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                let names: Vec<String> = p.type_from.iter().map(|f| f.describe()).collect();
                return Err(bad_request(format!(
                    "missing event type ({})",
                    names.join(" or ")
                )));
            }
        };
        Ok(Verified {
            event_id,
            event_type,
            detail,
            handshake: None,
        })
    }

    /// Ok(None): the check does not apply (its signature is absent);
    /// Ok(Some(detail)): it passed.
    fn run_check(
        &self,
        check: &Check,
        input: &Input<'_>,
        doc: Option<&Value>,
    ) -> Result<Option<String>, Rejection> {
        match check {
            Check::Token { header } => {
                let Some(value) = util::header(input.headers, header) else {
                    return Ok(None);
                };
                let keys = util::raw_keys(input.secrets)?;
                let value = value.map_err(|()| unauthorized(util::MALFORMED_SIGNATURE))?;
                let value = value.trim();
                if value.is_empty() {
                    return Ok(None);
                }
                keys.iter()
                    .position(|k| util::ct_eq(k, value.as_bytes()))
                    .map(|i| {
                        Some(format!(
                            "{} token matched secret #{}",
                            self.kind(),
                            i.saturating_add(1)
                        ))
                    })
                    .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))
            }
            Check::StandardWebhooks => {
                if !input.headers.contains_key("webhook-signature") {
                    return Ok(None);
                }
                let tolerance = self.tolerance.unwrap_or(STANDARD_WEBHOOKS_TOLERANCE);
                let i = standard_webhooks::check_signature(
                    input.headers,
                    input.body,
                    input.secrets,
                    input.now,
                    tolerance,
                )?;
                Ok(Some(format!(
                    "{} standard-webhooks signature matched secret #{}",
                    self.kind(),
                    i.saturating_add(1)
                )))
            }
            Check::Hmac(spec) => self.run_hmac(spec, input, doc),
        }
    }

    fn run_hmac(
        &self,
        spec: &HmacCheck,
        input: &Input<'_>,
        doc: Option<&Value>,
    ) -> Result<Option<String>, Rejection> {
        let mut text = None;
        for f in spec.signature {
            if let Field::Header(h) = f
                && let Some(Err(())) = util::header(input.headers, h)
            {
                return Err(unauthorized(util::MALFORMED_SIGNATURE));
            }
            if let Some(t) = f.text(input.headers, doc) {
                text = Some((t, f.reads_json()));
                break;
            }
        }
        let Some((text, in_body)) = text else {
            return Ok(None);
        };
        let malformed = if in_body {
            util::MALFORMED_BODY_SIGNATURE
        } else {
            util::MALFORMED_SIGNATURE
        };
        let found = parse_signature(&text, spec).ok_or_else(|| unauthorized(malformed))?;
        let keys = util::raw_keys(input.secrets)?;
        let ts = match spec.timestamp.map(|t| t.source) {
            None => None,
            Some(TsSource::SignatureKey) => found.ts.clone(),
            Some(TsSource::Field(f)) => {
                if let Field::Header(h) = f
                    && let Some(Err(())) = util::header(input.headers, h)
                {
                    return Err(unauthorized(util::INVALID_TIMESTAMP));
                }
                f.text(input.headers, doc)
            }
        };
        if let Some(t) = spec.timestamp
            && t.required
            && ts.is_none()
        {
            return Err(unauthorized(util::MISSING_TIMESTAMP));
        }
        let material = Material {
            headers: input.headers,
            body: input.body,
            doc,
            url: input.url,
            ts: ts.as_deref(),
        };
        let parts = render(spec.signed, &material)?;
        let refs: Vec<&[u8]> = parts.iter().map(|c| c.as_ref()).collect();
        let index = util::match_keys(keys, spec.algorithm, &refs, &found.candidates)
            .ok_or_else(|| unauthorized(util::SIGNATURE_MISMATCH))?;
        let mut detail = format!(
            "{} hmac-{} signature matched secret #{}",
            self.kind(),
            spec.algorithm.name(),
            index.saturating_add(1)
        );
        if let (Some(t), Some(text)) = (spec.timestamp, ts.as_deref()) {
            let secs =
                ts_seconds(text, t.unit).ok_or_else(|| unauthorized(util::INVALID_TIMESTAMP))?;
            if let Some(tol) = self.tolerance.or(t.tolerance) {
                util::check_window(secs, input.now, tol, true)?;
            }
            detail.push_str(&format!(", t={text}"));
        }
        Ok(Some(detail))
    }

    /// Builds a request as the provider sends it, signed by the first check
    /// (GitLab: the token header). `url` is the request's full URL, needed
    /// by presets that sign it (Square). The sample carries `nonce` as the
    /// event id and `event_type` (default: the preset's `sample_type`) where
    /// the preset reads them; a custom payload is sent as given (a preset
    /// that reads the signature from the body, Mailgun, needs the JSON
    /// places it signs and gets its signature written in).
    pub fn sign(
        &self,
        url: Option<&str>,
        secret: &Secret,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        let p = self.preset;
        let kind = event_type.unwrap_or(p.sample_type);
        let mut body = match payload {
            Some(b) => b.to_vec(),
            None => expand(p.sample, nonce, kind, now).into_bytes(),
        };
        let mut headers = vec![("content-type".to_owned(), p.content_type.to_owned())];
        for (fields, value) in [(p.id_from, nonce), (p.type_from, kind)] {
            for f in fields {
                if let Field::Header(h) = f {
                    headers.push(((*h).to_owned(), value.to_owned()));
                }
            }
        }
        let check = p
            .checks
            .first()
            .ok_or_else(|| format!("preset {} has no check", p.kind))?;
        match check {
            Check::Token { header } => {
                let token = std::str::from_utf8(&secret.0)
                    .ok()
                    .filter(|t| !t.trim().is_empty() && http::HeaderValue::from_str(t).is_ok())
                    .ok_or_else(|| "the token cannot be sent as a header".to_owned())?;
                headers.push(((*header).to_owned(), token.trim().to_owned()));
            }
            Check::StandardWebhooks => {
                headers.extend(standard_webhooks::signature_headers(
                    secret, nonce, now, &body,
                ));
            }
            Check::Hmac(spec) => {
                self.sign_hmac(spec, url, secret, now, &mut headers, &mut body)?;
            }
        }
        Ok(SignedRequest { headers, body })
    }

    fn sign_hmac(
        &self,
        spec: &HmacCheck,
        url: Option<&str>,
        secret: &Secret,
        now: i64,
        headers: &mut Vec<(String, String)>,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        let sig_in_body = spec.signature.iter().any(|f| f.reads_json());
        let mut doc: Option<Value> = if Check::Hmac(*spec).reads_json() {
            Some(serde_json::from_slice(body).map_err(|_| "the payload is not JSON".to_owned())?)
        } else {
            None
        };
        let now_text = |unit: TsUnit| match unit {
            TsUnit::Seconds => now.to_string(),
            TsUnit::Millis => now.saturating_mul(1000).to_string(),
        };
        let ts = match spec.timestamp {
            None => None,
            Some(Timestamp {
                source: TsSource::SignatureKey,
                unit,
                ..
            }) => Some(now_text(unit)),
            Some(Timestamp {
                source: TsSource::Field(Field::Header(h)),
                unit,
                ..
            }) => {
                let t = now_text(unit);
                headers.push((h.to_owned(), t.clone()));
                Some(t)
            }
            Some(Timestamp {
                source: TsSource::Field(f @ Field::Json(_)),
                required,
                ..
            }) => {
                let t = f.text(&HeaderMap::new(), doc.as_ref());
                if required && t.is_none() {
                    return Err(format!("the payload has no timestamp at {}", f.describe()));
                }
                t
            }
        };
        let mut header_map = HeaderMap::new();
        for (k, v) in headers.iter() {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                header_map.append(k, v);
            }
        }
        let body_now = body.clone();
        let material = Material {
            headers: &header_map,
            body: &body_now,
            doc: doc.as_ref(),
            url,
            ts: ts.as_deref(),
        };
        let parts = render(spec.signed, &material).map_err(|r| match r.to_string().as_str() {
            util::URL_UNKNOWN => format!("{} signs the request URL: give it", self.kind()),
            other => format!("cannot sign: {other}"),
        })?;
        let refs: Vec<&[u8]> = parts.iter().map(|c| c.as_ref()).collect();
        let mac = util::hmac(spec.algorithm, &secret.0, &refs)
            .ok_or_else(|| "the secret cannot be used as an HMAC key".to_owned())?;
        let encoded = match spec.encoding {
            Encoding::Hex => hex::encode(mac),
            Encoding::Base64 => util::b64_encode(&mac),
        };
        let value = match spec.format {
            SigFormat::Plain { prefix } => format!("{}{encoded}", prefix.unwrap_or("")),
            SigFormat::KeyValue {
                separator,
                ts_key,
                sig_key,
            } => format!(
                "{ts_key}={}{separator}{sig_key}={encoded}",
                ts.as_deref().unwrap_or("")
            ),
        };
        for f in spec.signature {
            match f {
                Field::Header(h) => headers.push(((*h).to_owned(), value.clone())),
                Field::Json(ptr) => {
                    if let Some(d) = doc.as_mut() {
                        set_pointer(d, ptr, Value::String(value.clone()));
                    }
                }
            }
        }
        if sig_in_body && let Some(d) = &doc {
            *body = serde_json::to_vec(d).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The sample with its placeholders replaced: `{nonce}` and `{type}` as
/// JSON-string-escaped text, `{now}`/`{now_ms}` as digits, `{rfc3339}`.
fn expand(template: &str, nonce: &str, kind: &str, now: i64) -> String {
    let escaped = |s: &str| {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or("")
            .to_owned()
    };
    let values = [
        ("{nonce}", escaped(nonce)),
        ("{type}", escaped(kind)),
        ("{now_ms}", now.saturating_mul(1000).to_string()),
        ("{now}", now.to_string()),
        ("{rfc3339}", util::rfc3339(now)),
    ];
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    'outer: while let Some(i) = rest.find('{') {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        for (name, value) in &values {
            if let Some(after) = tail.strip_prefix(name) {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        out.push('{');
        rest = tail.get(1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::super::util::test_support::*;
    use super::*;

    fn preset_vectors() -> Value {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/presets.json"
        )))
        .unwrap()
    }

    fn header_map(v: &Value) -> HeaderMap {
        let pairs: Vec<(String, String)> = v
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers(&refs)
    }

    fn scheme(kind: &str) -> PresetScheme {
        PresetScheme {
            preset: find(kind).unwrap_or_else(|| panic!("no preset {kind}")),
            tolerance: None,
        }
    }

    fn run(
        s: &PresetScheme,
        h: &HeaderMap,
        body: &[u8],
        secret: &str,
        now: i64,
        url: Option<&str>,
    ) -> Result<Verified, Rejection> {
        let secrets = [Secret(secret.as_bytes().to_vec())];
        let mut i = input(h, body, &secrets, now);
        i.url = url;
        s.verify(&i)
    }

    #[test]
    fn every_preset_accepts_its_vectors_and_refuses_tampered_ones() {
        let all = preset_vectors();
        let list = all["vectors"].as_array().unwrap();
        for p in PRESETS {
            assert!(
                list.iter().any(|v| v["kind"] == p.kind),
                "no vector for preset {}",
                p.kind
            );
        }
        for v in list {
            let name = v["name"].as_str().unwrap();
            let s = scheme(v["kind"].as_str().unwrap());
            let secret = v["secret"].as_str().unwrap();
            let now = v["now"].as_i64().unwrap();
            let url = v["url"].as_str();
            let body = v["body"].as_str().unwrap().as_bytes();
            let h = header_map(&v["headers"]);
            assert!(
                v["source"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no source"
            );
            let got = run(&s, &h, body, secret, now, url)
                .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
            assert_eq!(
                got.event_id,
                v["expect"]["event_id"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                got.event_type,
                v["expect"]["event_type"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(got.handshake, None);
            // rotation: the secret matches as #2
            let secrets = [
                Secret(b"old-secret".to_vec()),
                Secret(secret.as_bytes().to_vec()),
            ];
            let mut i = input(&h, body, &secrets, now);
            i.url = url;
            assert!(s.verify(&i).unwrap().detail.contains("#2"), "{name}");
            // wrong secret
            assert_eq!(
                run(&s, &h, body, "not-the-secret", now, url),
                Err(denied("signature mismatch")),
                "{name}"
            );
            // the tampered variant
            let t = &v["tampered"];
            let th = if t["headers"].is_object() {
                header_map(&t["headers"])
            } else {
                h.clone()
            };
            let tb = t["body"].as_str().map_or(body, str::as_bytes);
            let turl = t["url"].as_str().or(url);
            assert_eq!(
                run(&s, &th, tb, secret, now, turl),
                Err(denied(t["reason"].as_str().unwrap())),
                "{name}: tampered"
            );
        }
    }

    #[test]
    fn sign_round_trips_for_every_preset() {
        let url = "https://hooks.example.com/webhooks/p?x=1";
        for p in PRESETS {
            let s = PresetScheme {
                preset: p,
                tolerance: None,
            };
            let secret = Secret(b"s3cr3t-value".to_vec());
            let now = 1_800_000_000;
            for event_type in [None, Some("custom.type \"quoted\"")] {
                let req = s
                    .sign(Some(url), &secret, event_type, None, now, "nonce-1")
                    .unwrap_or_else(|e| panic!("{}: {e}", p.kind));
                let h = signed_headers(&req);
                let v = run(&s, &h, &req.body, "s3cr3t-value", now, Some(url))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.kind));
                assert_eq!(
                    v.event_type,
                    event_type.unwrap_or(p.sample_type),
                    "{}",
                    p.kind
                );
                assert!(v.event_id.contains("nonce-1"), "{}: {}", p.kind, v.event_id);
                // the body as sent is what the signature covers
                let mut tampered = req.body.clone();
                tampered.push(b' ');
                let r = run(&s, &h, &tampered, "s3cr3t-value", now, Some(url));
                if p.kind == "gitlab" {
                    // a shared token does not protect the body
                    assert!(r.is_ok());
                } else if p.kind == "mailgun" {
                    // the signature covers timestamp and token only
                    assert!(r.is_ok());
                } else {
                    assert_eq!(r, Err(denied("signature mismatch")), "{}", p.kind);
                }
            }
            if p.needs_url() {
                assert!(s.sign(None, &secret, None, None, 0, "n").is_err());
            }
        }
    }

    #[test]
    fn samples_are_json_and_tables_are_consistent() {
        for p in PRESETS {
            let body = expand(p.sample, "n\"\\", "t\n", 1_700_000_000);
            let doc: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{}: sample is not JSON: {e}", p.kind));
            assert!(!p.docs.is_empty() && p.docs.iter().all(|d| d.starts_with("https://")));
            assert!(!p.checks.is_empty(), "{}", p.kind);
            for f in p.id_from.iter().chain(p.type_from) {
                if let Field::Json(ptr) = f {
                    assert!(doc.pointer(ptr).is_some(), "{}: sample lacks {ptr}", p.kind);
                }
            }
            for c in p.checks {
                if let Check::Hmac(h) = c {
                    assert!(!h.signature.is_empty());
                    // a signature in the body cannot sign the body
                    if h.signature.iter().any(|f| f.reads_json()) {
                        assert!(
                            !h.signed
                                .iter()
                                .any(|p| matches!(p, Part::Body | Part::PayloadOrBody))
                        );
                    }
                    if h.timestamp
                        .is_some_and(|t| t.source == TsSource::SignatureKey)
                    {
                        assert!(matches!(h.format, SigFormat::KeyValue { .. }));
                    }
                    for name in h.signature.iter().filter_map(|f| match f {
                        Field::Header(n) => Some(n),
                        Field::Json(_) => None,
                    }) {
                        assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok());
                    }
                }
            }
        }
        assert_eq!(
            expand("{nonce}{type}{now}{now_ms}{x}{", "a", "b", 2),
            "ab22000{x}{"
        );
        assert_eq!(expand("{type}", "{nonce}", "{nonce}", 0), "{nonce}");
    }

    #[test]
    fn forgejo_prefers_its_own_header_and_gitea_form_payloads() {
        let s = scheme("forgejo");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = hex::encode(util::hmac_sha256(b"k", &[body]));
        let bad = "00".repeat(32);
        let base = [("X-Forgejo-Event", "push"), ("X-Forgejo-Delivery", "d1")];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            headers(&all)
        };
        // only the Gitea name (older Forgejo, or a proxy): accepted
        let h = with(&[("X-Gitea-Signature", &good)]);
        assert!(run(&s, &h, body, "k", 0, None).is_ok());
        // a bad Forgejo signature is not rescued by a good Gitea one
        let h = with(&[("X-Forgejo-Signature", &bad), ("X-Gitea-Signature", &good)]);
        assert_eq!(
            run(&s, &h, body, "k", 0, None),
            Err(denied("signature mismatch"))
        );
        // id/type fall back to the Gitea headers
        let h = headers(&[
            ("X-Gitea-Signature", &good),
            ("X-Gitea-Event", "issues"),
            ("X-Gitea-Delivery", "d2"),
        ]);
        let v = run(&s, &h, body, "k", 0, None).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("d2", "issues")
        );

        // form content type: the JSON inside `payload` is what is signed
        let gitea = scheme("gitea");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(body).unwrap())
            .finish();
        let h = headers(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Gitea-Signature", &good),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "d3"),
        ]);
        assert!(run(&gitea, &h, form.as_bytes(), "k", 0, None).is_ok());
        let h = headers(&[
            ("X-Gitea-Signature", &good),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "d3"),
        ]);
        assert_eq!(
            run(&gitea, &h, form.as_bytes(), "k", 0, None),
            Err(denied("signature mismatch"))
        );
    }

    #[test]
    fn timestamps_and_windows() {
        // paddle: 5 s by default, configurable
        let s = scheme("paddle");
        let secret = Secret(b"pdl_ntfset_key".to_vec());
        let req = s.sign(None, &secret, None, None, 1_000, "n").unwrap();
        let h = signed_headers(&req);
        assert!(run(&s, &h, &req.body, "pdl_ntfset_key", 1_005, None).is_ok());
        assert_eq!(
            run(&s, &h, &req.body, "pdl_ntfset_key", 1_006, None),
            Err(denied("timestamp outside tolerance"))
        );
        let relaxed = PresetScheme {
            tolerance: Some(Duration::from_secs(300)),
            ..s
        };
        assert!(run(&relaxed, &h, &req.body, "pdl_ntfset_key", 1_300, None).is_ok());
        // paddle: missing ts, missing h1, two h1 (rotation)
        let sig = h
            .get("paddle-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let h1 = sig.split_once(";h1=").unwrap().1.to_owned();
        for (value, expect) in [
            (format!("h1={h1}"), Err(denied("missing timestamp header"))),
            (
                "ts=1000".to_owned(),
                Err(denied("malformed signature header")),
            ),
            (format!("ts=1000;h1={};h1={h1}", "ab".repeat(32)), Ok(())),
            (format!("ts=abc;h1={h1}"), Err(denied("signature mismatch"))),
        ] {
            let h = headers(&[("Paddle-Signature", &value)]);
            assert_eq!(
                run(&s, &h, &req.body, "pdl_ntfset_key", 1_000, None).map(|_| ()),
                expect,
                "{value}"
            );
        }
        // linear: ms timestamp in the body, 60 s, optional
        let s = scheme("linear");
        let secret = Secret(b"lin_wh_key".to_vec());
        let req = s.sign(None, &secret, None, None, 2_000, "n").unwrap();
        let h = signed_headers(&req);
        assert!(run(&s, &h, &req.body, "lin_wh_key", 2_060, None).is_ok());
        assert_eq!(
            run(&s, &h, &req.body, "lin_wh_key", 2_061, None),
            Err(denied("timestamp outside tolerance"))
        );
        let no_ts = br#"{"action":"create","type":"Issue"}"#;
        let req = s
            .sign(None, &secret, None, Some(no_ts), 2_000, "n")
            .unwrap();
        assert!(
            run(
                &s,
                &signed_headers(&req),
                no_ts,
                "lin_wh_key",
                9_999_999,
                None
            )
            .is_ok()
        );
        // mailgun: no window unless configured
        let s = scheme("mailgun");
        let secret = Secret(b"mg-key".to_vec());
        let req = s.sign(None, &secret, None, None, 3_000, "n").unwrap();
        assert!(run(&s, &HeaderMap::new(), &req.body, "mg-key", 9_999_999, None).is_ok());
        let strict = PresetScheme {
            tolerance: Some(Duration::from_secs(60)),
            ..s
        };
        assert_eq!(
            run(
                &strict,
                &HeaderMap::new(),
                &req.body,
                "mg-key",
                9_999_999,
                None
            ),
            Err(denied("timestamp outside tolerance"))
        );
    }

    #[test]
    fn gitlab_signing_token() {
        let s = scheme("gitlab");
        let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"object_kind":"push"}"#;
        let mut pairs = standard_webhooks::signature_headers(
            &Secret(key.as_bytes().to_vec()),
            "idem-1",
            1_000,
            body,
        );
        pairs.push(("Idempotency-Key".into(), "idem-1".into()));
        pairs.push(("X-Gitlab-Event".into(), "Push Hook".into()));
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let h = headers(&refs);
        let v = run(&s, &h, body, key, 1_000, None).unwrap();
        assert_eq!(v.event_id, "idem-1");
        assert!(
            v.detail.starts_with("gitlab standard-webhooks"),
            "{}",
            v.detail
        );
        // with both headers, either configured secret is enough
        let mut both = refs.clone();
        both.push(("X-Gitlab-Token", "plain-token"));
        let h = headers(&both);
        assert!(run(&s, &h, body, "plain-token", 1_000, None).is_ok());
        assert!(run(&s, &h, body, key, 1_000, None).is_ok());
        assert_eq!(
            run(&s, &h, body, "neither", 1_000, None),
            Err(denied("signature mismatch"))
        );
        // all checks fail: the first failure (table order: the token) is reported
        assert_eq!(
            run(&s, &h, body, key, 2_000, None),
            Err(denied("signature mismatch"))
        );
        let h = headers(&refs);
        assert_eq!(
            run(&s, &h, body, key, 2_000, None),
            Err(denied("timestamp outside tolerance"))
        );
        // no X-Gitlab-Event: 400
        let h = headers(&[("X-Gitlab-Token", "t")]);
        assert!(matches!(
            run(&s, &h, b"{}", "t", 0, None),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(
            run(&s, &headers(&[]), b"{}", "t", 0, None),
            Err(denied("missing signature header"))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for p in PRESETS {
            let s = PresetScheme {
                preset: p,
                tolerance: Some(Duration::from_secs(1)),
            };
            for value in odd_header_values() {
                let Ok(v) = http::HeaderValue::from_bytes(&value) else {
                    continue;
                };
                let mut h = HeaderMap::new();
                for name in [
                    "x-gitlab-token",
                    "webhook-signature",
                    "x-gitea-signature",
                    "x-forgejo-signature",
                    "linear-signature",
                    "paddle-signature",
                    "typeform-signature",
                    "x-square-hmacsha256-signature",
                    "content-type",
                ] {
                    h.insert(name, v.clone());
                }
                for body in odd_bodies() {
                    for now in [0, i64::MIN, i64::MAX] {
                        let _ = run(&s, &h, &body, "k", now, Some("https://x/"));
                    }
                }
            }
        }
    }
}
