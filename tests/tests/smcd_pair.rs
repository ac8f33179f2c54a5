//! Two VMs: SMC-D over the ivshmem region, fallback to TCP, many connections
//! (issue 5 items a, b, c).
//!
//! Each test boots a pair through `qemu-run.sh pair` and reads the apps' JSON lines
//! (field names: `e2e` crate docs, "result lines").

use std::time::Duration;

use e2e::{
    check_syn_options, ensure, field_str, field_u64, is_event, stack_counter, starts_with_clc,
    stat, stream_run, tcp_payload, tcp_payloads, Direction, Pair, PairConfig, Result, Source,
    StreamSpec,
};

const MIB: u64 = 1 << 20;

/// (a) 64 MiB each way over SMC-D: the data went through the DMBs (CDC messages, SMC-D
/// byte counters), the TCP connection carried nothing but the CLC handshake (counters on
/// both sides, and the link's pcap: payload bytes = CLC bytes, every segment a CLC
/// message), and the hashes on both sides agree.
#[test]
fn smcd_64mib_each_way_through_the_dmbs() -> Result<()> {
    let size = 64 * MIB;
    for dir in [Direction::Vm0ToVm1, Direction::Vm1ToVm0] {
        let Some(run) = stream_run(
            "smcd_64mib",
            &StreamSpec {
                dir,
                sender_args: format!("port=7100 size={size}"),
                receiver_args: "port=7100".to_string(),
                conns: 1,
                timeout: Duration::from_secs(240),
            },
            |c| c.pcap = true,
            link_carried_only_clc,
        )?
        else {
            return Ok(());
        };
        run.check_byte_exact(size)?;
        for v in run.all_conns() {
            ensure(field_str(v, "transport")? == "smcd", || {
                format!("not over SMC-D: {v}")
            })?;
            ensure(field_str(v, "device")? == "ivshmem", || {
                format!("not over ivshmem: {v}")
            })?;
            ensure(
                stat(v, "clc_bytes_tx")? > 0 && stat(v, "clc_bytes_rx")? > 0,
                || format!("no CLC handshake counted: {v}"),
            )?;
            ensure(tcp_payload(v)? == (0, 0), || {
                format!("TCP payload after the handshake: {v}")
            })?;
        }
        // (d) Orderly close: the sink read end of stream after all data (bytes checked
        // above), and both sides closed without an abort.
        for c in [&run.sender_counters, &run.receiver_counters] {
            ensure(
                stack_counter(c, "aborts")? == 0 && stack_counter(c, "closes")? == 1,
                || format!("not an orderly close: {c}"),
            )?;
        }
        for v in &run.sender {
            ensure(stat(v, "cdcs_tx")? > 0, || {
                format!("sender sent no CDC: {v}")
            })?;
        }
        for v in &run.receiver {
            ensure(stat(v, "cdcs_rx")? > 0, || {
                format!("receiver got no CDC: {v}")
            })?;
        }
        println!(
            "smcd 64 MiB {dir:?}: {:.1} s wall (boot of two VMs included), sink measured {:.1} MiB/s",
            run.wall.as_secs_f64(),
            run.mib_per_sec()
        );
    }
    Ok(())
}

/// (b) The client does not offer SMC (`smc=off`): no TCP option in SYN or SYN-ACK, no CLC
/// message, and the stream runs over plain TCP with reason `0x03010000` on both sides.
#[test]
fn fallback_client_without_smc_is_plain_tcp() -> Result<()> {
    let size = 2 * MIB;
    let Some(run) = stream_run(
        "fallback_smc_off",
        &StreamSpec {
            dir: Direction::Vm0ToVm1,
            sender_args: format!("port=7200 size={size} smc=off"),
            receiver_args: "port=7200".to_string(),
            conns: 1,
            timeout: Duration::from_secs(180),
        },
        |c| c.pcap = true,
        |pair| {
            let pcap = pair.out_dir().join("link.pcap");
            check_syn_options(&pcap, 7200, false, false)?;
            let segments = tcp_payloads(&pcap)?;
            let data: usize = segments.iter().map(Vec::len).sum();
            ensure(data as u64 >= size, || {
                format!("pcap holds {data} payload bytes, expected >= {size}")
            })?;
            let clc = segments.iter().filter(|s| starts_with_clc(s)).count();
            ensure(clc == 0, || format!("{clc} CLC message(s) on the link"))
        },
    )?
    else {
        return Ok(());
    };
    run.check_byte_exact(size)?;
    for v in run.all_conns() {
        ensure(field_str(v, "transport")? == "tcp", || {
            format!("not TCP: {v}")
        })?;
        ensure(field_str(v, "reason")? == "0x03010000", || {
            format!("wrong reason: {v}")
        })?;
        ensure(tcp_payload(v)? != (0, 0), || format!("no TCP payload: {v}"))?;
        ensure(
            stat(v, "clc_bytes_tx")? == 0 && stat(v, "clc_bytes_rx")? == 0,
            || format!("CLC bytes without SMC: {v}"),
        )?;
    }
    Ok(())
}

