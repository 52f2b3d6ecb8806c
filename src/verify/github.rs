//! STUB (replaced by the real scheme)
use super::*;
pub fn verify(_i: &Input<'_>) -> Result<Verified, Rejection> { Err(Rejection::Unauthorized("stub".into())) }
pub fn sign(_s: &Secret, _t: Option<&str>, _p: Option<&[u8]>, _n: i64, _x: &str) -> Result<SignedRequest, String> { Err("stub".into()) }
