// Java client compat suite: org.apache.kafka:kafka-clients (Admin, KafkaProducer,
// KafkaConsumer with assign()/seek(), and a consumer group on the new consumer protocol,
// group.protocol=consumer; transactions, at transaction version 2) against a broker.
//
// FJORD_BIN=/path/to/fjord  -> this program starts `fjord server` on a free loopback port with
//                              a temporary data dir, and kill -9 / restarts it for durability.
// KAFKA_BOOTSTRAP=host:port -> an already running broker; restart tests are skipped.
// Prints one line per test and, at the end, "N passed, N failed[, N skipped]".

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ClientCompat {
    static final Duration WAIT = Duration.ofSeconds(20);
    /** What each side says when a topic asks for one replica more than there are brokers. */
    static String rfMessageFjord(int brokers) {
        return "Replication factor: " + (brokers + 1) + " larger than available brokers: " + brokers + ".";
    }

    static String rfMessageKafka4(int brokers) {
        return "Unable to replicate the partition " + (brokers + 1) + " time(s): The target "
            + "replication factor of " + (brokers + 1) + " cannot be reached because only " + brokers
            + " broker(s) are registered.";
    }

    // ---------------------------------------------------------------- harness
    static String fjordBin;
    static String bootstrap;
    static int port;
    static Path dataDir;
    static Process server;
    static final Random RNG = new Random(42);

    static class Skip extends RuntimeException { Skip(String m) { super(m); } }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", 0));
            return s.getLocalPort();
        }
    }

    static void startServer() throws Exception {
        // The cleaner looks for work every 200 ms instead of 15 s, for the compaction test.
        List<String> cmd = List.of(fjordBin, "server", "--listen", bootstrap,
                                   "--data-dir", dataDir.toString(),
                                   "--override", "log.cleaner.backoff.ms=200");
        server = new ProcessBuilder(cmd).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(new File(dataDir + ".log")))
            .start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (true) {
            if (!server.isAlive()) throw new IllegalStateException("server exited: " + server.exitValue());
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    stopServer(true);
                    throw new IllegalStateException("server did not accept connections in 20 s");
                }
                Thread.sleep(100);
            }
        }
    }

    static void stopServer(boolean kill9) throws InterruptedException {
        if (server == null) return;
        if (kill9) server.destroyForcibly(); else server.destroy();
        if (!server.waitFor(10, TimeUnit.SECONDS)) { server.destroyForcibly(); server.waitFor(10, TimeUnit.SECONDS); }
        server = null;
    }

    static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 10);
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        return Admin.create(p);
    }

    static KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        p.putAll(extra);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer() {
        return consumer(Map.of());
    }

    static KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        p.putAll(extra);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** A topic with the broker's default replication factor: one replica on a single node,
     *  three on the compat cluster, where every test then runs on replicated partitions. */
    static String createTopic(String name, int partitions, Map<String, String> configs) throws Exception {
        return createTopic(name, partitions, Optional.empty(), configs);
    }

    static String createTopic(String name, int partitions, Optional<Short> replicationFactor,
                              Map<String, String> configs) throws Exception {
        try (Admin a = admin()) {
            a.createTopics(List.of(new NewTopic(name, Optional.of(partitions), replicationFactor)
                    .configs(configs)))
                .all().get(20, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (true) {
                try {
                    TopicDescription d = a.describeTopics(List.of(name)).allTopicNames()
                        .get(20, TimeUnit.SECONDS).get(name);
                    if (d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null)) break;
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
                }
                check(System.nanoTime() < deadline, "topic " + name + " not ready");
                Thread.sleep(100);
            }
        }
        return name;
    }

    /** assign() the partitions, seek to offset, read exactly n records. */
    static List<ConsumerRecord<byte[], byte[]>> consumeN(String topic, List<Integer> parts, long offset, int n) {
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            List<TopicPartition> tps = parts.stream().map(p -> new TopicPartition(topic, p)).collect(Collectors.toList());
            c.assign(tps);
            for (TopicPartition tp : tps) c.seek(tp, offset);
            List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (out.size() < n && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) out.add(r);
            }
            check(out.size() == n, "expected " + n + " records from " + topic + ", got " + out.size());
            check(c.poll(Duration.ofMillis(300)).isEmpty(), "more records than expected in " + topic);
            return out;
        }
    }

    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void eq(Object want, Object got, String what) {
        if (!Objects.equals(want, got)) throw new AssertionError(what + ": expected <" + want + "> got <" + got + ">");
    }

    static <T extends Throwable> T expectCause(Class<T> type, KafkaFuture<?> f) throws Exception {
        try {
            f.get(20, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (type.isInstance(e.getCause())) return type.cast(e.getCause());
            throw new AssertionError("expected " + type.getSimpleName() + ", got " + e.getCause(), e.getCause());
        }
        throw new AssertionError("expected " + type.getSimpleName() + ", but it succeeded");
    }

    // ---------------------------------------------------------------- tests
    static void testAdminTopicLifecycle() throws Exception {
        String t = createTopic(unique("j-adm"), 3, Optional.of((short) 1), Map.of("retention.ms", "123456"));
        try (Admin a = admin()) {
            Collection<Node> nodes = a.describeCluster().nodes().get(20, TimeUnit.SECONDS);
            Set<Integer> ids = nodes.stream().map(Node::id).collect(Collectors.toSet());
            check(!ids.isEmpty(), "cluster has brokers");
            check(a.listTopics().names().get(20, TimeUnit.SECONDS).contains(t), "listed");
            TopicDescription d = a.describeTopics(List.of(t)).allTopicNames().get(20, TimeUnit.SECONDS).get(t);
            eq(3, d.partitions().size(), "partition count");
            for (TopicPartitionInfo p : d.partitions()) {
                // Created with one replica: on a broker of the cluster, which leads it.
                int id = p.leader().id();
                check(ids.contains(id), "leader of " + p.partition() + " is a listed broker");
                eq(List.of(id), p.replicas().stream().map(Node::id).collect(Collectors.toList()), "replicas");
                eq(List.of(id), p.isr().stream().map(Node::id).collect(Collectors.toList()), "isr");
            }
            a.createPartitions(Map.of(t, NewPartitions.increaseTo(5))).all().get(20, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (a.describeTopics(List.of(t)).allTopicNames().get(20, TimeUnit.SECONDS).get(t).partitions().size() != 5) {
                check(System.nanoTime() < deadline, "partitions not increased to 5");
                Thread.sleep(100);
            }
            a.deleteTopics(List.of(t)).all().get(20, TimeUnit.SECONDS);
            deadline = System.nanoTime() + WAIT.toNanos();
            while (a.listTopics().names().get(20, TimeUnit.SECONDS).contains(t)) {
                check(System.nanoTime() < deadline, "deleted topic still listed");
                Thread.sleep(100);
            }
            expectCause(UnknownTopicOrPartitionException.class, a.describeTopics(List.of(t)).allTopicNames());
        }
    }

    static void testConfigs() throws Exception {
        String t = createTopic(unique("j-cfg"), 1, Map.of("retention.ms", "123456"));
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
        try (Admin a = admin()) {
            Config c = a.describeConfigs(List.of(res)).all().get(20, TimeUnit.SECONDS).get(res);
            eq("123456", c.get("retention.ms").value(), "retention.ms");
            eq(false, c.get("retention.ms").isDefault(), "retention.ms isDefault");
            eq(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, c.get("retention.ms").source(), "source");
            eq("delete", c.get("cleanup.policy").value(), "cleanup.policy");
            eq(true, c.get("cleanup.policy").isDefault(), "cleanup.policy isDefault");

            a.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("segment.bytes", "1048576"), AlterConfigOp.OpType.SET))))
                .all().get(20, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (true) {
                c = a.describeConfigs(List.of(res)).all().get(20, TimeUnit.SECONDS).get(res);
                if ("3600000".equals(c.get("retention.ms").value())) break;
                check(System.nanoTime() < deadline, "retention.ms not altered");
                Thread.sleep(100);
            }
            eq("1048576", c.get("segment.bytes").value(), "segment.bytes");
            eq(false, c.get("segment.bytes").isDefault(), "segment.bytes isDefault");

            InvalidConfigurationException bad = null;
            try {
                a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET))))
                    .all().get(20, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof InvalidConfigurationException) bad = (InvalidConfigurationException) e.getCause();
                else throw e;
            }
            check(bad != null, "a non-numeric retention.ms was accepted");
        }
    }

    static void testDeleteRecordsAndListOffsets() throws Exception {
        String t = createTopic(unique("j-delrec"), 1, Map.of());
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            for (int i = 0; i < 10; i++)
                p.send(new ProducerRecord<>(t, 0, (long) (i + 1) * 1000, null, ("v" + i).getBytes()));
            p.flush();
        }
        TopicPartition tp = new TopicPartition(t, 0);
        try (Admin a = admin()) {
            long low = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp)
                .get(20, TimeUnit.SECONDS).lowWatermark();
            eq(4L, low, "low watermark");
            eq(4L, a.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get(20, TimeUnit.SECONDS).offset(), "earliest");
            eq(10L, a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get(20, TimeUnit.SECONDS).offset(), "latest");
            ListOffsetsResult.ListOffsetsResultInfo r = a.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(5500)))
                .partitionResult(tp).get(20, TimeUnit.SECONDS);
            eq(5L, r.offset(), "offset for 5500");
            eq(6000L, r.timestamp(), "timestamp for 5500");
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            eq(Map.of(tp, 4L), c.beginningOffsets(List.of(tp)), "beginningOffsets");
            eq(Map.of(tp, 10L), c.endOffsets(List.of(tp)), "endOffsets");
            OffsetAndTimestamp ot = c.offsetsForTimes(Map.of(tp, 2500L)).get(tp);
            eq(4L, ot.offset(), "offsetsForTimes(2500) after deleting below 4");
            check(c.offsetsForTimes(Map.of(tp, 99999L)).get(tp) == null, "offsetsForTimes past end is null");
        }
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(0), 0, 6);  // seek below start: reset to earliest
        eq(4L, got.get(0).offset(), "first offset after DeleteRecords");
        eq("v4", new String(got.get(0).value()), "first value");
    }

    /** DescribeLogDirs, asked of every broker: the partition is on its one replica, has
     *  the bytes written, and no lag. */
    static void testLogDirs() throws Exception {
        String t = createTopic(unique("j-logdirs"), 1, Optional.of((short) 1), Map.of());
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            for (int i = 0; i < 20; i++) p.send(new ProducerRecord<>(t, 0, null, new byte[1000]));
            p.flush();
        }
        try (Admin a = admin()) {
            List<Integer> ids = a.describeCluster().nodes().get(20, TimeUnit.SECONDS).stream()
                .map(Node::id).collect(Collectors.toList());
            Map<Integer, Map<String, LogDirDescription>> dirs =
                a.describeLogDirs(ids).allDescriptions().get(20, TimeUnit.SECONDS);
            eq(new HashSet<>(ids), dirs.keySet(), "every broker answers");
            int copies = 0;
            for (Map<String, LogDirDescription> byDir : dirs.values()) {
                eq(1, byDir.size(), "one log dir per broker");
                LogDirDescription d = byDir.values().iterator().next();
                check(d.error() == null, "log dir without error: " + d.error());
                check(d.totalBytes().orElse(0) > 0, "total bytes reported");
                ReplicaInfo r = d.replicaInfos().get(new TopicPartition(t, 0));
                if (r == null) continue;
                copies++;
                check(r.size() >= 20_000, "partition size " + r.size() + " holds the records");
                eq(0L, r.offsetLag(), "offset lag");
            }
            eq(1, copies, "replicas of a one-replica partition");
        }
    }

    /** AlterPartitionReassignments / ListPartitionReassignments: refusals anywhere; on a
     *  cluster, a one-replica partition with records (and a deleted head, so the new
     *  replica must start at the log start) moves to another broker and keeps every
     *  record and its offsets. */
    static void testReassignment() throws Exception {
        String t = createTopic(unique("j-reassign"), 1, Optional.of((short) 1), Map.of());
        TopicPartition tp = new TopicPartition(t, 0);
        produceEach(t, 1, 300, "r");
        try (Admin a = admin()) {
            List<Integer> ids = a.describeCluster().nodes().get(20, TimeUnit.SECONDS).stream()
                .map(Node::id).sorted().collect(Collectors.toList());
            eq(4L, a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp)
                .get(20, TimeUnit.SECONDS).lowWatermark(), "low watermark");
            int unknown = ids.get(ids.size() - 1) + 1000;
            expectCause(InvalidReplicaAssignmentException.class, a.alterPartitionReassignments(
                Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(unknown))))).all());
            expectCause(NoReassignmentInProgressException.class,
                a.alterPartitionReassignments(Map.of(tp, Optional.empty())).all());
            eq(Map.of(), a.listPartitionReassignments().reassignments().get(20, TimeUnit.SECONDS),
                "ongoing reassignments");
            int from = a.describeTopics(List.of(t)).allTopicNames().get(20, TimeUnit.SECONDS).get(t)
                .partitions().get(0).leader().id();
            if (ids.size() < 2) {
                // One broker: moving to where it already is changes nothing.
                a.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(from)))))
                    .all().get(20, TimeUnit.SECONDS);
                return;
            }
            int to = ids.stream().filter(id -> id != from).findFirst().get();
            a.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(to)))))
                .all().get(20, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (true) {
                Map<TopicPartition, PartitionReassignment> ongoing =
                    a.listPartitionReassignments(Set.of(tp)).reassignments().get(20, TimeUnit.SECONDS);
                TopicPartitionInfo info = a.describeTopics(List.of(t)).allTopicNames()
                    .get(20, TimeUnit.SECONDS).get(t).partitions().get(0);
                List<Integer> replicas = info.replicas().stream().map(Node::id).collect(Collectors.toList());
                if (ongoing.isEmpty() && replicas.equals(List.of(to)) && info.leader() != null
                    && info.leader().id() == to) break;
                check(System.nanoTime() < deadline, "reassignment to " + to + " not done: replicas "
                    + replicas + ", ongoing " + ongoing);
                Thread.sleep(200);
            }
        }
        produceEach(t, 1, 10, "after");
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(0), 0, 306);
        eq(4L, got.get(0).offset(), "first offset after the move");
        eq("r-0-4", new String(got.get(0).value(), StandardCharsets.UTF_8), "first value after the move");
        eq(309L, got.get(305).offset(), "last offset after the move");
    }

    static void testErrors(boolean isFjord) throws Exception {
        try (Admin a = admin()) {
            expectCause(InvalidTopicException.class,
                a.createTopics(List.of(new NewTopic("bad name!", 1, (short) 1))).all());
            String t = createTopic(unique("j-dup"), 1, Map.of());
            TopicExistsException dup = expectCause(TopicExistsException.class,
                a.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all());
            eq("Topic '" + t + "' already exists.", dup.getMessage(), "duplicate message");
            expectCause(InvalidPartitionsException.class,
                a.createTopics(List.of(new NewTopic(unique("j-p0"), 0, (short) 1))).all());
            expectCause(InvalidPartitionsException.class,
                a.createTopics(List.of(new NewTopic(unique("j-pneg"), -3, (short) 1))).all());
            // One more replica than there are brokers.
            int brokers = a.describeCluster().nodes().get(20, TimeUnit.SECONDS).size();
            InvalidReplicationFactorException rf = expectCause(InvalidReplicationFactorException.class,
                a.createTopics(List.of(new NewTopic(unique("j-rf"), 1, (short) (brokers + 1)))).all());
            eq(isFjord ? rfMessageFjord(brokers) : rfMessageKafka4(brokers), rf.getMessage(),
                "replication factor message");
            expectCause(InvalidPartitionsException.class,
                a.createPartitions(Map.of(t, NewPartitions.increaseTo(1))).all());
        }
        String big = createTopic(unique("j-big"), 1, Map.of("max.message.bytes", "1024"));
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 10_000_000,
                ProducerConfig.RETRIES_CONFIG, 0))) {
            Future<RecordMetadata> f = p.send(new ProducerRecord<>(big, 0, null, new byte[4096]));
            try {
                f.get(20, TimeUnit.SECONDS);
                throw new AssertionError("4 KiB record accepted by a topic with max.message.bytes=1024");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof RecordTooLargeException, "expected RecordTooLargeException, got " + e.getCause());
            }
            eq(0L, p.send(new ProducerRecord<>(big, 0, null, "ok".getBytes())).get(20, TimeUnit.SECONDS).offset(), "small after big");
        }
        // partition 7 of a 1-partition topic: the client waits max.block.ms for it to appear
        // in metadata, then fails with a TimeoutException naming partition 7
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.MAX_BLOCK_MS_CONFIG, 3000))) {
            Future<RecordMetadata> f7 = p.send(new ProducerRecord<>(big, 7, null, "x".getBytes()));
            try {
                f7.get(20, TimeUnit.SECONDS);
                throw new AssertionError("produce to partition 7 of a 1-partition topic succeeded");
            } catch (ExecutionException | KafkaException e) {
                Throwable c = e instanceof ExecutionException ? e.getCause() : e;
                check(c instanceof org.apache.kafka.common.errors.TimeoutException, "unexpected " + c);
                check(String.valueOf(c.getMessage()).contains("Partition 7 of topic " + big),
                      "message names the partition: " + c.getMessage());
            }
        }
    }

    static void testCompression(String codec) throws Exception {
        String t = createTopic(unique("j-z-" + codec), 1, Map.of());
        List<byte[]> values = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            byte[] v;
            switch (i % 3) {
                case 0: v = ("record " + i + " ").repeat(30).getBytes(StandardCharsets.UTF_8); break;
                case 1: v = new byte[300 + i]; RNG.nextBytes(v); break;
                default: v = new byte[0];
            }
            values.add(v);
        }
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 50, ProducerConfig.ACKS_CONFIG, "all"))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < values.size(); i++)
                fs.add(p.send(new ProducerRecord<>(t, 0, ("k" + i).getBytes(), values.get(i))));
            p.flush();
            for (int i = 0; i < fs.size(); i++) eq((long) i, fs.get(i).get(20, TimeUnit.SECONDS).offset(), "offset");
        }
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(0), 0, values.size());
        for (int i = 0; i < values.size(); i++) {
            eq((long) i, got.get(i).offset(), codec + " offset");
            check(Arrays.equals(values.get(i), got.get(i).value()), codec + " value " + i + " differs");
            eq("k" + i, new String(got.get(i).key()), codec + " key");
        }
    }

    /** Batches the cleaner has to re-encode (some records survive) read back by the Java
     *  consumer in every codec: newest value of each key, at its offset. */
    static void testCompaction() throws Exception {
        String t = createTopic(unique("j-compact"), 1, Map.of(
            "cleanup.policy", "compact", "segment.ms", "1000", "min.cleanable.dirty.ratio", "0.01"));
        Map<String, long[]> newest = new HashMap<>();
        Map<String, String> newestValue = new HashMap<>();
        for (String codec : List.of("lz4", "snappy", "gzip", "zstd", "none")) {
            try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                    ProducerConfig.LINGER_MS_CONFIG, 50, ProducerConfig.ACKS_CONFIG, "all"))) {
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                List<String> keys = new ArrayList<>(), vals = new ArrayList<>();
                for (int i = 0; i < 60; i++) {
                    String k = "k" + (i % 9), v = codec + "-" + i + "-" + "x".repeat(i * 7);
                    keys.add(k); vals.add(v);
                    fs.add(p.send(new ProducerRecord<>(t, 0, k.getBytes(), v.getBytes(StandardCharsets.UTF_8))));
                }
                p.flush();
                for (int i = 0; i < fs.size(); i++) {
                    newest.put(keys.get(i), new long[] {fs.get(i).get(20, TimeUnit.SECONDS).offset()});
                    newestValue.put(keys.get(i), vals.get(i));
                }
            }
        }
        // Roll the active segment (the cleaner never touches it) with one more record.
        Thread.sleep(1500);
        long rollOffset;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            rollOffset = p.send(new ProducerRecord<>(t, 0, "roll".getBytes(), "roll".getBytes())).get(20, TimeUnit.SECONDS).offset();
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        List<ConsumerRecord<byte[], byte[]>> got = List.of();
        while (System.nanoTime() < deadline) {
            got = new ArrayList<>();
            try (KafkaConsumer<byte[], byte[]> c = consumer()) {
                TopicPartition tp = new TopicPartition(t, 0);
                c.assign(List.of(tp));
                c.seekToBeginning(List.of(tp));
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (System.nanoTime() < end && (got.isEmpty() || got.get(got.size() - 1).offset() < rollOffset))
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(300))) got.add(r);
            }
            if (got.size() == newest.size() + 1) break;
            Thread.sleep(1000);
        }
        eq(newest.size() + 1, got.size(), "records left after compaction");
        for (ConsumerRecord<byte[], byte[]> r : got) {
            String k = new String(r.key());
            if (k.equals("roll")) { eq(rollOffset, r.offset(), "roll offset"); continue; }
            eq(newest.get(k)[0], r.offset(), k + " offset");
            eq(newestValue.get(k), new String(r.value(), StandardCharsets.UTF_8), k + " value");
        }
    }

    static void testAcks(String acks) throws Exception {
        String t = createTopic(unique("j-acks-" + acks), 1, Map.of());
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, acks,
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, acks.equals("all")))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 50; i++) fs.add(p.send(new ProducerRecord<>(t, 0, null, ("a" + i).getBytes())));
            p.flush();
            for (int i = 0; i < 50; i++) {
                long off = fs.get(i).get(20, TimeUnit.SECONDS).offset();
                eq(acks.equals("0") ? -1L : (long) i, off, "acks=" + acks + " offset");
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(0), 0, 50);
        for (int i = 0; i < 50; i++) eq("a" + i, new String(got.get(i).value()), "value");
    }

    static void testHeadersTimestampsSeek() throws Exception {
        String t = createTopic(unique("j-hdr"), 2, Map.of());
        List<Header> headers = List.of(new RecordHeader("trace", "abc".getBytes()),
            new RecordHeader("bin", new byte[]{0, (byte) 255, 7}), new RecordHeader("dup", "1".getBytes()),
            new RecordHeader("dup", "2".getBytes()), new RecordHeader("nullv", (byte[]) null));
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            for (int i = 0; i < 10; i++)
                p.send(new ProducerRecord<>(t, 1, 1_600_000_000_000L + i, ("k" + i).getBytes(), ("v" + i).getBytes(), headers));
            p.flush();
        }
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(1), 6, 4);
        for (int j = 0; j < 4; j++) {
            ConsumerRecord<byte[], byte[]> r = got.get(j);
            int i = 6 + j;
            eq(1, r.partition(), "partition");
            eq((long) i, r.offset(), "offset after seek(6)");
            eq("v" + i, new String(r.value()), "value");
            eq(1_600_000_000_000L + i, r.timestamp(), "timestamp");
            eq(TimestampType.CREATE_TIME, r.timestampType(), "timestamp type");
            List<Header> h = new ArrayList<>();
            r.headers().forEach(h::add);
            eq(headers.size(), h.size(), "header count");
            for (int k = 0; k < headers.size(); k++) {
                eq(headers.get(k).key(), h.get(k).key(), "header key");
                check(Arrays.equals(headers.get(k).value(), h.get(k).value()), "header value " + headers.get(k).key());
            }
        }
    }

    static void testKeyedPartitioning() throws Exception {
        String t = createTopic(unique("j-keyed"), 4, Map.of());
        Map<String, Set<Integer>> partOf = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of())) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 200; i++) fs.add(p.send(new ProducerRecord<>(t, ("key" + i % 10).getBytes(), (i % 10 + ":" + i / 10).getBytes())));
            p.flush();
            for (int i = 0; i < 200; i++)
                partOf.computeIfAbsent("key" + i % 10, k -> new HashSet<>()).add(fs.get(i).get(20, TimeUnit.SECONDS).partition());
        }
        for (Set<Integer> s : partOf.values()) eq(1, s.size(), "partitions of one key");
        Map<String, List<Integer>> seqs = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : consumeN(t, List.of(0, 1, 2, 3), 0, 200)) {
            String k = new String(r.key());
            check(partOf.get(k).contains(r.partition()), "key in its partition");
            seqs.computeIfAbsent(k, x -> new ArrayList<>()).add(Integer.parseInt(new String(r.value()).split(":")[1]));
        }
        List<Integer> want = new ArrayList<>();
        for (int i = 0; i < 20; i++) want.add(i);
        for (List<Integer> s : seqs.values()) eq(want, s, "per-key order");
    }

    static KafkaConsumer<byte[], byte[]> groupConsumer(String group, String protocol) {
        return groupConsumer(group, protocol, Map.of());
    }

    static KafkaConsumer<byte[], byte[]> groupConsumer(String group, String protocol, Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        p.putAll(extra);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static void produceEach(String topic, int partitions, int perPartition, String tag) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int part = 0; part < partitions; part++)
                for (int i = 0; i < perPartition; i++)
                    fs.add(p.send(new ProducerRecord<>(topic, part, null,
                        (tag + "-" + part + "-" + i).getBytes(StandardCharsets.UTF_8))));
            for (Future<RecordMetadata> f : fs) f.get(20, TimeUnit.SECONDS);
        }
    }

    /** Two members of a group (classic or new consumer protocol) share four partitions,
     *  consume every record once, commit, and a later member resumes exactly at the
     *  committed offsets. */
    static void testGroup(String protocol) throws Exception {
        String topic = createTopic(unique("grp-" + protocol), 4, Map.of());
        String group = unique("g-" + protocol);
        List<KafkaConsumer<byte[], byte[]>> cs =
            List.of(groupConsumer(group, protocol), groupConsumer(group, protocol));
        try {
            for (KafkaConsumer<byte[], byte[]> c : cs) c.subscribe(List.of(topic));
            // Settle before producing: records read during a move would be read again by the
            // next owner (nothing is committed yet), which is correct but not "exactly once".
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                for (KafkaConsumer<byte[], byte[]> c : cs) c.poll(Duration.ofMillis(100));
                Set<TopicPartition> a = cs.get(0).assignment(), b = cs.get(1).assignment();
                Set<TopicPartition> all = new HashSet<>(a);
                all.addAll(b);
                if (!a.isEmpty() && !b.isEmpty() && all.size() == 4 && a.size() + b.size() == 4) break;
                check(System.nanoTime() < deadline, "group did not settle: " + a + " / " + b);
            }
            produceEach(topic, 4, 10, "first");
            Map<String, Integer> seen = new HashMap<>();
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (seen.size() < 40 && System.nanoTime() < deadline) {
                for (KafkaConsumer<byte[], byte[]> c : cs)
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100)))
                        seen.merge(r.partition() + "@" + r.offset(), 1, Integer::sum);
            }
            eq(40, seen.size(), "records consumed");
            check(seen.values().stream().allMatch(n -> n == 1), "a record was consumed twice: " + seen);
            for (KafkaConsumer<byte[], byte[]> c : cs) c.commitSync();
        } finally {
            for (KafkaConsumer<byte[], byte[]> c : cs) c.close(Duration.ofSeconds(10));
        }
        produceEach(topic, 4, 2, "second");
        try (KafkaConsumer<byte[], byte[]> c = groupConsumer(group, protocol)) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (got.size() < 8 && System.nanoTime() < deadline)
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) got.add(r);
            eq(8, got.size(), "records after the committed offsets");
            for (ConsumerRecord<byte[], byte[]> r : got)
                check(r.offset() >= 10, "resumed before the committed offset: " + r.partition() + "@" + r.offset());
            Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> committed =
                c.committed(new HashSet<>(List.of(new TopicPartition(topic, 0))), Duration.ofSeconds(20));
            eq(10L, committed.get(new TopicPartition(topic, 0)).offset(), "committed offset of partition 0");
        }
    }

    // The first InitProducerId on a fresh broker waits for the transaction coordinator (Kafka
    // creates __transaction_state then), and initTransactions() waits only max.block.ms.
    static KafkaProducer<byte[], byte[]> txnProducer(String transactionalId) {
        KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
            ProducerConfig.MAX_BLOCK_MS_CONFIG, 60000));
        try {
            p.initTransactions();
        } catch (RuntimeException e) {
            p.close(Duration.ZERO);
            throw e;
        }
        return p;
    }

    static Map<TopicPartition, Long> latestOffsets(Admin a, Map<TopicPartition, OffsetSpec> specs,
                                                   IsolationLevel level) throws Exception {
        Map<TopicPartition, Long> out = new HashMap<>();
        a.listOffsets(specs, new ListOffsetsOptions(level)).all().get(20, TimeUnit.SECONDS)
            .forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    /** Waits until no transaction is open on the topic (LSO == high watermark):
     *  commitTransaction() and abortTransaction() return once the coordinator has logged the
     *  outcome, and the markers reach the partitions after that. */
    static void awaitSettled(String topic, int partitions) throws Exception {
        Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
        for (int i = 0; i < partitions; i++) specs.put(new TopicPartition(topic, i), OffsetSpec.latest());
        try (Admin a = admin()) {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (true) {
                Map<TopicPartition, Long> hw = latestOffsets(a, specs, IsolationLevel.READ_UNCOMMITTED);
                Map<TopicPartition, Long> lso = latestOffsets(a, specs, IsolationLevel.READ_COMMITTED);
                if (lso.equals(hw)) return;
                check(System.nanoTime() < deadline, topic + ": LSO " + lso + " still behind the high watermark " + hw);
                Thread.sleep(100);
            }
        }
    }

    /** The values of every partition of the topic, in offset order, from the beginning to the
     *  end at this isolation level (the LSO with read_committed, the high watermark
     *  otherwise), read once no transaction is open. */
    static List<List<String>> readAll(String topic, int partitions, String isolation) throws Exception {
        awaitSettled(topic, partitions);
        try (KafkaConsumer<byte[], byte[]> c = consumer(Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            List<TopicPartition> tps = new ArrayList<>();
            List<List<String>> out = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
                out.add(new ArrayList<>());
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            // Markers and skipped aborted records take offsets too, so the end is a position,
            // not a count of records.
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                check(System.nanoTime() < deadline, isolation + " read of " + topic + " did not reach " + end);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200)))
                    out.get(r.partition()).add(new String(r.value(), StandardCharsets.UTF_8));
            }
            return out;
        }
    }

    /** Commit, abort, commit, five records each over two partitions: read_committed sees the
     *  ten committed ones, read_uncommitted all fifteen, in each partition's order. */
    static void testTransactions() throws Exception {
        String t = createTopic(unique("j-txn"), 2, Map.of());
        String id = unique("j-txn-id");
        try (KafkaProducer<byte[], byte[]> p = txnProducer(id)) {
            for (String tag : List.of("c1", "a", "c2")) {
                p.beginTransaction();
                for (int i = 0; i < 5; i++)
                    p.send(new ProducerRecord<>(t, i % 2, null, (tag + "-" + i).getBytes(StandardCharsets.UTF_8)));
                if (tag.equals("a")) {
                    // abortTransaction() drops batches still in the client: flushed, the
                    // aborted records are in the log for read_committed to skip.
                    p.flush();
                    p.abortTransaction();
                } else {
                    p.commitTransaction();
                }
            }
        }
        eq(List.of(List.of("c1-0", "c1-2", "c1-4", "c2-0", "c2-2", "c2-4"),
                   List.of("c1-1", "c1-3", "c2-1", "c2-3")),
           readAll(t, 2, "read_committed"), "read_committed");
        eq(List.of(List.of("c1-0", "c1-2", "c1-4", "a-0", "a-2", "a-4", "c2-0", "c2-2", "c2-4"),
                   List.of("c1-1", "c1-3", "a-1", "a-3", "c2-1", "c2-3")),
           readAll(t, 2, "read_uncommitted"), "read_uncommitted");
        // A new cluster runs transaction version 2 (KIP-890), which this client then speaks:
        // each commit or abort bumped the epoch the producer started with.
        try (Admin a = admin()) {
            var finalized = a.describeFeatures().featureMetadata().get().finalizedFeatures();
            var tv = finalized.get("transaction.version");
            eq((short) 2, tv == null ? null : tv.maxVersionLevel(), "finalized transaction.version");
            TransactionDescription d = a.describeTransactions(List.of(id)).description(id).get();
            eq(3, d.producerEpoch(), "producer epoch after three transactions");
            eq(TransactionState.COMPLETE_COMMIT, d.state(), "transaction state");
        }
    }

    /** transaction.version is a cluster feature: listed by describeFeatures, lowered only
     *  with a downgrade type, and followed by producers started after a change (version 1:
     *  the epoch stays; version 2: each transaction bumps it). */
    static void testTransactionVersionFeature() throws Exception {
        String t = createTopic(unique("j-tv"), 1, Map.of());
        String tv = "transaction.version";
        try (Admin a = admin()) {
            var supported = a.describeFeatures().featureMetadata().get().supportedFeatures().get(tv);
            eq((short) 2, supported == null ? null : supported.maxVersion(), "supported " + tv);
            try {
                setFeature(a, tv, 1, FeatureUpdate.UpgradeType.UPGRADE);
                throw new AssertionError("a downgrade typed as an upgrade was accepted");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof InvalidUpdateVersionException)) throw e;
            }
            setFeature(a, tv, 1, FeatureUpdate.UpgradeType.SAFE_DOWNGRADE);
            try {
                eq(0, epochAfterTwoCommits(a, t), "epoch after two transactions at version 1");
            } finally {
                setFeature(a, tv, 2, FeatureUpdate.UpgradeType.UPGRADE);
            }
            eq(2, epochAfterTwoCommits(a, t), "epoch after two transactions at version 2");
        }
    }

    /** Sets a feature and waits until describeFeatures shows it, and a moment more for
     *  every broker's metadata to have it. */
    static void setFeature(Admin a, String name, int level, FeatureUpdate.UpgradeType type) throws Exception {
        a.updateFeatures(Map.of(name, new FeatureUpdate((short) level, type)), new UpdateFeaturesOptions()).all().get();
        long deadline = System.currentTimeMillis() + 10000;
        while (true) {
            var r = a.describeFeatures().featureMetadata().get().finalizedFeatures().get(name);
            short got = r == null ? 0 : r.maxVersionLevel();
            if (got == level) break;
            if (System.currentTimeMillis() > deadline)
                throw new AssertionError(name + " is " + got + ", not " + level + ", after the update");
            Thread.sleep(100);
        }
        Thread.sleep(500);
    }

    /** A new transactional producer commits two transactions; its epoch afterwards. */
    static int epochAfterTwoCommits(Admin a, String topic) throws Exception {
        String id = unique("j-tv-id");
        try (KafkaProducer<byte[], byte[]> p = txnProducer(id)) {
            for (int i = 0; i < 2; i++) {
                p.beginTransaction();
                p.send(new ProducerRecord<>(topic, 0, null, ("tv-" + i).getBytes(StandardCharsets.UTF_8)));
                p.commitTransaction();
            }
        }
        return a.describeTransactions(List.of(id)).description(id).get().producerEpoch();
    }

    /** A second producer with the same transactional.id fences the first and aborts the
     *  transaction it left open, records already in the log included. */
    static void testTransactionsFencing() throws Exception {
        String t = createTopic(unique("j-fence"), 1, Map.of());
        String id = unique("j-fence-id");
        try (KafkaProducer<byte[], byte[]> a = txnProducer(id)) {
            a.beginTransaction();
            for (int i = 0; i < 3; i++)
                a.send(new ProducerRecord<>(t, 0, null, ("a-" + i).getBytes(StandardCharsets.UTF_8)));
            a.flush();
            try (KafkaProducer<byte[], byte[]> b = txnProducer(id)) {
                eq(List.of(List.of()), readAll(t, 1, "read_committed"), "read_committed after the fence");
                try {
                    a.commitTransaction();
                    throw new AssertionError("the fenced producer committed");
                } catch (ProducerFencedException | InvalidProducerEpochException e) {
                    // Fjord, like Kafka 4.1, gives ProducerFencedException.
                }
                b.beginTransaction();
                for (int i = 0; i < 3; i++)
                    b.send(new ProducerRecord<>(t, 0, null, ("b-" + i).getBytes(StandardCharsets.UTF_8)));
                b.commitTransaction();
            }
        }
        eq(List.of(List.of("b-0", "b-1", "b-2")), readAll(t, 1, "read_committed"), "read_committed");
        eq(List.of(List.of("a-0", "a-1", "a-2", "b-0", "b-1", "b-2")), readAll(t, 1, "read_uncommitted"),
           "read_uncommitted");
    }

    /** What kafka-transactions.sh reads, through the Java Admin client: an open transaction
     *  is listed (ListTransactions), described with its partitions (DescribeTransactions), and
     *  its partition names the producer and where its transaction starts (DescribeProducers);
     *  once committed, the id is CompleteCommit and the partition has no open transaction. */
    static void testTransactionsAdmin() throws Exception {
        String t = createTopic(unique("j-txadm"), 1, Map.of());
        String id = unique("j-txadm-id");
        TopicPartition tp = new TopicPartition(t, 0);
        try (Admin a = admin(); KafkaProducer<byte[], byte[]> p = txnProducer(id)) {
            produceEach(t, 1, 2, "plain");
            p.beginTransaction();
            p.send(new ProducerRecord<>(t, 0, null, "open".getBytes(StandardCharsets.UTF_8)));
            p.flush();

            boolean listed = a.listTransactions().all().get(30, TimeUnit.SECONDS).stream()
                .anyMatch(l -> l.transactionalId().equals(id) && l.state() == TransactionState.ONGOING);
            check(listed, "ListTransactions names " + id + " as Ongoing");
            TransactionDescription d = a.describeTransactions(List.of(id)).description(id)
                .get(30, TimeUnit.SECONDS);
            eq(TransactionState.ONGOING, d.state(), "DescribeTransactions state");
            eq(Set.of(tp), d.topicPartitions(), "DescribeTransactions partitions");
            ProducerState open = a.describeProducers(List.of(tp)).partitionResult(tp)
                .get(30, TimeUnit.SECONDS).activeProducers().stream()
                .filter(ps -> ps.producerId() == d.producerId()).findFirst()
                .orElseThrow(() -> new AssertionError("DescribeProducers lacks producer " + d.producerId()));
            // Two plain records first: the transaction starts at offset 2.
            eq(OptionalLong.of(2), open.currentTransactionStartOffset(), "open transaction's start offset");

            p.commitTransaction();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (true) {
                TransactionState s = a.describeTransactions(List.of(id)).description(id)
                    .get(30, TimeUnit.SECONDS).state();
                if (s == TransactionState.COMPLETE_COMMIT) break;
                check(System.nanoTime() < deadline, "transaction still " + s + " 30 s after its commit");
                Thread.sleep(50);
            }
            ProducerState after = a.describeProducers(List.of(tp)).partitionResult(tp)
                .get(30, TimeUnit.SECONDS).activeProducers().stream()
                .filter(ps -> ps.producerId() == d.producerId()).findFirst()
                .orElseThrow(() -> new AssertionError("DescribeProducers lost producer " + d.producerId()));
            eq(OptionalLong.empty(), after.currentTransactionStartOffset(), "no open transaction after the commit");
        }
    }

    /** Exactly once from one topic to another: a read_committed group member hands each
     *  batch's offsets to its producer's transaction, so output and progress commit or abort
     *  together. One batch is aborted and processed again from the group's offsets; the output
     *  holds every input record once, in order, and the group's offsets end at the input's end. */
    static void testTransactionsConsumeTransformProduce() throws Exception {
        String in = createTopic(unique("j-eos-in"), 2, Map.of());
        String out = createTopic(unique("j-eos-out"), 2, Map.of());
        produceEach(in, 2, 50, "in");
        List<TopicPartition> inTps = List.of(new TopicPartition(in, 0), new TopicPartition(in, 1));
        int aborted = 0;
        // Ten records a poll: a dozen transactions or so, one aborted midway.
        try (KafkaConsumer<byte[], byte[]> c = groupConsumer(unique("g-eos"), "classic", Map.of(
                 ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
                 ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10));
             KafkaProducer<byte[], byte[]> p = txnProducer(unique("j-eos-id"))) {
            c.subscribe(List.of(in));
            Map<TopicPartition, Long> progress = new HashMap<>();
            int done = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (done < 100) {
                check(System.nanoTime() < deadline, "processed " + done + " of 100 input records");
                ConsumerRecords<byte[], byte[]> batch = c.poll(Duration.ofMillis(200));
                if (batch.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    p.send(new ProducerRecord<>(out, r.partition(), null,
                        ("T:" + new String(r.value(), StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8)));
                    next.put(new TopicPartition(in, r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(next, c.groupMetadata());
                if (aborted == 0 && done >= 30) {
                    // Flushed so that the aborted output is in the log, not just dropped.
                    p.flush();
                    p.abortTransaction();
                    aborted = batch.count();
                    // The aborted offsets must not count: resume from what the group holds.
                    Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment());
                    for (TopicPartition tp : c.assignment()) {
                        OffsetAndMetadata o = committed.get(tp);
                        eq(progress.get(tp), o == null ? null : o.offset(), "committed offset of " + tp + " after the abort");
                        if (o == null) c.seekToBeginning(List.of(tp)); else c.seek(tp, o);
                    }
                    continue;
                }
                p.commitTransaction();
                next.forEach((tp, o) -> progress.put(tp, o.offset()));
                done += batch.count();
            }
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(new HashSet<>(inTps));
            Map<TopicPartition, Long> got = new HashMap<>();
            for (TopicPartition tp : inTps)
                got.put(tp, committed.get(tp) == null ? null : committed.get(tp).offset());
            eq(c.endOffsets(inTps), got, "group offsets after the last transaction");
        }
        check(aborted > 0, "no batch was aborted");
        List<List<String>> want = List.of(new ArrayList<>(), new ArrayList<>());
        for (int part = 0; part < 2; part++)
            for (int i = 0; i < 50; i++) want.get(part).add("T:in-" + part + "-" + i);
        eq(want, readAll(out, 2, "read_committed"), "read_committed output");
        eq(100 + aborted, readAll(out, 2, "read_uncommitted").stream().mapToInt(List::size).sum(),
           "read_uncommitted output, the aborted batch included");
    }

    static void testDurabilityKill9() throws Exception {
        if (fjordBin == null) throw new Skip("needs FJORD_BIN: cannot kill -9 an external broker");
        String t = createTopic(unique("j-dur"), 2, Map.of());
        int n = 1000;
        try (KafkaProducer<byte[], byte[]> p = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.COMPRESSION_TYPE_CONFIG, "zstd"))) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) fs.add(p.send(new ProducerRecord<>(t, i % 2, null, ("d" + i).getBytes())));
            p.flush();
            for (Future<RecordMetadata> f : fs) f.get(20, TimeUnit.SECONDS);
        }
        stopServer(true);
        startServer();
        List<ConsumerRecord<byte[], byte[]>> got = consumeN(t, List.of(0, 1), 0, n);
        Set<String> vals = got.stream().map(r -> new String(r.value())).collect(Collectors.toSet());
        eq(n, vals.size(), "distinct values after restart");
        for (int i = 0; i < n; i++) check(vals.contains("d" + i), "missing d" + i);
    }

    // ---------------------------------------------------------------- security
    // A second server with SASL_SSL and mTLS listeners (certificates from
    // compat/tls-certs.sh, the SCRAM user admin from --add-scram), and the Java client's own
    // SCRAM, TLS and PEM stores against it.

    static Map<String, Object> saslSsl(String bootstrap, String mechanism, String user, String password, Path tls) {
        Map<String, Object> c = new HashMap<>();
        c.put("bootstrap.servers", bootstrap);
        c.put("security.protocol", "SASL_SSL");
        c.put("sasl.mechanism", mechanism);
        c.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";");
        c.put("ssl.truststore.type", "PEM");
        c.put("ssl.truststore.location", tls.resolve("ca.pem").toString());
        return c;
    }

    /** Sends `n` records through `conf`, reads them back through `conf`, and checks them. */
    static void roundTrip(Map<String, Object> conf, String topic, int n) throws Exception {
        Map<String, Object> pc = new HashMap<>(conf);
        pc.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        pc.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        pc.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pc, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < n; i++) p.send(new ProducerRecord<>(topic, 0, null, ("s" + i).getBytes())).get(20, TimeUnit.SECONDS);
        }
        Map<String, Object> cc = new HashMap<>(conf);
        cc.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cc, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.assign(List.of(new TopicPartition(topic, 0)));
            List<String> got = new ArrayList<>();
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (got.size() < n && System.nanoTime() < deadline)
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) got.add(new String(r.value()));
            List<String> want = new ArrayList<>();
            for (int i = 0; i < n; i++) want.add("s" + i);
            eq(want, got, "records read back over " + conf.get("security.protocol"));
        }
    }

    /** The exception a producer's first metadata request ends in, or null if it succeeded. */
    static Throwable firstMetadataError(Map<String, Object> conf, String topic) {
        Map<String, Object> pc = new HashMap<>(conf);
        pc.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 10000);
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pc, new ByteArraySerializer(), new ByteArraySerializer())) {
            p.partitionsFor(topic);
            return null;
        } catch (KafkaException e) {
            return e;
        }
    }

    static void testSecurity() throws Exception {
        if (fjordBin == null) throw new Skip("needs FJORD_BIN: starts a server with secured listeners");
        Path dir = Files.createTempDirectory("fjord-compat-java-sec-");
        Process secured = null;
        try {
            Path tls = dir.resolve("tls");
            Process certs = new ProcessBuilder("bash", "../tls-certs.sh", tls.toString()).inheritIO().start();
            check(certs.waitFor(60, TimeUnit.SECONDS) && certs.exitValue() == 0, "tls-certs.sh failed");
            int plain = freePort(), sasl = freePort(), mtls = freePort();
            String saslBs = "127.0.0.1:" + sasl, mtlsBs = "127.0.0.1:" + mtls;
            List<String> cmd = List.of(fjordBin, "server", "--data-dir", dir.resolve("data").toString(),
                "--override", "listeners=PLAINTEXT://127.0.0.1:" + plain + ",SASL_SSL://" + saslBs + ",MTLS://" + mtlsBs,
                "--override", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL",
                "--override", "ssl.keystore.type=PEM",
                "--override", "ssl.keystore.location=" + tls.resolve("server.pem"),
                "--override", "ssl.truststore.type=PEM",
                "--override", "ssl.truststore.location=" + tls.resolve("ca.pem"),
                "--override", "listener.name.mtls.ssl.client.auth=required",
                "--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]");
            secured = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("server.log").toFile())).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (true) {
                check(secured.isAlive(), "secured server exited: " + Files.readString(dir.resolve("server.log")));
                try (Socket sock = new Socket()) { sock.connect(new InetSocketAddress("127.0.0.1", plain), 500); break; }
                catch (IOException e) {
                    check(System.nanoTime() < deadline, "secured server did not listen");
                    Thread.sleep(100);
                }
            }
            Map<String, Object> admin = saslSsl(saslBs, "SCRAM-SHA-512", "admin", "admin-secret", tls);
            roundTrip(admin, unique("j-sasl-ssl"), 20);

            // A wrong password is refused with Kafka's authentication error.
            Throwable bad = firstMetadataError(saslSsl(saslBs, "SCRAM-SHA-512", "admin", "nope", tls), "x");
            check(bad instanceof SaslAuthenticationException, "wrong password: expected SaslAuthenticationException, got " + bad);

            // A client that trusts another CA refuses the broker's certificate.
            Path otherCa = dir.resolve("other-ca");
            Process other = new ProcessBuilder("bash", "../tls-certs.sh", otherCa.toString()).inheritIO().start();
            check(other.waitFor(60, TimeUnit.SECONDS) && other.exitValue() == 0, "tls-certs.sh failed");
            Throwable untrusted = firstMetadataError(saslSsl(saslBs, "SCRAM-SHA-512", "admin", "admin-secret", otherCa), "x");
            check(untrusted instanceof SslAuthenticationException,
                  "untrusted broker certificate: expected SslAuthenticationException, got " + untrusted);

            // Users through the Admin client: create, log in, describe, delete.
            try (Admin a = Admin.create(new HashMap<>(admin))) {
                a.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("bob",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), "bob-secret")))
                    .all().get(20, TimeUnit.SECONDS);
                UserScramCredentialsDescription d = a.describeUserScramCredentials(List.of("bob"))
                    .description("bob").get(20, TimeUnit.SECONDS);
                eq(List.of(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)), d.credentialInfos(), "bob's credentials");
                roundTrip(saslSsl(saslBs, "SCRAM-SHA-256", "bob", "bob-secret", tls), unique("j-bob"), 5);
                expectCause(ResourceNotFoundException.class,
                    a.describeUserScramCredentials(List.of("nobody")).description("nobody"));
                expectCause(UnacceptableCredentialException.class,
                    a.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("carol",
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), "c"))).all());
                a.alterUserScramCredentials(List.of(new UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)))
                    .all().get(20, TimeUnit.SECONDS);
                Throwable gone = firstMetadataError(saslSsl(saslBs, "SCRAM-SHA-256", "bob", "bob-secret", tls), "x");
                check(gone instanceof SaslAuthenticationException, "deleted user: expected SaslAuthenticationException, got " + gone);
            }

            // mTLS: a certificate from the truststore's CA gets in; none does not.
            Map<String, Object> ssl = new HashMap<>();
            ssl.put("bootstrap.servers", mtlsBs);
            ssl.put("security.protocol", "SSL");
            ssl.put("ssl.truststore.type", "PEM");
            ssl.put("ssl.truststore.location", tls.resolve("ca.pem").toString());
            Throwable noCert = firstMetadataError(ssl, "x");
            check(noCert instanceof SslAuthenticationException || noCert instanceof TimeoutException,
                  "no client certificate: expected an SSL failure, got " + noCert);
            Path clientPem = dir.resolve("client.pem");
            Files.writeString(clientPem, Files.readString(tls.resolve("client.key")) + Files.readString(tls.resolve("client.crt")));
            ssl.put("ssl.keystore.type", "PEM");
            ssl.put("ssl.keystore.location", clientPem.toString());
            roundTrip(ssl, unique("j-mtls"), 5);
        } finally {
            if (secured != null) {
                secured.destroy();
                if (!secured.waitFor(10, TimeUnit.SECONDS)) secured.destroyForcibly();
            }
            deleteTree(dir);
        }
    }

    static Map<String, Object> sasl(String bootstrap, String mechanism, String jaas) {
        Map<String, Object> c = new HashMap<>();
        c.put("bootstrap.servers", bootstrap);
        c.put("security.protocol", "SASL_PLAINTEXT");
        c.put("sasl.mechanism", mechanism);
        c.put("sasl.jaas.config", jaas);
        return c;
    }

    static String scramJaas(String user, String password) {
        return "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";";
    }

    static String plainJaas(String user, String password) {
        return "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
            + user + "\" password=\"" + password + "\";";
    }

    /**
     * SASL_PLAINTEXT with PLAIN, both SCRAMs and OAUTHBEARER (unsecured tokens), an authorizer,
     * and logins that run out every 1.5 s (KIP-368), which the Java client renews.
     */
    static void testSaslAclsAndReauthentication() throws Exception {
        if (fjordBin == null) throw new Skip("needs FJORD_BIN: starts a server with SASL listeners");
        Path dir = Files.createTempDirectory("fjord-compat-java-sasl-");
        Process server = null;
        try {
            int plain = freePort(), sasl = freePort();
            String bs = "127.0.0.1:" + sasl;
            Path log = dir.resolve("server.log");
            List<String> cmd = List.of(fjordBin, "server", "--data-dir", dir.resolve("data").toString(),
                "--override", "listeners=PLAINTEXT://127.0.0.1:" + plain + ",SASL_PLAINTEXT://" + bs,
                "--override", "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
                "--override", "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                    + "org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";",
                "--override", "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config="
                    + "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
                "--override", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "--override", "super.users=User:admin",
                "--override", "connections.max.reauth.ms=1500",
                "--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]",
                "--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]");
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
            // Renewed logins are logged at debug level: counted below.
            pb.environment().put("FJORD_LOG", "info,fjord_broker::connection=debug");
            server = pb.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (true) {
                check(server.isAlive(), "SASL server exited: " + Files.readString(log));
                try (Socket sock = new Socket()) { sock.connect(new InetSocketAddress("127.0.0.1", sasl), 500); break; }
                catch (IOException e) {
                    check(System.nanoTime() < deadline, "SASL server did not listen");
                    Thread.sleep(100);
                }
            }
            for (String m : List.of("SCRAM-SHA-256", "SCRAM-SHA-512"))
                roundTrip(sasl(bs, m, scramJaas("admin", "admin-secret")), unique("j-" + m.toLowerCase()), 3);

            // OAUTHBEARER: the client's own unsecured token names the principal.
            roundTrip(sasl(bs, "OAUTHBEARER", "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
                + " required unsecuredLoginStringClaim_sub=\"admin\";"), unique("j-oauth"), 3);

            // PLAIN: a wrong password is refused; alice logs in but may do nothing until an
            // ACL allows it.
            Map<String, Object> alice = sasl(bs, "PLAIN", plainJaas("alice", "alice-secret"));
            Throwable bad = firstMetadataError(sasl(bs, "PLAIN", plainJaas("alice", "nope")), "x");
            check(bad instanceof SaslAuthenticationException, "wrong password: expected SaslAuthenticationException, got " + bad);
            Map<String, Object> admin = sasl(bs, "SCRAM-SHA-512", scramJaas("admin", "admin-secret"));
            String topic = unique("j-acl");
            try (Admin a = Admin.create(new HashMap<>(admin))) {
                a.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(20, TimeUnit.SECONDS);
                Map<String, Object> pc = new HashMap<>(alice);
                pc.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 10000);
                try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pc, new ByteArraySerializer(), new ByteArraySerializer())) {
                    try {
                        p.send(new ProducerRecord<>(topic, 0, null, "no".getBytes())).get(20, TimeUnit.SECONDS);
                        throw new AssertionError("alice produced without an ACL");
                    } catch (ExecutionException e) {
                        check(e.getCause() instanceof TopicAuthorizationException,
                              "no ACL: expected TopicAuthorizationException, got " + e.getCause());
                    }
                }
                List<AclBinding> grants = new ArrayList<>();
                for (AclOperation op : List.of(AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE))
                    grants.add(new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                        new AccessControlEntry("User:alice", "*", op, AclPermissionType.ALLOW)));
                grants.add(new AclBinding(new ResourcePattern(ResourceType.GROUP, "*", PatternType.LITERAL),
                    new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW)));
                a.createAcls(grants).all().get(20, TimeUnit.SECONDS);
            }
            roundTrip(alice, topic, 3);

            // KIP-368: a producer running for several login lifetimes logs in again on its
            // connections instead of being cut off.
            String reauth = unique("j-reauth");
            Map<String, Object> pc = new HashMap<>(admin);
            pc.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
            try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pc, new ByteArraySerializer(), new ByteArraySerializer())) {
                long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(5000);
                int i = 0;
                while (System.nanoTime() < end) {
                    p.send(new ProducerRecord<>(reauth, 0, null, ("r" + i++).getBytes())).get(20, TimeUnit.SECONDS);
                    Thread.sleep(100);
                }
            }
            String text = Files.readString(log);
            long renewed = text.lines().filter(l -> l.contains("re-authenticated")).count();
            check(renewed >= 2, "expected the Java client to log in again (KIP-368), saw " + renewed + " renewals");
            check(!text.contains("SASL login expired"), "a connection outlived its login");
        } finally {
            if (server != null) {
                server.destroy();
                if (!server.waitFor(10, TimeUnit.SECONDS)) server.destroyForcibly();
            }
            deleteTree(dir);
        }
    }

    // ---------------------------------------------------------------- runner
    interface Test { void run() throws Exception; }

    public static void main(String[] args) throws Exception {
        fjordBin = System.getenv("FJORD_BIN");
        String external = System.getenv("KAFKA_BOOTSTRAP");
        if ((fjordBin == null) == (external == null)) {
            System.err.println("set exactly one of FJORD_BIN=/path/to/fjord or KAFKA_BOOTSTRAP=host:port");
            System.exit(2);
        }
        if (fjordBin != null) {
            port = freePort();
            bootstrap = "127.0.0.1:" + port;
            dataDir = Files.createTempDirectory("fjord-compat-java-");
            try {
                startServer();
            } catch (Exception e) {
                System.out.println("FAIL server_start: " + e);
                deleteTree(dataDir);
                Files.deleteIfExists(Path.of(dataDir + ".log"));
                System.out.println("0 passed, 1 failed");
                System.exit(1);
            }
        } else {
            bootstrap = external;
        }
        // An external broker is Apache Kafka unless the runner says it is Fjord (a cluster
        // started by compat/on-cluster.sh).
        boolean isFjord = fjordBin != null || "1".equals(System.getenv("KAFKA_BOOTSTRAP_IS_FJORD"));
        LinkedHashMap<String, Test> tests = new LinkedHashMap<>();
        tests.put("admin_topic_lifecycle", ClientCompat::testAdminTopicLifecycle);
        tests.put("configs_describe_alter", ClientCompat::testConfigs);
        tests.put("delete_records_list_offsets", ClientCompat::testDeleteRecordsAndListOffsets);
        tests.put("describe_log_dirs", ClientCompat::testLogDirs);
        tests.put("partition_reassignment", ClientCompat::testReassignment);
        tests.put("errors", () -> testErrors(isFjord));
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd"))
            tests.put("compression_" + codec, () -> testCompression(codec));
        for (String acks : List.of("0", "1", "all")) tests.put("acks_" + acks, () -> testAcks(acks));
        tests.put("headers_timestamps_seek", ClientCompat::testHeadersTimestampsSeek);
        tests.put("keyed_partitioning", ClientCompat::testKeyedPartitioning);
        tests.put("compaction", ClientCompat::testCompaction);
        tests.put("consumer_protocol_group", () -> testGroup("consumer"));
        tests.put("classic_protocol_group", () -> testGroup("classic"));
        tests.put("transactions", ClientCompat::testTransactions);
        tests.put("transactions_fencing", ClientCompat::testTransactionsFencing);
        tests.put("transactions_admin", ClientCompat::testTransactionsAdmin);
        tests.put("transactions_version_feature", ClientCompat::testTransactionVersionFeature);
        tests.put("transactions_consume_transform_produce", ClientCompat::testTransactionsConsumeTransformProduce);
        tests.put("durability_kill9", ClientCompat::testDurabilityKill9);
        tests.put("sasl_ssl_scram_and_mtls", ClientCompat::testSecurity);
        tests.put("sasl_plaintext_acls_reauth_oauth", ClientCompat::testSaslAclsAndReauthentication);

        String only = args.length > 0 ? args[0] : null;
        int passed = 0, failed = 0, skipped = 0;
        try {
            for (Map.Entry<String, Test> e : tests.entrySet()) {
                if (only != null && !e.getKey().contains(only)) continue;
                long t0 = System.nanoTime();
                try {
                    e.getValue().run();
                    passed++;
                    System.out.printf("PASS %s (%d ms)%n", e.getKey(), (System.nanoTime() - t0) / 1_000_000);
                } catch (Skip s) {
                    skipped++;
                    System.out.printf("SKIP %s: %s%n", e.getKey(), s.getMessage());
                } catch (Throwable x) {
                    failed++;
                    System.out.printf("FAIL %s: %s%n", e.getKey(), x);
                    for (Throwable c = x.getCause(); c != null; c = c.getCause()) System.out.println("    caused by " + c);
                    StackTraceElement[] st = x.getStackTrace();
                    for (int i = 0; i < Math.min(4, st.length); i++) System.out.println("    at " + st[i]);
                    if (fjordBin != null && server == null) {
                        try { startServer(); } catch (Exception ignored) { }
                    }
                }
            }
        } finally {
            if (fjordBin != null) {
                stopServer(false);
                deleteTree(dataDir);
                Files.deleteIfExists(Path.of(dataDir + ".log"));
            }
        }
        System.out.println(passed + " passed, " + failed + " failed" + (skipped > 0 ? ", " + skipped + " skipped" : ""));
        System.exit(failed == 0 ? 0 : 1);
    }

    static void deleteTree(Path p) throws IOException {
        if (p == null || !Files.exists(p)) return;
        try (var s = Files.walk(p)) {
            s.sorted(Comparator.reverseOrder()).forEach(q -> q.toFile().delete());
        }
    }
}
