//! The durable retry outbox. Every accepted event already has one pending
//! delivery row per matching route (written in the event's own transaction);
//! this loop hands them on:
//!
//! - it claims due deliveries per route with a lease (a crash mid-attempt
//!   leaves a lease that expires, or is released at the next start, so the
//!   delivery is attempted again: at-least-once, never lost, never stuck);
//! - runs at most `concurrency` attempts per route at once, each route
//!   independently, so a failing receiver never delays another route;
//! - records every attempt and reschedules: after failed attempt k the next
//!   waits `schedule[k-1]` ± jitter (or the receiver's clamped `Retry-After`,
//!   which uses up the step); past the schedule's end, or on HTTP 410, the
//!   delivery is dead until revived;
//! - wakes at once for work enqueued in-process and otherwise sleeps until the
//!   next due time or one second, whichever is sooner (work revived by the CLI
//!   from another process is picked up within a second); each wake is a tick
//!   for `/readyz`;
//! - on shutdown stops claiming and waits for in-flight attempts up to a grace.

pub mod attempt;
pub mod command;
pub mod http;

use crate::config::{Config, Target};
use crate::store::{AttemptRow, Claimed, Next, Store};
use attempt::{Attempt, Job, Verdict};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Default for a route without `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Added to the attempt timeout to form the lease.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// Longest sleep between ticks.
const MAX_SLEEP: Duration = Duration::from_secs(1);

enum Deliverer {
    Http(Arc<http::HttpTarget>),
    Command(Arc<command::CommandTarget>),
    Sync(Arc<crate::snaptrade::sync::SyncTarget>),
}

/// Credentials of a SnapTrade provider's holdings sync.
#[derive(Clone)]
pub struct SyncCredentials {
    pub client_id: String,
    pub consumer_key: Vec<u8>,
}

/// Per-attempt timeout of a holdings sync (several API calls).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

struct RouteRt {
    name: String,
    deliverer: Deliverer,
    schedule: Vec<Duration>,
    timeout: Duration,
    concurrency: usize,
    in_flight: usize,
}

pub struct Outbox {
    store: Store,
    routes: Vec<RouteRt>,
    jitter: f64,
    client: reqwest::Client,
    wake: Arc<Notify>,
    tick_ms: Arc<AtomicI64>,
    grace: Duration,
    hub: crate::live::Hub,
    current: crate::runtime::Current,
    generation: u64,
}

impl Outbox {
    /// The loop over the current runtime's routes; a reload's new routes are
    /// picked up at the next tick.
    pub fn new(
        current: crate::runtime::Current,
        store: Store,
        wake: Arc<Notify>,
        tick_ms: Arc<AtomicI64>,
        hub: crate::live::Hub,
    ) -> Outbox {
        let client = http::client();
        let rt = current.load_full();
        let routes = build_routes(&rt, &store, &client);
        Outbox {
            store,
            routes,
            jitter: rt.config.outbox.jitter,
            client,
            wake,
            tick_ms,
            grace: rt.config.server.shutdown_grace,
            hub,
            generation: rt.generation,
            current,
        }
    }

    /// After a reload: the new routes, keeping the in-flight counts of those
    /// that stay. Attempts of a removed route finish and are recorded; its
    /// pending deliveries wait until a route of that name exists again.
    fn refresh(&mut self) {
        let rt = self.current.load_full();
        if rt.generation == self.generation {
            return;
        }
        let mut routes = build_routes(&rt, &self.store, &self.client);
        for r in &mut routes {
            if let Some(old) = self.routes.iter().find(|o| o.name == r.name) {
                r.in_flight = old.in_flight;
            }
        }
        self.routes = routes;
        self.jitter = rt.config.outbox.jitter;
        self.generation = rt.generation;
    }

    /// Run until `shutdown`; then wait for in-flight attempts up to the grace.
    pub async fn run(mut self, shutdown: CancellationToken) {
        match self.store.release_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                n,
                "released leases left by a previous run; those deliveries are attempted again"
            ),
            Err(e) => tracing::error!(error = %e, "could not release old leases"),
        }
        let mut tasks: JoinSet<Next> = JoinSet::new();
        let mut owners: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            let now = crate::store::now_ms();
            self.tick_ms.store(now, Ordering::Relaxed);
            if shutdown.is_cancelled() {
                break;
            }
            self.refresh();
            // Claim what is due, route by route, within each route's capacity.
            let mut saturated = false;
            for i in 0..self.routes.len() {
                let free = self.routes[i]
                    .concurrency
                    .saturating_sub(self.routes[i].in_flight);
                if free == 0 {
                    saturated = true;
                    continue;
                }
                let lease = now + (self.routes[i].timeout + LEASE_MARGIN).as_millis() as i64;
                let claimed = match self
                    .store
                    .claim_due(&self.routes[i].name, now, lease, free)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, route = self.routes[i].name, "claim failed");
                        Vec::new()
                    }
                };
                if claimed.len() == free {
                    saturated = true;
                }
                for c in claimed {
                    self.routes[i].in_flight += 1;
                    let id = self.spawn_attempt(&mut tasks, i, c);
                    owners.insert(id, self.routes[i].name.clone());
                }
            }
            // Sleep until something can be done.
            let sleep = if saturated {
                MAX_SLEEP
            } else {
                match self.store.next_due(now).await {
                    Ok(Some(t)) => Duration::from_millis(
                        (t - now).clamp(0, MAX_SLEEP.as_millis() as i64) as u64,
                    ),
                    Ok(None) => MAX_SLEEP,
                    Err(_) => MAX_SLEEP,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.finished(&mut owners, done);
                    while let Some(done) = tasks.try_join_next_with_id() {
                        self.finished(&mut owners, done);
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        }
        if !tasks.is_empty() {
            let grace = self.grace;
            tracing::info!(
                in_flight = tasks.len(),
                "outbox stopping; waiting for in-flight attempts"
            );
            let wait = async {
                while let Some(done) = tasks.join_next_with_id().await {
                    self.finished(&mut owners, done);
                }
            };
            if tokio::time::timeout(grace, wait).await.is_err() {
                tracing::warn!(
                    "grace period over; abandoning in-flight attempts (they are retried at the next start)"
                );
                tasks.abort_all();
            }
        }
    }

    fn finished(
        &mut self,
        owners: &mut HashMap<tokio::task::Id, String>,
        done: Result<(tokio::task::Id, Next), tokio::task::JoinError>,
    ) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => {
                // A failed attempt task: its lease expires and it is retried.
                tracing::error!(error = %e, "delivery task failed");
                e.id()
            }
        };
        if let Some(name) = owners.remove(&id)
            && let Some(r) = self.routes.iter_mut().find(|r| r.name == name)
        {
            r.in_flight = r.in_flight.saturating_sub(1);
        }
    }

    fn spawn_attempt(&self, tasks: &mut JoinSet<Next>, i: usize, c: Claimed) -> tokio::task::Id {
        let route = &self.routes[i];
        let job = Job {
            delivery_id: c.delivery_id,
            attempt: (c.attempts + 1) as u32,
            provider: c.provider.clone(),
            route: c.route.clone(),
            event_id: c.event_id.clone(),
            event_type: c.event_type.clone(),
            body: c.body,
            headers: c.headers,
        };
        let fut = match &route.deliverer {
            Deliverer::Http(t) => {
                let t = t.clone();
                let client = self.client.clone();
                let now_secs = crate::store::now_ms() / 1000;
                Box::pin(async move { t.deliver(&client, &job, now_secs).await })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Attempt> + Send>>
            }
            Deliverer::Command(t) => {
                let t = t.clone();
                Box::pin(async move { t.deliver(&job).await })
            }
            Deliverer::Sync(t) => {
                let t = t.clone();
                Box::pin(async move { t.deliver(&job).await })
            }
        };
        let store = self.store.clone();
        let schedule = route.schedule.clone();
        let jitter = self.jitter;
        let route_name = route.name.clone();
        let wake = self.wake.clone();
        let (delivery, step, event) = (c.delivery_id, c.step, c.event);
        let hub = self.hub.clone();
        let (provider, event_type, attempts) = (c.provider, c.event_type, c.attempts + 1);
        let handle = tasks.spawn(async move {
            let attempt = fut.await;
            let next = next_after(&attempt.verdict, step as usize, &schedule, jitter, attempt.at_ms + attempt.duration_ms);
            let outcome = match next {
                Next::Delivered => "delivered",
                Next::RetryAt(_) => "failed",
                Next::Dead => "dead",
            };
            match next {
                Next::Delivered => tracing::debug!(delivery, route = route_name, "delivered"),
                _ => tracing::warn!(delivery, event, route = route_name, outcome, error = attempt.error.as_deref().unwrap_or(""), "delivery attempt failed"),
            }
            let route_for_notice = route_name.clone();
            metrics::histogram!("appliance_delivery_attempt_seconds", "route" => route_name.clone())
                .record(attempt.duration_ms as f64 / 1000.0);
            metrics::counter!("appliance_deliveries_total", "route" => route_name, "outcome" => outcome).increment(1);
            let notice_error = attempt.error.clone();
            let row = AttemptRow {
                at_ms: attempt.at_ms,
                duration_ms: attempt.duration_ms,
                status_code: attempt.status_code.map(i64::from),
                exit_code: attempt.exit_code.map(i64::from),
                error: attempt.error,
                response_excerpt: attempt.response_excerpt,
            };
            match store.record_attempt(delivery, row, next).await {
                Ok(()) => hub.publish(crate::live::Live::Delivery(crate::live::DeliveryNotice {
                    id: delivery,
                    event,
                    provider,
                    event_type,
                    route: route_for_notice,
                    status: match next {
                        Next::Delivered => "delivered",
                        Next::RetryAt(_) => "pending",
                        Next::Dead => "dead",
                    },
                    outcome,
                    attempts,
                    error: notice_error,
                })),
                // The lease expires (or is released at the next start) and
                // the attempt is made again.
                Err(e) => tracing::error!(delivery, error = %e, "could not record attempt"),
            }
            wake.notify_one();
            next
        });
        handle.id()
    }
}

/// What an event of `provider` leads to: the routes it goes to (the
/// configured ones matching its type, plus the SnapTrade sync job when the
/// event asks for one) and the SnapTrade projection it changes.
pub fn plan(
    provider: &crate::config::Provider,
    event_type: &str,
    body: &[u8],
) -> (Vec<String>, Option<crate::snaptrade::Projection>) {
    let mut routes: Vec<String> = provider
        .routes
        .iter()
        .filter(|r| r.matches(event_type))
        .map(|r| r.name.clone())
        .collect();
    let projection = (provider.kind == "snaptrade")
        .then(|| crate::snaptrade::projection(&provider.name, body))
        .flatten();
    if provider.sync.is_some() && projection.as_ref().is_some_and(|p| p.effect.sync) {
        routes.push(crate::snaptrade::sync_route(&provider.name));
    }
    (routes, projection)
}

fn build_routes(
    rt: &crate::runtime::Runtime,
    store: &Store,
    client: &reqwest::Client,
) -> Vec<RouteRt> {
    let cfg = &rt.config;
    let hidden = cfg.secret_env_vars();
    let mut routes = Vec::new();
    for p in &cfg.providers {
        if let (Some(s), Some(creds)) = (&p.sync, rt.sync_creds.get(&p.name)) {
            routes.push(RouteRt {
                name: crate::snaptrade::sync_route(&p.name),
                deliverer: Deliverer::Sync(Arc::new(crate::snaptrade::sync::SyncTarget {
                    provider: p.name.clone(),
                    client: crate::snaptrade::client::Client::new(
                        &s.base_url,
                        creds.client_id.clone(),
                        creds.consumer_key.clone(),
                        client.clone(),
                    ),
                    store: store.clone(),
                    timeout: SYNC_TIMEOUT,
                })),
                schedule: cfg.outbox.schedule.clone(),
                timeout: SYNC_TIMEOUT,
                concurrency: 4,
                in_flight: 0,
            });
        }
        for r in &p.routes {
            let timeout = r.timeout.unwrap_or(cfg.outbox.timeout);
            let deliverer = match &r.target {
                Target::Url {
                    url,
                    headers,
                    forward_headers,
                    ..
                } => Deliverer::Http(Arc::new(http::HttpTarget::new(
                    url.clone(),
                    rt.route_secrets.get(&r.name).cloned(),
                    headers.clone(),
                    forward_headers.clone(),
                    timeout,
                ))),
                Target::Command(argv) => Deliverer::Command(Arc::new(
                    command::CommandTarget::new(argv.clone(), timeout).hiding_env(hidden.clone()),
                )),
            };
            routes.push(RouteRt {
                name: r.name.clone(),
                deliverer,
                schedule: r
                    .schedule
                    .clone()
                    .unwrap_or_else(|| cfg.outbox.schedule.clone()),
                timeout,
                concurrency: r.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
                in_flight: 0,
            });
        }
    }
    routes
}

/// Fresh deliveries of a stored event for its provider's current routes
/// (replay); a SnapTrade event's projection is applied again (still guarded
/// by its timestamp). `StoreError::NotFound` for an unknown event.
pub async fn replay(
    store: &Store,
    cfg: &Config,
    event: i64,
) -> Result<Vec<i64>, crate::store::StoreError> {
    let ev = store
        .get_event(event)
        .await?
        .ok_or(crate::store::StoreError::NotFound)?;
    let Some(provider) = cfg.providers.iter().find(|p| p.name == ev.summary.provider) else {
        return Ok(Vec::new());
    };
    let (routes, projection) = plan(provider, &ev.summary.event_type, &ev.body);
    if let Some(p) = projection {
        store.snaptrade_apply(event, p).await?;
    }
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    store.add_deliveries(event, routes).await
}

/// Where a delivery goes after an attempt. `step`: attempts made in this
/// schedule round before this one. N schedule entries give N+1 attempts.
pub fn next_after(
    verdict: &Verdict,
    step: usize,
    schedule: &[Duration],
    jitter: f64,
    now_ms: i64,
) -> Next {
    match verdict {
        Verdict::Delivered => Next::Delivered,
        Verdict::GiveUp => Next::Dead,
        Verdict::Retry { retry_after } => {
            let Some(base) = schedule.get(step) else {
                return Next::Dead;
            };
            let wait = match retry_after {
                Some(d) => *d,
                None => jittered(*base, jitter),
            };
            Next::RetryAt(now_ms + wait.as_millis() as i64)
        }
    }
}

fn jittered(d: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return d;
    }
    let f = 1.0 + (rand::random::<f64>() * 2.0 - 1.0) * jitter;
    d.mul_f64(f.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn schedule_steps_then_dead() {
        let s = secs(&[5, 30]);
        let retry = Verdict::Retry { retry_after: None };
        assert_eq!(next_after(&retry, 0, &s, 0.0, 1000), Next::RetryAt(6000));
        assert_eq!(next_after(&retry, 1, &s, 0.0, 1000), Next::RetryAt(31000));
        assert_eq!(next_after(&retry, 2, &s, 0.0, 1000), Next::Dead);
        assert_eq!(
            next_after(&Verdict::Delivered, 2, &s, 0.0, 0),
            Next::Delivered
        );
        assert_eq!(next_after(&Verdict::GiveUp, 0, &s, 0.0, 0), Next::Dead);
    }

    #[test]
    fn retry_after_replaces_the_wait_and_uses_the_step() {
        let s = secs(&[5]);
        let r = Verdict::Retry {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(next_after(&r, 0, &s, 0.5, 0), Next::RetryAt(2000));
        assert_eq!(next_after(&r, 1, &s, 0.5, 0), Next::Dead);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10), 0.2);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }
}
