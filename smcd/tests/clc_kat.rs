//! Known-answer tests for every CLC message kind, bytes written by hand from
//! protocol-reference §2.1–§2.4: parse to the expected `Repr`, then re-emit byte-exact
//! into a buffer pre-filled with a poison byte.

use smcd::ism::Gid;
use smcd::wire::clc::{
    frame_len, AcceptConfirmKind, AcceptConfirmRepr, AcceptConfirmV2, ClcMessage, DeclineCode,
    DeclineRepr, Eid, Eyecatcher, FirstContactExt, GidChid, IpPrefixArea, Ipv6Prefix, MessageType,
    ProposalDevice, ProposalRepr, ProposalV2, SmcType, SmcdV2Ext,
};

const POISON: u8 = 0xa5;

/// Joins hand-written field byte strings into one message.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// The UEID used in the tests, blank padded to 32 bytes.
const UEID_BYTES: &[u8; 32] = b"SMCD-TEST.1                     ";
/// A host name, blank padded to 32 bytes.
const HOST_BYTES: &[u8; 32] = b"smcd-server                     ";

/// Parses `bytes`, compares with `expected`, re-emits into a poisoned buffer and compares
/// byte for byte; also checks `frame_len` and `buffer_len`.
fn check_kat(bytes: &[u8], expected: ClcMessage) {
    let parsed = ClcMessage::parse(bytes).expect("KAT must parse");
    assert_eq!(parsed, expected);
    assert_eq!(parsed.buffer_len(), bytes.len());
    let header: [u8; 8] = bytes[..8].try_into().unwrap();
    assert_eq!(frame_len(&header), Ok(bytes.len()));

    let mut buf = [POISON; 700];
    let n = expected.emit(&mut buf).expect("emit");
    assert_eq!(n, bytes.len());
    assert_eq!(&buf[..n], bytes, "emitted bytes differ");
    assert!(
        buf[n..].iter().all(|&b| b == POISON),
        "emit wrote past the message"
    );

    // An exact-size poisoned buffer works too.
    let mut exact = vec![POISON; n];
    assert_eq!(expected.emit(&mut exact), Ok(n));
    assert_eq!(exact, bytes);
}

fn ueid() -> Eid {
    Eid::ueid("SMCD-TEST.1").unwrap()
}

// ---------------------------------------------------------------- Proposal

/// SMCv1-only Proposal as an older (v1) Linux sends it: SMC-D v1, IPv4 subnet.
fn proposal_v1_bytes() -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9], // eyecatcher "SMCR"
        &[0x01],                   // type: Proposal
        &[0x00, 0x5C],             // length 92
        &[0x11],                   // version 1, typev2 0, typev1 D
        &[0; 8],                   // peer id
        &[0; 16],                  // RoCE GID
        &[0; 6],                   // RoCE MAC
        &[0x00, 0x28],             // iparea_offset 40
        // SMC-D area (40..80)
        &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08], // ISM GID
        &[0x00, 0x07],                                     // ISM CHID
        &[0x00, 0x00],                                     // v2_ext_offset: none
        &[0; 3],                                           // vendor OUI
        &[0; 5],                                           // vendor options
        &[0; 20],                                          // reserved
        // IP prefix area (80..88)
        &[10, 0, 2, 0],            // IPv4 subnet 10.0.2.0
        &[24],                     // prefix length
        &[0, 0],                   // reserved
        &[0],                      // IPv6 prefix count
        &[0xE2, 0xD4, 0xC3, 0xD9], // trailer
    ])
}

fn proposal_v1_repr() -> ProposalRepr {
    ProposalRepr {
        eyecatcher: Eyecatcher::Smcr,
        version: 1,
        typev1: SmcType::D,
        typev2: SmcType::R,
        peer_id: [0; 8],
        roce_gid: [0; 16],
        roce_mac: [0; 6],
        ism_gid: 0x0102_0304_0506_0708,
        ism_chid: 7,
        ip_prefix: Some(IpPrefixArea {
            ipv4_subnet: [10, 0, 2, 0],
            ipv4_prefix_len: 24,
            ipv6_prefixes: Default::default(),
        }),
        v2: None,
    }
}

