//! The durable retry outbox, against real local receivers and real scripts.

use crate::common::*;
use appliance::verify::{Input, Scheme, Secret};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROUTE_SECRET: &str = "whsec_dGhlIG5ldyBzZWNyZXQgZm9yIHJvdGF0aW9u";
const WAIT: Duration = Duration::from_secs(20);

fn provider(routes: &str) -> String {
    format!(
        "[outbox]\njitter = 0.0\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n{routes}"
    )
}

async fn app(routes: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    TestApp::spawn_in(dir, &provider(routes)).await
}

fn event(app: &TestApp, event_type: &str) -> appliance::verify::SignedRequest {
    let nonce = format!("{:016x}", rand::random::<u64>());
    app.config.providers[0]
        .scheme
        .sign(
            &Secret(SECRET.as_bytes().to_vec()),
            Some(event_type),
            None,
            now(),
            &nonce,
        )
        .unwrap()
}

async fn post_event(app: &TestApp, event_type: &str) -> i64 {
    let (s, v) = app.post("/webhooks/p", &event(app, event_type)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["id"].as_i64().unwrap()
}

/// Poll the event until each of its deliveries satisfies `done`.
async fn deliveries_of(app: &TestApp, id: i64, want: &[&str]) -> Vec<Value> {
    eventually("deliveries to settle", WAIT, || async {
        let (_, v) = app.api(&format!("/api/events/{id}")).await;
        let ds = v["deliveries"].as_array()?.clone();
        let mut statuses: Vec<&str> = ds.iter().filter_map(|d| d["status"].as_str()).collect();
        statuses.sort();
        let mut w = want.to_vec();
        w.sort();
        (statuses == w).then_some(ds)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_twice_then_delivered_with_stable_signed_id() {
    let rx = Receiver::start(|n, _| if n < 2 { (500, vec![]) } else { (200, vec![]) }).await;
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let text = format!(
        "[storage]\npath = \"{{dir}}/o.db\"\n{}[[providers.p.routes]]\nname = \"hook\"\nurl = \"{}\"\nsecret_env = \"ROUTE_SECRET\"\nschedule = [\"50ms\", \"50ms\", \"50ms\"]\n",
        provider(""),
        rx.url()
    );
    // The real binary, so the route secret comes from its own environment.
    let bin = BinApp::spawn(dir.path(), &text, &[("ROUTE_SECRET", ROUTE_SECRET)]);
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let req = sign(&cfg.providers[0].scheme, SECRET, now());
    let (s, v) = send(
        &client(),
        &bin.url("/webhooks/p"),
        &req.headers,
        req.body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    rx.wait_for(3, WAIT).await;

    let got = rx.requests();
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(!ids[0].is_empty());
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "webhook-id changed between attempts: {ids:?}"
    );
    let attempts: Vec<&str> = got.iter().map(|r| header(r, "appliance-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let route_scheme = Scheme::StandardWebhooks {
        tolerance: Duration::from_secs(300),
    };
    for r in &got {
        assert_eq!(
            r.body, req.body,
            "the original body is forwarded byte for byte"
        );
        assert_eq!(header(r, "appliance-provider"), "p");
        assert!(!header(r, "appliance-event-id").is_empty());
        let verified = route_scheme.verify(&Input {
            headers: &r.headers,
            body: &r.body,
            secrets: &[Secret(ROUTE_SECRET.as_bytes().to_vec())],
            now: now(),
            url: None,
            sns_cert: None,
        });
        assert!(
            verified.is_ok(),
            "receiver could not verify our signature: {verified:?}"
        );
    }
    // The third attempt was recorded as the delivering one.
    let line: Value = eventually("delivered status", WAIT, || {
        let out = std::process::Command::new(BIN)
            .args(["outbox", "list", "--json", "--config"])
            .arg(&bin.config_path)
            .output()
            .unwrap();
        let first = out
            .stdout
            .split(|b| *b == b'\n')
            .next()
            .unwrap_or(b"")
            .to_vec();
        async move {
            let v: Value = serde_json::from_slice(&first).ok()?;
            (v["status"] == "delivered").then_some(v)
        }
    })
    .await;
    assert_eq!(line["attempts"], 3);
}

#[tokio::test]
async fn dead_after_schedule_then_revived_by_cli() {
    let up = Arc::new(AtomicUsize::new(0));
    let up2 = up.clone();
    let rx = Receiver::start(move |_, _| {
        if up2.load(Ordering::SeqCst) == 1 {
            (200, vec![])
        } else {
            (500, vec![])
        }
    })
    .await;
    let app = app(&format!(
        "[[providers.p.routes]]\nurl = \"{}\"\nschedule = [\"20ms\", \"20ms\"]\n",
        rx.url()
    ))
    .await;
    let id = post_event(&app, "x.y").await;
    let ds = deliveries_of(&app, id, &["dead"]).await;
    assert_eq!(
        ds[0]["attempts"].as_array().unwrap().len(),
        3,
        "2 schedule entries = 3 attempts"
    );
    assert_eq!(rx.count(), 3);
    let a = &ds[0]["attempts"][2];
    assert_eq!(a["status_code"], 500);
    assert!(a["error"].as_str().unwrap_or("").contains("500"), "{a}");

    let (s, v) = app.api("/api/deliveries?status=dead").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(v["deliveries"][0]["route"], "p.0");

    up.store(1, Ordering::SeqCst);
    let out = std::process::Command::new(BIN)
        .args(["outbox", "retry", "--all-dead", "--config"])
        .arg(app.dir.path().join("appliance.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Revived from another process: the running loop picks it up by itself.
    let ds = deliveries_of(&app, id, &["delivered"]).await;
    assert_eq!(ds[0]["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(rx.count(), 4);
}

#[tokio::test]
async fn retry_api_and_replay_api() {
    let rx = Receiver::start(|n, _| if n == 0 { (410, vec![]) } else { (200, vec![]) }).await;
    let app = app(&format!("[[providers.p.routes]]\nurl = \"{}\"\n", rx.url())).await;
    let id = post_event(&app, "x.y").await;
    // 410: dead at once, no further attempts.
    let ds = deliveries_of(&app, id, &["dead"]).await;
    assert_eq!(ds[0]["attempts"].as_array().unwrap().len(), 1);
    let did = ds[0]["id"].as_i64().unwrap();

    let retry = |did: i64| {
        let app = &app;
        async move {
            app.client
                .post(app.url(&format!("/api/deliveries/{did}/retry")))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(retry(did).await, StatusCode::ACCEPTED);
    deliveries_of(&app, id, &["delivered"]).await;
    assert_eq!(retry(did).await, StatusCode::CONFLICT, "not dead any more");
    assert_eq!(retry(99999).await, StatusCode::NOT_FOUND);

    let r = app
        .client
        .post(app.url(&format!("/api/events/{id}/replay")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let fresh = v["deliveries"][0].as_i64().unwrap();
    assert_ne!(fresh, did);
    deliveries_of(&app, id, &["delivered", "delivered"]).await;
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    assert_ne!(
        header(&got[2], "webhook-id"),
        header(&got[1], "webhook-id"),
        "a replay is a fresh delivery"
    );
    let r = app
        .client
        .post(app.url("/api/events/424242/replay"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let rx = Receiver::start(|n, _| {
        if n == 0 {
            (429, vec![("retry-after".into(), "2".into())])
        } else {
            (200, vec![])
        }
    })
    .await;
    let app = app(&format!(
        "[[providers.p.routes]]\nurl = \"{}\"\nschedule = [\"10ms\"]\n",
        rx.url()
    ))
    .await;
    let id = post_event(&app, "x.y").await;
    rx.wait_for(2, WAIT).await;
    let got = rx.requests();
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 not honoured: {gap:?}"
    );
    deliveries_of(&app, id, &["delivered"]).await;
}

#[tokio::test]
async fn globs_route_and_routes_are_independent() {
    let a = Receiver::start(|_, _| (200, vec![])).await;
    let hang = Receiver::start(|_, _| (0, vec![])).await; // never answers
    let app = app(&format!(
        "[[providers.p.routes]]\nname = \"a\"\nevents = [\"a.*\"]\nurl = \"{}\"\n[[providers.p.routes]]\nname = \"slow\"\nevents = [\"*\"]\nurl = \"{}\"\ntimeout = \"60s\"\n",
        a.url(),
        hang.url()
    ))
    .await;
    let ab = post_event(&app, "a.b").await;
    let cd = post_event(&app, "c.d").await;
    // Route a gets a.b while route slow's attempts are still hanging.
    a.wait_for(1, WAIT).await;
    hang.wait_for(2, WAIT).await;
    let ds = deliveries_of(&app, ab, &["delivered", "pending"]).await;
    assert_eq!(ds.len(), 2);
    let (_, v) = app.api(&format!("/api/events/{cd}")).await;
    let routes: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["slow"], "c.d must not go to route a");
    assert_eq!(a.count(), 1);
    assert_eq!(header(&a.requests()[0], "appliance-event-type"), "a.b");
}

#[tokio::test]
async fn command_route_gets_body_and_env_and_a_hang_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let script = dir.path().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd={}\ncat > \"$d/body.$APPLIANCE_ATTEMPT\"\nenv | grep '^APPLIANCE_' | sort > \"$d/env.$APPLIANCE_ATTEMPT\"\nif [ \"$APPLIANCE_ATTEMPT\" = 1 ]; then sleep 600; fi\necho done\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let app = TestApp::spawn_in(
        dir,
        &provider(&format!(
            "[[providers.p.routes]]\ncommand = [\"{}\"]\ntimeout = \"500ms\"\nschedule = [\"10ms\"]\n",
            script.display()
        )),
    )
    .await;
    let req = event(&app, "cmd.test");
    let (s, v) = app.post("/webhooks/p", &req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_i64().unwrap();
    let ds = deliveries_of(&app, id, &["delivered"]).await;
    let attempts = ds[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("timeout"),
        "{}",
        attempts[0]
    );
    assert_eq!(attempts[1]["exit_code"], 0);
    assert!(
        attempts[1]["response_excerpt"]
            .as_str()
            .unwrap_or("")
            .contains("done")
    );
    let d = app.dir.path();
    assert_eq!(std::fs::read(d.join("body.2")).unwrap(), req.body);
    let env = std::fs::read_to_string(d.join("env.2")).unwrap();
    for want in [
        "APPLIANCE_ATTEMPT=2",
        "APPLIANCE_EVENT_TYPE=cmd.test",
        "APPLIANCE_PROVIDER=p",
        "APPLIANCE_EVENT_ID=",
        "APPLIANCE_DELIVERY_ID=",
    ] {
        assert!(env.contains(want), "{want} missing from:\n{env}");
    }
}

/// SIGKILL while attempts are in flight: after a restart every delivery ends
/// delivered; only attempts in flight at the kill may reach the receiver
/// twice, and then with the same webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_delivery_loses_nothing() {
    // Answers slowly enough that attempts are in flight at the kill.
    let rx = Receiver::start(|_, _| (200, vec![(DELAY.to_string(), "20".to_string())])).await;
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let text = format!(
        "[storage]\npath = \"{{dir}}/k.db\"\n{}[[providers.p.routes]]\nurl = \"{}\"\nconcurrency = 4\n",
        provider(""),
        rx.url()
    );
    let mut bin = BinApp::spawn(dir.path(), &text, &[]);
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let c = client();
    let mut event_ids = std::collections::HashSet::new();
    for _ in 0..60 {
        let req = sign(&cfg.providers[0].scheme, SECRET, now());
        let (s, _) = send(&c, &bin.url("/webhooks/p"), &req.headers, req.body).await;
        assert_eq!(s, StatusCode::OK);
        let id = req
            .headers
            .iter()
            .find(|(k, _)| k == "webhook-id")
            .unwrap()
            .1
            .clone();
        event_ids.insert(id);
    }
    rx.wait_for(5, WAIT).await;
    bin.kill9();
    let before = rx.count();
    assert!(
        before < 60,
        "everything was delivered before the kill; the test proves nothing"
    );

    let _bin = BinApp::spawn(dir.path(), &text, &[]);
    eventually(
        "all 60 events at the receiver",
        Duration::from_secs(60),
        || async {
            let got = rx.requests();
            let seen: std::collections::HashSet<String> = got
                .iter()
                .map(|r| header(r, "appliance-event-id").to_string())
                .collect();
            (seen == event_ids).then_some(())
        },
    )
    .await;
    // Each event id always came with one webhook-id, however often it came.
    let mut by_event: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    for r in rx.requests() {
        by_event
            .entry(header(&r, "appliance-event-id").to_string())
            .or_default()
            .insert(header(&r, "webhook-id").to_string());
    }
    assert!(by_event.values().all(|w| w.len() == 1));
    let dups = rx.count() - 60;
    assert!(
        dups <= 4,
        "{dups} duplicates, but at most 4 attempts were in flight"
    );
    // And the store agrees: every delivery is delivered.
    let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability).unwrap();
    eventually("every delivery delivered", WAIT, || {
        let store = store.clone();
        async move {
            let rows = store
                .list_deliveries(appliance::store::DeliveryFilter {
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .ok()?;
            (rows.len() == 60 && rows.iter().all(|r| r.status == "delivered")).then_some(())
        }
    })
    .await;
}

/// A command inherits the environment, but never the appliance's secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_do_not_see_the_appliances_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("env.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nenv > {}/env.out\n", dir.path().display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let text = format!(
        "[storage]\npath = \"{{dir}}/e.db\"\n[outbox]\njitter = 0.0\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_env = \"PROVIDER_SECRET\"\n[[providers.p.routes]]\ncommand = [\"{}\"]\n",
        script.display()
    );
    let bin = BinApp::spawn(
        dir.path(),
        &text,
        &[("PROVIDER_SECRET", SECRET), ("HARMLESS_VAR", "kept")],
    );
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let req = sign(&cfg.providers[0].scheme, SECRET, now());
    let (s, _) = send(&client(), &bin.url("/webhooks/p"), &req.headers, req.body).await;
    assert_eq!(s, StatusCode::OK);
    let out = dir.path().join("env.out");
    let env = eventually("the command to run", WAIT, || async {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|s| s.contains("APPLIANCE_ROUTE"))
    })
    .await;
    assert!(env.contains("HARMLESS_VAR=kept"), "{env}");
    assert!(
        !env.contains("PROVIDER_SECRET"),
        "a secret leaked into the command's environment"
    );
    assert!(!env.contains(SECRET));
}
