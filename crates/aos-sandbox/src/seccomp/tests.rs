use super::*;

/// A classic-BPF interpreter for the instructions seccompiler emits, run on `seccomp_data`.
fn run_bpf(prog: &BpfProgram, nr: i64, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
    data[4..8].copy_from_slice(&0xC000_003Eu32.to_ne_bytes()); // AUDIT_ARCH_X86_64
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = &prog[pc];
        let code = ins.code;
        pc += 1;
        match code {
            // LD | W | ABS
            0x20 => {
                let off = ins.k as usize;
                acc = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap());
            }
            // ALU | AND | K
            0x54 => acc &= ins.k,
            // JMP | JA
            0x05 => pc += ins.k as usize,
            // JMP | JEQ | K, JGT, JGE, JSET
            0x15 | 0x25 | 0x35 | 0x45 => {
                let cond = match code {
                    0x15 => acc == ins.k,
                    0x25 => acc > ins.k,
                    0x35 => acc >= ins.k,
                    _ => acc & ins.k != 0,
                };
                pc += if cond {
                    ins.jt as usize
                } else {
                    ins.jf as usize
                };
            }
            // RET | K
            0x06 => return ins.k,
            other => panic!("unexpected bpf opcode {other:#x}"),
        }
    }
}

/// The kernel's combination of a filter stack: most restrictive wins, newest on ties.
fn run_stack(filter: &CompiledFilter, nr: i64, args: [u64; 6]) -> u32 {
    let mut verdict: Option<u32> = None;
    for p in filter.programs().iter().rev() {
        let r = run_bpf(p, nr, args);
        let action = |v: u32| (v & 0xffff_0000) as i32;
        verdict = Some(match verdict {
            None => r,
            Some(v) if action(r) < action(v) => r,
            Some(v) => v,
        });
    }
    verdict.unwrap_or(0x7fff_0000)
}

fn ret_of(a: Action) -> u32 {
    match a {
        Action::Allow => 0x7fff_0000,
        Action::Errno(e) => 0x0005_0000 | e,
        Action::KillThread => 0,
        Action::KillProcess => 0x8000_0000,
        Action::Trap => 0x0003_0000,
        Action::Log => 0x7ffc_0000,
    }
}

fn nr(name: &str) -> i64 {
    syscall_nr(name).unwrap().unwrap()
}

fn default_ctx(caps: &[&str]) -> ResolveContext {
    ResolveContext {
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        kernel: (6, 1),
    }
}

#[test]
fn data_file_parses_and_every_group_has_a_reason() {
    let file: DefaultFile = serde_json::from_str(RUNTIME_DEFAULT_JSON).unwrap();
    assert_eq!(file.default_action, Action::Errno(libc::EPERM as u32));
    for g in &file.groups {
        assert!(g.reason.len() > 10, "group {:?} needs a reason", g.syscalls);
    }
}

#[test]
fn runtime_default_decisions_table() {
    let plain = Policy::runtime_default(&default_ctx(&["CAP_CHOWN", "CAP_NET_RAW"])).unwrap();
    let admin = Policy::runtime_default(&default_ctx(&["CAP_SYS_ADMIN"])).unwrap();
    let eperm = Action::Errno(1);
    let clone_newns = 0x0002_0000u64;
    let cases: &[(&Policy, &str, [u64; 6], Action)] = &[
        (&plain, "read", [0; 6], Action::Allow),
        (&plain, "execve", [0; 6], Action::Allow),
        (&plain, "mount", [0; 6], eperm),
        (&plain, "unshare", [0; 6], eperm),
        (&plain, "setns", [0; 6], eperm),
        (&plain, "init_module", [0; 6], eperm),
        (&plain, "finit_module", [0; 6], eperm),
        (&plain, "kexec_load", [0; 6], eperm),
        (&plain, "reboot", [0; 6], eperm),
        (&plain, "bpf", [0; 6], eperm),
        (&plain, "clone", [0x11, 0, 0, 0, 0, 0], Action::Allow), // SIGCHLD fork
        (&plain, "clone", [clone_newns | 0x11, 0, 0, 0, 0, 0], eperm),
        (&plain, "clone3", [0; 6], Action::Errno(38)),
        (&plain, "personality", [0, 0, 0, 0, 0, 0], Action::Allow),
        (&plain, "personality", [0x0040000, 0, 0, 0, 0, 0], eperm), // ADDR_NO_RANDOMIZE
        (
            &plain,
            "personality",
            [0xffff_ffff, 0, 0, 0, 0, 0],
            Action::Allow,
        ),
        (&plain, "socket", [2, 1, 0, 0, 0, 0], Action::Allow),
        (&plain, "socket", [40, 1, 0, 0, 0, 0], eperm), // AF_VSOCK
        (&plain, "ptrace", [0; 6], Action::Allow),
        (&admin, "mount", [0; 6], Action::Allow),
        (&admin, "clone", [clone_newns, 0, 0, 0, 0, 0], Action::Allow),
        (&admin, "clone3", [0; 6], Action::Allow),
        (&admin, "init_module", [0; 6], eperm),
    ];
    for (policy, name, args, want) in cases {
        assert_eq!(
            policy.evaluate(nr(name), *args),
            *want,
            "policy decision for {name} {args:?}"
        );
        let compiled = policy.compile().unwrap();
        assert_eq!(
            run_stack(&compiled, nr(name), *args),
            ret_of(*want),
            "compiled filter for {name} {args:?}"
        );
    }
}

