//! Reading a bench output directory: run metadata and the VMs' JSON serial lines.
//!
//! Layout written by `scripts/bench.sh` (see there): `<dir>/meta.json` (commit, date,
//! accelerator, QEMU version, load average, counts) and one directory per pair run with
//! `run.json` (name, configuration, kind, parameter, pair exit status, command lines) and the
//! serial logs `vm0.log` / `vm1.log`. A serial line is JSON when it holds a `{` that starts
//! a JSON object running to the end of the line (issue-6 contract, "JSON lines"); anything
//! before that `{` (a log prefix) is ignored, and so are lines that do not parse.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// One JSON object from a serial log.
pub type Object = Map<String, Value>;

/// What `scripts/bench.sh` records about one pair run (`run.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RunMeta {
    /// Directory name, e.g. `smcd-irq-pingpong-14`.
    pub name: String,
    /// Configuration: `smcd-irq`, `smcd-poll`, `tcp`, `loopback` or `floor`.
    pub config: String,
    /// `pingpong`, `stream` or `floor`.
    pub kind: String,
    /// Message size (ping-pong) or chunk (stream) in bytes; 0 for floors.
    #[serde(default)]
    pub param: u64,
    /// Exit status of `pair_run` (0 = both VMs printed `done`, no error).
    pub status: i64,
    /// Wall seconds of the run.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
    /// vm0's command line.
    #[serde(default)]
    pub vm0: String,
    /// vm1's command line (empty with `--only-vm0`).
    #[serde(default)]
    pub vm1: String,
}

/// One pair run: its metadata and the JSON objects each VM printed.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// `run.json`.
    pub meta: RunMeta,
    /// JSON objects of vm0 then vm1, in serial order (empty when the log is absent).
    pub vm: [Vec<Object>; 2],
}

/// A bench directory: top-level metadata and every run, sorted by name.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchDir {
    /// `meta.json` (an empty object when absent).
    pub meta: Object,
    /// The runs.
    pub runs: Vec<Run>,
}

/// Why a bench directory could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// A file could not be read.
    Io(PathBuf, std::io::Error),
    /// A metadata file is not what the bench script writes.
    Meta(PathBuf, String),
    /// The directory holds no run.
    NoRuns(PathBuf),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            ReadError::Meta(p, e) => write!(f, "{}: {e}", p.display()),
            ReadError::NoRuns(p) => {
                write!(f, "{}: no run directory (with run.json) found", p.display())
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Parses one serial line: the JSON object starting at the first `{`, if the rest of the
/// line is exactly one object. CR and surrounding blanks are ignored.
pub fn parse_line(line: &str) -> Option<Object> {
    let line = line.trim_end_matches(['\r', '\n']).trim();
    let start = line.find('{')?;
    match serde_json::from_str::<Value>(&line[start..]) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    }
}

/// Every JSON object of a serial log's text, in order.
pub fn parse_log(text: &str) -> Vec<Object> {
    text.lines().filter_map(parse_line).collect()
}

fn read_text(path: &Path) -> Result<String, ReadError> {
    let bytes = fs::read(path).map_err(|e| ReadError::Io(path.to_owned(), e))?;
    // A serial log may carry stray non-UTF-8 bytes (boot noise): replace, do not fail.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads one run directory (which must hold `run.json`).
pub fn read_run(dir: &Path) -> Result<Run, ReadError> {
    let meta_path = dir.join("run.json");
    let meta: RunMeta = serde_json::from_str(&read_text(&meta_path)?)
        .map_err(|e| ReadError::Meta(meta_path.clone(), e.to_string()))?;
    let mut vm: [Vec<Object>; 2] = [Vec::new(), Vec::new()];
    for (n, objs) in vm.iter_mut().enumerate() {
        let log = dir.join(format!("vm{n}.log"));
        if log.exists() {
            *objs = parse_log(&read_text(&log)?);
        }
    }
    Ok(Run { meta, vm })
}

/// Reads a bench directory: `meta.json` and every subdirectory holding `run.json`.
pub fn read_dir(dir: &Path) -> Result<BenchDir, ReadError> {
    let meta_path = dir.join("meta.json");
    let meta = if meta_path.exists() {
        match serde_json::from_str::<Value>(&read_text(&meta_path)?) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(ReadError::Meta(meta_path, "not a JSON object".into())),
            Err(e) => return Err(ReadError::Meta(meta_path, e.to_string())),
        }
    } else {
        Object::new()
    };
    let mut runs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| ReadError::Io(dir.to_owned(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::Io(dir.to_owned(), e))?;
        let path = entry.path();
        if path.is_dir() && path.join("run.json").exists() {
            runs.push(read_run(&path)?);
        }
    }
    if runs.is_empty() {
        return Err(ReadError::NoRuns(dir.to_owned()));
    }
    runs.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    Ok(BenchDir { meta, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_parses() {
        let o = parse_line(r#"{"event":"result","app":"pingpong","p50_ns":1200}"#).unwrap();
        assert_eq!(o["event"], "result");
        assert_eq!(o["p50_ns"], 1200);
    }

    #[test]
    fn prefixed_line_and_crlf_parse() {
        let o = parse_line("vm0| [  1.234] {\"event\":\"done\",\"app\":\"echo\",\"ok\":true}\r\n")
            .unwrap();
        assert_eq!(o["event"], "done");
        assert_eq!(o["ok"], true);
    }

    #[test]
    fn non_json_and_malformed_lines_are_skipped() {
        assert!(parse_line("smcd: booting").is_none());
        assert!(parse_line("").is_none());
        assert!(parse_line(r#"{"event":"result","app":"pingpong""#).is_none()); // cut short
        assert!(parse_line(r#"{"a":1} trailing"#).is_none());
        assert!(parse_line("{[1,2]}").is_none());
        // A brace inside log text before a JSON array: not an object.
        assert!(parse_line("set {x} [1]").is_none());
    }

    #[test]
    fn log_keeps_order_and_skips_noise() {
        let text = "boot\n{\"event\":\"ready\",\"app\":\"echo\"}\ngarbage {\n{\"event\":\"done\",\"app\":\"echo\"}\n";
        let objs = parse_log(text);
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0]["event"], "ready");
        assert_eq!(objs[1]["event"], "done");
    }

    #[test]
    fn reads_a_directory_and_reports_bad_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(read_dir(tmp.path()), Err(ReadError::NoRuns(_))));
        let run = tmp.path().join("tcp-pingpong-14");
        fs::create_dir(&run).unwrap();
        fs::write(
            run.join("run.json"),
            r#"{"name":"tcp-pingpong-14","config":"tcp","kind":"pingpong","param":14,"status":0}"#,
        )
        .unwrap();
        fs::write(
            run.join("vm0.log"),
            "x\n{\"event\":\"done\",\"app\":\"pingpong\"}\n",
        )
        .unwrap();
        let d = read_dir(tmp.path()).unwrap();
        assert_eq!(d.runs.len(), 1);
        assert_eq!(d.runs[0].meta.param, 14);
        assert_eq!(d.runs[0].vm[0].len(), 1);
        assert!(d.runs[0].vm[1].is_empty());
        fs::write(run.join("run.json"), "{\"name\":1}").unwrap();
        let err = read_dir(tmp.path()).unwrap_err();
        assert!(matches!(err, ReadError::Meta(..)), "{err}");
    }
}
