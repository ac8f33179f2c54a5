//! Cross-check with Wireshark's SMC dissector (protocol-reference §2.6).
//!
//! Writes the CLC messages of real handshakes (built with `negotiate`, emitted with
//! `wire::clc`) as TCP streams into a pcap file — Ethernet/IPv4/TCP headers built here
//! with correct checksums, SYN/SYN-ACK carrying the SMC option (kind 254, length 6,
//! `E2 D4 C3 D9`) — and asks `tshark` to dissect it. The test asserts the decoded
//! fields (GID, token, DMBE size, CHID, EID, ...) and that Wireshark reports neither a
//! malformed packet nor any expert warning/error (checksum validation enabled).
//! Without `tshark` it prints a notice and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use smcd::ism::{Gid, CHID_LOOPBACK};
use smcd::negotiate::{
    build_accept, build_confirm, build_proposal, client_check_accept, server_decline_version,
    server_select, DeviceDesc, IpConfig, Ipv4Cidr, LocalConfig, OwnDmb,
};
use smcd::wire::clc::{ClcMessage, DeclineRepr, Eid};

// ------------------------------------------------------------------ pcap writer

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x01];
const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x02];
const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_PORT: u16 = 12345;
/// NOP, NOP, kind 254, length 6, ExID "SMCR" in EBCDIC (§1).
const SMC_OPTION: [u8; 8] = [0x01, 0x01, 0xFE, 0x06, 0xE2, 0xD4, 0xC3, 0xD9];

/// MSS 1460 (Wireshark notes a SYN without one).
const MSS_OPTION: [u8; 4] = [0x02, 0x04, 0x05, 0xB4];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &b in chunk.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Pcap {
    bytes: Vec<u8>,
    time_us: u64,
    ip_id: u16,
}

