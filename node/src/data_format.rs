//! The data directory's format version, checked at start: `<data>/FORMAT` holds
//! `braid-data N`. A directory written by a newer binary (a greater N) is refused with a message
//! that says so, instead of being read wrong; one of this version or older is taken, and
//! marked with this version (its files stay readable: every change so far only added to
//! them).
//!
//! Versions: 1, the formats before the file existed (no FORMAT); 2, raft hard states carry
//! `rejoining` and `knew_leader` (decision 0012: a spare byte of the metadata group's slots, the
//! top two bits of the shard journal's vote field, which a version 1 binary takes for a torn
//! record). Wire versions are separate (`braid_engine::raft::wire`).

use anyhow::Context;
use std::path::Path;

/// The format this binary writes.
pub const DATA_FORMAT: u32 = 2;
/// The file that records it.
pub const FORMAT_FILE: &str = "FORMAT";

/// Reads `<dir>/FORMAT` (absent: version 1, or a new directory) and refuses a newer one; then
/// records this binary's version.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(FORMAT_FILE);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).with_context(|| format!("{}: not a braid data format: {text:?}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if found > DATA_FORMAT {
        anyhow::bail!(
            "{} was written by a newer braid (data format {found}; this binary reads up to {DATA_FORMAT}): \
             start the newer binary on it",
            dir.display()
        );
    }
    if found < DATA_FORMAT {
        std::fs::write(&path, format!("braid-data {DATA_FORMAT}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        // A new directory holds nothing else: only an old one's upgrade is worth a line.
        if dir.read_dir().is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() != FORMAT_FILE))) {
            tracing::info!(
                from = found,
                to = DATA_FORMAT,
                "data directory format upgraded (an older binary can no longer read it)"
            );
        }
    }
    Ok(())
}

fn parse(text: &str) -> Option<u32> {
    text.trim().strip_prefix("braid-data ")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_and_older_ones_are_marked_with_this_one() {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(),
            format!("braid-data {DATA_FORMAT}\n")
        );
        std::fs::write(dir.path().join(FORMAT_FILE), "braid-data 1\n").unwrap();
        check(dir.path()).unwrap();
        assert_eq!(parse(&std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap()), Some(DATA_FORMAT));
        std::fs::write(dir.path().join(FORMAT_FILE), format!("braid-data {}\n", DATA_FORMAT + 1)).unwrap();
        let refused = check(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("newer braid"), "{refused}");
        std::fs::write(dir.path().join(FORMAT_FILE), "garbage").unwrap();
        assert!(check(dir.path()).is_err());
    }
}
