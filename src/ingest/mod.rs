//! Provider endpoints: the POST handler every webhook goes through.
//!
//! Order of checks (each a clear 4xx, nothing stored): unknown path 404 ->
//! method 405 -> declared size 413 -> IP allow-list 403 -> rate limit 429 ->
//! body read (413 above the limit, 408 if it trickles) -> verify 401 ->
//! id/type 400 -> store. The 200 goes out only after the commit; a failed
//! commit is 503 so the provider retries.

mod certs;
mod client_ip;

pub use client_ip::client_ip;

use crate::config::{Config, Provider};
use crate::error::HttpError;
use crate::store::{Inserted, NewEvent, Store};
use crate::verify::{Input, Rejection, Secret};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Headers never stored or shown.
const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// One provider endpoint with its secrets loaded and its limiter.
pub struct Endpoint {
    pub provider: Provider,
    secrets: Vec<Secret>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Amazon SNS: the pinned signing certificate (`signing_cert_file`).
    sns_cert: Option<Arc<Vec<u8>>>,
}

impl Endpoint {
    /// With the pinned SNS certificate, if the provider names one.
    pub fn with_sns_cert(mut self, pem: Vec<u8>) -> Endpoint {
        self.sns_cert = Some(Arc::new(pem));
        self
    }

    pub fn new(provider: Provider, secrets: Vec<Secret>) -> Endpoint {
        let limiter = provider.rate_limit.and_then(|r| {
            let per = NonZeroU32::new(r.per_second)?;
            let burst = NonZeroU32::new(r.burst).unwrap_or(per);
            Some(governor::RateLimiter::keyed(
                Quota::per_second(per).allow_burst(burst),
            ))
        });
        Endpoint {
            provider,
            secrets,
            limiter,
            sns_cert: None,
        }
    }
}

/// Everything the handler needs; shared by all requests.
pub struct Ingest {
    endpoints: HashMap<String, Arc<Endpoint>>,
    store: Store,
    trusted_proxies: Vec<IpNet>,
    client_ip_header: String,
    read_timeout: Duration,
    /// Woken after every commit that created deliveries.
    outbox_wake: Arc<Notify>,
    /// Every stored event is published here after its commit.
    hub: crate::live::Hub,
    /// Amazon SNS signing certificates fetched so far, by URL (bounded).
    certs: certs::CertCache,
}

