//! SMC TCP option: recognise it in received SYNs, splice it into outgoing SYNs.
//!
//! Protocol reference §1 "Capability detection (TCP option)": kind 254 (experimental),
//! length 6, then the 32-bit ExID `0xE2D4C3D9` in BE. Linux writes it as the 8-byte block
//! `01 01 FE 06 E2 D4 C3 D9` and only when 8 bytes of option space remain; it accepts it
//! only on SYN segments whose option length is even and ≥ 6 and whose first four data
//! bytes equal the magic. All header parsing, emitting and checksumming goes through
//! `smoltcp::wire`; this file only decides where the eight bytes go.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, TcpOption,
    TcpPacket,
};

/// TCP option kind used by SMC (254, "experimental", RFC 6994 shared experimental kind).
pub const SMC_OPTION_KIND: u8 = 254;
/// The SMC experiment identifier (ExID), "SMCR" in EBCDIC, sent big-endian.
pub const SMC_OPTION_MAGIC: u32 = 0xE2D4_C3D9;
/// Minimum option length (kind + length + 4-byte ExID), Linux `TCPOLEN_EXP_SMC_BASE`.
pub const SMC_OPTION_MIN_LEN: usize = 6;
/// The block Linux emits: two NOPs, then kind 254, length 6, magic (protocol reference §1).
pub const SMC_OPTION_BLOCK: [u8; 8] = [0x01, 0x01, 0xFE, 0x06, 0xE2, 0xD4, 0xC3, 0xD9];

/// Largest TCP header (data offset 15 words).
pub(crate) const TCP_MAX_HEADER_LEN: usize = 60;
/// Fixed part of the TCP header.
const TCP_FIXED_HEADER_LEN: usize = 20;
/// Ethernet II header length (no VLAN tag: smoltcp does not emit tagged frames).
const ETHERNET_HEADER_LEN: usize = 14;
/// Largest IPv4 header.
const IPV4_MAX_HEADER_LEN: usize = 60;

/// Longest frame that can be a SYN without payload: Ethernet + largest IPv4 and TCP
/// headers. smoltcp never puts payload into a SYN, so longer frames are passed through.
pub const MAX_SYN_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV4_MAX_HEADER_LEN + TCP_MAX_HEADER_LEN;

/// Longest frame [`insert_smc_option`] can produce.
pub const MAX_REWRITTEN_FRAME_LEN: usize = MAX_SYN_FRAME_LEN + SMC_OPTION_BLOCK.len();

/// Does this options area carry the SMC option?  Linux `tcp_parse_options` +
/// `smc_parse_options`: walk the options until End-of-List or the first malformed option;
/// kind 254 counts when its length is even, at least 6, and the ExID matches (BE).
///
/// The caller must only ask for segments with SYN set (Linux ignores it elsewhere).
pub fn options_carry_smc(mut options: &[u8]) -> bool {
    while !options.is_empty() {
        let Ok((rest, option)) = TcpOption::parse(options) else {
            // Linux stops at a truncated or too-short option ("silly options").
            return false;
        };
        match option {
            TcpOption::EndOfList => return false,
            TcpOption::Unknown { kind, data } if kind == SMC_OPTION_KIND => {
                let option_len = data.len() + 2;
                if option_len % 2 == 0
                    && option_len >= SMC_OPTION_MIN_LEN
                    && data[..4] == SMC_OPTION_MAGIC.to_be_bytes()
                {
                    return true;
                }
            }
            _ => {}
        }
        options = rest;
    }
    false
}

/// What a TCP SYN or SYN-ACK inside an Ethernet/IPv4 frame looks like to the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynSegment {
    /// Source address and port.
    pub source: IpEndpoint,
    /// Destination address and port.
    pub destination: IpEndpoint,
    /// ACK set too (a SYN-ACK).
    pub ack: bool,
    /// The segment carries a valid SMC option (Linux parse rules).
    pub carries_smc: bool,
    /// TCP header length in bytes.
    pub tcp_header_len: usize,
}

/// Why a frame was left unchanged by [`insert_smc_option`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Not an unfragmented Ethernet/IPv4/TCP frame with a well-formed header.
    NotTcp,
    /// The TCP segment does not have SYN set.
    NotSyn,
    /// Fewer than 8 bytes of option space remain (data offset would exceed 15 words).
    NoOptionSpace,
    /// The options area does not parse with `smoltcp::wire::TcpOption`.
    MalformedOptions,
    /// The output buffer is shorter than the frame plus 8 bytes.
    BufferTooSmall,
}

/// Offsets of the headers inside a frame that passed [`parse_tcp_frame`].
struct TcpFrame {
    ip_header_len: usize,
    ip_total_len: usize,
    segment: SynSegment,
    syn: bool,
}

