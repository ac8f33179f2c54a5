//! CLC negotiation: Linux's offer and selection rules as pure functions.
//!
//! Everything here follows Linux `net/smc/af_smc.c` and `smc_clc.c` as summarised in
//! protocol-reference §2.5 (and §2.2–§2.4 for message contents). Nothing does I/O: the
//! inputs are the local configuration ([`LocalConfig`]), the local ISM devices
//! ([`DeviceDesc`]), the peer's message, a reachability callback (the devices'
//! `query_remote_gid`) and, for link-group decisions, a flag from the caller saying
//! whether a link group already exists. Every refusal is a [`DeclineCode`] the caller
//! sends in a Decline (then falls back to TCP); errors Linux treats as a failed
//! connection instead are [`ClientError::Protocol`].
//!
//! Flow (client / server):
//!
//! 1. client: [`build_proposal`] (or, when nothing can be offered, a Decline
//!    `0x03030000` in its place).
//! 2. server: [`server_select`] → [`build_accept`] (after registering its DMB on the
//!    chosen device and deciding first contact).
//! 3. client: [`client_check_accept`] → registers its DMB → [`build_confirm`].
//! 4. server: [`server_check_confirm`].
//!
//! SMC-R is never offered or selected; a Proposal that offers SMC-R is answered as a
//! Linux server without RDMA devices would answer it.

use alloc::vec::Vec;

use crate::ism::{is_virtual_chid, Gid};
use crate::wire::clc::{
    AcceptConfirmKind, AcceptConfirmRepr, AcceptConfirmV2, DeclineCode, Eid, Eyecatcher,
    FirstContactExt, IpPrefixArea, Ipv6Prefix, ProposalRepr, ProposalV2, SmcType, SmcdV2Ext,
    MAX_GID_CHID_ENTRIES, MAX_IPV6_PREFIXES, MAX_UEIDS,
};

/// Highest release we implement (SMCv2.1; Linux `SMC_RELEASE`).
pub const OWN_RELEASE: u8 = 1;
/// Linux's OS type code (FCE and v2 Decline).
pub const OS_TYPE_LINUX: u8 = 2;
/// Feature-mask bit 0: emulated (virtual) ISM devices (Linux `SMC_FEATURE_MASK`).
pub const FEATURE_EMULATED_ISM: u16 = 0x0001;

/// An IPv4 interface address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// Address.
    pub addr: [u8; 4],
    /// Prefix length in bits (0..=32).
    pub prefix_len: u8,
}

/// An IPv6 interface address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Cidr {
    /// Address.
    pub addr: [u8; 16],
    /// Prefix length in bits (0..=128).
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    /// `fe80::/10`: link-local addresses are never offered or matched (§2.2).
    pub fn is_link_local(&self) -> bool {
        self.addr[0] == 0xfe && (self.addr[1] & 0xc0) == 0x80
    }
}

/// The interface the TCP connection runs over, for the SMC-Dv1 IP prefix rules (§2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpConfig {
    /// IPv4 address of the interface: a client sends its subnet (and no IPv6 prefixes).
    pub ipv4: Option<Ipv4Cidr>,
    /// IPv6 addresses of the interface: a client without IPv4 sends their prefixes
    /// (link-local ones skipped, at most 8).
    pub ipv6: Vec<Ipv6Cidr>,
}

/// Local CLC configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Offer / accept SMC-Dv1.
    pub v1: bool,
    /// Offer / accept SMC-Dv2.
    pub v2: bool,
    /// User EIDs (valid per [`Eid::check_ueid`]); at most 8 are sent.
    pub ueids: Vec<Eid>,
    /// System EID, when enabled (Linux: s390 only).
    pub seid: Option<Eid>,
    /// Host name for the first-contact extension (blank padded).
    pub hostname: [u8; 32],
    /// OS type for the first-contact extension and v2 Declines.
    pub os_type: u8,
    /// Own release (Linux 1).
    pub release: u8,
    /// Own v2.1 feature mask.
    pub feature_mask: u16,
    /// Interface addresses for the v1 prefix check.
    pub ip: IpConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            v1: true,
            v2: true,
            ueids: Vec::new(),
            seid: None,
            hostname: [b' '; 32],
            os_type: OS_TYPE_LINUX,
            release: OWN_RELEASE,
            feature_mask: FEATURE_EMULATED_ISM,
            ip: IpConfig::default(),
        }
    }
}

