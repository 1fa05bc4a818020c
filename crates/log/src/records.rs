//! The records inside a v2 batch, for the log cleaner and the broker's
//! `compression.type`: where each record's bytes are, its offset, key and
//! whether it is a tombstone. Records are never re-encoded: a cleaned or
//! recompressed batch is the records' original bytes under a rewritten
//! header, so keys, values and headers (duplicates included) come out
//! exactly as they went in.
//!
//! ```text
//! record: length varint | attributes i8 | timestamp delta varlong |
//!         offset delta varint | key length varint | key | value length varint |
//!         value | header count varint | headers...
//! ```
//!
//! Compressed batches are compressed again (with their own codec when
//! cleaned, with the topic's when recompressed) through `kafka-protocol`'s
//! codecs (Kafka's framing for each of them). They are decompressed here,
//! with the same codec crates, because the records of one batch may not
//! grow past [`MAX_RECORDS_BYTES`]: a small batch that decompresses to
//! gigabytes is refused (or, by the cleaner, kept as it is) instead of
//! exhausting memory.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{self, BatchHeader, Compression, HEADER_SIZE};

/// One record of a batch, borrowed from the decompressed records bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    /// `None` for a record without a key.
    pub key: Option<Vec<u8>>,
    /// A record whose value is null deletes its key.
    pub is_tombstone: bool,
    /// Where its value lies in the records bytes (`None`: null).
    pub value: Option<std::ops::Range<usize>>,
    /// Where the whole record lies in the records bytes.
    pub range: std::ops::Range<usize>,
}

/// Why the records of a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed records in batch at offset {base_offset}: {reason}")]
pub struct RecordsError {
    pub base_offset: i64,
    pub reason: String,
}

fn read_varlong(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            // Zig-zag decoding.
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

fn skip(bytes: &[u8], at: &mut usize, length: i64) -> Option<()> {
    if length < 0 {
        return Some(());
    }
    let end = at.checked_add(length as usize)?;
    if end > bytes.len() {
        return None;
    }
    *at = end;
    Some(())
}

fn parse_record(bytes: &[u8], at: &mut usize, header: &BatchHeader) -> Option<RecordView> {
    let start = *at;
    let length = read_varlong(bytes, at)?;
    let body_start = *at;
    let end = body_start.checked_add(usize::try_from(length).ok()?)?;
    if end > bytes.len() {
        return None;
    }
    let body = &bytes[..end];
    let mut cursor = body_start + 1; // attributes
    let timestamp_delta = read_varlong(body, &mut cursor)?;
    let offset_delta = read_varlong(body, &mut cursor)?;
    let key_length = read_varlong(body, &mut cursor)?;
    let key_start = cursor;
    skip(body, &mut cursor, key_length)?;
    let key = (key_length >= 0).then(|| body[key_start..cursor].to_vec());
    let value_length = read_varlong(body, &mut cursor)?;
    let value_start = cursor;
    skip(body, &mut cursor, value_length)?;
    let value = (value_length >= 0).then_some(value_start..cursor);
    *at = end;
    let timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.saturating_add(timestamp_delta)
    };
    Some(RecordView {
        offset: header.base_offset + offset_delta,
        timestamp,
        key,
        is_tombstone: value_length < 0,
        value,
        range: start..end,
    })
}

/// Most bytes the records of one batch may decompress to. Producers send
/// batches of at most about a megabyte before compression; Kafka's own
/// broker streams records and has no such bound.
pub const MAX_RECORDS_BYTES: usize = 256 << 20;

/// The records bytes of a batch, decompressed.
pub fn records_bytes(batch: &[u8]) -> Result<Bytes, RecordsError> {
    let header = parse_header(batch)?;
    let error = |reason: String| RecordsError {
        base_offset: header.base_offset,
        reason,
    };
    let codec = header.compression().map_err(|e| error(e.to_string()))?;
    decompress(codec, &batch[HEADER_SIZE..], MAX_RECORDS_BYTES)
        .map(Bytes::from)
        .map_err(error)
}

/// `compressed` decompressed with `codec`, refused past `limit` bytes.
fn decompress(codec: Compression, compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let failed = |name: &str, e: std::io::Error| format!("{name} decompression failed: {e}");
    match codec {
        Compression::None => Ok(compressed.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(compressed), limit)
            .map_err(|e| failed("gzip", e)),
        Compression::Zstd => zstd::stream::read::Decoder::new(compressed)
            .and_then(|decoder| read_bounded(decoder, limit))
            .map_err(|e| failed("zstd", e)),
        Compression::Lz4 => lz4::Decoder::new(compressed)
            .and_then(|decoder| read_bounded(decoder, limit))
            .map_err(|e| failed("lz4", e)),
        Compression::Snappy => decompress_snappy(compressed, limit),
    }
}

