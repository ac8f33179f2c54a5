//! The markdown table of a bench run (`table.md`, also printed): figures, ratios, targets.

use std::fmt::Write;

use crate::analyze::{size_label, Analysis, Latency, Verdict, CHUNKS, CONFIGS, PP_SIZES};

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "missing".into(), |v| format!("{v:.1}"))
}

fn mbs(v: Option<f64>) -> String {
    v.map_or_else(|| "missing".into(), |v| format!("{:.1}", v / 1e6))
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "missing".into(), |v| format!("{v:.3}"))
}

fn lat_row(out: &mut String, name: &str, l: Option<&Latency>) {
    let f = |q: fn(&Latency) -> Option<f64>| us(l.and_then(q));
    let rt = l
        .and_then(|l| l.round_trips)
        .map_or_else(|| "missing".into(), |n| n.to_string());
    let tr = l
        .and_then(|l| l.transport.clone())
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "| {name} | {rt} | {} | {} | {} | {} | {} | {tr} |",
        f(|l| l.p50),
        f(|l| l.p90),
        f(|l| l.p99),
        f(|l| l.p999),
        f(|l| l.max)
    );
}

/// Renders the analysis as markdown. `header` lines (commit, date, ...) come first.
pub fn render(a: &Analysis, header: &[(String, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## smcd bench\n");
    for (k, v) in header {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\n### Ping-pong latency (µs)\n");
    let _ = writeln!(
        out,
        "| configuration | round trips | p50 | p90 | p99 | p99.9 | max | transport |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for (id, name) in CONFIGS {
        for size in PP_SIZES {
            let row = format!("{name}, {size} B");
            lat_row(&mut out, &row, a.pp(id, size));
        }
    }
    lat_row(
        &mut out,
        "floor: shm cache-line ping-pong",
        a.floor_shm.as_ref(),
    );
    lat_row(
        &mut out,
        "floor: doorbell -> MSI-X round trip",
        a.floor_doorbell.as_ref(),
    );

    let _ = writeln!(out, "\n### Stream throughput (MB/s = 10^6 bytes/s)\n");
    let _ = writeln!(out, "| configuration | chunk | bytes | receiver MB/s | sender MB/s | irq/msg receiver | irq/msg sender | transport |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for (id, name) in CONFIGS {
        for chunk in CHUNKS {
            let s = a.st(id, chunk);
            let per = |irq: Option<u64>| {
                if id == "loopback" || id == "tcp" {
                    return "-".to_string();
                }
                let m = s.and_then(|s| s.messages(chunk));
                x(irq
                    .zip(m)
                    .filter(|(_, m)| *m > 0.0)
                    .map(|(i, m)| i as f64 / m))
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                size_label(chunk),
                s.and_then(|s| s.bytes)
                    .map_or_else(|| "missing".into(), |b| b.to_string()),
                mbs(s.and_then(|s| s.receiver_bps)),
                mbs(s.and_then(|s| s.sender_bps)),
                per(s.and_then(|s| s.irq_receiver)),
                per(s.and_then(|s| s.irq_sender)),
                s.and_then(|s| s.transport.clone())
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }
    for (s, d) in [("heap", "heap"), ("heap", "shm"), ("shm", "heap")] {
        let _ = writeln!(
            out,
            "| floor: memcpy {s} -> {d} | 1M | | {} | | | | |",
            mbs(a.memcpy_bps(s, d))
        );
    }

    let _ = writeln!(out, "\n### Ratios\n");
    let _ = writeln!(out, "| ratio | value |");
    let _ = writeln!(out, "|---|---:|");
    for r in &a.ratios {
        let _ = writeln!(out, "| {} | {} |", r.name, x(r.value));
    }

    let _ = writeln!(out, "\n### Targets (issue 6)\n");
    let _ = writeln!(out, "| target | value | limit | verdict |");
    let _ = writeln!(out, "|---|---:|---|---|");
    for t in &a.targets {
        let v = match t.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Missing => "MISSING figure",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {v} |",
            t.name,
            x(t.value),
            t.cmp,
            t.limit
        );
    }
    if !a.missing.is_empty() {
        let _ = writeln!(out, "\n### Missing figures (not printed by the guests)\n");
        for m in &a.missing {
            let _ = writeln!(out, "- {m}");
        }
    }
    if !a.failures.is_empty() {
        let _ = writeln!(out, "\n### Failed runs\n");
        for f in &a.failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{analyze, tests::fixture};

    #[test]
    fn renders_every_figure_and_verdict() {
        let a = analyze(&fixture());
        let t = render(&a, &[("commit".into(), "abc1234".into())]);
        assert!(t.contains("- commit: abc1234"));
        // TCP 14 B: p50 500 us, p90 750, p99 1000, p99.9 1500, max 2000.
        assert!(
            t.contains("| TCP, 14 B | 2000 | 500.0 | 750.0 | 1000.0 | 1500.0 | 2000.0 | tcp |"),
            "{t}"
        );
        assert!(t.contains("| SMC-D loopback, 14 B | 2000 | 20.0 |"), "{t}");
        assert!(
            t.contains(
                "| SMC-D interrupts | 64K | 4194304 | 60.0 | 60.0 | 0.500 | 0.500 | smcd/ivshmem |"
            ),
            "{t}"
        );
        assert!(t.contains("| floor: memcpy heap -> shm | 1M | | 100.0 |"));
        assert!(
            t.contains("| 14 B latency p50: SMC-D interrupts / TCP | 0.160 | <= 0.2 | met |"),
            "{t}"
        );
        assert!(t.contains("| 1 MiB stream (no-copy): SMC-D interrupts / memcpy heap->shm | 0.600 | >= 0.7 | MISSED |"));
        assert!(!t.contains("Missing figures"));
        assert!(!t.contains("missing"));
    }

    #[test]
    fn missing_figures_are_shown_as_missing() {
        let mut d = fixture();
        d.runs.retain(|r| r.meta.kind != "floor");
        let t = render(&analyze(&d), &[]);
        assert!(
            t.contains("| floor: shm cache-line ping-pong | missing | missing |"),
            "{t}"
        );
        assert!(t.contains("MISSING figure"));
        assert!(t.contains("- floor doorbell: no result line"));
    }
}
