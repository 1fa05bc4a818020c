//! The byte layout of a Kafka v2 record batch ("magic 2"), which is both the
//! wire format and Strom's on-disk format.
//!
//! The storage layer never decodes individual records on the hot path: it
//! reads and patches the fixed 61-byte batch header only.
//!
//! ```text
//! offset  size  field
//!      0     8  base offset              (patched by the broker)
//!      8     4  batch length (bytes after this field)
//!     12     4  partition leader epoch   (patched by the broker)
//!     16     1  magic (2)
//!     17     4  CRC-32C of bytes 21..end
//!     21     2  attributes
//!     23     4  last offset delta
//!     27     8  base timestamp
//!     35     8  max timestamp
//!     43     8  producer id
//!     51     2  producer epoch
//!     53     4  base sequence
//!     57     4  record count
//!     61     …  records
//! ```

use thiserror::Error;

/// Size of the fixed batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the batch length field ends: base offset + batch length.
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_TYPE: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a sequence of bytes is not a valid v2 record batch.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is truncated: {available} bytes available, {needed} needed")]
    Truncated { available: usize, needed: usize },
    #[error("batch length {0} is smaller than the batch header")]
    LengthTooSmall(i32),
    #[error("unsupported record batch magic {0}, only magic 2 is supported")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: header says {expected:#010x}, contents give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
}

/// How records in a batch are compressed (attribute bits 0..2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_bits(bits: i16) -> Result<Compression, BatchError> {
        match bits {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    fn bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec a `compression.type` value names (`uncompressed` is
    /// none); `None` for `producer` or anything else.
    pub fn from_config(name: &str) -> Option<Compression> {
        match name {
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Sets the codec bits of a batch's attributes (the caller re-encodes the
/// records to match and rewrites the CRC).
pub fn set_compression(batch: &mut [u8], codec: Compression) {
    let attributes = read_i16(batch, ATTRIBUTES) & !ATTRIBUTE_COMPRESSION_MASK | codec.bits();
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
}

/// The decoded fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(buf)
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(buf)
}

impl BatchHeader {
    /// Parses the fixed header from the first [`HEADER_SIZE`] bytes. Checks
    /// only what the header alone can tell: length and magic.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: HEADER_SIZE,
            });
        }
        let header = BatchHeader {
            base_offset: read_i64(bytes, BASE_OFFSET),
            batch_length: read_i32(bytes, BATCH_LENGTH),
            partition_leader_epoch: read_i32(bytes, PARTITION_LEADER_EPOCH),
            magic: bytes[MAGIC] as i8,
            crc: read_i32(bytes, CRC) as u32,
            attributes: read_i16(bytes, ATTRIBUTES),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP),
            producer_id: read_i64(bytes, PRODUCER_ID),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, BASE_SEQUENCE),
            record_count: read_i32(bytes, RECORD_COUNT),
        };
        if (header.batch_length as i64) < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
            return Err(BatchError::LengthTooSmall(header.batch_length));
        }
        if header.magic != 2 {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        Ok(header)
    }

    /// Total size of the batch on the wire and on disk.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset that follows this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_bits(self.attributes & ATTRIBUTE_COMPRESSION_MASK)
    }

    /// True when the batch's timestamps were set by the broker (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_TIMESTAMP_TYPE != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
}

