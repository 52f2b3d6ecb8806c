//! The client against a fake SnapTrade API on 127.0.0.1:0 that checks every
//! request's `Signature` (recomputed with `rest_signature` from the path and
//! raw query it received and the body) and serves answers shaped like
//! snaptrade-openapi.yaml.

use super::*;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const KEY: &str = "fake-consumer-key-0123456789";
const CLIENT_ID: &str = "APPLIANCE-TEST";
const USER: &str = "user one";
const SECRET: &str = "s3cr3t+/= &é";
const ACC1: &str = "2bcf54b0-0000-4000-8000-000000000001";
const ACC2: &str = "2bcf54b0-0000-4000-8000-000000000002";
const AUTH: &str = "87b24961-0000-4000-8000-00000000a0a0";

fn vectors() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/signatures.json"
    )))
    .unwrap()
}

// ---------------------------------------------------------------- pure

#[test]
fn vector_request_signature() {
    let v = &vectors()["snaptrade_rest_get_accounts"];
    let key = v["consumer_key"].as_str().unwrap();
    let (path, query) = v["path_and_query"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap();
    let built = build_query(
        &[("userId", "u1"), ("userSecret", "s1")],
        "YOUR_CLIENT_ID",
        1_715_123_456,
    );
    assert_eq!(built, query);
    assert_eq!(path, "/accounts");
    let sig = v["Signature"].as_str().unwrap();
    assert_eq!(sign_request(key.as_bytes(), path, &built, None), sig);
    // `{}` and null are signed as no body.
    assert_eq!(
        sign_request(key.as_bytes(), path, &built, Some(&json!({}))),
        sig
    );
    assert_eq!(
        sign_request(key.as_bytes(), path, &built, Some(&Value::Null)),
        sig
    );
    assert_ne!(
        sign_request(key.as_bytes(), path, &built, Some(&json!({"a": 1}))),
        sig
    );

    let v = &vectors()["snaptrade_rest_docs_example"];
    let (path, query) = v["path_and_query"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap();
    assert_eq!(build_query(&[], "YOUR_CLIENT_ID", 1_715_123_456), query);
    assert_eq!(
        sign_request(
            v["consumer_key"].as_str().unwrap().as_bytes(),
            path,
            query,
            Some(&v["body"])
        ),
        v["Signature"].as_str().unwrap()
    );
}

#[test]
fn query_encoding() {
    assert_eq!(
        build_query(&[("userId", "a b&c=d"), ("userSecret", "+/é~*")], "C", -5),
        "userId=a+b%26c%3Dd&userSecret=%2B%2F%C3%A9%7E*&clientId=C&timestamp=-5"
    );
    assert_eq!(path_segment("ab-C.9_~").unwrap(), "ab-C.9_~");
    assert_eq!(
        path_segment("a/b c?#%é").unwrap(),
        "a%2Fb%20c%3F%23%25%C3%A9"
    );
    assert_eq!(path_segment("...").unwrap(), "...");
    for bad in ["", ".", ".."] {
        assert!(
            matches!(path_segment(bad), Err(ApiError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn retry_after_values() {
    let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 on that day
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("1.2", now), Some(Duration::from_secs(2)));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    for bad in [
        "",
        "-1",
        "soon",
        "1e3",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Foo 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:00 PST",
        "Wed, 21 Oct 2015 7:28 GMT",
    ] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad}");
    }

    let mut h = http::HeaderMap::new();
    let body = br#"{"detail":"Request was throttled. Expected available in 7 seconds.","status_code":429,"code":"0000"}"#;
    assert_eq!(rate_limit_wait(&h, body, now), Some(Duration::from_secs(7)));
    assert_eq!(rate_limit_wait(&h, b"{}", now), None);
    assert_eq!(rate_limit_wait(&h, b"available in 9 minutes", now), None);
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("10"));
    h.insert("x-ratelimit-reset", HeaderValue::from_static("30"));
    h.insert(
        "x-ratelimit-account-remaining",
        HeaderValue::from_static("0"),
    );
    h.insert("x-ratelimit-account-reset", HeaderValue::from_static("12"));
    assert_eq!(
        rate_limit_wait(&h, body, now),
        Some(Duration::from_secs(12))
    );
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    assert_eq!(
        rate_limit_wait(&h, body, now),
        Some(Duration::from_secs(30))
    );
    h.insert("retry-after", HeaderValue::from_static("3"));
    assert_eq!(rate_limit_wait(&h, body, now), Some(Duration::from_secs(3)));
}

#[test]
fn error_classes() {
    assert!(ApiError::RateLimited { retry_after: None }.is_retryable());
    assert!(ApiError::Transport("x".into()).is_retryable());
    assert!(ApiError::Status(500, "x".into()).is_retryable());
    assert!(ApiError::Status(503, "x".into()).is_retryable());
    assert!(ApiError::Status(425, "x".into()).is_retryable());
    assert!(!ApiError::Status(404, "x".into()).is_retryable());
    assert!(!ApiError::Unauthorized("x".into()).is_retryable());
    assert!(!ApiError::Gone("x".into()).is_retryable());
    assert!(!ApiError::Decode("x".into()).is_retryable());
    assert!(!ApiError::Invalid("x".into()).is_retryable());
    let e = ApiError::RateLimited {
        retry_after: Some(Duration::from_secs(7)),
    };
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(e.to_string(), "rate limited by SnapTrade (retry after 7s)");
}

#[test]
fn error_details() {
    assert_eq!(
        error_detail(
            br#"{"default_detail":"Unable to verify signature sent","default_code":1076}"#
        ),
        "Unable to verify signature sent (code 1076)"
    );
    assert_eq!(
        error_detail(br#"{"detail":"Connection is disabled","code":"3003"}"#),
        "Connection is disabled (code 3003)"
    );
    assert_eq!(error_detail(b""), "no detail");
    assert_eq!(error_detail(b"\xff\xfe"), "2 bytes of non-text body");
    let long = error_detail("é".repeat(1000).as_bytes());
    assert!(long.len() <= EXCERPT_MAX + 3 && long.ends_with("..."));
}

#[test]
fn client_debug_hides_the_key() {
    let c = Client::new(
        "",
        CLIENT_ID.into(),
        KEY.as_bytes().to_vec(),
        reqwest::Client::new(),
    );
    assert_eq!(c.base_url(), DEFAULT_BASE_URL);
    assert!(!format!("{c:?}").contains(KEY));
    let c = Client::new(
        " http://h:1/x// ",
        CLIENT_ID.into(),
        Vec::new(),
        reqwest::Client::new(),
    );
    assert_eq!(c.base_url(), "http://h:1/x");
}

// ---------------------------------------------------------------- decoding

fn stock(symbol: &str, units: &str, price: &str) -> Value {
    json!({
        "instrument": {
            "kind": "stock",
            "id": format!("inst-{symbol}"),
            "symbol": symbol,
            "raw_symbol": symbol,
            "description": format!("{symbol} Inc."),
            "currency": "USD",
            "exchange": "XNAS",
            "figi_instrument": {"figi_code": "BBG000B9XRY4", "figi_share_class": "BBG001S5N8V8"}
        },
        "units": units,
        "price": price,
        "cost_basis": "118.2",
        "currency": "USD",
        "tax_lots": []
    })
}

fn option_position() -> Value {
    json!({
        "instrument": {
            "kind": "option",
            "id": "899e2697-1d38-4c07-91ee-c16a2b1ce5c9",
            "symbol": "AAPL  261218C00240000",
            "option_type": "CALL",
            "strike_price": "240",
            "expiration_date": "2026-12-18",
            "multiplier": "100",
            "description": "AAPL Dec 18 2026 240 CALL",
            "underlying": {"kind": "stock", "id": "inst-AAPL", "symbol": "AAPL", "raw_symbol": "AAPL"}
        },
        "units": "-2",
        "price": "19.25",
        "cost_basis": "17.5",
        "currency": "USD"
    })
}

fn account(id: &str, name: &str, total: Value) -> Value {
    json!({
        "id": id,
        "brokerage_authorization": AUTH,
        "portfolio_group": "2bcf54b0-0000-4000-8000-00000000ffff",
        "name": name,
        "number": "Q6542138443",
        "institution_account_id": null,
        "institution_name": "Robinhood",
        "created_date": "2024-07-23T22:50:22.761390Z",
        "funding_date": null,
        "opening_date": null,
        "sync_status": {
            "transactions": {"initial_sync_completed": true, "last_successful_sync": "2024-07-23", "first_transaction_date": "2020-01-01"},
            "holdings": {"initial_sync_completed": true, "last_successful_sync": "2024-07-23 21:34:07.115030+00:00"}
        },
        "balance": {"total": total},
        "status": "open",
        "raw_type": "Margin",
        "account_category": "INVESTMENT",
        "meta": {"type": "Margin", "status": "ACTIVE", "institution_name": "Robinhood"},
        "cash_restrictions": [],
        "is_paper": false
    })
}

fn balances_doc(cash: Value) -> Value {
    json!([
        {"currency": {"id": "87b24961-b51e-4db8-9226-f198f6518a89", "code": "USD", "name": "US Dollar"}, "cash": cash, "buying_power": 410.71},
        {"currency": {"code": "CAD", "name": "Canadian Dollar"}, "cash": null, "buying_power": null}
    ])
}

#[test]
fn decodes_yaml_shapes() {
    let accounts = decode_accounts(&json!([
        account(
            ACC1,
            "Robinhood Individual",
            json!({"amount": 15363.23, "currency": "USD"})
        ),
        account(ACC2, "Roth", Value::Null),
    ]))
    .unwrap();
    assert_eq!(
        accounts[0],
        Account {
            id: ACC1.into(),
            authorization_id: Some(AUTH.into()),
            name: Some("Robinhood Individual".into()),
            number: Some("Q6542138443".into()),
            institution_name: Some("Robinhood".into()),
            balance: Some(Money {
                amount: 15363.23,
                currency: Some("USD".into())
            }),
            status: Some("open".into()),
            is_paper: Some(false),
        }
    );
    assert_eq!(accounts[1].balance, None);

    let positions = decode_positions(&json!({
        "results": [stock("AAPL", "10.5", "123.45"), option_position(),
                    {"instrument": {"kind": "crypto", "id": "c1", "symbol": "BTC", "raw_symbol": "BTC", "currency": "USD"},
                     "units": "0.25", "price": null, "currency": null}],
        "data_freshness": {"as_of": "2026-06-02T14:30:00Z"}
    }))
    .unwrap();
    assert_eq!(
        positions[0],
        Position {
            symbol: "AAPL".into(),
            kind: Some("stock".into()),
            description: Some("AAPL Inc.".into()),
            instrument_id: Some("inst-AAPL".into()),
            units: Some(10.5),
            price: Some(123.45),
            market_value: Some(10.5 * 123.45),
            currency: Some("USD".into()),
            cash_equivalent: false,
        }
    );
    assert_eq!(positions[1].symbol, "AAPL  261218C00240000");
    assert_eq!(positions[1].market_value, Some(-2.0 * 19.25 * 100.0));
    assert_eq!(positions[2].symbol, "BTC");
    assert_eq!(positions[2].market_value, None);
    assert_eq!(
        positions[2].currency.as_deref(),
        Some("USD"),
        "instrument currency"
    );

    let balances = decode_balances(&balances_doc(json!(300.71))).unwrap();
    assert_eq!(
        balances,
        vec![
            Balance {
                currency: Some("USD".into()),
                cash: Some(300.71),
                buying_power: Some(410.71)
            },
            Balance {
                currency: Some("CAD".into()),
                cash: None,
                buying_power: None
            },
        ]
    );
}

#[test]
fn decodes_legacy_and_odd_shapes() {
    // The legacy `Position` (GET /accounts/{id}/positions): nested symbol objects.
    let legacy = json!([{
        "symbol": {
            "symbol": {"id": "u-1", "symbol": "VAB.TO", "raw_symbol": "VAB", "description": "VANGUARD CDN AGGREGATE BOND INDEX ETF",
                       "currency": {"code": "CAD"}, "exchange": {"code": "TSX"}},
            "id": "b-1", "description": "deprecated"
        },
        "units": 40, "price": 113.15, "open_pnl": 0.44, "fractional_units": 1.44,
        "currency": {"id": "x", "code": "CAD", "name": "Canadian Dollar"},
        "cash_equivalent": true
    }]);
    let p = &decode_positions(&legacy).unwrap()[0];
    assert_eq!(p.symbol, "VAB.TO");
    assert_eq!(p.units, Some(40.0));
    assert_eq!(p.market_value, Some(40.0 * 113.15));
    assert_eq!(p.currency.as_deref(), Some("CAD"));
    assert_eq!(p.instrument_id.as_deref(), Some("u-1"));
    assert!(p.cash_equivalent);

    let odd = decode_positions(&json!({"results": [
        {"instrument": {"kind": "other", "id": "only-id"}, "units": "3", "price": "2", "market_value": "7.5"},
        {"instrument": {"kind": "future", "raw_symbol": "ESM26", "multiplier": "50"}, "units": "1", "price": "5000"},
        {"units": null, "price": ""},
        {"instrument": {"symbol": "  "}, "units": " 1e2 "}
    ]}))
    .unwrap();
    assert_eq!(
        (odd[0].symbol.as_str(), odd[0].market_value),
        ("only-id", Some(7.5))
    );
    assert_eq!(
        (odd[1].symbol.as_str(), odd[1].market_value),
        ("ESM26", Some(5000.0))
    );
    assert_eq!(
        (odd[2].symbol.as_str(), odd[2].units, odd[2].price),
        ("UNKNOWN", None, None)
    );
    assert_eq!(
        (odd[3].symbol.as_str(), odd[3].units),
        ("UNKNOWN", Some(100.0))
    );

    // brokerage_authorization as an object (older answers); institution from meta.
    let a = decode_accounts(&json!([{"id": "a", "brokerage_authorization": {"id": AUTH}, "meta": {"institution_name": "Questrade"}}])).unwrap();
    assert_eq!(a[0].authorization_id.as_deref(), Some(AUTH));
    assert_eq!(a[0].institution_name.as_deref(), Some("Questrade"));
    assert_eq!(a[0].name, None);

    // A string currency on a balance.
    let b = decode_balances(&json!([{"currency": "EUR", "cash": "12.5"}])).unwrap();
    assert_eq!(
        (b[0].currency.as_deref(), b[0].cash),
        (Some("EUR"), Some(12.5))
    );
}

#[test]
fn decode_errors() {
    for (doc, what) in [
        (json!({"nope": 1}), "expected a list"),
        (json!([{"name": "no id"}]), "accounts[0] has no id"),
        (json!([1]), "accounts[0] is not an object"),
        (
            json!([{"id": "a", "balance": {"total": {"amount": "lots"}}}]),
            "accounts[0].amount is not a number",
        ),
    ] {
        let err = decode_accounts(&doc).unwrap_err();
        assert!(
            matches!(&err, ApiError::Decode(m) if m.contains(what)),
            "{err:?}"
        );
    }
    for (doc, what) in [
        (json!({"results": "x"}), "expected a list"),
        (
            json!({"results": [{"units": "abc"}]}),
            "positions[0].units is not a number",
        ),
        (json!({"results": [{"units": "NaN"}]}), "positions[0].units"),
        (json!({"results": [{"units": "inf"}]}), "positions[0].units"),
        (json!({"results": [{"price": true}]}), "positions[0].price"),
        (
            json!({"results": [{}, "x"]}),
            "positions[1] is not an object",
        ),
    ] {
        let err = decode_positions(&doc).unwrap_err();
        assert!(
            matches!(&err, ApiError::Decode(m) if m.contains(what)),
            "{err:?}"
        );
    }
    let err = decode_balances(&json!([{"cash": [1]}])).unwrap_err();
    assert!(
        matches!(&err, ApiError::Decode(m) if m.contains("balances[0].cash")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- the fake API

/// A canned failure for one route: status, headers, body.
#[derive(Clone)]
struct Failure {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    /// How many more requests fail (then the route works again).
    times: usize,
}

#[derive(Default)]
struct Fake {
    /// Path prefix the fake sits under (a proxy), "" for none.
    prefix: String,
    users: HashMap<String, String>,
    accounts: Vec<Value>,
    positions: HashMap<String, Value>,
    balances: HashMap<String, Value>,
    failures: HashMap<String, Failure>,
    /// `METHOD path?query` of every request, as received.
    seen: Vec<String>,
    /// Requests whose signature matched.
    verified: usize,
    /// Decoded query parameters of the last request.
    last_params: Vec<(String, String)>,
    last_body: Option<Value>,
}

type Shared = Arc<Mutex<Fake>>;

fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (status, axum::Json(body)).into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let mut fake = shared.lock().unwrap();
    fake.seen.push(format!("{} {path}?{query}", parts.method));

    // The signature, recomputed independently of the client's sign_request.
    let content: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) if m.is_empty() => Value::Null,
            Ok(v) => v,
            Err(_) => return answer(400, json!({"detail": "bad JSON"})),
        }
    };
    let expected = rest_signature(KEY.as_bytes(), &path, &query, &content);
    let sent = parts.headers.get("Signature").and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) {
        return answer(
            401,
            json!({"default_detail": "Unable to verify signature sent", "default_code": 1076}),
        );
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // clientId and timestamp come last, after the call's own parameters.
    let n = params.len();
    assert!(n >= 2, "{query}");
    assert_eq!(params[n - 2].0, "clientId");
    assert_eq!(params[n - 1].0, "timestamp");
    if param("clientId").as_deref() != Some(CLIENT_ID) {
        return answer(401, json!({"detail": "unknown clientId"}));
    }
    let ts: i64 = param("timestamp").unwrap().parse().unwrap();
    if (ts - unix_now()).abs() > 300 {
        return answer(401, json!({"detail": "stale timestamp"}));
    }
    fake.verified += 1;
    fake.last_params = params.clone();
    fake.last_body = Some(content.clone()).filter(|c| !c.is_null());

    let Some(route) = path.strip_prefix(fake.prefix.as_str()).map(str::to_owned) else {
        return answer(404, json!({"detail": "outside the prefix"}));
    };
    if let Some(failure) = fake.failures.get_mut(&route)
        && failure.times > 0
    {
        failure.times -= 1;
        let failure = failure.clone();
        let mut resp = (
            StatusCode::from_u16(failure.status).unwrap(),
            Body::from(failure.body),
        )
            .into_response();
        for (k, v) in failure.headers {
            resp.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        return resp;
    }

    let segments: Vec<String> = route.split('/').skip(1).map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let user_ok = || {
        let user = param("userId").unwrap_or_default();
        fake.users
            .get(&user)
            .is_some_and(|s| Some(s) == param("userSecret").as_ref())
    };
    match (parts.method.as_str(), segments.as_slice()) {
        ("POST", ["snapTrade", "registerUser"]) => {
            let user = content["userId"].as_str().unwrap_or_default().to_owned();
            if fake.users.contains_key(&user) {
                return answer(400, json!({"detail": "User already exist", "code": "1010"}));
            }
            let secret = format!("secret-of-{user}");
            fake.users.insert(user.clone(), secret.clone());
            answer(200, json!({"userId": user, "userSecret": secret}))
        }
        _ if !user_ok() => answer(
            403,
            // Echoes the query, secret included, to check the client scrubs it.
            json!({"detail": format!("Invalid userID or userSecret provided: {query}"), "code": "1083"}),
        ),
        ("POST", ["snapTrade", "login"]) => answer(
            200,
            json!({"redirectURI": "https://app.snaptrade.com/snapTrade/redeemToken?token=t&clientId=APPLIANCE-TEST", "sessionId": "s-1"}),
        ),
        ("GET", ["accounts"]) => answer(200, Value::Array(fake.accounts.clone())),
        ("GET", ["authorizations", auth, "accounts"]) => {
            let list: Vec<Value> = fake
                .accounts
                .iter()
                .filter(|a| a["brokerage_authorization"] == *auth)
                .cloned()
                .collect();
            answer(200, Value::Array(list))
        }
        ("GET", ["accounts", id, "positions", "all"]) => match fake.positions.get(*id) {
            Some(results) => answer(
                200,
                json!({"results": results, "data_freshness": {"as_of": "2026-06-02T14:30:00Z"}}),
            ),
            None => answer(
                404,
                json!({"default_detail": "The requested resource does not exist.", "default_code": 1011}),
            ),
        },
        ("GET", ["accounts", id, "balances"]) => match fake.balances.get(*id) {
            Some(b) => answer(200, b.clone()),
            None => answer(
                404,
                json!({"default_detail": "The requested resource does not exist.", "default_code": 1011}),
            ),
        },
        ("GET", ["accounts", _, "holdings"]) => answer(
            410,
            json!({"detail": "This endpoint is no longer available for your account."}),
        ),
        _ => answer(404, json!({"detail": "no such route"})),
    }
}

/// A fake with one user, two accounts (the second's id needs escaping in a
/// path), positions and balances.
fn seeded(prefix: &str) -> Fake {
    let odd_account = "acc/2 é";
    let mut fake = Fake {
        prefix: prefix.to_owned(),
        ..Fake::default()
    };
    fake.users.insert(USER.into(), SECRET.into());
    fake.accounts = vec![
        account(
            ACC1,
            "Individual",
            json!({"amount": 2000.5, "currency": "USD"}),
        ),
        account(odd_account, "Roth", Value::Null),
    ];
    fake.positions.insert(
        ACC1.into(),
        json!([stock("AAPL", "10", "150.5"), option_position()]),
    );
    fake.positions
        .insert(odd_account.into(), json!([stock("VTI", "3.5", "200")]));
    fake.balances
        .insert(ACC1.into(), balances_doc(json!(300.71)));
    fake.balances.insert(odd_account.into(), json!([]));
    fake
}

async fn serve(fake: Fake) -> (SocketAddr, Shared) {
    let shared = Arc::new(Mutex::new(fake));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, shared)
}

fn client(addr: SocketAddr, path: &str, key: &str) -> Client {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Client::new(
        &format!("http://{addr}{path}"),
        CLIENT_ID.into(),
        key.as_bytes().to_vec(),
        http,
    )
}

fn no_secrets(err: &ApiError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let encoded: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    assert!(!text.contains(&encoded), "{text}");
}

#[tokio::test]
async fn snapshot_through_signed_requests() {
    let (addr, fake) = serve(seeded("")).await;
    let c = client(addr, "/", KEY);
    let before = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let snap = c.snapshot(USER, SECRET).await.unwrap();
    assert!(snap.started_at_us >= before && snap.started_at_us - before < 5_000_000);

    assert_eq!(snap.accounts.len(), 2);
    let (a1, p1, b1) = &snap.accounts[0];
    assert_eq!(a1.id, ACC1);
    assert_eq!(a1.authorization_id.as_deref(), Some(AUTH));
    assert_eq!(a1.balance.as_ref().map(|m| m.amount), Some(2000.5));
    assert_eq!(
        p1.iter()
            .map(|p| (p.symbol.as_str(), p.units, p.market_value))
            .collect::<Vec<_>>(),
        vec![
            ("AAPL", Some(10.0), Some(1505.0)),
            ("AAPL  261218C00240000", Some(-2.0), Some(-3850.0)),
        ]
    );
    assert_eq!(b1.len(), 2);
    let (a2, p2, b2) = &snap.accounts[1];
    assert_eq!(a2.id, "acc/2 é");
    assert_eq!(p2[0].symbol, "VTI");
    assert!(b2.is_empty());

    let fake = fake.lock().unwrap();
    assert_eq!(fake.verified, 5, "{:?}", fake.seen);
    let enc_user = "userId=user+one";
    let enc_secret = "userSecret=s3cr3t%2B%2F%3D+%26%C3%A9";
    let expected_paths = [
        "GET /accounts?",
        &format!("GET /accounts/{ACC1}/positions/all?"),
        &format!("GET /accounts/{ACC1}/balances?"),
        "GET /accounts/acc%2F2%20%C3%A9/positions/all?",
        "GET /accounts/acc%2F2%20%C3%A9/balances?",
    ];
    for (seen, want) in fake.seen.iter().zip(expected_paths) {
        let prefix = format!("{want}{enc_user}&{enc_secret}&clientId={CLIENT_ID}&timestamp=");
        assert!(seen.starts_with(&prefix), "{seen} vs {prefix}");
    }
    assert_eq!(
        fake.last_params[..2],
        [
            ("userId".to_owned(), USER.to_owned()),
            ("userSecret".to_owned(), SECRET.to_owned())
        ]
    );
}

#[tokio::test]
async fn connection_accounts_and_prefix() {
    let mut seeded = seeded("/proxy/snaptrade");
    seeded
        .accounts
        .push(json!({"id": "elsewhere", "brokerage_authorization": "other"}));
    let (addr, fake) = serve(seeded).await;
    let c = client(addr, "/proxy/snaptrade/", KEY);
    let list = c
        .list_connection_accounts(USER, SECRET, AUTH)
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(c.list_accounts(USER, SECRET).await.unwrap().len(), 3);
    let fake = fake.lock().unwrap();
    assert!(
        fake.seen[0].starts_with(&format!(
            "GET /proxy/snaptrade/authorizations/{AUTH}/accounts?userId="
        )),
        "{}",
        fake.seen[0]
    );
    assert_eq!(fake.verified, 2);
}

#[tokio::test]
async fn register_and_login() {
    let (addr, fake) = serve(seeded("")).await;
    let c = client(addr, "", KEY);
    let secret = c.register_user("new user ✓").await.unwrap();
    assert_eq!(secret, "secret-of-new user ✓");
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.last_body, Some(json!({"userId": "new user ✓"})));
        assert!(
            fake.seen[0]
                .starts_with("POST /snapTrade/registerUser?clientId=APPLIANCE-TEST&timestamp=")
        );
    }
    let err = c.register_user("new user ✓").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Status(400, "User already exist (code 1010)".into())
    );

    let uri = c.login_link("new user ✓", &secret).await.unwrap();
    assert!(uri.starts_with("https://app.snaptrade.com/snapTrade/redeemToken"));
    assert_eq!(
        fake.lock().unwrap().last_body,
        None,
        "{{}} is signed as null"
    );

    let options = LoginOptions {
        reconnect: Some(AUTH.into()),
        immediate_redirect: Some(true),
        ..LoginOptions::default()
    };
    c.login_link_with(USER, SECRET, &options).await.unwrap();
    assert_eq!(
        fake.lock().unwrap().last_body,
        Some(json!({"reconnect": AUTH, "immediateRedirect": true}))
    );
    assert_eq!(fake.lock().unwrap().verified, 4);
}

