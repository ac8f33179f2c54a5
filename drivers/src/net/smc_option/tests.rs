//! Tests of the SMC option middleware: fixed frames, Linux parse rules, the echo rule,
//! and two smoltcp stacks talking through the middleware.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address,
    Ipv4Packet, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

use super::table::{MAX_CONNECTIONS, MAX_SMC_PORTS};
use super::wire::{
    classify_outgoing, classify_received, insert_smc_option, options_carry_smc, InsertError,
    MAX_REWRITTEN_FRAME_LEN,
};
use super::{OptionExchange, PolicyFull, Role, SmcOptionDevice, SmcOptionTable, SMC_OPTION_BLOCK};

/// Linux-style SYN 10.0.0.1:49152 -> 10.0.0.2:8080: MSS, SACK-permitted, timestamps, NOP, window scale (20 option bytes).
const LINUX_SYN: [u8; 74] = [
    0x52, 0x54, 0x00, 0x12, 0x34, 0x57, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x86, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0xc0, 0x00, 0x1f, 0x90, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
    0xfa, 0xf0, 0x55, 0x75, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];
/// `LINUX_SYN` with the SMC block appended (data offset 12 words), checksums computed independently (Python).
const LINUX_SYN_WITH_SMC: [u8; 82] = [
    0x52, 0x54, 0x00, 0x12, 0x34, 0x57, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x44, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x7e, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0xc0, 0x00, 0x1f, 0x90, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x02,
    0xfa, 0xf0, 0x8f, 0xb6, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07, 0x01, 0x01, 0xfe, 0x06, 0xe2, 0xd4,
    0xc3, 0xd9,
];
/// smoltcp-style SYN: MSS, window scale, SACK-permitted, then End-of-List padding.
const SMOLTCP_SYN: [u8; 66] = [
    0x52, 0x54, 0x00, 0x12, 0x34, 0x57, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x34, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x8e, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0xc0, 0x00, 0x1f, 0x90, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02,
    0xfa, 0xf0, 0x79, 0x8d, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x03, 0x03, 0x07, 0x04, 0x02, 0x00,
    0x00, 0x00,
];
/// `SMOLTCP_SYN` with the block placed before the End-of-List padding.
const SMOLTCP_SYN_WITH_SMC: [u8; 74] = [
    0x52, 0x54, 0x00, 0x12, 0x34, 0x57, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x86, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0xc0, 0x00, 0x1f, 0x90, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
    0xfa, 0xf0, 0xa2, 0xdf, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x03, 0x03, 0x07, 0x04, 0x02, 0x01,
    0x01, 0xfe, 0x06, 0xe2, 0xd4, 0xc3, 0xd9, 0x00, 0x00, 0x00,
];

const CLIENT: IpEndpoint = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), 49152);
const SERVER: IpEndpoint = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), 8080);

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// Offsets in the fixtures: Ethernet 14 + IPv4 20.
const TCP_AT: usize = 34;

/// Parse a frame the way a receiver would and return its TCP repr's option fields, after
/// checking lengths and both checksums.
fn checked_tcp(frame: &[u8]) -> (usize, Vec<u8>, TcpRepr<'_>) {
    let ethernet = EthernetFrame::new_checked(frame).expect("ethernet");
    let ip = Ipv4Packet::new_checked(ethernet.payload()).expect("ipv4 check_len");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(
        usize::from(ip.total_len()) + 14,
        frame.len(),
        "IPv4 total length"
    );
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp check_len");
    assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
    let header_len = usize::from(tcp.header_len());
    let options = tcp.options().to_vec();
    let ethernet = EthernetFrame::new_unchecked(frame);
    let ip = Ipv4Packet::new_unchecked(&ethernet.into_inner()[14..]);
    let payload = ip.payload();
    let tcp = TcpPacket::new_unchecked(payload);
    let repr = TcpRepr::parse(&tcp, &src, &dst, &caps()).expect("tcp repr");
    (header_len, options, repr)
}

