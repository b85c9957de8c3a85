//! The log against an in-memory model, over random append / write / flush / truncate / reopen /
//! crash / retention sequences on the simulated disk (buffered and O_DIRECT-aligned), with leader
//! epochs that grow along the log as raft terms do (where every epoch ends is checked too), and
//! flushes that do not block (begin, then polled) while write-behinds end in their own time.

mod common;

use braid_engine::io::{SimFaults, SimStorage};
use braid_engine::log::batch::stamp;
use braid_engine::log::{FlushTicket, Log, LogConfig};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        timestamp_step: i64,
        epoch_step: i32,
    },
    Write,
    Flush,
    Truncate {
        per_mille: i64,
    },
    Reopen,
    Crash,
    Retention {
        age_ms: i64,
    },
    /// A new leader epoch that no batch holds yet (a leader elected, nothing appended).
    NewEpoch,
    /// Starts a flush on the ring (one at a time), as a partition's round does.
    BeginFlush,
    /// Moves that flush on.
    PollFlush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0i64..50, prop_oneof![3 => Just(0i32), 1 => 1i32..3])
            .prop_map(|(records, timestamp_step, epoch_step)| Op::Append { records, timestamp_step, epoch_step }),
        2 => Just(Op::Write),
        2 => Just(Op::Flush),
        1 => (0i64..1000).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0i64..2000).prop_map(|age_ms| Op::Retention { age_ms }),
        1 => Just(Op::NewEpoch),
        2 => Just(Op::BeginFlush),
        3 => Just(Op::PollFlush),
    ]
}

struct Model {
    /// Batches as the log should hold them: (base offset, next offset, max timestamp, bytes,
    /// leader epoch).
    batches: Vec<(i64, i64, i64, Vec<u8>, i32)>,
    start: i64,
    end: i64,
    /// The epoch the next append gets.
    epoch: i32,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: 1000,
        write_buffer_bytes: 700,
        ..LogConfig::default()
    }
}

fn check(log: &Log<SimStorage>, model: &Model) {
    assert_eq!(log.log_end_offset(), model.end, "log end offset");
    assert_eq!(log.log_start_offset(), model.start, "log start offset");
    let visible: Vec<Vec<u8>> =
        model.batches.iter().filter(|b| b.1 <= log.written_offset()).map(|b| b.3.clone()).collect();
    let got: Vec<Vec<u8>> = read_all(log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, visible, "readable batches");
    assert!(log.durable_offset() <= log.written_offset() && log.written_offset() <= log.log_end_offset());
    for epoch in -1..=model.epoch + 1 {
        for appending in [-1, model.epoch] {
            assert_eq!(
                log.end_offset_for_epoch(epoch, appending).unwrap(),
                model.end_offset_for_epoch(epoch, appending),
                "end of epoch {epoch}, appending at {appending}"
            );
        }
    }
    for b in &model.batches {
        let span = log.batch_holding(b.1 - 1).unwrap().expect("a batch holds its last offset");
        assert_eq!((span.base_offset, span.next_offset, span.epoch), (b.0, b.1, b.4), "batch holding {}", b.1 - 1);
    }
    assert_eq!(log.batch_holding(model.end).unwrap(), None, "past the log end");
}

impl Model {
    /// Kafka's leader epoch cache, taken literally: an entry (epoch, start offset) where each
    /// epoch's batches begin, and the appending epoch's at the log end if no batch holds it;
    /// the end of an epoch is the start of the first later entry, the log end for the latest.
    fn end_offset_for_epoch(&self, epoch: i32, appending: i32) -> Option<(i32, i64)> {
        let mut entries: Vec<(i32, i64)> = Vec::new();
        for b in &self.batches {
            if entries.last().is_none_or(|e| e.0 != b.4) {
                entries.push((b.4, b.0));
            }
        }
        if appending >= 0 && entries.last().is_none_or(|e| e.0 < appending) {
            entries.push((appending, self.end));
        }
        let latest = entries.last()?.0;
        if epoch < 0 {
            return None;
        }
        if epoch == latest {
            return Some((epoch, self.end));
        }
        let higher = entries.iter().find(|e| e.0 > epoch)?;
        match entries.iter().rev().find(|e| e.0 <= epoch) {
            None => Some((epoch, higher.1)),
            Some(floor) => Some((floor.0, higher.1)),
        }
    }
}

/// Segments of several write buffers, each buffer more than two blocks: hand-offs happen while
/// a flush's write of the tail's first block is in flight.
fn large_buffers() -> LogConfig {
    LogConfig { segment_bytes: 16 << 10, write_buffer_bytes: 1100, ..config() }
}

