//! The live stream: filters, resuming with Last-Event-ID, tokens.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(10);

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    TestApp::spawn_in(
        dir,
        "[providers.a]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n[providers.b]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
    )
    .await
}

async fn post(app: &TestApp, provider: &str, event_type: &str) -> i64 {
    let i = app
        .config
        .providers
        .iter()
        .position(|p| p.name == provider)
        .unwrap();
    let nonce = format!("{:016x}", rand::random::<u64>());
    let req = app.config.providers[i]
        .scheme
        .sign(
            &appliance::verify::Secret(SECRET.as_bytes().to_vec()),
            Some(event_type),
            None,
            now(),
            &nonce,
        )
        .unwrap();
    let (s, v) = app.post(&format!("/webhooks/{provider}"), &req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["id"].as_i64().unwrap()
}

fn data(e: &Sse) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

#[tokio::test]
async fn two_clients_with_different_filters_get_exactly_their_events() {
    let app = app().await;
    let (s, mut only_a) =
        SseClient::connect(&app.url("/api/stream?provider=a"), Some(&app.token), None)
            .await
            .unwrap();
    assert_eq!(s, StatusCode::OK);
    // By query token, as EventSource does.
    let (s, mut orders) = SseClient::connect(
        &app.url(&format!("/api/stream?type=order.*&token={}", app.token)),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);

    let a1 = post(&app, "a", "order.created").await;
    let b1 = post(&app, "b", "order.created").await;
    let a2 = post(&app, "a", "user.created").await;

    let mut got_a = Vec::new();
    for _ in 0..2 {
        let e = only_a
            .next_of("webhook", WAIT)
            .await
            .expect("event for client a");
        assert_eq!(e.id, Some(data(&e)["id"].to_string()));
        got_a.push(data(&e)["id"].as_i64().unwrap());
    }
    assert_eq!(got_a, [a1, a2]);
    let mut got_o = Vec::new();
    for _ in 0..2 {
        let e = orders
            .next_of("webhook", WAIT)
            .await
            .expect("event for the order client");
        got_o.push(data(&e)["id"].as_i64().unwrap());
    }
    assert_eq!(got_o, [a1, b1]);
    // Nothing more for either.
    assert!(
        only_a
            .next_of("webhook", Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        orders
            .next_of("webhook", Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn reconnecting_with_last_event_id_gets_what_was_missed() {
    let app = app().await;
    let first = post(&app, "a", "x.1").await;
    // Disconnected while these arrive:
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(post(&app, if i % 2 == 0 { "a" } else { "b" }, "x.2").await);
    }
    let (_, mut c) = SseClient::connect(&app.url("/api/stream"), Some(&app.token), Some(first))
        .await
        .unwrap();
    for want in &missed {
        let e = c.next_of("webhook", WAIT).await.expect("missed event");
        assert_eq!(data(&e)["id"].as_i64(), Some(*want));
    }
    // ...then live ones.
    let live = post(&app, "b", "x.3").await;
    let e = c.next_of("webhook", WAIT).await.expect("live event");
    assert_eq!(data(&e)["id"].as_i64(), Some(live));
    // With a filter, resuming gives only matching ones.
    let (_, mut c) = SseClient::connect(
        &app.url("/api/stream?provider=b"),
        Some(&app.token),
        Some(first),
    )
    .await
    .unwrap();
    let e = c.next_of("webhook", WAIT).await.unwrap();
    assert_eq!(data(&e)["id"].as_i64(), Some(missed[1]));
}

#[tokio::test]
async fn stream_and_stats_need_the_token() {
    let app = app().await;
    for (url, token) in [
        (app.url("/api/stream"), None),
        (app.url("/api/stream?token=wrong"), None),
        (app.url("/api/stream"), Some("wrong")),
        (app.url("/api/stats"), None),
    ] {
        let (s, _) = SseClient::connect(&url, token, None).await.unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{url}");
    }
    // ?token= is for the stream only.
    let r = app
        .client
        .get(app.url(&format!("/api/events?token={}", app.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    post(&app, "a", "s.1").await;
    let (s, v) = app.api("/api/stats").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["providers"][0]["provider"], "a");
    assert_eq!(v["providers"][0]["last_hour"], 1);
    assert_eq!(v["per_minute"][0]["count"], 1);
    assert_eq!(v["outbox"]["pending"], 0);
}

#[tokio::test]
async fn wrong_tokens_are_rate_limited_per_address() {
    let app = app().await;
    let mut limited = false;
    for _ in 0..12 {
        let r = app
            .client
            .get(app.url("/api/events"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "12 wrong tokens in a row were never limited");
}

#[tokio::test]
async fn delivery_outcomes_are_streamed() {
    let rx = Receiver::start(|_, _| (200, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let app = TestApp::spawn_in(
        dir,
        &format!(
            "[providers.a]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n[[providers.a.routes]]\nurl = \"{}\"\n",
            rx.url()
        ),
    )
    .await;
    let (_, mut c) = SseClient::connect(&app.url("/api/stream"), Some(&app.token), None)
        .await
        .unwrap();
    let id = post(&app, "a", "d.1").await;
    let e = c.next_of("webhook", WAIT).await.unwrap();
    assert_eq!(data(&e)["status"], "pending");
    let e = c.next_of("delivery", WAIT).await.unwrap();
    assert!(e.id.is_none());
    let d = data(&e);
    assert_eq!(d["event"].as_i64(), Some(id));
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["outcome"], "delivered");
}