/// Build an Ethernet/IPv4/TCP frame CLIENT -> SERVER with raw `options` (a multiple of 4).
fn build_frame(options: &[u8], syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let tcp_len = 20 + options.len() + payload.len();
    let mut frame = vec![0u8; TCP_AT + tcp_len];
    frame[..34].copy_from_slice(&LINUX_SYN[..34]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_total_len((20 + tcp_len) as u16);
        ip.fill_checksum();
    }
    let mut tcp = TcpPacket::new_unchecked(&mut frame[TCP_AT..]);
    tcp.set_src_port(CLIENT.port);
    tcp.set_dst_port(SERVER.port);
    tcp.set_seq_number(TcpSeqNumber(7));
    tcp.set_header_len((20 + options.len()) as u8);
    tcp.clear_flags();
    tcp.set_syn(syn);
    tcp.set_ack(ack);
    tcp.set_window_len(1024);
    tcp.options_mut().copy_from_slice(options);
    tcp.payload_mut().copy_from_slice(payload);
    tcp.fill_checksum(&CLIENT.addr, &SERVER.addr);
    frame
}

/// Swap addresses/ports of a CLIENT -> SERVER frame and set SYN+ACK: the server's reply.
fn build_syn_ack(options: &[u8]) -> Vec<u8> {
    let mut frame = build_frame(options, true, true, &[]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_src_addr(Ipv4Address::new(10, 0, 0, 2));
        ip.set_dst_addr(Ipv4Address::new(10, 0, 0, 1));
        ip.fill_checksum();
    }
    let mut tcp = TcpPacket::new_unchecked(&mut frame[TCP_AT..]);
    tcp.set_src_port(SERVER.port);
    tcp.set_dst_port(CLIENT.port);
    tcp.fill_checksum(&SERVER.addr, &CLIENT.addr);
    frame
}

fn insert(frame: &[u8]) -> Result<Vec<u8>, InsertError> {
    let mut out = [0xa5u8; MAX_REWRITTEN_FRAME_LEN];
    insert_smc_option(frame, &mut out, &caps()).map(|len| out[..len].to_vec())
}

#[test]
fn linux_syn_gets_exactly_the_block() {
    // The fixture itself is valid.
    let (header_len, options, _) = checked_tcp(&LINUX_SYN);
    assert_eq!(header_len, 40);
    assert!(!options_carry_smc(&options));

    let out = insert(&LINUX_SYN).unwrap();
    assert_eq!(out, LINUX_SYN_WITH_SMC);
    let (header_len, options, repr) = checked_tcp(&out);
    assert_eq!(header_len, 48);
    assert_eq!(&options[20..], &SMC_OPTION_BLOCK);
    assert!(options_carry_smc(&options));
    // MSS, SACK-permitted, timestamps and window scale survive.
    assert_eq!(repr.max_seg_size, Some(1460));
    assert_eq!(repr.window_scale, Some(7));
    assert!(repr.sack_permitted);
    assert_eq!(repr.timestamp, Some(TcpTimestampRepr::new(1, 0)));
    assert_eq!(repr.control, smoltcp::wire::TcpControl::Syn);
}

#[test]
fn block_goes_before_end_of_list_padding() {
    let out = insert(&SMOLTCP_SYN).unwrap();
    assert_eq!(out, SMOLTCP_SYN_WITH_SMC);
    let (header_len, options, repr) = checked_tcp(&out);
    assert_eq!(header_len, 40);
    assert!(options_carry_smc(&options));
    assert_eq!(repr.max_seg_size, Some(1460));
    assert_eq!(repr.window_scale, Some(7));
    assert!(repr.sack_permitted);
}

#[test]
fn syn_emitted_by_smoltcp_keeps_its_options() {
    let repr = TcpRepr {
        src_port: CLIENT.port,
        dst_port: SERVER.port,
        control: smoltcp::wire::TcpControl::Syn,
        seq_number: TcpSeqNumber(0x1234_5678),
        ack_number: None,
        window_len: 64240,
        window_scale: Some(5),
        max_seg_size: Some(1460),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(99, 0)),
        payload: &[],
    };
    let tcp_len = repr.header_len();
    let mut frame = vec![0u8; TCP_AT + tcp_len];
    frame[..34].copy_from_slice(&LINUX_SYN[..34]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_total_len((20 + tcp_len) as u16);
        ip.fill_checksum();
    }
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut frame[TCP_AT..]),
        &CLIENT.addr,
        &SERVER.addr,
        &caps(),
    );
    let out = insert(&frame).unwrap();
    assert_eq!(out.len(), frame.len() + 8);
    let (header_len, options, parsed) = checked_tcp(&out);
    assert_eq!(header_len, tcp_len + 8);
    assert!(options_carry_smc(&options));
    assert_eq!(parsed, repr);
}

