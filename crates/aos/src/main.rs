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

fn main() -> ExitCode {
    // The per-pod shim forks containers, so it must start before anything creates threads
    // (a tokio runtime): dispatch it first, outside clap and the command tree.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("shim") {
        return aos_node::shim_main(args.collect());
    }
    cmd::main()
}
