//! Fuzzing without nightly: property tests feeding every verifier arbitrary
//! headers (its own header names among them, with arbitrary and
//! almost-well-formed values), arbitrary bodies (bytes, JSON built from the
//! keys the schemes read, forms) and arbitrary URLs and certificates. Each
//! must return `Ok` or a typed `Rejection` (status 400/401/403, a code, a
//! reason), never panic. Requests built by `sign` are accepted, or refused
//! only as unusable (400) or for their timestamp.
//!
//! `cargo test` runs 256 cases per property (a few seconds). For a release
//! check run them long:
//! `PROPTEST_CASES=100000 cargo test --release verify::proptests`
//! (about a minute on 2 cores; the same without `--release` takes ~40 min).
//! A failure prints the minimal failing input; nothing is written to disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::hmac_generic::{Algorithm, Encoding, HmacScheme, Source};
use super::{
    Input, PresetScheme, Rejection, Scheme, Secret, SnsScheme, TwilioScheme, discord, presets, sns,
    standard_webhooks, twilio, util,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::Value;
use std::time::Duration;

const CERT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/sns/test-signing-cert.pem"
));
const KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/sns/test-signing-key.pem"
));
const SEED: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Every header name any scheme reads.
const HEADER_NAMES: &[&str] = &[
    "content-type",
    "stripe-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-github-delivery",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-shopify-webhook-id",
    "x-shopify-topic",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "signature",
    "x-acme-signature",
    "x-acme-timestamp",
    "x-acme-delivery",
    "x-twilio-signature",
    "i-twilio-idempotency-token",
    "x-twilio-webhooks-signature-settings",
    "x-signature-ed25519",
    "x-signature-timestamp",
    "x-gitlab-token",
    "x-gitlab-event",
    "x-gitlab-event-uuid",
    "idempotency-key",
    "x-gitea-signature",
    "x-gitea-event",
    "x-gitea-delivery",
    "x-forgejo-signature",
    "x-forgejo-event",
    "x-forgejo-delivery",
    "linear-signature",
    "linear-event",
    "linear-delivery",
    "paddle-signature",
    "typeform-signature",
    "x-square-hmacsha256-signature",
    "x-amz-sns-message-type",
];

/// JSON keys the schemes read.
const JSON_KEYS: &[&str] = &[
    "id",
    "type",
    "event",
    "event_id",
    "event_type",
    "eventType",
    "webhookId",
    "webhookSecret",
    "data",
    "challenge",
    "event-data",
    "signature",
    "token",
    "timestamp",
    "webhookTimestamp",
    "notificationType",
    "Type",
    "MessageId",
    "TopicArn",
    "Subject",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "SigningCertUrl",
    "SubscribeURL",
    "Token",
    "UnsubscribeURL",
];

/// The public key of [`SEED`], computed once.
fn discord_public_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| discord::public_key_of_seed(&Secret(SEED.as_bytes().to_vec())).unwrap())
        .clone()
}

fn config() -> ProptestConfig {
    // ProptestConfig::default() honours PROPTEST_CASES; 256 otherwise.
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    c.failure_persistence = None;
    c
}

/// Every scheme, each preset, and a few configurations of the others.
fn all_schemes() -> Vec<Scheme> {
    let tol = Duration::from_secs(300);
    let mut out = vec![
        Scheme::Stripe { tolerance: tol },
        Scheme::Github,
        Scheme::Slack { tolerance: tol },
        Scheme::Shopify,
        Scheme::StandardWebhooks { tolerance: tol },
        Scheme::Snaptrade {
            legacy_secret: None,
        },
        Scheme::Snaptrade {
            legacy_secret: Some(Secret(b"legacy".to_vec())),
        },
        Scheme::Hmac(HmacScheme::new("X-Acme-Signature")),
        Scheme::Hmac(HmacScheme {
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: Some("sha512=".into()),
            timestamp_header: Some("X-Acme-Timestamp".into()),
            signed_content: "{timestamp}.{body}".into(),
            tolerance: Some(tol),
            id_from: Some(Source::Header("X-Acme-Delivery".into())),
            type_from: Some(Source::Json("/data/type".into())),
            ..HmacScheme::new("X-Acme-Signature")
        }),
        Scheme::Sns(SnsScheme::default()),
        Scheme::Sns(SnsScheme {
            topic_arns: Some(vec![
                "arn:aws:sns:us-east-1:123456789012:appliance-test".into(),
            ]),
            extra_cert_hosts: vec!["127.0.0.1:9".into()],
            type_from: Some(Source::Json("/notificationType".into())),
            auto_confirm: true,
        }),
        Scheme::Twilio(TwilioScheme::default()),
        Scheme::Twilio(TwilioScheme {
            public_url: Some("https://h.example/t".into()),
            type_from: Some(Source::Json("/type".into())),
        }),
        Scheme::Discord { tolerance: None },
        Scheme::Discord {
            tolerance: Some(Duration::from_secs(5)),
        },
    ];
    for p in presets::PRESETS {
        out.push(Scheme::Preset(PresetScheme {
            preset: p,
            tolerance: None,
        }));
        out.push(Scheme::Preset(PresetScheme {
            preset: p,
            tolerance: Some(Duration::MAX),
        }));
    }
    out
}

