//! CLC Proposal, v1 and v2 (protocol-reference §2.2).
//!
//! The Proposal is the only CLC message with variable areas, each placed by an offset
//! field and sized by a count: the IP prefix area (`iparea_offset`, IPv6 prefix count),
//! the v2 extension (`v2_ext_offset`, UEID count) and the SMC-Dv2 extension
//! (`smcd_v2_ext_offset`, GID/CHID entry count). [`Packet::areas`] validates all of them
//! like Linux `smc_clc_msg_prop_valid` (offset limits, counts ≤ 8, exact length formula)
//! and additionally checks that every area ends before the trailer.

use heapless::Vec;

use super::header::{self, ClcHeader};
use super::{
    Area, ClcError, CountField, Eid, Eyecatcher, Inconsistency, MessageType, OffsetField, SmcType,
    EID_LEN, MAX_GID_CHID_ENTRIES, MAX_IPV6_PREFIXES, MAX_MESSAGE_LEN, MAX_UEIDS, TRAILER_LEN,
};
use crate::ism::{is_virtual_chid, Gid};

/// Byte ranges of a Proposal: fixed part, and relative offsets inside the areas.
mod field {
    use core::ops::Range;
    pub const PEER_ID: Range<usize> = 8..16;
    pub const ROCE_GID: Range<usize> = 16..32;
    pub const ROCE_MAC: Range<usize> = 32..38;
    pub const IPAREA_OFFSET: Range<usize> = 38..40;
    /// The SMC-D area starts here; `iparea_offset` counts from here too.
    pub const SMCD_AREA: Range<usize> = 40..80;
    pub const ISM_GID: Range<usize> = 40..48;
    pub const ISM_CHID: Range<usize> = 48..50;
    pub const V2_EXT_OFFSET: Range<usize> = 50..52;
    /// Vendor OUI, vendor options, reserved: up to the end of the SMC-D area.
    pub const SMCD_RESERVED: Range<usize> = 52..80;

    /// IP prefix area (relative).
    pub mod ip {
        use core::ops::Range;
        pub const IPV4_SUBNET: Range<usize> = 0..4;
        pub const IPV4_PREFIX_LEN: usize = 4;
        pub const RESERVED: Range<usize> = 5..7;
        pub const IPV6_COUNT: usize = 7;
        pub const IPV6_PREFIXES: usize = 8;
        pub const HEADER_LEN: usize = 8;
        pub const IPV6_ENTRY_LEN: usize = 17;
    }

    /// v2 extension (relative).
    pub mod v2 {
        use core::ops::Range;
        pub const EID_COUNT: usize = 0;
        pub const GID_COUNT: usize = 1;
        pub const RESERVED1: usize = 2;
        /// bits 7–4 release, bit 0 SEID enabled, bits 3–1 reserved.
        pub const FLAGS: usize = 3;
        pub const RESERVED2: Range<usize> = 4..6;
        pub const SMCD_V2_EXT_OFFSET: Range<usize> = 6..8;
        /// `smcd_v2_ext_offset` counts from here.
        pub const HEADER_END: usize = 8;
        pub const ROCE_V2_GID: Range<usize> = 8..24;
        pub const MAX_CONNS: usize = 24;
        pub const MAX_LINKS: usize = 25;
        pub const FEATURE_MASK: Range<usize> = 26..28;
        pub const RESERVED3: Range<usize> = 28..40;
        pub const UEIDS: usize = 40;
        pub const FIXED_LEN: usize = 40;
    }

    /// SMC-Dv2 extension (relative).
    pub mod smcd_v2 {
        use core::ops::Range;
        pub const SEID: Range<usize> = 0..32;
        pub const RESERVED: Range<usize> = 32..48;
        pub const GID_CHIDS: usize = 48;
        pub const FIXED_LEN: usize = 48;
        pub const ENTRY_LEN: usize = 10;
    }
}

