//! `app=floor` (vm0, initiator) and `app=floor-server` (vm1, responder): the floors the
//! SMC-D figures are compared with, measured on the raw ivshmem-doorbell device with no
//! network and no SMC system (issue 6, `/work/notes/perf-common.md`).
//!
//! Three measurements, in this order:
//! 1. `shm_pingpong`: the client writes sequence number k into cache line A of the shared
//!    region, the server spins until it reads k and writes k into cache line B, the client
//!    spins until B is k (pure polling: the cache-line floor).
//! 2. `doorbell`: the client rings the server's doorbell (MSI-X vector [`VECTOR_DMB`]),
//!    the server task woken by its interrupt event rings the client back, the client
//!    task waits for its own event (the doorbell->MSI-X->task floor).
//! 3. `memcpy` (client alone): 1 MiB blocks heap->heap (`copy_from_slice`), heap->shm
//!    and shm->heap (the volatile word copies of [`Bar2Memory`], as the SMC stack copies
//!    into DMBs), repeated for about 0.5 s each.
//!
//! # Use of the shared region
//!
//! In a floor boot no ISM runs, so nothing but the host ivshmem server's header and peer
//! directory at the start of the region is in use. The apps use only the tail:
//! the LAST 4 KiB page is the scratch page of the protocol below, and the 1 MiB below
//! the last 1 MiB is the memcpy window. The host server creates (and so zeroes) a fresh
//! region for every pair run; the floor server formats the scratch page again before it
//! publishes itself, and the client must start after the server's `ready` line (a stale
//! page from an earlier run in the same region is not told apart).
//!
//! Scratch page (64-bit little-endian words, one cache line each; offsets from the page):
//!
//! | offset | word | writer |
//! |---|---|---|
//! | 0 | [`MAGIC`] once the page is formatted | server, last (release) |
//! | 8 | server IVPosition | server |
//! | 64 | client IVPosition + 1 (0: client not there yet) | client |
//! | 128 | phase: 1 shm ping-pong, 2 doorbell, 3 finished | client |
//! | 192 | line A: client sequence number | client |
//! | 256 | line B: server echo of A | server |
//!
//! The MSI-X/BAR set-up is the SMC system's ([`smc::ivshmem_map`]), without the ISM.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

use drivers::ivshmem::device::VECTOR_DMB;
use drivers::ivshmem::{Bar0, Bar2Memory};
use smcd::shm::SharedMemory;

use super::{AppConfig, AppError, Report};
use crate::clock::{self, Instant};
use crate::executor::{self, InterruptEvent};
use crate::msix::MsixTable;
use crate::smc;

/// Bytes of the scratch page (the region's last page).
pub const SCRATCH_LEN: usize = 4096;
/// Marks a formatted scratch page ("SMCFLOOR" little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"SMCFLOOR");
const OFF_MAGIC: usize = 0;
const OFF_SERVER_POS: usize = 8;
const OFF_CLIENT_POS: usize = 64;
const OFF_PHASE: usize = 128;
const OFF_A: usize = 192;
const OFF_B: usize = 256;

const PHASE_SHM: u64 = 1;
const PHASE_DOORBELL: u64 = 2;
const PHASE_FINISHED: u64 = 3;

/// memcpy block size.
pub const BLOCK: usize = 1 << 20;
/// Offset of the memcpy destination in its buffer (see [`memcpy`]).
const DST_SKEW: usize = 68 << 10;
/// How long each memcpy measurement runs (at least one block).
const MEMCPY_TIME: Duration = Duration::from_millis(500);
/// Bound of the client's wait for the server's page, and the server's for the client.
const MEET_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of one round trip, and of the server's wait for the next step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Spins between two clock reads in the polling loops.
const SPINS_PER_CHECK: u32 = 1024;

/// The ivshmem-doorbell device as the floor apps use it.
struct Floor {
    regs: Bar0,
    region: Bar2Memory,
    scratch: usize,
    own: u16,
    /// Interrupt event of MSI-X entry [`VECTOR_DMB`].
    event: &'static InterruptEvent,
    /// Kept for the run: the MSI-X table stays programmed.
    _table: MsixTable,
}

fn err(e: &'static str) -> AppError {
    AppError::Config(e)
}

fn shm_err(_: smcd::shm::ShmError) -> AppError {
    err("shared-region access out of bounds")
}

