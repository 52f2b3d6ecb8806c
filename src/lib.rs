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
pub mod secrets;
pub mod server;
pub mod snaptrade;
pub mod store;
pub mod tail;
pub mod telemetry;
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
    let missing = config::missing_secrets(&config);
    if !missing.is_empty() {
        anyhow::bail!(
            "cannot start: {}\n(set them, e.g. in /etc/appliance/env for systemd; `appliance check-config` lists every secret source)",
            missing.join("; ")
        );
    }
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

    let mut endpoints = Vec::new();
    let mut sync_creds = std::collections::HashMap::new();
    for p in &config.providers {
        let r = secrets::resolve(&p.secret, Some(&store), secrets::generate_whsec)
            .await
            .with_context(|| format!("provider {}", p.name))?;
        if r.generated_now {
            println!(
                "Generated secret for provider {} (kept in {}; `appliance admin token --provider {}` prints it again):\n  {}",
                p.name,
                store.path().display(),
                p.name,
                String::from_utf8_lossy(&r.secrets[0].0)
            );
        }
        if let Some(sync) = &p.sync {
            let client_id = std::env::var(&sync.client_id_env).unwrap_or_default();
            if let Some(key) = r.secrets.first() {
                sync_creds.insert(
                    p.name.clone(),
                    outbox::SyncCredentials {
                        client_id,
                        consumer_key: key.0.clone(),
                    },
                );
            }
        }
        endpoints.push(ingest::Endpoint::new(p.clone(), r.secrets));
    }
    if config.providers.is_empty() {
        tracing::warn!(
            "no providers configured: every webhook path answers 404 (add a [providers.NAME] table)"
        );
    }

    // Route secrets (signing what the outbox forwards).
    let mut route_secrets = std::collections::HashMap::new();
    for p in &config.providers {
        for r in &p.routes {
            if let config::Target::Url {
                secret_env: Some(var),
                ..
            } = &r.target
            {
                let s = secrets::resolve(
                    &config::SecretSource::Env(var.clone()),
                    None,
                    secrets::generate_whsec,
                )
                .await
                .with_context(|| format!("route {}", r.name))?;
                if let Some(s) = s.secrets.into_iter().next() {
                    route_secrets.insert(r.name.clone(), s);
                }
            }
        }
    }

    let hub = live::Hub::new(api::render_live);
    let outbox_wake = Arc::new(Notify::new());
    let outbox_tick = Arc::new(AtomicI64::new(crate::store::now_ms()));
    let ingest = Arc::new(ingest::Ingest::new(
        &config,
        endpoints,
        store.clone(),
        outbox_wake.clone(),
        hub.clone(),
    ));
    let snaptrade_api = config
        .providers
        .iter()
        .find(|p| p.kind == "snaptrade")
        .map(|p| api::SnaptradeApi {
            provider: p.name.clone(),
            client: p.sync.as_ref().and_then(|s| {
                sync_creds.get(&p.name).map(|c| {
                    snaptrade::client::Client::new(
                        &s.base_url,
                        c.client_id.clone(),
                        c.consumer_key.clone(),
                        outbox::http::client(),
                    )
                })
            }),
        });
    let api_state = Arc::new(api::ApiState {
        store: store.clone(),
        admin_token,
        config: config.clone(),
        snaptrade: snaptrade_api,
        hub: hub.clone(),
        trusted_proxies: config.server.trusted_proxies.clone(),
        failed_tokens: api::failed_token_limiter(),
        outbox_wake: outbox_wake.clone(),
        outbox_tick_ms: outbox_tick.clone(),
        outbox_tick_bound: Duration::from_secs(10),
    });
    let outbox_task = tokio::spawn(
        outbox::Outbox::new(
            &config,
            store.clone(),
            &route_secrets,
            &sync_creds,
            outbox_wake.clone(),
            outbox_tick,
            hub.clone(),
        )
        .run(shutdown.clone()),
    );

    let ingest_router = {
        let ingest = ingest.clone();
        axum::Router::new().fallback(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                std::net::SocketAddr,
            >,
                  req: axum::extract::Request| {
                let ingest = ingest.clone();
                async move { ingest.handle(peer, req).await }
            },
        )
    };
    let api_router = api::router(api_state);
    let limits = server::Limits {
        max_header_bytes: config.server.max_header_bytes,
        read_timeout: config.server.read_timeout,
        grace: config.server.shutdown_grace,
    };

    // Housekeeping: keep rate-limiter memory bounded.
    {
        let ingest = ingest.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => ingest.prune_limiters(),
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
            let health = axum::Router::new().route(
                "/healthz",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"status":"ok"})) }),
            );
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
    while tasks.join_next().await.is_some() {}
    let _ = outbox_task.await;
    if let Err(e) = store.checkpoint().await {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
    tracing::info!("stopped");
    Ok(())
}
