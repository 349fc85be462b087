//! The one progress-bar style of the commands that walk over images (eval, corrupt): hidden
//! when not asked for (stderr not a terminal), so logs and pipes stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` images; its message names the current step (e.g. `fog s3`).
pub(crate) fn images_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:<22} [{bar:30}] {pos}/{len} images ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// A bar over `len` optimisation steps; its message carries epoch, loss, accuracy, genotype.
pub(crate) fn steps_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("[{bar:24}] {pos}/{len} steps (eta {eta}) {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
