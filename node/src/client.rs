//! A small blocking Kafka client over the node's own protocol, for the command-line tools.

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A broker's address from Metadata as host:port (an IPv6 host in brackets).
pub fn broker_address(broker: &MetadataResponseBroker) -> String {
    match u16::try_from(broker.port) {
        Ok(port) => crate::config::HostPort { host: broker.host.to_string(), port }.to_string(),
        Err(_) => format!("{}:{}", broker.host.as_str(), broker.port),
    }
}

/// Largest response the tools accept.
pub const RESPONSE_MAX_BYTES: usize = 256 << 20;
/// Time allowed to open a connection to one address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    /// Correlation ids of requests sent and not yet answered, oldest first.
    in_flight: std::collections::VecDeque<i32>,
}

impl Client {
    /// A client of the first node that answers among `addresses`, a comma-separated list of
    /// host:port tried in turn (as Kafka's bootstrap.servers); the error names every address
    /// tried and why it failed.
    pub fn connect(addresses: &str) -> anyhow::Result<Self> {
        let mut failures = Vec::new();
        for addr in addresses.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Client::connect_one(addr) {
                Ok(client) => return Ok(client),
                Err(e) => failures.push(format!("{addr} ({e:#})")),
            }
        }
        match failures.len() {
            0 => bail!("no address to connect to in {addresses:?}"),
            1 => bail!("no node answered at {}", failures[0]),
            _ => bail!("no node answered at any of {} addresses: {}", failures.len(), failures.join("; ")),
        }
    }

    /// A client of the node at `addr` (host:port), once it answered ApiVersions.
    fn connect_one(addr: &str) -> anyhow::Result<Self> {
        let targets: Vec<_> = addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.collect();
        let mut connected = Err(anyhow::anyhow!("{addr} resolves to no address"));
        for target in targets {
            connected =
                TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).with_context(|| format!("connecting to {target}"));
            if connected.is_ok() {
                break;
            }
        }
        let stream = connected?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut client = Client {
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            in_flight: std::collections::VecDeque::new(),
        };
        let response = client.call_version(ApiVersionsRequest::default(), 0)?;
        if response.error_code != 0 {
            bail!("ApiVersions failed with error {}", response.error_code);
        }
        client.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(client)
    }

    /// The address of the node this client is connected to.
    pub fn peer(&self) -> String {
        self.stream.peer_addr().map_or_else(|_| String::new(), |a| a.to_string())
    }

    /// A client connected to the leader of `topic`/`partition`, found through Metadata from
    /// `bootstrap` (waiting up to 10 s while an election is on).
    pub fn connect_to_leader(bootstrap: &str, topic: &str, partition: i32) -> anyhow::Result<Self> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, TopicName};
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut client = Client::connect(bootstrap)?;
            let mut request = MetadataRequest::default();
            let mut wanted = MetadataRequestTopic::default();
            wanted.name = Some(TopicName(StrBytes::from_string(topic.to_owned())));
            request.topics = Some(vec![wanted]);
            let metadata = client.call(request)?;
            let leader = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
                .map(|p| p.leader_id.0)
                .filter(|&id| id >= 0);
            let broker = leader.and_then(|id| metadata.brokers.iter().find(|b| b.node_id.0 == id));
            if let Some(broker) = broker {
                return client.move_to(broker);
            }
            if std::time::Instant::now() >= deadline {
                // No leader to be found: go on with this node, whose answer says why.
                return Ok(client);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends an admin change to the controller: `call` sends it on a client connected to the
    /// controller and returns the response's error code with what it needs of the response.
    /// While there is no controller to take it (NOT_CONTROLLER: none elected, a new one still
    /// applying its log; or no answer from `bootstrap` or the controller it names: a node
    /// down, or cut off from the others and turning clients away), it is tried again on a
    /// fresh connection for up to 30 s, as Kafka's admin client retries until its timeout.
    pub fn call_controller<T>(
        bootstrap: &str,
        mut call: impl FnMut(&mut Client) -> anyhow::Result<(i16, T)>,
    ) -> anyhow::Result<(i16, T)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut told = false;
        loop {
            let late = std::time::Instant::now() >= deadline;
            let why = match Client::connect(bootstrap).and_then(Client::into_controller) {
                Ok(mut client) => {
                    let (code, answer) = call(&mut client)?;
                    if code != kafka_protocol::ResponseError::NotController.code() || late {
                        return Ok((code, answer));
                    }
                    "the cluster has no controller ready (NOT_CONTROLLER)".to_owned()
                }
                Err(e) if !late => format!("no controller answers through {bootstrap} ({e:#})"),
                Err(e) => return Err(e),
            };
            if !std::mem::replace(&mut told, true) {
                eprintln!("braid: {why}; retrying for up to 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// This client moved to the controller named by its node's Metadata (or left where it
    /// is if that names none yet).
    fn into_controller(mut self) -> anyhow::Result<Self> {
        use kafka_protocol::messages::MetadataRequest;
        let mut request = MetadataRequest::default();
        request.topics = Some(Vec::new());
        let metadata = self.call(request)?;
        let controller = metadata.brokers.iter().find(|b| b.node_id == metadata.controller_id);
        match controller {
            Some(broker) => self.move_to(broker),
            None => Ok(self),
        }
    }

    /// A client connected to the coordinator of `key`, a consumer group (`key_type` 0) or a
    /// transactional id (1), waiting up to 10 s while the internal topic is created or its
    /// partition elects a leader.
    pub fn connect_to_coordinator(bootstrap: &str, key_type: i8, group: &str) -> anyhow::Result<Self> {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut client = Client::connect(bootstrap)?;
            let version = client.version_for::<FindCoordinatorRequest>()?;
            let mut request = FindCoordinatorRequest::default();
            request.key_type = key_type;
            if version >= 4 {
                request.coordinator_keys = vec![StrBytes::from_string(group.to_owned())];
            } else {
                request.key = StrBytes::from_string(group.to_owned());
            }
            let response = client.call_version(request, version)?;
            let (error, id, host, port) = match response.coordinators.first() {
                Some(c) if version >= 4 => (c.error_code, c.node_id, c.host.to_string(), c.port),
                _ => (response.error_code, response.node_id, response.host.to_string(), response.port),
            };
            if error == 0 && id.0 >= 0 {
                let mut broker = MetadataResponseBroker::default();
                broker.node_id = id;
                broker.host = StrBytes::from_string(host);
                broker.port = port;
                return client.move_to(&broker);
            }
            if std::time::Instant::now() >= deadline {
                bail!("no coordinator for {group} (error {error})");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every broker's Kafka address, from `bootstrap`'s Metadata.
    pub fn brokers(bootstrap: &str) -> anyhow::Result<Vec<(i32, String)>> {
        use kafka_protocol::messages::MetadataRequest;
        let mut client = Client::connect(bootstrap)?;
        let mut request = MetadataRequest::default();
        request.topics = Some(Vec::new());
        let metadata = client.call(request)?;
        Ok(metadata.brokers.iter().map(|b| (b.node_id.0, broker_address(b))).collect())
    }

    /// ListOffsets for one partition (this client should be connected to its leader):
    /// `timestamp` -2 gives the log start, -1 the end (high watermark), else the first offset
    /// at or after that time.
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> anyhow::Result<i64> {
        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = timestamp;
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
        t.partitions = vec![p];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![t];
        let response = self.call(request)?;
        let r = response.topics.first().and_then(|t| t.partitions.first()).context("empty ListOffsets response")?;
        if r.error_code != 0 {
            bail!("ListOffsets {topic}-{partition} failed: error {}", r.error_code);
        }
        Ok(r.offset)
    }

    /// This client if it is connected to `broker` already, else a new one connected to it.
    fn move_to(self, broker: &MetadataResponseBroker) -> anyhow::Result<Self> {
        let addr = broker_address(broker);
        let here = self.stream.peer_addr()?;
        let resolved = addr
            .to_socket_addrs()
            .with_context(|| format!("resolving broker {}'s address {addr}", broker.node_id.0))?;
        if resolved.into_iter().any(|a| a == here) {
            Ok(self)
        } else {
            Client::connect_one(&addr).with_context(|| format!("broker {}", broker.node_id.0))
        }
    }

    /// The highest version both sides speak.
    pub fn version_for<R: Request>(&self) -> anyhow::Result<i16> {
        let (min, max) =
            *self.versions.get(&R::KEY).with_context(|| format!("the node does not serve API key {}", R::KEY))?;
        let ours = R::VERSIONS;
        let version = max.min(ours.max);
        if version < min.max(ours.min) {
            bail!("no common version for API key {}", R::KEY);
        }
        Ok(version)
    }

    pub fn call<R: Request>(&mut self, request: R) -> anyhow::Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.call_version(request, version)
    }

    pub fn call_version<R: Request>(&mut self, request: R, version: i16) -> anyhow::Result<R::Response> {
        self.send(request, version)?;
        self.receive::<R>(version)
    }

    /// Sends a request without waiting for its response; responses come back from
    /// [`Client::receive`] in the order of their requests (pipelining).
    pub fn send<R: Request>(&mut self, request: R, version: i16) -> anyhow::Result<()> {
        self.correlation_id += 1;
        let buf = encode_request(&request, version, self.correlation_id, "braid-cli")?;
        self.stream.write_all(&buf)?;
        self.in_flight.push_back(self.correlation_id);
        Ok(())
    }

    /// The response to the oldest request sent and not yet answered.
    pub fn receive<R: Request>(&mut self, version: i16) -> anyhow::Result<R::Response> {
        let expected = self.in_flight.pop_front().context("no request in flight")?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).context("reading a response")?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_MAX_BYTES {
            bail!("response size {size} out of range");
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        decode_response::<R>(Bytes::from(body), version, expected)
    }
}

/// A request framed for the wire: size, header (of the version the API's `version` uses) and
/// body.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
) -> anyhow::Result<BytesMut> {
    let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow::anyhow!("unknown API key {}", R::KEY))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let header_version = key.request_header_version(version);
    let size = header.compute_size(header_version)? + request.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    request.encode(&mut buf, version)?;
    Ok(buf)
}

/// Decodes a response frame (without its size) to request `expected` of type `R`.
pub fn decode_response<R: Request>(mut body: Bytes, version: i16, expected: i32) -> anyhow::Result<R::Response> {
    let response_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
    if response_header.correlation_id != expected {
        bail!("response to request {} arrived for {expected}", response_header.correlation_id);
    }
    let response = R::Response::decode(&mut body, version)?;
    if body.has_remaining() {
        tracing::debug!(left = body.remaining(), "response had trailing bytes");
    }
    Ok(response)
}
