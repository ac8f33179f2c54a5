//! CLC Accept and Confirm for SMC-D, v1 and v2 (protocol-reference §2.3).
//!
//! Both directions share one layout; each side describes its own DMB.

use super::header::{self, ClcHeader, FLAG_BIT};
use super::{ClcError, Eid, Eyecatcher, Inconsistency, MessageType, SmcType, EID_LEN};

/// Byte ranges of an SMC-D Accept/Confirm.
mod field {
    use core::ops::Range;
    pub const VERSION_TYPES: usize = 7;
    pub const GID: Range<usize> = 8..16;
    pub const TOKEN: Range<usize> = 16..24;
    pub const DMBE_INDEX: usize = 24;
    /// bits 7–4 compressed DMBE size, bits 3–0 reserved.
    pub const DMBE_SIZE: usize = 25;
    pub const RESERVED: Range<usize> = 26..28;
    pub const LINK_ID: Range<usize> = 28..32;
    /// v1: reserved up to the trailer.
    pub const RESERVED_V1: Range<usize> = 32..44;
    pub const CHID: Range<usize> = 32..34;
    pub const EID: Range<usize> = 34..66;
    pub const GID_EXT: Range<usize> = 66..74;
    /// First-contact extension (FCE), v2 with the first-contact bit only.
    pub const FCE: usize = 74;
    /// FCE +0: bit 7 `v2_direct` (SMC-R), bits 6–0 reserved.
    pub const FCE_DIRECT: usize = 74;
    /// FCE +1: bits 7–4 OS type, bits 3–0 release.
    pub const FCE_OS_RELEASE: usize = 75;
    pub const FCE_RESERVED: Range<usize> = 76..78;
    pub const FCE_HOSTNAME: Range<usize> = 78..110;
    /// Release ≥ 1 only from here on.
    pub const FCE_RESERVED_V21: Range<usize> = 110..112;
    pub const FCE_FEATURE_MASK: Range<usize> = 112..114;
    pub const FCE_VENDOR_OPTIONS: Range<usize> = 114..118;
    pub const FCE_RESERVED_TAIL: Range<usize> = 118..126;
}

/// Length of an SMC-D v1 Accept/Confirm.
pub const LEN_V1: usize = 48;
/// Length of an SMC-D v2 Accept/Confirm without first-contact extension.
pub const LEN_V2: usize = 78;
/// Length of an SMC-D v2 first-contact Accept/Confirm with release 0 (36-byte FCE).
pub const LEN_V2_FCE_REL0: usize = 114;
/// Length of an SMC-D v2 first-contact Accept/Confirm with release ≥ 1 (52-byte FCE).
pub const LEN_V2_FCE_REL1: usize = 130;

/// Size of the first-contact extension for a negotiated release.
pub const fn fce_len(release: u8) -> usize {
    if release == 0 {
        36
    } else {
        52
    }
}

