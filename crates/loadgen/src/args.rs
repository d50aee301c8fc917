//! The command line the benchmark programs share: `--quick` for a smoke run, `--write FILE`
//! to record the figures in their section of `docs/benchmarks.md`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

#[derive(Parser, Debug, PartialEq)]
#[command(about = "A Skiff benchmark: prints its figures, or writes them with --write")]
pub struct BenchArgs {
    /// A small, fast run that checks the benchmark works (figures not representative).
    #[arg(long)]
    pub quick: bool,
    /// The file whose section gets the figures (docs/benchmarks.md).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

impl BenchArgs {
    /// Parses `args` (without the program name); `--help` prints usage and exits.
    pub fn parse_from_args(program: &str, args: impl IntoIterator<Item = String>) -> Result<Self> {
        let parsed = Self::try_parse_from(std::iter::once(program.to_string()).chain(args))
            .unwrap_or_else(|e| e.exit());
        parsed.check()?;
        Ok(parsed)
    }

    /// Refuses what cannot go together (for programs that flatten these options into
    /// their own).
    pub fn check(&self) -> Result<()> {
        if self.quick && self.write.is_some() {
            bail!("--quick figures are not representative; refusing to --write them");
        }
        Ok(())
    }

    /// The process's own arguments.
    pub fn from_env(program: &str) -> Result<Self> {
        Self::parse_from_args(program, std::env::args().skip(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs> {
        BenchArgs::parse_from_args("bench", args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn quick_and_write_are_read_and_not_combined() {
        assert_eq!(
            parse(&[]).unwrap(),
            BenchArgs {
                quick: false,
                write: None
            }
        );
        assert!(parse(&["--quick"]).unwrap().quick);
        assert_eq!(
            parse(&["--write", "docs/benchmarks.md"]).unwrap().write,
            Some(PathBuf::from("docs/benchmarks.md"))
        );
        let err = parse(&["--quick", "--write", "x.md"]).unwrap_err();
        assert!(err.to_string().contains("refusing to --write"), "{err}");
    }
}