#[tokio::test]
async fn wrong_consumer_key_is_unauthorized() {
    let (addr, fake) = serve(seeded("")).await;
    let c = client(addr, "", "not-the-key");
    let err = c.list_accounts(USER, SECRET).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Unauthorized("Unable to verify signature sent (code 1076)".into())
    );
    no_secrets(&err);
    let err = c.snapshot(USER, SECRET).await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized(_)));
    assert!(!err.is_retryable());
    assert_eq!(fake.lock().unwrap().verified, 0);
}

#[tokio::test]
async fn wrong_user_secret_is_unauthorized_and_scrubbed() {
    let (addr, _fake) = serve(seeded("")).await;
    let c = client(addr, "", KEY);
    // The fake echoes the query (with this secret) into its error detail.
    let wrong = SECRET.replace('s', "z");
    let err = c.list_accounts(USER, &wrong).await.unwrap_err();
    let ApiError::Unauthorized(detail) = &err else {
        panic!("{err:?}");
    };
    assert!(
        detail.contains("Invalid userID or userSecret provided"),
        "{detail}"
    );
    assert!(detail.contains("userSecret=<redacted>"), "{detail}");
    let encoded: String = form_urlencoded::byte_serialize(wrong.as_bytes()).collect();
    assert!(
        !detail.contains(&encoded) && !detail.contains(&wrong),
        "{detail}"
    );
}

