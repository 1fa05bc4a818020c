//! A capped cache of open file handles.
//!
//! Every segment and index file is opened through this cache, on first use,
//! and closed again when the cache is full and the handle has not been used
//! for the longest time. That is what lets one node hold 10,000 partitions
//! (each with a log and two index files) under a descriptor limit.
//!
//! Handles are `Arc<File>`; an evicted handle stays valid for whoever still
//! holds it (a fetch copying from a segment, a flush in progress) and the
//! descriptor closes when the last holder lets go. Writes use positional I/O
//! (`pwrite`/`pread`), so any handle serves any caller.
//!
//! The cache is split into shards by partition directory, each with its own
//! lock and its share of the capacity, so that partitions do not contend on
//! one lock: a partition's files all live in one shard.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Entry {
    file: Arc<File>,
    last_use: u64,
}

struct Inner {
    entries: HashMap<PathBuf, Entry>,
    /// last_use tick -> path, oldest first.
    by_age: BTreeMap<u64, PathBuf>,
    tick: u64,
}

/// Shared, capped cache of open files. Cheap to clone.
#[derive(Clone)]
pub struct FileCache {
    shards: Arc<[Mutex<Inner>]>,
    /// Files each shard may keep open.
    shard_capacity: usize,
}

/// Files per shard when the capacity allows more than one shard.
const FILES_PER_SHARD: usize = 64;
const MAX_SHARDS: usize = 32;

impl FileCache {
    /// A cache that keeps at most `capacity` files open (at least 4).
    pub fn new(capacity: usize) -> FileCache {
        let capacity = capacity.max(4);
        let shards = (capacity / FILES_PER_SHARD).clamp(1, MAX_SHARDS);
        FileCache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Inner {
                        entries: HashMap::new(),
                        by_age: BTreeMap::new(),
                        tick: 0,
                    })
                })
                .collect(),
            shard_capacity: capacity / shards,
        }
    }

    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Number of handles the cache holds open right now.
    pub fn open_count(&self) -> usize {
        (0..self.shards.len())
            .map(|shard| self.lock(shard).entries.len())
            .sum()
    }

    /// The shard of `path`: by its directory, so one partition's files
    /// share a shard and different partitions mostly do not.
    fn shard_of(&self, path: &Path) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.parent().unwrap_or(path).hash(&mut hasher);
        (hasher.finish() % self.shards.len() as u64) as usize
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a way that matters (worst case, a stale age entry), so recover.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns an open read-write handle for `path`, creating the file if it
    /// does not exist.
    pub fn get(&self, path: &Path) -> io::Result<Arc<File>> {
        let mut inner = self.lock(self.shard_of(path));
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(entry) = inner.entries.get_mut(path) {
            let previous = entry.last_use;
            entry.last_use = tick;
            let file = entry.file.clone();
            inner.by_age.remove(&previous);
            inner.by_age.insert(tick, path.to_path_buf());
            return Ok(file);
        }
        while inner.entries.len() >= self.shard_capacity {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?,
        );
        inner.entries.insert(
            path.to_path_buf(),
            Entry {
                file: file.clone(),
                last_use: tick,
            },
        );
        inner.by_age.insert(tick, path.to_path_buf());
        Ok(file)
    }

    /// Drops the cached handle of `path` (before the file is deleted or renamed).
    pub fn forget(&self, path: &Path) {
        let mut inner = self.lock(self.shard_of(path));
        if let Some(entry) = inner.entries.remove(path) {
            inner.by_age.remove(&entry.last_use);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_never_holds_more_than_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4);
        for i in 0..20 {
            let file = cache.get(&dir.path().join(format!("f{i}"))).unwrap();
            drop(file);
            assert!(cache.open_count() <= 4);
        }
        assert_eq!(cache.open_count(), 4);
    }

    #[test]
    fn a_large_cache_is_sharded_and_still_capped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(256);
        assert_eq!(cache.shards.len(), 4);
        for partition in 0..40 {
            let partition_dir = dir.path().join(format!("t-{partition}"));
            std::fs::create_dir(&partition_dir).unwrap();
            for file in [
                "a.log",
                "a.index",
                "a.timeindex",
                "b.log",
                "b.index",
                "b.timeindex",
                "c.log",
            ] {
                cache.get(&partition_dir.join(file)).unwrap();
                assert!(cache.open_count() <= 256);
            }
        }
        let per_shard: Vec<usize> = (0..cache.shards.len())
            .map(|shard| cache.lock(shard).entries.len())
            .collect();
        assert!(per_shard.iter().all(|count| *count <= 64), "{per_shard:?}");
        assert!(
            per_shard.iter().filter(|count| **count > 0).count() > 1,
            "partitions spread over shards: {per_shard:?}"
        );
    }

    #[test]
    fn recently_used_files_survive_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4);
        let hot = dir.path().join("hot");
        cache.get(&hot).unwrap();
        for i in 0..10 {
            cache.get(&dir.path().join(format!("f{i}"))).unwrap();
            cache.get(&hot).unwrap();
        }
        let first = cache.get(&hot).unwrap();
        let second = cache.get(&hot).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }
}
