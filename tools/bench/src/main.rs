//! smcd-bench: the host side of `./qemu-run.sh bench` — report tables, JSON and plot.
//!
//! `smcd-bench report <dir>` reads what `scripts/bench.sh` left in `<dir>` (see
//! [`parse`]), prints the markdown table and writes `results.json`, `table.md` and
//! `bench.png` there. Exit status 1 when a run failed or a figure the issue-6 contract
//! requires is missing (the outputs are still written), 2 when the directory is unusable.

mod analyze;
mod parse;
mod plot;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "smcd-bench", about = "Reports of ./qemu-run.sh bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse the run directories under DIR; write results.json, table.md, bench.png there.
    Report {
        /// The bench output directory (`./qemu-run.sh bench --out DIR`).
        dir: PathBuf,
    },
}

/// `key: value` lines for the table header, from meta.json.
fn header(meta: &parse::Object) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in [
        "commit",
        "date",
        "accel",
        "qemu",
        "loadavg",
        "mode",
        "elapsed_s",
    ] {
        if let Some(v) = meta.get(key) {
            let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push((key.to_owned(), s));
        }
    }
    if let Some(Value::Object(c)) = meta.get("counts") {
        let s: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(("counts".into(), s.join(" ")));
    }
    out
}

fn report(dir: &Path) -> Result<bool, String> {
    let bench = parse::read_dir(dir).map_err(|e| e.to_string())?;
    let a = analyze::analyze(&bench);
    let mut meta = bench.meta.clone();
    if !meta.contains_key("loadavg") {
        if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
            let l: Vec<&str> = l.split_whitespace().take(3).collect();
            meta.insert(
                "loadavg".into(),
                Value::String(format!("{} (at report time)", l.join(" "))),
            );
        }
    }
    let runs: Vec<Value> = bench
        .runs
        .iter()
        .map(|r| {
            json!({
                "name": r.meta.name, "config": r.meta.config, "kind": r.meta.kind,
                "param": r.meta.param, "status": r.meta.status, "elapsed_s": r.meta.elapsed_s,
                "cmdline_vm0": r.meta.vm0, "cmdline_vm1": r.meta.vm1,
                "vm0": r.vm[0], "vm1": r.vm[1],
            })
        })
        .collect();
    let results = json!({ "meta": meta, "runs": runs, "analysis": a });
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    write("results.json", text.as_bytes())?;
    let md = table::render(&a, &header(&meta));
    write("table.md", md.as_bytes())?;
    print!("{md}");
    plot::draw(&a, &dir.join("bench.png"))?;
    eprintln!(
        "smcd-bench: wrote {0}/results.json, {0}/table.md, {0}/bench.png",
        dir.display()
    );
    for f in &a.failures {
        eprintln!("smcd-bench: failed run: {f}");
    }
    for m in &a.missing {
        eprintln!("smcd-bench: missing figure: {m}");
    }
    Ok(a.failures.is_empty() && a.missing.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report { dir } => match report(&dir) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("smcd-bench: incomplete: see the failed runs / missing figures above");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("smcd-bench: error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::tests::fixture;

    /// Writes the in-memory fixture as a bench directory (run.json + vmN.log per run).
    fn write_fixture(dir: &Path, broken: Option<&str>) {
        std::fs::write(
            dir.join("meta.json"),
            r#"{"commit":"abc1234","accel":"tcg","counts":{"pingpong_round_trips":2000}}"#,
        )
        .unwrap();
        for run in fixture().runs {
            let d = dir.join(&run.meta.name);
            std::fs::create_dir(&d).unwrap();
            let status = if broken == Some(run.meta.name.as_str()) {
                124
            } else {
                0
            };
            let meta = json!({"name": run.meta.name, "config": run.meta.config, "kind": run.meta.kind,
                              "param": run.meta.param, "status": status});
            std::fs::write(d.join("run.json"), meta.to_string()).unwrap();
            for (n, objs) in run.vm.iter().enumerate() {
                let mut text = String::from("[boot] smcd\n");
                for o in objs {
                    text.push_str(&format!("{}\r\n", Value::Object(o.clone())));
                }
                std::fs::write(d.join(format!("vm{n}.log")), text).unwrap();
            }
        }
    }

    #[test]
    fn report_writes_all_outputs_and_flags_a_failed_run() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), None);
        assert_eq!(report(tmp.path()), Ok(true));
        let results: Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("results.json")).unwrap())
                .unwrap();
        assert_eq!(results["meta"]["commit"], "abc1234");
        assert_eq!(
            results["runs"].as_array().unwrap().len(),
            fixture().runs.len()
        );
        assert_eq!(results["analysis"]["targets"][1]["verdict"], "Met");
        let md = std::fs::read_to_string(tmp.path().join("table.md")).unwrap();
        assert!(md.contains("- counts: pingpong_round_trips=2000"));
        assert!(std::fs::read(tmp.path().join("bench.png"))
            .unwrap()
            .starts_with(b"\x89PNG"));

        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), Some("tcp-pingpong-14"));
        assert_eq!(report(tmp.path()), Ok(false));
        let md = std::fs::read_to_string(tmp.path().join("table.md")).unwrap();
        assert!(
            md.contains("- tcp-pingpong-14: timed out (pair status 124)"),
            "{md}"
        );
    }

    #[test]
    fn report_on_an_empty_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = report(tmp.path()).unwrap_err();
        assert!(err.contains("no run directory"), "{err}");
    }
}