/// Header values: arbitrary bytes, printable text, and near-misses of the
/// schemes' formats.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..96),
        "[ -~]{0,96}".prop_map(String::into_bytes),
        "t=-?[0-9]{0,20},v1=[0-9a-fA-F]{0,70}(,v1=[0-9a-z]{0,8})?".prop_map(String::into_bytes),
        "(v1|v1a|v2),[A-Za-z0-9+/=]{0,90}( v1,[A-Za-z0-9+/=]{0,8})?".prop_map(String::into_bytes),
        "ts=-?[0-9]{0,20};h1=[0-9a-f]{0,70}(;h1=[0-9a-f]{0,4})?".prop_map(String::into_bytes),
        "(sha256=|sha1=|v0=)?[A-Za-z0-9+/=]{0,90}".prop_map(String::into_bytes),
        "[0-9a-f]{128}".prop_map(String::into_bytes),
        "-?[0-9]{1,22}".prop_map(String::into_bytes),
        "(key=[a-z0-9]{0,6},)?algorithm=HMAC_SHA(1|256|512)".prop_map(String::into_bytes),
        "application/(json|x-www-form-urlencoded)(; charset=utf-8)?".prop_map(String::into_bytes),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        4 => proptest::sample::select(HEADER_NAMES).prop_map(str::to_owned),
        1 => "[a-z][a-z0-9-]{0,20}",
    ];
    proptest::collection::vec((name, header_value()), 0..14).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(&v),
            ) {
                map.append(k, v);
            }
        }
        map
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        "https://sns\\.[a-z0-9-]{1,12}\\.amazonaws\\.com(\\.cn)?/[a-z]{0,8}\\.pem"
            .prop_map(Value::String),
        Just(Value::String("Notification".into())),
        Just(Value::String("SubscriptionConfirmation".into())),
        "[12]".prop_map(Value::String),
    ];
    let key = prop_oneof![
        3 => proptest::sample::select(JSON_KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_-]{1,10}",
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("payload".to_owned()),
                    Just("MessageSid".to_owned()),
                    Just("CallStatus".to_owned()),
                    Just("command".to_owned()),
                    "[A-Za-z%=&+]{0,8}"
                ],
                "[ -~]{0,30}"
            ),
            0..8
        )
        .prop_map(|pairs| {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                ser.append_pair(&k, &v);
            }
            ser.finish().into_bytes()
        }),
        "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

fn secrets() -> impl Strategy<Value = Vec<Secret>> {
    let one = prop_oneof![
        Just(b"k".to_vec()),
        Just(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()),
        Just(discord_public_key().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..70),
    ];
    proptest::collection::vec(one.prop_map(Secret), 0..3)
}

fn url() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "https?://[a-z0-9.:@\\[\\]-]{0,24}(/[ -~]{0,20})?(\\?[ -~]{0,30})?",
        ".{0,40}",
        Just("https://h.example/t?bodySHA256=zz".to_owned()),
    ])
}

fn cert() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(prop_oneof![
        Just(CERT.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
        "-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{0,200}\n-----END CERTIFICATE-----\n"
            .prop_map(String::into_bytes),
    ])
}

