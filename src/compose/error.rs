//! Errors of the compose loader; each names the file and, where known, `line:col` and key path.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no configuration file provided: not found")]
    NotFound { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "invalid project name {name:?}: must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit"
    )]
    ProjectName { name: String },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ComposeError>),
}

impl ComposeError {
    /// A hint for the user, shown under the error.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ComposeError::NotFound { .. } => Some(
                "run berth in a folder with compose.yaml (or compose.yml, docker-compose.yaml, docker-compose.yml), or pass -f FILE",
            ),
            _ => None,
        }
    }
}
