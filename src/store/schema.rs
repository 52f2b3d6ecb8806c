//! Numbered migrations, applied in order and recorded in `PRAGMA user_version`.
//! Never edit or remove a shipped migration: add a new one. A database written
//! by a newer binary (higher version than we know) is refused, not downgraded.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: events, dedup tombstones, outbox deliveries and their attempts, meta.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE events (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        provider     TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        event_type   TEXT NOT NULL,
        received_at  INTEGER NOT NULL,          -- Unix milliseconds
        source_ip    TEXT,
        headers      TEXT NOT NULL,             -- JSON [[name, value], ...], secrets redacted
        body         BLOB NOT NULL,
        verification TEXT NOT NULL,
        UNIQUE (provider, event_id)
    );
    CREATE INDEX events_by_provider ON events (provider, id);
    CREATE INDEX events_by_type ON events (event_type, id);
    -- Pruned events leave their (provider, event_id) so a late repeat is still a duplicate.
    CREATE TABLE tombstones (
        provider    TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (provider, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        event           INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        route           TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,   -- every attempt ever made
        step            INTEGER NOT NULL DEFAULT 0,   -- attempts since the schedule (re)started
        next_attempt_at INTEGER,                -- Unix ms; NULL unless pending
        lease_until     INTEGER,                -- Unix ms while claimed by a worker
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deliveries_by_event ON deliveries (event);
    CREATE INDEX deliveries_due ON deliveries (route, next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_by_status ON deliveries (status, id);
    CREATE TABLE attempts (
        id               INTEGER PRIMARY KEY,
        delivery         INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        at               INTEGER NOT NULL,
        duration_ms      INTEGER NOT NULL,
        status_code      INTEGER,
        exit_code        INTEGER,
        error            TEXT,
        response_excerpt TEXT
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery);
    "#,
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database is at schema version {found}, newer than this binary knows ({known}); upgrade appliance or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    if found == 0 {
        // Must precede the first table; lets `db prune` give space back.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
