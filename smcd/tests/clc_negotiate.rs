//! Negotiation rules (protocol-reference §2.5): client offer, server selection order,
//! EID/release/feature negotiation, first contact, and every decline code path.

use smcd::ism::{Gid, CHID_LOOPBACK};
use smcd::negotiate::{
    build_accept, build_confirm, build_proposal, client_check_accept, client_decline_version,
    server_check_confirm, server_decline_version, server_select, ClientError, DeviceDesc, IpConfig,
    Ipv4Cidr, Ipv6Cidr, LocalConfig, OwnDmb, ProtocolError,
};
use smcd::wire::clc::{
    AcceptConfirmKind, AcceptConfirmRepr, ClcMessage, DeclineCode, DeclineRepr, Eid, GidChid,
    ProposalRepr, SmcType,
};

const LOOPBACK_GID: Gid = Gid::virtual_(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
const PEER_LOOPBACK_GID: Gid = Gid::virtual_(0xAAAA_BBBB_CCCC_DDDD, 0xEEEE_FFFF_0000_1111);

fn loopback(gid: Gid) -> DeviceDesc {
    DeviceDesc {
        gid,
        chid: CHID_LOOPBACK,
        v2: true,
    }
}

fn native(gid: u64, chid: u16, v2: bool) -> DeviceDesc {
    DeviceDesc {
        gid: Gid::native(gid),
        chid,
        v2,
    }
}

fn ueid(s: &str) -> Eid {
    Eid::ueid(s).unwrap()
}

fn config_with_ueid() -> LocalConfig {
    LocalConfig {
        ueids: vec![ueid("SMCD-UEID")],
        ..LocalConfig::default()
    }
}

fn ipv4(addr: [u8; 4], prefix_len: u8) -> IpConfig {
    IpConfig {
        ipv4: Some(Ipv4Cidr { addr, prefix_len }),
        ipv6: vec![],
    }
}

/// Emits and re-parses a Proposal, so every test also exercises the wire format.
fn over_the_wire(p: &ProposalRepr) -> ProposalRepr {
    let mut buf = vec![0u8; p.buffer_len()];
    p.emit(&mut buf).unwrap();
    match ClcMessage::parse(&buf).unwrap() {
        ClcMessage::Proposal(p) => p,
        other => panic!("not a proposal: {other:?}"),
    }
}

fn ac_over_the_wire(a: &AcceptConfirmRepr) -> AcceptConfirmRepr {
    let mut buf = vec![0u8; a.buffer_len()];
    a.emit(&mut buf).unwrap();
    match ClcMessage::parse(&buf).unwrap() {
        ClcMessage::AcceptConfirm(a) => a,
        other => panic!("not an accept/confirm: {other:?}"),
    }
}

fn own(token: u64) -> OwnDmb {
    OwnDmb {
        token,
        dmbe_size: 2,
        link_id: [0, 0, 0, 1],
    }
}

// ------------------------------------------------------------------ client offer

#[test]
fn loopback_only_offers_v2_with_gid_pair() {
    let p = build_proposal(&config_with_ueid(), &[loopback(LOOPBACK_GID)]).unwrap();
    assert_eq!((p.version, p.typev1, p.typev2), (2, SmcType::N, SmcType::D));
    assert_eq!((p.ism_gid, p.ism_chid), (0, 0));
    assert!(p.ip_prefix.is_none());
    let v2 = p.v2.as_ref().unwrap();
    assert_eq!(v2.release, 1);
    assert_eq!(v2.feature_mask, 1);
    assert!(!v2.seid_enabled);
    assert_eq!(v2.ueids.as_slice(), &[ueid("SMCD-UEID")]);
    let list = &v2.smcd.as_ref().unwrap().gid_chids;
    assert_eq!(
        list.as_slice(),
        &[
            GidChid {
                gid: LOOPBACK_GID.gid,
                chid: 0xFFFF
            },
            GidChid {
                gid: LOOPBACK_GID.gid_ext,
                chid: 0xFFFF
            }
        ]
    );
    assert_eq!(p.buffer_len(), 224);
    assert_eq!(over_the_wire(&p), p);
}

#[test]
fn native_device_goes_to_smcd_area_and_loopback_to_list() {
    let config = LocalConfig {
        ip: ipv4([10, 0, 2, 15], 24),
        ..config_with_ueid()
    };
    let devices = [native(0x42, 0x0042, true), loopback(LOOPBACK_GID)];
    let p = build_proposal(&config, &devices).unwrap();
    assert_eq!((p.typev1, p.typev2), (SmcType::D, SmcType::D));
    assert_eq!((p.ism_gid, p.ism_chid), (0x42, 0x42));
    let ip = p.ip_prefix.as_ref().unwrap();
    assert_eq!((ip.ipv4_subnet, ip.ipv4_prefix_len), ([10, 0, 2, 0], 24));
    assert!(ip.ipv6_prefixes.is_empty());
    let list = &p.v2.as_ref().unwrap().smcd.as_ref().unwrap().gid_chids;
    assert_eq!(
        list.len(),
        2,
        "only the loopback pair; the v1 device is in the SMC-D area"
    );
    assert!(list.iter().all(|e| e.chid == 0xFFFF));
    assert_eq!(over_the_wire(&p), p);
}

#[test]
fn single_native_device_offers_v1_and_v2_with_empty_list() {
    let config = LocalConfig {
        ip: ipv4([192, 168, 0, 1], 16),
        ..config_with_ueid()
    };
    let p = build_proposal(&config, &[native(7, 3, true)]).unwrap();
    assert_eq!((p.typev1, p.typev2), (SmcType::D, SmcType::D));
    assert!(p
        .v2
        .as_ref()
        .unwrap()
        .smcd
        .as_ref()
        .unwrap()
        .gid_chids
        .is_empty());
    assert_eq!(over_the_wire(&p), p);
}

#[test]
fn nothing_to_offer_is_nosmcdev() {
    assert_eq!(
        build_proposal(&LocalConfig::default(), &[]),
        Err(DeclineCode::NOSMCDEV)
    );
    let off = LocalConfig {
        v1: false,
        v2: false,
        ..LocalConfig::default()
    };
    assert_eq!(
        build_proposal(&off, &[loopback(LOOPBACK_GID)]),
        Err(DeclineCode::NOSMCDEV)
    );
    // Loopback is v2-only: with v2 disabled nothing remains.
    let v1_only = LocalConfig {
        v2: false,
        ip: ipv4([1, 2, 3, 4], 8),
        ..LocalConfig::default()
    };
    assert_eq!(
        build_proposal(&v1_only, &[loopback(LOOPBACK_GID)]),
        Err(DeclineCode::NOSMCDEV)
    );
}

#[test]
fn v1_without_prefix_is_cnferr_or_dropped() {
    // Only v1 possible, no interface address: CNFERR.
    let config = LocalConfig {
        v2: false,
        ..LocalConfig::default()
    };
    assert_eq!(
        build_proposal(&config, &[native(1, 1, false)]),
        Err(DeclineCode::CNFERR)
    );
    // v2 possible: v1 dropped, the native device moves into the list.
    let p = build_proposal(&config_with_ueid(), &[native(1, 1, true)]).unwrap();
    assert_eq!((p.typev1, p.typev2), (SmcType::N, SmcType::D));
    assert_eq!((p.ism_gid, p.ism_chid), (0, 0));
    assert_eq!(
        p.v2.unwrap().smcd.unwrap().gid_chids.as_slice(),
        &[GidChid { gid: 1, chid: 1 }]
    );
}

#[test]
fn list_limits_unique_chids_and_emulated_pairs() {
    let mut devices: Vec<DeviceDesc> = (1..=7).map(|i| native(i, i as u16, true)).collect();
    devices.push(native(99, 3, true)); // duplicate CHID: skipped
    devices.push(loopback(LOOPBACK_GID)); // needs 2 entries, only 1 left: skipped
    devices.push(native(8, 8, true)); // fits as the 8th entry
    devices.push(native(9, 9, true)); // list full
    let p = build_proposal(&config_with_ueid(), &devices).unwrap();
    let chids: Vec<u16> =
        p.v2.as_ref()
            .unwrap()
            .smcd
            .as_ref()
            .unwrap()
            .gid_chids
            .iter()
            .map(|e| e.chid)
            .collect();
    assert_eq!(chids, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(over_the_wire(&p), p);
}

#[test]
fn ipv6_prefixes_skip_link_local_and_mask_host_bits() {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    addr[15] = 0x99;
    let mut ll = [0u8; 16];
    ll[0] = 0xfe;
    ll[1] = 0x80;
    let config = LocalConfig {
        v2: false,
        ip: IpConfig {
            ipv4: None,
            ipv6: vec![
                Ipv6Cidr {
                    addr: ll,
                    prefix_len: 64,
                },
                Ipv6Cidr {
                    addr,
                    prefix_len: 64,
                },
            ],
        },
        ..LocalConfig::default()
    };
    let p = build_proposal(&config, &[native(5, 5, false)]).unwrap();
    assert_eq!((p.typev1, p.typev2), (SmcType::D, SmcType::N));
    let ip = p.ip_prefix.as_ref().unwrap();
    assert_eq!(ip.ipv4_subnet, [0; 4]);
    assert_eq!(ip.ipv6_prefixes.len(), 1);
    let mut expected = [0u8; 16];
    expected[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(ip.ipv6_prefixes[0].prefix, expected);
    assert_eq!(ip.ipv6_prefixes[0].prefix_len, 64);
    assert_eq!(over_the_wire(&p), p);
}

#[test]
fn seid_is_flagged_and_copied() {
    let seid = ueid("SEID-1");
    let config = LocalConfig {
        seid: Some(seid),
        ..LocalConfig::default()
    };
    let p = build_proposal(&config, &[loopback(LOOPBACK_GID)]).unwrap();
    let v2 = p.v2.unwrap();
    assert!(v2.seid_enabled);
    assert!(v2.ueids.is_empty());
    assert_eq!(v2.smcd.unwrap().seid, seid);
}

#[test]
fn client_decline_versions() {
    let c = LocalConfig::default();
    assert_eq!(
        client_decline_version(&c, &[loopback(LOOPBACK_GID)], None),
        2
    );
    assert_eq!(client_decline_version(&c, &[native(1, 1, false)], None), 1);
    assert_eq!(client_decline_version(&c, &[], None), 1);
}

// ------------------------------------------------------------------ server selection

fn server_devices() -> Vec<DeviceDesc> {
    vec![loopback(PEER_LOOPBACK_GID)]
}

fn client_v2_proposal() -> ProposalRepr {
    over_the_wire(&build_proposal(&config_with_ueid(), &[loopback(LOOPBACK_GID)]).unwrap())
}

#[test]
fn server_picks_v2_loopback_by_chid_and_reachability() {
    let mut asked = vec![];
    let choice = server_select(
        &config_with_ueid(),
        &server_devices(),
        &client_v2_proposal(),
        |d, g| {
            asked.push((d, g));
            true
        },
    )
    .unwrap();
    assert_eq!(
        asked,
        vec![(0, LOOPBACK_GID)],
        "query_remote_gid with the 128-bit GID"
    );
    assert_eq!(choice.version, 2);
    assert_eq!(choice.first().device, 0);
    assert_eq!(choice.first().peer_gid, LOOPBACK_GID);
    assert_eq!(choice.eid, Some(ueid("SMCD-UEID")));
    assert_eq!(choice.release, 1);
    assert_eq!(choice.decline_version, 2);
}

#[test]
fn release_is_min_of_proposal_and_own() {
    for (proposed, expected) in [(0u8, 0u8), (1, 1), (5, 1)] {
        let mut p = client_v2_proposal();
        p.v2.as_mut().unwrap().release = proposed;
        let choice =
            server_select(&config_with_ueid(), &server_devices(), &p, |_, _| true).unwrap();
        assert_eq!(choice.release, expected);
    }
}

#[test]
fn unreachable_or_wrong_chid_is_nosmcd2dev() {
    let p = client_v2_proposal();
    assert_eq!(
        server_select(&config_with_ueid(), &server_devices(), &p, |_, _| false),
        Err(DeclineCode::NOSMCD2DEV)
    );
    let other_chid = [DeviceDesc {
        chid: 0xFF01,
        ..loopback(PEER_LOOPBACK_GID)
    }];
    assert_eq!(
        server_select(&config_with_ueid(), &other_chid, &p, |_, _| true),
        Err(DeclineCode::NOSMCD2DEV)
    );
    // A device that is not v2-capable does not match.
    let not_v2 = [
        DeviceDesc {
            v2: false,
            ..native(1, 0x42, false)
        },
        loopback(PEER_LOOPBACK_GID),
    ];
    let mut native_p = p.clone();
    native_p
        .v2
        .as_mut()
        .unwrap()
        .smcd
        .as_mut()
        .unwrap()
        .gid_chids
        .clear();
    native_p
        .v2
        .as_mut()
        .unwrap()
        .smcd
        .as_mut()
        .unwrap()
        .push_device(Gid::native(9), 0x42);
    assert_eq!(
        server_select(&config_with_ueid(), &not_v2, &native_p, |_, _| true),
        Err(DeclineCode::NOSMCD2DEV)
    );
}

#[test]
fn virtual_entry_without_partner_is_skipped() {
    let mut p = client_v2_proposal();
    let list = &mut p.v2.as_mut().unwrap().smcd.as_mut().unwrap().gid_chids;
    // Lone virtual entry at the end.
    list.truncate(1);
    let p_last = p.clone();
    assert_eq!(
        server_select(&config_with_ueid(), &server_devices(), &p_last, |_, _| true),
        Err(DeclineCode::NOSMCD2DEV)
    );
    // Virtual entry followed by an entry with another CHID.
    let mut p2 = p.clone();
    p2.v2
        .as_mut()
        .unwrap()
        .smcd
        .as_mut()
        .unwrap()
        .gid_chids
        .push(GidChid {
            gid: 5,
            chid: 0x0007,
        })
        .unwrap();
    let mut seen = vec![];
    let devices = [loopback(PEER_LOOPBACK_GID), native(50, 0x0007, true)];
    let choice = server_select(&config_with_ueid(), &devices, &p2, |d, g| {
        seen.push((d, g));
        true
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![(1, Gid::native(5))],
        "the lone virtual entry was never tried"
    );
    assert_eq!(choice.first().device, 1);
}

#[test]
fn native_device_of_smcd_area_is_a_v2_candidate() {
    let config = LocalConfig {
        ip: ipv4([10, 0, 0, 1], 8),
        ..config_with_ueid()
    };
    let p = over_the_wire(&build_proposal(&config, &[native(0x77, 0x42, true)]).unwrap());
    let server = [native(0x88, 0x42, true)];
    let choice = server_select(&config, &server, &p, |_, g| g == Gid::native(0x77)).unwrap();
    assert_eq!(choice.version, 2);
    assert_eq!(choice.first().peer_gid, Gid::native(0x77));
}

#[test]
fn eid_matching() {
    let p = client_v2_proposal();
    // No common UEID: v2 is dropped silently; nothing else offered → NOSMCDDEV.
    let other = LocalConfig {
        ueids: vec![ueid("OTHER")],
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&other, &server_devices(), &p, |_, _| true),
        Err(DeclineCode::NOSMCDDEV)
    );
    // The first proposed UEID that is configured locally wins.
    let mut p2 = p.clone();
    let ueids = &mut p2.v2.as_mut().unwrap().ueids;
    ueids.clear();
    ueids.push(ueid("A1")).unwrap();
    ueids.push(ueid("B2")).unwrap();
    let cfg = LocalConfig {
        ueids: vec![ueid("B2"), ueid("A1")],
        ..LocalConfig::default()
    };
    let choice = server_select(&cfg, &server_devices(), &p2, |_, _| true).unwrap();
    assert_eq!(choice.eid, Some(ueid("A1")));
    // SEID: both enabled and equal.
    let seid = ueid("SYSTEM-EID");
    let client = LocalConfig {
        seid: Some(seid),
        ..LocalConfig::default()
    };
    let ps = over_the_wire(&build_proposal(&client, &[loopback(LOOPBACK_GID)]).unwrap());
    let server = LocalConfig {
        seid: Some(seid),
        ..LocalConfig::default()
    };
    let choice = server_select(&server, &server_devices(), &ps, |_, _| true).unwrap();
    assert_eq!(choice.eid, Some(seid));
    // SEIDs differ → no match.
    let server2 = LocalConfig {
        seid: Some(ueid("OTHER-SEID")),
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&server2, &server_devices(), &ps, |_, _| true),
        Err(DeclineCode::NOSMCDDEV)
    );
    // Same SEID bytes but the proposal's SEID flag is off → no match.
    let mut ps_off = ps.clone();
    ps_off.v2.as_mut().unwrap().seid_enabled = false;
    ps_off.v2.as_mut().unwrap().ueids.push(ueid("X")).unwrap();
    assert_eq!(
        server_select(&server, &server_devices(), &ps_off, |_, _| true),
        Err(DeclineCode::NOSMCDDEV)
    );
}

#[test]
fn initial_v2_checks() {
    let cfg = config_with_ueid();
    // Neither UEID nor SEID.
    let no_eid =
        over_the_wire(&build_proposal(&LocalConfig::default(), &[loopback(LOOPBACK_GID)]).unwrap());
    assert_eq!(
        server_select(&cfg, &server_devices(), &no_eid, |_, _| true),
        Err(DeclineCode::NOUEID)
    );
    // Server not v2-capable.
    let v1_server = LocalConfig {
        v2: false,
        ..cfg.clone()
    };
    assert_eq!(
        server_select(
            &v1_server,
            &server_devices(),
            &client_v2_proposal(),
            |_, _| true
        ),
        Err(DeclineCode::NOISM2SUPP)
    );
    assert_eq!(
        server_select(
            &cfg,
            &[native(1, 1, false)],
            &client_v2_proposal(),
            |_, _| true
        ),
        Err(DeclineCode::NOISM2SUPP)
    );
    // Missing extensions (constructed directly: the wire parser rejects them).
    let mut no_dext = client_v2_proposal();
    no_dext.v2.as_mut().unwrap().smcd = None;
    assert_eq!(
        server_select(&cfg, &server_devices(), &no_dext, |_, _| true),
        Err(DeclineCode::NOV2DEXT)
    );
    let mut no_ext = client_v2_proposal();
    no_ext.v2 = None;
    assert_eq!(
        server_select(&cfg, &server_devices(), &no_ext, |_, _| true),
        Err(DeclineCode::NOV2EXT)
    );
    // Nothing offered at all.
    let mut nothing = client_v2_proposal();
    nothing.typev2 = SmcType::N;
    nothing.v2 = None;
    assert_eq!(
        server_select(&cfg, &server_devices(), &nothing, |_, _| true),
        Err(DeclineCode::PEERNOSMC)
    );
    // A v1-header Proposal's typev2 is ignored.
    let mut v1hdr = client_v2_proposal();
    v1hdr.version = 1;
    assert_eq!(
        server_select(&cfg, &server_devices(), &v1hdr, |_, _| true),
        Err(DeclineCode::PEERNOSMC)
    );
}

fn v1_proposal() -> ProposalRepr {
    let config = LocalConfig {
        v2: false,
        ip: ipv4([10, 1, 2, 3], 24),
        ..LocalConfig::default()
    };
    over_the_wire(&build_proposal(&config, &[native(0x1234, 9, false)]).unwrap())
}

#[test]
fn v1_prefix_rules() {
    let server_dev = [native(0x5678, 9, false)];
    let same_subnet = LocalConfig {
        ip: ipv4([10, 1, 2, 200], 24),
        ..LocalConfig::default()
    };
    let choice = server_select(&same_subnet, &server_dev, &v1_proposal(), |_, g| {
        g == Gid::native(0x1234)
    })
    .unwrap();
    assert_eq!(choice.version, 1);
    assert_eq!(choice.first().device, 0);
    assert_eq!(choice.eid, None);
    assert_eq!(choice.decline_version, 2);

    let other_subnet = LocalConfig {
        ip: ipv4([10, 1, 3, 1], 24),
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&other_subnet, &server_dev, &v1_proposal(), |_, _| true),
        Err(DeclineCode::DIFFPREFIX)
    );
    let other_len = LocalConfig {
        ip: ipv4([10, 1, 2, 200], 16),
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&other_len, &server_dev, &v1_proposal(), |_, _| true),
        Err(DeclineCode::DIFFPREFIX)
    );
    assert_eq!(
        server_select(
            &LocalConfig::default(),
            &server_dev,
            &v1_proposal(),
            |_, _| true
        ),
        Err(DeclineCode::DIFFPREFIX)
    );
    // Prefix fine but no device reaches the peer (or v1 disabled).
    assert_eq!(
        server_select(&same_subnet, &server_dev, &v1_proposal(), |_, _| false),
        Err(DeclineCode::NOSMCDDEV)
    );
    let v1_off = LocalConfig {
        v1: false,
        ..same_subnet.clone()
    };
    assert_eq!(
        server_select(&v1_off, &server_dev, &v1_proposal(), |_, _| true),
        Err(DeclineCode::NOSMCDDEV)
    );
    // Emulated devices never serve v1.
    assert_eq!(
        server_select(
            &same_subnet,
            &[loopback(PEER_LOOPBACK_GID)],
            &v1_proposal(),
            |_, _| true
        ),
        Err(DeclineCode::NOSMCDDEV)
    );
}

