//! STUB
use super::attempt::*;
use crate::verify::Secret;
use std::time::Duration;
pub struct HttpTarget;
impl HttpTarget {
    pub fn new(
        _u: String,
        _s: Option<Secret>,
        _h: Vec<(String, String)>,
        _f: Vec<String>,
        _t: Duration,
    ) -> HttpTarget {
        HttpTarget
    }
    pub async fn deliver(&self, _c: &reqwest::Client, _j: &Job, _n: i64) -> Attempt {
        unimplemented!()
    }
}
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}
