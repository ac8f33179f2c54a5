//! Per-connection and global counters, with a dependency-free JSON rendering.
//!
//! The counters are plain integers owned by the socket layer (no globals, no atomics):
//! the [`crate::socket`] stack updates them as it drives handshakes, data and close,
//! and hands out snapshots. The appliance prints a snapshot as one JSON object per
//! line ([`GlobalCounters::write_json`]); [`JsonObject`] is the tiny writer behind it,
//! built on `core::fmt::Write` so it works on bare metal.

use alloc::collections::BTreeMap;
use core::fmt::{self, Write};

/// Data-path counters of one connection (SMC-D or fallback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Application bytes sent.
    pub bytes_tx: u64,
    /// Application bytes received (handed to the application).
    pub bytes_rx: u64,
    /// CDC messages written into the peer's DMB (SMC-D only).
    pub cdcs_tx: u64,
    /// CDC messages read from the own DMB (SMC-D only).
    pub cdcs_rx: u64,
    /// Signals (interrupts) requested towards the peer (SMC-D only).
    pub signals_tx: u64,
    /// Signals received for this connection's DMB (SMC-D only).
    pub signals_rx: u64,
    /// CLC bytes written during the handshake (including a Decline).
    pub clc_bytes_tx: u64,
    /// CLC bytes read during the handshake.
    pub clc_bytes_rx: u64,
}

impl ConnStats {
    /// Adds every field of `other` to `self` (saturating).
    pub fn accumulate(&mut self, other: &ConnStats) {
        self.bytes_tx = self.bytes_tx.saturating_add(other.bytes_tx);
        self.bytes_rx = self.bytes_rx.saturating_add(other.bytes_rx);
        self.cdcs_tx = self.cdcs_tx.saturating_add(other.cdcs_tx);
        self.cdcs_rx = self.cdcs_rx.saturating_add(other.cdcs_rx);
        self.signals_tx = self.signals_tx.saturating_add(other.signals_tx);
        self.signals_rx = self.signals_rx.saturating_add(other.signals_rx);
        self.clc_bytes_tx = self.clc_bytes_tx.saturating_add(other.clc_bytes_tx);
        self.clc_bytes_rx = self.clc_bytes_rx.saturating_add(other.clc_bytes_rx);
    }

    /// Writes the fields into an open JSON object.
    pub fn write_fields<W: Write>(&self, obj: &mut JsonObject<'_, W>) -> fmt::Result {
        obj.u64("bytes_tx", self.bytes_tx)?;
        obj.u64("bytes_rx", self.bytes_rx)?;
        obj.u64("cdcs_tx", self.cdcs_tx)?;
        obj.u64("cdcs_rx", self.cdcs_rx)?;
        obj.u64("signals_tx", self.signals_tx)?;
        obj.u64("signals_rx", self.signals_rx)?;
        obj.u64("clc_bytes_tx", self.clc_bytes_tx)?;
        obj.u64("clc_bytes_rx", self.clc_bytes_rx)
    }

    /// Renders the counters as one JSON object, e.g. `{"bytes_tx":5,...}`.
    pub fn write_json<W: Write>(&self, w: &mut W) -> fmt::Result {
        let mut obj = JsonObject::begin(w)?;
        self.write_fields(&mut obj)?;
        obj.end()
    }
}

/// Stack-wide counters: handshakes, fallbacks by reason, aborts, link groups, DMBs, and
/// the data-path totals of every connection (closed ones plus, in a snapshot, the
/// live ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters {
    /// Handshakes started as client (`connect`).
    pub handshakes_client: u64,
    /// Handshakes started as server (`accept`).
    pub handshakes_server: u64,
    /// Handshakes that ended in an SMC-D connection.
    pub handshakes_smcd: u64,
    /// Handshakes that failed outright (timeout, protocol or transport error).
    pub handshakes_failed: u64,
    /// Connections that fell back to TCP, by decline reason (the code sent or
    /// received; `0x03010000` when the peer did not show the SMC option).
    pub fallbacks: BTreeMap<u32, u64>,
    /// Declines this side sent.
    pub declines_sent: u64,
    /// Declines received from the peer.
    pub declines_received: u64,
    /// SMC-D connections aborted (locally, by the peer, or by link-group termination).
    pub aborts: u64,
    /// Connections released by the application.
    pub closes: u64,
    /// Link groups created (first contact).
    pub link_groups_created: u64,
    /// Connections that joined an existing link group.
    pub link_groups_reused: u64,
    /// Link groups freed (idle, terminated, or failed first contact).
    pub link_groups_freed: u64,
    /// Link groups terminated by peer loss or an out-of-sync Decline.
    pub link_groups_terminated: u64,
    /// DMBs registered with a device.
    pub dmbs_registered: u64,
    /// DMBs taken again from a link group's pool (zeroed) instead of registered.
    pub dmbs_reused: u64,
    /// DMBs unregistered from a device.
    pub dmbs_freed: u64,
    /// DMB registrations refused by a device (no space).
    pub dmb_exhaustions: u64,
    /// Data-path totals.
    pub data: ConnStats,
}

impl GlobalCounters {
    /// Counts one fallback with `reason`.
    pub fn count_fallback(&mut self, reason: u32) {
        *self.fallbacks.entry(reason).or_insert(0) += 1;
    }

    /// Total fallbacks over all reasons.
    pub fn fallbacks_total(&self) -> u64 {
        self.fallbacks.values().sum()
    }

    /// Fallbacks with exactly `reason`.
    pub fn fallbacks_with(&self, reason: u32) -> u64 {
        self.fallbacks.get(&reason).copied().unwrap_or(0)
    }

