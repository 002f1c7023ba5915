//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the SCRAM users
//! of `kafka-configs.sh --entity-type users` and `fjord configs`. The client salts the
//! password; the broker keeps only the derived keys, in the metadata log.

use std::collections::{BTreeMap, BTreeSet};

use fjord_controller::{ScramCredential, ScramMechanism};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::str;
use crate::error::code;
use crate::security::scram;
use crate::state::BrokerState;

pub fn describe(
    state: &BrokerState,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = state.controller.image();
    let asked: Option<Vec<String>> = req
        .users
        .filter(|u| !u.is_empty())
        .map(|u| u.iter().map(|n| n.name.to_string()).collect());
    let info = |creds: &BTreeMap<ScramMechanism, ScramCredential>| {
        creds
            .iter()
            .map(|(m, c)| {
                CredentialInfo::default()
                    .with_mechanism(m.code())
                    .with_iterations(c.iterations)
            })
            .collect::<Vec<_>>()
    };
    let results = match asked {
        None => image
            .scram
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str(user.clone()))
                    .with_credential_infos(info(creds))
            })
            .collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let twice: BTreeSet<&String> = users.iter().filter(|u| !seen.insert(*u)).collect();
            let mut answered = BTreeSet::new();
            users
                .iter()
                .filter(|u| answered.insert(*u))
                .map(|user| {
                    let result =
                        DescribeUserScramCredentialsResult::default().with_user(str(user.clone()));
                    match image.scram.get(user) {
                        _ if twice.contains(user) => result
                            .with_error_code(code::DUPLICATE_RESOURCE)
                            .with_error_message(Some(str(
                                "Cannot describe SCRAM credentials for the same user twice in \
                                 a single request",
                            ))),
                        Some(creds) => result.with_credential_infos(info(creds)),
                        None => result
                            .with_error_code(code::RESOURCE_NOT_FOUND)
                            .with_error_message(Some(str(format!(
                                "Attempt to describe a user credential that does not exist: {user}"
                            )))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

type Change = (String, ScramMechanism, Option<ScramCredential>);

/// Each user's changes are checked as a whole: one bad change refuses all of that user's,
/// while other users' changes go through, as Kafka does. The valid ones are committed
/// together.
pub fn alter(
    state: &BrokerState,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let image = state.controller.image();
    let mut users: BTreeMap<String, Result<Vec<Change>, (i16, String)>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut order: Vec<String> = Vec::new();
    let requested = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None))
        .chain(req.upsertions.iter().map(|u| {
            (
                u.name.to_string(),
                u.mechanism,
                Some((u.iterations, u.salt.to_vec(), u.salted_password.to_vec())),
            )
        }));
    for (user, code_of_mechanism, upsert) in requested {
        if !users.contains_key(&user) {
            order.push(user.clone());
        }
        let entry = users.entry(user.clone()).or_insert_with(|| Ok(Vec::new()));
        let Ok(changes) = entry else { continue };
        let change = check(&image, &user, code_of_mechanism, upsert, &mut seen);
        match change {
            Ok(c) => changes.push(c),
            Err(e) => *entry = Err(e),
        }
    }
    let valid: Vec<Change> = users
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let committed = if valid.is_empty() {
        Ok(())
    } else {
        state.controller.alter_scram(valid)
    };
    let results = order
        .into_iter()
        .map(|user| {
            let (error, message) = match (&users[&user], &committed) {
                (Err((c, m)), _) => (*c, Some(m.clone())),
                (Ok(_), Err(e)) => (e.kafka_code(), Some(e.to_string())),
                (Ok(_), Ok(())) => (code::NONE, None),
            };
            AlterUserScramCredentialsResult::default()
                .with_user(str(user))
                .with_error_code(error)
                .with_error_message(message.map(str))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn check(
    image: &fjord_controller::MetadataImage,
    user: &str,
    mechanism: i8,
    upsert: Option<(i32, Vec<u8>, Vec<u8>)>,
    seen: &mut BTreeSet<(String, i8)>,
) -> Result<Change, (i16, String)> {
    let refuse = |c: i16, m: &str| Err((c, m.to_string()));
    if user.is_empty() {
        return refuse(code::UNACCEPTABLE_CREDENTIAL, "Username must not be empty");
    }
    let Some(m) = ScramMechanism::from_code(mechanism) else {
        return refuse(code::UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism");
    };
    if !seen.insert((user.to_string(), mechanism)) {
        return refuse(
            code::DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request",
        );
    }
    match upsert {
        None if image.scram_credential(user, m).is_none() => refuse(
            code::RESOURCE_NOT_FOUND,
            "Attempt to delete a user credential that does not exist",
        ),
        None => Ok((user.to_string(), m, None)),
        Some((iterations, _, _)) if iterations < ScramMechanism::MIN_ITERATIONS => refuse(
            code::UNACCEPTABLE_CREDENTIAL,
            &format!(
                "Too few iterations: at least {} are needed",
                ScramMechanism::MIN_ITERATIONS
            ),
        ),
        Some((iterations, _, _)) if iterations > ScramMechanism::MAX_ITERATIONS => refuse(
            code::UNACCEPTABLE_CREDENTIAL,
            &format!(
                "Too many iterations: at most {} are allowed",
                ScramMechanism::MAX_ITERATIONS
            ),
        ),
        Some((_, salt, salted)) if salt.is_empty() || salted.is_empty() => refuse(
            code::UNACCEPTABLE_CREDENTIAL,
            "Salt and salted password must not be empty",
        ),
        Some((iterations, salt, salted)) => Ok((
            user.to_string(),
            m,
            Some(scram::credential_from_salted(m, &salt, &salted, iterations)),
        )),
    }
}
