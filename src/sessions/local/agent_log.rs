//! A session's agent log on disk: `<data_dir>/logs/<id>/agent.log` and one older part
//! `agent.log.1`, in a directory only the server can write. The log keeper writes it with an
//! exact cap ([`Writer`]); the server reads bounded tails of it ([`tail`]). Both reach the
//! files only through the directory's handle, never following a link.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use nix::fcntl::{OFlag, renameat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::nofollow;

pub const CURRENT: &str = "agent.log";
pub const PREVIOUS: &str = "agent.log.1";
/// Most bytes a tail reads and returns, whatever the lines look like.
pub const MAX_TAIL_BYTES: u64 = 1024 * 1024;
/// Bytes read per step when reading backwards.
const BLOCK: u64 = 64 * 1024;
const MODE: u32 = 0o600;

/// Appends to `agent.log` in `dir`, never letting it pass `max_bytes`: the byte that would
/// go past it goes to a fresh file after `agent.log` became `agent.log.1` (so at most
/// `2 × max_bytes` are ever on disk).
pub struct Writer {
    dir: OwnedFd,
    max_bytes: u64,
    /// `None` after a failed rotation; the next write tries again.
    file: Option<File>,
    size: u64,
}

impl Writer {
    /// Continues `agent.log` in `dir` (created 0600 when missing).
    pub fn open(dir: OwnedFd, max_bytes: u64) -> io::Result<Self> {
        let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT;
        let file = nofollow::open_file_at(&dir, CURRENT, flags, MODE)?;
        let size = if nofollow::is_regular(&file)? {
            file.metadata()?.len()
        } else {
            return Err(io::Error::other(format!("{CURRENT} is not a regular file")));
        };
        Ok(Self { dir, max_bytes: max_bytes.max(1), file: Some(file), size })
    }

    /// Writes all of `bytes`, rotating as often as the cap demands. A failed write drops
    /// the bytes it could not place (the agent's output must keep flowing).
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.size >= self.max_bytes || self.file.is_none() {
                self.rotate()?;
            }
            let room = usize::try_from(self.max_bytes - self.size).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            let Some(file) = self.file.as_mut() else { return Ok(()) };
            // Counted even when the write fails: the cap stays exact, never over.
            self.size += now.len() as u64;
            file.write_all(now)?;
            bytes = later;
        }
        Ok(())
    }

    /// `agent.log` → `agent.log.1` (replacing it), then a new `agent.log` created
    /// exclusively: whatever stood at that name is never opened.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        match renameat(&self.dir, CURRENT, &self.dir, PREVIOUS) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(errno) => return Err(errno.into()),
        }
        let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_EXCL;
        let file = match nofollow::open_file_at(&self.dir, CURRENT, flags, MODE) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                unlinkat(&self.dir, CURRENT, UnlinkatFlags::NoRemoveDir)?;
                nofollow::open_file_at(&self.dir, CURRENT, flags, MODE)?
            }
            other => other?,
        };
        self.file = Some(file);
        self.size = 0;
        Ok(())
    }
}

/// Where a tail reads from: a file, or anything counting what is read from it (tests).
pub trait Source {
    fn size(&self) -> io::Result<u64>;
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl Source for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buffer, offset)
    }
}

/// The last `lines` lines of the log in `dir` (reading `agent.log.1` too when needed), at
/// most [`MAX_TAIL_BYTES`] of them: a longer line is cut at its start.
pub fn tail(dir: &Path, lines: usize) -> io::Result<String> {
    if lines == 0 {
        return Ok(String::new());
    }
    let dir = match nofollow::open_dir(dir) {
        Ok(dir) => dir,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(error) => return Err(error),
    };
    let current = nofollow::read_regular_at(&dir, CURRENT)?;
    let mut previous = nofollow::read_regular_at(&dir, PREVIOUS)?;
    // A rotation between the two opens can make both names one file.
    if let (Some(current), Some(older)) = (&current, &previous) {
        let (a, b) = (current.metadata()?, older.metadata()?);
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            previous = None;
        }
    }
    let sources: Vec<&dyn Source> =
        [current.as_ref(), previous.as_ref()].into_iter().flatten().map(|f| f as _).collect();
    tail_of(&sources, lines, MAX_TAIL_BYTES)
}

/// The last `lines` lines of `sources` (newest first) taken as one text, reading backwards
/// block by block and at most `max_bytes` in all: linear in what it returns.
pub fn tail_of(sources: &[&dyn Source], lines: usize, max_bytes: u64) -> io::Result<String> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut budget = max_bytes;
    let mut newlines = 0;
    // One newline more than wanted: the text's last line usually ends with one.
    'sources: for source in sources {
        let mut end = source.size()?;
        while end > 0 {
            if newlines > lines || budget == 0 {
                break 'sources;
            }
            let start = end - end.min(BLOCK).min(budget);
            let mut block = vec![0; (end - start) as usize];
            let mut filled = 0;
            while filled < block.len() {
                match source.read_at(&mut block[filled..], start + filled as u64) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            block.truncate(filled);
            newlines += block.iter().filter(|byte| **byte == b'\n').count();
            budget -= end - start;
            blocks.push(block);
            end = start;
        }
    }
    let bytes: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    Ok(all[all.len().saturating_sub(lines)..].concat())
}

