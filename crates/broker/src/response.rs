//! Response frames on their way to the socket: encoded bytes, and for Fetch
//! ranges of segment files that go from the page cache to the socket with
//! `sendfile`, never copied through the broker's memory.
//!
//! A Fetch response is encoded by `kafka-protocol` as usual, except that
//! each partition's records are a placeholder of the right length (zeroed
//! memory the encoder never reads): [`SplicingBuf`] recognises the
//! placeholder by its address when the encoder writes it and puts the file
//! range in its place. If any placeholder is not recognised, the caller
//! falls back to reading the records into memory, so a response can never
//! carry placeholder bytes.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use strom_log::ReadSlice;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One piece of a response frame.
pub enum Part {
    Bytes(Bytes),
    /// `length` bytes of `file` from `position`.
    File {
        file: Arc<File>,
        position: u64,
        length: usize,
    },
}

/// A whole response frame, size prefix included.
pub struct Frame {
    pub parts: Vec<Part>,
    /// Shares of the splice budget held until the frame is written.
    held: Vec<OwnedSemaphorePermit>,
}

impl Frame {
    pub fn bytes(bytes: BytesMut) -> Frame {
        Frame {
            parts: vec![Part::Bytes(bytes.freeze())],
            held: Vec::new(),
        }
    }

    /// The frame, keeping `permits` until it is dropped (written).
    pub fn holding(mut self, permits: Vec<OwnedSemaphorePermit>) -> Frame {
        self.held.extend(permits);
        self
    }

    /// Writes the frame: byte parts with `write_all`, file parts with
    /// `sendfile` from the page cache.
    pub async fn write_to(&self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        for part in &self.parts {
            match part {
                Part::Bytes(bytes) => writer.write_all(bytes).await?,
                Part::File {
                    file,
                    position,
                    length,
                } => send_file(writer, file, *position, *length).await?,
            }
        }
        Ok(())
    }
}

