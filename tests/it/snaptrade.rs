//! SnapTrade state from webhooks and the holdings sync, against a fake
//! SnapTrade API served locally that checks every request's signature.

use crate::common::*;
use appliance::verify::{Scheme, Secret, snaptrade::rest_signature};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "TEST_CONSUMER_KEY_abc123";
const CLIENT_ID: &str = "APPLIANCE-TEST";
const USER: &str = "user-1";
const USER_SECRET: &str = "user-secret-1";
const AUTH: &str = "a0231bd2-9b77-4732-ba78-f9c6af6a1a62";
const WAIT: Duration = Duration::from_secs(20);

/// (account id, positions as (symbol, units, price), cash)
type FakeAccount = (String, Vec<(String, f64, f64)>, f64);

#[derive(Default)]
struct Fake {
    users: HashMap<String, String>,
    /// account id -> (positions [(symbol, units, price)], cash)
    accounts: Vec<FakeAccount>,
    /// The next requests answer these statuses (0: answer normally; 429
    /// comes with Retry-After: 1).
    fail_next: Vec<u16>,
    verified: usize,
    rejected: usize,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let content: Value = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) if m.is_empty() => Value::Null,
        Ok(v) => v,
        Err(_) => Value::Null,
    };
    let mut fake = shared.lock().unwrap();
    fake.requests.push(format!("{} {path}", parts.method));
    let expected = rest_signature(KEY.as_bytes(), &path, &query, &content);
    if parts.headers.get("Signature").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        fake.rejected += 1;
        return answer(401, json!({"detail": "Unable to verify signature sent"}));
    }
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if params.get("clientId").map(String::as_str) != Some(CLIENT_ID) {
        fake.rejected += 1;
        return answer(401, json!({"detail": "unknown clientId"}));
    }
    fake.verified += 1;
    let status = if fake.fail_next.is_empty() {
        0
    } else {
        fake.fail_next.remove(0)
    };
    if status != 0 {
        let mut resp = answer(status, json!({"detail": "try later"}));
        if status == 429 {
            resp.headers_mut()
                .insert("retry-after", "1".parse().unwrap());
        }
        return resp;
    }
    let user = params.get("userId").cloned().unwrap_or_default();
    if path == "/snapTrade/registerUser" {
        let user = content["userId"].as_str().unwrap_or_default().to_string();
        if fake.users.contains_key(&user) {
            return answer(400, json!({"detail": "User already exist"}));
        }
        fake.users.insert(user.clone(), format!("secret-of-{user}"));
        return answer(
            200,
            json!({"userId": user, "userSecret": format!("secret-of-{user}")}),
        );
    }
    if fake.users.get(&user) != params.get("userSecret") {
        return answer(
            403,
            json!({"detail": "Invalid userID or userSecret provided"}),
        );
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["snapTrade", "login"] => answer(
            200,
            json!({"redirectURI": format!("https://app.snaptrade.com/portal?user={user}"), "sessionId": "s"}),
        ),
        ["accounts"] => answer(
            200,
            Value::Array(
                fake.accounts
                    .iter()
                    .map(|(id, _, _)| {
                        json!({"id": id, "brokerage_authorization": AUTH, "name": format!("Account {id}"),
                               "number": "Q123", "institution_name": "Robinhood", "status": "open"})
                    })
                    .collect(),
            ),
        ),
        ["accounts", id, "positions", "all"] => {
            let Some((_, positions, _)) = fake.accounts.iter().find(|(a, _, _)| a == id) else {
                return answer(404, json!({"detail": "no account"}));
            };
            let results: Vec<Value> = positions
                .iter()
                .map(|(sym, units, price)| {
                    json!({"instrument": {"kind": "stock", "id": format!("i-{sym}"), "symbol": sym, "currency": "USD"},
                           "units": units.to_string(), "price": price.to_string(), "currency": "USD"})
                })
                .collect();
            answer(200, json!({"results": results}))
        }
        ["accounts", id, "balances"] => {
            let Some((_, _, cash)) = fake.accounts.iter().find(|(a, _, _)| a == id) else {
                return answer(404, json!({"detail": "no account"}));
            };
            answer(200, json!([{"currency": {"code": "USD"}, "cash": cash, "buying_power": cash}]))
        }
        _ => answer(404, json!({"detail": "no such route"})),
    }
}

