//! Configuration from the environment.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `PORT` | `3000` | TCP port to listen on (`0` picks a free port) |
//! | `LISTEN_ADDR` | `0.0.0.0` | IP address (or `IP:PORT`, which then wins over `PORT`) to listen on |
//! | `DATABASE_URL` | `sqlite:///tmp/agent-registry.db` | SQLite database: `sqlite:///abs/path`, `sqlite:/abs/path`, `sqlite:rel/path`, `sqlite::memory:` or a plain path |
//! | `HEARTBEAT_TTL_SECONDS` | `30` | TTL of an agent registered without `ttl_seconds` |
//! | `EXPIRED_RETENTION_SECONDS` | `300` | how long an expired agent is kept (listed as `expired`) before the reaper deletes it |
//! | `REAPER_INTERVAL_SECONDS` | `5` | period of the reaper |
//! | `SHUTDOWN_TIMEOUT_SECONDS` | `25` | bound on draining in-flight requests after SIGTERM/SIGINT |
//! | `REDIS_URL` | unset | accepted for compatibility with the seed's Deployment; unused |
//! | `NODE_ENV` | unset | accepted and ignored |
//! | `AGENT_REGISTRY_TEST_HOOKS` | unset | `1` enables test-only hooks (the `x-test-delay-ms` request header) |
//! | `RUST_LOG` | `info` | log filter |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The default `DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:///tmp/agent-registry.db";
/// The default port.
pub const DEFAULT_PORT: u16 = 3000;

/// Why the environment does not make a valid configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable is set to something that does not parse.
    #[error("{name}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value (never a secret: secret-bearing variables are not echoed).
        value: String,
        /// What is expected instead.
        reason: &'static str,
    },
    /// `DATABASE_URL` names a database other than SQLite. Only the scheme is reported: the rest of
    /// the URL may hold a password.
    #[error(
        "DATABASE_URL: unsupported scheme {scheme:?}: this service stores its data in SQLite \
         (use sqlite:///path/to.db, sqlite::memory: or a plain path)"
    )]
    UnsupportedDatabase {
        /// The URL's scheme.
        scheme: String,
    },
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A database file.
    File(PathBuf),
    /// A private in-memory database, lost when the process exits.
    Memory,
}

impl DatabaseLocation {
    /// Parses a `DATABASE_URL` value.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let url = url.trim();
        if url.is_empty() {
            return Self::parse(DEFAULT_DATABASE_URL);
        }
        if let Some(rest) = strip_prefix_ignore_case(url, "sqlite:") {
            // Connection parameters (`?mode=rwc` and the like) are not ours to honour.
            let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
            if rest == ":memory:" || rest == "//:memory:" || rest.is_empty() {
                return Ok(Self::Memory);
            }
            // `sqlite:///abs` and `sqlite://rel` (sqlx's forms), `sqlite:/abs` and `sqlite:rel`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_URL",
                    value: url.to_owned(),
                    reason: "the URL names no database file",
                });
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if url == ":memory:" {
            return Ok(Self::Memory);
        }
        if let Some(scheme) = url_scheme(url) {
            return Err(ConfigError::UnsupportedDatabase {
                scheme: scheme.to_owned(),
            });
        }
        Ok(Self::File(PathBuf::from(url)))
    }
}

impl std::fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory => f.write_str(":memory:"),
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The scheme of `scheme://...`, if `s` looks like a URL.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// The service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The database.
    pub database: DatabaseLocation,
    /// TTL of agents registered without `ttl_seconds`.
    pub default_ttl: Duration,
    /// How long an expired agent is kept before the reaper deletes it.
    pub expired_retention: Duration,
    /// Period of the reaper.
    pub reaper_interval: Duration,
    /// Bound on draining in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// Whether `REDIS_URL` is set (its value is never kept: it may hold a password).
    pub redis_configured: bool,
    /// Whether test-only hooks are enabled (`AGENT_REGISTRY_TEST_HOOKS=1`).
    pub test_hooks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
            database: DatabaseLocation::File(PathBuf::from("/tmp/agent-registry.db")),
            default_ttl: Duration::from_secs(30),
            expired_retention: Duration::from_secs(300),
            reaper_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(25),
            redis_configured: false,
            test_hooks: false,
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();

        let port = match var("PORT") {
            Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                value: v,
                reason: "expected a port number from 0 to 65535",
            })?,
            None => DEFAULT_PORT,
        };
        config.listen.set_port(port);
        if let Some(v) = var("LISTEN_ADDR") {
            let v = v.trim().to_owned();
            config.listen = if let Ok(addr) = v.parse::<SocketAddr>() {
                addr
            } else if let Ok(ip) = v.trim_matches(['[', ']']).parse::<IpAddr>() {
                SocketAddr::new(ip, port)
            } else {
                return Err(ConfigError::Invalid {
                    name: "LISTEN_ADDR",
                    value: v,
                    reason: "expected an IP address or IP:PORT",
                });
            };
        }

        if let Some(v) = var("DATABASE_URL") {
            config.database = DatabaseLocation::parse(&v)?;
        }
        if let Some(d) = seconds(&var, "HEARTBEAT_TTL_SECONDS", 1)? {
            config.default_ttl = d;
        }
        if let Some(d) = seconds(&var, "EXPIRED_RETENTION_SECONDS", 0)? {
            config.expired_retention = d;
        }
        if let Some(d) = seconds(&var, "REAPER_INTERVAL_SECONDS", 1)? {
            config.reaper_interval = d;
        }
        if let Some(d) = seconds(&var, "SHUTDOWN_TIMEOUT_SECONDS", 0)? {
            config.shutdown_timeout = d;
        }
        config.redis_configured = var("REDIS_URL").is_some();
        config.test_hooks = var("AGENT_REGISTRY_TEST_HOOKS").is_some_and(|v| v.trim() == "1");
        Ok(config)
    }
}

