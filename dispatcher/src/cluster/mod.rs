//! Everything that talks to the Kubernetes API server: the Task watch, the Lease, Events, Secret and
//! TaskSpawner reads, and delivery-state writes.

pub mod events;
pub mod leader;
pub mod record;
pub mod secrets;
pub mod spawner;
pub mod watch;