#[test]
fn v1_ipv6_prefix_match() {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = 1;
    let client = LocalConfig {
        v2: false,
        ip: IpConfig {
            ipv4: None,
            ipv6: vec![Ipv6Cidr {
                addr: a,
                prefix_len: 64,
            }],
        },
        ..LocalConfig::default()
    };
    let p = over_the_wire(&build_proposal(&client, &[native(1, 9, false)]).unwrap());
    let mut b = a;
    b[15] = 2;
    let server = LocalConfig {
        ip: IpConfig {
            ipv4: None,
            ipv6: vec![Ipv6Cidr {
                addr: b,
                prefix_len: 64,
            }],
        },
        ..LocalConfig::default()
    };
    assert!(server_select(&server, &[native(2, 9, false)], &p, |_, _| true).is_ok());
    b[7] = 1; // other /64
    let server = LocalConfig {
        ip: IpConfig {
            ipv4: None,
            ipv6: vec![Ipv6Cidr {
                addr: b,
                prefix_len: 64,
            }],
        },
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&server, &[native(2, 9, false)], &p, |_, _| true),
        Err(DeclineCode::DIFFPREFIX)
    );
}

#[test]
fn first_recorded_reason_wins_and_v2_reasons_are_forgotten_with_v1() {
    // v1+v2 offered: v2 finds no device (NOSMCD2DEV recorded first), v1 prefix fails.
    let client = LocalConfig {
        ip: ipv4([10, 0, 0, 1], 8),
        ..config_with_ueid()
    };
    let p = over_the_wire(
        &build_proposal(&client, &[native(1, 9, true), loopback(LOOPBACK_GID)]).unwrap(),
    );
    let server = LocalConfig {
        ip: ipv4([172, 16, 0, 1], 12),
        ..config_with_ueid()
    };
    assert_eq!(
        server_select(&server, &[native(2, 9, true)], &p, |_, _| false),
        Err(DeclineCode::NOSMCD2DEV)
    );
    // v1+v2 without any EID: the NOUEID of the v2 check is forgotten, v1 is used.
    let client = LocalConfig {
        ip: ipv4([10, 0, 0, 1], 8),
        ..LocalConfig::default()
    };
    let p = over_the_wire(&build_proposal(&client, &[native(1, 9, true)]).unwrap());
    let server = LocalConfig {
        ip: ipv4([10, 9, 9, 9], 8),
        ..LocalConfig::default()
    };
    let choice = server_select(&server, &[native(2, 9, true)], &p, |_, _| true).unwrap();
    assert_eq!(choice.version, 1);
    // ...and when v1 then fails, the v1 reason is reported.
    let server = LocalConfig {
        ip: ipv4([11, 0, 0, 1], 8),
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&server, &[native(2, 9, true)], &p, |_, _| true),
        Err(DeclineCode::DIFFPREFIX)
    );
}

