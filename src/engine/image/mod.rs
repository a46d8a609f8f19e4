//! Placeholder for the image store (replaced when the store lands).
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {reference}")]
    NotFound { reference: String },
}

pub struct ImageStore;
pub struct Image {
    pub id: String,
    pub reference: Option<String>,
    pub manifest_digest: String,
    pub config: oci_spec::image::ImageConfiguration,
    pub layers: Vec<PathBuf>,
}
pub struct ImageSummary {
    pub reference: Option<String>,
    pub repository: String,
    pub tag: String,
    pub id: String,
    pub created: Option<String>,
    pub size: u64,
}
impl ImageStore {
    pub fn open(_root: &Path) -> Result<ImageStore, ImageError> {
        Ok(ImageStore)
    }
    pub fn load_path(&self, _p: &Path) -> Result<Vec<String>, ImageError> {
        Ok(vec![])
    }
    pub fn load_reader(&self, _r: impl std::io::Read) -> Result<Vec<String>, ImageError> {
        Ok(vec![])
    }
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        Err(ImageError::NotFound { reference: reference.into() })
    }
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        Ok(vec![])
    }
}
