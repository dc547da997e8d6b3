//! The `neural-style` command: parses the flags and hands them to the command they name
//! (one style transfer by default; `batch`, `video`, `sheet`, `serve`, `worker`, `weights`,
//! `bench`), then prints any error's whole chain on one line and exits non-zero. The work
//! is in the library, [`neural_style_cli::main_with_args`].

use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse: the engine allocates and frees tensors of tens of
/// megabytes at every step, which the system allocator hands back to the kernel and faults
/// in again, page by page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(neural_style_cli::main_with_args(std::env::args_os()))
}