#[test]
fn proposal_v1_only() {
    let bytes = proposal_v1_bytes();
    assert_eq!(bytes.len(), 92);
    check_kat(&bytes, ClcMessage::Proposal(proposal_v1_repr()));
}

/// SMC-Dv2 only, one UEID, one emulated (loopback) device with a 128-bit GID:
/// 40 + 40 + (40+32) + (48+20) + 4 = 224 bytes (§2.2 example).
fn proposal_v2_only_bytes() -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9], // eyecatcher "SMCR"
        &[0x01],                   // type: Proposal
        &[0x00, 0xE0],             // length 224
        &[0x26],                   // version 2, typev2 D, typev1 N
        &[0; 8],                   // peer id
        &[0; 16],                  // RoCE GID
        &[0; 6],                   // RoCE MAC
        &[0x00, 0x00],             // iparea_offset 0 (no IP area)
        // SMC-D area (40..80)
        &[0; 8],       // ISM GID: no v1 device
        &[0x00, 0x00], // ISM CHID
        &[0x00, 0x1C], // v2_ext_offset 28 -> 80
        &[0; 3],       // vendor OUI
        &[0; 5],       // vendor options
        &[0; 20],      // reserved
        // v2 extension (80..152)
        &[0x01],       // EID count
        &[0x02],       // ISM GID count (one 128-bit device = 2 entries)
        &[0x00],       // reserved
        &[0x10],       // release 1, SEID flag 0
        &[0, 0],       // reserved
        &[0x00, 0x40], // smcd_v2_ext_offset 64 -> 88+64 = 152
        &[0; 16],      // RoCEv2 GID
        &[0],          // max_conns
        &[0],          // max_links
        &[0x00, 0x01], // feature mask: emulated ISM
        &[0; 12],      // reserved
        UEID_BYTES,    // UEID 1
        // SMC-Dv2 extension (152..220)
        &[0; 32],                                          // SEID (none)
        &[0; 16],                                          // reserved
        &[0xAA, 0xBB, 0xCC, 0xDD, 0x00, 0x11, 0x22, 0x33], // GID (first half)
        &[0xFF, 0xFF],                                     // CHID loopback
        &[0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB], // GID (second half)
        &[0xFF, 0xFF],                                     // CHID again
        &[0xE2, 0xD4, 0xC3, 0xD9],                         // trailer
    ])
}

fn loopback_gid() -> Gid {
    Gid::virtual_(0xAABB_CCDD_0011_2233, 0x4455_6677_8899_AABB)
}

fn proposal_v2_only_repr() -> ProposalRepr {
    let mut smcd = SmcdV2Ext::default();
    assert!(smcd.push_device(loopback_gid(), 0xFFFF));
    let mut ueids = heapless::Vec::new();
    ueids.push(ueid()).unwrap();
    ProposalRepr {
        eyecatcher: Eyecatcher::Smcr,
        version: 2,
        typev1: SmcType::N,
        typev2: SmcType::D,
        peer_id: [0; 8],
        roce_gid: [0; 16],
        roce_mac: [0; 6],
        ism_gid: 0,
        ism_chid: 0,
        ip_prefix: None,
        v2: Some(ProposalV2 {
            release: 1,
            seid_enabled: false,
            roce_v2_gid: [0; 16],
            max_conns: 0,
            max_links: 0,
            feature_mask: 1,
            ueids,
            smcd: Some(smcd),
        }),
    }
}

#[test]
fn proposal_v2_only_one_emulated_device() {
    let bytes = proposal_v2_only_bytes();
    assert_eq!(bytes.len(), 224);
    let repr = proposal_v2_only_repr();
    check_kat(&bytes, ClcMessage::Proposal(repr.clone()));
    let devices: Vec<_> = repr.v2.unwrap().smcd.unwrap().devices().collect();
    assert_eq!(
        devices,
        vec![ProposalDevice {
            gid: loopback_gid(),
            chid: 0xFFFF
        }]
    );
}

