//! Health endpoints and the admin JSON API (`/api/*`, admin token required).

mod snaptrade;
mod stream;

pub use snaptrade::SnaptradeApi;

use crate::error::HttpError;
use crate::store::{EventDetail, EventFilter, EventSummary, Store};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// State shared by the API handlers.
pub struct ApiState {
    pub store: Store,
    pub admin_token: String,
    /// The running config and what was built from it (swapped by reloads).
    pub current: crate::runtime::Current,
    /// `POST /api/reload`.
    pub reloader: Arc<crate::runtime::Reloader>,
    /// `[metrics].require_token` (fixed at start).
    pub metrics_require_token: bool,
    /// Woken when deliveries are created or revived here.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// The live feed the stream follows.
    pub hub: crate::live::Hub,
    /// Failed admin-token attempts, per client address.
    pub failed_tokens: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Unix ms of the outbox loop's last tick (0 = no outbox loop yet).
    pub outbox_tick_ms: Arc<AtomicI64>,
    /// How stale the tick may be before `/readyz` fails.
    pub outbox_tick_bound: Duration,
}

/// At most 10 failed token attempts per minute per client address.
pub fn failed_token_limiter() -> governor::DefaultKeyedRateLimiter<std::net::IpAddr> {
    governor::RateLimiter::keyed(governor::Quota::per_minute(
        std::num::NonZeroU32::new(10).expect("nonzero"),
    ))
}

/// `/healthz` and `/readyz`, served on every listener.
pub fn health_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/api/stream", get(stream::stream))
        .route("/api/stats", get(stats))
        .route("/api/reload", post(reload))
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(show_event))
        .route("/api/events/{id}/replay", post(replay_event))
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/{id}/retry", post(retry_delivery))
        .route("/api/snaptrade/connections", get(snaptrade::connections))
        .route("/api/snaptrade/accounts", get(snaptrade::accounts))
        .route("/api/snaptrade/holdings", get(snaptrade::holdings))
        .route("/api/snaptrade/users", post(snaptrade::register_user))
        .route(
            "/api/snaptrade/users/{id}",
            axum::routing::put(snaptrade::put_user),
        )
        .route("/api/snaptrade/users/{id}/login", post(snaptrade::login))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let metrics = if state.metrics_require_token {
        Router::new()
            .route("/metrics", get(metrics_text))
            .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
    } else {
        Router::new().route("/metrics", get(metrics_text))
    };
    let health = health_router(state.clone());
    Router::new()
        .merge(metrics)
        .route("/", get(dashboard_index))
        .route("/assets/app.js", get(dashboard_js))
        .route("/assets/style.css", get(dashboard_css))
        .merge(api)
        // After every route: a wrong method answers in the API's JSON too.
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .with_state(state)
        .merge(health)
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

async fn require_token(
    State(st): State<Arc<ApiState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    // EventSource cannot set headers: the stream also takes `?token=`.
    let query = (req.uri().path() == "/api/stream")
        .then(|| {
            req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            })
        })
        .flatten();
    let given = header.or(query);
    let ok = given
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(st.admin_token.as_bytes())));
    if !ok {
        let server = &st.current.load().config.server;
        let ip = crate::ingest::client_ip(
            peer.ip(),
            req.headers(),
            &server.trusted_proxies,
            &server.client_ip_header,
        );
        if given.is_some() && st.failed_tokens.check_key(&ip).is_err() {
            return HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_tokens",
                "too many wrong admin tokens from this address; wait a minute",
            )
            .retry_after(60)
            .into_response();
        }
        return HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin token required (Authorization: Bearer <token>)",
        )
        .into_response();
    }
    next.run(req).await
}

async fn dashboard_index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard/index.html"),
    )
        .into_response()
}

async fn dashboard_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard/app.js"),
    )
        .into_response()
}

async fn dashboard_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard/style.css"),
    )
        .into_response()
}

async fn reload(State(st): State<Arc<ApiState>>) -> Response {
    match st.reloader.reload().await {
        Ok(r) => Json(json!(r)).into_response(),
        Err(e) => {
            HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e).into_response()
        }
    }
}

