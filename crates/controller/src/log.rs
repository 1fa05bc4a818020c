//! The local metadata log: one record a line, `<crc32c hex> <json>\n`,
//! appended and fsynced before a change is acknowledged, replayed at startup.
//! A torn last line (a crash mid-append) is cut off; a damaged line anywhere
//! else stops the node, since skipping it would silently change the cluster.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use strom_metadata::{MetadataImage, MetadataRecord};

#[derive(Debug, Error)]
pub enum MetadataLogError {
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata log {} is damaged at line {line}; restore it from a backup or remove the data directory", path.display())]
    Damaged { path: PathBuf, line: usize },
}

pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

fn encode(record: &MetadataRecord) -> String {
    let json = serde_json::to_string(record).expect("metadata records always serialize");
    format!("{:08x} {json}\n", crc32c::crc32c(json.as_bytes()))
}

fn decode(line: &str) -> Option<MetadataRecord> {
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(json.as_bytes()) != crc {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl MetadataLog {
    /// Opens the log at `path` (creating it) and replays it into a state.
    pub fn open(path: &Path) -> Result<(MetadataLog, MetadataImage), MetadataLogError> {
        let io = |operation| {
            move |source| MetadataLogError::Io {
                operation,
                path: path.to_path_buf(),
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open"))?;
        let mut state = MetadataImage::default();
        let mut valid_bytes = 0u64;
        let mut lines = BufReader::new(&file).lines().enumerate().peekable();
        while let Some((number, line)) = lines.next() {
            let line = line.map_err(io("read"))?;
            let is_last = lines.peek().is_none();
            match decode(&line) {
                Some(record) => {
                    state.apply(&record);
                    valid_bytes += line.len() as u64 + 1;
                }
                None if is_last => {
                    tracing::warn!(path = %path.display(), "cutting off a torn last metadata record");
                }
                None => {
                    return Err(MetadataLogError::Damaged {
                        path: path.to_path_buf(),
                        line: number + 1,
                    })
                }
            }
        }
        let length = file.metadata().map_err(io("stat"))?.len();
        if length != valid_bytes {
            file.set_len(valid_bytes).map_err(io("truncate"))?;
            file.sync_all().map_err(io("fsync"))?;
        }
        Ok((
            MetadataLog {
                path: path.to_path_buf(),
                file,
            },
            state,
        ))
    }

    /// Appends records durably: they are on disk when this returns.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        let text: String = records.iter().map(encode).collect();
        let io = |operation| {
            let path = self.path.clone();
            move |source| MetadataLogError::Io {
                operation,
                path,
                source,
            }
        };
        self.file.write_all(text.as_bytes()).map_err(io("write"))?;
        self.file.sync_data().map_err(io("fsync"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_restores_state_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        {
            let (mut log, state) = MetadataLog::open(&path).unwrap();
            assert_eq!(state.applied, 0);
            log.append(&[MetadataRecord::ClusterCreated {
                cluster_id: "abc".into(),
            }])
            .unwrap();
        }
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"deadbeef {\"type\":\"clus").unwrap();
        drop(file);
        let (_, state) = MetadataLog::open(&path).unwrap();
        assert_eq!(state.cluster_id.as_deref(), Some("abc"));
        assert_eq!(state.applied, 1);
        let (_, again) = MetadataLog::open(&path).unwrap();
        assert_eq!(again, state);
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        std::fs::write(&path, "00000000 {}\n00000000 {}\n").unwrap();
        assert!(matches!(
            MetadataLog::open(&path),
            Err(MetadataLogError::Damaged { line: 1, .. })
        ));
    }
}
