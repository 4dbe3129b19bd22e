//! The Kubernetes-style HTTPS API server over the store.

