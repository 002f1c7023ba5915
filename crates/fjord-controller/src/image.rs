//! The in-memory image of cluster metadata: what applying the metadata log in order yields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{
    ConfigResource, ListenerEndpoint, MetadataRecord, ScramCredential, ScramMechanism,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    #[serde(default)]
    pub incarnation: Option<Uuid>,
    /// Every client listener's advertised address; empty when the broker registered
    /// only `host:port`.
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
    /// Missed its heartbeats: not offered to clients, not given partitions.
    #[serde(default)]
    pub fenced: bool,
}

impl BrokerImage {
    /// Where a client that came in through listener `name` reaches this broker: that
    /// listener's address. A broker registered before it had several listeners has one
    /// address for all; a broker without the listener is not reachable through it
    /// (Kafka leaves such brokers out of Metadata).
    pub fn endpoint(&self, name: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() || name.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| (l.host.as_str(), l.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    #[serde(default)]
    pub partition_epoch: i32,
    /// An ongoing reassignment (see [`MetadataRecord::Partition`]); both empty when none.
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas before the ongoing reassignment (all of them when there is none).
    pub fn original_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.adding_replicas)
    }

    /// The replicas once the ongoing reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.removing_replicas)
    }
}

/// `all` without `gone`, in `all`'s order.
fn without(all: &[i32], gone: &[i32]) -> Vec<i32> {
    all.iter().copied().filter(|r| !gone.contains(r)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionImage>,
    /// Only the configs set on the topic itself; defaults come from the broker.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map(|p| p.replicas.len() as i16)
            .unwrap_or(0)
    }
}

/// Everything the brokers need to know about the cluster, as of `offset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Number of records applied so far; grows with every change.
    pub offset: u64,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: BTreeMap<Uuid, String>,
    pub next_producer_id: i64,
    /// Dynamic broker configs by broker id; the empty name holds the cluster-wide defaults.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Dynamic group configs by group id.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Finalized feature levels by name; a feature absent here is at level 0.
    #[serde(default)]
    pub features: BTreeMap<String, i16>,
    /// SCRAM credentials by user, then mechanism.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// ACLs by id.
    #[serde(default)]
    pub acls: BTreeMap<Uuid, crate::acl::AclBinding>,
}

impl MetadataImage {
    /// The finalized level of feature `name`; 0 when it was never finalized.
    pub fn feature_level(&self, name: &str) -> i16 {
        self.features.get(name).copied().unwrap_or(0)
    }

    /// The SCRAM credential of `user` for `mechanism`, if one is set.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.scram.get(user).and_then(|m| m.get(&mechanism))
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// Brokers that are registered and not fenced: what clients are offered.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The dynamic configs of one resource (empty when none are set).
    pub fn configs(
        &self,
        resource: ConfigResource,
        name: &str,
    ) -> Option<&BTreeMap<String, String>> {
        match resource {
            ConfigResource::Broker => self.broker_configs.get(name),
            ConfigResource::Group => self.group_configs.get(name),
        }
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Applies one record. Records that refer to unknown topics are ignored: they can only
    /// appear if the topic was removed earlier in the same log, and then they are moot.
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.offset += 1;
        match record {
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                incarnation,
                listeners,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        listeners: listeners.clone(),
                        fenced: false,
                    },
                );
            }
            MetadataRecord::BrokerFencing { node_id, fenced } => {
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = *fenced;
                }
            }
            MetadataRecord::Topic {
                name,
                topic_id,
                configs,
            } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: Vec::new(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding_replicas,
                removing_replicas,
            } => {
                let Some(name) = self.topic_names.get(topic_id) else {
                    return;
                };
                let Some(topic) = self.topics.get_mut(name) else {
                    return;
                };
                let image = PartitionImage {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding_replicas: adding_replicas.clone(),
                    removing_replicas: removing_replicas.clone(),
                };
                match topic
                    .partitions
                    .iter_mut()
                    .find(|p| p.partition == *partition)
                {
                    Some(existing) => *existing = image,
                    None => {
                        topic.partitions.push(image);
                        topic.partitions.sort_by_key(|p| p.partition);
                    }
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            } => {
                let Some(name) = self.topic_names.get(topic_id) else {
                    return;
                };
                if let Some(topic) = self.topics.get_mut(name) {
                    match value {
                        Some(v) => {
                            topic.configs.insert(key.clone(), v.clone());
                        }
                        None => {
                            topic.configs.remove(key);
                        }
                    }
                }
            }
            MetadataRecord::ProducerIds { next } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => match credential {
                Some(c) => {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, c.clone());
                }
                None => {
                    if let Some(all) = self.scram.get_mut(user) {
                        all.remove(mechanism);
                        if all.is_empty() {
                            self.scram.remove(user);
                        }
                    }
                }
            },
            MetadataRecord::Acl { id, binding } => match binding {
                Some(b) => {
                    self.acls.insert(*id, b.clone());
                }
                None => {
                    self.acls.remove(id);
                }
            },
            MetadataRecord::FeatureLevel { name, level } => {
                if *level == 0 {
                    self.features.remove(name);
                } else {
                    self.features.insert(name.clone(), *level);
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                key,
                value,
            } => {
                let all = match resource {
                    ConfigResource::Broker => &mut self.broker_configs,
                    ConfigResource::Group => &mut self.group_configs,
                };
                match value {
                    Some(v) => {
                        all.entry(name.clone())
                            .or_default()
                            .insert(key.clone(), v.clone());
                    }
                    None => {
                        if let Some(configs) = all.get_mut(name) {
                            configs.remove(key);
                            if configs.is_empty() {
                                all.remove(name);
                            }
                        }
                    }
                }
            }
        }
    }
}