#[tokio::test]
async fn rate_limited_then_fine() {
    let mut seeded = seeded("");
    seeded.failures.insert(
        "/accounts".into(),
        Failure {
            status: 429,
            headers: vec![("retry-after", "7"), ("content-type", "application/json")],
            body: r#"{"detail":"Request was throttled. Expected available in 3 seconds.","status_code":429,"code":"0000"}"#.into(),
            times: 1,
        },
    );
    seeded.failures.insert(
        format!("/accounts/{ACC1}/positions/all"),
        Failure {
            status: 429,
            headers: vec![
                ("x-ratelimit-account-remaining", "0"),
                ("x-ratelimit-account-reset", "41"),
            ],
            body: String::new(),
            times: 1,
        },
    );
    let (addr, _fake) = serve(seeded).await;
    let c = client(addr, "", KEY);
    let err = c.snapshot(USER, SECRET).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.is_retryable());
    let err = c.snapshot(USER, SECRET).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(41)));
    // The limits have passed: the same calls succeed.
    assert_eq!(c.snapshot(USER, SECRET).await.unwrap().accounts.len(), 2);
}

#[tokio::test]
async fn server_errors_and_all_or_nothing() {
    let mut seeded = seeded("");
    seeded.failures.insert(
        "/accounts/acc%2F2%20%C3%A9/balances".into(),
        Failure {
            status: 500,
            headers: vec![],
            body: "<html>Internal Server Error</html>".into(),
            times: 1,
        },
    );
    seeded.failures.insert(
        "/accounts".into(),
        Failure {
            status: 503,
            headers: vec![("content-type", "application/json")],
            body: r#"{"detail":"Brokerage is busy syncing","code":"3020"}"#.into(),
            times: 1,
        },
    );
    let (addr, fake) = serve(seeded).await;
    let c = client(addr, "", KEY);
    let err = c.snapshot(USER, SECRET).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Status(503, "Brokerage is busy syncing (code 3020)".into())
    );
    assert!(err.is_retryable());
    // The last account's balances fail: no snapshot at all.
    let err = c.snapshot(USER, SECRET).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Status(500, "<html>Internal Server Error</html>".into())
    );
    assert_eq!(fake.lock().unwrap().seen.len(), 6);
    let snap = c.snapshot(USER, SECRET).await.unwrap();
    assert_eq!(snap.accounts.len(), 2);
}

