//! The command line: clap definitions (parsed by `main.rs`) and what each
//! command does. Every command finds its config as `serve` does; commands that
//! read or change state open that config's database directly (WAL lets them
//! run beside a live server). Exit codes: 0 success, 1 failure, 2 usage.

use crate::config::{self, Config, SecretSource, Target};
use crate::store::{EventFilter, Store};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "appliance", version, about = "Receive, verify, store and deliver webhooks", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (else $APPLIANCE_CONFIG, ./appliance.toml,
    /// /etc/appliance/appliance.toml, else the embedded default)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server
    Serve,
    /// Parse and validate the config; print providers, paths, secret sources, routes
    CheckConfig,
    /// Send a request signed exactly as PROVIDER's sender signs it
    SendTest(SendTest),
    /// Read stored events
    #[command(subcommand)]
    Events(Events),
    /// Follow a (remote) appliance's stream and forward each event to a local URL
    Tail(TailArgs),
    /// Inspect and revive deliveries
    #[command(subcommand)]
    Outbox(Outbox),
    /// SnapTrade users and state
    #[command(subcommand)]
    Snaptrade(Snaptrade),
    /// Database maintenance: online backup, retention, integrity
    #[command(subcommand)]
    Db(Db),
    /// Admin credentials
    #[command(subcommand)]
    Admin(Admin),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
    /// Replace this binary with the newest signed release (tarball installs; a .deb is upgraded by apt)
    SelfUpdate {
        /// Only report whether a newer release exists
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum Db {
    /// Online backup to a new file (safe while `serve` runs)
    Backup { path: PathBuf },
    /// Remove delivered events older than [storage].retention (tombstones keep them duplicates)
    Prune {
        /// Also remove events whose deliveries are dead
        #[arg(long)]
        dead: bool,
        /// Override the retention (e.g. 7d; 0s = everything eligible)
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
    /// Integrity check (exit 1 if damaged)
    Check,
}

#[derive(Subcommand, Debug)]
pub enum Snaptrade {
    /// Store (or replace) a user's secret, read from an env var; re-queues their dead sync jobs
    AddUser {
        user_id: String,
        /// The env var holding the userSecret (never passed on the command line)
        #[arg(long, value_name = "VAR")]
        secret_env: String,
    },
    /// Clear the event-derived SnapTrade state and re-apply every stored SnapTrade event in order
    Rebuild,
}

#[derive(Subcommand, Debug)]
pub enum Outbox {
    /// List deliveries, newest first
    List {
        #[arg(long, value_parser = ["pending", "dead", "delivered"])]
        status: Option<String>,
        /// Same as --status dead
        #[arg(long, conflicts_with = "status")]
        dead: bool,
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON Lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Make a dead delivery pending again, due now (a running server picks it up within a second)
    Retry {
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        /// Every dead delivery
        #[arg(long)]
        all_dead: bool,
    },
}

#[derive(Args, Debug)]
pub struct SendTest {
    /// Provider name as in the config (`default` for the embedded default)
    pub provider: String,
    /// Event type to put in the sample payload
    #[arg(long, value_name = "TYPE")]
    pub event: Option<String>,
    /// Send this file's bytes instead of the bundled sample
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// Base URL (default: http:// + the configured listen address)
    #[arg(long, value_name = "BASE")]
    pub url: Option<String>,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Local URL each event is POSTed to
    #[arg(long, value_name = "URL")]
    pub forward: String,
    /// The appliance to follow (default: http:// + the configured listen address)
    #[arg(long, value_name = "BASE")]
    pub server: Option<String>,
    /// Env var holding the admin token (default APPLIANCE_ADMIN_TOKEN; else the
    /// local database's generated token)
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// Glob on the event type
    #[arg(long = "type", value_name = "GLOB")]
    pub event_type: Option<String>,
    /// Re-sign for the local receiver with Standard Webhooks, with this env var's whsec_ secret
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Where the last forwarded stream id is kept (default: .appliance-tail-<hash>.state here)
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Events {
    /// List stored events, newest first
    List {
        #[arg(long)]
        provider: Option<String>,
        /// Glob on the event type (`*` = any run of characters)
        #[arg(long = "type", value_name = "GLOB")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON Lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one event with headers, body and deliveries (JSON)
    Show { id: i64 },
    /// Fresh deliveries for events' current routes (by id, or by selectors)
    Replay {
        #[arg(conflicts_with_all = ["provider", "since", "event_type"], required_unless_present_any = ["provider", "since", "event_type"])]
        id: Option<i64>,
        #[arg(long)]
        provider: Option<String>,
        /// RFC 3339 time, or an age such as 2h
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Glob on the event type
        #[arg(long = "type", value_name = "GLOB")]
        event_type: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum Admin {
    /// Print the admin token (or, with --provider, a generated provider secret)
    Token {
        /// Print the generated webhook secret of this provider instead
        #[arg(long, value_name = "NAME")]
        provider: Option<String>,
    },
}

/// Run a parsed command line; the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn load(global: &Global) -> anyhow::Result<Config> {
    Ok(config::load(global.config.as_deref())?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => Ok(check_config(&cli.global)),
        Command::Serve => {
            let cfg = load(&cli.global)?;
            let _guard = crate::logging::init(&cfg.log)?;
            runtime()?.block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SendTest(args) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(send_test(cfg, args))
        }
        Command::Events(cmd) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(events(cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail(args) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(tail(cfg, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox(cmd) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(outbox(cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db(cmd) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(db(cfg, cmd))
        }
        Command::Snaptrade(cmd) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(snaptrade(cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "appliance", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SelfUpdate { check } => {
            let cfg = load(&cli.global)?;
            println!("{}", crate::update::self_update(&cfg.update, check)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(Admin::Token { provider }) => {
            let cfg = load(&cli.global)?;
            runtime()?.block_on(admin_token(cfg, provider))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let addr = cfg.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ([server].listen)"))?;
    tracing::info!(config = %cfg.source, "starting");
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    crate::run(cfg, listener, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check_config(global: &Global) -> ExitCode {
    let cfg = match load(global) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(1);
        }
    };
    print!("{}", summary(&cfg));
    let mut warnings = config::missing_secrets(&cfg);
    if cfg.providers.is_empty() {
        warnings.push("no providers configured: every webhook path answers 404".into());
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    ExitCode::SUCCESS
}

/// The readable summary `check-config` prints. Never contains a secret.
pub fn summary(cfg: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "config: {} (valid)", cfg.source);
    let _ = writeln!(out, "listen: {}", cfg.server.listen);
    if let Some(a) = cfg.admin.listen {
        let _ = writeln!(
            out,
            "admin listen: {a} (dashboard, /api and /metrics only there)"
        );
    }
    let _ = writeln!(
        out,
        "database: {} (durability {:?})",
        cfg.storage.path.display(),
        cfg.storage.durability
    );
    let token = match &cfg.admin.token {
        SecretSource::Generated(_) => "generated on first start and kept in the database; print it with `appliance admin token`".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "admin token: {token}");
    let _ = writeln!(out, "providers: {}", cfg.providers.len());
    for p in &cfg.providers {
        let secret = match &p.secret {
            SecretSource::Generated(_) => format!(
                "generated on first start and kept in the database; print it with `appliance admin token --provider {}`",
                p.name
            ),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {}", p.name);
        let _ = writeln!(out, "    path:   POST {}", p.path);
        let _ = writeln!(out, "    kind:   {}", p.kind);
        let _ = writeln!(out, "    secret: {secret}");
        if let Some(ips) = &p.allow_ips {
            let list: Vec<String> = ips.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(out, "    allow:  {}", list.join(", "));
        }
        if let Some(r) = p.rate_limit {
            let _ = writeln!(
                out,
                "    rate:   {}/s per client, burst {}",
                r.per_second, r.burst
            );
        }
        let _ = writeln!(out, "    max body: {} bytes", p.max_body);
        for r in &p.routes {
            let target = match &r.target {
                Target::Url { url, .. } => format!("POST {url}"),
                Target::Command(c) => format!("run {}", c.join(" ")),
            };
            let _ = writeln!(
                out,
                "    route {}: [{}] -> {}",
                r.name,
                r.events.join(", "),
                target
            );
        }
    }
    out
}

/// `0.0.0.0`/`::` mean "every interface"; a client reaches them on loopback.
fn base_url(cfg: &Config) -> String {
    let a = cfg.server.listen;
    let host = match a.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v) if v.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(v) => v.to_string(),
        std::net::IpAddr::V6(v) => format!("[{v}]"),
    };
    format!("http://{host}:{}", a.port())
}

async fn send_test(cfg: Config, args: SendTest) -> anyhow::Result<ExitCode> {
    let Some(p) = cfg.providers.iter().find(|p| p.name == args.provider) else {
        let names: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no provider {:?} in {} (providers: {})",
            args.provider,
            cfg.source,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    let store = match &p.secret {
        SecretSource::Generated(_) => Some(Store::open(&cfg.storage.path, cfg.storage.durability)?),
        _ => None,
    };
    let secret = crate::secrets::resolve(&p.secret, store.as_ref(), crate::secrets::generate_whsec)
        .await?
        .secrets;
    let secret = secret.into_iter().next().context("no secret")?;
    let payload = match &args.payload {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?),
        None => None,
    };
    let now = crate::store::now_ms() / 1000;
    let nonce = format!("{:016x}", rand::random::<u64>());
    let base = args.url.clone().unwrap_or_else(|| base_url(&cfg));
    let url = format!("{}{}", base.trim_end_matches('/'), p.path);
    // Schemes that sign the URL sign the one the server will reconstruct.
    let signed_url = p.public_url.clone().unwrap_or_else(|| url.clone());
    let req = p
        .scheme
        .sign_at(
            Some(&signed_url),
            &secret,
            args.event.as_deref(),
            payload.as_deref(),
            now,
            &nonce,
        )
        .map_err(|e| anyhow::anyhow!("cannot build a {} request: {e}", p.kind))?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut rb = client.post(&url).body(req.body);
    for (k, v) in &req.headers {
        rb = rb.header(k, v);
    }
    let resp = rb
        .send()
        .await
        .with_context(|| format!("cannot reach {url} (is `appliance serve` running?)"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    println!("{}", status.as_u16());
    println!("{body}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn events(cfg: Config, cmd: Events) -> anyhow::Result<()> {
    let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
    match cmd {
        Events::List {
            provider,
            event_type,
            limit,
            json,
        } => {
            if !(1..=100_000).contains(&limit) {
                bail!("--limit must be 1..100000");
            }
            let rows = store
                .list_events(EventFilter {
                    provider,
                    event_type,
                    limit,
                    ..Default::default()
                })
                .await?;
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(&list_json(r))?);
                }
            } else {
                let mut table = vec![vec![
                    "ID".to_string(),
                    "RECEIVED".into(),
                    "PROVIDER".into(),
                    "TYPE".into(),
                    "EVENT ID".into(),
                    "STATUS".into(),
                ]];
                for r in &rows {
                    table.push(vec![
                        r.id.to_string(),
                        crate::api::rfc3339(r.received_at_ms),
                        r.provider.clone(),
                        r.event_type.clone(),
                        r.event_id.clone(),
                        r.status.clone(),
                    ]);
                }
                print!("{}", align(&table));
            }
        }
        Events::Replay {
            id,
            provider,
            since,
            event_type,
        } => {
            let ids: Vec<i64> = match id {
                Some(id) => vec![id],
                None => {
                    let since_ms = since.as_deref().map(parse_since).transpose()?;
                    let mut ids = Vec::new();
                    let mut before = None;
                    loop {
                        let page = store
                            .list_events(EventFilter {
                                provider: provider.clone(),
                                event_type: event_type.clone(),
                                since_ms,
                                before,
                                limit: 500,
                                ..Default::default()
                            })
                            .await?;
                        before = page.last().map(|e| e.id);
                        ids.extend(page.iter().map(|e| e.id));
                        if page.len() < 500 {
                            break;
                        }
                    }
                    ids.reverse(); // oldest first
                    ids
                }
            };
            let mut created = 0;
            for id in &ids {
                match crate::outbox::replay(&store, &cfg, *id).await {
                    Ok(d) => created += d.len(),
                    Err(crate::store::StoreError::NotFound) => bail!("no event with id {id}"),
                    Err(e) => return Err(e.into()),
                }
            }
            println!("{} events, {created} new deliveries", ids.len());
        }
        Events::Show { id } => match store.get_event(id).await? {
            Some(d) => println!(
                "{}",
                serde_json::to_string_pretty(&crate::api::detail_json(&d))?
            ),
            None => bail!("no event with id {id}"),
        },
    }
    Ok(())
}

fn list_json(r: &crate::store::EventSummary) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "provider": r.provider,
        "event_id": r.event_id,
        "type": r.event_type,
        "received_at": crate::api::rfc3339(r.received_at_ms),
        "status": r.status,
    })
}

/// Columns padded to their widest cell.
pub fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map(|s| s.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:<w$}", s, w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn admin_token(cfg: Config, provider: Option<String>) -> anyhow::Result<()> {
    let source = match &provider {
        None => cfg.admin.token.clone(),
        Some(name) => match cfg.providers.iter().find(|p| &p.name == name) {
            Some(p) => p.secret.clone(),
            None => bail!("no provider {name:?} in {}", cfg.source),
        },
    };
    match &source {
        SecretSource::Generated(key) => {
            let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
            match store.meta_get(key).await? {
                Some(v) => println!("{v}"),
                None => bail!(
                    "not generated yet: it is created on the first `appliance serve` with database {}",
                    cfg.storage.path.display()
                ),
            }
        }
        other => bail!(
            "this secret is not generated by appliance; it comes from {other} (see {})",
            cfg.source
        ),
    }
    Ok(())
}

/// `--since`: RFC 3339, or an age such as `2h` (that long ago).
fn parse_since(s: &str) -> anyhow::Result<i64> {
    config::parse_since(s, crate::store::now_ms()).map_err(|e| anyhow::anyhow!("--since {e}"))
}

async fn outbox(cfg: Config, cmd: Outbox) -> anyhow::Result<()> {
    let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
    match cmd {
        Outbox::List {
            status,
            dead,
            route,
            limit,
            json,
        } => {
            if !(1..=100_000).contains(&limit) {
                bail!("--limit must be 1..100000");
            }
            let status = if dead {
                Some("dead".to_string())
            } else {
                status
            };
            let rows = store
                .list_deliveries(crate::store::DeliveryFilter {
                    status,
                    route,
                    event: None,
                    before: None,
                    limit,
                })
                .await?;
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(&crate::api::delivery_json(r))?);
                }
            } else {
                let mut table = vec![vec![
                    "ID".to_string(),
                    "EVENT".into(),
                    "ROUTE".into(),
                    "STATUS".into(),
                    "ATTEMPTS".into(),
                    "NEXT".into(),
                    "LAST ERROR".into(),
                ]];
                for r in &rows {
                    table.push(vec![
                        r.id.to_string(),
                        r.event.to_string(),
                        r.route.clone(),
                        r.status.clone(),
                        r.attempts.to_string(),
                        r.next_attempt_at_ms
                            .map(crate::api::rfc3339)
                            .unwrap_or_default(),
                        r.last_error.clone().unwrap_or_default(),
                    ]);
                }
                print!("{}", align(&table));
            }
        }
        Outbox::Retry { id, all_dead } => {
            if all_dead {
                let ids = store.revive_all_dead().await?;
                println!("{} dead deliveries are pending again", ids.len());
            } else if let Some(id) = id {
                match store.revive_delivery(id).await? {
                    crate::store::Revive::Revived => println!("delivery {id} is pending again"),
                    crate::store::Revive::NotDead => bail!("delivery {id} is not dead"),
                    crate::store::Revive::NotFound => bail!("no delivery with id {id}"),
                }
            }
        }
    }
    Ok(())
}

async fn snaptrade(cfg: Config, cmd: Snaptrade) -> anyhow::Result<()> {
    let Some(p) = cfg.providers.iter().find(|p| p.kind == "snaptrade") else {
        bail!("no SnapTrade provider in {}", cfg.source);
    };
    let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
    match cmd {
        Snaptrade::AddUser {
            user_id,
            secret_env,
        } => {
            let secret = match std::env::var(&secret_env) {
                Ok(v) if !v.is_empty() => v,
                _ => bail!("environment variable {secret_env} is not set"),
            };
            let revived = store
                .snaptrade_set_user_secret(&p.name, &user_id, &secret)
                .await?;
            println!(
                "stored the secret of SnapTrade user {user_id}; {} dead sync jobs re-queued",
                revived.len()
            );
        }
        Snaptrade::Rebuild => {
            let n = store.snaptrade_rebuild(&p.name).await?;
            println!("re-applied {n} SnapTrade events of provider {}", p.name);
        }
    }
    Ok(())
}

async fn tail(cfg: Config, args: TailArgs) -> anyhow::Result<()> {
    let server = args.server.clone().unwrap_or_else(|| base_url(&cfg));
    let var = args
        .token_env
        .clone()
        .unwrap_or_else(|| "APPLIANCE_ADMIN_TOKEN".to_string());
    let token = match std::env::var(&var) {
        Ok(t) if !t.is_empty() => t,
        _ if args.token_env.is_some() => bail!("environment variable {var} is not set"),
        _ => {
            match &cfg.admin.token {
                SecretSource::Generated(key) => {
                    let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
                    store.meta_get(key).await?.with_context(|| {
                    format!("no admin token: set {var} (the remote appliance's `appliance admin token`)")
                })?
                }
                _ => bail!("set {var} to the admin token of {server}"),
            }
        }
    };
    let secret = match &args.secret_env {
        None => None,
        Some(v) => match std::env::var(v) {
            Ok(s) if !s.is_empty() => Some(crate::verify::Secret(s.into_bytes())),
            _ => bail!("environment variable {v} is not set"),
        },
    };
    let state = args.state.clone().unwrap_or_else(|| {
        use sha2::Digest;
        let key = format!(
            "{server}|{}|{}|{}",
            args.forward,
            args.provider.as_deref().unwrap_or(""),
            args.event_type.as_deref().unwrap_or("")
        );
        let h = sha2::Sha256::digest(key.as_bytes());
        PathBuf::from(format!(".appliance-tail-{}.state", &hex::encode(h)[..12]))
    });
    let t = crate::tail::Tail {
        forward: args.forward,
        server,
        token,
        provider: args.provider,
        event_type: args.event_type,
        secret,
        state,
    };
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
    }
    t.run(shutdown).await
}

async fn db(cfg: Config, cmd: Db) -> anyhow::Result<ExitCode> {
    let store = Store::open(&cfg.storage.path, cfg.storage.durability)?;
    match cmd {
        Db::Backup { path } => {
            store.backup(&path).await?;
            println!(
                "backed up {} to {}",
                cfg.storage.path.display(),
                path.display()
            );
        }
        Db::Prune { dead, older_than } => {
            let retention = match older_than {
                Some(s) => {
                    config::parse_duration(&s).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?
                }
                None => cfg.storage.retention,
            };
            let r = store.prune(crate::store::cutoff(retention), dead).await?;
            println!(
                "pruned {} events and {} deliveries older than {}",
                r.events,
                r.deliveries,
                humantime::format_duration(retention)
            );
        }
        Db::Check => {
            let lines = store.integrity_check().await?;
            if lines == ["ok"] {
                println!(
                    "ok: {} passes the integrity check",
                    cfg.storage.path.display()
                );
            } else {
                for l in &lines {
                    println!("{l}");
                }
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