/// v1 and v2 offered (Linux style, version 2): native device (CHID 0x42) in the SMC-D
/// area and the list, two IPv6 prefixes, one UEID, plus the loopback device.
/// 80 + (8+34) + (40+32) + (48+30) + 4 = 276 bytes.
fn proposal_v1_v2_bytes() -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9], // eyecatcher "SMCR"
        &[0x01],                   // type: Proposal
        &[0x01, 0x14],             // length 276
        &[0x25],                   // version 2, typev2 D, typev1 D
        &[0; 8],                   // peer id
        &[0; 16],                  // RoCE GID
        &[0; 6],                   // RoCE MAC
        &[0x00, 0x28],             // iparea_offset 40 -> 80
        // SMC-D area (40..80)
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88], // ISM GID (native)
        &[0x00, 0x42],                                     // ISM CHID
        &[0x00, 0x46], // v2_ext_offset 70 = 28 + 8 + 2*17 -> 122
        &[0; 3],       // vendor OUI
        &[0; 5],       // vendor options
        &[0; 20],      // reserved
        // IP prefix area (80..122)
        &[0, 0, 0, 0], // IPv4 subnet: 0 when IPv6 prefixes are sent
        &[0],          // IPv4 prefix length
        &[0, 0],       // reserved
        &[2],          // IPv6 prefix count
        &[0xFD, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // fd00:0:0:1::
        &[64],         // /64
        &[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // 2001:db8::
        &[48],         // /48
        // v2 extension (122..194)
        &[0x01],       // EID count
        &[0x03],       // ISM GID count
        &[0x00],       // reserved
        &[0x10],       // release 1, SEID flag 0
        &[0, 0],       // reserved
        &[0x00, 0x40], // smcd_v2_ext_offset 64 -> 130+64 = 194
        &[0; 16],      // RoCEv2 GID
        &[0],          // max_conns
        &[0],          // max_links
        &[0x00, 0x01], // feature mask
        &[0; 12],      // reserved
        UEID_BYTES,    // UEID 1
        // SMC-Dv2 extension (194..272)
        &[0; 32],                                          // SEID
        &[0; 16],                                          // reserved
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88], // native GID
        &[0x00, 0x42],                                     // native CHID
        &[0xAA, 0xBB, 0xCC, 0xDD, 0x00, 0x11, 0x22, 0x33], // loopback GID
        &[0xFF, 0xFF],                                     // CHID
        &[0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB], // loopback gid_ext
        &[0xFF, 0xFF],                                     // CHID
        &[0xE2, 0xD4, 0xC3, 0xD9],                         // trailer
    ])
}

fn proposal_v1_v2_repr() -> ProposalRepr {
    let mut repr = proposal_v2_only_repr();
    repr.typev1 = SmcType::D;
    repr.ism_gid = 0x1122_3344_5566_7788;
    repr.ism_chid = 0x42;
    let mut ipv6 = heapless::Vec::new();
    let mut p1 = [0u8; 16];
    p1[0] = 0xFD;
    p1[7] = 1;
    ipv6.push(Ipv6Prefix {
        prefix: p1,
        prefix_len: 64,
    })
    .unwrap();
    let mut p2 = [0u8; 16];
    p2[..4].copy_from_slice(&[0x20, 0x01, 0x0D, 0xB8]);
    ipv6.push(Ipv6Prefix {
        prefix: p2,
        prefix_len: 48,
    })
    .unwrap();
    repr.ip_prefix = Some(IpPrefixArea {
        ipv4_subnet: [0; 4],
        ipv4_prefix_len: 0,
        ipv6_prefixes: ipv6,
    });
    let mut smcd = SmcdV2Ext::default();
    assert!(smcd.push_device(Gid::native(0x1122_3344_5566_7788), 0x42));
    assert!(smcd.push_device(loopback_gid(), 0xFFFF));
    repr.v2.as_mut().unwrap().smcd = Some(smcd);
    repr
}