impl Ingest {
    pub fn new(
        cfg: &Config,
        endpoints: Vec<Endpoint>,
        store: Store,
        outbox_wake: Arc<Notify>,
        hub: crate::live::Hub,
    ) -> Ingest {
        Ingest {
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.provider.path.clone(), Arc::new(e)))
                .collect(),
            store,
            trusted_proxies: cfg.server.trusted_proxies.clone(),
            client_ip_header: cfg.server.client_ip_header.clone(),
            read_timeout: cfg.server.read_timeout,
            outbox_wake,
            hub,
            certs: certs::CertCache::default(),
        }
    }

    /// Forget idle rate-limiter keys so memory stays bounded.
    pub fn prune_limiters(&self) {
        for e in self.endpoints.values() {
            if let Some(l) = &e.limiter {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }

    pub async fn handle(&self, peer: SocketAddr, req: Request<Body>) -> Response {
        let Some(ep) = self.endpoints.get(req.uri().path()).cloned() else {
            return HttpError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no webhook endpoint at this path",
            )
            .into_response();
        };
        let name = ep.provider.name.as_str();
        metrics::counter!("appliance_webhooks_received_total", "provider" => name.to_string())
            .increment(1);
        let started = std::time::Instant::now();
        let result = self.accept(&ep, peer, req).await;
        metrics::histogram!("appliance_ingest_seconds", "provider" => name.to_string())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) => resp,
            Err(e) => {
                let level_warn = e.status != StatusCode::NOT_FOUND;
                if level_warn {
                    tracing::warn!(provider = name, status = e.status.as_u16(), code = e.code, reason = %e.message, "webhook rejected");
                }
                metrics::counter!("appliance_webhooks_rejected_total", "provider" => name.to_string(), "reason" => e.code).increment(1);
                e.into_response()
            }
        }
    }

    async fn accept(
        &self,
        ep: &Endpoint,
        peer: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response, HttpError> {
        let p = &ep.provider;
        if req.method() != Method::POST {
            let mut resp = HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhook endpoints accept POST only",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return Ok(resp);
        }
        let too_large = || {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body larger than {} bytes", p.max_body),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if declared.is_some_and(|n| n > p.max_body) {
            return Err(too_large());
        }

        let ip = client_ip(
            peer.ip(),
            req.headers(),
            &self.trusted_proxies,
            &self.client_ip_header,
        );
        if let Some(allow) = &p.allow_ips
            && !allow.iter().any(|n| n.contains(&ip))
        {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                format!("address {ip} is not allowed"),
            ));
        }
        if let Some(l) = &ep.limiter
            && let Err(not_until) = l.check_key(&ip)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
            )
            .retry_after(secs.max(1)));
        }

        let (parts, body) = req.into_parts();
        let limited = Limited::new(body, p.max_body as usize);
        let body = match tokio::time::timeout(self.read_timeout, limited.collect()).await {
            Err(_) => {
                return Err(HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "read_timeout",
                    "body not received in time",
                ));
            }
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
            Ok(Err(_)) => return Err(HttpError::bad_request("could not read body")),
            Ok(Ok(c)) => c.to_bytes(),
        };

        let now_ms = crate::store::now_ms();
        let rejection = |r: Rejection| {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            HttpError::new(status, r.code(), r.to_string())
        };
        // Schemes that sign the public URL, and SNS's certificate.
        let url = matches!(p.kind.as_str(), "twilio" | "square")
            .then(|| self.public_url(p, &parts, peer.ip()));
        let cert = match &p.scheme {
            crate::verify::Scheme::Sns(s) => Some(match &ep.sns_cert {
                Some(pinned) => pinned.clone(),
                None => self.certs.get(&body, &s.extra_cert_hosts).await?,
            }),
            _ => None,
        };
        let mut input = Input::new(&parts.headers, &body, &ep.secrets, now_ms.div_euclid(1000));
        input.url = url.as_deref();
        input.sns_cert = cert.as_ref().map(|c| c.as_slice());
        let verified = p.scheme.verify(&input).map_err(rejection)?;
        if let Some(answer) = verified.handshake {
            tracing::info!(provider = p.name, "handshake answered");
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer,
            )
                .into_response());
        }

        let (routes, projection) = crate::outbox::plan(p, &verified.event_type, &body);
        let ev = NewEvent {
            provider: p.name.clone(),
            event_id: verified.event_id,
            event_type: verified.event_type,
            received_at_ms: now_ms,
            source_ip: Some(ip.to_string()),
            headers: stored_headers(&parts.headers),
            body: body.to_vec(),
            verification: verified.detail,
            routes,
            projection,
        };
        let event_id = ev.event_id.clone();
        let mut summary = crate::store::EventSummary {
            id: 0,
            provider: ev.provider.clone(),
            event_id: ev.event_id.clone(),
            event_type: ev.event_type.clone(),
            received_at_ms: ev.received_at_ms,
            source_ip: ev.source_ip.clone(),
            status: String::new(),
            size: ev.body.len() as i64,
        };
        let discord_answer = (p.kind == "discord").then(|| {
            p.deferred_response
                .clone()
                .unwrap_or_else(|| crate::verify::discord::DEFAULT_DEFERRED.to_string())
        });
        let confirm = match &p.scheme {
            crate::verify::Scheme::Sns(s) => crate::verify::sns::parse(&body)
                .ok()
                .and_then(|m| s.confirm_url(&m).ok().flatten().map(str::to_string)),
            _ => None,
        };
        let result = self.store.insert_event(ev).await;
        if let (Ok(Inserted::Accepted { id, .. }), Some(url)) = (&result, confirm) {
            self.certs
                .confirm_subscription(self.store.clone(), *id, url);
        }
        if let (Ok(_), Some(answer)) = (&result, discord_answer) {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer,
            )
                .into_response());
        }
        match result {
            Ok(Inserted::Accepted { id, deliveries }) => {
                if deliveries > 0 {
                    self.outbox_wake.notify_one();
                }
                summary.id = id;
                summary.status = if deliveries > 0 { "pending" } else { "none" }.to_string();
                self.hub.publish(crate::live::Live::Webhook(summary));
                metrics::counter!("appliance_webhooks_accepted_total", "provider" => p.name.clone()).increment(1);
                tracing::debug!(provider = p.name, id, event_id, "accepted");
                Ok(axum::Json(serde_json::json!({"status": "accepted", "id": id})).into_response())
            }
            Ok(Inserted::Duplicate { id }) => {
                metrics::counter!("appliance_webhooks_duplicate_total", "provider" => p.name.clone()).increment(1);
                tracing::debug!(provider = p.name, event_id, "duplicate");
                Ok(
                    axum::Json(serde_json::json!({"status": "duplicate", "id": id}))
                        .into_response(),
                )
            }
            Err(e) => {
                tracing::error!(provider = p.name, error = %e, "store failed; answering 503");
                Err(HttpError::unavailable("event could not be stored; retry later").retry_after(5))
            }
        }
    }
}

impl Ingest {
    /// The URL the sender signed: `public_url` with the request's own query
    /// string, else built from `Host` (and `X-Forwarded-Proto` when the peer
    /// is a trusted proxy).
    fn public_url(&self, p: &Provider, parts: &http::request::Parts, peer: IpAddr) -> String {
        if let Some(base) = &p.public_url {
            return crate::verify::twilio::signed_url(base, parts.uri.query());
        }
        let trusted = self.trusted_proxies.iter().any(|n| n.contains(&peer));
        let proto = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|_| trusted)
            .map(|v| v.split(',').next().unwrap_or("http").trim().to_string())
            .unwrap_or_else(|| "http".to_string());
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let pq = parts
            .uri
            .path_and_query()
            .map(|x| x.as_str())
            .unwrap_or("/");
        format!("{proto}://{host}{pq}")
    }
}

/// Request headers as kept with the event, credentials redacted.
fn stored_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = if REDACTED_HEADERS.contains(&k.as_str()) {
                "[redacted]".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}
