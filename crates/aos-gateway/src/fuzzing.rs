//! Entry points for the fuzz targets (`fuzz/`) and the robustness tests: the parsers of what
//! upstreams send, reachable without a socket. Not a stable interface.

use bytes::BytesMut;

use crate::proxy::h1::{Step, decode, parse_head};

/// Parse `input` as the start of an upstream's answer, as the HTTP/1.1 client does: interim
/// heads skipped, then the final head or a need for more bytes. Returns whether a final head
/// was parsed; never panics.
pub fn parse_response_head(input: &[u8], head_request: bool) -> bool {
    let mut buf = BytesMut::from(input);
    matches!(parse_head(&mut buf, head_request), Ok(Some(_)))
}

/// An upstream answer as the HTTP/1.1 client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The final answer's status code (interim answers skipped).
    pub status: u16,
    /// The body, decoded from its framing (length, chunked or to the end of the connection).
    pub body: Vec<u8>,
    /// Whether the connection would go back to the pool: kept alive, and nothing read past the
    /// body's end when it ended. (This one depends on the reads: bytes after the body count
    /// only if they came in the read that ended it.)
    pub reusable: bool,
}

/// Read `input` as the whole of what an upstream sent on a connection (its end follows), the
/// way the HTTP/1.1 client does: the head parsed after every read, then the body decoded,
/// reading only when the decoder asks for more. `reads` are the sizes of the reads the bytes
/// arrive in (zeros ignored; what is left comes in one last read). `head_request`: the answer
/// is to a `HEAD` request. `None` when the client would fail the exchange or the body (the
/// gateway answers 502); never panics.
pub fn decode_response(input: &[u8], head_request: bool, reads: &[usize]) -> Option<Decoded> {
    let mut reads = Reads {
        rest: input,
        sizes: reads.iter(),
    };
    let mut buf = BytesMut::new();
    // As `exchange`: parse whenever something was read, read when the head is not whole.
    let head = loop {
        if !buf.is_empty()
            && let Some(head) = parse_head(&mut buf, head_request).ok()?
        {
            break head;
        }
        buf.extend_from_slice(reads.next()?);
    };
    // As the response body's `poll_frame`.
    let mut framing = head.framing;
    let mut body = Vec::new();
    let mut eof = false;
    let reusable = loop {
        match decode(&mut framing, &mut buf, eof).ok()? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::Last(data) => {
                body.extend_from_slice(&data);
                break head.keep_alive && buf.is_empty();
            }
            Step::End => break head.keep_alive && buf.is_empty(),
            Step::More => match reads.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => eof = true,
            },
        }
    };
    Some(Decoded {
        status: head.status.as_u16(),
        body,
        reusable,
    })
}

/// The input cut into reads.
struct Reads<'a> {
    rest: &'a [u8],
    sizes: std::slice::Iter<'a, usize>,
}

impl<'a> Iterator for Reads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = loop {
            match self.sizes.next() {
                Some(0) => continue,
                Some(&n) => break n.min(self.rest.len()),
                None => break self.rest.len(),
            }
        };
        let (piece, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(piece)
    }
}