#[test]
fn smc_r_only_proposal_is_declined_without_rdma() {
    let mut p = v1_proposal();
    p.typev1 = SmcType::R;
    p.ism_gid = 0;
    p.ism_chid = 0;
    let p = over_the_wire(&p);
    let server = LocalConfig {
        ip: ipv4([10, 1, 2, 9], 24),
        ..LocalConfig::default()
    };
    assert_eq!(
        server_select(&server, &[native(1, 9, false)], &p, |_, _| true),
        Err(DeclineCode::NOSMCDEV)
    );
}

#[test]
fn server_decline_versions() {
    assert_eq!(server_decline_version(&client_v2_proposal()), 2);
    let mut p = v1_proposal();
    p.version = 1;
    assert_eq!(server_decline_version(&p), 1);
}

// ------------------------------------------------------------------ accept / confirm

struct Handshake {
    client_cfg: LocalConfig,
    client_devs: Vec<DeviceDesc>,
    proposal: ProposalRepr,
    accept: AcceptConfirmRepr,
}

fn v2_handshake(first_contact: bool) -> Handshake {
    let client_cfg = LocalConfig {
        feature_mask: 0x0003,
        ..config_with_ueid()
    };
    let client_devs = vec![loopback(LOOPBACK_GID)];
    let proposal = over_the_wire(&build_proposal(&client_cfg, &client_devs).unwrap());
    let server_cfg = LocalConfig {
        hostname: *b"server                          ",
        feature_mask: 0x0001,
        ..config_with_ueid()
    };
    let devs = server_devices();
    let choice = server_select(&server_cfg, &devs, &proposal, |_, _| true).unwrap();
    let accept = ac_over_the_wire(
        &build_accept(
            &server_cfg,
            &devs,
            &choice,
            choice.first(),
            &own(0xAB),
            first_contact,
        )
        .unwrap(),
    );
    Handshake {
        client_cfg,
        client_devs,
        proposal,
        accept,
    }
}

