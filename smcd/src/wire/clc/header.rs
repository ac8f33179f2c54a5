//! The 8-byte CLC common header (protocol-reference §2.1).

use super::{ClcError, Eyecatcher, EyecatcherPosition, MessageType, HEADER_LEN};

/// Byte ranges of the header.
mod field {
    use core::ops::Range;
    pub const EYECATCHER: Range<usize> = 0..4;
    pub const TYPE: usize = 4;
    pub const LENGTH: Range<usize> = 5..7;
    /// bits 7–4 version, bits 3–2 typev2, bits 1–0 typev1.
    pub const VERSION_TYPES: usize = 7;
}

/// Bit 3 of byte 7: first contact (Accept/Confirm) or out of sync (Decline).
pub const FLAG_BIT: u8 = 0x08;

/// A view of the common header at the start of a CLC message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// # Panics
    /// Accessors panic if the buffer is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds at least the 8 header bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ClcError> {
        let available = buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(ClcError::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        Ok(Packet { buffer })
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Raw eyecatcher bytes.
    pub fn eyecatcher(&self) -> [u8; 4] {
        super::array(self.buffer.as_ref(), field::EYECATCHER.start)
    }

    /// Raw message type byte.
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Length field (whole message, BE).
    pub fn length(&self) -> u16 {
        super::be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Version (bits 7–4 of byte 7).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPES] >> 4
    }

    /// `typev2` (bits 3–2 of byte 7); in Accept/Confirm/Decline bit 3 is a flag.
    pub fn typev2(&self) -> u8 {
        (self.buffer.as_ref()[field::VERSION_TYPES] >> 2) & 0x03
    }

    /// `typev1` (bits 1–0 of byte 7).
    pub fn typev1(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPES] & 0x03
    }

    /// Bit 3 of byte 7: first contact (Accept/Confirm) or out of sync (Decline).
    pub fn flag(&self) -> bool {
        self.buffer.as_ref()[field::VERSION_TYPES] & FLAG_BIT != 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the eyecatcher.
    pub fn set_eyecatcher(&mut self, value: Eyecatcher) {
        self.buffer.as_mut()[field::EYECATCHER].copy_from_slice(&value.bytes());
    }

    /// Sets the message type.
    pub fn set_message_type(&mut self, value: MessageType) {
        self.buffer.as_mut()[field::TYPE] = value.code();
    }

    /// Sets the length field.
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets byte 7 from version (4 bits), typev2 (2 bits) and typev1 (2 bits).
    pub fn set_version_types(&mut self, version: u8, typev2: u8, typev1: u8) {
        self.buffer.as_mut()[field::VERSION_TYPES] =
            (version << 4) | ((typev2 & 0x03) << 2) | (typev1 & 0x03);
    }
}

/// The header's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClcHeader {
    /// Eyecatcher at offset 0.
    pub eyecatcher: Eyecatcher,
    /// Message type.
    pub message_type: MessageType,
    /// Length of the whole message.
    pub length: u16,
    /// Version (1 = SMCv1, ≥ 2 = SMCv2).
    pub version: u8,
    /// Raw `typev2` bits (Accept/Confirm/Decline: bit 1 is the first-contact/out-of-sync flag).
    pub typev2: u8,
    /// Raw `typev1` bits.
    pub typev1: u8,
}

impl ClcHeader {
    /// Parses and validates the header: eyecatcher, known type, version ≥ 1 (§2.1).
    /// The length is only range-checked by the per-message parsers and [`super::frame_len`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ClcHeader, ClcError> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(ClcError::Truncated {
                needed: HEADER_LEN,
                available: packet.buffer.as_ref().len(),
            });
        }
        Self::parse_fields(packet)
    }

    /// [`ClcHeader::parse`] for a packet known to hold 8 bytes.
    pub(crate) fn parse_fields<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ClcHeader, ClcError> {
        let found = packet.eyecatcher();
        let eyecatcher = Eyecatcher::from_bytes(found).ok_or(ClcError::BadEyecatcher {
            position: EyecatcherPosition::Header,
            found,
        })?;
        let message_type = MessageType::from_code(packet.message_type())
            .ok_or(ClcError::UnknownMessageType(packet.message_type()))?;
        let version = packet.version();
        if version < 1 {
            return Err(ClcError::BadVersion(version));
        }
        Ok(ClcHeader {
            eyecatcher,
            message_type,
            length: packet.length(),
            version,
            typev2: packet.typev2(),
            typev1: packet.typev1(),
        })
    }

    /// Bytes [`ClcHeader::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (`version` is truncated to 4 bits, the types to 2 bits).
    ///
    /// # Panics
    /// Panics if the packet buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_eyecatcher(self.eyecatcher);
        packet.set_message_type(self.message_type);
        packet.set_length(self.length);
        packet.set_version_types(self.version & 0x0f, self.typev2, self.typev1);
    }
}

/// Parses the header of a message of type `expected` from `buffer` and checks that the
/// buffer holds the whole message and that its length lies in `min..=max`, and that the
/// trailer is valid. Returns the header.
pub(crate) fn check_message(
    buffer: &[u8],
    expected: &[MessageType],
    min: usize,
    max: usize,
) -> Result<ClcHeader, ClcError> {
    let header = ClcHeader::parse(&Packet::new_unchecked(buffer))?;
    if !expected.contains(&header.message_type) {
        return Err(ClcError::UnexpectedMessageType {
            expected: expected[0],
            found: header.message_type,
        });
    }
    let length = usize::from(header.length);
    if length < min || length > max {
        return Err(ClcError::LengthOutOfRange {
            kind: header.message_type,
            length: header.length,
            min,
            max,
        });
    }
    if buffer.len() < length {
        return Err(ClcError::Truncated {
            needed: length,
            available: buffer.len(),
        });
    }
    super::check_trailer(buffer, length)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 8] = [0xE2, 0xD4, 0xC3, 0xC4, 0x02, 0x00, 0x4e, 0x29];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.eyecatcher(), super::super::EYECATCHER_SMCD);
        assert_eq!(p.message_type(), 2);
        assert_eq!(p.length(), 78);
        assert_eq!(p.version(), 2);
        assert_eq!(p.typev2(), 2);
        assert!(p.flag());
        assert_eq!(p.typev1(), 1);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 8];
        let repr = ClcHeader::parse(&Packet::new_checked(&BYTES[..]).unwrap()).unwrap();
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, BYTES);
    }

    #[test]
    fn short_header() {
        assert_eq!(
            Packet::new_checked(&BYTES[..7]).unwrap_err(),
            ClcError::Truncated {
                needed: 8,
                available: 7
            }
        );
    }

    #[test]
    fn version_zero() {
        let mut b = BYTES;
        b[7] = 0x09;
        assert_eq!(
            ClcHeader::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            ClcError::BadVersion(0)
        );
    }
}
