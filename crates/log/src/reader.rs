//! Reading a segment file front to back, one whole batch at a time, for the
//! offline checker and the log cleaner.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::batch::{BatchHeader, HEADER_SIZE};
use crate::error::LogError;

/// What the next bytes of the file hold.
pub(crate) enum Next {
    /// A batch whose length fits the file; its bytes are in [`SegmentReader::batch`].
    Batch(BatchHeader),
    /// The file ends exactly after the previous batch.
    End,
    /// The rest of the file is not a whole batch: why, and whether the file
    /// merely ends too early (a write cut off by a crash: a prefix of a
    /// batch) rather than holding bytes that are not a batch at all.
    Torn { problem: String, cut_short: bool },
}

pub(crate) struct SegmentReader {
    path: PathBuf,
    reader: BufReader<File>,
    position: u64,
    length: u64,
    buffer: Vec<u8>,
}

impl SegmentReader {
    pub(crate) fn open(path: &Path) -> Result<SegmentReader, LogError> {
        let file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
        let length = file
            .metadata()
            .map_err(|e| LogError::io("stat", path, e))?
            .len();
        Ok(SegmentReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            position: 0,
            length,
            buffer: Vec::new(),
        })
    }

    /// Where the next batch starts: the bytes of whole batches read so far.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn length(&self) -> u64 {
        self.length
    }

    /// The bytes of the batch the last [`Next::Batch`] returned.
    pub(crate) fn batch(&self) -> &[u8] {
        &self.buffer
    }

    pub(crate) fn next(&mut self) -> Result<Next, LogError> {
        let remaining = self.length - self.position;
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < HEADER_SIZE as u64 {
            return Ok(Next::Torn {
                problem: format!("{remaining} trailing bytes are a torn batch header"),
                cut_short: true,
            });
        }
        self.buffer.resize(HEADER_SIZE, 0);
        self.reader
            .read_exact(&mut self.buffer)
            .map_err(|e| LogError::io("read", &self.path, e))?;
        let header = match BatchHeader::parse(&self.buffer) {
            Ok(header) => header,
            Err(error) => {
                return Ok(Next::Torn {
                    problem: error.to_string(),
                    cut_short: false,
                })
            }
        };
        if header.total_size() as u64 > remaining {
            return Ok(Next::Torn {
                problem: format!(
                    "batch at offset {} claims {} bytes but only {remaining} remain (torn write)",
                    header.base_offset,
                    header.total_size()
                ),
                cut_short: true,
            });
        }
        self.buffer.resize(header.total_size(), 0);
        self.reader
            .read_exact(&mut self.buffer[HEADER_SIZE..])
            .map_err(|e| LogError::io("read", &self.path, e))?;
        self.position += header.total_size() as u64;
        Ok(Next::Batch(header))
    }
}
