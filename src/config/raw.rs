//! The TOML as written, and the single validation pass that turns it into a
//! [`Config`]. Every leaf that can be wrong keeps its span so each problem is
//! reported as `file:line:col: message`; a missing key is reported at its
//! table's header.

use super::*;
use crate::verify::{self, HmacScheme};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Option<S<RawServer>>,
    storage: Option<S<RawStorage>>,
    admin: Option<S<RawAdmin>>,
    log: Option<S<RawLog>>,
    metrics: Option<S<RawMetrics>>,
    update: Option<S<RawUpdate>>,
    outbox: Option<S<RawOutbox>>,
    #[serde(default)]
    providers: BTreeMap<String, S<RawProvider>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<S<String>>,
    max_body: Option<S<RawSize>>,
    trusted_proxies: Option<Vec<S<String>>>,
    client_ip_header: Option<S<String>>,
    read_timeout: Option<S<String>>,
    shutdown_grace: Option<S<String>>,
    max_header_size: Option<S<RawSize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    durability: Option<S<String>>,
    retention: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_env: Option<S<String>>,
    listen: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<S<String>>,
    level: Option<S<String>>,
    dir: Option<String>,
    keep: Option<S<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    require_token: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    repo: Option<S<String>>,
    api_url: Option<S<String>>,
    public_keys: Option<Vec<S<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    schedule: Option<S<Vec<S<String>>>>,
    jitter: Option<S<f64>>,
    timeout: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Int(i64),
    Str(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: Option<S<String>>,
    path: Option<S<String>>,
    secret_env: Option<S<String>>,
    secret_file: Option<S<String>>,
    secrets_env: Option<S<Vec<S<String>>>>,
    tolerance: Option<S<String>>,
    allow_ips: Option<Vec<S<String>>>,
    rate_limit: Option<S<RawRateLimit>>,
    max_body: Option<S<RawSize>>,
    #[serde(default)]
    routes: Vec<S<RawRoute>>,
    // generic hmac
    header: Option<S<String>>,
    algorithm: Option<S<String>>,
    encoding: Option<S<String>>,
    prefix: Option<S<String>>,
    timestamp_header: Option<S<String>>,
    signed_content: Option<S<String>>,
    id_from: Option<S<String>>,
    type_from: Option<S<String>>,
    // snaptrade
    sync: Option<S<RawSync>>,
    // twilio, square
    public_url: Option<S<String>>,
    // sns
    topic_arns: Option<S<Vec<S<String>>>>,
    allow_cert_hosts: Option<Vec<S<String>>>,
    auto_confirm: Option<bool>,
    signing_cert_file: Option<S<String>>,
    // discord
    deferred_response: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: S<i64>,
    burst: Option<S<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    client_id_env: Option<S<String>>,
    base_url: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<S<String>>,
    events: Option<S<Vec<S<String>>>>,
    url: Option<S<String>>,
    secret_env: Option<S<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    forward_headers: Vec<S<String>>,
    command: Option<S<Vec<String>>>,
    timeout: Option<S<String>>,
    concurrency: Option<S<i64>>,
    schedule: Option<S<Vec<S<String>>>>,
}

