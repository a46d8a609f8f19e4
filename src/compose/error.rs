//! Errors of the compose loader; each names the file and, where known, `line:col` and key path.
use super::yaml::Pos;
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
    #[error("{}: {}{message}", file.display(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// An error that points into a file: `compose.yaml:14:7: services.web.ports[0]: message`.
    #[error("{}:{pos}: {}{message}", file.display(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
    At {
        file: PathBuf,
        pos: Pos,
        key: String,
        message: String,
        hint: Option<String>,
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
    pub fn hint(&self) -> Option<String> {
        match self {
            ComposeError::NotFound { .. } => Some(
                "run berth in a folder with compose.yaml (or compose.yml, docker-compose.yaml, docker-compose.yml), or pass -f FILE".into(),
            ),
            ComposeError::ProjectName { .. } => Some(
                "use a name like \"my-app\", or leave -p and COMPOSE_PROJECT_NAME unset to use the folder name".into(),
            ),
            ComposeError::At { hint, .. } => hint.clone(),
            ComposeError::Many(v) => v.iter().find_map(ComposeError::hint),
            _ => None,
        }
    }

    /// The single errors, flattened.
    pub fn errors(&self) -> Vec<&ComposeError> {
        match self {
            ComposeError::Many(v) => v.iter().flat_map(ComposeError::errors).collect(),
            e => vec![e],
        }
    }

    /// One error, or `Many` for several; `None` for none.
    pub fn from_list(mut v: Vec<ComposeError>) -> Option<ComposeError> {
        match v.len() {
            0 => None,
            1 => v.pop(),
            _ => Some(ComposeError::Many(v)),
        }
    }
}
