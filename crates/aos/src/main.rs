//! `aos`: runs the platform (`aos up`, `aos server`) and talks to it the way kubectl does
//! (`apply`, `get`, `describe`, `delete`, `scale`, `wait`, ...).
//!
//! This file stays thin: the command tree and dispatch live in [`cmd`], one file per
//! command under `src/cmd/`; printing lives in [`output`].

#![forbid(unsafe_code)]

#[macro_use]
mod output;
mod api;
mod cmd;
mod demo;
mod error;
mod manifests;
mod merge;
mod paths;

use std::process::ExitCode;

// mimalloc: the gateway's request path allocates ~17 small objects per request; mimalloc
// takes ~1.5 µs per request (~9% of the proxy's CPU in bench/gateway) less than glibc's malloc.
// Built without huge pages for its regions (workspace Cargo.toml): idle RSS stays ~21-23 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The per-pod shim forks containers, so it must start before anything creates threads
    // (a tokio runtime): dispatch it first, outside clap and the command tree.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("shim") {
        aos_node::shim::init_shim_logging();
        return aos_node::shim_main(args.collect());
    }
    cmd::main()
}
