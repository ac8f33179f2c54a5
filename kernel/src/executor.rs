//! Single-core async executor: boxed tasks, interrupt-safe wakers, deadlines, idle `hlt`.
//!
//! * A [`Waker`] is just a task id: waking pushes the id onto a bounded lock-free queue
//!   (`crossbeam_queue::ArrayQueue`). Waking never blocks or allocates, so it is safe from
//!   interrupt handlers; if the queue is full an overflow flag makes the executor poll every
//!   task once (so a wake-up is never lost, only coalesced).
//! * Timers: [`sleep_until`] registers `(deadline, waker)` in an ordered map owned by task context;
//!   the executor wakes expired entries and arms the APIC timer (`clock::arm_timer`) for the
//!   earliest one. The timer interrupt only enqueues a "timers due" marker.
//! * Idle: interrupts off, check the queue, then `sti; hlt` as one pair (the instruction after
//!   `sti` runs before any interrupt is taken), so an interrupt that arrives after the check
//!   still ends the `hlt` instead of being lost (blog_os `task/executor.rs` `sleep_if_idle`).
//! * Interrupt events: [`bind_interrupt`] connects a vector to an [`InterruptEvent`] that tasks
//!   await; its handler only counts and wakes.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use core::time::Duration;

use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use spin::{Mutex, Once};
use x86_64::instructions::interrupts as x86_interrupts;

use crate::clock::{self, Instant};
use crate::interrupts;

/// Capacity of the ready queue. Beyond it wake-ups are coalesced into "poll everything".
pub const READY_QUEUE_CAPACITY: usize = 1024;

/// Identifies a spawned task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(u64);

impl TaskId {
    /// The raw id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Pseudo task: the future passed to [`run_until`].
const MAIN_ID: u64 = u64::MAX;
/// Pseudo task: "a timer interrupt came" (only ends an idle `hlt`).
const TIMER_ID: u64 = u64::MAX - 1;

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

/// Spawned tasks not currently being polled. Only touched from task context.
struct Tasks {
    map: BTreeMap<u64, BoxedTask>,
    next_id: u64,
}

/// Task futures are `!Send` (single core, never moved across CPUs).
struct TaskCell(Tasks);
// SAFETY: the kernel runs on one CPU and tasks are only ever touched from task context on
// that CPU (never from interrupt handlers), so the `!Send` futures never change threads.
unsafe impl Send for TaskCell {}

static TASKS: Mutex<TaskCell> = Mutex::new(TaskCell(Tasks {
    map: BTreeMap::new(),
    next_id: 0,
}));
static READY: Once<ArrayQueue<u64>> = Once::new();
static OVERFLOW: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicBool = AtomicBool::new(false);
static POLLS: AtomicU64 = AtomicU64::new(0);
static IDLE_HALTS: AtomicU64 = AtomicU64::new(0);

/// Registered deadlines, keyed by `(deadline, registration number)` so equal deadlines
/// stay distinct and fire in registration order. Only touched from task context (never
/// from an interrupt handler). A dropped [`Sleep`] removes its entry.
struct Timers {
    map: BTreeMap<(Instant, u64), Waker>,
    next_seq: u64,
}

static TIMERS: Mutex<Timers> = Mutex::new(Timers {
    map: BTreeMap::new(),
    next_seq: 0,
});

/// The deadline the APIC timer is armed for, and the timer interrupt count at that moment.
static ARMED: Mutex<(Option<Instant>, u64)> = Mutex::new((None, u64::MAX));
static ARM_FAILED: AtomicBool = AtomicBool::new(false);

/// Number of registered (not yet fired or dropped) deadlines.
pub fn timer_count() -> usize {
    TIMERS.lock().map.len()
}

fn ready_queue() -> &'static ArrayQueue<u64> {
    READY.call_once(|| ArrayQueue::new(READY_QUEUE_CAPACITY))
}

/// Makes the executor ready: allocates the ready queue and connects the APIC timer interrupt.
/// Called by `platform::init` after `clock::init`; idempotent.
pub fn init() {
    ready_queue();
    clock::set_timer_callback(on_timer_interrupt);
}

/// Enqueues `id` for polling. Interrupt-safe: must not block or allocate, and does neither.
///
/// Queue operations run with interrupts disabled, so an interrupt handler's push never
/// finds a slot that an interrupted push or pop has claimed but not yet released (with
/// `ArrayQueue` that would make the handler spin on a single core forever).
fn wake_id(id: u64) {
    let queued =
        x86_interrupts::without_interrupts(|| READY.get().is_some_and(|q| q.push(id).is_ok()));
    if !queued {
        OVERFLOW.store(true, Ordering::Release);
    }
}

/// Takes the next ready id (interrupts disabled for the same reason as in [`wake_id`]).
fn pop_ready(queue: &ArrayQueue<u64>) -> Option<u64> {
    x86_interrupts::without_interrupts(|| queue.pop())
}

fn on_timer_interrupt() {
    wake_id(TIMER_ID);
}

