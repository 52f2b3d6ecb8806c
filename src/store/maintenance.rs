//! Backup, retention and integrity: what `appliance db` and the daily
//! retention job ask of the database.

use super::{StoreError, now_ms};
use rusqlite::{Connection, params};
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub events: usize,
    pub deliveries: usize,
}

/// Copy the database to `dest` with SQLite's online backup API, in one step
/// (one read transaction: a consistent snapshot, never restarted by writes).
pub(super) fn backup(src: &Connection, dest: &Path) -> Result<(), StoreError> {
    if dest.exists() {
        return Err(StoreError::Sqlite(format!(
            "{} already exists; choose a new file",
            dest.display()
        )));
    }
    let mut out = Connection::open(dest)?;
    {
        let b = rusqlite::backup::Backup::new(src, &mut out)?;
        b.step(-1)?;
    }
    // A self-contained file: no -wal beside it.
    out.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// One batch of pruning: events received before `before_ms` whose
/// deliveries are all delivered (or, with `dead`, delivered or dead), and
/// that have none pending. Each leaves a tombstone so a late repeat is still
/// a duplicate. Returns what was removed; call again until it removes nothing.
pub(super) fn prune_batch(
    conn: &Connection,
    before_ms: i64,
    dead: bool,
    limit: usize,
) -> Result<PruneReport, StoreError> {
    let blocking = if dead {
        "'pending'"
    } else {
        "'pending', 'dead'"
    };
    let ids: Vec<i64> = conn
        .prepare(&format!(
            "SELECT e.id FROM events e WHERE e.received_at < ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id AND d.status IN ({blocking}))
             ORDER BY e.id LIMIT ?2"
        ))?
        .query_map(params![before_ms, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut report = PruneReport::default();
    for id in ids {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO tombstones (provider, event_id, received_at)
             SELECT provider, event_id, received_at FROM events WHERE id = ?1",
        )?
        .execute([id])?;
        conn.prepare_cached(
            "DELETE FROM attempts WHERE delivery IN (SELECT id FROM deliveries WHERE event = ?1)",
        )?
        .execute([id])?;
        report.deliveries += conn
            .prepare_cached("DELETE FROM deliveries WHERE event = ?1")?
            .execute([id])?;
        report.events += conn
            .prepare_cached("DELETE FROM events WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(report)
}

/// Give freed pages back to the file system (auto_vacuum = INCREMENTAL).
pub(super) fn vacuum(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA incremental_vacuum;")?;
    Ok(())
}

/// `PRAGMA integrity_check`: `["ok"]` when healthy.
pub(super) fn integrity(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let rows = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Milliseconds cutoff for a retention period.
pub fn cutoff(retention: std::time::Duration) -> i64 {
    now_ms() - retention.as_millis() as i64
}
