//! `/api/snaptrade/*`: the SnapTrade state the appliance keeps, and user
//! secrets (stored, never returned).

use super::{ApiState, rfc3339, store_err};
use crate::error::HttpError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The SnapTrade provider the API serves, with its API client when a sync is configured.
pub struct SnaptradeApi {
    pub provider: String,
    pub client: Option<crate::snaptrade::client::Client>,
}

/// The current runtime, when it has a SnapTrade provider.
fn runtime(st: &ApiState) -> Result<Arc<crate::runtime::Runtime>, HttpError> {
    let rt = st.current.load_full();
    if rt.snaptrade.is_none() {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "no SnapTrade provider is configured",
        ));
    }
    Ok(rt)
}

fn provider(rt: &crate::runtime::Runtime) -> Result<&SnaptradeApi, HttpError> {
    rt.snaptrade.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "no SnapTrade provider is configured",
        )
    })
}

fn client(api: &SnaptradeApi) -> Result<&crate::snaptrade::client::Client, HttpError> {
    api.client.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "the SnapTrade provider has no [providers.NAME.sync] (client id) configured",
        )
    })
}

#[derive(Deserialize)]
pub(super) struct Filter {
    user_id: Option<String>,
    account_id: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

pub(super) async fn connections(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<Filter>,
) -> Result<Json<Value>, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    let rows = st
        .store
        .snaptrade_connections(&api.provider, nonempty(q.user_id))
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "connections": rows.iter().map(|c| json!({
            "authorization_id": c.authorization_id,
            "user_id": c.user_id,
            "brokerage": c.brokerage,
            "status": c.status,
            "last_event": c.last_event,
            "detail": c.detail,
            "updated_at": rfc3339(c.updated_at_ms),
        })).collect::<Vec<_>>()
    })))
}

pub(super) async fn accounts(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<Filter>,
) -> Result<Json<Value>, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    let user = nonempty(q.user_id);
    let rows = st
        .store
        .snaptrade_accounts(&api.provider, user.clone())
        .await
        .map_err(store_err)?;
    let (_, balances) = st
        .store
        .snaptrade_holdings(&api.provider, user, None)
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "accounts": rows.iter().filter(|a| a.present).map(|a| json!({
            "account_id": a.account_id,
            "authorization_id": a.authorization_id,
            "user_id": a.user_id,
            "name": a.name,
            "number": a.number,
            "institution": a.institution,
            "balances": balances.iter().filter(|b| b.account_id == a.account_id)
                .map(|b| json!({"currency": b.currency, "cash": b.cash})).collect::<Vec<_>>(),
            "synced_at": a.synced_at_ms.map(rfc3339),
        })).collect::<Vec<_>>()
    })))
}

pub(super) async fn holdings(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<Filter>,
) -> Result<Json<Value>, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    let (positions, balances) = st
        .store
        .snaptrade_holdings(&api.provider, nonempty(q.user_id), nonempty(q.account_id))
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "holdings": positions.iter().map(|p| json!({
            "account_id": p.account_id,
            "symbol": p.symbol,
            "units": p.units,
            "price": p.price,
            "market_value": p.market_value,
            "currency": p.currency,
            "synced_at": rfc3339(p.synced_at_ms),
        })).collect::<Vec<_>>(),
        "balances": balances.iter().map(|b| json!({
            "account_id": b.account_id,
            "currency": b.currency,
            "cash": b.cash,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub(super) struct SecretBody {
    user_secret: String,
}

fn valid_user_id(id: &str) -> Result<(), HttpError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(HttpError::bad_request(
            "user id must be 1..512 printable characters",
        ));
    }
    Ok(())
}

pub(super) async fn put_user(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Result<Json<SecretBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    valid_user_id(&id)?;
    let Json(body) =
        body.map_err(|_| HttpError::bad_request("body must be {\"user_secret\": \"...\"}"))?;
    if body.user_secret.is_empty() {
        return Err(HttpError::bad_request("user_secret must not be empty"));
    }
    let revived = st
        .store
        .snaptrade_set_user_secret(&api.provider, &id, &body.user_secret)
        .await
        .map_err(store_err)?;
    if !revived.is_empty() {
        tracing::info!(
            user = id,
            jobs = revived.len(),
            "user secret stored; dead sync jobs re-queued"
        );
        st.outbox_wake.notify_one();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct RegisterBody {
    user_id: String,
}

pub(super) async fn register_user(
    State(st): State<Arc<ApiState>>,
    body: Result<Json<RegisterBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    let Json(body) =
        body.map_err(|_| HttpError::bad_request("body must be {\"user_id\": \"...\"}"))?;
    valid_user_id(&body.user_id)?;
    if st
        .store
        .snaptrade_user_secret(&api.provider, &body.user_id)
        .await
        .map_err(store_err)?
        .is_some()
    {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "exists",
            "this user is already registered",
        ));
    }
    let secret = client(api)?
        .register_user(&body.user_id)
        .await
        .map_err(|e| {
            HttpError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("SnapTrade: {e}"),
            )
        })?;
    st.store
        .snaptrade_set_user_secret(&api.provider, &body.user_id, &secret)
        .await
        .map_err(store_err)?;
    Ok((StatusCode::CREATED, Json(json!({"user_id": body.user_id}))).into_response())
}

pub(super) async fn login(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let rt = runtime(&st)?;
    let api = provider(&rt)?;
    let secret = st
        .store
        .snaptrade_user_secret(&api.provider, &id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| HttpError::not_found("user (no secret stored)"))?;
    let uri = client(api)?.login_link(&id, &secret).await.map_err(|e| {
        HttpError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("SnapTrade: {e}"),
        )
    })?;
    Ok(Json(json!({"redirect_uri": uri})))
}
