//! The fuzz targets' functions over seeded random and mutated inputs, on stable Rust, so the
//! default test run catches a decoder that panics. Real fuzzing: tests/fuzz (cargo fuzz).

mod common;

use braid_engine::rng::SimRng;
use bytes::Bytes;

/// Valid request frames to mutate: ApiVersions v0/v3, Metadata v1/v12, Produce v3, Fetch v4.
fn seeds() -> Vec<Vec<u8>> {
    let header = |key: i16, version: i16| {
        let mut h = Vec::new();
        h.extend_from_slice(&key.to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&1i32.to_be_bytes());
        h.extend_from_slice(&3i16.to_be_bytes());
        h.extend_from_slice(b"cli");
        h
    };
    let mut seeds = vec![header(18, 0)];
    let mut v3 = header(18, 3);
    v3.extend_from_slice(&[0, 4, b'k', b'c', b'a', 4, b'2', b'.', b'0', 0]);
    seeds.push(v3);
    let mut metadata = header(3, 1);
    metadata.extend_from_slice(&1i32.to_be_bytes());
    metadata.extend_from_slice(&1i16.to_be_bytes());
    metadata.push(b't');
    seeds.push(metadata);
    let batch = braid_engine::log::batch::build_batch(0, &[b"v"]);
    let mut produce = header(0, 3);
    produce.extend_from_slice(&common::produce_v3_body("t", 1000, &batch));
    seeds.push(produce);
    seeds
}

/// One input for a decoder: every fourth round random bytes (up to `random_len`), else a seed
/// with up to four mutations (a flipped bit, an edge byte, a cut, an inserted byte).
fn fuzz_frame(rng: &mut SimRng, round: u64, seeds: &[Vec<u8>], random_len: u64) -> Vec<u8> {
    let mut frame: Vec<u8> = if round.is_multiple_of(4) {
        (0..rng.below(random_len)).map(|_| rng.below(256) as u8).collect()
    } else {
        seeds[rng.below(seeds.len() as u64) as usize].clone()
    };
    for _ in 0..=rng.below(4) {
        if frame.is_empty() {
            break;
        }
        let at = rng.below(frame.len() as u64) as usize;
        match rng.below(4) {
            0 => frame[at] ^= 1 << rng.below(8),
            1 => frame[at] = [0x00, 0x7f, 0x80, 0xff][rng.below(4) as usize],
            2 => frame.truncate(at),
            _ => frame.insert(at, rng.below(256) as u8),
        }
    }
    frame
}

#[test]
fn request_decoder_survives_random_and_mutated_frames() {
    let mut rng = SimRng::new(0xB4A1D);
    let seeds = seeds();
    for seed in &seeds {
        if let Err(e) = braid_node::kafka::decode_request(Bytes::from(seed.clone())) {
            panic!("seed frame {seed:?} does not decode: {e:#}");
        }
    }
    for round in 0..200_000u64 {
        let frame = fuzz_frame(&mut rng, round, &seeds, 64);
        let _ = braid_node::kafka::decode_request(Bytes::from(frame));
    }
}

/// The jute_request fuzz target's function: ZooKeeper client frames, random and mutated from
/// valid requests, give a request or an error; what decodes re-encodes to the same request.
#[test]
fn jute_decoder_survives_random_and_mutated_frames() {
    use braid_node::zk::jute::{op, Acl, ConnectRequest, Op, Request, Writer};
    let mut rng = SimRng::new(0x2181);
    let acl = vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
    let seeds: Vec<Vec<u8>> = [
        Op::Create { op: op::CREATE, path: "/a".into(), data: b"x".to_vec(), acl, flags: 0, ttl: None },
        Op::GetChildren { op: op::GET_CHILDREN2, path: "/".into(), watch: true },
        Op::Multi { op: op::MULTI, ops: vec![Op::Check { path: "/a".into(), version: 0 }] },
        Op::SetWatches {
            op: op::SET_WATCHES,
            relative_zxid: 1,
            data: vec!["/a".into()],
            exist: vec![],
            child: vec![],
            persistent: vec![],
            persistent_recursive: vec![],
        },
    ]
    .into_iter()
    .map(|op| {
        let mut w = Writer::default();
        Request { xid: 1, op }.encode(&mut w);
        w.bytes
    })
    .collect();
    for round in 0..100_000u64 {
        let frame = fuzz_frame(&mut rng, round, &seeds, 48);
        let _ = ConnectRequest::decode(&frame);
        if let Ok(request) = Request::decode(&frame) {
            let mut w = Writer::default();
            request.encode(&mut w);
            assert_eq!(Request::decode(&w.bytes), Ok(request));
        }
    }
}

/// The tree_snapshot fuzz target's function: snapshots and metadata-log transactions, random and
/// mutated from valid ones, give a tree (or transaction) or an error; what loads writes back the
/// same bytes.
#[test]
fn tree_snapshot_and_transaction_decoders_survive_random_and_mutated_bytes() {
    use braid_engine::tree::{Acl, DataTree, Txn};
    let mut rng = SimRng::new(0x5a9);
    let mut tree = DataTree::new();
    tree.apply(1, 5, &Txn::CreateSession { id: 9, timeout_ms: 4000, password: vec![1; 16], owner: 1 }).unwrap();
    tree.apply(2, 6, &Txn::create("/a", b"data".to_vec())).unwrap();
    let eph = Txn::Create {
        path: "/a/e".into(),
        data: vec![],
        ephemeral_owner: 9,
        sequential: true,
        acl: Acl::open_unsafe(),
    };
    tree.apply(3, 7, &eph).unwrap();
    let txn = Txn::Multi(vec![
        eph,
        Txn::Check { path: "/a".into(), version: 0 },
        Txn::Delete { path: "/a".into(), version: 1 },
    ]);
    let seeds = vec![tree.snapshot(), txn.encode(), Txn::CloseSession { id: 9 }.encode()];
    for round in 0..50_000u64 {
        let bytes = fuzz_frame(&mut rng, round, &seeds, 64);
        if let Ok(tree) = DataTree::from_snapshot(&bytes) {
            assert_eq!(tree.snapshot(), bytes);
        }
        if let Ok(txn) = Txn::decode(&bytes) {
            assert_eq!(Txn::decode(&txn.encode()), Ok(txn));
        }
    }
}