    /// Renders the counters as one JSON object on one line, tagged
    /// `"type":"smcd_counters"`; fallback reasons are keys like `"0x03010000"`.
    pub fn write_json<W: Write>(&self, w: &mut W) -> fmt::Result {
        let mut obj = JsonObject::begin(w)?;
        obj.str("type", "smcd_counters")?;
        obj.u64("handshakes_client", self.handshakes_client)?;
        obj.u64("handshakes_server", self.handshakes_server)?;
        obj.u64("handshakes_smcd", self.handshakes_smcd)?;
        obj.u64("handshakes_failed", self.handshakes_failed)?;
        obj.u64("fallbacks_total", self.fallbacks_total())?;
        {
            let mut reasons = obj.object("fallbacks")?;
            for (reason, count) in &self.fallbacks {
                let mut key = heapless::String::<10>::new();
                write!(key, "{reason:#010x}")?;
                reasons.u64(&key, *count)?;
            }
            reasons.end()?;
        }
        obj.u64("declines_sent", self.declines_sent)?;
        obj.u64("declines_received", self.declines_received)?;
        obj.u64("aborts", self.aborts)?;
        obj.u64("closes", self.closes)?;
        obj.u64("link_groups_created", self.link_groups_created)?;
        obj.u64("link_groups_reused", self.link_groups_reused)?;
        obj.u64("link_groups_freed", self.link_groups_freed)?;
        obj.u64("link_groups_terminated", self.link_groups_terminated)?;
        obj.u64("dmbs_registered", self.dmbs_registered)?;
        obj.u64("dmbs_reused", self.dmbs_reused)?;
        obj.u64("dmbs_freed", self.dmbs_freed)?;
        obj.u64("dmb_exhaustions", self.dmb_exhaustions)?;
        self.data.write_fields(&mut obj)?;
        obj.end()
    }
}

/// A minimal streaming JSON object writer over `core::fmt::Write`.
///
/// Keys and string values are escaped per RFC 8259 §7; numbers are unsigned integers
/// or booleans. Call [`JsonObject::end`] to write the closing brace.
pub struct JsonObject<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<'w, W: Write> JsonObject<'w, W> {
    /// Writes `{` and returns the open object.
    pub fn begin(w: &'w mut W) -> Result<Self, fmt::Error> {
        w.write_char('{')?;
        Ok(JsonObject { w, first: true })
    }

    fn key(&mut self, key: &str) -> fmt::Result {
        if !self.first {
            self.w.write_char(',')?;
        }
        self.first = false;
        write_json_string(self.w, key)?;
        self.w.write_char(':')
    }

    /// Writes `"key":value` for an unsigned integer.
    pub fn u64(&mut self, key: &str, value: u64) -> fmt::Result {
        self.key(key)?;
        write!(self.w, "{value}")
    }

    /// Writes `"key":true|false`.
    pub fn bool(&mut self, key: &str, value: bool) -> fmt::Result {
        self.key(key)?;
        self.w.write_str(if value { "true" } else { "false" })
    }

    /// Writes `"key":"value"` with `value` escaped.
    pub fn str(&mut self, key: &str, value: &str) -> fmt::Result {
        self.key(key)?;
        write_json_string(self.w, value)
    }

    /// Opens a nested object under `key`; close it with [`JsonObject::end`] before
    /// writing further fields of `self`.
    pub fn object(&mut self, key: &str) -> Result<JsonObject<'_, W>, fmt::Error> {
        self.key(key)?;
        JsonObject::begin(self.w)
    }

    /// Writes the closing `}`.
    pub fn end(self) -> fmt::Result {
        self.w.write_char('}')
    }
}

/// Writes `s` as a JSON string literal (quotes, backslash and control characters
/// escaped).
pub fn write_json_string<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn conn_stats_render_and_accumulate() {
        let mut a = ConnStats {
            bytes_tx: 5,
            cdcs_tx: 2,
            ..ConnStats::default()
        };
        a.accumulate(&ConnStats {
            bytes_tx: 1,
            signals_rx: 7,
            ..ConnStats::default()
        });
        let mut s = String::new();
        a.write_json(&mut s).unwrap();
        assert_eq!(
            s,
            r#"{"bytes_tx":6,"bytes_rx":0,"cdcs_tx":2,"cdcs_rx":0,"signals_tx":0,"signals_rx":7,"clc_bytes_tx":0,"clc_bytes_rx":0}"#
        );
    }

    #[test]
    fn global_counters_render_fallbacks_by_reason() {
        let mut g = GlobalCounters::default();
        g.count_fallback(0x0301_0000);
        g.count_fallback(0x030d_0000);
        g.count_fallback(0x0301_0000);
        g.aborts = 3;
        assert_eq!(g.fallbacks_total(), 3);
        assert_eq!(g.fallbacks_with(0x0301_0000), 2);
        assert_eq!(g.fallbacks_with(0x0303_0000), 0);
        let mut s = String::new();
        g.write_json(&mut s).unwrap();
        assert!(
            s.starts_with(r#"{"type":"smcd_counters","handshakes_client":0,"#),
            "{s}"
        );
        assert!(
            s.contains(r#""fallbacks_total":3,"fallbacks":{"0x03010000":2,"0x030d0000":1},"#),
            "{s}"
        );
        assert!(s.contains(r#""aborts":3,"#), "{s}");
        assert!(s.ends_with(r#""clc_bytes_rx":0}"#), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        let mut obj = JsonObject::begin(&mut s).unwrap();
        obj.str("k\"ey", "a\\b\n\u{1}é").unwrap();
        obj.bool("ok", true).unwrap();
        obj.object("empty").unwrap().end().unwrap();
        obj.end().unwrap();
        assert_eq!(s, r#"{"k\"ey":"a\\b\n\u0001é","ok":true,"empty":{}}"#);
    }
}
