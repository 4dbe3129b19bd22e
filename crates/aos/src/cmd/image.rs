//! `aos image ...`: build, import, export and manage OCI images in the node's image store.
//! The verbs themselves live in `aos_image::cli`; this file mounts them and picks the data dir.

use std::path::PathBuf;

use clap::Args;

/// `aos image [--data-dir DIR] VERB ...`
#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// The data dir whose image store to use (default: as `aos up`'s).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: aos_image::cli::ImageCommand,
}

pub(crate) fn run(args: ImageArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => crate::paths::default_data_dir()?,
    };
    aos_image::cli::run(args.command, &data_dir)
}
