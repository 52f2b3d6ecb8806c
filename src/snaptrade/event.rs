//! SnapTrade webhooks as the projections see them: a stored (already
//! verified) body parsed into a typed [`Webhook`], and [`effect`], the pure
//! mapping from a webhook to what the projection must change.
//!
//! Two payload schemas exist (<https://docs.snaptrade.com/docs/webhooks>):
//! the API-key schema (`webhookId`, `clientId`, `eventTimestamp`, `userId`,
//! `eventType`, `brokerageId`, `brokerageAuthorizationId`, `accountId`,
//! `connectionAttemptedResult`, `details`, and the deprecated `webhookSecret`)
//! and the OAuth schema (`schemaVersion: "oauth_v1"`, `oauthClientId`, and
//! `connectionId` in place of `brokerageAuthorizationId`). Both parse into the
//! same [`Webhook`]; unknown fields are ignored and unknown event types become
//! [`EventType::Other`].
//!
//! # Ordering rule for the store (never let an older event undo a newer one)
//!
//! SnapTrade delivers at least once, retries for hours and does not keep
//! order, and `events replay` / `snaptrade rebuild` re-apply old events. The
//! projection therefore never trusts arrival order. Each projected *field
//! group* keeps the ordering key of the event that last wrote it:
//!
//! ```text
//! key(event) = (event_timestamp_us, event_row_id)
//!     event_timestamp_us : Option<i64>, None (missing or unparsable) sorts
//!                          before every Some  (Rust's Option ordering)
//!     event_row_id       : the stored event's row id (unique, arrival order)
//!
//! apply the change to a field group  <=>  key(event) >= key stored with that group
//!                                         (or the group/row does not exist yet)
//! ```
//!
//! - **Newer wins, older is ignored**: the comparison is on SnapTrade's own
//!   `eventTimestamp`, at the microsecond precision SnapTrade sends
//!   ([`Webhook::event_timestamp_us`]; `event_timestamp_ms` is the same
//!   instant truncated, for display and for millisecond columns; comparing
//!   milliseconds only would turn two distinct events in the same
//!   millisecond into a tie decided by arrival order).
//! - **Ties**: `>=` on the whole key. Two *distinct* events never tie, as
//!   row ids are unique: equal timestamps are decided by the row id, i.e.
//!   the later-stored event wins, deterministically and identically on
//!   `rebuild`. The *same* event re-applied (replay) has an equal key and
//!   applies again, writing the same values: replays are idempotent.
//! - **Missing timestamps** sort oldest: such an event can set a group that
//!   has no timestamped writer yet (missing vs. missing is decided by row
//!   id), but never overrides anything a timestamped event wrote.
//! - The result is the state written by the maximum-key event of each group,
//!   whatever the delivery order; `rebuild` (all events in row-id order)
//!   gives the same state.
//!
//! Field groups, each with its own key columns (`*_ts_us`, `*_event_id`):
//! - connection **status** (`active|broken|deleted`): only events whose
//!   [`ConnectionChange::status`] is `Some` compare against and advance it.
//!   A separate group matters: `CONNECTION_UPDATED` (no status) at t3 must
//!   not block a late `CONNECTION_FIXED` at t2 from undoing a
//!   `CONNECTION_BROKEN` at t1;
//! - connection **last event** (`last_event`, `detail`, `updated_at`): every
//!   connection change;
//! - **user** status (registered/deleted) and **account** presence
//!   (available/removed): their own change kinds;
//! - descriptive attributes (`brokerage`, `user_id`, the account's
//!   authorization id): filled when the event carries them and the row has
//!   none; never replaced by an absent value.
//!
//! Data learnt by a sync (accounts, holdings) is stamped with the time the
//! sync *started* fetching: a sync that started before an `ACCOUNT_REMOVED`
//! was stamped must not resurrect that account, and of two overlapping syncs
//! the one that started later wins the holdings, which are replaced as a whole.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use serde_json::Value;
use std::fmt;

/// The `eventType` of a SnapTrade webhook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    UserRegistered,
    UserDeleted,
    ConnectionAdded,
    ConnectionBroken,
    ConnectionFixed,
    ConnectionUpdated,
    ConnectionDeleted,
    ConnectionFailed,
    ConnectionAttempted,
    NewAccountAvailable,
    AccountRemoved,
    AccountHoldingsUpdated,
    AccountTransactionsInitialUpdate,
    AccountTransactionsUpdated,
    TransactionsUpdated,
    TradeDetection,
    TradeUpdate,
    /// Any other type, exactly as sent.
    Other(String),
}

