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

/// A message with its JSON rendered once, however many subscribers read it.
#[derive(Debug)]
pub struct Published {
    pub msg: Live,
    pub json: String,
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
    tx: broadcast::Sender<Arc<Published>>,
    render: fn(&Live) -> String,
}

impl Hub {
    /// `render` gives a message's JSON as subscribers see it (the API's shape).
    pub fn new(render: fn(&Live) -> String) -> Hub {
        Hub {
            tx: broadcast::channel(BUFFER).0,
            render,
        }
    }

    pub fn publish(&self, msg: Live) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let json = (self.render)(&msg);
        // A send error only means nobody is listening any more.
        let _ = self.tx.send(Arc::new(Published { msg, json }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
