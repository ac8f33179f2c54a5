//! Known-answer, bounds and property tests for the region layout.

extern crate std;

use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

const POISON: u8 = 0xa5;

/// 1 MiB, 4 peers, 64 slots: entry 64 B, directory 4096..8192, data at 8192,
/// descriptor table 4096 B, area (1 MiB - 8 KiB) / 4 = 260096 -> 258048 (63 pages).
fn small_params() -> LayoutParams {
    LayoutParams {
        region_size: 1 << 20,
        max_peers: 4,
        slots_per_peer: 64,
    }
}

const REGION_ID: [u8; 16] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];

/// The first 104 bytes of the header for `small_params()`, built by hand.
#[rustfmt::skip]
const SMALL_HEADER: [u8; 104] = [
    b'S', b'M', b'C', b'D', b'I', b'V', b'S', b'H', // magic
    0x01, 0x00, 0x00, 0x00,                         // version 1
    0x00, 0x10, 0x00, 0x00,                         // header size 4096
    0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // region size 1 MiB
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, // region id
    0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x04, 0x00, 0x00, 0x00,                         // max peers 4
    0x40, 0x00, 0x00, 0x00,                         // slots 64
    0x40, 0x00, 0x00, 0x00,                         // entry size 64
    0x40, 0x00, 0x00, 0x00,                         // descriptor size 64
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // directory offset 4096
    0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // data offset 8192
    0x00, 0xf0, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, // area size 0x3f000
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // descriptor table 4096
    0x02, 0x00, 0x00, 0x00,                         // vectors 2
    0x00, 0x00, 0x00, 0x00,                         // flags
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // server epoch 0
];

fn small_header_page() -> Vec<u8> {
    let mut page = vec![0u8; HEADER_SIZE];
    page[..SMALL_HEADER.len()].copy_from_slice(&SMALL_HEADER);
    page
}

#[test]
fn compute_small_layout() {
    let layout = Layout::compute(small_params()).unwrap();
    assert_eq!(layout.peer_entry_size(), 64);
    assert_eq!(layout.directory_offset(), 4096);
    assert_eq!(layout.data_offset(), 8192);
    assert_eq!(layout.descriptor_table_size(), 4096);
    assert_eq!(layout.area_size(), 258_048);
    assert_eq!(layout.bitmap_words(), 1);
    assert_eq!(layout.params(), small_params());
}

#[test]
fn format_metadata_matches_hand_built_bytes() {
    let layout = Layout::compute(small_params()).unwrap();
    let mut buf = vec![POISON; layout.data_offset() + 16];
    format_metadata(&mut buf, &layout, REGION_ID, 2);
    assert_eq!(&buf[..SMALL_HEADER.len()], &SMALL_HEADER[..]);
    // Reserved header bytes and the whole directory are zero (Free, epoch 0, no GID).
    assert!(buf[SMALL_HEADER.len()..layout.data_offset()]
        .iter()
        .all(|&b| b == 0));
    // Nothing past the metadata is touched.
    assert!(buf[layout.data_offset()..].iter().all(|&b| b == POISON));
}

#[test]
fn format_header_writes_whole_page_only() {
    let layout = Layout::compute(small_params()).unwrap();
    let mut buf = vec![POISON; HEADER_SIZE + 8];
    format_header(&mut buf, &layout, REGION_ID, 2);
    assert_eq!(&buf[..HEADER_SIZE], &small_header_page()[..]);
    assert_eq!(&buf[HEADER_SIZE..], &[POISON; 8]);
}

#[test]
fn parse_hand_built_header() {
    let page = small_header_page();
    let header = Header::new_checked(&page[..]).unwrap();
    assert_eq!(header.magic(), MAGIC);
    assert_eq!(header.version(), 1);
    assert_eq!(header.region_size(), 1 << 20);
    assert_eq!(header.region_id(), REGION_ID);
    assert_eq!(header.max_peers(), 4);
    assert_eq!(header.slots_per_peer(), 64);
    assert_eq!(header.vectors(), 2);
    assert_eq!(header.server_epoch(), 0);
    let layout = Layout::from_header(&header, 1 << 20).unwrap();
    assert_eq!(layout, Layout::compute(small_params()).unwrap());
}