const NAMED: &[(EventType, &str)] = &[
    (EventType::UserRegistered, "USER_REGISTERED"),
    (EventType::UserDeleted, "USER_DELETED"),
    (EventType::ConnectionAdded, "CONNECTION_ADDED"),
    (EventType::ConnectionBroken, "CONNECTION_BROKEN"),
    (EventType::ConnectionFixed, "CONNECTION_FIXED"),
    (EventType::ConnectionUpdated, "CONNECTION_UPDATED"),
    (EventType::ConnectionDeleted, "CONNECTION_DELETED"),
    (EventType::ConnectionFailed, "CONNECTION_FAILED"),
    (EventType::ConnectionAttempted, "CONNECTION_ATTEMPTED"),
    (EventType::NewAccountAvailable, "NEW_ACCOUNT_AVAILABLE"),
    (EventType::AccountRemoved, "ACCOUNT_REMOVED"),
    (
        EventType::AccountHoldingsUpdated,
        "ACCOUNT_HOLDINGS_UPDATED",
    ),
    (
        EventType::AccountTransactionsInitialUpdate,
        "ACCOUNT_TRANSACTIONS_INITIAL_UPDATE",
    ),
    (
        EventType::AccountTransactionsUpdated,
        "ACCOUNT_TRANSACTIONS_UPDATED",
    ),
    (EventType::TransactionsUpdated, "TRANSACTIONS_UPDATED"),
    (EventType::TradeDetection, "TRADE_DETECTION"),
    (EventType::TradeUpdate, "TRADE_UPDATE"),
];

impl EventType {
    /// The type from its wire name (exact, case-sensitive, as SnapTrade sends it).
    pub fn parse(name: &str) -> EventType {
        NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map_or_else(|| EventType::Other(name.to_owned()), |(t, _)| t.clone())
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Other(name) => name,
            known => NAMED
                .iter()
                .find(|(t, _)| t == known)
                .map_or("", |(_, n)| n),
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which payload schema the webhook uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// No `schemaVersion`: the API-key schema.
    ApiKey,
    /// `schemaVersion: "oauth_v1"`.
    OAuthV1,
    /// Another `schemaVersion`, parsed on a best-effort basis.
    Other(String),
}

/// A stored SnapTrade webhook body, parsed. Strings that are empty in the
/// payload are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub event_type: EventType,
    pub schema: Schema,
    pub user_id: Option<String>,
    /// The connection: `brokerageAuthorizationId`, or `connectionId` (oauth_v1).
    pub authorization_id: Option<String>,
    /// `brokerageId`, else a brokerage slug or name when the payload has one.
    pub brokerage: Option<String>,
    pub account_id: Option<String>,
    /// `eventTimestamp` in Unix microseconds (see the module's ordering rule).
    pub event_timestamp_us: Option<i64>,
    /// `eventTimestamp` in Unix milliseconds (floor of the microseconds).
    pub event_timestamp_ms: Option<i64>,
    /// `webhookId` (or the misspelt `webookId` some payloads carry).
    pub webhook_id: Option<String>,
    /// `connectionAttemptedResult` (`SUCCESS`, `INVALID_CREDENTIALS`, ...).
    pub attempt_result: Option<String>,
    /// The whole body, minus the deprecated `webhookSecret` (a secret).
    pub raw: Value,
}

/// Why a stored body is not a usable SnapTrade webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("body is not a JSON object")]
    NotObject,
    #[error("missing eventType")]
    MissingEventType,
}

/// Fields that carry the connection id, in order of preference per schema.
const API_KEY_AUTH_FIELDS: [&str; 2] = ["brokerageAuthorizationId", "connectionId"];
const OAUTH_AUTH_FIELDS: [&str; 2] = ["connectionId", "brokerageAuthorizationId"];

impl Webhook {
    /// Parses a stored body (the bytes as received).
    pub fn parse(body: &[u8]) -> Result<Webhook, ParseError> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
        Webhook::from_value(doc)
    }

    /// Parses an already decoded body.
    pub fn from_value(mut doc: Value) -> Result<Webhook, ParseError> {
        let map = doc.as_object_mut().ok_or(ParseError::NotObject)?;
        map.remove("webhookSecret");
        let doc = &doc;
        let event_type = text(doc, "eventType")
            .map(EventType::parse)
            .ok_or(ParseError::MissingEventType)?;
        let schema = match text(doc, "schemaVersion") {
            None => Schema::ApiKey,
            Some("oauth_v1") => Schema::OAuthV1,
            Some(other) => Schema::Other(other.to_owned()),
        };
        let auth_fields = match schema {
            Schema::OAuthV1 => OAUTH_AUTH_FIELDS,
            _ => API_KEY_AUTH_FIELDS,
        };
        let event_timestamp_us = doc.get("eventTimestamp").and_then(timestamp_value_us);
        Ok(Webhook {
            schema,
            user_id: owned(text(doc, "userId")),
            authorization_id: owned(auth_fields.iter().find_map(|k| text(doc, k))),
            brokerage: brokerage(doc),
            account_id: owned(text(doc, "accountId")),
            event_timestamp_us,
            event_timestamp_ms: event_timestamp_us.map(|us| us.div_euclid(1000)),
            webhook_id: owned(["webhookId", "webookId"].iter().find_map(|k| text(doc, k))),
            attempt_result: owned(text(doc, "connectionAttemptedResult")),
            event_type,
            raw: doc.clone(),
        })
    }
}

