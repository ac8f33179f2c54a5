//! Test harness for SMC-D connections: a connection pair over the loopback device.
#![allow(dead_code)]

use std::sync::Arc;

use smcd::conn::{DataMode, SmcdConn};
use smcd::cursor::Cursor;
use smcd::ism::{DmbToken, IsmDevice, IsmEvent};
use smcd::loopback::{LoopbackFabric, LoopbackIsm};
use smcd::shm::{HeapMemory, SharedMemory};
use smcd::wire::cdc::{CdcRepr, ConnStateFlags, ProducerFlags};

/// Two connected endpoints `a` and `b` on two devices of one loopback fabric.
pub struct Pair {
    pub fabric: LoopbackFabric,
    pub a_dev: LoopbackIsm,
    pub b_dev: LoopbackIsm,
    pub a: SmcdConn<LoopbackIsm>,
    pub b: SmcdConn<LoopbackIsm>,
    /// a's own DMB (written by b).
    pub a_dmb: Arc<HeapMemory>,
    /// b's own DMB (written by a).
    pub b_dmb: Arc<HeapMemory>,
}

impl Pair {
    /// `a` receives into a ring of `ring_a` bytes, `b` into one of `ring_b` bytes.
    pub fn new(ring_a: usize, ring_b: usize, mode: DataMode) -> Pair {
        let fabric = LoopbackFabric::new(0x5eed);
        let a_dev = fabric.device(1);
        let b_dev = fabric.device(2);
        let a_own = a_dev.register_dmb(ring_a + 32, b_dev.local_gid()).unwrap();
        let b_own = b_dev.register_dmb(ring_b + 32, a_dev.local_gid()).unwrap();
        let (a_dmb, b_dmb) = (a_own.memory.clone(), b_own.memory.clone());
        let (a_tok, b_tok) = (a_own.token, b_own.token);
        let a = SmcdConn::new(&a_dev, a_own, b_tok, ring_b + 32, mode).unwrap();
        let b = SmcdConn::new(&b_dev, b_own, a_tok, ring_a + 32, mode).unwrap();
        Pair {
            fabric,
            a_dev,
            b_dev,
            a,
            b,
            a_dmb,
            b_dmb,
        }
    }

    /// Established pair with equal rings, copy mode.
    pub fn established(ring: usize) -> Pair {
        Pair::new(ring, ring, DataMode::Copy)
    }

    /// Delivers pending signals until none is left; returns how many were delivered.
    pub fn pump(&mut self) -> usize {
        let mut delivered = 0;
        loop {
            let mut any = false;
            let mut ev = Vec::new();
            self.a_dev.poll_events(&mut |e| ev.push(e));
            for e in ev.drain(..) {
                if e == (IsmEvent::DmbSignalled {
                    index: self.a.own_index(),
                }) {
                    self.a.on_signal(&self.a_dev);
                    any = true;
                    delivered += 1;
                }
            }
            self.b_dev.poll_events(&mut |e| ev.push(e));
            for e in ev.drain(..) {
                if e == (IsmEvent::DmbSignalled {
                    index: self.b.own_index(),
                }) {
                    self.b.on_signal(&self.b_dev);
                    any = true;
                    delivered += 1;
                }
            }
            if !any {
                return delivered;
            }
        }
    }

    /// The CDC currently in a's DMB (the last one b wrote).
    pub fn cdc_to_a(&self) -> CdcRepr {
        CdcRepr::load(&*self.a_dmb, 0).unwrap()
    }

    /// The CDC currently in b's DMB (the last one a wrote).
    pub fn cdc_to_b(&self) -> CdcRepr {
        CdcRepr::load(&*self.b_dmb, 0).unwrap()
    }

    /// Writes raw CDC bytes into a's DMB as b's device would, with a signal.
    pub fn inject_to_a(&self, bytes: &[u8; 32]) {
        self.b_dev
            .move_data(self.a.own_token(), 0, bytes, true)
            .unwrap();
    }

    /// Reads `n` bytes of b's ring starting at ring offset `at`.
    pub fn b_ring(&self, at: usize, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.b_dmb.read(32 + at, &mut v).unwrap();
        v
    }

    /// Total of outstanding no-copy attachments and registered DMBs, for leak checks.
    pub fn finish(self) -> (usize, u64) {
        let Pair {
            fabric,
            a_dev,
            b_dev,
            a,
            b,
            ..
        } = self;
        let a_own = a.finish(&a_dev);
        let b_own = b.finish(&b_dev);
        a_dev.unregister_dmb(a_own.token).unwrap();
        b_dev.unregister_dmb(b_own.token).unwrap();
        (fabric.registered_dmbs(), fabric.attached_refs())
    }
}

/// A CDC as the tests expect it.
pub fn cdc(prod: (u16, u32), cons: (u16, u32), prod_flags: u8, conn_flags: u8) -> CdcRepr {
    CdcRepr {
        prod: Cursor::new(prod.0, prod.1),
        cons: Cursor::new(cons.0, cons.1),
        prod_flags: ProducerFlags::from_bits_retain(prod_flags),
        conn_flags: ConnStateFlags::from_bits_retain(conn_flags),
    }
}

pub const WB: u8 = 0x80;
pub const UPD_REQ: u8 = 0x10;
pub const DONE: u8 = 0x80;
pub const CLOSED: u8 = 0x40;
pub const ABORT: u8 = 0x20;

/// Token of an unrelated DMB, for negative tests.
pub fn bogus_token() -> DmbToken {
    DmbToken(0xdead_beef)
}
