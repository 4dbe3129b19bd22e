//! A stand-alone `aos image` for tests and benchmarks while the `aos` binary does not mount it:
//! `aos-image --data-dir DIR <build|import|export|ls|inspect|rm|tag|prune> ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "aos-image")]
struct Args {
    /// The data directory (default: $AOS_DATA_DIR, else ./aos-data).
    #[arg(long, env = "AOS_DATA_DIR", default_value = "aos-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    cmd: aos_image::cli::ImageCommand,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match aos_image::cli::run(args.cmd, &args.data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