/// A view of an SMC-D Accept or Confirm.
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

    /// Wraps a received buffer after validating it (§2.1, §2.3): header, type Accept or
    /// Confirm, `typev1` = D (R is refused with [`ClcError::SmcRAcceptConfirm`]), length
    /// exactly 48 (v1), 78 (v2), 114 (v2 first contact, release 0) or 130 (v2 first
    /// contact, release ≥ 1), whole message present, valid trailer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ClcError> {
        let buf = buffer.as_ref();
        let hdr = header::check_message(
            buf,
            &[MessageType::Accept, MessageType::Confirm],
            LEN_V1,
            LEN_V2_FCE_REL1,
        )?;
        let kind = hdr.message_type;
        match hdr.typev1 {
            0 => return Err(ClcError::SmcRAcceptConfirm { kind }),
            1 => {}
            typev1 => return Err(ClcError::BadSmcType { kind, typev1 }),
        }
        let length = usize::from(hdr.length);
        let first_contact = buf[field::VERSION_TYPES] & FLAG_BIT != 0;
        let expected = if hdr.version == 1 {
            LEN_V1
        } else if !first_contact || length < LEN_V2 {
            LEN_V2
        } else {
            field::FCE + fce_len(buf[field::FCE_OS_RELEASE] & 0x0f) + super::TRAILER_LEN
        };
        if length != expected {
            return Err(ClcError::BadLength {
                kind,
                length: hdr.length,
                expected,
            });
        }
        Ok(Packet { buffer })
    }

    /// The header view.
    pub fn header(&self) -> header::Packet<&[u8]> {
        header::Packet::new_unchecked(self.buffer.as_ref())
    }

    fn buf(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// First-contact flag (bit 3 of byte 7).
    pub fn first_contact(&self) -> bool {
        self.buf()[field::VERSION_TYPES] & FLAG_BIT != 0
    }

    /// Sender's ISM GID (Wireshark: "peer ID").
    pub fn gid(&self) -> u64 {
        super::be64(self.buf(), field::GID.start)
    }

    /// Token of the sender's DMB.
    pub fn token(&self) -> u64 {
        super::be64(self.buf(), field::TOKEN.start)
    }

    /// DMBE index (Linux: 0).
    pub fn dmbe_index(&self) -> u8 {
        self.buf()[field::DMBE_INDEX]
    }

    /// Compressed DMBE size (bits 7–4 of byte 25): size = 2^(n+14) bytes.
    pub fn dmbe_size(&self) -> u8 {
        self.buf()[field::DMBE_SIZE] >> 4
    }

    /// Opaque link id (sender's host order).
    pub fn link_id(&self) -> [u8; 4] {
        super::array(self.buf(), field::LINK_ID.start)
    }

    /// Whether the message carries the v2 fields (version ≥ 2 and long enough).
    fn has_v2(&self) -> bool {
        self.buf()[7] >> 4 >= 2 && self.buf().len() >= LEN_V2
    }

    /// Whether the message carries a first-contact extension of `len` bytes.
    fn has_fce(&self, len: usize) -> bool {
        self.has_v2() && self.first_contact() && self.buf().len() >= field::FCE + len
    }

    /// v2: CHID of the sender's device (`None` for v1).
    pub fn chid(&self) -> Option<u16> {
        self.has_v2()
            .then(|| super::be16(self.buf(), field::CHID.start))
    }

    /// v2: negotiated EID (`None` for v1).
    pub fn eid(&self) -> Option<Eid> {
        self.has_v2()
            .then(|| Eid(super::array(self.buf(), field::EID.start)))
    }

    /// v2: second half of a 128-bit GID (`None` for v1).
    pub fn gid_ext(&self) -> Option<u64> {
        self.has_v2()
            .then(|| super::be64(self.buf(), field::GID_EXT.start))
    }

    /// FCE: OS type (`None` without a first-contact extension).
    pub fn fce_os_type(&self) -> Option<u8> {
        self.has_fce(fce_len(0))
            .then(|| self.buf()[field::FCE_OS_RELEASE] >> 4)
    }

    /// FCE: release (`None` without a first-contact extension).
    pub fn fce_release(&self) -> Option<u8> {
        self.has_fce(fce_len(0))
            .then(|| self.buf()[field::FCE_OS_RELEASE] & 0x0f)
    }

    /// FCE: host name, blank padded (`None` without a first-contact extension).
    pub fn fce_hostname(&self) -> Option<[u8; 32]> {
        self.has_fce(fce_len(0))
            .then(|| super::array(self.buf(), field::FCE_HOSTNAME.start))
    }

    /// FCE (release ≥ 1): feature mask (`None` without a 52-byte extension).
    pub fn fce_feature_mask(&self) -> Option<u16> {
        self.has_fce(fce_len(1))
            .then(|| super::be16(self.buf(), field::FCE_FEATURE_MASK.start))
    }

    /// FCE (release ≥ 1): vendor experimental options (`None` without a 52-byte
    /// extension).
    pub fn fce_vendor_options(&self) -> Option<u32> {
        self.has_fce(fce_len(1))
            .then(|| super::be32(self.buf(), field::FCE_VENDOR_OPTIONS.start))
    }
}

