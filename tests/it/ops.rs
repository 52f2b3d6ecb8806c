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

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(app.dir.path().join("appliance.toml"))
        .output()
        .unwrap()
}

/// `db backup` while events keep arriving: the copy opens, passes the
/// integrity check and holds every event acknowledged before it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_load() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let app = TestApp::spawn_in(
        dir,
        "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{dir}/p.secret\"\n",
    )
    .await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (acked, stop, url) = (acked.clone(), stop.clone(), app.url("/webhooks/p"));
        let scheme = app.config.providers[0].scheme.clone();
        senders.push(tokio::spawn(async move {
            let c = client();
            while !stop.is_cancelled() {
                let req = sign(&scheme, SECRET, now());
                let id = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == "webhook-id")
                    .unwrap()
                    .1
                    .clone();
                let (s, _) = send(&c, &url, &req.headers, req.body).await;
                assert_eq!(s, StatusCode::OK);
                acked.lock().unwrap().push(id);
            }
        }));
    }
    eventually("some load", std::time::Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    let dest = app.dir.path().join("backup.db");
    let out = cli(&app, &["db", "backup", dest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.cancel();
    for s in senders {
        s.await.unwrap();
    }
    let copy = appliance::store::Store::open(&dest, appliance::config::Durability::Normal).unwrap();
    assert_eq!(copy.integrity_check().await.unwrap(), ["ok"]);
    let stored: std::collections::HashSet<String> = copy
        .list_events(appliance::store::EventFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    let missing = before.iter().filter(|id| !stored.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "the backup lacks events acknowledged before it started"
    );
    // A second backup to the same file is refused, not overwritten.
    assert!(
        !cli(&app, &["db", "backup", dest.to_str().unwrap()])
            .status
            .success()
    );
    assert!(cli(&app, &["db", "check"]).status.success());
}

/// Pruning removes delivered (and route-less) events only, keeps pending and
/// dead ones, and a pruned event sent again is still a duplicate.
#[tokio::test]
async fn prune_keeps_what_is_not_done_and_remembers_ids() {
    let rx = Receiver::start(|_, r| {
        if String::from_utf8_lossy(&r.body).contains("\"type\":\"fail\"") {
            (410, vec![])
        } else {
            (200, vec![])
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let app = TestApp::spawn_in(
        dir,
        &format!(
            "[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n[[providers.p.routes]]\nevents = [\"ok\", \"fail\"]\nurl = \"{}\"\n",
            rx.url()
        ),
    )
    .await;
    let scheme = app.config.providers[0].scheme.clone();
    let s = appliance::verify::Secret(SECRET.as_bytes().to_vec());
    let mut reqs = Vec::new();
    for t in ["ok", "fail", "none"] {
        let req = scheme
            .sign(&s, Some(t), None, now(), &format!("n-{t}"))
            .unwrap();
        let (st, _) = app.post("/webhooks/p", &req).await;
        assert_eq!(st, StatusCode::OK);
        reqs.push(req);
    }
    rx.wait_for(2, std::time::Duration::from_secs(10)).await;
    eventually(
        "deliveries settled",
        std::time::Duration::from_secs(10),
        || async {
            let (_, v) = app.api("/api/deliveries?status=pending").await;
            v["deliveries"].as_array().unwrap().is_empty().then_some(())
        },
    )
    .await;
    let out = cli(&app, &["db", "prune", "--older-than", "0s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, v) = app.api("/api/events").await;
    let left: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["fail"], "only the dead one stays");
    let out = cli(&app, &["db", "prune", "--older-than", "0s", "--dead"]);
    assert!(out.status.success());
    assert_eq!(app.count("p").await, 0);
    // Sent again, a pruned event is a duplicate, not a new event.
    let (st, v) = app.post("/webhooks/p", &reqs[0]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "duplicate");
    assert_eq!(app.count("p").await, 0);
}

async fn readyz(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// SIGHUP swaps secrets without failing a request; an invalid file is
/// refused and the running config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reload_swaps_secrets_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_dGhlIG5ldyBzZWNyZXQgZm9yIHJvdGF0aW9u";
    secret_file(dir.path(), "old", old);
    secret_file(dir.path(), "new", new);
    let text = |secret: &str| {
        format!(
            "[storage]\npath = \"{{dir}}/r.db\"\n[providers.a]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/{secret}.secret\"\n[providers.b]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/old.secret\"\n"
        )
    };
    let bin = BinApp::spawn(dir.path(), &text("old"), &[]);
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let scheme = cfg.providers[0].scheme.clone();
    let ready = bin.url("/readyz");
    assert_eq!(readyz(&ready).await["config"]["generation"], 1);

    // Concurrent load on the unchanged provider throughout the reload.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, url, scheme) = (stop.clone(), bin.url("/webhooks/b"), scheme.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            let mut n = 0;
            while !stop.is_cancelled() {
                let req = sign(&scheme, old, now());
                let (s, v) = send(&c, &url, &req.headers, req.body).await;
                assert_eq!(s, StatusCode::OK, "a request failed during the reload: {v}");
                n += 1;
            }
            n
        }));
    }
    // Rewrite the file as a deployment would (write + rename) and send SIGHUP.
    let tmp = dir.path().join("next.toml");
    let rendered = text("new").replace("{dir}", &dir.path().display().to_string());
    let head = std::fs::read_to_string(&bin.config_path).unwrap();
    let head: String = head.lines().take(5).map(|l| format!("{l}\n")).collect(); // [server] + [log] from BinApp
    std::fs::write(&tmp, format!("{head}{rendered}")).unwrap();
    std::fs::rename(&tmp, &bin.config_path).unwrap();
    let pid = bin.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    eventually(
        "generation 2",
        std::time::Duration::from_secs(10),
        || async { (readyz(&ready).await["config"]["generation"] == 2).then_some(()) },
    )
    .await;
    stop.cancel();
    let mut total = 0;
    for l in load {
        total += l.await.unwrap();
    }
    assert!(total > 0);

    let c = client();
    let a = bin.url("/webhooks/a");
    let req = sign(&scheme, old, now());
    assert_eq!(
        send(&c, &a, &req.headers, req.body).await.0,
        StatusCode::UNAUTHORIZED
    );
    let req = sign(&scheme, new, now());
    assert_eq!(send(&c, &a, &req.headers, req.body).await.0, StatusCode::OK);

    // An invalid file: refused, logged, the running config stays in force.
    std::fs::write(
        &bin.config_path,
        format!("{head}[providers.a]\nkind = \"nope\"\n"),
    )
    .unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let v = eventually(
        "the reload error",
        std::time::Duration::from_secs(10),
        || async {
            let v = readyz(&ready).await;
            (!v["config"]["last_reload_error"].is_null()).then_some(v)
        },
    )
    .await;
    assert_eq!(v["config"]["generation"], 2);
    assert!(
        v["config"]["last_reload_error"]
            .as_str()
            .unwrap()
            .contains(":7:8: providers.a.kind"),
        "{v}"
    );
    let req = sign(&scheme, new, now());
    assert_eq!(send(&c, &a, &req.headers, req.body).await.0, StatusCode::OK);

    // The same through the API, answered synchronously.
    let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability).unwrap();
    let token = store.meta_get("admin_token").await.unwrap().unwrap();
    let r = c
        .post(bin.url("/api/reload"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_config");
}

/// SIGTERM while a delivery attempt is running: the server stops claiming,
/// lets the attempt finish within the grace period, records it, exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_attempts_finish() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "p", SECRET);
    let started = dir.path().join("started");
    let script = dir.path().join("slow.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\nsleep 1\necho finished\n",
            started.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let mut bin = BinApp::spawn(
        dir.path(),
        &format!(
            "[storage]\npath = \"{{dir}}/g.db\"\n[providers.p]\nkind = \"standard-webhooks\"\nsecret_file = \"{{dir}}/p.secret\"\n[[providers.p.routes]]\ncommand = [\"{}\"]\ntimeout = \"20s\"\n",
            script.display()
        ),
        &[],
    );
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let req = sign(&cfg.providers[0].scheme, SECRET, now());
    let (s, _) = send(&client(), &bin.url("/webhooks/p"), &req.headers, req.body).await;
    assert_eq!(s, StatusCode::OK);
    eventually(
        "the command to start",
        std::time::Duration::from_secs(10),
        || async { started.exists().then_some(()) },
    )
    .await;
    let pid = bin.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || bin.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability).unwrap();
    let rows = store
        .list_deliveries(appliance::store::DeliveryFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].status, "delivered",
        "the in-flight attempt was cut off: {:?}",
        rows[0]
    );
}
