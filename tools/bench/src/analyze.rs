//! From parsed runs to figures, ratios and the issue-6 targets (perf contract, "Targets").
//!
//! Every figure is `Option`: a key the guest did not print stays `None` and is listed in
//! [`Analysis::missing`] when the contract requires it — never estimated.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::parse::{BenchDir, Object, Run};

/// Ping-pong message sizes of the bench (bytes).
pub const PP_SIZES: [u64; 3] = [14, 1024, 16384];
/// Stream chunk sizes of the bench (bytes).
pub const CHUNKS: [u64; 3] = [1024, 65536, 1 << 20];
/// Configurations: id (as in `run.json`) and label.
pub const CONFIGS: [(&str, &str); 4] = [
    ("smcd-irq", "SMC-D interrupts"),
    ("smcd-poll", "SMC-D polling"),
    ("tcp", "TCP"),
    ("loopback", "SMC-D loopback"),
];
/// Configurations whose ping-pong the bench measures (loopback: `app=loopback-pingpong`).
pub const PP_CONFIGS: [&str; 4] = ["smcd-irq", "smcd-poll", "tcp", "loopback"];

/// Label of a configuration id.
pub fn label(config: &str) -> &str {
    CONFIGS
        .iter()
        .find(|(id, _)| *id == config)
        .map_or(config, |(_, l)| l)
}

/// Latency figures of one ping-pong (or floor) result line, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Measured round trips.
    pub round_trips: Option<u64>,
    /// Percentiles and extremes (µs).
    pub min: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// The 0th..100th percentiles (101 values, µs), from `cdf_ns`.
    pub cdf: Option<Vec<f64>>,
    /// MSI-X signal interrupts during the measured round trips (this VM).
    pub irq_signal: Option<u64>,
    /// Transport seen (`smcd/ivshmem`, `smcd/loopback`, `tcp`).
    pub transport: Option<String>,
}

/// Throughput figures of one stream run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stream {
    /// Bytes per connection.
    pub bytes: Option<u64>,
    /// Sender's rate (bytes/s).
    pub sender_bps: Option<f64>,
    /// Receiver's rate (bytes/s) — the figure the ratios use.
    pub receiver_bps: Option<f64>,
    /// Sender's MSI-X signal interrupts over the connection.
    pub irq_sender: Option<u64>,
    /// Receiver's MSI-X signal interrupts over the connection.
    pub irq_receiver: Option<u64>,
    /// Transport seen.
    pub transport: Option<String>,
}

impl Stream {
    /// Messages (chunks) the stream carried.
    pub fn messages(&self, chunk: u64) -> Option<f64> {
        self.bytes
            .filter(|_| chunk > 0)
            .map(|b| b as f64 / chunk as f64)
    }
}

/// One memcpy floor line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Memcpy {
    /// `heap` or `shm`.
    pub src: String,
    /// `heap` or `shm`.
    pub dst: String,
    /// Bytes per second.
    pub bps: Option<f64>,
}

/// Whether a target holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Within the limit.
    Met,
    /// Outside the limit.
    Missed,
    /// A figure it needs is missing.
    Missing,
}

/// One contract target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// The measured ratio or count.
    pub value: Option<f64>,
    /// `<=` or `>=`.
    pub cmp: &'static str,
    /// The limit.
    pub limit: f64,
    /// The verdict.
    pub verdict: Verdict,
}

impl Target {
    fn new(name: &str, value: Option<f64>, cmp: &'static str, limit: f64) -> Self {
        let verdict = match value {
            None => Verdict::Missing,
            Some(v) if (cmp == "<=" && v <= limit) || (cmp == ">=" && v >= limit) => Verdict::Met,
            Some(_) => Verdict::Missed,
        };
        Target {
            name: name.into(),
            value,
            cmp,
            limit,
            verdict,
        }
    }
}

/// A named ratio.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratio {
    /// What over what.
    pub name: String,
    /// The value, when both figures exist and the divisor is not zero.
    pub value: Option<f64>,
}

