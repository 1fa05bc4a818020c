//! `strom verify`: check every segment of a stopped broker's data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

/// Check every segment in a data directory: whole batches, valid CRCs,
/// growing offsets. Run it while the broker is stopped; it changes nothing
/// (a broker repairs a torn tail itself when it starts).
///
/// Exit codes: 0 when everything is intact; 2 when the only problem is a
/// write cut off at the very end of a partition's active segment (what
/// `kill -9` or a crash mid-write leaves: that batch was never acknowledged,
/// and the broker truncates it when it starts); 1 when anything else is
/// damaged.
///
/// Example:
///   strom verify --data-dir ./strom-data
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct VerifyArgs {
    /// The broker's data directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./strom-data",
        env = "STROM_DATA_DIR"
    )]
    data_dir: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut partitions = 0u64;
    let mut segments = 0u64;
    let mut batches = 0u64;
    let mut records = 0u64;
    let mut problems = Vec::new();
    let mut cut_short = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.data_dir)
        .with_context(|| format!("cannot read data directory {}", args.data_dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        // Segment files only: 20-digit base offset, `.log`.
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.strip_suffix(".log"))
                    .is_some_and(|stem| {
                        stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .collect();
        if logs.is_empty() {
            continue;
        }
        logs.sort();
        partitions += 1;
        let active = logs.len() - 1;
        for (index, log) in logs.into_iter().enumerate() {
            segments += 1;
            let check = strom_log::check_segment(&log)?;
            batches += check.batches;
            records += check.records;
            if let Some(problem) = check.problem {
                let line = format!(
                    "{} at byte {} of {}: {problem}",
                    log.display(),
                    check.valid_bytes,
                    check.file_bytes
                );
                if check.cut_short && index == active {
                    cut_short.push(line);
                } else {
                    problems.push(line);
                }
            }
        }
    }
    println!("checked {partitions} partitions, {segments} segments, {batches} batches, {records} records");
    for line in &cut_short {
        println!("INCOMPLETE LAST WRITE: {line}");
    }
    for problem in &problems {
        println!("DAMAGED: {problem}");
    }
    if !problems.is_empty() {
        println!(
            "{} damaged segments; starting the broker truncates a damaged tail of the active segment, anything else needs a replica or a backup",
            problems.len()
        );
        Ok(ExitCode::from(1))
    } else if !cut_short.is_empty() {
        println!(
            "{} partitions end in a write cut off by a crash (never acknowledged); starting the broker truncates it",
            cut_short.len()
        );
        Ok(ExitCode::from(2))
    } else {
        println!("OK: no damaged batches");
        Ok(ExitCode::SUCCESS)
    }
}
