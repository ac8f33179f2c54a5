//! Many sequential connections between two VMs: connect, transfer, close, again, and
//! every DMB given back afterwards on both sides (no leak across 1000 cycles).
//!
//! The apps' `cycles=` option and its `cycles` summary line, and the `counters` line's
//! DMB pool fields: `kernel/src/apps/mod.rs` ("Serial output").

use std::time::Duration;

use e2e::{ensure, field_str, field_u64, is_event, stack_counter, Pair, PairConfig, Result};
use serde_json::Value;

/// 1000 connect/transfer/close cycles vm0 → vm1 over SMC-D, each 4 KiB byte-exact (the
/// sink checks every byte against the sender's pattern and the length against `size=`;
/// the summed FNV-1a hashes agree on both sides). Afterwards, on each side, no DMB is in
/// use and every registered DMB is either unregistered or free in its link group's pool
/// (`dmbs_registered == dmbs_freed + dmbs_pooled`), every connection took a DMB
/// (`dmbs_registered + dmbs_reused == cycles`), and freed DMBs were reused instead of
/// registered again.
#[test]
fn thousand_sequential_cycles_free_every_dmb() -> Result<()> {
    let (cycles, size) = (1000u64, 4096u64);
    let mut cfg = PairConfig::new(
        format!("app=stream port=7950 size={size} cycles={cycles}"),
        format!("app=sink port=7950 size={size} cycles={cycles}"),
    );
    cfg.timeout = Duration::from_secs(900);
    let Some(pair) = Pair::start("cycles1000", &cfg)? else {
        return Ok(());
    };
    let t = Duration::from_secs(840);
    let summary = |v: &Value| is_event(v, "cycles");
    let sent = pair.wait_for(0, "stream cycles summary", t, summary)?;
    let got = pair.wait_for(1, "sink cycles summary", t, summary)?;
    for (v, role) in [(&sent, "stream"), (&got, "sink")] {
        ensure(field_str(v, "role")? == role, || format!("role: {v}"))?;
        ensure(field_u64(v, "cycles")? == cycles, || {
            format!("{role}: cycles: {v}")
        })?;
        ensure(field_u64(v, "smcd")? == cycles, || {
            format!("{role}: not every cycle over SMC-D: {v}")
        })?;
        ensure(field_u64(v, "bytes")? == cycles * size, || {
            format!("{role}: bytes: {v}")
        })?;
        ensure(field_u64(v, "mismatches")? == 0, || {
            format!("{role}: mismatches: {v}")
        })?;
    }
    ensure(field_u64(&got, "conn")? == 0, || {
        format!("sink: the data was not the pattern of stream 0: {got}")
    })?;
    ensure(
        field_str(&sent, "hash")? == field_str(&got, "hash")?,
        || format!("hashes differ: {sent} / {got}"),
    )?;
    let mut figures = Vec::new();
    for vm in [0, 1] {
        let c = pair.wait_event(vm, "counters", t)?;
        let registered = stack_counter(&c, "dmbs_registered")?;
        let reused = stack_counter(&c, "dmbs_reused")?;
        let freed = stack_counter(&c, "dmbs_freed")?;
        let pooled = field_u64(&c, "dmbs_pooled")?;
        ensure(field_u64(&c, "dmbs_in_use")? == 0, || {
            format!("vm{vm}: DMBs still in use: {c}")
        })?;
        ensure(registered == freed + pooled, || {
            format!("vm{vm}: registered DMBs neither freed nor pooled: {c}")
        })?;
        ensure(registered + reused == cycles, || {
            format!("vm{vm}: one DMB per connection expected: {c}")
        })?;
        ensure(registered < cycles / 2, || {
            format!("vm{vm}: freed DMBs were not reused: {c}")
        })?;
        ensure(stack_counter(&c, "aborts")? == 0, || {
            format!("vm{vm}: aborted connections: {c}")
        })?;
        figures.push(format!(
            "vm{vm}: registered {registered} reused {reused} freed {freed} pooled {pooled}"
        ));
        let done = pair.wait_event(vm, "done", t)?;
        ensure(done["ok"] == true, || format!("vm{vm} failed: {done}"))?;
    }
    println!(
        "{cycles} cycles of {size} B in {:.1} s; {}",
        pair.elapsed().as_secs_f64(),
        figures.join("; ")
    );
    pair.finish(Duration::from_secs(60))
}
