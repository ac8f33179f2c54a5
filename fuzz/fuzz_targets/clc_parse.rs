//! Fuzz target: every CLC parser on arbitrary bytes, round trips, and negotiation.
//!
//! Checks, for any input: no parser panics; `frame_len` agrees with the header; a
//! message that parses re-emits and re-parses to the identical `Repr`; and feeding
//! parsed messages to the negotiation functions never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smcd::ism::Gid;
use smcd::negotiate::{
    build_accept, build_confirm, build_proposal, client_check_accept, server_check_confirm,
    server_select, DeviceDesc, IpConfig, Ipv4Cidr, LocalConfig, OwnDmb,
};
use smcd::wire::clc::{
    frame_len, AcceptConfirmPacket, AcceptConfirmRepr, ClcMessage, DeclinePacket, DeclineRepr, Eid,
    HeaderPacket, ProposalPacket, ProposalRepr,
};

fn config() -> LocalConfig {
    LocalConfig {
        ueids: vec![Eid::ueid("SMCD").unwrap()],
        ip: IpConfig {
            ipv4: Some(Ipv4Cidr {
                addr: [10, 0, 0, 1],
                prefix_len: 8,
            }),
            ipv6: vec![],
        },
        ..LocalConfig::default()
    }
}

fn devices() -> Vec<DeviceDesc> {
    vec![
        DeviceDesc {
            gid: Gid::native(0x42),
            chid: 0x0042,
            v2: true,
        },
        DeviceDesc {
            gid: Gid::virtual_(1, 2),
            chid: 0xFFFF,
            v2: true,
        },
    ]
}

fn roundtrip(msg: &ClcMessage) {
    let mut buf = vec![0xa5u8; msg.buffer_len()];
    let n = msg.emit(&mut buf).expect("a parsed message must re-emit");
    assert_eq!(n, buf.len());
    let again = ClcMessage::parse(&buf).expect("re-emitted bytes must parse");
    assert_eq!(&again, msg, "parse -> emit -> parse changed the message");
}

fuzz_target!(|data: &[u8]| {
    // Typed views and Reprs, one by one.
    if let Ok(p) = HeaderPacket::new_checked(data) {
        let _ = (
            p.eyecatcher(),
            p.message_type(),
            p.length(),
            p.version(),
            p.flag(),
        );
    }
    if let Ok(p) = ProposalPacket::new_checked(data) {
        let areas = p.areas().expect("new_checked validated the areas");
        for i in 0..10 {
            let _ = (
                p.ipv6_prefix(&areas, i),
                p.ueid(&areas, i),
                p.gid_chid(&areas, i),
            );
        }
        let _ = ProposalRepr::parse(&p);
    }
    if let Ok(p) = AcceptConfirmPacket::new_checked(data) {
        let _ = (
            p.gid(),
            p.token(),
            p.chid(),
            p.eid(),
            p.gid_ext(),
            p.fce_release(),
        );
        let _ = AcceptConfirmRepr::parse(&p);
    }
    if let Ok(p) = DeclinePacket::new_checked(data) {
        let _ = (p.code(), p.extra_code(3), p.os_type());
        let _ = DeclineRepr::parse(&p);
    }

    let framed = data.get(..8).map(|h| frame_len(h.try_into().unwrap()));
    let parsed = ClcMessage::parse(data);
    if let Ok(msg) = &parsed {
        // A message that parses was framed to exactly its header length.
        let length = usize::from(u16::from_be_bytes([data[5], data[6]]));
        assert_eq!(framed, Some(Ok(length)));
        roundtrip(msg);

        // Negotiation on hostile (but well-formed) messages.
        let cfg = config();
        let devs = devices();
        match msg {
            ClcMessage::Proposal(p) => {
                if let Ok(choice) = server_select(&cfg, &devs, p, |d, _| d % 2 == 0) {
                    let own = OwnDmb {
                        token: 1,
                        dmbe_size: 2,
                        link_id: [0; 4],
                    };
                    let accept = build_accept(&cfg, &devs, &choice, choice.first(), &own, true)
                        .expect("candidate device exists");
                    roundtrip(&ClcMessage::AcceptConfirm(accept));
                }
            }
            ClcMessage::AcceptConfirm(a) => {
                let proposal = build_proposal(&cfg, &devs).unwrap();
                if let Ok(c) = client_check_accept(&cfg, &devs, &proposal, a, |_, _| true) {
                    let own = OwnDmb {
                        token: 2,
                        dmbe_size: 1,
                        link_id: [0; 4],
                    };
                    let confirm = build_confirm(&cfg, &devs, &c, &own).expect("device exists");
                    roundtrip(&ClcMessage::AcceptConfirm(confirm));
                }
                if let Ok(choice) = server_select(&cfg, &devs, &proposal, |_, _| true) {
                    let _ = server_check_confirm(&choice, a);
                }
            }
            ClcMessage::Decline(_) => {}
        }
    }
});
