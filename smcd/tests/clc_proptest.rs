//! Property tests: any consistent CLC `Repr` emits (every byte written, Linux's length
//! formula) and parses back to itself; the largest Proposal is exactly 652 bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use smcd::wire::clc::{
    frame_len, AcceptConfirmKind, AcceptConfirmRepr, AcceptConfirmV2, ClcMessage, DeclineCode,
    DeclineRepr, Eid, Eyecatcher, FirstContactExt, GidChid, IpPrefixArea, Ipv6Prefix, ProposalRepr,
    ProposalV2, SmcType, SmcdV2Ext, MAX_MESSAGE_LEN,
};

fn eyecatcher() -> impl Strategy<Value = Eyecatcher> {
    prop_oneof![Just(Eyecatcher::Smcr), Just(Eyecatcher::Smcd)]
}

fn smc_type() -> impl Strategy<Value = SmcType> {
    prop_oneof![
        Just(SmcType::R),
        Just(SmcType::D),
        Just(SmcType::N),
        Just(SmcType::B)
    ]
}

fn eid() -> impl Strategy<Value = Eid> {
    any::<[u8; 32]>().prop_map(Eid)
}

fn ip_area() -> impl Strategy<Value = IpPrefixArea> {
    (
        any::<[u8; 4]>(),
        any::<u8>(),
        vec((any::<[u8; 16]>(), any::<u8>()), 0..=8),
    )
        .prop_map(|(ipv4_subnet, ipv4_prefix_len, v6)| IpPrefixArea {
            ipv4_subnet,
            ipv4_prefix_len,
            ipv6_prefixes: v6
                .into_iter()
                .map(|(prefix, prefix_len)| Ipv6Prefix { prefix, prefix_len })
                .collect(),
        })
}

fn proposal() -> impl Strategy<Value = ProposalRepr> {
    (
        eyecatcher(),
        1u8..=15,
        smc_type(),
        smc_type(),
        any::<([u8; 8], [u8; 16], [u8; 6])>(),
        any::<(u64, u16)>(),
        ip_area(),
        (
            0u8..=15,
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<(u8, u8, u16)>(),
        ),
        vec(eid(), 0..=8),
        (eid(), vec(any::<(u64, u16)>(), 0..=8)),
    )
        .prop_map(
            |(ec, version, mut typev1, typev2, smcr, smcd, ip, v2f, ueids, smcd2)| {
                if version == 1 && typev1 == SmcType::N {
                    typev1 = SmcType::D;
                }
                let (ism_gid, ism_chid) = if version == 1 && !typev1.offers_d() {
                    (0, 0)
                } else {
                    smcd
                };
                let v2 = (version >= 2 && typev2.offers_any()).then(|| ProposalV2 {
                    release: v2f.0,
                    seid_enabled: v2f.1,
                    roce_v2_gid: v2f.2,
                    max_conns: v2f.3 .0,
                    max_links: v2f.3 .1,
                    feature_mask: v2f.3 .2,
                    ueids: ueids.into_iter().collect(),
                    smcd: typev2.offers_d().then(|| SmcdV2Ext {
                        seid: smcd2.0,
                        gid_chids: smcd2
                            .1
                            .iter()
                            .map(|&(gid, chid)| GidChid { gid, chid })
                            .collect(),
                    }),
                });
                ProposalRepr {
                    eyecatcher: ec,
                    version,
                    typev1,
                    typev2,
                    peer_id: smcr.0,
                    roce_gid: smcr.1,
                    roce_mac: smcr.2,
                    ism_gid,
                    ism_chid,
                    ip_prefix: typev1.offers_any().then_some(ip),
                    v2,
                }
            },
        )
}

