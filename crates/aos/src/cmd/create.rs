//! `aos create namespace NAME` and `aos create -f FILE`.

use aos_client::Client;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs};
use crate::error::{AlreadyReported, UsageError};
use crate::manifests::{Item, parse_items, read_sources};
use crate::output::object_ref;

/// Arguments of `aos create`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CreateArgs {
    #[command(subcommand)]
    what: Option<CreateWhat>,
    /// Files, directories or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

#[derive(Debug, Subcommand)]
enum CreateWhat {
    /// Create a namespace.
    #[command(visible_alias = "ns")]
    Namespace {
        /// Its name.
        name: String,
    },
}

pub(crate) async fn run(args: CreateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    match args.what {
        Some(CreateWhat::Namespace { name }) => {
            let client = ctx.client()?;
            let rt = aos_types::resource::by_kind("v1", "Namespace")
                .ok_or_else(|| anyhow::anyhow!("this build does not serve namespaces"))?;
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let response = client
                .create(rt, None, &object)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
            for w in api::warnings(&response) {
                eprintln!("Warning: {w}");
            }
            outln!("{} created", object_ref(rt, &name));
            Ok(())
        }
        None => {
            if args.files.is_empty() {
                return Err(UsageError::new(
                    "create",
                    "must specify one of -f or a subcommand (namespace)",
                )
                .into());
            }
            let sources = read_sources(&args.files)?;
            let (items, errors) = parse_items(&sources, args.namespace.namespace.as_deref());
            for e in &errors {
                eprintln!("error: {e}");
            }
            let client = ctx.client()?;
            let ok = create_items(&client, items).await;
            if ok && errors.is_empty() {
                Ok(())
            } else {
                Err(AlreadyReported.into())
            }
        }
    }
}

async fn create_items(client: &Client, mut items: Vec<Item>) -> bool {
    items.sort_by_key(|item| item.rt.kind != "Namespace" || !item.rt.group.is_empty());
    let mut ok = true;
    for item in items {
        let local = match crate::cmd::apply::admit_locally(&item) {
            Ok((warnings, _)) => warnings,
            Err(e) => {
                ok = false;
                eprintln!("error: {}: {e}", item.origin);
                continue;
            }
        };
        for w in &local {
            eprintln!("Warning: {}: {w}", item.origin);
        }
        match client
            .create(item.rt, item.namespace.as_deref(), &item.object)
            .await
        {
            Ok(response) => {
                let origin = &item.origin;
                crate::cmd::apply::server_warnings(api::warnings(&response), &local, &mut |w| {
                    eprintln!("Warning: {origin}: {w}")
                });
                outln!("{} created", object_ref(item.rt, &item.name));
            }
            Err(e) => {
                ok = false;
                eprintln!("error: {}: {}", item.origin, api::error_line(&e));
            }
        }
    }
    ok
}