/// Collects problems against one source text.
struct Ctx<'a> {
    text: &'a str,
    file: String,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, col) = line_col(self.text, offset);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
        });
    }

    fn span<T>(&mut self, s: &S<T>, message: impl Into<String>) {
        self.at(s.span().start, message)
    }

    fn duration(&mut self, s: &Option<S<String>>, key: &str, default: Duration) -> Duration {
        match s {
            None => default,
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.span(v, format!("{key}: {e}"));
                    default
                }
            },
        }
    }

    fn size(&mut self, s: &Option<S<RawSize>>, key: &str, default: u64) -> u64 {
        match s {
            None => default,
            Some(v) => {
                let r = match v.get_ref() {
                    RawSize::Int(n) if *n > 0 => Ok(*n as u64),
                    RawSize::Int(n) => Err(format!("invalid size {n}; must be positive")),
                    RawSize::Str(t) => parse_size(t),
                };
                match r {
                    Ok(0) => {
                        self.span(v, format!("{key}: must be positive"));
                        default
                    }
                    Ok(n) => n,
                    Err(e) => {
                        self.span(v, format!("{key}: {e}"));
                        default
                    }
                }
            }
        }
    }

    fn cidrs(&mut self, list: &[S<String>], key: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for s in list {
            let t = s.get_ref().trim();
            let parsed = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.push(n),
                Err(_) => self.span(
                    s,
                    format!("{key}: invalid CIDR {t:?}; write it like \"10.0.0.0/8\" or \"2001:db8::/32\""),
                ),
            }
        }
        out
    }

    fn schedule(&mut self, s: &S<Vec<S<String>>>, key: &str) -> Vec<Duration> {
        let mut out = Vec::new();
        for d in s.get_ref() {
            match parse_duration(d.get_ref()) {
                Ok(v) => out.push(v),
                Err(e) => self.span(d, format!("{key}: {e}")),
            }
        }
        out
    }

    fn addr(&mut self, s: &S<String>, key: &str) -> Option<SocketAddr> {
        match s.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.span(
                    s,
                    format!(
                        "{key}: invalid address {:?}; write it like \"127.0.0.1:8080\" or \"[::]:8080\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn env_name(&mut self, s: &S<String>, key: &str) -> String {
        let v = s.get_ref();
        let ok = !v.is_empty()
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !v.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            self.span(
                s,
                format!("{key}: {v:?} is not an environment variable name (letters, digits, _); secrets are never written inline in the config"),
            );
        }
        v.clone()
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx {
        text,
        file: path.display().to_string(),
        problems: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            cx.at(offset, msg);
            return Err(cx.problems);
        }
    };
    let cfg = validate(&mut cx, raw, path);
    if cx.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(cx.problems)
    }
}