/// Linux's limit for `iparea_offset` (the size of the SMC-D area).
pub const MAX_IPAREA_OFFSET: u16 = 40;
/// Linux's limit for `v2_ext_offset` (room for 8 IPv6 prefixes).
pub const MAX_V2_EXT_OFFSET: u16 = 172;
/// Linux's limit for `smcd_v2_ext_offset` (room for 8 UEIDs).
pub const MAX_SMCD_V2_EXT_OFFSET: u16 = 288;

/// Where the variable areas of a validated Proposal lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Whether the 40-byte SMC-D area at offset 40 is present.
    pub smcd_area: bool,
    /// IP prefix area: (start, IPv6 prefix count); present iff `typev1` ≠ N.
    pub ip_prefix: Option<(usize, u8)>,
    /// v2 extension: (start, UEID count, GID/CHID count); present iff version ≥ 2 and
    /// `typev2` ≠ N. The GID/CHID count is meaningful only when `typev2` offers SMC-D.
    pub v2_ext: Option<(usize, u8, u8)>,
    /// SMC-Dv2 extension start; present iff version ≥ 2 and `typev2` offers SMC-D.
    pub smcd_v2_ext: Option<usize>,
}

/// A view of a Proposal.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn area(area: Area, start: usize, len: usize, limit: usize) -> Result<(), ClcError> {
    if start + len > limit {
        return Err(ClcError::AreaOutOfBounds {
            area,
            start,
            end: start + len,
            limit,
        });
    }
    Ok(())
}