async fn send_file(
    writer: &OwnedWriteHalf,
    file: &File,
    mut position: u64,
    mut length: usize,
) -> std::io::Result<()> {
    let stream: &tokio::net::TcpStream = writer.as_ref();
    let socket = stream.as_raw_fd();
    let source = file.as_raw_fd();
    while length > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut offset = position as libc::off_t;
            // SAFETY: both descriptors are open for the duration of the
            // call (the file by its Arc, the socket by the stream), and
            // `offset` is a valid pointer.
            let sent = unsafe { libc::sendfile(socket, source, &mut offset, length) };
            if sent < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(sent as usize)
            }
        });
        match sent {
            Ok(0) => {
                // The file ended early: the segment was cut back under us.
                // The frame cannot be completed; the connection must close.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the fetched range",
                ));
            }
            Ok(sent) => {
                position += sent as u64;
                length -= sent;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Placeholders for the records of the partitions of one Fetch response,
/// each standing for a range of a segment file. The placeholders are cut
/// from zeroed memory that is never read.
#[derive(Default)]
pub struct Splices {
    slices: Vec<(Bytes, ReadSlice)>,
    permits: Vec<OwnedSemaphorePermit>,
}

/// One partition's records, located for a response: a file range to splice
/// (holding a share of the splice budget) or, past the budget, bytes.
pub enum Located {
    Splice(ReadSlice, OwnedSemaphorePermit),
    Copied(Bytes),
}

impl Located {
    /// Each spliced range keeps its segment file open until the response is
    /// written, whether or not the file cache still holds it, so a response
    /// over thousands of partitions could hold thousands of descriptors.
    /// `budget` caps that across all responses: a slice that finds no share
    /// left is read into memory now (within the fetch's byte limit) and its
    /// file let go at once.
    pub fn new(slice: ReadSlice, budget: &Arc<Semaphore>) -> std::io::Result<Located> {
        match budget.clone().try_acquire_owned() {
            Ok(permit) => Ok(Located::Splice(slice, permit)),
            Err(_) => {
                static TOLD: AtomicBool = AtomicBool::new(false);
                if !TOLD.swap(true, Ordering::Relaxed) {
                    tracing::warn!("fetch responses hold all the files their share of log.max.open.files allows; records past it are copied into memory (raise log.max.open.files to send them with sendfile)");
                }
                Ok(Located::Copied(Bytes::from(slice.read()?)))
            }
        }
    }

    /// Bytes of records.
    pub fn size(&self) -> usize {
        match self {
            Located::Splice(slice, _) => slice.length,
            Located::Copied(bytes) => bytes.len(),
        }
    }
}

impl Splices {
    /// The records of each entry in order: a placeholder for a file range
    /// (each at an address no other has), the bytes of a copied one, or
    /// nothing.
    pub fn new(located: Vec<Option<Located>>) -> (Splices, Vec<Bytes>) {
        let longest = located
            .iter()
            .flatten()
            .filter_map(|located| match located {
                Located::Splice(slice, _) => Some(slice.length),
                Located::Copied(_) => None,
            })
            .max()
            .unwrap_or(0);
        // Large zeroed allocations come straight from the kernel, so the
        // pages are never touched.
        let backing = Bytes::from(vec![0u8; longest + located.len()]);
        let mut splices = Splices::default();
        let records = located
            .into_iter()
            .enumerate()
            .map(|(index, located)| match located {
                None => Bytes::new(),
                Some(Located::Copied(bytes)) => bytes,
                Some(Located::Splice(slice, permit)) => {
                    let placeholder = backing.slice(index..index + slice.length);
                    splices.slices.push((placeholder.clone(), slice));
                    splices.permits.push(permit);
                    placeholder
                }
            })
            .collect();
        (splices, records)
    }

    /// The shares of the splice budget these splices hold, for the frame.
    pub fn take_permits(&mut self) -> Vec<OwnedSemaphorePermit> {
        std::mem::take(&mut self.permits)
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// The slices, for reading them into memory instead.
    pub fn into_slices(self) -> Vec<(Bytes, ReadSlice)> {
        self.slices
    }
}

/// An encoding target that puts file ranges in place of placeholders.
pub struct SplicingBuf<'a> {
    parts: Vec<Part>,
    current: BytesMut,
    /// Bytes in `parts` so far.
    done: usize,
    splices: &'a Splices,
    spliced: usize,
}

impl<'a> SplicingBuf<'a> {
    pub fn new(splices: &'a Splices, capacity: usize) -> SplicingBuf<'a> {
        SplicingBuf {
            parts: Vec::with_capacity(splices.slices.len() * 2 + 1),
            current: BytesMut::with_capacity(capacity),
            done: 0,
            splices,
            spliced: 0,
        }
    }

    /// The frame, with the size prefix (the first four bytes, written as
    /// zeros by the caller) filled in; `None` unless every placeholder was
    /// replaced by its file range.
    pub fn finish(mut self) -> Option<Frame> {
        if self.spliced != self.splices.slices.len() {
            return None;
        }
        let size = (self.offset() - 4) as i32;
        if !self.current.is_empty() || self.parts.is_empty() {
            let tail = std::mem::take(&mut self.current);
            self.parts.push(Part::Bytes(tail.freeze()));
        }
        // The size prefix is the first four bytes of the first part, which
        // holds the response up to the first records: small.
        if let Some(Part::Bytes(first)) = self.parts.first_mut() {
            let mut patched = BytesMut::from(&first[..]);
            patched[..4].copy_from_slice(&size.to_be_bytes());
            *first = patched.freeze();
        }
        Some(Frame {
            parts: self.parts,
            held: Vec::new(),
        })
    }

    fn splice_for(&self, src: &[u8]) -> Option<&'a ReadSlice> {
        if src.is_empty() {
            return None;
        }
        let splices: &'a Splices = self.splices;
        splices
            .slices
            .iter()
            .find(|(placeholder, _)| {
                placeholder.as_ptr() == src.as_ptr() && placeholder.len() == src.len()
            })
            .map(|(_, slice)| slice)
    }
}

// SAFETY: every method delegates to `current`, a BytesMut, whose own
// implementation upholds BufMut's contract.
unsafe impl BufMut for SplicingBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { self.current.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(slice) = self.splice_for(src) {
            let part = Part::File {
                file: slice.file.clone(),
                position: slice.position,
                length: slice.length,
            };
            let before = std::mem::take(&mut self.current);
            self.done += before.len() + slice.length;
            self.parts.push(Part::Bytes(before.freeze()));
            self.parts.push(part);
            self.spliced += 1;
            return;
        }
        self.current.extend_from_slice(src);
    }
}