/// Everything the report shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Ping-pong latency by (configuration, size).
    pub pingpong: BTreeMap<String, BTreeMap<u64, Latency>>,
    /// Stream throughput by (configuration, chunk).
    pub stream: BTreeMap<String, BTreeMap<u64, Stream>>,
    /// Cache-line ping-pong through the shared region.
    pub floor_shm: Option<Latency>,
    /// Doorbell -> MSI-X round trip.
    pub floor_doorbell: Option<Latency>,
    /// memcpy bandwidths.
    pub memcpy: Vec<Memcpy>,
    /// Ratios.
    pub ratios: Vec<Ratio>,
    /// Contract targets.
    pub targets: Vec<Target>,
    /// Required figures that are missing.
    pub missing: Vec<String>,
    /// Runs that failed (status, error lines, wrong transport, corrupted data).
    pub failures: Vec<String>,
}

fn num(o: &Object, key: &str) -> Option<f64> {
    o.get(key).and_then(Value::as_f64)
}

fn int(o: &Object, key: &str) -> Option<u64> {
    o.get(key).and_then(Value::as_u64)
}

fn is(o: &Object, key: &str, val: &str) -> bool {
    o.get(key).and_then(Value::as_str) == Some(val)
}

fn results<'a>(objs: &'a [Object], app: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
    objs.iter()
        .filter(move |o| is(o, "event", "result") && is(o, "app", app))
}

/// `smcd/<device>` or `tcp` from a line's transport fields.
fn transport(o: &Object) -> Option<String> {
    match o.get("transport").and_then(Value::as_str) {
        Some("smcd") => Some(format!(
            "smcd/{}",
            o.get("device").and_then(Value::as_str).unwrap_or("?")
        )),
        Some(t) => Some(t.to_owned()),
        None => match o.get("loopback_smcd").and_then(Value::as_bool) {
            Some(true) => Some("smcd/loopback".into()),
            Some(false) => Some("tcp".into()),
            None => None,
        },
    }
}

/// Latency figures of a result line (keys `*_ns`, reported in µs).
pub fn latency(o: &Object) -> Latency {
    let us = |k: &str| num(o, k).map(|v| v / 1000.0);
    let cdf = o.get("cdf_ns").and_then(Value::as_array).and_then(|a| {
        let v: Option<Vec<f64>> = a.iter().map(|x| x.as_f64().map(|n| n / 1000.0)).collect();
        v.filter(|v| v.len() == 101)
    });
    Latency {
        round_trips: int(o, "round_trips"),
        min: us("min_ns"),
        p50: us("p50_ns"),
        p90: us("p90_ns"),
        p99: us("p99_ns"),
        p999: us("p999_ns"),
        max: us("max_ns"),
        cdf,
        irq_signal: int(o, "irq_signal"),
        transport: transport(o),
    }
}

fn rate(o: &Object) -> Option<f64> {
    num(o, "bytes_per_sec").or_else(|| {
        let (b, t) = (num(o, "bytes")?, num(o, "elapsed_ns")?);
        (t > 0.0).then(|| b * 1e9 / t)
    })
}

/// The transport a configuration must use.
fn expected_transport(config: &str) -> Option<&'static str> {
    match config {
        "smcd-irq" | "smcd-poll" => Some("smcd/ivshmem"),
        "tcp" => Some("tcp"),
        "loopback" => Some("smcd/loopback"),
        _ => None,
    }
}

/// Ratio a / b (None when either is missing or b is zero).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn check_run(run: &Run, failures: &mut Vec<String>) {
    let m = &run.meta;
    match m.status {
        0 => {}
        124 => failures.push(format!("{}: timed out (pair status 124)", m.name)),
        125 => failures.push(format!(
            "{}: skipped, the bench time budget was spent (status 125)",
            m.name
        )),
        s => failures.push(format!("{}: pair run exited with status {s}", m.name)),
    }
    for (n, objs) in run.vm.iter().enumerate() {
        for o in objs.iter().filter(|o| is(o, "event", "error")) {
            failures.push(format!(
                "{}: vm{n} error: {}",
                m.name,
                Value::Object(o.clone())
            ));
        }
        for o in objs.iter().filter(|o| is(o, "event", "result")) {
            if int(o, "mismatches").is_some_and(|x| x > 0) {
                failures.push(format!(
                    "{}: vm{n} counted {} mismatching bytes",
                    m.name, o["mismatches"]
                ));
            }
            if o.get("match").and_then(Value::as_bool) == Some(false) {
                failures.push(format!("{}: vm{n} hashes differ", m.name));
            }
            if let (Some(want), Some(got)) = (expected_transport(&m.config), transport(o)) {
                if got != want {
                    failures.push(format!("{}: vm{n} used {got}, expected {want}", m.name));
                }
            }
        }
    }
}

