//! UpdateFeatures: finalizes cluster-wide feature levels (`kafka-features.sh upgrade`,
//! `downgrade` and `disable`, the Admin client's `updateFeatures`). What is finalized is
//! read back from ApiVersions, as Kafka's `describeFeatures` does.

use fjord_controller::features::{self, Downgrade};
use fjord_controller::ControllerError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

/// Kafka's FeatureUpdate.UpgradeType.
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

/// Every update is checked against the current levels first; only if all are valid are
/// they applied, so a request never leaves half its changes behind. v2 answers with the
/// first error alone; v0-1 with one result per feature.
pub fn update(
    state: &BrokerState,
    req: UpdateFeaturesRequest,
    version: i16,
) -> UpdateFeaturesResponse {
    let image = state.controller.image();
    let mut planned: Vec<(String, i16, bool, Result<(), ControllerError>)> = Vec::new();
    for u in &req.feature_updates {
        let allow = if version == 0 {
            Some(u.allow_downgrade)
        } else {
            match u.upgrade_type {
                UPGRADE => Some(false),
                SAFE_DOWNGRADE | UNSAFE_DOWNGRADE => Some(true),
                _ => None,
            }
        };
        let name = u.feature.to_string();
        let checked = match allow {
            None => Err(ControllerError::Refused {
                code: code::INVALID_REQUEST,
                message: format!("Unknown upgrade type {} for feature {name}", u.upgrade_type),
            }),
            Some(allow) => {
                let downgrade = if allow {
                    Downgrade::Allow
                } else {
                    Downgrade::Refuse
                };
                features::plan_update(&image, &name, u.max_version_level, downgrade).map(|_| ())
            }
        };
        if planned.iter().any(|(n, ..)| *n == name) {
            let message = format!("Feature {name} was specified more than once.");
            return refuse_all(&req, version, code::INVALID_REQUEST, &message);
        }
        planned.push((name, u.max_version_level, allow.unwrap_or(false), checked));
    }
    if let Some(e) = planned.iter().find_map(|(.., r)| r.as_ref().err()) {
        let (first_code, first_message) = (e.kafka_code(), e.to_string());
        if version >= 2 {
            return refuse_all(&req, version, first_code, &first_message);
        }
        let results = planned
            .iter()
            .map(|(name, .., r)| {
                let (c, m) = match r {
                    Err(e) => (e.kafka_code(), e.to_string()),
                    Ok(()) => (
                        FEATURE_UPDATE_FAILED,
                        "Not applied: another update in the request failed".to_string(),
                    ),
                };
                result(name, c, Some(m))
            })
            .collect();
        return UpdateFeaturesResponse::default().with_results(results);
    }
    let mut results = Vec::new();
    for (name, level, allow, _) in &planned {
        let applied = if req.validate_only {
            Ok(())
        } else {
            state.controller.update_feature(name, *level, *allow)
        };
        match applied {
            Ok(()) => results.push(result(name, code::NONE, None)),
            Err(e) => {
                tracing::warn!(feature = %name, level, error = %e, "updating a feature failed");
                if version >= 2 {
                    return refuse_all(&req, version, e.kafka_code(), &e.to_string());
                }
                results.push(result(name, e.kafka_code(), Some(e.to_string())));
            }
        }
    }
    let response = UpdateFeaturesResponse::default();
    if version >= 2 {
        response
    } else {
        response.with_results(results)
    }
}

/// Kafka's FEATURE_UPDATE_FAILED.
const FEATURE_UPDATE_FAILED: i16 = 96;

fn result(name: &str, c: i16, message: Option<String>) -> UpdatableFeatureResult {
    UpdatableFeatureResult::default()
        .with_feature(str(name))
        .with_error_code(c)
        .with_error_message(message.map(str))
}

/// The whole request refused with one error.
fn refuse_all(
    req: &UpdateFeaturesRequest,
    version: i16,
    c: i16,
    message: &str,
) -> UpdateFeaturesResponse {
    let response = UpdateFeaturesResponse::default()
        .with_error_code(c)
        .with_error_message(Some(str(message)));
    if version >= 2 {
        return response;
    }
    let results = req
        .feature_updates
        .iter()
        .map(|u| result(&u.feature, c, Some(message.to_string())))
        .collect();
    response.with_results(results)
}
