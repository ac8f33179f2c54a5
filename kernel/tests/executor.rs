//! In-QEMU test: the executor runs spawned tasks, wakes them from interrupt handlers and
//! timer deadlines, survives a full wake queue, and does not lose an interrupt that is
//! pending when it decides to halt.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::Poll;
use core::time::Duration;

use kernel::clock::{self, Instant};
use kernel::executor::{self, Elapsed, InterruptEvent};
use kernel::{apic, interrupts, platform};

kernel::test_main!(
    platform_comes_up,
    spawned_tasks_interleave_at_yield_points,
    sleep_is_woken_by_the_apic_timer,
    timers_fire_in_deadline_order,
    interrupt_handler_wakes_spawned_task,
    interrupt_pending_at_idle_check_is_not_lost,
    full_wake_queue_loses_no_wakeup,
    with_deadline_reports_elapsed,
);

fn platform_comes_up() {
    let p = platform::init().unwrap_or_else(|e| panic!("{e}"));
    assert!(p.clock.tsc_hz > 0);
}

fn spawned_tasks_interleave_at_yield_points() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let log: Rc<RefCell<Vec<(u32, u32)>>> = Rc::new(RefCell::new(Vec::new()));
    for id in 0..3 {
        let log = log.clone();
        executor::spawn(async move {
            log.borrow_mut().push((id, 0));
            executor::yield_now().await;
            log.borrow_mut().push((id, 1));
        });
    }
    assert_eq!(executor::task_count(), 3);
    executor::run_until(async {
        while executor::task_count() > 0 {
            executor::yield_now().await;
        }
    });
    let log = log.borrow();
    assert_eq!(log.len(), 6, "log: {log:?}");
    // Every task ran its first half before any task ran its second half.
    let first_second = log.iter().position(|&(_, half)| half == 1).unwrap();
    assert_eq!(first_second, 3, "log: {log:?}");
    for id in 0..3 {
        assert!(
            log.contains(&(id, 0)) && log.contains(&(id, 1)),
            "log: {log:?}"
        );
    }
}

