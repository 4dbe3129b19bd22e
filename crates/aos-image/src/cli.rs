//! `aos image ...`: the clap command tree and its runner, for the `aos` binary to mount with
//! `#[command(subcommand)] Image(aos_image::cli::ImageCommand)` in its command enum and
//! `Command::Image(cmd) => aos_image::cli::run(cmd, &data_dir)` in its dispatch.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::archive::{self, ExportFormat, ImportOptions};
use crate::build::{self, BuildEvent, BuildOptions};
use crate::oci::{self, Platform};
use crate::store::ImageStore;

/// Manage images: build, import, export, list, inspect, remove, tag, prune.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile.
    Build {
        /// Name and tag for the image (name:tag); may be repeated.
        #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
        tags: Vec<String>,
        /// The Dockerfile (default: DIR/Dockerfile).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// A build-time variable (KEY=VALUE, or KEY to take it from the environment).
        #[arg(long = "build-arg", value_name = "KEY=VALUE")]
        build_args: Vec<String>,
        /// Target platform (os/arch[/variant]); repeat for a multi-platform index.
        #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
        platforms: Vec<String>,
        /// Build this stage instead of the last.
        #[arg(long)]
        target: Option<String>,
        /// The build context directory.
        #[arg(value_name = "DIR")]
        context: PathBuf,
    },
    /// Import an OCI image-layout or `docker save` archive (gzipped or not).
    Import {
        /// The archive; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also tag the imported image as NAME:TAG.
        #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
        tag: Option<String>,
    },
    /// Export an image as an archive.
    Export {
        /// The image.
        #[arg(value_name = "REF")]
        reference: String,
        /// The output file.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// The archive format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Oci)]
        format: ExportFormat,
        /// For the docker format: which platform of a multi-platform image.
        #[arg(long)]
        platform: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Print only digests.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show an image as JSON.
    Inspect {
        /// The image.
        #[arg(value_name = "REF")]
        reference: String,
        /// Resolve for this platform (default: the host's).
        #[arg(long)]
        platform: Option<String>,
    },
    /// Remove image references (blobs go at prune).
    #[command(alias = "rmi")]
    Rm {
        /// Images by name:tag, digest or unique digest prefix.
        #[arg(value_name = "REF", required = true)]
        references: Vec<String>,
    },
    /// Give an image another name.
    Tag {
        /// The image.
        #[arg(value_name = "SRC")]
        source: String,
        /// The new name:tag.
        #[arg(value_name = "DST")]
        target: String,
    },
    /// Delete blobs no image references.
    Prune,
}

