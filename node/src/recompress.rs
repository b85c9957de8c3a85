//! Broker-side recompression (a topic's `compression.type` other than `producer`): a batch whose
//! codec differs from the topic's gets its records region decompressed and compressed again
//! with the topic's codec, as Kafka's broker does. Only the records region changes, never a
//! record: keys, values, headers (duplicate keys included), offsets deltas and the producer's
//! fields stay byte for byte; the attributes' codec bits, the batch length and the CRC are
//! written again. The codecs and their Kafka framings (xerial snappy, LZ4 frames) are
//! kafka-protocol's.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

/// Kafka's codec id of a `compression.type` value; None for `producer` (keep what came).
pub fn codec_of(compression_type: &str) -> Option<i16> {
    match compression_type {
        "uncompressed" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => None,
    }
}

const HEADER_BYTES: usize = braid_engine::log::batch::BATCH_HEADER_BYTES;
const CONTROL: i16 = braid_engine::log::batch::CONTROL_ATTRIBUTE;

/// `batch` (one whole, CRC-checked v2 batch) with its records compressed by `codec`; unchanged
/// if it already is, or is a control batch. Err names what failed (a corrupt compressed
/// region, an unknown codec).
pub fn recompress(batch: &[u8], codec: i16) -> Result<Vec<u8>, String> {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]);
    let from = attributes & 0x7;
    if from == codec || attributes & CONTROL != 0 || batch.len() < HEADER_BYTES {
        return Ok(batch.to_vec());
    }
    let plain = decompress(from, Bytes::copy_from_slice(&batch[HEADER_BYTES..]))?;
    let region = compress(codec, &plain)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + region.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&region);
    let length = i32::try_from(out.len() - 12).map_err(|_| "batch too large".to_owned())?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[21..23].copy_from_slice(&((attributes & !0x7) | codec).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn decompress(codec: i16, mut region: Bytes) -> Result<Bytes, String> {
    let take = |plain: &mut Bytes| Ok(plain.clone());
    let plain = match codec {
        0 => return Ok(region),
        1 => Gzip::decompress(&mut region, take),
        2 => Snappy::decompress(&mut region, take),
        3 => Lz4::decompress(&mut region, take),
        4 => Zstd::decompress(&mut region, take),
        other => return Err(format!("unknown compression codec {other}")),
    };
    plain.map_err(|e| format!("decompressing a batch: {e:#}"))
}

fn compress(codec: i16, plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(plain);
        Ok(())
    };
    let done = match codec {
        0 => return Ok(plain.to_vec()),
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(format!("unknown compression codec {other}")),
    };
    done.map_err(|e| format!("compressing a batch: {e:#}"))?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_engine::log::batch::{self, build_batch, records};

    #[test]
    fn every_codec_round_trips_the_records_byte_for_byte() {
        let original = build_batch(1_000, &[b"alpha", b"beta", b"gamma"]);
        let values =
            |b: &[u8]| records(b).unwrap().into_iter().map(|r| r.value.map(<[u8]>::to_vec)).collect::<Vec<_>>();
        for codec in [1, 2, 3, 4] {
            let compressed = recompress(&original, codec).unwrap();
            let header = batch::validate(&compressed, usize::MAX).expect("a valid batch");
            assert_eq!(header.compression(), codec);
            let back = recompress(&compressed, 0).unwrap();
            assert_eq!(back, original, "codec {codec}: back to the very same bytes");
            assert_eq!(values(&back), values(&original));
        }
        assert_eq!(recompress(&original, 0).unwrap(), original, "already uncompressed: unchanged");
        assert_eq!(codec_of("producer"), None);
        assert_eq!(codec_of("zstd"), Some(4));
    }
}