/// Accept or Confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptConfirmKind {
    /// Server → client.
    Accept,
    /// Client → server.
    Confirm,
}

impl AcceptConfirmKind {
    /// The CLC message type.
    pub const fn message_type(self) -> MessageType {
        match self {
            AcceptConfirmKind::Accept => MessageType::Accept,
            AcceptConfirmKind::Confirm => MessageType::Confirm,
        }
    }
}

/// The first-contact extension (FCE) of a v2 Accept/Confirm (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstContactExt {
    /// OS type (4 bits): 1 z/OS, 2 Linux, 3 AIX.
    pub os_type: u8,
    /// Release (4 bits): 0 = v2.0 (36-byte FCE), ≥ 1 = v2.1 (52-byte FCE).
    pub release: u8,
    /// Host name, ASCII, blank padded.
    pub hostname: [u8; 32],
    /// Feature mask (release ≥ 1; 0 for release 0).
    pub feature_mask: u16,
    /// Vendor experimental options (release ≥ 1; 0 for release 0).
    pub vendor_options: u32,
}

impl FirstContactExt {
    /// Pads `name` with blanks to 32 bytes (longer names are cut at 32 bytes).
    pub fn hostname_from_str(name: &str) -> [u8; 32] {
        let mut out = [b' '; 32];
        let bytes = name.as_bytes();
        let n = bytes.len().min(32);
        out[..n].copy_from_slice(&bytes[..n]);
        out
    }
}

/// The v2 part of an Accept/Confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptConfirmV2 {
    /// CHID of the sender's device.
    pub chid: u16,
    /// Negotiated EID (server chooses, client echoes).
    pub eid: Eid,
    /// Second half of a 128-bit GID (virtual CHIDs); 0 otherwise.
    pub gid_ext: u64,
    /// First-contact extension: present iff the first-contact flag is set.
    pub first_contact_ext: Option<FirstContactExt>,
}

/// An SMC-D Accept/Confirm's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptConfirmRepr {
    /// Accept or Confirm.
    pub kind: AcceptConfirmKind,
    /// Eyecatcher (Linux sends "SMCD").
    pub eyecatcher: Eyecatcher,
    /// Version: 1, or ≥ 2 for v2 (then `v2` is present).
    pub version: u8,
    /// First contact: the sender created a new link group.
    pub first_contact: bool,
    /// Sender's ISM GID (first 64 bits).
    pub gid: u64,
    /// Token of the sender's DMB.
    pub token: u64,
    /// DMBE index (Linux 0).
    pub dmbe_index: u8,
    /// Compressed DMBE size (4 bits): size = 2^(n+14) bytes.
    pub dmbe_size: u8,
    /// Opaque link id.
    pub link_id: [u8; 4],
    /// v2 fields; present iff `version` ≥ 2.
    pub v2: Option<AcceptConfirmV2>,
}