fn run(seed: u64, alignment: usize, ops: &[Op]) {
    run_with(seed, alignment, config(), ops)
}

fn run_with(seed: u64, alignment: usize, config: LogConfig, ops: &[Op]) {
    let config = || config.clone();
    let faults = SimFaults { segment_write_alignment: alignment, slow_write_behinds: true, ..SimFaults::default() };
    let disk = SimStorage::new(seed, faults);
    // A flush begun and not yet ended, and whether the log was cut since it began.
    let mut flushing: Option<(FlushTicket, bool)> = None;
    let mut log = open(disk.clone(), &sim_dir(), config());
    let mut model = Model { batches: Vec::new(), start: 0, end: 0, epoch: 1 };
    let mut now = 10_000i64;
    let mut tag = 0u64;
    for op in ops {
        match op {
            Op::Append { records, timestamp_step, epoch_step } => {
                now += timestamp_step;
                tag += 1;
                // Only grows, across truncations too, as raft's terms do.
                model.epoch += epoch_step;
                let epoch = model.epoch;
                let mut bytes = batch(tag, *records, now);
                let info = log.append(&bytes, epoch).unwrap();
                assert_eq!(info.base_offset, model.end);
                stamp(&mut bytes, info.base_offset, epoch);
                model.batches.push((info.base_offset, info.last_offset + 1, now, bytes, epoch));
                model.end = info.last_offset + 1;
            }
            Op::Write => log.write().unwrap(),
            Op::Flush => assert_eq!(log.flush().unwrap(), model.end),
            Op::Truncate { per_mille } => {
                if let Some((_, cut)) = flushing.as_mut() {
                    *cut = true;
                }
                let target = model.start + (model.end - model.start) * per_mille / 1000;
                let end = log.truncate_to(target).unwrap();
                if target <= model.start {
                    model.batches.clear();
                    model.start = target;
                    model.end = target;
                } else {
                    model.batches.retain(|b| b.1 - 1 < target);
                    model.end = model.batches.last().map_or(model.start, |b| b.1);
                }
                assert_eq!(end, model.end);
            }
            Op::Reopen => {
                flushing = None;
                // The process stops, the machine does not: what was written survives, and so may
                // write-behind bytes that reached the file before a flush claimed them.
                let written = log.written_offset();
                drop(log);
                log = open(disk.clone(), &sim_dir(), config());
                let survived = log.log_end_offset();
                assert!(survived >= written, "lost written offsets: written {written}, survived {survived}");
                model.batches.retain(|b| b.1 <= survived);
                model.end = model.batches.last().map_or(model.start, |b| b.1);
                // A log emptied and restarted keeps its restart offset.
                model.end = model.end.max(log.log_start_offset());
            }
            Op::Crash => {
                flushing = None;
                let durable = log.durable_offset();
                drop(log);
                disk.crash();
                log = open(disk.clone(), &sim_dir(), config());
                let survived = log.log_end_offset();
                assert!(survived >= durable, "lost acknowledged offsets: durable {durable}, survived {survived}");
                model.batches.retain(|b| b.1 <= survived);
                model.end = model.batches.last().map_or(model.start, |b| b.1);
                model.end = model.end.max(log.log_start_offset());
            }
            Op::Retention { age_ms } => {
                let threshold = now + age_ms - 1000;
                log.apply_retention(now + age_ms).unwrap();
                let start = log.log_start_offset();
                for dropped in model.batches.iter().filter(|b| b.0 < start) {
                    assert!(
                        dropped.2 < threshold,
                        "retention removed a batch of timestamp {} >= {threshold}",
                        dropped.2
                    );
                }
                model.batches.retain(|b| b.0 >= start);
                model.start = start;
            }
            Op::NewEpoch => model.epoch += 1,
            Op::BeginFlush => {
                if flushing.is_none() {
                    flushing = log.begin_flush().unwrap().map(|ticket| (ticket, false));
                }
            }
            Op::PollFlush => {
                if let Some((mut ticket, cut)) = flushing.take() {
                    if log.poll_flush(&mut ticket).unwrap() {
                        if !cut {
                            assert!(log.durable_offset() >= ticket.target(), "a flush ended short of its target");
                        }
                    } else {
                        flushing = Some((ticket, cut));
                    }
                }
            }
        }
        check(&log, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model_buffered(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..80)) {
        run(seed, 1, &ops);
    }

    #[test]
    fn log_matches_model_direct_io(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..80)) {
        run(seed, 512, &ops);
    }

    #[test]
    fn log_matches_model_direct_io_large_buffers(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..160)) {
        run_with(seed, 512, large_buffers(), &ops);
    }
}
