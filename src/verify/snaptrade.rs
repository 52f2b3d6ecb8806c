//! STUB
use super::*;
pub fn verify(_i: &Input<'_>, _l: Option<&Secret>) -> Result<Verified, Rejection> { Err(Rejection::Unauthorized("stub".into())) }
pub fn sign(_s: &Secret, _l: Option<&Secret>, _t: Option<&str>, _p: Option<&[u8]>, _n: i64, _x: &str) -> Result<SignedRequest, String> { Err("stub".into()) }
