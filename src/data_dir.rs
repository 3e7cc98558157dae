//! The data directory: created private (0700), refused when other users may write to it, and
//! held by one server at a time. Two servers on one directory would both re-adopt the same
//! agents and each stop them when it stops, so the first holds an exclusive lock for its
//! whole life; the kernel drops it when the process ends, `kill -9` included, so recovery
//! after a crash is never blocked by a stale lock.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

/// The lock file inside `data_dir`; it holds the holder's pid, for the refusal message.
pub const LOCK_FILE: &str = "server.lock";

/// Locks held until dropped (when the server's state goes away, or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _held: Vec<Flock<File>>,
}

/// Another live server holds the directory (or the database file).
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is in use by another agentapi-proxy server ({}); stop it first, or give this one its \
     own `data_dir`",
    path.display(),
    holder.map_or("pid unknown".to_string(), |pid| format!("pid {pid}"))
)]
pub struct InUse {
    pub path: PathBuf,
    pub holder: Option<i32>,
}

/// Prepares `dir` and locks it; with a database file outside it, locks that file's
/// `<file>.lock` too, so two servers with different directories cannot share one database.
pub fn prepare_and_lock(dir: &Path, database: Option<&Path>) -> anyhow::Result<DataDirLock> {
    prepare(dir)?;
    let mut held = vec![lock(&dir.join(LOCK_FILE), dir)?];
    if let Some(database) = database.filter(|file| !is_inside(file, dir)) {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        held.push(lock(Path::new(&name), database)?);
    }
    Ok(DataDirLock { _held: held })
}

/// Creates `dir` as 0700, and refuses one that other users may write to.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("while creating data_dir {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("while inspecting data_dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        bail!(
            "data_dir {} is writable by other users (mode {:o}); run `chmod 700` on it",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Takes the exclusive lock on `lock_path` without waiting, then records this pid in it.
/// `guarded` is what the refusal names.
fn lock(lock_path: &Path, guarded: &Path) -> anyhow::Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path)
        .with_context(|| format!("while opening the lock file {}", lock_path.display()))?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(InUse { path: guarded.to_path_buf(), holder }.into());
        }
        Err((_, errno)) => {
            return Err(errno).with_context(|| format!("while locking {}", lock_path.display()));
        }
    };
    let record = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    };
    record(&mut locked)
        .with_context(|| format!("while writing the lock file {}", lock_path.display()))?;
    Ok(locked)
}

fn is_inside(file: &Path, dir: &Path) -> bool {
    let parent = file.parent().filter(|parent| !parent.as_os_str().is_empty());
    match (parent.unwrap_or(Path::new(".")).canonicalize(), dir.canonicalize()) {
        (Ok(parent), Ok(dir)) => parent.starts_with(dir),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let first = prepare_and_lock(&data, None).expect("first");
        let refused = prepare_and_lock(&data, None).expect_err("second");
        let in_use = refused.downcast_ref::<InUse>().expect("InUse");
        assert_eq!(
            (in_use.path.as_path(), in_use.holder),
            (data.as_path(), Some(std::process::id() as i32))
        );
        drop(first);
        prepare_and_lock(&data, None).expect("free again once dropped");
    }

    #[test]
    fn a_database_outside_the_directory_is_locked_too() {
        let dir = tempfile::tempdir().expect("dir");
        let database = dir.path().join("elsewhere.db");
        let _first = prepare_and_lock(&dir.path().join("a"), Some(&database)).expect("first");
        let refused = prepare_and_lock(&dir.path().join("b"), Some(&database)).expect_err("b");
        assert_eq!(refused.downcast_ref::<InUse>().map(|e| e.path.clone()), Some(database));
    }
}
