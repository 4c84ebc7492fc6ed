//! The blocking monitor names a coroutine that keeps its worker from switching.
//!
//! Its own test binary: it installs a capturing logger, which is process-wide.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use coro::CoroError;

const WAIT: Duration = Duration::from_secs(20);

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("coro")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES
                .lock()
                .unwrap()
                .push(format!("{} {} {}", r.level(), r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}

fn lines_naming(name: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(name))
        .cloned()
        .collect()
}

// One test: the monitor is process-wide, so the steps run in order.
#[test]
fn smoke_monitor_reports_a_blocking_coroutine_by_name() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Warn);

    let monitor = coro::start_monitor_with(Duration::from_millis(50)).unwrap();
    assert!(matches!(
        coro::start_monitor(),
        Err(CoroError::MonitorRunning)
    ));
    assert!(matches!(
        coro::start_monitor_with(Duration::ZERO),
        Err(CoroError::InvalidArgument(_)) | Err(CoroError::MonitorRunning)
    ));

    // A polite coroutine: sleeps cooperatively, never reported.
    let polite = coro::Builder::new()
        .name("polite")
        .spawn(|| {
            for _ in 0..20 {
                coro::sleep(Duration::from_millis(10));
            }
        })
        .unwrap();
    assert!(polite.join_timeout(WAIT));

    // A rude one: blocks the only worker for 400 ms with std::thread::sleep.
    let rude = coro::Builder::new()
        .name("rude-sleeper")
        .spawn(|| std::thread::sleep(Duration::from_millis(400)))
        .unwrap();
    assert!(rude.join_timeout(WAIT));
    // The report can land just after the stall ends, once the heartbeat beats
    // again: keep the runtime ticking until it is there, bounded by WAIT.
    let deadline = Instant::now() + WAIT;
    while lines_naming("rude-sleeper").is_empty() && Instant::now() < deadline {
        let tick = coro::spawn(|| coro::sleep(Duration::from_millis(10))).unwrap();
        assert!(tick.join_timeout(WAIT));
    }

    let reported = lines_naming("rude-sleeper");
    assert!(
        !reported.is_empty(),
        "no report; log: {:?}",
        LINES.lock().unwrap()
    );
    assert!(
        reported[0].starts_with("WARN coro::monitor"),
        "{reported:?}"
    );
    assert!(reported[0].contains("threshold 50 ms"), "{reported:?}");
    assert!(
        lines_naming("polite").is_empty(),
        "{:?}",
        LINES.lock().unwrap()
    );
    assert!(monitor.reports() >= 1);
    assert!(monitor.stop_timeout(WAIT));

    // Stopped: a second monitor may start.
    let again = coro::start_monitor().unwrap();
    assert_eq!(again.threshold(), Duration::from_millis(100));
    assert!(again.stop());
}