#[test]
fn full_v2_handshake_first_contact() {
    let h = v2_handshake(true);
    assert_eq!(h.accept.buffer_len(), 130);
    let fce = h.accept.v2.unwrap().first_contact_ext.unwrap();
    assert_eq!((fce.os_type, fce.release, fce.feature_mask), (2, 1, 1));
    let choice = client_check_accept(
        &h.client_cfg,
        &h.client_devs,
        &h.proposal,
        &h.accept,
        |_, _| panic!("first contact must not look up a group"),
    )
    .unwrap();
    assert_eq!(choice.device, 0);
    assert_eq!(choice.version, 2);
    assert_eq!(
        choice.peer_gid, PEER_LOOPBACK_GID,
        "gid + gid_ext for a virtual CHID"
    );
    assert_eq!(choice.peer_token, 0xAB);
    assert_eq!(choice.peer_dmb_len, 64 * 1024);
    assert!(choice.peer_first_contact && choice.create_group);
    assert_eq!(choice.release, 1);
    assert_eq!(choice.feature_mask, 0x0001, "Accept mask AND own mask");
    assert_eq!(choice.eid, Some(ueid("SMCD-UEID")));

    let confirm = ac_over_the_wire(
        &build_confirm(&h.client_cfg, &h.client_devs, &choice, &own(0xCD)).unwrap(),
    );
    assert_eq!(confirm.kind, AcceptConfirmKind::Confirm);
    assert!(confirm.first_contact);
    let v2 = confirm.v2.unwrap();
    assert_eq!(v2.chid, 0xFFFF);
    assert_eq!(v2.eid, ueid("SMCD-UEID"));
    assert_eq!(v2.gid_ext, LOOPBACK_GID.gid_ext);
    assert_eq!(confirm.gid, LOOPBACK_GID.gid);
    assert_eq!(v2.first_contact_ext.unwrap().release, 1);
    assert_eq!(confirm.buffer_len(), 130);

    let server_cfg = config_with_ueid();
    let server_choice =
        server_select(&server_cfg, &server_devices(), &h.proposal, |_, _| true).unwrap();
    let info = server_check_confirm(&server_choice, &confirm).unwrap();
    assert_eq!(info.peer_token, 0xCD);
    assert_eq!(info.peer_dmb_len, 64 * 1024);
    assert_eq!(info.feature_mask, 1);
}

