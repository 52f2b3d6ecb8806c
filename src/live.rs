//! The live feed: what was just committed, for SSE subscribers (the stream
//! and the dashboard). Publishers (ingest after a commit, the outbox after
//! recording an attempt) never wait: a broadcast channel with a bounded
//! buffer holds the newest messages, and a subscriber that falls behind is
//! told so (`Lagged`) and catches up from the database instead, so a slow
//! reader costs no memory and loses no event.

use crate::store::EventSummary;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Messages kept for subscribers that are a little behind.
const BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub enum Live {
    /// A newly stored event.
    Webhook(EventSummary),
    /// A delivery attempt finished.
    Delivery(DeliveryNotice),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryNotice {
    /// The delivery's id.
    pub id: i64,
    /// The event's row id.
    pub event: i64,
    pub provider: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub route: String,
    /// The delivery's status now: pending | delivered | dead.
    pub status: &'static str,
    /// What this attempt did: delivered | failed | dead.
    pub outcome: &'static str,
    pub attempts: i64,
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Live>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(BUFFER).0,
        }
    }
}

impl Hub {
    pub fn publish(&self, msg: Live) {
        // No subscribers is fine.
        let _ = self.tx.send(Arc::new(msg));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