/// `doc[key]` when it is a non-empty string (surrounding whitespace trimmed).
fn text<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// `brokerageId`; else `brokerage` as a string or as an object's
/// `id`/`slug`/`name`; else `brokerageSlug` / `brokerageName`.
fn brokerage(doc: &Value) -> Option<String> {
    if let Some(id) = text(doc, "brokerageId") {
        return Some(id.to_owned());
    }
    if let Some(b) = doc.get("brokerage") {
        if let Some(s) = b.as_str().map(str::trim).filter(|s| !s.is_empty()) {
            return Some(s.to_owned());
        }
        if let Some(s) = ["id", "slug", "name"].iter().find_map(|k| text(b, k)) {
            return Some(s.to_owned());
        }
    }
    owned(
        ["brokerageSlug", "brokerageName"]
            .iter()
            .find_map(|k| text(doc, k)),
    )
}

// ---------------------------------------------------------------- time

/// An `eventTimestamp` value in Unix microseconds: an RFC 3339 string (see
/// [`parse_timestamp_us`]), or a JSON number of Unix seconds (milliseconds
/// when it is above 10^11, i.e. after 5138 as seconds).
fn timestamp_value_us(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_timestamp_us(s),
        Value::Number(n) => {
            let f = n.as_f64()?;
            let us = if f.abs() >= 1e11 { f * 1e3 } else { f * 1e6 };
            // Bounded well inside i64, so the cast cannot saturate silently.
            (us.is_finite() && us.abs() < 9.0e18).then(|| us.round() as i64)
        }
        _ => None,
    }
}

/// An RFC 3339 / ISO 8601 timestamp as SnapTrade (Python's `isoformat`)
/// writes it, in Unix microseconds:
/// `2022-05-31T11:13:37.269120+00:00`, `...-05:00`, `...Z`, any number of
/// fractional digits (beyond microseconds truncated), `t`/space for `T`,
/// offsets `±HH:MM`, `±HHMM` or `±HH`; no offset at all is read as UTC.
/// `None` for anything else, including impossible dates and years before 1970.
///
/// humantime checks and converts the date and time of day (it only knows
/// UTC, and `parse_rfc3339_weak` silently ignores other offsets, so it is
/// given the UTC form); the offset is parsed and applied here.
pub fn parse_timestamp_us(text: &str) -> Option<i64> {
    let s = text.trim();
    if !s.is_ascii() || s.len() < 19 {
        return None;
    }
    let (civil, offset_secs) = split_offset(s)?;
    let mut civil = civil.to_owned();
    // Only the date/time separator (byte 10) may be 't' or ' '.
    match civil.as_bytes().get(10) {
        Some(b'T') => {}
        Some(b't' | b' ') => civil.replace_range(10..11, "T"),
        _ => return None,
    }
    if civil
        .get(19..)
        .is_some_and(|frac| !frac.is_empty() && !frac.starts_with('.'))
    {
        return None;
    }
    civil.push('Z');
    let time = humantime::parse_rfc3339(&civil).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    let secs = i64::try_from(since.as_secs()).ok()?;
    let micros = i64::from(since.subsec_micros());
    secs.checked_sub(offset_secs)?
        .checked_mul(1_000_000)?
        .checked_add(micros)
}

/// Splits `s` (ASCII, at least 19 bytes) into the civil part and the UTC
/// offset in seconds.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(civil) = s.strip_suffix(['Z', 'z']) {
        return Some((civil, 0));
    }
    // The offset sign can only come after the time of day (byte 19 on).
    let tail = s.get(19..)?;
    let Some(pos) = tail.rfind(['+', '-']) else {
        return Some((s, 0)); // naive: UTC
    };
    let (civil, offset) = s.split_at_checked(pos.checked_add(19)?)?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset.get(1..)?.chars().filter(|c| *c != ':').collect();
    let colon_ok = match offset.len() {
        3 | 5 => !offset.contains(':'),               // ±HH, ±HHMM
        6 => offset.as_bytes().get(3) == Some(&b':'), // ±HH:MM
        _ => false,
    };
    if !colon_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits.get(0..2)?.parse().ok()?;
    let minutes: i64 = match digits.get(2..4) {
        Some(m) => m.parse().ok()?,
        None => 0,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((civil, sign * (hours * 3600 + minutes * 60)))
}

