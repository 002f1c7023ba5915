//! ApiVersions: tells a client which APIs and versions this broker implements.

use fjord_controller::features::FEATURES;
use fjord_controller::MetadataImage;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;

use super::{str, SUPPORTED};
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

/// Our APIs, the features this build can speak, and the levels the cluster finalized.
/// The finalized features' epoch is the metadata offset they are read at, which only
/// grows, so a client that asks several brokers keeps the newest answer (v3+ fields;
/// older versions drop them when encoding).
pub fn handle(image: &MetadataImage) -> ApiVersionsResponse {
    let supported = FEATURES
        .iter()
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(str(f.name))
                .with_min_version(0)
                .with_max_version(f.max_level)
        })
        .collect();
    let finalized = image
        .features
        .iter()
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(str(name))
                .with_min_version_level(*level)
                .with_max_version_level(*level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(code::NONE)
        .with_api_keys(api_keys())
        .with_supported_features(supported)
        .with_finalized_features_epoch(i64::try_from(image.offset).unwrap_or(i64::MAX))
        .with_finalized_features(finalized)
}

/// The answer to an ApiVersions request newer than ours: v0 layout, UNSUPPORTED_VERSION,
/// and our ranges, so the client retries at a version we speak (KIP-511).
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys())
}
