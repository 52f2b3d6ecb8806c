//! appliance: receive webhooks, prove them genuine, keep them durably, hand
//! them on.
//!
//! ```text
//! provider --HTTP POST--> ingest (size, IP allow-list, rate limit)      src/ingest
//!                           -> verify (scheme, timestamp tolerance)     src/verify (pure)
//!                           -> extract (event id, event type)
//!                           -> store: one SQLite transaction holding the src/store
//!                              event row, dedup and the outbox rows of
//!                              every matching route (group commit)
//!                           -> 200 to the provider only after COMMIT
//! outbox loop: claim due deliveries (lease) -> HTTP POST | command       src/outbox
//!              -> record attempt -> delivered | retry (backoff) | dead
//! admin API, health                                                    src/api
//! ```
//!
//! `run(config, listener, shutdown)` is the seam both `appliance serve` and
//! the integration tests use: the caller binds the socket (tests bind
//! `127.0.0.1:0`), so no test has to wait for a port.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod ingest;
pub mod live;
pub mod logging;
pub mod outbox;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod snaptrade;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod update;
pub mod verify;

use anyhow::Context;
use config::Config;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The listeners `serve` runs on: the webhook one, and optionally a separate
/// one for the dashboard, `/api` and `/metrics` (`[admin].listen`).
pub struct Listeners {
    pub main: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Run the server on an already bound listener until `shutdown` is cancelled.
/// With `[admin].listen` set, binds that address too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let admin = match config.admin.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ([admin].listen)"))?,
        ),
        None => None,
    };
    run_with(
        config,
        Listeners {
            main: listener,
            admin,
        },
        shutdown,
    )
    .await
}

/// Like [`run`], with every listener supplied by the caller.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::handle();
    let store = store::Store::open(&config.storage.path, config.storage.durability)?;

    let admin_token = secrets::resolve(&config.admin.token, Some(&store), secrets::generate_token)
        .await
        .context("admin token")?;
    if admin_token.generated_now {
        println!(
            "Generated admin token (kept in {}; `appliance admin token` prints it again):\n  {}",
            store.path().display(),
            String::from_utf8_lossy(&admin_token.secrets[0].0)
        );
    }
    let admin_token = admin_token
        .secrets
        .first()
        .map(|s| String::from_utf8_lossy(&s.0).into_owned())
        .unwrap_or_default();

    let shared = runtime::Shared {
        store: store.clone(),
        hub: live::Hub::new(api::render_live),
        outbox_wake: Arc::new(Notify::new()),
    };
    let rt = runtime::build(config.clone(), &shared, 1)
        .await
        .context("cannot start")?;
    if config.providers.is_empty() {
        tracing::warn!(
            "no providers configured: every webhook path answers 404 (add a [providers.NAME] table)"
        );
    }
    let current: runtime::Current = Arc::new(arc_swap::ArcSwap::from_pointee(rt));
    let path = match &config.source {
        config::Source::File(p) => Some(p.clone()),
        config::Source::Embedded => None,
    };
    let reloader = Arc::new(runtime::Reloader::new(
        path,
        current.clone(),
        shared.clone(),
    ));
    let outbox_tick = Arc::new(AtomicI64::new(crate::store::now_ms()));
    let api_state = Arc::new(api::ApiState {
        store: store.clone(),
        admin_token,
        current: current.clone(),
        reloader: reloader.clone(),
        metrics_require_token: config.metrics.require_token,
        hub: shared.hub.clone(),
        failed_tokens: api::failed_token_limiter(),
        outbox_wake: shared.outbox_wake.clone(),
        outbox_tick_ms: outbox_tick.clone(),
        outbox_tick_bound: Duration::from_secs(10),
    });
    let outbox_task = tokio::spawn(
        outbox::Outbox::new(
            current.clone(),
            store.clone(),
            shared.outbox_wake.clone(),
            outbox_tick,
            shared.hub.clone(),
        )
        .run(shutdown.clone()),
    );

    // SIGHUP: reload the config file.
    {
        let reloader = reloader.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => {
                        tracing::info!("SIGHUP: reloading the config");
                        let _ = reloader.reload().await;
                    }
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }

    let ingest_router = {
        let current = current.clone();
        axum::Router::new().fallback(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                std::net::SocketAddr,
            >,
                  req: axum::extract::Request| {
                // The runtime this request started with, even if a reload
                // swaps in another meanwhile.
                let rt = current.load_full();
                async move { rt.ingest.handle(peer, req).await }
            },
        )
    };
    let api_router = api::router(api_state.clone());
    let limits = server::Limits {
        max_header_bytes: config.server.max_header_bytes,
        read_timeout: config.server.read_timeout,
        grace: config.server.shutdown_grace,
    };

    // Housekeeping: keep rate-limiter memory bounded.
    {
        let current = current.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => current.load().ingest.prune_limiters(),
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }

    for p in &config.providers {
        tracing::info!(
            provider = p.name,
            kind = p.kind,
            path = p.path,
            routes = p.routes.len(),
            "endpoint ready"
        );
    }
    let main_addr = listeners.main.local_addr()?;
    let mut tasks = tokio::task::JoinSet::new();
    match listeners.admin {
        Some(admin) => {
            let admin_addr = admin.local_addr()?;
            tracing::info!(%main_addr, %admin_addr, "listening (webhooks on the first, admin on the second)");
            let health = api::health_router(api_state.clone());
            tasks.spawn(server::serve(
                listeners.main,
                health.merge(ingest_router),
                limits,
                shutdown.clone(),
            ));
            tasks.spawn(server::serve(admin, api_router, limits, shutdown.clone()));
        }
        None => {
            tracing::info!(%main_addr, "listening");
            tasks.spawn(server::serve(
                listeners.main,
                api_router.merge(ingest_router),
                limits,
                shutdown.clone(),
            ));
        }
    }
    // systemd (Type=notify): ready now that the sockets serve; a watchdog
    // ping every half period while the database accepts writes.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        let store = store.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period / 2);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        if store.check_writable().await.is_ok() {
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        }
                    }
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        });
    }
    while tasks.join_next().await.is_some() {}
    let _ = outbox_task.await;
    if let Err(e) = store.checkpoint().await {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
    tracing::info!("stopped");
    Ok(())
}
