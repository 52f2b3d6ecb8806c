//! Signature schemes. Every scheme is a pure function over
//! (headers, raw body, secrets, now): no I/O, no clock, no globals, so each one
//! can be read and table-tested in its own file against the providers' vectors.
//!
//! A scheme answers three questions about a request: is it genuine (else
//! `Rejection::Unauthorized`, HTTP 401), what is its event id and type (else
//! `Rejection::BadRequest`, HTTP 400), and is it a handshake that must be
//! answered instead of stored (Slack `url_verification`, Discord `PING`).
//! The mirror image, `sign`, builds a request exactly as the provider would;
//! `appliance send-test` and the tests use it.
//!
//! Two schemes need more than headers and body, and get it from the caller
//! through [`Input`]: Twilio and the `square` preset sign the public URL of
//! the request (`Input::url`), Amazon SNS is verified with the signing
//! certificate that ingest fetched (or pinned) for the message's
//! `SigningCertURL` (`Input::sns_cert`). Both stay pure: no fetching here.
//!
//! Long fuzzing run of every verifier (see `proptests.rs`):
//! `PROPTEST_CASES=100000 cargo test --release verify::proptests`.
//!
//! No input may make a verifier panic: outside tests, every file of this
//! module is denied `unwrap`, `expect`, indexing and `panic!`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use http::HeaderMap;
use std::time::Duration;

pub mod discord;
pub mod github;
pub mod hmac_generic;
pub mod presets;
#[cfg(test)]
mod proptests;
pub mod shopify;
pub mod slack;
pub mod snaptrade;
pub mod sns;
pub mod standard_webhooks;
pub mod stripe;
pub mod twilio;
mod util;

pub use hmac_generic::{Algorithm, Encoding, HmacScheme, Source};
pub use presets::{Preset, PresetScheme};
pub use sns::SnsScheme;
pub use twilio::TwilioScheme;

/// One configured secret, as bytes exactly as the user supplied it (the text of
/// the env var or file, trailing newline of a file already trimmed). Schemes
/// that need a decoded key (Standard Webhooks' `whsec_<base64>`) decode it themselves.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a scheme looks at. `now` is Unix seconds.
///
/// `url` and `sns_cert` are needed by a few schemes only (None elsewhere):
/// a scheme that needs one and does not get it refuses the request with 401
/// (`request url unknown`, `no signing certificate`).
pub struct Input<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub secrets: &'a [Secret],
    pub now: i64,
    /// The full URL the sender used, query string included, e.g.
    /// `https://hooks.example.com/webhooks/twilio?foo=1`: Twilio and the
    /// `square` preset sign it. The caller builds it (`public_url` + the
    /// request's own query string, or Host/X-Forwarded-Proto from a trusted
    /// proxy); see [`twilio::signed_url`].
    pub url: Option<&'a str>,
    /// The PEM (or DER) X.509 certificate for the SNS message's
    /// `SigningCertURL`, fetched or pinned by the caller after checking the
    /// URL with [`sns::cert_url_allowed`].
    pub sns_cert: Option<&'a [u8]>,
}

impl<'a> Input<'a> {
    /// An input without URL or certificate.
    pub fn new(
        headers: &'a HeaderMap,
        body: &'a [u8],
        secrets: &'a [Secret],
        now: i64,
    ) -> Input<'a> {
        Input {
            headers,
            body,
            secrets,
            now,
            url: None,
            sns_cert: None,
        }
    }

    /// The same input with the request's public URL.
    pub fn with_url(self, url: &'a str) -> Input<'a> {
        Input {
            url: Some(url),
            ..self
        }
    }

    /// The same input with the SNS signing certificate.
    pub fn with_sns_cert(self, cert: &'a [u8]) -> Input<'a> {
        Input {
            sns_cert: Some(cert),
            ..self
        }
    }
}

/// A request proven genuine, with what the store needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub event_id: String,
    pub event_type: String,
    /// Human-readable outcome kept with the event, e.g.
    /// "stripe v1 signature matched secret #2, t=1700000000". Never contains a
    /// secret or a computed signature.
    pub detail: String,
    /// Some(json body) when the request is a handshake to be answered with
    /// this body (status 200, application/json) and NOT stored.
    pub handshake: Option<String>,
}

