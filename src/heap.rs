//! The filter's heap: each size class up to 516 bytes keeps a free list of
//! up to `KEPT` blocks it gave out; everything else is the system
//! allocator's (wasi-libc's dlmalloc).
//!
//! Why: a request makes a few dozen small allocations (header values, keys,
//! cell buffers, the buffers the host fills through `proxy_on_memory_allocate`)
//! and through Rust's `__rust_alloc` → `malloc` → `dlmalloc` chain they were a
//! third of the request's wasm-side time (`make wasm-profile`). A request
//! frees what it allocates, so in the steady state every allocation is a pop
//! and every free a push.
//!
//! Memory stays what dlmalloc would hold, plus at most `KEPT` blocks per
//! class (237 KiB in all): a block beyond that goes back to dlmalloc, so the
//! many small blocks of a configuration's parse do not stay reserved. Sizes
//! round up to the next 8n + 4 bytes (32n + 4 above 260).
//!
//! Wasm has one thread per VM: `Heap` is `Sync` there only.

use std::alloc::{GlobalAlloc, Layout, System};

/// Size classes: blocks of 12, 20, 28, …, 260 bytes (8n + 4: what a dlmalloc
/// chunk of 8n + 8 holds beside its 4-byte header on wasm32), so rounding up
/// costs no memory dlmalloc would not have spent; then 292, 324, …, 516 (the
/// request's context is one of these). A larger block is dlmalloc's
/// (power-of-two classes up to 2 KiB cost a 1,000-route configuration 9 MiB
/// more Envoy memory: its parse's peak, rounded up).
const FINE_CLASSES: usize = 32;
const SMALLEST: usize = 12;
const FINE_STEP: usize = 8;
const FINE_LARGEST: usize = SMALLEST + (FINE_CLASSES - 1) * FINE_STEP;
const COARSE_CLASSES: usize = 8;
const COARSE_STEP: usize = 32;
const CLASSES: usize = FINE_CLASSES + COARSE_CLASSES;
const LARGEST: usize = FINE_LARGEST + COARSE_CLASSES * COARSE_STEP;
/// Blocks are allocated, and served, with this alignment (dlmalloc's plain
/// `malloc`); a more-aligned layout is the system allocator's.
const ALIGN: usize = 8;
/// Freed blocks a class keeps for reuse; more go back to dlmalloc.
const KEPT: u32 = 32;

/// The class a layout is served from, or `None` for the system allocator.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size > LARGEST || layout.align() > ALIGN {
        return None;
    }
    if size <= FINE_LARGEST {
        return Some(size.saturating_sub(SMALLEST).div_ceil(FINE_STEP));
    }
    Some(FINE_CLASSES - 1 + (size - FINE_LARGEST).div_ceil(COARSE_STEP))
}

/// The bytes every block of `class` holds.
fn class_size(class: usize) -> usize {
    match class.checked_sub(FINE_CLASSES - 1) {
        Some(coarse) if coarse > 0 => FINE_LARGEST + coarse * COARSE_STEP,
        _ => SMALLEST + class * FINE_STEP,
    }
}

/// What every block of `class` is allocated from dlmalloc as (and freed as).
fn block_layout(class: usize) -> Layout {
    // SAFETY: a non-zero size and a power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked(class_size(class), ALIGN) }
}

/// The allocator's state: each class's free list and its length.
pub struct Pools {
    free: [*mut u8; CLASSES],
    kept: [u32; CLASSES],
}

impl Pools {
    pub const fn new() -> Self {
        Pools {
            free: [std::ptr::null_mut(); CLASSES],
            kept: [0; CLASSES],
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
            return System.alloc(block_layout(class));
        }
        // SAFETY: a free block holds the next free block's address in its
        // first bytes (every block is at least 12 bytes, 8-aligned).
        self.free[class] = head.cast::<*mut u8>().read();
        self.kept[class] -= 1;
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
        if self.kept[class] >= KEPT {
            return System.dealloc(ptr, block_layout(class));
        }
        ptr.cast::<*mut u8>().write(self.free[class]);
        self.free[class] = ptr;
        self.kept[class] += 1;
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

    /// How many freed blocks `class` holds for reuse.
    #[cfg(test)]
    fn kept(&self, class: usize) -> u32 {
        self.kept[class]
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
        assert_eq!(at(12, 4), Some(0));
        assert_eq!(at(13, 1), Some(1));
        assert_eq!(at(20, 8), Some(1));
        assert_eq!(at(260, 8), Some(31));
        assert_eq!(at(261, 1), Some(32));
        assert_eq!(at(292, 1), Some(32));
        assert_eq!(at(293, 1), Some(33));
        assert_eq!(at(516, 8), Some(39));
        assert_eq!(at(517, 1), None);
        // Over-aligned: the system's.
        assert_eq!(at(32, 16), None);
        // Every size fits its class, and the class below is too small.
        for size in 1..=LARGEST {
            let class = at(size, 1).unwrap();
            assert!(class < CLASSES);
            assert!(class_size(class) >= size, "{size} in class {class}");
            assert!(
                class == 0 || class_size(class - 1) < size,
                "{size}: a smaller class fits"
            );
        }
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
        let again = unsafe { pools.alloc(Layout::from_size_align(95, 4).unwrap()) };
        assert_eq!(first, again);
    }

    #[test]
    fn a_class_keeps_at_most_kept_blocks_and_frees_the_rest() {
        let mut pools = Pools::new();
        let layout = Layout::from_size_align(48, 8).unwrap();
        let class = class_of(layout).unwrap();
        let blocks: Vec<*mut u8> = (0..1000).map(|_| unsafe { pools.alloc(layout) }).collect();
        assert_eq!(pools.kept(class), 0);
        for b in blocks {
            unsafe { pools.dealloc(b, layout) };
        }
        assert_eq!(pools.kept(class), KEPT);
        let _reused = unsafe { pools.alloc(layout) };
        assert_eq!(pools.kept(class), KEPT - 1);
    }
}
