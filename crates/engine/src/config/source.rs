//! Where a node's Calico resources come from. The daemon asks a
//! [`ConfigSource`] for snapshots of [`Resources`] and compiles each one
//! into tables; it does not know whether they came from a file or from
//! Calico's etcd datastore (the `podwire-etcd` crate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use super::{LoadError, Resources, parse};

/// How long a file must have been left alone before a poll that was not
/// asked for (`force`) reads it.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// A source of [`Resources`] snapshots.
pub trait ConfigSource: Send {
    /// What the source reads, for log lines (a file's path; etcd's endpoints).
    fn describe(&self) -> String;

    /// The resources, when they changed since the last call that returned
    /// them or an error (the first call always returns one or the other):
    /// `Ok(None)` means nothing changed, so a source that is asked often
    /// costs little and the same change is never applied or rejected twice.
    /// `force` looks even where nothing suggests a change (SIGHUP).
    fn poll(&mut self, force: bool) -> Result<Option<Resources>, SourceError>;

    /// Called once by whoever polls: a source that learns of changes by
    /// itself (a datastore watch) calls `notify` when it has one, so that it
    /// is polled at once instead of at the next tick.
    fn set_notify(&mut self, notify: Notify) {
        let _ = notify;
    }

    /// The source's state for `podwire show stats` and the metrics, where
    /// it has one worth showing (a datastore connection).
    fn status(&self) -> Option<Arc<SourceStatus>> {
        None
    }
}

/// What a source calls when it has a change to give.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// A datastore source's state, updated by the source's own thread and read
/// by the stats and metrics without taking any lock the source holds long.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// `etcdv3`.
    pub kind: &'static str,
    pub connected: AtomicBool,
    /// The last read compiled into a snapshot and the watch is running.
    pub in_sync: AtomicBool,
    /// The datastore revision of the resources held.
    pub revision: AtomicI64,
    /// Changes received from the watch.
    pub events: AtomicU64,
    /// Full reads after the first (a failed or compacted watch, a reconnect).
    pub relists: AtomicU64,
    /// Values left out because they did not parse or validate.
    pub values_rejected: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// The member connected to, or last tried.
    pub endpoint: Mutex<String>,
    pub last_error: Mutex<Option<String>>,
}

/// A copy of a [`SourceStatus`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceState {
    pub kind: String,
    pub endpoint: String,
    pub connected: bool,
    pub in_sync: bool,
    pub revision: i64,
    pub events: u64,
    pub relists: u64,
    pub values_rejected: u64,
    pub connect_failures: u64,
    pub last_error: Option<String>,
}

impl SourceStatus {
    pub fn new(kind: &'static str) -> SourceStatus {
        SourceStatus {
            kind,
            ..SourceStatus::default()
        }
    }

    /// Records an error (and that the connection is gone, if `lost`).
    pub fn error(&self, message: impl Into<String>, lost: bool) {
        if lost {
            self.connected.store(false, Relaxed);
            self.in_sync.store(false, Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.into());
    }

    pub fn state(&self) -> SourceState {
        SourceState {
            kind: self.kind.to_string(),
            endpoint: self
                .endpoint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            connected: self.connected.load(Relaxed),
            in_sync: self.in_sync.load(Relaxed),
            revision: self.revision.load(Relaxed),
            events: self.events.load(Relaxed),
            relists: self.relists.load(Relaxed),
            values_rejected: self.values_rejected.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Why a source could not give a snapshot. The running tables stay.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A configuration file that could not be read or is not valid.
    #[error(transparent)]
    File(#[from] LoadError),
    /// The first poll of a source gave nothing (a source's bug).
    #[error("{0} gave no configuration")]
    Nothing(String),
    /// A datastore that could not be read, or whose resources do not make
    /// a configuration.
    #[error("{0}")]
    Datastore(String),
}

/// What a file looked like when it was last read: enough to tell cheaply
/// that it may have changed (a new inode after an atomic rename, another
/// size or modification time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }
}

/// A multi-document YAML file of Calico resources (SPEC §1), read again
/// when its stamp changes or on request; a file whose bytes are those last
/// read is not parsed again.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    /// The stamp and the bytes of the last read (`None` bytes: it failed).
    last: Option<(Option<Stamp>, Option<Vec<u8>>)>,
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource {
            path: path.into(),
            last: None,
        }
    }
}

impl ConfigSource for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn poll(&mut self, force: bool) -> Result<Option<Resources>, SourceError> {
        let stamp = Stamp::of(&self.path);
        if !force && self.last.as_ref().is_some_and(|(s, _)| *s == stamp) {
            return Ok(None);
        }
        // A file written in place may be caught half-written: unless asked,
        // wait until it has not changed for a moment (the next poll takes it).
        let settling = stamp
            .and_then(|s| s.modified)
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < SETTLE);
        if !force && self.last.is_some() && settling {
            return Ok(None);
        }
        let path = self.path.display().to_string();
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(source) => {
                let again = self.last.as_ref().is_some_and(|(_, b)| b.is_none());
                self.last = Some((stamp, None));
                // The same failure is reported once, not every time it is seen.
                return if again && !force {
                    Ok(None)
                } else {
                    Err(LoadError::Read { path, source }.into())
                };
            }
        };
        if self
            .last
            .as_ref()
            .is_some_and(|(_, b)| b.as_deref() == Some(&bytes[..]))
        {
            self.last = Some((stamp, Some(bytes)));
            return Ok(None);
        }
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => parse(text).map_err(|source| LoadError::Invalid {
                path,
                source: Box::new(source),
            }),
            Err(e) => Err(LoadError::Read {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        };
        // Remembered whether it parses or not: the same bytes are not read again.
        self.last = Some((stamp, Some(bytes)));
        Ok(Some(parsed?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.2.0.0/16}\n";

    #[test]
    fn a_change_is_given_once_and_a_bad_file_rejected_once() {
        let dir = std::env::temp_dir().join(format!("podwire-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.yaml");
        std::fs::write(&file, POOL).unwrap();
        let mut s = FileSource::new(&file);
        assert_eq!(s.describe(), file.display().to_string());
        // The first call gives the resources; nothing changed since: none.
        assert_eq!(s.poll(false).unwrap().unwrap().pools.len(), 1);
        assert!(s.poll(false).unwrap().is_none());
        // Asked again with the same bytes (SIGHUP): still nothing new.
        assert!(s.poll(true).unwrap().is_none());
        // Replaced by a rename, with other bytes: given once.
        let tmp = dir.join("cluster.yaml.tmp");
        std::fs::write(
            &tmp,
            format!(
                "{POOL}---\n{}",
                POOL.replace("name: p", "name: q").replace("10.2.", "10.3.")
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        // Just written: left until it settles, then given.
        assert!(s.poll(false).unwrap().is_none());
        std::thread::sleep(SETTLE);
        assert_eq!(s.poll(false).unwrap().unwrap().pools.len(), 2);
        assert!(s.poll(true).unwrap().is_none());
        // A bad file: rejected once, with the file and the field.
        std::fs::write(&file, POOL.replace("10.2.0.0/16", "nonsense")).unwrap();
        let e = s.poll(true).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", file.display())), "{e}");
        assert!(e.contains("spec.cidr"), "{e}");
        assert!(s.poll(true).unwrap().is_none());
        // Gone: one error, then quiet until asked.
        std::fs::remove_file(&file).unwrap();
        assert!(
            s.poll(false)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        assert!(s.poll(false).unwrap().is_none());
        assert!(s.poll(true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
