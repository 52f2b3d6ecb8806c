//! SnapTrade: webhooks as typed projection changes ([`event`]) and the API
//! client of the holdings sync ([`client`]). Pure groundwork: neither module
//! touches the store or the outbox.

pub mod client;
pub mod event;
