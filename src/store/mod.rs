//! The only module that speaks SQL. SQLite in WAL mode: one writer thread with
//! group commit (see `writer`), readers from an r2d2 pool on blocking threads.
//! The rest of the program asks for what it needs (`insert_event`,
//! `list_events`, ...) and never sees a connection, so another backend would
//! be a new file here, not a change elsewhere.

mod events;
mod maintenance;
mod outbox;
mod schema;
mod snaptrade;
mod writer;

pub use events::{Delivery, EventDetail, EventFilter, EventSummary, Inserted, NewEvent, Stats};
pub use maintenance::{PruneReport, cutoff};
pub use outbox::{AttemptRow, Claimed, DeliveryFilter, DeliverySummary, Next, OutboxStats, Revive};
pub use schema::MigrateError;
pub use snaptrade::{AccountRow, BalanceRow, ConnectionRow, PositionRow};

use crate::config::Durability;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Errors opening a database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create directory for database {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Migrate { path: PathBuf, source: MigrateError },
    #[error("database {path}: read pool: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Box<dyn writer::Job>>,
    pool: r2d2::Pool<SqliteConnectionManager>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    /// Open (creating if needed) and migrate the database, start the writer.
    pub fn open(path: &Path, durability: Durability) -> Result<Store, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| OpenError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(open_err)?;
        schema::migrate(&mut conn).map_err(|source| OpenError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(Duration::from_secs(5))?;
                Ok(())
            });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|source| OpenError::Pool {
                path: path.to_path_buf(),
                source,
            })?;

        let (tx, rx) = mpsc::channel(writer::QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| OpenError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                tx,
                pool,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` inside the writer's next transaction; answers after COMMIT.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(false, f).await
    }

    /// Run `f` on the writer connection outside any transaction.
    async fn write_outside_tx<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<R, F>(&self, exclusive: bool, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(writer::Typed {
            exclusive,
            f: Some(f),
            out: None,
            reply,
        });
        self.inner
            .tx
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Run `f` on a pooled read connection on a blocking thread.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = self.inner.pool.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Proves the writer is alive and can commit (for `/readyz`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// The stored value for `key`, creating it with `generate` if absent.
    /// Returns (value, created_now).
    pub async fn meta_get_or_create(
        &self,
        key: &str,
        generate: impl FnOnce() -> String + Send + 'static,
    ) -> Result<(String, bool), StoreError> {
        let key = key.to_string();
        self.write(move |conn| {
            let existing: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if let Some(v) = existing {
                return Ok((v, false));
            }
            let v = generate();
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![key, v],
            )?;
            Ok((v, true))
        })
        .await
    }

    /// The stored value for `key`, if any (reads only).
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?)
        })
        .await
    }

    /// Store one event (and its deliveries) unless (provider, event id) is
    /// already known. Answers after the commit.
    pub async fn insert_event(&self, ev: NewEvent) -> Result<Inserted, StoreError> {
        // Serialise here, on the caller's task, not on the single writer thread.
        let headers = serde_json::to_string(&ev.headers)
            .map_err(|e| StoreError::Sqlite(format!("headers: {e}")))?;
        self.write(move |conn| events::insert(conn, &ev, &headers))
            .await
    }

    pub async fn list_events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        self.read(move |conn| events::list(conn, &filter)).await
    }

    pub async fn get_event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.read(move |conn| events::get(conn, id)).await
    }

    /// Fold the WAL back into the database file (at shutdown).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.write_outside_tx(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// (newest, oldest) stored event row ids.
    pub async fn event_id_range(&self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        self.read(events::id_range).await
    }

    /// Counts for the dashboard over the last hour and day.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let now = now_ms();
        self.read(move |conn| events::stats(conn, now)).await
    }

    /// Online backup to a new file (a consistent snapshot).
    pub async fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        let dest = dest.to_path_buf();
        self.read(move |conn| maintenance::backup(conn, &dest))
            .await
    }

    /// Remove events received before `before_ms` whose deliveries are done
    /// (delivered; with `dead`, also dead), leaving tombstones; then give the
    /// space back. Works in batches so the writer never stalls for long.
    pub async fn prune(&self, before_ms: i64, dead: bool) -> Result<PruneReport, StoreError> {
        let mut total = PruneReport::default();
        loop {
            let r = self
                .write(move |conn| maintenance::prune_batch(conn, before_ms, dead, 500))
                .await?;
            total.events += r.events;
            total.deliveries += r.deliveries;
            if r.events == 0 {
                break;
            }
        }
        if total.events > 0 {
            self.write_outside_tx(maintenance::vacuum).await?;
        }
        Ok(total)
    }

    /// `PRAGMA integrity_check` lines (`["ok"]` when healthy).
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read(maintenance::integrity).await
    }

    /// Add a note to an event's verification outcome (e.g. SNS auto-confirm).
    pub async fn append_verification(&self, event: i64, note: &str) -> Result<(), StoreError> {
        let note = note.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE events SET verification = verification || '; ' || ?2 WHERE id = ?1",
                rusqlite::params![event, note],
            )?;
            Ok(())
        })
        .await
    }

    /// Number of stored events (tests and `db check`).
    pub async fn count_events(&self) -> Result<i64, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?))
            .await
    }

    /// Claim up to `limit` due deliveries of `route` until `lease_until` (ms).
    pub async fn claim_due(
        &self,
        route: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let route = route.to_string();
        self.write(move |conn| outbox::claim(conn, &route, now, lease_until, limit))
            .await
    }

    /// Record an attempt and move the delivery on (delivered, pending again, dead).
    pub async fn record_attempt(
        &self,
        delivery: i64,
        attempt: AttemptRow,
        next: Next,
    ) -> Result<(), StoreError> {
        self.write(move |conn| outbox::record(conn, delivery, &attempt, next))
            .await
    }

    /// A dead delivery becomes pending again, due now, with a fresh schedule.
    pub async fn revive_delivery(&self, id: i64) -> Result<Revive, StoreError> {
        self.write(move |conn| outbox::revive(conn, id)).await
    }

    /// Revive every dead delivery; their ids.
    pub async fn revive_all_dead(&self) -> Result<Vec<i64>, StoreError> {
        self.write(outbox::revive_all_dead).await
    }

    /// Fresh pending deliveries of an event for these routes (replay).
    /// `StoreError::NotFound` if the event does not exist.
    pub async fn add_deliveries(
        &self,
        event: i64,
        routes: Vec<String>,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(move |conn| outbox::add(conn, event, &routes))
            .await
    }

    /// Forget the leases of a previous process (at start-up: nothing else
    /// delivers from this database).
    pub async fn release_leases(&self) -> Result<usize, StoreError> {
        self.write(outbox::release_leases).await
    }

    /// When the next pending delivery falls due (Unix ms), if any.
    pub async fn next_due(&self, now: i64) -> Result<Option<i64>, StoreError> {
        self.read(move |conn| outbox::next_due(conn, now)).await
    }

    pub async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        self.read(move |conn| outbox::list(conn, &filter)).await
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.read(outbox::stats).await
    }

    /// Re-apply one stored event's SnapTrade projection (replay).
    pub async fn snaptrade_apply(
        &self,
        event: i64,
        p: crate::snaptrade::Projection,
    ) -> Result<(), StoreError> {
        self.write(move |conn| snaptrade::apply(conn, event, &p))
            .await
    }

    /// Replace a user's holdings with a complete sync snapshot.
    pub async fn snaptrade_replace_snapshot(
        &self,
        provider: &str,
        user: &str,
        snap: crate::snaptrade::client::Snapshot,
    ) -> Result<(), StoreError> {
        let (provider, user) = (provider.to_string(), user.to_string());
        self.write(move |conn| snaptrade::replace_snapshot(conn, &provider, &user, &snap))
            .await
    }

    /// Store a user's secret; re-queues their dead sync jobs (their ids).
    pub async fn snaptrade_set_user_secret(
        &self,
        provider: &str,
        user: &str,
        secret: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let (provider, user, secret) = (provider.to_string(), user.to_string(), secret.to_string());
        let route = crate::snaptrade::sync_route(&provider);
        self.write(move |conn| snaptrade::set_user_secret(conn, &provider, &user, &secret, &route))
            .await
    }

    pub async fn snaptrade_user_secret(
        &self,
        provider: &str,
        user: &str,
    ) -> Result<Option<String>, StoreError> {
        let (provider, user) = (provider.to_string(), user.to_string());
        self.read(move |conn| snaptrade::user_secret(conn, &provider, &user))
            .await
    }

    /// Clear event-derived SnapTrade state and re-apply every stored event.
    pub async fn snaptrade_rebuild(&self, provider: &str) -> Result<usize, StoreError> {
        let provider = provider.to_string();
        self.write(move |conn| {
            let p = provider.clone();
            snaptrade::rebuild(conn, &provider, &move |body| {
                crate::snaptrade::projection(&p, body)
            })
        })
        .await
    }

    pub async fn snaptrade_connections(
        &self,
        provider: &str,
        user: Option<String>,
    ) -> Result<Vec<ConnectionRow>, StoreError> {
        let provider = provider.to_string();
        self.read(move |conn| snaptrade::connections(conn, &provider, user.as_deref()))
            .await
    }

    pub async fn snaptrade_accounts(
        &self,
        provider: &str,
        user: Option<String>,
    ) -> Result<Vec<AccountRow>, StoreError> {
        let provider = provider.to_string();
        self.read(move |conn| snaptrade::accounts(conn, &provider, user.as_deref()))
            .await
    }

    pub async fn snaptrade_holdings(
        &self,
        provider: &str,
        user: Option<String>,
        account: Option<String>,
    ) -> Result<(Vec<PositionRow>, Vec<BalanceRow>), StoreError> {
        let provider = provider.to_string();
        self.read(move |conn| {
            snaptrade::holdings(conn, &provider, user.as_deref(), account.as_deref())
        })
        .await
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
