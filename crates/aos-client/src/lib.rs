//! HTTPS client for the aos API, kubeconfig handling, and the watch/reflect/controller runtime.