/// (b) The server VM has no ivshmem device: it declines the Proposal (no SMC-Dv2 device
/// reaches the client's GID, `0x03030007`), and the stream works over the same TCP
/// connection, byte-exact.
#[test]
fn fallback_server_without_ivshmem_declines() -> Result<()> {
    declined_stream_works(
        "fallback_no_ivshmem",
        "port=7300",
        "",
        |c| c.no_ivshmem_vm1 = true,
        "0x03030007",
    )
}

/// (b) The two VMs offer different UEIDs: the server finds a device but no common EID and
/// declines (`0x03030001`, as `smcd::negotiate::server_select` maps it), and the stream
/// works over the same TCP connection, byte-exact.
#[test]
fn fallback_eid_mismatch_declines() -> Result<()> {
    declined_stream_works(
        "fallback_eid_mismatch",
        "port=7310 ueid=SMCD-CLIENT-ONLY",
        "ueid=SMCD-SERVER-ONLY",
        |_| {},
        "0x03030001",
    )
}

/// Streams 2 MiB vm0 → vm1 where the server declines SMC-D with `code`: checks the stream is
/// byte-exact over TCP, both sides report the same reason, a CLC exchange happened before
/// the Decline, and the Decline came from the server.
fn declined_stream_works(
    name: &str,
    sender_args: &str,
    receiver_extra: &str,
    tweak: impl FnOnce(&mut PairConfig),
    code: &str,
) -> Result<()> {
    let size = 2 * MIB;
    let port = sender_args
        .split_whitespace()
        .find(|a| a.starts_with("port="))
        .expect("sender_args names the port");
    let Some(run) = stream_run(
        name,
        &StreamSpec {
            dir: Direction::Vm0ToVm1,
            sender_args: format!("{sender_args} size={size}"),
            receiver_args: format!("{port} {receiver_extra}"),
            conns: 1,
            timeout: Duration::from_secs(180),
        },
        tweak,
        |_| Ok(()),
    )?
    else {
        return Ok(());
    };
    run.check_byte_exact(size)?;
    for v in run.all_conns() {
        ensure(field_str(v, "transport")? == "tcp", || {
            format!("not TCP: {v}")
        })?;
        ensure(field_str(v, "reason")? == code, || {
            format!("wrong decline code (want {code}): {v}")
        })?;
        ensure(
            stat(v, "clc_bytes_tx")? + stat(v, "clc_bytes_rx")? > 0,
            || format!("no CLC exchange before the Decline: {v}"),
        )?;
    }
    for v in &run.sender {
        ensure(v["by_peer"] == true, || {
            format!("client: the Decline came from the peer: {v}")
        })?;
    }
    for v in &run.receiver {
        ensure(v["by_peer"] == false, || {
            format!("server: the Decline was its own: {v}")
        })?;
    }
    Ok(())
}

/// (c) Concurrent connections in each direction, all over SMC-D, all byte-exact (results
/// paired by the sender's stream number, which the sink recognises from the data).
///
/// The link's pcap holds only the CLC handshakes of all connections.
///
/// 64 at once: the sink listens with a backlog of `conns` (`kernel::apps::listen`), so
/// all 64 clients complete their TCP and CLC handshakes before it reads.
#[test]
fn concurrent_connections_each_way() -> Result<()> {
    let (conns, size) = (64, 1024 * 1024);
    for dir in [Direction::Vm0ToVm1, Direction::Vm1ToVm0] {
        let Some(run) = stream_run(
            "conns64",
            &StreamSpec {
                dir,
                sender_args: format!("port=7400 size={size} conns={conns}"),
                receiver_args: format!("port=7400 conns={conns}"),
                conns,
                timeout: Duration::from_secs(240),
            },
            |c| c.pcap = true,
            link_carried_only_clc,
        )?
        else {
            return Ok(());
        };
        run.check_byte_exact(size)?;
        for v in run.all_conns() {
            ensure(field_str(v, "transport")? == "smcd", || {
                format!("not over SMC-D: {v}")
            })?;
        }
        println!(
            "{conns} connections {dir:?}: {:.1} s wall",
            run.wall.as_secs_f64()
        );
    }
    Ok(())
}

