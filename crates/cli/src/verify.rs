//! `strom verify`: check every segment of a stopped broker's data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

/// Check every segment in a data directory: whole batches, valid CRCs,
/// growing offsets. Run it while the broker is stopped; it changes nothing
/// (a broker repairs a torn tail itself when it starts).
///
/// Exit code 0 when everything is intact, 1 when something is damaged.
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
        for log in logs {
            segments += 1;
            let check = strom_log::check_segment(&log)?;
            batches += check.batches;
            records += check.records;
            if let Some(problem) = check.problem {
                problems.push(format!(
                    "{} at byte {} of {}: {problem}",
                    log.display(),
                    check.valid_bytes,
                    check.file_bytes
                ));
            }
        }
    }
    println!("checked {partitions} partitions, {segments} segments, {batches} batches, {records} records");
    if problems.is_empty() {
        println!("OK: no damaged batches");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            println!("DAMAGED: {problem}");
        }
        println!(
            "{} damaged segments; starting the broker truncates torn tails",
            problems.len()
        );
        Ok(ExitCode::from(1))
    }
}