fn accept_confirm() -> impl Strategy<Value = AcceptConfirmRepr> {
    (
        (eyecatcher(), any::<bool>(), 1u8..=15, any::<bool>()),
        any::<(u64, u64, u8)>(),
        (0u8..=15, any::<[u8; 4]>()),
        (any::<u16>(), eid(), any::<u64>()),
        (
            0u8..=15,
            0u8..=15,
            any::<[u8; 32]>(),
            any::<u16>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |((ec, confirm, version, first_contact), ids, size, v2f, fce)| AcceptConfirmRepr {
                kind: if confirm {
                    AcceptConfirmKind::Confirm
                } else {
                    AcceptConfirmKind::Accept
                },
                eyecatcher: ec,
                version,
                first_contact,
                gid: ids.0,
                token: ids.1,
                dmbe_index: ids.2,
                dmbe_size: size.0,
                link_id: size.1,
                v2: (version >= 2).then(|| AcceptConfirmV2 {
                    chid: v2f.0,
                    eid: v2f.1,
                    gid_ext: v2f.2,
                    first_contact_ext: first_contact.then_some(FirstContactExt {
                        os_type: fce.0,
                        release: fce.1,
                        hostname: fce.2,
                        feature_mask: if fce.1 >= 1 { fce.3 } else { 0 },
                        vendor_options: if fce.1 >= 1 { fce.4 } else { 0 },
                    }),
                }),
            },
        )
}

fn decline() -> impl Strategy<Value = DeclineRepr> {
    (
        eyecatcher(),
        1u8..=15,
        any::<bool>(),
        prop_oneof![Just(SmcType::R), Just(SmcType::D)],
        any::<[u8; 8]>(),
        any::<u32>(),
        0u8..=15,
        any::<[u32; 4]>(),
    )
        .prop_map(
            |(ec, version, out_of_sync, smc_type, peer_id, code, os_type, extra)| DeclineRepr {
                eyecatcher: ec,
                version,
                out_of_sync,
                smc_type,
                peer_id,
                code: DeclineCode(code),
                os_type,
                extra_codes: if version >= 2 {
                    extra.map(DeclineCode)
                } else {
                    [DeclineCode(0); 4]
                },
            },
        )
}

fn check(msg: ClcMessage) {
    let len = msg.buffer_len();
    assert!(len <= MAX_MESSAGE_LEN);
    for poison in [0x00u8, 0xa5, 0xff] {
        let mut buf = vec![poison; len + 8];
        assert_eq!(msg.emit(&mut buf), Ok(len));
        assert!(
            buf[len..].iter().all(|&b| b == poison),
            "emit wrote past its length"
        );
        let header: [u8; 8] = buf[..8].try_into().unwrap();
        assert_eq!(frame_len(&header), Ok(len));
        assert_eq!(ClcMessage::parse(&buf[..len]), Ok(msg.clone()));
        // Emitting never depends on what was in the buffer before.
        let mut other = vec![poison ^ 0x5a; len];
        msg.emit(&mut other).unwrap();
        assert_eq!(&other[..], &buf[..len]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn proposal_roundtrips(p in proposal()) {
        check(ClcMessage::Proposal(p));
    }

    #[test]
    fn accept_confirm_roundtrips(a in accept_confirm()) {
        check(ClcMessage::AcceptConfirm(a));
    }

    #[test]
    fn decline_roundtrips(d in decline()) {
        check(ClcMessage::Decline(d));
    }
}

#[test]
fn largest_proposal_is_652_bytes() {
    let full = ProposalRepr {
        eyecatcher: Eyecatcher::Smcr,
        version: 2,
        typev1: SmcType::D,
        typev2: SmcType::D,
        peer_id: [0; 8],
        roce_gid: [0; 16],
        roce_mac: [0; 6],
        ism_gid: 1,
        ism_chid: 1,
        ip_prefix: Some(IpPrefixArea {
            ipv4_subnet: [0; 4],
            ipv4_prefix_len: 0,
            ipv6_prefixes: (0..8)
                .map(|i| Ipv6Prefix {
                    prefix: [i; 16],
                    prefix_len: 64,
                })
                .collect(),
        }),
        v2: Some(ProposalV2 {
            release: 1,
            seid_enabled: true,
            roce_v2_gid: [0; 16],
            max_conns: 0,
            max_links: 0,
            feature_mask: 1,
            ueids: (0..8).map(|i| Eid([b'A' + i; 32])).collect(),
            smcd: Some(SmcdV2Ext {
                seid: Eid([b'S'; 32]),
                gid_chids: (0..8)
                    .map(|i| GidChid {
                        gid: i,
                        chid: i as u16,
                    })
                    .collect(),
            }),
        }),
    };
    assert_eq!(full.buffer_len(), 652);
    let mut buf = [0u8; 652];
    assert_eq!(full.emit(&mut buf), Ok(652));
    // Offsets at Linux's limits: v2 extension at 52 + 172, SMC-Dv2 extension at +8+288.
    assert_eq!(u16::from_be_bytes([buf[50], buf[51]]), 172);
    assert_eq!(u16::from_be_bytes([buf[224 + 6], buf[224 + 7]]), 288);
    check(ClcMessage::Proposal(full));
}
