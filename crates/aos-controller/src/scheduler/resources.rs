//! A pod's effective request and a node's allocatable resources, as kube-scheduler
//! computes them. Quantities are parsed by `aos_types::quantity` (the project's one
//! parser), rounded up as Kubernetes' `MilliValue()` (CPU) and `Value()` (memory, pods).

use aos_types::quantity::{Quantity, QuantityError};
use serde_json::Value;

/// Parse a JSON quantity: a string, or a number (as YAML `cpu: 1` arrives).
fn quantity(v: &Value) -> Result<Quantity, QuantityError> {
    match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => Err(QuantityError::Format),
    }
}

/// Kubernetes' default CPU request for scoring a container that requests none (millicores).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Kubernetes' default memory request for scoring a container that requests none (bytes).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// CPU and memory amounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amounts {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
}

impl Amounts {
    fn add(&mut self, o: Amounts) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
    }
    fn max(&mut self, o: Amounts) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
    }
}

/// What one pod asks for: the effective request (for fitting) and the request with
/// Kubernetes' defaults for containers that ask for nothing (for scoring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The effective request.
    pub request: Amounts,
    /// The effective request with unset container requests counted as 100m CPU / 200Mi.
    pub non_zero: Amounts,
}

impl PodRequests {
    /// Add another pod's requests (a node's running total).
    pub fn add(&mut self, o: &PodRequests) {
        self.request.add(o.request);
        self.non_zero.add(o.non_zero);
    }
}

fn quantity_at(c: &Value, section: &str, resource: &str) -> Option<i64> {
    let v = c.get("resources")?.get(section)?.get(resource)?;
    match quantity(v) {
        Ok(q) => Some(if resource == "cpu" {
            q.milli_value()
        } else {
            q.value()
        }),
        Err(e) => {
            // Admission rejects these; a stored one counts as nothing rather than failing the pod.
            tracing::warn!(error = %e, resource, "ignoring an unparsable container {section} quantity");
            None
        }
    }
    .map(|v| v.max(0))
}

/// One container's request of `resource`: `requests`, else `limits` (Kubernetes defaults an
/// unset request to the limit).
fn container_request(c: &Value, resource: &str) -> Option<i64> {
    quantity_at(c, "requests", resource).or_else(|| quantity_at(c, "limits", resource))
}

fn container_amounts(c: &Value) -> PodRequests {
    let cpu = container_request(c, "cpu");
    let memory = container_request(c, "memory");
    PodRequests {
        request: Amounts {
            milli_cpu: cpu.unwrap_or(0),
            memory: memory.unwrap_or(0),
        },
        non_zero: Amounts {
            milli_cpu: cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory: memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
        },
    }
}

/// A pod's effective request, as Kubernetes computes it: the sum of its containers (and of
/// its restartable "sidecar" init containers), or the largest need of one ordinary init
/// container (plus the sidecars started before it) if that is more; plus `spec.overhead`.
pub fn pod_requests(pod: &Value) -> PodRequests {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let list = |field: &str| {
        spec.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let mut sum = PodRequests::default();
    for c in list("containers") {
        sum.add(&container_amounts(c));
    }
    let mut sidecars = PodRequests::default();
    let mut init_max = PodRequests::default();
    for c in list("initContainers") {
        let a = container_amounts(c);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars.add(&a);
            // A sidecar keeps running beside the init containers after it.
            init_max.request.max(sidecars.request);
            init_max.non_zero.max(sidecars.non_zero);
        } else {
            let mut need = a;
            need.add(&sidecars);
            init_max.request.max(need.request);
            init_max.non_zero.max(need.non_zero);
        }
    }
    sum.add(&sidecars);
    sum.request.max(init_max.request);
    sum.non_zero.max(init_max.non_zero);
    if let Some(overhead) = spec.get("overhead") {
        let fake = serde_json::json!({"resources": {"requests": overhead}});
        let cpu = quantity_at(&fake, "requests", "cpu").unwrap_or(0);
        let memory = quantity_at(&fake, "requests", "memory").unwrap_or(0);
        let o = Amounts {
            milli_cpu: cpu,
            memory,
        };
        sum.request.add(o);
        sum.non_zero.add(o);
    }
    sum
}

/// A node's allocatable resources (`status.allocatable`, else `status.capacity`, as reported;
/// a resource the node does not report is zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU and memory.
    pub amounts: Amounts,
    /// How many pods fit.
    pub pods: i64,
}

/// Read a node's allocatable resources.
pub fn node_allocatable(node: &Value) -> Allocatable {
    let status = node.get("status").unwrap_or(&Value::Null);
    let read = |resource: &str| -> i64 {
        let v = status
            .pointer(&format!("/allocatable/{resource}"))
            .or_else(|| status.pointer(&format!("/capacity/{resource}")));
        let Some(v) = v else { return 0 };
        match quantity(v) {
            Ok(q) if resource == "cpu" => q.milli_value().max(0),
            Ok(q) => q.value().max(0),
            Err(e) => {
                tracing::warn!(node = crate::meta::name(node), error = %e, resource, "unparsable node allocatable");
                0
            }
        }
    };
    Allocatable {
        amounts: Amounts {
            milli_cpu: read("cpu"),
            memory: read("memory"),
        },
        pods: read("pods"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_from_strings_and_numbers() {
        let c =
            |v: Value| container_request(&json!({"resources": {"requests": {"cpu": v}}}), "cpu");
        assert_eq!(c(json!("250m")), Some(250));
        assert_eq!(c(json!(2)), Some(2000));
        assert_eq!(c(json!(0.5)), Some(500));
        assert_eq!(c(json!("1.0001m")), Some(2), "rounded up");
        assert_eq!(c(json!("bogus")), None);
        assert_eq!(c(json!("-1")), Some(0), "a negative request counts as none");
        let m = container_request(
            &json!({"resources": {"limits": {"memory": "1Gi"}}}),
            "memory",
        );
        assert_eq!(m, Some(1 << 30), "the request defaults to the limit");
    }

    #[test]
    fn effective_request_takes_init_containers_and_sidecars_into_account() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "128Mi"}}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "500m"}}}
            ],
            "overhead": {"cpu": "10m"}
        }});
        let r = pod_requests(&pod);
        // cpu: max(250m + 500m + 100m sidecar, 2 + 100m) + 10m overhead
        assert_eq!(r.request.milli_cpu, 2110);
        // memory: max(512Mi + 0 + 64Mi, 128Mi + 64Mi)
        assert_eq!(r.request.memory, 576 * 1024 * 1024);
        // scoring counts container b's unset memory as 200Mi
        assert_eq!(r.non_zero.memory, (512 + 200 + 64) * 1024 * 1024);
    }

    #[test]
    fn empty_pod_requests_nothing_but_scores_defaults() {
        let r = pod_requests(&json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(r.request, Amounts::default());
        assert_eq!(r.non_zero.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero.memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let n = json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                                  "allocatable": {"cpu": "3500m"}}});
        let a = node_allocatable(&n);
        assert_eq!(a.amounts.milli_cpu, 3500);
        assert_eq!(a.amounts.memory, 8 << 30);
        assert_eq!(a.pods, 110);
    }
}