fn analyze_pingpong(run: &Run) -> Option<Latency> {
    results(&run.vm[0], "pingpong").last().map(latency)
}

fn analyze_stream(run: &Run) -> Option<Stream> {
    if run.meta.config == "loopback" {
        let o = results(&run.vm[0], "loopback").last()?;
        let bps = rate(o);
        return Some(Stream {
            bytes: int(o, "bytes"),
            sender_bps: bps,
            receiver_bps: bps,
            irq_sender: None,
            irq_receiver: None,
            transport: transport(o),
        });
    }
    let tx = results(&run.vm[0], "stream").last();
    let rx = results(&run.vm[1], "sink").last();
    if tx.is_none() && rx.is_none() {
        return None;
    }
    Some(Stream {
        bytes: rx
            .and_then(|o| int(o, "bytes"))
            .or_else(|| tx.and_then(|o| int(o, "bytes"))),
        sender_bps: tx.and_then(rate),
        receiver_bps: rx.and_then(rate),
        irq_sender: tx.and_then(|o| int(o, "irq_signal")),
        irq_receiver: rx.and_then(|o| int(o, "irq_signal")),
        transport: rx.and_then(transport).or_else(|| tx.and_then(transport)),
    })
}

fn analyze_floor(run: &Run, a: &mut Analysis) {
    for o in results(&run.vm[0], "floor") {
        match o.get("kind").and_then(Value::as_str) {
            Some("shm_pingpong") => a.floor_shm = Some(latency(o)),
            Some("doorbell") => a.floor_doorbell = Some(latency(o)),
            Some("memcpy") => a.memcpy.push(Memcpy {
                src: o.get("src").and_then(Value::as_str).unwrap_or("?").into(),
                dst: o.get("dst").and_then(Value::as_str).unwrap_or("?").into(),
                bps: rate(o),
            }),
            _ => {}
        }
    }
}

impl Analysis {
    /// Ping-pong figures of a configuration and size.
    pub fn pp(&self, config: &str, size: u64) -> Option<&Latency> {
        self.pingpong.get(config)?.get(&size)
    }

    /// Stream figures of a configuration and chunk.
    pub fn st(&self, config: &str, chunk: u64) -> Option<&Stream> {
        self.stream.get(config)?.get(&chunk)
    }

    /// memcpy rate for a direction.
    pub fn memcpy_bps(&self, src: &str, dst: &str) -> Option<f64> {
        self.memcpy
            .iter()
            .find(|m| m.src == src && m.dst == dst)
            .and_then(|m| m.bps)
    }

    /// Receiver (`true`) or sender interrupts per 64 KiB message, SMC-D interrupt mode.
    pub fn irq_per_message(&self, receiver: bool) -> Option<f64> {
        let s = self.st("smcd-irq", 65536)?;
        let irq = if receiver {
            s.irq_receiver
        } else {
            s.irq_sender
        }? as f64;
        s.messages(65536).filter(|m| *m > 0.0).map(|m| irq / m)
    }
}

