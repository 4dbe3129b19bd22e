//! Kubernetes `securityContext` semantics, resolved into a container's process settings.
//!
//! The input mirrors the fields of the pod- and container-level `securityContext` (the node
//! agent copies them from the API objects); [`resolve`] applies Kubernetes' rules: container
//! settings override the pod's, `runAsNonRoot` refuses root, `fsGroup` joins the supplementary
//! groups, `allowPrivilegeEscalation: false` sets `no_new_privs`, capabilities are added to and
//! dropped from the runtime's default set (`ALL` in either), `privileged` needs the node's
//! permission, and an absent `seccompProfile` means `RuntimeDefault`.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::seccomp::Profile;

/// `capabilities` of a container's securityContext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Added capabilities (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub add: Vec<String>,
    /// Dropped capabilities (`ALL` drops every one before `add` applies).
    pub drop: Vec<String>,
}

/// `seccompProfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProfile {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    pub type_: String,
    /// For `Localhost`: a path relative to the node's seccomp profile directory.
    pub localhost_profile: Option<String>,
}

/// The pod-level `securityContext` fields that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSecurityContext {
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// `fsGroup`.
    pub fs_group: Option<i64>,
    /// `supplementalGroups`.
    pub supplemental_groups: Vec<i64>,
    /// `seccompProfile`.
    pub seccomp_profile: Option<SeccompProfile>,
}

/// The container-level `securityContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: Option<bool>,
    /// `allowPrivilegeEscalation`.
    pub allow_privilege_escalation: Option<bool>,
    /// `privileged`.
    pub privileged: Option<bool>,
    /// `capabilities`.
    pub capabilities: Option<Capabilities>,
    /// `seccompProfile`.
    pub seccomp_profile: Option<SeccompProfile>,
}

/// The user an image's config names, resolved against the image's `/etc/passwd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageUser {
    /// The uid; `None` for a user name that could not be resolved to a number.
    pub uid: Option<u32>,
    /// The primary gid, when known.
    pub gid: Option<u32>,
}

/// What the node permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// Whether privileged containers may run.
    pub allow_privileged: bool,
    /// The directory `Localhost` seccomp profiles are relative to.
    pub seccomp_root: PathBuf,
}

/// The resolved settings for [`crate::spec::ProcessSpec`] and [`crate::spec::SandboxSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecurity {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups (`supplementalGroups` then `fsGroup`).
    pub supplemental_groups: Vec<u32>,
    /// `no_new_privs`.
    pub no_new_privs: bool,
    /// Capabilities, OCI names, sorted.
    pub capabilities: Vec<String>,
    /// The seccomp profile.
    pub seccomp: Profile,
    /// Read-only root file system.
    pub readonly_root: bool,
    /// Privileged.
    pub privileged: bool,
}

/// A securityContext that cannot be honoured; messages say what the user must change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityError {
    /// `runAsNonRoot` with a root user.
    #[error("container has runAsNonRoot and image will run as root")]
    RunsAsRoot,
    /// `runAsNonRoot` with a user name that is not numeric.
    #[error(
        "container has runAsNonRoot and image has non-numeric user, cannot verify user is non-root"
    )]
    UnverifiableUser,
    /// `privileged` on a node that does not allow it.
    #[error("privileged containers are not allowed on this node")]
    PrivilegedNotAllowed,
    /// `allowPrivilegeEscalation: false` with `privileged` or `CAP_SYS_ADMIN`.
    #[error("cannot set allowPrivilegeEscalation to false and {0}")]
    EscalationConflict(&'static str),
    /// A negative or too large id.
    #[error("{field} {value} is out of range")]
    IdOutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A capability name that does not exist.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A bad seccompProfile.
    #[error("seccompProfile: {0}")]
    Seccomp(String),
}

fn id(field: &'static str, value: i64) -> Result<u32, SecurityError> {
    u32::try_from(value).map_err(|_| SecurityError::IdOutOfRange { field, value })
}

