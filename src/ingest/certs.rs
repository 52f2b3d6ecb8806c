//! Amazon SNS signing certificates: fetched over https (or http for hosts
//! named in `allow_cert_hosts`) from an allowed host only, cached by URL in a
//! bounded cache; and the optional visit of a `SubscribeURL`.

use crate::error::HttpError;
use crate::store::Store;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Certificates kept; the cache is emptied when it would grow past this.
const MAX_CERTS: usize = 64;
/// Largest certificate accepted.
const MAX_CERT_BYTES: usize = 64 * 1024;

pub struct CertCache {
    certs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    http: reqwest::Client,
}

impl Default for CertCache {
    fn default() -> Self {
        CertCache {
            certs: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

impl CertCache {
    /// The certificate the SNS message in `body` names, once its URL passed
    /// the host rule. 401 for an untrusted URL, 503 when it cannot be fetched
    /// now (so SNS retries).
    pub async fn get(
        &self,
        body: &[u8],
        extra_hosts: &[String],
    ) -> Result<Arc<Vec<u8>>, HttpError> {
        let reject = |r: crate::verify::Rejection| {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            HttpError::new(status, r.code(), r.to_string())
        };
        let msg = crate::verify::sns::parse(body).map_err(reject)?;
        let url = msg.signing_cert_url;
        crate::verify::sns::cert_url_allowed(&url, extra_hosts).map_err(reject)?;
        if let Some(c) = self.certs.lock().ok().and_then(|m| m.get(&url).cloned()) {
            return Ok(c);
        }
        let unavailable = |why: String| {
            tracing::warn!(url, why, "cannot fetch the SNS signing certificate");
            HttpError::unavailable("signing certificate unavailable; retry later").retry_after(30)
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_CERT_BYTES {
            return Err(unavailable("certificate too large".into()));
        }
        let cert = Arc::new(bytes.to_vec());
        if let Ok(mut m) = self.certs.lock() {
            if m.len() >= MAX_CERTS {
                m.clear();
            }
            m.insert(url, cert.clone());
        }
        Ok(cert)
    }

    /// Visit a verified `SubscribeURL` in the background and record the
    /// outcome on the stored event.
    pub fn confirm_subscription(&self, store: Store, event: i64, url: String) {
        let http = self.http.clone();
        tokio::spawn(async move {
            let outcome = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    format!("subscription confirmed (HTTP {})", r.status().as_u16())
                }
                Ok(r) => format!(
                    "subscription confirmation failed: HTTP {}",
                    r.status().as_u16()
                ),
                Err(e) => format!(
                    "subscription confirmation failed: {}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection failed"
                    }
                ),
            };
            tracing::info!(event, outcome, "SNS auto-confirm");
            if let Err(e) = store.append_verification(event, &outcome).await {
                tracing::warn!(event, error = %e, "could not record the SNS confirmation");
            }
        });
    }
}
