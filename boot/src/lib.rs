//! PVH boot: the ELF note and 32→64-bit entry stub, early identity page tables, and the
//! hand-over of the loader's `hvm_start_info` as a kernel-owned [`BootInfo`].
//!
//! Boot flow (Xen `docs/misc/pvh.pandoc`, "x86/HVM direct boot ABI"):
//! 1. The loader (QEMU `-kernel` with SeaBIOS' `pvh.bin` option ROM) finds the
//!    `XEN_ELFNOTE_PHYS32_ENTRY` note and jumps to `pvh_start32` in 32-bit protected mode
//!    with paging off and `%ebx` = physical address of `hvm_start_info`.
//! 2. `pvh_start32` (see `entry.rs`) zeroes `.bss`, identity-maps the first 4 GiB with
//!    2 MiB pages, enables long mode and calls `boot_rust_start`.
//! 3. `boot_rust_start` converts `hvm_start_info` into a [`BootInfo`] at once (nothing later
//!    reads loader memory) and calls the kernel's `main` registered with [`entry_point!`].
#![no_std]

#[cfg(target_os = "none")]
mod entry;
pub mod memmap;
pub mod pvh;

pub use pvh::PvhError;

/// Maximum number of memory map entries kept in [`BootInfo::memory_map`].
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Maximum command line length kept in [`BootInfo::cmdline`], in bytes.
pub const MAX_CMDLINE: usize = 1024;

/// Kind of a physical memory region (E820 types, ACPI 6.5 §15 "System Address Map").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (E820 type 1).
    Ram,
    /// Reserved by firmware or hardware (E820 type 2).
    Reserved,
    /// ACPI tables, reclaimable after they are parsed (E820 type 3).
    Acpi,
    /// Anything else, with the raw E820 type (4 = ACPI NVS, 5 = unusable, 7 = persistent…).
    Other(u32),
}

impl MemoryKind {
    /// Converts an E820 / `hvm_memmap_table_entry.type` value.
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::Acpi,
            other => Self::Other(other),
        }
    }
}

/// One entry of the physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the region holds.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// Exclusive end address (saturating at `u64::MAX`).
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Physical address range `[start, end)` of something the linker placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Non-fatal problems found while converting `hvm_start_info`; the data kept is still valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootWarnings {
    /// The loader's memory map had more than [`MAX_MEMORY_REGIONS`] entries; the rest were dropped.
    pub memory_map_truncated: bool,
    /// The command line was longer than [`MAX_CMDLINE`] bytes (or unterminated) and was cut.
    pub cmdline_truncated: bool,
    /// The command line was not UTF-8; only the valid prefix was kept.
    pub cmdline_not_utf8: bool,
}

/// Everything the kernel needs from the boot protocol, owned by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// Physical memory map, in loader order (ascending for QEMU's pvh.bin).
    pub memory_map: heapless::Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
    /// Kernel command line (`qemu -append`), empty if none.
    pub cmdline: heapless::String<MAX_CMDLINE>,
    /// Physical address of the ACPI RSDP, if the loader supplied one.
    pub rsdp: Option<u64>,
    /// `hvm_start_info.version` (0 has no memory map).
    pub pvh_version: u32,
    /// Whole loaded image, `.bss` and boot stack included.
    pub kernel_image: PhysRange,
    /// The boot stack (the kernel keeps running on it).
    pub boot_stack: PhysRange,
    /// The page directly below the boot stack, left unmapped by the final page tables.
    pub stack_guard_page: u64,
    /// Problems that did not stop the conversion.
    pub warnings: BootWarnings,
    /// Set if `hvm_start_info` could not be read at all; then the fields above are empty and
    /// the kernel must stop with this error.
    pub error: Option<PvhError>,
}

impl BootInfo {
    /// An empty `BootInfo` (no memory, no command line).
    pub const fn empty() -> Self {
        Self {
            memory_map: heapless::Vec::new(),
            cmdline: heapless::String::new(),
            rsdp: None,
            pvh_version: 0,
            kernel_image: PhysRange { start: 0, end: 0 },
            boot_stack: PhysRange { start: 0, end: 0 },
            stack_guard_page: 0,
            warnings: BootWarnings {
                memory_map_truncated: false,
                cmdline_truncated: false,
                cmdline_not_utf8: false,
            },
            error: None,
        }
    }

    /// Iterator over the usable RAM regions.
    pub fn ram_regions(&self) -> impl Iterator<Item = &MemoryRegion> {
        self.memory_map.iter().filter(|r| r.kind == MemoryKind::Ram)
    }

    /// Total bytes of usable RAM in the memory map.
    pub fn total_ram(&self) -> u64 {
        self.ram_regions().map(|r| r.len).sum()
    }
}

/// Registers the kernel's main function, called once long mode is up and the
/// [`BootInfo`] is built: `boot::entry_point!(main)` with `fn main(&'static BootInfo) -> !`.
///
/// Exactly one image-level crate (the kernel binary or a kernel test) uses it.
#[macro_export]
macro_rules! entry_point {
    ($path:path) => {
        #[doc(hidden)]
        #[unsafe(export_name = "__smcd_boot_main")]
        pub fn __smcd_boot_main(info: &'static $crate::BootInfo) -> ! {
            let main: fn(&'static $crate::BootInfo) -> ! = $path;
            main(info)
        }
    };
}
