//! Physical memory: the kernel heap over all RAM, page-aligned DMA frames, and the final
//! identity page tables (virt == phys) with on-demand MMIO mapping.
//!
//! Layout after [`init`] (4-level paging, SDM Vol. 3A §4.5):
//! - every RAM region of the PVH memory map: write-back, 2 MiB pages where aligned, 4 KiB at
//!   the edges; page 0 and the boot stack guard page are left unmapped;
//! - everything else below 4 GiB (PCI hole: ECAM, 32-bit BARs, I/O APIC, local APIC, HPET):
//!   uncached (PCD | PWT, PAT entry 3 = UC with the reset PAT);
//! - above 4 GiB: RAM as above; MMIO (64-bit BARs) only through [`map_mmio`] /
//!   [`map_mmio_cached`].
//!
//! The heap is identity-mapped RAM, so any heap allocation is physically contiguous; DMA
//! frames ([`alloc_frames`]) and page tables are page-aligned heap allocations.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;

use boot::{BootInfo, MemoryKind};
use spin::Mutex;
use talc::source::Manual;
use talc::TalcLock;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::PhysAddr;

use crate::interrupts::without_interrupts;

/// Size of a small page / DMA frame.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (PD-level) page.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;
/// Identity mapping reaches up to the top of the lower canonical half (4-level paging).
pub const IDENTITY_LIMIT: u64 = 1 << 47;
const FOUR_GIB: u64 = 4 << 30;
/// Memory below 1 MiB belongs to firmware and the loader; it is never given to the heap.
const LOW_MEMORY_END: u64 = 1 << 20;

/// The global allocator: talc behind a spin lock, taken with interrupts disabled so an
/// interrupt handler that allocates cannot deadlock against interrupted code.
struct KernelAllocator(TalcLock<spin::mutex::SpinMutex<()>, Manual>);

