//! Writing to standard output and error without panicking.
//!
//! `println!` panics when the reader of a pipe has gone away (`fjord topics --list | head -1`),
//! which ends the tool with a panic message and exit 101. Kafka's shell tools stay quiet
//! and exit 0 then, and so do Fjord's: [`out_line`] reports a closed stdout as
//! [`StdoutClosed`], which `main` turns into a quiet success. The broker itself never writes
//! to stdout; the process keeps Rust's default of ignoring SIGPIPE so that a closed socket
//! is an error on that socket rather than the end of the server.

use std::fmt;
use std::io::{ErrorKind, Write};

use anyhow::{anyhow, Result};

/// Standard output's reader is gone: the tool stops, quietly and successfully.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes one line to standard output; a closed pipe is [`StdoutClosed`], any other failure
/// (a full disk behind a redirect) an error that names standard output.
pub fn out_line(args: fmt::Arguments<'_>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow!(e).context("cannot write to standard output")),
    }
}

/// Writes one line to standard error, dropping it if stderr is closed: a message nobody can
/// read is no reason to panic.
pub fn err_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `println!` that returns an error instead of panicking; use with `?`.
macro_rules! outln {
    () => {
        $crate::output::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::out_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::err_line(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};