/// Why a request is refused. The strings are short, stable, safe to show to
/// the sender and to log: never a secret or a computed signature.
///
/// One `Unauthorized` reason is answered 403 instead of 401: SNS's
/// `topic not allowed` (genuine, but from a topic outside `topic_arns`).
/// [`Rejection::status`] says which; ingest should map with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 401: missing/garbled signature header, mismatch, stale timestamp.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: genuine but unusable: body not JSON where JSON is required
    /// (invalid UTF-8 included), no event id where one is required.
    #[error("{0}")]
    BadRequest(String),
}

impl Rejection {
    /// snake_case code for the `{"error","code"}` answer and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Unauthorized(r) => util::code_for(r),
            Rejection::BadRequest(_) => "bad_request",
        }
    }

    /// True for a genuine request that is refused anyway (403): an SNS
    /// message from a topic outside `topic_arns`.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Rejection::Unauthorized(r) if r == util::TOPIC_NOT_ALLOWED)
    }

    /// The HTTP status for this rejection: 400, 401, or 403 (see
    /// [`Rejection::is_forbidden`]).
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            r if r.is_forbidden() => 403,
            Rejection::Unauthorized(_) => 401,
        }
    }
}

/// A request built as the provider would send it.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Headers to send, including content-type and the provider's id/type headers.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A configured signature scheme.
#[derive(Debug, Clone)]
pub enum Scheme {
    Stripe {
        tolerance: Duration,
    },
    Github,
    Slack {
        tolerance: Duration,
    },
    Shopify,
    StandardWebhooks {
        tolerance: Duration,
    },
    /// `legacy_secret`: when set, the body's `webhookSecret` must also equal it.
    Snaptrade {
        legacy_secret: Option<Secret>,
    },
    Hmac(HmacScheme),
    /// Amazon SNS; needs `Input::sns_cert`.
    Sns(SnsScheme),
    /// Twilio; needs `Input::url`.
    Twilio(TwilioScheme),
    /// Discord interactions (Ed25519); `tolerance`: None = no timestamp window.
    Discord {
        tolerance: Option<Duration>,
    },
    /// A provider preset from [`presets::PRESETS`] (`gitlab`, `gitea`, ...).
    Preset(PresetScheme),
}

/// The scheme names accepted as `kind` in the config: the schemes, then
/// every preset of [`presets::PRESETS`] (a test keeps the two in step).
pub const KINDS: &[&str] = &[
    "stripe",
    "github",
    "slack",
    "shopify",
    "standard-webhooks",
    "snaptrade",
    "hmac",
    "sns",
    "twilio",
    "discord",
    "gitlab",
    "gitea",
    "forgejo",
    "linear",
    "paddle",
    "typeform",
    "square",
    "mailgun",
];

