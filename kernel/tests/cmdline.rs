//! In-QEMU test: the kernel command line (profiles.sh passes one with `-append`) parses into
//! the typed `cmdline::Config`, and bad input gets a precise error.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::ToString;
use core::net::Ipv4Addr;

use kernel::cmdline::{self, App, CmdlineError, Config, Ipv4Cidr, Verify};
use log::LevelFilter;

kernel::test_main!(
    boot_command_line_parses,
    empty_line_gives_defaults,
    every_key_parses,
    size_suffixes,
    errors_name_the_key_and_value,
);

/// The runner's `test=<name>` marker followed by the words `profile_cmdline` in profiles.sh
/// appends.
const BOOT_LINE: &str = "test=cmdline ip=10.0.0.1/24 peer=10.0.0.2 app=pingpong size=64K count=1000 smc=off conns=4 log=debug port=5001";

fn boot_command_line_parses() {
    let line: &str = &kernel::boot_info().cmdline;
    assert_eq!(
        line.trim(),
        BOOT_LINE,
        "qemu-run.sh and profiles.sh pass this line with -append"
    );
    let c = cmdline::parse(line).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c,
        Config {
            ip: Some(Ipv4Cidr {
                address: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24
            }),
            peer: Some(Ipv4Addr::new(10, 0, 0, 2)),
            app: Some(App::Pingpong),
            size: Some(64 * 1024),
            count: Some(1000),
            smc: false,
            conns: 4,
            log: LevelFilter::Debug,
            port: Some(5001),
            spin_us: 0,
            chunk: None,
            cycles: 1,
            abort_after: None,
            ueid: None,
            warmup: None,
            verify: Verify::Full,
            dmb_len: None,
        }
    );
}

fn empty_line_gives_defaults() {
    for line in ["", "   ", "\t"] {
        assert_eq!(cmdline::parse(line), Ok(Config::default()));
    }
    let d = Config::default();
    assert!(d.smc);
    assert_eq!(d.conns, 1);
    assert_eq!(d.log, LevelFilter::Info);
    assert_eq!(
        (d.ip, d.peer, d.app, d.size, d.count, d.port),
        (None, None, None, None, None, None)
    );
}

fn every_key_parses() {
    let apps = [
        ("echo", App::Echo),
        ("pingpong", App::Pingpong),
        ("stream", App::Stream),
        ("sink", App::Sink),
        ("loopback", App::Loopback),
        ("floor", App::Floor),
        ("floor-server", App::FloorServer),
        ("selftest", App::Selftest),
    ];
    for (text, app) in apps {
        let line = alloc::format!("app={text}");
        assert_eq!(cmdline::parse(&line).unwrap().app, Some(app));
    }
    let c = cmdline::parse("  ip=192.168.7.9/0   smc=on log=trace conns=1 port=65535 count=0 ")
        .unwrap();
    assert_eq!(
        c.ip,
        Some(Ipv4Cidr {
            address: Ipv4Addr::new(192, 168, 7, 9),
            prefix_len: 0
        })
    );
    assert!(c.smc);
    assert_eq!(c.log, LevelFilter::Trace);
    assert_eq!((c.conns, c.port, c.count), (1, Some(65535), Some(0)));
    assert_eq!(cmdline::parse("cycles=1000").unwrap().cycles, 1000);
    assert_eq!(Config::default().cycles, 1);
    assert_eq!(
        cmdline::parse("abort=64K").unwrap().abort_after,
        Some(64 << 10)
    );
    assert_eq!(
        cmdline::parse("ueid=SMCD-OTHER.1").unwrap().ueid,
        Some(smcd::wire::clc::Eid::ueid("SMCD-OTHER.1").unwrap())
    );
    for bad in [
        "ueid=lower",
        "ueid=-LEADING",
        "ueid=THIRTY-THREE-CHARACTERS-LONG-UEID",
    ] {
        let e = cmdline::parse(bad).unwrap_err().to_string();
        assert!(e.contains("not a valid UEID"), "{bad}: {e}");
    }
    let c = cmdline::parse("warmup=0 verify=sample dmb=16K").unwrap();
    assert_eq!(
        (c.warmup, c.verify, c.dmb_len),
        (Some(0), Verify::Sample, Some(16 << 10))
    );
    assert_eq!(cmdline::parse("verify=full").unwrap().verify, Verify::Full);
    assert_eq!(cmdline::parse("dmb=1M").unwrap().dmb_len, Some(1 << 20));
    assert_eq!(cmdline::parse("dmb=65536").unwrap().dmb_len, Some(64 << 10));
    let d = Config::default();
    assert_eq!((d.warmup, d.verify, d.dmb_len), (None, Verify::Full, None));
    // The runner's marker on test images is accepted and does not change the config.
    assert_eq!(
        cmdline::parse("test=net_loop-2 port=7"),
        cmdline::parse("port=7")
    );
    assert_eq!(
        cmdline::parse("ip=1.2.3.4/32")
            .unwrap()
            .ip
            .unwrap()
            .to_string(),
        "1.2.3.4/32"
    );
}