#[test]
fn small_layout_offsets() {
    let layout = Layout::compute(small_params()).unwrap();
    assert_eq!(layout.peer_entry_offset(0), Some(4096));
    assert_eq!(layout.peer_entry_offset(3), Some(4096 + 3 * 64));
    assert_eq!(layout.peer_entry_offset(4), None);
    assert_eq!(layout.peer_entry_range(1), Some(4160..4224));
    assert_eq!(layout.peer_state_offset(1), Some(4160));
    assert_eq!(layout.peer_epoch_offset(1), Some(4168));
    assert_eq!(layout.peer_gid_offsets(1), Some((4176, 4184)));
    assert_eq!(
        layout.bitmap_range(2),
        Some(4096 + 128 + 32..4096 + 128 + 40)
    );
    assert_eq!(layout.signal_bit(2, 5), Some((4096 + 128 + 32, 1 << 5)));
    assert_eq!(layout.signal_bit(2, 63), Some((4096 + 128 + 32, 1 << 63)));
    assert_eq!(layout.signal_bit(2, 64), None);
    assert_eq!(layout.area(0), Some(8192..8192 + 258_048));
    assert_eq!(layout.area(3), Some(8192 + 3 * 258_048..8192 + 4 * 258_048));
    assert_eq!(layout.area(4), None);
    assert_eq!(
        layout.descriptor_table(1),
        Some(8192 + 258_048..8192 + 258_048 + 4096)
    );
    assert_eq!(
        layout.area_payload(1),
        Some(8192 + 258_048 + 4096..8192 + 2 * 258_048)
    );
    assert_eq!(
        layout.descriptor_offset(1, 3),
        Some(8192 + 258_048 + 3 * 64)
    );
    assert_eq!(layout.descriptor_offset(1, 64), None);
    assert_eq!(layout.descriptor_offset(4, 0), None);
}

#[test]
fn slots_1024_bitmap_words() {
    let layout = Layout::compute(LayoutParams {
        region_size: 64 << 20,
        max_peers: 32,
        slots_per_peer: 1024,
    })
    .unwrap();
    // 32 + 128 = 160 -> 192 bytes per entry; 32 entries = 6144 -> 8192 bytes.
    assert_eq!(layout.peer_entry_size(), 192);
    assert_eq!(layout.data_offset(), 4096 + 8192);
    assert_eq!(layout.bitmap_words(), 16);
    assert_eq!(layout.descriptor_table_size(), 65_536);
    assert_eq!(
        layout.signal_bit(1, 1000),
        Some((4096 + 192 + 32 + 15 * 8, 1 << 40))
    );
}

#[test]
fn compute_rejects_bad_parameters() {
    let base = small_params();
    assert_eq!(
        Layout::compute(LayoutParams {
            region_size: 3 << 20,
            ..base
        }),
        Err(LayoutError::NotPowerOfTwo {
            region_size: 3 << 20
        })
    );
    assert_eq!(
        Layout::compute(LayoutParams {
            region_size: 0,
            ..base
        }),
        Err(LayoutError::NotPowerOfTwo { region_size: 0 })
    );
    assert_eq!(
        Layout::compute(LayoutParams {
            region_size: 1 << 41,
            ..base
        }),
        Err(LayoutError::TooLarge {
            region_size: 1 << 41
        })
    );
    assert_eq!(
        Layout::compute(LayoutParams {
            max_peers: 0,
            ..base
        }),
        Err(LayoutError::BadPeerCount { max_peers: 0 })
    );
    assert_eq!(
        Layout::compute(LayoutParams {
            max_peers: MAX_PEERS + 1,
            ..base
        }),
        Err(LayoutError::BadPeerCount {
            max_peers: MAX_PEERS + 1
        })
    );
    for slots in [0, 32, 65, 100, MAX_SLOTS + 64] {
        assert_eq!(
            Layout::compute(LayoutParams {
                slots_per_peer: slots,
                ..base
            }),
            Err(LayoutError::BadSlotCount {
                slots_per_peer: slots
            })
        );
    }
    // 4 peers x (4096 table + 16 KiB) + 8 KiB metadata = 90112 -> needs 128 KiB.
    assert_eq!(
        Layout::compute(LayoutParams {
            region_size: 64 << 10,
            ..base
        }),
        Err(LayoutError::TooSmall {
            region_size: 64 << 10,
            minimum: 128 << 10
        })
    );
    assert!(Layout::compute(LayoutParams {
        region_size: 128 << 10,
        ..base
    })
    .is_ok());
    assert_eq!(Layout::minimum_region_size(4, 64), Ok(128 << 10));
}

