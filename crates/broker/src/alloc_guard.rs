//! A global allocator that keeps hostile length prefixes from killing the
//! process.
//!
//! Generated protocol decoders reserve `Vec::with_capacity(n)` for an array
//! whose count `n` comes from the wire. A 20-byte frame can claim two billion
//! elements; the system allocator refuses such a request and Rust aborts the
//! process, which no `catch_unwind` can stop. This allocator serves every
//! request of [`HUGE`] bytes or more from an anonymous `MAP_NORESERVE`
//! mapping instead: the kernel hands out address space without committing
//! memory, the decoder fails on the short frame long before touching it, and
//! the mapping is returned. Everything smaller goes to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at least this large are mapped lazily.
pub const HUGE: usize = 1 << 30;

pub struct GuardedAllocator;

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is
    // reported as MAP_FAILED and turned into a null pointer.
    let pointer = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if pointer == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        pointer.cast()
    }
}

// SAFETY: both paths return memory that is valid for the layout (mmap is
// page-aligned, which satisfies any alignment up to the page size, and
// larger alignments go to the system allocator) and each pointer is freed
// by the path that allocated it, chosen by the same size test.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            // Fresh anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            // SAFETY: the pointer came from `map` with this size.
            unsafe {
                libc::munmap(pointer.cast(), layout.size());
            }
        } else {
            // SAFETY: the pointer came from the system allocator with this layout.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = layout.size() >= HUGE && layout.align() <= 4096;
        let new_huge = new_size >= HUGE && layout.align() <= 4096;
        if !old_huge && !new_huge {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` is valid for the alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: allocating, copying the smaller of the two sizes and
        // freeing the old block with its own layout.
        unsafe {
            let new_pointer = self.alloc(new_layout);
            if !new_pointer.is_null() {
                std::ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            new_pointer
        }
    }
}
