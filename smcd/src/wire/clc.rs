//! CLC (Connection Layer Control) handshake messages: typed views and `Repr`s.
//!
//! The four CLC messages travel in the TCP byte stream before SMC-D takes over
//! (protocol-reference §1, §2): Proposal (client → server), Accept (server → client),
//! Confirm (client → server) and Decline (either side, instead of its next message).
//! Layouts follow Linux `net/smc/smc_clc.h` so that we interoperate with Linux SMC-D.
//!
//! Every message is wrapped in the same 8-byte header and 4-byte trailer (§2.1). Each
//! message kind has:
//!
//! - a typed view `Packet<T: AsRef<[u8]>>` over the bytes (`ProposalPacket`,
//!   `AcceptConfirmPacket`, `DeclinePacket`, `HeaderPacket`) whose `new_checked` validates
//!   *every* length, offset and count taken from the wire; after a successful
//!   `new_checked` no accessor can panic. `new_unchecked` exists for emitting into a
//!   buffer; its accessors panic on a buffer that is too short (`# Panics`).
//! - a `Repr` (`ProposalRepr`, `AcceptConfirmRepr`, `DeclineRepr`) with `parse`, `emit`
//!   and `buffer_len`. `emit` writes every byte of the message (reserved bytes as zero),
//!   with Linux's canonical offsets, and refuses an inconsistent `Repr` or a short buffer
//!   with an error instead of panicking.
//!
//! [`ClcMessage::parse`] dispatches on the header; [`frame_len`] tells a stream reader how
//! many bytes the message whose header it has peeked will occupy.
//!
//! Receiving a message that fails these checks is a protocol error: Linux then fails the
//! connection (`-EPROTO`, no fallback), except for the cases [`ClcError::decline_code`]
//! names.
//!
//! Acronyms: GID/CHID (ISM device global id / channel id), DMB(E) (direct memory buffer
//! (element)), EID (enterprise id: SEID system EID, UEID user EID), FCE (first-contact
//! extension).

pub mod accept_confirm;
pub mod decline;
pub mod decline_code;
pub mod header;
pub mod proposal;

use core::fmt;

pub use accept_confirm::{
    AcceptConfirmKind, AcceptConfirmRepr, AcceptConfirmV2, FirstContactExt,
    Packet as AcceptConfirmPacket,
};
pub use decline::{DeclineRepr, Packet as DeclinePacket};
pub use decline_code::DeclineCode;
pub use header::{ClcHeader, Packet as HeaderPacket};
pub use proposal::{
    GidChid, IpPrefixArea, Ipv6Prefix, Packet as ProposalPacket, ProposalDevice, ProposalRepr,
    ProposalV2, SmcdV2Ext,
};

/// "SMCR" in EBCDIC: the eyecatcher Linux puts on Proposals and Declines (§2.1).
pub const EYECATCHER_SMCR: [u8; 4] = [0xE2, 0xD4, 0xC3, 0xD9];
/// "SMCD" in EBCDIC: the eyecatcher Linux puts on SMC-D Accepts and Confirms (§2.1).
pub const EYECATCHER_SMCD: [u8; 4] = [0xE2, 0xD4, 0xC3, 0xC4];
/// Length of the common header.
pub const HEADER_LEN: usize = 8;
/// Length of the trailer (the eyecatcher again).
pub const TRAILER_LEN: usize = 4;
/// Largest CLC message Linux accepts: a Proposal with 8 IPv6 prefixes, 8 UEIDs and
/// 8 GID/CHID entries (§2.1).
pub const MAX_MESSAGE_LEN: usize = 652;
/// Length of an EID (SEID or UEID) in bytes.
pub const EID_LEN: usize = 32;
/// Most IPv6 prefixes in a Proposal (Linux `SMC_CLC_MAX_V6_PREFIX`).
pub const MAX_IPV6_PREFIXES: usize = 8;
/// Most UEIDs in a Proposal (Linux `SMC_CLC_MAX_UEID`).
pub const MAX_UEIDS: usize = 8;
/// Most GID/CHID entries in a Proposal (Linux `SMCD_CLC_MAX_V2_GID_ENTRIES`).
pub const MAX_GID_CHID_ENTRIES: usize = 8;

