//! agent-registry: the Agent OS sample service.
//!
//! A registry of agents with heartbeats, kept in SQLite, served as a JSON API under
//! [`api::API_PREFIX`], with `/health`, `/ready` and `/metrics` at the root. It is the workload
//! aos demonstrates itself with: it runs as uid 1001 on a read-only root file system, writing
//! only its database (by default under `/tmp`), and drains in-flight requests on SIGTERM.
//!
//! # API
//!
//! | Method and path | Answer |
//! |---|---|
//! | `POST /api/v1/agent-registry/agents` | 201 and the agent; body `{name, kind?, endpoint?, capabilities?, metadata?, ttl_seconds?}` |
//! | `GET /api/v1/agent-registry/agents` | `{agents, total, limit, offset}`; `?status=active\|expired`, `?capability=`, `?name=`, `?limit=` (1–1000, 100), `?offset=` |
//! | `GET /api/v1/agent-registry/agents/{id}` | the agent |
//! | `PUT /api/v1/agent-registry/agents/{id}` | the agent, its client-set fields replaced (same body as `POST`) |
//! | `DELETE /api/v1/agent-registry/agents/{id}` | 204 |
//! | `POST /api/v1/agent-registry/agents/{id}/heartbeat` | the agent, `last_heartbeat` now |
//! | `GET /api/v1/agent-registry/instance` | `{hostname, version, started_at, pid}` |
//! | `GET /health` | 200 while the process serves |
//! | `GET /ready` | 200 if the database answers a query, else 503 `{status, reason}` |
//! | `GET /metrics` | Prometheus text |
//!
//! Errors are JSON `{error, field}`: 400 for a malformed request (bad JSON, bad query
//! parameter), 422 for an invalid field, 404, 405, 413 over 64 KiB, 503 while the database is
//! unavailable. An agent is `expired` once its last heartbeat is older than its TTL; the reaper
//! deletes it after `EXPIRED_RETENTION_SECONDS` more.
//!
//! The pieces, from the bottom up: [`config`] (the environment), [`clock`] (injectable time),
//! [`model`] (the agent and its validation), [`db`] (the SQLite table), [`metrics`]
//! (Prometheus text), [`api`] (the axum router), [`server`] (serving, the reaper, shutdown) and
//! [`healthcheck`] (the image's `HEALTHCHECK` client).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod clock;
pub mod config;
pub mod db;
pub mod healthcheck;
pub mod metrics;
pub mod model;
pub mod server;

/// The service's version: `AGENT_REGISTRY_VERSION` at build time (the image build sets it to the
/// image's tag), else the crate's version.
pub const VERSION: &str = match option_env!("AGENT_REGISTRY_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};
