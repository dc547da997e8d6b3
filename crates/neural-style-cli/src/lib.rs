//! The `neural-style` command as a library: [`main_with_args`] is the whole command (the
//! binary and the Python package's `neural-style` script both call it), and [`embed`] runs
//! its default job for another program (the Python package) with images in memory and
//! events to a callback.

/// `eprintln!` for lines that may carry names from outside (file names, uploads, worker
/// names): control characters other than line breaks are escaped ([`printable_lines`]).
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::printable_lines(&format!($($arg)*)))
    };
}

/// [`say!`] for standard output.
macro_rules! tell {
    ($($arg:tt)*) => {
        println!("{}", $crate::printable_lines(&format!($($arg)*)))
    };
}

mod batch;
#[cfg(feature = "queue")]
mod batch_queue;
mod bench;
mod cli;
mod config;
pub mod embed;
#[cfg(test)]
mod flags_doc;
mod progress;
mod runner;
#[cfg(feature = "serve")]
mod serve;
mod sheet;
mod transfer;
mod video;
mod weights_cmd;
#[cfg(feature = "queue")]
mod worker;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parses `args` (the program name first) and runs the command they name; prints any
/// error's whole chain on one line and returns the exit status (0 on success, 2 on an
/// error, 128 + N after signal N). `--help`, `--version` and a flag clap cannot parse print
/// and exit the process, as a command does.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Weights(args)) => weights_cmd::run(&args, cli.run.quiet),
        Some(Command::Sheet(args)) => sheet::run(*args),
        Some(Command::Batch(args)) => batch::run(*args),
        Some(Command::Video(args)) => video::run(*args),
        #[cfg(feature = "serve")]
        Some(Command::Serve(args)) => serve::run(*args),
        #[cfg(feature = "queue")]
        Some(Command::Worker(args)) => worker::run(*args),
        None => transfer::run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", printable(&format!("{e:#}")));
            2
        }
    }
}

/// `text` with its control characters escaped (`\u{1b}`, `\n`, ...), for lines that carry
/// names from outside (file names, uploads): an escape sequence in a file name must not
/// reach the terminal, and a newline must not break the one-line error.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] line by line: the line breaks of a message of several lines are kept.
pub fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(super::printable("a\u{1b}[31mb\nc é"), "a\\u{1b}[31mb\\nc é");
        assert_eq!(super::printable_lines("a\u{7}\nb\r"), "a\\u{7}\nb\\r");
    }
}
