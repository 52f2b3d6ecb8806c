//! `GET /api/stream`: Server-Sent Events. `event: webhook` (with `id:` = the
//! event's row id) for every stored event matching the filters, and
//! `event: delivery` (no id) when a delivery attempt ends. A client that
//! reconnects with `Last-Event-ID` first gets every matching event after that
//! id from the database, page by page, then the live feed; one `event: gap`
//! says that some of the ids it missed were pruned. A subscriber that falls
//! behind the live feed catches up from the database the same way, so memory
//! stays bounded and nothing is lost.

use super::{ApiState, summary_json};
use crate::config::glob_match;
use crate::live::Live;
use crate::store::EventFilter;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const PAGE: usize = 200;

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    provider: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

enum Phase {
    CatchUp,
    Live,
}

struct State_ {
    st: Arc<ApiState>,
    rx: tokio::sync::broadcast::Receiver<Arc<crate::live::Published>>,
    provider: Option<String>,
    event_type: Option<String>,
    last: i64,
    phase: Phase,
    queue: VecDeque<Event>,
}

impl State_ {
    fn wants(&self, provider: &str, event_type: &str) -> bool {
        self.provider.as_deref().is_none_or(|p| p == provider)
            && self
                .event_type
                .as_deref()
                .is_none_or(|g| glob_match(g, event_type))
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            match self.phase {
                Phase::CatchUp => {
                    let page = self
                        .st
                        .store
                        .list_events(EventFilter {
                            provider: self.provider.clone(),
                            event_type: self.event_type.clone(),
                            after: Some(self.last),
                            limit: PAGE,
                            ..Default::default()
                        })
                        .await;
                    match page {
                        Ok(rows) if rows.is_empty() => self.phase = Phase::Live,
                        Ok(rows) => {
                            for r in &rows {
                                self.queue.push_back(webhook_event(r.id, summary_json(r)));
                            }
                            self.last = rows.last().map(|r| r.id).unwrap_or(self.last);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "stream catch-up failed; ending the stream");
                            return None;
                        }
                    }
                }
                Phase::Live => match self.rx.recv().await {
                    Ok(p) => match &p.msg {
                        Live::Webhook(e) => {
                            if e.id > self.last && self.wants(&e.provider, &e.event_type) {
                                self.last = e.id;
                                return Some(
                                    Event::default()
                                        .event("webhook")
                                        .id(e.id.to_string())
                                        .data(&p.json),
                                );
                            }
                        }
                        Live::Delivery(d) => {
                            if self.wants(&d.provider, &d.event_type) {
                                return Some(Event::default().event("delivery").data(&p.json));
                            }
                        }
                    },
                    // Fell behind: read what was missed from the database.
                    Err(RecvError::Lagged(_)) => self.phase = Phase::CatchUp,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn webhook_event(id: i64, data: serde_json::Value) -> Event {
    Event::default()
        .event("webhook")
        .id(id.to_string())
        .data(data.to_string())
}

pub(super) async fn stream(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before looking at the database so nothing falls in between.
    let rx = st.hub.subscribe();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let (newest, oldest) = st.store.event_id_range().await.unwrap_or((None, None));
    let mut queue = VecDeque::new();
    let (last, phase) = match resume {
        Some(last) => {
            if oldest.is_some_and(|o| o > last + 1) && newest.is_some_and(|n| n > last) {
                queue.push_back(Event::default().event("gap").data(format!(
                    "{{\"after\":{last},\"oldest\":{}}}",
                    oldest.unwrap_or(0)
                )));
            }
            (last, Phase::CatchUp)
        }
        None => (newest.unwrap_or(0), Phase::Live),
    };
    let state = State_ {
        st,
        rx,
        provider: q.provider.filter(|s| !s.is_empty()),
        event_type: q.event_type.filter(|s| !s.is_empty()),
        last,
        phase,
        queue,
    };
    let stream =
        futures_util::stream::unfold(
            state,
            |mut s| async move { s.next().await.map(|e| (Ok(e), s)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