/// Which of the two eyecatchers a message carries (§2.1). Receivers accept either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Eyecatcher {
    /// `E2 D4 C3 D9` ("SMCR"), used by Linux on Proposal and Decline.
    Smcr,
    /// `E2 D4 C3 C4` ("SMCD"), used by Linux on SMC-D Accept and Confirm.
    Smcd,
}

impl Eyecatcher {
    /// The four wire bytes.
    pub const fn bytes(self) -> [u8; 4] {
        match self {
            Eyecatcher::Smcr => EYECATCHER_SMCR,
            Eyecatcher::Smcd => EYECATCHER_SMCD,
        }
    }

    /// Recognises the four wire bytes.
    pub fn from_bytes(bytes: [u8; 4]) -> Option<Self> {
        match bytes {
            EYECATCHER_SMCR => Some(Eyecatcher::Smcr),
            EYECATCHER_SMCD => Some(Eyecatcher::Smcd),
            _ => None,
        }
    }
}

/// CLC message type (header byte 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: client's offer.
    Proposal,
    /// 2: server's choice.
    Accept,
    /// 3: client's confirmation.
    Confirm,
    /// 4: refusal; both sides fall back to TCP.
    Decline,
}

impl MessageType {
    /// Wire value.
    pub const fn code(self) -> u8 {
        match self {
            MessageType::Proposal => 1,
            MessageType::Accept => 2,
            MessageType::Confirm => 3,
            MessageType::Decline => 4,
        }
    }

    /// Recognises a wire value.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(MessageType::Proposal),
            2 => Some(MessageType::Accept),
            3 => Some(MessageType::Confirm),
            4 => Some(MessageType::Decline),
            _ => None,
        }
    }

    /// Smallest length a message of this type can have on the wire.
    pub const fn min_len(self) -> usize {
        match self {
            // v1 SMC-R-only Proposal without IPv6 prefixes: 40 + 8 + 4.
            MessageType::Proposal => 52,
            MessageType::Accept | MessageType::Confirm => accept_confirm::LEN_V1,
            MessageType::Decline => decline::LEN_V1,
        }
    }

    /// Largest length a message of this type can have (SMC-D only for Accept/Confirm).
    pub const fn max_len(self) -> usize {
        match self {
            MessageType::Proposal => MAX_MESSAGE_LEN,
            MessageType::Accept | MessageType::Confirm => accept_confirm::LEN_V2_FCE_REL1,
            MessageType::Decline => decline::LEN_V2,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            MessageType::Proposal => "Proposal",
            MessageType::Accept => "Accept",
            MessageType::Confirm => "Confirm",
            MessageType::Decline => "Decline",
        };
        f.write_str(s)
    }
}

/// SMC type code used in the header's `typev1`/`typev2` fields (§2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmcType {
    /// 0: SMC-R.
    R,
    /// 1: SMC-D.
    D,
    /// 2: none.
    N,
    /// 3: both SMC-R and SMC-D.
    B,
}

impl SmcType {
    /// Wire value (2 bits).
    pub const fn code(self) -> u8 {
        match self {
            SmcType::R => 0,
            SmcType::D => 1,
            SmcType::N => 2,
            SmcType::B => 3,
        }
    }

    /// Decodes the low two bits of `code`.
    pub const fn from_code(code: u8) -> Self {
        match code & 0x03 {
            0 => SmcType::R,
            1 => SmcType::D,
            2 => SmcType::N,
            _ => SmcType::B,
        }
    }

    /// True for D and B (Linux `smcd_indicated`).
    pub const fn offers_d(self) -> bool {
        matches!(self, SmcType::D | SmcType::B)
    }

    /// True for R and B (Linux `smcr_indicated`).
    pub const fn offers_r(self) -> bool {
        matches!(self, SmcType::R | SmcType::B)
    }

    /// True unless N.
    pub const fn offers_any(self) -> bool {
        !matches!(self, SmcType::N)
    }
}

/// An EID (enterprise id, 32 bytes): the SEID or a UEID (§2.2, §2.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eid(pub [u8; EID_LEN]);

