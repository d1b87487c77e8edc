//! kelos-hooks-admission (being built: issue 3).
#![forbid(unsafe_code)]
fn main() {}
