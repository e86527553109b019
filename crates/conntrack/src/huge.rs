//! Fixed arrays in anonymous memory advised to use transparent huge pages.
//!
//! The table is read at random; with 4 KiB pages nearly every lookup of a large table also
//! misses the TLB, and in a virtual machine a page walk costs several more cache misses.
//! `memmap2` maps and advises, `bytemuck` views the bytes as `T` (both checked, no `unsafe`).

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use bytemuck::Pod;
use memmap2::{Advice, MmapMut};

pub(crate) struct HugeArray<T> {
    map: MmapMut,
    bytes: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> HugeArray<T> {
    /// `len` copies of `fill`. Panics if the kernel refuses the mapping (out of memory at
    /// start-up, before any packet is seen).
    pub(crate) fn new(len: usize, fill: T) -> HugeArray<T> {
        let bytes = len * core::mem::size_of::<T>();
        let map = MmapMut::map_anon(bytes.max(1)).expect("mapping memory for the conntrack table");
        // Best effort: without THP the table works the same, only slower.
        let _ = map.advise(Advice::HugePage);
        let mut a = HugeArray {
            map,
            bytes,
            _t: PhantomData,
        };
        a.fill(fill);
        a
    }
}

impl<T: Pod> Deref for HugeArray<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        bytemuck::cast_slice(&self.map[..self.bytes])
    }
}

impl<T: Pod> DerefMut for HugeArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut self.map[..self.bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_and_writable() {
        let mut a = HugeArray::new(1000, 7u32);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&v| v == 7));
        a[999] = 1;
        assert_eq!(a[999], 1);
        let empty = HugeArray::new(0, 0u64);
        assert!(empty.is_empty());
    }
}