fn validate(cx: &mut Ctx<'_>, raw: RawConfig, path: &Path) -> Config {
    let rs = raw.server.map(|s| s.into_inner()).unwrap_or_default();
    let listen = rs
        .listen
        .as_ref()
        .and_then(|l| cx.addr(l, "server.listen"))
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal address"));
    let server = Server {
        listen,
        max_body: cx.size(&rs.max_body, "server.max_body", 1 << 20),
        trusted_proxies: rs
            .trusted_proxies
            .as_deref()
            .map(|l| cx.cidrs(l, "server.trusted_proxies"))
            .unwrap_or_default(),
        client_ip_header: match &rs.client_ip_header {
            None => "x-forwarded-for".to_string(),
            Some(h) => {
                if http::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err() {
                    cx.span(
                        h,
                        format!(
                            "server.client_ip_header: {:?} is not a header name",
                            h.get_ref()
                        ),
                    );
                }
                h.get_ref().to_ascii_lowercase()
            }
        },
        read_timeout: cx.duration(
            &rs.read_timeout,
            "server.read_timeout",
            Duration::from_secs(30),
        ),
        shutdown_grace: cx.duration(
            &rs.shutdown_grace,
            "server.shutdown_grace",
            Duration::from_secs(30),
        ),
        max_header_bytes: cx.size(&rs.max_header_size, "server.max_header_size", 32 << 10) as usize,
    };
    if server.max_header_bytes < 8192
        && let Some(s) = &rs.max_header_size
    {
        cx.span(s, "server.max_header_size: must be at least 8KiB");
    }

    let st = raw.storage.map(|s| s.into_inner()).unwrap_or_default();
    let durability = match st.durability.as_ref() {
        None => Durability::Full,
        Some(d) => match d.get_ref().as_str() {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => {
                cx.span(
                    d,
                    format!("storage.durability: {other:?} is not one of \"full\", \"normal\""),
                );
                Durability::Full
            }
        },
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let storage = Storage {
        path: st
            .path
            .map(|p| resolve(base_dir, &p))
            .unwrap_or_else(|| PathBuf::from("./appliance.db")),
        durability,
        retention: cx.duration(
            &st.retention,
            "storage.retention",
            Duration::from_secs(30 * 86400),
        ),
    };

    let ad = raw.admin.map(|s| s.into_inner()).unwrap_or_default();
    let admin = Admin {
        token: match &ad.token_env {
            Some(v) => SecretSource::Env(cx.env_name(v, "admin.token_env")),
            None => SecretSource::Generated(GENERATED_ADMIN_TOKEN_KEY.to_string()),
        },
        listen: ad.listen.as_ref().and_then(|l| cx.addr(l, "admin.listen")),
    };

    let lg = raw.log.map(|s| s.into_inner()).unwrap_or_default();
    let log = Log {
        format: match lg.format.as_ref() {
            None => LogFormat::Pretty,
            Some(f) => match f.get_ref().as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    cx.span(
                        f,
                        format!("log.format: {other:?} is not one of \"pretty\", \"json\""),
                    );
                    LogFormat::Pretty
                }
            },
        },
        level: match lg.level.as_ref() {
            None => "info".to_string(),
            Some(l) => {
                if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(l.get_ref()) {
                    cx.span(l, format!("log.level: invalid filter: {e}"));
                }
                l.get_ref().clone()
            }
        },
        dir: lg.dir.map(|d| resolve(base_dir, &d)),
        keep: match lg.keep.as_ref() {
            None => 14,
            Some(k) if *k.get_ref() >= 1 => *k.get_ref() as usize,
            Some(k) => {
                cx.span(k, "log.keep: must be at least 1");
                14
            }
        },
    };

    let metrics = Metrics {
        require_token: raw
            .metrics
            .map(|m| m.into_inner().require_token.unwrap_or(false))
            .unwrap_or(false),
    };
    let up = raw.update.map(|s| s.into_inner()).unwrap_or_default();
    let update = Update {
        repo: match &up.repo {
            Some(r) => {
                let v = r.get_ref();
                let ok = v.split('/').count() == 2 && v.split('/').all(|p| !p.is_empty());
                if !ok {
                    cx.span(r, format!("update.repo: {v:?} is not OWNER/NAME"));
                }
                v.clone()
            }
            None => "appliance-dev/appliance".to_string(),
        },
        api_url: match &up.api_url {
            Some(u) => {
                check_url(cx, u, "update.api_url");
                u.get_ref().trim_end_matches('/').to_string()
            }
            None => "https://api.github.com".to_string(),
        },
        public_keys: up
            .public_keys
            .iter()
            .flatten()
            .map(|k| {
                use base64::Engine;
                let ok = base64::engine::general_purpose::STANDARD
                    .decode(k.get_ref().trim())
                    .is_ok_and(|b| b.len() == 32);
                if !ok {
                    cx.span(
                        k,
                        "update.public_keys: each key is 32 bytes, base64 (an Ed25519 public key)",
                    );
                }
                k.get_ref().trim().to_string()
            })
            .collect(),
    };

    let ob = raw.outbox.map(|s| s.into_inner()).unwrap_or_default();
    let default_schedule: Vec<Duration> = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 57600]
        .iter()
        .map(|s| Duration::from_secs(*s))
        .collect();
    let outbox = Outbox {
        schedule: ob
            .schedule
            .as_ref()
            .map(|s| cx.schedule(s, "outbox.schedule"))
            .unwrap_or(default_schedule),
        jitter: match ob.jitter.as_ref() {
            None => 0.2,
            Some(j) if (0.0..=1.0).contains(j.get_ref()) => *j.get_ref(),
            Some(j) => {
                cx.span(j, "outbox.jitter: must be between 0.0 and 1.0");
                0.2
            }
        },
        timeout: cx.duration(&ob.timeout, "outbox.timeout", Duration::from_secs(10)),
    };

    // Providers, in file order.
    let mut entries: Vec<(String, S<RawProvider>)> = raw.providers.into_iter().collect();
    entries.sort_by_key(|(_, p)| p.span().start);
    let mut providers: Vec<Provider> = Vec::new();
    let mut paths: HashMap<String, String> = HashMap::new();
    let mut route_owner: HashMap<String, String> = HashMap::new();
    for (name, rp) in entries {
        let spans: Vec<usize> = rp.get_ref().routes.iter().map(|r| r.span().start).collect();
        if let Some(p) = provider(cx, &name, rp, &server, &mut paths, base_dir) {
            // Route names are global: a delivery names its route alone.
            for (r, at) in p.routes.iter().zip(spans) {
                if let Some(other) = route_owner.insert(r.name.clone(), p.name.clone())
                    && other != p.name
                {
                    cx.at(
                            at,
                            format!(
                                "providers.{}.routes: route name {:?} is already used by provider {other}; route names are unique across providers",
                                p.name, r.name
                            ),
                        );
                }
            }
            providers.push(p);
        }
    }

    Config {
        source: Source::File(path.to_path_buf()),
        server,
        storage,
        admin,
        log,
        metrics,
        update,
        outbox,
        providers,
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() || base.as_os_str().is_empty() {
        p
    } else {
        base.join(p)
    }
}

