//! Hardened containers for the aos node agent, through youki's `libcontainer` (cgroups v1 and
//! v2, no systemd, no libseccomp: `cargo build` needs no system library).
//!
//! - [`spec`]: [`SandboxSpec`], the resolved description of one container (serde, for the shim).
//! - [`security`]: Kubernetes `securityContext` rules into process settings.
//! - [`seccomp`]: profiles as data (`seccomp/runtime-default.json`) compiled with `seccompiler`.
//! - [`container`]: [`Runtime::start`] → [`Handle`] (`pid`, `kill`, `wait`, `cleanup`); call it
//!   from a single-threaded process (the per-pod shim; `aos-sandbox-run` is one).
//! - [`netns`], [`network`], [`cgroup`], [`rootfs`]: pod namespaces, bridge and veth, pod
//!   cgroups and OOM status, overlay root file systems, all through the [`host::Host`] trait.
//!
//! **Architecture invariant:** this is the only crate with `unsafe` (installing the seccomp
//! program), each block with a `// SAFETY:` comment.
#![warn(missing_docs)]

pub mod caps;
pub mod cgroup;
pub mod container;
mod executor;
pub mod host;
pub mod netns;
pub mod network;
pub mod oci;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;

pub use container::{Handle, Runtime, SandboxError};
pub use spec::{ExitStatus, SandboxSpec};
