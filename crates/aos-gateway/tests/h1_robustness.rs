//! Bounded fuzzing that CI runs on the gateway's HTTP/1.1 client's reading of upstream answers
//! (heads, then bodies framed by length, chunks or the end of the connection): random bytes,
//! well-formed answers built from parts, and mutations of those go through
//! `aos_gateway::fuzzing::decode_response`. Nothing may panic; the outcome may not depend on how
//! the bytes were split into reads; well-formed answers decode to the body they were built
//! from. (The open-ended fuzzer is `fuzz/fuzz_targets/h1_response.rs`.)

use aos_gateway::fuzzing::{Decoded, decode_response};
use proptest::prelude::*;

/// Status and body, without what depends on the reads.
fn outcome(d: &Option<Decoded>) -> Option<(u16, Vec<u8>)> {
    d.as_ref().map(|d| (d.status, d.body.clone()))
}

/// `input` read whole, one byte at a time, and in `reads`: all three agree; returns the first.
fn agreed(input: &[u8], head_request: bool, reads: &[usize]) -> Option<Decoded> {
    let whole = decode_response(input, head_request, &[]);
    let bytewise = decode_response(input, head_request, &vec![1; input.len()]);
    let split = decode_response(input, head_request, reads);
    assert_eq!(outcome(&whole), outcome(&bytewise), "byte-at-a-time reads");
    assert_eq!(outcome(&whole), outcome(&split), "reads of {reads:?}");
    if let (Some(w), Some(b), Some(s)) = (&whole, &bytewise, &split) {
        // Fewer bytes per read can only make the connection more reusable (bytes past the
        // body's end count only when they come with it).
        assert!(!w.reusable || (b.reusable && s.reusable));
    }
    whole
}

/// How a built answer frames its body.
#[derive(Debug, Clone)]
enum Framing {
    Length,
    /// Chunk sizes (cycled over the body; zeros skipped), with extensions and trailers.
    Chunked {
        sizes: Vec<usize>,
        extensions: bool,
        trailers: Vec<String>,
        upper_hex: bool,
    },
    /// HTTP/1.0 or no framing header: to the end of the connection.
    Close,
}

/// A well-formed upstream answer, built from parts.
#[derive(Debug, Clone)]
struct Answer {
    interim: Vec<u16>,
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    body: Vec<u8>,
    /// Lines end in a bare LF (tolerated) instead of CRLF.
    bare_lf: bool,
}

