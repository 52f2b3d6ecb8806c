//! A small async client for the SnapTrade API calls the appliance makes:
//! list a user's accounts, each account's positions and balances (together:
//! [`Client::snapshot`]), register a user, and get a Connection Portal link.
//!
//! Requests are signed as the official SDKs sign them: `clientId` and
//! `timestamp` (Unix seconds) are appended after the call's own query
//! parameters, and the `Signature` header is [`sign_request`] over the path
//! and raw query exactly as sent and the JSON body (an absent, `null` or `{}`
//! body is signed as `null`). Paths are the current root paths (no `/api/v1`
//! prefix); a `base_url` with a path of its own (a proxy) is part of the
//! signed path, since that is what the server receives.
//!
//! Timeouts are the `reqwest::Client`'s. Responses are read up to
//! [`MAX_RESPONSE`] bytes. Error texts never contain the consumer key or a
//! user secret: transport errors are stripped of the URL (which carries
//! `userSecret`), and every text taken from a response is scrubbed of both.
//!
//! Endpoints and fields (snaptrade-openapi.yaml):
//! - `GET /accounts` (`AccountInformation_listUserAccounts`) and
//!   `GET /authorizations/{authorizationId}/accounts`
//!   (`Connections_listBrokerageAuthorizationAccounts`): `[Account]`;
//! - `GET /accounts/{accountId}/positions/all`
//!   (`AccountInformation_getAllAccountPositions`): `AllAccountPositionsResponse`,
//!   whose `results[]` are `AccountPosition`s (`units`, `price` as decimal strings);
//! - `GET /accounts/{accountId}/balances` (`AccountInformation_getUserAccountBalance`): `[Balance]`;
//! - `POST /snapTrade/registerUser` (`Authentication_registerSnapTradeUser`):
//!   body `{"userId"}`, answer `UserIDandSecret`;
//! - `POST /snapTrade/login` (`Authentication_loginSnapTradeUser`): answer
//!   `LoginRedirectURI` (`redirectURI`).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use crate::verify::snaptrade::rest_signature;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_BASE_URL: &str = "https://api.snaptrade.com";
/// Largest response body read; a bigger one is a [`ApiError::Decode`].
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Longest text kept from an error response.
const EXCERPT_MAX: usize = 300;
const REDACTED: &str = "<redacted>";

// ---------------------------------------------------------------- errors

/// Why a call failed. No variant's text contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// HTTP 429; `retry_after` from `Retry-After`, else from the
    /// `X-RateLimit-*-Reset` of the exhausted limit, else from the body's
    /// "available in N seconds".
    #[error("rate limited by SnapTrade{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// 401 or 403: bad signature, client id, or user secret.
    #[error("SnapTrade refused the credentials: {0}")]
    Unauthorized(String),
    /// 410: the endpoint is retired for this client.
    #[error("SnapTrade endpoint gone: {0}")]
    Gone(String),
    /// Any other non-2xx status, with SnapTrade's detail.
    #[error("SnapTrade answered {0}: {1}")]
    Status(u16, String),
    /// The request did not complete (connect, TLS, timeout).
    #[error("SnapTrade request failed: {0}")]
    Transport(String),
    /// The request cannot be made: a base URL that does not parse, an id
    /// that cannot be a path segment (empty, `.`, `..`).
    #[error("invalid SnapTrade request: {0}")]
    Invalid(String),
    /// A 2xx answer that is not what the API describes.
    #[error("unexpected SnapTrade response: {0}")]
    Decode(String),
}

impl ApiError {
    /// Whether trying again later can succeed without anything changing on
    /// our side: 429, 408, 425, 5xx and transport failures. Unauthorized
    /// (fix the secret), Gone, other 4xx, Decode and Invalid are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::RateLimited { .. } | ApiError::Transport(_) => true,
            ApiError::Status(code, _) => matches!(code, 408 | 425 | 500..=599),
            ApiError::Unauthorized(_)
            | ApiError::Gone(_)
            | ApiError::Decode(_)
            | ApiError::Invalid(_) => false,
        }
    }

    /// The wait SnapTrade asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- models