fn count(field: CountField, value: u8, max: usize) -> Result<u8, ClcError> {
    if usize::from(value) > max {
        return Err(ClcError::CountTooLarge {
            field,
            value,
            max: max as u8,
        });
    }
    Ok(value)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// # Panics
    /// The fixed-offset accessors panic if the buffer is shorter than the field.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer after validating the header, trailer, every offset, count
    /// and the exact length ([`Packet::areas`]).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ClcError> {
        let packet = Packet { buffer };
        packet.areas()?;
        Ok(packet)
    }

    fn buf(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Validates the message and locates its areas (§2.2):
    ///
    /// - header valid, type Proposal, 52 ≤ length ≤ 652, whole message present, trailer valid;
    /// - `iparea_offset` ≤ 40, and exactly 40 when `typev1` offers SMC-D (otherwise Linux
    ///   treats the SMC-D area as missing);
    /// - v1: `typev1` ≠ N and length = `40 + iparea_offset + 8 + 17p + 4`;
    /// - v2: `v2_ext_offset` ∈ 1..=172 when `typev2` ≠ N, `smcd_v2_ext_offset` ∈ 1..=288
    ///   when `typev2` offers SMC-D, counts ≤ 8, and length = `80 + (typev1≠N ? 8+17p : 0)
    ///   + (typev2≠N ? 40+32e : 0) + (typev2 offers D ? 48+10m : 0) + 4`;
    /// - every area lies before the trailer.
    pub fn areas(&self) -> Result<Areas, ClcError> {
        let buf = self.buf();
        let hdr = header::check_message(buf, &[MessageType::Proposal], 52, MAX_MESSAGE_LEN)?;
        let length = usize::from(hdr.length);
        let limit = length - TRAILER_LEN;
        let typev1 = SmcType::from_code(hdr.typev1);
        let typev2 = SmcType::from_code(hdr.typev2);
        let iparea_offset = super::be16(buf, field::IPAREA_OFFSET.start);
        if iparea_offset > MAX_IPAREA_OFFSET {
            return Err(ClcError::OffsetTooLarge {
                field: OffsetField::IpAreaOffset,
                value: iparea_offset,
                max: MAX_IPAREA_OFFSET,
            });
        }
        if typev1.offers_d() && iparea_offset != MAX_IPAREA_OFFSET {
            return Err(ClcError::BadOffset {
                field: OffsetField::IpAreaOffset,
                value: iparea_offset,
                expected: MAX_IPAREA_OFFSET,
            });
        }
        let ip_start = field::SMCD_AREA.start + usize::from(iparea_offset);
        let ip_area = || -> Result<(usize, u8), ClcError> {
            area(Area::IpPrefix, ip_start, field::ip::HEADER_LEN, limit)?;
            let p = count(
                CountField::Ipv6Prefixes,
                buf[ip_start + field::ip::IPV6_COUNT],
                MAX_IPV6_PREFIXES,
            )?;
            let len = field::ip::HEADER_LEN + field::ip::IPV6_ENTRY_LEN * usize::from(p);
            area(Area::IpPrefix, ip_start, len, limit)?;
            Ok((ip_start, p))
        };

        if hdr.version == 1 {
            if typev1 == SmcType::N {
                return Err(ClcError::BadSmcType {
                    kind: MessageType::Proposal,
                    typev1: hdr.typev1,
                });
            }
            let (start, p) = ip_area()?;
            let computed = start
                + field::ip::HEADER_LEN
                + field::ip::IPV6_ENTRY_LEN * usize::from(p)
                + TRAILER_LEN;
            if length != computed {
                return Err(ClcError::ProposalLength {
                    length: hdr.length,
                    computed,
                });
            }
            return Ok(Areas {
                smcd_area: typev1.offers_d(),
                ip_prefix: Some((start, p)),
                v2_ext: None,
                smcd_v2_ext: None,
            });
        }

        area(
            Area::SmcdArea,
            field::SMCD_AREA.start,
            field::SMCD_AREA.len(),
            limit,
        )?;
        let ip_prefix = if typev1.offers_any() {
            Some(ip_area()?)
        } else {
            None
        };
        let mut v2_ext = None;
        let mut smcd_v2_ext = None;
        if typev2.offers_any() {
            let offset = super::be16(buf, field::V2_EXT_OFFSET.start);
            if offset == 0 {
                return Err(ClcError::MissingArea(Area::V2Extension));
            }
            if offset > MAX_V2_EXT_OFFSET {
                return Err(ClcError::OffsetTooLarge {
                    field: OffsetField::V2ExtOffset,
                    value: offset,
                    max: MAX_V2_EXT_OFFSET,
                });
            }
            let start = field::V2_EXT_OFFSET.end + usize::from(offset);
            area(Area::V2Extension, start, field::v2::FIXED_LEN, limit)?;
            let e = count(
                CountField::Ueids,
                buf[start + field::v2::EID_COUNT],
                MAX_UEIDS,
            )?;
            area(
                Area::V2Extension,
                start,
                field::v2::FIXED_LEN + EID_LEN * usize::from(e),
                limit,
            )?;
            let mut m = buf[start + field::v2::GID_COUNT];
            if typev2.offers_d() {
                m = count(CountField::GidChidEntries, m, MAX_GID_CHID_ENTRIES)?;
                let offset = super::be16(buf, start + field::v2::SMCD_V2_EXT_OFFSET.start);
                if offset == 0 {
                    return Err(ClcError::MissingArea(Area::SmcdV2Extension));
                }
                if offset > MAX_SMCD_V2_EXT_OFFSET {
                    return Err(ClcError::OffsetTooLarge {
                        field: OffsetField::SmcdV2ExtOffset,
                        value: offset,
                        max: MAX_SMCD_V2_EXT_OFFSET,
                    });
                }
                let smcd_start = start + field::v2::HEADER_END + usize::from(offset);
                let len = field::smcd_v2::FIXED_LEN + field::smcd_v2::ENTRY_LEN * usize::from(m);
                area(Area::SmcdV2Extension, smcd_start, len, limit)?;
                smcd_v2_ext = Some(smcd_start);
            }
            v2_ext = Some((start, e, m));
        }
        let computed = field::SMCD_AREA.end
            + ip_prefix.map_or(0, |(_, p)| {
                field::ip::HEADER_LEN + field::ip::IPV6_ENTRY_LEN * usize::from(p)
            })
            + v2_ext.map_or(0, |(_, e, _)| {
                field::v2::FIXED_LEN + EID_LEN * usize::from(e)
            })
            + match (smcd_v2_ext, v2_ext) {
                (Some(_), Some((_, _, m))) => {
                    field::smcd_v2::FIXED_LEN + field::smcd_v2::ENTRY_LEN * usize::from(m)
                }
                _ => 0,
            }
            + TRAILER_LEN;
        if length != computed {
            return Err(ClcError::ProposalLength {
                length: hdr.length,
                computed,
            });
        }
        Ok(Areas {
            smcd_area: true,
            ip_prefix,
            v2_ext,
            smcd_v2_ext,
        })
    }

    /// The header view.
    pub fn header(&self) -> header::Packet<&[u8]> {
        header::Packet::new_unchecked(self.buf())
    }

    /// Peer (system) id (SMC-R).
    pub fn peer_id(&self) -> [u8; 8] {
        super::array(self.buf(), field::PEER_ID.start)
    }

    /// RoCE GID (SMC-R v1).
    pub fn roce_gid(&self) -> [u8; 16] {
        super::array(self.buf(), field::ROCE_GID.start)
    }

    /// RoCE MAC (SMC-R v1).
    pub fn roce_mac(&self) -> [u8; 6] {
        super::array(self.buf(), field::ROCE_MAC.start)
    }

    /// `iparea_offset`: from offset 40 to the IP prefix area.
    pub fn iparea_offset(&self) -> u16 {
        super::be16(self.buf(), field::IPAREA_OFFSET.start)
    }

    /// SMC-D area: GID of the native (v1) ISM device.
    pub fn ism_gid(&self) -> u64 {
        super::be64(self.buf(), field::ISM_GID.start)
    }

    /// SMC-D area: CHID of the native ISM device.
    pub fn ism_chid(&self) -> u16 {
        super::be16(self.buf(), field::ISM_CHID.start)
    }

    /// SMC-D area: `v2_ext_offset`, from offset 52 to the v2 extension.
    pub fn v2_ext_offset(&self) -> u16 {
        super::be16(self.buf(), field::V2_EXT_OFFSET.start)
    }

    /// IPv6 prefix `i` of the IP prefix area located by `areas`, if it exists.
    pub fn ipv6_prefix(&self, areas: &Areas, i: usize) -> Option<Ipv6Prefix> {
        let (start, p) = areas.ip_prefix?;
        if i >= usize::from(p) {
            return None;
        }
        let at = start + field::ip::IPV6_PREFIXES + field::ip::IPV6_ENTRY_LEN * i;
        let entry = self.buf().get(at..at + field::ip::IPV6_ENTRY_LEN)?;
        Some(Ipv6Prefix {
            prefix: super::array(entry, 0),
            prefix_len: entry[16],
        })
    }

    /// UEID `i` of the v2 extension located by `areas`, if it exists.
    pub fn ueid(&self, areas: &Areas, i: usize) -> Option<Eid> {
        let (start, e, _) = areas.v2_ext?;
        if i >= usize::from(e) {
            return None;
        }
        let at = start + field::v2::UEIDS + EID_LEN * i;
        Some(Eid(super::array(self.buf().get(at..at + EID_LEN)?, 0)))
    }

    /// GID/CHID entry `i` of the SMC-Dv2 extension located by `areas`, if it exists.
    pub fn gid_chid(&self, areas: &Areas, i: usize) -> Option<GidChid> {
        let start = areas.smcd_v2_ext?;
        let (_, _, m) = areas.v2_ext?;
        if i >= usize::from(m) {
            return None;
        }
        let at = start + field::smcd_v2::GID_CHIDS + field::smcd_v2::ENTRY_LEN * i;
        let entry = self.buf().get(at..at + field::smcd_v2::ENTRY_LEN)?;
        Some(GidChid {
            gid: super::be64(entry, 0),
            chid: super::be16(entry, 8),
        })
    }
}