/// Builds the analysis of a bench directory.
pub fn analyze(dir: &BenchDir) -> Analysis {
    let mut a = Analysis::default();
    for run in &dir.runs {
        check_run(run, &mut a.failures);
        let m = &run.meta;
        match m.kind.as_str() {
            "pingpong" => {
                if let Some(l) = analyze_pingpong(run) {
                    a.pingpong
                        .entry(m.config.clone())
                        .or_default()
                        .insert(m.param, l);
                }
            }
            "stream" => {
                if let Some(s) = analyze_stream(run) {
                    a.stream
                        .entry(m.config.clone())
                        .or_default()
                        .insert(m.param, s);
                }
            }
            "floor" => analyze_floor(run, &mut a),
            other => a
                .failures
                .push(format!("{}: unknown run kind '{other}'", m.name)),
        }
    }
    a.missing = missing(&a);
    a.ratios = ratios(&a);
    a.targets = targets(&a);
    a
}

fn missing(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    for config in PP_CONFIGS {
        for size in PP_SIZES {
            let Some(l) = a.pp(config, size) else {
                out.push(format!("{config} ping-pong {size} B: no result line"));
                continue;
            };
            for (k, v) in [
                ("p50_ns", l.p50),
                ("p90_ns", l.p90),
                ("p99_ns", l.p99),
                ("max_ns", l.max),
            ] {
                if v.is_none() {
                    out.push(format!("{config} ping-pong {size} B: {k}"));
                }
            }
            if size == 14 && l.cdf.is_none() {
                out.push(format!("{config} ping-pong {size} B: cdf_ns (101 values)"));
            }
        }
    }
    for (config, _) in CONFIGS {
        for chunk in CHUNKS {
            match a.st(config, chunk) {
                None => out.push(format!("{config} stream chunk {chunk}: no result line")),
                Some(s) if s.receiver_bps.is_none() => out.push(format!(
                    "{config} stream chunk {chunk}: receiver bytes_per_sec"
                )),
                Some(_) => {}
            }
        }
    }
    match a.st("smcd-irq", 65536) {
        Some(s) if s.irq_receiver.is_none() => {
            out.push("smcd-irq stream 64 KiB: sink irq_signal".into())
        }
        _ => {}
    }
    match a.st("smcd-irq", 65536) {
        Some(s) if s.irq_sender.is_none() => {
            out.push("smcd-irq stream 64 KiB: stream irq_signal".into())
        }
        _ => {}
    }
    for (name, f) in [
        ("shm_pingpong", &a.floor_shm),
        ("doorbell", &a.floor_doorbell),
    ] {
        match f {
            None => out.push(format!("floor {name}: no result line")),
            Some(l) if l.p50.is_none() || l.cdf.is_none() => {
                out.push(format!("floor {name}: p50_ns or cdf_ns"))
            }
            Some(_) => {}
        }
    }
    for (s, d) in [("heap", "heap"), ("heap", "shm"), ("shm", "heap")] {
        if a.memcpy_bps(s, d).is_none() {
            out.push(format!("floor memcpy {s}->{d}: bytes_per_sec"));
        }
    }
    out
}

fn ratios(a: &Analysis) -> Vec<Ratio> {
    let mut out = Vec::new();
    let lat = |c: &str, s: u64, q: fn(&Latency) -> Option<f64>| a.pp(c, s).and_then(q);
    for size in PP_SIZES {
        for (q, f) in [
            ("p50", (|l: &Latency| l.p50) as fn(&Latency) -> Option<f64>),
            ("p99", |l| l.p99),
        ] {
            for c in ["smcd-irq", "smcd-poll"] {
                out.push(Ratio {
                    name: format!("{} / TCP latency {q}, {size} B", label(c)),
                    value: ratio(lat(c, size, f), lat("tcp", size, f)),
                });
            }
        }
    }
    let bps = |c: &str, k: u64| a.st(c, k).and_then(|s| s.receiver_bps);
    for chunk in CHUNKS {
        for c in ["smcd-irq", "smcd-poll", "loopback"] {
            out.push(Ratio {
                name: format!("{} / TCP throughput, chunk {}", label(c), size_label(chunk)),
                value: ratio(bps(c, chunk), bps("tcp", chunk)),
            });
        }
    }
    let shm = a.floor_shm.as_ref().and_then(|l| l.p50);
    for c in ["smcd-poll", "smcd-irq"] {
        out.push(Ratio {
            name: format!("{} p50 (14 B) / shm_pingpong floor p50", label(c)),
            value: ratio(lat(c, 14, |l| l.p50), shm),
        });
    }
    out.push(Ratio {
        name: "SMC-D interrupts p50 (14 B) / doorbell floor p50".into(),
        value: ratio(
            lat("smcd-irq", 14, |l| l.p50),
            a.floor_doorbell.as_ref().and_then(|l| l.p50),
        ),
    });
    for c in ["smcd-irq", "smcd-poll", "loopback"] {
        out.push(Ratio {
            name: format!("{} 1 MiB stream / memcpy heap->shm", label(c)),
            value: ratio(bps(c, 1 << 20), a.memcpy_bps("heap", "shm")),
        });
    }
    out
}

