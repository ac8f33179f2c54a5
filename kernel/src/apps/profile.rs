//! The `profile` object of the result lines: where a connection's measured time went
//! (issue 6 profiling with guest TSC timestamps).

use alloc::string::String;

use crate::smc::{self as smc_sys, IoProfile, ShmCopyTotals, SmcStream};
use crate::{clock, net};

/// Nanoseconds of `cycles` TSC cycles.
pub fn cycles_ns(cycles: u64) -> u64 {
    (u128::from(cycles) * 1_000_000_000 / u128::from(clock::tsc_hz().max(1))) as u64
}

/// Where one connection's measured time went: the `profile` object of the stream,
/// sink, pingpong and echo result lines (issue 6 profiling). From the measurement start
/// (sender: before the first write; sink: the first received byte; pingpong: the first
/// measured round trip; echo: its first received bytes) to its end:
/// - `app_ns` under `app_key` (`"prep_ns"`: stamping/filling the send buffer;
///   `"verify_ns"`: checking received bytes; pingpong `"check_ns"`: filling and comparing
///   its buffers),
/// - `op_ns`/`ops`: inside the stack's read/write/shutdown calls (DMB copies, CDCs),
/// - `sleep_ns`/`sleeps`: those calls asleep until their wake-up,
/// - `copy_in_*`/`copy_out_*`: the DMB data copies (heap->shm writes, shm->heap reads)
///   of ALL connections of this VM in that time (part of `op_ns`),
/// - `net_ns`/`net_polls`: the smoltcp polls of the VM's network task in that time
///   (TCP segments in and out, NIC doorbells; part of `sleep_ns` or `rest_ns`),
/// - `doorbell_ns`/`doorbells`: the VM's ivshmem doorbell writes in that time (part of
///   `op_ns` when the app's own calls rang them),
/// - `rest_ns`: the remainder (executor, the app's loop).
///
/// A zero-copy sink checks the bytes inside its read call: that part of `verify_ns` is
/// also in `op_ns` (and counted once in `rest_ns`).
#[derive(Clone, Copy)]
pub struct Profiler {
    io: IoProfile,
    copies: ShmCopyTotals,
    net: (u64, u64),
    doorbells: (u64, u64),
    /// Cycles of the app's own work ([`Profiler::app`] or added by the app).
    pub app_cycles: u64,
    /// Part of `app_cycles` spent inside stack calls (zero-copy verification).
    pub app_in_op_cycles: u64,
}

impl Profiler {
    /// Starts measuring at the connection's current counters.
    pub fn start(s: &SmcStream) -> Self {
        Profiler {
            io: s.io_profile(),
            copies: smc_sys::shm_copies(),
            net: net::poll_totals(),
            doorbells: drivers::ivshmem::regs::doorbell_totals(),
            app_cycles: 0,
            app_in_op_cycles: 0,
        }
    }

    /// Runs `f`, counting its time as the app's own work.
    pub fn app<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t0 = clock::rdtsc();
        let r = f();
        self.app_cycles += clock::rdtsc().saturating_sub(t0);
        r
    }

    /// The `profile` object (`app_key` names the app's own work).
    pub fn json(&self, s: &SmcStream, elapsed_ns: u64, app_key: &str) -> String {
        let io = s.io_profile();
        let c = smc_sys::shm_copies();
        let app_ns = cycles_ns(self.app_cycles);
        let op_ns = cycles_ns(io.op_cycles - self.io.op_cycles);
        let sleep_ns = cycles_ns(io.sleep_cycles - self.io.sleep_cycles);
        let (net_cycles, net_polls) = net::poll_totals();
        let (ring_cycles, rings) = drivers::ivshmem::regs::doorbell_totals();
        alloc::format!(
            "{{\"elapsed_ns\":{elapsed_ns},\"{app_key}\":{app_ns},\"op_ns\":{op_ns},\
             \"ops\":{},\"sleep_ns\":{sleep_ns},\"sleeps\":{},\"copy_in_bytes\":{},\
             \"copy_in_ns\":{},\"copy_out_bytes\":{},\"copy_out_ns\":{},\"net_ns\":{},\
             \"net_polls\":{},\"doorbell_ns\":{},\"doorbells\":{},\"rest_ns\":{}}}",
            io.ops - self.io.ops,
            io.sleeps - self.io.sleeps,
            c.write_bytes - self.copies.write_bytes,
            cycles_ns(c.write_cycles - self.copies.write_cycles),
            c.read_bytes - self.copies.read_bytes,
            cycles_ns(c.read_cycles - self.copies.read_cycles),
            cycles_ns(net_cycles - self.net.0),
            net_polls - self.net.1,
            cycles_ns(ring_cycles - self.doorbells.0),
            rings - self.doorbells.1,
            elapsed_ns.saturating_sub(
                app_ns - cycles_ns(self.app_in_op_cycles).min(app_ns) + op_ns + sleep_ns
            ),
        )
    }
}
