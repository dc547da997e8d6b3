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

/// How long mimalloc keeps freed memory before returning it to the kernel. Its default,
/// one second, is about one evaluation at 512 px: each evaluation's buffers went back and
/// were faulted in again page by page, which cost ~8% of a run and made evaluations vary by
/// ±40% (`tools/bench.py --whole-run`, 1 thread). A minute keeps them across evaluations at
/// any size and still frees an idle server's memory.
const KEEP_FREED_MS: std::ffi::c_long = 60_000;

/// `mi_option_purge_delay` in mimalloc.h's option enum (the same in mimalloc 2 and 3; the
/// Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How many allocations a thread's heap makes between two collections of its empty pages:
/// the most mimalloc allows, where its default is 10,000 (about eight evaluations at
/// 512 px). After a collection the pages a thread had kept for its buffers went back to
/// the shared pool, and at two threads the next evaluations now and then waited for fresh
/// pages: 32-evaluation runs spread 20%, 21%, 17% with the default and 12%, 16%, 11%
/// without (docs/speed.md).
const COLLECT_EVERY: std::ffi::c_long = 1_000_000;

/// `mi_option_generic_collect` in mimalloc 3's option enum (the version the Rust bindings
/// build by default; not named by them).
const MI_OPTION_GENERIC_COLLECT: libmimalloc_sys::mi_option_t = 34;

#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: sets two of mimalloc's options, by its documented API, from the main thread
    // before any other thread starts; options are read atomically where they are used.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, KEEP_FREED_MS);
        libmimalloc_sys::mi_option_set(MI_OPTION_GENERIC_COLLECT, COLLECT_EVERY);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    ExitCode::from(neural_style_cli::main_with_args(std::env::args_os()))
}