/// Apply Kubernetes' rules (see the module docs).
pub fn resolve(
    pod: &PodSecurityContext,
    container: &SecurityContext,
    image: ImageUser,
    node: &NodePolicy,
) -> Result<ResolvedSecurity, SecurityError> {
    let privileged = container.privileged.unwrap_or(false);
    if privileged && !node.allow_privileged {
        return Err(SecurityError::PrivilegedNotAllowed);
    }
    let explicit_uid = container.run_as_user.or(pod.run_as_user);
    let uid = match explicit_uid {
        Some(u) => Some(id("runAsUser", u)?),
        None => image.uid,
    };
    if container
        .run_as_non_root
        .or(pod.run_as_non_root)
        .unwrap_or(false)
    {
        match uid {
            Some(0) => return Err(SecurityError::RunsAsRoot),
            None => return Err(SecurityError::UnverifiableUser),
            Some(_) => {}
        }
    }
    let uid = uid.unwrap_or(0);
    let gid = match container.run_as_group.or(pod.run_as_group) {
        Some(g) => id("runAsGroup", g)?,
        None => image.gid.unwrap_or(0),
    };
    let mut supplemental_groups = Vec::new();
    for g in &pod.supplemental_groups {
        supplemental_groups.push(id("supplementalGroups", *g)?);
    }
    if let Some(fs) = pod.fs_group {
        let fs = id("fsGroup", fs)?;
        if !supplemental_groups.contains(&fs) {
            supplemental_groups.push(fs);
        }
    }

    let capabilities = if privileged {
        crate::caps::all()
    } else {
        let mut set: BTreeSet<String> = crate::caps::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
        let caps = container.capabilities.clone().unwrap_or_default();
        if caps.drop.iter().any(is_all) {
            set.clear();
        }
        for d in caps.drop.iter().filter(|c| !is_all(c)) {
            let name = crate::caps::canonical(d)
                .ok_or_else(|| SecurityError::UnknownCapability(d.clone()))?;
            set.remove(&name);
        }
        for a in &caps.add {
            if is_all(a) {
                set.extend(crate::caps::all());
            } else {
                set.insert(
                    crate::caps::canonical(a)
                        .ok_or_else(|| SecurityError::UnknownCapability(a.clone()))?,
                );
            }
        }
        set.into_iter().collect()
    };

    let no_new_privs = container.allow_privilege_escalation == Some(false);
    if no_new_privs && privileged {
        return Err(SecurityError::EscalationConflict("privileged to true"));
    }
    if no_new_privs && capabilities.iter().any(|c| c == "CAP_SYS_ADMIN") {
        return Err(SecurityError::EscalationConflict(
            "capabilities.add CAP_SYS_ADMIN",
        ));
    }

    let seccomp = match container
        .seccomp_profile
        .as_ref()
        .or(pod.seccomp_profile.as_ref())
    {
        // A privileged container runs without a filter unless one is asked for.
        None if privileged => Profile::Unconfined,
        None => Profile::RuntimeDefault,
        Some(p) => match p.type_.as_str() {
            "RuntimeDefault" => Profile::RuntimeDefault,
            "Unconfined" => Profile::Unconfined,
            "Localhost" => {
                let rel = p.localhost_profile.as_deref().ok_or_else(|| {
                    SecurityError::Seccomp("type Localhost needs localhostProfile".into())
                })?;
                let rel_path = Path::new(rel);
                if rel.is_empty()
                    || !rel_path
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)))
                {
                    return Err(SecurityError::Seccomp(format!(
                        "localhostProfile {rel:?} must be a relative path without '..'"
                    )));
                }
                Profile::Localhost(node.seccomp_root.join(rel_path))
            }
            other => return Err(SecurityError::Seccomp(format!("unknown type {other:?}"))),
        },
    };

    Ok(ResolvedSecurity {
        uid,
        gid,
        supplemental_groups,
        no_new_privs,
        capabilities,
        seccomp,
        readonly_root: container.read_only_root_filesystem.unwrap_or(false),
        privileged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(allow_privileged: bool) -> NodePolicy {
        NodePolicy {
            allow_privileged,
            seccomp_root: "/var/lib/aos/seccomp".into(),
        }
    }

    fn defaults() -> Result<ResolvedSecurity, SecurityError> {
        resolve(
            &PodSecurityContext::default(),
            &SecurityContext::default(),
            ImageUser::default(),
            &node(false),
        )
    }

    #[test]
    fn defaults_are_kubernetes_defaults() {
        let r = defaults().unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(!r.no_new_privs);
        assert_eq!(r.seccomp, Profile::RuntimeDefault);
        assert_eq!(
            r.capabilities.len(),
            crate::caps::DEFAULT_CAPABILITIES.len()
        );
        assert!(!r.readonly_root);
    }

    #[test]
    fn table() {
        type Case = (
            &'static str,
            PodSecurityContext,
            SecurityContext,
            ImageUser,
            bool,
        );
        let hardened = SecurityContext {
            run_as_user: Some(1001),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            }),
            ..Default::default()
        };
        type Want = Result<(u32, u32, bool, Vec<&'static str>), SecurityError>;
        let cases: Vec<(Case, Want)> = vec![
            (
                (
                    "hardened",
                    PodSecurityContext::default(),
                    hardened.clone(),
                    ImageUser::default(),
                    false,
                ),
                Ok((1001, 0, true, vec!["CAP_NET_BIND_SERVICE"])),
            ),
            (
                (
                    "non-root refuses root image",
                    PodSecurityContext {
                        run_as_non_root: Some(true),
                        ..Default::default()
                    },
                    SecurityContext::default(),
                    ImageUser {
                        uid: Some(0),
                        gid: Some(0),
                    },
                    false,
                ),
                Err(SecurityError::RunsAsRoot),
            ),
            (
                (
                    "non-root with named image user",
                    PodSecurityContext {
                        run_as_non_root: Some(true),
                        ..Default::default()
                    },
                    SecurityContext::default(),
                    ImageUser {
                        uid: None,
                        gid: None,
                    },
                    false,
                ),
                Err(SecurityError::UnverifiableUser),
            ),
            (
                (
                    "image user, container overrides pod",
                    PodSecurityContext {
                        run_as_user: Some(5),
                        run_as_group: Some(6),
                        ..Default::default()
                    },
                    SecurityContext {
                        run_as_user: Some(7),
                        ..Default::default()
                    },
                    ImageUser {
                        uid: Some(100),
                        gid: Some(100),
                    },
                    false,
                ),
                Ok((7, 6, false, crate::caps::DEFAULT_CAPABILITIES.to_vec())),
            ),
            (
                (
                    "privileged refused",
                    PodSecurityContext::default(),
                    SecurityContext {
                        privileged: Some(true),
                        ..Default::default()
                    },
                    ImageUser::default(),
                    false,
                ),
                Err(SecurityError::PrivilegedNotAllowed),
            ),
            (
                (
                    "no escalation with SYS_ADMIN",
                    PodSecurityContext::default(),
                    SecurityContext {
                        allow_privilege_escalation: Some(false),
                        capabilities: Some(Capabilities {
                            add: vec!["SYS_ADMIN".into()],
                            drop: vec![],
                        }),
                        ..Default::default()
                    },
                    ImageUser::default(),
                    false,
                ),
                Err(SecurityError::EscalationConflict(
                    "capabilities.add CAP_SYS_ADMIN",
                )),
            ),
            (
                (
                    "negative uid",
                    PodSecurityContext {
                        run_as_user: Some(-1),
                        ..Default::default()
                    },
                    SecurityContext::default(),
                    ImageUser::default(),
                    false,
                ),
                Err(SecurityError::IdOutOfRange {
                    field: "runAsUser",
                    value: -1,
                }),
            ),
        ];
        for ((name, pod, ctr, image, allow), want) in cases {
            let got = resolve(&pod, &ctr, image, &node(allow))
                .map(|r| (r.uid, r.gid, r.no_new_privs, r.capabilities));
            let want =
                want.map(|(u, g, n, c)| (u, g, n, c.into_iter().map(String::from).collect()));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn fs_group_and_privileged_and_drop() {
        let pod = PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: vec![3000],
            ..Default::default()
        };
        let r = resolve(
            &pod,
            &SecurityContext::default(),
            ImageUser::default(),
            &node(false),
        )
        .unwrap();
        assert_eq!(r.supplemental_groups, vec![3000, 2000]);

        let privileged = SecurityContext {
            privileged: Some(true),
            ..Default::default()
        };
        let r = resolve(&pod, &privileged, ImageUser::default(), &node(true)).unwrap();
        assert!(r.privileged);
        assert!(r.capabilities.contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(r.seccomp, Profile::Unconfined);

        let drop = SecurityContext {
            capabilities: Some(Capabilities {
                add: vec![],
                drop: vec!["NET_RAW".into(), "chown".into()],
            }),
            ..Default::default()
        };
        let r = resolve(&pod, &drop, ImageUser::default(), &node(false)).unwrap();
        assert!(!r.capabilities.contains(&"CAP_NET_RAW".to_string()));
        assert!(!r.capabilities.contains(&"CAP_CHOWN".to_string()));
        assert!(r.capabilities.contains(&"CAP_KILL".to_string()));
    }

    #[test]
    fn seccomp_profiles() {
        let with = |p: SeccompProfile| {
            resolve(
                &PodSecurityContext {
                    seccomp_profile: Some(p),
                    ..Default::default()
                },
                &SecurityContext::default(),
                ImageUser::default(),
                &node(false),
            )
            .map(|r| r.seccomp)
        };
        assert_eq!(
            with(SeccompProfile {
                type_: "Unconfined".into(),
                localhost_profile: None
            }),
            Ok(Profile::Unconfined)
        );
        assert_eq!(
            with(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: Some("team/strict.json".into())
            }),
            Ok(Profile::Localhost(
                "/var/lib/aos/seccomp/team/strict.json".into()
            ))
        );
        assert!(
            with(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: Some("../etc/x".into())
            })
            .is_err()
        );
        assert!(
            with(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: None
            })
            .is_err()
        );
        assert!(
            with(SeccompProfile {
                type_: "Bogus".into(),
                localhost_profile: None
            })
            .is_err()
        );
    }
}
