//! Kafka RecordBatch v2 framing: the fixed header the log reads, checks and stamps.
//!
//! ```text
//!  0  baseOffset            int64   assigned by the log (= raft index of the batch)
//!  8  batchLength           int32   bytes after this field
//! 12  partitionLeaderEpoch  int32   assigned by the log (= raft term)
//! 16  magic                 int8    2
//! 17  crc                   uint32  CRC-32C of bytes 21..end (so the two fields above are free)
//! 21  attributes            int16   compression (bits 0-2), timestamp type, transactional, control
//! 23  lastOffsetDelta       int32
//! 27  baseTimestamp         int64
//! 35  maxTimestamp          int64
//! 43  producerId            int64
//! 51  producerEpoch         int16
//! 53  baseSequence          int32
//! 57  recordCount           int32
//! 61  records ...
//! ```

use std::fmt;

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Smallest legal batchLength (a batch with no records).
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;
const _: () = assert!(CRC_POSITION + 4 == CRC_COVERED_FROM && CRC_COVERED_FROM < BATCH_HEADER_BYTES);
const CRC_POSITION: usize = 17;
const CRC_COVERED_FROM: usize = 21;
const MAGIC_V2: i8 = 2;

/// What is wrong with a batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header, or than batchLength says.
    Truncated {
        needed: usize,
        available: usize,
    },
    /// batchLength is below the minimum or above the limit the caller allows.
    BadLength(i32),
    BadMagic(i8),
    BadCrc {
        stored: u32,
        computed: u32,
    },
    /// recordCount or lastOffsetDelta is negative.
    BadCounts {
        record_count: i32,
        last_offset_delta: i32,
    },
    /// The bytes hold more (or less) than exactly one batch.
    TrailingBytes {
        batch_bytes: usize,
        given_bytes: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(f, "truncated batch: {needed} bytes needed, {available} available")
            }
            BatchError::BadLength(length) => write!(f, "bad batchLength {length}"),
            BatchError::BadMagic(magic) => write!(f, "unsupported magic {magic} (only RecordBatch v2)"),
            BatchError::BadCrc { stored, computed } => {
                write!(f, "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            BatchError::BadCounts { record_count, last_offset_delta } => {
                write!(f, "bad counts: recordCount {record_count}, lastOffsetDelta {last_offset_delta}")
            }
            BatchError::TrailingBytes { batch_bytes, given_bytes } => {
                write!(f, "one batch of {batch_bytes} bytes expected, {given_bytes} bytes given")
            }
        }
    }
}