fn provider(
    cx: &mut Ctx<'_>,
    name: &str,
    rp: S<RawProvider>,
    server: &Server,
    paths: &mut HashMap<String, String>,
    base_dir: &Path,
) -> Option<Provider> {
    let header_at = rp.span().start;
    let p = rp.into_inner();
    let key = |k: &str| format!("providers.{name}.{k}");

    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        cx.at(
            header_at,
            format!("providers.{name}: a provider name uses letters, digits, '-' and '_' only"),
        );
    }

    let kind = match &p.kind {
        Some(k) => {
            if !verify::KINDS.contains(&k.get_ref().as_str()) {
                cx.span(
                    k,
                    format!(
                        "{}: unknown kind {:?}; known kinds: {}",
                        key("kind"),
                        k.get_ref(),
                        verify::KINDS.join(", ")
                    ),
                );
                return None;
            }
            k.get_ref().clone()
        }
        None if verify::KINDS.contains(&name) => name.to_string(),
        None => {
            cx.at(
                header_at,
                format!(
                    "providers.{name}: missing key `kind` ({name:?} is not a known kind; known kinds: {})",
                    verify::KINDS.join(", ")
                ),
            );
            return None;
        }
    };

    let path = match &p.path {
        Some(s) => {
            let v = s.get_ref();
            if !v.starts_with('/')
                || v.contains(['?', '#', ' '])
                || v.starts_with("/api")
                || is_reserved(v)
            {
                cx.span(
                    s,
                    format!("{}: {v:?} must start with '/', hold no '?', '#' or space, and not be /api, /healthz, /readyz or /metrics", key("path")),
                );
            }
            v.clone()
        }
        None => format!("/webhooks/{name}"),
    };
    if let Some(other) = paths.insert(path.clone(), name.to_string()) {
        let at = p.path.as_ref().map(|s| s.span().start).unwrap_or(header_at);
        cx.at(
            at,
            format!("providers.{name}: path {path} is already used by provider {other}"),
        );
    }

    // Secret source: exactly one.
    let given = [
        p.secret_env.is_some(),
        p.secret_file.is_some(),
        p.secrets_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let secret = if given > 1 {
        cx.at(
            header_at,
            format!("providers.{name}: give only one of secret_env, secret_file, secrets_env"),
        );
        SecretSource::Env(String::new())
    } else if let Some(v) = &p.secret_env {
        SecretSource::Env(cx.env_name(v, &key("secret_env")))
    } else if let Some(f) = &p.secret_file {
        SecretSource::File(resolve(base_dir, f.get_ref()))
    } else if let Some(list) = &p.secrets_env {
        if list.get_ref().is_empty() {
            cx.span(
                list,
                format!("{}: list at least one variable", key("secrets_env")),
            );
        }
        let names = list
            .get_ref()
            .iter()
            .map(|v| cx.env_name(v, &key("secrets_env")))
            .collect();
        SecretSource::Envs(names)
    } else if kind == "sns" {
        SecretSource::NotNeeded
    } else if cx.file == "<embedded>" {
        SecretSource::Generated(generated_secret_key(name))
    } else {
        cx.at(
            header_at,
            format!(
                "providers.{name}: missing key `secret_env` (or `secret_file`, or `secrets_env = [..]` for rotation)"
            ),
        );
        SecretSource::Env(String::new())
    };

    let tolerance = cx.duration(&p.tolerance, &key("tolerance"), Duration::from_secs(300));
    let scheme = match kind.as_str() {
        "stripe" => Scheme::Stripe { tolerance },
        "github" => Scheme::Github,
        "slack" => Scheme::Slack { tolerance },
        "shopify" => Scheme::Shopify,
        "standard-webhooks" => Scheme::StandardWebhooks { tolerance },
        "snaptrade" => Scheme::Snaptrade {
            legacy_secret: None,
        },
        "hmac" => Scheme::Hmac(hmac_scheme(cx, name, header_at, &p, tolerance)?),
        "sns" => Scheme::Sns(verify::SnsScheme {
            topic_arns: p.topic_arns.as_ref().map(|l| {
                if l.get_ref().is_empty() {
                    cx.span(
                        l,
                        format!(
                            "{}: list at least one topic ARN, or leave the key out",
                            key("topic_arns")
                        ),
                    );
                }
                l.get_ref().iter().map(|t| t.get_ref().clone()).collect()
            }),
            extra_cert_hosts: p
                .allow_cert_hosts
                .iter()
                .flatten()
                .map(|h| {
                    let v = h.get_ref();
                    if v.is_empty() || v.contains(['/', ' ', '@']) {
                        cx.span(
                            h,
                            format!(
                                "{}: {v:?} is not a host or host:port",
                                key("allow_cert_hosts")
                            ),
                        );
                    }
                    v.to_ascii_lowercase()
                })
                .collect(),
            type_from: type_source(cx, &p.type_from, &key("type_from")),
            auto_confirm: p.auto_confirm.unwrap_or(false),
        }),
        "twilio" => Scheme::Twilio(verify::TwilioScheme {
            public_url: p.public_url.as_ref().map(|u| u.get_ref().clone()),
            type_from: type_source(cx, &p.type_from, &key("type_from")),
        }),
        "discord" => Scheme::Discord {
            tolerance: p.tolerance.as_ref().map(|_| tolerance),
        },
        other => match Scheme::preset(other) {
            Some(Scheme::Preset(mut ps)) => {
                if p.tolerance.is_some() {
                    ps.tolerance = Some(tolerance);
                }
                Scheme::Preset(ps)
            }
            _ => return None,
        },
    };
    let type_from_ok = matches!(kind.as_str(), "hmac" | "sns" | "twilio");
    if let Some(t) = &p.type_from
        && !type_from_ok
    {
        cx.span(
            t,
            format!("{}: only for kinds hmac, sns and twilio", key("type_from")),
        );
    }
    let only = |cx: &mut Ctx<'_>, at: Option<usize>, k: &str, kinds: &[&str]| {
        if let Some(at) = at
            && !kinds.contains(&kind.as_str())
        {
            cx.at(
                at,
                format!("{}: only for kind = {}", key(k), kinds.join(" or ")),
            );
        }
    };
    only(
        cx,
        p.public_url.as_ref().map(|s| s.span().start),
        "public_url",
        &["twilio", "square"],
    );
    only(
        cx,
        p.topic_arns.as_ref().map(|s| s.span().start),
        "topic_arns",
        &["sns"],
    );
    only(
        cx,
        p.signing_cert_file.as_ref().map(|s| s.span().start),
        "signing_cert_file",
        &["sns"],
    );
    only(
        cx,
        p.deferred_response.as_ref().map(|s| s.span().start),
        "deferred_response",
        &["discord"],
    );
    if p.allow_cert_hosts.is_some() && kind != "sns" {
        cx.at(
            header_at,
            format!("{}: only for kind = sns", key("allow_cert_hosts")),
        );
    }
    if p.auto_confirm.is_some() && kind != "sns" {
        cx.at(
            header_at,
            format!("{}: only for kind = sns", key("auto_confirm")),
        );
    }
    if let Some(u) = &p.public_url {
        check_url(cx, u, &key("public_url"));
    }
    if kind == "sns"
        && (p.secret_env.is_some() || p.secret_file.is_some() || p.secrets_env.is_some())
    {
        cx.at(header_at, format!("providers.{name}: kind \"sns\" takes no secret (messages are verified with AWS's signing certificate)"));
    }
    let deferred_response = p.deferred_response.as_ref().map(|d| {
        if serde_json::from_str::<serde_json::Value>(d.get_ref()).is_err() {
            cx.span(
                d,
                format!(
                    "{}: must be JSON, e.g. '{{\"type\":5}}'",
                    key("deferred_response")
                ),
            );
        }
        d.get_ref().clone()
    });
    if kind != "hmac" {
        for (k, present) in [
            ("header", p.header.as_ref().map(|s| s.span().start)),
            ("algorithm", p.algorithm.as_ref().map(|s| s.span().start)),
            ("encoding", p.encoding.as_ref().map(|s| s.span().start)),
            ("prefix", p.prefix.as_ref().map(|s| s.span().start)),
            (
                "timestamp_header",
                p.timestamp_header.as_ref().map(|s| s.span().start),
            ),
            (
                "signed_content",
                p.signed_content.as_ref().map(|s| s.span().start),
            ),
            ("id_from", p.id_from.as_ref().map(|s| s.span().start)),
        ] {
            if let Some(at) = present {
                cx.at(at, format!("{}: only for kind = \"hmac\"", key(k)));
            }
        }
    }
    let sync = match &p.sync {
        None => None,
        Some(s) if kind != "snaptrade" => {
            cx.span(s, format!("{}: only for kind = \"snaptrade\"", key("sync")));
            None
        }
        Some(s) => {
            let at = s.span().start;
            let raw = s.get_ref();
            let client_id_env = match &raw.client_id_env {
                Some(v) => cx.env_name(v, &key("sync.client_id_env")),
                None => {
                    cx.at(at, format!("{}: missing key `client_id_env`", key("sync")));
                    String::new()
                }
            };
            let base_url = match &raw.base_url {
                Some(u) => {
                    check_url(cx, u, &key("sync.base_url"));
                    u.get_ref().trim_end_matches('/').to_string()
                }
                None => "https://api.snaptrade.com".to_string(),
            };
            Some(SnaptradeSync {
                client_id_env,
                base_url,
            })
        }
    };

    let allow_ips = p
        .allow_ips
        .as_deref()
        .map(|l| cx.cidrs(l, &key("allow_ips")));
    let rate_limit = p.rate_limit.as_ref().and_then(|r| {
        let rr = r.get_ref();
        let per_second = *rr.per_second.get_ref();
        let burst = rr
            .burst
            .as_ref()
            .map(|b| *b.get_ref())
            .unwrap_or(per_second);
        if !(1..=1_000_000).contains(&per_second) {
            cx.span(
                &rr.per_second,
                format!("{}: per_second must be 1..1000000", key("rate_limit")),
            );
            return None;
        }
        if !(1..=1_000_000).contains(&burst) {
            if let Some(b) = &rr.burst {
                cx.span(
                    b,
                    format!("{}: burst must be 1..1000000", key("rate_limit")),
                );
            }
            return None;
        }
        Some(RateLimit {
            per_second: per_second as u32,
            burst: burst as u32,
        })
    });
    let max_body = cx.size(&p.max_body, &key("max_body"), server.max_body);

    let mut routes = Vec::new();
    let mut route_names: HashMap<String, ()> = HashMap::new();
    for (i, r) in p.routes.iter().enumerate() {
        if let Some(route) = route(cx, name, i, r) {
            if route_names.insert(route.name.clone(), ()).is_some() {
                cx.span(
                    r,
                    format!(
                        "providers.{name}.routes: two routes are named {:?}",
                        route.name
                    ),
                );
            }
            routes.push(route);
        }
    }

    Some(Provider {
        name: name.to_string(),
        kind,
        path,
        scheme,
        secret,
        allow_ips,
        rate_limit,
        max_body,
        routes,
        sync,
        public_url: p.public_url.as_ref().map(|u| u.get_ref().clone()),
        signing_cert_file: p
            .signing_cert_file
            .as_ref()
            .map(|f| resolve(base_dir, f.get_ref())),
        deferred_response,
    })
}

