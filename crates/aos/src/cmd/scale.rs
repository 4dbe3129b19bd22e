//! `aos scale deployment/NAME --replicas=N`, through the scale subresource.

use aos_client::Patch;
use clap::Args;
use serde_json::json;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs, targets};
use crate::error::AlreadyReported;
use crate::output::object_ref;

/// Arguments of `aos scale`.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// `TYPE/NAME...` or `TYPE NAME...`.
    #[arg(required = true, value_name = "RESOURCE")]
    resources: Vec<String>,
    /// The new replica count.
    #[arg(long, required = true)]
    replicas: u32,
    /// Only scale when the current replica count is this.
    #[arg(long, value_name = "N")]
    current_replicas: Option<u32>,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

pub(crate) async fn run(args: ScaleArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let targets = targets("scale", &args.resources)?;
    let client = ctx.client()?;
    let mut failed = false;
    for (rt, name) in targets {
        if !rt.scale_subresource {
            eprintln!(
                "error: {} cannot be scaled: it has no scale subresource",
                object_ref(rt, &name)
            );
            failed = true;
            continue;
        }
        let ns = rt.namespaced.then(|| args.namespace.or_default());
        if let Some(expected) = args.current_replicas {
            match client.get(rt, ns, &name).await {
                Ok(obj) => {
                    let current = obj
                        .pointer("/spec/replicas")
                        .and_then(|v| v.as_i64())
                        .unwrap_or(1);
                    if current != i64::from(expected) {
                        eprintln!("error: expected replicas to be {expected}, was {current}");
                        failed = true;
                        continue;
                    }
                }
                Err(e) => {
                    eprintln!("error: {}", api::error_line(&e));
                    failed = true;
                    continue;
                }
            }
        }
        let patch = Patch::Merge(json!({"spec": {"replicas": args.replicas}}));
        match client.patch(rt, ns, &name, patch, Some("scale")).await {
            Ok(_) => outln!("{} scaled", object_ref(rt, &name)),
            Err(e) => {
                eprintln!("error: {}", api::error_line(&e));
                failed = true;
            }
        }
    }
    if failed {
        Err(AlreadyReported.into())
    } else {
        Ok(())
    }
}
