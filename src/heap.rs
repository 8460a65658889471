//! The filter's heap: blocks of up to 2 KiB come from free lists, one per
//! power-of-two size class, carved from 64 KiB chunks the system allocator
//! (wasi-libc's dlmalloc) hands over; larger blocks go to it directly.
//!
//! Why: a request makes a few dozen small allocations (header values, keys,
//! cell buffers, the buffers the host fills through `proxy_on_memory_allocate`)
//! and through Rust's `__rust_alloc` → `malloc` → `dlmalloc` chain they were a
//! third of the request's wasm-side time (`make wasm-profile`). Here an
//! allocation is a pop and a free a push.
//!
//! Memory stays bounded by the high-water mark of each class: a freed block
//! goes back to its class's list and is reused by the next block of that
//! class (wasm memory never shrinks anyway). Blocks are never split or merged.
//!
//! Wasm has one thread per VM: `Heap` is `Sync` there only.

use std::alloc::{GlobalAlloc, Layout, System};

/// Size classes 8, 16, …, 2048 bytes.
const CLASSES: usize = 9;
const SMALLEST: usize = 8;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Blocks are aligned to their size, up to this.
const MAX_ALIGN: usize = 16;
const CHUNK_BYTES: usize = 64 * 1024;

/// The class a layout is served from, or `None` for the system allocator.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(SMALLEST);
    if size > LARGEST || layout.align() > MAX_ALIGN {
        return None;
    }
    let class = (usize::BITS - (size - 1).leading_zeros()) as usize - 3;
    // A block of class c is aligned to min(8 << c, MAX_ALIGN).
    if layout.align() > (SMALLEST << class).min(MAX_ALIGN) {
        return None;
    }
    Some(class)
}

/// The allocator's state: the free lists' heads and the part of the current
/// chunk not yet carved.
pub struct Pools {
    free: [*mut u8; CLASSES],
    next: *mut u8,
    end: *mut u8,
}

impl Pools {
    pub const fn new() -> Self {
        Pools {
            free: [std::ptr::null_mut(); CLASSES],
            next: std::ptr::null_mut(),
            end: std::ptr::null_mut(),
        }
    }