/// Runs an `aos image` command against the store in `data_dir`. Output goes to stdout (the
/// digest of a build, tables, JSON), progress and warnings to stderr; an error means exit 1.
pub fn run(cmd: ImageCommand, data_dir: &Path) -> anyhow::Result<()> {
    let store = ImageStore::open(data_dir)
        .with_context(|| format!("cannot open the image store in {}", data_dir.display()))?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cmd {
        ImageCommand::Build {
            tags,
            file,
            build_args,
            platforms,
            target,
            context,
        } => {
            let mut args = BTreeMap::new();
            for a in build_args {
                match a.split_once('=') {
                    Some((k, v)) => args.insert(k.to_owned(), v.to_owned()),
                    None => match std::env::var(&a) {
                        Ok(v) => args.insert(a, v),
                        Err(_) => continue,
                    },
                };
            }
            let platforms = platforms
                .iter()
                .map(|p| Platform::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = BuildOptions {
                context,
                dockerfile: file,
                tags,
                build_args: args,
                platforms,
                target,
                source_date_epoch: None,
            };
            let started = std::time::Instant::now();
            let mut err = io::stderr().lock();
            let mut progress = |e: BuildEvent| {
                let _ = match e {
                    BuildEvent::Step {
                        platform,
                        index,
                        total,
                        text,
                    } => match platform {
                        Some(p) => writeln!(err, "[{p} {index}/{total}] {text}"),
                        None => writeln!(err, "[{index}/{total}] {text}"),
                    },
                    BuildEvent::Layer {
                        content_bytes,
                        entries,
                        descriptor,
                    } => writeln!(
                        err,
                        "      {} in {} entries → layer {} ({})",
                        human_size(content_bytes),
                        entries,
                        descriptor.digest.short(),
                        human_size(descriptor.size)
                    ),
                    BuildEvent::Warning(lint) => writeln!(err, "{lint}"),
                };
            };
            let result = build::build(&store, &opts, &mut progress)?;
            let mut err = io::stderr().lock();
            for t in &result.tags {
                writeln!(err, "tagged {t}")?;
            }
            writeln!(err, "built in {:.2}s", started.elapsed().as_secs_f64())?;
            writeln!(out, "{}", result.descriptor.digest)?;
        }
        ImageCommand::Import { file, tag } => {
            let opts = ImportOptions { tag };
            let imported = if file.as_os_str() == "-" {
                archive::import(&store, io::stdin().lock(), &opts)?
            } else {
                archive::import_file(&store, &file, &opts)?
            };
            for img in imported {
                if img.names.is_empty() {
                    writeln!(out, "Loaded image ID: {}", img.descriptor.digest)?;
                }
                for n in img.names {
                    writeln!(out, "Loaded image: {n}")?;
                }
            }
        }
        ImageCommand::Export {
            reference,
            output,
            format,
            platform,
        } => {
            let platform = platform.as_deref().map(Platform::parse).transpose()?;
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".aos-export-")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let w = io::BufWriter::with_capacity(1 << 20, tmp);
            let w = archive::export(&store, &reference, format, platform.as_ref(), w)?;
            let tmp = w
                .into_inner()
                .map_err(|e| e.into_error())
                .context("cannot write the archive")?;
            tmp.as_file()
                .sync_all()
                .context("cannot sync the archive")?;
            tmp.persist(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
        }
        ImageCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for i in images {
                    writeln!(out, "{}", i.descriptor.digest)?;
                }
            } else {
                let rows: Vec<[String; 5]> = images
                    .iter()
                    .map(|i| {
                        [
                            i.name.clone().unwrap_or_else(|| "<none>".into()),
                            i.tag.clone().unwrap_or_else(|| "<none>".into()),
                            i.descriptor.digest.short().to_owned(),
                            i.created
                                .as_deref()
                                .map(ago)
                                .unwrap_or_else(|| "N/A".into()),
                            human_size(i.size),
                        ]
                    })
                    .collect();
                print_table(
                    &mut out,
                    ["REPOSITORY", "TAG", "DIGEST", "CREATED", "SIZE"],
                    &rows,
                )?;
            }
        }
        ImageCommand::Inspect {
            reference,
            platform,
        } => {
            let platform = platform.as_deref().map(Platform::parse).transpose()?;
            let info = store.resolve_for(&reference, platform.as_ref())?;
            let platforms: Vec<String> = if oci::is_index(&info.top.media_type) {
                store
                    .read_index(&info.top.digest)?
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                    .collect()
            } else {
                vec![info.platform.to_string()]
            };
            let v = serde_json::json!({
                "reference": info.reference,
                "names": info.names,
                "digest": info.top.digest,
                "mediaType": info.top.media_type,
                "manifestDigest": info.manifest_digest,
                "platform": info.platform.to_string(),
                "platforms": platforms,
                "created": info.config.created,
                "size": info.size(),
                "configDigest": info.config_digest,
                "config": info.config,
                "layers": info.layers,
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        ImageCommand::Rm { references } => {
            let mut failed = Vec::new();
            for r in references {
                match store.remove(&r) {
                    Ok(removed) => {
                        for x in removed {
                            writeln!(out, "Untagged: {x}")?;
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                out.flush()?;
                anyhow::bail!("{}", failed.join("; "));
            }
        }
        ImageCommand::Tag { source, target } => {
            store.tag(&source, &target)?;
        }
        ImageCommand::Prune => {
            let report = store.prune()?;
            writeln!(
                out,
                "Deleted {} blobs, reclaimed {}",
                report.blobs_removed,
                human_size(report.bytes_freed)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `6.1MB`-style sizes (decimal units, as docker prints).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[u]
    }
}

/// `3 days ago`-style ages from an RFC 3339 time.
fn ago(created: &str) -> String {
    let Ok(t) = created.parse::<jiff::Timestamp>() else {
        return created.to_owned();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    let (n, unit) = match secs {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 730 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(6_100_000), "6.1MB");
        assert_eq!(human_size(1_000), "1kB");
    }

    #[test]
    fn clap_tree_is_valid() {
        use clap::{CommandFactory, Parser};
        #[derive(clap::Parser)]
        struct T {
            #[command(subcommand)]
            cmd: ImageCommand,
        }
        T::command().debug_assert();
        let t = T::try_parse_from([
            "x",
            "build",
            "-t",
            "a:1",
            "--platform",
            "linux/amd64,linux/arm64",
            ".",
        ])
        .unwrap();
        match t.cmd {
            ImageCommand::Build { platforms, .. } => assert_eq!(platforms.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
