//! Test harness: the real server, in-process (`TestApp`, through the same
//! `run(config, listener, shutdown)` seam `serve` uses) or as the real binary
//! (`BinApp`, for signals and environment), each on 127.0.0.1:0 with a
//! temporary database.

#![allow(dead_code)]

use appliance::config;
use appliance::verify::{Scheme, Secret, SignedRequest};
use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_appliance");

pub fn now() -> i64 {
    appliance::store::now_ms() / 1000
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("client")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub token: String,
    pub config: config::Config,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub client: reqwest::Client,
}

/// Write `secret` to `<dir>/<name>.secret` and return the path (for `secret_file`).
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(format!("{name}.secret"));
    std::fs::write(&p, format!("{secret}\n")).expect("write secret");
    p
}

impl TestApp {
    /// Start the server with this config text. `{dir}` in the text is replaced by
    /// the temp dir (put secret files there); the database lives there too.
    pub async fn spawn(config_text: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(dir, config_text).await
    }

    pub async fn spawn_in(dir: TempDir, config_text: &str) -> TestApp {
        let text = config_text.replace("{dir}", &dir.path().display().to_string());
        let text = if text.contains("[storage]") {
            text
        } else {
            format!(
                "[storage]\npath = \"{}\"\ndurability = \"normal\"\n{text}",
                dir.path().join("appliance.db").display()
            )
        };
        let path = dir.path().join("appliance.toml");
        std::fs::write(&path, &text).expect("write config");
        let cfg = config::load_file(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::start(dir, cfg).await
    }

    /// Start with an already built config (e.g. the embedded default).
    pub async fn start(dir: TempDir, cfg: config::Config) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(appliance::run(cfg.clone(), listener, shutdown.clone()));
        let client = client();
        // The socket is already bound: this request waits in the backlog until
        // the server accepts, so no sleep is needed.
        let r = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("server answers /healthz");
        assert_eq!(r.status(), StatusCode::OK);
        let store = appliance::store::Store::open(&cfg.storage.path, cfg.storage.durability)
            .expect("open store");
        let token = match &cfg.admin.token {
            config::SecretSource::Generated(key) => store
                .meta_get(key)
                .await
                .expect("meta")
                .expect("generated admin token"),
            _ => String::new(),
        };
        TestApp {
            addr,
            dir,
            token,
            config: cfg,
            shutdown,
            handle: Some(handle),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, req: &SignedRequest) -> (StatusCode, Value) {
        send(
            &self.client,
            &self.url(path),
            &req.headers,
            req.body.clone(),
        )
        .await
    }

    pub async fn api(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("api request");
        let status = r.status();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Number of stored events for a provider, through the admin API.
    pub async fn count(&self, provider: &str) -> usize {
        let (s, v) = self
            .api(&format!("/api/events?provider={provider}&limit=500"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["events"].as_array().expect("events").len()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("run returned an error");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut rb = client.post(url).body(body);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let r = rb.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Sign a bundled sample for `scheme` with `secret` at time `at`.
pub fn sign(scheme: &Scheme, secret: &str, at: i64) -> SignedRequest {
    let nonce = format!("{:016x}", rand::random::<u64>());
    scheme
        .sign(&Secret(secret.as_bytes().to_vec()), None, None, at, &nonce)
        .expect("sign sample")
}

/// The real binary, started with `serve`; its address read from its log.
pub struct BinApp {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl BinApp {
    /// `config_text` must not set `[server].listen` or `[log]`: they are added
    /// (port 0, JSON logs) so the address can be read back.
    pub fn spawn(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> BinApp {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}",
            config_text.replace("{dir}", &dir.display().to_string())
        );
        let config_path = dir.join("appliance.toml");
        std::fs::write(&config_path, text).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("APPLIANCE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn appliance");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && let Some(a) = v["fields"]["main_addr"].as_str()
                    {
                        let _ = tx.send(Ok(a.parse::<SocketAddr>().expect("addr")));
                        sent = true;
                        continue;
                    }
                    if line.contains("error") && !line.starts_with('{') {
                        let _ = tx.send(Err(line.clone()));
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(a)) => a,
            Ok(Err(line)) => panic!("appliance failed to start: {line}"),
            Err(_) => panic!("appliance did not report its address"),
        };
        BinApp {
            child,
            addr,
            dir: dir.to_path_buf(),
            config_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for BinApp {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request a test receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// Receiver behaviour header: delay the answer by this many milliseconds.
pub const DELAY: &str = "x-test-delay-ms";

type Behaviour = dyn Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync;

/// A real local HTTP server playing the team's downstream receiver. The
/// behaviour gets the 0-based number of the request and the request, and
/// answers a status and headers.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub notify: std::sync::Arc<tokio::sync::Notify>,
}

impl Receiver {
    pub async fn start(
        behaviour: impl Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, behaviour).await
    }

    pub async fn start_on(
        listener: tokio::net::TcpListener,
        behaviour: impl Fn(usize, &Received) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let got: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let behaviour: std::sync::Arc<Behaviour> = std::sync::Arc::new(behaviour);
        let (g, n) = (got.clone(), notify.clone());
        let app = axum::Router::new().fallback(
            move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let (g, n, behaviour) = (g.clone(), n.clone(), behaviour.clone());
                async move {
                    let rec = Received {
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                    };
                    let (status, hdrs, hang) = {
                        let mut v = g.lock().unwrap();
                        let (s, h) = behaviour(v.len(), &rec);
                        v.push(rec);
                        (s, h, s == 0)
                    };
                    n.notify_waiters();
                    if hang {
                        // Status 0 means: never answer.
                        std::future::pending::<()>().await;
                    }
                    let mut resp = axum::response::Response::builder().status(status);
                    for (k, v) in hdrs {
                        // A pseudo-header: answer after this many milliseconds.
                        if k == DELAY {
                            tokio::time::sleep(Duration::from_millis(v.parse().unwrap_or(0))).await;
                            continue;
                        }
                        resp = resp.header(k, v);
                    }
                    resp.body(axum::body::Body::from("receiver says hi"))
                        .unwrap()
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, got, notify }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let notified = self.notify.notified();
            if self.count() >= n {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("receiver got {} requests, expected {n}", self.count());
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

pub fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A minimal SSE client over reqwest.
pub struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

impl SseClient {
    pub async fn connect(
        url: &str,
        token: Option<&str>,
        last_event_id: Option<i64>,
    ) -> reqwest::Result<(StatusCode, SseClient)> {
        let mut rb = client_no_timeout().get(url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id.to_string());
        }
        let resp = rb.send().await?;
        Ok((
            resp.status(),
            SseClient {
                resp,
                buf: String::new(),
            },
        ))
    }

    /// The next event (keep-alive comments skipped), within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Option<Sse> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                let mut ev = Sse {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// The next event of this kind, skipping others.
    pub async fn next_of(&mut self, kind: &str, deadline: Duration) -> Option<Sse> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let e = self.next(left).await?;
            if e.event == kind {
                return Some(e);
            }
        }
    }
}

pub fn client_no_timeout() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}