// Waker = task id; clone is a copy, drop is a no-op: no reference counting, no allocation.
static VTABLE: RawWakerVTable = RawWakerVTable::new(raw_clone, raw_wake, raw_wake, raw_drop);

fn raw_clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}
fn raw_wake(data: *const ()) {
    wake_id(data as u64);
}
fn raw_drop(_data: *const ()) {}

fn waker_for(id: u64) -> Waker {
    // SAFETY: the vtable functions treat `data` as a plain integer (never dereferenced), and
    // all of them are thread- and interrupt-safe (`wake_id` only touches a lock-free queue
    // and an atomic), as the `RawWaker` contract requires.
    unsafe { Waker::from_raw(RawWaker::new(id as *const (), &VTABLE)) }
}

/// Spawns `future` as a task. It is first polled by the running (or next) [`run_until`].
/// Task context only (it allocates): never from an interrupt handler.
pub fn spawn(future: impl Future<Output = ()> + 'static) -> TaskId {
    let id = {
        let mut tasks = TASKS.lock();
        let id = tasks.0.next_id;
        tasks.0.next_id += 1;
        tasks.0.map.insert(id, Box::pin(future));
        id
    };
    wake_id(id);
    TaskId(id)
}

/// Number of spawned tasks that have not finished.
pub fn task_count() -> usize {
    TASKS.lock().0.map.len()
}

/// Whether task `id` is still alive.
pub fn is_alive(id: TaskId) -> bool {
    TASKS.lock().0.map.contains_key(&id.0)
}

/// Counters: `(task polls, idle halts)`.
pub fn stats() -> (u64, u64) {
    (
        POLLS.load(Ordering::Relaxed),
        IDLE_HALTS.load(Ordering::Relaxed),
    )
}

fn poll_task(id: u64) {
    // Take the task out so it can spawn (which locks TASKS) while it is polled.
    let Some(mut task) = TASKS.lock().0.map.remove(&id) else {
        return; // finished already (a stale or duplicate wake-up)
    };
    POLLS.fetch_add(1, Ordering::Relaxed);
    let waker = waker_for(id);
    let mut cx = Context::from_waker(&waker);
    if task.as_mut().poll(&mut cx).is_pending() {
        TASKS.lock().0.map.insert(id, task);
    }
}

/// Wakes every expired timer and arms the APIC timer for the earliest remaining one.
fn service_timers() {
    let now = clock::now();
    let mut due: Vec<Waker> = Vec::new();
    let next = {
        let mut timers = TIMERS.lock();
        while let Some(entry) = timers.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        timers.map.first_key_value().map(|(k, _)| k.0)
    };
    for w in due {
        w.wake();
    }
    // Reprogram the APIC timer only when the earliest deadline changed or the timer fired
    // since it was armed (an early, period-clamped interrupt must be re-armed): an MMIO
    // write per executor round would be wasted on the hot path.
    let irqs = clock::timer_interrupt_count();
    let mut armed = ARMED.lock();
    if armed.0 == next && armed.1 == irqs {
        return;
    }
    let result = match next {
        Some(deadline) => clock::arm_timer(deadline),
        None => clock::disarm_timer(),
    };
    match result {
        Ok(()) => *armed = (next, irqs),
        Err(e) => {
            // Without a timer we still make progress by polling: treat timers as always due.
            if !ARM_FAILED.swap(true, Ordering::Relaxed) {
                log::warn!("executor: cannot arm the deadline timer ({e}); polling instead");
            }
            *armed = (None, u64::MAX);
            if next.is_some() {
                wake_id(TIMER_ID);
            }
        }
    }
}

/// Runs spawned tasks and `future` until `future` completes; returns its output.
/// Spawned tasks that are still pending stay queued for the next call.
///
/// # Panics
/// If called while another `run_until` is running (the executor is not re-entrant).
pub fn run_until<F: Future>(future: F) -> F::Output {
    assert!(
        !RUNNING.swap(true, Ordering::AcqRel),
        "executor::run_until called re-entrantly (from inside a task)"
    );
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING.store(false, Ordering::Release);
        }
    }
    let _running = Running;

    let queue = ready_queue();
    let mut future = pin!(future);
    let main_waker = waker_for(MAIN_ID);
    let mut main_ready = true;
    loop {
        if main_ready {
            main_ready = false;
            POLLS.fetch_add(1, Ordering::Relaxed);
            if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                return out;
            }
        }
        // Poll what is ready now; wake-ups that arrive meanwhile are handled next round.
        // TIMER_ID only ends an idle `hlt`: timers are serviced every round below.
        for _ in 0..queue.len() {
            match pop_ready(queue) {
                Some(MAIN_ID) => main_ready = true,
                Some(TIMER_ID) => {}
                Some(id) => poll_task(id),
                None => break,
            }
        }
        if OVERFLOW.swap(false, Ordering::AcqRel) {
            let ids: Vec<u64> = TASKS.lock().0.map.keys().copied().collect();
            for id in ids {
                poll_task(id);
            }
            main_ready = true;
        }
        service_timers();
        if main_ready {
            continue;
        }
        // Idle: sleep until an interrupt, without losing one that fires after the check.
        x86_interrupts::disable();
        if queue.is_empty() && !OVERFLOW.load(Ordering::Acquire) {
            IDLE_HALTS.fetch_add(1, Ordering::Relaxed);
            // `sti; hlt` back to back: the interrupt shadow of STI guarantees the HLT is
            // executed before any pending interrupt is taken, and that interrupt ends it.
            x86_interrupts::enable_and_hlt();
        } else {
            x86_interrupts::enable();
        }
    }
}

