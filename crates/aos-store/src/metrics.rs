//! Store metrics: atomic counters and histograms, rendered as Prometheus text.
//!
//! The API server appends [`StoreMetrics::render`] to its `/metrics` answer.
//! Metric names follow `aos_store_<name>_<unit>[_total]`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Kinds of write, the `op` label of `aos_store_writes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl WriteOp {
    const ALL: [WriteOp; 3] = [WriteOp::Create, WriteOp::Update, WriteOp::Delete];

    fn label(self) -> &'static str {
        match self {
            WriteOp::Create => "create",
            WriteOp::Update => "update",
            WriteOp::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        match self {
            WriteOp::Create => 0,
            WriteOp::Update => 1,
            WriteOp::Delete => 2,
        }
    }
}

/// A fixed-bucket histogram with atomic counters.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: Vec<AtomicU64>,
    /// Sum of observations in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (sorted ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int conversion; observations are never negative.
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum());
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

const COMMIT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Counters of one store. Cheap to update from the writer thread, read by
/// [`StoreMetrics::render`].
#[derive(Debug)]
pub struct StoreMetrics {
    writes: [AtomicU64; 3],
    rejected: AtomicU64,
    failed: AtomicU64,
    commit_seconds: Histogram,
    batch_size: Histogram,
    watchers: AtomicI64,
    revision: AtomicI64,
    compacted: AtomicI64,
    compacted_rows: AtomicU64,
    db_path: Option<PathBuf>,
}

impl StoreMetrics {
    /// Empty metrics; `db_path` (if any) is measured for `aos_store_db_size_bytes`
    /// together with its `-wal` file.
    pub fn new(db_path: Option<PathBuf>) -> Self {
        StoreMetrics {
            writes: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            commit_seconds: Histogram::new(COMMIT_BOUNDS),
            batch_size: Histogram::new(BATCH_BOUNDS),
            watchers: AtomicI64::new(0),
            revision: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
            compacted_rows: AtomicU64::new(0),
            db_path,
        }
    }

    /// Count one committed write.
    pub fn write_committed(&self, op: WriteOp) {
        self.writes[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one write refused by a precondition (exists, not found, conflict, too large).
    pub fn write_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Count writes that failed in the backend (nothing committed).
    pub fn writes_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// Record one committed batch: its number of requests and commit latency.
    pub fn batch_committed(&self, size: usize, elapsed: Duration) {
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Set the current revision.
    pub fn set_revision(&self, revision: i64) {
        self.revision.store(revision, Ordering::Relaxed);
    }

    /// Record a compaction at `revision` that removed `rows` history rows.
    pub fn compacted(&self, revision: i64, rows: u64) {
        self.compacted.store(revision, Ordering::Relaxed);
        self.compacted_rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// A watcher started.
    pub fn watcher_started(&self) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
    }

    /// A watcher ended.
    pub fn watcher_ended(&self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Number of open watch streams.
    pub fn watchers(&self) -> i64 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Committed writes of one kind.
    pub fn writes(&self, op: WriteOp) -> u64 {
        self.writes[op.index()].load(Ordering::Relaxed)
    }

    /// The batch-size histogram (number of write requests per transaction).
    pub fn batch_sizes(&self) -> &Histogram {
        &self.batch_size
    }

    /// The commit-latency histogram, in seconds.
    pub fn commit_durations(&self) -> &Histogram {
        &self.commit_seconds
    }

    /// Size of the database and its write-ahead log on disk, in bytes.
    pub fn db_size_bytes(&self) -> u64 {
        let Some(path) = &self.db_path else { return 0 };
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        [path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Prometheus text exposition (format 0.0.4) of every store metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP aos_store_writes_total Writes committed to the store, by operation."
        );
        let _ = writeln!(out, "# TYPE aos_store_writes_total counter");
        for op in WriteOp::ALL {
            let _ = writeln!(
                out,
                "aos_store_writes_total{{op=\"{}\"}} {}",
                op.label(),
                self.writes(op)
            );
        }
        let _ = writeln!(
            out,
            "# HELP aos_store_writes_rejected_total Writes refused by a precondition (exists, not found, conflict, too large)."
        );
        let _ = writeln!(out, "# TYPE aos_store_writes_rejected_total counter");
        let _ = writeln!(
            out,
            "aos_store_writes_rejected_total {}",
            self.rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aos_store_writes_failed_total Writes that failed in the backend."
        );
        let _ = writeln!(out, "# TYPE aos_store_writes_failed_total counter");
        let _ = writeln!(
            out,
            "aos_store_writes_failed_total {}",
            self.failed.load(Ordering::Relaxed)
        );
        self.commit_seconds.render(
            &mut out,
            "aos_store_commit_duration_seconds",
            "Time to apply and durably commit one batch of writes.",
        );
        self.batch_size.render(
            &mut out,
            "aos_store_batch_size",
            "Write requests committed per transaction (group commit).",
        );
        let _ = writeln!(
            out,
            "# HELP aos_store_db_size_bytes Size of the database and its write-ahead log."
        );
        let _ = writeln!(out, "# TYPE aos_store_db_size_bytes gauge");
        let _ = writeln!(out, "aos_store_db_size_bytes {}", self.db_size_bytes());
        let _ = writeln!(out, "# HELP aos_store_watchers Open watch streams.");
        let _ = writeln!(out, "# TYPE aos_store_watchers gauge");
        let _ = writeln!(out, "aos_store_watchers {}", self.watchers());
        let _ = writeln!(
            out,
            "# HELP aos_store_revision The store's current revision."
        );
        let _ = writeln!(out, "# TYPE aos_store_revision gauge");
        let _ = writeln!(
            out,
            "aos_store_revision {}",
            self.revision.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aos_store_compacted_revision The last compaction point."
        );
        let _ = writeln!(out, "# TYPE aos_store_compacted_revision gauge");
        let _ = writeln!(
            out,
            "aos_store_compacted_revision {}",
            self.compacted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aos_store_compacted_rows_total History rows removed by compaction."
        );
        let _ = writeln!(out, "# TYPE aos_store_compacted_rows_total counter");
        let _ = writeln!(
            out,
            "aos_store_compacted_rows_total {}",
            self.compacted_rows.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
        assert!((h.sum() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn render_has_required_names() {
        let m = StoreMetrics::new(None);
        m.write_committed(WriteOp::Create);
        m.batch_committed(3, Duration::from_millis(2));
        m.watcher_started();
        let text = m.render();
        for needle in [
            "aos_store_writes_total{op=\"create\"} 1",
            "aos_store_commit_duration_seconds_bucket{le=\"0.0025\"} 1",
            "aos_store_commit_duration_seconds_count 1",
            "aos_store_db_size_bytes 0",
            "aos_store_watchers 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
