//! The simulated network between whole nodes: raft messages cross the node-to-node wire
//! format, then are dropped, duplicated, delayed and reordered by seed; partitions cut nodes
//! apart; and each node's transport reports a peer lost or back once the link has been down
//! or up for an election timeout, as the real transport's silence detection does.

use braid_engine::raft::wire::{self, GroupId};
use braid_engine::raft::{Message, NodeId};
use braid_engine::rng::SimRng;
use std::collections::{BTreeMap, BTreeSet};

/// Faults of the network, per mille per message (drop, duplicate) or the most (delay).
#[derive(Debug, Clone)]
pub struct NetFaults {
    pub drop: u64,
    pub duplicate: u64,
    pub max_delay_ms: u64,
}

struct InFlight {
    at: u64,
    sequence: u64,
    from: i32,
    to: i32,
    group: GroupId,
    message: Message,
}

pub struct Network {
    faults: NetFaults,
    in_flight: Vec<InFlight>,
    sequence: u64,
    /// Pairs of nodes that cannot reach each other (both directions), smaller id first.
    cut: BTreeSet<(i32, i32)>,
    /// What each node's transport last reported of each peer (true: reachable), and since
    /// when the link has been as it is now.
    reported: BTreeMap<(i32, i32), bool>,
    changed_at: BTreeMap<(i32, i32), (bool, u64)>,
    pub delivered: u64,
    pub dropped: u64,
}

fn pair(a: i32, b: i32) -> (i32, i32) {
    (a.min(b), a.max(b))
}

impl Network {
    pub fn new(faults: NetFaults) -> Self {
        Network {
            faults,
            in_flight: Vec::new(),
            sequence: 0,
            cut: BTreeSet::new(),
            reported: BTreeMap::new(),
            changed_at: BTreeMap::new(),
            delivered: 0,
            dropped: 0,
        }
    }

    pub fn calm(&mut self) {
        self.faults = NetFaults { drop: 0, duplicate: 0, max_delay_ms: 1 };
    }

    pub fn connected(&self, a: i32, b: i32) -> bool {
        !self.cut.contains(&pair(a, b))
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&mut self, node: i32, nodes: &[i32]) {
        for &other in nodes.iter().filter(|&&o| o != node) {
            self.cut.insert(pair(node, other));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Messages a node sent, through the wire format, onto the network with its faults.
    pub fn send(&mut self, now: u64, from: i32, messages: Vec<(GroupId, Message)>, rng: &mut SimRng) {
        for (group, message) in messages {
            let frame = wire::encode_frame(message.from, &[(group, message)]);
            let (_, mut decoded) = wire::decode_frame(&bytes::Bytes::from(frame).slice(4..))
                .unwrap_or_else(|e| panic!("a node's raft frame does not decode: {e}"));
            let (group, message) = decoded.pop().expect("one message");
            if rng.chance(self.faults.drop, 1000) {
                self.dropped += 1;
                continue;
            }
            let copies = if rng.chance(self.faults.duplicate, 1000) { 2 } else { 1 };
            for _ in 0..copies {
                let at = now + 1 + rng.below(self.faults.max_delay_ms.max(1));
                self.sequence += 1;
                let to = message.to.get();
                self.in_flight.push(InFlight {
                    at,
                    sequence: self.sequence,
                    from,
                    to,
                    group,
                    message: message.clone(),
                });
            }
        }
    }

    /// The messages due by `now`, by destination, in the order they arrive; those between
    /// nodes cut apart are lost.
    pub fn due(&mut self, now: u64) -> BTreeMap<i32, Vec<(GroupId, Message)>> {
        let (mut due, later): (Vec<InFlight>, Vec<InFlight>) = self.in_flight.drain(..).partition(|m| m.at <= now);
        self.in_flight = later;
        due.sort_by_key(|m| (m.at, m.sequence));
        let mut out: BTreeMap<i32, Vec<(GroupId, Message)>> = BTreeMap::new();
        for m in due {
            if self.cut.contains(&pair(m.from, m.to)) {
                self.dropped += 1;
                continue;
            }
            self.delivered += 1;
            if std::env::var_os("BRAID_SIM_TRACE_META").is_some() && m.group == GroupId::METADATA {
                let body = match &m.message.body {
                    braid_engine::raft::Body::Append { prev_end, prev_term, entries, commit } => {
                        format!("Append prev {prev_end}@{prev_term} +{} commit {commit}", entries.len())
                    }
                    other => format!("{other:?}").chars().take(120).collect(),
                };
                super::trace(now, format_args!("meta {} -> {} t{}: {body}", m.from, m.to, m.message.term));
            }
            out.entry(m.to).or_default().push((m.group, m.message));
        }
        out
    }

    /// Liveness reports due: (node, peer, reachable) for every link that has been as it is
    /// (both up and not cut, or not) for `silence` ms and was last reported otherwise.
    pub fn liveness(&mut self, now: u64, up: &BTreeSet<i32>, nodes: &[i32], silence: u64) -> Vec<(i32, NodeId, bool)> {
        let mut reports = Vec::new();
        for &a in nodes {
            for &b in nodes.iter().filter(|&&b| b != a) {
                let reachable = up.contains(&a) && up.contains(&b) && self.connected(a, b);
                let since = self.changed_at.entry((a, b)).or_insert((reachable, now));
                if since.0 != reachable {
                    *since = (reachable, now);
                }
                let reported = self.reported.entry((a, b)).or_insert(true);
                if *reported != reachable && now - since.1 >= silence && up.contains(&a) {
                    *reported = reachable;
                    reports.push((a, NodeId::new(b).expect("simulated node ids are positive"), reachable));
                }
            }
        }
        reports
    }

    /// A restarted node's transport starts with every peer reachable.
    pub fn restarted(&mut self, node: i32, nodes: &[i32]) {
        for &b in nodes.iter().filter(|&&b| b != node) {
            self.reported.insert((node, b), true);
        }
    }
}
