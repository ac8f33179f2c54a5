//! Conversion of the PVH `hvm_start_info` block into a [`BootInfo`].
//!
//! Layouts from Xen `xen/include/public/arch-x86/hvm/start_info.h` (version 1):
//!
//! ```text
//! hvm_start_info (56 bytes)              hvm_memmap_table_entry (24 bytes)
//!  0 u32 magic = 0x336ec578               0 u64 addr
//!  4 u32 version                          8 u64 size
//!  8 u32 flags                           16 u32 type (E820)
//! 12 u32 nr_modules                      20 u32 reserved
//! 16 u64 modlist_paddr
//! 24 u64 cmdline_paddr  (NUL-terminated)
//! 32 u64 rsdp_paddr     (0 = not provided)
//! 40 u64 memmap_paddr   (version >= 1)
//! 48 u32 memmap_entries (version >= 1)
//! 52 u32 reserved
//! ```
//!
//! Memory is read through [`PhysMemory`] so the conversion runs on the host in unit tests.

use crate::{BootInfo, BootWarnings, MemoryKind, MemoryRegion, MAX_CMDLINE, MAX_MEMORY_REGIONS};

/// `hvm_start_info.magic` ("xEn3" with the 0x80 bit set in the `E`).
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Size of `hvm_start_info` version 1.
pub const START_INFO_SIZE: usize = 56;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_SIZE: usize = 24;

/// Why `hvm_start_info` could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// `%ebx` was 0: the loader passed no start info.
    NullStartInfo,
    /// The magic field did not hold [`START_INFO_MAGIC`].
    BadMagic(u32),
    /// A structure lies outside the memory that can be read this early.
    Unreadable {
        /// Physical address of the read.
        addr: u64,
        /// Length of the read.
        len: u64,
    },
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NullStartInfo => write!(f, "no hvm_start_info (ebx = 0)"),
            Self::BadMagic(m) => {
                write!(
                    f,
                    "hvm_start_info magic {m:#x}, expected {START_INFO_MAGIC:#x}"
                )
            }
            Self::Unreadable { addr, len } => {
                write!(f, "boot structure at {addr:#x} (+{len:#x}) is not readable")
            }
        }
    }
}

/// Read access to physical memory during boot.
pub trait PhysMemory {
    /// Copies `buf.len()` bytes from physical address `addr`, or fails without reading
    /// if the range is not readable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PvhError>;
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

/// Builds a [`BootInfo`] from the `hvm_start_info` at physical address `start_info`.
///
/// Oversized inputs are cut to the [`BootInfo`] capacities and flagged in
/// [`BootInfo::warnings`]; the linker-provided fields (`kernel_image`, …) are left empty.
pub fn boot_info_from_start_info(
    mem: &impl PhysMemory,
    start_info: u64,
) -> Result<BootInfo, PvhError> {
    if start_info == 0 {
        return Err(PvhError::NullStartInfo);
    }
    let mut hdr = [0u8; START_INFO_SIZE];
    // Version 0 is only 40 bytes long; read that much first.
    mem.read(start_info, &mut hdr[..40])?;
    let magic = u32_at(&hdr, 0);
    if magic != START_INFO_MAGIC {
        return Err(PvhError::BadMagic(magic));
    }
    let version = u32_at(&hdr, 4);
    if version >= 1 {
        mem.read(start_info + 40, &mut hdr[40..])?;
    }

    let mut info = BootInfo::empty();
    info.pvh_version = version;
    let rsdp = u64_at(&hdr, 32);
    info.rsdp = (rsdp != 0).then_some(rsdp);

    let cmdline = u64_at(&hdr, 24);
    if cmdline != 0 {
        read_cmdline(mem, cmdline, &mut info)?;
    }

    if version >= 1 {
        let memmap = u64_at(&hdr, 40);
        let entries = u32_at(&hdr, 48) as usize;
        if memmap != 0 {
            let kept = entries.min(MAX_MEMORY_REGIONS);
            info.warnings.memory_map_truncated = entries > MAX_MEMORY_REGIONS;
            for i in 0..kept {
                let mut e = [0u8; MEMMAP_ENTRY_SIZE];
                mem.read(memmap + (i * MEMMAP_ENTRY_SIZE) as u64, &mut e)?;
                let region = MemoryRegion {
                    start: u64_at(&e, 0),
                    len: u64_at(&e, 8),
                    kind: MemoryKind::from_e820(u32_at(&e, 16)),
                };
                if region.len == 0 {
                    continue;
                }
                // Capacity is checked by `kept`, so this cannot fail.
                let _ = info.memory_map.push(region);
            }
        }
    }
    Ok(info)
}

/// Copies the NUL-terminated command line, keeping at most [`MAX_CMDLINE`] bytes of UTF-8.
fn read_cmdline(mem: &impl PhysMemory, addr: u64, info: &mut BootInfo) -> Result<(), PvhError> {
    let mut buf = [0u8; MAX_CMDLINE];
    let mut len = 0;
    let mut terminated = false;
    while len < MAX_CMDLINE {
        let mut b = [0u8; 1];
        mem.read(addr + len as u64, &mut b)?;
        if b[0] == 0 {
            terminated = true;
            break;
        }
        buf[len] = b[0];
        len += 1;
    }
    info.warnings.cmdline_truncated = !terminated;
    let text = match core::str::from_utf8(&buf[..len]) {
        Ok(s) => s,
        Err(e) => {
            info.warnings.cmdline_not_utf8 = true;
            // `valid_up_to` marks a prefix that is valid UTF-8.
            core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or("")
        }
    };
    // `text` is at most MAX_CMDLINE bytes, the String's capacity.
    let _ = info.cmdline.push_str(text);
    Ok(())
}

/// Warnings accumulated for callers that print them.
pub fn describe_warnings(w: &BootWarnings) -> impl Iterator<Item = &'static str> {
    [
        (w.memory_map_truncated, "memory map truncated to 64 entries"),
        (w.cmdline_truncated, "command line truncated to 1024 bytes"),
        (
            w.cmdline_not_utf8,
            "command line not UTF-8; kept the valid prefix",
        ),
    ]
    .into_iter()
    .filter_map(|(set, text)| set.then_some(text))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Fake physical memory: a byte vector starting at `base`.
    struct FakeMem {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMemory for FakeMem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PvhError> {
            let err = PvhError::Unreadable {
                addr,
                len: buf.len() as u64,
            };
            let off = addr.checked_sub(self.base).ok_or(err)? as usize;
            let src = self.bytes.get(off..off + buf.len()).ok_or(err)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    const BASE: u64 = 0x6000;