#[test]
fn compiled_stack_matches_policy_for_every_syscall() {
    for caps in [&[][..], &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"][..]] {
        let policy = Policy::runtime_default(&default_ctx(caps)).unwrap();
        let compiled = policy.compile().unwrap();
        for &(name, n) in syscalls_x86_64::SYSCALLS {
            for args in [
                [0u64; 6],
                [0x7E02_0000, 0, 0, 0, 0, 0],
                [40, 3, 0, 0, 0, 0],
                [u64::MAX; 6],
            ] {
                assert_eq!(
                    run_stack(&compiled, n, args),
                    ret_of(policy.evaluate(n, args)),
                    "{name} with {args:?} and caps {caps:?}"
                );
            }
        }
    }
}

#[test]
fn kernel_version_gates_groups() {
    let old = ResolveContext {
        capabilities: BTreeSet::new(),
        kernel: (4, 4),
    };
    let policy = Policy::runtime_default(&old).unwrap();
    assert_eq!(policy.evaluate(nr("ptrace"), [0; 6]), Action::Errno(1));
    assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18)));
    assert_eq!(parse_kernel("garbage"), None);
}

#[test]
fn oci_profile_format() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [
            {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    }"#;
    let p = Policy::from_oci_json("t", json, &default_ctx(&[])).unwrap();
    assert_eq!(p.default, Action::Errno(13));
    assert_eq!(p.evaluate(nr("read"), [0; 6]), Action::Allow);
    assert_eq!(p.evaluate(nr("mount"), [0; 6]), Action::Errno(13));
    assert_eq!(
        p.evaluate(nr("clone"), [0x11, 0, 0, 0, 0, 0]),
        Action::Allow
    );
    assert_eq!(
        p.evaluate(nr("clone"), [0x1000_0000, 0, 0, 0, 0, 0]),
        Action::Errno(13)
    );
    assert_eq!(p.evaluate(nr("kill"), [0; 6]), Action::KillProcess);
    let compiled = p.compile().unwrap();
    for (name, args) in [
        ("read", [0; 6]),
        ("kill", [0; 6]),
        ("clone", [0x11, 0, 0, 0, 0, 0]),
    ] {
        assert_eq!(
            run_stack(&compiled, nr(name), args),
            ret_of(p.evaluate(nr(name), args))
        );
    }
    let admin = Policy::from_oci_json("t", json, &default_ctx(&["CAP_SYS_ADMIN"])).unwrap();
    assert_eq!(admin.evaluate(nr("mount"), [0; 6]), Action::Allow);
}

#[test]
fn oci_profile_errors() {
    let notify = r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#;
    assert!(matches!(
        Policy::from_oci_json("t", notify, &default_ctx(&[])),
        Err(SeccompError::UnsupportedAction(_))
    ));
    assert!(matches!(
        Policy::from_oci_json("t", "{", &default_ctx(&[])),
        Err(SeccompError::Parse { .. })
    ));
    let missing = Policy::from_oci_file(Path::new("/nonexistent/profile.json"), &default_ctx(&[]));
    assert!(matches!(missing, Err(SeccompError::Read { .. })));
}

#[test]
fn allow_default_denylist_profile() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    let p = Policy::from_oci_json("t", json, &default_ctx(&[])).unwrap();
    let compiled = p.compile().unwrap();
    assert_eq!(compiled.programs().len(), 1);
    assert_eq!(
        run_stack(&compiled, nr("mount"), [0; 6]),
        ret_of(Action::Errno(1))
    );
    assert_eq!(
        run_stack(&compiled, nr("read"), [0; 6]),
        ret_of(Action::Allow)
    );
}

#[test]
fn unconfined_is_none() {
    assert!(
        Policy::for_profile(&Profile::Unconfined, &default_ctx(&[]))
            .unwrap()
            .is_none()
    );
    assert!(
        Policy::for_profile(&Profile::RuntimeDefault, &default_ctx(&[]))
            .unwrap()
            .is_some()
    );
}
