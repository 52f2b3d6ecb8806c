//! What one delivery attempt is given and what it reports. Targets (HTTP,
//! command) turn a `Job` into an `Attempt`; the scheduler records the attempt
//! and decides, from its `verdict`, whether the delivery is done, retried or dead.

use std::time::Duration;

/// One attempt of one delivery.
#[derive(Debug, Clone)]
pub struct Job {
    /// The delivery's row id: also the stable `webhook-id` (`dlv_<id>`) and
    /// `APPLIANCE_DELIVERY_ID`, the same on every retry.
    pub delivery_id: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub provider: String,
    pub route: String,
    pub event_id: String,
    pub event_type: String,
    /// The original request body, byte for byte.
    pub body: Vec<u8>,
    /// The original request headers as stored (credentials already redacted).
    pub headers: Vec<(String, String)>,
}

impl Job {
    /// The stable id downstream receivers deduplicate on.
    pub fn webhook_id(&self) -> String {
        format!("dlv_{}", self.delivery_id)
    }
}

/// How an attempt ended, as far as the schedule is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again: at the schedule's next step, or after `retry_after` when the
    /// receiver said so (429/503 `Retry-After`, already clamped to [1s, 1h]).
    Retry {
        retry_after: Option<Duration>,
    },
    /// Never try again (HTTP 410 Gone).
    GiveUp,
}

/// The record of one attempt, kept on the delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Unix ms when the attempt started.
    pub at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub exit_code: Option<i32>,
    /// Short reason when not delivered: "timeout after 10s", "connection refused", "HTTP 500", "exit code 3"...
    pub error: Option<String>,
    /// The start of the response body (HTTP) or of stdout+stderr (command), at most `EXCERPT_MAX` bytes, lossy UTF-8.
    pub response_excerpt: Option<String>,
    pub verdict: Verdict,
}

/// Longest response excerpt kept on an attempt.
pub const EXCERPT_MAX: usize = 2048;