/// Parse an Ethernet frame down to its TCP header. `verify` says which checksums to check
/// (the receive path follows the device's checksum capabilities; the transmit path
/// trusts smoltcp's own output and verifies nothing).
fn parse_tcp_frame(frame: &[u8], verify: Option<&ChecksumCapabilities>) -> Option<TcpFrame> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.version() != 4
        || ip.next_header() != IpProtocol::Tcp
        || ip.more_frags()
        || ip.frag_offset() != 0
    {
        return None;
    }
    if let Some(caps) = verify {
        if caps.ipv4.rx() && !ip.verify_checksum() {
            return None;
        }
    }
    let source = IpAddress::Ipv4(ip.src_addr());
    let destination = IpAddress::Ipv4(ip.dst_addr());
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if let Some(caps) = verify {
        if caps.tcp.rx() && !tcp.verify_checksum(&source, &destination) {
            return None;
        }
    }
    let syn = tcp.syn();
    Some(TcpFrame {
        ip_header_len: usize::from(ip.header_len()),
        ip_total_len: usize::from(ip.total_len()),
        syn,
        segment: SynSegment {
            source: IpEndpoint::new(source, tcp.src_port()),
            destination: IpEndpoint::new(destination, tcp.dst_port()),
            ack: tcp.ack(),
            carries_smc: syn && options_carry_smc(tcp.options()),
            tcp_header_len: usize::from(tcp.header_len()),
        },
    })
}

/// Classify a received frame: `Some` only for a well-formed TCP SYN or SYN-ACK whose
/// checksums verify (per `caps`, as smoltcp would check them). Never panics.
pub fn classify_received(frame: &[u8], caps: &ChecksumCapabilities) -> Option<SynSegment> {
    parse_tcp_frame(frame, Some(caps))
        .filter(|parsed| parsed.syn)
        .map(|parsed| parsed.segment)
}

/// Classify a frame smoltcp is about to send: `Some` only for a TCP SYN or SYN-ACK.
pub fn classify_outgoing(frame: &[u8]) -> Option<SynSegment> {
    parse_tcp_frame(frame, None)
        .filter(|parsed| parsed.syn)
        .map(|parsed| parsed.segment)
}

/// Copy `frame` (an Ethernet/IPv4/TCP SYN or SYN-ACK) into `out` with the SMC option
/// block added to the TCP options, and return the new frame length.
///
/// The block goes after the existing options and before any End-of-List padding, so the
/// options smoltcp wrote (MSS, window scale, SACK-permitted, timestamps) keep their bytes.
/// TCP data offset, IPv4 total length and both checksums are updated (checksums only if
/// `caps` says software computes them on transmit, as smoltcp does).
///
/// # Errors
/// Returns why the frame cannot take the option; `out` is then unspecified and the
/// caller sends the original frame.
pub fn insert_smc_option(
    frame: &[u8],
    out: &mut [u8],
    caps: &ChecksumCapabilities,
) -> Result<usize, InsertError> {
    let parsed = parse_tcp_frame(frame, None).ok_or(InsertError::NotTcp)?;
    if !parsed.syn {
        return Err(InsertError::NotSyn);
    }
    let tcp_header_len = parsed.segment.tcp_header_len;
    if tcp_header_len + SMC_OPTION_BLOCK.len() > TCP_MAX_HEADER_LEN {
        return Err(InsertError::NoOptionSpace);
    }
    let grow = SMC_OPTION_BLOCK.len();
    let ip_start = ETHERNET_HEADER_LEN;
    let tcp_start = ip_start + parsed.ip_header_len;
    let ip_end = ip_start + parsed.ip_total_len;
    let new_len = ip_end + grow;
    if out.len() < new_len {
        return Err(InsertError::BufferTooSmall);
    }

    // Where the block goes: after the last option before End-of-List (or the end).
    let options = &frame[tcp_start + TCP_FIXED_HEADER_LEN..tcp_start + tcp_header_len];
    let mut rest = options;
    while !rest.is_empty() {
        let (next, option) = TcpOption::parse(rest).map_err(|_| InsertError::MalformedOptions)?;
        if option == TcpOption::EndOfList {
            break;
        }
        rest = next;
    }
    let split = tcp_start + TCP_FIXED_HEADER_LEN + (options.len() - rest.len());

    // Ethernet, IPv4, TCP fixed header and the options before the split: unchanged.
    out[..split].copy_from_slice(&frame[..split]);
    // The block, emitted through smoltcp's option writer.
    let mut block = &mut out[split..split + grow];
    for option in [
        TcpOption::NoOperation,
        TcpOption::NoOperation,
        TcpOption::Unknown {
            kind: SMC_OPTION_KIND,
            data: &SMC_OPTION_MAGIC.to_be_bytes(),
        },
    ] {
        block = option.emit(block);
    }
    debug_assert!(block.is_empty());
    // End-of-List padding and payload, shifted by eight bytes; trailing Ethernet padding
    // (beyond the IPv4 total length) is dropped.
    out[split + grow..new_len].copy_from_slice(&frame[split..ip_end]);

    let new_ip_total =
        u16::try_from(parsed.ip_total_len + grow).map_err(|_| InsertError::NotTcp)?;
    let (source, destination) = (parsed.segment.source.addr, parsed.segment.destination.addr);
    {
        let mut tcp = TcpPacket::new_unchecked(&mut out[tcp_start..new_len]);
        // Header length fits: checked against TCP_MAX_HEADER_LEN above.
        tcp.set_header_len((tcp_header_len + grow) as u8);
        if caps.tcp.tx() {
            tcp.fill_checksum(&source, &destination);
        }
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut out[ip_start..new_len]);
    ip.set_total_len(new_ip_total);
    if caps.ipv4.tx() {
        ip.fill_checksum();
    }
    Ok(new_len)
}
