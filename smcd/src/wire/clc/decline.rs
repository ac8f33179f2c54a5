//! CLC Decline: v1 (28 bytes) and v2 (44 bytes) (protocol-reference §2.4).

use super::header::{self, ClcHeader, FLAG_BIT};
use super::{ClcError, DeclineCode, Eyecatcher, Inconsistency, MessageType, SmcType};

/// Byte ranges of a Decline.
mod field {
    use core::ops::Range;
    pub const VERSION_TYPES: usize = 7;
    pub const PEER_ID: Range<usize> = 8..16;
    pub const CODE: Range<usize> = 16..20;
    /// bits 7–4 OS type, bits 3–0 reserved.
    pub const OS_TYPE: usize = 20;
    pub const RESERVED: Range<usize> = 21..24;
    /// v2 only: four more diagnosis codes.
    pub const EXTRA_CODES: Range<usize> = 24..40;
}

/// Length of a v1 Decline.
pub const LEN_V1: usize = 28;
/// Length of a v2 Decline.
pub const LEN_V2: usize = 44;

/// A view of a Decline.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// # Panics
    /// Accessors panic if the buffer is shorter than the fields they read.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer after validating it (§2.1): header, type Decline,
    /// `typev1` ∈ {R, D}, length exactly 28 (v1) or 44 (v2+), whole message present,
    /// valid trailer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ClcError> {
        let buf = buffer.as_ref();
        let hdr = header::check_message(buf, &[MessageType::Decline], LEN_V1, LEN_V2)?;
        let expected = if hdr.version == 1 { LEN_V1 } else { LEN_V2 };
        if usize::from(hdr.length) != expected {
            return Err(ClcError::BadLength {
                kind: MessageType::Decline,
                length: hdr.length,
                expected,
            });
        }
        if hdr.typev1 > 1 {
            return Err(ClcError::BadSmcType {
                kind: MessageType::Decline,
                typev1: hdr.typev1,
            });
        }
        Ok(Packet { buffer })
    }

    /// The header view.
    pub fn header(&self) -> header::Packet<&[u8]> {
        header::Packet::new_unchecked(self.buffer.as_ref())
    }

    /// Out-of-sync flag (bit 3 of byte 7).
    pub fn out_of_sync(&self) -> bool {
        self.buffer.as_ref()[field::VERSION_TYPES] & FLAG_BIT != 0
    }

    /// Sender's peer (system) id.
    pub fn peer_id(&self) -> [u8; 8] {
        super::array(self.buffer.as_ref(), field::PEER_ID.start)
    }

    /// Diagnosis code.
    pub fn code(&self) -> DeclineCode {
        DeclineCode(super::be32(self.buffer.as_ref(), field::CODE.start))
    }

    /// OS type (bits 7–4 of byte 20).
    pub fn os_type(&self) -> u8 {
        self.buffer.as_ref()[field::OS_TYPE] >> 4
    }

    /// Extra diagnosis code `i` (0..4); `None` for a v1 Decline or `i` ≥ 4.
    pub fn extra_code(&self, i: usize) -> Option<DeclineCode> {
        let buf = self.buffer.as_ref();
        if i >= 4 || buf[field::VERSION_TYPES] >> 4 < 2 || buf.len() < LEN_V2 {
            return None;
        }
        Some(DeclineCode(super::be32(
            buf,
            field::EXTRA_CODES.start + 4 * i,
        )))
    }
}

/// A Decline's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclineRepr {
    /// Eyecatcher (Linux sends "SMCR").
    pub eyecatcher: Eyecatcher,
    /// Version: 1 → 28 bytes, ≥ 2 → 44 bytes.
    pub version: u8,
    /// Out-of-sync flag: the sender's link-group state no longer matches ours; Linux sets
    /// it only with [`DeclineCode::SYNCERR`].
    pub out_of_sync: bool,
    /// `typev1` (R or D; Linux sends R = 0).
    pub smc_type: SmcType,
    /// Sender's peer (system) id; zero for SMC-D.
    pub peer_id: [u8; 8],
    /// Diagnosis code.
    pub code: DeclineCode,
    /// OS type (4 bits; Linux sends 0 in v1, 2 = Linux in v2).
    pub os_type: u8,
    /// Four extra diagnosis codes (v2 only; zero in v1; Linux sends zeros).
    pub extra_codes: [DeclineCode; 4],
}

impl DeclineRepr {
    /// A Decline as Linux builds it: "SMCR", `typev1` R, zero peer id and extra codes,
    /// OS type Linux (2) in v2 and 0 in v1, out-of-sync iff `code` is SYNCERR.
    pub fn linux(version: u8, code: DeclineCode) -> DeclineRepr {
        DeclineRepr {
            eyecatcher: Eyecatcher::Smcr,
            version,
            out_of_sync: code == DeclineCode::SYNCERR,
            smc_type: SmcType::R,
            peer_id: [0; 8],
            code,
            os_type: if version >= 2 { 2 } else { 0 },
            extra_codes: [DeclineCode(0); 4],
        }
    }

    /// Parses a validated packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<DeclineRepr, ClcError> {
        let hdr = ClcHeader::parse(&packet.header())?;
        Ok(DeclineRepr {
            eyecatcher: hdr.eyecatcher,
            version: hdr.version,
            out_of_sync: packet.out_of_sync(),
            smc_type: SmcType::from_code(hdr.typev1),
            peer_id: packet.peer_id(),
            code: packet.code(),
            os_type: packet.os_type(),
            extra_codes: core::array::from_fn(|i| packet.extra_code(i).unwrap_or_default()),
        })
    }

    /// Bytes [`DeclineRepr::emit`] writes: 28 (v1) or 44 (v2).
    pub fn buffer_len(&self) -> usize {
        if self.version >= 2 {
            LEN_V2
        } else {
            LEN_V1
        }
    }

    /// Writes the Decline at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ClcError> {
        if self.version == 0 || self.version > 15 {
            return Err(ClcError::Inconsistent(Inconsistency::Version));
        }
        if !matches!(self.smc_type, SmcType::R | SmcType::D) {
            return Err(ClcError::Inconsistent(Inconsistency::DeclineType));
        }
        if self.os_type > 15 {
            return Err(ClcError::Inconsistent(Inconsistency::NibbleOverflow));
        }
        if self.version == 1 && self.extra_codes.iter().any(|c| c.0 != 0) {
            return Err(ClcError::Inconsistent(Inconsistency::V1DeclineExtraCodes));
        }
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(ClcError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        let buf = &mut buf[..len];
        let hdr = ClcHeader {
            eyecatcher: self.eyecatcher,
            message_type: MessageType::Decline,
            length: len as u16,
            version: self.version,
            typev2: if self.out_of_sync { FLAG_BIT >> 2 } else { 0 },
            typev1: self.smc_type.code(),
        };
        hdr.emit(&mut header::Packet::new_unchecked(&mut buf[..]));
        buf[field::PEER_ID].copy_from_slice(&self.peer_id);
        buf[field::CODE].copy_from_slice(&self.code.0.to_be_bytes());
        buf[field::OS_TYPE] = self.os_type << 4;
        buf[field::RESERVED].fill(0);
        if self.version >= 2 {
            for (i, code) in self.extra_codes.iter().enumerate() {
                let at = field::EXTRA_CODES.start + 4 * i;
                buf[at..at + 4].copy_from_slice(&code.0.to_be_bytes());
            }
        }
        buf[len - 4..].copy_from_slice(&self.eyecatcher.bytes());
        Ok(len)
    }
}