/// Why a string is not a valid UEID (Linux `smc_clc_ueid_valid`, §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UeidError {
    /// Empty or only blanks.
    Empty,
    /// Longer than 32 bytes.
    TooLong(usize),
    /// First character is not an upper-case letter or digit.
    BadFirstChar(u8),
    /// A character other than `A-Z`, `0-9`, `.`, `-` at this index.
    BadChar {
        /// Index of the character.
        index: usize,
        /// The byte found.
        byte: u8,
    },
}

impl fmt::Display for UeidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UeidError::Empty => f.write_str("UEID is empty"),
            UeidError::TooLong(n) => write!(f, "UEID is {n} bytes long, at most 32 allowed"),
            UeidError::BadFirstChar(b) => {
                write!(f, "UEID must start with A-Z or 0-9, found byte {b:#04x}")
            }
            UeidError::BadChar { index, byte } => write!(
                f,
                "UEID byte {index} is {byte:#04x}; only A-Z, 0-9, '.', '-' are allowed"
            ),
        }
    }
}

impl Default for Eid {
    fn default() -> Self {
        Eid::ZERO
    }
}

impl Eid {
    /// The all-zero EID (what Linux sends as SEID on non-s390 machines).
    pub const ZERO: Eid = Eid([0; EID_LEN]);

    /// Builds a UEID from text, checking Linux's rules (§2.5): 1–32 characters of
    /// upper-case letters, digits, `.` and `-`, the first one alphanumeric; trailing
    /// blanks are allowed and the result is padded with blanks (`0x20`) to 32 bytes.
    pub fn ueid(text: &str) -> Result<Eid, UeidError> {
        let bytes = text.as_bytes();
        if bytes.len() > EID_LEN {
            return Err(UeidError::TooLong(bytes.len()));
        }
        let mut buf = [b' '; EID_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        let eid = Eid(buf);
        eid.check_ueid()?;
        Ok(eid)
    }

    /// Checks the 32 bytes against Linux's UEID rules (see [`Eid::ueid`]).
    pub fn check_ueid(&self) -> Result<(), UeidError> {
        let end = self
            .0
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .ok_or(UeidError::Empty)?;
        let first = self.0[0];
        if !(first.is_ascii_uppercase() || first.is_ascii_digit()) {
            return Err(UeidError::BadFirstChar(first));
        }
        for (index, &byte) in self.0[..=end].iter().enumerate() {
            let ok =
                byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'.' || byte == b'-';
            if !ok {
                return Err(UeidError::BadChar { index, byte });
            }
        }
        Ok(())
    }

    /// True when this EID is all zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Debug for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("Eid(zero)");
        }
        f.write_str("Eid(\"")?;
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\")")
    }
}

/// Where an eyecatcher was found to be invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EyecatcherPosition {
    /// Bytes 0–3.
    Header,
    /// The last four bytes of the message.
    Trailer,
}

/// An offset field of the Proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetField {
    /// `iparea_offset` (bytes 38–39): from offset 40 to the IP prefix area.
    IpAreaOffset,
    /// `v2_ext_offset` (bytes 50–51): from offset 52 to the v2 extension.
    V2ExtOffset,
    /// `smcd_v2_ext_offset` (v2 extension +6): from (v2 extension + 8) to the SMC-Dv2 extension.
    SmcdV2ExtOffset,
}

/// A count field of the Proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountField {
    /// IPv6 prefix count in the IP prefix area.
    Ipv6Prefixes,
    /// EID (UEID) count in the v2 extension.
    Ueids,
    /// ISM GID/CHID entry count in the v2 extension.
    GidChidEntries,
}

/// A variable area of the Proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// The 40-byte SMC-D area at offset 40.
    SmcdArea,
    /// The IP prefix area (8 bytes + 17 per IPv6 prefix).
    IpPrefix,
    /// The v2 extension (40 bytes + 32 per UEID).
    V2Extension,
    /// The SMC-Dv2 extension (48 bytes + 10 per GID/CHID entry).
    SmcdV2Extension,
}

