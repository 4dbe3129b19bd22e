//! Container logs in the CRI format, one file per container attempt:
//! `DATA_DIR/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log`, each line
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>` (`P` for a partial line that continues
//! in the next entry). Files are capped and rotated (`N.log`, `N.log.1`, ... oldest dropped).
//!
//! [`LogWriter`] is used by the shim, which owns the containers' output pipes;
//! [`read_logs`] is what the API server's `pods/{name}/log` uses.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::Stream;

/// The size at which a log file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// How many files are kept per attempt (the live one included).
pub const DEFAULT_MAX_FILES: usize = 3;
/// The longest entry; a longer line is split into partial entries.
pub const MAX_LINE: usize = 16 * 1024;

/// The directory of a pod on the node: `DATA_DIR/pods/<namespace>_<name>_<uid>`.
pub fn pod_dir(data_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// The log file of one attempt of a container.
pub fn log_path(pod_dir: &Path, container: &str, attempt: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{attempt}.log"))
}

/// A log problem.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No log for this container (yet, or any more).
    #[error("container {container:?} has no {which}log")]
    NotFound {
        /// The container.
        container: String,
        /// `previous ` or empty.
        which: &'static str,
    },
}

/// Writes one attempt's CRI log with rotation.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
    /// Unterminated output per stream (stdout, stderr).
    pending: [Vec<u8>; 2],
}

/// Which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream2 {
    /// stdout.
    Stdout = 0,
    /// stderr.
    Stderr = 1,
}

impl Stream2 {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

fn now_nano() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

impl LogWriter {
    /// Open (append) `path` with the default caps.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::with_limits(path, DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES)
    }

    /// Open with explicit caps.
    pub fn with_limits(path: &Path, max_bytes: u64, max_files: usize) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: usize| {
            if i == 0 {
                self.path.clone()
            } else {
                PathBuf::from(format!("{}.{i}", self.path.display()))
            }
        };
        let last = self.max_files - 1;
        if last == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(name(last));
        for i in (0..last).rev() {
            let from = name(i);
            if from.exists() {
                std::fs::rename(&from, name(i + 1))?;
            }
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn entry(&mut self, stream: Stream2, tag: &str, text: &[u8]) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(now_nano().as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.name().as_bytes());
        line.push(b' ');
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Add output of `stream`; complete lines are written at once.
    pub fn write(&mut self, stream: Stream2, data: &[u8]) -> Result<(), LogError> {
        let idx = stream as usize;
        self.pending[idx].extend_from_slice(data);
        let result = (|| -> std::io::Result<()> {
            loop {
                let buf = &self.pending[idx];
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.pending[idx].drain(..=pos).collect();
                    let text = line[..line.len() - 1]
                        .strip_suffix(b"\r")
                        .unwrap_or(&line[..line.len() - 1])
                        .to_vec();
                    for (i, chunk) in text.chunks(MAX_LINE).enumerate() {
                        let last = (i + 1) * MAX_LINE >= text.len();
                        self.entry(stream, if last { "F" } else { "P" }, chunk)?;
                    }
                    if text.is_empty() {
                        self.entry(stream, "F", b"")?;
                    }
                } else if buf.len() >= MAX_LINE {
                    let chunk: Vec<u8> = self.pending[idx].drain(..MAX_LINE).collect();
                    self.entry(stream, "P", &chunk)?;
                } else {
                    return Ok(());
                }
            }
        })();
        result.map_err(|source| LogError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Write what is left of unterminated lines (the container ended).
    pub fn flush(&mut self) -> Result<(), LogError> {
        for stream in [Stream2::Stdout, Stream2::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, "F", &rest)
                    .map_err(|source| LogError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}

/// One parsed log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When it was written.
    pub time: jiff::Timestamp,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, with its newline for a full line.
    pub text: String,
}

/// Parse one CRI log line.
pub fn parse_line(line: &str) -> Option<LogEntry> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.parse().ok()?;
    let stream = parts.next()?.to_owned();
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    let text = if tag == "P" {
        text.to_owned()
    } else {
        format!("{text}\n")
    };
    Some(LogEntry { time, stream, text })
}

/// What to read (the options of `pods/{name}/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep reading as the container writes (`follow`).
    pub follow: bool,
    /// The previous attempt instead of the current one (`previous`).
    pub previous: bool,
    /// Only the last N lines (`tailLines`).
    pub tail: Option<usize>,
    /// Only entries at or after this time (`sinceTime`, or now minus `sinceSeconds`).
    pub since: Option<jiff::Timestamp>,
    /// Prefix each line with its RFC 3339 time (`timestamps`).
    pub timestamps: bool,
}

/// The attempts that have a log, ascending.
fn attempts(container_dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(container_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

fn render(e: &LogEntry, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}", e.time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ"), e.text)
    } else {
        e.text.clone()
    }
}