fn size_suffixes() {
    for (text, bytes) in [
        ("0", 0u64),
        ("4096", 4096),
        ("64K", 64 << 10),
        ("64k", 64 << 10),
        ("16M", 16 << 20),
        ("1G", 1 << 30),
        ("17179869183G", 17_179_869_183u64 << 30),
    ] {
        let line = alloc::format!("size={text}");
        assert_eq!(cmdline::parse(&line).unwrap().size, Some(bytes), "{text}");
    }
}

fn err(line: &str) -> alloc::string::String {
    match cmdline::parse(line) {
        Ok(c) => panic!("{line:?} parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn errors_name_the_key_and_value() {
    assert_eq!(
        cmdline::parse("foo=1"),
        Err(CmdlineError::UnknownKey("foo"))
    );
    assert_eq!(err("ip=10.0.0.1/24 foo=bar"), "unknown key 'foo'");
    assert_eq!(err("=5"), "unknown key ''");
    assert_eq!(err("verbose"), "expected key=value, got 'verbose'");
    assert_eq!(err("port=1 port=2"), "duplicate key 'port'");
    assert_eq!(
        err("ip=10.0.0.1/33"),
        "malformed value for 'ip': '10.0.0.1/33': prefix length must be 0..=32"
    );
    assert_eq!(
        err("ip=10.0.0.1"),
        "malformed value for 'ip': '10.0.0.1': expected address/prefix like 10.0.0.1/24"
    );
    assert_eq!(
        err("ip=10.0.0.256/24"),
        "malformed value for 'ip': '10.0.0.256/24': expected a dotted-quad IPv4 address like 10.0.0.2"
    );
    assert_eq!(
        err("ip=10.0.0.1/+8"),
        "malformed value for 'ip': '10.0.0.1/+8': prefix length must be 0..=32"
    );
    assert_eq!(
        err("peer=example"),
        "malformed value for 'peer': 'example': expected a dotted-quad IPv4 address like 10.0.0.2"
    );
    assert_eq!(
        err("app=ftp"),
        "malformed value for 'app': 'ftp': expected echo, pingpong, stream, sink, loopback, loopback-pingpong, floor, floor-server or selftest"
    );
    assert_eq!(
        err("size=12T"),
        "malformed value for 'size': '12T': expected a byte count like 4096, 64K, 16M or 1G"
    );
    assert_eq!(
        err("size=K"),
        "malformed value for 'size': 'K': expected a byte count like 4096, 64K, 16M or 1G"
    );
    assert_eq!(
        err("size=17179869184G"),
        "malformed value for 'size': '17179869184G': size too large"
    );
    assert_eq!(
        err("count=-1"),
        "malformed value for 'count': '-1': expected a decimal number"
    );
    assert_eq!(
        err("count=99999999999999999999"),
        "malformed value for 'count': '99999999999999999999': number too large"
    );
    assert_eq!(
        err("smc=yes"),
        "malformed value for 'smc': 'yes': expected on or off"
    );
    assert!(err("abort=lots").starts_with("malformed value for 'abort': 'lots'"));
    assert_eq!(
        err("cycles=0"),
        "malformed value for 'cycles': '0': must be between 1 and 4294967295"
    );
    assert_eq!(
        err("conns=0"),
        "malformed value for 'conns': '0': must be between 1 and 4294967295"
    );
    assert_eq!(
        err("port=0"),
        "malformed value for 'port': '0': must be between 1 and 65535"
    );
    assert_eq!(
        err("port=65536"),
        "malformed value for 'port': '65536': must be between 1 and 65535"
    );
    assert_eq!(
        err("log=loud"),
        "malformed value for 'log': 'loud': expected off, error, warn, info, debug or trace"
    );
    assert_eq!(
        err("port="),
        "malformed value for 'port': '': expected a decimal number"
    );
    assert_eq!(
        err("test=a/b"),
        "malformed value for 'test': 'a/b': expected a test name (letters, digits, '_', '-')"
    );
    assert_eq!(
        err("verify=some"),
        "malformed value for 'verify': 'some': expected full or sample"
    );
    for bad in ["dmb=8K", "dmb=2M", "dmb=48K", "dmb=0"] {
        let value = &bad[4..];
        assert_eq!(
            err(bad),
            alloc::format!(
                "malformed value for 'dmb': '{value}': must be a power of two from 16K to 1M"
            )
        );
    }
    assert_eq!(
        err("dmb=big"),
        "malformed value for 'dmb': 'big': expected a byte count like 4096, 64K, 16M or 1G"
    );
    assert_eq!(
        err("warmup=x"),
        "malformed value for 'warmup': 'x': expected a decimal number"
    );
    assert_eq!(err("warmup=1 warmup=2"), "duplicate key 'warmup'");
    // A bad token after good ones still fails the whole line.
    assert!(cmdline::parse("ip=10.0.0.1/24 app=echo smc=maybe").is_err());
}
