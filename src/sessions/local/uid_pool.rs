//! `agent.uid_range`: one uid per session, so agents under `run_as_user` cannot read each
//! other's `/proc/<pid>/environ`, signal each other or share `RLIMIT_NPROC` (security.md
//! rule 14). A session keeps its uid until its files are removed (DELETE or purge), so a
//! restarted agent still owns its directory and no later session inherits its files. No
//! database column: after a restart the holder of each uid is read back from the owner of
//! the session directories.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct UidPool {
    first: u32,
    last: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, u32>,
    /// Where the search for a free uid starts, so freed uids are reused last.
    next: u32,
}

impl UidPool {
    /// The pool for `[first, last]`, with the uids that session directories under
    /// `sessions_dir` already belong to counted as held; `None` without a range.
    pub fn new(range: &[u32], sessions_dir: &Path) -> Option<Self> {
        let [first, last] = range[..] else { return None };
        let mut state = State { held: HashMap::new(), next: first };
        for entry in std::fs::read_dir(sessions_dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir()
                && (first..=last).contains(&meta.uid())
                && let Some(name) = entry.file_name().to_str()
            {
                state.held.insert(name.to_string(), meta.uid());
            }
        }
        Some(Self { first, last, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session's uid: the one it holds, or a free one; `None` when all are taken.
    pub fn acquire(&self, session_id: &str) -> Option<u32> {
        let mut state = self.state();
        if let Some(uid) = state.held.get(session_id) {
            return Some(*uid);
        }
        let span = u64::from(self.last - self.first) + 1;
        if state.held.len() as u64 >= span {
            return None;
        }
        let taken: std::collections::HashSet<u32> = state.held.values().copied().collect();
        let start = state.next.clamp(self.first, self.last);
        let uid = (0..span)
            .map(|offset| self.first + ((u64::from(start - self.first) + offset) % span) as u32)
            .find(|uid| !taken.contains(uid))?;
        state.next = if uid == self.last { self.first } else { uid + 1 };
        state.held.insert(session_id.to_string(), uid);
        Some(uid)
    }

    /// Frees the session's uid (its files are gone).
    pub fn release(&self, session_id: &str) {
        self.state().held.remove(session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_gets_its_own_uid_until_released_and_the_range_is_never_left() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = UidPool::new(&[500_000, 500_002], dir.path()).expect("pool");
        let a = pool.acquire("a").expect("a");
        let b = pool.acquire("b").expect("b");
        let c = pool.acquire("c").expect("c");
        assert_eq!(pool.acquire("a"), Some(a), "a session keeps its uid");
        let mut all = vec![a, b, c];
        all.sort_unstable();
        assert_eq!(all, vec![500_000, 500_001, 500_002]);
        assert_eq!(pool.acquire("d"), None, "the range is exhausted");
        pool.release("b");
        assert_eq!(pool.acquire("d"), Some(b));
        assert!(UidPool::new(&[], dir.path()).is_none());
    }

    #[test]
    fn uids_held_by_existing_session_directories_are_not_handed_out_again() {
        let dir = tempfile::tempdir().expect("dir");
        let owner = nix::unistd::geteuid().as_raw();
        std::fs::create_dir(dir.path().join("old")).expect("mkdir");
        let pool = UidPool::new(&[owner, owner], dir.path()).expect("pool");
        assert_eq!(pool.acquire("new"), None);
        assert_eq!(pool.acquire("old"), Some(owner));
    }
}
