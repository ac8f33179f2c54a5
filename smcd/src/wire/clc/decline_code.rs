//! Decline (peer diagnosis) codes, Linux `smc_clc.h` 2024 era (protocol-reference §3).

use core::fmt;

/// A 32-bit Decline diagnosis code (sent BE at Decline offset 16).
///
/// Any value can be received; unknown values mean "fall back to TCP" like any other
/// (§3). The named constants are Linux's table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DeclineCode(pub u32);

/// (code, Linux name, meaning) for every known code, in table order.
const TABLE: &[(u32, &str, &str)] = &[
    (
        0x0101_0000,
        "MEM",
        "not enough memory / DMB could not be allocated",
    ),
    (
        0x0201_0000,
        "TIMEOUT_CL",
        "SMC-R: timeout waiting for confirm link",
    ),
    (
        0x0202_0000,
        "TIMEOUT_AL",
        "SMC-R: timeout waiting for add link",
    ),
    (0x0300_0000, "CNFERR", "configuration error"),
    (0x0301_0000, "PEERNOSMC", "peer did not indicate SMC"),
    (0x0302_0000, "IPSEC", "IPsec on the TCP connection"),
    (0x0303_0000, "NOSMCDEV", "no SMC device"),
    (0x0303_0001, "NOSMCDDEV", "no SMC-D device"),
    (0x0303_0002, "NOSMCRDEV", "no SMC-R device"),
    (0x0303_0003, "NOISM2SUPP", "no ISMv2 support"),
    (0x0303_0004, "NOV2EXT", "no v2 extension in Proposal"),
    (0x0303_0005, "NOV2DEXT", "no SMC-Dv2 extension in Proposal"),
    (0x0303_0006, "NOSEID", "peer sent no SEID"),
    (0x0303_0007, "NOSMCD2DEV", "no matching SMC-Dv2 device"),
    (0x0303_0008, "NOUEID", "peer sent no UEID"),
    (0x0303_0009, "RELEASEERR", "release negotiation failed"),
    (
        0x0303_000a,
        "MAXCONNERR",
        "SMC-R max_conns negotiation failed",
    ),
    (
        0x0303_000b,
        "MAXLINKERR",
        "SMC-R max_links negotiation failed",
    ),
    (
        0x0304_0000,
        "MODEUNSUPP",
        "mode/version in Accept was not offered",
    ),
    (0x0305_0000, "RMBE_EC", "SMC-R: eyecatcher in RMBE"),
    (0x0306_0000, "OPTUNSUPP", "socket option not supported"),
    (0x0307_0000, "DIFFPREFIX", "IP prefix/subnet mismatch"),
    (
        0x0308_0000,
        "GETVLANERR",
        "cannot get VLAN id of the interface",
    ),
    (
        0x0309_0000,
        "ISMVLANERR",
        "cannot register VLAN on ISM device",
    ),
    (0x030a_0000, "NOACTLINK", "SMC-R: no active link"),
    (0x030b_0000, "NOSRVLINK", "SMC-R: server link not found"),
    (0x030c_0000, "VERSMISMAT", "SMC version mismatch"),
    (0x030d_0000, "MAX_DMB", "SMC-D DMB limit reached"),
    (0x030e_0000, "NOROUTE", "SMC-Rv2: no route"),
    (
        0x030f_0000,
        "NOINDIRECT",
        "SMC-Rv2: indirect/direct mismatch",
    ),
    (0x0400_0000, "SYNCERR", "link-group state out of sync"),
    (0x0500_0000, "PEERDECL", "the peer declined (local)"),
    (0x0999_0000, "INTERR", "internal error"),
    (0x0999_0001, "ERR_RTOK", "internal: rtoken handling"),
    (0x0999_0002, "ERR_RDYLNK", "internal: ready link"),
    (0x0999_0003, "ERR_REGBUF", "internal: buffer registration"),
];

