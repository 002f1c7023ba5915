//! Admin requests whose answers must keep the broker's own error text: the tools call
//! librdkafka's admin API directly here, because the rdkafka crate's wrappers keep only the
//! error code and users must see messages such as
//! `Replication factor: 2 larger than available brokers: 1.` verbatim.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// An error the broker returned for one topic, group, partition or config resource.
#[derive(Debug, Clone)]
pub struct BrokerError {
    pub code: RDKafkaErrorCode,
    pub message: String,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokerError {}

/// What an incremental config change does to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
}

/// Which kind of resource a config change addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Broker,
    Group,
}

impl Resource {
    fn native(self) -> rd::rd_kafka_ResourceType_t {
        match self {
            Resource::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            Resource::Broker => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER,
            Resource::Group => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
        }
    }
}

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's source name (`DYNAMIC_TOPIC_CONFIG`, `GROUP_CONFIG`, ...).
    pub source: &'static str,
    pub is_default: bool,
    pub is_sensitive: bool,
}

/// Kafka's names for DescribeConfigs' config sources. The rdkafka crate's own enum lacks
/// the group source (KIP-848 group configs), so the tools read the raw value.
fn source_name(source: rd::rd_kafka_ConfigSource_t) -> &'static str {
    use rd::rd_kafka_ConfigSource_t as S;
    match source {
        S::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG => "DYNAMIC_TOPIC_CONFIG",
        S::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG => "DYNAMIC_BROKER_CONFIG",
        S::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        S::RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG => "STATIC_BROKER_CONFIG",
        S::RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG => "DEFAULT_CONFIG",
        S::RD_KAFKA_CONFIG_SOURCE_GROUP_CONFIG => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// A committed offset (or an offset to commit) of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Offsets per partition, each beside the broker's error for that partition, if any.
pub type PartitionResults = Vec<(PartitionOffset, Option<BrokerError>)>;

/// The outer error is a failure to get an answer (transport, timeout); the inner one is the
/// broker's refusal of this topic, group or resource.
pub type Answer<T> = Result<std::result::Result<T, BrokerError>>;

pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    timeout: Duration,
}

// Owners of librdkafka handles, so every exit path frees them.
struct Queue(*mut rd::rd_kafka_queue_t);
impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed only here.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

struct Options(*mut rd::rd_kafka_AdminOptions_t);
impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new and destroyed only here.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

struct Event(*mut rd::rd_kafka_event_t);
impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned by rd_kafka_queue_poll and destroyed only here.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

struct PartitionList(*mut rd::rd_kafka_topic_partition_list_t);
impl Drop for PartitionList {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_partition_list_new and destroyed only here.
        unsafe { rd::rd_kafka_topic_partition_list_destroy(self.0) }
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("'{}' contains a NUL byte", s.escape_default()))
}

/// Copies a C string librdkafka owns; null reads as empty.
///
/// SAFETY: `p` must be null or point to a NUL-terminated string that lives for this call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn err_text(code: rd::rd_kafka_resp_err_t) -> String {
    // SAFETY: rd_kafka_err2str returns a static string for every code.
    unsafe { text(rd::rd_kafka_err2str(code)) }
}

fn is_ok(code: rd::rd_kafka_resp_err_t) -> bool {
    code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}

/// Reads per-topic results (CreateTopics, DeleteTopics, CreatePartitions).
///
/// SAFETY: `arr` must point to `n` valid topic results owned by a live event.
unsafe fn topic_results(
    arr: *mut *const rd::rd_kafka_topic_result_t,
    n: usize,
) -> Vec<(String, std::result::Result<(), BrokerError>)> {
    (0..n)
        .map(|i| {
            let r = *arr.add(i);
            let name = text(rd::rd_kafka_topic_result_name(r));
            let code = rd::rd_kafka_topic_result_error(r);
            if is_ok(code) {
                (name, Ok(()))
            } else {
                let mut message = text(rd::rd_kafka_topic_result_error_string(r));
                if message.is_empty() {
                    message = err_text(code);
                }
                (
                    name,
                    Err(BrokerError {
                        code: code.into(),
                        message,
                    }),
                )
            }
        })
        .collect()
}

/// Reads the partitions of a list librdkafka owns.
///
/// SAFETY: `list` must be null or a valid partition list that lives for this call.
unsafe fn read_partitions(list: *const rd::rd_kafka_topic_partition_list_t) -> PartitionResults {
    if list.is_null() {
        return Vec::new();
    }
    let l = &*list;
    let cnt = usize::try_from(l.cnt).unwrap_or(0);
    (0..cnt)
        .map(|i| {
            let e = &*l.elems.add(i);
            let err = (!is_ok(e.err)).then(|| BrokerError {
                code: e.err.into(),
                message: err_text(e.err),
            });
            (
                PartitionOffset {
                    topic: text(e.topic),
                    partition: e.partition,
                    offset: e.offset,
                },
                err,
            )
        })
        .collect()
}

