//! Reading manifests the way `kubectl -f` does: files, directories (recursively, sorted) and
//! stdin, parsed into typed documents that know where they came from for error messages.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use aos_types::ResourceType;
use serde_json::Value;

/// One input file, as the user named it.
pub(crate) struct Source {
    /// The name printed in messages: the path as given (or as found under a directory), `-` for stdin.
    pub(crate) name: String,
    /// The file's text.
    pub(crate) text: String,
}

/// Reading a `-f` argument failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The path does not exist.
    #[error("the path \"{0}\" does not exist")]
    Missing(String),
    /// The path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A directory held no manifest.
    #[error("no manifests (*.yaml, *.yml, *.json) found in directory {0}")]
    EmptyDir(String),
}

/// Read every `-f` argument: `-` is stdin, a directory contributes its `*.yaml`, `*.yml` and
/// `*.json` files recursively in sorted order, a file is read as is.
pub(crate) fn read_sources(paths: &[String]) -> Result<Vec<Source>, SourceError> {
    let mut sources = Vec::new();
    for arg in paths {
        if arg == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| SourceError::Read {
                    path: "-".into(),
                    source,
                })?;
            sources.push(Source {
                name: "-".into(),
                text,
            });
            continue;
        }
        let path = Path::new(arg);
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::Missing(arg.clone()),
            _ => SourceError::Read {
                path: arg.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_dir(path, &mut files).map_err(|source| SourceError::Read {
                path: arg.clone(),
                source,
            })?;
            if files.is_empty() {
                return Err(SourceError::EmptyDir(arg.clone()));
            }
            for file in files {
                let name = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|source| SourceError::Read {
                    path: name.clone(),
                    source,
                })?;
                sources.push(Source { name, text });
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
                path: arg.clone(),
                source,
            })?;
            sources.push(Source {
                name: arg.clone(),
                text,
            });
        }
    }
    Ok(sources)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_dir(&entry, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Where a document came from: `deployment.yaml: document 1 (Deployment agent-os/agent-registry)`.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    /// The source name.
    pub(crate) file: String,
    /// 1-based document number within the file.
    pub(crate) document: usize,
    /// Kind, when known.
    pub(crate) kind: Option<String>,
    /// `namespace/name` or `name`, when known.
    pub(crate) object: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        match (&self.kind, &self.object) {
            (Some(kind), Some(object)) => write!(f, " ({kind} {object})"),
            (Some(kind), None) => write!(f, " ({kind})"),
            _ => Ok(()),
        }
    }
}

/// One manifest document, resolved to its resource type, namespace filled in.
pub(crate) struct Item {
    /// Where it came from.
    pub(crate) origin: Origin,
    /// Its type.
    pub(crate) rt: &'static ResourceType,
    /// The namespace it goes to (`None` for cluster-scoped kinds).
    pub(crate) namespace: Option<String>,
    /// `metadata.name`.
    pub(crate) name: String,
    /// The object as written, with `metadata.namespace` set for namespaced kinds.
    pub(crate) object: Value,
}

/// Parse every source into items. Problems (bad YAML, unknown kind, missing name, namespace
/// mismatch) are returned as error lines (without the `error: ` prefix), in order, next to
/// the items that did parse, so the caller can go on with the others.
pub(crate) fn parse_items(
    sources: &[Source],
    namespace_flag: Option<&str>,
) -> (Vec<Item>, Vec<String>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        let documents = match aos_types::parse_manifests(&source.name, &source.text) {
            Ok(documents) => documents,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        for doc in documents {
            match resolve(&source.name, doc.index + 1, doc.value, namespace_flag) {
                Ok(item) => items.push(item),
                Err(e) => errors.push(e),
            }
        }
    }
    (items, errors)
}

fn resolve(
    file: &str,
    document: usize,
    mut object: Value,
    namespace_flag: Option<&str>,
) -> Result<Item, String> {
    let mut origin = Origin {
        file: file.to_string(),
        document,
        kind: None,
        object: None,
    };
    if !object.is_object() {
        return Err(format!(
            "{origin}: a manifest must be a mapping with apiVersion, kind and metadata"
        ));
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() {
        return Err(format!(
            "{origin}: apiVersion: Required value: apiVersion must be set"
        ));
    }
    if kind.is_empty() {
        return Err(format!("{origin}: kind: Required value: kind must be set"));
    }
    let Some(rt) = aos_types::resource::by_kind(&api_version, &kind) else {
        return Err(format!(
            "{origin}: unknown kind \"{kind}\" in apiVersion \"{api_version}\""
        ));
    };
    origin.kind = Some(kind);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let in_file = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let namespace = if rt.namespaced {
        let namespace = match (&in_file, namespace_flag) {
            (Some(file_ns), Some(flag)) if file_ns != flag => {
                return Err(format!(
                    "{origin}: the namespace from the provided object \"{file_ns}\" does not match the namespace \"{flag}\"; pass --namespace={file_ns} or remove metadata.namespace"
                ));
            }
            (Some(ns), _) => ns.clone(),
            (None, Some(flag)) => flag.to_string(),
            (None, None) => "default".to_string(),
        };
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(namespace.clone()));
        }
        Some(namespace)
    } else {
        None
    };
    origin.object = match (&namespace, name.is_empty()) {
        (_, true) => None,
        (Some(ns), false) => Some(format!("{ns}/{name}")),
        (None, false) => Some(name.clone()),
    };
    if name.is_empty() {
        return Err(format!(
            "{origin}: metadata.name: Required value: name is required"
        ));
    }
    Ok(Item {
        origin,
        rt,
        namespace,
        name,
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_read_recursively_in_sorted_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("b/nested")).unwrap();
        for (path, text) in [
            ("c.yaml", "c"),
            ("a.json", "a"),
            ("b/nested/x.yml", "x"),
            ("b/readme.md", "no"),
            ("b/a.yaml", "ba"),
        ] {
            std::fs::write(root.join(path), text).unwrap();
        }
        let arg = root.display().to_string();
        let sources = read_sources(std::slice::from_ref(&arg)).unwrap();
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["a", "ba", "x", "c"]);
        assert_eq!(sources[0].name, format!("{arg}/a.json"));
    }

    #[test]
    fn missing_paths_and_empty_directories_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.yaml").display().to_string();
        assert_eq!(
            read_sources(std::slice::from_ref(&missing))
                .err()
                .unwrap()
                .to_string(),
            format!("the path \"{missing}\" does not exist")
        );
        let empty = tmp.path().display().to_string();
        assert!(matches!(
            read_sources(&[empty]),
            Err(SourceError::EmptyDir(_))
        ));
    }

    #[test]
    fn origin_names_file_document_kind_and_object() {
        let mut origin = Origin {
            file: "d.yaml".into(),
            document: 2,
            kind: None,
            object: None,
        };
        assert_eq!(origin.to_string(), "d.yaml: document 2");
        origin.kind = Some("Deployment".into());
        assert_eq!(origin.to_string(), "d.yaml: document 2 (Deployment)");
        origin.object = Some("agent-os/agent-registry".into());
        assert_eq!(
            origin.to_string(),
            "d.yaml: document 2 (Deployment agent-os/agent-registry)"
        );
    }
}