#[test]
fn syn_without_room_is_left_alone() {
    // Data offset 15 words (40 option bytes) and 14 words (36): no room for 8 more bytes.
    for option_len in [40, 36] {
        let frame = build_frame(&vec![1u8; option_len], true, false, &[]);
        assert_eq!(insert(&frame), Err(InsertError::NoOptionSpace));
    }
    // 13 words (32 option bytes): exactly enough room, result has data offset 15.
    let frame = build_frame(&[1u8; 32], true, false, &[]);
    let out = insert(&frame).unwrap();
    let (header_len, options, _) = checked_tcp(&out);
    assert_eq!(header_len, 60);
    assert_eq!(&options[32..], &SMC_OPTION_BLOCK);
}

#[test]
fn non_syn_and_non_tcp_are_left_alone() {
    let ack = build_frame(&[], false, true, b"payload");
    assert_eq!(insert(&ack), Err(InsertError::NotSyn));
    assert_eq!(classify_outgoing(&ack), None);

    let mut udp = LINUX_SYN.to_vec();
    udp[14 + 9] = 17;
    assert_eq!(insert(&udp), Err(InsertError::NotTcp));

    let mut arp = LINUX_SYN.to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(insert(&arp), Err(InsertError::NotTcp));

    let mut fragment = LINUX_SYN.to_vec();
    fragment[14 + 6] = 0x20; // more fragments
    assert_eq!(insert(&fragment), Err(InsertError::NotTcp));

    let mut small = [0u8; 40];
    assert_eq!(
        insert_smc_option(&LINUX_SYN, &mut small, &caps()),
        Err(InsertError::BufferTooSmall)
    );
}

#[test]
fn truncated_and_garbage_frames_never_panic() {
    for len in 0..LINUX_SYN.len() {
        assert!(insert(&LINUX_SYN[..len]).is_err(), "prefix {len}");
        assert_eq!(classify_received(&LINUX_SYN[..len], &caps()), None);
    }
    // Malformed option (length byte 0) inside a SYN.
    let frame = build_frame(&[0x02, 0x00, 0x05, 0xb4], true, false, &[]);
    assert_eq!(insert(&frame), Err(InsertError::MalformedOptions));
    // Corrupted TCP data offset (below 5 words).
    let mut bad = LINUX_SYN.to_vec();
    bad[TCP_AT + 12] = 0x30;
    assert!(insert(&bad).is_err());
}

#[test]
fn option_parse_follows_linux_rules() {
    let cases: &[(&[u8], bool)] = &[
        (&SMC_OPTION_BLOCK, true),
        (&[0xfe, 0x06, 0xe2, 0xd4, 0xc3, 0xd9], true),
        // Even length 8 with trailing data: accepted.
        (&[0xfe, 0x08, 0xe2, 0xd4, 0xc3, 0xd9, 0x00, 0x00], true),
        // Odd length 7: rejected.
        (&[0xfe, 0x07, 0xe2, 0xd4, 0xc3, 0xd9, 0x00], false),
        // Length 4: too short, and so is the data.
        (&[0xfe, 0x04, 0xe2, 0xd4], false),
        // Wrong magic (byte order swapped).
        (&[0xfe, 0x06, 0xd9, 0xc3, 0xd4, 0xe2], false),
        // TCP Fast Open experimental option, not SMC.
        (&[0xfe, 0x06, 0xf9, 0x89, 0x00, 0x00], false),
        // After End-of-List nothing counts.
        (&[0x00, 0xfe, 0x06, 0xe2, 0xd4, 0xc3, 0xd9], false),
        // Kind 253 (the other experimental kind) with the magic: not SMC.
        (&[0xfd, 0x06, 0xe2, 0xd4, 0xc3, 0xd9], false),
        // Behind other options.
        (
            &[
                0x02, 0x04, 0x05, 0xb4, 0x01, 0xfe, 0x06, 0xe2, 0xd4, 0xc3, 0xd9,
            ],
            true,
        ),
        // Truncated: length says 6, only 5 bytes there.
        (&[0xfe, 0x06, 0xe2, 0xd4, 0xc3], false),
        (&[], false),
    ];
    for (options, expected) in cases {
        assert_eq!(options_carry_smc(options), *expected, "{options:02x?}");
    }
}

