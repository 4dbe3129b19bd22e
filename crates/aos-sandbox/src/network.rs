//! Pod networking: a bridge (`aos0`), a veth pair per pod, addresses from a pod CIDR.
//!
//! Links are configured with `ip` from iproute2 (and `nsenter` to act inside a pod's network
//! namespace), through [`Host::run`]. A netlink implementation (`rtnetlink`) can replace the
//! commands behind the same functions. Only private addresses are used and nothing is routed off
//! the bridge: no forwarding or NAT is set up, so pods reach each other and the node, nothing
//! else.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::host::{Host, HostError};

/// The default pod CIDR.
pub const DEFAULT_POD_CIDR: &str = "10.88.0.0/16";
/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "aos0";

/// Errors of pod networking.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A host call or command failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Not a valid IPv4 CIDR.
    #[error("invalid IPv4 CIDR {0:?}")]
    InvalidCidr(String),
    /// Not a private (RFC 1918) range.
    #[error("pod CIDR {0} is not a private address range")]
    NotPrivate(String),
    /// No address left.
    #[error("pod CIDR {0} has no free address")]
    Exhausted(String),
    /// The allocation file could not be used.
    #[error("address allocations {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Ipv4Cidr {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkError::InvalidCidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Ipv4Cidr {
    /// The gateway (the bridge's address): the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn pod_range(&self) -> std::ops::RangeInclusive<u32> {
        let net = u32::from(self.network);
        let broadcast = net | (u32::MAX >> self.prefix);
        (net + 2)..=(broadcast - 1)
    }
}

/// Network settings of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Bridge name.
    pub bridge: String,
    /// Pod CIDR.
    pub cidr: Ipv4Cidr,
    /// File recording which pod holds which address.
    pub allocations_file: PathBuf,
}

impl NetworkConfig {
    /// The defaults (`aos0`, 10.88.0.0/16) with allocations in `state_dir/ipam.json`.
    pub fn with_defaults(state_dir: &Path) -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_string(),
            cidr: DEFAULT_POD_CIDR.parse().expect("default CIDR is valid"),
            allocations_file: state_dir.join("ipam.json"),
        }
    }
}

/// A pod's network attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod IP.
    pub ip: Ipv4Addr,
    /// Prefix length of the pod network.
    pub prefix: u8,
    /// The bridge address, the pod's default route.
    pub gateway: Ipv4Addr,
    /// The host end of the veth pair.
    pub host_veth: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocations {
    cidr: String,
    /// address → pod id
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// Address allocation persisted to a file, locked while it is changed. An address stays with
/// its pod until released, so a live address is never handed out twice, across restarts too.
#[derive(Debug, Clone)]
pub struct Ipam {
    cidr: Ipv4Cidr,
    file: PathBuf,
}

impl Ipam {
    /// Allocations of `cidr` kept in `file`.
    pub fn new(cidr: Ipv4Cidr, file: impl Into<PathBuf>) -> Self {
        Self {
            cidr,
            file: file.into(),
        }
    }

    fn state_err(&self, detail: impl ToString) -> NetworkError {
        NetworkError::State {
            path: self.file.clone(),
            detail: detail.to_string(),
        }
    }

    fn with_locked<T>(
        &self,
        f: impl FnOnce(&mut Allocations) -> Result<(T, bool), NetworkError>,
    ) -> Result<T, NetworkError> {
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.state_err(e))?;
        }
        let lock_path = self.file.with_extension("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.state_err(e))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| self.state_err(e))?;
        let mut state = match std::fs::read_to_string(&self.file) {
            Ok(s) => serde_json::from_str::<Allocations>(&s).map_err(|e| self.state_err(e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Allocations::default(),
            Err(e) => return Err(self.state_err(e)),
        };
        state.cidr = self.cidr.to_string();
        let (out, changed) = f(&mut state)?;
        if changed {
            let tmp = self.file.with_extension("tmp");
            let json = serde_json::to_vec_pretty(&state).map_err(|e| self.state_err(e))?;
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = File::create(&tmp)?;
                f.write_all(&json)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &self.file)
            };
            write().map_err(|e| self.state_err(e))?;
        }
        Ok(out)
    }

    /// The pod's address: the one it holds, or the lowest free one.
    pub fn allocate(&self, pod_id: &str) -> Result<Ipv4Addr, NetworkError> {
        let cidr = self.cidr;
        self.with_locked(|s| {
            if let Some((ip, _)) = s.allocations.iter().find(|(_, p)| *p == pod_id) {
                return Ok((*ip, false));
            }
            let free = cidr
                .pod_range()
                .map(Ipv4Addr::from)
                .find(|ip| !s.allocations.contains_key(ip))
                .ok_or_else(|| NetworkError::Exhausted(cidr.to_string()))?;
            s.allocations.insert(free, pod_id.to_string());
            Ok((free, true))
        })
    }

    /// Give the pod's address back (no-op if it holds none).
    pub fn release(&self, pod_id: &str) -> Result<(), NetworkError> {
        self.with_locked(|s| {
            let before = s.allocations.len();
            s.allocations.retain(|_, p| p != pod_id);
            Ok(((), s.allocations.len() != before))
        })
    }

    /// The address a pod holds.
    pub fn lookup(&self, pod_id: &str) -> Result<Option<Ipv4Addr>, NetworkError> {
        self.with_locked(|s| {
            Ok((
                s.allocations
                    .iter()
                    .find(|(_, p)| *p == pod_id)
                    .map(|(ip, _)| *ip),
                false,
            ))
        })
    }
}

