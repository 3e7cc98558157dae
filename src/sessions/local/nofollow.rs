//! Files and directories reached through directory handles, never through a link: every
//! open is `openat(dir, name, O_NOFOLLOW)`, so a link an agent leaves behind is refused
//! instead of followed (security.md rule 15).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// Flags every open here carries.
const ALWAYS: OFlag = OFlag::O_NOFOLLOW.union(OFlag::O_CLOEXEC);

/// Opens the directory at `path`, refusing a link as its last component. Only for paths
/// the agent cannot change (the server's own directories).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | ALWAYS, Mode::empty()).map_err(explain)
}

/// Opens the directory `name` inside `dir`, refusing a link.
pub fn open_dir_at(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | ALWAYS, Mode::empty()).map_err(explain)
}

/// Creates the directory `name` inside `dir` with `mode` unless it exists, then opens it
/// (refusing a link or anything that is not a directory).
pub fn ensure_dir_at(dir: impl AsFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(errno.into()),
    }
    open_dir_at(dir, name)
}

/// Opens the file `name` inside `dir` with `flags` (plus `O_NOFOLLOW`), creating it with
/// `mode` when `flags` say so.
pub fn open_file_at(dir: impl AsFd, name: &str, flags: OFlag, mode: u32) -> io::Result<File> {
    openat(dir, name, flags | ALWAYS, Mode::from_bits_truncate(mode))
        .map(File::from)
        .map_err(explain)
}

/// Opens the regular file `name` inside `dir` for reading; `None` when there is none.
/// Never blocks on a FIFO and never follows a link.
pub fn read_regular_at(dir: impl AsFd, name: &str) -> io::Result<Option<File>> {
    let file = match open_file_at(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if !is_regular(&file)? {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name} is not a file")));
    }
    Ok(Some(file))
}

/// True when `fd` is a regular file.
pub fn is_regular(fd: impl AsFd) -> io::Result<bool> {
    let stat = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
}

/// `ELOOP` from `O_NOFOLLOW` says "too many levels of symbolic links"; say what happened.
fn explain(errno: Errno) -> io::Error {
    match errno {
        Errno::ELOOP => io::Error::other("it is a symbolic link (refused, never followed)"),
        Errno::ENOTDIR => io::Error::other("it is not a directory (a link or a file; refused)"),
        errno => errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_not_followed() {
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("file"), "secret").expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join("dir-link")).expect("link");
        std::os::unix::fs::symlink(target.join("file"), dir.path().join("file-link"))
            .expect("link");
        let handle = open_dir(dir.path()).expect("open");
        assert!(open_dir_at(&handle, "dir-link").is_err());
        assert!(ensure_dir_at(&handle, "dir-link", 0o700).is_err());
        assert!(open_dir(&dir.path().join("dir-link")).is_err());
        assert!(read_regular_at(&handle, "file-link").is_err());
        assert!(read_regular_at(&handle, "missing").expect("no error").is_none());
        let created = ensure_dir_at(&handle, "fresh", 0o700).expect("created");
        assert!(read_regular_at(&created, "nothing").expect("no error").is_none());
        assert!(read_regular_at(&handle, "fresh").is_err(), "a directory is not a file");
    }
}