#[test]
fn received_option_counts_only_on_syn_with_good_checksum() {
    let segment = classify_received(&LINUX_SYN_WITH_SMC, &caps()).unwrap();
    assert!(segment.carries_smc && !segment.ack);
    assert_eq!((segment.source, segment.destination), (CLIENT, SERVER));

    // The block on a plain ACK: not a SYN, ignored.
    let ack = build_frame(&SMC_OPTION_BLOCK, false, true, &[]);
    assert_eq!(classify_received(&ack, &caps()), None);

    // Bad TCP checksum: smoltcp would drop it, so it must not be recorded either.
    let mut corrupt = LINUX_SYN_WITH_SMC.to_vec();
    corrupt[TCP_AT + 16] ^= 0xff;
    assert_eq!(classify_received(&corrupt, &caps()), None);
    // ...unless the device verifies checksums itself.
    assert!(classify_received(&corrupt, &ChecksumCapabilities::ignored()).is_some());
}

fn syn(from: IpEndpoint, to: IpEndpoint, ack: bool, carries_smc: bool) -> super::wire::SynSegment {
    super::wire::SynSegment {
        source: from,
        destination: to,
        ack,
        carries_smc,
        tcp_header_len: 40,
    }
}

#[test]
fn client_side_rules() {
    let mut table = SmcOptionTable::new();
    // Port not enabled: plain SYN, nothing recorded.
    assert!(!table.on_outgoing_syn(&syn(CLIENT, SERVER, false, false), true));
    assert_eq!(table.record_count(), 0);

    table.enable_port(CLIENT.port).unwrap();
    assert!(table.on_outgoing_syn(&syn(CLIENT, SERVER, false, false), true));
    assert!(!table.peer_smc_capable(CLIENT, SERVER));
    // SYN-ACK with the option: both sides capable.
    table.on_received_syn(&syn(SERVER, CLIENT, true, true));
    assert!(table.peer_smc_capable(CLIENT, SERVER));
    assert_eq!(
        table.exchange(CLIENT, SERVER),
        Some(OptionExchange {
            role: Role::Client,
            sent: true,
            received: true
        })
    );

    // A new connection on the same tuple whose SYN-ACK lacks the option: plain TCP.
    assert!(table.on_outgoing_syn(&syn(CLIENT, SERVER, false, false), true));
    table.on_received_syn(&syn(SERVER, CLIENT, true, false));
    assert!(!table.peer_smc_capable(CLIENT, SERVER));

    // No room for the option: not sent, so a SYN-ACK echo does not make it capable.
    assert!(!table.on_outgoing_syn(&syn(CLIENT, SERVER, false, false), false));
    table.on_received_syn(&syn(SERVER, CLIENT, true, true));
    assert!(!table.peer_smc_capable(CLIENT, SERVER));

    table.forget(CLIENT, SERVER);
    assert_eq!(table.exchange(CLIENT, SERVER), None);
}

#[test]
fn server_echo_rule() {
    let mut table = SmcOptionTable::new();
    let syn_ack = syn(SERVER, CLIENT, true, false);
    // Listener not enabled: SYN with option is not echoed.
    table.on_received_syn(&syn(CLIENT, SERVER, false, true));
    assert!(!table.on_outgoing_syn(&syn_ack, true));

    table.enable_port(SERVER.port).unwrap();
    // SYN without the option: no echo.
    table.on_received_syn(&syn(CLIENT, SERVER, false, false));
    assert!(!table.on_outgoing_syn(&syn_ack, true));
    assert!(!table.peer_smc_capable(SERVER, CLIENT));
    // SYN with the option: echo, capable.
    table.on_received_syn(&syn(CLIENT, SERVER, false, true));
    assert!(table.on_outgoing_syn(&syn_ack, true));
    assert!(table.peer_smc_capable(SERVER, CLIENT));
    // A SYN-ACK for a tuple that never sent a SYN: nothing.
    let other = IpEndpoint::new(CLIENT.addr, 50000);
    assert!(!table.on_outgoing_syn(&syn(SERVER, other, true, false), true));
    // Listener disabled before the SYN-ACK goes out: no echo.
    table.on_received_syn(&syn(CLIENT, SERVER, false, true));
    table.disable_port(SERVER.port);
    assert!(!table.on_outgoing_syn(&syn_ack, true));
    assert!(!table.peer_smc_capable(SERVER, CLIENT));
}