#[test]
fn release0_handshake_uses_short_fce() {
    let client_cfg = LocalConfig {
        release: 0,
        ..config_with_ueid()
    };
    let devs = vec![loopback(LOOPBACK_GID)];
    let proposal = over_the_wire(&build_proposal(&client_cfg, &devs).unwrap());
    let server_cfg = config_with_ueid();
    let choice = server_select(&server_cfg, &server_devices(), &proposal, |_, _| true).unwrap();
    assert_eq!(choice.release, 0);
    let accept = build_accept(
        &server_cfg,
        &server_devices(),
        &choice,
        choice.first(),
        &own(1),
        true,
    )
    .unwrap();
    assert_eq!(accept.buffer_len(), 114);
    let c = client_check_accept(
        &client_cfg,
        &devs,
        &proposal,
        &ac_over_the_wire(&accept),
        |_, _| true,
    )
    .unwrap();
    assert_eq!((c.release, c.feature_mask), (0, 0));
    let confirm = build_confirm(&client_cfg, &devs, &c, &own(2)).unwrap();
    assert_eq!(confirm.buffer_len(), 114);
    assert!(server_check_confirm(&choice, &confirm).is_ok());
}

#[test]
fn confirm_release_mismatch_is_releaseerr() {
    let h = v2_handshake(true);
    let choice = client_check_accept(
        &h.client_cfg,
        &h.client_devs,
        &h.proposal,
        &h.accept,
        |_, _| true,
    )
    .unwrap();
    let mut confirm = build_confirm(&h.client_cfg, &h.client_devs, &choice, &own(2)).unwrap();
    let server_choice = server_select(
        &config_with_ueid(),
        &server_devices(),
        &h.proposal,
        |_, _| true,
    )
    .unwrap();
    let fce = confirm
        .v2
        .as_mut()
        .unwrap()
        .first_contact_ext
        .as_mut()
        .unwrap();
    fce.release = 0;
    fce.feature_mask = 0;
    assert_eq!(
        server_check_confirm(&server_choice, &confirm),
        Err(DeclineCode::RELEASEERR)
    );
}

