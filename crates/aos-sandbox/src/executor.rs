//! The last step in the container's init, just before `execve`: install the seccomp filter.
//!
//! libcontainer applies seccomp only through libseccomp (a C library); with that feature off it
//! installs none. Its [`Executor`] hook runs in the container's init after the namespaces, root
//! file system, user ids and capabilities are set, right before the workload is executed, so the
//! filter compiled in the parent (pure Rust, `seccompiler`) is installed there:
//!
//! - with `no_new_privs` set, the filter needs no privilege;
//! - without it, installing a filter needs `CAP_SYS_ADMIN`: the init keeps it in its effective
//!   and permitted sets only (never the bounding set, see [`crate::oci::CapabilityPlan`]),
//!   installs the filter and drops it with `capset` before `execve`. After `execve` a process
//!   cannot regain a capability outside its bounding set.
//!
//! It also gives the workload default signal dispositions and an empty signal mask: an ignored
//! signal stays ignored across `execve`, and the process that starts containers (the shim, a
//! Rust program) ignores `SIGPIPE`, which would make `producer | head` pipelines in a
//! container spin instead of ending.

use caps::{CapSet, Capability};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};

use crate::seccomp::CompiledFilter;

/// Installs seccomp, drops temporary capabilities, then executes the process as libcontainer's
/// default executor does (`execvp` with the spec's environment).
#[derive(Clone)]
pub(crate) struct SandboxExecutor {
    filter: Option<CompiledFilter>,
    drop_after_filter: Vec<Capability>,
}

impl SandboxExecutor {
    pub(crate) fn new(filter: Option<CompiledFilter>, drop_after_filter: Vec<Capability>) -> Self {
        Self {
            filter,
            drop_after_filter,
        }
    }
}

/// Every signal back to its default action, none blocked.
fn reset_signals() -> Result<(), ExecutorError> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installs no handler function, only the default action; nothing else runs in
        // this single-threaded process between here and `execve`.
        unsafe { signal(sig, SigHandler::SigDfl) }
            .map_err(|e| ExecutorError::Other(format!("resetting {sig}: {e}")))?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ExecutorError::Other(format!("clearing the signal mask: {e}")))
}

impl Executor for SandboxExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals()?;
        if let Some(filter) = &self.filter {
            filter
                .install()
                .map_err(|e| ExecutorError::Other(e.to_string()))?;
        }
        for cap in &self.drop_after_filter {
            for set in [CapSet::Effective, CapSet::Permitted] {
                caps::drop(None, set, *cap)
                    .map_err(|e| ExecutorError::Other(format!("dropping {cap}: {e}")))?;
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}