/// An amount with its ISO-4217 currency.
#[derive(Debug, Clone, PartialEq)]
pub struct Money {
    pub amount: f64,
    pub currency: Option<String>,
}

/// A brokerage account (`Account`).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    /// The connection (`brokerage_authorization`).
    pub authorization_id: Option<String>,
    pub name: Option<String>,
    /// The brokerage's account number (may be masked).
    pub number: Option<String>,
    pub institution_name: Option<String>,
    /// `balance.total`: the account's total value as the brokerage reports it.
    pub balance: Option<Money>,
    /// `open`, `closed`, `archived`, `unavailable`, or unknown.
    pub status: Option<String>,
    pub is_paper: Option<bool>,
}

/// One position (`AccountPosition` of `positions/all`).
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The ticker: `instrument.symbol` (an OCC symbol for options), else
    /// `instrument.raw_symbol`, else the legacy nested `symbol.symbol.symbol`,
    /// else the instrument id, else `"UNKNOWN"`.
    pub symbol: String,
    /// `instrument.kind`: `stock`, `etf`, `option`, `crypto`, ...
    pub kind: Option<String>,
    pub description: Option<String>,
    pub instrument_id: Option<String>,
    pub units: Option<f64>,
    /// Per share (per unit of the underlying for options).
    pub price: Option<f64>,
    /// The API's market value when it sends one; else
    /// `units * price` (times the contract multiplier for options).
    pub market_value: Option<f64>,
    /// ISO-4217 code of `price` (`currency`, else `instrument.currency`).
    pub currency: Option<String>,
    pub cash_equivalent: bool,
}

/// Cash in one currency (`Balance`).
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// ISO-4217 code (`currency.code`).
    pub currency: Option<String>,
    pub cash: Option<f64>,
    pub buying_power: Option<f64>,
}

/// Everything a sync writes, fetched completely or not at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// When the fetch started (Unix microseconds, this machine's clock),
    /// taken before the first request: the stamp of everything below (see
    /// the ordering rule in `event`'s documentation).
    pub started_at_us: i64,
    /// Every account SnapTrade lists for the user, each with all of its
    /// positions and balances.
    pub accounts: Vec<(Account, Vec<Position>, Vec<Balance>)>,
}

/// Optional settings of the Connection Portal link (`SnapTradeLoginUserRequestBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginOptions {
    /// Brokerage slug to go straight to.
    pub broker: Option<String>,
    /// The authorization id of a broken connection to repair.
    pub reconnect: Option<String>,
    pub custom_redirect: Option<String>,
    pub immediate_redirect: Option<bool>,
    /// `read`, `trade` or `trade-if-available`.
    pub connection_type: Option<String>,
}

// ---------------------------------------------------------------- signing

/// The `Signature` header of a request: [`rest_signature`] over `path` and
/// `query` exactly as sent (no leading `?`) and the body, where an absent
/// body, `null` and `{}` are all signed as `null`.
pub fn sign_request(consumer_key: &[u8], path: &str, query: &str, body: Option<&Value>) -> String {
    let content = match body {
        Some(Value::Object(map)) if map.is_empty() => &Value::Null,
        Some(v) => v,
        None => &Value::Null,
    };
    rest_signature(consumer_key, path, query, content)
}

/// The query string of a call: its own parameters in order, then `clientId`
/// and `timestamp`, form-urlencoded as the SDKs' `URLSearchParams` does.
pub fn build_query(params: &[(&str, &str)], client_id: &str, timestamp: i64) -> String {
    let timestamp = timestamp.to_string();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().copied())
        .append_pair("clientId", client_id)
        .append_pair("timestamp", &timestamp)
        .finish()
}

/// `segment` percent-encoded for use as one path segment (RFC 3986
/// unreserved characters kept). Empty, `.` and `..` are refused: URL
/// parsing would drop or resolve them (`%2E` too) and the call would reach
/// another endpoint.
fn path_segment(segment: &str) -> Result<String, ApiError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(ApiError::Invalid(format!(
            "{segment:?} cannot be an id in a URL path"
        )));
    }
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- client