#[test]
fn not_first_contact_needs_existing_group() {
    let h = v2_handshake(false);
    assert_eq!(h.accept.buffer_len(), 78);
    let err = client_check_accept(
        &h.client_cfg,
        &h.client_devs,
        &h.proposal,
        &h.accept,
        |d, g| {
            assert_eq!((d, g), (0, PEER_LOOPBACK_GID));
            false
        },
    )
    .unwrap_err();
    assert_eq!(err, ClientError::Decline(DeclineCode::SYNCERR));
    // The Decline Linux sends for it carries the out-of-sync bit.
    let decline = DeclineRepr::linux(
        client_decline_version(&h.client_cfg, &h.client_devs, Some(&h.accept)),
        DeclineCode::SYNCERR,
    );
    assert!(decline.out_of_sync);
    assert_eq!(decline.version, 2);

    let choice = client_check_accept(
        &h.client_cfg,
        &h.client_devs,
        &h.proposal,
        &h.accept,
        |_, _| true,
    )
    .unwrap();
    assert!(!choice.create_group);
    assert_eq!(choice.release, 0);
    let confirm = build_confirm(&h.client_cfg, &h.client_devs, &choice, &own(3)).unwrap();
    assert!(!confirm.first_contact);
    assert_eq!(confirm.buffer_len(), 78);
}