impl Scheme {
    pub fn kind(&self) -> &'static str {
        match self {
            Scheme::Stripe { .. } => "stripe",
            Scheme::Github => "github",
            Scheme::Slack { .. } => "slack",
            Scheme::Shopify => "shopify",
            Scheme::StandardWebhooks { .. } => "standard-webhooks",
            Scheme::Snaptrade { .. } => "snaptrade",
            Scheme::Hmac(_) => "hmac",
            Scheme::Sns(_) => "sns",
            Scheme::Twilio(_) => "twilio",
            Scheme::Discord { .. } => "discord",
            Scheme::Preset(p) => p.preset.kind,
        }
    }

    /// The scheme for a preset kind (`gitlab`, ...) with the preset's own
    /// tolerance; None for any other name.
    pub fn preset(kind: &str) -> Option<Scheme> {
        presets::find(kind).map(|preset| {
            Scheme::Preset(PresetScheme {
                preset,
                tolerance: None,
            })
        })
    }

    /// Verify a request and extract its id and type.
    pub fn verify(&self, input: &Input<'_>) -> Result<Verified, Rejection> {
        match self {
            Scheme::Stripe { tolerance } => stripe::verify(input, *tolerance),
            Scheme::Github => github::verify(input),
            Scheme::Slack { tolerance } => slack::verify(input, *tolerance),
            Scheme::Shopify => shopify::verify(input),
            Scheme::StandardWebhooks { tolerance } => standard_webhooks::verify(input, *tolerance),
            Scheme::Snaptrade { legacy_secret } => snaptrade::verify(input, legacy_secret.as_ref()),
            Scheme::Hmac(s) => s.verify(input),
            Scheme::Sns(s) => match input.sns_cert {
                Some(cert) => s.verify(input, cert),
                None => Err(util::unauthorized(util::NO_CERTIFICATE)),
            },
            Scheme::Twilio(s) => match input.url {
                Some(url) => s.verify(input, url),
                None => Err(util::unauthorized(util::URL_UNKNOWN)),
            },
            Scheme::Discord { tolerance } => discord::verify(input, *tolerance),
            Scheme::Preset(p) => p.verify(input),
        }
    }

    /// Build a test request signed as the provider signs. `event_type`: None
    /// means the sample's own type; `payload`: None means the bundled sample
    /// (which gets a fresh id derived from `nonce`, so repeated calls are not
    /// duplicates). A custom payload is sent as given.
    ///
    /// `secret` is what the scheme verifies with, except for the asymmetric
    /// schemes, which sign with the private half: `sns` takes the PEM private
    /// key (PKCS#8 or PKCS#1) of the certificate the server pins, `discord`
    /// the hex Ed25519 seed of the public key the server is configured with.
    /// Twilio and `square` sign the request URL: here the scheme's
    /// `public_url` (Twilio) or an error; use [`Scheme::sign_at`] to give it.
    pub fn sign(
        &self,
        secret: &Secret,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        self.sign_at(None, secret, event_type, payload, now, nonce)
    }

    /// [`Scheme::sign`] for a request sent to `url` (the full URL the server
    /// will see, as `Input::url`); schemes that do not sign the URL ignore it.
    pub fn sign_at(
        &self,
        url: Option<&str>,
        secret: &Secret,
        event_type: Option<&str>,
        payload: Option<&[u8]>,
        now: i64,
        nonce: &str,
    ) -> Result<SignedRequest, String> {
        match self {
            Scheme::Stripe { .. } => stripe::sign(secret, event_type, payload, now, nonce),
            Scheme::Github => github::sign(secret, event_type, payload, now, nonce),
            Scheme::Slack { .. } => slack::sign(secret, event_type, payload, now, nonce),
            Scheme::Shopify => shopify::sign(secret, event_type, payload, now, nonce),
            Scheme::StandardWebhooks { .. } => {
                standard_webhooks::sign(secret, event_type, payload, now, nonce)
            }
            Scheme::Snaptrade { legacy_secret } => snaptrade::sign(
                secret,
                legacy_secret.as_ref(),
                event_type,
                payload,
                now,
                nonce,
            ),
            Scheme::Hmac(s) => s.sign(secret, event_type, payload, now, nonce),
            Scheme::Sns(s) => s.sign(secret, event_type, payload, now, nonce),
            Scheme::Twilio(s) => {
                let url = url.or(s.public_url.as_deref()).ok_or_else(|| {
                    "twilio signs the request URL: give it (or set public_url)".to_owned()
                })?;
                s.sign(secret, url, event_type, payload, now, nonce)
            }
            Scheme::Discord { .. } => discord::sign(secret, event_type, payload, now, nonce),
            Scheme::Preset(p) => p.sign(url, secret, event_type, payload, now, nonce),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_list_every_scheme_and_preset() {
        for p in presets::PRESETS {
            assert!(KINDS.contains(&p.kind), "{} missing from KINDS", p.kind);
            assert_eq!(Scheme::preset(p.kind).map(|s| s.kind()), Some(p.kind));
        }
        let mut sorted = KINDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), KINDS.len(), "duplicate kind");
        assert!(Scheme::preset("stripe").is_none());
    }

    #[test]
    fn missing_url_or_certificate_is_refused() {
        let h = HeaderMap::new();
        let s = [Secret(b"k".to_vec())];
        let input = Input::new(&h, b"{}", &s, 0);
        assert_eq!(
            Scheme::Sns(SnsScheme::default()).verify(&input),
            Err(Rejection::Unauthorized("no signing certificate".into()))
        );
        assert_eq!(
            Scheme::Twilio(TwilioScheme::default()).verify(&input),
            Err(Rejection::Unauthorized("request url unknown".into()))
        );
        let mut signed = HeaderMap::new();
        signed.insert("x-square-hmacsha256-signature", "c2ln".parse().unwrap());
        let square = Input::new(&signed, b"{}", &s, 0);
        assert_eq!(
            Scheme::preset("square").unwrap().verify(&square),
            Err(Rejection::Unauthorized("request url unknown".into()))
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(Rejection::BadRequest("x".into()).status(), 400);
        assert_eq!(
            Rejection::Unauthorized("signature mismatch".into()).status(),
            401
        );
        let forbidden = Rejection::Unauthorized("topic not allowed".into());
        assert!(forbidden.is_forbidden());
        assert_eq!(forbidden.status(), 403);
        assert_eq!(forbidden.code(), "topic_not_allowed");
    }
}