#[test]
fn table_capacity_is_bounded() {
    let mut table = SmcOptionTable::new();
    for port in 0..MAX_SMC_PORTS as u16 {
        table.enable_port(1000 + port).unwrap();
    }
    assert_eq!(table.enable_port(1000), Ok(()), "already enabled");
    assert_eq!(table.enable_port(9), Err(PolicyFull));
    table.disable_port(1000);
    assert_eq!(table.enable_port(9), Ok(()));

    // More handshakes than slots: the oldest record goes.
    for index in 0..=MAX_CONNECTIONS as u16 {
        let remote = IpEndpoint::new(SERVER.addr, 20000 + index);
        assert!(table.on_outgoing_syn(
            &syn(IpEndpoint::new(CLIENT.addr, 9), remote, false, false),
            true
        ));
    }
    assert_eq!(table.record_count(), MAX_CONNECTIONS);
    let local = IpEndpoint::new(CLIENT.addr, 9);
    assert_eq!(
        table.exchange(local, IpEndpoint::new(SERVER.addr, 20000)),
        None
    );
    assert!(table
        .exchange(local, IpEndpoint::new(SERVER.addr, 20001))
        .is_some());
}

// ---- A device made of two in-memory queues, logging every frame it sends. ----

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

struct PipeEnd {
    rx: Queue,
    tx: Queue,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
}

fn pipe() -> (PipeEnd, PipeEnd) {
    let (a, b): (Queue, Queue) = Default::default();
    (
        PipeEnd {
            rx: a.clone(),
            tx: b.clone(),
            sent: Default::default(),
        },
        PipeEnd {
            rx: b,
            tx: a,
            sent: Default::default(),
        },
    )
}

struct PipeRx(Vec<u8>);
struct PipeTx {
    tx: Queue,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl RxToken for PipeRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for PipeTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        self.sent.borrow_mut().push(frame.clone());
        self.tx.borrow_mut().push_back(frame);
        result
    }
}

impl Device for PipeEnd {
    type RxToken<'a> = PipeRx;
    type TxToken<'a> = PipeTx;

    fn receive(&mut self, _: Instant) -> Option<(PipeRx, PipeTx)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((PipeRx(frame), self.transmit_token()))
    }

    fn transmit(&mut self, _: Instant) -> Option<PipeTx> {
        Some(self.transmit_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

impl PipeEnd {
    fn transmit_token(&self) -> PipeTx {
        PipeTx {
            tx: self.tx.clone(),
            sent: self.sent.clone(),
        }
    }
}

#[test]
fn device_echoes_only_after_smc_syn() {
    let (wire_end, server_end) = pipe();
    let server_log = server_end.sent.clone();
    let mut device = SmcOptionDevice::new(server_end);
    device.enable_port(SERVER.port).unwrap();
    let syn_ack = build_syn_ack(&[0x02, 0x04, 0x05, 0xb4]);
    for (incoming, echoed) in [(&LINUX_SYN[..], false), (&LINUX_SYN_WITH_SMC[..], true)] {
        wire_end.tx.borrow_mut().push_back(incoming.to_vec());
        let (rx, _) = device.receive(Instant::ZERO).unwrap();
        let delivered = rx.consume(|frame| frame.to_vec());
        assert_eq!(delivered, incoming, "received frames pass unchanged");
        let tx = device.transmit(Instant::ZERO).unwrap();
        tx.consume(syn_ack.len(), |buffer| buffer.copy_from_slice(&syn_ack));
        let sent = server_log.borrow_mut().pop().unwrap();
        if echoed {
            let (header_len, options, _) = checked_tcp(&sent);
            assert_eq!(header_len, 32);
            assert_eq!(&options[4..], &SMC_OPTION_BLOCK);
        } else {
            assert_eq!(sent, syn_ack);
        }
        assert_eq!(device.peer_smc_capable(SERVER, CLIENT), echoed);
    }
    // Long frames pass through untouched.
    let long = build_frame(&[], false, true, &[0x5a; 1000]);
    let tx = device.transmit(Instant::ZERO).unwrap();
    tx.consume(long.len(), |buffer| buffer.copy_from_slice(&long));
    assert_eq!(server_log.borrow_mut().pop().unwrap(), long);
}

/// What one handshake between two smoltcp stacks looked like.
struct HandshakeOutcome {
    syn_carried: bool,
    syn_ack_carried: bool,
    client_capable: bool,
    server_capable: bool,
    client_frames: Vec<Vec<u8>>,
    server_frames: Vec<Vec<u8>>,
}

fn interface(device: &mut impl Device, last: u8) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
        0x02, 0, 0, 0, 0, last,
    ])));
    config.random_seed = u64::from(last);
    let mut iface = Interface::new(config, device, Instant::ZERO);
    iface.update_ip_addrs(|addresses| {
        addresses
            .push(IpCidr::new(IpAddress::v4(10, 0, 0, last), 24))
            .unwrap();
    });
    iface
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    )
}

