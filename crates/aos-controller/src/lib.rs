//! Controllers of the control plane: deployments, replica sets, garbage collection, namespaces.

