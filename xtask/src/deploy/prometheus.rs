use std::path::Path;

use anyhow::Result;

pub fn check(_root: &Path) -> Result<()> {
    Ok(())
}