    /// Lays out start_info at BASE, the memmap at BASE+0x100, the cmdline at BASE+0x800,
    /// as QEMU's pvh.bin does (values from a real q35 -m 128M boot).
    fn image(cmdline: &[u8], entries: &[(u64, u64, u32)], version: u32) -> FakeMem {
        let mut b = std::vec![0xa5u8; 0x1000];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &START_INFO_MAGIC.to_le_bytes());
        put(4, &version.to_le_bytes());
        put(8, &0u32.to_le_bytes());
        put(12, &0u32.to_le_bytes());
        put(16, &0u64.to_le_bytes());
        put(24, &(BASE + 0x800).to_le_bytes());
        put(32, &0xf_52e0u64.to_le_bytes());
        put(40, &(BASE + 0x100).to_le_bytes());
        put(48, &(entries.len() as u32).to_le_bytes());
        put(52, &0u32.to_le_bytes());
        for (i, &(a, s, t)) in entries.iter().enumerate() {
            let off = 0x100 + i * MEMMAP_ENTRY_SIZE;
            put(off, &a.to_le_bytes());
            put(off + 8, &s.to_le_bytes());
            put(off + 16, &t.to_le_bytes());
            put(off + 20, &0u32.to_le_bytes());
        }
        put(0x800, cmdline);
        FakeMem {
            base: BASE,
            bytes: b,
        }
    }

    const Q35_128M: [(u64, u64, u32); 4] = [
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0xf0000, 0x10000, 2),
        (0x100000, 0x7ee0000, 1),
    ];

    #[test]
    fn converts_qemu_start_info() {
        let mem = image(b"log=debug smcd.role=a\0", &Q35_128M, 1);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert_eq!(info.pvh_version, 1);
        assert_eq!(info.cmdline.as_str(), "log=debug smcd.role=a");
        assert_eq!(info.rsdp, Some(0xf_52e0));
        assert_eq!(info.memory_map.len(), 4);
        assert_eq!(
            info.memory_map[3],
            MemoryRegion {
                start: 0x100000,
                len: 0x7ee0000,
                kind: MemoryKind::Ram
            }
        );
        assert_eq!(info.memory_map[1].kind, MemoryKind::Reserved);
        assert_eq!(info.total_ram(), 0x9fc00 + 0x7ee0000);
        assert_eq!(info.warnings, BootWarnings::default());
        assert_eq!(info.error, None);
    }

    #[test]
    fn rejects_bad_magic_and_null() {
        let mut mem = image(b"\0", &Q35_128M, 1);
        mem.bytes[0] = 0x78 ^ 0xff;
        assert!(matches!(
            boot_info_from_start_info(&mem, BASE),
            Err(PvhError::BadMagic(_))
        ));
        assert_eq!(
            boot_info_from_start_info(&mem, 0),
            Err(PvhError::NullStartInfo)
        );
    }

    #[test]
    fn version0_has_no_memory_map() {
        let mem = image(b"x\0", &Q35_128M, 0);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert!(info.memory_map.is_empty());
        assert_eq!(info.cmdline.as_str(), "x");
    }

    #[test]
    fn long_cmdline_is_truncated_and_flagged() {
        let mut long = std::vec![b'a'; 1500];
        long.push(0);
        let mem = image(&long, &Q35_128M, 1);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert_eq!(info.cmdline.len(), MAX_CMDLINE);
        assert!(info.warnings.cmdline_truncated);
    }

    #[test]
    fn invalid_utf8_keeps_valid_prefix() {
        let mem = image(b"ok\xff\xfe rest\0", &Q35_128M, 1);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert_eq!(info.cmdline.as_str(), "ok");
        assert!(info.warnings.cmdline_not_utf8);
    }

    #[test]
    fn too_many_regions_are_cut_and_flagged() {
        let entries: Vec<(u64, u64, u32)> = (0..70u64).map(|i| (i * 0x1000, 0x1000, 1)).collect();
        // 70 entries * 24 bytes end at 0x790, below the cmdline at 0x800.
        let mem = image(b"\0", &entries, 1);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert_eq!(info.memory_map.len(), MAX_MEMORY_REGIONS);
        assert!(info.warnings.memory_map_truncated);
        assert_eq!(info.cmdline.as_str(), "");
    }

    #[test]
    fn unreadable_memmap_is_an_error_not_a_panic() {
        let mut mem = image(b"\0", &Q35_128M, 1);
        mem.bytes[40..48].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        assert!(matches!(
            boot_info_from_start_info(&mem, BASE),
            Err(PvhError::Unreadable {
                addr: 0xdead_0000,
                ..
            })
        ));
    }

    #[test]
    fn zero_length_regions_are_skipped() {
        let mem = image(b"\0", &[(0, 0, 1), (0x100000, 0x1000, 1)], 1);
        let info = boot_info_from_start_info(&mem, BASE).unwrap();
        assert_eq!(info.memory_map.len(), 1);
    }
}
