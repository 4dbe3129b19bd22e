//! Seccomp: profiles as data, compiled with `seccompiler` (pure Rust, no libseccomp).
//!
//! - `RuntimeDefault` is `seccomp/runtime-default.json`, equivalent to the default profiles of
//!   Docker and containerd, each group of allowed calls with the reason it is allowed.
//! - `Localhost` reads a profile in the OCI / Docker JSON format (`defaultAction`, `syscalls[]`
//!   with `names`, `action`, `errnoRet`, `args`, `includes.caps`/`excludes.caps`).
//! - `Unconfined` installs nothing.
//!
//! `seccompiler` gives one filter a single "match" action, while profiles mix actions (allow,
//! `ENOSYS` for `clone3`). A policy is therefore compiled into a small stack of filters: a base
//! filter that returns the default action for every call no rule names, then one filter per other
//! action that returns it for its rules and allows the rest. The kernel runs every filter and
//! keeps the most restrictive verdict, the most recently installed one on a tie, so the stack
//! behaves as the single policy (see [`Policy::compile`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

#[path = "seccomp/syscalls_x86_64.rs"]
mod syscalls_x86_64;

/// The RuntimeDefault profile, as shipped.
pub const RUNTIME_DEFAULT_JSON: &str = include_str!("../seccomp/runtime-default.json");

/// A container's seccomp profile (Kubernetes `seccompProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Profile {
    /// The default profile; also what an absent `seccompProfile` means.
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
    /// A profile file in the OCI / Docker format, already resolved to an absolute path.
    Localhost(PathBuf),
}

/// Errors loading or compiling a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file could not be read.
    #[error("cannot read seccomp profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The profile is not valid JSON of the expected shape.
    #[error("invalid seccomp profile {name}: {source}")]
    Parse {
        /// Which profile.
        name: String,
        /// Why.
        source: serde_json::Error,
    },
    /// An action this compiler cannot express.
    #[error("unsupported seccomp action {0:?}")]
    UnsupportedAction(String),
    /// An argument operator this compiler cannot express.
    #[error("unsupported seccomp argument operator {0:?}")]
    UnsupportedOperator(String),
    /// The running architecture has no syscall table here.
    #[error("seccomp filters are not supported on architecture {0}")]
    UnsupportedArch(&'static str),
    /// `seccompiler` rejected the filter.
    #[error("compiling seccomp filter: {0}")]
    Compile(#[from] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("installing seccomp filter: {0}")]
    Install(std::io::Error),
    /// A program longer than the kernel accepts.
    #[error("seccomp program of {0} instructions is too long")]
    TooLong(usize),
}

/// What a filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the call through.
    Allow,
    /// Fail the call with this errno.
    Errno(u32),
    /// Kill the thread.
    KillThread,
    /// Kill the process.
    KillProcess,
    /// Send SIGSYS.
    Trap,
    /// Allow and log.
    Log,
}

impl From<Action> for SeccompAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
        }
    }
}

/// A comparison on one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArgCheck {
    /// Argument index, 0..=5.
    pub index: u8,
    /// The comparison.
    pub op: ArgOp,
    /// The value compared with.
    pub value: u64,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArgOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `arg & mask == value`
    MaskedEq(u64),
}

/// One rule: a call, and the argument checks (all must hold; none means always).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// Syscall number on the target architecture.
    pub nr: i64,
    /// The action when the rule matches.
    pub action: Action,
    /// Conditions, all of which must hold.
    pub checks: Vec<ArgCheck>,
}

/// A resolved policy for one architecture: a default action and rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What happens to a call no rule matches.
    pub default: Action,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Per syscall number, alternative lists of checks (any list may hold; within one, all).
type CallAlternatives = BTreeMap<i64, Vec<Vec<ArgCheck>>>;

/// A compiled policy: BPF programs to install in order.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledFilter {
    programs: Vec<BpfProgram>,
}

