//! Support for the end-to-end tests: a real kube-apiserver + etcd (started by `hack/test.sh`, or by
//! this crate when run alone), one fresh namespace per test, and paths to the workspace's binaries.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed set-up should stop the test

pub mod admission_local;
pub mod admission_server;
mod cluster;
pub mod dispatcher;
pub mod faulty_receiver;
pub mod helm;
pub mod impersonate;
pub mod kelos;
pub mod kubectl;
pub mod metrics;
pub mod netns;
mod paths;
pub mod process;
pub mod receiver;
pub mod stats;
pub mod tasks;
mod tls;

pub use cluster::{Cluster, cluster};
pub use paths::{bin, examples_dir, free_port, workspace_root};