// SAFETY: delegates to talc's GlobalAlloc implementation, which upholds the contract; the
// interrupt masking around it changes nothing about the memory returned.
unsafe impl GlobalAlloc for KernelAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        without_interrupts(|| unsafe { self.0.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        without_interrupts(|| unsafe { self.0.alloc_zeroed(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        without_interrupts(|| unsafe { self.0.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static ALLOCATOR: KernelAllocator = KernelAllocator(TalcLock::new(Manual));

/// Heap statistics (from talc's counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Live allocations.
    pub allocation_count: usize,
    /// Bytes in live allocations (requested sizes).
    pub allocated_bytes: usize,
    /// Bytes still available for allocation.
    pub available_bytes: usize,
    /// Bytes given to the allocator.
    pub claimed_bytes: usize,
}

/// Current heap statistics.
pub fn heap_stats() -> HeapStats {
    without_interrupts(|| {
        let talc = ALLOCATOR.0.lock();
        let c = talc.counters();
        HeapStats {
            allocation_count: c.allocation_count,
            allocated_bytes: c.allocated_bytes,
            available_bytes: c.available_bytes,
            claimed_bytes: c.claimed_bytes,
        }
    })
}

/// Why a mapping request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// `len` was 0.
    Empty,
    /// `phys + len` overflows or reaches past [`IDENTITY_LIMIT`].
    OutOfRange {
        /// Start of the request.
        phys: u64,
        /// Length of the request.
        len: u64,
    },
    /// No memory for a page table.
    OutOfMemory,
    /// [`init`] has not run.
    NotInitialized,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty range"),
            Self::OutOfRange { phys, len } => {
                write!(
                    f,
                    "range {phys:#x}+{len:#x} is beyond the identity-map limit"
                )
            }
            Self::OutOfMemory => write!(f, "out of memory for page tables"),
            Self::NotInitialized => write!(f, "memory::init has not run"),
        }
    }
}

/// Caching of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Write-back: RAM and RAM-like BARs (ivshmem shared memory).
    WriteBack,
    /// Uncached: device registers.
    Uncached,
}

impl Caching {
    fn flags(self) -> Flags {
        match self {
            Self::WriteBack => Flags::empty(),
            Self::Uncached => Flags::NO_CACHE | Flags::WRITE_THROUGH,
        }
    }
}

/// Physical address of the active PML4 (None before [`init`]).
static ROOT: Mutex<Option<u64>> = Mutex::new(None);

/// RAM given to the heap: sorted, disjoint, page-aligned, above low memory, without the
/// kernel image (`boot::memmap::free_ram`, host-tested against unsorted and overlapping maps).
fn heap_spans(info: &BootInfo) -> boot::memmap::FreeRam {
    let (spans, dropped) = boot::memmap::free_ram(
        &info.memory_map,
        LOW_MEMORY_END,
        IDENTITY_LIMIT,
        &[info.kernel_image],
    );
    if dropped {
        log::warn!("memory: too many RAM ranges; some RAM is left unused");
    }
    spans
}

const fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

const fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

fn claim(start: u64, end: u64) {
    without_interrupts(|| {
        // SAFETY: `[start, end)` is RAM from the memory map, outside the kernel image and
        // low memory, identity-mapped, and used by nothing else: it is given to the allocator
        // exactly once (spans are disjoint).
        let ok = unsafe {
            ALLOCATOR
                .0
                .lock()
                .claim(start as *mut u8, (end - start) as usize)
        };
        if ok.is_none() {
            log::warn!("heap: could not claim {start:#x}..{end:#x}");
        }
    });
}

/// Sets up the heap and switches to the final page tables. Runs once, from `kernel::init`.
pub fn init(info: &BootInfo) {
    let spans = heap_spans(info);
    // RAM below 4 GiB is reachable through the boot stub's identity map already.
    for r in spans.iter().filter(|r| r.start < FOUR_GIB) {
        claim(r.start, r.end.min(FOUR_GIB));
    }
    let root = build_tables(info).expect("memory: cannot build the kernel page tables");
    // SAFETY: `root` identity-maps all RAM (including this code, the stack, the heap and the
    // page tables themselves) and the low MMIO hole exactly as the boot map did, so every
    // address in use stays valid across the switch.
    unsafe {
        x86_64::registers::control::Cr3::write(
            x86_64::structures::paging::PhysFrame::containing_address(PhysAddr::new(root)),
            x86_64::registers::control::Cr3Flags::empty(),
        );
    }
    *ROOT.lock() = Some(root);
    for r in spans.iter().filter(|r| r.end > FOUR_GIB) {
        claim(r.start.max(FOUR_GIB), r.end);
    }
    let stats = heap_stats();
    log::info!(
        "memory: {} MiB RAM, heap {} KiB in {} span(s), page tables at {root:#x}",
        info.total_ram() >> 20,
        stats.available_bytes >> 10,
        spans.len()
    );
}

fn build_tables(info: &BootInfo) -> Result<u64, MapError> {
    let root = new_table()?;
    // Low 4 GiB: MMIO hole and firmware areas uncached, then RAM write-back on top.
    map_range(root, PAGE_SIZE, FOUR_GIB, Caching::Uncached)?;
    for r in info.memory_map.iter().filter(|r| r.kind == MemoryKind::Ram) {
        let start = align_down(r.start, PAGE_SIZE).max(PAGE_SIZE);
        let end = align_up(r.end(), PAGE_SIZE).min(IDENTITY_LIMIT);
        if end > start {
            map_range(root, start, end, Caching::WriteBack)?;
        }
    }
    // Catch null-pointer dereferences and boot stack overflows.
    unmap_page(root, 0)?;
    if info.stack_guard_page != 0 {
        unmap_page(root, info.stack_guard_page)?;
    }
    Ok(root)
}

/// Allocates a zeroed, page-aligned page table from the heap; returns its physical address.
fn new_table() -> Result<u64, MapError> {
    alloc_frames(1).ok_or(MapError::OutOfMemory)
}

/// Returns the page table at physical address `phys`.
///
/// # Safety
/// `phys` must be a page table allocated by [`new_table`] (identity-mapped heap memory),
/// and the caller must hold [`ROOT`] (or own the tables exclusively, as `build_tables` does).
unsafe fn table(phys: u64) -> &'static mut PageTable {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(phys as *mut PageTable) }
}

fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

const TABLE_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);

