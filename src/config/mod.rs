//! Configuration: where it is found, what it may say, and the validated form
//! the rest of the program trusts.
//!
//! The TOML text is deserialised into `raw` structs (serde, `deny_unknown_fields`,
//! every leaf that needs checking wrapped in `Spanned`), then one `validate` pass
//! collects *all* problems, each with `file:line:col`. Nothing outside this module
//! sees the raw form.

mod raw;
mod units;

use crate::verify::Scheme;
use ipnet::IpNet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use units::{parse_duration, parse_since, parse_size};

/// The env var consulted after `--config`.
pub const CONFIG_ENV: &str = "APPLIANCE_CONFIG";
/// Files tried after the env var, in order.
pub const DEFAULT_PATHS: &[&str] = &["./appliance.toml", "/etc/appliance/appliance.toml"];

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a file, or the embedded default.
    pub source: Source,
    pub server: Server,
    pub storage: Storage,
    pub admin: Admin,
    pub log: Log,
    pub metrics: Metrics,
    pub update: Update,
    pub outbox: Outbox,
    /// In file order.
    pub providers: Vec<Provider>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("the embedded default (no config file found)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub max_body: u64,
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy puts the client's address in.
    pub client_ip_header: String,
    pub read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Largest accepted request header block; above it the answer is 431.
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit group: an acknowledged event survives power loss.
    Full,
    /// fsync at checkpoints only: survives a process crash, not a power cut.
    Normal,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub path: PathBuf,
    pub durability: Durability,
    pub retention: Duration,
}

/// Where a secret (or the admin token) comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// Several env vars, for rotation: a request matching any of them is accepted.
    Envs(Vec<String>),
    /// Generated on first start and kept in the database under this key.
    Generated(String),
    /// The scheme needs no secret (Amazon SNS: RSA with AWS's certificate).
    NotNeeded,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env ${v}"),
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Envs(vs) => {
                let names: Vec<String> = vs.iter().map(|v| format!("${v}")).collect();
                write!(f, "env {} (rotation: any matches)", names.join(", "))
            }
            SecretSource::Generated(_) => f.write_str("generated, kept in the database"),
            SecretSource::NotNeeded => f.write_str("none (verified with the sender's certificate)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub token: SecretSource,
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
    pub dir: Option<PathBuf>,
    pub keep: usize,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub require_token: bool,
}

#[derive(Debug, Clone)]
pub struct Update {
    pub repo: String,
    pub api_url: String,
    /// Ed25519 public keys (base64, 32 bytes) whose zipsign signature a
    /// release artifact must carry; empty means self-update is refused.
    pub public_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    pub schedule: Vec<Duration>,
    pub jitter: f64,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// The scheme name (`stripe`, `hmac`, ...).
    pub kind: String,
    pub path: String,
    pub scheme: Scheme,
    pub secret: SecretSource,
    pub allow_ips: Option<Vec<IpNet>>,
    pub rate_limit: Option<RateLimit>,
    /// This provider's own limit, else `[server].max_body`.
    pub max_body: u64,
    pub routes: Vec<Route>,
    pub sync: Option<SnaptradeSync>,
    /// The public URL senders post to (Twilio and Square sign it).
    pub public_url: Option<String>,
    /// Amazon SNS: a pinned signing certificate (PEM); nothing is fetched.
    pub signing_cert_file: Option<PathBuf>,
    /// Discord: the JSON answered to stored interactions.
    pub deferred_response: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnaptradeSync {
    pub client_id_env: String,
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Globs on the event type (`*` matches any run of characters).
    pub events: Vec<String>,
    pub target: Target,
    pub timeout: Option<Duration>,
    pub concurrency: Option<usize>,
    pub schedule: Option<Vec<Duration>>,
}

#[derive(Debug, Clone)]
pub enum Target {
    Url {
        url: String,
        secret_env: Option<String>,
        headers: Vec<(String, String)>,
        forward_headers: Vec<String>,
    },
    Command(Vec<String>),
}

impl Route {
    pub fn matches(&self, event_type: &str) -> bool {
        self.events.iter().any(|g| glob_match(g, event_type))
    }
}

/// `*` matches any (possibly empty) run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// One problem found in a config file, already positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// Find the config file: `--config`, then `$APPLIANCE_CONFIG`, then the default
/// paths. `None` means the embedded default applies.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    DEFAULT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Locate and load the config (or the embedded default).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    match locate(explicit) {
        Some(path) => load_file(&path),
        None => Ok(embedded_default()),
    }
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parse and validate config text; `path` names the file in problems.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    raw::parse(text, path).map_err(|problems| ConfigError::Invalid { problems })
}

/// Key under which the embedded default's provider secret is kept.
pub fn generated_secret_key(provider: &str) -> String {
    format!("provider_secret.{provider}")
}

/// Key under which the generated admin token is kept.
pub const GENERATED_ADMIN_TOKEN_KEY: &str = "admin_token";

/// The configuration used when no file is found: one Standard Webhooks
/// provider `default` and an admin token, both generated on first start.
pub fn embedded_default() -> Config {
    let mut cfg = raw::parse(
        "[providers.default]\nkind = \"standard-webhooks\"\n",
        Path::new("<embedded>"),
    )
    .expect("the embedded default config is valid");
    cfg.source = Source::Embedded;
    cfg.storage.path = PathBuf::from("./appliance.db");
    cfg
}

impl Config {
    /// Every env var this config reads a secret from (hidden from commands).
    pub fn secret_env_vars(&self) -> Vec<String> {
        fn add(out: &mut Vec<String>, s: &SecretSource) {
            match s {
                SecretSource::Env(v) => out.push(v.clone()),
                SecretSource::Envs(vs) => out.extend(vs.iter().cloned()),
                _ => {}
            }
        }
        let mut out = Vec::new();
        add(&mut out, &self.admin.token);
        for p in &self.providers {
            add(&mut out, &p.secret);
            for r in &p.routes {
                if let Target::Url {
                    secret_env: Some(v),
                    ..
                } = &r.target
                {
                    out.push(v.clone());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Warnings that do not stop `check-config` but do stop `serve`: secrets whose
/// env var is unset or whose file cannot be read.
pub fn missing_secrets(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |who: &str, src: &SecretSource| match src {
        SecretSource::Env(v) => {
            if std::env::var_os(v).is_none_or(|x| x.is_empty()) {
                out.push(format!("{who}: environment variable {v} is not set"));
            }
        }
        SecretSource::Envs(vs) => {
            for v in vs {
                if std::env::var_os(v).is_none_or(|x| x.is_empty()) {
                    out.push(format!("{who}: environment variable {v} is not set"));
                }
            }
        }
        SecretSource::File(p) => {
            if let Err(e) = std::fs::metadata(p) {
                out.push(format!(
                    "{who}: secret file {} cannot be read: {e}",
                    p.display()
                ));
            }
        }
        SecretSource::Generated(_) | SecretSource::NotNeeded => {}
    };
    check("[admin] token_env", &cfg.admin.token);
    for p in &cfg.providers {
        check(&format!("provider {}", p.name), &p.secret);
        if let Some(s) = &p.sync {
            check(
                &format!("provider {} sync", p.name),
                &SecretSource::Env(s.client_id_env.clone()),
            );
        }
        for r in &p.routes {
            if let Target::Url {
                secret_env: Some(v),
                ..
            } = &r.target
            {
                check(
                    &format!("provider {} route {}", p.name, r.name),
                    &SecretSource::Env(v.clone()),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