/// One IPv6 prefix of the IP prefix area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv6Prefix {
    /// Prefix bytes (address AND mask).
    pub prefix: [u8; 16],
    /// Prefix length in bits.
    pub prefix_len: u8,
}

/// The IP prefix area (v1 path, §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpPrefixArea {
    /// IPv4 subnet (address AND mask), 0 when IPv6 prefixes are sent.
    pub ipv4_subnet: [u8; 4],
    /// IPv4 prefix length in bits.
    pub ipv4_prefix_len: u8,
    /// IPv6 prefixes (≤ 8).
    pub ipv6_prefixes: Vec<Ipv6Prefix, MAX_IPV6_PREFIXES>,
}

/// One entry of the SMC-Dv2 GID/CHID list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GidChid {
    /// 64-bit GID (or one half of a virtual device's 128-bit GID).
    pub gid: u64,
    /// CHID.
    pub chid: u16,
}

/// A device offered in a Proposal's GID/CHID list, after joining the two entries of a
/// virtual (emulated) device's 128-bit GID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalDevice {
    /// The device's GID (128 bits for virtual CHIDs).
    pub gid: Gid,
    /// The device's CHID.
    pub chid: u16,
}

/// The SMC-Dv2 extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmcdV2Ext {
    /// System EID (all zero unless the sender has one).
    pub seid: Eid,
    /// Raw GID/CHID entries (≤ 8); a virtual device takes two with the same CHID.
    pub gid_chids: Vec<GidChid, MAX_GID_CHID_ENTRIES>,
}