/// Ping-pong over SMC-D: 500 round trips of 64 bytes against the echo server, every
/// byte echoed (the client compares each reply), one CDC per message each way, no TCP
/// payload after the handshake, and latency percentiles in order.
#[test]
fn pingpong_over_smcd_echoes_every_message() -> Result<()> {
    let (count, size) = (500u64, 64u64);
    let cfg = PairConfig::new(
        format!("app=pingpong port=7800 count={count} size={size} warmup=0"),
        "app=echo port=7800",
    );
    let Some(pair) = Pair::start("pingpong_smcd", &cfg)? else {
        return Ok(());
    };
    let t = Duration::from_secs(120);
    let client = pair.wait_for(0, "pingpong result", t, |v| is_event(v, "result"))?;
    let server = pair.wait_for(1, "echo result", t, |v| is_event(v, "result"))?;
    for v in [&client, &server] {
        ensure(field_str(v, "transport")? == "smcd", || {
            format!("not over SMC-D: {v}")
        })?;
        ensure(tcp_payload(v)? == (0, 0), || {
            format!("TCP payload after the handshake: {v}")
        })?;
    }
    ensure(field_u64(&client, "round_trips")? == count, || {
        format!("round trips: {client}")
    })?;
    ensure(field_u64(&server, "bytes")? == count * size, || {
        format!("echoed bytes: {server}")
    })?;
    ensure(
        stat(&client, "bytes_tx")? == count * size && stat(&client, "bytes_rx")? == count * size,
        || format!("client byte counters: {client}"),
    )?;
    ensure(
        stat(&client, "cdcs_tx")? >= count && stat(&server, "cdcs_tx")? >= count,
        || format!("fewer CDCs than messages: {client} / {server}"),
    )?;
    let q: Vec<u64> = ["min_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"]
        .iter()
        .map(|k| field_u64(&client, k))
        .collect::<Result<_>>()?;
    ensure(q[0] > 0 && q.windows(2).all(|w| w[0] <= w[1]), || {
        format!("percentiles out of order: {client}")
    })?;
    println!(
        "pingpong over SMC-D: p50 {} us, p99 {} us",
        q[1] / 1000,
        q[3] / 1000
    );
    for vm in [0, 1] {
        let done = pair.wait_event(vm, "done", t)?;
        ensure(done["ok"] == true, || format!("vm{vm} failed: {done}"))?;
    }
    pair.finish(Duration::from_secs(30))
}

/// On the wire the link carried the CLC handshakes and nothing else: the TCP payload in the
/// link's pcap equals the CLC bytes vm0 counted over all its connections, and every segment
/// starts a CLC message.
fn link_carried_only_clc(pair: &Pair) -> Result<()> {
    let segments = tcp_payloads(&pair.out_dir().join("link.pcap"))?;
    let on_wire: usize = segments.iter().map(Vec::len).sum();
    let results: Vec<_> = pair
        .lines()
        .iter()
        .filter(|l| l.source == Source::Vm(0))
        .filter_map(|l| l.json().filter(|v| is_event(v, "result")))
        .collect();
    ensure(!results.is_empty(), || {
        "no result line from vm0".to_string()
    })?;
    let mut clc = 0;
    for v in &results {
        clc += stat(v, "clc_bytes_tx")? + stat(v, "clc_bytes_rx")?;
    }
    ensure(on_wire as u64 == clc, || {
        format!("{on_wire} TCP payload bytes on the link, CLC bytes {clc}")
    })?;
    ensure(segments.iter().all(|s| starts_with_clc(s)), || {
        "a TCP segment on the link is not a CLC message".to_string()
    })
}
