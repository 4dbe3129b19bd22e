//! The aos node agent (the kubelet of aos).
//!
//! [`NodeAgent::run`] registers the Node (capacity, labels, taints, `nodeInfo`, addresses),
//! heartbeats a `coordination.k8s.io/v1` Lease and the Node's `Ready` condition, watches the
//! pods bound to it (`fieldSelector=spec.nodeName=<node>`) through the public API, and runs
//! one [`pod::PodWorker`] per pod. Workers start containers through a per-pod shim
//! ([`shim`]): the `aos` binary re-executed single-threaded, since forking a container's init
//! from a multi-threaded async runtime is unsafe. The shim reaps the containers, records how
//! they ended and writes their logs, and outlives the agent, so a restarted agent adopts
//! running containers instead of starting them twice.
//!
//! Map of the crate:
//! - [`node`]: Node registration, Lease and status heartbeats.
//! - [`agent`]: the watch of bound pods and the workers' lifecycle; start-up clean-up.
//! - [`pod`]: the per-pod state machine (restart policy, back-off, probes, termination).
//! - [`envs`], [`volumes`], [`image`]: a container's environment, command, volumes and image.
//! - [`probe`], [`backoff`], [`status`]: kubelet semantics as small testable parts.
//! - [`runtime`]: the runtime trait, the shim client and an in-memory fake.
//! - [`shim`]: the shim process and its protocol; [`logs`]: CRI log files and their reader.
//! - [`server`]: the agent's HTTPS server for the API server (container logs, resource
//!   statistics, metrics; kubelet-style client-certificate authentication); [`stats`]: usage
//!   from cgroups and `/proc`; [`metrics`]: the agent's Prometheus metrics.
//!
//! **Security by default:** a pod without a `seccompProfile` runs under `RuntimeDefault`;
//! privileged containers are refused unless [`NodeConfig::allow_privileged`] is set.
//!
//! **Shutdown:** on cancel the agent leaves pods running (their shims keep them) for the next
//! agent to adopt, as a kubelet restart does; with [`NodeConfig::stop_pods_on_shutdown`] it
//! stops them and removes every sandbox, so nothing of them is left on the machine.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod envs;
pub mod image;
pub mod kinds;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod probe;
pub mod quantity;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod stats;
pub mod status;
pub mod volumes;

pub use agent::{AgentError, NodeAgent, RunningPods};
pub use config::{NodeConfig, Taint};
pub use logs::{LogOptions, read_logs};
pub use shim::shim_main;