impl Floor {
    /// Maps the ivshmem-doorbell function ([`smc::ivshmem_map`], MSI-X entries up to
    /// [`VECTOR_DMB`]) without bringing up the SMC system.
    fn bring_up() -> Result<Floor, AppError> {
        let mapped = smc::ivshmem_map(VECTOR_DMB + 1)
            .map_err(err)?
            .ok_or(err("no ivshmem-doorbell with MSI-X (needs doorbell)"))?;
        let event = *mapped
            .events
            .get(usize::from(VECTOR_DMB))
            .ok_or(err("ivshmem: no DMB vector"))?;
        let region = mapped.device.region();
        if region.len() < 2 * BLOCK + SCRATCH_LEN {
            return Err(err("ivshmem region smaller than 2 MiB + 4 KiB"));
        }
        Ok(Floor {
            regs: mapped.device.registers(),
            region,
            scratch: region.len() - SCRATCH_LEN,
            own: mapped.device.peer_id(),
            event,
            _table: mapped.table,
        })
    }

    fn load(&self, off: usize) -> Result<u64, AppError> {
        self.region
            .load_u64(self.scratch + off, Ordering::Acquire)
            .map_err(shm_err)
    }

    fn store(&self, off: usize, value: u64) -> Result<(), AppError> {
        self.region
            .store_u64(self.scratch + off, value, Ordering::Release)
            .map_err(shm_err)
    }

    fn ring(&self, peer: u16) -> Result<(), AppError> {
        self.regs
            .ring(peer, VECTOR_DMB)
            .map_err(|_| err("doorbell value out of range"))
    }

    /// Spins until the word at `off` is `want`; `Err` after [`STEP_TIMEOUT`].
    fn spin_until(&self, off: usize, want: u64, what: &'static str) -> Result<(), AppError> {
        let deadline = clock::now().saturating_add(STEP_TIMEOUT);
        loop {
            for _ in 0..SPINS_PER_CHECK {
                if self.load(off)? == want {
                    return Ok(());
                }
                core::hint::spin_loop();
            }
            if clock::now() >= deadline {
                return Err(err(what));
            }
        }
    }
}

/// Waits (polling every millisecond) until `f` gives `Some`, at most `limit`.
async fn poll_until<T>(
    limit: Duration,
    what: &'static str,
    mut f: impl FnMut() -> Result<Option<T>, AppError>,
) -> Result<T, AppError> {
    let deadline = clock::now().saturating_add(limit);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if clock::now() >= deadline {
            return Err(err(what));
        }
        executor::sleep(Duration::from_millis(1)).await;
    }
}

/// A peer ID read from shared memory, checked (IVPosition is 16 bits).
fn peer_id(word: u64) -> Result<u16, AppError> {
    u16::try_from(word).map_err(|_| err("peer id in the scratch page out of range"))
}

fn elapsed_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// Prints one latency result line of the floor client.
fn report_latency(c: &AppConfig, kind: &str, warmup: u64, mut rtts: Vec<u64>) {
    rtts.sort_unstable();
    Report::new("result", c.name)
        .str("kind", kind)
        .u64("round_trips", rtts.len() as u64)
        .u64("warmup", warmup)
        .latency(&rtts)
        .emit();
}

/// The floor client (vm0).
pub async fn floor(c: AppConfig) -> Result<(), AppError> {
    let f = Floor::bring_up()?;
    let warmup = c.warmup();
    let total = warmup.saturating_add(c.count);
    // Meet: the server formats the page and publishes its ID; we answer with ours.
    let server = poll_until(MEET_TIMEOUT, "floor-server not found in the region", || {
        Ok((f.load(OFF_MAGIC)? == MAGIC).then_some(()))
    })
    .await
    .and_then(|()| peer_id(f.load(OFF_SERVER_POS)?))?;
    let mut seen = f.event.count();
    f.store(OFF_PHASE, PHASE_SHM)?;
    f.store(OFF_CLIENT_POS, u64::from(f.own) + 1)?;
    log::info!("floor: peer {} meets floor-server peer {server}", f.own);

    // (a) Cache-line ping-pong through the region.
    let mut rtts = super::samples(c.count)?;
    for k in 1..=total {
        let t0 = clock::now();
        f.store(OFF_A, k)?;
        f.spin_until(OFF_B, k, "floor-server did not echo line A")?;
        if k > warmup {
            rtts.push(elapsed_ns(t0));
        }
    }
    report_latency(&c, "shm_pingpong", warmup, rtts);

    // (b) Doorbell -> MSI-X -> task, both ways.
    f.store(OFF_PHASE, PHASE_DOORBELL)?;
    let mut rtts = super::samples(c.count)?;
    for k in 0..total {
        let t0 = clock::now();
        f.ring(server)?;
        let deadline = clock::now().saturating_add(STEP_TIMEOUT);
        seen = executor::with_deadline(deadline, f.event.wait(seen))
            .await
            .map_err(|_| err("floor-server did not ring back"))?;
        if k >= warmup {
            rtts.push(elapsed_ns(t0));
        }
    }
    report_latency(&c, "doorbell", warmup, rtts);

    // Done with the server: it exits on this word (the ring wakes it).
    f.store(OFF_PHASE, PHASE_FINISHED)?;
    f.ring(server)?;

    // (c) memcpy, alone.
    memcpy(&c, &f)
}