/// Why a `Repr` cannot be emitted: its fields contradict each other or the wire limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconsistency {
    /// `version` is 0 or above 15 (4 bits).
    Version,
    /// A v1 Proposal must offer something for v1 (`typev1` ≠ N).
    V1ProposalWithoutType,
    /// `ip_prefix` must be present exactly when `typev1` ≠ N.
    IpPrefixPresence,
    /// `v2` must be present exactly when `version` ≥ 2 and `typev2` ≠ N.
    V2ExtensionPresence,
    /// `v2.smcd` must be present exactly when `typev2` offers SMC-D.
    SmcdV2ExtensionPresence,
    /// A v1 SMC-R-only Proposal has no SMC-D area: its ISM GID and CHID must be 0.
    SmcdAreaWithoutSmcd,
    /// Release, OS type or DMBE size does not fit its 4 bits.
    NibbleOverflow,
    /// `v2` must be present exactly when `version` ≥ 2 (Accept/Confirm).
    AcceptConfirmV2Presence,
    /// The first-contact extension must be present exactly when `first_contact` is set (v2).
    FirstContactExtPresence,
    /// A release-0 first-contact extension has no feature mask or vendor options.
    Release0Fields,
    /// A Decline's `smc_type` must be R or D.
    DeclineType,
    /// A v1 Decline has no extra diagnosis codes: they must be zero.
    V1DeclineExtraCodes,
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Inconsistency::Version => "version must be 1..=15",
            Inconsistency::V1ProposalWithoutType => "a v1 Proposal must offer a v1 type",
            Inconsistency::IpPrefixPresence => "IP prefix area must be present iff typev1 != N",
            Inconsistency::V2ExtensionPresence => {
                "v2 extension must be present iff version >= 2 and typev2 != N"
            }
            Inconsistency::SmcdV2ExtensionPresence => {
                "SMC-Dv2 extension must be present iff typev2 offers SMC-D"
            }
            Inconsistency::SmcdAreaWithoutSmcd => {
                "v1 Proposal without SMC-D cannot carry an ISM GID/CHID"
            }
            Inconsistency::NibbleOverflow => "release, OS type or DMBE size exceeds 4 bits",
            Inconsistency::AcceptConfirmV2Presence => "v2 fields must be present iff version >= 2",
            Inconsistency::FirstContactExtPresence => {
                "first-contact extension must be present iff first_contact (v2)"
            }
            Inconsistency::Release0Fields => {
                "release 0 first-contact extension has no feature mask or vendor options"
            }
            Inconsistency::DeclineType => "Decline type must be SMC-R or SMC-D",
            Inconsistency::V1DeclineExtraCodes => "v1 Decline cannot carry extra codes",
        };
        f.write_str(s)
    }
}

/// Everything that can be wrong with CLC bytes (or with a `Repr` to emit).
///
/// Each variant names the field and what was wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClcError {
    /// The buffer holds fewer bytes than the message (or its header) needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// An eyecatcher is neither "SMCR" nor "SMCD".
    BadEyecatcher {
        /// Header or trailer.
        position: EyecatcherPosition,
        /// The bytes found.
        found: [u8; 4],
    },
    /// Header byte 4 is not 1..=4.
    UnknownMessageType(u8),
    /// The message is of another type than the parser was asked for.
    UnexpectedMessageType {
        /// What the caller expected.
        expected: MessageType,
        /// What the header says.
        found: MessageType,
    },
    /// Header version is 0 (Linux requires ≥ 1).
    BadVersion(u8),
    /// The length field is outside what this message type allows.
    LengthOutOfRange {
        /// Message type from the header.
        kind: MessageType,
        /// Length field.
        length: u16,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The length field differs from the exact length this message's variant has.
    BadLength {
        /// Message type from the header.
        kind: MessageType,
        /// Length field.
        length: u16,
        /// Exact length required (Linux's rule for this variant).
        expected: usize,
    },
    /// `typev1` is not allowed here (Accept/Confirm/Decline need R or D; a v1 Proposal
    /// needs something other than N).
    BadSmcType {
        /// Message type from the header.
        kind: MessageType,
        /// The `typev1` value found.
        typev1: u8,
    },
    /// An SMC-R Accept/Confirm (`typev1` = 0): well-formed for Linux but not supported
    /// here (we never offer SMC-R).
    SmcRAcceptConfirm {
        /// Accept or Confirm.
        kind: MessageType,
    },
    /// An offset field exceeds Linux's limit.
    OffsetTooLarge {
        /// Which offset.
        field: OffsetField,
        /// Value found.
        value: u16,
        /// Largest allowed.
        max: u16,
    },
    /// An offset field has a value other than the only one allowed here
    /// (`iparea_offset` must be 40 when `typev1` offers SMC-D).
    BadOffset {
        /// Which offset.
        field: OffsetField,
        /// Value found.
        value: u16,
        /// Value required.
        expected: u16,
    },
    /// A required area is announced absent (offset 0).
    MissingArea(Area),
    /// An area (as placed by its offset and sized by its count) extends past the trailer.
    AreaOutOfBounds {
        /// Which area.
        area: Area,
        /// Its first byte.
        start: usize,
        /// One past its last byte.
        end: usize,
        /// Where the trailer starts.
        limit: usize,
    },
    /// A count field exceeds Linux's maximum.
    CountTooLarge {
        /// Which count.
        field: CountField,
        /// Value found.
        value: u8,
        /// Largest allowed.
        max: u8,
    },
    /// The Proposal length differs from Linux's exact formula (§2.2).
    ProposalLength {
        /// Length field.
        length: u16,
        /// Length computed from the type fields and counts.
        computed: usize,
    },
    /// `emit` was given a buffer that is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `emit` was given a `Repr` that cannot be encoded.
    Inconsistent(Inconsistency),
}