/// A local ISM device as negotiation sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceDesc {
    /// Own GID (128 bits for virtual CHIDs).
    pub gid: Gid,
    /// Own CHID.
    pub chid: u16,
    /// Usable for SMC-Dv2.
    pub v2: bool,
}

impl DeviceDesc {
    /// Usable for SMC-Dv1: only native devices (emulated ones, such as loopback, are
    /// v2-only, §2.5).
    pub fn v1(&self) -> bool {
        !is_virtual_chid(self.chid)
    }
}

/// Compressed DMBE size → bytes: `2^(n+14)` (§2.3, §4.1).
pub fn dmbe_len(compressed: u8) -> usize {
    1usize << (u32::from(compressed & 0x0f) + 14)
}

/// Version a client puts in a Decline (§2.4): the Accept's version if it has one
/// (1 stays 1, anything else 2), else 2 when it has a v2-capable device, else 1.
pub fn client_decline_version(
    config: &LocalConfig,
    devices: &[DeviceDesc],
    accept: Option<&AcceptConfirmRepr>,
) -> u8 {
    match accept {
        Some(a) if a.version == 1 => 1,
        Some(_) => 2,
        None if config.v2 && devices.iter().any(|d| d.v2) => 2,
        None => 1,
    }
}

/// Version a server puts in a Decline (§2.4): 2 when the Proposal's version is > 1.
pub fn server_decline_version(proposal: &ProposalRepr) -> u8 {
    if proposal.version > 1 {
        2
    } else {
        1
    }
}

fn ip_prefix_area(ip: &IpConfig) -> Option<IpPrefixArea> {
    if let Some(v4) = ip.ipv4 {
        let mask = prefix_mask::<4>(v4.prefix_len);
        let mut subnet = [0u8; 4];
        for i in 0..4 {
            subnet[i] = v4.addr[i] & mask[i];
        }
        return Some(IpPrefixArea {
            ipv4_subnet: subnet,
            ipv4_prefix_len: v4.prefix_len,
            ipv6_prefixes: heapless::Vec::new(),
        });
    }
    let mut ipv6_prefixes = heapless::Vec::new();
    for cidr in ip.ipv6.iter().filter(|c| !c.is_link_local()) {
        let mask = prefix_mask::<16>(cidr.prefix_len);
        let mut prefix = [0u8; 16];
        for i in 0..16 {
            prefix[i] = cidr.addr[i] & mask[i];
        }
        if ipv6_prefixes.len() == MAX_IPV6_PREFIXES {
            break;
        }
        let _ = ipv6_prefixes.push(Ipv6Prefix {
            prefix,
            prefix_len: cidr.prefix_len,
        });
    }
    if ipv6_prefixes.is_empty() {
        return None;
    }
    Some(IpPrefixArea {
        ipv4_subnet: [0; 4],
        ipv4_prefix_len: 0,
        ipv6_prefixes,
    })
}

fn prefix_mask<const N: usize>(prefix_len: u8) -> [u8; N] {
    let mut mask = [0u8; N];
    let mut bits = usize::from(prefix_len).min(N * 8);
    for byte in mask.iter_mut() {
        let take = bits.min(8);
        *byte = if take == 0 { 0 } else { 0xffu8 << (8 - take) };
        bits -= take;
    }
    mask
}

fn same_prefix<const N: usize>(a: &[u8; N], b: &[u8; N], prefix_len: u8) -> bool {
    let mask = prefix_mask::<N>(prefix_len);
    (0..N).all(|i| a[i] & mask[i] == b[i] & mask[i])
}

