//! ApiVersions: the APIs and version ranges this node serves.

use crate::kafka::SUPPORTED_APIS;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

pub fn supported() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .filter_map(|(key, _, _)| crate::kafka::supported_range(*key as i16))
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys)
}
