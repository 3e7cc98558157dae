//! `agent.log`: the agent's stdout and stderr as one append-only file (so the agent
//! survives the proxy going away), capped by copy-truncate, read back as a tail.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Opens (creating, mode 0600) the log for appending; both output streams share it.
pub fn open_for_agent(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn previous(path: &Path) -> PathBuf {
    path.with_extension("log.1")
}

/// When the log is larger than `max_bytes`, copies it to `agent.log.1` and empties it;
/// writers with `O_APPEND` simply continue at the new end.
pub fn cap(path: &Path, max_bytes: u64) -> io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if size <= max_bytes {
        return Ok(false);
    }
    let rotated = previous(path);
    std::fs::copy(path, &rotated)?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last `lines` lines of the log (reading the rotated part too when needed).
pub fn tail(path: &Path, lines: usize) -> io::Result<String> {
    if lines == 0 {
        return Ok(String::new());
    }
    let mut text = tail_of_file(path, lines)?;
    let have = text.lines().count();
    if have < lines
        && let Ok(older) = tail_of_file(&previous(path), lines - have)
    {
        text = older + &text;
    }
    Ok(text)
}

/// Reads backwards in chunks until `lines` newlines are found or the file starts.
fn tail_of_file(path: &Path, lines: usize) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(error) => return Err(error),
    };
    let size = file.seek(SeekFrom::End(0))?;
    const CHUNK: u64 = 16 * 1024;
    let mut start = size;
    let mut buffer: Vec<u8> = Vec::new();
    while start > 0 {
        let read_from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buffer);
        buffer = chunk;
        start = read_from;
        // One newline more than wanted: the file's last line usually ends with one.
        if buffer.iter().filter(|byte| **byte == b'\n').count() > lines {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buffer);
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    Ok(all[all.len().saturating_sub(lines)..].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_returns_the_last_lines_across_a_rotation() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.log");
        let mut log = open_for_agent(&path).expect("open");
        for line in 0..5000 {
            writeln!(log, "line {line}").expect("write");
        }
        assert_eq!(tail(&path, 2).expect("tail"), "line 4998\nline 4999\n");
        assert!(cap(&path, 1000).expect("cap"), "rotated");
        assert!(!cap(&path, 1000).expect("cap"), "already small");
        writeln!(log, "after").expect("write after rotation");
        assert_eq!(tail(&path, 3).expect("tail"), "line 4998\nline 4999\nafter\n");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 6, "appends at the new end");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    }
}
