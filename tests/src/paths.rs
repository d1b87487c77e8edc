//! Where things are: the workspace, its binaries, the kelos examples.

use std::path::PathBuf;

/// The repository root (the workspace of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// A debug binary of this workspace; `hack/test.sh` builds them before the tests run.
/// `KELOS_HOOKS_BIN_DIR` points elsewhere (the benchmarks: release builds).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("KELOS_HOOKS_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"))
                .join("debug")
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// `../shared/kelos-examples`: real kelos manifests, beside the repository.
pub fn examples_dir() -> PathBuf {
    let dir = workspace_root().join("../shared/kelos-examples");
    assert!(
        dir.is_dir(),
        "{} is missing: shared/ must sit beside the repository",
        dir.display()
    );
    dir
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