fn corrupt(page: &[u8], field: Range<usize>, value: u64) -> Vec<u8> {
    let mut page = page.to_vec();
    let bytes = value.to_le_bytes();
    let len = field.len();
    page[field].copy_from_slice(&bytes[..len]);
    page
}

#[test]
fn header_rejections() {
    let page = small_header_page();
    assert_eq!(
        Header::new_checked(&page[..HEADER_SIZE - 1]).unwrap_err(),
        HeaderError::Truncated
    );
    assert_eq!(
        Header::new_checked(&[][..]).unwrap_err(),
        HeaderError::Truncated
    );
    let bad_magic = corrupt(&page, header::MAGIC, 0);
    assert_eq!(
        Header::new_checked(&bad_magic[..]).unwrap_err(),
        HeaderError::BadMagic
    );
    let bad_version = corrupt(&page, header::VERSION, 2);
    assert_eq!(
        Header::new_checked(&bad_version[..]).unwrap_err(),
        HeaderError::BadVersion { version: 2 }
    );
    let header = Header::new_checked(&page[..]).unwrap();
    assert_eq!(
        Layout::from_header(&header, 2 << 20),
        Err(HeaderError::SizeMismatch {
            stored: 1 << 20,
            actual: 2 << 20
        })
    );
    let bad_peers = corrupt(&page, header::MAX_PEERS, 0);
    assert_eq!(
        Layout::from_header(&Header::new_checked(&bad_peers[..]).unwrap(), 1 << 20),
        Err(HeaderError::Layout(LayoutError::BadPeerCount {
            max_peers: 0
        }))
    );
    let inconsistent: [(Range<usize>, &str); 8] = [
        (header::HEADER_SIZE, "HEADER_SIZE"),
        (header::PEER_ENTRY_SIZE, "PEER_ENTRY_SIZE"),
        (header::DESCRIPTOR_SIZE, "DESCRIPTOR_SIZE"),
        (header::DIRECTORY_OFFSET, "DIRECTORY_OFFSET"),
        (header::DATA_OFFSET, "DATA_OFFSET"),
        (header::AREA_SIZE, "AREA_SIZE"),
        (header::DESCRIPTOR_TABLE_SIZE, "DESCRIPTOR_TABLE_SIZE"),
        (header::FLAGS, "FLAGS"),
    ];
    for (field, name) in inconsistent {
        let bad = corrupt(&page, field, 0x7777);
        assert_eq!(
            Layout::from_header(&Header::new_checked(&bad[..]).unwrap(), 1 << 20),
            Err(HeaderError::Inconsistent { field: name }),
            "{name}"
        );
    }
}

const SIZES_LOG2: Range<u32> = 12..41;
const PEER_COUNTS: [u32; 12] = [1, 2, 3, 4, 7, 8, 16, 31, 32, 64, 255, MAX_PEERS];
const SLOT_COUNTS: [u32; 6] = [64, 128, 256, 512, 1024, MAX_SLOTS];