impl ClcError {
    /// The Decline code Linux answers this error with, if it answers with a Decline at all
    /// (for every other error Linux fails the connection with `-EPROTO`).
    ///
    /// Only an SMC-R Accept maps to a Decline: a client that did not offer SMC-R refuses
    /// it with `0x03040000` (MODEUNSUPP, §2.5).
    pub fn decline_code(&self) -> Option<DeclineCode> {
        match self {
            ClcError::SmcRAcceptConfirm { .. } => Some(DeclineCode::MODEUNSUPP),
            _ => None,
        }
    }
}

impl fmt::Display for ClcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClcError::Truncated { needed, available } => {
                write!(
                    f,
                    "CLC message truncated: need {needed} bytes, have {available}"
                )
            }
            ClcError::BadEyecatcher { position, found } => {
                write!(f, "bad CLC eyecatcher in {position:?}: {found:02x?}")
            }
            ClcError::UnknownMessageType(t) => write!(f, "unknown CLC message type {t}"),
            ClcError::UnexpectedMessageType { expected, found } => {
                write!(f, "expected CLC {expected}, got {found}")
            }
            ClcError::BadVersion(v) => write!(f, "bad CLC version {v}"),
            ClcError::LengthOutOfRange {
                kind,
                length,
                min,
                max,
            } => {
                write!(f, "CLC {kind} length {length} outside {min}..={max}")
            }
            ClcError::BadLength {
                kind,
                length,
                expected,
            } => {
                write!(f, "CLC {kind} length {length}, expected {expected}")
            }
            ClcError::BadSmcType { kind, typev1 } => {
                write!(f, "CLC {kind} has invalid typev1 {typev1}")
            }
            ClcError::SmcRAcceptConfirm { kind } => {
                write!(f, "CLC {kind} is SMC-R, which is not supported")
            }
            ClcError::OffsetTooLarge { field, value, max } => {
                write!(f, "Proposal {field:?} {value} exceeds {max}")
            }
            ClcError::BadOffset {
                field,
                value,
                expected,
            } => {
                write!(f, "Proposal {field:?} is {value}, must be {expected}")
            }
            ClcError::MissingArea(area) => write!(f, "Proposal lacks its {area:?}"),
            ClcError::AreaOutOfBounds {
                area,
                start,
                end,
                limit,
            } => write!(
                f,
                "Proposal {area:?} spans {start}..{end}, past the trailer at {limit}"
            ),
            ClcError::CountTooLarge { field, value, max } => {
                write!(f, "Proposal {field:?} count {value} exceeds {max}")
            }
            ClcError::ProposalLength { length, computed } => {
                write!(
                    f,
                    "Proposal length {length}, but its contents need {computed}"
                )
            }
            ClcError::BufferTooSmall { needed, available } => {
                write!(f, "emit needs {needed} bytes, buffer has {available}")
            }
            ClcError::Inconsistent(what) => write!(f, "cannot emit CLC message: {what}"),
        }
    }
}

