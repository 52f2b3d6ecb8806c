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
    // 2: SnapTrade projections. Each field group keeps the ordering key
    // (event timestamp in µs, event row id) of the event that last wrote it.
    r#"
    CREATE TABLE snaptrade_users (
        provider     TEXT NOT NULL,
        user_id      TEXT NOT NULL,
        secret       TEXT,                       -- userSecret; never returned by the API
        status       TEXT,                       -- registered | deleted
        status_ts_us INTEGER,
        status_event INTEGER,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (provider, user_id)
    ) WITHOUT ROWID;
    CREATE TABLE snaptrade_connections (
        provider         TEXT NOT NULL,
        authorization_id TEXT NOT NULL,
        user_id          TEXT,
        brokerage        TEXT,
        status           TEXT,                   -- active | broken | deleted
        status_ts_us     INTEGER,
        status_event     INTEGER,
        last_event       TEXT,
        detail           TEXT,
        last_ts_us       INTEGER,
        last_event_row   INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (provider, authorization_id)
    ) WITHOUT ROWID;
    CREATE INDEX snaptrade_connections_by_user ON snaptrade_connections (provider, user_id);
    CREATE TABLE snaptrade_accounts (
        provider         TEXT NOT NULL,
        account_id       TEXT NOT NULL,
        authorization_id TEXT,
        user_id          TEXT,
        name             TEXT,
        number           TEXT,
        institution      TEXT,
        present          INTEGER NOT NULL DEFAULT 1,
        presence_ts_us   INTEGER,
        presence_event   INTEGER,
        sync_started_us  INTEGER,                -- the sync that wrote the holdings began then
        synced_at        INTEGER,                -- Unix ms
        PRIMARY KEY (provider, account_id)
    ) WITHOUT ROWID;
    CREATE INDEX snaptrade_accounts_by_user ON snaptrade_accounts (provider, user_id);
    CREATE TABLE snaptrade_positions (
        provider     TEXT NOT NULL,
        account_id   TEXT NOT NULL,
        symbol       TEXT NOT NULL,
        units        REAL,
        price        REAL,
        market_value REAL,
        currency     TEXT,
        synced_at    INTEGER NOT NULL
    );
    CREATE INDEX snaptrade_positions_by_account ON snaptrade_positions (provider, account_id);
    CREATE TABLE snaptrade_balances (
        provider   TEXT NOT NULL,
        account_id TEXT NOT NULL,
        currency   TEXT,
        cash       REAL,
        synced_at  INTEGER NOT NULL
    );
    CREATE INDEX snaptrade_balances_by_account ON snaptrade_balances (provider, account_id);
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
