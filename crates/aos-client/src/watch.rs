//! Watch streams: newline-delimited JSON events, parsed as the bytes arrive.

use bytes::{Buf as _, BytesMut};
use futures::stream::{self, BoxStream, StreamExt as _};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use crate::{ClientError, Status};

/// Largest single watch event accepted (the server caps objects at 3 MiB).
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One watch event.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The object (a `Status` for `ERROR`).
    pub object: Value,
}

impl WatchEvent {
    /// For an `ERROR` event, the `Status` it carries.
    pub fn error_status(&self) -> Option<Status> {
        (self.type_ == "ERROR").then(|| Status::from_value(&self.object))
    }

    /// `object.metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
    }
}

struct State {
    body: Incoming,
    buf: BytesMut,
    done: bool,
}

/// Turn a streaming response body into a stream of events. The stream ends when
/// the server closes the response; a broken line or connection yields one `Err`.
pub(crate) fn event_stream(body: Incoming) -> BoxStream<'static, Result<WatchEvent, ClientError>> {
    let state = State {
        body,
        buf: BytesMut::new(),
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(pos) = st.buf.iter().position(|&b| b == b'\n') {
                let line = st.buf.split_to(pos + 1);
                let line = &line[..pos];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = serde_json::from_slice::<WatchEvent>(line)
                    .map_err(|e| ClientError::Decode(format!("watch event: {e}")));
                if event.is_err() {
                    st.done = true;
                }
                return Some((event, st));
            }
            if st.buf.len() > MAX_EVENT_BYTES {
                st.done = true;
                return Some((Err(ClientError::Decode("watch event too large".into())), st));
            }
            match st.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            st.buf.extend_from_slice(chunk);
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((
                        Err(ClientError::Transport(format!("watch stream: {e}"))),
                        st,
                    ));
                }
                None => {
                    st.done = true;
                    // A final event without a trailing newline.
                    let rest = st.buf.split();
                    if rest.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let event = serde_json::from_slice::<WatchEvent>(&rest)
                        .map_err(|e| ClientError::Decode(format!("watch event: {e}")));
                    return Some((event, st));
                }
            }
        }
    })
    .boxed()
}
