//! Writing and reading certificate files. Every file is replaced atomically (temporary file in the
//! same directory, fsync, rename), so a reader never sees a half-written file.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ca::{Ca, Issued};
use crate::error::{Error, Result};
use crate::keypair::KeyPairPem;

/// File mode of certificates and public keys.
pub const PUBLIC_MODE: u32 = 0o644;
/// File mode of private keys.
pub const PRIVATE_MODE: u32 = 0o600;
/// Base name of the CA files: `ca.crt`, `ca.key`.
pub const CA_NAME: &str = "ca";

/// Paths of `NAME.crt` and `NAME.key` in `dir`; `name` must be a plain file name
/// (ASCII letters, digits, `.`, `_`, `-`; not starting with `.`).
pub fn pair_paths(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    validate_name(name)?;
    Ok((
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    ))
}

/// Writes `NAME.crt` (0644) and `NAME.key` (0600) into `dir` (created if missing), each replaced
/// atomically. The key is written first, so a watcher that reloads when the certificate changes
/// finds the matching key already in place; a reader racing both renames may still see a
/// new key with the old certificate for an instant and should retry if they do not match.
pub fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<()> {
    let (cert_path, key_path) = pair_paths(dir, name)?;
    create_dir(dir)?;
    write_atomic(&key_path, issued.key_pem.as_bytes(), PRIVATE_MODE)?;
    write_atomic(&cert_path, issued.cert_pem.as_bytes(), PUBLIC_MODE)
}

/// Writes `NAME.key` (private, 0600) and `NAME.pub` (public, 0644) into `dir` (created if
/// missing), each replaced atomically.
pub fn write_key_pair(dir: &Path, name: &str, key_pair: &KeyPairPem) -> Result<()> {
    validate_name(name)?;
    create_dir(dir)?;
    write_atomic(
        &dir.join(format!("{name}.key")),
        key_pair.private_pem.as_bytes(),
        PRIVATE_MODE,
    )?;
    write_atomic(
        &dir.join(format!("{name}.pub")),
        key_pair.public_pem.as_bytes(),
        PUBLIC_MODE,
    )
}

/// Loads the CA from `dir/ca.crt` and `dir/ca.key`.
pub fn load_ca(dir: &Path) -> Result<Ca> {
    let (cert_path, key_path) = pair_paths(dir, CA_NAME)?;
    let cert_pem = fs::read_to_string(&cert_path).map_err(|e| Error::io(&cert_path, e))?;
    let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::io(&key_path, e))?;
    // Name the file: "invalid certificate" alone does not say which one.
    Ca::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
        Error::InvalidCertificate(why) => {
            Error::InvalidCertificate(format!("{}: {why}", cert_path.display()))
        }
        Error::InvalidKey(why) => Error::InvalidKey(format!("{}: {why}", key_path.display())),
        Error::KeyMismatch | Error::NotCa => Error::InvalidCertificate(format!(
            "{} / {}: {e}",
            cert_path.display(),
            key_path.display()
        )),
        other => other,
    })
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Writes `contents` to `path` with `mode` via a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::InvalidName(path.display().to_string()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{nanos}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // The mode is set at creation, so a private key is never readable by others, even
        // briefly; set again afterwards because the umask may have narrowed the public mode.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        // Best effort: the original error is what matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself; failure here does not undo a completed write.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ca", "admission-serving", "client_1", "a.b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "a\0b", "ä"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn atomic_write_replaces_with_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn write_into_missing_parent_of_a_file_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let issued = Issued {
            cert_pem: "c".into(),
            key_pem: "k".into(),
        };
        assert!(matches!(
            write_pair(&blocker.join("sub"), "x", &issued),
            Err(Error::Io { .. })
        ));
    }
}
