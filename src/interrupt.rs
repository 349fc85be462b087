//! Ctrl-C and SIGTERM. The first signal only sets a flag; the long loops (search and training
//! steps, localization and evaluation batches) and the main command's stage boundaries check
//! it and return [`Error::Interrupted`], so every file is either whole or absent, the dump
//! folder lists only finished stages, and `--resume` continues from there. A second signal
//! ends the process at once (exit code 130), for a loop that does not come back.
//!
//! Without [`install`] (the library used on its own) nothing is caught and `check` never fails.
//! Tested through the binary (tests/it/repair.rs): SIGTERM mid-search, then `--resume`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::Error;

/// Exit code of an interrupted run (128 + SIGINT, the shell's convention).
pub const EXIT_CODE: u8 = 130;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Catches SIGINT and SIGTERM for the rest of the process.
pub fn install() -> std::io::Result<()> {
    let flag = REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it: set = second signal.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_CODE as i32, Arc::clone(flag))?;
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.get().is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// `Err(Error::Interrupted)` once a stop was asked for.
pub fn check() -> Result<(), Error> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
