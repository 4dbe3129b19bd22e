//! [`Cluster`] over the HTTPS API client.

use aos_client::{Client, ClientError};
use aos_types::ResourceType;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;

use super::{
    Cluster, ClusterError, DeleteParams, ListParams, ObjectList, Patch, WatchEvent, WatchEventType,
    WatchStream,
};

/// Server-side timeout of one watch request; the informer resumes from the last resourceVersion.
const WATCH_TIMEOUT_SECONDS: u32 = 300;

impl From<ClientError> for ClusterError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(s) => ClusterError::Api {
                code: s.code,
                reason: s.reason,
                message: s.message,
            },
            other => ClusterError::Transport(other.to_string()),
        }
    }
}

fn list_params(p: &ListParams) -> aos_client::ListParams {
    aos_client::ListParams {
        label_selector: p.label_selector.clone(),
        field_selector: p.field_selector.clone(),
        ..Default::default()
    }
}

#[async_trait]
impl Cluster for Client {
    async fn get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClusterError> {
        Ok(Client::get(self, rt, ns, name).await?)
    }

    async fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClusterError> {
        let mut p = list_params(params);
        let mut items = Vec::new();
        // Follow `continue` tokens, should the server page.
        loop {
            let page = Client::list(self, rt, ns, &p).await?;
            items.extend(page.items);
            match page.continue_token {
                Some(t) => p.continue_token = Some(t),
                None => {
                    return Ok(ObjectList {
                        items,
                        resource_version: page.resource_version,
                    });
                }
            }
        }
    }

    async fn watch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream, ClusterError> {
        let p = aos_client::ListParams {
            timeout_seconds: Some(WATCH_TIMEOUT_SECONDS),
            bookmarks: true,
            ..list_params(params)
        };
        let stream = Client::watch(self, rt, ns, &p, resource_version).await?;
        Ok(stream
            .filter_map(|item| {
                futures::future::ready(match item {
                    Err(e) => Some(Err(ClusterError::from(e))),
                    Ok(ev) => match WatchEventType::parse(&ev.type_) {
                        Some(type_) => Some(Ok(WatchEvent {
                            type_,
                            object: ev.object,
                        })),
                        None => {
                            tracing::warn!(event_type = %ev.type_, "unknown watch event type");
                            None
                        }
                    },
                })
            })
            .boxed())
    }

    async fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        Ok(Client::create(self, rt, ns, obj).await?.value)
    }

    async fn replace(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        Ok(Client::replace(self, rt, ns, name, obj).await?.value)
    }

    async fn replace_status(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        Ok(Client::replace_status(self, rt, ns, name, obj).await?.value)
    }

    async fn patch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        patch: &Patch,
        subresource: Option<&str>,
    ) -> Result<Value, ClusterError> {
        let patch = match patch {
            Patch::Merge(v) => aos_client::Patch::Merge(v.clone()),
            Patch::Strategic(v) => aos_client::Patch::Strategic(v.clone()),
            Patch::Json(v) => aos_client::Patch::Json(v.clone()),
        };
        Ok(Client::patch(self, rt, ns, name, patch, subresource)
            .await?
            .value)
    }

    async fn create_subresource(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        subresource: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        let path = aos_client::resource_path(rt, ns, Some(name), Some(subresource));
        let body = serde_json::to_vec(obj).map_err(|e| ClusterError::Transport(e.to_string()))?;
        let answer = Client::raw(self, http::Method::POST, &path, Some(body)).await?;
        if answer.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer)
            .map_err(|e| ClusterError::Transport(format!("decoding the answer of {path}: {e}")))
    }

    async fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), ClusterError> {
        let opts = aos_client::DeleteParams {
            propagation_policy: params.propagation_policy.map(|p| p.as_str().to_owned()),
            grace_period_seconds: params.grace_period_seconds,
            precondition_uid: params.precondition_uid.clone(),
            precondition_resource_version: params.precondition_resource_version.clone(),
        };
        Client::delete(self, rt, ns, name, &opts).await?;
        Ok(())
    }

    async fn finalize_namespace(&self, name: &str, obj: &Value) -> Result<Value, ClusterError> {
        Ok(Client::finalize_namespace(self, name, obj).await?.value)
    }
}
