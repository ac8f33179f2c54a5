//! In-QEMU test: the apps' pure helpers — latency percentiles and `cdf_ns`, the
//! `verify=sample` stamps (writing, checking across reads that split a stamp, corruption
//! counted), the default warm-up, the floor/stream JSON fields, and the word-wise
//! pattern fill against the byte-wise definition.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use kernel::apps::{
    self, cdf, count_sample_mismatches, default_warmup, mean, percentile, permille, stamp_sample,
    AppConfig, Report, SAMPLE_STEP,
};
use kernel::cmdline::{self, Verify};

kernel::test_main!(
    percentiles_of_known_values,
    percentiles_of_tiny_and_empty_sets,
    latency_fields_in_the_report,
    stamps_sit_at_every_4k_offset,
    stamp_split_across_writes_and_reads,
    corrupted_stamp_is_counted,
    warmup_defaults_and_keys,
    floor_apps_are_registered_standalone,
    word_wise_fill_matches_the_byte_pattern,
);

fn percentiles_of_known_values() {
    let v: Vec<u64> = (1..=1000).collect();
    assert_eq!(percentile(&v, 50), 500);
    assert_eq!(percentile(&v, 90), 900);
    assert_eq!(percentile(&v, 99), 990);
    assert_eq!(permille(&v, 999), 999);
    assert_eq!(percentile(&v, 0), 1, "0th = minimum");
    assert_eq!(percentile(&v, 100), 1000, "100th = maximum");
    assert_eq!(mean(&v), 500, "(1 + 1000) / 2 rounded down");
    let c = cdf(&v);
    assert_eq!(c.len(), 101);
    assert_eq!((c[0], c[1], c[25], c[100]), (1, 10, 250, 1000));
    assert!(c.windows(2).all(|w| w[0] <= w[1]), "a CDF never decreases");
}

fn percentiles_of_tiny_and_empty_sets() {
    assert_eq!(percentile(&[], 50), 0);
    assert_eq!(permille(&[], 999), 0);
    assert_eq!(mean(&[]), 0);
    assert_eq!(cdf(&[]), [0u64; 101]);
    assert_eq!(cdf(&[7]), [7u64; 101]);
    // Nearest rank on 3 values: 33rd -> 1st value, 34th -> 2nd, 67th -> 3rd.
    let v = [10, 20, 30];
    assert_eq!((percentile(&v, 33), percentile(&v, 34)), (10, 20));
    assert_eq!((percentile(&v, 66), percentile(&v, 67)), (20, 30));
    assert_eq!(
        mean(&[u64::MAX, u64::MAX]),
        u64::MAX,
        "no overflow in the sum"
    );
}

fn latency_fields_in_the_report() {
    let v: Vec<u64> = (1..=200).collect();
    let line = Report::new("result", "floor").latency(&v).finish();
    assert!(line.starts_with(
        r#"{"event":"result","app":"floor","min_ns":1,"p50_ns":100,"p90_ns":180,"p99_ns":198,"p999_ns":200,"max_ns":200,"mean_ns":100,"cdf_ns":[1,2,4,6,"#
    ), "{line}");
    assert!(line.ends_with(",196,198,200]}"), "{line}");
    let cdf_text = &line[line.find('[').unwrap() + 1..line.len() - 2];
    assert_eq!(cdf_text.split(',').count(), 101);
}

fn stamps_sit_at_every_4k_offset() {
    let base = 3 * SAMPLE_STEP; // a window starting on a stamp
    let mut buf = vec![0xAAu8; 3 * SAMPLE_STEP as usize + 5];
    stamp_sample(base, &mut buf);
    for k in 0..3u64 {
        let at = (k * SAMPLE_STEP) as usize;
        let word = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
        assert_eq!(word, base + k * SAMPLE_STEP);
    }
    // The trailing 5 bytes are the first 5 of the next stamp; nothing else changed.
    let tail = 3 * SAMPLE_STEP as usize;
    assert_eq!(buf[tail..], (base + 3 * SAMPLE_STEP).to_le_bytes()[..5]);
    let untouched = buf
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64 % SAMPLE_STEP) >= 8)
        .all(|(_, b)| *b == 0xAA);
    assert!(untouched, "only stamp bytes are written");
    assert_eq!(count_sample_mismatches(base, &buf), 0);
    // Other bytes are not checked in sample mode.
    buf[100] ^= 0xFF;
    assert_eq!(count_sample_mismatches(base, &buf), 0);
}