/// A SnapTrade API client for one `clientId` / consumer key.
#[derive(Clone)]
pub struct Client {
    base_url: String,
    client_id: String,
    consumer_key: Vec<u8>,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("consumer_key", &REDACTED)
            .finish_non_exhaustive()
    }
}

/// Secrets of one call, removed from any error text.
struct Call<'a> {
    method: Method,
    /// Already percent-encoded, starting with `/`.
    path: String,
    params: Vec<(&'a str, &'a str)>,
    body: Option<Value>,
    user_secret: Option<&'a str>,
}

impl Client {
    /// `base_url`: scheme, host and optional path prefix; a trailing slash
    /// is ignored and an empty one means [`DEFAULT_BASE_URL`].
    pub fn new(
        base_url: &str,
        client_id: String,
        consumer_key: Vec<u8>,
        http: reqwest::Client,
    ) -> Client {
        let trimmed = base_url.trim().trim_end_matches('/');
        let base_url = if trimmed.is_empty() {
            DEFAULT_BASE_URL.to_owned()
        } else {
            trimmed.to_owned()
        };
        Client {
            base_url,
            client_id,
            consumer_key,
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /accounts`: every account of the user, across connections.
    pub async fn list_accounts(
        &self,
        user_id: &str,
        user_secret: &str,
    ) -> Result<Vec<Account>, ApiError> {
        let doc = self
            .send(user_call(
                Method::GET,
                "/accounts".to_owned(),
                user_id,
                user_secret,
            ))
            .await?;
        decode_accounts(&doc)
    }

    /// `GET /authorizations/{authorizationId}/accounts`: the accounts of one connection.
    pub async fn list_connection_accounts(
        &self,
        user_id: &str,
        user_secret: &str,
        authorization_id: &str,
    ) -> Result<Vec<Account>, ApiError> {
        let path = format!(
            "/authorizations/{}/accounts",
            path_segment(authorization_id)?
        );
        let doc = self
            .send(user_call(Method::GET, path, user_id, user_secret))
            .await?;
        decode_accounts(&doc)
    }

    /// `GET /accounts/{accountId}/positions/all`.
    pub async fn positions(
        &self,
        user_id: &str,
        user_secret: &str,
        account_id: &str,
    ) -> Result<Vec<Position>, ApiError> {
        let path = format!("/accounts/{}/positions/all", path_segment(account_id)?);
        let doc = self
            .send(user_call(Method::GET, path, user_id, user_secret))
            .await?;
        decode_positions(&doc)
    }

    /// `GET /accounts/{accountId}/balances`.
    pub async fn balances(
        &self,
        user_id: &str,
        user_secret: &str,
        account_id: &str,
    ) -> Result<Vec<Balance>, ApiError> {
        let path = format!("/accounts/{}/balances", path_segment(account_id)?);
        let doc = self
            .send(user_call(Method::GET, path, user_id, user_secret))
            .await?;
        decode_balances(&doc)
    }

    /// `POST /snapTrade/registerUser`; returns the new user's `userSecret`.
    pub async fn register_user(&self, user_id: &str) -> Result<String, ApiError> {
        let doc = self
            .send(Call {
                method: Method::POST,
                path: "/snapTrade/registerUser".to_owned(),
                params: Vec::new(),
                body: Some(json!({ "userId": user_id })),
                user_secret: None,
            })
            .await?;
        let secret = str_field(&doc, "userSecret")
            .ok_or_else(|| ApiError::Decode("registerUser answer has no userSecret".into()))?;
        Ok(secret.to_owned())
    }

    /// `POST /snapTrade/login`; returns the Connection Portal `redirectURI`
    /// (valid for 5 minutes).
    pub async fn login_link(&self, user_id: &str, user_secret: &str) -> Result<String, ApiError> {
        self.login_link_with(user_id, user_secret, &LoginOptions::default())
            .await
    }

    /// [`Client::login_link`] with portal options (`reconnect` repairs a
    /// broken connection).
    pub async fn login_link_with(
        &self,
        user_id: &str,
        user_secret: &str,
        options: &LoginOptions,
    ) -> Result<String, ApiError> {
        let mut body = Map::new();
        let strings = [
            ("broker", &options.broker),
            ("reconnect", &options.reconnect),
            ("customRedirect", &options.custom_redirect),
            ("connectionType", &options.connection_type),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                body.insert(key.to_owned(), Value::String(v.clone()));
            }
        }
        if let Some(b) = options.immediate_redirect {
            body.insert("immediateRedirect".to_owned(), Value::Bool(b));
        }
        let mut call = user_call(
            Method::POST,
            "/snapTrade/login".to_owned(),
            user_id,
            user_secret,
        );
        call.body = Some(Value::Object(body));
        let doc = self.send(call).await?;
        let uri = str_field(&doc, "redirectURI").ok_or_else(|| {
            ApiError::Decode(
                "login answer has no redirectURI (encrypted answers are not supported)".into(),
            )
        })?;
        Ok(uri.to_owned())
    }

    /// Everything a sync needs, all or nothing: the user's accounts, then
    /// each account's positions and balances. The first failure is returned
    /// and nothing else; calls are made one at a time (SnapTrade limits
    /// requests per client and per account).
    pub async fn snapshot(&self, user_id: &str, user_secret: &str) -> Result<Snapshot, ApiError> {
        let started_at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let accounts = self.list_accounts(user_id, user_secret).await?;
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            let positions = self.positions(user_id, user_secret, &account.id).await?;
            let balances = self.balances(user_id, user_secret, &account.id).await?;
            out.push((account, positions, balances));
        }
        Ok(Snapshot {
            started_at_us,
            accounts: out,
        })
    }

    // ------------------------------------------------------------ transport

    async fn send(&self, call: Call<'_>) -> Result<Value, ApiError> {
        let scrub = |text: String| self.scrub(text, call.user_secret);
        let query = build_query(&call.params, &self.client_id, unix_now());
        let url = reqwest::Url::parse(&format!("{}{}?{}", self.base_url, call.path, query))
            .map_err(|e| ApiError::Invalid(format!("base URL: {e}")))?;
        // Sign what the URL will put on the wire, after any normalisation.
        let signature = sign_request(
            &self.consumer_key,
            url.path(),
            url.query().unwrap_or(""),
            call.body.as_ref(),
        );
        let mut request = self
            .http
            .request(call.method.clone(), url)
            .header("Signature", signature)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ApiError::Transport(scrub(transport_text(e))))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE {
                        return Err(ApiError::Decode(format!(
                            "response larger than {MAX_RESPONSE} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(ApiError::Transport(scrub(transport_text(e)))),
            }
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Decode(format!("not JSON: {e}")));
        }
        let detail = scrub(error_detail(&bytes));
        Err(match status.as_u16() {
            429 => ApiError::RateLimited {
                retry_after: rate_limit_wait(&headers, &bytes, SystemTime::now()),
            },
            401 | 403 => ApiError::Unauthorized(detail),
            410 => ApiError::Gone(detail),
            code => ApiError::Status(code, detail),
        })
    }

    /// `text` without the consumer key or the user secret (raw or
    /// form-urlencoded, as a query would carry them).
    fn scrub(&self, mut text: String, user_secret: Option<&str>) -> String {
        let key = std::str::from_utf8(&self.consumer_key).ok();
        for secret in [key, user_secret].into_iter().flatten() {
            if secret.is_empty() {
                continue;
            }
            let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            for form in [secret, encoded.as_str()] {
                if text.contains(form) {
                    text = text.replace(form, REDACTED);
                }
            }
        }
        text
    }
}

fn user_call<'a>(method: Method, path: String, user_id: &'a str, user_secret: &'a str) -> Call<'a> {
    Call {
        method,
        path,
        params: vec![("userId", user_id), ("userSecret", user_secret)],
        body: None,
        user_secret: Some(user_secret),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A reqwest error as text, without the URL (it carries `userSecret`),
/// with its causes.
fn transport_text(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// SnapTrade's error text: `detail` / `default_detail` / `message` (with
/// `code` / `default_code`), else an excerpt of the body.
fn error_detail(body: &[u8]) -> String {
    if let Ok(doc) = serde_json::from_slice::<Value>(body) {
        let detail = ["detail", "default_detail", "message", "error"]
            .iter()
            .find_map(|k| str_field(&doc, k));
        let code = ["code", "default_code"]
            .iter()
            .find_map(|k| doc.get(*k).filter(|v| v.is_string() || v.is_number()));
        if let Some(detail) = detail {
            let code = code.map(|c| match c {
                Value::String(s) => format!(" (code {s})"),
                other => format!(" (code {other})"),
            });
            return truncate(format!("{detail}{}", code.unwrap_or_default()));
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) if text.trim().is_empty() => "no detail".to_owned(),
        Ok(text) => truncate(text.trim().to_owned()),
        Err(_) => format!("{} bytes of non-text body", body.len()),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > EXCERPT_MAX {
        let mut end = EXCERPT_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------- rate limits

/// How long a 429 asks to wait: `Retry-After` (seconds or HTTP date); else
/// the longest `X-RateLimit-Reset` / `X-RateLimit-Account-Reset` whose
/// `*-Remaining` is 0 (or absent); else "available in N seconds" in the body.
pub fn rate_limit_wait(
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = header("retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(wait);
    }
    let resets = [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("x-ratelimit-account-remaining", "x-ratelimit-account-reset"),
    ];
    let from_headers = resets
        .iter()
        .filter(|(remaining, _)| header(remaining).is_none_or(|r| r == "0"))
        .filter_map(|(_, reset)| header(reset).and_then(parse_seconds))
        .max();
    from_headers.or_else(|| body_wait(body))
}

/// `Retry-After`: delta-seconds, or an IMF-fixdate (`Sun, 06 Nov 1994
/// 08:49:37 GMT`), which gives the time left until then (zero if past).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(d) = parse_seconds(value) {
        return Some(d);
    }
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)?.saturating_add(1);
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    let at = humantime::parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{time}Z")).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whole (or fractional) non-negative seconds.
fn parse_seconds(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = v.parse().ok()?;
    Duration::try_from_secs_f64(secs.ceil()).ok()
}

/// "Expected available in 7 seconds." in a throttled answer's `detail`.
fn body_wait(body: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text.split("available in ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest.get(digits.len()..)?.trim_start();
    if !after.starts_with("second") {
        return None;
    }
    parse_seconds(&digits)
}

// ---------------------------------------------------------------- decoding

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn owned(v: &Value, key: &str) -> Option<String> {
    str_field(v, key).map(str::to_owned)
}

/// A number, or a decimal string (the positions endpoint sends
/// `"10.5"`); `null`, absent and `""` are `None`; anything else is an error.
fn number(v: &Value, key: &str, what: &str) -> Result<Option<f64>, ApiError> {
    let bad = || ApiError::Decode(format!("{what}.{key} is not a number"));
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// A currency given as a code string or as a `Currency` object (`code`).
fn currency(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        obj @ Value::Object(_) => owned(obj, "code"),
        _ => None,
    }
}

/// `doc` as an array, or the array under `key` when `doc` is an object
/// (answers wrapped as `{"results": [...]}`).
fn items<'a>(doc: &'a Value, key: &str, what: &str) -> Result<&'a Vec<Value>, ApiError> {
    doc.as_array()
        .or_else(|| doc.get(key).and_then(Value::as_array))
        .ok_or_else(|| ApiError::Decode(format!("{what}: expected a list")))
}

