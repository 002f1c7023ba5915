//! The process-wide allocator: the system allocator, except that very large blocks are
//! reserved lazily so that a hostile length prefix cannot abort the process.
//!
//! The protocol decoder sizes arrays from the length the client sent (`with_capacity(n)`
//! before reading n elements). A forged length asks for tens of gigabytes; the system
//! allocator refuses that, and Rust's answer to a refused allocation is to abort the
//! whole process — one bad frame would take the broker down. Here such a block is mapped
//! with `MAP_NORESERVE`: the kernel hands out address space without committing memory,
//! the decoder fails on the short frame after touching a few pages, and the block is
//! unmapped again. Real allocations of this size do not happen in the broker (frames are
//! capped by `socket.request.max.bytes`), so nothing else changes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks at least this large are mapped lazily instead of taken from the system heap.
const LAZY_THRESHOLD: usize = 256 * 1024 * 1024;

pub struct LazyLargeAlloc;

unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= page_size() {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= page_size() {
            // Fresh anonymous mappings are zero-filled by the kernel.
            map(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= page_size() {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let lazy = |size: usize| size >= LAZY_THRESHOLD && layout.align() <= page_size();
        if !lazy(layout.size()) && !lazy(new_size) {
            return System.realloc(ptr, layout, new_size);
        }
        // Crossing the threshold in either direction: move the block between the two kinds.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

fn page_size() -> usize {
    // 4 KiB is the smallest page on every platform Fjord runs on; mmap aligns to pages.
    4096
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forged_capacity_does_not_abort() {
        // 40 GiB of address space: more than this machine's memory, never touched.
        let v: Vec<u64> = Vec::with_capacity(5 << 30);
        assert!(v.capacity() >= 5 << 30);
        drop(v);
        let mut small: Vec<u8> = Vec::with_capacity(16);
        small.extend_from_slice(b"still works");
        assert_eq!(&small, b"still works");
    }
}