async fn fake_api(fake: Fake) -> (String, Shared) {
    let shared = Arc::new(Mutex::new(fake));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

fn seeded() -> Fake {
    let mut f = Fake::default();
    f.users.insert(USER.into(), USER_SECRET.into());
    f.accounts = vec![(
        "acc-1".into(),
        vec![("AAPL".into(), 10.0, 150.5), ("VTI".into(), 3.5, 200.0)],
        300.25,
    )];
    f
}

struct Env {
    bin: BinApp,
    token: String,
    client: reqwest::Client,
    scheme: Scheme,
    _dir: tempfile::TempDir,
}

async fn start(api: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[storage]\npath = \"{{dir}}/s.db\"\n[outbox]\nschedule = [\"50ms\", \"50ms\", \"50ms\", \"50ms\"]\njitter = 0.0\n[providers.snaptrade]\nsecret_env = \"CONSUMER_KEY\"\n[providers.snaptrade.sync]\nclient_id_env = \"CLIENT_ID\"\nbase_url = \"{api}\"\n"
    );
    let bin = BinApp::spawn(
        dir.path(),
        &text,
        &[("CONSUMER_KEY", KEY), ("CLIENT_ID", CLIENT_ID)],
    );
    let out = std::process::Command::new(BIN)
        .args(["admin", "token", "--config"])
        .arg(&bin.config_path)
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let cfg = appliance::config::load_file(&bin.config_path).unwrap();
    let env = Env {
        scheme: cfg.providers[0].scheme.clone(),
        bin,
        token,
        client: client(),
        _dir: dir,
    };
    env.put_secret(USER, USER_SECRET).await;
    env
}

