//! The checks before verification, and the hardened HTTP server: 413, 403
//! (direct, via trusted and via untrusted proxies), 429, 404, 405, 431, and
//! the admin API's token.

use crate::common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn provider(extra: &str) -> String {
    format!(
        "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n{extra}\n"
    )
}

async fn app(server: &str, extra: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    TestApp::spawn_in(dir, &format!("{server}\n{}", provider(extra))).await
}

fn signed(app: &TestApp) -> appliance::verify::SignedRequest {
    sign(&app.config.providers[0].scheme, SECRET, now())
}

#[tokio::test]
async fn body_over_max_body_is_413_and_not_stored() {
    let app = app("", "max_body = \"1KiB\"").await;
    let mut req = signed(&app);
    req.body = format!("{{\"type\":\"big\",\"pad\":\"{}\"}}", "x".repeat(2000)).into_bytes();
    let (s, v) = app.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "payload_too_large");

    // Without Content-Length (chunked), the limit holds while reading.
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let chunk = "y".repeat(1500);
    let raw = format!(
        "POST /webhooks/p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(app.count("p").await, 0);
}

#[tokio::test]
async fn header_block_over_limit_is_431() {
    let app = app("[server]\nmax_header_size = \"16KiB\"", "").await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let raw = format!(
        "POST /webhooks/p HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "z".repeat(20 * 1024)
    );
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

#[tokio::test]
async fn allow_ips_direct_and_through_proxies() {
    // Direct: the peer (127.0.0.1) is not in the list.
    let direct = app("", "allow_ips = [\"10.9.9.9/32\"]").await;
    let (s, v) = direct.post("/webhooks/p", &signed(&direct)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "ip_not_allowed");
    assert_eq!(direct.count("p").await, 0);

    // Through a trusted proxy: X-Forwarded-For is believed.
    let trusted = app(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]",
        "allow_ips = [\"10.9.9.9/32\"]",
    )
    .await;
    let mut req = signed(&trusted);
    req.headers
        .push(("x-forwarded-for".into(), "10.9.9.9".into()));
    let (s, v) = trusted.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // ...and a forged leftmost entry does not help a disallowed client.
    let mut req = signed(&trusted);
    req.headers
        .push(("x-forwarded-for".into(), "10.9.9.9, 192.0.2.7".into()));
    let (s, _) = trusted.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // CF-Connecting-IP is not believed unless it is the configured header...
    let mut req = signed(&trusted);
    req.headers
        .push(("cf-connecting-ip".into(), "10.9.9.9".into()));
    let (s, _) = trusted.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // ...and then from a trusted peer it is (and X-Forwarded-For is not).
    let cf = app(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nclient_ip_header = \"CF-Connecting-IP\"",
        "allow_ips = [\"10.9.9.9/32\"]",
    )
    .await;
    let mut req = signed(&cf);
    req.headers
        .push(("cf-connecting-ip".into(), "10.9.9.9".into()));
    let (s, v) = cf.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut req = signed(&cf);
    req.headers
        .push(("x-forwarded-for".into(), "10.9.9.9".into()));
    let (s, _) = cf.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Through an untrusted proxy: the header is ignored.
    let untrusted = app(
        "[server]\ntrusted_proxies = [\"10.0.0.1/32\"]",
        "allow_ips = [\"10.9.9.9/32\"]",
    )
    .await;
    let mut req = signed(&untrusted);
    req.headers
        .push(("x-forwarded-for".into(), "10.9.9.9".into()));
    req.headers
        .push(("cf-connecting-ip".into(), "10.9.9.9".into()));
    let (s, _) = untrusted.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(untrusted.count("p").await, 0);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let app = app("", "rate_limit = { per_second = 1, burst = 1 }").await;
    let mut limited = None;
    for _ in 0..20 {
        let req = signed(&app);
        let mut rb = app.client.post(app.url("/webhooks/p")).body(req.body);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        let r = rb.send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("20 requests in a row at 1/s: at least one is limited");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
}

#[tokio::test]
async fn unknown_path_404_wrong_method_405() {
    let app = app("", "").await;
    let r = app
        .client
        .post(app.url("/webhooks/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_found");
    let r = app.client.get(app.url("/webhooks/p")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn admin_api_needs_the_token() {
    let app = app("", "").await;
    for path in ["/api/events", "/api/events/1"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "unauthorized");
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, v) = app.api("/api/events").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
    assert!(v["next_before"].is_null());
    let (s, _) = app.api("/api/events/999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.api("/api/events?limit=501").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app("", "").await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_lists_newest_first_with_paging_and_filters() {
    let app = app("", "").await;
    for _ in 0..5 {
        let (s, _) = app.post("/webhooks/p", &signed(&app)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, v) = app.api("/api/events?limit=2").await;
    let ids: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1]);
    let next = v["next_before"].as_i64().expect("more pages");
    assert_eq!(next, ids[1]);
    let (_, v) = app
        .api(&format!("/api/events?limit=10&before={next}"))
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), 3);
    assert!(v["next_before"].is_null());
    let first = &v["events"][0];
    for key in [
        "id",
        "provider",
        "event_id",
        "type",
        "received_at",
        "status",
    ] {
        assert!(!first[key].is_null(), "{key} missing: {first}");
    }
    assert_eq!(first["status"], "none");
    let eid = first["event_id"].as_str().unwrap();
    let (_, v) = app.api(&format!("/api/events?event_id={eid}")).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    let (_, v) = app.api("/api/events?provider=other").await;
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
}

/// With `[admin].listen`, the webhook listener serves webhooks (and health)
/// only; the dashboard, /api and /metrics answer on the admin listener.
#[tokio::test]
async fn admin_listener_keeps_api_off_the_webhook_listener() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:1\"\n[storage]\npath = \"{}/a.db\"\n{}",
        dir.path().display(),
        provider("").replace("{dir}", &dir.path().display().to_string())
    );
    let path = dir.path().join("appliance.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = appliance::config::load_file(&path).unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (m, a) = (main.local_addr().unwrap(), admin.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(appliance::run_with(
        cfg.clone(),
        appliance::Listeners {
            main,
            admin: Some(admin),
        },
        shutdown.clone(),
    ));
    let c = client();
    assert_eq!(
        c.get(format!("http://{m}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability).unwrap();
    let token = store.meta_get("admin_token").await.unwrap().unwrap();
    for path in ["/api/events", "/", "/metrics"] {
        let r = c
            .get(format!("http://{m}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{path} on the webhook listener"
        );
        let r = c
            .get(format!("http://{a}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} on the admin listener");
    }
    let req = sign(&cfg.providers[0].scheme, SECRET, now());
    let (s, _) = send(
        &c,
        &format!("http://{m}/webhooks/p"),
        &req.headers,
        req.body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = send(
        &c,
        &format!("http://{a}/webhooks/p"),
        &req.headers,
        req.body,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "webhooks are not served on the admin listener"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn api_errors_are_json_and_since_filters() {
    let app = app("", "").await;
    let (s, _) = app.post("/webhooks/p", &signed(&app)).await;
    assert_eq!(s, StatusCode::OK);
    let r = app
        .client
        .post(app.url("/api/events"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "method_not_allowed");
    let (_, v) = app.api("/api/events?since=1h").await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    let (_, v) = app.api("/api/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
    let (s, v) = app.api("/api/events?since=whenever").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "bad_request");
}
