//! Monotonic clock (TSC calibrated against the ACPI PM timer, or PIT channel 2 without one)
//! and the deadline timer (local APIC timer, one-shot).
//!
//! * [`now`] reads the TSC and scales it to nanoseconds since [`init`]. The TSC rate is measured
//!   over a [`CALIBRATION_WINDOW_MS`] window of the ACPI PM timer (3.579545 MHz, ACPI 6.5
//!   §4.8.3.3); a system without one uses a 50 ms window of the 8254 PIT's channel 2
//!   (1.193182 MHz, read with counter-latch commands). Each end of the window is a reference
//!   read bracketed by two TSC reads; the bracket width bounds the error, which
//!   [`Calibration::uncertainty_ppm`] reports. Expected error: below 100 ppm (0.01 %) — a few
//!   microseconds of bracket over the window plus one reference tick (typically 4–5 ppm
//!   against the PM timer under QEMU TCG) — calibration is retried while the bound exceeds
//!   [`MAX_UNCERTAINTY_PPM`].
//! * [`arm_timer`] programs the local APIC timer (SDM Vol. 3A §11.5.4, one-shot mode, divide by
//!   [`apic::TIMER_DIVIDE`]) to fire at a deadline; its rate is measured against the TSC. The
//!   interrupt only counts and calls the callback installed by the executor
//!   ([`set_timer_callback`]); a deadline further than one timer period away fires early at the
//!   period's end and the caller re-arms.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use core::time::Duration;

use x86_64::instructions::port::Port;

use crate::acpi::{AcpiInfo, PmTimer};
use crate::{apic, interrupts};

/// Length of the TSC-vs-PM-timer calibration window.
pub const CALIBRATION_WINDOW_MS: u64 = 100;
/// Calibration is repeated (up to [`CALIBRATION_ATTEMPTS`] times) while its error bound is
/// larger than this.
pub const MAX_UNCERTAINTY_PPM: u64 = 200;
/// How many calibration attempts are made before giving up on [`MAX_UNCERTAINTY_PPM`] and
/// using the best one.
pub const CALIBRATION_ATTEMPTS: u32 = 5;
/// Length of the APIC-timer-vs-TSC calibration window.
const LAPIC_WINDOW_MS: u64 = 25;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A point in time: nanoseconds since [`init`] on the monotonic clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The clock's epoch (the moment [`init`] finished calibrating).
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The far future (never reached).
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Microseconds since the epoch (e.g. for `smoltcp::time::Instant::from_micros`).
    pub const fn as_micros(self) -> u64 {
        self.nanos / 1_000
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.nanos / 1_000_000
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.nanos
            .checked_sub(earlier.nanos)
            .map(Duration::from_nanos)
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant {
            nanos: self.nanos.saturating_add(add),
        }
    }

    /// Time elapsed since `self` (zero if `self` is in the future).
    pub fn elapsed(self) -> Duration {
        now().saturating_duration_since(self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating addition (a deadline past the end of time never fires).
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturating difference (zero if `rhs` is later).
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.nanos / NANOS_PER_SEC,
            self.nanos % NANOS_PER_SEC
        )
    }
}

/// The result of calibration.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// Measured TSC frequency in Hz.
    pub tsc_hz: u64,
    /// Upper bound of the relative error of `tsc_hz`, in parts per million.
    pub uncertainty_ppm: u64,
    /// Number of calibration attempts used.
    pub attempts: u32,
    /// The reference the TSC was measured against.
    pub reference: Reference,
    /// Measured local APIC timer frequency in Hz (after the divider).
    pub lapic_timer_hz: u64,
}

/// A fixed-frequency counter the TSC is calibrated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The ACPI PM timer (3.579545 MHz, ACPI 6.5 §4.8.3.3), preferred.
    PmTimer(PmTimer),
    /// Channel 2 of the 8254 PIT (1.193182 MHz), when the FADT has no PM timer.
    Pit,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::PmTimer(pm) => write!(f, "ACPI PM timer at port {:#x}", pm.port),
            Reference::Pit => write!(f, "PIT channel 2"),
        }
    }
}

impl Reference {
    /// Window of one calibration attempt.
    fn window_ms(self) -> u64 {
        match self {
            Reference::PmTimer(_) => CALIBRATION_WINDOW_MS,
            // The 16-bit PIT counter wraps after 54.9 ms.
            Reference::Pit => PIT_WINDOW_MS,
        }
    }
}

