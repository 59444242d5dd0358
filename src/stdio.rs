//! Command output: printing that ends the command quietly when its reader has gone (`| head`).
//!
//! `println!` panics when stdout is a closed pipe ("failed printing to
//! stdout: Broken pipe", exit 101, a backtrace). A Unix filter whose reader
//! went away just stops; so do hotproxy's commands: [`outln!`](crate::outln)
//! and [`errln!`](crate::errln) exit 0 at once on a closed pipe. Any other
//! write error (a full disk behind a redirect) exits 1: output was lost.
//! `run` logs through `tracing`, which ignores write errors; these are for
//! the commands that print reports (`check`, `certs`, `demo`).

use std::io::Write;

/// Print a line to stdout, like `println!`, ending quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::stdio::line($crate::stdio::Stream::Out, format_args!($($arg)*)) };
}

/// Print a line to stderr, like `eprintln!`, ending quietly on a closed pipe.
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
        Stream::Err => writeln!(std::io::stderr().lock(), "{args}"),
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            // Best effort: stderr may be the stream that failed.
            let _ = writeln!(std::io::stderr(), "hotproxy: cannot write output: {e}");
            std::process::exit(1)
        }
    }
}
