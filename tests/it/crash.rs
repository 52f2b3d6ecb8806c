//! Killing the process at any moment loses no acknowledged event.

use crate::common::*;
use reqwest::StatusCode;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    secret_file(dir.path(), "p", secret);
    let text = format!(
        "[storage]\npath = \"{}/crash.db\"\ndurability = \"full\"\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n",
        dir.path().display()
    );
    let mut bin = BinApp::spawn(dir.path(), &text, &[]);
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let scheme = cfg.providers[0].scheme.clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
    let url = bin.url("/webhooks/p");
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (acked, scheme, url, enough) = (
            acked.clone(),
            scheme.clone(),
            url.clone(),
            enough_tx.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = client();
            loop {
                let req = sign(&scheme, secret, now());
                let id = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == "webhook-id")
                    .map(|(_, v)| v.clone())
                    .expect("webhook-id");
                let mut rb = client.post(&url).body(req.body);
                for (k, v) in &req.headers {
                    rb = rb.header(k, v);
                }
                match rb.send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let n = {
                            let mut a = acked.lock().unwrap();
                            a.push(id);
                            a.len()
                        };
                        if n >= 300 {
                            let _ = enough.try_send(());
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    drop(enough_tx);
    enough_rx.recv().await.expect("300 acknowledged events");
    // Kill while the senders are still sending.
    bin.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability).unwrap();
    let stored = store
        .list_events(appliance::store::EventFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> =
        stored.into_iter().map(|e| e.event_id).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
