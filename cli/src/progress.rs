//! A spinner on stderr for work that takes more than a second, when stderr
//! is a terminal (and never for `gdbserver`, whose stderr is often gdb's
//! terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long work runs before the spinner shows: a second, or
/// `VMCORE_PROGRESS_AFTER_MS` milliseconds (for tests).
fn delay() -> Duration {
    let ms = std::env::var("VMCORE_PROGRESS_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

/// The spinner's thread, until [`Spinner::stop`].
pub struct Spinner(Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>);

impl Spinner {
    /// Starts a spinner saying `message`, shown once the delay has passed
    /// if stderr is a terminal.
    pub fn start(message: String) -> Spinner {
        if !io::stderr().is_terminal() {
            return Spinner::none();
        }
        Spinner::start_to(message, delay(), ProgressDrawTarget::stderr)
    }

    /// A spinner drawn to `target()` after `after`.
    fn start_to(
        message: String,
        after: Duration,
        target: impl FnOnce() -> ProgressDrawTarget + Send + 'static,
    ) -> Spinner {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // Done (or the sender dropped) before the delay: nothing shown.
            if rx.recv_timeout(after) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            let bar = ProgressBar::new_spinner();
            bar.set_draw_target(target());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(100));
            let _ = rx.recv();
            bar.finish_and_clear();
        });
        Spinner(Mutex::new(Some((tx, thread))))
    }

    /// No spinner.
    pub fn none() -> Spinner {
        Spinner(Mutex::new(None))
    }

    /// Stops the spinner and clears its line; then stderr and stdout are
    /// free to write to.
    pub fn stop(&self) {
        let taken = self.0.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some((tx, thread)) = taken {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Standard output that stops the spinner before its first byte reaches a
/// terminal (when stdout is a file or a pipe, the spinner runs to the
/// end).
pub struct Output<'a, W: Write> {
    inner: W,
    spinner: &'a Spinner,
    to_terminal: bool,
}

impl<'a, W: Write> Output<'a, W> {
    /// `inner`, which is a terminal when `to_terminal` is true.
    pub fn new(inner: W, spinner: &'a Spinner, to_terminal: bool) -> Self {
        Output {
            inner,
            spinner,
            to_terminal,
        }
    }
}

impl<W: Write> Write for Output<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.to_terminal {
            self.spinner.stop();
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.to_terminal {
            self.spinner.stop();
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;
    use std::time::Instant;

    /// Waits up to 10 s for `cond`.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn shows_after_the_delay_and_clears_before_output() {
        let term = InMemoryTerm::new(4, 80);
        let t = term.clone();
        let spinner = Spinner::start_to(
            "reading vmcore.0".into(),
            Duration::from_millis(20),
            move || ProgressDrawTarget::term_like(Box::new(t)),
        );
        assert!(eventually(|| term.contents().contains("reading vmcore.0")));
        // The first byte for a terminal stops it and clears its line.
        let mut out = Output::new(Vec::new(), &spinner, true);
        out.write_all(b"output\n").unwrap();
        assert!(!term.contents().contains("reading"), "{}", term.contents());
        assert_eq!(out.inner, b"output\n");
    }

    #[test]
    fn quick_work_shows_nothing_and_files_do_not_stop_it() {
        let term = InMemoryTerm::new(4, 80);
        let t = term.clone();
        let spinner = Spinner::start_to("quick".into(), Duration::from_secs(30), move || {
            ProgressDrawTarget::term_like(Box::new(t))
        });
        spinner.stop();
        assert_eq!(term.contents(), "");
        // Output to a file or pipe leaves the spinner running.
        let term = InMemoryTerm::new(4, 80);
        let t = term.clone();
        let spinner = Spinner::start_to("long".into(), Duration::ZERO, move || {
            ProgressDrawTarget::term_like(Box::new(t))
        });
        let mut out = Output::new(Vec::new(), &spinner, false);
        out.write_all(b"to a file").unwrap();
        assert!(eventually(|| term.contents().contains("long")));
        spinner.stop();
        assert!(!term.contents().contains("long"));
    }
}