impl CompiledFilter {
    /// The programs, in installation order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// Install every program on the calling thread. The thread must have `no_new_privs` set or
    /// `CAP_SYS_ADMIN` in its effective set; the filter is inherited across `fork` and `execve`.
    ///
    /// `seccompiler::apply_filter` is not used: it always sets `no_new_privs`, which would
    /// break `allowPrivilegeEscalation: true` (setuid programs in the container).
    pub fn install(&self) -> Result<(), SeccompError> {
        for p in &self.programs {
            let mut insns: Vec<libc::sock_filter> = p
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect();
            let len = u16::try_from(insns.len()).map_err(|_| SeccompError::TooLong(insns.len()))?;
            let prog = libc::sock_fprog {
                len,
                filter: insns.as_mut_ptr(),
            };
            // SAFETY: `prog` points to `insns`, a live, correctly sized array of BPF
            // instructions for the duration of the call; the kernel copies the program and
            // keeps no reference to our memory. No other memory is touched.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc != 0 {
                return Err(SeccompError::Install(std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The RuntimeDefault data file.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultFile {
    #[allow(dead_code)]
    description: String,
    default_action: Action,
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[allow(dead_code)]
    reason: String,
    syscalls: Vec<String>,
    #[serde(default = "allow")]
    action: Action,
    #[serde(default)]
    any_of: Vec<Vec<FileCheck>>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    unless_caps: Vec<String>,
    #[serde(default)]
    min_kernel: Option<(u32, u32)>,
}

fn allow() -> Action {
    Action::Allow
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    index: u8,
    op: String,
    value: u64,
    #[serde(default)]
    mask: Option<u64>,
}

fn file_op(op: &str, mask: Option<u64>) -> Result<ArgOp, SeccompError> {
    Ok(match op {
        "eq" => ArgOp::Eq,
        "ne" => ArgOp::Ne,
        "lt" => ArgOp::Lt,
        "le" => ArgOp::Le,
        "gt" => ArgOp::Gt,
        "ge" => ArgOp::Ge,
        "masked_eq" => ArgOp::MaskedEq(mask.unwrap_or(u64::MAX)),
        other => return Err(SeccompError::UnsupportedOperator(other.to_string())),
    })
}

/// Context a profile is resolved in: the container's capabilities and the running kernel.
#[derive(Debug, Clone)]
pub struct ResolveContext {
    /// The container's bounding capability set, OCI names (`CAP_SYS_ADMIN`).
    pub capabilities: BTreeSet<String>,
    /// The running kernel's `(major, minor)`.
    pub kernel: (u32, u32),
}

impl ResolveContext {
    /// For a container with these capabilities on the running kernel.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(capabilities: I) -> Self {
        let capabilities = capabilities
            .into_iter()
            .filter_map(|c| crate::caps::canonical(c.as_ref()))
            .collect();
        Self {
            capabilities,
            kernel: running_kernel(),
        }
    }

    fn has_any(&self, caps: &[String]) -> bool {
        caps.iter()
            .any(|c| crate::caps::canonical(c).is_some_and(|c| self.capabilities.contains(&c)))
    }
}

/// The running kernel's `(major, minor)`; `(0, 0)` if `uname` cannot be parsed.
pub fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The syscall table of the architecture this crate is built for.
fn syscall_nr(name: &str) -> Result<Option<i64>, SeccompError> {
    let table = target_table()?;
    Ok(table
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| table[i].1))
}

fn target_table() -> Result<&'static [(&'static str, i64)], SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(syscalls_x86_64::SYSCALLS)
    } else {
        Err(SeccompError::UnsupportedArch(std::env::consts::ARCH))
    }
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else {
        Err(SeccompError::UnsupportedArch(std::env::consts::ARCH))
    }
}

impl Policy {
    /// The RuntimeDefault policy for a container.
    pub fn runtime_default(ctx: &ResolveContext) -> Result<Self, SeccompError> {
        Self::from_default_format("runtime-default.json", RUNTIME_DEFAULT_JSON, ctx)
    }

    fn from_default_format(
        name: &str,
        json: &str,
        ctx: &ResolveContext,
    ) -> Result<Self, SeccompError> {
        let file: DefaultFile =
            serde_json::from_str(json).map_err(|source| SeccompError::Parse {
                name: name.to_string(),
                source,
            })?;
        let mut rules = Vec::new();
        for g in &file.groups {
            if !g.caps.is_empty() && !ctx.has_any(&g.caps) {
                continue;
            }
            if ctx.has_any(&g.unless_caps) {
                continue;
            }
            if g.min_kernel.is_some_and(|min| ctx.kernel < min) {
                continue;
            }
            let alternatives: Vec<Vec<ArgCheck>> = g
                .any_of
                .iter()
                .map(|all| {
                    all.iter()
                        .map(|c| {
                            Ok(ArgCheck {
                                index: c.index,
                                op: file_op(&c.op, c.mask)?,
                                value: c.value,
                            })
                        })
                        .collect::<Result<Vec<_>, SeccompError>>()
                })
                .collect::<Result<_, _>>()?;
            for sc in &g.syscalls {
                let Some(nr) = syscall_nr(sc)? else {
                    tracing::trace!(syscall = %sc, "not a syscall on this architecture, skipped");
                    continue;
                };
                if alternatives.is_empty() {
                    rules.push(Rule {
                        nr,
                        action: g.action,
                        checks: vec![],
                    });
                }
                for checks in &alternatives {
                    rules.push(Rule {
                        nr,
                        action: g.action,
                        checks: checks.clone(),
                    });
                }
            }
        }
        Ok(Self {
            default: file.default_action,
            rules,
        })
    }

