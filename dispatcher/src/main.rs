//! kelos-hooks-dispatcher (being built: issue 4).
#![forbid(unsafe_code)]
fn main() {}