async fn metrics_text(State(st): State<Arc<ApiState>>) -> Response {
    let Some(h) = crate::telemetry::handle() else {
        return HttpError::unavailable("metrics recorder not installed").into_response();
    };
    if let Ok(o) = st.store.outbox_stats().await {
        metrics::gauge!("appliance_outbox_pending").set(o.pending as f64);
        metrics::gauge!("appliance_outbox_dead").set(o.dead as f64);
        let age = o
            .oldest_pending_ms
            .map(|t| (crate::store::now_ms() - t).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("appliance_outbox_oldest_pending_age_seconds").set(age);
    }
    metrics::gauge!("appliance_stream_clients").set(st.hub.subscribers() as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.render(),
    )
        .into_response()
}

async fn stats(State(st): State<Arc<ApiState>>) -> Result<Json<Value>, HttpError> {
    let s = st.store.stats().await.map_err(store_err)?;
    let o = st.store.outbox_stats().await.map_err(store_err)?;
    let by_status = |v: &[(String, i64)]| {
        let mut m = serde_json::Map::new();
        for (k, n) in v {
            m.insert(k.clone(), json!(n));
        }
        Value::Object(m)
    };
    Ok(Json(json!({
        "providers": s.providers.iter().map(|(p, h, d)| json!({"provider": p, "last_hour": h, "last_day": d})).collect::<Vec<_>>(),
        "per_minute": s.per_minute.iter().map(|(m, p, n)| json!({"minute": rfc3339(*m), "provider": p, "count": n})).collect::<Vec<_>>(),
        "deliveries": {"last_hour": by_status(&s.deliveries_hour), "last_day": by_status(&s.deliveries_day)},
        "outbox": {
            "pending": o.pending,
            "dead": o.dead,
            "oldest_pending_age_s": o.oldest_pending_ms.map(|t| (crate::store::now_ms() - t).max(0) / 1000),
        },
        "stream_clients": st.hub.subscribers(),
    })))
}

async fn readyz(State(st): State<Arc<ApiState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), st.store.check_writable()).await {
        Err(_) => return HttpError::unavailable("database write timed out").into_response(),
        Ok(Err(e)) => {
            return HttpError::unavailable(format!("database not writable: {e}")).into_response();
        }
        Ok(Ok(())) => {}
    }
    let tick = st.outbox_tick_ms.load(Ordering::Relaxed);
    if tick != 0 {
        let age = crate::store::now_ms() - tick;
        if age > st.outbox_tick_bound.as_millis() as i64 {
            return HttpError::unavailable(format!(
                "outbox loop has not ticked for {}s",
                age / 1000
            ))
            .into_response();
        }
    }
    let outbox = match st.store.outbox_stats().await {
        Ok(o) => o,
        Err(e) => {
            return HttpError::unavailable(format!("database not readable: {e}")).into_response();
        }
    };
    Json(json!({
        "status": "ready",
        "config": {
            "generation": st.reloader.generation(),
            "last_reload_error": st.reloader.last_error(),
        },
        "outbox": {
            "pending": outbox.pending,
            "dead": outbox.dead,
            "oldest_pending_age_s": outbox.oldest_pending_ms.map(|t| (crate::store::now_ms() - t).max(0) / 1000),
        },
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    since: Option<String>,
    provider: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    event_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// `limit`: default 50, at most 500.
pub fn parse_limit(s: Option<&str>) -> Result<usize, HttpError> {
    match s {
        None | Some("") => Ok(50),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => Ok(n),
            _ => Err(HttpError::bad_request("limit must be 1..500")),
        },
    }
}

/// Lists ask the store for `limit + 1` rows: keep `limit`, and say where the
/// next page starts when there was one more.
fn page<T>(rows: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> i64) -> Option<i64> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more { rows.last().map(id) } else { None }
}

fn parse_before(s: Option<&str>) -> Result<Option<i64>, HttpError> {
    match s {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| HttpError::bad_request("before must be a row id")),
    }
}

pub(crate) fn summary_json(e: &EventSummary) -> Value {
    json!({
        "id": e.id,
        "provider": e.provider,
        "event_id": e.event_id,
        "type": e.event_type,
        "received_at": rfc3339(e.received_at_ms),
        "source_ip": e.source_ip,
        "status": e.status,
        "size": e.size,
    })
}

fn store_err(e: crate::store::StoreError) -> HttpError {
    tracing::error!(error = %e, "api read failed");
    HttpError::unavailable("database unavailable")
}

