//! How a command fails: the error types that decide the exit code and the first line on stderr.

use std::fmt;

/// The user asked for something the command line cannot express (exit status 2, as clap's
/// own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UsageError {
    /// The first line, without the `error: ` prefix.
    pub(crate) message: String,
    /// The subcommand whose `--help` to point at.
    pub(crate) command: &'static str,
}

impl UsageError {
    pub(crate) fn new(command: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            command,
        }
    }
}

/// The command already printed its errors (for example one line per failed document of an
/// `apply`): exit 1 without printing anything more.
#[derive(Debug)]
pub(crate) struct AlreadyReported;

impl fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one or more operations failed")
    }
}

impl std::error::Error for AlreadyReported {}

/// Print `err` on stderr as `error: FIRST LINE` followed by indented detail lines, and pick
/// the exit status: 2 for usage errors, 1 otherwise.
pub(crate) fn report(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<AlreadyReported>().is_some() {
        return 1;
    }
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {}", usage.message);
        eprintln!("See 'aos {} --help' for usage.", usage.command);
        return 2;
    }
    let mut chain = err.chain();
    let mut previous = String::new();
    if let Some(first) = chain.next() {
        previous = first.to_string();
        eprintln!("error: {previous}");
    }
    for cause in chain {
        let text = cause.to_string();
        // Many errors repeat their source in their own message: say it once.
        if !previous.contains(&text) {
            for line in text.lines() {
                eprintln!("  {line}");
            }
        }
        previous = text;
    }
    1
}