/// The three memcpy lines.
fn memcpy(c: &AppConfig, f: &Floor) -> Result<(), AppError> {
    let window = f.scratch - BLOCK - (f.scratch % BLOCK);
    let src: Vec<u8> = (0..BLOCK).map(|i| (i * 7 + 3) as u8).collect();
    // The destination starts DST_SKEW into its buffer. Without it the two 1 MiB buffers,
    // allocated back to back, ran at ~0.5 GB/s against ~1.8-3 GB/s with it (same code):
    // most likely source and destination pages at the same offset modulo QEMU TCG's
    // software TLB (indexed by page number, small while few pages are in use) evicting
    // each other on every access. A memcpy floor should not measure that.
    let mut dst_buf = vec![0u8; BLOCK + DST_SKEW];
    let dst = &mut dst_buf[DST_SKEW..];
    let region = f.region;
    let run = |src_name: &str,
               dst_name: &str,
               copy: &mut dyn FnMut() -> Result<(), AppError>|
     -> Result<(), AppError> {
        let t0 = clock::now();
        let mut bytes = 0u64;
        loop {
            copy()?;
            bytes += BLOCK as u64;
            if t0.elapsed() >= MEMCPY_TIME {
                break;
            }
        }
        let ns = elapsed_ns(t0).max(1);
        Report::new("result", c.name)
            .str("kind", "memcpy")
            .str("src", src_name)
            .str("dst", dst_name)
            .u64("block", BLOCK as u64)
            .u64("bytes", bytes)
            .u64("elapsed_ns", ns)
            .u64(
                "bytes_per_sec",
                (u128::from(bytes) * 1_000_000_000 / u128::from(ns)) as u64,
            )
            .emit();
        Ok(())
    };
    run("heap", "heap", &mut || {
        dst.copy_from_slice(core::hint::black_box(&src));
        core::hint::black_box(&mut *dst);
        Ok(())
    })?;
    run("heap", "shm", &mut || {
        region
            .write(window, core::hint::black_box(&src))
            .map_err(shm_err)
    })?;
    run("shm", "heap", &mut || {
        region.read(window, dst).map_err(shm_err)?;
        core::hint::black_box(&mut *dst);
        Ok(())
    })?;
    // The copies really moved the bytes: the last shm->heap read holds what heap->shm
    // wrote.
    if *dst != src[..] {
        return Err(AppError::Mismatch);
    }
    Ok(())
}

/// The floor server (vm1).
pub async fn floor_server(c: AppConfig) -> Result<(), AppError> {
    let f = Floor::bring_up()?;
    let mut seen = f.event.count();
    // Format the page, then publish (the magic last).
    f.region.fill(f.scratch, SCRATCH_LEN, 0).map_err(shm_err)?;
    f.store(OFF_SERVER_POS, u64::from(f.own))?;
    f.store(OFF_MAGIC, MAGIC)?;
    Report::new("ready", c.name)
        .u64("peer_id", u64::from(f.own))
        .u64("region_bytes", f.region.len() as u64)
        .emit();
    let client = poll_until(MEET_TIMEOUT, "no floor client came", || {
        let w = f.load(OFF_CLIENT_POS)?;
        Ok((w != 0).then_some(w - 1))
    })
    .await
    .and_then(peer_id)?;
    log::info!("floor-server: peer {} serves floor peer {client}", f.own);

    // (a) Echo line A into line B until the client leaves the phase.
    let mut echoed = 0u64;
    let mut deadline = clock::now().saturating_add(STEP_TIMEOUT);
    'shm: loop {
        for _ in 0..SPINS_PER_CHECK {
            let a = f.load(OFF_A)?;
            if a == echoed + 1 {
                f.store(OFF_B, a)?;
                echoed = a;
                deadline = clock::now().saturating_add(STEP_TIMEOUT);
                continue 'shm;
            }
            core::hint::spin_loop();
        }
        if f.load(OFF_PHASE)? != PHASE_SHM {
            break;
        }
        if clock::now() >= deadline {
            return Err(err("floor client stalled in the shm ping-pong"));
        }
    }

    // (b) Ring back every doorbell until the client says it is finished.
    let mut rung = 0u64;
    loop {
        let deadline = clock::now().saturating_add(STEP_TIMEOUT);
        seen = executor::with_deadline(deadline, f.event.wait(seen))
            .await
            .map_err(|_| err("floor client stalled in the doorbell round trips"))?;
        if f.load(OFF_PHASE)? == PHASE_FINISHED {
            break;
        }
        f.ring(client)?;
        rung += 1;
    }
    // A log line, not JSON: the measurements are the client's.
    log::info!("floor-server: {echoed} shm echoes, {rung} doorbells rung back");
    Ok(())
}
