//! A Node whose "kubelet" only serves container logs.
//!
//! kelos reads a finished agent's outputs (PR URLs, `cost-usd: …`, token counts) from the agent
//! container's log through the API server (`pods/log`), which asks the kubelet of the Pod's Node.
//! No kubelet runs here, so this stand-in answers `GET /containerLogs/{ns}/{pod}/{container}`
//! over HTTPS with the log a test scripted, and a Node object points the API server at it
//! (`status.addresses` 127.0.0.1, `status.daemonEndpoints.kubeletEndpoint.port`). The API server
//! is started without `--kubelet-certificate-authority`, so it does not verify this certificate.
//! kelos's own parsing of the log (`usageFromResults`) is what sets `status.usage`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Body;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::net::TcpListener;

use crate::tls::acceptor_for;

type Logs = Arc<Mutex<HashMap<String, String>>>;

/// The log server and the Node that points at it; the server stops when dropped.
pub struct LogNode {
    name: String,
    logs: Logs,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LogNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(ns: &str, pod: &str, container: &str) -> String {
    format!("/containerLogs/{ns}/{pod}/{container}")
}

impl LogNode {
    /// Starts the log server on 127.0.0.1 and registers Node `name` for it.
    pub async fn start(client: kube::Client, name: &str) -> Result<LogNode> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (_, acceptor) = acceptor_for("kelos-hooks test kubelet CA", ip)?;
        let listener = TcpListener::bind((ip, 0)).await?;
        let port = listener.local_addr()?.port();
        let logs: Logs = Arc::default();
        let task = {
            let logs = logs.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let logs = logs.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req: Request<_>| {
                            let log = logs
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(req.uri().path())
                                .cloned();
                            async move {
                                Ok::<_, std::convert::Infallible>(match log {
                                    Some(text) => Response::new(Body::from(text)),
                                    None => {
                                        let mut r = Response::new(Body::from("no such container"));
                                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                        r
                                    }
                                })
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        register(client, name, port).await?;
        Ok(LogNode {
            name: name.to_owned(),
            logs,
            task,
        })
    }

    /// The Node's name (for `spec.nodeName`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the log of `container` in Pod `ns/pod` reads from now on.
    pub fn set_log(&self, ns: &str, pod: &str, container: &str, text: String) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(ns, pod, container), text);
    }
}

/// Creates (or updates) Node `name` with the kubelet endpoint 127.0.0.1:`port`, Ready.
async fn register(client: kube::Client, name: &str, port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(client);
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("creating the log Node"),
    }
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kelos-hooks test log server"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("writing the log Node's status")?;
    Ok(())
}