impl SmcdV2Ext {
    /// Appends a device: one entry for a native CHID, two (gid, gid_ext) for a virtual
    /// CHID. Returns `false` (and leaves the list unchanged) when it does not fit.
    pub fn push_device(&mut self, gid: Gid, chid: u16) -> bool {
        let needed = if is_virtual_chid(chid) { 2 } else { 1 };
        if self.gid_chids.len() + needed > MAX_GID_CHID_ENTRIES {
            return false;
        }
        let _ = self.gid_chids.push(GidChid { gid: gid.gid, chid });
        if needed == 2 {
            let _ = self.gid_chids.push(GidChid {
                gid: gid.gid_ext,
                chid,
            });
        }
        true
    }

    /// The offered devices as a Linux server reads the list (§2.2): an entry with a
    /// virtual CHID takes the next entry as `gid_ext` if that entry has the same CHID,
    /// and is skipped when it is last or its successor has another CHID.
    pub fn devices(&self) -> impl Iterator<Item = ProposalDevice> + '_ {
        let list = &self.gid_chids;
        let mut i = 0;
        core::iter::from_fn(move || {
            while i < list.len() {
                let entry = list[i];
                i += 1;
                if !is_virtual_chid(entry.chid) {
                    return Some(ProposalDevice {
                        gid: Gid::native(entry.gid),
                        chid: entry.chid,
                    });
                }
                if let Some(next) = list.get(i) {
                    if next.chid == entry.chid {
                        i += 1;
                        return Some(ProposalDevice {
                            gid: Gid::virtual_(entry.gid, next.gid),
                            chid: entry.chid,
                        });
                    }
                }
            }
            None
        })
    }
}