/// Returns the PD entry covering `addr`, creating the PDPT and PD on the way.
fn pd_entry(root: u64, addr: u64) -> Result<&'static mut PageTableEntry, MapError> {
    let mut phys = root;
    for level in [4, 3] {
        // SAFETY: `phys` is the root or a table created below; callers own the tables.
        let t = unsafe { table(phys) };
        let e = &mut t[index(addr, level)];
        if e.is_unused() {
            let next = new_table()?;
            e.set_addr(PhysAddr::new(next), TABLE_FLAGS);
        }
        phys = e.addr().as_u64();
    }
    // SAFETY: as above.
    let pd = unsafe { table(phys) };
    Ok(&mut pd[index(addr, 2)])
}

/// Returns the PT entry for the 4 KiB page at `addr`, splitting a 2 MiB page if needed.
fn pt_entry(root: u64, addr: u64) -> Result<&'static mut PageTableEntry, MapError> {
    let pde = pd_entry(root, addr)?;
    if pde.is_unused() {
        let pt = new_table()?;
        pde.set_addr(PhysAddr::new(pt), TABLE_FLAGS);
    } else if pde.flags().contains(Flags::HUGE_PAGE) {
        let base = pde.addr().as_u64();
        let flags = pde.flags() - Flags::HUGE_PAGE;
        let pt = new_table()?;
        // SAFETY: freshly allocated table, owned here.
        let t = unsafe { table(pt) };
        for (i, e) in t.iter_mut().enumerate() {
            e.set_addr(PhysAddr::new(base + i as u64 * PAGE_SIZE), flags);
        }
        pde.set_addr(PhysAddr::new(pt), TABLE_FLAGS);
    }
    let pt_phys = pde.addr().as_u64();
    // SAFETY: `pt_phys` is a page table created by this module.
    let pt = unsafe { table(pt_phys) };
    Ok(&mut pt[index(addr, 1)])
}

fn map_range(root: u64, start: u64, end: u64, caching: Caching) -> Result<(), MapError> {
    let leaf = Flags::PRESENT | Flags::WRITABLE | caching.flags();
    let mut addr = align_down(start, PAGE_SIZE);
    let end = align_up(end, PAGE_SIZE);
    while addr < end {
        if addr.is_multiple_of(HUGE_PAGE_SIZE) && end - addr >= HUGE_PAGE_SIZE {
            let pde = pd_entry(root, addr)?;
            if !pde.is_unused() && !pde.flags().contains(Flags::HUGE_PAGE) {
                // A 4 KiB table is replaced by one large page: give its frame back.
                // SAFETY: the table was allocated by `new_table` and nothing refers to it
                // once the entry is overwritten below (TLB flushed by the caller).
                unsafe { free_frames(pde.addr().as_u64(), 1) };
            }
            pde.set_addr(PhysAddr::new(addr), leaf | Flags::HUGE_PAGE);
            addr += HUGE_PAGE_SIZE;
        } else {
            pt_entry(root, addr)?.set_addr(PhysAddr::new(addr), leaf);
            addr += PAGE_SIZE;
        }
    }
    Ok(())
}

fn unmap_page(root: u64, addr: u64) -> Result<(), MapError> {
    pt_entry(root, align_down(addr, PAGE_SIZE))?.set_unused();
    Ok(())
}