fn targets(a: &Analysis) -> Vec<Target> {
    let lat = |c: &str| a.pp(c, 14).and_then(|l| l.p50);
    let bps = |c: &str, k: u64| a.st(c, k).and_then(|s| s.receiver_bps);
    vec![
        Target::new(
            "14 B latency p50: SMC-D interrupts / TCP",
            ratio(lat("smcd-irq"), lat("tcp")),
            "<=",
            0.2,
        ),
        Target::new(
            "64 KiB stream: SMC-D interrupts / TCP",
            ratio(bps("smcd-irq", 65536), bps("tcp", 65536)),
            ">=",
            5.0,
        ),
        Target::new(
            "14 B latency p50: SMC-D polling / shm_pingpong floor",
            ratio(lat("smcd-poll"), a.floor_shm.as_ref().and_then(|l| l.p50)),
            "<=",
            2.0,
        ),
        Target::new(
            "1 MiB stream (no-copy): SMC-D interrupts / memcpy heap->shm",
            ratio(bps("smcd-irq", 1 << 20), a.memcpy_bps("heap", "shm")),
            ">=",
            0.7,
        ),
        Target::new(
            "interrupts per 64 KiB message, receiver",
            a.irq_per_message(true),
            "<=",
            1.0,
        ),
        Target::new(
            "interrupts per 64 KiB message, sender",
            a.irq_per_message(false),
            "<=",
            1.0,
        ),
    ]
}