#[test]
fn accept_mode_not_offered_is_modeunsupp() {
    let h = v2_handshake(true);
    // v2 Accept although only v1 was offered.
    let mut p = h.proposal.clone();
    p.typev2 = SmcType::N;
    p.v2 = None;
    assert_eq!(
        client_check_accept(&h.client_cfg, &h.client_devs, &p, &h.accept, |_, _| true),
        Err(ClientError::Decline(DeclineCode::MODEUNSUPP))
    );
    // v1 Accept although v1 was not offered.
    let mut a = h.accept;
    a.version = 1;
    a.v2 = None;
    assert_eq!(
        client_check_accept(&h.client_cfg, &h.client_devs, &h.proposal, &a, |_, _| true),
        Err(ClientError::Decline(DeclineCode::MODEUNSUPP))
    );
}

#[test]
fn accept_release_above_own_is_versmismat() {
    let h = v2_handshake(true);
    let mut a = h.accept;
    a.v2.as_mut()
        .unwrap()
        .first_contact_ext
        .as_mut()
        .unwrap()
        .release = 2;
    assert_eq!(
        client_check_accept(&h.client_cfg, &h.client_devs, &h.proposal, &a, |_, _| true),
        Err(ClientError::Decline(DeclineCode::VERSMISMAT))
    );
}