/// Client: builds the Proposal Linux would send (§2.2, §2.5), or the Decline code to
/// send in its place when nothing can be offered (`0x03030000`; `0x03000000` when only
/// v1 is possible and the interface has no address to describe it).
///
/// - SMC-Dv1 is offered with the first native device when `config.v1`; its GID/CHID fill
///   the SMC-D area and the IP prefix area describes `config.ip`.
/// - SMC-Dv2 is offered when `config.v2`, some device is v2-capable, and either v1 is
///   offered or at least one further device fits the GID/CHID list: v2-capable devices
///   other than the v1 device, each CHID once (the v1 device's CHID included), an
///   emulated device taking two entries (skipped when only one entry is left), at most
///   8 entries. The v2 extension carries the own release, the SEID flag, the feature
///   mask and up to 8 UEIDs.
pub fn build_proposal(
    config: &LocalConfig,
    devices: &[DeviceDesc],
) -> Result<ProposalRepr, DeclineCode> {
    let ip_prefix = ip_prefix_area(&config.ip);
    let v1_candidate = if config.v1 {
        devices.iter().find(|d| d.v1())
    } else {
        None
    };
    // Linux drops the v1 offer when the interface prefix cannot be described (and
    // declines with CNFERR when nothing else remains). We decide this before building
    // the v2 list, so that the native device is then offered in the list instead of
    // the SMC-D area (a `typev1 = N` Proposal keeps its SMC-D area GID zero, which
    // Linux's validator reads as an IPv6 prefix count).
    let v1_device = v1_candidate.filter(|_| ip_prefix.is_some());
    let v2_capable = config.v2 && devices.iter().any(|d| d.v2);

    let mut list = SmcdV2Ext::default();
    let mut chids: Vec<u16> = v1_device.iter().map(|d| d.chid).collect();
    let mut entries = 0usize;
    if v2_capable {
        for device in devices.iter().filter(|d| d.v2) {
            if v1_device.is_some_and(|v1| core::ptr::eq(v1, device)) || chids.contains(&device.chid)
            {
                continue;
            }
            let needed = if is_virtual_chid(device.chid) { 2 } else { 1 };
            if entries + needed > MAX_GID_CHID_ENTRIES {
                continue;
            }
            list.push_device(device.gid, device.chid);
            chids.push(device.chid);
            entries += needed;
            if entries == MAX_GID_CHID_ENTRIES {
                break;
            }
        }
    }
    let offer_v2 = v2_capable && (entries > 0 || v1_device.is_some());
    if v1_device.is_none() && !offer_v2 {
        return Err(if v1_candidate.is_some() {
            DeclineCode::CNFERR
        } else {
            DeclineCode::NOSMCDEV
        });
    }
    let typev1 = if v1_device.is_some() {
        SmcType::D
    } else {
        SmcType::N
    };
    let typev2 = if offer_v2 { SmcType::D } else { SmcType::N };
    let v2 = offer_v2.then(|| {
        let mut ueids = heapless::Vec::new();
        for ueid in config.ueids.iter().take(MAX_UEIDS) {
            let _ = ueids.push(*ueid);
        }
        list.seid = config.seid.unwrap_or(Eid::ZERO);
        ProposalV2 {
            release: config.release,
            seid_enabled: config.seid.is_some(),
            roce_v2_gid: [0; 16],
            max_conns: 0,
            max_links: 0,
            feature_mask: config.feature_mask,
            ueids,
            smcd: Some(list),
        }
    });
    Ok(ProposalRepr {
        eyecatcher: Eyecatcher::Smcr,
        version: 2,
        typev1,
        typev2,
        peer_id: [0; 8],
        roce_gid: [0; 16],
        roce_mac: [0; 6],
        ism_gid: v1_device.map_or(0, |d| d.gid.gid),
        ism_chid: v1_device.map_or(0, |d| d.chid),
        ip_prefix: v1_device.and(ip_prefix),
        v2,
    })
}

/// Why the client cannot accept an Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Refuse with a Decline carrying this code (out-of-sync bit with `SYNCERR`), then
    /// fall back to TCP.
    Decline(DeclineCode),
    /// Fail the connection without fallback (Linux `-EPROTO`).
    Protocol(ProtocolError),
}

/// Accept contents Linux treats as a protocol error (connection fails, no fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The Accept's CHID names none of the devices the Proposal offered.
    UnknownChid(u16),
    /// The message is a Confirm where an Accept was expected (or vice versa).
    WrongKind,
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtocolError::UnknownChid(chid) => {
                write!(
                    f,
                    "Accept names CHID {chid:#06x}, which the Proposal did not offer"
                )
            }
            ProtocolError::WrongKind => {
                f.write_str("Confirm received where an Accept was expected")
            }
        }
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Decline(code) => write!(f, "decline with {code}"),
            ClientError::Protocol(e) => write!(f, "CLC protocol error: {e}"),
        }
    }
}