fn read_bounded(reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other(format!(
            "the records decompress to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// Kafka's snappy: xerial-snappy framing (a 16-byte header starting with
/// `\x82SNAPPY\0`, then blocks of u32 length | raw snappy block), or one
/// raw snappy block without it, as the Java client also accepts.
fn decompress_snappy(compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const HEADER: usize = 16;
    let blocks: Vec<&[u8]> = if compressed.starts_with(MAGIC) {
        let mut rest = compressed
            .get(HEADER..)
            .ok_or("snappy header is truncated")?;
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let (length, tail) = rest
                .split_first_chunk::<4>()
                .ok_or("snappy block length is truncated")?;
            let length = u32::from_be_bytes(*length) as usize;
            if length > tail.len() {
                return Err("snappy block is truncated".to_string());
            }
            blocks.push(&tail[..length]);
            rest = &tail[length..];
        }
        blocks
    } else {
        vec![compressed]
    };
    let mut out = Vec::new();
    for block in blocks {
        let length = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
        if out.len() + length > limit {
            return Err(format!("the records decompress to more than {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + length, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| format!("snappy decompression failed: {e}"))?;
    }
    Ok(out)
}

/// Every record of a batch. Control batches have records too (markers).
pub fn parse_records(batch: &[u8]) -> Result<(Bytes, Vec<RecordView>), RecordsError> {
    let header = parse_header(batch)?;
    let bytes = records_bytes(batch)?;
    let mut records = Vec::with_capacity(header.record_count.clamp(0, 1 << 16) as usize);
    let mut at = 0;
    while at < bytes.len() {
        let record = parse_record(&bytes, &mut at, &header).ok_or_else(|| RecordsError {
            base_offset: header.base_offset,
            reason: format!("record {} is truncated", records.len()),
        })?;
        records.push(record);
    }
    if records.len() != header.record_count.max(0) as usize {
        return Err(RecordsError {
            base_offset: header.base_offset,
            reason: format!(
                "header says {} records, found {}",
                header.record_count,
                records.len()
            ),
        });
    }
    Ok((bytes, records))
}

/// `raw` records bytes compressed with `codec` (Kafka's framing for each).
fn compress(codec: Compression, raw: &[u8]) -> anyhow::Result<BytesMut> {
    let mut body = BytesMut::new();
    let copy = |target: &mut BytesMut| -> anyhow::Result<()> {
        target.extend_from_slice(raw);
        Ok(())
    };
    match codec {
        Compression::None => copy(&mut body),
        Compression::Gzip => Gzip::compress(&mut body, copy),
        Compression::Snappy => Snappy::compress(&mut body, copy),
        Compression::Lz4 => Lz4::compress(&mut body, copy),
        Compression::Zstd => Zstd::compress(&mut body, copy),
    }?;
    Ok(body)
}

/// `header` (the batch's first bytes, codec bits set) over `raw` records
/// compressed with `codec`, with length, record count and CRC made true.
fn assemble(
    batch: &[u8],
    header: &BatchHeader,
    codec: Compression,
    raw: &[u8],
    record_count: usize,
) -> Result<Vec<u8>, RecordsError> {
    let body = compress(codec, raw).map_err(|e| RecordsError {
        base_offset: header.base_offset,
        reason: format!("{e:#}"),
    })?;
    let mut built = batch[..HEADER_SIZE].to_vec();
    built.extend_from_slice(&body);
    batch::set_compression(&mut built, codec);
    batch::set_batch_length(&mut built);
    batch::set_record_count(&mut built, record_count as i32);
    batch::rewrite_crc(&mut built);
    Ok(built)
}

fn parse_header(batch: &[u8]) -> Result<BatchHeader, RecordsError> {
    BatchHeader::parse(batch).map_err(|e| RecordsError {
        base_offset: -1,
        reason: e.to_string(),
    })
}

/// A new batch with only the records in `keep` (in order), everything else
/// in the header as it was: base offset, last offset delta, timestamps,
/// producer fields, attributes. Recompresses with the batch's codec.
pub fn rebuild_batch(
    batch: &[u8],
    records: &Bytes,
    keep: &[&RecordView],
) -> Result<Vec<u8>, RecordsError> {
    let header = parse_header(batch)?;
    let codec = header.compression().map_err(|e| RecordsError {
        base_offset: header.base_offset,
        reason: e.to_string(),
    })?;
    let mut raw = BytesMut::new();
    for record in keep {
        raw.extend_from_slice(&records[record.range.clone()]);
    }
    assemble(batch, &header, codec, &raw, keep.len())
}

/// The batch with no records left, uncompressed: its header (offsets,
/// producer id, epoch, sequences) is what the cleaner keeps of a producer's
/// last batch, as Kafka does.
pub fn empty_batch(batch: &[u8]) -> Vec<u8> {
    let mut empty = batch[..HEADER_SIZE].to_vec();
    batch::set_compression(&mut empty, Compression::None);
    batch::set_batch_length(&mut empty);
    batch::set_record_count(&mut empty, 0);
    batch::rewrite_crc(&mut empty);
    empty
}

/// The same batch with its records compressed with `codec` instead (the
/// broker's `compression.type`): every record is read, so a batch whose
/// records are malformed is refused rather than stored.
pub fn recompress(batch: &[u8], codec: Compression) -> Result<Vec<u8>, RecordsError> {
    let header = parse_header(batch)?;
    let (bytes, records) = parse_records(batch)?;
    assemble(batch, &header, codec, &bytes, records.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing;

    #[test]
    fn records_of_a_built_batch_are_found_and_a_subset_rebuilds() {
        let batch = testing::keyed_batch(
            100,
            1_000,
            &[
                (Some(b"a".as_slice()), Some(b"1".as_slice())),
                (Some(b"b"), None),
                (None, Some(b"3")),
            ],
        );
        let (bytes, records) = parse_records(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].offset, 100);
        assert_eq!(records[1].key.as_deref(), Some(b"b".as_slice()));
        assert!(records[1].is_tombstone);
        assert_eq!(records[2].key, None);
        let rebuilt = rebuild_batch(&batch, &bytes, &[&records[0], &records[2]]).unwrap();
        let header = batch::validate(&rebuilt, false).unwrap();
        assert_eq!(header.record_count, 2);
        assert_eq!(header.last_offset(), 102, "the last offset stays");
        let (_, kept) = parse_records(&rebuilt).unwrap();
        assert_eq!(
            kept.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![100, 102]
        );
    }

    #[test]
    fn recompressing_keeps_every_record_and_the_header() {
        let mut batch = testing::keyed_batch(
            7,
            2_000,
            &[
                (Some(b"k".as_slice()), Some(b"value one".as_slice())),
                (None, Some(b"value two, a little longer")),
                (Some(b"t"), None),
            ],
        );
        batch::set_base_sequence(&mut batch, 42);
        batch::rewrite_crc(&mut batch);
        let (_, original) = parse_records(&batch).unwrap();
        let mut current = batch.clone();
        for codec in [
            Compression::Zstd,
            Compression::Lz4,
            Compression::Gzip,
            Compression::Snappy,
            Compression::None,
        ] {
            current = recompress(&current, codec).unwrap();
            let header = batch::validate(&current, true).unwrap();
            assert_eq!(header.compression().unwrap(), codec);
            assert_eq!(header.base_sequence, 42, "producer fields stay");
            assert_eq!(header.last_offset(), 9);
            let (_, records) = parse_records(&current).unwrap();
            assert_eq!(
                records
                    .iter()
                    .map(|r| (r.offset, r.key.clone(), r.is_tombstone))
                    .collect::<Vec<_>>(),
                original
                    .iter()
                    .map(|r| (r.offset, r.key.clone(), r.is_tombstone))
                    .collect::<Vec<_>>(),
                "{codec:?}"
            );
        }
        assert_eq!(current, batch, "back to uncompressed, byte for byte");
    }

    #[test]
    fn records_that_decompress_past_the_bound_are_refused() {
        let zeros = vec![0u8; 1 << 20];
        for codec in [
            Compression::Zstd,
            Compression::Lz4,
            Compression::Gzip,
            Compression::Snappy,
        ] {
            let compressed = compress(codec, &zeros).unwrap();
            assert!(compressed.len() < zeros.len() / 10, "{codec:?}");
            assert_eq!(decompress(codec, &compressed, 1 << 20).unwrap(), zeros);
            let refused = decompress(codec, &compressed, (1 << 20) - 1).unwrap_err();
            assert!(refused.contains("more than"), "{codec:?}: {refused}");
        }
    }
}
