//! Turning a configured secret source into secret bytes: env vars, files, or
//! the values generated on first start and kept in the database.

use crate::config::SecretSource;
use crate::store::Store;
use crate::verify::Secret;
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("secret file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    FileEmpty(String),
    #[error("generated secrets are kept in the database, which is not open here")]
    NoStore,
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// What `resolve` found, and whether it was generated just now (so the caller
/// prints it once).
pub struct Resolved {
    pub secrets: Vec<Secret>,
    pub generated_now: bool,
}

/// A fresh Standard Webhooks secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_whsec() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A fresh admin token: 32 random bytes, URL-safe base64.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn env(var: &str) -> Result<Secret, SecretError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v.into_bytes())),
        _ => Err(SecretError::EnvMissing(var.to_string())),
    }
}

pub async fn resolve(
    source: &SecretSource,
    store: Option<&Store>,
    generate: fn() -> String,
) -> Result<Resolved, SecretError> {
    let plain = |secrets| {
        Ok(Resolved {
            secrets,
            generated_now: false,
        })
    };
    match source {
        SecretSource::NotNeeded => plain(Vec::new()),
        SecretSource::Env(v) => plain(vec![env(v)?]),
        SecretSource::Envs(vs) => plain(vs.iter().map(|v| env(v)).collect::<Result<_, _>>()?),
        SecretSource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| SecretError::File {
                path: p.display().to_string(),
                source,
            })?;
            let t = text.trim_end_matches(['\r', '\n']);
            if t.is_empty() {
                return Err(SecretError::FileEmpty(p.display().to_string()));
            }
            plain(vec![Secret(t.as_bytes().to_vec())])
        }
        SecretSource::Generated(key) => {
            let store = store.ok_or(SecretError::NoStore)?;
            let (v, created) = store.meta_get_or_create(key, generate).await?;
            Ok(Resolved {
                secrets: vec![Secret(v.into_bytes())],
                generated_now: created,
            })
        }
    }
}