/// How many bytes the CLC message whose 8-byte header a stream reader has peeked
/// occupies in total (header and trailer included).
///
/// Validates the eyecatcher, the type, the version (≥ 1) and the length against the
/// type's bounds (`MessageType::min_len`..=`MessageType::max_len`, never above
/// [`MAX_MESSAGE_LEN`] = 652), so a reader never waits for or buffers more than that.
pub fn frame_len(header: &[u8; HEADER_LEN]) -> Result<usize, ClcError> {
    let packet = HeaderPacket::new_unchecked(&header[..]);
    let repr = ClcHeader::parse_fields(&packet)?;
    let length = usize::from(repr.length);
    let kind = repr.message_type;
    if length < kind.min_len() || length > kind.max_len() {
        return Err(ClcError::LengthOutOfRange {
            kind,
            length: repr.length,
            min: kind.min_len(),
            max: kind.max_len(),
        });
    }
    Ok(length)
}

/// Checks the trailer of a message whose length field has been validated against the
/// buffer (`length >= HEADER_LEN + TRAILER_LEN`, `length <= buf.len()`).
pub(crate) fn check_trailer(buf: &[u8], length: usize) -> Result<(), ClcError> {
    let mut found = [0u8; 4];
    found.copy_from_slice(&buf[length - TRAILER_LEN..length]);
    match Eyecatcher::from_bytes(found) {
        Some(_) => Ok(()),
        None => Err(ClcError::BadEyecatcher {
            position: EyecatcherPosition::Trailer,
            found,
        }),
    }
}

/// Reads a big-endian `u16` at `at`.
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian `u32` at `at`.
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(b)
}

/// Reads a big-endian `u64` at `at`.
pub(crate) fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Copies `N` bytes at `at` into an array.
pub(crate) fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&buf[at..at + N]);
    b
}

/// One parsed CLC message of any type.
///
/// The Proposal variant is large (its lists are inline `heapless` vectors, so parsing
/// needs no allocator); a message is handled once per handshake, so it is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClcMessage {
    /// Proposal (type 1).
    Proposal(ProposalRepr),
    /// Accept (type 2) or Confirm (type 3); the `kind` field tells which.
    AcceptConfirm(AcceptConfirmRepr),
    /// Decline (type 4).
    Decline(DeclineRepr),
}

impl ClcMessage {
    /// Parses the message at the start of `buf` (which must hold at least the header's
    /// `length` bytes; bytes beyond it are not looked at).
    pub fn parse(buf: &[u8]) -> Result<ClcMessage, ClcError> {
        let header = ClcHeader::parse(&HeaderPacket::new_checked(buf)?)?;
        match header.message_type {
            MessageType::Proposal => {
                ProposalRepr::parse(&ProposalPacket::new_checked(buf)?).map(ClcMessage::Proposal)
            }
            MessageType::Accept | MessageType::Confirm => {
                AcceptConfirmRepr::parse(&AcceptConfirmPacket::new_checked(buf)?)
                    .map(ClcMessage::AcceptConfirm)
            }
            MessageType::Decline => {
                DeclineRepr::parse(&DeclinePacket::new_checked(buf)?).map(ClcMessage::Decline)
            }
        }
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            ClcMessage::Proposal(_) => MessageType::Proposal,
            ClcMessage::AcceptConfirm(r) => r.kind.message_type(),
            ClcMessage::Decline(_) => MessageType::Decline,
        }
    }

    /// Bytes [`ClcMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            ClcMessage::Proposal(r) => r.buffer_len(),
            ClcMessage::AcceptConfirm(r) => r.buffer_len(),
            ClcMessage::Decline(r) => r.buffer_len(),
        }
    }

    /// Writes the message at the start of `buf`; returns the number of bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ClcError> {
        match self {
            ClcMessage::Proposal(r) => r.emit(buf),
            ClcMessage::AcceptConfirm(r) => r.emit(buf),
            ClcMessage::Decline(r) => r.emit(buf),
        }
    }
}
