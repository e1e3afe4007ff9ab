//! Placeholder: minimal loader until the full one lands.
use std::path::Path;

use super::{Config, ConfigErrors};

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors {
        problems: vec![format!(
            "{}: config loading not implemented yet",
            path.display()
        )],
    })
}
