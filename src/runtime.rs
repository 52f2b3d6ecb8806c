//! What a running server derives from its config, as one value that a reload
//! replaces atomically: the provider endpoints (schemes, secrets, limits), the
//! routes' signing secrets, the SnapTrade credentials. Requests in flight keep
//! the `Runtime` they started with; new ones see the new one. Listen
//! addresses and the database path are fixed for the life of the process.

use crate::config::{self, Config, SecretSource, Target};
use crate::store::Store;
use crate::verify::Secret;
use crate::{api, ingest, live, outbox, secrets, snaptrade};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub struct Runtime {
    /// Increases with every successful reload.
    pub generation: u64,
    pub config: Config,
    pub ingest: ingest::Ingest,
    pub route_secrets: HashMap<String, Secret>,
    pub sync_creds: HashMap<String, outbox::SyncCredentials>,
    pub snaptrade: Option<api::SnaptradeApi>,
}

/// The current runtime, swapped whole by a reload.
pub type Current = Arc<ArcSwap<Runtime>>;

/// Shared parts every runtime is built over.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    pub hub: live::Hub,
    pub outbox_wake: Arc<Notify>,
}

/// Build a runtime: resolve every secret (printing generated ones once).
pub async fn build(config: Config, shared: &Shared, generation: u64) -> anyhow::Result<Runtime> {
    let missing = config::missing_secrets(&config);
    if !missing.is_empty() {
        anyhow::bail!(
            "{}\n(set them, e.g. in /etc/appliance/env for systemd; `appliance check-config` lists every secret source)",
            missing.join("; ")
        );
    }
    let store = &shared.store;
    let mut endpoints = Vec::new();
    let mut sync_creds = HashMap::new();
    for p in &config.providers {
        let r = secrets::resolve(&p.secret, Some(store), secrets::generate_whsec)
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
        if let (Some(sync), Some(key)) = (&p.sync, r.secrets.first()) {
            sync_creds.insert(
                p.name.clone(),
                outbox::SyncCredentials {
                    client_id: std::env::var(&sync.client_id_env).unwrap_or_default(),
                    consumer_key: key.0.clone(),
                },
            );
        }
        let mut endpoint = ingest::Endpoint::new(p.clone(), r.secrets);
        if let Some(f) = &p.signing_cert_file {
            let pem = std::fs::read(f).with_context(|| {
                format!("provider {}: signing_cert_file {}", p.name, f.display())
            })?;
            endpoint = endpoint.with_sns_cert(pem);
        }
        endpoints.push(endpoint);
    }
    let mut route_secrets = HashMap::new();
    for p in &config.providers {
        for r in &p.routes {
            if let Target::Url {
                secret_env: Some(var),
                ..
            } = &r.target
            {
                let s = secrets::resolve(
                    &SecretSource::Env(var.clone()),
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
    let snaptrade = config
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
    let ingest = ingest::Ingest::new(
        &config,
        endpoints,
        store.clone(),
        shared.outbox_wake.clone(),
        shared.hub.clone(),
    );
    Ok(Runtime {
        generation,
        config,
        ingest,
        route_secrets,
        sync_creds,
        snaptrade,
    })
}

/// Reloads the config file on SIGHUP or `POST /api/reload`.
pub struct Reloader {
    path: Option<PathBuf>,
    current: Current,
    shared: Shared,
    generation: AtomicU64,
    /// One reload at a time.
    lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
}

/// What a successful reload changed, for the log and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    pub generation: u64,
    pub providers: usize,
    pub routes: usize,
    /// Settings that changed in the file but need a restart to apply.
    pub needs_restart: Vec<String>,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, current: Current, shared: Shared) -> Reloader {
        let generation = current.load().generation;
        Reloader {
            path,
            current,
            shared,
            generation: AtomicU64::new(generation),
            lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Re-read, validate and swap in the config; on any problem the running
    /// config stays in force and the problems are returned.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let _one = self.lock.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(r) => {
                tracing::info!(
                    generation = r.generation,
                    providers = r.providers,
                    routes = r.routes,
                    "config reloaded"
                );
                for n in &r.needs_restart {
                    tracing::warn!("{n}");
                }
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the running config stays in force");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.clone());
                }
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, String> {
        let Some(path) = &self.path else {
            return Err(
                "running on the embedded default: there is no config file to reload".into(),
            );
        };
        let mut new = config::load_file(path).map_err(|e| e.to_string())?;
        let old = self.current.load_full();
        let mut needs_restart = Vec::new();
        if new.server.listen != old.config.server.listen {
            needs_restart.push(format!(
                "[server].listen changed to {}: restart to apply (still {})",
                new.server.listen, old.config.server.listen
            ));
            new.server.listen = old.config.server.listen;
        }
        if new.admin.listen != old.config.admin.listen {
            needs_restart.push("[admin].listen changed: restart to apply".into());
            new.admin.listen = old.config.admin.listen;
        }
        if new.storage.path != old.config.storage.path {
            needs_restart.push(format!(
                "[storage].path changed to {}: restart to apply (still {})",
                new.storage.path.display(),
                old.config.storage.path.display()
            ));
            new.storage.path = old.config.storage.path.clone();
        }
        if new.admin.token != old.config.admin.token || new.log.format != old.config.log.format {
            needs_restart.push("[admin] token or [log] settings changed: restart to apply".into());
        }
        let generation = self.generation() + 1;
        let rt = build(new, &self.shared, generation)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let report = Reloaded {
            generation,
            providers: rt.config.providers.len(),
            routes: rt.config.providers.iter().map(|p| p.routes.len()).sum(),
            needs_restart,
        };
        self.current.store(Arc::new(rt));
        self.generation.store(generation, Ordering::SeqCst);
        // Let the outbox pick up new routes now.
        self.shared.outbox_wake.notify_one();
        Ok(report)
    }
}
