//! `aos get KIND[/NAME] [NAME...] [-n NS | -A] [-l SELECTOR] [-o wide|json|yaml|name] [-w]`.
//!
//! Tables come from the server (`Table` output, as kubectl asks for them), so `aos get` and
//! `kubectl get` show the same columns.

use std::collections::HashMap;

use aos_client::{Client, ListParams};
use aos_types::ResourceType;
use clap::Args;
use futures::StreamExt as _;
use serde_json::Value;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs, resource_type};
use crate::error::{AlreadyReported, UsageError};
use crate::output::{
    Format, TableOptions, TextTable, list_of, object_ref, render_row, table_from_server, to_json,
    to_yaml, with_type,
};

/// Arguments of `aos get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// `TYPE[,TYPE...] [NAME...]`, `TYPE/NAME...`, or `all`.
    #[arg(required = true, value_name = "RESOURCE")]
    resources: Vec<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running`.
    #[arg(long, value_name = "SELECTOR")]
    field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    watch: bool,
}

/// One resource type with the names asked for (empty: all of them).
struct Target {
    rt: &'static ResourceType,
    names: Vec<String>,
}

fn parse_targets(args: &[String]) -> anyhow::Result<(Vec<Target>, bool)> {
    let first = &args[0];
    if first.contains('/') {
        let mut targets: Vec<Target> = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
            else {
                return Err(UsageError::new("get", format!("arguments in resource/name form must have a single resource and name: {arg}")).into());
            };
            let rt = resource_type("get", kind)?;
            match targets.iter_mut().find(|t| std::ptr::eq(t.rt, rt)) {
                Some(t) => t.names.push(name.to_string()),
                None => targets.push(Target {
                    rt,
                    names: vec![name.to_string()],
                }),
            }
        }
        let multiple = targets.len() > 1;
        return Ok((targets, multiple));
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut expanded_all = false;
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        if kind == "all" {
            expanded_all = true;
            for rt in aos_types::resource::all()
                .iter()
                .filter(|rt| rt.categories.contains(&"all"))
            {
                if !targets.iter().any(|t| std::ptr::eq(t.rt, rt)) {
                    targets.push(Target {
                        rt,
                        names: Vec::new(),
                    });
                }
            }
            continue;
        }
        let rt = resource_type("get", kind)?;
        if !targets.iter().any(|t| std::ptr::eq(t.rt, rt)) {
            targets.push(Target {
                rt,
                names: Vec::new(),
            });
        }
    }
    if targets.is_empty() {
        return Err(UsageError::new("get", "a resource type is required").into());
    }
    let names: Vec<String> = args[1..].to_vec();
    if !names.is_empty() && (targets.len() > 1 || expanded_all) {
        return Err(UsageError::new(
            "get",
            "names cannot be given with several resource types; use TYPE/NAME",
        )
        .into());
    }
    for t in &mut targets {
        t.names.clone_from(&names);
    }
    let multiple = targets.len() > 1 || expanded_all;
    Ok((targets, multiple))
}

pub(crate) async fn run(args: GetArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let (targets, multiple) = parse_targets(&args.resources)?;
    if args.watch && targets.len() != 1 {
        return Err(
            UsageError::new("get", "watch is only supported on a single resource type").into(),
        );
    }
    let client = ctx.client()?;
    let params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..Default::default()
    };
    let ns_for = |rt: &ResourceType| -> Option<String> {
        (rt.namespaced && !args.all_namespaces).then(|| args.namespace.or_default().to_string())
    };
    let mut failed = false;
    match args.output {
        None | Some(Format::Wide) => {
            let wide = args.output == Some(Format::Wide);
            let mut printed_any = false;
            let mut last_table = None;
            for target in &targets {
                let ns = ns_for(target.rt);
                let opts = TableOptions {
                    wide,
                    with_namespace: args.all_namespaces && target.rt.namespaced,
                    kind_prefix: multiple.then_some(target.rt),
                };
                let mut text = TextTable::default();
                let mut resource_version = None;
                if target.names.is_empty() {
                    match client
                        .get_table(target.rt, ns.as_deref(), None, &params, wide)
                        .await
                    {
                        Ok(table) => {
                            resource_version = table
                                .pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            text = table_from_server(&table, opts);
                        }
                        Err(e) => {
                            eprintln!("error: {}", api::error_line(&e));
                            failed = true;
                            continue;
                        }
                    }
                } else {
                    for name in &target.names {
                        match client
                            .get_table(target.rt, ns.as_deref(), Some(name), &params, wide)
                            .await
                        {
                            Ok(table) => {
                                let part = table_from_server(&table, opts);
                                text.headers = part.headers;
                                text.rows.extend(part.rows);
                            }
                            Err(e) => {
                                eprintln!("error: {}", api::error_line(&e));
                                failed = true;
                            }
                        }
                    }
                }
                if text.rows.is_empty() {
                    last_table = Some((text, opts, resource_version));
                    continue;
                }
                if printed_any {
                    outln!();
                }
                out!("{}", text.render(true));
                printed_any = true;
                last_table = Some((text, opts, resource_version));
            }
            if !printed_any && !failed && targets.iter().all(|t| t.names.is_empty()) {
                no_resources_found(&targets, &args, &ns_for);
            }
            if args.watch {
                let (table, opts, resource_version) = last_table
                    .unwrap_or_else(|| (TextTable::default(), TableOptions::default(), None));
                let target = &targets[0];
                watch_table(
                    &client,
                    target.rt,
                    ns_for(target.rt),
                    &params,
                    wide,
                    table,
                    opts,
                    resource_version,
                    !printed_any,
                )
                .await?;
            }
        }
        Some(format) => {
            let mut objects = Vec::new();
            let mut resource_version = None;
            for target in &targets {
                let ns = ns_for(target.rt);
                if target.names.is_empty() {
                    match client.list(target.rt, ns.as_deref(), &params).await {
                        Ok(list) => {
                            resource_version = Some(api::list_resource_version(&list));
                            objects.extend(
                                api::list_items(list)
                                    .into_iter()
                                    .map(|o| (target.rt, with_type(target.rt, o))),
                            );
                        }
                        Err(e) => {
                            eprintln!("error: {}", api::error_line(&e));
                            failed = true;
                        }
                    }
                } else {
                    for name in &target.names {
                        match client.get(target.rt, ns.as_deref(), name).await {
                            Ok(obj) => objects.push((target.rt, with_type(target.rt, obj))),
                            Err(e) => {
                                eprintln!("error: {}", api::error_line(&e));
                                failed = true;
                            }
                        }
                    }
                }
            }
            let single = !multiple && targets.len() == 1 && targets[0].names.len() == 1;
            if objects.is_empty()
                && !failed
                && targets.iter().all(|t| t.names.is_empty())
                && format == Format::Name
            {
                no_resources_found(&targets, &args, &ns_for);
            }
            match format {
                Format::Name => {
                    for (rt, obj) in &objects {
                        outln!("{}", object_ref(rt, api::name_of(obj)));
                    }
                }
                Format::Json | Format::Yaml => {
                    if single && objects.len() == 1 {
                        print_object(format, &objects[0].1)?;
                    } else if !(single && objects.is_empty()) {
                        print_object(
                            format,
                            &list_of(objects.into_iter().map(|(_, o)| o).collect()),
                        )?;
                    }
                }
                Format::Wide => unreachable!("handled with the tables"),
            }
            if args.watch {
                let target = &targets[0];
                watch_objects(
                    &client,
                    target.rt,
                    ns_for(target.rt),
                    &params,
                    format,
                    resource_version,
                )
                .await?;
            }
        }
    }
    if failed {
        Err(AlreadyReported.into())
    } else {
        Ok(())
    }
}

fn no_resources_found(
    targets: &[Target],
    args: &GetArgs,
    ns_for: &dyn Fn(&ResourceType) -> Option<String>,
) {
    let namespaced = targets.iter().any(|t| t.rt.namespaced);
    match (namespaced, ns_for(targets[0].rt)) {
        (true, Some(ns)) if !args.all_namespaces => {
            eprintln!("No resources found in {ns} namespace.")
        }
        _ => eprintln!("No resources found"),
    }
}

fn print_object(format: Format, value: &Value) -> anyhow::Result<()> {
    match format {
        Format::Yaml => out!("{}", to_yaml(value)?),
        _ => out!("{}", to_json(value)?),
    }
    Ok(())
}

/// `get -w` for tables: print a row for every change, aligned with the first table.
#[allow(clippy::too_many_arguments)]
async fn watch_table(
    client: &Client,
    rt: &'static ResourceType,
    ns: Option<String>,
    params: &ListParams,
    wide: bool,
    table: TextTable,
    opts: TableOptions,
    resource_version: Option<String>,
    need_header: bool,
) -> anyhow::Result<()> {
    let mut widths = table.widths(true);
    let mut header_printed = !need_header;
    let name_index = usize::from(opts.with_namespace);
    let mut last_rows: HashMap<(String, String), Vec<String>> = table
        .rows
        .iter()
        .map(|row| {
            let ns = if opts.with_namespace {
                row[0].clone()
            } else {
                String::new()
            };
            (
                (ns, row.get(name_index).cloned().unwrap_or_default()),
                row.clone(),
            )
        })
        .collect();
    let mut resource_version = match resource_version {
        Some(rv) => rv,
        None => api::list_resource_version(
            &client
                .list(rt, ns.as_deref(), params)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?,
        ),
    };
    loop {
        let mut stream = client
            .watch(rt, ns.as_deref(), params, &resource_version)
            .await
            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) if api::is_gone(&e) => break,
                Err(e) => return Err(anyhow::anyhow!(api::error_line(&e))),
            };
            let (kind, object) = api::watch_event_parts(&event);
            if let Some(rv) = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                resource_version = rv.to_string();
            }
            if kind == "BOOKMARK" {
                continue;
            }
            if kind == "ERROR" {
                if object.get("code").and_then(Value::as_i64) == Some(410) {
                    resource_version = api::list_resource_version(
                        &client
                            .list(rt, ns.as_deref(), params)
                            .await
                            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?,
                    );
                    break;
                }
                anyhow::bail!(
                    "watch failed: {}",
                    object
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                );
            }
            let name = api::name_of(object).to_string();
            let obj_ns = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let key = (
                if opts.with_namespace {
                    obj_ns.clone()
                } else {
                    String::new()
                },
                name.clone(),
            );
            let row = if kind == "DELETED" {
                last_rows.remove(&key)
            } else {
                let ns = rt.namespaced.then_some(obj_ns.as_str());
                match client
                    .get_table(rt, ns, Some(&name), &ListParams::default(), wide)
                    .await
                {
                    Ok(t) => {
                        let part = table_from_server(&t, opts);
                        if !header_printed {
                            widths = part.widths(true);
                            out!("{}", render_row(&widths, &part.headers));
                            header_printed = true;
                        }
                        part.rows.into_iter().next()
                    }
                    Err(e) if api::is_not_found(&e) => None,
                    Err(e) => return Err(anyhow::anyhow!(api::error_line(&e))),
                }
            };
            if let Some(row) = row {
                out!("{}", render_row(&widths, &row));
                if kind != "DELETED" {
                    last_rows.insert(key, row);
                }
            }
        }
    }
}

/// `get -w -o json|yaml|name`: print every changed object.
async fn watch_objects(
    client: &Client,
    rt: &'static ResourceType,
    ns: Option<String>,
    params: &ListParams,
    format: Format,
    resource_version: Option<String>,
) -> anyhow::Result<()> {
    let mut resource_version = match resource_version {
        Some(rv) => rv,
        None => api::list_resource_version(
            &client
                .list(rt, ns.as_deref(), params)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?,
        ),
    };
    loop {
        let mut stream = client
            .watch(rt, ns.as_deref(), params, &resource_version)
            .await
            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) if api::is_gone(&e) => break,
                Err(e) => return Err(anyhow::anyhow!(api::error_line(&e))),
            };
            let (kind, object) = api::watch_event_parts(&event);
            if let Some(rv) = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                resource_version = rv.to_string();
            }
            match kind {
                "BOOKMARK" => continue,
                "ERROR" => {
                    resource_version = api::list_resource_version(
                        &client
                            .list(rt, ns.as_deref(), params)
                            .await
                            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?,
                    );
                    break;
                }
                _ => {}
            }
            let object = with_type(rt, object.clone());
            match format {
                Format::Name => outln!("{}", object_ref(rt, api::name_of(&object))),
                Format::Yaml => out!("---\n{}", to_yaml(&object)?),
                _ => out!("{}", to_json(&object)?),
            }
        }
    }
}
