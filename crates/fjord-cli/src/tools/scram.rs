//! SCRAM users, as `kafka-configs.sh --entity-type users` and `kafka-storage.sh format
//! --add-scram` manage them: `SCRAM-SHA-256=[iterations=8192,password=alice-secret]`.
//! The password is salted and iterated here, on the client, as Kafka's tools do; only the
//! salted password crosses the wire (AlterUserScramCredentials).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use fjord_broker::security::scram;
use fjord_controller::ScramMechanism;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::common::Connection;
use super::wire::{call, open, refused, with_broker};
use crate::output::outln;

/// One `MECHANISM=[key=value,...]` item: a user's credential to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSpec {
    pub mechanism: ScramMechanism,
    /// `name=`, which `--add-scram` needs and `fjord configs` takes from --entity-name.
    pub user: Option<String>,
    pub password: String,
    pub iterations: i32,
}

/// Parses `SCRAM-SHA-256=[name=admin,password=admin-secret]` (values may be quoted, to
/// hold a comma). Kafka's default iteration count is 4096.
pub fn parse_spec(text: &str) -> Result<ScramSpec> {
    let (mechanism, rest) = text.split_once('=').ok_or_else(|| {
        anyhow!("expected SCRAM-SHA-256=[password=...] or SCRAM-SHA-512=[...], got '{text}'")
    })?;
    let mechanism = ScramMechanism::from_name(mechanism.trim()).ok_or_else(|| {
        anyhow!("unknown SCRAM mechanism '{mechanism}': use SCRAM-SHA-256 or SCRAM-SHA-512")
    })?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .ok_or_else(|| {
            anyhow!(
                "the settings of {} go in brackets: [password=...]",
                mechanism.name()
            )
        })?;
    let mut spec = ScramSpec {
        mechanism,
        user: None,
        password: String::new(),
        iterations: ScramMechanism::MIN_ITERATIONS,
    };
    let mut password = None;
    for (key, value) in split_settings(body)? {
        match key.as_str() {
            "name" => spec.user = Some(value),
            "password" => password = Some(value),
            "iterations" => {
                spec.iterations = value
                    .parse()
                    .map_err(|_| anyhow!("iterations must be a number, got '{value}'"))?
            }
            other => bail!("unknown SCRAM setting '{other}' (name, password, iterations)"),
        }
    }
    spec.password = password.ok_or_else(|| anyhow!("{} needs password=...", mechanism.name()))?;
    if spec.password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(spec)
}

/// `key=value` pairs separated by commas; a value in double quotes keeps its commas.
fn split_settings(body: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value in '{body}'"))?;
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (v, a) = quoted
                    .split_once('"')
                    .ok_or_else(|| anyhow!("a quoted value is not closed in '{body}'"))?;
                (v.to_string(), a.trim_start())
            }
            None => match after.split_once(',') {
                Some((v, a)) => (v.trim().to_string(), a),
                None => (after.trim().to_string(), ""),
            },
        };
        out.push((key.trim().to_string(), value));
        rest = after
            .trim_start()
            .strip_prefix(',')
            .unwrap_or(after)
            .trim_start();
    }
    Ok(out)
}

/// The request that sets `user`'s credentials, salted here.
pub fn upsertion(user: &str, spec: &ScramSpec) -> Result<ScramCredentialUpsertion> {
    let salt = scram::new_salt(spec.mechanism).map_err(|e| anyhow!(e.0))?;
    let salted = scram::salted_password(spec.mechanism, &spec.password, &salt, spec.iterations);
    Ok(ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(spec.mechanism.code())
        .with_iterations(spec.iterations)
        .with_salt(salt.into())
        .with_salted_password(salted.into()))
}

/// `fjord configs --alter --entity-type users`: sets and deletes credentials of one user.
pub fn alter(conn: &Connection, user: &str, add: &[String], delete: &[String]) -> Result<ExitCode> {
    let mut request = AlterUserScramCredentialsRequest::default();
    for a in add {
        let spec = parse_spec(a)?;
        if spec.user.as_deref().is_some_and(|n| n != user) {
            bail!("name= in --add-config must be --entity-name's user, if given");
        }
        request.upsertions.push(upsertion(user, &spec)?);
    }
    for d in delete {
        for m in d.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mechanism = ScramMechanism::from_name(m).ok_or_else(|| {
                anyhow!("users have SCRAM-SHA-256 and SCRAM-SHA-512 credentials, not '{m}'")
            })?;
            request.deletions.push(
                ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_string(user.to_string()))
                    .with_mechanism(mechanism.code()),
            );
        }
    }
    let resp: AlterUserScramCredentialsResponse = with_broker(&conn.bootstrap_server, |server| {
        let mut stream = open(conn, server)?;
        call(&mut stream, 1, request.clone(), 0)
    })?;
    for r in &resp.results {
        refused(
            &format!("cannot alter the credentials of user {}", r.user.as_str()),
            r.error_code,
            &r.error_message,
        )?;
    }
    outln!("Completed updating config for user {user}.")?;
    Ok(ExitCode::SUCCESS)
}

/// `fjord configs --describe --entity-type users [--entity-name U]`, in kafka-configs.sh's
/// words.
pub fn describe(conn: &Connection, user: Option<&str>) -> Result<ExitCode> {
    let users = user.map(|u| vec![UserName::default().with_name(StrBytes::from_string(u.into()))]);
    let resp: DescribeUserScramCredentialsResponse =
        with_broker(&conn.bootstrap_server, |server| {
            let mut stream = open(conn, server)?;
            call(
                &mut stream,
                1,
                DescribeUserScramCredentialsRequest::default().with_users(users.clone()),
                0,
            )
        })?;
    refused(
        "cannot describe SCRAM credentials",
        resp.error_code,
        &resp.error_message,
    )?;
    for r in &resp.results {
        // A user without credentials is not an error for kafka-configs.sh: it shows none.
        if r.error_code == fjord_broker::error::code::RESOURCE_NOT_FOUND {
            continue;
        }
        refused(
            &format!("cannot describe user {}", r.user.as_str()),
            r.error_code,
            &r.error_message,
        )?;
        let creds: Vec<String> = r
            .credential_infos
            .iter()
            .map(|c| {
                let name = ScramMechanism::from_code(c.mechanism).map_or("unknown", |m| m.name());
                format!("{name}=iterations={}", c.iterations)
            })
            .collect();
        outln!(
            "SCRAM credential configs for user-principal '{}' are {}",
            r.user.as_str(),
            creds.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_scram_settings() {
        let s = parse_spec("SCRAM-SHA-256=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(s.mechanism, ScramMechanism::Sha256);
        assert_eq!(s.user.as_deref(), Some("admin"));
        assert_eq!(s.password, "admin-secret");
        assert_eq!(s.iterations, 4096);
        let s = parse_spec("SCRAM-SHA-512=[iterations=8192,password=\"a,b=c\"]").unwrap();
        assert_eq!((s.password.as_str(), s.iterations), ("a,b=c", 8192));
        for bad in [
            "SCRAM-SHA-1=[password=x]",
            "SCRAM-SHA-256=password=x",
            "SCRAM-SHA-256=[name=admin]",
            "SCRAM-SHA-256=[password=]",
            "SCRAM-SHA-256=[password=x,colour=blue]",
            "SCRAM-SHA-256=[iterations=many,password=x]",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
