//! `aos version`: the client's version, and the server's from `/version`.

use clap::Args;
use serde_json::Value;

use crate::api;
use crate::cmd::Ctx;

/// Arguments of `aos version`.
#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// Print the client version only (no server needed).
    #[arg(long)]
    client: bool,
}

pub(crate) async fn run(args: VersionArgs, ctx: &Ctx) -> anyhow::Result<()> {
    outln!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if args.client {
        return Ok(());
    }
    let client = ctx.client()?;
    let version: Value = api::get_json(&client, "/version").await?;
    let server = version
        .get("gitVersion")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    outln!("Server Version: {server}");
    Ok(())
}