/// Largest accepted duration setting: ten years, far beyond any sensible value, small enough that
/// adding it to a timestamp cannot overflow.
pub(crate) const MAX_SECONDS: u64 = 10 * 366 * 24 * 3600;

fn seconds(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: u64,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = var(name) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=MAX_SECONDS).contains(&n) => Ok(Some(Duration::from_secs(n))),
        _ => Err(ConfigError::Invalid {
            name,
            value: v,
            reason: if min == 0 {
                "expected a whole number of seconds, at most ten years"
            } else {
                "expected a whole number of seconds, at least 1 and at most ten years"
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(
            c.database,
            DatabaseLocation::File("/tmp/agent-registry.db".into())
        );
        assert_eq!(c.default_ttl, Duration::from_secs(30));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert!(!c.redis_configured);
        assert!(!c.test_hooks);
    }

    #[test]
    fn listen_address() {
        let cases = [
            (vec![("PORT", "8080")], "0.0.0.0:8080"),
            (vec![("LISTEN_ADDR", "127.0.0.1")], "127.0.0.1:3000"),
            (
                vec![("LISTEN_ADDR", "127.0.0.1"), ("PORT", "0")],
                "127.0.0.1:0",
            ),
            (vec![("LISTEN_ADDR", "::1"), ("PORT", "9")], "[::1]:9"),
            (vec![("LISTEN_ADDR", "[::]")], "[::]:3000"),
            (
                vec![("LISTEN_ADDR", "127.0.0.2:4000"), ("PORT", "9")],
                "127.0.0.2:4000",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(
                config(&vars).unwrap().listen,
                want.parse::<SocketAddr>().unwrap(),
                "{vars:?}"
            );
        }
        assert!(matches!(
            config(&[("PORT", "70000")]),
            Err(ConfigError::Invalid { name: "PORT", .. })
        ));
        assert!(matches!(
            config(&[("LISTEN_ADDR", "localhost")]),
            Err(ConfigError::Invalid {
                name: "LISTEN_ADDR",
                ..
            })
        ));
    }

    #[test]
    fn database_urls() {
        let file = |p: &str| DatabaseLocation::File(PathBuf::from(p));
        let cases = [
            ("sqlite:///var/data/a.db", file("/var/data/a.db")),
            ("sqlite:/var/data/a.db", file("/var/data/a.db")),
            ("SQLite:///x.db", file("/x.db")),
            ("sqlite://rel/a.db", file("rel/a.db")),
            ("sqlite:rel.db", file("rel.db")),
            ("sqlite:///a.db?mode=rwc", file("/a.db")),
            ("sqlite::memory:", DatabaseLocation::Memory),
            (":memory:", DatabaseLocation::Memory),
            ("/plain/path.db", file("/plain/path.db")),
            ("plain.db", file("plain.db")),
            ("", file("/tmp/agent-registry.db")),
        ];
        for (url, want) in cases {
            assert_eq!(DatabaseLocation::parse(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn other_databases_are_refused_without_echoing_the_url() {
        let err =
            config(&[("DATABASE_URL", "postgres://user:hunter2@db:5432/agents")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnsupportedDatabase {
                scheme: "postgres".into()
            }
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn durations_and_flags() {
        let c = config(&[
            ("HEARTBEAT_TTL_SECONDS", "5"),
            ("EXPIRED_RETENTION_SECONDS", "0"),
            ("REAPER_INTERVAL_SECONDS", "2"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "3"),
            ("REDIS_URL", "redis://:secret@redis:6379"),
            ("NODE_ENV", "production"),
            ("AGENT_REGISTRY_TEST_HOOKS", "1"),
        ])
        .unwrap();
        assert_eq!(c.default_ttl, Duration::from_secs(5));
        assert_eq!(c.expired_retention, Duration::ZERO);
        assert_eq!(c.reaper_interval, Duration::from_secs(2));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
        assert!(c.redis_configured);
        assert!(c.test_hooks);

        for (name, value) in [
            ("HEARTBEAT_TTL_SECONDS", "0"),
            ("HEARTBEAT_TTL_SECONDS", "-1"),
            ("REAPER_INTERVAL_SECONDS", "0"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "1.5"),
            ("EXPIRED_RETENTION_SECONDS", "99999999999"),
        ] {
            assert!(
                matches!(config(&[(name, value)]), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={value}"
            );
        }
    }
}
