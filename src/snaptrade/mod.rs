//! SnapTrade: webhooks as typed projection changes ([`event`]), the API
//! client of the holdings sync ([`client`]), and the glue the rest of the
//! program uses: [`projection`] (what storing one event changes, applied by
//! the store in the event's own transaction) and the sync job's route name.

pub mod client;
pub mod event;
pub mod sync;

/// What storing one SnapTrade event changes in the projections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub provider: String,
    pub user_id: Option<String>,
    pub authorization_id: Option<String>,
    pub brokerage: Option<String>,
    pub account_id: Option<String>,
    /// `eventTimestamp` in µs: with the event's row id, the ordering key.
    pub ts_us: Option<i64>,
    pub effect: event::Effect,
}

/// The projection of a stored SnapTrade body; None when it is not a usable
/// SnapTrade webhook (it is still stored as an event).
pub fn projection(provider: &str, body: &[u8]) -> Option<Projection> {
    let w = event::Webhook::parse(body).ok()?;
    let effect = event::effect(&w);
    Some(Projection {
        provider: provider.to_string(),
        user_id: w.user_id,
        authorization_id: w.authorization_id,
        brokerage: w.brokerage,
        account_id: w.account_id,
        ts_us: w.event_timestamp_us,
        effect,
    })
}

/// The route name of a provider's built-in holdings sync jobs.
pub fn sync_route(provider: &str) -> String {
    format!("{provider}.sync")
}