/// What the client learned from an acceptable Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientChoice {
    /// Index of the chosen local device.
    pub device: usize,
    /// Negotiated SMC version (1 or 2).
    pub version: u8,
    /// The server's GID (with `gid_ext` for virtual CHIDs).
    pub peer_gid: Gid,
    /// Token of the server's DMB.
    pub peer_token: u64,
    /// Compressed size of the server's DMB.
    pub peer_dmbe_size: u8,
    /// The server's DMB length in bytes (`2^(n+14)`).
    pub peer_dmb_len: usize,
    /// The server created a new link group (Accept first-contact bit).
    pub peer_first_contact: bool,
    /// The client creates a new link group (= `peer_first_contact`); the Confirm
    /// carries first contact iff this is set.
    pub create_group: bool,
    /// Negotiated release (from the Accept's FCE; 0 without one).
    pub release: u8,
    /// Common feature mask (Accept FCE mask AND own; 0 below release 1).
    pub feature_mask: u16,
    /// Negotiated EID (v2), echoed in the Confirm.
    pub eid: Option<Eid>,
}

/// Client: checks the server's Accept against the Proposal it answers (§2.5).
///
/// `has_group(device, peer_gid)` tells whether a usable (not out-of-sync) link group
/// for that device and peer already exists.
///
/// Refusals: `0x03040000` when the Accept's version/type was not offered;
/// `0x030c0000` when its FCE release exceeds ours; `0x04000000` (with the out-of-sync
/// bit) when the server reuses a link group the client does not have. An Accept whose
/// CHID was not offered is a protocol error.
pub fn client_check_accept(
    config: &LocalConfig,
    devices: &[DeviceDesc],
    proposal: &ProposalRepr,
    accept: &AcceptConfirmRepr,
    has_group: impl FnOnce(usize, Gid) -> bool,
) -> Result<ClientChoice, ClientError> {
    if accept.kind != AcceptConfirmKind::Accept {
        return Err(ClientError::Protocol(ProtocolError::WrongKind));
    }
    let offered = if accept.version >= 2 {
        proposal.version >= 2 && proposal.typev2.offers_d()
    } else {
        proposal.typev1.offers_d()
    };
    if !offered {
        return Err(ClientError::Decline(DeclineCode::MODEUNSUPP));
    }
    let mut release = 0;
    let mut feature_mask = 0;
    let (device, peer_gid, eid) = match &accept.v2 {
        Some(v2) => {
            if let Some(fce) = &v2.first_contact_ext {
                if fce.release > config.release {
                    return Err(ClientError::Decline(DeclineCode::VERSMISMAT));
                }
                release = fce.release;
                if release >= 1 {
                    feature_mask = fce.feature_mask & config.feature_mask;
                }
            }
            // The device the Proposal offered under this CHID: a list entry, or the
            // native device of the SMC-D area.
            let listed = proposal
                .v2
                .as_ref()
                .and_then(|p| p.smcd.as_ref())
                .and_then(|s| s.devices().find(|e| e.chid == v2.chid));
            let device = match listed {
                Some(entry) => devices
                    .iter()
                    .position(|d| d.chid == entry.chid && d.gid == entry.gid),
                None if proposal.typev1.offers_d() || proposal.ism_chid != 0 => {
                    devices.iter().position(|d| {
                        d.chid == v2.chid
                            && v2.chid == proposal.ism_chid
                            && d.gid.gid == proposal.ism_gid
                    })
                }
                None => None,
            }
            .ok_or(ClientError::Protocol(ProtocolError::UnknownChid(v2.chid)))?;
            let gid_ext = if is_virtual_chid(v2.chid) {
                v2.gid_ext
            } else {
                0
            };
            (
                device,
                Gid {
                    gid: accept.gid,
                    gid_ext,
                },
                Some(v2.eid),
            )
        }
        None => {
            let device = devices
                .iter()
                .position(|d| {
                    d.v1() && d.chid == proposal.ism_chid && d.gid.gid == proposal.ism_gid
                })
                .ok_or(ClientError::Decline(DeclineCode::MODEUNSUPP))?;
            (device, Gid::native(accept.gid), None)
        }
    };
    let create_group = accept.first_contact;
    if !create_group && !has_group(device, peer_gid) {
        return Err(ClientError::Decline(DeclineCode::SYNCERR));
    }
    Ok(ClientChoice {
        device,
        version: if accept.version >= 2 { 2 } else { 1 },
        peer_gid,
        peer_token: accept.token,
        peer_dmbe_size: accept.dmbe_size,
        peer_dmb_len: dmbe_len(accept.dmbe_size),
        peer_first_contact: accept.first_contact,
        create_group,
        release,
        feature_mask,
        eid,
    })
}

