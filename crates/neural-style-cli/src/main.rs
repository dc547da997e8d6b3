//! The `neural-style` command: parses the flags and hands them to the command they name
//! (one style transfer by default; `batch`, `video`, `sheet`, `serve`, `worker`, `weights`,
//! `bench`),
//! then prints any error's whole chain on one line and exits non-zero.

mod batch;
mod batch_queue;
mod bench;
mod cli;
mod config;
mod progress;
mod runner;
mod serve;
mod sheet;
mod transfer;
mod video;
mod weights_cmd;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc keeps freed memory for reuse: the engine allocates and frees tensors of tens of
/// megabytes at every step, which the system allocator hands back to the kernel and faults
/// in again, page by page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Weights(args)) => weights_cmd::run(&args, cli.run.quiet),
        Some(Command::Sheet(args)) => sheet::run(*args),
        Some(Command::Batch(args)) => batch::run(*args),
        Some(Command::Video(args)) => video::run(*args),
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Worker(args)) => worker::run(*args),
        None => transfer::run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