/// Checks every invariant a consumer of `layout` relies on.
fn assert_layout_invariants(layout: &Layout) {
    let size = layout.region_size();
    let peers = layout.max_peers();
    assert!(HEADER_SIZE <= layout.directory_offset());
    assert_eq!(layout.directory_offset() % PAGE_SIZE, 0);
    assert_eq!(layout.data_offset() % PAGE_SIZE, 0);
    assert_eq!(layout.area_size() % PAGE_SIZE, 0);
    assert_eq!(layout.peer_entry_size() % 64, 0);
    let directory_end = layout.peer_entry_range(peers - 1).unwrap().end;
    assert!(directory_end <= layout.data_offset());
    let mut previous_end = layout.data_offset();
    for peer in 0..peers {
        let entry = layout.peer_entry_range(peer).unwrap();
        assert!(entry.start >= layout.directory_offset() && entry.end <= layout.data_offset());
        for offset in [
            layout.peer_state_offset(peer).unwrap(),
            layout.peer_epoch_offset(peer).unwrap(),
            layout.peer_gid_offsets(peer).unwrap().0,
            layout.peer_gid_offsets(peer).unwrap().1,
        ] {
            assert_eq!(offset % 8, 0);
            assert!(entry.contains(&offset) && offset + 8 <= entry.end);
        }
        let bitmap = layout.bitmap_range(peer).unwrap();
        assert_eq!(bitmap.start % 8, 0);
        assert!(bitmap.start >= entry.start && bitmap.end <= entry.end);
        for slot in [0, layout.slots_per_peer() - 1] {
            let (word, mask) = layout.signal_bit(peer, slot).unwrap();
            assert_eq!(word % 8, 0);
            assert!(word >= bitmap.start && word + 8 <= bitmap.end);
            assert_eq!(mask.count_ones(), 1);
        }
        let area = layout.area(peer).unwrap();
        assert_eq!(
            area.start, previous_end,
            "areas are contiguous and disjoint"
        );
        previous_end = area.end;
        assert!(area.end <= size);
        let table = layout.descriptor_table(peer).unwrap();
        let payload = layout.area_payload(peer).unwrap();
        assert_eq!(table.start, area.start);
        assert_eq!(table.end, payload.start);
        assert_eq!(payload.end, area.end);
        assert!(payload.len() >= MIN_AREA_PAYLOAD);
        for slot in [0, layout.slots_per_peer() - 1] {
            let descriptor = layout.descriptor_offset(peer, slot).unwrap();
            assert_eq!(descriptor % 8, 0);
            assert!(descriptor >= table.start && descriptor + DESCRIPTOR_SIZE <= table.end);
        }
    }
    assert!(previous_end <= size);
    assert_eq!(layout.peer_entry_offset(peers), None);
    assert_eq!(layout.area(peers), None);
    assert_eq!(layout.signal_bit(0, layout.slots_per_peer()), None);
}

#[test]
fn every_offset_inside_region_for_all_valid_configs() {
    let mut valid = 0;
    for log2 in SIZES_LOG2 {
        for peers in PEER_COUNTS {
            for slots in SLOT_COUNTS {
                let params = LayoutParams {
                    region_size: 1 << log2,
                    max_peers: peers,
                    slots_per_peer: slots,
                };
                match Layout::compute(params) {
                    Ok(layout) => {
                        valid += 1;
                        assert_layout_invariants(&layout);
                        // Header round trip: the guest recomputes the same layout.
                        let mut page = vec![POISON; HEADER_SIZE];
                        format_header(&mut page, &layout, REGION_ID, 2);
                        let header = Header::new_checked(&page[..]).unwrap();
                        assert_eq!(Layout::from_header(&header, 1 << log2), Ok(layout));
                    }
                    Err(LayoutError::TooSmall { minimum, .. }) => {
                        assert!(minimum > 1 << log2);
                        assert_eq!(Layout::minimum_region_size(peers, slots), Ok(minimum));
                    }
                    Err(err) => panic!("{params:?}: unexpected {err}"),
                }
            }
        }
    }
    assert!(valid > 1000, "only {valid} valid configurations exercised");
}

#[test]
fn minimum_region_size_is_tight() {
    for peers in PEER_COUNTS {
        for slots in SLOT_COUNTS {
            let minimum = Layout::minimum_region_size(peers, slots).unwrap();
            let params = LayoutParams {
                region_size: minimum,
                max_peers: peers,
                slots_per_peer: slots,
            };
            assert!(Layout::compute(params).is_ok());
            let smaller = LayoutParams {
                region_size: minimum / 2,
                ..params
            };
            assert!(matches!(
                Layout::compute(smaller),
                Err(LayoutError::TooSmall { .. })
            ));
        }
    }
}