impl std::error::Error for BatchError {}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decodes the header from the first [`BATCH_HEADER_BYTES`] of `bytes`, checking lengths,
    /// magic and counts, but not the CRC (see [`check_crc`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: bytes.len() });
        }
        let header = BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes")),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            record_count: be_i32(bytes, 57),
        };
        if header.batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength(header.batch_length));
        }
        if header.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(header.magic));
        }
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(BatchError::BadCounts {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// Bytes the whole batch occupies in the log.
    pub fn total_bytes(&self) -> usize {
        BATCH_LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// One past the last offset.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
}

/// Checks the CRC-32C of one whole batch.
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(&batch[CRC_COVERED_FROM..header.total_bytes()]);
    if computed != header.crc {
        return Err(BatchError::BadCrc { stored: header.crc, computed });
    }
    Ok(())
}

/// Validates that `bytes` is exactly one well-formed batch with a correct CRC.
pub fn validate(bytes: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.total_bytes() > max_batch_bytes {
        return Err(BatchError::BadLength(header.batch_length));
    }
    if header.total_bytes() != bytes.len() {
        if header.total_bytes() > bytes.len() {
            return Err(BatchError::Truncated { needed: header.total_bytes(), available: bytes.len() });
        }
        return Err(BatchError::TrailingBytes { batch_bytes: header.total_bytes(), given_bytes: bytes.len() });
    }
    check_crc(bytes, &header)?;
    Ok(header)
}

/// Writes the two fields the log owns; the CRC does not cover them, so it stays valid.
pub fn stamp(bytes: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Moves a whole batch's timestamps to `base_timestamp` (records keep their deltas) and
/// recomputes its CRC: how a leader puts its own clock on an entry a follower forwarded.
/// Batches too short to hold a header are left alone.
pub fn restamp_time(bytes: &mut [u8], base_timestamp: i64) {
    if bytes.len() < BATCH_HEADER_BYTES {
        return;
    }
    let base = i64::from_be_bytes(bytes[27..35].try_into().expect("8 bytes"));
    let max = i64::from_be_bytes(bytes[35..43].try_into().expect("8 bytes"));
    let new_max = base_timestamp.saturating_add(max.saturating_sub(base).max(0));
    bytes[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    bytes[35..43].copy_from_slice(&new_max.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The attribute bit of a batch whose timestamps are the broker's append time.
pub const LOG_APPEND_TIME_ATTRIBUTE: i16 = 0x08;

/// Gives a whole batch the broker's append time (Kafka's message.timestamp.type=LogAppendTime):
/// the timestamp-type attribute set and the max timestamp `now_ms` (consumers read every
/// record's timestamp as that), the CRC recomputed. Batches too short to hold a header are left
/// alone.
pub fn set_log_append_time(bytes: &mut [u8], now_ms: i64) {
    if bytes.len() < BATCH_HEADER_BYTES {
        return;
    }
    let attributes = i16::from_be_bytes(bytes[21..23].try_into().expect("2 bytes")) | LOG_APPEND_TIME_ATTRIBUTE;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    bytes[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets a built batch's producer (id and epoch, no sequence), its attributes and its
/// timestamps, the CRC recomputed: for the batches a node writes on a producer's behalf
/// (transaction markers, transactional offset commits).
pub fn set_producer(bytes: &mut [u8], producer_id: i64, epoch: i16, attributes: i16, now_ms: i64) {
    if bytes.len() < BATCH_HEADER_BYTES {
        return;
    }
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    bytes[27..35].copy_from_slice(&now_ms.to_be_bytes());
    bytes[35..43].copy_from_slice(&now_ms.to_be_bytes());
    bytes[43..51].copy_from_slice(&producer_id.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets a built batch's first sequence number, the CRC recomputed (tools and tests that write
/// as an idempotent producer would).
pub fn set_base_sequence(bytes: &mut [u8], base_sequence: i32) {
    if bytes.len() < BATCH_HEADER_BYTES {
        return;
    }
    bytes[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds a valid uncompressed batch whose records carry `values` (test data and tools).
///
/// Record layout (varints are zig-zag): length, attributes(i8), timestampDelta, offsetDelta,
/// keyLength(-1 = null), valueLength, value, headerCount(0).
pub fn build_batch(base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
    build_keyed_batch(base_timestamp, &records)
}

/// A record's key and value (None: null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed batch of (key, value) records; None is a null key or value (a
/// tombstone).
pub fn build_keyed_batch(base_timestamp: i64, entries: &[KeyValue<'_>]) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    put_varint(&mut body, bytes.len() as i64);
                    body.extend_from_slice(bytes);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = entries.len() as i32;
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + records.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.push(MAGIC_V2 as u8);
    batch.extend_from_slice(&[0; 4]); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes());
    batch.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i16).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A control batch (attributes bit 5 set) holding one record with `key` and no value, as Kafka
/// writes for leader changes and transaction markers.
pub fn build_control_batch(key: &[u8]) -> Vec<u8> {
    build_control_batch_with_value(key, None)
}

/// A control batch holding one record with `key` and `value`.
pub fn build_control_batch_with_value(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(key);
    match value {
        Some(value) => {
            put_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value);
        }
        None => put_varint(&mut body, -1),
    }
    put_varint(&mut body, 0);
    let mut records = Vec::new();
    put_varint(&mut records, body.len() as i64);
    records.extend_from_slice(&body);
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + records.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.push(MAGIC_V2 as u8);
    batch.extend_from_slice(&[0; 4]);
    batch.extend_from_slice(&CONTROL_ATTRIBUTE.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i16).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&1i32.to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The same uncompressed batch with only the records whose raw ranges are in `keep` (in order):
/// base offset, last offset delta, timestamps and producer fields stay, so the batch still
/// spans the same offsets (a compacted batch may hold no record at all); count, length and CRC
/// are recomputed.
pub fn retain_records(batch: &[u8], keep: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
    for range in keep {
        out.extend_from_slice(&batch[range.clone()]);
    }
    let length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[BATCH_HEADER_BYTES - 4..BATCH_HEADER_BYTES].copy_from_slice(&(keep.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Attributes bit marking a control batch.
pub const CONTROL_ATTRIBUTE: i16 = 0x20;
/// Attributes bit marking a transactional batch.
pub const TRANSACTIONAL_ATTRIBUTE: i16 = 0x10;
/// Control record types (the key's second field) of transaction markers.
pub const ABORT_MARKER: i16 = 0;
pub const COMMIT_MARKER: i16 = 1;

/// The coordinator epoch a transaction marker batch carries (its value: version, epoch).
pub fn marker_coordinator_epoch(bytes: &[u8]) -> Option<i32> {
    let record = records(bytes).ok()?.into_iter().next()?;
    let value = record.value?;
    (value.len() >= 6).then(|| i32::from_be_bytes([value[2], value[3], value[4], value[5]]))
}

/// The type of a transaction marker batch (None: not a marker, or unreadable).
pub fn marker_type(bytes: &[u8]) -> Option<i16> {
    let record = records(bytes).ok()?.into_iter().next()?;
    let key = record.key?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]])).filter(|t| *t == ABORT_MARKER || *t == COMMIT_MARKER)
}

/// One record of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Where the whole record (its length prefix included) lies in the batch.
    pub raw: std::ops::Range<usize>,
}

/// The records of one whole, uncompressed batch (headers are skipped). Compressed batches are
/// not opened here: the log never needs to look inside them.
pub fn records(batch: &[u8]) -> Result<Vec<Record<'_>>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let malformed = |at: usize| BatchError::Truncated { needed: at + 1, available: batch.len() };
    if header.compression() != 0 {
        return Err(BatchError::BadCounts {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let end = header.total_bytes().min(batch.len());
    let mut at = BATCH_HEADER_BYTES;
    let mut out = Vec::with_capacity(header.record_count.clamp(0, 4096) as usize);
    for _ in 0..header.record_count {
        let start = at;
        let length = get_varint(batch, &mut at, end).ok_or_else(|| malformed(at))?;
        let record_end = at.checked_add(usize::try_from(length).map_err(|_| malformed(at))?).filter(|&e| e <= end);
        let record_end = record_end.ok_or_else(|| malformed(at))?;
        at += 1; // attributes
        let timestamp_delta = get_varint(batch, &mut at, record_end).ok_or_else(|| malformed(at))?;
        let offset_delta = get_varint(batch, &mut at, record_end).ok_or_else(|| malformed(at))?;
        let field = |at: &mut usize| -> Result<Option<&[u8]>, BatchError> {
            let len = get_varint(batch, at, record_end).ok_or_else(|| malformed(*at))?;
            if len < 0 {
                return Ok(None);
            }
            let stop = at.checked_add(len as usize).filter(|&e| e <= record_end).ok_or_else(|| malformed(*at))?;
            let bytes = &batch[*at..stop];
            *at = stop;
            Ok(Some(bytes))
        };
        let key = field(&mut at)?;
        let value = field(&mut at)?;
        out.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp + timestamp_delta,
            key,
            value,
            raw: start..record_end,
        });
        at = record_end;
    }
    Ok(out)
}

fn get_varint(bytes: &[u8], at: &mut usize, end: usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        if *at >= end {
            return None;
        }
        let byte = bytes[*at];
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_append_time_sets_the_type_and_max_timestamp_and_keeps_the_crc_valid() {
        let mut b = build_batch(1_000, &[b"a", b"b"]);
        set_log_append_time(&mut b, 99_000);
        let header = validate(&b, usize::MAX).expect("a valid batch");
        assert_eq!(header.attributes & LOG_APPEND_TIME_ATTRIBUTE, LOG_APPEND_TIME_ATTRIBUTE);
        assert_eq!((header.base_timestamp, header.max_timestamp), (1_000, 99_000));
    }

    #[test]
    fn a_restamped_batch_keeps_its_records_and_a_valid_crc() {
        let mut batch = build_keyed_batch(5, &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))]);
        restamp_time(&mut batch, 1_000);
        let header = validate(&batch, 1 << 20).expect("valid after restamp");
        assert_eq!((header.base_timestamp, header.max_timestamp), (1_000, 1_000));
        let stamped: Vec<_> =
            records(&batch).unwrap().into_iter().map(|r| (r.timestamp, r.value.map(<[u8]>::to_vec))).collect();
        assert_eq!(stamped, vec![(1_000, Some(b"v".to_vec())), (1_000, Some(b"w".to_vec()))]);
        let mut short = vec![0u8; 10];
        restamp_time(&mut short, 7);
        assert_eq!(short, vec![0u8; 10], "too short to be a batch: untouched");
    }

    #[test]
    fn built_batch_validates_and_stamping_keeps_crc() {
        let mut batch = build_batch(1_700_000_000_000, &[b"a", b"bc", b"def"]);
        let header = validate(&batch, 1 << 20).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        stamp(&mut batch, 42, 7);
        let header = validate(&batch, 1 << 20).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.next_offset(), 45);
    }

    #[test]
    fn records_of_a_built_batch_read_back() {
        let mut batch = build_batch(1000, &[b"one", b"", b"three"]);
        stamp(&mut batch, 10, 0);
        let records = records(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].offset, 12);
        assert_eq!(records[0].timestamp, 1000);
        assert_eq!(records[0].key, None);
        assert_eq!(records[2].value, Some(&b"three"[..]));
        for cut in BATCH_HEADER_BYTES..batch.len() {
            let _ = super::records(&batch[..cut]);
        }
    }

    #[test]
    fn flipped_bit_fails_crc_and_short_input_is_truncated() {
        let batch = build_batch(0, &[b"payload"]);
        for byte in CRC_COVERED_FROM..batch.len() {
            let mut bad = batch.clone();
            bad[byte] ^= 0x10;
            assert!(validate(&bad, 1 << 20).is_err(), "flip at {byte} not caught");
        }
        assert!(matches!(validate(&batch[..30], 1 << 20), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&batch[..batch.len() - 1], 1 << 20), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&batch, 10), Err(BatchError::BadLength(_))));
    }
}