impl DeclineCode {
    /// Not enough memory / DMB could not be allocated.
    pub const MEM: DeclineCode = DeclineCode(0x0101_0000);
    /// SMC-R: timeout waiting for confirm link.
    pub const TIMEOUT_CL: DeclineCode = DeclineCode(0x0201_0000);
    /// SMC-R: timeout waiting for add link.
    pub const TIMEOUT_AL: DeclineCode = DeclineCode(0x0202_0000);
    /// Configuration error.
    pub const CNFERR: DeclineCode = DeclineCode(0x0300_0000);
    /// Peer did not indicate SMC (no TCP option, or nothing usable offered).
    pub const PEERNOSMC: DeclineCode = DeclineCode(0x0301_0000);
    /// IPsec on the TCP connection.
    pub const IPSEC: DeclineCode = DeclineCode(0x0302_0000);
    /// No SMC device (R or D).
    pub const NOSMCDEV: DeclineCode = DeclineCode(0x0303_0000);
    /// No SMC-D device.
    pub const NOSMCDDEV: DeclineCode = DeclineCode(0x0303_0001);
    /// No SMC-R device.
    pub const NOSMCRDEV: DeclineCode = DeclineCode(0x0303_0002);
    /// No ISMv2 support.
    pub const NOISM2SUPP: DeclineCode = DeclineCode(0x0303_0003);
    /// No v2 extension in the Proposal.
    pub const NOV2EXT: DeclineCode = DeclineCode(0x0303_0004);
    /// No SMC-Dv2 extension in the Proposal.
    pub const NOV2DEXT: DeclineCode = DeclineCode(0x0303_0005);
    /// Peer sent no SEID.
    pub const NOSEID: DeclineCode = DeclineCode(0x0303_0006);
    /// No matching SMC-Dv2 device.
    pub const NOSMCD2DEV: DeclineCode = DeclineCode(0x0303_0007);
    /// Peer sent no UEID (and no SEID).
    pub const NOUEID: DeclineCode = DeclineCode(0x0303_0008);
    /// Release negotiation failed.
    pub const RELEASEERR: DeclineCode = DeclineCode(0x0303_0009);
    /// SMC-R max_conns negotiation failed.
    pub const MAXCONNERR: DeclineCode = DeclineCode(0x0303_000a);
    /// SMC-R max_links negotiation failed.
    pub const MAXLINKERR: DeclineCode = DeclineCode(0x0303_000b);
    /// Mode/version in the Accept was not offered.
    pub const MODEUNSUPP: DeclineCode = DeclineCode(0x0304_0000);
    /// SMC-R: eyecatcher in RMBE.
    pub const RMBE_EC: DeclineCode = DeclineCode(0x0305_0000);
    /// Socket option (TCP Fast Open) not supported.
    pub const OPTUNSUPP: DeclineCode = DeclineCode(0x0306_0000);
    /// IP prefix/subnet mismatch.
    pub const DIFFPREFIX: DeclineCode = DeclineCode(0x0307_0000);
    /// Cannot get the VLAN id of the interface.
    pub const GETVLANERR: DeclineCode = DeclineCode(0x0308_0000);
    /// Cannot register the VLAN on the ISM device.
    pub const ISMVLANERR: DeclineCode = DeclineCode(0x0309_0000);
    /// SMC-R: no active link.
    pub const NOACTLINK: DeclineCode = DeclineCode(0x030a_0000);
    /// SMC-R: server link not found.
    pub const NOSRVLINK: DeclineCode = DeclineCode(0x030b_0000);
    /// SMC version mismatch.
    pub const VERSMISMAT: DeclineCode = DeclineCode(0x030c_0000);
    /// SMC-D DMB limit reached (device returned "no space").
    pub const MAX_DMB: DeclineCode = DeclineCode(0x030d_0000);
    /// SMC-Rv2: no route.
    pub const NOROUTE: DeclineCode = DeclineCode(0x030e_0000);
    /// SMC-Rv2: indirect/direct mismatch.
    pub const NOINDIRECT: DeclineCode = DeclineCode(0x030f_0000);
    /// Link-group state out of sync (sent with the out-of-sync bit).
    pub const SYNCERR: DeclineCode = DeclineCode(0x0400_0000);
    /// Local only: the peer declined.
    pub const PEERDECL: DeclineCode = DeclineCode(0x0500_0000);
    /// Internal error.
    pub const INTERR: DeclineCode = DeclineCode(0x0999_0000);
    /// Internal: rtoken handling.
    pub const ERR_RTOK: DeclineCode = DeclineCode(0x0999_0001);
    /// Internal: ready link.
    pub const ERR_RDYLNK: DeclineCode = DeclineCode(0x0999_0002);
    /// Internal: buffer registration.
    pub const ERR_REGBUF: DeclineCode = DeclineCode(0x0999_0003);

    /// Every named code, in Linux's table order.
    pub fn all() -> impl Iterator<Item = DeclineCode> {
        TABLE.iter().map(|&(code, _, _)| DeclineCode(code))
    }

    fn entry(self) -> Option<&'static (u32, &'static str, &'static str)> {
        TABLE.iter().find(|(code, _, _)| *code == self.0)
    }

    /// Linux's short name (`SMC_CLC_DECL_<name>`), if the code is known.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// A one-line meaning, if the code is known.
    pub fn description(self) -> Option<&'static str> {
        self.entry().map(|e| e.2)
    }

    /// Whether the code is in Linux's 2024-era table.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// Looks a code up by its Linux short name (e.g. `"NOSMCDEV"`).
    pub fn from_name(name: &str) -> Option<DeclineCode> {
        TABLE
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|&(code, _, _)| DeclineCode(code))
    }
}

impl fmt::Debug for DeclineCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeclineCode({self})")
    }
}

impl fmt::Display for DeclineCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{:#010x} ({name})", self.0),
            None => write!(f, "{:#010x} (unknown)", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn table_is_consistent() {
        assert_eq!(DeclineCode::all().count(), 36);
        for code in DeclineCode::all() {
            let name = code.name().unwrap();
            assert_eq!(DeclineCode::from_name(name), Some(code));
            assert!(code.is_known());
        }
        // Sorted and unique.
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn named_constants_match_table() {
        assert_eq!(DeclineCode::NOSMCDEV.name(), Some("NOSMCDEV"));
        assert_eq!(DeclineCode::NOUEID.0, 0x0303_0008);
        assert_eq!(DeclineCode::SYNCERR.name(), Some("SYNCERR"));
        assert_eq!(DeclineCode::ERR_REGBUF.name(), Some("ERR_REGBUF"));
        assert_eq!(DeclineCode::DIFFPREFIX.0, 0x0307_0000);
    }

    #[test]
    fn unknown_codes() {
        for raw in [0u32, 0x0200_0000, 0x0600_0000, 0x9999_0000, 0x0301_0001] {
            let c = DeclineCode(raw);
            assert!(!c.is_known());
            assert_eq!(c.name(), None);
        }
        assert_eq!(
            format!("{}", DeclineCode(0x0600_0000)),
            "0x06000000 (unknown)"
        );
        assert_eq!(
            format!("{}", DeclineCode::NOSMCDEV),
            "0x03030000 (NOSMCDEV)"
        );
    }
}
