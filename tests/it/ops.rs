//! Operations: /metrics, graceful shutdown.

use crate::common::*;
use reqwest::StatusCode;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v)
            | prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The real binary, so its metrics recorder counts only this test's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_the_requests_sent() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let bin = BinApp::spawn(
        dir.path(),
        "[storage]\npath = \"{dir}/m.db\"\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
        &[],
    );
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let scheme = &cfg.providers[0].scheme;
    let c = client();
    let url = bin.url("/webhooks/p");
    let mut first = None;
    for _ in 0..3 {
        let req = sign(scheme, SECRET, now());
        let (s, _) = send(&c, &url, &req.headers, req.body.clone()).await;
        assert_eq!(s, StatusCode::OK);
        first.get_or_insert(req);
    }
    let dup = first.unwrap();
    let (s, v) = send(&c, &url, &dup.headers, dup.body.clone()).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    for _ in 0..2 {
        let req = sign(scheme, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", now());
        let (s, _) = send(&c, &url, &req.headers, req.body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let r = c.get(bin.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let p = [("provider", "p")];
    assert_eq!(
        counter(&scrape, "appliance_webhooks_received_total", &p),
        6.0,
        "{text}"
    );
    assert_eq!(
        counter(&scrape, "appliance_webhooks_accepted_total", &p),
        3.0
    );
    assert_eq!(
        counter(&scrape, "appliance_webhooks_duplicate_total", &p),
        1.0
    );
    assert_eq!(
        counter(
            &scrape,
            "appliance_webhooks_rejected_total",
            &[("provider", "p"), ("reason", "signature_mismatch")]
        ),
        2.0
    );
    assert_eq!(counter(&scrape, "appliance_outbox_pending", &[]), 0.0);
    assert!(
        text.contains("appliance_store_commit_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("appliance_ingest_seconds_count"), "{text}");
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let app = TestApp::spawn_in(
        dir,
        "[metrics]\nrequire_token = true\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
    )
    .await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// SIGTERM: in-flight requests finish, the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let mut bin = BinApp::spawn(
        dir.path(),
        "[storage]\npath = \"{dir}/t.db\"\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
        &[],
    );
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let req = sign(&cfg.providers[0].scheme, SECRET, now());
    let (s, _) = send(&client(), &bin.url("/webhooks/p"), &req.headers, req.body).await;
    assert_eq!(s, StatusCode::OK);
    let pid = bin.child.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || bin.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The WAL was checkpointed into the database file.
    let wal = dir.path().join("t.db-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL left behind"
    );
}