/// `1K`, `64K`, `1M`, or bytes.
pub fn size_label(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n >> 10)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse::{parse_log, BenchDir, Run, RunMeta};

    fn run(config: &str, kind: &str, param: u64, vm0: &str, vm1: &str) -> Run {
        Run {
            meta: RunMeta {
                name: format!("{config}-{kind}-{param}"),
                config: config.into(),
                kind: kind.into(),
                param,
                status: 0,
                elapsed_s: Some(1.0),
                vm0: String::new(),
                vm1: String::new(),
            },
            vm: [parse_log(vm0), parse_log(vm1)],
        }
    }

    fn cdf(p50_ns: u64) -> String {
        let v: Vec<String> = (0..=100u64)
            .map(|i| (p50_ns / 2 + i * p50_ns / 50).to_string())
            .collect();
        v.join(",")
    }

    fn pp_line(transport: &str, size: u64, p50: u64) -> String {
        format!(
            r#"{{"event":"result","app":"pingpong","conn":0,{transport},"round_trips":2000,"size":{size},"min_ns":{},"p50_ns":{p50},"p90_ns":{},"p99_ns":{},"p999_ns":{},"max_ns":{},"cdf_ns":[{}],"irq_signal":4000}}"#,
            p50 / 2,
            p50 * 3 / 2,
            p50 * 2,
            p50 * 3,
            p50 * 4,
            cdf(p50)
        )
    }

    fn stream_lines(transport: &str, bps: u64, irq: u64) -> (String, String) {
        let bytes = 4u64 << 20;
        (
            format!(
                r#"{{"event":"result","app":"stream","conn":0,{transport},"bytes":{bytes},"chunk":65536,"elapsed_ns":1,"bytes_per_sec":{bps},"irq_signal":{irq}}}"#
            ),
            format!(
                r#"{{"event":"result","app":"sink","conn":0,{transport},"bytes":{bytes},"chunk":0,"elapsed_ns":{},"mismatches":0,"irq_signal":{irq}}}"#,
                bytes * 1_000_000_000 / bps
            ),
        )
    }

    /// A complete fixture: every configuration with made-up but consistent figures.
    pub(crate) fn fixture() -> BenchDir {
        let smcd = r#""transport":"smcd","device":"ivshmem""#;
        let lo = r#""transport":"smcd","device":"loopback""#;
        let tcp = r#""transport":"tcp","reason":"0x03010000""#;
        let mut runs = Vec::new();
        for size in PP_SIZES {
            runs.push(run(
                "loopback",
                "pingpong",
                size,
                &pp_line(lo, size, 20_000),
                "",
            ));
            runs.push(run(
                "smcd-irq",
                "pingpong",
                size,
                &pp_line(smcd, size, 80_000),
                "",
            ));
            runs.push(run(
                "smcd-poll",
                "pingpong",
                size,
                &pp_line(smcd, size, 30_000),
                "",
            ));
            runs.push(run(
                "tcp",
                "pingpong",
                size,
                &pp_line(tcp, size, 500_000),
                "",
            ));
        }
        for chunk in CHUNKS {
            for (c, t, bps) in [
                ("smcd-irq", smcd, 60_000_000),
                ("smcd-poll", smcd, 70_000_000),
                ("tcp", tcp, 10_000_000),
            ] {
                let (tx, rx) = stream_lines(t, bps, 32);
                runs.push(run(c, "stream", chunk, &tx, &rx));
            }
            let lo = r#"{"event":"result","app":"loopback","conn":0,"bytes":4194304,"elapsed_ns":40000000,"hash":"1","sink_hash":"1","loopback_smcd":true,"match":true}"#;
            runs.push(run("loopback", "stream", chunk, lo, ""));
        }
        let floor = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            r#"{"event":"result","app":"floor","kind":"shm_pingpong","round_trips":2000,"p50_ns":20000,"p90_ns":30000,"p99_ns":40000,"p999_ns":45000,"max_ns":50000,"cdf_ns":[CDF1]}"#
                .replace("CDF1", &cdf(20_000)),
            r#"{"event":"result","app":"floor","kind":"doorbell","round_trips":2000,"p50_ns":60000,"p90_ns":80000,"p99_ns":90000,"p999_ns":95000,"max_ns":99000,"cdf_ns":[CDF2]}"#
                .replace("CDF2", &cdf(60_000)),
            r#"{"event":"result","app":"floor","kind":"memcpy","src":"heap","dst":"heap","block":1048576,"bytes":1,"elapsed_ns":1,"bytes_per_sec":200000000}"#,
            r#"{"event":"result","app":"floor","kind":"memcpy","src":"heap","dst":"shm","block":1048576,"bytes":1,"elapsed_ns":1,"bytes_per_sec":100000000}"#,
            r#"{"event":"result","app":"floor","kind":"memcpy","src":"shm","dst":"heap","block":1048576,"bytes":1,"elapsed_ns":1,"bytes_per_sec":90000000}"#,
        );
        runs.push(run("floor", "floor", 0, &floor, ""));
        BenchDir {
            meta: Default::default(),
            runs,
        }
    }

    #[test]
    fn complete_fixture_has_no_missing_figure() {
        let a = analyze(&fixture());
        assert!(a.missing.is_empty(), "{:?}", a.missing);
        assert!(a.failures.is_empty(), "{:?}", a.failures);
        assert_eq!(a.pp("tcp", 14).unwrap().p50, Some(500.0));
        // Loopback rate from bytes / elapsed_ns: 4 MiB in 40 ms.
        let lo = a.st("loopback", 65536).unwrap().receiver_bps.unwrap();
        assert!((lo - 4194304.0 / 0.04).abs() < 1.0, "{lo}");
    }

    #[test]
    fn ratios_and_targets() {
        let a = analyze(&fixture());
        let t = |name: &str| {
            a.targets
                .iter()
                .find(|t| t.name.starts_with(name))
                .unwrap()
                .clone()
        };
        // 80 us / 500 us = 0.16 <= 0.2.
        let lat = t("14 B latency p50: SMC-D interrupts");
        assert!((lat.value.unwrap() - 0.16).abs() < 1e-9);
        assert_eq!(lat.verdict, Verdict::Met);
        // 60 MB/s / 10 MB/s = 6 >= 5 (receiver rate from bytes / elapsed_ns).
        let st = t("64 KiB stream");
        assert!((st.value.unwrap() - 6.0).abs() < 1e-6, "{st:?}");
        assert_eq!(st.verdict, Verdict::Met);
        // 30 / 20 = 1.5 <= 2.
        assert_eq!(t("14 B latency p50: SMC-D polling").verdict, Verdict::Met);
        // 60 MB/s / 100 MB/s = 0.6 < 0.7: missed.
        let nc = t("1 MiB stream");
        assert!((nc.value.unwrap() - 0.6).abs() < 1e-6);
        assert_eq!(nc.verdict, Verdict::Missed);
        // 32 interrupts over 64 messages of 64 KiB.
        let rx = t("interrupts per 64 KiB message, receiver");
        assert_eq!(rx.value, Some(0.5));
        assert_eq!(rx.verdict, Verdict::Met);
        let r = a
            .ratios
            .iter()
            .find(|r| r.name == "SMC-D interrupts / TCP latency p99, 16384 B")
            .unwrap();
        assert!((r.value.unwrap() - 0.16).abs() < 1e-9);
    }

    #[test]
    fn missing_keys_are_reported_not_invented() {
        let mut d = fixture();
        // An older guest: no cdf_ns, no irq_signal, no floor run.
        for r in &mut d.runs {
            for vm in &mut r.vm {
                for o in vm.iter_mut() {
                    o.remove("cdf_ns");
                    o.remove("irq_signal");
                }
            }
        }
        d.runs.retain(|r| r.meta.kind != "floor");
        let a = analyze(&d);
        assert!(a
            .missing
            .iter()
            .any(|m| m == "smcd-irq ping-pong 14 B: cdf_ns (101 values)"));
        assert!(a
            .missing
            .iter()
            .any(|m| m == "smcd-irq stream 64 KiB: sink irq_signal"));
        assert!(a
            .missing
            .iter()
            .any(|m| m == "floor shm_pingpong: no result line"));
        assert!(a.floor_shm.is_none());
        let t = a
            .targets
            .iter()
            .find(|t| t.name.contains("receiver"))
            .unwrap();
        assert_eq!((t.value, t.verdict), (None, Verdict::Missing));
    }

    #[test]
    fn failures_wrong_transport_status_and_corruption() {
        let mut d = fixture();
        let tcp_line = pp_line(r#""transport":"tcp","reason":"0x03010000""#, 14, 1000);
        let i = d
            .runs
            .iter()
            .position(|r| r.meta.name == "smcd-irq-pingpong-14")
            .unwrap();
        d.runs[i].vm[0] = parse_log(&tcp_line);
        let j = d
            .runs
            .iter()
            .position(|r| r.meta.name == "tcp-stream-1024")
            .unwrap();
        d.runs[j].meta.status = 124;
        let k = d
            .runs
            .iter()
            .position(|r| r.meta.name == "tcp-stream-65536")
            .unwrap();
        d.runs[k].meta.status = 125;
        d.runs[j].vm[1][0].insert("mismatches".into(), 3.into());
        let a = analyze(&d);
        assert!(a
            .failures
            .iter()
            .any(|f| f.contains("smcd-irq-pingpong-14: vm0 used tcp, expected smcd/ivshmem")));
        assert!(a
            .failures
            .iter()
            .any(|f| f.contains("tcp-stream-1024: timed out (pair status 124)")));
        assert!(a.failures.iter().any(|f| f.contains("3 mismatching bytes")));
        assert!(a
            .failures
            .iter()
            .any(|f| f.contains("tcp-stream-65536: skipped, the bench time budget was spent")));
    }

    #[test]
    fn ratio_and_labels() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(size_label(1024), "1K");
        assert_eq!(size_label(1 << 20), "1M");
        assert_eq!(size_label(14), "14");
        assert_eq!(label("smcd-poll"), "SMC-D polling");
    }
}