#[test]
fn peer_entry_known_bytes() {
    let layout = Layout::compute(small_params()).unwrap();
    let mut buf = [POISON; 64];
    let repr = PeerEntryRepr {
        state: PeerState::Active,
        epoch: 6,
        gid: Gid {
            gid: 0x0102_0304_0506_0708,
            gid_ext: 0x1112_1314_1516_1718,
        },
    };
    PeerEntry::new_checked(&mut buf[..], &layout)
        .unwrap()
        .emit(&repr);
    #[rustfmt::skip]
    let expected: [u8; 32] = [
        0x01, 0, 0, 0, 0, 0, 0, 0,
        0x06, 0, 0, 0, 0, 0, 0, 0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
    ];
    assert_eq!(&buf[..32], &expected[..]);
    assert_eq!(
        &buf[32..],
        &[POISON; 32][..],
        "emit leaves the bitmap alone"
    );
    let entry = PeerEntry::new_checked(&buf[..], &layout).unwrap();
    assert_eq!(entry.parse(), Some(repr));
    assert_eq!(
        entry.bitmap_word(0, &layout),
        Some(u64::from_le_bytes([POISON; 8]))
    );
    assert_eq!(entry.bitmap_word(1, &layout), None);
    assert!(PeerEntry::new_checked(&buf[..63], &layout).is_none());
    // Odd epoch: the server is rewriting the entry.
    buf[8] = 5;
    assert_eq!(
        PeerEntry::new_checked(&buf[..], &layout).unwrap().parse(),
        None
    );
    // Unknown state.
    buf[8] = 6;
    buf[0] = 3;
    assert_eq!(
        PeerEntry::new_checked(&buf[..], &layout).unwrap().parse(),
        None
    );
    // State and epoch disagree (Active needs epoch = 2 mod 4).
    buf[0] = 1;
    buf[8] = 8;
    assert_eq!(
        PeerEntry::new_checked(&buf[..], &layout).unwrap().parse(),
        None
    );
    buf[8] = 10;
    assert!(PeerEntry::new_checked(&buf[..], &layout)
        .unwrap()
        .parse()
        .is_some());
}

#[test]
fn entry_consistency_rules() {
    let gid = Gid { gid: 1, gid_ext: 2 };
    let repr = |state, epoch, gid| PeerEntryRepr { state, epoch, gid };
    assert!(repr(PeerState::Free, 0, Gid::ZERO).is_consistent());
    assert!(!repr(PeerState::Free, 2, Gid::ZERO).is_consistent());
    assert!(!repr(PeerState::Free, 0, gid).is_consistent());
    assert!(repr(PeerState::Active, 2, gid).is_consistent());
    assert!(repr(PeerState::Active, 6, gid).is_consistent());
    assert!(!repr(PeerState::Active, 4, gid).is_consistent());
    assert!(!repr(PeerState::Active, 3, gid).is_consistent());
    assert!(!repr(PeerState::Active, 2, Gid::ZERO).is_consistent());
    assert!(repr(PeerState::Dead, 4, gid).is_consistent());
    assert!(!repr(PeerState::Dead, 0, gid).is_consistent());
    assert!(!repr(PeerState::Dead, 6, gid).is_consistent());
    assert!(!repr(PeerState::Dead, 5, gid).is_consistent());
}

fn sample_descriptor(layout: &Layout) -> DescriptorRepr {
    let payload = layout.area_payload(1).unwrap();
    DescriptorRepr {
        sequence: 2,
        token: 0xdead_beef_cafe_f00d,
        dmb_offset: payload.start as u64 + 4096,
        dmb_len: 16 * 1024,
        owner_gid: Gid {
            gid: 11,
            gid_ext: 12,
        },
        remote_gid: Gid {
            gid: 21,
            gid_ext: 22,
        },
    }
}

