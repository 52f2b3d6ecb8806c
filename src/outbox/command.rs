//! STUB
use super::attempt::*;
use std::time::Duration;
pub struct CommandTarget;
impl CommandTarget {
    pub fn new(_a: Vec<String>, _t: Duration) -> CommandTarget {
        CommandTarget
    }
    pub async fn deliver(&self, _j: &Job) -> Attempt {
        unimplemented!()
    }
}
