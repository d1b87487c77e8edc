//! The three admission decisions. Each is a function of the parsed request (and the cache for
//! mutation) returning a [`crate::review::Decision`]; HTTP plumbing lives in `crate::admission`.

pub mod mutate_task;
pub mod validate_task;
pub mod validate_taskspawner;

/// `request.operation` values.
pub(crate) const CREATE: &str = "CREATE";
pub(crate) const UPDATE: &str = "UPDATE";
