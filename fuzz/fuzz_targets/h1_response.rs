//! Arbitrary bytes as what an upstream sends back to the gateway's HTTP/1.1 client: interim
//! heads, the final head, then a body framed by length, chunks or the end of the connection.
//! Nothing may panic, and the outcome (status and body, or a failure) must not depend on how
//! the bytes were split into reads: whole, one byte at a time, and in sizes drawn from the
//! input itself. Run with `cargo +nightly fuzz run h1_response seeds/h1_response` from this
//! directory.

#![no_main]

use aos_gateway::fuzzing::{Decoded, decode_response};
use libfuzzer_sys::fuzz_target;

/// Byte-at-a-time reads re-parse the head after every byte: quadratic, so only for short inputs.
const BYTEWISE_MAX: usize = 1024;

fn outcome(d: &Option<Decoded>) -> Option<(u16, &[u8])> {
    d.as_ref().map(|d| (d.status, &d.body[..]))
}

fuzz_target!(|data: &[u8]| {
    // Read sizes of 1 to 16 bytes from the input's own bytes, so the fuzzer steers the split.
    let drawn: Vec<usize> = data.iter().map(|&b| usize::from(b % 16) + 1).collect();
    let ones = vec![1; data.len()];
    for head_request in [false, true] {
        let whole = decode_response(data, head_request, &[]);
        let split = decode_response(data, head_request, &drawn);
        assert_eq!(outcome(&whole), outcome(&split), "drawn reads {drawn:?}");
        if let (Some(w), Some(s)) = (&whole, &split) {
            // Bytes past the body's end keep a connection out of the pool only if they came
            // with its end: fewer bytes per read can only make it more reusable.
            assert!(!w.reusable || s.reusable);
        }
        if head_request && whole.as_ref().is_some_and(|d| !d.body.is_empty()) {
            panic!("an answer to HEAD has no body");
        }
        if data.len() <= BYTEWISE_MAX {
            let bytewise = decode_response(data, head_request, &ones);
            assert_eq!(outcome(&whole), outcome(&bytewise), "byte-at-a-time reads");
        }
    }
});
