//! Offline verification of segment files, for `strom verify`: every batch
//! whole, every CRC right, offsets growing. Reads only; repairs nothing
//! (a broker repairs at startup).

use std::path::Path;

use crate::batch;
use crate::error::LogError;
use crate::reader::{Next, SegmentReader};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentCheck {
    pub batches: u64,
    pub records: u64,
    pub valid_bytes: u64,
    pub file_bytes: u64,
    /// What is wrong at `valid_bytes`, if anything.
    pub problem: Option<String>,
    /// The problem is only that the file ends inside its last batch: what a
    /// process killed mid-write leaves behind. Such a batch was never
    /// acknowledged, and a broker truncates it when it opens the log.
    pub cut_short: bool,
}

/// Scans one `.log` file from start to end.
pub fn check_segment(path: &Path) -> Result<SegmentCheck, LogError> {
    let mut reader = SegmentReader::open(path)?;
    let mut check = SegmentCheck {
        file_bytes: reader.length(),
        ..SegmentCheck::default()
    };
    let mut next_offset = i64::MIN;
    loop {
        let start = reader.position();
        let header = match reader.next()? {
            Next::End => break,
            Next::Torn { problem, cut_short } => {
                check.problem = Some(problem);
                check.cut_short = cut_short;
                break;
            }
            Next::Batch(header) => header,
        };
        if let Err(error) = batch::validate(reader.batch(), false) {
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
        check.valid_bytes = start + header.total_size() as u64;
    }
    Ok(check)
}