/// The log of `container` of the pod in `pod_dir` (see [`pod_dir`]) as a stream of text
/// chunks (lines with their newline). With `follow`, new lines of the current attempt keep
/// coming (polled every 200 ms, across rotation) until the reader drops the stream.
pub fn read_logs(
    pod_dir: &Path,
    container: &str,
    opts: &LogOptions,
) -> Result<impl Stream<Item = Result<String, LogError>> + Send + 'static, LogError> {
    let dir = pod_dir.join(container);
    let all = attempts(&dir);
    let attempt = if opts.previous {
        all.iter().rev().nth(1).copied()
    } else {
        all.last().copied()
    };
    let Some(attempt) = attempt else {
        return Err(LogError::NotFound {
            container: container.to_owned(),
            which: if opts.previous { "previous " } else { "" },
        });
    };
    let path = log_path(pod_dir, container, attempt);
    // Rotated files first, oldest first.
    let mut files: Vec<PathBuf> = (1..16)
        .rev()
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.push(path.clone());
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut offset = 0u64;
    for f in &files {
        let file = File::open(f).map_err(|source| LogError::Io {
            path: f.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|source| LogError::Io {
                path: f.clone(),
                source,
            })?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            if *f == path {
                offset += n as u64;
            }
            if let Some(e) = parse_line(line.trim_end_matches('\n'))
                && opts.since.is_none_or(|s| e.time >= s)
            {
                entries.push(e);
            }
        }
    }
    if let Some(n) = opts.tail {
        let full_lines: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.text.ends_with('\n'))
            .map(|(i, _)| i)
            .collect();
        if full_lines.len() > n {
            let cut = if n == 0 {
                entries.len()
            } else {
                full_lines[full_lines.len() - n - 1] + 1
            };
            entries.drain(..cut);
        }
    }
    let timestamps = opts.timestamps;
    let initial: Vec<Result<String, LogError>> =
        entries.iter().map(|e| Ok(render(e, timestamps))).collect();
    let head = futures::stream::iter(initial);
    let follow = opts.follow && !opts.previous;
    let tail = futures::stream::unfold(
        (follow, path, offset, String::new()),
        move |(follow, path, mut offset, mut carry)| async move {
            if !follow {
                return None;
            }
            loop {
                let read = (|| -> std::io::Result<Option<String>> {
                    let mut f = File::open(&path)?;
                    let len = f.metadata()?.len();
                    if len < offset {
                        // Rotated: start the new file from its beginning.
                        offset = 0;
                    }
                    if len == offset {
                        return Ok(None);
                    }
                    f.seek(SeekFrom::Start(offset))?;
                    let mut reader = BufReader::new(f);
                    let mut out = String::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        let n = reader.read_line(&mut line)?;
                        if n == 0 {
                            break;
                        }
                        if !line.ends_with('\n') {
                            carry.push_str(&line);
                            offset += n as u64;
                            break;
                        }
                        offset += n as u64;
                        let full = std::mem::take(&mut carry) + line.trim_end_matches('\n');
                        if let Some(e) = parse_line(&full) {
                            out.push_str(&render(&e, timestamps));
                        }
                    }
                    Ok(Some(out))
                })();
                match read {
                    Ok(Some(text)) if !text.is_empty() => {
                        return Some((Ok(text), (follow, path, offset, carry)));
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    Err(source) => {
                        let err = LogError::Io {
                            path: path.clone(),
                            source,
                        };
                        return Some((Err(err), (false, path, offset, carry)));
                    }
                }
            }
        },
    );
    Ok(futures::StreamExt::chain(head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[test]
    fn writes_cri_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app", 0);
        let mut w = LogWriter::with_limits(&path, 200, 3).unwrap();
        w.write(Stream2::Stdout, b"hello\nwor").unwrap();
        w.write(Stream2::Stderr, b"oops\n").unwrap();
        w.write(Stream2::Stdout, b"ld\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" stdout F hello"), "{}", lines[0]);
        assert!(lines[1].ends_with(" stderr F oops"));
        assert!(lines[2].ends_with(" stdout F world"));
        assert!(parse_line(lines[0]).unwrap().time > jiff::Timestamp::UNIX_EPOCH);
        for i in 0..20 {
            w.write(Stream2::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.write(Stream2::Stdout, b"no newline").unwrap();
        w.flush().unwrap();
        assert!(PathBuf::from(format!("{}.1", path.display())).exists());
        assert!(PathBuf::from(format!("{}.2", path.display())).exists());
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
    }

    #[test]
    fn long_lines_are_split_into_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app", 0);
        let mut w = LogWriter::open(&path).unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        w.write(Stream2::Stdout, &long).unwrap();
        w.write(Stream2::Stdout, b"\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let tags: Vec<&str> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, vec!["P", "F"]);
    }

    #[tokio::test]
    async fn reads_tail_previous_and_follows() {
        let dir = tempfile::tempdir().unwrap();
        let mut w0 = LogWriter::open(&log_path(dir.path(), "app", 0)).unwrap();
        w0.write(Stream2::Stdout, b"old 1\nold 2\n").unwrap();
        let mut w1 = LogWriter::open(&log_path(dir.path(), "app", 1)).unwrap();
        w1.write(Stream2::Stdout, b"a\nb\nc\n").unwrap();

        let all: Vec<String> = read_logs(dir.path(), "app", &LogOptions::default())
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(all.concat(), "a\nb\nc\n");
        let tail: Vec<String> = read_logs(
            dir.path(),
            "app",
            &LogOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(tail.concat(), "b\nc\n");
        let prev: Vec<String> = read_logs(
            dir.path(),
            "app",
            &LogOptions {
                previous: true,
                ..Default::default()
            },
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(prev.concat(), "old 1\nold 2\n");
        assert!(read_logs(dir.path(), "nope", &LogOptions::default()).is_err());

        let mut follow = Box::pin(
            read_logs(
                dir.path(),
                "app",
                &LogOptions {
                    follow: true,
                    tail: Some(0),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        w1.write(Stream2::Stdout, b"d\n").unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), follow.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next, "d\n");
    }
}