#[test]
fn proposal_v1_and_v2_with_ipv6_prefixes() {
    let bytes = proposal_v1_v2_bytes();
    assert_eq!(bytes.len(), 276);
    let repr = proposal_v1_v2_repr();
    check_kat(&bytes, ClcMessage::Proposal(repr.clone()));
    let devices: Vec<_> = repr.v2.unwrap().smcd.unwrap().devices().collect();
    assert_eq!(
        devices,
        vec![
            ProposalDevice {
                gid: Gid::native(0x1122_3344_5566_7788),
                chid: 0x42
            },
            ProposalDevice {
                gid: loopback_gid(),
                chid: 0xFFFF
            },
        ]
    );
}

/// Linux-style "v1 only" (version 2 header, typev2 N): 80 + 8 + 4 = 92 bytes.
#[test]
fn proposal_version2_header_v1_offer() {
    let bytes = cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9],       // eyecatcher
        &[0x01],                         // Proposal
        &[0x00, 0x5C],                   // length 92
        &[0x29],                         // version 2, typev2 N, typev1 D
        &[0; 8],                         // peer id
        &[0; 16],                        // RoCE GID
        &[0; 6],                         // RoCE MAC
        &[0x00, 0x28],                   // iparea_offset 40
        &[0, 0, 0, 0, 0, 0, 0x12, 0x34], // ISM GID
        &[0x00, 0x01],                   // ISM CHID
        &[0x00, 0x00],                   // v2_ext_offset 0: no v2 extension
        &[0; 28],                        // vendor + reserved
        &[192, 168, 1, 0],               // IPv4 subnet
        &[24],                           // prefix length
        &[0, 0],                         // reserved
        &[0],                            // IPv6 count
        &[0xE2, 0xD4, 0xC3, 0xD9],       // trailer
    ]);
    let repr = ProposalRepr {
        eyecatcher: Eyecatcher::Smcr,
        version: 2,
        typev1: SmcType::D,
        typev2: SmcType::N,
        peer_id: [0; 8],
        roce_gid: [0; 16],
        roce_mac: [0; 6],
        ism_gid: 0x1234,
        ism_chid: 1,
        ip_prefix: Some(IpPrefixArea {
            ipv4_subnet: [192, 168, 1, 0],
            ipv4_prefix_len: 24,
            ipv6_prefixes: Default::default(),
        }),
        v2: None,
    };
    check_kat(&bytes, ClcMessage::Proposal(repr));
}

// ---------------------------------------------------------------- Accept / Confirm

fn ac_v1_bytes(kind: u8) -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xC4],                         // eyecatcher "SMCD"
        &[kind],                                           // type
        &[0x00, 0x30],                                     // length 48
        &[0x19],                                           // version 1, first contact, typev1 D
        &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08], // sender GID
        &[0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44], // DMB token
        &[0x00],                                           // DMBE index
        &[0x10],                   // DMBE size 1 (32 KiB), reserved nibble 0
        &[0, 0],                   // reserved
        &[0x01, 0x00, 0x00, 0x00], // link id
        &[0; 12],                  // reserved
        &[0xE2, 0xD4, 0xC3, 0xC4], // trailer
    ])
}

fn ac_v1_repr(kind: AcceptConfirmKind) -> AcceptConfirmRepr {
    AcceptConfirmRepr {
        kind,
        eyecatcher: Eyecatcher::Smcd,
        version: 1,
        first_contact: true,
        gid: 0x0102_0304_0506_0708,
        token: 0x1111_2222_3333_4444,
        dmbe_index: 0,
        dmbe_size: 1,
        link_id: [1, 0, 0, 0],
        v2: None,
    }
}

#[test]
fn accept_and_confirm_v1() {
    for (code, kind) in [
        (2u8, AcceptConfirmKind::Accept),
        (3, AcceptConfirmKind::Confirm),
    ] {
        let bytes = ac_v1_bytes(code);
        assert_eq!(bytes.len(), 48);
        check_kat(&bytes, ClcMessage::AcceptConfirm(ac_v1_repr(kind)));
    }
}