fn type_source(cx: &mut Ctx<'_>, s: &Option<S<String>>, key: &str) -> Option<verify::Source> {
    let s = s.as_ref()?;
    match verify::Source::parse(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.span(s, format!("{key}: {e}"));
            None
        }
    }
}

fn is_reserved(p: &str) -> bool {
    matches!(p, "/" | "/healthz" | "/readyz" | "/metrics")
}

fn check_url(cx: &mut Ctx<'_>, u: &S<String>, key: &str) {
    let v = u.get_ref();
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) || v.contains(char::is_whitespace) {
        cx.span(u, format!("{key}: {v:?} is not an http:// or https:// URL"));
    }
}

fn hmac_scheme(
    cx: &mut Ctx<'_>,
    name: &str,
    header_at: usize,
    p: &RawProvider,
    tolerance: Duration,
) -> Option<HmacScheme> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let header = match &p.header {
        Some(h) => {
            if http::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err() {
                cx.span(
                    h,
                    format!(
                        "{}: {:?} is not a valid header name",
                        key("header"),
                        h.get_ref()
                    ),
                );
            }
            h.get_ref().clone()
        }
        None => {
            cx.at(
                header_at,
                format!(
                    "providers.{name}: kind \"hmac\" needs `header`, the request header that carries the signature"
                ),
            );
            return None;
        }
    };
    let algorithm = match p.algorithm.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("sha256") => verify::Algorithm::Sha256,
        Some("sha1") => verify::Algorithm::Sha1,
        Some("sha512") => verify::Algorithm::Sha512,
        Some(other) => {
            if let Some(a) = &p.algorithm {
                cx.span(
                    a,
                    format!(
                        "{}: {other:?} is not one of sha1, sha256, sha512",
                        key("algorithm")
                    ),
                );
            }
            verify::Algorithm::Sha256
        }
    };
    let encoding = match p.encoding.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("hex") => verify::Encoding::Hex,
        Some("base64") => verify::Encoding::Base64,
        Some(other) => {
            if let Some(a) = &p.encoding {
                cx.span(
                    a,
                    format!("{}: {other:?} is not one of hex, base64", key("encoding")),
                );
            }
            verify::Encoding::Hex
        }
    };
    let signed_content = p
        .signed_content
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "{body}".to_string());
    if let Some(s) = &p.signed_content {
        if !s.get_ref().contains("{body}") {
            cx.span(
                s,
                format!("{}: must contain {{body}}", key("signed_content")),
            );
        }
        if s.get_ref().contains("{timestamp}") && p.timestamp_header.is_none() {
            cx.span(
                s,
                format!(
                    "{}: uses {{timestamp}} but `timestamp_header` is not set",
                    key("signed_content")
                ),
            );
        }
    }
    if let Some(h) = &p.timestamp_header
        && http::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err()
    {
        cx.span(
            h,
            format!(
                "{}: {:?} is not a valid header name",
                key("timestamp_header"),
                h.get_ref()
            ),
        );
    }
    let mut source = |s: &Option<S<String>>, k: &str| -> Option<verify::Source> {
        let s = s.as_ref()?;
        match verify::Source::parse(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.span(s, format!("{}: {e}", key(k)));
                None
            }
        }
    };
    let id_from = source(&p.id_from, "id_from");
    let type_from = source(&p.type_from, "type_from");
    Some(HmacScheme {
        header,
        algorithm,
        encoding,
        prefix: p.prefix.as_ref().map(|s| s.get_ref().clone()),
        timestamp_header: p.timestamp_header.as_ref().map(|s| s.get_ref().clone()),
        signed_content,
        tolerance: p.timestamp_header.as_ref().map(|_| tolerance),
        id_from,
        type_from,
    })
}

