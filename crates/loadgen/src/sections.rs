//! Marked sections of `docs/benchmarks.md`: each benchmark program owns the text between
//! its `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers and rewrites only that.

use std::path::Path;

use anyhow::{Context, Result};

/// Replaces what lies between `begin` and `end` in `file`, keeping the markers; appends
/// `description` and the markers when the file has none.
pub fn write(file: &Path, begin: &str, end: &str, description: &str, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let section = section.trim_end();
    let updated = match text.find(begin) {
        Some(at) => {
            let start = at + begin.len();
            let stop = text[start..]
                .find(end)
                .with_context(|| format!("{} has {begin} but no {end}", file.display()))?
                + start;
            format!("{}\n{section}\n{}", &text[..start], &text[stop..])
        }
        None => format!(
            "{}\n\n{description}\n{begin}\n{section}\n{end}\n",
            text.trim_end()
        ),
    };
    std::fs::write(file, updated).with_context(|| format!("cannot write {}", file.display()))
}

/// The closing lines of every section: how the figures were made (build, machine, load
/// around the run, source revision) and the command that makes them again.
pub fn provenance(load_before: &str, load_after: &str, quick: bool, rerun: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    format!(
        "\nBuild: {}. Machine: {}. 1-minute load average before / after: {load_before} / {load_after} (other work on the machine adds noise). Revision: {}.{}\n\nRerun: `{rerun}` (`--quick` for a smoke run).\n",
        if cfg!(debug_assertions) {
            "debug (unoptimized; a release build gives representative figures)"
        } else {
            "release"
        },
        skiff_testkit::report::machine(),
        skiff_testkit::report::git_revision(&root, &["crates"]),
        if quick { " (--quick: smaller run)" } else { "" },
    )
}
