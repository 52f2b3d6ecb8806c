//! Events: insert with dedup (and their outbox rows in the same transaction),
//! list and show.

use super::{StoreError, now_ms};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// An event that passed verification, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub source_ip: Option<String>,
    /// Already redacted.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub verification: String,
    /// Names of the routes this event matches: one pending delivery each.
    pub routes: Vec<String>,
    /// SnapTrade state this event changes, applied in the same transaction.
    pub projection: Option<crate::snaptrade::Projection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now, with this row id; `deliveries` rows created.
    Accepted { id: i64, deliveries: usize },
    /// Already known: the existing row id (None when the original was pruned).
    Duplicate { id: Option<i64> },
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub provider: Option<String>,
    /// Glob with `*`.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    /// none | pending | delivered | dead
    pub status: Option<String>,
    /// Exclusive upper bound on the row id.
    pub before: Option<i64>,
    /// Exclusive lower bound on the row id; with it, the list is oldest first.
    pub after: Option<i64>,
    /// Only rows received at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EventSummary {
    pub id: i64,
    pub provider: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub received_at_ms: i64,
    pub source_ip: Option<String>,
    pub status: String,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct EventDetail {
    pub summary: EventSummary,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub verification: String,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub id: i64,
    pub route: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub attempts_list: Vec<super::AttemptRow>,
}

pub(super) fn insert(
    conn: &Connection,
    ev: &NewEvent,
    headers: &str,
) -> Result<Inserted, StoreError> {
    let tomb: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM tombstones WHERE provider = ?1 AND event_id = ?2")?
        .query_row(params![ev.provider, ev.event_id], |r| r.get(0))
        .optional()?;
    if tomb.is_some() {
        return Ok(Inserted::Duplicate { id: None });
    }
    let changed = conn
        .prepare_cached(
            "INSERT INTO events (provider, event_id, event_type, received_at, source_ip, headers, body, verification)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (provider, event_id) DO NOTHING",
        )?
        .execute(params![
            ev.provider,
            ev.event_id,
            ev.event_type,
            ev.received_at_ms,
            ev.source_ip,
            headers,
            ev.body,
            ev.verification
        ])?;
    if changed == 0 {
        let id: Option<i64> = conn
            .prepare_cached("SELECT id FROM events WHERE provider = ?1 AND event_id = ?2")?
            .query_row(params![ev.provider, ev.event_id], |r| r.get(0))
            .optional()?;
        return Ok(Inserted::Duplicate { id });
    }
    let id = conn.last_insert_rowid();
    if !ev.routes.is_empty() {
        let now = now_ms();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO deliveries (event, route, status, attempts, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3)",
        )?;
        for r in &ev.routes {
            stmt.execute(params![id, r, now])?;
        }
    }
    if let Some(p) = &ev.projection {
        super::snaptrade::apply(conn, id, p)?;
    }
    Ok(Inserted::Accepted {
        id,
        deliveries: ev.routes.len(),
    })
}

const STATUS_SQL: &str = "CASE
    WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id) THEN 'none'
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND d.status = 'pending') THEN 'pending'
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND d.status = 'dead') THEN 'dead'
    ELSE 'delivered' END";

fn summary(r: &Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get(0)?,
        provider: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        received_at_ms: r.get(4)?,
        source_ip: r.get(5)?,
        status: r.get(6)?,
        size: r.get(7)?,
    })
}