    /// A policy from a file in the OCI / Docker seccomp format.
    pub fn from_oci_file(path: &Path, ctx: &ResolveContext) -> Result<Self, SeccompError> {
        let json = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_oci_json(&path.display().to_string(), &json, ctx)
    }

    /// A policy from OCI / Docker seccomp JSON.
    pub fn from_oci_json(
        name: &str,
        json: &str,
        ctx: &ResolveContext,
    ) -> Result<Self, SeccompError> {
        let file: OciProfile =
            serde_json::from_str(json).map_err(|source| SeccompError::Parse {
                name: name.to_string(),
                source,
            })?;
        let default_errno = file.default_errno_ret.unwrap_or(libc::EPERM as u32);
        let default = oci_action(&file.default_action, Some(default_errno))?;
        let mut rules = Vec::new();
        for s in &file.syscalls {
            if let Some(inc) = &s.includes
                && !inc.caps.is_empty()
                && !ctx.has_any(&inc.caps)
            {
                continue;
            }
            if let Some(exc) = &s.excludes
                && ctx.has_any(&exc.caps)
            {
                continue;
            }
            let action = oci_action(&s.action, Some(s.errno_ret.unwrap_or(libc::EPERM as u32)))?;
            let checks = s
                .args
                .iter()
                .map(|a| {
                    let op = match a.op.as_str() {
                        "SCMP_CMP_EQ" => ArgOp::Eq,
                        "SCMP_CMP_NE" => ArgOp::Ne,
                        "SCMP_CMP_LT" => ArgOp::Lt,
                        "SCMP_CMP_LE" => ArgOp::Le,
                        "SCMP_CMP_GT" => ArgOp::Gt,
                        "SCMP_CMP_GE" => ArgOp::Ge,
                        // libseccomp: `value` is the mask, `valueTwo` the datum.
                        "SCMP_CMP_MASKED_EQ" => {
                            return Ok(ArgCheck {
                                index: a.index,
                                op: ArgOp::MaskedEq(a.value),
                                value: a.value_two,
                            });
                        }
                        other => return Err(SeccompError::UnsupportedOperator(other.to_string())),
                    };
                    Ok(ArgCheck {
                        index: a.index,
                        op,
                        value: a.value,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for n in s.names.iter().chain(s.name.iter()) {
                match syscall_nr(n)? {
                    Some(nr) => rules.push(Rule {
                        nr,
                        action,
                        checks: checks.clone(),
                    }),
                    None => {
                        tracing::trace!(syscall = %n, "not a syscall on this architecture, skipped")
                    }
                }
            }
        }
        Ok(Self { default, rules })
    }

    /// Resolve a profile for a container; `None` for `Unconfined`.
    pub fn for_profile(
        profile: &Profile,
        ctx: &ResolveContext,
    ) -> Result<Option<Self>, SeccompError> {
        match profile {
            Profile::Unconfined => Ok(None),
            Profile::RuntimeDefault => Self::runtime_default(ctx).map(Some),
            Profile::Localhost(path) => Self::from_oci_file(path, ctx).map(Some),
        }
    }

    /// What this policy decides for a call with these arguments: the reference semantics the
    /// compiled filter stack must reproduce (used by tests).
    pub fn evaluate(&self, nr: i64, args: [u64; 6]) -> Action {
        let mut verdict: Option<Action> = None;
        for r in self.rules.iter().filter(|r| r.nr == nr) {
            if r.checks.iter().all(|c| check_holds(c, args)) {
                verdict = Some(match verdict {
                    None => r.action,
                    Some(v) => more_restrictive(v, r.action),
                });
            }
        }
        verdict.unwrap_or(self.default)
    }

    /// Compile to a stack of BPF programs (see the module docs).
    pub fn compile(&self) -> Result<CompiledFilter, SeccompError> {
        let arch = target_arch()?;
        // Rules grouped by action, then by syscall.
        let mut by_action: BTreeMap<Action, CallAlternatives> = BTreeMap::new();
        for r in &self.rules {
            by_action
                .entry(r.action)
                .or_default()
                .entry(r.nr)
                .or_default()
                .push(r.checks.clone());
        }
        let mut programs = Vec::new();
        // Base: every call a rule names escapes the default action here.
        if self.default != Action::Allow {
            let mut named: CallAlternatives = BTreeMap::new();
            for (action, calls) in &by_action {
                if *action == self.default {
                    continue;
                }
                for (nr, alts) in calls {
                    named.entry(*nr).or_default().extend(alts.iter().cloned());
                }
            }
            programs.push(build(named, self.default, Action::Allow, arch)?);
        }
        // Then one filter per non-allow action that differs from the default; the most
        // restrictive last so that it wins ties between errno values.
        let mut others: Vec<(&Action, &CallAlternatives)> = by_action
            .iter()
            .filter(|(a, _)| **a != Action::Allow && **a != self.default)
            .collect();
        others.sort_by_key(|(a, _)| std::cmp::Reverse(restrictiveness(**a)));
        for (action, calls) in others {
            programs.push(build(calls.clone(), Action::Allow, *action, arch)?);
        }
        Ok(CompiledFilter { programs })
    }
}

fn build(
    calls: CallAlternatives,
    mismatch: Action,
    on_match: Action,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, alts) in calls {
        // An unconditional alternative makes the call match whatever its arguments.
        if alts.iter().any(Vec::is_empty) {
            rules.insert(nr, vec![]);
            continue;
        }
        let mut compiled = Vec::with_capacity(alts.len());
        for checks in alts {
            let conds = checks
                .iter()
                .map(|c| {
                    let (op, fits32) = match c.op {
                        ArgOp::Eq => (SeccompCmpOp::Eq, c.value <= u32::MAX as u64),
                        ArgOp::Ne => (SeccompCmpOp::Ne, c.value <= u32::MAX as u64),
                        ArgOp::Lt => (SeccompCmpOp::Lt, false),
                        ArgOp::Le => (SeccompCmpOp::Le, false),
                        ArgOp::Gt => (SeccompCmpOp::Gt, false),
                        ArgOp::Ge => (SeccompCmpOp::Ge, false),
                        ArgOp::MaskedEq(m) => (SeccompCmpOp::MaskedEq(m), m <= u32::MAX as u64),
                    };
                    // Compare the low 32 bits when the operand fits: `int` arguments may carry
                    // garbage in the upper half of the register.
                    let len = if fits32 {
                        SeccompCmpArgLen::Dword
                    } else {
                        SeccompCmpArgLen::Qword
                    };
                    SeccompCondition::new(c.index, len, op, c.value)
                })
                .collect::<Result<Vec<_>, _>>()?;
            compiled.push(SeccompRule::new(conds)?);
        }
        rules.insert(nr, compiled);
    }
    let filter = SeccompFilter::new(rules, mismatch.into(), on_match.into(), arch)?;
    Ok(filter.try_into()?)
}

fn check_holds(c: &ArgCheck, args: [u64; 6]) -> bool {
    let Some(&raw) = args.get(c.index as usize) else {
        return false;
    };
    let fits32 = match c.op {
        ArgOp::Eq | ArgOp::Ne => c.value <= u32::MAX as u64,
        ArgOp::MaskedEq(m) => m <= u32::MAX as u64,
        _ => false,
    };
    let a = if fits32 { raw & 0xffff_ffff } else { raw };
    match c.op {
        ArgOp::Eq => a == c.value,
        ArgOp::Ne => a != c.value,
        ArgOp::Lt => a < c.value,
        ArgOp::Le => a <= c.value,
        ArgOp::Gt => a > c.value,
        ArgOp::Ge => a >= c.value,
        ArgOp::MaskedEq(m) => a & m == c.value,
    }
}

/// Kernel precedence of actions: higher is more restrictive.
fn restrictiveness(a: Action) -> u8 {
    match a {
        Action::KillProcess => 6,
        Action::KillThread => 5,
        Action::Trap => 4,
        Action::Errno(_) => 3,
        Action::Log => 1,
        Action::Allow => 0,
    }
}

fn more_restrictive(a: Action, b: Action) -> Action {
    if restrictiveness(b) > restrictiveness(a) {
        b
    } else {
        a
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<OciSyscall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciSyscall {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<OciArg>,
    #[serde(default)]
    includes: Option<OciFilter>,
    #[serde(default)]
    excludes: Option<OciFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Deserialize)]
struct OciFilter {
    #[serde(default)]
    caps: Vec<String>,
}

fn oci_action(name: &str, errno: Option<u32>) -> Result<Action, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        other => return Err(SeccompError::UnsupportedAction(other.to_string())),
    })
}

#[cfg(test)]
mod tests;
