pub fn code_for(_r: &str) -> &'static str { "unauthorized" }
