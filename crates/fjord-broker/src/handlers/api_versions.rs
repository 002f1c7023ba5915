//! ApiVersions: tells a client which APIs and versions this broker implements.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use super::SUPPORTED;
use crate::error::code;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::NONE)
        .with_api_keys(api_keys())
}

/// The answer to an ApiVersions request newer than ours: v0 layout, UNSUPPORTED_VERSION,
/// and our ranges, so the client retries at a version we speak (KIP-511).
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys())
}
