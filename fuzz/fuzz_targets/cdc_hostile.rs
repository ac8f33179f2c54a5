//! Fuzz target: a hostile peer writing arbitrary CDC headers and ring bytes into our
//! DMB, interleaved with our own reads, writes and closes (protocol-reference §4).
//!
//! Checks: parsing a CDC header from arbitrary memory at any offset never panics and
//! round-trips; an `SmcdConn` fed impossible cursors aborts instead of panicking, and
//! its readable bytes / write space never exceed the ring sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smcd::conn::{DataMode, SmcdConn};
use smcd::cursor::Cursor;
use smcd::ism::IsmDevice;
use smcd::loopback::LoopbackFabric;
use smcd::shm::{HeapMemory, SharedMemory};
use smcd::wire::cdc::{CdcRepr, ConnStateFlags, Packet, ProducerFlags, HEADER_LEN};

/// Takes `n` bytes (fewer at the end of the input).
fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(input.len());
    let (head, rest) = input.split_at(n);
    *input = rest;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    // 1. The CDC header parsers on arbitrary bytes and arbitrary memory.
    if let Ok(packet) = Packet::new_checked(data) {
        if let Ok(repr) = CdcRepr::parse(&packet) {
            let bytes = repr.to_bytes();
            let again = CdcRepr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            assert_eq!(again, repr);
        }
    }
    let memory = HeapMemory::new(data.len());
    memory.write(0, data).unwrap();
    for base in [
        0usize,
        8,
        16,
        data.len().saturating_sub(HEADER_LEN),
        data.len(),
        usize::MAX - 7,
    ] {
        let _ = CdcRepr::load(&memory, base);
    }

    // 2. A connection whose peer is hostile.
    let mut input = data;
    let own_len = 40 + usize::from(byte(&mut input)) * 3;
    let peer_len = 40 + usize::from(byte(&mut input)) * 3;
    let fabric = LoopbackFabric::new(7);
    let us = fabric.device(1);
    let peer = fabric.device(2);
    let own = us.register_dmb(own_len, peer.local_gid()).unwrap();
    let own_token = own.token;
    let peer_dmb = peer.register_dmb(peer_len, us.local_gid()).unwrap();
    let mut conn = match SmcdConn::new(&us, own, peer_dmb.token, peer_len, DataMode::Copy) {
        Ok(conn) => conn,
        Err(_) => return,
    };
    let own_ring = conn.own_ring().get();
    let peer_ring = conn.peer_ring().get();
    let mut buf = [0u8; 1024];
    // What a well-behaved peer would have produced into our ring so far.
    let mut peer_prod = Cursor::ZERO;
    let mut peer_cons = Cursor::ZERO;
    while !input.is_empty() {
        match byte(&mut input) % 10 {
            8 | 9 => {
                // A plausible CDC: producer advanced within the free space, our data
                // acknowledged (or not), fuzzed flags. Drives the connection deep into
                // reads, consumer updates and the close states.
                let ring = conn.own_ring();
                let used = Cursor::diff(conn.consumer_cursor(), peer_prod, ring);
                let free = ring.get().saturating_sub(used);
                let n = u32::from(byte(&mut input)) % (free + 1);
                peer_prod = peer_prod.advance(n, ring);
                let ack = byte(&mut input);
                if ack & 1 == 1 {
                    peer_cons = conn.producer_cursor();
                }
                let cons = peer_cons;
                let flags = byte(&mut input);
                let repr = CdcRepr {
                    prod: peer_prod,
                    cons,
                    prod_flags: ProducerFlags::from_bits_retain(flags & 0xf0),
                    conn_flags: ConnStateFlags::from_bits_retain(
                        (ack & 0xe0) & !0x20 | (flags & 0x08) << 2,
                    ),
                };
                let _ = peer.move_data(own_token, 0, &repr.to_bytes(), true);
                let _ = conn.poll(&us);
            }
            0 | 1 => {
                // Hostile CDC header at DMB offset 0, then a signal.
                let mut header = [0u8; HEADER_LEN];
                let raw = take(&mut input, HEADER_LEN);
                header[..raw.len()].copy_from_slice(raw);
                let _ = peer.move_data(own_token, 0, &header, true);
                let _ = conn.poll(&us);
            }
            2 => {
                // Hostile ring bytes anywhere in our DMB (including over the header).
                let offset = usize::from(byte(&mut input)) * 2;
                let len = usize::from(byte(&mut input) % 64);
                let bytes = take(&mut input, len);
                let _ = peer.move_data(own_token, offset, bytes, false);
                let _ = conn.poll(&us);
            }
            3 => {
                let n = usize::from(byte(&mut input)) * 4;
                let _ = conn.write(&us, &buf[..n.min(buf.len())]);
            }
            4 => {
                let n = usize::from(byte(&mut input)) * 4;
                let _ = conn.read(&us, &mut buf[..n.min(1024)]);
            }
            5 => {
                let n = usize::from(byte(&mut input));
                if let Ok(slice) = conn.peek() {
                    let mut tmp = [0u8; 256];
                    let m = slice.len().min(tmp.len()).min(n);
                    let _ = slice.read_at(0, &mut tmp[..m]);
                }
                let _ = conn.consume(&us, n);
            }
            6 => {
                let _ = conn.shutdown_write(&us);
            }
            _ => {
                let _ = conn.close(&us);
            }
        }
        assert!(conn.readable_bytes() <= own_ring);
        assert!(conn.write_space() <= peer_ring);
    }
    let own = conn.finish(&us);
    us.unregister_dmb(own.token).unwrap();
});