// ---------------------------------------------------------------- effect

/// What a webhook asks of the projections. Built by [`effect`]; applied by
/// the store under the ordering rule of the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effect {
    /// Change to the user keyed by [`Webhook::user_id`].
    pub user: Option<UserChange>,
    /// Change to the connection keyed by [`Webhook::authorization_id`].
    pub connection: Option<ConnectionChange>,
    /// Change to the account keyed by [`Webhook::account_id`] (under
    /// [`Webhook::authorization_id`] when present).
    pub account: Option<AccountChange>,
    /// Enqueue a holdings sync for [`Webhook::user_id`].
    pub sync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Registered,
    /// SnapTrade deleted the user and all of its data.
    Deleted,
}

/// A connection's status as the read API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Active,
    Broken,
    Deleted,
}

impl ConnectionStatus {
    /// `active`, `broken` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Broken => "broken",
            ConnectionStatus::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionChange {
    /// The new status; `None` records the event without changing the status
    /// (`CONNECTION_UPDATED`, `CONNECTION_FAILED`, `CONNECTION_ATTEMPTED`).
    pub status: Option<ConnectionStatus>,
    /// The event type, as sent.
    pub last_event: String,
    /// The outcome of an attempt (`connectionAttemptedResult`), else a
    /// compact excerpt of the payload's `details` object, if any.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    Available,
    Removed,
}

/// Longest `detail` kept, in bytes.
const DETAIL_MAX: usize = 500;

/// What the projections must do for `w`. A change is only produced when the
/// payload has the key it applies to (`user_id`, `authorization_id`,
/// `account_id`); a sync only when there is a user to sync.
/// `CONNECTION_ADDED`, `CONNECTION_FIXED`, `NEW_ACCOUNT_AVAILABLE` and
/// `ACCOUNT_HOLDINGS_UPDATED` ask for a sync. Transaction and trade events,
/// and unknown types, change nothing (they are still stored and routed).
pub fn effect(w: &Webhook) -> Effect {
    use EventType as T;
    let connection = |status: Option<ConnectionStatus>| {
        w.authorization_id.as_ref().map(|_| ConnectionChange {
            status,
            last_event: w.event_type.as_str().to_owned(),
            detail: detail(w),
        })
    };
    let user = |change| w.user_id.as_ref().map(|_| change);
    let account = |change| w.account_id.as_ref().map(|_| change);
    let mut e = Effect::default();
    match &w.event_type {
        T::UserRegistered => e.user = user(UserChange::Registered),
        T::UserDeleted => e.user = user(UserChange::Deleted),
        T::ConnectionAdded => {
            e.connection = connection(Some(ConnectionStatus::Active));
            e.sync = true;
        }
        T::ConnectionFixed => {
            e.connection = connection(Some(ConnectionStatus::Active));
            e.sync = true;
        }
        T::ConnectionBroken => e.connection = connection(Some(ConnectionStatus::Broken)),
        T::ConnectionDeleted => e.connection = connection(Some(ConnectionStatus::Deleted)),
        T::ConnectionUpdated | T::ConnectionFailed | T::ConnectionAttempted => {
            e.connection = connection(None);
        }
        T::NewAccountAvailable => {
            e.account = account(AccountChange::Available);
            e.sync = true;
        }
        T::AccountRemoved => e.account = account(AccountChange::Removed),
        T::AccountHoldingsUpdated => e.sync = true,
        T::AccountTransactionsInitialUpdate
        | T::AccountTransactionsUpdated
        | T::TransactionsUpdated
        | T::TradeDetection
        | T::TradeUpdate
        | T::Other(_) => {}
    }
    e.sync &= w.user_id.is_some();
    e
}

fn detail(w: &Webhook) -> Option<String> {
    if let Some(result) = &w.attempt_result {
        return Some(result.clone());
    }
    let details = w.raw.get("details").filter(|d| match d {
        Value::Object(m) => !m.is_empty(),
        Value::String(s) => !s.trim().is_empty(),
        Value::Null => false,
        _ => true,
    })?;
    let text = match details {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    Some(truncate(text, DETAIL_MAX))
}

/// `s` cut to at most `max` bytes on a character boundary, `...` marking a cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
    s
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
