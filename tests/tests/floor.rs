//! The floor apps between two VMs (`app=floor` on vm0, `app=floor-server` on vm1): every
//! measurement line is there with its documented fields, the counts add up, and both
//! VMs end with `ok` (formats: `kernel/src/apps/mod.rs` "Serial output", `floor` module).

use std::time::Duration;

use e2e::{ensure, field_str, field_u64, is_event, Pair, PairConfig, Result};
use serde_json::Value;

fn kind(v: &Value) -> Option<&str> {
    v.get("kind").and_then(Value::as_str)
}

/// A latency line: `round_trips`, `warmup`, ordered percentiles, and 101 non-decreasing
/// `cdf_ns` values whose ends are `min_ns` and `max_ns`.
fn check_latency(v: &Value, round_trips: u64, warmup: u64) -> Result<()> {
    ensure(field_u64(v, "round_trips")? == round_trips, || {
        format!("round_trips: {v}")
    })?;
    ensure(field_u64(v, "warmup")? == warmup, || format!("warmup: {v}"))?;
    let keys = ["min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"];
    let values = keys
        .iter()
        .map(|k| field_u64(v, k))
        .collect::<Result<Vec<_>>>()?;
    ensure(values[0] > 0, || format!("zero round-trip time: {v}"))?;
    ensure(values.windows(2).all(|w| w[0] <= w[1]), || {
        format!("percentiles out of order: {v}")
    })?;
    let mean = field_u64(v, "mean_ns")?;
    ensure(values[0] <= mean && mean <= values[5], || {
        format!("mean outside min..max: {v}")
    })?;
    let cdf: Vec<u64> = v
        .get("cdf_ns")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    ensure(cdf.len() == 101, || {
        format!("cdf_ns needs 101 numbers: {v}")
    })?;
    ensure(cdf.windows(2).all(|w| w[0] <= w[1]), || {
        format!("cdf_ns decreases: {v}")
    })?;
    ensure(
        cdf[0] == values[0] && cdf[50] == values[1] && cdf[100] == values[5],
        || format!("cdf_ns ends/median differ from min/p50/max: {v}"),
    )
}

/// 2000 measured round trips (plus 50 warm-up) of the cache-line and doorbell floors,
/// and the three memcpy lines, between two VMs sharing one ivshmem region.
#[test]
fn floor_lines_between_two_vms() -> Result<()> {
    let (count, warmup) = (2000u64, 50u64);
    let mut cfg = PairConfig::new(
        format!("app=floor count={count} warmup={warmup}"),
        "app=floor-server",
    );
    cfg.timeout = Duration::from_secs(300);
    let Some(pair) = Pair::start("floor", &cfg)? else {
        return Ok(());
    };
    let t = Duration::from_secs(280);
    let ready = pair.wait_event(1, "ready", t)?;
    ensure(field_str(&ready, "app")? == "floor-server", || {
        format!("ready: {ready}")
    })?;
    ensure(field_u64(&ready, "region_bytes")? >= 2 << 20, || {
        format!("region: {ready}")
    })?;
    let result = |k: &'static str| move |v: &Value| is_event(v, "result") && kind(v) == Some(k);
    let shm = pair.wait_for(0, "shm_pingpong result", t, result("shm_pingpong"))?;
    check_latency(&shm, count, warmup)?;
    let bell = pair.wait_for(0, "doorbell result", t, result("doorbell"))?;
    check_latency(&bell, count, warmup)?;
    ensure(
        field_u64(&shm, "p50_ns")? < field_u64(&bell, "p50_ns")?,
        || format!("polling a cache line should beat an interrupt round trip: {shm} / {bell}"),
    )?;
    let mut seen = Vec::new();
    let mut from = 0;
    for _ in 0..3 {
        let (i, m) = pair.wait_for_from(0, from, "memcpy result", t, result("memcpy"))?;
        from = i + 1;
        ensure(field_u64(&m, "block")? == 1 << 20, || format!("block: {m}"))?;
        let bytes = field_u64(&m, "bytes")?;
        ensure(bytes >= 1 << 20 && bytes % (1 << 20) == 0, || {
            format!("bytes: {m}")
        })?;
        let ns = field_u64(&m, "elapsed_ns")?;
        ensure(ns >= 500_000_000, || format!("ran shorter than 0.5 s: {m}"))?;
        let bps = field_u64(&m, "bytes_per_sec")?;
        let expect = (u128::from(bytes) * 1_000_000_000 / u128::from(ns)) as u64;
        ensure(bps == expect, || {
            format!("bytes_per_sec != bytes/elapsed: {m}")
        })?;
        seen.push(format!(
            "{}->{}",
            field_str(&m, "src")?,
            field_str(&m, "dst")?
        ));
    }
    ensure(seen == ["heap->heap", "heap->shm", "shm->heap"], || {
        format!("memcpy directions: {seen:?}")
    })?;
    for vm in [0, 1] {
        let done = pair.wait_event(vm, "done", t)?;
        ensure(done.get("ok") == Some(&Value::Bool(true)), || {
            format!("vm{vm}: {done}")
        })?;
    }
    pair.finish(t)
}
