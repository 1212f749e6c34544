//! One store per data directory: `<data-dir>/veritrail.lock`, held with an exclusive `flock`
//! for as long as any of the store's threads runs.
//!
//! Two stores on one directory would each assign the same `seq`s from their own view of the
//! ledger heads, and each trusts its in-memory state (recent ids, recent records, cached API
//! keys, tree heads) to be the whole truth. A second `veritrail serve` (or `reindex`, or an
//! offline master-key rotation) on a directory in use therefore stops with an error naming the
//! process that holds it. Reading commands (`verify --data-dir`, `migrate-store`) take no lock.
//!
//! The lock is the kernel's: it goes away with the process however it ends, so a crash never
//! leaves a stale lock behind. Held by another process, it is refused at once; held by this
//! one, opening waits a few seconds for it, so a store dropped here (whose threads finish their
//! last work first) can be opened again at once.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use veritrail_store::{StoreError, StoreResult};

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "veritrail.lock";

/// How long opening waits for the lock.
const WAIT: Duration = Duration::from_secs(5);

/// The held lock; released when dropped (the file stays).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` — waiting up to [`WAIT`] when this process holds it — and writes
    /// this process's id into the file, for the error message of the next one.
    pub(crate) fn acquire(dir: &Path) -> StoreResult<DirLock> {
        DirLock::acquire_within(dir, WAIT)
    }

    pub(crate) fn acquire_within(dir: &Path, wait: Duration) -> StoreResult<DirLock> {
        let path = dir.join(LOCK_FILE);
        let cannot = |e: std::io::Error| StoreError::Backend(format!("cannot lock {}: {e}", path.display()));
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(cannot)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    // Another process: refused at once. This one (a store dropped here whose
                    // threads are finishing) or not known yet: waited for.
                    let holder = holder_pid(&mut file);
                    let other = holder.is_some_and(|pid| pid != std::process::id());
                    if other || Instant::now() >= deadline {
                        let holder = match holder {
                            Some(pid) => format!("another Veritrail process (pid {pid})"),
                            None => "another Veritrail process".to_string(),
                        };
                        return Err(StoreError::Unavailable(format!(
                            "the data directory {} is in use by {holder}; stop it first (one server per data directory)",
                            dir.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e)),
            }
        }
        file.set_len(0).map_err(cannot)?;
        file.rewind().map_err(cannot)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(cannot)?;
        Ok(DirLock { _file: file })
    }
}

/// The pid the holder wrote into the lock file, if it has yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_with_the_holders_pid_then_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let started = Instant::now();
        let refused = DirLock::acquire_within(dir.path(), Duration::from_millis(100)).unwrap_err().to_string();
        assert!(started.elapsed() >= Duration::from_millis(100), "waited before refusing");
        assert!(refused.contains("is in use by another Veritrail process"), "{refused}");
        assert!(refused.contains(&format!("(pid {})", std::process::id())), "{refused}");
        // A holder that lets go while the next one waits hands the directory over.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        DirLock::acquire_within(dir.path(), Duration::from_secs(5)).unwrap();
        release.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let _lock = DirLock::acquire(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
