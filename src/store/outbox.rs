//! Deliveries: claim with a lease, record attempts, revive, replay, list.

use super::{StoreError, now_ms};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// A delivery claimed for one attempt, with what the target needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub route: String,
    /// Attempts made before this one, in total and in the current schedule round.
    pub attempts: i64,
    pub step: i64,
    pub event: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Pending again, due at this Unix ms.
    RetryAt(i64),
    Dead,
}

/// One attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptRow {
    pub at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliverySummary {
    pub id: i64,
    pub event: i64,
    pub event_id: String,
    pub provider: String,
    pub event_type: String,
    pub route: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub route: Option<String>,
    pub event: Option<i64>,
    pub before: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revive {
    Revived,
    NotDead,
    NotFound,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    pub pending: i64,
    pub dead: i64,
    /// Unix ms of the oldest pending delivery's creation.
    pub oldest_pending_ms: Option<i64>,
}

pub(super) fn claim(
    conn: &Connection,
    route: &str,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "UPDATE deliveries SET lease_until = ?1
             WHERE id IN (SELECT id FROM deliveries
                          WHERE status = 'pending' AND route = ?2 AND next_attempt_at <= ?3
                            AND (lease_until IS NULL OR lease_until < ?3)
                          ORDER BY next_attempt_at, id LIMIT ?4)
             RETURNING id",
        )?
        .query_map(params![lease_until, route, now, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.route, d.attempts, d.step, e.id, e.provider, e.event_id, e.event_type, e.body, e.headers
         FROM deliveries d JOIN events e ON e.id = d.event WHERE d.id = ?1",
    )?;
    for id in ids {
        let c = stmt.query_row([id], |r| {
            let headers: String = r.get(9)?;
            Ok(Claimed {
                delivery_id: r.get(0)?,
                route: r.get(1)?,
                attempts: r.get(2)?,
                step: r.get(3)?,
                event: r.get(4)?,
                provider: r.get(5)?,
                event_id: r.get(6)?,
                event_type: r.get(7)?,
                body: r.get(8)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
            })
        })?;
        out.push(c);
    }
    out.sort_by_key(|c| c.delivery_id);
    Ok(out)
}

pub(super) fn record(
    conn: &Connection,
    delivery: i64,
    attempt: &AttemptRow,
    next: Next,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery, at, duration_ms, status_code, exit_code, error, response_excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        delivery,
        attempt.at_ms,
        attempt.duration_ms,
        attempt.status_code,
        attempt.exit_code,
        attempt.error,
        attempt.response_excerpt
    ])?;
    let (status, next_at) = match next {
        Next::Delivered => ("delivered", None),
        Next::RetryAt(t) => ("pending", Some(t)),
        Next::Dead => ("dead", None),
    };
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1, step = step + 1,
            next_attempt_at = ?3, lease_until = NULL, last_error = ?4, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![delivery, status, next_at, attempt.error, now_ms()])?;
    Ok(())
}

pub(super) fn revive(conn: &Connection, id: i64) -> Result<Revive, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM deliveries WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match status.as_deref() {
        None => Ok(Revive::NotFound),
        Some("dead") => {
            let now = now_ms();
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'pending', step = 0, next_attempt_at = ?2,
                    lease_until = NULL, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
            Ok(Revive::Revived)
        }
        Some(_) => Ok(Revive::NotDead),
    }
}

pub(super) fn revive_all_dead(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let now = now_ms();
    let ids = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', step = 0, next_attempt_at = ?1,
                lease_until = NULL, updated_at = ?1 WHERE status = 'dead' RETURNING id",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

pub(super) fn add(
    conn: &Connection,
    event: i64,
    routes: &[String],
) -> Result<Vec<i64>, StoreError> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT id FROM events WHERE id = ?1")?
        .query_row([event], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (event, route, status, attempts, step, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, 'pending', 0, 0, ?3, ?3, ?3) RETURNING id",
    )?;
    let mut ids = Vec::with_capacity(routes.len());
    for r in routes {
        ids.push(stmt.query_row(params![event, r, now], |row| row.get(0))?);
    }
    Ok(ids)
}

pub(super) fn release_leases(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE deliveries SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL",
        [],
    )?)
}

/// Earliest due time among pending, unleased deliveries of these routes.
pub(super) fn next_due(conn: &Connection, now: i64) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(CASE WHEN lease_until IS NOT NULL AND lease_until >= ?1 THEN lease_until ELSE next_attempt_at END)
             FROM deliveries WHERE status = 'pending'",
        )?
        .query_row([now], |r| r.get(0))?)
}

fn summary(r: &Row<'_>) -> rusqlite::Result<DeliverySummary> {
    Ok(DeliverySummary {
        id: r.get(0)?,
        event: r.get(1)?,
        event_id: r.get(2)?,
        provider: r.get(3)?,
        event_type: r.get(4)?,
        route: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at_ms: r.get(8)?,
        last_error: r.get(9)?,
        created_at_ms: r.get(10)?,
        updated_at_ms: r.get(11)?,
    })
}

pub(super) fn list(
    conn: &Connection,
    f: &DeliveryFilter,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut sql = String::from(
        "SELECT d.id, d.event, e.event_id, e.provider, e.event_type, d.route, d.status, d.attempts,
                d.next_attempt_at, d.last_error, d.created_at, d.updated_at
         FROM deliveries d JOIN events e ON e.id = d.event WHERE 1 = 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(s) = &f.status {
        args.push(s.clone().into());
        sql.push_str(&format!(" AND d.status = ?{}", args.len()));
    }
    if let Some(r) = &f.route {
        args.push(r.clone().into());
        sql.push_str(&format!(" AND d.route = ?{}", args.len()));
    }
    if let Some(e) = f.event {
        args.push(e.into());
        sql.push_str(&format!(" AND d.event = ?{}", args.len()));
    }
    if let Some(b) = f.before {
        args.push(b.into());
        sql.push_str(&format!(" AND d.id < ?{}", args.len()));
    }
    args.push((f.limit as i64).into());
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", args.len()));
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), summary)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn attempts(conn: &Connection, delivery: i64) -> Result<Vec<AttemptRow>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT at, duration_ms, status_code, exit_code, error, response_excerpt
             FROM attempts WHERE delivery = ?1 ORDER BY id",
        )?
        .query_map([delivery], |r| {
            Ok(AttemptRow {
                at_ms: r.get(0)?,
                duration_ms: r.get(1)?,
                status_code: r.get(2)?,
                exit_code: r.get(3)?,
                error: r.get(4)?,
                response_excerpt: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn stats(conn: &Connection) -> Result<OutboxStats, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending'),
                    (SELECT count(*) FROM deliveries WHERE status = 'dead'),
                    (SELECT min(created_at) FROM deliveries WHERE status = 'pending')",
        )?
        .query_row([], |r| {
            Ok(OutboxStats {
                pending: r.get(0)?,
                dead: r.get(1)?,
                oldest_pending_ms: r.get(2)?,
            })
        })?)
}
