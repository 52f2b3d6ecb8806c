use super::*;
use serde_json::json;

fn vectors() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/signatures.json"
    )))
    .unwrap()
}

fn parse(v: Value) -> Webhook {
    Webhook::parse(v.to_string().as_bytes()).unwrap()
}

/// An API-key schema payload of `event_type` with the given extra fields.
fn api_key(event_type: &str, extra: Value) -> Webhook {
    let mut doc = json!({
        "webhookId": "0b6f3f9e-1d2c-4c56-9a1e-2f7d8c9b0a11",
        "clientId": "APPLIANCETEST",
        "eventTimestamp": "2025-03-04T05:06:07.123456+00:00",
        "userId": "user-1",
        "eventType": event_type,
        "webhookSecret": "legacy-secret-value",
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut doc, extra) {
        map.extend(more);
    }
    parse(doc)
}

const AUTH: &str = "5d1c2b3a-0000-4000-8000-00000000a001";
const ACCOUNT: &str = "5d1c2b3a-0000-4000-8000-00000000b002";
const BROKERAGE: &str = "5d1c2b3a-0000-4000-8000-00000000c003";

#[test]
fn vector_body_parses() {
    let raw = vectors()["snaptrade_webhook"]["raw_body_example"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = Webhook::parse(raw.as_bytes()).unwrap();
    assert_eq!(w.event_type, EventType::ConnectionAdded);
    assert_eq!(w.schema, Schema::ApiKey);
    assert_eq!(
        w.user_id.as_deref(),
        Some("oWbLZ3OWsO3Nt8DKJnYxM32wLLD6h6SVj0ywkDmypUlkWkqsI5")
    );
    assert_eq!(
        w.authorization_id.as_deref(),
        Some("a0231bd2-9b77-4732-ba78-f9c6af6a1a62")
    );
    assert_eq!(
        w.brokerage.as_deref(),
        Some("c8153291-0761-43a8-8ed0-4642103c2cb8")
    );
    assert_eq!(w.account_id, None);
    assert_eq!(
        w.webhook_id.as_deref(),
        Some("7467e5e4-4b59-4514-9d04-d05dbc10dea9")
    );
    // 2022-05-31T11:13:37.269120+00:00
    assert_eq!(w.event_timestamp_ms, Some(1_653_995_617_269));
    assert_eq!(w.event_timestamp_us, Some(1_653_995_617_269_120));
    assert_eq!(w.raw["clientId"], "cJEQQgtDIb");
    assert!(w.raw.get("webhookSecret").is_none(), "secret kept in raw");
    assert!(!format!("{w:?}").contains("ZSDkaLCRJndeZGgeaJnV"));

    let e = effect(&w);
    assert_eq!(
        e,
        Effect {
            user: None,
            connection: Some(ConnectionChange {
                status: Some(ConnectionStatus::Active),
                last_event: "CONNECTION_ADDED".into(),
                detail: None,
            }),
            account: None,
            sync: true,
        }
    );
}

#[test]
fn non_ascii_vector_parses() {
    let payload = vectors()["snaptrade_webhook_non_ascii"]["payload"].clone();
    let w = parse(payload);
    assert_eq!(w.event_type, EventType::UserRegistered);
    assert_eq!(w.user_id.as_deref(), Some("Zoë ✓"));
    assert_eq!(w.event_timestamp_ms, None);
    assert_eq!(effect(&w).user, Some(UserChange::Registered));
}

#[test]
fn every_event_type_maps_to_its_effect() {
    use ConnectionStatus::*;
    let conn = |status: Option<ConnectionStatus>, name: &str, detail: Option<&str>| {
        Some(ConnectionChange {
            status,
            last_event: name.into(),
            detail: detail.map(Into::into),
        })
    };
    let full = json!({
        "brokerageId": BROKERAGE,
        "brokerageAuthorizationId": AUTH,
        "accountId": ACCOUNT,
    });
    let cases: Vec<(&str, Value, Effect)> = vec![
        (
            "USER_REGISTERED",
            json!({}),
            Effect {
                user: Some(UserChange::Registered),
                ..Effect::default()
            },
        ),
        (
            "USER_DELETED",
            json!({}),
            Effect {
                user: Some(UserChange::Deleted),
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_ADDED",
            full.clone(),
            Effect {
                connection: conn(Some(Active), "CONNECTION_ADDED", None),
                sync: true,
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_BROKEN",
            json!({"brokerageAuthorizationId": AUTH}),
            Effect {
                connection: conn(Some(Broken), "CONNECTION_BROKEN", None),
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_FIXED",
            json!({"brokerageAuthorizationId": AUTH}),
            Effect {
                connection: conn(Some(Active), "CONNECTION_FIXED", None),
                sync: true,
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_UPDATED",
            json!({"brokerageAuthorizationId": AUTH}),
            Effect {
                connection: conn(None, "CONNECTION_UPDATED", None),
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_DELETED",
            full.clone(),
            Effect {
                connection: conn(Some(Deleted), "CONNECTION_DELETED", None),
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_FAILED",
            json!({"brokerageAuthorizationId": AUTH, "details": {"reason": "mfa"}}),
            Effect {
                connection: conn(None, "CONNECTION_FAILED", Some(r#"{"reason":"mfa"}"#)),
                ..Effect::default()
            },
        ),
        (
            "CONNECTION_ATTEMPTED",
            json!({"brokerageAuthorizationId": AUTH, "connectionAttemptedResult": "INVALID_CREDENTIALS"}),
            Effect {
                connection: conn(None, "CONNECTION_ATTEMPTED", Some("INVALID_CREDENTIALS")),
                ..Effect::default()
            },
        ),
        (
            "NEW_ACCOUNT_AVAILABLE",
            full.clone(),
            Effect {
                account: Some(AccountChange::Available),
                sync: true,
                ..Effect::default()
            },
        ),
        (
            "ACCOUNT_REMOVED",
            full.clone(),
            Effect {
                account: Some(AccountChange::Removed),
                ..Effect::default()
            },
        ),
        (
            "ACCOUNT_HOLDINGS_UPDATED",
            json!({
                "accountId": ACCOUNT, "brokerageId": BROKERAGE, "brokerageAuthorizationId": AUTH,
                "details": {"positions": {"success": true, "error": null}}
            }),
            Effect {
                sync: true,
                ..Effect::default()
            },
        ),
        (
            "ACCOUNT_TRANSACTIONS_INITIAL_UPDATE",
            full.clone(),
            Effect::default(),
        ),
        (
            "ACCOUNT_TRANSACTIONS_UPDATED",
            full.clone(),
            Effect::default(),
        ),
        ("TRANSACTIONS_UPDATED", full.clone(), Effect::default()),
        ("TRADE_DETECTION", full.clone(), Effect::default()),
        ("TRADE_UPDATE", full.clone(), Effect::default()),
        ("SOMETHING_NEW", full.clone(), Effect::default()),
    ];
    for (name, extra, want) in cases {
        let w = api_key(name, extra);
        assert_eq!(w.event_type.as_str(), name);
        assert_eq!(effect(&w), want, "{name}");
    }
}

#[test]
fn account_event_fields() {
    let w = api_key(
        "NEW_ACCOUNT_AVAILABLE",
        json!({"accountId": ACCOUNT, "brokerageAuthorizationId": AUTH}),
    );
    assert_eq!(w.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(w.authorization_id.as_deref(), Some(AUTH));
    assert_eq!(w.brokerage, None);
}

#[test]
fn oauth_v1_payloads() {
    let w = parse(json!({
        "schemaVersion": "oauth_v1",
        "webhookId": "35a74573-0000-4000-8000-000000000001",
        "oauthClientId": "portfolio-app",
        "eventTimestamp": "2026-08-12T18:22:47.039837+00:00",
        "userId": "e474391b-0000-4000-8000-000000000002",
        "eventType": "CONNECTION_ATTEMPTED",
        "brokerageId": BROKERAGE,
        "connectionId": AUTH,
        "connectionAttemptedResult": "SUCCESS",
        "details": {"sessionId": "s-1"}
    }));
    assert_eq!(w.schema, Schema::OAuthV1);
    assert_eq!(w.authorization_id.as_deref(), Some(AUTH));
    assert_eq!(w.brokerage.as_deref(), Some(BROKERAGE));
    assert_eq!(w.attempt_result.as_deref(), Some("SUCCESS"));
    assert_eq!(w.event_timestamp_us, Some(1_786_558_967_039_837));
    assert_eq!(
        effect(&w).connection,
        Some(ConnectionChange {
            status: None,
            last_event: "CONNECTION_ATTEMPTED".into(),
            detail: Some("SUCCESS".into()),
        })
    );

    let broken = parse(json!({
        "schemaVersion": "oauth_v1", "webhookId": "w", "oauthClientId": "app",
        "eventTimestamp": "2026-08-12T18:22:47+00:00", "userId": "u",
        "eventType": "CONNECTION_BROKEN", "connectionId": AUTH,
        "brokerageAuthorizationId": "not-this-one"
    }));
    assert_eq!(broken.authorization_id.as_deref(), Some(AUTH));
    assert_eq!(
        effect(&broken).connection.map(|c| c.status),
        Some(Some(ConnectionStatus::Broken))
    );

    let account = parse(json!({
        "schemaVersion": "oauth_v1", "webhookId": "w2", "oauthClientId": "app",
        "eventTimestamp": "2026-08-12T18:22:47+00:00", "userId": "u",
        "eventType": "NEW_ACCOUNT_AVAILABLE", "connectionId": AUTH, "accountId": ACCOUNT
    }));
    let e = effect(&account);
    assert_eq!(e.account, Some(AccountChange::Available));
    assert!(e.sync);

    // The API-key schema prefers brokerageAuthorizationId; an unknown schema
    // version is parsed like it.
    let both = json!({"brokerageAuthorizationId": AUTH, "connectionId": "other"});
    assert_eq!(
        api_key("CONNECTION_FIXED", both)
            .authorization_id
            .as_deref(),
        Some(AUTH)
    );
    let future = parse(
        json!({"schemaVersion": "oauth_v2", "eventType": "CONNECTION_ADDED", "connectionId": AUTH}),
    );
    assert_eq!(future.schema, Schema::Other("oauth_v2".into()));
    assert_eq!(future.authorization_id.as_deref(), Some(AUTH));
}

#[test]
fn field_fallbacks() {
    let w = parse(json!({"eventType": "TRADE_DETECTION", "webookId": "misspelt"}));
    assert_eq!(w.webhook_id.as_deref(), Some("misspelt"));
    let w = parse(json!({"eventType": "X", "webookId": "old", "webhookId": "new"}));
    assert_eq!(w.webhook_id.as_deref(), Some("new"));

    for (doc, want) in [
        (json!({"brokerage": "ROBINHOOD"}), Some("ROBINHOOD")),
        (
            json!({"brokerage": {"slug": "ALPACA", "name": "Alpaca"}}),
            Some("ALPACA"),
        ),
        (
            json!({"brokerage": {"name": "Questrade"}}),
            Some("Questrade"),
        ),
        (json!({"brokerageSlug": "IBKR"}), Some("IBKR")),
        (
            json!({"brokerageName": "Wealthsimple"}),
            Some("Wealthsimple"),
        ),
        (
            json!({"brokerageId": BROKERAGE, "brokerage": "X"}),
            Some(BROKERAGE),
        ),
        (json!({"brokerageId": "", "brokerage": 5}), None),
    ] {
        assert_eq!(
            api_key("CONNECTION_ADDED", doc.clone())
                .brokerage
                .as_deref(),
            want,
            "{doc}"
        );
    }

    // Empty and non-string values are absent, so nothing is keyed on them.
    let w = api_key(
        "CONNECTION_BROKEN",
        json!({"userId": "  ", "brokerageAuthorizationId": 42, "accountId": null}),
    );
    assert_eq!(
        (
            w.user_id.clone(),
            w.authorization_id.clone(),
            w.account_id.clone()
        ),
        (None, None, None)
    );
    assert_eq!(effect(&w), Effect::default());
}

#[test]
fn changes_need_their_keys() {
    // No authorization id: nothing to key the connection on (the docs'
    // CONNECTION_FAILED example has none), but the sync still runs.
    let w = api_key("CONNECTION_FAILED", json!({}));
    assert_eq!(effect(&w).connection, None);
    let w = api_key("CONNECTION_ADDED", json!({}));
    assert_eq!(
        effect(&w),
        Effect {
            sync: true,
            ..Effect::default()
        }
    );
    // No user: no sync, no user change.
    let w = parse(json!({"eventType": "CONNECTION_ADDED", "brokerageAuthorizationId": AUTH}));
    let e = effect(&w);
    assert!(!e.sync);
    assert!(e.connection.is_some());
    let w = parse(json!({"eventType": "USER_DELETED"}));
    assert_eq!(effect(&w), Effect::default());
    let w = api_key("ACCOUNT_REMOVED", json!({"brokerageAuthorizationId": AUTH}));
    assert_eq!(effect(&w).account, None);
}

#[test]
fn detail_is_bounded() {
    let long = "é".repeat(1000);
    let w = api_key(
        "CONNECTION_FAILED",
        json!({"brokerageAuthorizationId": AUTH, "details": long}),
    );
    let detail = effect(&w).connection.unwrap().detail.unwrap();
    assert!(detail.len() <= DETAIL_MAX, "{}", detail.len());
    assert!(detail.ends_with("..."));
    for empty in [json!({}), json!(""), json!(null)] {
        let w = api_key(
            "CONNECTION_UPDATED",
            json!({"brokerageAuthorizationId": AUTH, "details": empty}),
        );
        assert_eq!(effect(&w).connection.unwrap().detail, None);
    }
}

#[test]
fn unusable_bodies() {
    for (body, err) in [
        (&b""[..], ParseError::NotJson),
        (b"{", ParseError::NotJson),
        (b"\xff\xfe", ParseError::NotJson),
        (b"[]", ParseError::NotObject),
        (b"null", ParseError::NotObject),
        (b"\"CONNECTION_ADDED\"", ParseError::NotObject),
        (b"{}", ParseError::MissingEventType),
        (b"{\"eventType\": 3}", ParseError::MissingEventType),
        (b"{\"eventType\": \"\"}", ParseError::MissingEventType),
    ] {
        assert_eq!(
            Webhook::parse(body),
            Err(err),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let deep = "[".repeat(100_000);
    assert_eq!(Webhook::parse(deep.as_bytes()), Err(ParseError::NotJson));
}

#[test]
fn event_type_names_round_trip() {
    for (t, name) in NAMED {
        assert_eq!(EventType::parse(name), *t);
        assert_eq!(t.as_str(), *name);
        assert_eq!(t.to_string(), *name);
    }
    assert_eq!(
        EventType::parse("connection_added"),
        EventType::Other("connection_added".into())
    );
    assert_eq!(EventType::Other("X_Y".into()).as_str(), "X_Y");
    assert_eq!(ConnectionStatus::Broken.as_str(), "broken");
}

// ---------------------------------------------------------------- time

const T0: i64 = 1_642_795_879_217_000; // 2022-01-21T20:11:19.217Z in µs

#[test]
fn timestamps_with_offsets() {
    for text in [
        "2022-01-21T20:11:19.217Z",
        "2022-01-21T20:11:19.217z",
        "2022-01-21T20:11:19.217000+00:00",
        "2022-01-21T20:11:19.217000-00:00",
        "2022-01-21T15:11:19.217000-05:00",
        "2022-01-21T15:11:19.217-0500",
        "2022-01-21T15:11:19.217-05",
        "2022-01-22T01:41:19.217+05:30",
        "2022-01-22T01:41:19.217+0530",
        "2022-01-21 20:11:19.217",
        "2022-01-21t20:11:19.217000",
        "  2022-01-21T20:11:19.217000+00:00\n",
        "2022-01-21T20:11:19.217000999+00:00",
    ] {
        assert_eq!(parse_timestamp_us(text), Some(T0), "{text}");
    }
    assert_eq!(
        parse_timestamp_us("2022-01-21T20:11:19Z"),
        Some(T0 - 217_000)
    );
    assert_eq!(
        parse_timestamp_us("2022-01-21T20:11:19.000001+00:00"),
        Some(T0 - 216_999)
    );
    // Crossing midnight and a year boundary through the offset.
    assert_eq!(
        parse_timestamp_us("2021-12-31T23:30:00-01:00"),
        parse_timestamp_us("2022-01-01T00:30:00Z")
    );
    assert_eq!(parse_timestamp_us("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_timestamp_us("2000-02-29T00:00:00Z"),
        Some(951_782_400_000_000)
    );
}

#[test]
fn bad_timestamps_are_none() {
    for text in [
        "",
        "yesterday",
        "2022-01-21",
        "2022-01-21T20:11",
        "2022-02-30T00:00:00Z",
        "2022-13-01T00:00:00Z",
        "2022-01-21T24:00:00Z",
        "2022-01-21T20:11:19+24:00",
        "2022-01-21T20:11:19+05:60",
        "2022-01-21T20:11:19+5:00",
        "2022-01-21T20:11:19+05:0",
        "2022-01-21T20:11:19+05:00:00",
        "2022-01-21T20:11:19+0a:00",
        "2022-01-21T20:11:19.abc+00:00",
        "2022-01-21T20:11:19Zjunk",
        "2022-01-21T20:11:19 junk",
        "2022-01-21X20:11:19Z",
        "2022-01-21T20:11:19.217000+00:00+00:00",
        "1969-12-31T23:59:59Z",
        "２０２２-01-21T20:11:19Z",
        "+2022-01-21T20:11:19Z",
    ] {
        assert_eq!(parse_timestamp_us(text), None, "{text:?}");
    }
}

#[test]
fn timestamp_fields() {
    let at = |v: Value| {
        let w = parse(json!({"eventType": "CONNECTION_UPDATED", "eventTimestamp": v}));
        (w.event_timestamp_us, w.event_timestamp_ms)
    };
    assert_eq!(
        at(json!("2022-01-21T15:11:19.217999-05:00")),
        (Some(T0 + 999), Some(1_642_795_879_217))
    );
    assert_eq!(
        at(json!(1_642_795_879)),
        (Some(1_642_795_879_000_000), Some(1_642_795_879_000))
    );
    assert_eq!(
        at(json!(1_642_795_879_217_i64)),
        (Some(T0), Some(1_642_795_879_217))
    );
    assert_eq!(
        at(json!(1_642_795_879.5)),
        (Some(1_642_795_879_500_000), Some(1_642_795_879_500))
    );
    assert_eq!(at(json!("not a time")), (None, None));
    assert_eq!(at(json!(null)), (None, None));
    assert_eq!(at(json!(1e300)), (None, None));
    assert_eq!(at(json!({"at": 1})), (None, None));
}

// ---------------------------------------------------------------- the rule

/// A toy store applying the module documentation's rule, to show that it
/// converges whatever the delivery order, replays included.
#[derive(Debug, Default, Clone, PartialEq)]
struct ToyConnection {
    status: Option<&'static str>,
    status_key: Option<(Option<i64>, i64)>,
    last_event: Option<String>,
    last_key: Option<(Option<i64>, i64)>,
}

fn apply(c: &mut ToyConnection, w: &Webhook, row_id: i64) {
    let Some(change) = effect(w).connection else {
        return;
    };
    let key = (w.event_timestamp_us, row_id);
    if c.last_key.is_none_or(|stored| key >= stored) {
        c.last_event = Some(change.last_event.clone());
        c.last_key = Some(key);
    }
    if let Some(status) = change.status
        && c.status_key.is_none_or(|stored| key >= stored)
    {
        c.status = Some(status.as_str());
        c.status_key = Some(key);
    }
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, *first);
            out.push(p);
        }
    }
    out
}

#[test]
fn ordering_rule_converges() {
    let ev = |t: &str, ts: Option<&str>| {
        let mut doc = json!({"eventType": t, "userId": "u", "brokerageAuthorizationId": AUTH});
        if let (Some(ts), Value::Object(m)) = (ts, &mut doc) {
            m.insert("eventTimestamp".into(), json!(ts));
        }
        parse(doc)
    };
    let events = [
        ev("CONNECTION_ADDED", Some("2025-01-01T10:00:00.000001+00:00")),
        ev(
            "CONNECTION_BROKEN",
            Some("2025-01-01T10:00:00.000002+00:00"),
        ),
        // Same millisecond as BROKEN, later microsecond: FIXED wins.
        ev("CONNECTION_FIXED", Some("2025-01-01T05:00:00.000003-05:00")),
        ev("CONNECTION_UPDATED", Some("2025-01-02T00:00:00Z")),
        ev("CONNECTION_BROKEN", None), // no timestamp: oldest of all
    ];
    let want = ToyConnection {
        status: Some("active"),
        status_key: Some((events[2].event_timestamp_us, 3)),
        last_event: Some("CONNECTION_UPDATED".into()),
        last_key: Some((events[3].event_timestamp_us, 4)),
    };
    for order in permutations(&[0, 1, 2, 3, 4]) {
        let mut c = ToyConnection::default();
        for &i in &order {
            // row id = position in the store; fixed per event.
            apply(&mut c, &events[i], i64::try_from(i).unwrap() + 1);
        }
        assert_eq!(c, want, "{order:?}");
        // Replaying everything again changes nothing.
        let before = c.clone();
        for &i in order.iter().rev() {
            apply(&mut c, &events[i], i64::try_from(i).unwrap() + 1);
        }
        assert_eq!(c, before, "replay {order:?}");
    }

    // Alone, the untimestamped event still sets the state.
    let mut c = ToyConnection::default();
    apply(&mut c, &events[4], 5);
    assert_eq!(c.status, Some("broken"));
}