/// The local side of an Accept or Confirm: the DMB just registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnDmb {
    /// Token of the registered DMB.
    pub token: u64,
    /// Its compressed size (`len = 2^(n+14)`).
    pub dmbe_size: u8,
    /// Opaque link(-group) id.
    pub link_id: [u8; 4],
}

fn first_contact_ext(config: &LocalConfig, release: u8, feature_mask: u16) -> FirstContactExt {
    FirstContactExt {
        os_type: config.os_type,
        release,
        hostname: config.hostname,
        feature_mask: if release >= 1 { feature_mask } else { 0 },
        vendor_options: 0,
    }
}

fn accept_confirm(
    kind: AcceptConfirmKind,
    version: u8,
    first_contact: bool,
    device: &DeviceDesc,
    own: &OwnDmb,
    eid: Option<Eid>,
    fce: FirstContactExt,
) -> AcceptConfirmRepr {
    AcceptConfirmRepr {
        kind,
        eyecatcher: Eyecatcher::Smcd,
        version,
        first_contact,
        gid: device.gid.gid,
        token: own.token,
        dmbe_index: 0,
        dmbe_size: own.dmbe_size,
        link_id: own.link_id,
        v2: (version >= 2).then(|| AcceptConfirmV2 {
            chid: device.chid,
            eid: eid.unwrap_or(Eid::ZERO),
            gid_ext: if is_virtual_chid(device.chid) {
                device.gid.gid_ext
            } else {
                0
            },
            first_contact_ext: first_contact.then_some(fce),
        }),
    }
}

/// Client: the Confirm describing the client's own DMB (§2.3): first contact iff the
/// client created the link group; v2 echoes the Accept's EID and carries the FCE
/// (negotiated release and common feature mask) on first contact.
pub fn build_confirm(
    config: &LocalConfig,
    devices: &[DeviceDesc],
    choice: &ClientChoice,
    own: &OwnDmb,
) -> Option<AcceptConfirmRepr> {
    let device = devices.get(choice.device)?;
    Some(accept_confirm(
        AcceptConfirmKind::Confirm,
        choice.version,
        choice.create_group,
        device,
        own,
        choice.eid,
        first_contact_ext(config, choice.release, choice.feature_mask),
    ))
}

/// A device the server may use, with the peer GID it will talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the local device.
    pub device: usize,
    /// The client's GID on that device.
    pub peer_gid: Gid,
}

/// The server's selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChoice {
    /// SMC version of the selected path (1 or 2).
    pub version: u8,
    /// Matching devices in Linux's order; use the first on which a DMB can be
    /// registered (Linux tries them in turn; if none works, decline with `MAX_DMB`
    /// when the device was full, else `MEM`). Never empty.
    pub candidates: Vec<Candidate>,
    /// Negotiated EID (v2).
    pub eid: Option<Eid>,
    /// Negotiated release: min(Proposal release, own) for v2, 0 for v1.
    pub release: u8,
    /// Own feature mask, sent in the Accept FCE (release ≥ 1).
    pub feature_mask: u16,
    /// Version for a Decline sent after this point.
    pub decline_version: u8,
}

impl ServerChoice {
    /// The preferred candidate.
    pub fn first(&self) -> Candidate {
        self.candidates[0]
    }
}

fn prefix_matches(config: &LocalConfig, prefix: &IpPrefixArea) -> bool {
    if prefix.ipv6_prefixes.is_empty() {
        return config.ip.ipv4.is_some_and(|v4| {
            v4.prefix_len == prefix.ipv4_prefix_len
                && same_prefix(&v4.addr, &prefix.ipv4_subnet, v4.prefix_len)
        });
    }
    config
        .ip
        .ipv6
        .iter()
        .filter(|a| !a.is_link_local())
        .any(|a| {
            prefix.ipv6_prefixes.iter().any(|p| {
                p.prefix_len == a.prefix_len && same_prefix(&a.addr, &p.prefix, a.prefix_len)
            })
        })
}