impl AcceptConfirmRepr {
    /// Parses a validated packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<AcceptConfirmRepr, ClcError> {
        let hdr = ClcHeader::parse(&packet.header())?;
        let kind = match hdr.message_type {
            MessageType::Accept => AcceptConfirmKind::Accept,
            MessageType::Confirm => AcceptConfirmKind::Confirm,
            found => {
                return Err(ClcError::UnexpectedMessageType {
                    expected: MessageType::Accept,
                    found,
                })
            }
        };
        let first_contact = packet.first_contact();
        let v2 = (hdr.version >= 2).then(|| AcceptConfirmV2 {
            chid: packet.chid().unwrap_or_default(),
            eid: packet.eid().unwrap_or_default(),
            gid_ext: packet.gid_ext().unwrap_or_default(),
            first_contact_ext: first_contact.then(|| {
                let release = packet.fce_release().unwrap_or_default();
                FirstContactExt {
                    os_type: packet.fce_os_type().unwrap_or_default(),
                    release,
                    hostname: packet.fce_hostname().unwrap_or([b' '; 32]),
                    feature_mask: packet
                        .fce_feature_mask()
                        .filter(|_| release >= 1)
                        .unwrap_or(0),
                    vendor_options: packet
                        .fce_vendor_options()
                        .filter(|_| release >= 1)
                        .unwrap_or(0),
                }
            }),
        });
        Ok(AcceptConfirmRepr {
            kind,
            eyecatcher: hdr.eyecatcher,
            version: hdr.version,
            first_contact,
            gid: packet.gid(),
            token: packet.token(),
            dmbe_index: packet.dmbe_index(),
            dmbe_size: packet.dmbe_size(),
            link_id: packet.link_id(),
            v2,
        })
    }

    /// Bytes [`AcceptConfirmRepr::emit`] writes: 48, 78, 114 or 130.
    pub fn buffer_len(&self) -> usize {
        match &self.v2 {
            None => LEN_V1,
            Some(v2) => match &v2.first_contact_ext {
                None => LEN_V2,
                Some(fce) => field::FCE + fce_len(fce.release) + super::TRAILER_LEN,
            },
        }
    }

    fn check(&self) -> Result<(), Inconsistency> {
        if self.version == 0 || self.version > 15 {
            return Err(Inconsistency::Version);
        }
        if (self.version >= 2) != self.v2.is_some() {
            return Err(Inconsistency::AcceptConfirmV2Presence);
        }
        if self.dmbe_size > 15 {
            return Err(Inconsistency::NibbleOverflow);
        }
        if let Some(v2) = &self.v2 {
            if self.first_contact != v2.first_contact_ext.is_some() {
                return Err(Inconsistency::FirstContactExtPresence);
            }
            if let Some(fce) = &v2.first_contact_ext {
                if fce.os_type > 15 || fce.release > 15 {
                    return Err(Inconsistency::NibbleOverflow);
                }
                if fce.release == 0 && (fce.feature_mask != 0 || fce.vendor_options != 0) {
                    return Err(Inconsistency::Release0Fields);
                }
            }
        }
        Ok(())
    }

    /// Writes the message at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ClcError> {
        self.check().map_err(ClcError::Inconsistent)?;
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
            message_type: self.kind.message_type(),
            length: len as u16,
            version: self.version,
            typev2: if self.first_contact { FLAG_BIT >> 2 } else { 0 },
            typev1: SmcType::D.code(),
        };
        hdr.emit(&mut header::Packet::new_unchecked(&mut buf[..]));
        buf[field::GID].copy_from_slice(&self.gid.to_be_bytes());
        buf[field::TOKEN].copy_from_slice(&self.token.to_be_bytes());
        buf[field::DMBE_INDEX] = self.dmbe_index;
        buf[field::DMBE_SIZE] = self.dmbe_size << 4;
        buf[field::RESERVED].fill(0);
        buf[field::LINK_ID].copy_from_slice(&self.link_id);
        match &self.v2 {
            None => buf[field::RESERVED_V1].fill(0),
            Some(v2) => {
                buf[field::CHID].copy_from_slice(&v2.chid.to_be_bytes());
                buf[field::EID].copy_from_slice(&v2.eid.0[..EID_LEN]);
                buf[field::GID_EXT].copy_from_slice(&v2.gid_ext.to_be_bytes());
                if let Some(fce) = &v2.first_contact_ext {
                    buf[field::FCE_DIRECT] = 0;
                    buf[field::FCE_OS_RELEASE] = (fce.os_type << 4) | fce.release;
                    buf[field::FCE_RESERVED].fill(0);
                    buf[field::FCE_HOSTNAME].copy_from_slice(&fce.hostname);
                    if fce.release >= 1 {
                        buf[field::FCE_RESERVED_V21].fill(0);
                        buf[field::FCE_FEATURE_MASK]
                            .copy_from_slice(&fce.feature_mask.to_be_bytes());
                        buf[field::FCE_VENDOR_OPTIONS]
                            .copy_from_slice(&fce.vendor_options.to_be_bytes());
                        buf[field::FCE_RESERVED_TAIL].fill(0);
                    }
                }
            }
        }
        buf[len - 4..].copy_from_slice(&self.eyecatcher.bytes());
        Ok(len)
    }
}