/// The node's pod network.
#[derive(Clone)]
pub struct Network {
    config: NetworkConfig,
    ipam: Ipam,
    host: Arc<dyn Host>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .finish()
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The host-side veth name of a pod on `bridge`: stable, at most 15 bytes (IFNAMSIZ - 1).
///
/// Link names are global to the host while pod ids are only unique within one pod network:
/// two agents on one machine (tests, or several data directories) may well run pods with the
/// same id. The bridge names the pod network, so it is part of the name: a pod's `attach`
/// (which first deletes a stale pair of its own name) never takes another network's veth.
pub fn host_veth_name(bridge: &str, pod_id: &str) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = bridge
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(pod_id.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("aosv{:08x}", hash as u32)
}

impl Network {
    /// The pod network with `config`, refusing non-private ranges.
    pub fn new(config: NetworkConfig, host: Arc<dyn Host>) -> Result<Self, NetworkError> {
        if !config.cidr.network.is_private() {
            return Err(NetworkError::NotPrivate(config.cidr.to_string()));
        }
        let ipam = Ipam::new(config.cidr, config.allocations_file.clone());
        Ok(Self { config, ipam, host })
    }

    /// The address allocator.
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Create the bridge with the gateway address, and bring it up (idempotent).
    pub fn ensure_bridge(&self) -> Result<(), NetworkError> {
        let br = self.config.bridge.as_str();
        let exists = || {
            self.host
                .run("ip", &args(&["link", "show", "dev", br]))
                .is_ok()
        };
        if !exists() {
            // Every pod's shim ensures the bridge, and two may race to create it: losing that
            // race is fine.
            if let Err(e) = self
                .host
                .run("ip", &args(&["link", "add", br, "type", "bridge"]))
                && !exists()
            {
                return Err(e.into());
            }
        }
        let gw = format!("{}/{}", self.config.cidr.gateway(), self.config.cidr.prefix);
        self.host
            .run("ip", &args(&["addr", "replace", &gw, "dev", br]))?;
        self.host
            .run("ip", &args(&["link", "set", "dev", br, "up"]))?;
        Ok(())
    }

    /// Give the pod whose network namespace is `netns` an address: a veth pair with `eth0`
    /// inside and the other end on the bridge, loopback up, a default route via the bridge.
    pub fn attach(&self, pod_id: &str, netns: &Path) -> Result<PodAddress, NetworkError> {
        self.ensure_bridge()?;
        let ip = self.ipam.allocate(pod_id)?;
        let result = self.configure(pod_id, netns, ip);
        if result.is_err() {
            // Nothing live holds the address: give it back.
            let _ = self.detach(pod_id);
        }
        result
    }

    fn configure(
        &self,
        pod_id: &str,
        netns: &Path,
        ip: Ipv4Addr,
    ) -> Result<PodAddress, NetworkError> {
        let veth = host_veth_name(&self.config.bridge, pod_id);
        let ns = netns.to_string_lossy().into_owned();
        let prefix = self.config.cidr.prefix;
        let gateway = self.config.cidr.gateway();
        // A pair left from an earlier attempt would make `add` fail.
        let _ = self.host.run("ip", &args(&["link", "del", "dev", &veth]));
        self.host.run(
            "ip",
            &args(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]),
        )?;
        self.host.run(
            "ip",
            &args(&[
                "link",
                "set",
                "dev",
                &veth,
                "master",
                &self.config.bridge,
                "up",
            ]),
        )?;
        let inside = |cmd: &[&str]| -> Result<String, HostError> {
            let mut a = vec![format!("--net={ns}"), "ip".to_string()];
            a.extend(cmd.iter().map(|s| s.to_string()));
            self.host.run("nsenter", &a)
        };
        inside(&["link", "set", "dev", "lo", "up"])?;
        inside(&["addr", "replace", &format!("{ip}/{prefix}"), "dev", "eth0"])?;
        inside(&["link", "set", "dev", "eth0", "up"])?;
        inside(&[
            "route",
            "replace",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            "eth0",
        ])?;
        Ok(PodAddress {
            ip,
            prefix,
            gateway,
            host_veth: veth,
        })
    }

