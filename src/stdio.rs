//! Command output: printing that ends the command quietly when its reader has gone (`| head`).
//!
//! `println!` panics when stdout is a closed pipe ("failed printing to
//! stdout: Broken pipe", exit 101, a backtrace). A Unix filter whose reader
//! went away just stops; so do hotproxy's commands: [`outln!`](crate::outln)
//! and [`errln!`](crate::errln) exit at once on a closed pipe, with 0 — unless
//! the command has already decided to fail ([`failing`], which `errln!`
//! implies: it reports failures). A closed pipe must not turn `check`'s
//! "exit 1" into a success that CI or systemd would believe. Any other
//! write error (a full disk behind a redirect) exits 1: output was lost.
//! `run` logs through `tracing`, which ignores write errors; these are for
//! the commands that print reports (`check`, `certs`, `demo`).

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};

/// The exit code when a write meets a closed pipe: 0 until the command
/// decides to fail.
static CLOSED_PIPE_EXIT: AtomicI32 = AtomicI32::new(0);

/// The command has decided to fail: from now on a closed pipe ends it with
/// exit 1, not 0. Call it before the first line of a failing report (a
/// table printed ahead of the problems, say).
pub fn failing() {
    CLOSED_PIPE_EXIT.store(1, Ordering::Relaxed);
}

/// Print a line to stdout, like `println!`, ending quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::stdio::line($crate::stdio::Stream::Out, format_args!($($arg)*)) };
}

/// Report a failure on stderr, like `eprintln!`: marks the command as
/// [`failing`](crate::stdio::failing), so a closed pipe ends it with exit 1.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::stdio::line($crate::stdio::Stream::Err, format_args!($($arg)*)) };
}

/// Which standard stream a line goes to.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Out,
    Err,
}

/// Write one line; see the module documentation for what happens on errors.
pub fn line(stream: Stream, args: std::fmt::Arguments<'_>) {
    let result = match stream {
        Stream::Out => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{args}").and_then(|()| out.flush())
        }
        Stream::Err => {
            failing();
            // After the log lines already queued, as they were logged first.
            crate::log_writer::flush();
            writeln!(std::io::stderr().lock(), "{args}")
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            crate::log_writer::flush();
            std::process::exit(CLOSED_PIPE_EXIT.load(Ordering::Relaxed))
        }
        Err(e) => {
            // Best effort: stderr may be the stream that failed.
            let _ = writeln!(std::io::stderr(), "hotproxy: cannot write output: {e}");
            crate::log_writer::flush();
            std::process::exit(1)
        }
    }
}
