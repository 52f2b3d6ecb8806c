//! Amazon SNS, Twilio, Discord and the presets, end to end through the server.

use crate::common::*;
use appliance::verify::{Scheme, Secret, sns};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/vectors/sns/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn cert_path() -> String {
    format!(
        "{}/tests/vectors/sns/test-signing-cert.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut h: Vec<(String, String)> =
        vec![("content-type".into(), "text/plain; charset=UTF-8".into())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    send(&app.client, &app.url(path), &h, body.as_bytes().to_vec()).await
}

#[tokio::test]
async fn sns_fixtures_verify_with_the_pinned_certificate_and_bad_ones_are_refused() {
    let app = TestApp::spawn(&format!(
        "[providers.aws]\nkind = \"sns\"\nsigning_cert_file = \"{}\"\ntopic_arns = [\"arn:aws:sns:us-east-1:123456789012:MyTopic\"]\n[providers.strict]\nkind = \"sns\"\nsigning_cert_file = \"{}\"\ntopic_arns = [\"arn:aws:sns:us-east-1:123456789012:Other\"]\n",
        cert_path(),
        cert_path()
    ))
    .await;
    for f in [
        "notification_v1.json",
        "notification_v2_nosubject.json",
        "subscription_confirmation_v2.json",
    ] {
        let (s, v) = post_raw(&app, "/webhooks/aws", &vector(f), &[]).await;
        assert_eq!(s, StatusCode::OK, "{f}: {v}");
        assert_eq!(v["status"], "accepted", "{f}");
    }
    let v1: Value = serde_json::from_str(&vector("notification_v1.json")).unwrap();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut m = v1.clone();
        m["MessageId"] = Value::String(format!("m-{}", rand::random::<u32>()));
        f(&mut m);
        m.to_string()
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "flipped byte",
            mutate(&|m| {
                m["Message"] = Value::String(m["Message"].as_str().unwrap().replacen('e', "f", 1))
            }),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            "changed Type",
            mutate(&|m| m["Type"] = "UnsubscribeConfirmation".into()),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            "other host",
            mutate(&|m| m["SigningCertURL"] = "https://evil.example.com/cert.pem".into()),
            StatusCode::UNAUTHORIZED,
            "untrusted certificate url",
        ),
        (
            "plain http",
            mutate(&|m| {
                m["SigningCertURL"] = m["SigningCertURL"]
                    .as_str()
                    .unwrap()
                    .replace("https:", "http:")
                    .into()
            }),
            StatusCode::UNAUTHORIZED,
            "untrusted certificate url",
        ),
    ];
    for (what, body, status, reason) in cases {
        let (s, v) = post_raw(&app, "/webhooks/aws", &body, &[]).await;
        assert_eq!(s, status, "{what}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(reason),
            "{what}: {v}"
        );
    }
    // A genuine message from a topic that is not allowed: 403.
    let (s, v) = post_raw(
        &app,
        "/webhooks/strict",
        &vector("notification_v1.json"),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "topic_not_allowed");
    assert_eq!(app.count("aws").await, 3);
    assert_eq!(app.count("strict").await, 0);
}

