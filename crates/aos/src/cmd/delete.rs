//! `aos delete KIND NAME... | KIND/NAME... | -f FILE | KIND -l SELECTOR | KIND --all`.

use std::time::Duration;

use aos_client::{Client, DeleteParams, ListParams};
use aos_types::ResourceType;
use clap::{Args, ValueEnum};
use tokio::time::Instant;

use crate::api;
use crate::cmd::wait::{Wanted, parse_duration, timeout_error, wait_for};
use crate::cmd::{Ctx, NamespaceArgs, resource_type, targets};
use crate::error::{AlreadyReported, UsageError};
use crate::manifests::{parse_items, read_sources};
use crate::output::resource_ref;

/// Arguments of `aos delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// `TYPE NAME...`, `TYPE/NAME...`, or `TYPE` with `-l` or `--all`.
    #[arg(value_name = "RESOURCE")]
    resources: Vec<String>,
    /// Delete the objects these manifests describe.
    #[arg(short = 'f', long = "filename", value_name = "PATH", conflicts_with_all = ["all", "selector"])]
    files: Vec<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Delete the objects matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    all: bool,
    /// What happens to dependents: background (default), foreground or orphan.
    #[arg(long, value_enum, default_value = "background")]
    cascade: Cascade,
    /// Seconds given to the object to terminate (-1: the object's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// Delete at once (grace period 1 s).
    #[arg(long)]
    now: bool,
    /// Wait until the objects are gone (finalizers done) before returning.
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    wait: bool,
    /// How long `--wait` waits (0: forever).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    timeout: Duration,
    /// Succeed when an object does not exist.
    #[arg(long)]
    ignore_not_found: bool,
}

/// `--cascade`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Cascade {
    /// Delete now; the garbage collector deletes dependents.
    Background,
    /// Delete dependents first.
    Foreground,
    /// Keep dependents, removing their owner reference.
    Orphan,
}

impl Cascade {
    fn policy(self) -> &'static str {
        match self {
            Cascade::Background => "Background",
            Cascade::Foreground => "Foreground",
            Cascade::Orphan => "Orphan",
        }
    }
}

pub(crate) async fn run(args: DeleteArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut failed = false;
    let mut work: Vec<(&'static ResourceType, Option<String>, String)> = Vec::new();
    let ns_for = |rt: &ResourceType| {
        rt.namespaced
            .then(|| args.namespace.or_default().to_string())
    };
    if !args.files.is_empty() {
        if !args.resources.is_empty() {
            return Err(UsageError::new("delete", "names cannot be given together with -f").into());
        }
        let sources = read_sources(&args.files)?;
        let (items, errors) = parse_items(&sources, args.namespace.namespace.as_deref());
        for e in &errors {
            eprintln!("error: {e}");
            failed = true;
        }
        work.extend(
            items
                .into_iter()
                .map(|item| (item.rt, item.namespace, item.name)),
        );
    }
    let client = ctx.client()?;
    if args.files.is_empty() {
        if args.all || args.selector.is_some() {
            let [kinds] = args.resources.as_slice() else {
                return Err(UsageError::new("delete", "with --all or -l, give only the resource type(s), e.g. `aos delete pods --all`").into());
            };
            for kind in kinds.split(',') {
                let rt = resource_type("delete", kind)?;
                let ns = ns_for(rt);
                let params = ListParams {
                    label_selector: args.selector.clone(),
                    ..Default::default()
                };
                let list = client
                    .list(rt, ns.as_deref(), &params)
                    .await
                    .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
                for obj in api::list_items(list) {
                    work.push((rt, ns.clone(), api::name_of(&obj).to_string()));
                }
            }
            if work.is_empty() {
                eprintln!("No resources found");
            }
        } else {
            if args.resources.is_empty() {
                return Err(UsageError::new(
                    "delete",
                    "you must provide one or more resources by argument or filename",
                )
                .into());
            }
            for (rt, name) in targets("delete", &args.resources)? {
                work.push((rt, ns_for(rt), name));
            }
        }
    }
    let grace = if args.now {
        Some(1)
    } else {
        (args.grace_period >= 0).then_some(args.grace_period)
    };
    let params = DeleteParams {
        propagation_policy: Some(args.cascade.policy().to_string()),
        grace_period_seconds: grace,
        ..Default::default()
    };
    let mut deleted = Vec::new();
    for (rt, ns, name) in work {
        match client.delete(rt, ns.as_deref(), &name, &params).await {
            Ok(_) => {
                outln!("{} \"{name}\" deleted", crate::output::kind_ref(rt));
                deleted.push((rt, ns, name));
            }
            Err(e) if api::is_not_found(&e) && args.ignore_not_found => {}
            Err(e) if api::is_not_found(&e) => {
                eprintln!("error: {} \"{name}\" not found", resource_ref(rt));
                failed = true;
            }
            Err(e) => {
                eprintln!("error: {}", api::error_line(&e));
                failed = true;
            }
        }
    }
    if args.wait {
        let deadline = (!args.timeout.is_zero()).then(|| Instant::now() + args.timeout);
        for (rt, ns, name) in deleted {
            if let Err(e) = wait_gone(&client, rt, ns.as_deref(), &name, deadline).await {
                eprintln!("error: {e}");
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

async fn wait_gone(
    client: &Client,
    rt: &'static ResourceType,
    ns: Option<&str>,
    name: &str,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let wait = wait_for(client, rt, ns, name, &Wanted::Delete);
    match deadline {
        None => wait.await,
        Some(deadline) => tokio::time::timeout_at(deadline, wait)
            .await
            .map_err(|_| timeout_error(rt, name))?,
    }
}