fn match_eid(config: &LocalConfig, v2: &ProposalV2, smcd: &SmcdV2Ext) -> Option<Eid> {
    if let Some(seid) = config.seid {
        if v2.seid_enabled && smcd.seid == seid {
            return Some(seid);
        }
    }
    v2.ueids.iter().find(|u| config.ueids.contains(u)).copied()
}

/// Server: picks the path and device for a Proposal in Linux's order (§2.5), or the
/// Decline code to answer with.
///
/// `reachable(device, peer_gid)` is the device's `query_remote_gid` (VLAN "any").
///
/// 1. Initial checks: nothing offered → `0x03010000`. For SMC-Dv2: no v2 extension →
///    `0x03030004`, server not v2-capable → `0x03030003`, no SMC-Dv2 extension →
///    `0x03030005`, neither UEID nor SEID → `0x03030008`; these end the negotiation
///    only when nothing else was offered (else Linux forgets them).
/// 2. SMC-Dv2: candidates are the native device of the SMC-D area (if its CHID ≠ 0) and
///    each listed device (virtual CHIDs as GID pairs), each matched to a local
///    v2-capable device with the same CHID on which the peer GID is reachable. None →
///    reason `0x03030007`. Then an EID must match (SEID: both enabled and equal; else
///    the first proposed UEID also configured locally), else v2 is dropped silently.
/// 3. SMC-Dv1: the IP prefix must match (`0x03070000`), then a native device must reach
///    the proposed GID (`0x03030001`).
/// 4. Decline with the first recorded reason, else `0x03030001` (`0x03030000` if SMC-R
///    was offered).
pub fn server_select(
    config: &LocalConfig,
    devices: &[DeviceDesc],
    proposal: &ProposalRepr,
    mut reachable: impl FnMut(usize, Gid) -> bool,
) -> Result<ServerChoice, DeclineCode> {
    let decline_version = server_decline_version(proposal);
    let smcd_v1 = proposal.typev1.offers_d();
    let r_offered =
        proposal.typev1.offers_r() || (proposal.version > 1 && proposal.typev2.offers_r());
    let mut smcd_v2 = proposal.version > 1 && proposal.typev2.offers_d();
    let smcr_v2 = proposal.version > 1 && proposal.typev2.offers_r();
    let smcr_v1 = proposal.typev1.offers_r();

    // 1. smc_listen_v2_check
    let mut rc = DeclineCode::PEERNOSMC;
    let mut release = 0;
    let mut smcr_v2_kept = smcr_v2;
    if smcd_v2 || smcr_v2 {
        match &proposal.v2 {
            None => {
                smcd_v2 = false;
                smcr_v2_kept = false;
                rc = DeclineCode::NOV2EXT;
            }
            Some(v2) => {
                let server_v2 = config.v2 && devices.iter().any(|d| d.v2);
                if smcd_v2 {
                    if !server_v2 {
                        smcd_v2 = false;
                        rc = DeclineCode::NOISM2SUPP;
                    } else if v2.smcd.is_none() {
                        smcd_v2 = false;
                        rc = DeclineCode::NOV2DEXT;
                    } else if v2.ueids.is_empty() && !v2.seid_enabled {
                        smcd_v2 = false;
                        rc = DeclineCode::NOUEID;
                    }
                }
                if smcr_v2_kept && v2.ueids.is_empty() {
                    smcr_v2_kept = false;
                    rc = DeclineCode::NOUEID;
                }
                release = v2.release.min(config.release);
            }
        }
    }
    if !smcd_v1 && !smcd_v2 && !smcr_v1 && !smcr_v2_kept {
        return Err(rc);
    }

    // First recorded reason (Linux ini->rc).
    let mut first_rc: Option<DeclineCode> = None;
    fn store(code: DeclineCode, first: &mut Option<DeclineCode>) {
        if first.is_none() {
            *first = Some(code);
        }
    }

    // 2. SMC-Dv2 device matching (smc_find_ism_v2_device_serv).
    if smcd_v2 {
        if let Some((v2, smcd)) = proposal
            .v2
            .as_ref()
            .and_then(|v2| v2.smcd.as_ref().map(|s| (v2, s)))
        {
            let mut candidates: Vec<Candidate> = Vec::new();
            let mut check = |chid: u16, gid: Gid, candidates: &mut Vec<Candidate>| {
                for (i, d) in devices.iter().enumerate() {
                    if candidates.iter().any(|c| c.device == i) {
                        continue;
                    }
                    if d.v2 && d.chid == chid && reachable(i, gid) {
                        candidates.push(Candidate {
                            device: i,
                            peer_gid: gid,
                        });
                        break;
                    }
                }
            };
            if proposal.ism_chid != 0 {
                check(
                    proposal.ism_chid,
                    Gid::native(proposal.ism_gid),
                    &mut candidates,
                );
            }
            for dev in smcd.devices() {
                check(dev.chid, dev.gid, &mut candidates);
            }
            if candidates.is_empty() {
                store(DeclineCode::NOSMCD2DEV, &mut first_rc);
            } else if let Some(eid) = match_eid(config, v2, smcd) {
                return Ok(ServerChoice {
                    version: 2,
                    candidates,
                    eid: Some(eid),
                    release,
                    feature_mask: config.feature_mask,
                    decline_version,
                });
            }
        }
    }

    // 3. SMC-Dv1 (smc_listen_prfx_check, smc_find_ism_v1_device_serv).
    let prefix_ok = match &proposal.ip_prefix {
        _ if proposal.typev1 == SmcType::N => true,
        Some(prefix) => prefix_matches(config, prefix),
        None => false,
    };
    if !prefix_ok {
        store(DeclineCode::DIFFPREFIX, &mut first_rc);
    } else if smcd_v1 {
        let peer = Gid::native(proposal.ism_gid);
        let found = config
            .v1
            .then(|| {
                devices
                    .iter()
                    .enumerate()
                    .find(|(i, d)| d.v1() && reachable(*i, peer))
            })
            .flatten();
        match found {
            Some((device, _)) => {
                return Ok(ServerChoice {
                    version: 1,
                    candidates: alloc::vec![Candidate {
                        device,
                        peer_gid: peer
                    }],
                    eid: None,
                    release: 0,
                    feature_mask: 0,
                    decline_version,
                })
            }
            None => store(DeclineCode::NOSMCDDEV, &mut first_rc),
        }
    }

    // 4. No SMC-R devices here.
    if !r_offered {
        return Err(first_rc.unwrap_or(DeclineCode::NOSMCDDEV));
    }
    Err(first_rc.unwrap_or(DeclineCode::NOSMCDEV))
}

