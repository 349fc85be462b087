//! One library function per subcommand; the binary only parses arguments and prints.

pub mod blocks;
pub mod eval;
pub mod inspect;