/// A verifier's answer obeys the contract: Ok with a non-empty id and type,
/// or a rejection with a status, a code and a reason.
fn check_answer(scheme: &Scheme, answer: &Result<super::Verified, Rejection>) {
    match answer {
        Ok(v) => {
            assert!(!v.event_id.is_empty(), "{}: empty event id", scheme.kind());
            assert!(
                !v.event_type.is_empty(),
                "{}: empty event type",
                scheme.kind()
            );
        }
        Err(r) => {
            assert!([400, 401, 403].contains(&r.status()));
            assert!(!r.code().is_empty());
            assert!(!r.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verifiers_never_panic(
        headers in header_map(),
        body in body(),
        secrets in secrets(),
        now in prop_oneof![Just(1_700_000_000i64), any::<i64>()],
        url in url(),
        cert in cert(),
    ) {
        for scheme in all_schemes() {
            let mut input = Input::new(&headers, &body, &secrets, now);
            input.url = url.as_deref();
            input.sns_cert = cert.as_deref();
            let answer = scheme.verify(&input);
            check_answer(&scheme, &answer);
        }
    }

    #[test]
    fn signed_requests_verify_and_mutations_never_panic(
        payload in proptest::option::of(body()),
        event_type in proptest::option::of("[ -~]{1,20}"),
        // send-test nonces are tokens; a header cannot end in a space
        nonce in "[A-Za-z0-9_-]{1,16}",
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        sample in any::<prop::sample::Index>(),
    ) {
        let now = 1_700_000_000;
        let url = "https://hooks.example.com/webhooks/p?x=1";
        for scheme in all_schemes() {
            if matches!(scheme, Scheme::Snaptrade { legacy_secret: Some(_) }) {
                continue;
            }
            // RSA and Ed25519 signing are slow in debug builds: one case in 8
            if matches!(scheme, Scheme::Sns(_) | Scheme::Discord { .. }) && sample.index(8) != 0 {
                continue;
            }
            // what the server verifies with, and what sign() signs with
            let (verify_with, sign_with) = match &scheme {
                Scheme::Sns(_) => (Secret(Vec::new()), Secret(KEY.as_bytes().to_vec())),
                Scheme::Discord { .. } => (
                    Secret(discord_public_key().into_bytes()),
                    Secret(SEED.as_bytes().to_vec()),
                ),
                Scheme::StandardWebhooks { .. } => {
                    let s = Secret(standard_webhooks::format_secret(b"0123456789abcdef").into_bytes());
                    (s.clone(), s)
                }
                _ => (Secret(b"k3y".to_vec()), Secret(b"k3y".to_vec())),
            };
            let Ok(req) = scheme.sign_at(
                Some(url), &sign_with, event_type.as_deref(), payload.as_deref(), now, &nonce,
            ) else {
                continue;
            };
            let mut headers = HeaderMap::new();
            for (k, v) in &req.headers {
                let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) else {
                    continue;
                };
                headers.append(k, v);
            }
            let secrets = [verify_with];
            let mut input = Input::new(&headers, &req.body, &secrets, now).with_url(url);
            input.sns_cert = Some(CERT.as_bytes());
            let answer = scheme.verify(&input);
            check_answer(&scheme, &answer);
            if let Err(Rejection::Unauthorized(reason)) = &answer {
                prop_assert!(
                    reason == util::OUTSIDE_TOLERANCE || reason == util::INVALID_TIMESTAMP,
                    "{}: a signed request was refused: {reason}", scheme.kind()
                );
            }
            // one flipped bit anywhere in the body
            let mut body = req.body.clone();
            if !body.is_empty() {
                let i = flip.index(body.len());
                body[i] ^= 1 << bit;
            }
            let mut input = Input::new(&headers, &body, &secrets, now).with_url(url);
            input.sns_cert = Some(CERT.as_bytes());
            check_answer(&scheme, &scheme.verify(&input));
        }
    }

    #[test]
    fn parsers_never_panic(text in ".{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Source::parse(&text);
        let _ = Algorithm::parse(&text);
        let _ = Encoding::parse(&text);
        let extra = vec![text.clone()];
        let _ = sns::cert_url_allowed(&text, &extra);
        let _ = sns::subscribe_url_allowed(&text, &[]);
        let _ = sns::is_sns_host(&text);
        let _ = sns::parse(&bytes);
        let _ = sns::public_key(&bytes);
        let _ = twilio::signed_url(&text, Some(&text));
        let _ = twilio::with_body_hash(&text, &bytes);
        let _ = discord::public_key(&Secret(bytes.clone()));
        let _ = discord::type_name(bytes.len() as u64);
        let _ = HmacScheme::new(text.clone()).problems();
        let _ = Scheme::preset(&text);
    }
}
