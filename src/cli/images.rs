//! Image commands: `images`, `image ls`, `image load`, `load`.
use super::output;
use crate::engine::image::ImageStore;
use crate::state::Paths;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
}

pub fn image(paths: &Paths, c: ImageCommand) -> Result<i32> {
    match c {
        ImageCommand::Load(a) => load(paths, &a),
        ImageCommand::Ls(a) => images(paths, &a),
    }
}

pub fn load(paths: &Paths, a: &LoadArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let loaded = match &a.input {
        Some(p) => store
            .load_path(p)
            .with_context(|| format!("loading {}", p.display()))?,
        None => store
            .load_reader(std::io::stdin().lock())
            .context("loading from standard input")?,
    };
    if !a.quiet {
        for r in loaded {
            output::data(&format!("Loaded image: {r}"));
        }
    }
    Ok(0)
}

pub fn images(paths: &Paths, a: &ImagesArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.images())?;
    let list = store.list()?;
    if a.quiet {
        for i in &list {
            output::data(short_id(&i.id));
        }
        return Ok(0);
    }
    if a.format == "json" {
        for i in &list {
            output::data(
                &serde_json::json!({
                    "Repository": i.repository, "Tag": i.tag, "ID": short_id(&i.id),
                    "CreatedAt": i.created, "Size": human_size(i.size),
                })
                .to_string(),
            );
        }
        return Ok(0);
    }
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for i in &list {
        rows.push([
            i.repository.clone(),
            i.tag.clone(),
            short_id(&i.id).to_string(),
            i.created.clone().unwrap_or_else(|| "N/A".into()),
            human_size(i.size),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        output::data(line.join("   ").trim_end());
    }
    Ok(0)
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn human_size(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.3}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.3}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.3}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}