/// Removes `dir` and what it holds (the server's own directory; nothing in it is followed).
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::unix::fs::PermissionsExt;

    fn writer(dir: &Path, max_bytes: u64) -> Writer {
        Writer::open(nofollow::open_dir(dir).expect("dir"), max_bytes).expect("writer")
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
    }

    #[test]
    fn tail_returns_the_last_lines_across_a_rotation() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = writer(dir.path(), 1000);
        for line in 0..5000 {
            log.write(format!("line {line}\n").as_bytes()).expect("write");
        }
        assert_eq!(tail(dir.path(), 2).expect("tail"), "line 4998\nline 4999\n");
        let total: u64 = (0..5000).map(|n| format!("line {n}\n").len() as u64).sum();
        assert_eq!(size(&dir.path().join(PREVIOUS)), 1000);
        assert_eq!(size(&dir.path().join(CURRENT)), total % 1000);
        let many = tail(dir.path(), 150).expect("tail");
        assert!(many.starts_with("line 4850\n") && many.ends_with("line 4999\n"), "{many}");
        let mode = std::fs::metadata(dir.path().join(CURRENT)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_cap_is_exact_whatever_the_write_sizes() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = writer(dir.path(), 4096);
        log.write(&vec![b'a'; 10_000]).expect("one large write");
        log.write(&[b'b'; 100]).expect("small write");
        assert_eq!(size(&dir.path().join(PREVIOUS)), 4096);
        assert_eq!(size(&dir.path().join(CURRENT)), 10_100 - 2 * 4096);
        // A second writer (a new keeper after a restart) continues the same count.
        drop(log);
        let mut log = writer(dir.path(), 4096);
        log.write(&[b'c'; 4096]).expect("write");
        assert_eq!(size(&dir.path().join(PREVIOUS)), 4096);
        assert_eq!(size(&dir.path().join(CURRENT)), 10_100 + 4096 - 3 * 4096);
    }

    #[test]
    fn rotation_replaces_whatever_stands_at_the_names_without_following_it() {
        let dir = tempfile::tempdir().expect("dir");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).expect("mkdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "untouched").expect("write");
        let mut log = writer(&logs, 10);
        log.write(b"0123456789").expect("write");
        std::fs::remove_file(logs.join(CURRENT)).expect("rm");
        std::os::unix::fs::symlink(&outside, logs.join(CURRENT)).expect("link");
        std::os::unix::fs::symlink(&outside, logs.join(PREVIOUS)).expect("link");
        log.write(b"abc").expect("rotates");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "untouched");
        assert_eq!(std::fs::read_to_string(logs.join(CURRENT)).expect("read"), "abc");
        assert!(std::fs::symlink_metadata(logs.join(PREVIOUS)).expect("meta").is_symlink());
        assert!(tail(&logs, 5).is_err(), "a linked part is refused, not read");
        assert!(Writer::open(nofollow::open_dir(&logs).expect("dir"), 10).is_ok());
        std::fs::remove_file(logs.join(CURRENT)).expect("rm");
        std::os::unix::fs::symlink(&outside, logs.join(CURRENT)).expect("link");
        assert!(Writer::open(nofollow::open_dir(&logs).expect("dir"), 10).is_err());
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "untouched");
    }

    /// Counts the bytes a tail reads.
    struct Counted {
        file: File,
        read: Cell<u64>,
    }

    impl Source for Counted {
        fn size(&self) -> io::Result<u64> {
            self.file.size()
        }

        fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
            let read = Source::read_at(&self.file, buffer, offset)?;
            self.read.set(self.read.get() + read as u64);
            Ok(read)
        }
    }

    #[test]
    fn a_tail_of_one_huge_line_reads_and_returns_at_most_the_bound() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(CURRENT);
        let mut line = vec![b'x'; 20 * 1024 * 1024];
        line.push(b'\n');
        std::fs::write(&path, &line).expect("write");
        let current = Counted { file: File::open(&path).expect("open"), read: Cell::new(0) };
        let previous = Counted { file: File::open(&path).expect("open"), read: Cell::new(0) };
        let started = std::time::Instant::now();
        let text = tail_of(&[&current, &previous], 5, MAX_TAIL_BYTES).expect("tail");
        eprintln!("tail=5 of a 20 MiB line took {:?}", started.elapsed());
        assert_eq!(text.len() as u64, MAX_TAIL_BYTES);
        assert!(text.ends_with("xx\n"));
        assert_eq!(current.read.get() + previous.read.get(), MAX_TAIL_BYTES);
        // Short lines stop the reading as soon as enough were found.
        std::fs::write(&path, "a\n".repeat(1_000_000)).expect("write");
        let current = Counted { file: File::open(&path).expect("open"), read: Cell::new(0) };
        assert_eq!(tail_of(&[&current], 3, MAX_TAIL_BYTES).expect("tail"), "a\na\na\n");
        assert_eq!(current.read.get(), BLOCK);
    }
}
