//! One integration-test binary (linked once): the real server over real HTTP.

mod common;

mod browser;
mod cli;
mod concurrency;
mod crash;
mod kinds;
mod limits;
mod live;
mod ops;
mod outbox;
mod providers;
mod snaptrade;
mod tail;
mod update;