fn decode_accounts(doc: &Value) -> Result<Vec<Account>, ApiError> {
    items(doc, "accounts", "accounts")?
        .iter()
        .enumerate()
        .map(|(i, a)| decode_account(a, &format!("accounts[{i}]")))
        .collect()
}

fn decode_account(a: &Value, what: &str) -> Result<Account, ApiError> {
    if !a.is_object() {
        return Err(ApiError::Decode(format!("{what} is not an object")));
    }
    let id = owned(a, "id").ok_or_else(|| ApiError::Decode(format!("{what} has no id")))?;
    // A UUID string today; an object with an `id` in older answers.
    let authorization_id = match a.get("brokerage_authorization") {
        Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Some(obj @ Value::Object(_)) => owned(obj, "id"),
        _ => None,
    };
    let institution_name = owned(a, "institution_name")
        .or_else(|| a.get("meta").and_then(|m| owned(m, "institution_name")));
    let balance = match a.get("balance").and_then(|b| b.get("total")) {
        Some(total) if total.is_object() => number(total, "amount", what)?.map(|amount| Money {
            amount,
            currency: currency(total.get("currency")),
        }),
        _ => None,
    };
    Ok(Account {
        id,
        authorization_id,
        name: owned(a, "name"),
        number: owned(a, "number"),
        institution_name,
        balance,
        status: owned(a, "status"),
        is_paper: a.get("is_paper").and_then(Value::as_bool),
    })
}

