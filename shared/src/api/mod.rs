//! The kelos API as kelos-hooks sees it: the `onCompletion` block it adds to `TaskSpawner`, and the
//! `Task` fields the dispatcher reads. Every other kelos field is carried through untouched in
//! `rest` maps, so a read-modify-write never drops what kelos owns.

mod hooks;
mod quantity;
mod task;
mod taskspawner;

pub use hooks::{
    Format, Hook, MAX_HOOKS, OnCompletion, PagerDutyOptions, Phase, SecretKeyRef, SecretRef,
    TemplateOptions, Webhook,
};
pub use quantity::Quantity;
pub use task::{Task, TaskSpec, TaskStatus, Usage, Worker};
pub use taskspawner::{TaskSpawner, TaskSpawnerSpec};

/// API group of kelos resources.
pub const GROUP: &str = "kelos.dev";
/// The served version kelos-hooks reads and writes.
pub const VERSION: &str = "v1alpha2";
/// `apiVersion` of kelos resources.
pub const API_VERSION: &str = "kelos.dev/v1alpha2";
