//! Every state change goes through one `set_state` that traces `old=>new` (style §5).

mod conn_support;

use std::sync::Mutex;

use conn_support::Pair;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.level() == log::Level::Trace {
            LINES.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

#[test]
fn transitions_are_traced_old_to_new() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let mut p = Pair::established(64);
    let (a_token, b_token) = (p.a.own_token().0, p.b.own_token().0);
    p.a.shutdown_write(&p.a_dev).unwrap();
    p.pump();
    p.b.close(&p.b_dev).unwrap();
    p.pump();
    p.a.close(&p.a_dev).unwrap();

    let lines = LINES.lock().unwrap().clone();
    let of = |token: u64| -> Vec<String> {
        let prefix = format!("smcd conn {token:#x}: ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        of(a_token),
        [
            "state ACTIVE=>PEERCLOSEWAIT1",
            "state PEERCLOSEWAIT1=>APPFINCLOSEWAIT",
            "state APPFINCLOSEWAIT=>CLOSED"
        ]
    );
    assert_eq!(
        of(b_token),
        [
            "state ACTIVE=>APPCLOSEWAIT1",
            "state APPCLOSEWAIT1=>PEERFINCLOSEWAIT"
        ]
    );
}