/// v2 prefix (bytes 8..74) shared by the v2 KATs.
fn ac_v2_body() -> Vec<u8> {
    cat(&[
        &[0xAA, 0xBB, 0xCC, 0xDD, 0x00, 0x11, 0x22, 0x33], // sender GID
        &[0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x00, 0x00, 0x01], // DMB token
        &[0x00],                                           // DMBE index
        &[0x60],                                           // DMBE size 6 (1 MiB)
        &[0, 0],                                           // reserved
        &[0x00, 0x00, 0x00, 0x2A],                         // link id
        &[0xFF, 0xFF],                                     // CHID (loopback)
        UEID_BYTES,                                        // EID
        &[0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB], // gid_ext
    ])
}

fn ac_v2_repr(kind: AcceptConfirmKind, fce: Option<FirstContactExt>) -> AcceptConfirmRepr {
    AcceptConfirmRepr {
        kind,
        eyecatcher: Eyecatcher::Smcd,
        version: 2,
        first_contact: fce.is_some(),
        gid: 0xAABB_CCDD_0011_2233,
        token: 0xDEAD_BEEF_0000_0001,
        dmbe_index: 0,
        dmbe_size: 6,
        link_id: [0, 0, 0, 0x2A],
        v2: Some(AcceptConfirmV2 {
            chid: 0xFFFF,
            eid: ueid(),
            gid_ext: 0x4455_6677_8899_AABB,
            first_contact_ext: fce,
        }),
    }
}

#[test]
fn accept_and_confirm_v2_first_contact_release0() {
    for (code, kind) in [
        (2u8, AcceptConfirmKind::Accept),
        (3, AcceptConfirmKind::Confirm),
    ] {
        let bytes = cat(&[
            &[0xE2, 0xD4, 0xC3, 0xC4], // "SMCD"
            &[code],                   // type
            &[0x00, 0x72],             // length 114
            &[0x29],                   // version 2, first contact, typev1 D
            &ac_v2_body(),
            // FCE, release 0 (36 bytes)
            &[0x00],                   // v2_direct 0, reserved
            &[0x20],                   // OS Linux (2), release 0
            &[0, 0],                   // reserved
            HOST_BYTES,                // host name
            &[0xE2, 0xD4, 0xC3, 0xC4], // trailer
        ]);
        assert_eq!(bytes.len(), 114);
        let fce = FirstContactExt {
            os_type: 2,
            release: 0,
            hostname: *HOST_BYTES,
            feature_mask: 0,
            vendor_options: 0,
        };
        assert_eq!(
            FirstContactExt::hostname_from_str("smcd-server"),
            *HOST_BYTES
        );
        check_kat(
            &bytes,
            ClcMessage::AcceptConfirm(ac_v2_repr(kind, Some(fce))),
        );
    }
}

#[test]
fn accept_and_confirm_v2_first_contact_release1() {
    for (code, kind) in [
        (2u8, AcceptConfirmKind::Accept),
        (3, AcceptConfirmKind::Confirm),
    ] {
        let bytes = cat(&[
            &[0xE2, 0xD4, 0xC3, 0xC4], // "SMCD"
            &[code],                   // type
            &[0x00, 0x82],             // length 130
            &[0x29],                   // version 2, first contact, typev1 D
            &ac_v2_body(),
            // FCE, release 1 (52 bytes)
            &[0x00],                   // v2_direct 0, reserved
            &[0x21],                   // OS Linux (2), release 1
            &[0, 0],                   // reserved
            HOST_BYTES,                // host name
            &[0, 0],                   // reserved (SMC-R max_conns/max_links)
            &[0x00, 0x01],             // feature mask
            &[0x00, 0x00, 0x00, 0x00], // vendor options
            &[0; 8],                   // reserved
            &[0xE2, 0xD4, 0xC3, 0xC4], // trailer
        ]);
        assert_eq!(bytes.len(), 130);
        let fce = FirstContactExt {
            os_type: 2,
            release: 1,
            hostname: *HOST_BYTES,
            feature_mask: 1,
            vendor_options: 0,
        };
        check_kat(
            &bytes,
            ClcMessage::AcceptConfirm(ac_v2_repr(kind, Some(fce))),
        );
    }
}

