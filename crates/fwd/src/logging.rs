//! Log output that never blocks the threads that log: every formatted line goes into a bounded
//! queue that one writer thread empties into stderr or the log file. When the sink stops taking
//! lines (stderr a pipe nobody reads, a stalled disk), the queue fills and further lines are
//! dropped and counted (`fwd_log_lines_dropped_total`): the workers, the control thread and
//! signal handling carry on. And LOG rules' lines pass a rate limit first ([`RateLimit`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Lines the queue holds before it drops.
pub const QUEUE_LINES: usize = 1024;

/// Lines dropped because the queue was full (the sink did not keep up or was blocked).
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines the writer thread wrote.
static WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Lines dropped because the log sink did not take them.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Lines written to the log sink.
pub fn written() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

/// The `tracing_subscriber` writer: formats one event into a buffer and queues it whole.
#[derive(Clone)]
pub struct NonBlocking {
    tx: SyncSender<Vec<u8>>,
}

impl NonBlocking {
    /// A queue of `lines` lines and the thread that writes them into `sink` (named
    /// `fwd-log`); the thread runs until the process ends.
    pub fn spawn(sink: Box<dyn Write + Send>, lines: usize) -> std::io::Result<NonBlocking> {
        let (tx, rx) = std::sync::mpsc::sync_channel(lines);
        std::thread::Builder::new()
            .name("fwd-log".into())
            .spawn(move || write_lines(rx, sink))?;
        Ok(NonBlocking { tx })
    }

    fn queue(&self, line: Vec<u8>) {
        PENDING.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::Relaxed);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_lines(rx: Receiver<Vec<u8>>, mut sink: Box<dyn Write + Send>) {
    while let Ok(line) = rx.recv() {
        // A failed write loses the line, as a full queue does: nothing to report it to.
        if sink.write_all(&line).and_then(|()| sink.flush()).is_ok() {
            WRITTEN.fetch_add(1, Ordering::Relaxed);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        PENDING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits until the queued lines are written, at most `limit`, and less when the writer makes
/// no progress for 100 ms (a blocked sink): a stop must not wait on stderr.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let (mut last, mut since) = (written(), Instant::now());
    while PENDING.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        let w = written();
        if w != last {
            (last, since) = (w, Instant::now());
        } else if since.elapsed() > Duration::from_millis(100) {
            break;
        }
    }
}

/// One event's bytes; queued when the formatter is done with it.
pub struct Line<'a> {
    buf: Vec<u8>,
    to: &'a NonBlocking,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.to.queue(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::with_capacity(256),
            to: self,
        }
    }
}

/// stderr as a file of its own (a duplicate of descriptor 2), so that the writer thread, when
/// blocked on a full pipe, does not hold the lock of `std::io::stderr()`.
pub fn stderr_sink() -> std::io::Result<Box<dyn Write + Send>> {
    use std::os::fd::AsFd;
    let fd = std::io::stderr().as_fd().try_clone_to_owned()?;
    Ok(Box::new(std::fs::File::from(fd)))
}

/// A token bucket for LOG lines, as the kernel's `net_ratelimit()` (`net.core.message_burst`
/// lines, then one every `message_cost / burst`): `burst` lines in a row, refilled at `burst`
/// per `interval`. A zero interval lets everything through, as message_cost = 0 does.
#[derive(Debug)]
pub struct RateLimit {
    /// Time credit in nanoseconds, at most `interval_ns`; a line costs `cost_ns`.
    credit_ns: u64,
    interval_ns: u64,
    cost_ns: u64,
    last_ns: u64,
    /// Lines refused since the last allowed one (reported with it, as "N suppressed").
    pending_suppressed: u64,
    suppressed: u64,
}

impl RateLimit {
    /// A full bucket at `now_ns`.
    pub fn new(burst: u32, interval: Duration, now_ns: u64) -> RateLimit {
        let interval_ns = interval.as_nanos().min(u128::from(u64::MAX)) as u64;
        RateLimit {
            credit_ns: interval_ns,
            interval_ns,
            cost_ns: interval_ns / u64::from(burst.max(1)),
            last_ns: now_ns,
            pending_suppressed: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may go out at `now_ns` (nanoseconds on any monotonic clock).
    pub fn allow(&mut self, now_ns: u64) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.credit_ns = self.credit_ns.saturating_add(elapsed).min(self.interval_ns);
        if self.credit_ns >= self.cost_ns {
            self.credit_ns -= self.cost_ns;
            true
        } else {
            self.suppressed += 1;
            self.pending_suppressed += 1;
            false
        }
    }

    /// Lines refused since the last call (to report with the next allowed line).
    pub fn take_pending(&mut self) -> u64 {
        std::mem::take(&mut self.pending_suppressed)
    }

    /// Lines refused in all.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    const S: u64 = 1_000_000_000;

    #[test]
    fn default_bucket_is_ten_lines_then_two_a_second() {
        let mut r = RateLimit::new(10, Duration::from_secs(5), 0);
        let first: usize = (0..1000).filter(|_| r.allow(0)).count();
        assert_eq!(first, 10);
        assert_eq!(r.suppressed(), 990);
        assert_eq!(r.take_pending(), 990);
        assert_eq!(r.take_pending(), 0);
        // a line per 0.5 s of credit
        assert!(!r.allow(S / 2 - 1));
        assert!(r.allow(S / 2));
        assert!(!r.allow(S / 2));
        // 10 s of a flood at 1 line/ms: 20 lines pass
        let passed = (1..=10_000u64)
            .filter(|ms| r.allow(S / 2 + ms * 1_000_000))
            .count();
        assert_eq!(passed, 20);
        // an idle minute refills the bucket to its burst, not beyond
        let t = 100 * S;
        assert_eq!((0..100).filter(|_| r.allow(t)).count(), 10);
    }

    #[test]
    fn zero_interval_is_no_limit_and_time_going_back_gives_no_credit() {
        let mut r = RateLimit::new(10, Duration::ZERO, 0);
        assert!((0..100_000).all(|_| r.allow(0)));
        assert_eq!(r.suppressed(), 0);
        let mut r = RateLimit::new(1, Duration::from_secs(1), 10 * S);
        assert!(r.allow(10 * S));
        assert!(!r.allow(5 * S));
        assert!(!r.allow(10 * S + S / 2));
        assert!(r.allow(11 * S));
    }

    /// A sink that takes nothing until released: stderr as a pipe nobody reads.
    struct Blocked(std::sync::Arc<std::sync::Barrier>);
    impl Write for Blocked {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.wait();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_sink_drops_and_counts_lines_and_never_blocks_the_logger() {
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let nb = NonBlocking::spawn(Box::new(Blocked(gate.clone())), 8).unwrap();
        let before = dropped();
        let t = Instant::now();
        for i in 0..1000 {
            let mut w = nb.make_writer();
            writeln!(w, "line {i}").unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // one line in the writer's hands, 8 queued: the rest dropped
        let d = dropped() - before;
        assert!((990..=992).contains(&d), "{d} dropped");
        let t = Instant::now();
        flush(Duration::from_secs(5));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "flush gave up on a stuck sink"
        );
        // release the sink: what was taken gets written
        for _ in 0..1000 - d {
            gate.wait();
        }
        flush(Duration::from_secs(5));
        assert_eq!(PENDING.load(Ordering::Relaxed), 0);
    }
}