/// Our `*` glob as an SQLite GLOB pattern (which also knows `?` and `[..]`).
fn sqlite_glob(g: &str) -> String {
    let mut out = String::with_capacity(g.len());
    for c in g.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn list(conn: &Connection, f: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
    let mut sql = format!(
        "SELECT * FROM (SELECT e.id, e.provider, e.event_id, e.event_type, e.received_at, e.source_ip, {STATUS_SQL} AS status, length(e.body)
         FROM events e WHERE 1 = 1"
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(p) = &f.provider {
        args.push(p.clone().into());
        sql.push_str(&format!(" AND e.provider = ?{}", args.len()));
    }
    if let Some(t) = &f.event_type {
        args.push(sqlite_glob(t).into());
        sql.push_str(&format!(" AND e.event_type GLOB ?{}", args.len()));
    }
    if let Some(id) = &f.event_id {
        args.push(id.clone().into());
        sql.push_str(&format!(" AND e.event_id = ?{}", args.len()));
    }
    if let Some(b) = f.before {
        args.push(b.into());
        sql.push_str(&format!(" AND e.id < ?{}", args.len()));
    }
    if let Some(a) = f.after {
        args.push(a.into());
        sql.push_str(&format!(" AND e.id > ?{}", args.len()));
    }
    if let Some(s) = f.since_ms {
        // An id bound first (found by binary search), so no scan.
        args.push(first_id_since(conn, TimeTable::Events, s)?.into());
        sql.push_str(&format!(" AND e.id >= ?{}", args.len()));
        args.push(s.into());
        sql.push_str(&format!(" AND e.received_at >= ?{}", args.len()));
    }
    sql.push_str(") WHERE 1 = 1");
    if let Some(s) = &f.status {
        args.push(s.clone().into());
        sql.push_str(&format!(" AND status = ?{}", args.len()));
    }
    args.push((f.limit as i64).into());
    let order = if f.after.is_some() { "ASC" } else { "DESC" };
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), summary)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn get(conn: &Connection, id: i64) -> Result<Option<EventDetail>, StoreError> {
    let sql = format!(
        "SELECT e.id, e.provider, e.event_id, e.event_type, e.received_at, e.source_ip, {STATUS_SQL}, length(e.body),
                e.headers, e.body, e.verification
         FROM events e WHERE e.id = ?1"
    );
    let row = conn
        .prepare_cached(&sql)?
        .query_row([id], |r| {
            Ok((
                summary(r)?,
                r.get::<_, String>(8)?,
                r.get::<_, Vec<u8>>(9)?,
                r.get::<_, String>(10)?,
            ))
        })
        .optional()?;
    let Some((summary, headers, body, verification)) = row else {
        return Ok(None);
    };
    let headers: Vec<(String, String)> = serde_json::from_str(&headers).unwrap_or_default();
    let deliveries = conn
        .prepare_cached(
            "SELECT id, route, status, attempts, next_attempt_at, last_error
             FROM deliveries WHERE event = ?1 ORDER BY id",
        )?
        .query_map([id], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                route: r.get(1)?,
                status: r.get(2)?,
                attempts: r.get(3)?,
                next_attempt_at_ms: r.get(4)?,
                last_error: r.get(5)?,
                attempts_list: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut deliveries = deliveries;
    for d in &mut deliveries {
        d.attempts_list = super::outbox::attempts(conn, d.id)?;
    }
    Ok(Some(EventDetail {
        summary,
        headers,
        body,
        verification,
        deliveries,
    }))
}

/// The newest row id, and the oldest still stored (None when empty).
pub(super) fn id_range(conn: &Connection) -> Result<(Option<i64>, Option<i64>), StoreError> {
    Ok(conn
        .prepare_cached("SELECT max(id), min(id) FROM events")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// (provider, events in the last hour, events in the last day)
    pub providers: Vec<(String, i64, i64)>,
    /// (minute start in Unix ms, provider, events) over the last hour
    pub per_minute: Vec<(i64, String, i64)>,
    /// deliveries created in the last hour / day, by status
    pub deliveries_hour: Vec<(String, i64)>,
    pub deliveries_day: Vec<(String, i64)>,
}

/// The first row id of `table` whose time column is at or after `t` (Unix
/// ms), by binary search over the row ids: rows are written in time order
/// (to within the few ms between a request's start and its commit), so this
/// stands in for an index on the time column that every insert would pay for.
pub(super) fn first_id_since(
    conn: &Connection,
    table: TimeTable,
    t: i64,
) -> Result<i64, StoreError> {
    let (range, probe) = match table {
        TimeTable::Events => (
            "SELECT min(id), max(id) FROM events",
            "SELECT id, received_at FROM events WHERE id >= ?1 ORDER BY id LIMIT 1",
        ),
        TimeTable::Deliveries => (
            "SELECT min(id), max(id) FROM deliveries",
            "SELECT id, created_at FROM deliveries WHERE id >= ?1 ORDER BY id LIMIT 1",
        ),
    };
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .prepare_cached(range)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    let mut hi = hi + 1; // answer in [lo, hi]; hi = past the end
    let mut stmt = conn.prepare_cached(probe)?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, i64)> = stmt
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((id, at)) if at < t => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum TimeTable {
    Events,
    Deliveries,
}

pub(super) fn stats(conn: &Connection, now: i64) -> Result<Stats, StoreError> {
    let hour = now - 3_600_000;
    let day = now - 86_400_000;
    let day_id = first_id_since(conn, TimeTable::Events, day)?;
    let hour_id = first_id_since(conn, TimeTable::Events, hour)?;
    let providers = conn
        .prepare_cached(
            "SELECT provider, sum(id >= ?1), count(*) FROM events WHERE id >= ?2
             GROUP BY provider ORDER BY provider",
        )?
        .query_map(params![hour_id, day_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let per_minute = conn
        .prepare_cached(
            "SELECT (received_at / 60000) * 60000 AS m, provider, count(*) FROM events
             WHERE id >= ?1 GROUP BY m, provider ORDER BY m, provider",
        )?
        .query_map(params![hour_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let by_status = |since: i64| -> Result<Vec<(String, i64)>, StoreError> {
        let from = first_id_since(conn, TimeTable::Deliveries, since)?;
        Ok(conn
            .prepare_cached(
                "SELECT status, count(*) FROM deliveries WHERE id >= ?1 GROUP BY status ORDER BY status",
            )?
            .query_map(params![from], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    };
    Ok(Stats {
        providers,
        per_minute,
        deliveries_hour: by_status(hour)?,
        deliveries_day: by_status(day)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(times: &[i64]) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        for (i, t) in times.iter().enumerate() {
            conn.execute(
                "INSERT INTO events (provider, event_id, event_type, received_at, headers, body, verification)
                 VALUES ('p', ?1, 't', ?2, '[]', x'', '')",
                params![i.to_string(), t],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn first_id_since_finds_the_boundary() {
        let conn = db(&[10, 20, 20, 30, 40]);
        let at = |t| first_id_since(&conn, TimeTable::Events, t).unwrap();
        assert_eq!(at(0), 1);
        assert_eq!(at(10), 1);
        assert_eq!(at(11), 2);
        assert_eq!(at(20), 2);
        assert_eq!(at(21), 4);
        assert_eq!(at(40), 5);
        assert_eq!(at(41), 6, "past the newest: nothing");
        // With gaps in the ids (pruned rows).
        conn.execute("DELETE FROM events WHERE id IN (2, 3)", [])
            .unwrap();
        // Any bound that selects exactly rows 4 and 5 is right.
        assert!((2..=4).contains(&at(15)), "{}", at(15));
        assert_eq!(at(5), 1);
        assert_eq!(first_id_since(&db(&[]), TimeTable::Events, 5).unwrap(), 0);
    }
}
