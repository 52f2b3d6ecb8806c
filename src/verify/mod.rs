//! Signature schemes. Every scheme is a pure function over
//! (headers, raw body, secrets, now): no I/O, no clock, no globals, so each one
//! can be read and table-tested in its own file against the providers' vectors.
//!
//! A scheme answers three questions about a request: is it genuine (else
//! `Rejection::Unauthorized`, HTTP 401), what is its event id and type (else
//! `Rejection::BadRequest`, HTTP 400), and is it a handshake that must be
//! answered instead of stored (Slack `url_verification`).
//! The mirror image, `sign`, builds a request exactly as the provider would;
//! `appliance send-test` and the tests use it.

use http::HeaderMap;
use std::time::Duration;

pub mod github;
pub mod hmac_generic;
pub mod shopify;
pub mod slack;
pub mod snaptrade;
pub mod standard_webhooks;
pub mod stripe;
mod util;

pub use hmac_generic::{Algorithm, Encoding, HmacScheme, Source};

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
pub struct Input<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub secrets: &'a [Secret],
    pub now: i64,
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
}

/// The scheme names accepted as `kind` in the config.
pub const KINDS: &[&str] = &[
    "stripe",
    "github",
    "slack",
    "shopify",
    "standard-webhooks",
    "snaptrade",
    "hmac",
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
        }
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
        }
    }

    /// Build a test request signed as the provider signs. `event_type`: None
    /// means the sample's own type; `payload`: None means the bundled sample
    /// (which gets a fresh id derived from `nonce`, so repeated calls are not
    /// duplicates). A custom payload is sent as given.
    pub fn sign(
        &self,
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
        }
    }
}