/// Alias of [`run_until`] for tests and boot code.
pub fn block_on<F: Future>(future: F) -> F::Output {
    run_until(future)
}

/// Runs the executor forever (the kernel's main loop).
pub fn run_forever() -> ! {
    run_until(core::future::pending::<()>());
    unreachable!("a pending future completed")
}

/// A future that completes at `deadline` (see [`sleep_until`]).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// Key of our entry in [`TIMERS`] and the waker stored there.
    registered: Option<(u64, Waker)>,
}

impl Sleep {
    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if clock::now() >= self.deadline {
            return Poll::Ready(());
        }
        if let Some((_, w)) = &self.registered {
            if w.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        // First poll, or polled by a different task: (re-)register. Our old entry may have
        // fired already (early APIC interrupt paths never pop an unexpired entry, but a
        // re-registration must not depend on that), so insert afresh.
        let deadline = self.deadline;
        let mut timers = TIMERS.lock();
        if let Some((seq, _)) = self.registered.take() {
            timers.map.remove(&(deadline, seq));
        }
        let seq = timers.next_seq;
        timers.next_seq += 1;
        timers.map.insert((deadline, seq), cx.waker().clone());
        drop(timers);
        // The executor re-arms the APIC timer for the earliest deadline before it next goes
        // idle (`service_timers` runs every round).
        self.registered = Some((seq, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((seq, _)) = self.registered.take() {
            TIMERS.lock().map.remove(&(self.deadline, seq));
        }
    }
}

/// Completes at `deadline` (immediately if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        registered: None,
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(clock::now() + duration)
}

/// The deadline passed before the future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline elapsed")
    }
}

/// Runs `future` until `deadline`: `Ok(output)` if it finished first, else `Err(Elapsed)`.
pub async fn with_deadline<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut sleep = sleep_until(deadline);
    core::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Yields once: the task is re-queued behind everything already ready.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// An interrupt-to-task signal: the handler calls [`InterruptEvent::signal`] (count + wake),
/// tasks await [`InterruptEvent::wait`].
#[derive(Debug)]
pub struct InterruptEvent {
    count: AtomicU64,
    waker: AtomicWaker,
}

impl Default for InterruptEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl InterruptEvent {
    /// A new event with count 0.
    pub const fn new() -> Self {
        InterruptEvent {
            count: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// Records one occurrence and wakes the waiting task. Interrupt-safe: must not block or
    /// allocate, and does neither (an atomic add and an `AtomicWaker::wake`).
    pub fn signal(&self) {
        self.count.fetch_add(1, Ordering::Release);
        self.waker.wake();
    }

    /// Occurrences so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Completes (with the new count) once the count exceeds `seen`. Only one task may wait
    /// on an event at a time (the last registered waker wins).
    pub fn wait(&self, seen: u64) -> WaitEvent<'_> {
        WaitEvent { event: self, seen }
    }
}

/// Future returned by [`InterruptEvent::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WaitEvent<'a> {
    event: &'a InterruptEvent,
    seen: u64,
}

impl Future for WaitEvent<'_> {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let c = self.event.count();
        if c > self.seen {
            return Poll::Ready(c);
        }
        self.event.waker.register(cx.waker());
        // Re-check after registering: a signal between the first check and `register`
        // would otherwise be missed.
        let c = self.event.count();
        if c > self.seen {
            Poll::Ready(c)
        } else {
            Poll::Pending
        }
    }
}

static VECTOR_EVENTS: [InterruptEvent; 256] = [const { InterruptEvent::new() }; 256];

fn vector_event_handler(vector: u8) {
    VECTOR_EVENTS[usize::from(vector)].signal();
}

/// Registers a handler for `vector` that signals the returned event (for MSI-X and other
/// device interrupts whose handling happens in a task).
pub fn bind_interrupt(vector: u8) -> Result<&'static InterruptEvent, interrupts::InterruptError> {
    interrupts::register_handler(vector, vector_event_handler)?;
    Ok(&VECTOR_EVENTS[usize::from(vector)])
}

/// Allocates a free vector and binds it with [`bind_interrupt`].
pub fn allocate_interrupt() -> Option<(u8, &'static InterruptEvent)> {
    let vector = interrupts::allocate_vector()?;
    bind_interrupt(vector).ok().map(|e| (vector, e))
}
