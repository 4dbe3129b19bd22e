//! Capability names as Kubernetes and OCI write them.

use caps::Capability;

/// The capabilities a container gets by default: containerd's and Docker's default set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Parse `NET_ADMIN` (Kubernetes) or `CAP_NET_ADMIN` (OCI), case-insensitively.
pub fn parse(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    canonical.parse().ok()
}

/// The OCI name (`CAP_NET_ADMIN`) of a capability given either way; `None` if unknown.
pub fn canonical(name: &str) -> Option<String> {
    parse(name).map(|c| c.to_string())
}

/// Every capability the running kernel's headers know, by OCI name, sorted.
pub fn all() -> Vec<String> {
    let mut v: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_both_spellings() {
        assert_eq!(parse("NET_ADMIN"), Some(Capability::CAP_NET_ADMIN));
        assert_eq!(parse("cap_sys_admin"), Some(Capability::CAP_SYS_ADMIN));
        assert_eq!(parse("FLY"), None);
        assert_eq!(canonical("chown").as_deref(), Some("CAP_CHOWN"));
    }

    #[test]
    fn defaults_are_known() {
        for c in DEFAULT_CAPABILITIES {
            assert_eq!(canonical(c).as_deref(), Some(*c));
        }
        assert!(all().contains(&"CAP_SYS_ADMIN".to_string()));
    }
}
