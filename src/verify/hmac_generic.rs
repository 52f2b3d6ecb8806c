//! STUB
use super::*;
#[derive(Debug, Clone)] pub enum Algorithm { Sha1, Sha256, Sha512 }
#[derive(Debug, Clone)] pub enum Encoding { Hex, Base64 }
#[derive(Debug, Clone)] pub enum Source { Header(String), Json(String), Fixed(String) }
impl Source { pub fn parse(s: &str) -> Result<Source, String> { Ok(Source::Fixed(s.into())) } }
#[derive(Debug, Clone)] pub struct HmacScheme { pub header: String, pub algorithm: Algorithm, pub encoding: Encoding, pub prefix: Option<String>, pub timestamp_header: Option<String>, pub signed_content: String, pub tolerance: Option<Duration>, pub id_from: Option<Source>, pub type_from: Option<Source> }
impl HmacScheme {
pub fn verify(&self, _i: &Input<'_>) -> Result<Verified, Rejection> { Err(Rejection::Unauthorized("stub".into())) }
pub fn sign(&self, _s: &Secret, _t: Option<&str>, _p: Option<&[u8]>, _n: i64, _x: &str) -> Result<SignedRequest, String> { Err("stub".into()) }
}
