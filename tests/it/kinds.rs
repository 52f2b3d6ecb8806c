//! For every signature scheme: a genuine request is stored once, its repeat
//! is a duplicate, and tampered, wrongly keyed, unsigned and stale requests
//! are refused with 401 and leave nothing behind.

use crate::common::*;
use appliance::verify::SignedRequest;
use reqwest::StatusCode;

struct Kind {
    name: &'static str,
    secret: &'static str,
    wrong: &'static str,
    /// The header carrying the signature (removed for the missing-header case).
    sig_header: &'static str,
    timestamped: bool,
    extra: &'static str,
}

fn tamper(req: &SignedRequest) -> SignedRequest {
    let mut r = req.clone();
    let body = String::from_utf8(r.body.clone()).expect("utf8 sample");
    // Adds a field: changes the bytes *and* the canonical JSON (SnapTrade).
    r.body = body.replacen('{', "{\"tampered\":1,", 1).into_bytes();
    assert_ne!(r.body, req.body);
    r
}

fn without(req: &SignedRequest, header: &str) -> SignedRequest {
    let mut r = req.clone();
    let before = r.headers.len();
    r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(header));
    assert!(r.headers.len() < before, "sample has no {header} header");
    r
}

async fn check(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "k", kind.secret);
    let app = TestApp::spawn_in(
        dir,
        &format!(
            "[providers.p]\nkind = \"{}\"\nsecret_file = \"{{dir}}/k.secret\"\n{}\n",
            kind.name, kind.extra
        ),
    )
    .await;
    let scheme = app.config.providers[0].scheme.clone();
    let path = "/webhooks/p";

    let good = sign(&scheme, kind.secret, now());
    let (s, v) = app.post(path, &good).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "{}: genuine request refused: {v}",
        kind.name
    );
    assert_eq!(v["status"], "accepted", "{v}");
    let id = v["id"].as_i64().expect("id");

    let (s, v) = app.post(path, &good).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "duplicate", "{}: {v}", kind.name);
    assert_eq!(v["id"].as_i64(), Some(id));

    let fresh = sign(&scheme, kind.secret, now());
    let cases: Vec<(&str, SignedRequest, &str)> = vec![
        ("tampered body", tamper(&fresh), "signature_mismatch"),
        (
            "wrong secret",
            sign(&scheme, kind.wrong, now()),
            "signature_mismatch",
        ),
        (
            "missing signature header",
            without(&fresh, kind.sig_header),
            "missing_signature",
        ),
    ];
    for (what, req, code) in cases {
        let (s, v) = app.post(path, &req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{}: {what}: {v}", kind.name);
        assert_eq!(v["code"], code, "{}: {what}: {v}", kind.name);
        assert!(v["error"].is_string(), "{v}");
    }
    if kind.timestamped {
        for (what, at) in [("stale", now() - 3600), ("future", now() + 3600)] {
            if what == "future" && kind.name == "stripe" {
                continue; // Stripe's own libraries accept clock skew forward.
            }
            let req = sign(&scheme, kind.secret, at);
            let (s, v) = app.post(path, &req).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{}: {what}: {v}", kind.name);
            assert_eq!(v["code"], "timestamp_outside_tolerance", "{v}");
        }
    }
    assert_eq!(
        app.count("p").await,
        1,
        "{}: a refused request was stored",
        kind.name
    );

    let (s, v) = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["provider"], "p");
    assert_eq!(
        v["body"].as_str().map(str::as_bytes),
        Some(good.body.as_slice())
    );
    assert!(v["verification"].as_str().is_some_and(|d| !d.is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn stripe() {
    check(Kind {
        name: "stripe",
        secret: "whsec_test_secret",
        wrong: "whsec_other",
        sig_header: "stripe-signature",
        timestamped: true,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn github() {
    check(Kind {
        name: "github",
        secret: "It's a Secret to Everybody",
        wrong: "not it",
        sig_header: "x-hub-signature-256",
        timestamped: false,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn slack() {
    check(Kind {
        name: "slack",
        secret: "8f742231b10e8888abcd99yyyzzz85a5",
        wrong: "0000",
        sig_header: "x-slack-signature",
        timestamped: true,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn shopify() {
    check(Kind {
        name: "shopify",
        secret: "hush",
        wrong: "loud",
        sig_header: "x-shopify-hmac-sha256",
        timestamped: false,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn standard_webhooks() {
    check(Kind {
        name: "standard-webhooks",
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        wrong: "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        sig_header: "webhook-signature",
        timestamped: true,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn snaptrade() {
    check(Kind {
        name: "snaptrade",
        secret: "TEST_CONSUMER_KEY_abc123",
        wrong: "OTHER_KEY",
        sig_header: "signature",
        timestamped: false,
        extra: "",
    })
    .await
}

#[tokio::test]
async fn hmac_generic() {
    check(Kind {
        name: "hmac",
        secret: "acme-secret",
        wrong: "acme-wrong",
        sig_header: "x-acme-signature",
        timestamped: true,
        extra: "header = \"X-Acme-Signature\"\nprefix = \"sha256=\"\ntimestamp_header = \"X-Acme-Timestamp\"\nsigned_content = \"{timestamp}.{body}\"\nid_from = \"header:X-Acme-Delivery\"\ntype_from = \"json:/event\"\n",
    })
    .await
}

#[tokio::test]
async fn hmac_generic_base64_sha512_body_hash_id() {
    check(Kind {
        name: "hmac",
        secret: "acme-secret",
        wrong: "acme-wrong",
        sig_header: "x-sig",
        timestamped: false,
        extra: "header = \"X-Sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\n",
    })
    .await
}

/// Rotation: with two secrets configured, a request signed with either is
/// accepted, for every kind. Uses the real binary so the secrets can come from
/// its own environment.
#[tokio::test]
async fn rotation_accepts_either_secret() {
    let kinds = [
        ("stripe", "whsec_old", "whsec_new"),
        ("github", "gh-old", "gh-new"),
        ("slack", "sl-old", "sl-new"),
        ("shopify", "sh-old", "sh-new"),
        (
            "standard-webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_dGhlIG5ldyBzZWNyZXQgZm9yIHJvdGF0aW9u",
        ),
        ("snaptrade", "ck-old", "ck-new"),
        ("hmac", "hm-old", "hm-new"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[storage]\npath = \"{}/a.db\"\ndurability = \"normal\"\n",
        dir.path().display()
    );
    let mut env = Vec::new();
    for (i, (kind, old, new)) in kinds.iter().enumerate() {
        text.push_str(&format!(
            "[providers.p{i}]\nkind = \"{kind}\"\nsecrets_env = [\"S{i}_NEW\", \"S{i}_OLD\"]\n"
        ));
        if *kind == "hmac" {
            text.push_str("header = \"X-Sig\"\n");
        }
        env.push((format!("S{i}_OLD"), old.to_string()));
        env.push((format!("S{i}_NEW"), new.to_string()));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bin = BinApp::spawn(dir.path(), &text, &env_ref);
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let client = client();
    for (i, (kind, old, new)) in kinds.iter().enumerate() {
        let scheme = &cfg.providers[i].scheme;
        for secret in [old, new] {
            let req = sign(scheme, secret, now());
            let (s, v) = send(
                &client,
                &bin.url(&format!("/webhooks/p{i}")),
                &req.headers,
                req.body,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{kind} with {secret}: {v}");
            assert_eq!(v["status"], "accepted");
        }
        let req = sign(scheme, "neither", now());
        let (s, _) = send(
            &client,
            &bin.url(&format!("/webhooks/p{i}")),
            &req.headers,
            req.body,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{kind}");
    }
}
