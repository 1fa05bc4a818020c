//! Offline verification of segment files, for `strom verify`: every batch
//! whole, every CRC right, offsets growing. Reads only; repairs nothing
//! (a broker repairs at startup).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::error::LogError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentCheck {
    pub batches: u64,
    pub records: u64,
    pub valid_bytes: u64,
    pub file_bytes: u64,
    /// What is wrong at `valid_bytes`, if anything.
    pub problem: Option<String>,
}

/// Scans one `.log` file from start to end.
pub fn check_segment(path: &Path) -> Result<SegmentCheck, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut check = SegmentCheck {
        file_bytes,
        ..SegmentCheck::default()
    };
    let mut next_offset = i64::MIN;
    let mut buffer = Vec::new();
    while check.valid_bytes < file_bytes {
        let remaining = file_bytes - check.valid_bytes;
        if remaining < HEADER_SIZE as u64 {
            check.problem = Some(format!(
                "{remaining} trailing bytes are a torn batch header"
            ));
            break;
        }
        buffer.resize(HEADER_SIZE, 0);
        reader
            .read_exact(&mut buffer)
            .map_err(|e| LogError::io("read", path, e))?;
        let header = match BatchHeader::parse(&buffer) {
            Ok(header) => header,
            Err(error) => {
                check.problem = Some(error.to_string());
                break;
            }
        };
        if header.total_size() as u64 > remaining {
            check.problem = Some(format!(
                "batch at offset {} claims {} bytes but only {remaining} remain (torn write)",
                header.base_offset,
                header.total_size()
            ));
            break;
        }
        buffer.resize(header.total_size(), 0);
        reader
            .read_exact(&mut buffer[HEADER_SIZE..])
            .map_err(|e| LogError::io("read", path, e))?;
        if let Err(error) = batch::validate(&buffer, false) {
            check.problem = Some(format!("batch at offset {}: {error}", header.base_offset));
            break;
        }
        if header.base_offset < next_offset {
            check.problem = Some(format!(
                "batch at offset {} goes backwards (expected at least {next_offset})",
                header.base_offset
            ));
            break;
        }
        next_offset = header.next_offset();
        check.batches += 1;
        check.records += header.record_count.max(0) as u64;
        check.valid_bytes += header.total_size() as u64;
    }
    Ok(check)
}
