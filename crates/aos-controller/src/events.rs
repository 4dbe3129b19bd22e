//! An event recorder as Kubernetes' `record.EventRecorder`: `v1` Events about
//! an object, repeats folded into one Event whose `count` grows.
//!
//! Messages are built by the controllers from object names and counts only;
//! nothing here reads object data beyond metadata, so no secret value can
//! reach an Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aos_types::ResourceType;
use serde_json::{Value, json};

use crate::cluster::{Cluster, Patch};
use crate::meta::{self, Clock};

/// Event severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// How many distinct events are remembered for aggregation.
const CACHE_LIMIT: usize = 4096;

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    namespace: String,
    count: i64,
}

/// Records Events through the API.
pub struct Recorder {
    cluster: Arc<dyn Cluster>,
    events: &'static ResourceType,
    component: String,
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing Events of type `events` as `component` (`source.component`).
    pub fn new(
        cluster: Arc<dyn Cluster>,
        events: &'static ResourceType,
        component: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cluster,
            events,
            component: component.to_owned(),
            clock,
            seen: Mutex::default(),
        }
    }

    /// Record an Event about `obj`. Failures are logged, never returned: an
    /// Event is best effort, as in Kubernetes.
    pub async fn publish(&self, obj: &Value, type_: EventType, reason: &str, message: &str) {
        let involved = json!({
            "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
            "namespace": meta::namespace(obj),
            "name": meta::name(obj),
            "uid": meta::uid(obj),
            "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
            "resourceVersion": meta::resource_version(obj),
        });
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            self.component,
            involved["kind"].as_str().unwrap_or_default(),
            meta::namespace(obj).unwrap_or_default(),
            meta::name(obj),
            meta::uid(obj),
            involved["apiVersion"].as_str().unwrap_or_default(),
            type_.as_str(),
            reason,
            message
        );
        let now = meta::format_time(meta::now_seconds(&*self.clock));
        let previous = self
            .seen
            .lock()
            .expect("event cache poisoned")
            .get(&key)
            .cloned();
        if let Some(prev) = previous {
            let patch = json!({
                "count": prev.count + 1,
                "lastTimestamp": now,
                "message": message,
            });
            match self
                .cluster
                .patch(
                    self.events,
                    Some(&prev.namespace),
                    &prev.name,
                    &Patch::Merge(patch),
                    None,
                )
                .await
            {
                Ok(_) => {
                    let mut seen = self.seen.lock().expect("event cache poisoned");
                    if let Some(s) = seen.get_mut(&key) {
                        s.count = prev.count + 1;
                    }
                    return;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(reason, error = %e, "could not update event");
                    return;
                }
            }
        }
        let namespace = meta::namespace(obj).unwrap_or("default").to_owned();
        // Named by the wall clock's nanoseconds, as Kubernetes names them; a taken name moves on by one.
        let mut nanos = jiff::Timestamp::now().as_nanosecond() as u64;
        for _ in 0..5 {
            let name = format!("{}.{nanos:016x}", meta::name(obj));
            let event = json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type_.as_str(),
                "source": {"component": self.component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": self.component,
                "reportingInstance": self.component,
            });
            match self
                .cluster
                .create(self.events, Some(&namespace), &event)
                .await
            {
                Ok(_) => {
                    let mut seen = self.seen.lock().expect("event cache poisoned");
                    if seen.len() >= CACHE_LIMIT {
                        seen.clear();
                    }
                    seen.insert(
                        key,
                        Seen {
                            name,
                            namespace,
                            count: 1,
                        },
                    );
                    return;
                }
                Err(e) if e.is_already_exists() => nanos = nanos.wrapping_add(1),
                Err(e) => {
                    tracing::warn!(reason, error = %e, "could not record event");
                    return;
                }
            }
        }
        tracing::warn!(reason, "could not record event: no free name");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fake::FakeCluster;
    use crate::kinds::tests::EVENTS;
    use crate::meta::ManualClock;

    #[tokio::test]
    async fn repeats_increment_count() {
        let fake = FakeCluster::new();
        let clock = ManualClock::new("2024-05-01T10:00:00Z".parse().unwrap());
        let rec = Recorder::new(
            fake.clone(),
            &EVENTS,
            "deployment-controller",
            clock.clone(),
        );
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7"}});
        rec.publish(
            &obj,
            EventType::Normal,
            "ScalingReplicaSet",
            "Scaled up replica set web-abc from 0 to 3",
        )
        .await;
        clock.advance(std::time::Duration::from_secs(5));
        rec.publish(
            &obj,
            EventType::Normal,
            "ScalingReplicaSet",
            "Scaled up replica set web-abc from 0 to 3",
        )
        .await;
        rec.publish(&obj, EventType::Warning, "Other", "different")
            .await;
        let events = fake.objects(&EVENTS);
        assert_eq!(events.len(), 2);
        let e = events
            .iter()
            .find(|e| e["reason"] == "ScalingReplicaSet")
            .unwrap();
        assert_eq!(e["count"], 2);
        assert_eq!(e["firstTimestamp"], "2024-05-01T10:00:00Z");
        assert_eq!(e["lastTimestamp"], "2024-05-01T10:00:05Z");
        assert_eq!(e["involvedObject"]["kind"], "Deployment");
        assert_eq!(e["involvedObject"]["uid"], "u1");
        assert_eq!(e["source"]["component"], "deployment-controller");
        let name = e["metadata"]["name"].as_str().unwrap();
        let (prefix, hex) = name.split_once('.').unwrap();
        assert_eq!(prefix, "web");
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
