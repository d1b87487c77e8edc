//! Everything that talks to the Kubernetes API server: the Task watch, the Lease, Events, Secret and
//! TaskSpawner reads, and delivery-state writes.

pub mod events;
pub mod leader;
pub mod record;
pub mod redeliver;
pub mod secrets;
pub mod spawner;
pub mod spawner_watch;
pub mod test_ledger;
pub mod watch;
