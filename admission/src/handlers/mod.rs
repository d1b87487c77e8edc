//! The admission decisions. Each is a function of the parsed request (and the cache for
//! mutation) returning a [`crate::review::Decision`]; HTTP plumbing lives in `crate::admission`.

pub mod mutate_task;
pub mod mutate_taskspawner;
pub mod ratchet;
pub mod stamp_redelivery;
pub mod validate_task;
pub mod validate_taskspawner;

use kelos_hooks_shared::annotations::SPAWNER_LABEL;

use crate::review::Request;

/// `request.operation` values.
pub(crate) const CREATE: &str = "CREATE";
pub(crate) const UPDATE: &str = "UPDATE";

/// The spawner (namespace, name) named by a Task CREATE's `kelos.dev/taskspawner` label, if any.
pub fn spawner_of<'r>(req: &'r Request<'_>) -> Option<(&'r str, &'r str)> {
    if req.operation != CREATE {
        return None;
    }
    let name = req
        .object
        .as_ref()?
        .metadata
        .label(SPAWNER_LABEL)
        .filter(|n| !n.is_empty())?;
    Some((req.namespace()?, name))
}