fn map_checked(phys: u64, len: u64, caching: Caching) -> Result<u64, MapError> {
    if len == 0 {
        return Err(MapError::Empty);
    }
    let end = phys
        .checked_add(len)
        .filter(|&e| e <= IDENTITY_LIMIT)
        .ok_or(MapError::OutOfRange { phys, len })?;
    without_interrupts(|| {
        let guard = ROOT.lock();
        let root = guard.ok_or(MapError::NotInitialized)?;
        let result = map_range(root, phys, end, caching);
        // Flush even after a partial failure: some entries may have changed.
        x86_64::instructions::tlb::flush_all();
        result
    })?;
    Ok(phys)
}

/// Maps `[phys, phys + len)` uncached (device registers) and returns its virtual address,
/// which equals `phys`. Works above 4 GiB (64-bit BARs); remapping an already mapped range
/// changes its caching.
pub fn map_mmio(phys: u64, len: u64) -> Result<u64, MapError> {
    map_checked(phys, len, Caching::Uncached)
}

/// Maps `[phys, phys + len)` write-back (RAM-like BARs such as ivshmem shared memory) and
/// returns its virtual address (== `phys`).
pub fn map_mmio_cached(phys: u64, len: u64) -> Result<u64, MapError> {
    map_checked(phys, len, Caching::WriteBack)
}

/// How one virtual address is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address it translates to.
    pub phys: u64,
    /// Size of the page holding it (4 KiB or 2 MiB).
    pub page_size: u64,
    /// Caching of the page.
    pub caching: Caching,
    /// Whether writes are allowed.
    pub writable: bool,
}

/// Walks the active page tables for `virt`; `None` if it is not mapped.
pub fn translate(virt: u64) -> Option<Mapping> {
    without_interrupts(|| {
        let guard = ROOT.lock();
        let mut phys = (*guard)?;
        for level in [4u32, 3, 2, 1] {
            // SAFETY: ROOT is held; every non-leaf entry points to a table of this module.
            let e = &unsafe { table(phys) }[index(virt, level)];
            let flags = e.flags();
            if !flags.contains(Flags::PRESENT) {
                return None;
            }
            let leaf = level == 1 || (level == 2 && flags.contains(Flags::HUGE_PAGE));
            if leaf {
                let page_size = if level == 1 {
                    PAGE_SIZE
                } else {
                    HUGE_PAGE_SIZE
                };
                let caching = if flags.contains(Flags::NO_CACHE) {
                    Caching::Uncached
                } else {
                    Caching::WriteBack
                };
                return Some(Mapping {
                    phys: e.addr().as_u64() + virt % page_size,
                    page_size,
                    caching,
                    writable: flags.contains(Flags::WRITABLE),
                });
            }
            phys = e.addr().as_u64();
        }
        None
    })
}

/// Allocates `count` zeroed, physically contiguous, page-aligned 4 KiB frames (DMA memory)
/// and returns the physical address (== virtual address). `None` if out of memory.
pub fn alloc_frames(count: usize) -> Option<u64> {
    let layout = frames_layout(count)?;
    // SAFETY: the layout has non-zero size (count >= 1, checked by frames_layout).
    let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
    (!ptr.is_null()).then_some(ptr as u64)
}

/// Returns frames obtained from [`alloc_frames`].
///
/// # Safety
/// `phys` must come from `alloc_frames(count)` with the same `count`, not be freed already,
/// and no device or code may use the memory afterwards.
pub unsafe fn free_frames(phys: u64, count: usize) {
    if let Some(layout) = frames_layout(count) {
        // SAFETY: guaranteed by the caller: allocated by the global allocator with `layout`.
        unsafe { alloc::alloc::dealloc(phys as *mut u8, layout) };
    }
}

fn frames_layout(count: usize) -> Option<Layout> {
    if count == 0 {
        return None;
    }
    let size = count.checked_mul(PAGE_SIZE as usize)?;
    Layout::from_size_align(size, PAGE_SIZE as usize).ok()
}
