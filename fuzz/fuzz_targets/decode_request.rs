//! Arbitrary bytes as a request frame: header checks, body decoding for every
//! supported API, and record batch validation must never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: strom_broker::alloc_guard::GuardedAllocator =
    strom_broker::alloc_guard::GuardedAllocator;

fuzz_target!(|data: &[u8]| {
    let _ = strom_broker::protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