/// The v2 extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalV2 {
    /// Release (4 bits): 0 = v2.0, 1 = v2.1 (Linux sends 1).
    pub release: u8,
    /// SEID flag: the sender has and uses a system EID.
    pub seid_enabled: bool,
    /// RoCEv2 GID (SMC-Rv2).
    pub roce_v2_gid: [u8; 16],
    /// max_conns (SMC-Rv2, v2.1).
    pub max_conns: u8,
    /// max_links (SMC-Rv2, v2.1).
    pub max_links: u8,
    /// Feature mask (v2.1); bit 0 = emulated ISM device support.
    pub feature_mask: u16,
    /// User EIDs (≤ 8).
    pub ueids: Vec<Eid, MAX_UEIDS>,
    /// SMC-Dv2 extension: present iff `typev2` offers SMC-D.
    pub smcd: Option<SmcdV2Ext>,
}

/// A Proposal's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalRepr {
    /// Eyecatcher (Linux sends "SMCR").
    pub eyecatcher: Eyecatcher,
    /// Version: 1, or ≥ 2 (Linux always sends 2).
    pub version: u8,
    /// Types offered for SMCv1.
    pub typev1: SmcType,
    /// Types offered for SMCv2 (ignored by v1 receivers; kept as sent).
    pub typev2: SmcType,
    /// Peer (system) id (SMC-R).
    pub peer_id: [u8; 8],
    /// RoCE GID (SMC-R v1).
    pub roce_gid: [u8; 16],
    /// RoCE MAC (SMC-R v1).
    pub roce_mac: [u8; 6],
    /// SMC-D area: native (v1) ISM GID; 0 if none (and when the area is absent).
    pub ism_gid: u64,
    /// SMC-D area: native ISM CHID; 0 if none.
    pub ism_chid: u16,
    /// IP prefix area: present iff `typev1` ≠ N.
    pub ip_prefix: Option<IpPrefixArea>,
    /// v2 extension: present iff `version` ≥ 2 and `typev2` ≠ N.
    pub v2: Option<ProposalV2>,
}