#[test]
fn accept_and_confirm_v2_not_first_contact() {
    for (code, kind) in [
        (2u8, AcceptConfirmKind::Accept),
        (3, AcceptConfirmKind::Confirm),
    ] {
        let bytes = cat(&[
            &[0xE2, 0xD4, 0xC3, 0xC4], // "SMCD"
            &[code],                   // type
            &[0x00, 0x4E],             // length 78
            &[0x21],                   // version 2, no first contact, typev1 D
            &ac_v2_body(),
            &[0xE2, 0xD4, 0xC3, 0xC4], // trailer
        ]);
        assert_eq!(bytes.len(), 78);
        check_kat(&bytes, ClcMessage::AcceptConfirm(ac_v2_repr(kind, None)));
    }
}

// ---------------------------------------------------------------- Decline

fn decline_v1_bytes() -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9], // "SMCR"
        &[0x04],                   // type Decline
        &[0x00, 0x1C],             // length 28
        &[0x10],                   // version 1, no out-of-sync, typev1 R
        &[0; 8],                   // peer id
        &[0x03, 0x03, 0x00, 0x00], // NOSMCDEV
        &[0x00],                   // OS type 0 (v1)
        &[0, 0, 0],                // reserved
        &[0xE2, 0xD4, 0xC3, 0xD9], // trailer
    ])
}

#[test]
fn decline_v1() {
    let bytes = decline_v1_bytes();
    assert_eq!(bytes.len(), 28);
    let repr = DeclineRepr::linux(1, DeclineCode::NOSMCDEV);
    check_kat(&bytes, ClcMessage::Decline(repr));
}

fn decline_v2_bytes() -> Vec<u8> {
    cat(&[
        &[0xE2, 0xD4, 0xC3, 0xD9], // "SMCR"
        &[0x04],                   // type Decline
        &[0x00, 0x2C],             // length 44
        &[0x28],                   // version 2, out-of-sync, typev1 R
        &[0; 8],                   // peer id
        &[0x04, 0x00, 0x00, 0x00], // SYNCERR
        &[0x20],                   // OS type Linux
        &[0, 0, 0],                // reserved
        &[0; 16],                  // four extra diagnosis codes
        &[0xE2, 0xD4, 0xC3, 0xD9], // trailer
    ])
}

#[test]
fn decline_v2_out_of_sync() {
    let bytes = decline_v2_bytes();
    assert_eq!(bytes.len(), 44);
    let repr = DeclineRepr::linux(2, DeclineCode::SYNCERR);
    assert!(repr.out_of_sync);
    check_kat(&bytes, ClcMessage::Decline(repr));
}

#[test]
fn decline_v2_extra_codes_and_smcd_eyecatcher() {
    let bytes = cat(&[
        &[0xE2, 0xD4, 0xC3, 0xC4], // "SMCD"
        &[0x04],                   // Decline
        &[0x00, 0x2C],             // 44
        &[0x21],                   // version 2, typev1 D
        &[1, 2, 3, 4, 5, 6, 7, 8], // peer id
        &[0x03, 0x07, 0x00, 0x00], // DIFFPREFIX
        &[0x10],                   // OS z/OS
        &[0, 0, 0],                // reserved
        &[0x03, 0x03, 0x00, 0x08], // extra 1: NOUEID
        &[0x03, 0x03, 0x00, 0x07], // extra 2: NOSMCD2DEV
        &[0x12, 0x34, 0x56, 0x78], // extra 3: unknown
        &[0, 0, 0, 0],             // extra 4
        &[0xE2, 0xD4, 0xC3, 0xC4], // trailer
    ]);
    let repr = DeclineRepr {
        eyecatcher: Eyecatcher::Smcd,
        version: 2,
        out_of_sync: false,
        smc_type: SmcType::D,
        peer_id: [1, 2, 3, 4, 5, 6, 7, 8],
        code: DeclineCode::DIFFPREFIX,
        os_type: 1,
        extra_codes: [
            DeclineCode::NOUEID,
            DeclineCode::NOSMCD2DEV,
            DeclineCode(0x1234_5678),
            DeclineCode(0),
        ],
    };
    check_kat(&bytes, ClcMessage::Decline(repr));
}

