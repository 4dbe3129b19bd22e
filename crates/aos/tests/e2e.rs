//! End-to-end tests: the real `aos` binary, started with `aos up` in a temp data dir on a
//! free loopback port, driven with the CLI (and the client library where a test plays the
//! node agent).

mod e2e {
    pub(crate) mod support;

    mod cli;
    mod durability;
    mod errors;
    mod logs_top;
    mod node;
    mod rollout;
    mod security;
    mod traffic;
}