fn stamp_split_across_writes_and_reads() {
    // A sender writing offsets 4090..4093 and 4093..8200 separately stamps the same bytes
    // as one write of 4090..8200.
    let start = SAMPLE_STEP - 6;
    let mut whole = vec![0u8; 4110];
    stamp_sample(start, &mut whole);
    let mut a = vec![0u8; 3];
    let mut b = vec![0u8; 4107];
    stamp_sample(start, &mut a);
    stamp_sample(start + 3, &mut b);
    let mut joined = a.clone();
    joined.extend_from_slice(&b);
    assert_eq!(joined, whole);
    // The stamp of 4096 is split 4 + 4 between two reads at 4092..4096 and 4096..4106,
    // and 7 + 1 at 4090..4103 / 4103..: every part checks clean.
    for split in [4usize, 6, 13] {
        let (x, y) = whole.split_at(split);
        assert_eq!(count_sample_mismatches(start, x), 0, "split {split}");
        assert_eq!(
            count_sample_mismatches(start + split as u64, y),
            0,
            "split {split}"
        );
    }
    // A read that begins inside a stamp checks only its part of it.
    let stamp = SAMPLE_STEP.to_le_bytes();
    assert_eq!(count_sample_mismatches(SAMPLE_STEP + 5, &stamp[5..]), 0);
    assert_eq!(count_sample_mismatches(SAMPLE_STEP + 5, &[0xFF; 3]), 3);
    // Bytes 0..3 of the stamp (00 10 00) where 5..8 (00 00 00) belong: one differs.
    assert_eq!(count_sample_mismatches(SAMPLE_STEP + 5, &stamp[..3]), 1);
}

fn corrupted_stamp_is_counted() {
    let mut buf = vec![0u8; 16 * SAMPLE_STEP as usize];
    stamp_sample(0, &mut buf);
    assert_eq!(count_sample_mismatches(0, &buf), 0);
    buf[(5 * SAMPLE_STEP + 3) as usize] ^= 1;
    assert_eq!(count_sample_mismatches(0, &buf), 1);
    // A whole stamp replaced by another offset's (a misplaced block) counts its bytes.
    let at = (9 * SAMPLE_STEP) as usize;
    buf[at..at + 8].copy_from_slice(&(10 * SAMPLE_STEP).to_le_bytes());
    assert_eq!(count_sample_mismatches(0, &buf), 2);
    // The same data presented at the wrong stream offset mismatches everywhere.
    let mut fresh = vec![0u8; 2 * SAMPLE_STEP as usize];
    stamp_sample(0, &mut fresh);
    assert!(count_sample_mismatches(SAMPLE_STEP, &fresh) > 0);
}

fn warmup_defaults_and_keys() {
    assert_eq!(default_warmup(100_000), 1000);
    assert_eq!(default_warmup(1_000_000), 1000, "at most 1000");
    assert_eq!(default_warmup(2000), 20);
    assert_eq!(default_warmup(99), 0);
    let c = cmdline::parse("app=pingpong count=5000 verify=sample").unwrap();
    let a = AppConfig::from_cmdline("pingpong", &c);
    assert_eq!((a.warmup(), a.verify), (50, Verify::Sample));
    assert!(apps::samples(100_000).unwrap().capacity() >= 100_000);
    assert!(
        apps::samples(u64::MAX >> 4).is_err(),
        "a count beyond the heap is a config error, not a panic"
    );
    let c = cmdline::parse("app=pingpong count=5000 warmup=0").unwrap();
    assert_eq!(AppConfig::from_cmdline("pingpong", &c).warmup(), 0);
}

fn floor_apps_are_registered_standalone() {
    for (app, name) in [
        (cmdline::App::Floor, "floor"),
        (cmdline::App::FloorServer, "floor-server"),
    ] {
        assert_eq!(apps::app_name(app), Some(name));
        let entry = apps::find(name).expect("registered");
        assert!(matches!(entry.run, apps::AppRun::Standalone(_)), "{name}");
    }
    assert!(matches!(
        apps::find("pingpong").unwrap().run,
        apps::AppRun::Smc(_)
    ));
}

fn word_wise_fill_matches_the_byte_pattern() {
    // Every head/tail split: offsets 0..=17 (aligned and not), lengths 0..=40 and one
    // 16 KiB message, for two stream numbers; `pattern` is the byte-wise definition.
    for conn in [0u32, 7] {
        for offset in (0u64..=17).chain([16_384 * 3 + 5]) {
            for len in (0usize..=40).chain([16_384]) {
                let mut buf = vec![0xA5u8; len];
                apps::fill_pattern(conn, offset, &mut buf);
                for (i, &b) in buf.iter().enumerate() {
                    assert_eq!(
                        b,
                        apps::pattern(conn, offset + i as u64),
                        "conn {conn} offset {offset} len {len} byte {i}"
                    );
                }
                assert_eq!(apps::count_mismatches(conn, offset, &buf), 0);
            }
        }
    }
}