#[test]
fn descriptor_known_bytes() {
    let mut buf = [POISON; 64];
    let repr = DescriptorRepr {
        sequence: 2,
        token: 0x0102_0304_0506_0708,
        dmb_offset: 0x0004_0000,
        dmb_len: 0x4000,
        owner_gid: Gid {
            gid: 0xaa,
            gid_ext: 0xbb,
        },
        remote_gid: Gid::ZERO,
    };
    Descriptor::new_checked(&mut buf[..]).unwrap().emit(&repr);
    #[rustfmt::skip]
    let expected: [u8; 64] = [
        0x02, 0, 0, 0, 0, 0, 0, 0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x00, 0x00, 0x04, 0x00, 0, 0, 0, 0,
        0x00, 0x40, 0, 0, 0, 0, 0, 0,
        0xaa, 0, 0, 0, 0, 0, 0, 0,
        0xbb, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(&buf[..], &expected[..]);
    assert_eq!(
        Descriptor::new_checked(&buf[..]).unwrap().parse(),
        Some(repr)
    );
    assert!(Descriptor::new_checked(&buf[..63]).is_none());
    buf[0] = 3;
    assert_eq!(Descriptor::new_checked(&buf[..]).unwrap().parse(), None);
}

#[test]
fn validate_attach_accepts_matching_descriptor() {
    let layout = Layout::compute(small_params()).unwrap();
    let d = sample_descriptor(&layout);
    let owner = d.owner_gid;
    let me = d.remote_gid;
    let range = layout
        .validate_attach(1, 7, &d, d.token, me, owner)
        .unwrap();
    assert_eq!(range.start as u64, d.dmb_offset);
    assert_eq!(range.len(), 16 * 1024);
    // An unrestricted DMB admits anyone.
    let open = DescriptorRepr {
        remote_gid: Gid::ZERO,
        ..d
    };
    assert!(layout
        .validate_attach(
            1,
            7,
            &open,
            d.token,
            Gid {
                gid: 99,
                gid_ext: 0
            },
            owner
        )
        .is_ok());
}

#[test]
fn validate_attach_rejections() {
    let layout = Layout::compute(small_params()).unwrap();
    let d = sample_descriptor(&layout);
    let (owner, me) = (d.owner_gid, d.remote_gid);
    let payload = layout.area_payload(1).unwrap();
    let check = |desc: &DescriptorRepr, token: u64, requester: Gid, dir: Gid| {
        layout.validate_attach(1, 7, desc, token, requester, dir)
    };
    assert_eq!(
        layout.validate_attach(4, 0, &d, d.token, me, owner),
        Err(AttachError::NoSuchSlot)
    );
    assert_eq!(
        layout.validate_attach(1, 64, &d, d.token, me, owner),
        Err(AttachError::NoSuchSlot)
    );
    assert_eq!(
        check(&d, d.token ^ 1, me, owner),
        Err(AttachError::TokenMismatch)
    );
    let unused = DescriptorRepr { token: 0, ..d };
    assert_eq!(
        check(&unused, 0, me, owner),
        Err(AttachError::TokenMismatch)
    );
    assert_eq!(
        check(
            &d,
            d.token,
            me,
            Gid {
                gid: 11,
                gid_ext: 13
            }
        ),
        Err(AttachError::OwnerMismatch)
    );
    assert_eq!(
        check(&d, d.token, me, Gid::ZERO),
        Err(AttachError::OwnerMismatch)
    );
    assert_eq!(
        check(
            &d,
            d.token,
            Gid {
                gid: 21,
                gid_ext: 0
            },
            owner
        ),
        Err(AttachError::NotAllowed)
    );
    let out_of_area = [
        DescriptorRepr { dmb_len: 0, ..d },
        DescriptorRepr {
            dmb_offset: payload.start as u64 - 1,
            ..d
        },
        DescriptorRepr {
            dmb_offset: payload.end as u64 - 100,
            dmb_len: 101,
            ..d
        },
        DescriptorRepr {
            dmb_offset: u64::MAX - 10,
            dmb_len: 100,
            ..d
        },
        DescriptorRepr {
            dmb_offset: layout.area_payload(2).unwrap().start as u64,
            ..d
        },
        DescriptorRepr {
            dmb_offset: layout.descriptor_table(1).unwrap().start as u64,
            ..d
        },
    ];
    for desc in out_of_area {
        assert_eq!(
            check(&desc, d.token, me, owner),
            Err(AttachError::OutOfArea),
            "{desc:?}"
        );
    }
    // Exactly filling the payload is fine.
    let full = DescriptorRepr {
        dmb_offset: payload.start as u64,
        dmb_len: payload.len() as u64,
        ..d
    };
    assert_eq!(check(&full, d.token, me, owner), Ok(payload));
}

#[test]
fn display_messages_are_specific() {
    let err = Layout::compute(LayoutParams {
        region_size: 64 << 10,
        ..small_params()
    })
    .unwrap_err();
    let text = std::format!("{err}");
    assert!(text.contains("131072"), "{text}");
    let text = std::format!("{}", HeaderError::Inconsistent { field: "AREA_SIZE" });
    assert!(text.contains("AREA_SIZE"), "{text}");
    assert_eq!(
        std::format!("{}", Gid { gid: 1, gid_ext: 2 }),
        "0000000000000001:0000000000000002"
    );
}

proptest! {
    #[test]
    fn header_validation_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000),
                                      region_len in any::<usize>()) {
        if let Ok(header) = Header::new_checked(&bytes[..]) {
            if let Ok(layout) = Layout::from_header(&header, region_len) {
                prop_assert_eq!(layout.region_size(), region_len);
                assert_layout_invariants(&layout);
            }
        }
    }

    #[test]
    fn patched_header_validation_never_panics(
        fields in proptest::collection::vec((0usize..header::FIELDS_END, any::<u64>()), 0..6),
        log2 in 0u32..45,
    ) {
        // Start from a valid header and overwrite random 8-byte windows, keeping the
        // magic and version so validation reaches the layout checks.
        let mut page = small_header_page();
        for (offset, value) in fields {
            let offset = offset.max(header::HEADER_SIZE.start);
            let end = (offset + 8).min(HEADER_SIZE);
            page[offset..end].copy_from_slice(&value.to_le_bytes()[..end - offset]);
        }
        let header = Header::new_checked(&page[..]).unwrap();
        let region_len = 1usize << log2;
        if let Ok(layout) = Layout::from_header(&header, region_len) {
            assert_layout_invariants(&layout);
        }
    }

    #[test]
    fn compute_never_panics(region_size in any::<usize>(), max_peers in any::<u32>(),
                            slots in any::<u32>()) {
        let params = LayoutParams { region_size, max_peers, slots_per_peer: slots };
        if let Ok(layout) = Layout::compute(params) {
            assert_layout_invariants(&layout);
        }
    }

    #[test]
    fn compute_valid_ranges(log2 in 12u32..41, peers in 1u32..=MAX_PEERS, slot_words in 1u32..=64) {
        let params = LayoutParams { region_size: 1 << log2, max_peers: peers, slots_per_peer: slot_words * 64 };
        match Layout::compute(params) {
            Ok(layout) => assert_layout_invariants(&layout),
            Err(LayoutError::TooSmall { minimum, .. }) => prop_assert!(minimum > 1 << log2),
            Err(err) => prop_assert!(false, "unexpected {}", err),
        }
    }

    #[test]
    fn entries_and_descriptors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let layout = Layout::compute(small_params()).unwrap();
        if let Some(entry) = PeerEntry::new_checked(&bytes[..], &layout) {
            let _ = entry.parse();
            let _ = entry.bitmap_word(0, &layout);
        }
        if let Some(desc) = Descriptor::new_checked(&bytes[..]) {
            if let Some(repr) = desc.parse() {
                if let Ok(range) = layout.validate_attach(1, 0, &repr, repr.token, Gid::ZERO, repr.owner_gid) {
                    prop_assert!(range.start >= layout.area_payload(1).unwrap().start);
                    prop_assert!(range.end <= layout.area_payload(1).unwrap().end);
                }
            }
        }
    }
}
