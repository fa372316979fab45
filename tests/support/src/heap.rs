//! Heap bytes in use, for the memory figures of benchmarks: a binary installs [`Counting`] as
//! its global allocator (`#[global_allocator] static A: Counting = Counting;`) and reads
//! [`in_use`] before and after building the state it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

static IN_USE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes it hands out and takes back.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap bytes in use (0 unless [`Counting`] is the global allocator).
pub fn in_use() -> isize {
    IN_USE.load(Ordering::Relaxed)
}