impl Env {
    async fn webhook(&self, event_type: &str, ts: &str, extra: Value) -> Value {
        let mut body = json!({
            "webhookId": format!("wh-{:016x}", rand::random::<u64>()),
            "clientId": CLIENT_ID,
            "eventTimestamp": ts,
            "userId": USER,
            "eventType": event_type,
            "brokerageId": "robinhood",
            "brokerageAuthorizationId": AUTH,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let bytes = serde_json::to_vec_pretty(&body).unwrap();
        let req = self
            .scheme
            .sign(
                &Secret(KEY.as_bytes().to_vec()),
                None,
                Some(&bytes),
                now(),
                "n",
            )
            .unwrap();
        let (s, v) = send(
            &self.client,
            &self.bin.url("/webhooks/snaptrade"),
            &req.headers,
            req.body,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn put_secret(&self, user: &str, secret: &str) {
        let r = self
            .client
            .put(self.bin.url(&format!("/api/snaptrade/users/{user}")))
            .bearer_auth(&self.token)
            .json(&json!({ "user_secret": secret }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.bin.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    async fn connection_status(&self) -> Option<String> {
        let v = self
            .get(&format!("/api/snaptrade/connections?user_id={USER}"))
            .await;
        v["connections"][0]["status"].as_str().map(str::to_string)
    }

    async fn symbols(&self) -> Vec<(String, f64)> {
        let v = self
            .get(&format!("/api/snaptrade/holdings?user_id={USER}"))
            .await;
        let mut out: Vec<(String, f64)> = v["holdings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["symbol"].as_str().unwrap().to_string(),
                    h["units"].as_f64().unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn sync_deliveries(&self) -> Vec<Value> {
        let v = self
            .get("/api/deliveries?route=snaptrade.sync&limit=500")
            .await;
        v["deliveries"].as_array().unwrap().clone()
    }

    async fn wait_syncs(&self, n: usize, status: &str) -> Vec<Value> {
        eventually("sync jobs", WAIT, || async {
            let d = self.sync_deliveries().await;
            (d.len() == n && d.iter().all(|x| x["status"] == status)).then_some(d)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_then_holdings_then_a_resync_replaces_them() {
    let (api, fake) = fake_api(seeded()).await;
    let env = start(&api).await;
    env.get("/api/snaptrade/connections").await; // API is there
    env.webhook(
        "CONNECTION_ADDED",
        "2026-11-27T10:00:00.000000+00:00",
        json!({}),
    )
    .await;
    env.wait_syncs(1, "delivered").await;
    assert_eq!(env.connection_status().await.as_deref(), Some("active"));
    assert_eq!(
        env.symbols().await,
        [("AAPL".into(), 10.0), ("VTI".into(), 3.5)]
    );
    let v = env
        .get(&format!(
            "/api/snaptrade/holdings?user_id={USER}&account_id=acc-1"
        ))
        .await;
    let aapl = &v["holdings"][0];
    assert_eq!(aapl["price"], 150.5);
    assert_eq!(aapl["market_value"], 1505.0);
    assert_eq!(aapl["currency"], "USD");
    assert!(aapl["synced_at"].is_string());
    assert_eq!(v["balances"][0]["cash"], 300.25);
    let accounts = env
        .get(&format!("/api/snaptrade/accounts?user_id={USER}"))
        .await;
    assert_eq!(accounts["accounts"][0]["account_id"], "acc-1");
    assert_eq!(accounts["accounts"][0]["institution"], "Robinhood");
    assert_eq!(accounts["accounts"][0]["balances"][0]["currency"], "USD");

    // The user sells VTI; the next holdings webhook replaces the holdings.
    fake.lock().unwrap().accounts[0].1 = vec![("AAPL".into(), 12.0, 151.0)];
    env.webhook(
        "ACCOUNT_HOLDINGS_UPDATED",
        "2026-11-27T10:05:00.000000+00:00",
        json!({"accountId": "acc-1"}),
    )
    .await;
    env.wait_syncs(2, "delivered").await;
    assert_eq!(env.symbols().await, [("AAPL".into(), 12.0)]);
    let f = fake.lock().unwrap();
    assert_eq!(f.rejected, 0, "a request was signed wrongly");
    assert!(f.verified >= 6, "{} verified requests", f.verified);
    assert!(
        f.requests.iter().all(|r| !r.contains("/holdings")),
        "deprecated endpoint used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_events_converge_and_rebuild_agrees() {
    let (api, _fake) = fake_api(seeded()).await;
    let env = start(&api).await;
    // The newer BROKEN arrives first, the older ADDED late.
    env.webhook(
        "CONNECTION_BROKEN",
        "2026-11-27T10:10:00.000000+00:00",
        json!({}),
    )
    .await;
    env.webhook(
        "CONNECTION_ADDED",
        "2026-11-27T10:00:00.000000+00:00",
        json!({}),
    )
    .await;
    assert_eq!(env.connection_status().await.as_deref(), Some("broken"));
    let before = env.get("/api/snaptrade/connections").await;

    let out = std::process::Command::new(BIN)
        .args(["snaptrade", "rebuild", "--config"])
        .arg(&env.bin.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = env.get("/api/snaptrade/connections").await;
    assert_eq!(
        before["connections"][0]["status"],
        after["connections"][0]["status"]
    );
    assert_eq!(after["connections"][0]["status"], "broken");
    assert_eq!(after["connections"][0]["brokerage"], "robinhood");

    // Replaying the older ADDED re-applies it (still guarded: stays broken)
    // and queues a fresh sync.
    let list = env.get("/api/events?type=CONNECTION_ADDED").await;
    let added = list["events"][0]["id"].as_i64().unwrap();
    let syncs_before = env.sync_deliveries().await.len();
    let r = env
        .client
        .post(env.bin.url(&format!("/api/events/{added}/replay")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(env.connection_status().await.as_deref(), Some("broken"));
    assert_eq!(env.sync_deliveries().await.len(), syncs_before + 1);

    // A later FIXED makes it active again.
    env.webhook(
        "CONNECTION_FIXED",
        "2026-11-27T10:20:00.000000+00:00",
        json!({}),
    )
    .await;
    assert_eq!(env.connection_status().await.as_deref(), Some("active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_retried_and_never_leave_half_written_holdings() {
    let mut f = seeded();
    // accounts OK, then positions 500, then 429 twice: three failed attempts.
    f.fail_next = vec![500, 429];
    let (api, fake) = fake_api(f).await;
    let env = start(&api).await;
    env.webhook(
        "CONNECTION_ADDED",
        "2026-11-27T10:00:00.000000+00:00",
        json!({}),
    )
    .await;
    let d = env.wait_syncs(1, "delivered").await;
    assert!(d[0]["attempts"].as_i64().unwrap() >= 3, "{}", d[0]);
    assert_eq!(
        env.symbols().await,
        [("AAPL".into(), 10.0), ("VTI".into(), 3.5)]
    );
    assert_eq!(fake.lock().unwrap().rejected, 0);

    // A sync that fails half-way leaves the previous holdings whole.
    {
        let mut f = fake.lock().unwrap();
        f.accounts[0].1 = vec![("MSFT".into(), 1.0, 400.0)];
        // /accounts succeeds, positions fail, then every attempt fails: dead after 5.
        f.fail_next = vec![0, 500, 500, 500, 500, 500];
    }
    env.webhook(
        "ACCOUNT_HOLDINGS_UPDATED",
        "2026-11-27T10:05:00.000000+00:00",
        json!({}),
    )
    .await;
    eventually("the failing sync to die", WAIT, || async {
        let d = env.sync_deliveries().await;
        d.iter().any(|x| x["status"] == "dead").then_some(())
    })
    .await;
    assert_eq!(
        env.symbols().await,
        [("AAPL".into(), 10.0), ("VTI".into(), 3.5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_secret_dead_at_once_then_requeued_by_storing_it() {
    let mut f = seeded();
    f.users.insert("user-2".into(), "s2".into());
    let (api, _fake) = fake_api(f).await;
    let env = start(&api).await;
    let mut body = json!({});
    body["userId"] = json!("user-2");
    env.webhook("CONNECTION_ADDED", "2026-11-27T10:00:00.000000+00:00", body)
        .await;
    let d = env.wait_syncs(1, "dead").await;
    assert_eq!(d[0]["attempts"], 1, "no retries without a secret");
    let err = d[0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("no user secret") && err.contains("user-2"),
        "{err}"
    );
    // The connection is recorded anyway.
    let v = env.get("/api/snaptrade/connections?user_id=user-2").await;
    assert_eq!(v["connections"][0]["status"], "active");

    env.put_secret("user-2", "s2").await;
    env.wait_syncs(1, "delivered").await;
    let v = env.get("/api/snaptrade/holdings?user_id=user-2").await;
    assert_eq!(v["holdings"].as_array().unwrap().len(), 2);
    // The secret is never returned.
    let all = env.get("/api/snaptrade/accounts").await.to_string()
        + &env.get("/api/snaptrade/connections").await.to_string();
    assert!(!all.contains("s2\""), "{all}");
}

#[tokio::test]
async fn snaptrade_api_is_404_without_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "g", "x");
    let app = TestApp::spawn_in(
        dir,
        "[providers.github]\nsecret_file = \"{dir}/g.secret\"\n",
    )
    .await;
    let (s, v) = app.api("/api/snaptrade/connections").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "not_configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_a_user_and_get_a_login_link() {
    let (api, fake) = fake_api(seeded()).await;
    let env = start(&api).await;
    let register = |user: &'static str| {
        let env = &env;
        async move {
            env.client
                .post(env.bin.url("/api/snaptrade/users"))
                .bearer_auth(&env.token)
                .json(&json!({ "user_id": user }))
                .send()
                .await
                .unwrap()
        }
    };
    let r = register("new-user").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"user_id": "new-user"}),
        "the secret is never returned"
    );
    assert_eq!(register("new-user").await.status(), StatusCode::CONFLICT);
    assert_eq!(fake.lock().unwrap().users["new-user"], "secret-of-new-user");

    let r = env
        .client
        .post(env.bin.url("/api/snaptrade/users/new-user/login"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["redirect_uri"],
        "https://app.snaptrade.com/portal?user=new-user"
    );
    let r = env
        .client
        .post(env.bin.url("/api/snaptrade/users/nobody/login"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(fake.lock().unwrap().rejected, 0);
}
