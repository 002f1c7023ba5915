//! Cluster-wide feature levels (Kafka's finalized features, KIP-584): what the whole
//! cluster has agreed to speak, kept in the metadata log so every broker advertises and
//! enforces the same level. Clients read them from ApiVersions and pick their protocol by
//! them; the Java producer, for one, uses transaction version 2 only when
//! `transaction.version` is finalized at 2 or more.

use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::record::MetadataRecord;

/// KIP-890 part 2: the epoch bumped by every commit or abort, and partitions added to the
/// transaction by the brokers that receive its writes.
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// A feature this build knows: the highest level it implements, and the level a new
/// cluster starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub max_level: i16,
    pub new_cluster_level: i16,
}

/// Every feature Fjord implements. Level 0 of each is "off" and always supported.
pub const FEATURES: &[Feature] = &[Feature {
    name: TRANSACTION_VERSION,
    max_level: 2,
    new_cluster_level: 2,
}];

/// Kafka's UpdateFeatures error codes.
const INVALID_UPDATE_VERSION: i16 = 95;

/// The records a brand-new cluster starts with: each feature at its new-cluster level.
/// A cluster whose log predates a feature keeps it at 0 until an operator raises it, as
/// Kafka does after an upgrade, so that no broker is asked for what an older one cannot do.
pub fn bootstrap() -> Vec<MetadataRecord> {
    FEATURES
        .iter()
        .filter(|f| f.new_cluster_level > 0)
        .map(|f| MetadataRecord::FeatureLevel {
            name: f.name.to_string(),
            level: f.new_cluster_level,
        })
        .collect()
}

/// How a level may be lowered (UpdateFeatures' upgrade type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downgrade {
    /// Only raising is allowed.
    Refuse,
    /// Lowering is allowed: every level of the features here can be left without losing
    /// metadata (a lower transaction version only changes what new transactions do).
    Allow,
}

/// The record that sets `name` to `level`, None when it is already there.
pub fn plan_update(
    image: &MetadataImage,
    name: &str,
    level: i16,
    downgrade: Downgrade,
) -> Result<Option<MetadataRecord>, ControllerError> {
    let refuse = |msg: String| ControllerError::Refused {
        code: INVALID_UPDATE_VERSION,
        message: msg,
    };
    let Some(feature) = FEATURES.iter().find(|f| f.name == name) else {
        return Err(refuse(format!(
            "Invalid update version {level} for feature {name}. The controller does not \
             support the given feature."
        )));
    };
    if level < 0 || level > feature.max_level {
        return Err(refuse(format!(
            "Invalid update version {level} for feature {name}. Local controller supports \
             versions 0-{}.",
            feature.max_level
        )));
    }
    let current = image.feature_level(name);
    if level == current {
        return Ok(None);
    }
    if level < current && downgrade == Downgrade::Refuse {
        return Err(refuse(format!(
            "Invalid update version {level} for feature {name}. Can't downgrade the version \
             of this feature without setting the upgrade type to either safe or unsafe \
             downgrade."
        )));
    }
    Ok(Some(MetadataRecord::FeatureLevel {
        name: name.to_string(),
        level,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for r in records {
            image.apply(r);
        }
        image
    }

    #[test]
    fn a_new_cluster_starts_at_transaction_version_2() {
        let image = image_with(&bootstrap());
        assert_eq!(image.feature_level(TRANSACTION_VERSION), 2);
    }

    #[test]
    fn an_old_log_without_the_record_is_at_level_0() {
        assert_eq!(
            MetadataImage::default().feature_level(TRANSACTION_VERSION),
            0
        );
    }

    #[test]
    fn raising_writes_a_record_and_the_same_level_writes_none() {
        let image = MetadataImage::default();
        let r = plan_update(&image, TRANSACTION_VERSION, 2, Downgrade::Refuse).unwrap();
        let image = image_with(&[r.unwrap()]);
        assert_eq!(image.feature_level(TRANSACTION_VERSION), 2);
        assert_eq!(
            plan_update(&image, TRANSACTION_VERSION, 2, Downgrade::Refuse).unwrap(),
            None
        );
    }

    #[test]
    fn lowering_needs_a_downgrade_type_and_level_0_removes_the_feature() {
        let image = image_with(&bootstrap());
        let refused = plan_update(&image, TRANSACTION_VERSION, 1, Downgrade::Refuse);
        assert!(matches!(
            refused,
            Err(ControllerError::Refused { code: 95, .. })
        ));
        let r = plan_update(&image, TRANSACTION_VERSION, 0, Downgrade::Allow).unwrap();
        let image = image_with(&[r.unwrap()]);
        assert!(image.features.is_empty());
    }

    #[test]
    fn unknown_features_and_levels_out_of_range_are_refused() {
        let image = MetadataImage::default();
        for (name, level) in [
            ("no.such.feature", 1),
            (TRANSACTION_VERSION, 3),
            (TRANSACTION_VERSION, -1),
        ] {
            let refused = plan_update(&image, name, level, Downgrade::Allow);
            assert!(matches!(
                refused,
                Err(ControllerError::Refused { code: 95, .. })
            ));
        }
    }
}
