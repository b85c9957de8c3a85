//! Any bytes as a segment file: opening the log recovers a valid prefix and never panics.
#![no_main]

use braid_engine::io::{SimFaults, SimStorage, Storage};
use braid_engine::log::{Log, LogConfig};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let disk = SimStorage::new(0, SimFaults::default());
    let dir = Path::new("/fuzz");
    disk.create_dir_all(dir).unwrap();
    disk.put_file(&dir.join("00000000000000000000.log"), data);
    let (log, _) = Log::open(disk, dir, LogConfig::default()).unwrap();
    assert!(log.verify().unwrap().is_empty(), "recovery kept a bad batch");
});
