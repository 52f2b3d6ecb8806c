//! `appliance tail --forward URL`: follow a (remote) appliance's live stream
//! and replay each stored event against a local URL, for a developer's
//! laptop while the appliance runs on a VPS or behind a tunnel.
//!
//! It never skips: the id of the last event forwarded is kept in a small state
//! file (written atomically after each success), a dropped stream is resumed
//! with `Last-Event-ID` (the server replays what was missed, in order, from
//! its database), and a local receiver that is down is retried with backoff
//! until it answers 2xx. Only the event in flight when tail is killed may be
//! forwarded twice, with the same `webhook-id`.

use crate::verify::{Secret, standard_webhooks};
use anyhow::{Context, bail};
use base64::Engine;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Headers never copied from the stored request.
const SKIP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
    "expect",
];

pub struct Tail {
    pub forward: String,
    pub server: String,
    pub token: String,
    pub provider: Option<String>,
    pub event_type: Option<String>,
    /// Re-sign for the local receiver with Standard Webhooks.
    pub secret: Option<Secret>,
    pub state: PathBuf,
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(7)).min(30_000))
}

impl Tail {
    fn read_state(&self) -> anyhow::Result<Option<i64>> {
        match std::fs::read_to_string(&self.state) {
            Ok(s) => Ok(Some(s.trim().parse().with_context(|| {
                format!("state file {} is not a stream id", self.state.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.state.display())),
        }
    }

    fn write_state(&self, id: i64) -> anyhow::Result<()> {
        let tmp = self.state.with_extension("tmp");
        std::fs::write(&tmp, format!("{id}\n"))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.state)
            .with_context(|| format!("cannot write {}", self.state.display()))?;
        Ok(())
    }

    fn stream_url(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(p) = &self.provider {
            q.append_pair("provider", p);
        }
        if let Some(t) = &self.event_type {
            q.append_pair("type", t);
        }
        format!(
            "{}/api/stream?{}",
            self.server.trim_end_matches('/'),
            q.finish()
        )
    }

    /// Run until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let mut last = self.read_state()?;
        match last {
            Some(id) => eprintln!("tail: resuming after stream id {id}"),
            None => eprintln!("tail: no state yet; forwarding events from now on"),
        }
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let mut rb = http.get(self.stream_url()).bearer_auth(&self.token);
            if let Some(id) = last {
                rb = rb.header("last-event-id", id.to_string());
            }
            let resp = tokio::select! {
                r = rb.send() => r,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let mut resp = match resp {
                Ok(r) if r.status().is_success() => r,
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    bail!("the server refused the admin token (401)")
                }
                Ok(r) => {
                    eprintln!("tail: stream answered {}; retrying", r.status());
                    failures += 1;
                    self.sleep(backoff(failures), &shutdown).await;
                    continue;
                }
                Err(e) => {
                    eprintln!(
                        "tail: cannot reach {}: {}; retrying",
                        self.server,
                        short(&e)
                    );
                    failures += 1;
                    self.sleep(backoff(failures), &shutdown).await;
                    continue;
                }
            };
            eprintln!("tail: following {}", self.stream_url());
            failures = 0;
            let mut buf = String::new();
            loop {
                let chunk = tokio::select! {
                    c = resp.chunk() => c,
                    _ = shutdown.cancelled() => return Ok(()),
                };
                match chunk {
                    Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
                    Ok(None) | Err(_) => {
                        eprintln!("tail: stream closed; reconnecting");
                        break;
                    }
                }
                while let Some(i) = buf.find("\n\n") {
                    let block: String = buf.drain(..i + 2).collect();
                    let (mut kind, mut id) = (String::new(), None);
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            kind = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().parse::<i64>().ok();
                        }
                    }
                    match (kind.as_str(), id) {
                        ("webhook", Some(id)) => {
                            if !self.forward_one(&http, id, &shutdown).await {
                                return Ok(());
                            }
                            self.write_state(id)?;
                            last = Some(id);
                        }
                        ("gap", _) => {
                            eprintln!("tail: some events after {last:?} were pruned on the server")
                        }
                        _ => {}
                    }
                }
            }
            self.sleep(Duration::from_millis(200), &shutdown).await;
        }
    }

    async fn sleep(&self, d: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    /// Fetch event `id` and POST it to the local URL until it is taken.
    /// False when shut down first.
    async fn forward_one(
        &self,
        http: &reqwest::Client,
        id: i64,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            match self.try_forward(http, id).await {
                Ok(status) => {
                    eprintln!("tail: event {id} -> {status}");
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    let wait = backoff(attempt);
                    eprintln!(
                        "tail: event {id}: {e:#}; retrying in {}ms",
                        wait.as_millis()
                    );
                    self.sleep(wait, shutdown).await;
                }
            }
        }
    }

    async fn try_forward(&self, http: &reqwest::Client, id: i64) -> anyhow::Result<u16> {
        let url = format!("{}/api/events/{id}", self.server.trim_end_matches('/'));
        let resp = http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("fetching the event: {}", short(&e)))?;
        if !resp.status().is_success() {
            bail!("fetching the event: {}", resp.status());
        }
        let ev: serde_json::Value = resp.json().await.context("event JSON")?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(ev["body_base64"].as_str().unwrap_or(""))
            .context("event body")?;
        let mut rb = http
            .post(&self.forward)
            .timeout(Duration::from_secs(30))
            .body(body.clone());
        let mut has_type = false;
        for pair in ev["headers"].as_array().into_iter().flatten() {
            let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str()) else {
                continue;
            };
            let lk = k.to_ascii_lowercase();
            if SKIP.contains(&lk.as_str()) || v == "[redacted]" {
                continue;
            }
            if self.secret.is_some() && lk.starts_with("webhook-") {
                continue; // replaced by our own signature below
            }
            has_type |= lk == "content-type";
            rb = rb.header(k, v);
        }
        if !has_type {
            rb = rb.header("content-type", "application/json");
        }
        for (k, field) in [
            ("appliance-provider", "provider"),
            ("appliance-event-type", "type"),
            ("appliance-event-id", "event_id"),
        ] {
            if let Some(v) = ev[field].as_str() {
                rb = rb.header(k, v);
            }
        }
        rb = rb.header("appliance-stream-id", id.to_string());
        if let Some(secret) = &self.secret {
            let now = crate::store::now_ms() / 1000;
            for (k, v) in
                standard_webhooks::signature_headers(secret, &format!("evt_{id}"), now, &body)
            {
                rb = rb.header(k, v);
            }
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("local receiver: {}", short(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            bail!("local receiver answered {status}")
        }
    }
}

fn short(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_timeout() {
        "timeout".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s.chars().take(200).collect()
}