impl Answer {
    fn render(&self) -> Vec<u8> {
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let mut out = Vec::new();
        for code in &self.interim {
            out.extend_from_slice(format!("HTTP/1.1 {code} Interim{eol}").as_bytes());
            if *code == 103 {
                out.extend_from_slice(format!("link: </style.css>; rel=preload{eol}").as_bytes());
            }
            out.extend_from_slice(eol.as_bytes());
        }
        out.extend_from_slice(format!("HTTP/1.1 {} Final{eol}", self.status).as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}{eol}").as_bytes());
        }
        match &self.framing {
            Framing::Length => {
                out.extend_from_slice(
                    format!("content-length: {}{eol}{eol}", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Chunked {
                sizes,
                extensions,
                trailers,
                upper_hex,
            } => {
                out.extend_from_slice(format!("transfer-encoding: chunked{eol}{eol}").as_bytes());
                let ext = if *extensions { ";name=value;flag" } else { "" };
                let mut rest = &self.body[..];
                let mut sizes = sizes.iter().filter(|&&n| n > 0).cycle();
                while !rest.is_empty() {
                    let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
                    let size = if *upper_hex {
                        format!("{n:X}")
                    } else {
                        format!("{n:x}")
                    };
                    out.extend_from_slice(format!("{size}{ext}{eol}").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(eol.as_bytes());
                    rest = &rest[n..];
                }
                out.extend_from_slice(format!("0{ext}{eol}").as_bytes());
                for t in trailers {
                    out.extend_from_slice(format!("{t}{eol}").as_bytes());
                }
                out.extend_from_slice(eol.as_bytes());
            }
            Framing::Close => {
                out.extend_from_slice(eol.as_bytes());
                out.extend_from_slice(&self.body);
            }
        }
        out
    }

    /// The body the client reads (none for 204, 304 and answers to HEAD).
    fn expected_body(&self, head_request: bool) -> &[u8] {
        if head_request || self.status == 204 || self.status == 304 {
            &[]
        } else {
            &self.body
        }
    }
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        (
            prop::collection::vec(0usize..40, 1..4),
            any::<bool>(),
            prop::collection::vec("[a-z-]{1,8}: [ -~]{0,12}", 0..3),
            any::<bool>(),
        )
            .prop_map(
                |(sizes, extensions, trailers, upper_hex)| Framing::Chunked {
                    sizes,
                    extensions,
                    trailers,
                    upper_hex,
                }
            ),
        Just(Framing::Close),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop::collection::vec(prop::sample::select(vec![100u16, 102, 103]), 0..3),
        prop::sample::select(vec![200u16, 201, 204, 206, 304, 404, 500, 503]),
        prop::collection::vec(("x-[a-z]{1,8}", "[!-~]([ -~]{0,14}[!-~])?"), 0..4),
        framing(),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(interim, status, headers, framing, body, bare_lf)| Answer {
                interim,
                status,
                headers,
                framing,
                body,
                bare_lf,
            },
        )
}

/// Damage to a well-formed answer.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { at: usize },
}

impl Mutation {
    fn apply(&self, input: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        match *self {
            Mutation::Flip { at, bit } => {
                let i = at % input.len();
                input[i] ^= 1 << (bit % 8);
            }
            Mutation::Insert { at, byte } => input.insert(at % (input.len() + 1), byte),
            Mutation::Delete { at } => {
                input.remove(at % input.len());
            }
            Mutation::Truncate { at } => input.truncate(at % input.len()),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to HTTP framing, more often than others.
    let byte = prop_oneof![
        prop::sample::select(b"\r\n:; 0fF-,\t".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..24, 0..64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..400),
        head_request in any::<bool>(),
        reads in reads(),
    ) {
        agreed(&input, head_request, &reads);
    }

    /// Random bytes after a valid head, so that the body decoders see them.
    #[test]
    fn arbitrary_bodies_never_panic(
        head in prop::sample::select(vec![
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n",
            "HTTP/1.0 200 OK\r\n\r\n",
        ]),
        body in prop::collection::vec(
            prop_oneof![prop::sample::select(b"\r\n;0123456789abcdef: ".to_vec()), any::<u8>()],
            0..300,
        ),
        reads in reads(),
    ) {
        let mut input = head.as_bytes().to_vec();
        input.extend_from_slice(&body);
        agreed(&input, false, &reads);
    }

    #[test]
    fn well_formed_answers_decode_to_their_body(
        answer in answer(),
        head_request in any::<bool>(),
        reads in reads(),
    ) {
        let input = answer.render();
        let got = agreed(&input, head_request, &reads);
        let got = got.unwrap_or_else(|| panic!("refused: {:?}", String::from_utf8_lossy(&input)));
        prop_assert_eq!(got.status, answer.status);
        prop_assert_eq!(&got.body[..], answer.expected_body(head_request));
        // Read whole, a framed body that ends the input leaves the connection reusable.
        let bodiless = head_request || answer.status == 204 || answer.status == 304;
        let framed = !matches!(answer.framing, Framing::Close);
        if framed && !bodiless {
            prop_assert!(got.reusable);
        }
        if !framed && !bodiless {
            prop_assert!(!got.reusable);
        }
    }

    /// `Content-Length: n` then n bytes is exactly those bytes, whatever follows them.
    #[test]
    fn a_sized_body_is_exactly_its_length(
        body in prop::collection::vec(any::<u8>(), 0..300),
        after in prop::collection::vec(any::<u8>(), 0..40),
        reads in reads(),
    ) {
        let mut input = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
            .into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(&after);
        let got = agreed(&input, false, &reads).expect("a valid answer");
        prop_assert_eq!(&got.body, &body);
        prop_assert_eq!(got.reusable, after.is_empty());
        // Cut short, it is a failure.
        if !body.is_empty() {
            let cut = &input[..input.len() - after.len() - 1];
            prop_assert_eq!(agreed(cut, false, &reads), None);
        }
    }

    #[test]
    fn mutated_answers_never_panic_and_do_not_depend_on_reads(
        answer in answer(),
        mutations in prop::collection::vec(mutation(), 1..4),
        head_request in any::<bool>(),
        reads in reads(),
    ) {
        let mut input = answer.render();
        for m in &mutations {
            m.apply(&mut input);
        }
        agreed(&input, head_request, &reads);
    }
}

proptest! {
    // Each case decodes its answer once per byte of it: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Chunked answers split in two at every byte boundary decode like unsplit ones.
    #[test]
    fn chunked_answers_split_anywhere_decode_the_same(
        mut answer in answer(),
        sizes in prop::collection::vec(1usize..20, 1..4),
        extensions in any::<bool>(),
    ) {
        answer.framing = Framing::Chunked {
            sizes,
            extensions,
            trailers: vec!["x-checksum: abc".into()],
            upper_hex: false,
        };
        let input = answer.render();
        let whole = decode_response(&input, false, &[]);
        prop_assert_eq!(
            whole.as_ref().map(|d| &d.body[..]),
            Some(answer.expected_body(false))
        );
        for cut in 1..input.len() {
            let split = decode_response(&input, false, &[cut]);
            prop_assert_eq!(outcome(&split), outcome(&whole), "cut at {}", cut);
        }
    }
}

#[test]
fn truncated_framed_answers_fail() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let sized = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
    for input in [&chunked[..], &sized[..]] {
        assert!(decode_response(input, false, &[]).is_some());
        for end in 0..input.len() {
            assert_eq!(decode_response(&input[..end], false, &[]), None, "{end}");
        }
    }
}

#[test]
fn interim_answers_are_skipped() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let got = agreed(input, false, &[3, 5, 7]).unwrap();
    assert_eq!(
        (got.status, &got.body[..], got.reusable),
        (200, &b"ok"[..], true)
    );
}