    /// # Safety
    /// As `GlobalAlloc::alloc`: `layout` has a non-zero size.
    pub unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return System.alloc(layout);
        };
        let head = self.free[class];
        if head.is_null() {
            return self.carve(class);
        }
        // SAFETY: a free block holds the next free block's address in its
        // first bytes (every class is at least pointer-sized and -aligned).
        self.free[class] = head.cast::<*mut u8>().read();
        head
    }

    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`.
    pub unsafe fn alloc_zeroed(&mut self, layout: Layout) -> *mut u8 {
        if class_of(layout).is_none() {
            // dlmalloc knows which of its memory is still zero.
            return System.alloc_zeroed(layout);
        }
        let block = self.alloc(layout);
        if !block.is_null() {
            std::ptr::write_bytes(block, 0, layout.size());
        }
        block
    }

    /// # Safety
    /// As `GlobalAlloc::dealloc`: `ptr` came from this `Pools` with `layout`.
    pub unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return System.dealloc(ptr, layout);
        };
        ptr.cast::<*mut u8>().write(self.free[class]);
        self.free[class] = ptr;
    }

    /// # Safety
    /// As `GlobalAlloc::realloc`.
    pub unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (class_of(layout), class_of(new_layout)) {
            (Some(old), Some(new)) if old == new => ptr,
            (None, None) => System.realloc(ptr, layout, new_size),
            _ => {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            }
        }
    }

    /// A new block of `class` from the current chunk, or a new chunk.
    unsafe fn carve(&mut self, class: usize) -> *mut u8 {
        let size = SMALLEST << class;
        let align = size.min(MAX_ALIGN);
        let pad = (align - (self.next as usize & (align - 1))) & (align - 1);
        if self.next.is_null() || (self.end as usize - self.next as usize) < pad + size {
            // SAFETY: a valid, non-zero layout.
            let chunk = System.alloc(Layout::from_size_align_unchecked(CHUNK_BYTES, MAX_ALIGN));
            if chunk.is_null() {
                return chunk;
            }
            self.next = chunk.add(size);
            self.end = chunk.add(CHUNK_BYTES);
            return chunk;
        }
        let block = self.next.add(pad);
        self.next = block.add(size);
        block
    }
}

impl Default for Pools {
    fn default() -> Self {
        Self::new()
    }
}

/// `Pools` as the global allocator of the `.wasm`.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
pub struct Heap(std::cell::UnsafeCell<Pools>);

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
impl Heap {
    pub const fn new() -> Self {
        Heap(std::cell::UnsafeCell::new(Pools::new()))
    }
}

// SAFETY: without the atomics feature a wasm module runs one thread, and the
// allocator never re-enters itself (System is dlmalloc, not this).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for Heap {}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
// Not inlined: with LTO the allocator would otherwise be copied into every
// call site (+43 KB of .wasm).
unsafe impl GlobalAlloc for Heap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (*self.0.get()).alloc(layout)
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (*self.0.get()).alloc_zeroed(layout)
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        (*self.0.get()).dealloc(ptr, layout)
    }
    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (*self.0.get()).realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_small_size_and_alignment() {
        let at = |size, align| class_of(Layout::from_size_align(size, align).unwrap());
        assert_eq!(at(1, 1), Some(0));
        assert_eq!(at(8, 8), Some(0));
        assert_eq!(at(9, 1), Some(1));
        assert_eq!(at(16, 16), Some(1));
        assert_eq!(at(17, 1), Some(2));
        assert_eq!(at(2048, 1), Some(8));
        assert_eq!(at(2049, 1), None);
        // Over-aligned for its class or for any class: the system's.
        assert_eq!(at(8, 16), None);
        assert_eq!(at(64, 32), None);
    }

    /// A small deterministic generator (no rand dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % below
        }
    }

    /// Random allocations, frees and reallocations: every live block keeps
    /// its bytes, is aligned as asked, and overlaps no other live block.
    #[test]
    fn blocks_stay_intact_aligned_and_disjoint() {
        let mut pools = Pools::new();
        let mut rng = Lcg(7);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        for step in 0..40_000u32 {
            let action = rng.next(10);
            if action < 5 || live.is_empty() {
                let size = match rng.next(4) {
                    0 => 1 + rng.next(16),
                    1 => 1 + rng.next(300),
                    2 => 1 + rng.next(2100),
                    _ => 1 + rng.next(9000),
                } as usize;
                let align = 1usize << rng.next(6);
                let layout = Layout::from_size_align(size, align).unwrap();
                // Some zeroed, after the blocks they reuse were filled.
                let zeroed = action == 0;
                let ptr = unsafe {
                    if zeroed {
                        pools.alloc_zeroed(layout)
                    } else {
                        pools.alloc(layout)
                    }
                };
                assert!(!ptr.is_null());
                if zeroed {
                    let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
                    assert!(bytes.iter().all(|b| *b == 0), "alloc_zeroed left bytes");
                }
                assert_eq!(ptr as usize % align, 0, "alignment {align} at step {step}");
                let fill = step as u8;
                unsafe { std::ptr::write_bytes(ptr, fill, size) };
                live.push((ptr, layout, fill));
            } else if action < 8 {
                let at = rng.next(live.len() as u64) as usize;
                let (ptr, layout, fill) = live.swap_remove(at);
                let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                assert!(bytes.iter().all(|b| *b == fill), "freed block changed");
                unsafe { pools.dealloc(ptr, layout) };
            } else {
                let at = rng.next(live.len() as u64) as usize;
                let (ptr, layout, fill) = live[at];
                let new_size = 1 + rng.next(3000) as usize;
                let moved = unsafe { pools.realloc(ptr, layout, new_size) };
                assert!(!moved.is_null());
                let kept = layout.size().min(new_size);
                let bytes = unsafe { std::slice::from_raw_parts(moved, kept) };
                assert!(bytes.iter().all(|b| *b == fill), "realloc lost bytes");
                unsafe { std::ptr::write_bytes(moved, fill, new_size) };
                let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                live[at] = (moved, new_layout, fill);
            }
            if step % 997 == 0 {
                let mut spans: Vec<(usize, usize)> = live
                    .iter()
                    .map(|(p, l, _)| (*p as usize, *p as usize + l.size()))
                    .collect();
                spans.sort_unstable();
                for pair in spans.windows(2) {
                    assert!(pair[0].1 <= pair[1].0, "live blocks overlap at step {step}");
                }
                for (ptr, layout, fill) in &live {
                    let bytes = unsafe { std::slice::from_raw_parts(*ptr, layout.size()) };
                    assert!(bytes.iter().all(|b| b == fill), "a live block changed");
                }
            }
        }
        for (ptr, layout, _) in live {
            unsafe { pools.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class() {
        let mut pools = Pools::new();
        let layout = Layout::from_size_align(100, 1).unwrap();
        let first = unsafe { pools.alloc(layout) };
        unsafe { pools.dealloc(first, layout) };
        let again = unsafe { pools.alloc(Layout::from_size_align(120, 4).unwrap()) };
        assert_eq!(first, again);
    }
}