/// Two smoltcp stacks over `client_device`/`server_device`: connect CLIENT to SERVER and
/// carry one message. Deterministic (fixed seeds and clock).
fn exchange(client_device: &mut impl Device, server_device: &mut impl Device) {
    let mut client_iface = interface(client_device, 1);
    let mut server_iface = interface(server_device, 2);
    let mut client_sockets = SocketSet::new(vec![]);
    let mut server_sockets = SocketSet::new(vec![]);
    let server_handle = server_sockets.add(tcp_socket());
    let client_handle = client_sockets.add(tcp_socket());
    server_sockets
        .get_mut::<tcp::Socket>(server_handle)
        .listen(SERVER.port)
        .unwrap();
    client_sockets
        .get_mut::<tcp::Socket>(client_handle)
        .connect(client_iface.context(), SERVER, CLIENT.port)
        .unwrap();

    let mut received = Vec::new();
    let mut sent_message = false;
    for millis in 0..2000 {
        let now = Instant::from_millis(millis);
        client_iface.poll(now, client_device, &mut client_sockets);
        server_iface.poll(now, server_device, &mut server_sockets);
        let client = client_sockets.get_mut::<tcp::Socket>(client_handle);
        if client.may_send() && !sent_message {
            assert_eq!(client.send_slice(b"hello smc").unwrap(), 9);
            sent_message = true;
        }
        let server = server_sockets.get_mut::<tcp::Socket>(server_handle);
        if server.can_recv() {
            let mut buffer = [0u8; 64];
            let n = server.recv_slice(&mut buffer).unwrap();
            received.extend_from_slice(&buffer[..n]);
        }
        if received.len() == 9 {
            break;
        }
    }
    assert_eq!(received, b"hello smc", "connection carried data");
}

/// Two stacks over a pipe, each behind the middleware: connect, exchange a message.
fn handshake(client_smc: bool, server_smc: bool) -> HandshakeOutcome {
    let (client_end, server_end) = pipe();
    let (client_log, server_log) = (client_end.sent.clone(), server_end.sent.clone());
    let mut client_device = SmcOptionDevice::new(client_end);
    let mut server_device = SmcOptionDevice::new(server_end);
    if server_smc {
        server_device.enable_port(SERVER.port).unwrap();
    }
    if client_smc {
        client_device.enable_port(CLIENT.port).unwrap();
    }
    exchange(&mut client_device, &mut server_device);

    let segments = |log: &Rc<RefCell<Vec<Vec<u8>>>>, ack: bool| -> Vec<bool> {
        log.borrow()
            .iter()
            .filter_map(|frame| classify_received(frame, &caps()))
            .filter(|segment| segment.ack == ack)
            .map(|segment| segment.carries_smc)
            .collect()
    };
    let syns = segments(&client_log, false);
    let syn_acks = segments(&server_log, true);
    assert_eq!(syns.len(), 1, "one SYN");
    assert_eq!(syn_acks.len(), 1, "one SYN-ACK");
    let client_frames = client_log.borrow().clone();
    let server_frames = server_log.borrow().clone();
    HandshakeOutcome {
        syn_carried: syns[0],
        syn_ack_carried: syn_acks[0],
        client_capable: client_device.peer_smc_capable(CLIENT, SERVER),
        server_capable: server_device.peer_smc_capable(SERVER, CLIENT),
        client_frames,
        server_frames,
    }
}

