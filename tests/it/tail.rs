//! `appliance tail --forward`: killed and restarted, it forwards exactly what
//! it missed, in order; a local receiver that is down is retried, never skipped.

use crate::common::*;
use reqwest::StatusCode;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LOCAL_SECRET: &str = "whsec_dGhlIG5ldyBzZWNyZXQgZm9yIHJvdGF0aW9u";

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    TestApp::spawn_in(
        dir,
        "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
    )
    .await
}

async fn post(app: &TestApp) -> i64 {
    let req = sign(&app.config.providers[0].scheme, SECRET, now());
    let (s, v) = app.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["id"].as_i64().unwrap()
}

/// The tail process, killed when dropped (also when a test fails).
struct TailProc(Child);

impl TailProc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TailProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(app: &TestApp, rx: &Receiver, state: &std::path::Path) -> TailProc {
    let child = Command::new(BIN)
        .args([
            "tail",
            "--forward",
            &rx.url(),
            "--server",
            &format!("http://{}", app.addr),
        ])
        .args([
            "--token-env",
            "TAIL_TOKEN",
            "--secret-env",
            "TAIL_SECRET",
            "--state",
        ])
        .arg(state)
        .arg("--config")
        .arg(app.dir.path().join("appliance.toml"))
        .env("TAIL_TOKEN", &app.token)
        .env("TAIL_SECRET", LOCAL_SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    TailProc(child)
}

fn stream_ids(rx: &Receiver) -> Vec<i64> {
    rx.requests()
        .iter()
        .map(|r| header(r, "appliance-stream-id").parse().unwrap())
        .collect()
}

/// Wait until tail is following: it forwards an event sent now.
async fn primed(app: &TestApp, rx: &Receiver) -> i64 {
    // Events sent before tail connected are not its business (no state yet),
    // so keep sending until one arrives.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < end,
            "tail never forwarded anything"
        );
        let id = post(app).await;
        for _ in 0..25 {
            if stream_ids(rx).contains(&id) {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_it_forwards_exactly_what_it_missed() {
    let app = app().await;
    let rx = Receiver::start(|_, _| (200, vec![])).await;
    let state = app.dir.path().join("tail.state");
    let mut t = tail(&app, &rx, &state);
    let first = primed(&app, &rx).await;
    let before = rx.count();
    t.kill();

    let mut missed = Vec::new();
    for _ in 0..50 {
        missed.push(post(&app).await);
    }
    let mut t = tail(&app, &rx, &state);
    rx.wait_for(before + 50, Duration::from_secs(30)).await;
    t.kill();

    let ids = stream_ids(&rx);
    let mut after: Vec<i64> = ids[before..].to_vec();
    // Only the event in flight at the kill may come twice.
    if after.first() == Some(&first) {
        after.remove(0);
    }
    assert_eq!(after, missed, "not exactly the missed events, in order");
    // Re-signed for the local receiver; the original body byte for byte.
    let last = rx.requests().pop().unwrap();
    let verified = appliance::verify::Scheme::StandardWebhooks {
        tolerance: Duration::from_secs(300),
    }
    .verify(&appliance::verify::Input {
        headers: &last.headers,
        body: &last.body,
        secrets: &[appliance::verify::Secret(LOCAL_SECRET.as_bytes().to_vec())],
        now: now(),
        url: None,
        sns_cert: None,
    });
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(header(&last, "appliance-provider"), "p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_retried_never_skipped() {
    let app = app().await;
    let down = Arc::new(AtomicUsize::new(0));
    let d2 = down.clone();
    let rx = Receiver::start(move |_, _| {
        if d2.load(Ordering::SeqCst) == 1 {
            (503, vec![])
        } else {
            (200, vec![])
        }
    })
    .await;
    let state = app.dir.path().join("tail.state");
    let mut t = tail(&app, &rx, &state);
    primed(&app, &rx).await;
    down.store(1, Ordering::SeqCst);
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(post(&app).await);
    }
    // It keeps trying the first of them...
    let n = rx.count();
    rx.wait_for(n + 3, Duration::from_secs(30)).await;
    down.store(0, Ordering::SeqCst);
    // ...and once the receiver is back, all five arrive, in order.
    eventually("all five forwarded", Duration::from_secs(30), || async {
        let ok: Vec<i64> = rx
            .requests()
            .iter()
            .filter(|r| sent.contains(&header(r, "appliance-stream-id").parse().unwrap()))
            .map(|r| header(r, "appliance-stream-id").parse::<i64>().unwrap())
            .collect();
        let mut dedup = ok.clone();
        dedup.dedup();
        (dedup == sent).then_some(())
    })
    .await;
    t.kill();
}
