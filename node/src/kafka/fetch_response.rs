//! FetchResponse v4–v12 written by hand, so record bytes can be sent from segment files
//! instead of being copied into the encoded message.
//!
//! ```text
//! size int32 | correlation_id int32 | [v12: header tags]
//! throttle_time_ms int32 | [v7+ error_code int16, session_id int32]
//! responses: array of { topic string, partitions: array of {
//!     partition_index int32, error_code int16, high_watermark int64, last_stable_offset int64,
//!     [v5+ log_start_offset int64], aborted_transactions array of { producer_id int64,
//!     first_offset int64, [v12: tags] },
//!     [v11+ preferred_read_replica int32], records nullable bytes, [v12: tags] }
//!   [v12: tags] }  [v12: tags]
//! ```
//! v12 is a flexible version: arrays, strings and bytes carry unsigned-varint lengths plus one,
//! and every struct ends with a (here empty) tagged-field section.

use super::Chunk;
use crate::msg::{FetchOutcome, RecordsChunk};
use bytes::{BufMut, BytesMut};

pub struct FetchPartitionResult {
    pub partition: i32,
    pub outcome: FetchOutcome,
}

pub struct FetchTopicResult {
    pub topic: String,
    pub partitions: Vec<FetchPartitionResult>,
}

fn put_uvarint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_string(buf: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_uvarint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

/// Encodes a whole response (size prefix included) as chunks: encoded bytes, with each
/// partition's records as a file range between them.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    error_code: i16,
    topics: Vec<FetchTopicResult>,
) -> Vec<Chunk> {
    assert!((4..=12).contains(&version), "hand-written FetchResponse covers v4..v12, not v{version}");
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut buf, 0);
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(error_code);
        buf.put_i32(0); // session_id: no fetch sessions, every fetch is full
    }
    put_array_len(&mut buf, topics.len(), flexible);
    for topic in topics {
        put_string(&mut buf, &topic.topic, flexible);
        put_array_len(&mut buf, topic.partitions.len(), flexible);
        for p in topic.partitions {
            let o = p.outcome;
            buf.put_i32(p.partition);
            buf.put_i16(o.error);
            buf.put_i64(o.high_watermark);
            buf.put_i64(if o.last_stable_offset < 0 { o.high_watermark } else { o.last_stable_offset });
            if version >= 5 {
                buf.put_i64(o.log_start_offset);
            }
            let aborted = o.aborted.unwrap_or_default();
            put_array_len(&mut buf, aborted.len(), flexible);
            for a in aborted {
                buf.put_i64(a.producer_id);
                buf.put_i64(a.first_offset);
                if flexible {
                    put_uvarint(&mut buf, 0);
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let records_len = o.records.as_ref().map_or(0, RecordsChunk::len);
            if flexible {
                put_uvarint(&mut buf, records_len + 1);
            } else {
                buf.put_i32(records_len as i32);
            }
            if let Some(records) = o.records.filter(|r| !r.is_empty()) {
                chunks.push(Chunk::Bytes(buf.split().freeze()));
                chunks.push(Chunk::File(records));
            }
            if flexible {
                put_uvarint(&mut buf, 0);
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0);
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0);
    }
    chunks.push(Chunk::Bytes(buf.freeze()));
    let total: u64 = chunks.iter().map(Chunk::len).sum::<u64>() - 4;
    if let Some(Chunk::Bytes(first)) = chunks.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[0..4].copy_from_slice(&(total as i32).to_be_bytes());
        *first = patched.freeze();
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::RecordsChunk;
    use bytes::Bytes;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    use std::io::Write;
    use std::sync::Arc;

    /// Every version's output decodes with the kafka-protocol codec, records included.
    #[test]
    fn hand_written_fetch_response_decodes_with_the_codec() {
        let records = braid_engine::log::batch::build_batch(5, &[b"hello", b"world"]);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"xxxx").unwrap();
        file.write_all(&records).unwrap();
        let file = Arc::new(file);
        for version in 4..=12i16 {
            let topics = vec![FetchTopicResult {
                topic: "orders".into(),
                partitions: vec![
                    FetchPartitionResult {
                        partition: 3,
                        outcome: FetchOutcome {
                            error: 0,
                            high_watermark: 42,
                            last_stable_offset: 40,
                            log_start_offset: 7,
                            aborted: Some(vec![crate::txn::AbortedTxn {
                                producer_id: 5,
                                first_offset: 9,
                                last_offset: 12,
                            }]),
                            records: Some(RecordsChunk::File {
                                file: Arc::clone(&file),
                                position: 4,
                                len: records.len() as u64,
                            }),
                        },
                    },
                    FetchPartitionResult {
                        partition: 4,
                        outcome: FetchOutcome {
                            error: 1,
                            high_watermark: 0,
                            last_stable_offset: -1,
                            log_start_offset: 0,
                            records: None,
                            aborted: None,
                        },
                    },
                ],
            }];
            let chunks = encode_fetch_response(version, 99, 0, topics);
            let mut wire = Vec::new();
            for chunk in &chunks {
                match chunk {
                    Chunk::Bytes(b) => wire.extend_from_slice(b),
                    Chunk::File(RecordsChunk::File { file, position, len }) => {
                        use std::os::unix::fs::FileExt;
                        let mut bytes = vec![0u8; *len as usize];
                        file.read_exact_at(&mut bytes, *position).unwrap();
                        wire.extend_from_slice(&bytes);
                    }
                    Chunk::File(RecordsChunk::Bytes(bytes)) => wire.extend_from_slice(bytes),
                }
            }
            assert_eq!(i32::from_be_bytes(wire[0..4].try_into().unwrap()) as usize, wire.len() - 4, "v{version} size");
            let mut buf = Bytes::from(wire[4..].to_vec());
            let header_version = if version >= 12 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut buf, header_version).unwrap();
            assert_eq!(header.correlation_id, 99);
            let response = FetchResponse::decode(&mut buf, version).unwrap();
            assert!(buf.is_empty(), "v{version}: {} bytes left over", buf.len());
            let topic = &response.responses[0];
            assert_eq!(topic.topic.as_str(), "orders");
            assert_eq!(topic.partitions[0].partition_index, 3);
            assert_eq!(topic.partitions[0].high_watermark, 42);
            assert_eq!(topic.partitions[0].last_stable_offset, 40);
            let aborted = topic.partitions[0].aborted_transactions.as_ref().unwrap();
            assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (5, 9));
            assert_eq!(topic.partitions[0].records.as_deref(), Some(&records[..]), "v{version} records");
            assert_eq!(topic.partitions[1].error_code, 1);
            if version >= 5 {
                assert_eq!(topic.partitions[0].log_start_offset, 7);
            }
        }
    }
}
