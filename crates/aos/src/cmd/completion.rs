//! `aos completion bash|zsh|fish|elvish|powershell`: the shell completion script on stdout.

use clap::Args;
use clap_complete::Shell;

/// Arguments of `aos completion`.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell to complete for.
    shell: Shell,
}

pub(crate) fn run(args: &CompletionArgs) -> anyhow::Result<()> {
    let mut command = crate::cmd::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "aos", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(())
}
