//! The per-pod shim as its own program, for tests and for running the node agent outside the
//! `aos` binary: `aos-node-shim CONFIG.json`.

use std::process::ExitCode;

fn main() -> ExitCode {
    aos_node::shim::init_shim_logging();
    aos_node::shim_main(std::env::args().skip(1).collect())
}
