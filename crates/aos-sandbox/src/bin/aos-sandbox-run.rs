//! Run one container to completion: `aos-sandbox-run SPEC.json [STATE_ROOT]`.
//!
//! A single-threaded process, as container start requires (see `aos_sandbox::container`): the
//! test suite and the benchmark use it, and it is the shape of the per-pod shim. Prints the
//! exit status as JSON on stdout.

use std::process::ExitCode;
use std::sync::Arc;

use aos_sandbox::host::LinuxHost;
use aos_sandbox::{Runtime, SandboxSpec};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(spec_path), state_root) = (args.next(), args.next()) else {
        eprintln!("usage: aos-sandbox-run SPEC.json [STATE_ROOT]");
        return ExitCode::from(2);
    };
    let state_root = state_root.unwrap_or_else(|| "/run/aos-sandbox".into());
    let result = std::fs::read_to_string(&spec_path)
        .map_err(|e| format!("reading {spec_path}: {e}"))
        .and_then(|s| {
            serde_json::from_str::<SandboxSpec>(&s).map_err(|e| format!("parsing {spec_path}: {e}"))
        })
        .and_then(|spec| {
            let runtime = Runtime::new(state_root, Arc::new(LinuxHost));
            let handle = runtime.start(&spec).map_err(|e| e.to_string())?;
            let status = handle.wait().map_err(|e| e.to_string())?;
            handle.cleanup().map_err(|e| e.to_string())?;
            Ok(status)
        });
    match result {
        Ok(status) => {
            println!(
                "{}",
                serde_json::to_string(&status).expect("exit status serializes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aos-sandbox-run: {e}");
            ExitCode::FAILURE
        }
    }
}
