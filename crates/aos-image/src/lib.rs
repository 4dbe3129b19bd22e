//! The OCI image store, the Dockerfile builder, and image import/export.

