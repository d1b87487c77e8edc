//! Listening sockets inside a network namespace (made by the caller, e.g. `ip netns add`): a test
//! host of its own — say a receiver at an address of a documentation range behind a veth pair —
//! served by this process. The socket is bound on a short-lived thread moved into the namespace
//! (`setns`); a socket keeps the namespace it was created in, so the rest of the process stays
//! where it is.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result, anyhow};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// A TCP listener on `addr` inside the network namespace `netns` (`/run/netns/<netns>`).
pub fn listen_in(netns: &str, addr: SocketAddr) -> Result<TcpListener> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || -> Result<TcpListener> {
        let ns = std::fs::File::open(&path)
            .with_context(|| format!("opening {path}: does network namespace exist?"))?;
        move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(LinkNameSpaceType::Network),
        )
        .with_context(|| format!("setns into {path} (needs CAP_SYS_ADMIN)"))?;
        TcpListener::bind(addr).with_context(|| format!("bind {addr} in {path}"))
    })
    .join()
    .map_err(|_| anyhow!("the thread binding in a network namespace panicked"))?
}