fn decode_positions(doc: &Value) -> Result<Vec<Position>, ApiError> {
    items(doc, "results", "positions")?
        .iter()
        .enumerate()
        .map(|(i, p)| decode_position(p, &format!("positions[{i}]")))
        .collect()
}

fn decode_position(p: &Value, what: &str) -> Result<Position, ApiError> {
    if !p.is_object() {
        return Err(ApiError::Decode(format!("{what} is not an object")));
    }
    let null = Value::Null;
    let instrument = p
        .get("instrument")
        .filter(|i| i.is_object())
        .unwrap_or(&null);
    // Legacy `Position.symbol` (a PositionSymbol) wraps a UniversalSymbol.
    let legacy = p.get("symbol").filter(|s| s.is_object()).unwrap_or(&null);
    let universal = legacy
        .get("symbol")
        .filter(|s| s.is_object())
        .unwrap_or(&null);
    let instrument_id = owned(instrument, "id").or_else(|| owned(universal, "id"));
    let symbol = str_field(instrument, "symbol")
        .or_else(|| str_field(instrument, "raw_symbol"))
        .or_else(|| str_field(universal, "symbol"))
        .or_else(|| str_field(universal, "raw_symbol"))
        .or_else(|| str_field(legacy, "symbol"))
        .or_else(|| str_field(p, "symbol"))
        .map(str::to_owned)
        .or_else(|| instrument_id.clone())
        .unwrap_or_else(|| "UNKNOWN".to_owned());
    let kind = owned(instrument, "kind");
    let units = match number(p, "units", what)? {
        Some(u) => Some(u),
        None => number(p, "fractional_units", what)?,
    };
    let price = number(p, "price", what)?;
    let multiplier = if kind.as_deref() == Some("option") {
        number(instrument, "multiplier", what)?.unwrap_or(1.0)
    } else {
        1.0
    };
    let given = match number(p, "market_value", what)? {
        Some(v) => Some(v),
        None => number(p, "marketValue", what)?,
    };
    let market_value = given.or_else(|| Some(units? * price? * multiplier));
    let currency = currency(p.get("currency"))
        .or_else(|| currency(instrument.get("currency")))
        .or_else(|| currency(universal.get("currency")));
    let description = owned(instrument, "description").or_else(|| owned(universal, "description"));
    Ok(Position {
        symbol,
        kind,
        description,
        instrument_id,
        units,
        price,
        market_value,
        currency,
        cash_equivalent: p.get("cash_equivalent").and_then(Value::as_bool) == Some(true),
    })
}

fn decode_balances(doc: &Value) -> Result<Vec<Balance>, ApiError> {
    items(doc, "balances", "balances")?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let what = format!("balances[{i}]");
            if !b.is_object() {
                return Err(ApiError::Decode(format!("{what} is not an object")));
            }
            Ok(Balance {
                currency: currency(b.get("currency")),
                cash: number(b, "cash", &what)?,
                buying_power: number(b, "buying_power", &what)?,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
