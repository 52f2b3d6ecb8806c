//! SnapTrade projections: users, connections, accounts, holdings.
//!
//! Ordering rule (see `snaptrade::event`): each field group keeps the key
//! `(eventTimestamp µs, event row id)` of the event that last wrote it, and a
//! change applies only when its key is >= the stored one, a missing timestamp
//! sorting oldest. So replays and out-of-order deliveries converge, and an
//! older event never undoes a newer one. Holdings are replaced per account as
//! a whole by a sync, stamped with the time the sync started.

use super::{StoreError, now_ms};
use crate::snaptrade::Projection;
use crate::snaptrade::client::Snapshot;
use crate::snaptrade::event::{AccountChange, UserChange};
use rusqlite::{Connection, OptionalExtension, params};

fn key(ts: Option<i64>, row: Option<i64>) -> (i64, i64) {
    (ts.unwrap_or(i64::MIN), row.unwrap_or(i64::MIN))
}

/// Apply one event's projection (inside the event's transaction).
pub(super) fn apply(conn: &Connection, event: i64, p: &Projection) -> Result<(), StoreError> {
    let now = now_ms();
    let k = key(p.ts_us, Some(event));
    if let (Some(change), Some(user)) = (p.effect.user, &p.user_id) {
        let stored: Option<(Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT status_ts_us, status_event FROM snaptrade_users WHERE provider = ?1 AND user_id = ?2",
            )?
            .query_row(params![p.provider, user], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let status = match change {
            UserChange::Registered => "registered",
            UserChange::Deleted => "deleted",
        };
        match stored {
            None => {
                conn.prepare_cached(
                    "INSERT INTO snaptrade_users (provider, user_id, status, status_ts_us, status_event, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![p.provider, user, status, p.ts_us, event, now])?;
            }
            Some((ts, row)) if k >= key(ts, row) => {
                conn.prepare_cached(
                    "UPDATE snaptrade_users SET status = ?3, status_ts_us = ?4, status_event = ?5, updated_at = ?6
                     WHERE provider = ?1 AND user_id = ?2",
                )?
                .execute(params![p.provider, user, status, p.ts_us, event, now])?;
            }
            Some(_) => {}
        }
    }
    if let (Some(change), Some(auth)) = (&p.effect.connection, &p.authorization_id) {
        type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let stored: Option<Row> = conn
            .prepare_cached(
                "SELECT status_ts_us, status_event, last_ts_us, last_event_row FROM snaptrade_connections
                 WHERE provider = ?1 AND authorization_id = ?2",
            )?
            .query_row(params![p.provider, auth], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        if stored.is_none() {
            conn.prepare_cached(
                "INSERT INTO snaptrade_connections (provider, authorization_id, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![p.provider, auth, now])?;
        }
        let (sts, srow, lts, lrow) = stored.unwrap_or((None, None, None, None));
        // Descriptive attributes: filled when known, never blanked.
        conn.prepare_cached(
            "UPDATE snaptrade_connections SET user_id = coalesce(?3, user_id), brokerage = coalesce(?4, brokerage)
             WHERE provider = ?1 AND authorization_id = ?2",
        )?
        .execute(params![p.provider, auth, p.user_id, p.brokerage])?;
        if let Some(status) = change.status
            && k >= key(sts, srow)
        {
            conn.prepare_cached(
                "UPDATE snaptrade_connections SET status = ?3, status_ts_us = ?4, status_event = ?5, updated_at = ?6
                 WHERE provider = ?1 AND authorization_id = ?2",
            )?
            .execute(params![p.provider, auth, status.as_str(), p.ts_us, event, now])?;
        }
        if k >= key(lts, lrow) {
            conn.prepare_cached(
                "UPDATE snaptrade_connections SET last_event = ?3, detail = ?4, last_ts_us = ?5, last_event_row = ?6, updated_at = ?7
                 WHERE provider = ?1 AND authorization_id = ?2",
            )?
            .execute(params![p.provider, auth, change.last_event, change.detail, p.ts_us, event, now])?;
        }
    }
    if let (Some(change), Some(account)) = (p.effect.account, &p.account_id) {
        let stored: Option<(Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT presence_ts_us, presence_event FROM snaptrade_accounts WHERE provider = ?1 AND account_id = ?2",
            )?
            .query_row(params![p.provider, account], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if stored.is_none() {
            conn.prepare_cached(
                "INSERT INTO snaptrade_accounts (provider, account_id, present) VALUES (?1, ?2, 1)",
            )?
            .execute(params![p.provider, account])?;
        }
        conn.prepare_cached(
            "UPDATE snaptrade_accounts SET user_id = coalesce(?3, user_id), authorization_id = coalesce(?4, authorization_id)
             WHERE provider = ?1 AND account_id = ?2",
        )?
        .execute(params![p.provider, account, p.user_id, p.authorization_id])?;
        let (ts, row) = stored.unwrap_or((None, None));
        if k >= key(ts, row) {
            let present = matches!(change, AccountChange::Available);
            conn.prepare_cached(
                "UPDATE snaptrade_accounts SET present = ?3, presence_ts_us = ?4, presence_event = ?5
                 WHERE provider = ?1 AND account_id = ?2",
            )?
            .execute(params![p.provider, account, present, p.ts_us, event])?;
            if !present {
                clear_holdings(conn, &p.provider, account)?;
            }
        }
    }
    Ok(())
}

fn clear_holdings(conn: &Connection, provider: &str, account: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM snaptrade_positions WHERE provider = ?1 AND account_id = ?2")?
        .execute(params![provider, account])?;
    conn.prepare_cached("DELETE FROM snaptrade_balances WHERE provider = ?1 AND account_id = ?2")?
        .execute(params![provider, account])?;
    Ok(())
}

/// Replace the user's accounts' holdings with a complete snapshot.
pub(super) fn replace_snapshot(
    conn: &Connection,
    provider: &str,
    user: &str,
    snap: &Snapshot,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut listed = Vec::new();
    for (account, positions, balances) in &snap.accounts {
        listed.push(account.id.clone());
        let stored: Option<(i64, Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT present, presence_ts_us, sync_started_us FROM snaptrade_accounts WHERE provider = ?1 AND account_id = ?2",
            )?
            .query_row(params![provider, account.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((present, presence_ts, sync_started)) = stored {
            // An account removed after this sync began stays removed; a
            // later-started sync's holdings are not overwritten by ours.
            if present == 0 && presence_ts.is_some_and(|t| t >= snap.started_at_us) {
                continue;
            }
            if sync_started.is_some_and(|t| t > snap.started_at_us) {
                continue;
            }
        } else {
            conn.prepare_cached(
                "INSERT INTO snaptrade_accounts (provider, account_id, present) VALUES (?1, ?2, 1)",
            )?
            .execute(params![provider, account.id])?;
        }
        conn.prepare_cached(
            "UPDATE snaptrade_accounts SET user_id = ?3, authorization_id = coalesce(?4, authorization_id),
                name = ?5, number = ?6, institution = ?7, present = 1, sync_started_us = ?8, synced_at = ?9
             WHERE provider = ?1 AND account_id = ?2",
        )?
        .execute(params![
            provider,
            account.id,
            user,
            account.authorization_id,
            account.name,
            account.number,
            account.institution_name,
            snap.started_at_us,
            now
        ])?;
        clear_holdings(conn, provider, &account.id)?;
        let mut ins = conn.prepare_cached(
            "INSERT INTO snaptrade_positions (provider, account_id, symbol, units, price, market_value, currency, synced_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for pos in positions {
            ins.execute(params![
                provider,
                account.id,
                pos.symbol,
                pos.units,
                pos.price,
                pos.market_value,
                pos.currency,
                now
            ])?;
        }
        let mut ins = conn.prepare_cached(
            "INSERT INTO snaptrade_balances (provider, account_id, currency, cash, synced_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for b in balances {
            ins.execute(params![provider, account.id, b.currency, b.cash, now])?;
        }
    }
    // Accounts of this user that SnapTrade no longer lists are gone, unless
    // something newer than this sync says otherwise.
    let known: Vec<(String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT account_id, max(coalesce(presence_ts_us, 0), coalesce(sync_started_us, 0))
             FROM snaptrade_accounts WHERE provider = ?1 AND user_id = ?2 AND present = 1",
        )?
        .query_map(params![provider, user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (account, stamp) in known {
        if !listed.contains(&account) && stamp.unwrap_or(0) < snap.started_at_us {
            conn.prepare_cached(
                "UPDATE snaptrade_accounts SET present = 0, presence_ts_us = ?3 WHERE provider = ?1 AND account_id = ?2",
            )?
            .execute(params![provider, account, snap.started_at_us])?;
            clear_holdings(conn, provider, &account)?;
        }
    }
    Ok(())
}

/// Store (or replace) a user's secret and re-queue their dead sync jobs.
pub(super) fn set_user_secret(
    conn: &Connection,
    provider: &str,
    user: &str,
    secret: &str,
    sync_route: &str,
) -> Result<Vec<i64>, StoreError> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO snaptrade_users (provider, user_id, secret, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (provider, user_id) DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
    )?
    .execute(params![provider, user, secret, now])?;
    let ids = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', step = 0, next_attempt_at = ?4, lease_until = NULL, updated_at = ?4
             WHERE status = 'dead' AND route = ?3 AND event IN (
                 SELECT id FROM events WHERE provider = ?1
                   AND json_valid(CAST(body AS TEXT)) AND json_extract(CAST(body AS TEXT), '$.userId') = ?2)
             RETURNING id",
        )?
        .query_map(params![provider, user, sync_route, now], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

pub(super) fn user_secret(
    conn: &Connection,
    provider: &str,
    user: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT secret FROM snaptrade_users WHERE provider = ?1 AND user_id = ?2")?
        .query_row(params![provider, user], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Forget event-derived state (connections, user and account status) and
/// re-apply every stored event of the provider in row order. User secrets
/// and synced holdings are kept.
pub(super) fn rebuild(
    conn: &Connection,
    provider: &str,
    project: &dyn Fn(&[u8]) -> Option<Projection>,
) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM snaptrade_connections WHERE provider = ?1",
        [provider],
    )?;
    conn.execute(
        "UPDATE snaptrade_users SET status = NULL, status_ts_us = NULL, status_event = NULL WHERE provider = ?1",
        [provider],
    )?;
    conn.execute(
        "UPDATE snaptrade_accounts SET present = 1, presence_ts_us = NULL, presence_event = NULL WHERE provider = ?1",
        [provider],
    )?;
    let mut stmt = conn.prepare("SELECT id, body FROM events WHERE provider = ?1 ORDER BY id")?;
    let mut rows = stmt.query([provider])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let body: Vec<u8> = r.get(1)?;
        if let Some(p) = project(&body) {
            apply(conn, id, &p)?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionRow {
    pub authorization_id: String,
    pub user_id: Option<String>,
    pub brokerage: Option<String>,
    pub status: Option<String>,
    pub last_event: Option<String>,
    pub detail: Option<String>,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountRow {
    pub account_id: String,
    pub authorization_id: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub number: Option<String>,
    pub institution: Option<String>,
    pub present: bool,
    pub synced_at_ms: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PositionRow {
    pub account_id: String,
    pub symbol: String,
    pub units: Option<f64>,
    pub price: Option<f64>,
    pub market_value: Option<f64>,
    pub currency: Option<String>,
    pub synced_at_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BalanceRow {
    pub account_id: String,
    pub currency: Option<String>,
    pub cash: Option<f64>,
    pub synced_at_ms: i64,
}

pub(super) fn connections(
    conn: &Connection,
    provider: &str,
    user: Option<&str>,
) -> Result<Vec<ConnectionRow>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT authorization_id, user_id, brokerage, status, last_event, detail, updated_at
             FROM snaptrade_connections WHERE provider = ?1 AND (?2 IS NULL OR user_id = ?2)
             ORDER BY updated_at DESC, authorization_id",
        )?
        .query_map(params![provider, user], |r| {
            Ok(ConnectionRow {
                authorization_id: r.get(0)?,
                user_id: r.get(1)?,
                brokerage: r.get(2)?,
                status: r.get(3)?,
                last_event: r.get(4)?,
                detail: r.get(5)?,
                updated_at_ms: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn accounts(
    conn: &Connection,
    provider: &str,
    user: Option<&str>,
) -> Result<Vec<AccountRow>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT account_id, authorization_id, user_id, name, number, institution, present, synced_at
             FROM snaptrade_accounts WHERE provider = ?1 AND (?2 IS NULL OR user_id = ?2)
             ORDER BY account_id",
        )?
        .query_map(params![provider, user], |r| {
            Ok(AccountRow {
                account_id: r.get(0)?,
                authorization_id: r.get(1)?,
                user_id: r.get(2)?,
                name: r.get(3)?,
                number: r.get(4)?,
                institution: r.get(5)?,
                present: r.get::<_, i64>(6)? != 0,
                synced_at_ms: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn holdings(
    conn: &Connection,
    provider: &str,
    user: Option<&str>,
    account: Option<&str>,
) -> Result<(Vec<PositionRow>, Vec<BalanceRow>), StoreError> {
    let positions = conn
        .prepare_cached(
            "SELECT p.account_id, p.symbol, p.units, p.price, p.market_value, p.currency, p.synced_at
             FROM snaptrade_positions p JOIN snaptrade_accounts a
               ON a.provider = p.provider AND a.account_id = p.account_id
             WHERE p.provider = ?1 AND a.present = 1 AND (?2 IS NULL OR a.user_id = ?2) AND (?3 IS NULL OR p.account_id = ?3)
             ORDER BY p.account_id, p.symbol",
        )?
        .query_map(params![provider, user, account], |r| {
            Ok(PositionRow {
                account_id: r.get(0)?,
                symbol: r.get(1)?,
                units: r.get(2)?,
                price: r.get(3)?,
                market_value: r.get(4)?,
                currency: r.get(5)?,
                synced_at_ms: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let balances = conn
        .prepare_cached(
            "SELECT b.account_id, b.currency, b.cash, b.synced_at
             FROM snaptrade_balances b JOIN snaptrade_accounts a
               ON a.provider = b.provider AND a.account_id = b.account_id
             WHERE b.provider = ?1 AND a.present = 1 AND (?2 IS NULL OR a.user_id = ?2) AND (?3 IS NULL OR b.account_id = ?3)
             ORDER BY b.account_id, b.currency",
        )?
        .query_map(params![provider, user, account], |r| {
            Ok(BalanceRow {
                account_id: r.get(0)?,
                currency: r.get(1)?,
                cash: r.get(2)?,
                synced_at_ms: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((positions, balances))
}
