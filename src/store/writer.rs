//! The single writer: one OS thread owns the only write connection. Requests
//! arrive on a channel; whatever has queued up while the previous transaction
//! committed is applied as one transaction (group commit), each request in its
//! own savepoint so one failure cannot spoil its neighbours, and every caller is
//! answered only after the COMMIT returned (fsynced with `durability = "full"`).

use super::StoreError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders are back-pressured.
pub(super) const QUEUE: usize = 8192;

/// One unit of work for the writer, type-erased.
pub(super) trait Job: Send {
    /// Runs outside any transaction, alone (checkpoints, vacuum).
    fn exclusive(&self) -> bool {
        false
    }
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

pub(super) struct Typed<R, F> {
    pub exclusive: bool,
    pub f: Option<F>,
    pub out: Option<Result<R, StoreError>>,
    pub reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Typed<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
{
    fn exclusive(&self) -> bool {
        self.exclusive
    }

    fn run(&mut self, conn: &Connection) {
        let Some(f) = self.f.take() else { return };
        if self.exclusive {
            self.out = Some(f(conn));
            return;
        }
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            self.out = Some(Err(e));
            return;
        }
        let r = f(conn);
        if r.is_err() {
            let _ = exec(conn, "ROLLBACK TO job");
        }
        let _ = exec(conn, "RELEASE job");
        self.out = Some(r);
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let this = *self;
        let answer = match commit {
            Ok(()) => this
                .out
                .unwrap_or_else(|| Err(StoreError::Unavailable("not run".into()))),
            Err(e) => Err(e),
        };
        let _ = this.reply.send(answer);
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// The writer loop; returns when every sender is gone.
pub(super) fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        // Exclusive jobs split the batch: what came before them commits first.
        let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(batch.len());
        for mut job in batch.drain(..) {
            if job.exclusive() {
                commit_group(&mut conn, &mut group);
                job.run(&conn);
                job.finish(Ok(()));
            } else {
                group.push(job);
            }
        }
        commit_group(&mut conn, &mut group);
    }
}

fn commit_group(conn: &mut Connection, group: &mut Vec<Box<dyn Job>>) {
    if group.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let outcome = apply(conn, group);
    metrics::histogram!("appliance_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("appliance_store_batch_size").record(group.len() as f64);
    if let Err(e) = &outcome {
        tracing::error!(error = %e, jobs = group.len(), "store commit failed");
    }
    for job in group.drain(..) {
        job.finish(outcome.clone());
    }
}

fn apply(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        job.run(conn);
    }
    match exec(conn, "COMMIT") {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            Err(e)
        }
    }
}