#[tokio::test]
async fn gone_not_found_and_bad_answers() {
    let mut seeded = seeded("");
    seeded
        .positions
        .insert(ACC2.into(), json!([{"units": "many"}]));
    seeded
        .balances
        .insert(ACC2.into(), json!({"not": "a list"}));
    let (addr, _fake) = serve(seeded).await;
    let c = client(addr, "", KEY);
    // The deprecated holdings endpoint, to check 410 mapping.
    let err = c
        .send(user_call(
            Method::GET,
            format!("/accounts/{ACC1}/holdings"),
            USER,
            SECRET,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::Gone("This endpoint is no longer available for your account.".into())
    );
    let err = c.positions(USER, SECRET, "missing").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Status(
            404,
            "The requested resource does not exist. (code 1011)".into()
        )
    );
    assert!(!err.is_retryable());
    let err = c.positions(USER, SECRET, ACC2).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Decode("positions[0].units is not a number".into())
    );
    let err = c.balances(USER, SECRET, ACC2).await.unwrap_err();
    assert_eq!(err, ApiError::Decode("balances: expected a list".into()));
}

#[tokio::test]
async fn transport_errors_hide_the_url() {
    // A port nobody listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(addr, "", KEY);
    let err = c.list_accounts(USER, SECRET).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Transport(m) if m.starts_with("could not connect")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    no_secrets(&err);
    assert!(!err.to_string().contains("userSecret"), "{err}");

    let c = Client::new(
        "not a url",
        CLIENT_ID.into(),
        KEY.into(),
        reqwest::Client::new(),
    );
    let err = c.list_accounts(USER, SECRET).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Invalid(m) if m.starts_with("base URL")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    no_secrets(&err);
}

#[tokio::test]
async fn dot_ids_never_reach_another_endpoint() {
    let (addr, fake) = serve(seeded("")).await;
    let c = client(addr, "", KEY);
    for id in ["", ".", ".."] {
        let err = c.balances(USER, SECRET, id).await.unwrap_err();
        assert!(matches!(err, ApiError::Invalid(_)), "{err:?}");
        let err = c
            .list_connection_accounts(USER, SECRET, id)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Invalid(_)), "{err:?}");
    }
    assert!(fake.lock().unwrap().seen.is_empty());
}

#[tokio::test]
async fn oversized_and_non_json_answers() {
    async fn big(_: Request) -> Response {
        let body = vec![b' '; MAX_RESPONSE + 1];
        (StatusCode::OK, body).into_response()
    }
    async fn html(_: Request) -> Response {
        (StatusCode::OK, "<html>maintenance</html>").into_response()
    }
    for (handler, want) in [
        (axum::Router::new().fallback(big), "response larger than"),
        (axum::Router::new().fallback(html), "not JSON"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, handler).await.unwrap() });
        let err = client(addr, "", KEY)
            .list_accounts(USER, SECRET)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Decode(m) if m.contains(want)),
            "{err:?}"
        );
    }
}