/// Why the clock could not be set up.
#[derive(Debug)]
pub enum ClockError {
    /// The calibration reference (PM timer or PIT) did not advance.
    ReferenceStuck,
    /// The CPU has no TSC (CPUID.01H:EDX[4]).
    NoTsc,
    /// The APIC timer did not count.
    LapicTimerStuck,
    /// APIC error.
    Apic(apic::ApicError),
    /// The timer vector could not be registered.
    Vector(interrupts::InterruptError),
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::ReferenceStuck => {
                write!(
                    f,
                    "the calibration reference (PM timer or PIT) does not advance"
                )
            }
            ClockError::NoTsc => write!(f, "the CPU has no time-stamp counter"),
            ClockError::LapicTimerStuck => write!(f, "the local APIC timer does not count"),
            ClockError::Apic(e) => write!(f, "APIC: {e}"),
            ClockError::Vector(e) => write!(f, "timer vector: {e:?}"),
        }
    }
}

impl From<apic::ApicError> for ClockError {
    fn from(e: apic::ApicError) -> Self {
        ClockError::Apic(e)
    }
}

/// TSC value at the epoch.
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick in 32.32 fixed point; 0 = not initialised.
static NS_PER_TICK_FP32: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static LAPIC_HZ: AtomicU64 = AtomicU64::new(0);
static TIMER_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
static TIMER_CALLBACK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear (ring 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The current time. Returns [`Instant::ZERO`] before [`init`].
#[inline]
pub fn now() -> Instant {
    let mult = NS_PER_TICK_FP32.load(Ordering::Acquire);
    let base = TSC_BASE.load(Ordering::Relaxed);
    let ticks = rdtsc().saturating_sub(base);
    let nanos = (u128::from(ticks) * u128::from(mult)) >> 32;
    Instant {
        nanos: u64::try_from(nanos).unwrap_or(u64::MAX),
    }
}

/// Whether [`init`] succeeded.
pub fn is_initialized() -> bool {
    NS_PER_TICK_FP32.load(Ordering::Acquire) != 0
}

/// Measured TSC frequency (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Number of APIC timer interrupts taken so far.
pub fn timer_interrupt_count() -> u64 {
    TIMER_INTERRUPTS.load(Ordering::Relaxed)
}

/// Spins (without sleeping) until `deadline`.
pub fn busy_wait_until(deadline: Instant) {
    while now() < deadline {
        core::hint::spin_loop();
    }
}

/// Spins (without sleeping) for `d`.
pub fn busy_wait(d: Duration) {
    busy_wait_until(now() + d);
}

/// Calibrates the TSC against the PM timer and the APIC timer against the TSC, starts the
/// clock at zero, and claims [`apic::TIMER_VECTOR`]. Needs [`apic::init`] first.
/// A second call returns the first calibration.
pub fn init(acpi: &AcpiInfo) -> Result<Calibration, ClockError> {
    static DONE: spin::Once<Calibration> = spin::Once::new();
    DONE.try_call_once(|| init_once(acpi)).copied()
}

fn init_once(acpi: &AcpiInfo) -> Result<Calibration, ClockError> {
    // CPUID.01H:EDX[4] = TSC (SDM Vol. 2A, CPUID).
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.edx & (1 << 4) == 0 {
        return Err(ClockError::NoTsc);
    }
    // CPUID.80000007H:EDX[8] = invariant TSC: constant rate across P-/C-states. Without it
    // (QEMU's TCG does not advertise it, yet its TSC follows the host's) we still use the
    // TSC, which the RTC cross-check in kernel/tests/clock.rs would catch if it drifted.
    let invariant = core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0007
        && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    if !invariant {
        log::info!("clock: the CPU does not advertise an invariant TSC");
    }
    let reference = match acpi.pm_timer {
        Some(pm) => Reference::PmTimer(pm),
        None => {
            log::info!("clock: no ACPI PM timer; calibrating against PIT channel 2");
            Reference::Pit
        }
    };
    let (tsc_hz, uncertainty_ppm, attempts) = calibrate_tsc_against(reference)?;
    if uncertainty_ppm > MAX_UNCERTAINTY_PPM {
        log::warn!("clock: TSC calibration error bound {uncertainty_ppm} ppm exceeds {MAX_UNCERTAINTY_PPM}");
    }
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let mult = ((u128::from(NANOS_PER_SEC) << 32) / u128::from(tsc_hz)) as u64;
    TSC_BASE.store(rdtsc(), Ordering::Relaxed);
    NS_PER_TICK_FP32.store(mult, Ordering::Release);

    let lapic_timer_hz = calibrate_lapic_timer(tsc_hz)?;
    LAPIC_HZ.store(lapic_timer_hz, Ordering::Relaxed);
    interrupts::register_handler(apic::TIMER_VECTOR, timer_interrupt)
        .map_err(ClockError::Vector)?;

    let cal = Calibration {
        tsc_hz,
        uncertainty_ppm,
        attempts,
        reference,
        lapic_timer_hz,
    };
    log::info!(
        "clock: tsc {} Hz ± {} ppm ({} attempt(s), {} ms vs {}), apic timer {} Hz",
        cal.tsc_hz,
        cal.uncertainty_ppm,
        cal.attempts,
        reference.window_ms(),
        reference,
        cal.lapic_timer_hz
    );
    Ok(cal)
}

/// Measures the TSC rate against `reference`: up to [`CALIBRATION_ATTEMPTS`] windows, stopping
/// at the first whose error bound is within [`MAX_UNCERTAINTY_PPM`]; returns the best
/// `(tsc_hz, error bound in ppm, attempts)`. Interrupts are off during each window.
/// Public so tests can cross-check the two references.
pub fn calibrate_tsc_against(reference: Reference) -> Result<(u64, u64, u32), ClockError> {
    let mut best: Option<(u64, u64)> = None;
    let mut attempts = 0;
    while attempts < CALIBRATION_ATTEMPTS {
        attempts += 1;
        let (hz, ppm) = interrupts::without_interrupts(|| match reference {
            Reference::PmTimer(pm) => calibrate_window(
                || read_pm(&pm),
                pm.mask(),
                PmTimer::FREQUENCY_HZ,
                CALIBRATION_WINDOW_MS,
                Direction::Up,
            ),
            Reference::Pit => {
                let _gate = PitChannel2::start();
                calibrate_window(read_pit, 0xFFFF, PIT_HZ, PIT_WINDOW_MS, Direction::Down)
            }
        })?;
        log::debug!("clock: attempt {attempts} vs {reference:?}: tsc {hz} Hz ± {ppm} ppm");
        if best.is_none_or(|(_, b)| ppm < b) {
            best = Some((hz, ppm));
        }
        if ppm <= MAX_UNCERTAINTY_PPM {
            break;
        }
    }
    let (hz, ppm) = best.ok_or(ClockError::ReferenceStuck)?;
    Ok((hz, ppm, attempts))
}

/// Whether a reference counter counts up (PM timer) or down (PIT).
#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

fn read_pm(pm: &PmTimer) -> u32 {
    let mut port: Port<u32> = Port::new(pm.port);
    // SAFETY: the FADT names this port as the read-only PM timer register.
    unsafe { port.read() & pm.mask() }
}

/// PIT input clock: 105/88 MHz = 1.1931818 MHz (8254 on the PC platform).
const PIT_HZ: u64 = 1_193_182;
/// Window of one PIT calibration attempt (the 16-bit counter covers 54.9 ms).
const PIT_WINDOW_MS: u64 = 50;
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Port 0x61 (NMI status and control): bit 0 = PIT channel 2 gate, bit 1 = speaker data.
const PORT_61: u16 = 0x61;

/// PIT channel 2 counting down from 0xFFFF with its gate open and the speaker off; the
/// previous port 0x61 value is restored on drop.
struct PitChannel2 {
    saved_61: u8,
}

impl PitChannel2 {
    fn start() -> PitChannel2 {
        let mut p61: Port<u8> = Port::new(PORT_61);
        let mut command: Port<u8> = Port::new(PIT_COMMAND);
        let mut data: Port<u8> = Port::new(PIT_CHANNEL2);
        // SAFETY: fixed PC ports of the 8254 PIT and the port 0x61 gate; channel 2 only
        // drives the PC speaker, which stays disconnected (bit 1 clear).
        unsafe {
            let saved_61 = p61.read();
            p61.write((saved_61 & !0b10) | 0b1);
            // Channel 2, lobyte/hibyte access, mode 0 (count down once), binary.
            command.write(0b1011_0000);
            data.write(0xFF);
            data.write(0xFF);
            PitChannel2 { saved_61 }
        }
    }
}

impl Drop for PitChannel2 {
    fn drop(&mut self) {
        let mut p61: Port<u8> = Port::new(PORT_61);
        // SAFETY: restores the value read in `start`.
        unsafe { p61.write(self.saved_61) }
    }
}

/// Latches and reads PIT channel 2's current count (8254 counter-latch command).
fn read_pit() -> u32 {
    let mut command: Port<u8> = Port::new(PIT_COMMAND);
    let mut data: Port<u8> = Port::new(PIT_CHANNEL2);
    // SAFETY: counter-latch command for channel 2, then the two latched bytes (lobyte
    // first), as programmed by `PitChannel2::start`.
    unsafe {
        command.write(0b1000_0000);
        let lo = data.read();
        let hi = data.read();
        u32::from(u16::from_le_bytes([lo, hi]))
    }
}

/// A reference read and the TSC interval it happened in (the tightest of four):
/// `(tsc_mid, value, bracket_width)`.
fn sample(read: &mut impl FnMut() -> u32) -> (u64, u32, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..4 {
        let t0 = rdtsc();
        let v = read();
        let t1 = rdtsc();
        let width = t1.wrapping_sub(t0);
        if width < best.2 {
            best = (t0 + width / 2, v, width);
        }
    }
    best
}

/// One calibration window of `window_ms` against a counter of rate `hz` whose valid bits
/// are `mask`: `(tsc_hz, error bound in ppm)`.
fn calibrate_window(
    mut read: impl FnMut() -> u32,
    mask: u32,
    hz: u64,
    window_ms: u64,
    direction: Direction,
) -> Result<(u64, u64), ClockError> {
    let elapsed = |from: u32, to: u32| match direction {
        Direction::Up => to.wrapping_sub(from) & mask,
        Direction::Down => from.wrapping_sub(to) & mask,
    };
    let window_ticks = (hz * window_ms / 1000) as u32;
    let (t_a, v_a, w_a) = sample(&mut read);
    // Bounded wait: the reference must advance `window_ticks` within this many reads
    // (each read is at least ~100 ns even on bare metal: 2^26 reads > 6 s).
    let mut reads: u32 = 0;
    while elapsed(v_a, read()) < window_ticks {
        reads += 1;
        if reads > (1 << 26) {
            return Err(ClockError::ReferenceStuck);
        }
        core::hint::spin_loop();
    }
    let (t_b, v_b, w_b) = sample(&mut read);
    let d_ref = u64::from(elapsed(v_a, v_b));
    let d_tsc = t_b.wrapping_sub(t_a);
    if d_ref == 0 || d_tsc == 0 {
        return Err(ClockError::ReferenceStuck);
    }
    let tsc_hz = (u128::from(d_tsc) * u128::from(hz) / u128::from(d_ref)) as u64;
    // Each end point is off by at most half its bracket; the count by at most one tick.
    let ppm = ((w_a + w_b) / 2) * 1_000_000 / d_tsc + 1_000_000 / d_ref + 1;
    Ok((tsc_hz, ppm))
}

/// An APIC timer count read and the TSC interval it happened in (the tightest of three):
/// `(tsc_mid, count)`.
fn sample_lapic() -> Result<(u64, u32), ClockError> {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..3 {
        let (t0, c, t1) = interrupts::without_interrupts(|| {
            let t0 = rdtsc();
            let c = apic::timer_current_count();
            (t0, c, rdtsc())
        });
        let c = c?;
        let width = t1.wrapping_sub(t0);
        if width < best.2 {
            best = (t0 + width / 2, c, width);
        }
    }
    Ok((best.0, best.1))
}

/// Measures the APIC timer rate (after the divider) against the calibrated TSC.
fn calibrate_lapic_timer(tsc_hz: u64) -> Result<u64, ClockError> {
    apic::timer_start_free_running()?;
    let (t0, c0) = sample_lapic()?;
    busy_wait(Duration::from_millis(LAPIC_WINDOW_MS));
    let (t1, c1) = sample_lapic()?;
    apic::timer_stop()?;
    let counted = u64::from(c0.saturating_sub(c1));
    let d_tsc = t1.saturating_sub(t0);
    if counted == 0 || d_tsc == 0 {
        return Err(ClockError::LapicTimerStuck);
    }
    Ok((u128::from(counted) * u128::from(tsc_hz) / u128::from(d_tsc)) as u64)
}

/// Installs the function the timer interrupt calls (the executor's wake-up). It runs in
/// interrupt context: it must not block or allocate.
pub fn set_timer_callback(f: fn()) {
    TIMER_CALLBACK.store(f as *mut (), Ordering::Release);
}

fn timer_interrupt(_vector: u8) {
    TIMER_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    let f = TIMER_CALLBACK.load(Ordering::Acquire);
    if !f.is_null() {
        // SAFETY: the only non-null value ever stored is a `fn()` cast in
        // `set_timer_callback`, so transmuting it back yields that function pointer.
        let f: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(f) };
        f();
    }
}

/// Arms the APIC timer to interrupt at `deadline` (or at once if it has passed). If the
/// deadline lies beyond one full timer period (about 68 s at 62.5 MHz) the interrupt comes
/// earlier and the caller must re-arm; the interrupt never comes later than the deadline
/// plus interrupt latency (up to the calibration error).
pub fn arm_timer(deadline: Instant) -> Result<(), ClockError> {
    let hz = LAPIC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return Err(ClockError::LapicTimerStuck);
    }
    let ns = deadline.saturating_duration_since(now()).as_nanos();
    let ticks = (ns * u128::from(hz)).div_ceil(u128::from(NANOS_PER_SEC));
    let ticks = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
    apic::timer_oneshot(ticks)?;
    Ok(())
}

/// Cancels a deadline armed with [`arm_timer`].
pub fn disarm_timer() -> Result<(), ClockError> {
    apic::timer_stop()?;
    Ok(())
}