#[test]
fn two_stacks_negotiate_smc() {
    let outcome = handshake(true, true);
    assert!(outcome.syn_carried);
    assert!(outcome.syn_ack_carried);
    assert!(outcome.client_capable);
    assert!(outcome.server_capable);
    // Every frame on the wire is well-formed and the SYN kept smoltcp's MSS option.
    for frame in outcome.client_frames.iter().chain(&outcome.server_frames) {
        if let Some(segment) = classify_outgoing(frame) {
            let (_, _, repr) = checked_tcp(frame);
            assert!(repr.max_seg_size.is_some(), "{segment:?}");
        }
    }
}

#[test]
fn two_stacks_without_smc_listener() {
    let outcome = handshake(true, false);
    assert!(outcome.syn_carried);
    assert!(!outcome.syn_ack_carried);
    assert!(!outcome.client_capable);
    assert!(!outcome.server_capable);
}

#[test]
fn two_stacks_without_smc_client() {
    let outcome = handshake(false, true);
    assert!(!outcome.syn_carried);
    assert!(!outcome.syn_ack_carried);
    assert!(!outcome.client_capable);
    assert!(!outcome.server_capable);
}

#[test]
fn disabled_middleware_is_transparent() {
    // With SMC off on both sides, the frames equal byte for byte those of two bare stacks.
    let wrapped = handshake(false, false);
    assert!(!wrapped.syn_carried && !wrapped.syn_ack_carried);
    let (mut client_end, mut server_end) = pipe();
    let (client_log, server_log) = (client_end.sent.clone(), server_end.sent.clone());
    exchange(&mut client_end, &mut server_end);
    assert!(wrapped.client_frames.len() > 3);
    assert_eq!(wrapped.client_frames, *client_log.borrow());
    assert_eq!(wrapped.server_frames, *server_log.borrow());
}

mod hostile_input {
    use proptest::prelude::*;

    use super::*;

    /// Check what a successful rewrite must look like: valid lengths and checksums, the
    /// option recognised, and the original header fields unchanged.
    fn assert_well_formed_rewrite(original: &[u8], rewritten: &[u8]) {
        assert_eq!(rewritten.len(), original.len() + 8);
        let (_, options, repr) = checked_tcp(rewritten);
        assert!(options_carry_smc(&options));
        assert_eq!(repr.control, smoltcp::wire::TcpControl::Syn);
        // Ethernet header and the fixed TCP fields before the data offset are unchanged.
        assert_eq!(rewritten[..14], original[..14]);
        assert_eq!(
            rewritten[TCP_AT..TCP_AT + 12],
            original[TCP_AT..TCP_AT + 12]
        );
    }

    proptest! {
        /// Arbitrary bytes: no panic, and nothing is recorded or rewritten unless it
        /// parses as a TCP SYN.
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = classify_received(&frame, &caps());
            let _ = classify_outgoing(&frame);
            let mut out = [0u8; MAX_REWRITTEN_FRAME_LEN];
            if let Ok(len) = insert_smc_option(&frame, &mut out, &caps()) {
                assert!(classify_outgoing(&frame).is_some());
                assert_eq!(len, usize::from(u16::from_be_bytes([frame[16], frame[17]])) + 14 + 8);
            }
        }

        /// A real SYN with corrupted bytes in its options: either left alone with an
        /// error, or rewritten into a well-formed frame.
        #[test]
        fn corrupted_options_are_handled(
            position in 0usize..20,
            value in any::<u8>(),
            frame_choice in 0usize..2,
        ) {
            let mut frame = if frame_choice == 0 { LINUX_SYN.to_vec() } else { SMOLTCP_SYN.to_vec() };
            let options_at = TCP_AT + 20;
            let options_len = frame.len() - options_at;
            frame[options_at + position % options_len] = value;
            // Recompute the checksum so only the options are "hostile".
            {
                let mut tcp = TcpPacket::new_unchecked(&mut frame[TCP_AT..]);
                tcp.fill_checksum(&CLIENT.addr, &SERVER.addr);
            }
            match insert(&frame) {
                Ok(out) => assert_well_formed_rewrite(&frame, &out),
                Err(error) => assert_eq!(error, InsertError::MalformedOptions),
            }
        }
    }
}