async fn list_events(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, HttpError> {
    let limit = parse_limit(q.limit.as_deref())?;
    if let Some(s) = &q.status
        && !["none", "pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(HttpError::bad_request(
            "status must be none, pending, delivered or dead",
        ));
    }
    let filter = EventFilter {
        provider: q.provider.filter(|s| !s.is_empty()),
        event_type: q.event_type.filter(|s| !s.is_empty()),
        event_id: q.event_id.filter(|s| !s.is_empty()),
        status: q.status.filter(|s| !s.is_empty()),
        before: parse_before(q.before.as_deref())?,
        after: None,
        since_ms: match q.since.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                crate::config::parse_since(s, crate::store::now_ms())
                    .map_err(|e| HttpError::bad_request(format!("since: {e}")))?,
            ),
        },
        limit: limit + 1,
    };
    let mut rows = st.store.list_events(filter).await.map_err(store_err)?;
    let next = page(&mut rows, limit, |r| r.id);
    Ok(Json(json!({
        "events": rows.iter().map(summary_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// The full JSON of one event, as `/api/events/{id}` and `events show` give it.
pub fn detail_json(d: &EventDetail) -> Value {
    let mut v = summary_json(&d.summary);
    let obj = v.as_object_mut().expect("summary is an object");
    obj.insert("headers".into(), json!(d.headers));
    obj.insert("body".into(), json!(std::str::from_utf8(&d.body).ok()));
    obj.insert(
        "body_base64".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(&d.body)),
    );
    obj.insert("verification".into(), json!(d.verification));
    obj.insert(
        "deliveries".into(),
        json!(
            d.deliveries
                .iter()
                .map(|x| json!({
                    "id": x.id,
                    "route": x.route,
                    "status": x.status,
                    "attempt_count": x.attempts,
                    "next_attempt_at": x.next_attempt_at_ms.map(rfc3339),
                    "last_error": x.last_error,
                    "attempts": x.attempts_list.iter().map(attempt_json).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
    );
    v
}

async fn show_event(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let id: i64 = id.parse().map_err(|_| HttpError::not_found("event"))?;
    match st.store.get_event(id).await.map_err(store_err)? {
        Some(d) => Ok(Json(detail_json(&d))),
        None => Err(HttpError::not_found("event")),
    }
}

fn attempt_json(a: &crate::store::AttemptRow) -> Value {
    let mut v = json!({
        "at": rfc3339(a.at_ms),
        "duration_ms": a.duration_ms,
        "error": a.error,
        "response_excerpt": a.response_excerpt,
    });
    let obj = v.as_object_mut().expect("object");
    if let Some(c) = a.status_code {
        obj.insert("status_code".into(), json!(c));
    }
    if let Some(c) = a.exit_code {
        obj.insert("exit_code".into(), json!(c));
    }
    v
}

fn parse_id(s: &str, what: &str) -> Result<i64, HttpError> {
    s.parse().map_err(|_| HttpError::not_found(what))
}

async fn replay_event(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let id = parse_id(&id, "event")?;
    let rt = st.current.load_full();
    match crate::outbox::replay(&st.store, &rt.config, id).await {
        Ok(ids) => {
            if !ids.is_empty() {
                st.outbox_wake.notify_one();
            }
            Ok((StatusCode::ACCEPTED, Json(json!({"deliveries": ids}))).into_response())
        }
        Err(crate::store::StoreError::NotFound) => Err(HttpError::not_found("event")),
        Err(e) => Err(store_err(e)),
    }
}

#[derive(Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
    route: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// The JSON of one delivery in lists.
pub fn delivery_json(d: &crate::store::DeliverySummary) -> Value {
    json!({
        "id": d.id,
        "event": d.event,
        "event_id": d.event_id,
        "provider": d.provider,
        "type": d.event_type,
        "route": d.route,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at_ms.map(rfc3339),
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at_ms),
        "updated_at": rfc3339(d.updated_at_ms),
    })
}

async fn list_deliveries(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Value>, HttpError> {
    let limit = parse_limit(q.limit.as_deref())?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(HttpError::bad_request(
            "status must be pending, delivered or dead",
        ));
    }
    let mut rows = st
        .store
        .list_deliveries(crate::store::DeliveryFilter {
            status,
            route: q.route.filter(|s| !s.is_empty()),
            event: None,
            before: parse_before(q.before.as_deref())?,
            limit: limit + 1,
        })
        .await
        .map_err(store_err)?;
    let next = page(&mut rows, limit, |r| r.id);
    Ok(Json(json!({
        "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

async fn retry_delivery(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let id = parse_id(&id, "delivery")?;
    match st.store.revive_delivery(id).await.map_err(store_err)? {
        crate::store::Revive::Revived => {
            st.outbox_wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": "pending"})),
            )
                .into_response())
        }
        crate::store::Revive::NotDead => Err(HttpError::new(
            StatusCode::CONFLICT,
            "not_dead",
            "only a dead delivery can be retried",
        )),
        crate::store::Revive::NotFound => Err(HttpError::not_found("delivery")),
    }
}

/// The JSON a live message is streamed as.
pub fn render_live(msg: &crate::live::Live) -> String {
    match msg {
        crate::live::Live::Webhook(e) => summary_json(e).to_string(),
        crate::live::Live::Delivery(d) => serde_json::to_string(d).unwrap_or_default(),
    }
}