// ---------------------------------------------------------------- misc

#[test]
fn message_types() {
    assert_eq!(
        ClcMessage::parse(&proposal_v1_bytes())
            .unwrap()
            .message_type(),
        MessageType::Proposal
    );
    assert_eq!(
        ClcMessage::parse(&ac_v1_bytes(2)).unwrap().message_type(),
        MessageType::Accept
    );
    assert_eq!(
        ClcMessage::parse(&ac_v1_bytes(3)).unwrap().message_type(),
        MessageType::Confirm
    );
    assert_eq!(
        ClcMessage::parse(&decline_v1_bytes())
            .unwrap()
            .message_type(),
        MessageType::Decline
    );
}

#[test]
fn parse_ignores_bytes_after_the_message() {
    let mut bytes = decline_v2_bytes();
    bytes.extend_from_slice(&[0x77; 10]);
    assert!(matches!(
        ClcMessage::parse(&bytes),
        Ok(ClcMessage::Decline(_))
    ));
}

#[test]
fn gid_chid_devices_follow_linux_server_rule() {
    let mut ext = SmcdV2Ext::default();
    // native, virtual pair, virtual with a different successor, lone virtual at the end
    for (gid, chid) in [
        (1, 0x10),
        (2, 0xFFFF),
        (3, 0xFFFF),
        (4, 0xFF01),
        (5, 0x20),
        (6, 0xFF02),
    ] {
        ext.gid_chids.push(GidChid { gid, chid }).unwrap();
    }
    let devices: Vec<_> = ext.devices().collect();
    assert_eq!(
        devices,
        vec![
            ProposalDevice {
                gid: Gid::native(1),
                chid: 0x10
            },
            ProposalDevice {
                gid: Gid::virtual_(2, 3),
                chid: 0xFFFF
            },
            ProposalDevice {
                gid: Gid::native(5),
                chid: 0x20
            },
        ]
    );
    // push_device refuses what does not fit and leaves the list unchanged.
    let mut full = SmcdV2Ext::default();
    for i in 0..7 {
        assert!(full.push_device(Gid::native(i), 1));
    }
    assert!(!full.push_device(loopback_gid(), 0xFFFF));
    assert_eq!(full.gid_chids.len(), 7);
    assert!(full.push_device(Gid::native(9), 2));
    assert!(!full.push_device(Gid::native(10), 3));
}

#[test]
fn ueid_rules() {
    assert_eq!(Eid::ueid("SMCD-TEST.1").unwrap().0, *UEID_BYTES);
    assert!(Eid::ueid("A").is_ok());
    assert!(Eid::ueid("0ABC-.9").is_ok());
    assert!(Eid::ueid(&"X".repeat(32)).is_ok());
    use smcd::wire::clc::UeidError;
    assert_eq!(Eid::ueid(""), Err(UeidError::Empty));
    assert_eq!(Eid::ueid("   "), Err(UeidError::Empty));
    assert_eq!(Eid::ueid(&"X".repeat(33)), Err(UeidError::TooLong(33)));
    assert_eq!(Eid::ueid(".ABC"), Err(UeidError::BadFirstChar(b'.')));
    assert_eq!(Eid::ueid("-ABC"), Err(UeidError::BadFirstChar(b'-')));
    assert_eq!(Eid::ueid("abc"), Err(UeidError::BadFirstChar(b'a')));
    assert_eq!(
        Eid::ueid("ABc"),
        Err(UeidError::BadChar {
            index: 2,
            byte: b'c'
        })
    );
    assert_eq!(
        Eid::ueid("AB C"),
        Err(UeidError::BadChar {
            index: 2,
            byte: b' '
        })
    );
    assert_eq!(
        Eid::ueid("AB_C"),
        Err(UeidError::BadChar {
            index: 2,
            byte: b'_'
        })
    );
    assert!(Eid::ZERO.check_ueid().is_err());
}
