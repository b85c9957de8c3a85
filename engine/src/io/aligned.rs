//! Block-aligned byte buffers for O_DIRECT writes.

use super::memory::MemoryBudget;
use std::alloc::{self, Layout};

/// Alignment of every [`AlignedBuf`] allocation: the largest logical block size O_DIRECT needs.
pub const DIRECT_IO_ALIGNMENT: usize = 4096;

/// A growable byte buffer whose memory is aligned for O_DIRECT. Only its first `len` bytes are
/// ever read, and they were all written: the allocation is not cleared, so a buffer's pages are
/// touched (made resident) only as far as it is filled.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    capacity: usize,
    /// The shard budget this buffer's capacity counts against, if any.
    budget: Option<MemoryBudget>,
}

impl AlignedBuf {
    /// A buffer counted against no budget.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::allocate(capacity, None)
    }

    /// A buffer whose capacity (as it grows too) counts against `budget` while it lives.
    pub fn counted(capacity: usize, budget: &MemoryBudget) -> Self {
        Self::allocate(capacity, Some(budget.clone()))
    }

    fn allocate(capacity: usize, budget: Option<MemoryBudget>) -> Self {
        let capacity = capacity.max(DIRECT_IO_ALIGNMENT).next_multiple_of(DIRECT_IO_ALIGNMENT);
        let layout = Layout::from_size_align(capacity, DIRECT_IO_ALIGNMENT).expect("aligned buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        if let Some(budget) = &budget {
            budget.add_write_buffer(capacity);
        }
        Self { ptr, len: 0, capacity, budget }
    }

    /// Bytes allocated (what the buffer counts against its budget).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len <= capacity` bytes were written (extend_from_slice, pad_to).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed <= self.capacity {
            return;
        }
        let mut bigger = AlignedBuf::allocate(needed.max(self.capacity * 2), self.budget.clone());
        bigger.extend_from_slice(self.as_slice());
        *self = bigger;
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        // SAFETY: reserve made room for `data.len()` more bytes; the regions cannot overlap since
        // `self` owns its allocation exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), data.len());
        }
        self.len += data.len();
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Pads with zero bytes up to a multiple of `alignment`.
    pub fn pad_to(&mut self, alignment: usize) {
        let target = self.len.next_multiple_of(alignment);
        self.reserve(target - self.len);
        // SAFETY: room reserved above.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, target - self.len) };
        self.len = target;
    }

    /// Shortens to `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops the first `count` bytes, moving the rest to the front.
    pub fn drain_front(&mut self, count: usize) {
        assert!(count <= self.len, "drain_front({count}) past the end ({})", self.len);
        // SAFETY: both ranges are within the allocation; `copy` handles overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(count), self.ptr.as_ptr(), self.len - count) };
        self.len -= count;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, DIRECT_IO_ALIGNMENT).expect("aligned buffer layout");
        // SAFETY: allocated in `allocate` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        if let Some(budget) = &self.budget {
            budget.remove_write_buffer(self.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_keeps_alignment_and_contents() {
        let mut buf = AlignedBuf::with_capacity(10);
        buf.extend_from_slice(&[1; 5000]);
        assert_eq!(buf.as_slice().as_ptr() as usize % DIRECT_IO_ALIGNMENT, 0);
        buf.pad_to(DIRECT_IO_ALIGNMENT);
        assert_eq!(buf.len(), 8192);
        assert_eq!(buf.as_slice()[4999], 1);
        assert_eq!(buf.as_slice()[5000], 0);
        buf.drain_front(4096);
        assert_eq!(buf.len(), 4096);
        assert_eq!(buf.as_slice()[903], 1);
        assert_eq!(buf.as_slice()[904], 0);
    }
}