/// Reads the single group result of a group-offsets request.
///
/// SAFETY: `arr` must point to `n` valid group results owned by a live event.
unsafe fn single_group_result(
    arr: *mut *const rd::rd_kafka_group_result_t,
    n: usize,
) -> Answer<PartitionResults> {
    if n == 0 || arr.is_null() {
        bail!("the broker sent no result for the group");
    }
    let g = *arr;
    let err = rd::rd_kafka_group_result_error(g);
    if !err.is_null() {
        let code = rd::rd_kafka_error_code(err);
        let mut message = text(rd::rd_kafka_error_string(err));
        if message.is_empty() {
            message = err_text(code);
        }
        return Ok(Err(BrokerError {
            code: code.into(),
            message,
        }));
    }
    Ok(Ok(read_partitions(rd::rd_kafka_group_result_partitions(g))))
}

impl Admin {
    pub fn new(client: AdminClient<DefaultClientContext>, timeout: Duration) -> Self {
        Admin { client, timeout }
    }

    pub fn client(&self) -> &AdminClient<DefaultClientContext> {
        &self.client
    }

    fn timeout_ms(&self) -> c_int {
        c_int::try_from(self.timeout.as_millis()).unwrap_or(c_int::MAX)
    }

    /// Starts one admin request on a private queue and waits for its result event.
    fn call(
        &self,
        launch: impl FnOnce(
            *mut rd::rd_kafka_t,
            *const rd::rd_kafka_AdminOptions_t,
            *mut rd::rd_kafka_queue_t,
        ),
    ) -> Result<Event> {
        let rk = self.client.inner().native_ptr();
        // SAFETY: rk is the live handle of self.client; the queue and options are freed by
        // their owners after the result event has been taken off the queue.
        unsafe {
            let queue = Queue(rd::rd_kafka_queue_new(rk));
            let opts = Options(rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ANY,
            ));
            let mut errstr = [0 as c_char; 512];
            let ms = self.timeout_ms();
            rd::rd_kafka_AdminOptions_set_request_timeout(
                opts.0,
                ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            rd::rd_kafka_AdminOptions_set_operation_timeout(
                opts.0,
                ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            launch(rk, opts.0, queue.0);
            // librdkafka fails the request itself at the request timeout; the slack only
            // guards against a result that never arrives.
            let ev = rd::rd_kafka_queue_poll(queue.0, ms.saturating_add(2000));
            if ev.is_null() {
                bail!("no answer from the broker within {} ms", ms);
            }
            let ev = Event(ev);
            let code = rd::rd_kafka_event_error(ev.0);
            if !is_ok(code) {
                let mut message = text(rd::rd_kafka_event_error_string(ev.0));
                if message.is_empty() {
                    message = err_text(code);
                }
                return Err(BrokerError {
                    code: code.into(),
                    message,
                }
                .into());
            }
            Ok(ev)
        }
    }

    fn only_topic_result(
        mut results: Vec<(String, std::result::Result<(), BrokerError>)>,
    ) -> Answer<()> {
        match results.pop() {
            Some((_, r)) => Ok(r),
            None => bail!("the broker sent no result for the topic"),
        }
    }

    /// CreateTopics for one topic; -1 partitions or replication factor means the broker's default.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(String, String)],
    ) -> Answer<()> {
        let cname = cstring(name)?;
        let cconfigs = configs
            .iter()
            .map(|(k, v)| Ok((cstring(k)?, cstring(v)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut errstr = [0 as c_char; 512];
        // SAFETY: every pointer handed to librdkafka outlives the call; the NewTopic is
        // copied by rd_kafka_CreateTopics and freed right after it.
        unsafe {
            let nt = rd::rd_kafka_NewTopic_new(
                cname.as_ptr(),
                partitions,
                replication_factor,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if nt.is_null() {
                bail!("{}", text(errstr.as_ptr()));
            }
            for (k, v) in &cconfigs {
                rd::rd_kafka_NewTopic_set_config(nt, k.as_ptr(), v.as_ptr());
            }
            let mut arr = [nt];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_CreateTopics(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_NewTopic_destroy(nt);
            let ev = ev?;
            let res = rd::rd_kafka_event_CreateTopics_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to CreateTopics");
            }
            let mut n = 0usize;
            let topics = rd::rd_kafka_CreateTopics_result_topics(res, &mut n);
            Self::only_topic_result(topic_results(topics, n))
        }
    }

    pub fn delete_topic(&self, name: &str) -> Answer<()> {
        let cname = cstring(name)?;
        // SAFETY: as in create_topic.
        unsafe {
            let dt = rd::rd_kafka_DeleteTopic_new(cname.as_ptr());
            let mut arr = [dt];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_DeleteTopics(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_DeleteTopic_destroy(dt);
            let ev = ev?;
            let res = rd::rd_kafka_event_DeleteTopics_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to DeleteTopics");
            }
            let mut n = 0usize;
            let topics = rd::rd_kafka_DeleteTopics_result_topics(res, &mut n);
            Self::only_topic_result(topic_results(topics, n))
        }
    }

    pub fn create_partitions(&self, name: &str, total: usize) -> Answer<()> {
        let cname = cstring(name)?;
        let mut errstr = [0 as c_char; 512];
        // SAFETY: as in create_topic.
        unsafe {
            let np = rd::rd_kafka_NewPartitions_new(
                cname.as_ptr(),
                total,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if np.is_null() {
                bail!("{}", text(errstr.as_ptr()));
            }
            let mut arr = [np];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_CreatePartitions(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_NewPartitions_destroy(np);
            let ev = ev?;
            let res = rd::rd_kafka_event_CreatePartitions_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to CreatePartitions");
            }
            let mut n = 0usize;
            let topics = rd::rd_kafka_CreatePartitions_result_topics(res, &mut n);
            Self::only_topic_result(topic_results(topics, n))
        }
    }

    /// Topic ids as Kafka prints them (URL-safe base64 without padding); topics the broker
    /// could not describe are left out.
    pub fn topic_ids(&self, names: &[String]) -> Result<HashMap<String, String>> {
        let cnames = names
            .iter()
            .map(|n| cstring(n))
            .collect::<Result<Vec<_>>>()?;
        let mut ptrs: Vec<*const c_char> = cnames.iter().map(|c| c.as_ptr()).collect();
        let mut out = HashMap::new();
        // SAFETY: the name pointers outlive the collection, which is freed after the call.
        unsafe {
            let coll = rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
            let ev = self.call(|rk, opts, q| rd::rd_kafka_DescribeTopics(rk, coll, opts, q));
            rd::rd_kafka_TopicCollection_destroy(coll);
            let ev = ev?;
            let res = rd::rd_kafka_event_DescribeTopics_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to DescribeTopics");
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_DescribeTopics_result_topics(res, &mut n);
            for i in 0..n {
                let d = *arr.add(i);
                if !rd::rd_kafka_TopicDescription_error(d).is_null() {
                    continue;
                }
                let id = rd::rd_kafka_TopicDescription_topic_id(d);
                if id.is_null() {
                    continue;
                }
                let b64 = text(rd::rd_kafka_Uuid_base64str(id))
                    .replace('+', "-")
                    .replace('/', "_")
                    .trim_end_matches('=')
                    .to_string();
                out.insert(text(rd::rd_kafka_TopicDescription_name(d)), b64);
            }
        }
        Ok(out)
    }

    /// DescribeConfigs for one resource (a broker's name is its id, or "" for the
    /// cluster-wide default).
    pub fn describe_configs(&self, resource: Resource, name: &str) -> Answer<Vec<DescribedConfig>> {
        let cname = cstring(name)?;
        // SAFETY: the resource is freed after the call that copies it; everything read from
        // the result event is copied before the event is dropped.
        unsafe {
            let cr = rd::rd_kafka_ConfigResource_new(resource.native(), cname.as_ptr());
            let mut arr = [cr];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_DescribeConfigs(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_ConfigResource_destroy(cr);
            let ev = ev?;
            let res = rd::rd_kafka_event_DescribeConfigs_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to DescribeConfigs");
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_DescribeConfigs_result_resources(res, &mut n);
            if n == 0 {
                bail!("the broker sent no result for the resource");
            }
            let r = *arr;
            let code = rd::rd_kafka_ConfigResource_error(r);
            if !is_ok(code) {
                let mut message = text(rd::rd_kafka_ConfigResource_error_string(r));
                if message.is_empty() {
                    message = err_text(code);
                }
                return Ok(Err(BrokerError {
                    code: code.into(),
                    message,
                }));
            }
            let mut count = 0usize;
            let entries = rd::rd_kafka_ConfigResource_configs(r, &mut count);
            let out = (0..count)
                .map(|i| {
                    let e = *entries.add(i);
                    let value = rd::rd_kafka_ConfigEntry_value(e);
                    DescribedConfig {
                        name: text(rd::rd_kafka_ConfigEntry_name(e)),
                        value: (!value.is_null()).then(|| text(value)),
                        source: source_name(rd::rd_kafka_ConfigEntry_source(e)),
                        is_default: rd::rd_kafka_ConfigEntry_is_default(e) != 0,
                        is_sensitive: rd::rd_kafka_ConfigEntry_is_sensitive(e) != 0,
                    }
                })
                .collect();
            Ok(Ok(out))
        }
    }

    /// IncrementalAlterConfigs for one resource.
    pub fn alter_configs(
        &self,
        resource: Resource,
        name: &str,
        ops: &[(ConfigOp, String, Option<String>)],
    ) -> Answer<()> {
        let cname = cstring(name)?;
        let cops = ops
            .iter()
            .map(|(op, k, v)| Ok((*op, cstring(k)?, v.as_deref().map(cstring).transpose()?)))
            .collect::<Result<Vec<_>>>()?;
        let restype = resource.native();
        // SAFETY: as in create_topic; errors from add_incremental_config are owned by us.
        unsafe {
            let cr = rd::rd_kafka_ConfigResource_new(restype, cname.as_ptr());
            for (op, k, v) in &cops {
                let op_type = match op {
                    ConfigOp::Set => {
                        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET
                    }
                    ConfigOp::Delete => {
                        rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE
                    }
                };
                let vptr = v.as_ref().map_or(ptr::null(), |c| c.as_ptr());
                let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                    cr,
                    k.as_ptr(),
                    op_type,
                    vptr,
                );
                if !err.is_null() {
                    let msg = text(rd::rd_kafka_error_string(err));
                    rd::rd_kafka_error_destroy(err);
                    rd::rd_kafka_ConfigResource_destroy(cr);
                    bail!("{msg}");
                }
            }
            let mut arr = [cr];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_IncrementalAlterConfigs(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_ConfigResource_destroy(cr);
            let ev = ev?;
            let res = rd::rd_kafka_event_IncrementalAlterConfigs_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to IncrementalAlterConfigs");
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_IncrementalAlterConfigs_result_resources(res, &mut n);
            if n == 0 {
                bail!("the broker sent no result for the resource");
            }
            let r = *arr;
            let code = rd::rd_kafka_ConfigResource_error(r);
            if is_ok(code) {
                return Ok(Ok(()));
            }
            let mut message = text(rd::rd_kafka_ConfigResource_error_string(r));
            if message.is_empty() {
                message = err_text(code);
            }
            Ok(Err(BrokerError {
                code: code.into(),
                message,
            }))
        }
    }

    /// Every committed offset of a group (OffsetFetch for all topics).
    pub fn group_offsets(&self, group: &str) -> Answer<Vec<PartitionOffset>> {
        let cgroup = cstring(group)?;
        // SAFETY: as in create_topic; a null partition list asks for every partition.
        unsafe {
            let req = rd::rd_kafka_ListConsumerGroupOffsets_new(cgroup.as_ptr(), ptr::null());
            let mut arr = [req];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_ListConsumerGroupOffsets(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_ListConsumerGroupOffsets_destroy(req);
            let ev = ev?;
            let res = rd::rd_kafka_event_ListConsumerGroupOffsets_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to OffsetFetch");
            }
            let mut n = 0usize;
            let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(res, &mut n);
            Ok(single_group_result(groups, n)?.map(|parts| {
                parts
                    .into_iter()
                    .filter(|(p, err)| err.is_none() && p.offset >= 0)
                    .map(|(p, _)| p)
                    .collect()
            }))
        }
    }

    /// Commits offsets for a group that has no active members (OffsetCommit without a
    /// generation); per-partition failures come back beside each offset.
    pub fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[PartitionOffset],
    ) -> Answer<PartitionResults> {
        let cgroup = cstring(group)?;
        let topics = offsets
            .iter()
            .map(|o| cstring(&o.topic))
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: as in create_topic; the partition list is copied by the request constructor.
        unsafe {
            let list = PartitionList(rd::rd_kafka_topic_partition_list_new(
                c_int::try_from(offsets.len()).unwrap_or(c_int::MAX),
            ));
            for (o, t) in offsets.iter().zip(&topics) {
                let e = rd::rd_kafka_topic_partition_list_add(list.0, t.as_ptr(), o.partition);
                (*e).offset = o.offset;
            }
            let req = rd::rd_kafka_AlterConsumerGroupOffsets_new(cgroup.as_ptr(), list.0);
            let mut arr = [req];
            let ev = self.call(|rk, opts, q| {
                rd::rd_kafka_AlterConsumerGroupOffsets(rk, arr.as_mut_ptr(), 1, opts, q);
            });
            rd::rd_kafka_AlterConsumerGroupOffsets_destroy(req);
            let ev = ev?;
            let res = rd::rd_kafka_event_AlterConsumerGroupOffsets_result(ev.0);
            if res.is_null() {
                bail!("unexpected answer to OffsetCommit");
            }
            let mut n = 0usize;
            let groups = rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(res, &mut n);
            single_group_result(groups, n)
        }
    }
}