impl ProposalRepr {
    /// Parses a Proposal (validating it with [`Packet::areas`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ProposalRepr, ClcError> {
        let areas = packet.areas()?;
        let hdr = ClcHeader::parse(&packet.header())?;
        let buf = packet.buf();
        let (ism_gid, ism_chid) = if areas.smcd_area {
            (packet.ism_gid(), packet.ism_chid())
        } else {
            (0, 0)
        };
        let ip_prefix = areas.ip_prefix.map(|(start, p)| IpPrefixArea {
            ipv4_subnet: super::array(buf, start + field::ip::IPV4_SUBNET.start),
            ipv4_prefix_len: buf[start + field::ip::IPV4_PREFIX_LEN],
            ipv6_prefixes: (0..usize::from(p))
                .filter_map(|i| packet.ipv6_prefix(&areas, i))
                .collect(),
        });
        let v2 = areas.v2_ext.map(|(start, e, m)| {
            let flags = buf[start + field::v2::FLAGS];
            ProposalV2 {
                release: flags >> 4,
                seid_enabled: flags & 0x01 != 0,
                roce_v2_gid: super::array(buf, start + field::v2::ROCE_V2_GID.start),
                max_conns: buf[start + field::v2::MAX_CONNS],
                max_links: buf[start + field::v2::MAX_LINKS],
                feature_mask: super::be16(buf, start + field::v2::FEATURE_MASK.start),
                ueids: (0..usize::from(e))
                    .filter_map(|i| packet.ueid(&areas, i))
                    .collect(),
                smcd: areas.smcd_v2_ext.map(|s| SmcdV2Ext {
                    seid: Eid(super::array(buf, s + field::smcd_v2::SEID.start)),
                    gid_chids: (0..usize::from(m))
                        .filter_map(|i| packet.gid_chid(&areas, i))
                        .collect(),
                }),
            }
        });
        Ok(ProposalRepr {
            eyecatcher: hdr.eyecatcher,
            version: hdr.version,
            typev1: SmcType::from_code(hdr.typev1),
            typev2: SmcType::from_code(hdr.typev2),
            peer_id: packet.peer_id(),
            roce_gid: packet.roce_gid(),
            roce_mac: packet.roce_mac(),
            ism_gid,
            ism_chid,
            ip_prefix,
            v2,
        })
    }

    /// Whether the emitted message carries the 40-byte SMC-D area.
    fn has_smcd_area(&self) -> bool {
        self.version >= 2 || self.typev1.offers_d()
    }

    fn ip_len(&self) -> usize {
        self.ip_prefix.as_ref().map_or(0, |ip| {
            field::ip::HEADER_LEN + field::ip::IPV6_ENTRY_LEN * ip.ipv6_prefixes.len()
        })
    }

    fn v2_len(&self) -> usize {
        self.v2
            .as_ref()
            .map_or(0, |v2| field::v2::FIXED_LEN + EID_LEN * v2.ueids.len())
    }

    fn smcd_v2_len(&self) -> usize {
        self.v2
            .as_ref()
            .and_then(|v2| v2.smcd.as_ref())
            .map_or(0, |s| {
                field::smcd_v2::FIXED_LEN + field::smcd_v2::ENTRY_LEN * s.gid_chids.len()
            })
    }

    /// Bytes [`ProposalRepr::emit`] writes (Linux's length formula, §2.2).
    pub fn buffer_len(&self) -> usize {
        field::SMCD_AREA.start
            + if self.has_smcd_area() {
                field::SMCD_AREA.len()
            } else {
                0
            }
            + self.ip_len()
            + self.v2_len()
            + self.smcd_v2_len()
            + TRAILER_LEN
    }

    fn check(&self) -> Result<(), Inconsistency> {
        if self.version == 0 || self.version > 15 {
            return Err(Inconsistency::Version);
        }
        if self.ip_prefix.is_some() != self.typev1.offers_any() {
            return Err(Inconsistency::IpPrefixPresence);
        }
        if self.version == 1 {
            if self.typev1 == SmcType::N {
                return Err(Inconsistency::V1ProposalWithoutType);
            }
            if self.v2.is_some() {
                return Err(Inconsistency::V2ExtensionPresence);
            }
            if !self.typev1.offers_d() && (self.ism_gid != 0 || self.ism_chid != 0) {
                return Err(Inconsistency::SmcdAreaWithoutSmcd);
            }
            return Ok(());
        }
        match &self.v2 {
            None if self.typev2.offers_any() => Err(Inconsistency::V2ExtensionPresence),
            None => Ok(()),
            Some(_) if !self.typev2.offers_any() => Err(Inconsistency::V2ExtensionPresence),
            Some(v2) => {
                if v2.smcd.is_some() != self.typev2.offers_d() {
                    return Err(Inconsistency::SmcdV2ExtensionPresence);
                }
                if v2.release > 15 {
                    return Err(Inconsistency::NibbleOverflow);
                }
                Ok(())
            }
        }
    }

    /// Writes the Proposal at the start of `buf` with Linux's canonical offsets
    /// (`iparea_offset` 40 when the SMC-D area and an IP area are present, else 0;
    /// `v2_ext_offset = 28 + ip area length`; `smcd_v2_ext_offset = 32 + 32e`);
    /// returns its length.
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
            message_type: MessageType::Proposal,
            length: len as u16,
            version: self.version,
            typev2: self.typev2.code(),
            typev1: self.typev1.code(),
        };
        hdr.emit(&mut header::Packet::new_unchecked(&mut buf[..]));
        buf[field::PEER_ID].copy_from_slice(&self.peer_id);
        buf[field::ROCE_GID].copy_from_slice(&self.roce_gid);
        buf[field::ROCE_MAC].copy_from_slice(&self.roce_mac);
        let mut at = field::SMCD_AREA.start;
        if self.has_smcd_area() {
            let iparea_offset = if self.ip_prefix.is_some() {
                MAX_IPAREA_OFFSET
            } else {
                0
            };
            buf[field::IPAREA_OFFSET].copy_from_slice(&iparea_offset.to_be_bytes());
            buf[field::ISM_GID].copy_from_slice(&self.ism_gid.to_be_bytes());
            buf[field::ISM_CHID].copy_from_slice(&self.ism_chid.to_be_bytes());
            let v2_ext_offset = if self.v2.is_some() {
                (field::SMCD_AREA.end - field::V2_EXT_OFFSET.end + self.ip_len()) as u16
            } else {
                0
            };
            buf[field::V2_EXT_OFFSET].copy_from_slice(&v2_ext_offset.to_be_bytes());
            buf[field::SMCD_RESERVED].fill(0);
            at = field::SMCD_AREA.end;
        } else {
            buf[field::IPAREA_OFFSET].fill(0);
        }
        if let Some(ip) = &self.ip_prefix {
            let area = &mut buf[at..at + self.ip_len()];
            area[field::ip::IPV4_SUBNET].copy_from_slice(&ip.ipv4_subnet);
            area[field::ip::IPV4_PREFIX_LEN] = ip.ipv4_prefix_len;
            area[field::ip::RESERVED].fill(0);
            area[field::ip::IPV6_COUNT] = ip.ipv6_prefixes.len() as u8;
            for (i, prefix) in ip.ipv6_prefixes.iter().enumerate() {
                let e = field::ip::IPV6_PREFIXES + field::ip::IPV6_ENTRY_LEN * i;
                area[e..e + 16].copy_from_slice(&prefix.prefix);
                area[e + 16] = prefix.prefix_len;
            }
            at += area.len();
        }
        if let Some(v2) = &self.v2 {
            let area = &mut buf[at..at + self.v2_len()];
            area[field::v2::EID_COUNT] = v2.ueids.len() as u8;
            area[field::v2::GID_COUNT] = v2.smcd.as_ref().map_or(0, |s| s.gid_chids.len() as u8);
            area[field::v2::RESERVED1] = 0;
            area[field::v2::FLAGS] = (v2.release << 4) | u8::from(v2.seid_enabled);
            area[field::v2::RESERVED2].fill(0);
            let smcd_offset = if v2.smcd.is_some() {
                (area.len() - field::v2::HEADER_END) as u16
            } else {
                0
            };
            area[field::v2::SMCD_V2_EXT_OFFSET].copy_from_slice(&smcd_offset.to_be_bytes());
            area[field::v2::ROCE_V2_GID].copy_from_slice(&v2.roce_v2_gid);
            area[field::v2::MAX_CONNS] = v2.max_conns;
            area[field::v2::MAX_LINKS] = v2.max_links;
            area[field::v2::FEATURE_MASK].copy_from_slice(&v2.feature_mask.to_be_bytes());
            area[field::v2::RESERVED3].fill(0);
            for (i, ueid) in v2.ueids.iter().enumerate() {
                let e = field::v2::UEIDS + EID_LEN * i;
                area[e..e + EID_LEN].copy_from_slice(&ueid.0);
            }
            at += area.len();
            if let Some(smcd) = &v2.smcd {
                let area = &mut buf[at..at + self.smcd_v2_len()];
                area[field::smcd_v2::SEID].copy_from_slice(&smcd.seid.0);
                area[field::smcd_v2::RESERVED].fill(0);
                for (i, entry) in smcd.gid_chids.iter().enumerate() {
                    let e = field::smcd_v2::GID_CHIDS + field::smcd_v2::ENTRY_LEN * i;
                    area[e..e + 8].copy_from_slice(&entry.gid.to_be_bytes());
                    area[e + 8..e + 10].copy_from_slice(&entry.chid.to_be_bytes());
                }
                at += area.len();
            }
        }
        debug_assert_eq!(at + TRAILER_LEN, len);
        buf[len - TRAILER_LEN..].copy_from_slice(&self.eyecatcher.bytes());
        Ok(len)
    }
}