fn sleep_is_woken_by_the_apic_timer() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let timer_irqs = clock::timer_interrupt_count();
    let (_, halts) = executor::stats();
    let start = clock::now();
    executor::run_until(executor::sleep(Duration::from_millis(50)));
    let elapsed = start.elapsed();
    kernel::serial_println!("executor: 50 ms sleep took {} us", elapsed.as_micros());
    assert!(
        elapsed >= Duration::from_millis(50),
        "woke early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "woke late: {elapsed:?}");
    // The executor halted and an APIC timer interrupt ended the sleep (no busy polling).
    assert!(executor::stats().1 > halts, "the executor never halted");
    assert!(
        clock::timer_interrupt_count() > timer_irqs,
        "no APIC timer interrupt"
    );
    // Wake-up latency past the deadline over 20 short sleeps (reported; never early).
    let (mut worst, mut total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..20 {
        let deadline = clock::now() + Duration::from_millis(1);
        executor::run_until(executor::sleep_until(deadline));
        let late = clock::now()
            .checked_duration_since(deadline)
            .expect("woke before the deadline");
        worst = worst.max(late);
        total += late;
    }
    kernel::serial_println!(
        "executor: 1 ms sleeps wake {} us late on average, {} us at worst",
        (total / 20).as_micros(),
        worst.as_micros()
    );
}

fn timers_fire_in_deadline_order() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let woke: Rc<RefCell<Vec<(u64, Instant)>>> = Rc::new(RefCell::new(Vec::new()));
    let start = clock::now();
    for ms in [30u64, 10, 20] {
        let woke = woke.clone();
        executor::spawn(async move {
            executor::sleep_until(start + Duration::from_millis(ms)).await;
            woke.borrow_mut().push((ms, clock::now()));
        });
    }
    let done = woke.clone();
    let outcome = executor::run_until(executor::with_deadline(
        start + Duration::from_secs(10),
        poll_fn(move |cx| {
            if done.borrow().len() == 3 {
                Poll::Ready(())
            } else {
                // Re-check after every other task's progress.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }),
    ));
    assert_eq!(outcome, Ok(()));
    let woke = woke.borrow();
    let order: Vec<u64> = woke.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(order, [10, 20, 30]);
    for &(ms, at) in woke.iter() {
        assert!(
            at >= start + Duration::from_millis(ms),
            "{ms} ms timer fired early at {at}"
        );
    }
}

fn interrupt_handler_wakes_spawned_task() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let (vector, event) = executor::allocate_interrupt().expect("no free vector");
    static DONE: InterruptEvent = InterruptEvent::new();
    let seen = Rc::new(Cell::new(0u64));
    let seen2 = seen.clone();
    executor::spawn(async move {
        // Suspends until the interrupt handler signals the event.
        let n = event.wait(0).await;
        seen2.set(n);
        DONE.signal();
    });
    let deadline = clock::now() + Duration::from_secs(10);
    let outcome = executor::run_until(executor::with_deadline(deadline, async {
        // Let the task run and block first.
        executor::sleep(Duration::from_millis(5)).await;
        assert_eq!(seen.get(), 0, "task finished before the interrupt");
        apic::send_self_ipi(vector).unwrap();
        DONE.wait(0).await
    }));
    assert_eq!(outcome, Ok(1));
    assert_eq!(seen.get(), 1);
    assert_eq!(event.count(), 1);
}

fn interrupt_pending_at_idle_check_is_not_lost() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let (vector, event) = executor::allocate_interrupt().expect("no free vector");
    let (_, halts) = executor::stats();
    let start = clock::now();
    // The only other wake source is the 5 s deadline: if the executor lost the interrupt
    // (taking it between its queue check and `hlt`), it would sleep until then.
    let outcome = executor::run_until(executor::with_deadline(
        start + Duration::from_secs(5),
        async {
            interrupts::disable();
            apic::send_self_ipi(vector).unwrap();
            // The IPI is now pending in the local APIC and cannot be taken while IF = 0; the
            // executor reaches its idle check with it pending.
            assert_eq!(event.count(), 0);
            assert!(!interrupts::are_enabled());
            event.wait(0).await
        },
    ));
    let elapsed = start.elapsed();
    kernel::serial_println!(
        "executor: pending interrupt woke the idle executor after {} us",
        elapsed.as_micros()
    );
    assert_eq!(outcome, Ok(1), "the pending interrupt was lost");
    assert!(
        elapsed < Duration::from_millis(1500),
        "woke only after {elapsed:?}"
    );
    assert!(
        executor::stats().1 > halts,
        "the executor never reached its idle path"
    );
}

fn full_wake_queue_loses_no_wakeup() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    static B_WAITING: InterruptEvent = InterruptEvent::new();
    static B_GO: InterruptEvent = InterruptEvent::new();
    static B_DONE: InterruptEvent = InterruptEvent::new();
    executor::spawn(async {
        B_WAITING.signal();
        B_GO.wait(0).await;
        B_DONE.signal();
    });
    executor::spawn(async {
        B_WAITING.wait(0).await;
        // Flood the ready queue past its capacity, then wake B: its wake-up cannot be
        // queued and must survive through the overflow path.
        let mut first = true;
        poll_fn(|cx| {
            if first {
                first = false;
                for _ in 0..executor::READY_QUEUE_CAPACITY + 10 {
                    cx.waker().wake_by_ref();
                }
                B_GO.signal();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    });
    let outcome = executor::run_until(executor::with_deadline(
        clock::now() + Duration::from_secs(10),
        B_DONE.wait(0),
    ));
    assert_eq!(outcome, Ok(1));
    executor::run_until(async {
        while executor::task_count() > 0 {
            executor::yield_now().await;
        }
    });
}

fn with_deadline_reports_elapsed() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let start = clock::now();
    let outcome = executor::run_until(executor::with_deadline(
        start + Duration::from_millis(20),
        core::future::pending::<()>(),
    ));
    assert_eq!(outcome, Err(Elapsed));
    assert!(start.elapsed() >= Duration::from_millis(20));
    // A future that finishes first wins, and its dropped deadline leaves no timer behind.
    let timers = executor::timer_count();
    let outcome = executor::run_until(executor::with_deadline(
        clock::now() + Duration::from_secs(10),
        async {
            executor::yield_now().await;
            7
        },
    ));
    assert_eq!(outcome, Ok(7));
    assert_eq!(
        executor::timer_count(),
        timers,
        "a dropped Sleep stayed registered"
    );
}
