//! Small files that must survive a crash whole or not at all: written to
//! a temporary name, fsynced, renamed over the old one, and the directory
//! fsynced; each holds one line `<crc32c hex> <json>`, so a damaged file is
//! found, not believed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// One checked line: `<crc32c of json, 8 hex digits> <json>\n`.
pub fn checked_line(json: &[u8]) -> Vec<u8> {
    let mut line = format!("{:08x} ", crc32c::crc32c(json)).into_bytes();
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// The JSON of one checked line (without its newline), or `None` when the
/// line is torn or damaged.
pub fn parse_line(line: &[u8]) -> Option<&[u8]> {
    if line.len() < 9 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    (crc32c::crc32c(json) == crc).then_some(json)
}

/// Writes `json` to `path` atomically and durably.
pub fn write_atomic(path: &Path, json: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        file.write_all(&checked_line(json))?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads a file written by [`write_atomic`]: `Ok(None)` when there is none,
/// an error when it is damaged.
pub fn read_checked(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    match parse_line(line) {
        Some(json) => Ok(Some(json.to_vec())),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged (checksum mismatch)", path.display()),
        )),
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_file_reads_back_and_damage_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        assert!(read_checked(&path).unwrap().is_none());
        write_atomic(&path, br#"{"term":3}"#).unwrap();
        assert_eq!(read_checked(&path).unwrap().unwrap(), br#"{"term":3}"#);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_checked(&path).is_err());
    }
}