impl ByteBufMut for SplicingBuf<'_> {
    fn offset(&self) -> usize {
        self.done + self.current.len()
    }

    /// Only within the bytes after the last splice (the Fetch response
    /// encoder leaves no gaps to fill in later).
    fn seek(&mut self, offset: usize) {
        self.current.resize(offset - self.done, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        &mut self.current[r.start - self.done..r.end - self.done]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(index, records)| {
                PartitionData::default()
                    .with_partition_index(index as i32)
                    .with_records(Some(records.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    /// The frame's bytes, with file parts read back.
    fn flatten(frame: &Frame) -> Vec<u8> {
        let mut bytes = Vec::new();
        for part in &frame.parts {
            match part {
                Part::Bytes(part) => bytes.extend_from_slice(part),
                Part::File {
                    file,
                    position,
                    length,
                } => {
                    let mut read = vec![0u8; *length];
                    file.read_exact_at(&mut read, *position).unwrap();
                    bytes.extend_from_slice(&read);
                }
            }
        }
        bytes
    }

    #[test]
    fn a_spliced_frame_is_byte_for_byte_the_encoded_response() {
        // Budget 3: all spliced. Budget 1: the second range, past the
        // budget, is read into memory and sent from there.
        for (budget, files) in [(3, 2), (1, 1)] {
            spliced_frame_matches_the_encoding(budget, files);
        }
    }

    fn spliced_frame_matches_the_encoding(total: usize, files: usize) {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&(0..=255u8).cycle().take(5000).collect::<Vec<_>>())
            .unwrap();
        let file = Arc::new(file);
        let ranges = [(100u64, 1000usize), (3000, 1500), (0, 0)];
        let budget = Arc::new(Semaphore::new(total));
        for version in [4i16, 11, 12, 16] {
            let mut slices = Vec::new();
            let mut real = Vec::new();
            for (position, length) in ranges {
                let slice = ReadSlice {
                    file: file.clone(),
                    position,
                    length,
                    first_batch_offset: 0,
                    next_offset: 0,
                };
                real.push(Bytes::from(slice.read().unwrap()));
                slices.push((length > 0).then(|| Located::new(slice, &budget).unwrap()));
            }
            let (mut splices, placeholders) = Splices::new(slices);
            let mut buffer = SplicingBuf::new(&splices, 64);
            buffer.put_slice(&[0u8; 4]);
            response(&placeholders)
                .encode(&mut buffer, version)
                .unwrap();
            let frame = buffer
                .finish()
                .expect("every placeholder spliced")
                .holding(splices.take_permits());
            assert_eq!(
                frame
                    .parts
                    .iter()
                    .filter(|part| matches!(part, Part::File { .. }))
                    .count(),
                files
            );
            assert_eq!(
                budget.available_permits(),
                total - files,
                "each spliced range holds a share until the frame is written"
            );
            let mut expected = BytesMut::new();
            expected.put_slice(&[0u8; 4]);
            response(&real).encode(&mut expected, version).unwrap();
            let size = (expected.len() - 4) as i32;
            expected[..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(flatten(&frame), expected.to_vec(), "version {version}");
            drop(frame);
            assert_eq!(
                budget.available_permits(),
                total,
                "written frames give their shares back"
            );
        }
    }

    #[test]
    fn a_placeholder_the_encoder_did_not_write_fails_the_splice() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let budget = Arc::new(Semaphore::new(1));
        let slice = ReadSlice {
            file,
            position: 0,
            length: 10,
            first_batch_offset: 0,
            next_offset: 0,
        };
        let (splices, placeholders) =
            Splices::new(vec![Some(Located::new(slice, &budget).unwrap())]);
        let placeholder = &placeholders[0];
        // The response carries a copy, not the placeholder itself.
        let copy = Bytes::copy_from_slice(placeholder);
        let mut buffer = SplicingBuf::new(&splices, 64);
        buffer.put_slice(&[0u8; 4]);
        response(&[copy]).encode(&mut buffer, 12).unwrap();
        assert!(
            buffer.finish().is_none(),
            "zeros must never be sent as records"
        );
    }
}