#[test]
fn accept_chid_not_offered_is_protocol_error() {
    let h = v2_handshake(true);
    let mut a = h.accept;
    a.v2.as_mut().unwrap().chid = 0xFF05;
    assert_eq!(
        client_check_accept(&h.client_cfg, &h.client_devs, &h.proposal, &a, |_, _| true),
        Err(ClientError::Protocol(ProtocolError::UnknownChid(0xFF05)))
    );
    let mut c = h.accept;
    c.kind = AcceptConfirmKind::Confirm;
    assert_eq!(
        client_check_accept(&h.client_cfg, &h.client_devs, &h.proposal, &c, |_, _| true),
        Err(ClientError::Protocol(ProtocolError::WrongKind))
    );
}

#[test]
fn full_v1_handshake() {
    let client_cfg = LocalConfig {
        v2: false,
        ip: ipv4([10, 1, 2, 3], 24),
        ..LocalConfig::default()
    };
    let client_devs = vec![native(0x1234, 9, false)];
    let proposal = over_the_wire(&build_proposal(&client_cfg, &client_devs).unwrap());
    let server_cfg = LocalConfig {
        ip: ipv4([10, 1, 2, 4], 24),
        ..LocalConfig::default()
    };
    let server_devs = vec![native(0x5678, 9, false)];
    let choice = server_select(&server_cfg, &server_devs, &proposal, |_, _| true).unwrap();
    let accept = ac_over_the_wire(
        &build_accept(
            &server_cfg,
            &server_devs,
            &choice,
            choice.first(),
            &own(7),
            true,
        )
        .unwrap(),
    );
    assert_eq!(accept.buffer_len(), 48);
    assert_eq!(accept.gid, 0x5678);
    let c =
        client_check_accept(&client_cfg, &client_devs, &proposal, &accept, |_, _| true).unwrap();
    assert_eq!(
        (c.version, c.device, c.peer_gid),
        (1, 0, Gid::native(0x5678))
    );
    assert_eq!(
        client_decline_version(&client_cfg, &client_devs, Some(&accept)),
        1
    );
    let confirm = ac_over_the_wire(&build_confirm(&client_cfg, &client_devs, &c, &own(8)).unwrap());
    assert_eq!(confirm.buffer_len(), 48);
    assert!(confirm.first_contact);
    assert_eq!(
        server_check_confirm(&choice, &confirm).unwrap().peer_token,
        8
    );
}
