//! The API client both servers use: configured from the environment (in-cluster or
//! `KUBECONFIG`, as `kube::Client::try_default`) and naming itself in `User-Agent`, so the API
//! server's audit log and request metrics tell our requests from everyone else's (kube-rs sends
//! no `User-Agent` of its own).

use http::HeaderValue;
use http::header::USER_AGENT;

/// A client from the environment whose requests carry `User-Agent: <agent>` (e.g.
/// `kelos-hooks-dispatcher/0.1.0`).
pub async fn kube_client(agent: &'static str) -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(agent)));
    kube::Client::try_from(config)
}