fn route(cx: &mut Ctx<'_>, provider: &str, index: usize, rr: &S<RawRoute>) -> Option<Route> {
    let at = rr.span().start;
    let r = rr.get_ref();
    let key = |k: &str| format!("providers.{provider}.routes[{index}].{k}");
    let name = match &r.name {
        Some(n) => {
            let v = n.get_ref();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                cx.span(
                    n,
                    format!("{}: use letters, digits, '-', '_' and '.'", key("name")),
                );
            }
            v.clone()
        }
        None => format!("{provider}.{index}"),
    };
    let events = match &r.events {
        Some(e) if e.get_ref().is_empty() => {
            cx.span(
                e,
                format!(
                    "{}: list at least one glob, or \"*\" for all",
                    key("events")
                ),
            );
            Vec::new()
        }
        Some(e) => e.get_ref().iter().map(|g| g.get_ref().clone()).collect(),
        None => vec!["*".to_string()],
    };
    let target = match (&r.url, &r.command) {
        (Some(_), Some(_)) | (None, None) => {
            cx.at(
                at,
                format!(
                    "providers.{provider}.routes[{index}]: give exactly one target: `url = \"...\"` or `command = [\"...\"]`"
                ),
            );
            None
        }
        (Some(u), None) => {
            check_url(cx, u, &key("url"));
            let mut headers = Vec::new();
            for (k, v) in &r.headers {
                if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || http::HeaderValue::from_str(v).is_err()
                {
                    cx.at(
                        at,
                        format!("{}: {k:?} is not a valid header", key("headers")),
                    );
                }
                headers.push((k.clone(), v.clone()));
            }
            Some(Target::Url {
                url: u.get_ref().clone(),
                secret_env: r
                    .secret_env
                    .as_ref()
                    .map(|v| cx.env_name(v, &key("secret_env"))),
                headers,
                forward_headers: r
                    .forward_headers
                    .iter()
                    .map(|h| h.get_ref().to_ascii_lowercase())
                    .collect(),
            })
        }
        (None, Some(c)) => {
            if c.get_ref().is_empty() || c.get_ref()[0].is_empty() {
                cx.span(
                    c,
                    format!(
                        "{}: name the program to run, e.g. [\"/usr/local/bin/on-event\"]",
                        key("command")
                    ),
                );
            }
            if let Some(s) = &r.secret_env {
                cx.span(s, format!("{}: only for url targets", key("secret_env")));
            }
            Some(Target::Command(c.get_ref().clone()))
        }
    };
    let timeout = r
        .timeout
        .as_ref()
        .map(|_| cx.duration(&r.timeout, &key("timeout"), Duration::from_secs(10)));
    let concurrency = match &r.concurrency {
        None => None,
        Some(c) if (1..=10_000).contains(c.get_ref()) => Some(*c.get_ref() as usize),
        Some(c) => {
            cx.span(c, format!("{}: must be 1..10000", key("concurrency")));
            None
        }
    };
    let schedule = r
        .schedule
        .as_ref()
        .map(|s| cx.schedule(s, &key("schedule")));
    Some(Route {
        name,
        events,
        target: target?,
        timeout,
        concurrency,
        schedule,
    })
}