/// Server: the Accept describing the server's own DMB on `candidate` (§2.3). `first_contact`
/// is set when the server created a new link group for (device, peer GID).
pub fn build_accept(
    config: &LocalConfig,
    devices: &[DeviceDesc],
    choice: &ServerChoice,
    candidate: Candidate,
    own: &OwnDmb,
    first_contact: bool,
) -> Option<AcceptConfirmRepr> {
    let device = devices.get(candidate.device)?;
    Some(accept_confirm(
        AcceptConfirmKind::Accept,
        choice.version,
        first_contact,
        device,
        own,
        choice.eid,
        first_contact_ext(config, choice.release, choice.feature_mask),
    ))
}

/// What the server learned from an acceptable Confirm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfirmInfo {
    /// Token of the client's DMB.
    pub peer_token: u64,
    /// Compressed size of the client's DMB.
    pub peer_dmbe_size: u8,
    /// The client's DMB length in bytes.
    pub peer_dmb_len: usize,
    /// Common feature mask (own AND the Confirm's, release ≥ 1 first contact; else own).
    pub feature_mask: u16,
}

/// Server: checks the client's Confirm (§2.5): on a v2 first-contact Confirm the FCE
/// release must equal the negotiated one, else `0x03030009`.
pub fn server_check_confirm(
    choice: &ServerChoice,
    confirm: &AcceptConfirmRepr,
) -> Result<ConfirmInfo, DeclineCode> {
    let mut feature_mask = choice.feature_mask;
    if let Some(fce) = confirm
        .v2
        .as_ref()
        .and_then(|v2| v2.first_contact_ext.as_ref())
    {
        if fce.release != choice.release {
            return Err(DeclineCode::RELEASEERR);
        }
        if fce.release >= 1 {
            feature_mask &= fce.feature_mask;
        }
    }
    Ok(ConfirmInfo {
        peer_token: confirm.token,
        peer_dmbe_size: confirm.dmbe_size,
        peer_dmb_len: dmbe_len(confirm.dmbe_size),
        feature_mask,
    })
}
