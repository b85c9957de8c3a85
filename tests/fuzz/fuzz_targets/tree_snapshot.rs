//! Any bytes as a tree snapshot file (tree.snap) or a metadata-log transaction: a tree or an
//! error, never a panic; a snapshot that loads writes back the same bytes, and a transaction
//! that decodes encodes back to one that decodes the same.
#![no_main]

use braid_engine::tree::{DataTree, Txn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = DataTree::from_snapshot(data) {
        assert_eq!(tree.snapshot(), data);
    }
    if let Ok(txn) = Txn::decode(data) {
        // (Version-1 creates decode into the current form, which encodes differently.)
        assert_eq!(Txn::decode(&txn.encode()), Ok(txn));
    }
});
