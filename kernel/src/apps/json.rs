//! One-line JSON events on serial (`{"event":...,"app":...,...}`), the apps' machine-readable
//! output (formats: the `apps` module docs).

use alloc::string::String;
use core::fmt::{self, Write};

use smcd::counters::{write_json_string, ConnStats, JsonObject};

use crate::smc::{self, Smc, SmcStream};

/// A JSON object being built; [`Report::emit`] prints it as one serial line.
pub struct Report {
    buf: String,
}

impl Report {
    /// `{"event":<event>,"app":<app>`.
    pub fn new(event: &str, app: &str) -> Self {
        let mut r = Report {
            buf: String::from("{"),
        };
        r.buf.push_str("\"event\":");
        let _ = write_json_string(&mut r.buf, event);
        r.str("app", app)
    }

    fn key(&mut self, key: &str) {
        self.buf.push(',');
        let _ = write_json_string(&mut self.buf, key);
        self.buf.push(':');
    }

    /// A string field.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        let _ = write_json_string(&mut self.buf, value);
        self
    }

    /// A string field from `Display`.
    pub fn display(self, key: &str, value: &dyn fmt::Display) -> Self {
        let mut s = String::new();
        let _ = write!(s, "{value}");
        self.str(key, &s)
    }

    /// A number field.
    pub fn u64(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// A boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// A 64-bit value as 16 hex digits in a string (hashes).
    pub fn hex(self, key: &str, value: u64) -> Self {
        let mut s = String::new();
        let _ = write!(s, "{value:016x}");
        self.str(key, &s)
    }

    /// A field whose value is already JSON.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    /// A list of strings.
    pub fn strs(mut self, key: &str, values: &[&str]) -> Self {
        self.key(key);
        self.buf.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            let _ = write_json_string(&mut self.buf, v);
        }
        self.buf.push(']');
        self
    }

    /// A list of numbers.
    pub fn u64s(mut self, key: &str, values: &[u64]) -> Self {
        self.key(key);
        self.buf.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            let _ = write!(self.buf, "{v}");
        }
        self.buf.push(']');
        self
    }

    /// The latency fields of sorted round-trip times in ns: `min_ns`, `p50_ns`, `p90_ns`,
    /// `p99_ns`, `p999_ns`, `max_ns`, `mean_ns` and `cdf_ns` (the 101 percentiles 0..=100).
    pub fn latency(self, sorted: &[u64]) -> Self {
        self.u64("min_ns", sorted.first().copied().unwrap_or(0))
            .u64("p50_ns", super::percentile(sorted, 50))
            .u64("p90_ns", super::percentile(sorted, 90))
            .u64("p99_ns", super::percentile(sorted, 99))
            .u64("p999_ns", super::permille(sorted, 999))
            .u64("max_ns", sorted.last().copied().unwrap_or(0))
            .u64("mean_ns", super::mean(sorted))
            .u64s("cdf_ns", &super::cdf(sorted))
    }

    /// `irq_signal`, `irq_control` (ivshmem MSI-X interrupts) as the deltas from
    /// `before` (an earlier [`Smc::interrupts`]) to now.
    pub fn irq_deltas(self, smc: &Smc, before: (u64, u64)) -> Self {
        let (control, signal) = smc.interrupts();
        self.u64("irq_signal", signal.saturating_sub(before.1))
            .u64("irq_control", control.saturating_sub(before.0))
    }

    /// The connection's transport fields (see the module docs of `apps`).
    pub fn transport(mut self, conn: &SmcStream, smc: &Smc) -> Self {
        // Write the fields through a JsonObject into a scratch object, then splice them in.
        let mut scratch = String::new();
        if let Ok(mut obj) = JsonObject::begin(&mut scratch) {
            let _ = smc::write_transport(&mut obj, conn.transport(), &smc.device_kinds());
            let _ = obj.end();
        }
        // scratch = {"transport":...}: drop the braces.
        if scratch.len() > 2 {
            self.buf.push(',');
            self.buf.push_str(&scratch[1..scratch.len() - 1]);
        }
        self
    }

    /// The connection's counters as `"stats":{...}` plus its TCP byte counts.
    pub fn conn_stats(self, conn: &SmcStream) -> Self {
        let (tx, rx) = conn.tcp_bytes();
        self.stats("stats", &conn.counters())
            .u64("tcp_bytes_tx", tx)
            .u64("tcp_bytes_rx", rx)
    }

    /// `ConnStats` as an object field.
    pub fn stats(self, key: &str, stats: &ConnStats) -> Self {
        let mut s = String::new();
        let _ = stats.write_json(&mut s);
        self.raw(key, &s)
    }

    /// `{"event":"counters","app":..,"stack":{..},"tcp_bytes_tx":..,"tcp_bytes_rx":..,
    /// "spin_us":..,"spin_polls":..,"spin_hits":..,"sleeps":..,"link_groups":..,
    /// "dmbs_in_use":..,"dmbs_pooled":..}`.
    pub fn counters(app: &str, smc: &Smc) -> Self {
        let mut s = String::new();
        let _ = smc.counters().write_json(&mut s);
        let (tx, rx) = smc.tcp_bytes();
        let p = smc.polling_stats();
        let (groups, in_use, pooled) = smc.with_stack(|st| {
            st.link_groups()
                .iter()
                .fold((0u64, 0u64, 0u64), |(n, u, p), (_, g)| {
                    (
                        n + 1,
                        u + g.dmbs_in_use() as u64,
                        p + g.pooled_dmbs() as u64,
                    )
                })
        });
        Report::new("counters", app)
            .raw("stack", &s)
            .u64("tcp_bytes_tx", tx)
            .u64("tcp_bytes_rx", rx)
            .u64("spin_us", smc.spin().as_micros() as u64)
            .u64("spin_polls", p.spin_polls)
            .u64("spin_hits", p.spin_hits)
            .u64("sleeps", p.sleeps)
            .u64("irq_control", smc.interrupts().0)
            .u64("irq_signal", smc.interrupts().1)
            .u64("link_groups", groups)
            .u64("dmbs_in_use", in_use)
            .u64("dmbs_pooled", pooled)
    }

    /// The JSON text so far, closed.
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }

    /// Prints the object as one line on serial.
    pub fn emit(self) {
        let line = self.finish();
        crate::serial_println!("{line}");
    }
}
