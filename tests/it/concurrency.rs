//! Dedup under a race: the same signed event on 100 connections at once.

use crate::common::*;
use reqwest::StatusCode;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_copies_at_once_store_one() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    secret_file(dir.path(), "p", secret);
    let app = TestApp::spawn_in(
        dir,
        "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
    )
    .await;
    let req = Arc::new(sign(&app.config.providers[0].scheme, secret, now()));
    let url = app.url("/webhooks/p");
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (req, url, barrier) = (req.clone(), url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // One client each: one connection each.
            let client = client();
            barrier.wait().await;
            send(&client, &url, &req.headers, req.body.clone()).await
        }));
    }
    let mut accepted = 0;
    let mut duplicate = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
        match v["status"].as_str() {
            Some("accepted") => accepted += 1,
            Some("duplicate") => duplicate += 1,
            other => panic!("unexpected status {other:?}"),
        }
        ids.insert(v["id"].as_i64().expect("id"));
    }
    assert_eq!((accepted, duplicate), (1, 99));
    assert_eq!(ids.len(), 1, "every answer names the one stored row");
    assert_eq!(app.count("p").await, 1);
}
