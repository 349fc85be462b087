//! One library function per subcommand; the binary only parses arguments and prints.

pub mod bench;
pub mod blocks;
pub mod corrupt;
pub mod corruption_table;
pub mod demo;
pub mod eval;
pub mod inspect;
pub mod localize;
pub mod repair;
pub mod search;
pub(crate) mod progress;

use std::path::{Path, PathBuf};

/// `<model file stem>-<command>` in the working folder: where a command writes by default.
pub fn default_out(model: &Path, command: &str) -> PathBuf {
    let stem = model.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}-{command}"))
}

/// `files` inside `out`; an error naming the first that exists unless replacing is allowed
/// (checked before the long work, not after it). `also` names another way out, if any.
pub(crate) fn output_files(out: &Path, files: &[&str], replace: bool, also: &str) -> Result<Vec<PathBuf>, crate::Error> {
    let targets: Vec<PathBuf> = files.iter().map(|f| out.join(f)).collect();
    if !replace {
        if let Some(existing) = targets.iter().find(|t| t.exists()) {
            return Err(crate::Error::Mismatch(format!(
                "`{}` exists; pass --force to replace it{also}, or choose another folder with --out",
                existing.display()
            )));
        }
    }
    Ok(targets)
}
