//! Support for the end-to-end tests: a real kube-apiserver + etcd (started by `hack/test.sh`, or by
//! this crate when run alone), one fresh namespace per test, and paths to the workspace's binaries.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed set-up should stop the test

pub mod admission_server;
mod cluster;
pub mod delivery;
pub mod dispatcher;
pub mod helm;
pub mod impersonate;
pub mod kelos;
pub mod kubectl;
mod paths;
pub mod receiver;
pub mod tasks;
mod tls;

pub use cluster::{Cluster, cluster};
pub use paths::{bin, examples_dir, free_port, workspace_root};
