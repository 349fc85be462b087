//! One library function per subcommand; the binary only parses arguments and prints.

pub mod blocks;
pub mod corrupt;
pub mod corruption_table;
pub mod eval;
pub mod inspect;
pub mod localize;
pub(crate) mod progress;
