//! The built-in holdings sync: an outbox job (same lease, retry and
//! dead-letter rules as any delivery) that fetches a user's accounts,
//! positions and balances through the SnapTrade API and replaces their
//! holdings in one transaction. A user whose secret is unknown cannot be
//! synced: the job gives up at once, naming the missing secret, and storing
//! that secret later re-queues it.

use super::client::{ApiError, Client};
use super::event::Webhook;
use crate::outbox::attempt::{Attempt, Job, Verdict};
use crate::store::Store;
use std::time::{Duration, Instant};

pub struct SyncTarget {
    pub provider: String,
    pub client: Client,
    pub store: Store,
    pub timeout: Duration,
}

impl SyncTarget {
    pub async fn deliver(&self, job: &Job) -> Attempt {
        let at_ms = crate::store::now_ms();
        let t0 = Instant::now();
        let (verdict, error, excerpt) = self.sync(job).await;
        Attempt {
            at_ms,
            duration_ms: t0.elapsed().as_millis() as i64,
            status_code: None,
            exit_code: None,
            error,
            response_excerpt: excerpt,
            verdict,
        }
    }

    async fn sync(&self, job: &Job) -> (Verdict, Option<String>, Option<String>) {
        let retry = |e: String, after: Option<Duration>| {
            (
                Verdict::Retry {
                    retry_after: after
                        .map(|d| d.clamp(Duration::from_secs(1), Duration::from_secs(3600))),
                },
                Some(e),
                None,
            )
        };
        let Some(user) = Webhook::parse(&job.body).ok().and_then(|w| w.user_id) else {
            return (
                Verdict::GiveUp,
                Some("event has no userId to sync".into()),
                None,
            );
        };
        let secret = match self
            .store
            .snaptrade_user_secret(&self.provider, &user)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                return (
                    Verdict::GiveUp,
                    Some(format!(
                        "no user secret stored for SnapTrade user {user}: store it with PUT /api/snaptrade/users/{user} or `appliance snaptrade add-user {user} --secret-env VAR`"
                    )),
                    None,
                );
            }
            Err(e) => return retry(format!("store: {e}"), None),
        };
        let snap =
            match tokio::time::timeout(self.timeout, self.client.snapshot(&user, &secret)).await {
                Err(_) => return retry(format!("timeout after {}s", self.timeout.as_secs()), None),
                Ok(Err(e)) => {
                    let after = match &e {
                        ApiError::RateLimited { .. } => e.retry_after(),
                        _ => None,
                    };
                    return retry(format!("SnapTrade API: {e}"), after);
                }
                Ok(Ok(s)) => s,
            };
        let accounts = snap.accounts.len();
        let positions: usize = snap.accounts.iter().map(|(_, p, _)| p.len()).sum();
        match self
            .store
            .snaptrade_replace_snapshot(&self.provider, &user, snap)
            .await
        {
            Ok(()) => (
                Verdict::Delivered,
                None,
                Some(format!(
                    "synced {accounts} accounts, {positions} positions for user {user}"
                )),
            ),
            Err(e) => retry(format!("store: {e}"), None),
        }
    }
}
