//! Fault injection: a fixed delay, then an abort, each for a fraction of requests.

use std::time::Duration;

use http::StatusCode;

use crate::plan::FaultPlan;

/// The delay and the abort status for one request. Both draws are made at once: they are
/// independent, as in Envoy's fault filter.
pub(crate) fn draw(fault: &FaultPlan) -> (Option<Duration>, Option<StatusCode>) {
    let delay = fault
        .delay
        .filter(|(_, fraction)| *fraction >= 1.0 || rand::random::<f64>() < *fraction)
        .map(|(d, _)| d);
    let abort = fault
        .abort
        .filter(|(_, fraction)| *fraction >= 1.0 || rand::random::<f64>() < *fraction)
        .map(|(status, _)| status);
    (delay, abort)
}