    /// Remove the pod's veth pair and release its address (idempotent).
    pub fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
        let veth = host_veth_name(&self.config.bridge, pod_id);
        if self
            .host
            .run("ip", &args(&["link", "show", "dev", &veth]))
            .is_ok()
        {
            // Deleting one end deletes the pair.
            self.host.run("ip", &args(&["link", "del", "dev", &veth]))?;
        }
        self.ipam.release(pod_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::RecordingHost;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(cidr("10.88.1.7/16").network, Ipv4Addr::new(10, 88, 0, 0));
        assert_eq!(cidr("10.88.0.0/16").gateway(), Ipv4Addr::new(10, 88, 0, 1));
        for bad in ["10.88.0.0", "10.88.0.0/33", "x/16", "10.0.0.0/31"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipam_allocates_lowest_free_keeps_and_never_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(cidr("10.88.0.0/29"), dir.path().join("ipam.json"));
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 88, 0, 3));
        assert_eq!(ipam.allocate("a").unwrap(), a, "same pod, same address");
        // Persisted: a fresh allocator over the same file sees the live addresses.
        let again = Ipam::new(cidr("10.88.0.0/29"), dir.path().join("ipam.json"));
        assert_eq!(again.lookup("b").unwrap(), Some(b));
        let rest: Vec<_> = ["c", "d", "e"]
            .iter()
            .map(|p| again.allocate(p).unwrap())
            .collect();
        assert_eq!(rest.last(), Some(&Ipv4Addr::new(10, 88, 0, 6)));
        assert!(matches!(
            again.allocate("g"),
            Err(NetworkError::Exhausted(_))
        ));
        again.release("c").unwrap();
        assert_eq!(again.allocate("g").unwrap(), Ipv4Addr::new(10, 88, 0, 4));
        let mut all: Vec<_> = ["a", "b", "d", "e", "g"]
            .iter()
            .map(|p| again.lookup(p).unwrap().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn attach_commands() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::new());
        host.fail_command("ip link show dev aos0");
        let net = Network::new(NetworkConfig::with_defaults(dir.path()), host.clone()).unwrap();
        let addr = net.attach("pod-1", Path::new("/ns/pod-1/net")).unwrap();
        assert_eq!(addr.ip, Ipv4Addr::new(10, 88, 0, 2));
        let veth = host_veth_name("aos0", "pod-1");
        assert!(veth.len() <= 15);
        assert_ne!(
            veth,
            host_veth_name("aos1", "pod-1"),
            "same pod id on another pod network"
        );
        let cmds = host.commands();
        let want = [
            "ip link add aos0 type bridge".to_string(),
            "ip addr replace 10.88.0.1/16 dev aos0".to_string(),
            format!("ip link add {veth} type veth peer name eth0 netns /ns/pod-1/net"),
            format!("ip link set dev {veth} master aos0 up"),
            "nsenter --net=/ns/pod-1/net ip link set dev lo up".to_string(),
            "nsenter --net=/ns/pod-1/net ip addr replace 10.88.0.2/16 dev eth0".to_string(),
            "nsenter --net=/ns/pod-1/net ip route replace default via 10.88.0.1 dev eth0"
                .to_string(),
        ];
        for w in &want {
            assert!(cmds.contains(w), "missing {w:?} in {cmds:#?}");
        }
        net.detach("pod-1").unwrap();
        assert_eq!(net.ipam().lookup("pod-1").unwrap(), None);
    }

    #[test]
    fn a_bridge_made_meanwhile_by_another_shim_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::new());
        // Not there at first; the `add` fails because another shim just made it.
        host.fail_command_once("ip link show dev aos0");
        host.fail_command("ip link add aos0 type bridge");
        let net = Network::new(NetworkConfig::with_defaults(dir.path()), host.clone()).unwrap();
        net.ensure_bridge().unwrap();
        assert!(
            host.commands()
                .contains(&"ip link set dev aos0 up".to_string())
        );
        // Still missing after a failed `add`: an error.
        let host = Arc::new(RecordingHost::new());
        host.fail_command("ip link show dev aos0");
        host.fail_command("ip link add aos0 type bridge");
        let net = Network::new(NetworkConfig::with_defaults(dir.path()), host).unwrap();
        assert!(net.ensure_bridge().is_err());
    }

    #[test]
    fn failed_attach_releases_address() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::new());
        host.fail_command("nsenter");
        let net = Network::new(NetworkConfig::with_defaults(dir.path()), host).unwrap();
        assert!(net.attach("p", Path::new("/ns/p/net")).is_err());
        assert_eq!(net.ipam().lookup("p").unwrap(), None);
    }

    #[test]
    fn public_ranges_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NetworkConfig::with_defaults(dir.path());
        cfg.cidr = cidr("8.8.0.0/16");
        assert!(matches!(
            Network::new(cfg, Arc::new(RecordingHost::new())),
            Err(NetworkError::NotPrivate(_))
        ));
    }
}