/// Without a pinned certificate the server fetches it (here from a local
/// server named in allow_cert_hosts), and auto_confirm visits SubscribeURL;
/// a host not named there is refused and never visited.
#[tokio::test]
async fn sns_fetches_its_certificate_and_auto_confirms_only_on_allowed_hosts() {
    let cert = std::fs::read(cert_path()).unwrap();
    let key = std::fs::read(format!(
        "{}/tests/vectors/sns/test-signing-key.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let cert2 = cert.clone();
    // A tiny server: GET /cert.pem answers the certificate, GET /confirm 200.
    let confirms = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = confirms.clone();
    let app_srv = axum::Router::new()
        .route(
            "/cert.pem",
            axum::routing::get(move || {
                let c = cert2.clone();
                async move { c }
            }),
        )
        .route(
            "/confirm",
            axum::routing::get(move || {
                c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "confirmed" }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app_srv).await;
    });

    let mut msg = sns::parse(vector("subscription_confirmation_v2.json").as_bytes()).unwrap();
    msg.signing_cert_url = format!("http://{host}/cert.pem");
    msg.subscribe_url = Some(format!("http://{host}/confirm"));
    msg.message_id = "local-confirm-1".into();
    msg.signature = sns::sign_with_key(&key, &msg).unwrap();
    let body = msg.to_json().to_string();

    let app = TestApp::spawn(&format!(
        "[providers.trusting]\nkind = \"sns\"\nallow_cert_hosts = [\"{host}\"]\nauto_confirm = true\n[providers.plain]\nkind = \"sns\"\nauto_confirm = true\n"
    ))
    .await;
    let (s, v) = post_raw(&app, "/webhooks/plain", &body, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "untrusted certificate url");
    let (s, v) = post_raw(&app, "/webhooks/trusting", &body, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_i64().unwrap();
    let detail = eventually(
        "the confirmation to be recorded",
        Duration::from_secs(10),
        || async {
            let (_, v) = app.api(&format!("/api/events/{id}")).await;
            v["verification"]
                .as_str()
                .filter(|d| d.contains("subscription confirmed"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(detail.contains("sns"), "{detail}");
    assert_eq!(
        confirms.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "visited exactly once, only for the trusting provider"
    );
}

#[tokio::test]
async fn twilio_behind_a_trusted_proxy_verifies_and_not_from_an_untrusted_peer() {
    let vectors: Value = serde_json::from_str(include_str!("../vectors/signatures.json")).unwrap();
    let token = vectors["twilio"]["auth_token"].as_str().unwrap();
    let params: Vec<(String, String)> = vectors["twilio"]["form_params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    // The URL Twilio signed: the public one, as the proxy tells it.
    let scheme = Scheme::Twilio(appliance::verify::TwilioScheme {
        public_url: None,
        type_from: None,
    });
    let public = "https://hooks.example.com/webhooks/t?x=1";
    let mut h = http::HeaderMap::new();
    h.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let signed = scheme
        .sign_at(
            Some(public),
            &Secret(token.as_bytes().to_vec()),
            None,
            Some(body.as_bytes()),
            now(),
            "n",
        )
        .unwrap();
    let sig = signed
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-twilio-signature"))
        .unwrap()
        .1
        .clone();
    let headers = |extra: &[(&str, &str)]| {
        let mut v = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("x-twilio-signature".to_string(), sig.clone()),
            ("host".to_string(), "hooks.example.com".to_string()),
        ];
        v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
        v
    };
    let config = |trusted: &str| {
        format!(
            "[server]\ntrusted_proxies = [{trusted}]\n[providers.t]\nkind = \"twilio\"\nsecret_file = \"{{dir}}/t.secret\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "t", token);
    let behind = TestApp::spawn_in(dir, &config("\"127.0.0.1/32\"")).await;
    let url = behind.url("/webhooks/t?x=1");
    let (s, v) = send(
        &behind.client,
        &url,
        &headers(&[("x-forwarded-proto", "https")]),
        body.clone().into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "accepted");

    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "t", token);
    let direct = TestApp::spawn_in(dir, &config("")).await;
    let url = direct.url("/webhooks/t?x=1");
    let (s, _) = send(
        &direct.client,
        &url,
        &headers(&[("x-forwarded-proto", "https")]),
        body.into_bytes(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an untrusted peer's X-Forwarded-Proto must not be believed"
    );
}

#[tokio::test]
async fn discord_ping_is_answered_and_interactions_are_stored_and_deferred() {
    let vectors: Value = serde_json::from_str(include_str!("../vectors/signatures.json")).unwrap();
    let d = &vectors["discord"];
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "d", d["public_key_hex"].as_str().unwrap());
    let app = TestApp::spawn_in(
        dir,
        "[providers.bot]\nkind = \"discord\"\nsecret_file = \"{dir}/d.secret\"\n",
    )
    .await;
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "x-signature-ed25519".to_string(),
            d["X-Signature-Ed25519"].as_str().unwrap().to_string(),
        ),
        (
            "x-signature-timestamp".to_string(),
            d["X-Signature-Timestamp"].as_str().unwrap().to_string(),
        ),
    ];
    let (s, v) = send(
        &app.client,
        &app.url("/webhooks/bot"),
        &headers,
        d["body"].as_str().unwrap().as_bytes().to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, serde_json::json!({"type": 1}));
    assert_eq!(app.count("bot").await, 0, "a PING is not stored");

    let seed = Secret(d["private_seed_hex"].as_str().unwrap().as_bytes().to_vec());
    let req = Scheme::Discord { tolerance: None }
        .sign(&seed, Some("application_command"), None, now(), "n1")
        .unwrap();
    let (s, v) = app.post("/webhooks/bot", &req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        serde_json::json!({"type": 5}),
        "answered with the deferred response"
    );
    assert_eq!(app.count("bot").await, 1);
    let mut tampered = req.clone();
    tampered.body.push(b' ');
    let (s, _) = app.post("/webhooks/bot", &tampered).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Every preset: its signed sample is accepted, a tampered one refused
/// (where the scheme covers the body), and `send-test` output is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_accepts_its_own_signature_and_send_test() {
    let presets = [
        "gitlab", "gitea", "forgejo", "linear", "paddle", "typeform", "square", "mailgun",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for p in presets {
        secret_file(dir.path(), p, &format!("{p}-secret-0123456789"));
        text.push_str(&format!(
            "[providers.{p}]\nsecret_file = \"{{dir}}/{p}.secret\"\n"
        ));
    }
    let app = TestApp::spawn_in(dir, &text).await;
    let config = app.dir.path().join("appliance.toml");
    for (i, p) in presets.iter().enumerate() {
        let scheme = &app.config.providers[i].scheme;
        let url = app.url(&format!("/webhooks/{p}"));
        let secret = Secret(format!("{p}-secret-0123456789").into_bytes());
        let req = scheme
            .sign_at(Some(&url), &secret, None, None, now(), &format!("n-{p}"))
            .unwrap();
        let (s, v) = app.post(&format!("/webhooks/{p}"), &req).await;
        assert_eq!(s, StatusCode::OK, "{p}: {v}");
        assert_eq!(v["status"], "accepted", "{p}");
        // Body not covered by the signature: a GitLab plain token, Mailgun.
        if !matches!(*p, "gitlab" | "mailgun") {
            let mut t = scheme
                .sign_at(Some(&url), &secret, None, None, now(), &format!("t-{p}"))
                .unwrap();
            let body = String::from_utf8(t.body.clone()).unwrap();
            t.body = body.replacen('{', "{\"tampered\":1,", 1).into_bytes();
            let (s, v) = app.post(&format!("/webhooks/{p}"), &t).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}: tampered accepted: {v}");
        }
        let wrong = scheme
            .sign_at(
                Some(&url),
                &Secret(b"wrong".to_vec()),
                None,
                None,
                now(),
                &format!("w-{p}"),
            )
            .unwrap();
        let (s, _) = app.post(&format!("/webhooks/{p}"), &wrong).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}: wrong secret accepted");
        let out = std::process::Command::new(BIN)
            .args([
                "send-test",
                p,
                "--url",
                &format!("http://{}", app.addr),
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "send-test {p}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("200\n"), "{p}: {stdout}");
    }
    // check-config lists them.
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for p in presets {
        assert!(stdout.contains(&format!("kind:   {p}")), "{stdout}");
    }
}
