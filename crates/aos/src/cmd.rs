//! The command tree and its dispatch. One file per command under `cmd/`.
//!
//! A new verb is a file here plus one `Command` variant and one dispatch line.

pub(crate) mod agent;
pub(crate) mod apply;
pub(crate) mod completion;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod describe;
pub(crate) mod gateway;
pub(crate) mod get;
pub(crate) mod image;
pub(crate) mod logs;
pub(crate) mod scale;
pub(crate) mod top;
pub(crate) mod up;
pub(crate) mod version;
pub(crate) mod wait;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use aos_client::Client;
use aos_types::ResourceType;
use clap::{Args, Parser, Subcommand};

use crate::error::{UsageError, report};

/// aos: a Kubernetes-shaped deployment platform in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "aos",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Kubeconfig of the server to talk to (default: the data dir's kubeconfig.yaml).
    #[arg(long, global = true, env = "AOS_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform in the foreground: store, API server, controllers.
    Up(up::UpArgs),
    /// Run the control plane only (store, API server, controllers).
    Server(up::UpArgs),
    /// Run the node agent alone, against the API server in the kubeconfig.
    Agent(agent::AgentArgs),
    /// Run the L7 gateway alone, against the API server in the kubeconfig.
    Gateway(gateway::GatewayArgs),
    /// Create or update objects from manifests (client-side apply, as kubectl apply).
    Apply(apply::ApplyArgs),
    /// Create objects from manifests, or a namespace.
    Create(create::CreateArgs),
    /// Show objects as a table, JSON, YAML or names.
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, selector or manifest.
    Delete(delete::DeleteArgs),
    /// Print (or follow) the log of a pod's container.
    Logs(logs::LogsArgs),
    /// Show CPU and memory use of pods or nodes (from metrics.k8s.io).
    Top(top::TopArgs),
    /// Set the replica count of a Deployment or ReplicaSet.
    Scale(scale::ScaleArgs),
    /// Wait for a condition on an object, or for its deletion.
    Wait(wait::WaitArgs),
    /// Print the client and server versions.
    Version(version::VersionArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
    /// Build, import, export and manage OCI images.
    Image(image::ImageArgs),
}

/// `-n NAMESPACE` and `-A`, shared by the commands that address namespaced objects.
#[derive(Debug, Clone, Args)]
pub(crate) struct NamespaceArgs {
    /// Namespace (default: "default").
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
}

impl NamespaceArgs {
    /// The namespace for namespaced kinds.
    pub(crate) fn or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// What every client command needs: where the server is.
pub(crate) struct Ctx {
    kubeconfig: Option<PathBuf>,
}

impl Ctx {
    /// The kubeconfig in use.
    pub(crate) fn kubeconfig_path(&self) -> anyhow::Result<PathBuf> {
        crate::paths::kubeconfig(self.kubeconfig.as_deref())
    }

    /// A client for the server the kubeconfig names.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let path = self.kubeconfig_path()?;
        client_from(&path)
    }
}

/// A client from a kubeconfig file, with an error that says how to get one.
pub(crate) fn client_from(path: &Path) -> anyhow::Result<Client> {
    if !path.exists() {
        anyhow::bail!(
            "kubeconfig {} not found: start the platform with `aos up`, or pass --kubeconfig or set AOS_KUBECONFIG",
            path.display()
        );
    }
    Client::from_kubeconfig(path)
        .with_context(|| format!("cannot load kubeconfig {}", path.display()))
}

/// Resolve a resource name typed on the command line (`deploy`, `pods`, `vs`, ...).
pub(crate) fn resource_type(
    command: &'static str,
    name: &str,
) -> anyhow::Result<&'static ResourceType> {
    if name.is_empty() {
        return Err(UsageError::new(command, "a resource type is required").into());
    }
    aos_types::resource::by_cli_name(name)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{name}\""))
}

/// Split `KIND/NAME` forms and `KIND NAME...` forms into (type, names). Accepts a mix of
/// `TYPE/NAME` arguments, or one `TYPE` followed by names.
pub(crate) fn targets(
    command: &'static str,
    args: &[String],
) -> anyhow::Result<Vec<(&'static ResourceType, String)>> {
    let Some(first) = args.first() else {
        return Err(
            UsageError::new(command, "you must specify the type of resource and a name").into(),
        );
    };
    if first.contains('/') {
        let mut out = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(UsageError::new(
                    command,
                    format!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'aos {command} resource/<resource_name>' instead of 'aos {command} resource resource/<resource_name>')"),
                )
                .into());
            };
            if name.is_empty() {
                return Err(UsageError::new(command, format!("arguments in resource/name form must have a single resource and name: {arg}")).into());
            }
            out.push((resource_type(command, kind)?, name.to_string()));
        }
        return Ok(out);
    }
    let rt = resource_type(command, first)?;
    if args.len() < 2 {
        return Err(UsageError::new(
            command,
            format!(
                "you must specify the name of the {} to {command}",
                rt.singular
            ),
        )
        .into());
    }
    Ok(args[1..].iter().map(|name| (rt, name.clone())).collect())
}

/// Parse and run. Clap exits with status 2 by itself on usage errors.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx {
        kubeconfig: cli.kubeconfig,
    };
    let result = match cli.command {
        Command::Up(args) => up::run(args, up::Mode::All),
        Command::Server(args) => up::run(args, up::Mode::ControlPlane),
        Command::Gateway(args) => gateway::run(args, &ctx),
        Command::Agent(args) => agent::run(args, &ctx),
        Command::Completion(args) => completion::run(&args),
        Command::Image(args) => image::run(args),
        Command::Apply(args) => block_on(apply::run(args, &ctx)),
        Command::Create(args) => block_on(create::run(args, &ctx)),
        Command::Get(args) => block_on(get::run(args, &ctx)),
        Command::Describe(args) => block_on(describe::run(args, &ctx)),
        Command::Delete(args) => block_on(delete::run(args, &ctx)),
        Command::Logs(args) => block_on(logs::run(args, &ctx)),
        Command::Top(args) => block_on(top::run(args, &ctx)),
        Command::Scale(args) => block_on(scale::run(args, &ctx)),
        Command::Wait(args) => block_on(wait::run(args, &ctx)),
        Command::Version(args) => block_on(version::run(args, &ctx)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(report(&e)),
    }
}

/// Run a client command on a single-threaded runtime: a CLI call makes a few requests in
/// sequence, and starts faster without a thread pool.
fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command)
}

/// The clap command, for completion scripts.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
