//! Fuzz target: every parser and validator of `ivshmem-region` on hostile bytes.
//!
//! Input: region size (log2), peer count and slot count pick a layout; a valid header
//! for it is formatted and then corrupted by byte patches from the input; the rest of
//! the input is taken as a directory entry and a descriptor. Nothing may panic, and
//! whatever validates must describe ranges inside the region.
#![no_main]

use ivshmem_region::{
    format_header, header, Descriptor, Gid, Header, Layout, LayoutParams, PeerEntry, HEADER_SIZE,
    MAGIC,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let log2 = u32::from(data[0] % 42);
    let max_peers = u32::from(u16::from_le_bytes([data[1], data[2]]));
    let slots = u32::from(u16::from_le_bytes([data[3], data[4]]));
    let patches = usize::from(data[5] % 8);
    let rest = &data[6..];
    let (patch_bytes, tail) = rest.split_at(rest.len().min(patches * 2));
    let region_len = 1usize << log2;

    let mut page = [0u8; HEADER_SIZE];
    let params = LayoutParams {
        region_size: region_len,
        max_peers,
        slots_per_peer: slots,
    };
    match Layout::compute(params) {
        Ok(layout) => format_header(&mut page, &layout, [0x5a; 16], 2),
        Err(_) => {
            // No valid layout: a raw header with the right magic and version.
            page[header::MAGIC].copy_from_slice(&MAGIC);
            page[header::VERSION].copy_from_slice(&1u32.to_le_bytes());
            let n = tail.len().min(header::FIELDS_END - 12);
            page[12..12 + n].copy_from_slice(&tail[..n]);
        }
    }
    for patch in patch_bytes.chunks_exact(2) {
        page[usize::from(patch[0]) % header::FIELDS_END] = patch[1];
    }

    let Ok(header) = Header::new_checked(&page[..]) else {
        return;
    };
    let Ok(layout) = Layout::from_header(&header, region_len) else {
        return;
    };
    assert_eq!(layout.region_size(), region_len);
    let last = layout.max_peers() - 1;
    for peer in [0, last, layout.max_peers()] {
        if let Some(range) = layout.area(peer) {
            assert!(range.end <= region_len);
        }
        if let Some(range) = layout.peer_entry_range(peer) {
            assert!(range.end <= layout.data_offset());
        }
        if let Some((word, _)) = layout.signal_bit(peer, layout.slots_per_peer() - 1) {
            assert!(word + 8 <= layout.data_offset());
        }
    }
    if let Some(entry) = PeerEntry::new_checked(tail, &layout) {
        let _ = entry.parse();
        let _ = entry.bitmap_word(0, &layout);
    }
    if let Some(descriptor) = Descriptor::new_checked(tail).and_then(|d| d.parse()) {
        let requester = Gid { gid: 1, gid_ext: 2 };
        let owner_gid = descriptor.owner_gid;
        if let Ok(range) =
            layout.validate_attach(last, 0, &descriptor, descriptor.token, requester, owner_gid)
        {
            let payload = layout.area_payload(last).unwrap();
            assert!(range.start >= payload.start && range.end <= payload.end);
        }
    }
});