/// Computes the CRC-32C that a batch header must carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Fully validates one complete batch: the header, that `batch` holds exactly
/// the declared length, and the CRC-32C over everything after the CRC field.
///
/// `strict_counts` also requires `record_count == last_offset_delta + 1`,
/// which holds for every batch a producer writes (compaction may later break
/// it on disk, so recovery does not ask for it).
pub fn validate(batch: &[u8], strict_counts: bool) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() != header.total_size() {
        return Err(BatchError::Truncated {
            available: batch.len(),
            needed: header.total_size(),
        });
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    header.compression()?;
    if header.record_count < 0
        || header.last_offset_delta < 0
        || (strict_counts && header.record_count as i64 != header.last_offset_delta as i64 + 1)
    {
        return Err(BatchError::CountMismatch {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Splits a buffer holding several concatenated batches into the sizes of
/// each. Fails if the buffer does not end exactly at a batch boundary.
pub fn split(mut bytes: &[u8]) -> Result<Vec<usize>, BatchError> {
    let mut sizes = Vec::new();
    while !bytes.is_empty() {
        let header = BatchHeader::parse(bytes)?;
        let size = header.total_size();
        if size > bytes.len() {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: size,
            });
        }
        sizes.push(size);
        bytes = &bytes[size..];
    }
    Ok(sizes)
}

/// Writes the base offset. The base offset lies outside the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch. It lies outside the CRC.
pub fn set_base_sequence(batch: &mut [u8], sequence: i32) {
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&sequence.to_be_bytes());
    rewrite_crc(batch);
}

pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes the batch length field from the buffer's size.
pub fn set_batch_length(batch: &mut [u8]) {
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
}

/// Writes the record count field.
pub fn set_record_count(batch: &mut [u8], count: i32) {
    batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
}

/// Recomputes and writes the CRC after the covered bytes changed.
pub fn rewrite_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Marks the batch as LogAppendTime with the given broker time and rewrites
/// the CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = read_i16(batch, ATTRIBUTES) | ATTRIBUTE_TIMESTAMP_TYPE;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    rewrite_crc(batch);
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// What a transaction marker (the one record of a control batch) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    /// The marker a control record's key names (version 0); `None` for a
    /// key this version does not know.
    pub fn from_key(key: &[u8]) -> Option<ControlType> {
        match key {
            [0, 0, 0, 0] => Some(ControlType::Abort),
            [0, 0, 0, 1] => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// A control batch holding one transaction marker, as the transaction
/// coordinator writes it into each partition of a transaction:
/// key = version i16 (0) | type i16 (0 abort, 1 commit),
/// value = version i16 (0) | coordinator epoch i32.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind: i16 = match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let key = [0i16.to_be_bytes(), kind.to_be_bytes()].concat();
    let value = [&0i16.to_be_bytes()[..], &coordinator_epoch.to_be_bytes()].concat();
    let mut body = vec![0u8]; // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_bytes(&mut body, Some(&key));
    put_bytes(&mut body, Some(&value));
    put_varint(&mut body, 0); // headers
    let mut batch = vec![0u8; HEADER_SIZE];
    put_varint(&mut batch, body.len() as i64);
    batch.extend_from_slice(&body);
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    batch[MAGIC] = 2;
    let attributes = ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&1i32.to_be_bytes());
    let crc = compute_crc(&batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A transaction marker: what it ends the transaction with, and the epoch
/// of the coordinator that wrote it (markers of an older coordinator epoch
/// are refused after it, so a deposed coordinator cannot end a transaction
/// its successor decided otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// The marker a control batch carries; `None` for any other batch or a
/// marker this version does not know. A value too short to hold the
/// coordinator epoch reads as epoch -1 (unknown).
pub fn marker(batch: &[u8]) -> Option<Marker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() {
        return None;
    }
    let (bytes, records) = crate::records::parse_records(batch).ok()?;
    let record = records.first()?;
    let control = ControlType::from_key(record.key.as_deref()?)?;
    let coordinator_epoch = record
        .value
        .clone()
        .and_then(|value| bytes.get(value)?.get(2..6)?.try_into().ok())
        .map_or(-1, i32::from_be_bytes);
    Some(Marker {
        control,
        coordinator_epoch,
    })
}

/// Builders for tests of this crate and of crates above it.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A record's key and value; `None` is null.
    pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// An uncompressed batch of real records (key, value; `None` is null),
    /// all with `timestamp`, starting at `base_offset`.
    pub fn keyed_batch(base_offset: i64, timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (index, (key, value)) in records.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, 0); // timestamp delta
            put_varint(&mut body, index as i64); // offset delta
            put_bytes(&mut body, *key);
            put_bytes(&mut body, *value);
            put_varint(&mut body, 0); // headers
            put_varint(&mut payload, body.len() as i64);
            payload.extend_from_slice(&body);
        }
        let mut built = batch(records.len() as i32, timestamp, &payload);
        set_base_offset(&mut built, base_offset);
        built
    }

    /// Makes a test batch a transactional one of `producer_id` (epoch 0).
    pub fn make_transactional(batch: &mut [u8], producer_id: i64) {
        let attributes = read_i16(batch, ATTRIBUTES) | ATTRIBUTE_TRANSACTIONAL;
        batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&0i16.to_be_bytes());
        rewrite_crc(batch);
    }

    /// Builds a structurally valid, uncompressed batch with `count` empty
    /// records' worth of payload. Good enough for the storage layer, which
    /// never looks inside records.
    pub fn batch(count: i32, timestamp: i64, payload: &[u8]) -> Vec<u8> {
        assert!(count > 0);
        let mut batch = vec![0u8; HEADER_SIZE];
        batch.extend_from_slice(payload);
        let length = (batch.len() - LOG_OVERHEAD) as i32;
        batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        batch[MAGIC] = 2;
        batch[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        batch[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
        batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
        batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::testing::batch as make_batch;
    use super::*;

    #[test]
    fn valid_batch_round_trips_through_validate() {
        let batch = make_batch(3, 1_000, b"hello");
        let header = validate(&batch, true).expect("valid");
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_size(), batch.len());
        assert_eq!(header.compression(), Ok(Compression::None));
    }

    #[test]
    fn flipped_byte_fails_the_crc() {
        let mut batch = make_batch(1, 0, b"payload");
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            validate(&batch, true),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = make_batch(2, 0, b"x");
        set_base_offset(&mut batch, 42);
        set_partition_leader_epoch(&mut batch, 7);
        let header = validate(&batch, true).expect("still valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 43);
    }

    #[test]
    fn log_append_time_rewrites_the_crc() {
        let mut batch = make_batch(1, 5, b"x");
        set_log_append_time(&mut batch, 99);
        let header = validate(&batch, true).expect("valid after rewrite");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99);
    }

    #[test]
    fn wrong_magic_and_short_input_are_rejected() {
        let mut batch = make_batch(1, 0, b"");
        batch[MAGIC] = 1;
        assert_eq!(validate(&batch, true), Err(BatchError::UnsupportedMagic(1)));
        assert!(matches!(
            BatchHeader::parse(&[0u8; 10]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn split_finds_each_batch_and_rejects_a_torn_tail() {
        let mut bytes = make_batch(1, 0, b"a");
        let first = bytes.len();
        bytes.extend(make_batch(2, 0, b"bb"));
        assert_eq!(split(&bytes).unwrap(), vec![first, bytes.len() - first]);
        bytes.truncate(bytes.len() - 1);
        assert!(split(&bytes).is_err());
    }
}