impl Pcap {
    fn new() -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
        bytes.extend_from_slice(&2u16.to_le_bytes()); // version major
        bytes.extend_from_slice(&4u16.to_le_bytes()); // version minor
        bytes.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        bytes.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        bytes.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        bytes.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        Pcap {
            bytes,
            time_us: 1_700_000_000_000_000,
            ip_id: 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        from_client: bool,
        client_port: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) {
        let (src_mac, dst_mac, src_ip, dst_ip, sport, dport) = if from_client {
            (
                CLIENT_MAC,
                SERVER_MAC,
                CLIENT_IP,
                SERVER_IP,
                client_port,
                SERVER_PORT,
            )
        } else {
            (
                SERVER_MAC,
                CLIENT_MAC,
                SERVER_IP,
                CLIENT_IP,
                SERVER_PORT,
                client_port,
            )
        };
        assert_eq!(options.len() % 4, 0);
        let tcp_len = 20 + options.len() + payload.len();
        let mut tcp = Vec::with_capacity(tcp_len);
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push((((20 + options.len()) / 4) as u8) << 4); // data offset
        tcp.push(flags);
        tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0]); // checksum, filled below
        tcp.extend_from_slice(&[0, 0]); // urgent pointer
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(payload);
        let pseudo = [
            &src_ip[..],
            &dst_ip[..],
            &[0, 6],
            &(tcp_len as u16).to_be_bytes()[..],
        ]
        .concat();
        let c = checksum(&[&pseudo, &tcp]);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());

        let mut ip = Vec::with_capacity(20);
        ip.push(0x45); // IPv4, IHL 5
        ip.push(0);
        ip.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip.extend_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id += 1;
        ip.extend_from_slice(&[0x40, 0x00]); // DF
        ip.push(64); // TTL
        ip.push(6); // TCP
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&src_ip);
        ip.extend_from_slice(&dst_ip);
        let c = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let frame = [&dst_mac[..], &src_mac[..], &[0x08, 0x00], &ip, &tcp].concat();
        self.time_us += 100;
        self.bytes
            .extend_from_slice(&((self.time_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((self.time_us % 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&frame);
    }
}

/// One TCP connection: handshake with the SMC option, then CLC messages in order.
struct Stream<'a> {
    pcap: &'a mut Pcap,
    port: u16,
    client_seq: u32,
    server_seq: u32,
}

impl<'a> Stream<'a> {
    fn open(pcap: &'a mut Pcap, port: u16) -> Stream<'a> {
        let (cisn, sisn) = (
            0x1000_0000u32 + u32::from(port),
            0x2000_0000u32 + u32::from(port),
        );
        let options = [&MSS_OPTION[..], &SMC_OPTION[..]].concat();
        pcap.segment(true, port, cisn, 0, SYN, &options, &[]);
        pcap.segment(false, port, sisn, cisn + 1, SYN | ACK, &options, &[]);
        pcap.segment(true, port, cisn + 1, sisn + 1, ACK, &[], &[]);
        Stream {
            pcap,
            port,
            client_seq: cisn + 1,
            server_seq: sisn + 1,
        }
    }

    fn send(&mut self, from_client: bool, msg: &ClcMessage) {
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes).unwrap();
        let (seq, ack) = if from_client {
            (self.client_seq, self.server_seq)
        } else {
            (self.server_seq, self.client_seq)
        };
        self.pcap
            .segment(from_client, self.port, seq, ack, PSH | ACK, &[], &bytes);
        if from_client {
            self.client_seq += bytes.len() as u32;
        } else {
            self.server_seq += bytes.len() as u32;
        }
    }
}

// ------------------------------------------------------------------ handshakes

const CLIENT_GID: Gid = Gid::virtual_(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
const SERVER_GID: Gid = Gid::virtual_(0x2122_2324_2526_2728, 0x3132_3334_3536_3738);

fn ueid() -> Eid {
    Eid::ueid("SMCD-WIRESHARK.TEST").unwrap()
}

fn hostname(s: &str) -> [u8; 32] {
    let mut h = [b' '; 32];
    h[..s.len()].copy_from_slice(s.as_bytes());
    h
}

/// Messages of one successful SMC-Dv2 handshake over loopback-style devices.
fn v2_handshake() -> Vec<(bool, ClcMessage)> {
    let ccfg = LocalConfig {
        ueids: vec![ueid()],
        hostname: hostname("client"),
        ..LocalConfig::default()
    };
    let scfg = LocalConfig {
        ueids: vec![ueid()],
        hostname: hostname("server"),
        ..LocalConfig::default()
    };
    let cdev = vec![DeviceDesc {
        gid: CLIENT_GID,
        chid: CHID_LOOPBACK,
        v2: true,
    }];
    let sdev = vec![DeviceDesc {
        gid: SERVER_GID,
        chid: CHID_LOOPBACK,
        v2: true,
    }];
    let proposal = build_proposal(&ccfg, &cdev).unwrap();
    let choice = server_select(&scfg, &sdev, &proposal, |_, _| true).unwrap();
    let server_dmb = OwnDmb {
        token: 0xA1A2_A3A4_A5A6_A7A8,
        dmbe_size: 2,
        link_id: [0, 0, 0, 5],
    };
    let accept = build_accept(&scfg, &sdev, &choice, choice.first(), &server_dmb, true).unwrap();
    let c = client_check_accept(&ccfg, &cdev, &proposal, &accept, |_, _| false).unwrap();
    let client_dmb = OwnDmb {
        token: 0xB1B2_B3B4_B5B6_B7B8,
        dmbe_size: 3,
        link_id: [0, 0, 0, 6],
    };
    let confirm = build_confirm(&ccfg, &cdev, &c, &client_dmb).unwrap();
    vec![
        (true, ClcMessage::Proposal(proposal)),
        (false, ClcMessage::AcceptConfirm(accept)),
        (true, ClcMessage::AcceptConfirm(confirm)),
    ]
}

/// A client without UEIDs: the server declines with NOUEID (v2 Decline).
fn declined_handshake() -> Vec<(bool, ClcMessage)> {
    let ccfg = LocalConfig::default();
    let scfg = LocalConfig {
        ueids: vec![ueid()],
        ..LocalConfig::default()
    };
    let cdev = vec![DeviceDesc {
        gid: CLIENT_GID,
        chid: CHID_LOOPBACK,
        v2: true,
    }];
    let sdev = vec![DeviceDesc {
        gid: SERVER_GID,
        chid: CHID_LOOPBACK,
        v2: true,
    }];
    let proposal = build_proposal(&ccfg, &cdev).unwrap();
    let code = server_select(&scfg, &sdev, &proposal, |_, _| true).unwrap_err();
    let decline = DeclineRepr::linux(server_decline_version(&proposal), code);
    vec![
        (true, ClcMessage::Proposal(proposal)),
        (false, ClcMessage::Decline(decline)),
    ]
}

/// SMC-Dv1 over a native device with an IPv4 subnet (Accept/Confirm of 48 bytes).
fn v1_handshake() -> Vec<(bool, ClcMessage)> {
    let ip = |last| IpConfig {
        ipv4: Some(Ipv4Cidr {
            addr: [10, 0, 0, last],
            prefix_len: 24,
        }),
        ipv6: vec![],
    };
    let ccfg = LocalConfig {
        v2: false,
        ip: ip(1),
        ..LocalConfig::default()
    };
    let scfg = LocalConfig {
        v2: false,
        ip: ip(2),
        ..LocalConfig::default()
    };
    let cdev = vec![DeviceDesc {
        gid: Gid::native(0x00C0_FFEE),
        chid: 0x0042,
        v2: false,
    }];
    let sdev = vec![DeviceDesc {
        gid: Gid::native(0x00BE_EF00),
        chid: 0x0042,
        v2: false,
    }];
    let proposal = build_proposal(&ccfg, &cdev).unwrap();
    let choice = server_select(&scfg, &sdev, &proposal, |_, _| true).unwrap();
    let accept = build_accept(
        &scfg,
        &sdev,
        &choice,
        choice.first(),
        &OwnDmb {
            token: 0x77,
            dmbe_size: 1,
            link_id: [0; 4],
        },
        true,
    )
    .unwrap();
    let c = client_check_accept(&ccfg, &cdev, &proposal, &accept, |_, _| false).unwrap();
    let confirm = build_confirm(
        &ccfg,
        &cdev,
        &c,
        &OwnDmb {
            token: 0x88,
            dmbe_size: 0,
            link_id: [0; 4],
        },
    )
    .unwrap();
    vec![
        (true, ClcMessage::Proposal(proposal)),
        (false, ClcMessage::AcceptConfirm(accept)),
        (true, ClcMessage::AcceptConfirm(confirm)),
    ]
}

fn write_pcap(path: &Path) {
    let mut pcap = Pcap::new();
    for (port, messages) in [
        (40001u16, v2_handshake()),
        (40002, declined_handshake()),
        (40003, v1_handshake()),
    ] {
        let mut stream = Stream::open(&mut pcap, port);
        for (from_client, msg) in &messages {
            stream.send(*from_client, msg);
        }
    }
    std::fs::write(path, &pcap.bytes).unwrap();
}

// ------------------------------------------------------------------ tshark

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tshark(path: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pcap_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("smcd-clc-handshake.pcap")
}

/// Fields of one frame as `tshark -T fields` prints them (all occurrences joined by ',').
fn fields(path: &Path, frame: u32, names: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-Y".to_string(),
        format!("frame.number == {frame}"),
        "-T".into(),
        "fields".into(),
        "-E".into(),
        "occurrence=a".into(),
        "-E".into(),
        "aggregator=,".into(),
    ];
    for name in names {
        args.push("-e".into());
        args.push((*name).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tshark(path, &args);
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("frame {frame} not found"));
    line.split('\t').map(str::to_string).collect()
}

/// Asserts `(field, expected)` pairs for one frame.
fn expect(path: &Path, frame: u32, pairs: &[(&str, String)]) {
    let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
    let got = fields(path, frame, &names);
    for (i, (name, want)) in pairs.iter().enumerate() {
        assert_eq!(
            got.get(i).map(String::as_str),
            Some(want.as_str()),
            "frame {frame} field {name}"
        );
    }
}

fn hex64(v: u64) -> String {
    format!("{v:#018x}")
}

fn eid_text() -> String {
    String::from_utf8(ueid().0.to_vec()).unwrap()
}

fn host_text(s: &str) -> String {
    String::from_utf8(hostname(s).to_vec()).unwrap()
}

#[test]
fn wireshark_decodes_handshakes() {
    let path = pcap_path();
    write_pcap(&path);
    if !tshark_available() {
        println!(
            "skipped: tshark not installed (pcap written to {})",
            path.display()
        );
        return;
    }

    // Every CLC segment (and only those) is recognised as SMC; nothing is malformed,
    // no expert warning or error (checksums validated too).
    let smc_frames = tshark(&path, &["-Y", "smc", "-T", "fields", "-e", "frame.number"]);
    let smc_frames: Vec<&str> = smc_frames.lines().collect();
    assert_eq!(smc_frames, ["4", "5", "6", "10", "11", "15", "16", "17"]);
    let verbose = tshark(&path, &["-V"]);
    assert!(verbose.contains("Shared Memory Communications"));
    for bad in [
        "Malformed",
        "Expert Info (Warning",
        "Expert Info (Error",
        "[incorrect",
        "Bad checksum",
    ] {
        assert!(!verbose.contains(bad), "tshark reports {bad:?}:\n{verbose}");
    }
    // The SYN and SYN-ACK carry the SMC experimental option.
    let opts = tshark(
        &path,
        &[
            "-Y",
            "tcp.flags.syn == 1 && tcp.options.experimental.exid == 0xe2d4",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    assert_eq!(
        opts.lines().count(),
        6,
        "SYN + SYN-ACK of three streams:\n{opts}"
    );

    let s = |v: &str| v.to_string();
    // Stream 1: SMC-Dv2 Proposal (224 bytes) with one UEID and one emulated device.
    expect(
        &path,
        4,
        &[
            ("smc.clc_msg", s("1")),
            ("smc.length", s("224")),
            ("smc.proposal.smc.version", s("2")),
            ("smc.proposal.smcv2.type", s("1")),
            ("smc.proposal.smc.type", s("2")),
            (
                "smc.proposal.ism.gid",
                format!(
                    "{},{},{}",
                    hex64(0),
                    hex64(CLIENT_GID.gid),
                    hex64(CLIENT_GID.gid_ext)
                ),
            ),
            ("smc.proposal.smc.chid", s("0x0000,0xffff,0xffff")),
            ("smc.proposal.eid.count", s("1")),
            ("smc.proposal.ismv2_gid_count", s("2")),
            ("smc.proposal.eid", eid_text()),
            ("smc.proposal.smc.version.relnum", s("1")),
            ("smc.proposal.smc.seid", s("0")),
            ("smc.proposal.smcv2_ext_offset", s("0x001c")),
            ("smc.proposal.smcdv2_ext_offset", s("0x0040")),
        ],
    );
    // Accept: first contact, release 1 (130 bytes); Wireshark shows gid_ext as reserved.
    expect(
        &path,
        5,
        &[
            ("smc.clc_msg", s("2")),
            ("smc.length", s("130")),
            ("smc.proposal.smc.version", s("2")),
            ("smc.accept.first.contact", s("1")),
            ("smc.accept.sender.server.ism.gid", hex64(SERVER_GID.gid)),
            ("smc.accept.dmb.token", hex64(0xA1A2_A3A4_A5A6_A7A8)),
            ("smc.accept.dmbe.buffer.size", s("2")),
            ("smc.accept.smc.chid", s("0xffff")),
            ("smc.accept.eid", eid_text()),
            ("smc.accept.os.type", s("2")),
            ("smc.accept.smc.version.relnum", s("1")),
            ("smc.accept.peer.host.name", host_text("server")),
            ("smc.accept.server.linkid", s("0x00000005")),
        ],
    );
    expect(
        &path,
        6,
        &[
            ("smc.clc_msg", s("3")),
            ("smc.length", s("130")),
            ("smc.confirm.first.contact", s("1")),
            ("smc.confirm.sender.client.ism.gid", hex64(CLIENT_GID.gid)),
            ("smc.confirm.dmb.token", hex64(0xB1B2_B3B4_B5B6_B7B8)),
            ("smc.confirm.dmbe.buffer.size", s("3")),
            ("smc.confirm.smc.chid", s("0xffff")),
            ("smc.confirm.eid", eid_text()),
            ("smc.confirm.os.type", s("2")),
            ("smc.confirm.smc.version.relnum", s("1")),
            ("smc.confirm.peer.host.name", host_text("client")),
            ("smc.confirm.client.linkid", s("0x00000006")),
        ],
    );
    // Stream 2: Proposal without UEID (192 bytes), Decline v2 NOUEID.
    expect(
        &path,
        10,
        &[
            ("smc.clc_msg", s("1")),
            ("smc.length", s("192")),
            ("smc.proposal.eid.count", s("0")),
            ("smc.proposal.smcdv2_ext_offset", s("0x0020")),
        ],
    );
    expect(
        &path,
        11,
        &[
            ("smc.clc_msg", s("4")),
            ("smc.length", s("44")),
            ("smc.decline.smc.version", s("2")),
            ("smc.decline.osync", s("0")),
            (
                "smc.peer.diag.info",
                s("0x03030008,0x00000000,0x00000000,0x00000000,0x00000000"),
            ),
            ("smc.decline.os.type", s("2")),
        ],
    );
    // Stream 3: SMC-Dv1 with an IPv4 subnet; 48-byte Accept and Confirm.
    expect(
        &path,
        15,
        &[
            ("smc.clc_msg", s("1")),
            ("smc.length", s("92")),
            ("smc.proposal.smcv2.type", s("2")),
            ("smc.proposal.smc.type", s("1")),
            ("smc.proposal.ism.gid", hex64(0x00C0_FFEE)),
            ("smc.proposal.smcv1_subnet_ext_offset", s("0x0028")),
            ("smc.outgoing.interface.subnet.mask", s("10.0.0.0")),
            (
                "smc.outgoing.interface.subnet.mask.number.of.significant.bits",
                s("24"),
            ),
            ("smc.proposal.ipv6.prefix.count", s("0")),
        ],
    );
    expect(
        &path,
        16,
        &[
            ("smc.clc_msg", s("2")),
            ("smc.length", s("48")),
            ("smc.proposal.smc.version", s("1")),
            ("smc.accept.first.contact", s("1")),
            ("smc.accept.sender.server.ism.gid", hex64(0x00BE_EF00)),
            ("smc.accept.dmb.token", hex64(0x77)),
            ("smc.accept.dmbe.buffer.size", s("1")),
        ],
    );
    expect(
        &path,
        17,
        &[
            ("smc.clc_msg", s("3")),
            ("smc.length", s("48")),
            ("smc.confirm.sender.client.ism.gid", hex64(0x00C0_FFEE)),
            ("smc.confirm.dmb.token", hex64(0x88)),
            ("smc.confirm.dmbe.buffer.size", s("0")),
        ],
    );
}

/// An out-of-sync Decline (v2) as a separate capture: Wireshark shows the flag.
#[test]
fn wireshark_decodes_out_of_sync_decline() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smcd-clc-outofsync.pcap");
    let mut pcap = Pcap::new();
    let mut stream = Stream::open(&mut pcap, 40010);
    let decline = DeclineRepr::linux(2, smcd::wire::clc::DeclineCode::SYNCERR);
    stream.send(true, &ClcMessage::Decline(decline));
    std::fs::write(&path, &pcap.bytes).unwrap();
    if !tshark_available() {
        println!(
            "skipped: tshark not installed (pcap written to {})",
            path.display()
        );
        return;
    }
    let verbose = tshark(&path, &["-V"]);
    assert!(!verbose.contains("Malformed") && !verbose.contains("Expert Info (Warning"));
    expect(
        &path,
        4,
        &[
            ("smc.clc_msg", "4".into()),
            ("smc.decline.osync", "1".into()),
            (
                "smc.peer.diag.info",
                "0x04000000,0x00000000,0x00000000,0x00000000,0x00000000".into(),
            ),
        ],
    );
}
