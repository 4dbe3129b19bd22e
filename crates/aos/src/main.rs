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
mod error;
mod manifests;
mod merge;
mod paths;

use std::process::ExitCode;

fn main() -> ExitCode {
    cmd::main()
}
