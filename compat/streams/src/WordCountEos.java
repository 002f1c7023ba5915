// Kafka Streams compat suite (org.apache.kafka:kafka-streams 4.1.1): a word count with
// processing.guarantee=exactly_once_v2 must produce the exact count of every word.
//
//   java WordCountEos BOOTSTRAP WORKDIR restart|no-restart
//
// 3,000 lines go to a 3-partition input topic (idempotent producer), and the app counts
// them (flatMapValues, groupBy, count, to). With `restart`, the broker is killed (-9) twice
// while the app is at work: restarted at once (the open transaction carries on), then
// after longer than the app's transaction timeout (the broker aborts the transaction and
// fences the app's producer). run.sh does it when the program creates
// WORKDIR/restart.request holding the seconds to stay down, and answers with
// WORKDIR/restart.done ("ok" or why not). The app has to carry on by itself. Then it is
// closed, and a new instance starts from an empty state directory, so that its counts come
// from the changelog topic, and counts 1,000 more lines. The output, read with
// read_committed, must hold for each word counts that only go up, ending at the exact
// count; the changelog must be compacted.
//
// Prints one PASS/FAIL/SKIP/INFO line per check and a verdict line; Streams' own log and
// the program's progress go to stderr. Exits 0 only if every check passed.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalTime;
import java.time.format.DateTimeFormatter;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;

public class WordCountEos {
    static final String[] VOCAB = {
        "alder", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo", "hazel", "ilex",
        "juniper", "kauri", "larch", "maple", "nutmeg", "oak", "pine", "quince", "rowan",
        "spruce", "teak", "upas", "viburnum", "willow", "yew"};
    static final int LINES_BEFORE = 3000;   // the first batch, through the broker restarts
    static final int LINES_AFTER = 1000;    // then, counted on top of the restored state
    static final int PARTITIONS = 3;
    // Each input line costs the app this long, so that the first batch takes it several
    // seconds and the broker dies twice while the app is at work.
    static final int MS_PER_LINE = 3;
    static final Duration RECOVERY_DEADLINE = Duration.ofSeconds(120);
    // The app's transaction.timeout.ms (Streams' default: 10 s), and the broker stays down
    // a second longer than this the second time.
    static final int TXN_TIMEOUT_MS = 5000;
    static final String STORE = "counts";

    static final DateTimeFormatter CLOCK = DateTimeFormatter.ofPattern("HH:mm:ss.SSS");
    static String bootstrap;
    static Path work;
    static int failures = 0;

    static void log(String msg) {
        System.err.println(LocalTime.now().format(CLOCK) + " [harness] " + msg);
    }

    static void pass(String what) {
        System.out.println("PASS " + what);
        log("PASS " + what);
    }

    static void fail(String what, String why) {
        failures++;
        System.out.println("FAIL " + what + (why == null ? "" : ": " + why));
        log("FAIL " + what + (why == null ? "" : ": " + why));
    }

    /** A failed check that later steps depend on: stop here. */
    static class Fatal extends RuntimeException {
        Fatal(String what, String why) { super(what + ": " + why); }
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        return Admin.create(p);
    }

    /** Topics with the broker's default replication factor; waits until every partition has
     *  a leader. */
    static void createTopics(List<String> names) throws Exception {
        try (Admin a = admin()) {
            List<NewTopic> ts = new ArrayList<>();
            for (String n : names) ts.add(new NewTopic(n, Optional.of(PARTITIONS), Optional.empty()));
            a.createTopics(ts).all().get(30, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (true) {
                try {
                    Map<String, TopicDescription> ds = a.describeTopics(names).allTopicNames().get(30, TimeUnit.SECONDS);
                    if (ds.values().stream().allMatch(d -> d.partitions().size() == PARTITIONS
                            && d.partitions().stream().allMatch(p -> p.leader() != null))) return;
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
                }
                if (System.nanoTime() > deadline) throw new Fatal("create topics", "no leaders within 30 s");
                Thread.sleep(100);
            }
        }
    }

    /** Lines of 1..8 words from VOCAB. */
    static List<String> lines(Random rng, int n) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int words = 1 + rng.nextInt(8);
            StringBuilder b = new StringBuilder();
            for (int w = 0; w < words; w++) {
                if (w > 0) b.append(' ');
                b.append(VOCAB[rng.nextInt(VOCAB.length)]);
            }
            out.add(b.toString());
        }
        return out;
    }

    static void addCounts(Map<String, Long> counts, List<String> lines) {
        for (String l : lines)
            for (String w : l.split(" ")) counts.merge(w, 1L, Long::sum);
    }

    /** Produces the lines with an idempotent producer, round robin over the partitions, and
     *  waits for every acknowledgement. */
    static void produce(String topic, List<String> lines, int firstLine) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60000);
        // Small batches, so that the app's small fetches (below) take few lines at a time.
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 2048);
        try (KafkaProducer<String, String> prod =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < lines.size(); i++) {
                int n = firstLine + i;
                fs.add(prod.send(new ProducerRecord<>(topic, n % PARTITIONS, "line-" + n, lines.get(i))));
            }
            prod.flush();
            for (Future<RecordMetadata> f : fs) f.get(60, TimeUnit.SECONDS);
        }
    }

    static KafkaConsumer<byte[], byte[]> consumer(String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static List<TopicPartition> partitions(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        return tps;
    }

    static String word(ConsumerRecord<byte[], byte[]> r) {
        return r.key() == null ? "<null key>" : new String(r.key(), StandardCharsets.UTF_8);
    }

    static long count(ConsumerRecord<byte[], byte[]> r) {
        byte[] v = r.value();
        if (v == null || v.length != 8) return Long.MIN_VALUE;  // not a LongSerde value
        return java.nio.ByteBuffer.wrap(v).getLong();
    }

    /** Follows the output topic with read_committed and keeps each word's latest count. */
    static class OutputTail implements AutoCloseable {
        final KafkaConsumer<byte[], byte[]> c = consumer("read_committed");
        final Map<String, Long> latest = new TreeMap<>();

        OutputTail(String topic) {
            List<TopicPartition> tps = partitions(topic);
            c.assign(tps);
            c.seekToBeginning(tps);
        }

        void poll(Duration d) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(d)) latest.put(word(r), count(r));
        }

        long sum() {
            return latest.values().stream().mapToLong(Long::longValue).sum();
        }

        /** A word counted more often than it occurs in the input, if any. */
        Optional<String> overCounted(Map<String, Long> expected) {
            for (Map.Entry<String, Long> e : latest.entrySet()) {
                Long want = expected.get(e.getKey());
                if (want == null || e.getValue() > want)
                    return Optional.of(e.getKey() + "=" + e.getValue() + " (expected " + want + ")");
            }
            return Optional.empty();
        }

        @Override public void close() { c.close(); }
    }

    static final AtomicReference<KafkaStreams.State> streamsState = new AtomicReference<>();
    static final AtomicInteger threadsReplaced = new AtomicInteger();
    static final AtomicInteger rebalances = new AtomicInteger();
    static final AtomicLong restored = new AtomicLong();

    static void checkStreamsAlive(String what) {
        KafkaStreams.State s = streamsState.get();
        if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.PENDING_ERROR
                || s == KafkaStreams.State.NOT_RUNNING || s == KafkaStreams.State.PENDING_SHUTDOWN) {
            throw new Fatal(what, "the Streams client is " + s);
        }
    }

    /** Waits until the output's latest counts are exactly `expected`; fails at once if a
     *  word is counted too often or the Streams client died. */
    static void waitForCounts(OutputTail tail, Map<String, Long> expected, Duration timeout, String what) {
        long t0 = System.nanoTime();
        long deadline = t0 + timeout.toNanos();
        long total = expected.values().stream().mapToLong(Long::longValue).sum();
        long lastLog = 0;
        while (!tail.latest.equals(expected)) {
            tail.poll(Duration.ofMillis(200));
            Optional<String> over = tail.overCounted(expected);
            if (over.isPresent()) throw new Fatal(what, "counted more often than in the input: " + over.get());
            checkStreamsAlive(what);
            long now = System.nanoTime();
            if (now - lastLog > TimeUnit.SECONDS.toNanos(1)) {
                log(what + ": " + tail.sum() + " of " + total + " words counted, Streams " + streamsState.get());
                lastLog = now;
            }
            if (now > deadline)
                throw new Fatal(what, "after " + timeout.toSeconds() + " s " + tail.sum() + " of " + total
                    + " words counted (Streams " + streamsState.get() + ")");
        }
        pass(what + " (" + (System.nanoTime() - t0) / 1_000_000 + " ms)");
    }

    /** Starts the word count; with `fresh`, from an empty local state directory, so that
     *  the counts must be restored from the changelog topic. */
    static KafkaStreams startStreams(String appId, String in, String out, boolean fresh) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(line -> {
                try {
                    Thread.sleep(MS_PER_LINE);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                return Arrays.asList(line.split(" "));
            })
            .groupBy((k, w) -> w, Grouped.with(Serdes.String(), Serdes.String()))
            .count(Materialized.as(STORE))
            .toStream()
            .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATE_DIR_CONFIG, work.resolve("state").toString());
        // -1: the broker's default replication factor (1 on one broker).
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, -1);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), TXN_TIMEOUT_MS);
        // Static membership (the thread's consumer gets "<id>-1"), so that close() can take
        // the instance out of the group for the next one.
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), appId + "-instance");
        // Small polls and fetches: a fetch buffer full of input lines would starve the
        // repartition topic's partitions, and no count would come out until the input
        // backlog is gone.
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 100);
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG), 2048);
        KafkaStreams s = new KafkaStreams(b.build(), p);
        s.setStateListener((now, before) -> {
            streamsState.set(now);
            if (now == KafkaStreams.State.REBALANCING) rebalances.incrementAndGet();
            log("Streams state " + before + " -> " + now);
        });
        // A stream thread that dies is replaced, as a production app would: with classic
        // transactions, a broker down for longer than transaction.timeout.ms aborts the open
        // transaction, and committing it then fails the producer for good (INVALID_TXN_STATE).
        // The new thread restores its state from the changelog.
        s.setUncaughtExceptionHandler(e -> {
            threadsReplaced.incrementAndGet();
            log("Streams thread died, replacing it: " + e);
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        s.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                log("restoring " + store + " from " + tp + " offsets " + start + ".." + end);
            }
            @Override public void onBatchRestored(TopicPartition tp, String store, long end, long n) {
                restored.addAndGet(n);
            }
            @Override public void onRestoreEnd(TopicPartition tp, String store, long n) {
                log("restored " + store + " from " + tp + ": " + n + " records");
            }
        });
        if (fresh) s.cleanUp();
        streamsState.set(s.state());
        s.start();
        return s;
    }

    /** Closes the app and removes its static member from the group (a Streams client
     *  never sends LeaveGroup itself: a new instance would wait for its session to expire). */
    static void stopStreams(KafkaStreams s, String what) {
        if (s.close(new KafkaStreams.CloseOptions().timeout(Duration.ofSeconds(30)).leaveGroup(true)))
            pass(what);
        else
            fail(what, "not closed within 30 s, state " + s.state());
    }

    /** Once the app has committed its reading of `fraction` of the first batch's lines and
     *  some counts (and not all of them), kill -9s the broker and restarts it after
     *  `secondsDown`. */
    static void killBroker(OutputTail tail, Admin admin, String appId, String in, long words,
                           double fraction, int secondsDown) throws Exception {
        String what = "broker kill -9 and restart " + (secondsDown == 0 ? "at once" : secondsDown + " s later");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        long lastLog = 0;
        long lines;
        while ((lines = committedLines(admin, appId, in)) < LINES_BEFORE * fraction || tail.sum() == 0) {
            tail.poll(Duration.ofMillis(100));
            if (System.nanoTime() - lastLog > TimeUnit.SECONDS.toNanos(1)) {
                log("waiting to kill the broker: " + lines + " of " + LINES_BEFORE + " lines read, "
                    + tail.sum() + " of " + words + " words counted, Streams " + streamsState.get());
                lastLog = System.nanoTime();
            }
            checkStreamsAlive(what);
            if (System.nanoTime() > deadline)
                throw new Fatal(what, "only " + lines + " lines read in 90 s, Streams " + streamsState.get());
        }
        long counted = tail.sum();
        if (lines >= LINES_BEFORE || counted >= words)
            throw new Fatal(what, "the app was done: " + lines + " of " + LINES_BEFORE + " lines read, "
                            + counted + " of " + words + " words counted");
        String progress = lines + " of " + LINES_BEFORE + " lines read and " + counted + " of " + words
            + " words counted in committed transactions";
        log("=== " + progress + ": " + what + " ===");
        long r0 = System.nanoTime();
        String why = restartBroker(secondsDown);
        if (!why.equals("ok")) throw new Fatal(what, why);
        pass(what + ", " + progress + " (" + (System.nanoTime() - r0) / 1_000_000 + " ms)");
    }

    /** Asks run.sh for a kill -9 and restart of the broker; returns "ok" or why not. */
    static String restartBroker(int secondsDown) throws Exception {
        Path done = work.resolve("restart.done");
        Files.deleteIfExists(done);
        Files.writeString(work.resolve("restart.request.tmp"), Integer.toString(secondsDown));
        Files.move(work.resolve("restart.request.tmp"), work.resolve("restart.request"));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (!Files.exists(done)) {
            if (System.nanoTime() > deadline) return "no restart within 90 s";
            Thread.sleep(50);
        }
        Thread.sleep(50);  // run.sh writes the file in one go, but let it finish
        return Files.readString(done).trim();
    }

    /** Every record of the output topic, read with `isolation`. */
    static List<ConsumerRecord<byte[], byte[]>> readAll(String topic, String isolation) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(isolation)) {
            List<TopicPartition> tps = partitions(topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                if (System.nanoTime() > deadline) throw new Fatal("read " + topic, "not at its end in 60 s");
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) out.add(r);
            }
            return out;
        }
    }

    static void verifyOutput(String out, Map<String, Long> expected) {
        List<ConsumerRecord<byte[], byte[]>> committed = readAll(out, "read_committed");
        // Per word, in log order (a word's counts all go to one partition).
        Map<String, Long> last = new TreeMap<>();
        List<String> notIncreasing = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : committed) {
            String w = word(r);
            long n = count(r);
            Long prev = last.put(w, n);
            if (n <= (prev == null ? 0 : prev))
                notIncreasing.add(w + " " + prev + " -> " + n + " at " + r.topic() + "-" + r.partition() + "@" + r.offset());
        }
        if (notIncreasing.isEmpty())
            pass("each word's count only goes up in the committed output (" + committed.size() + " records)");
        else
            fail("each word's count only goes up in the committed output",
                 notIncreasing.size() + " records do not: " + notIncreasing.subList(0, Math.min(5, notIncreasing.size())));
        if (last.equals(expected)) {
            pass("final counts of all " + expected.size() + " words exact ("
                 + expected.values().stream().mapToLong(Long::longValue).sum() + " words)");
        } else {
            List<String> diff = new ArrayList<>();
            Set<String> words = new TreeSet<>(expected.keySet());
            words.addAll(last.keySet());
            for (String w : words)
                if (!Objects.equals(expected.get(w), last.get(w)))
                    diff.add(w + "=" + last.get(w) + " (expected " + expected.get(w) + ")");
            fail("final counts exact", String.join(", ", diff));
        }
        int uncommitted = readAll(out, "read_uncommitted").size();
        log("output: " + committed.size() + " committed records, " + uncommitted
            + " read_uncommitted (" + (uncommitted - committed.size()) + " from aborted transactions)");
        System.out.println("INFO output holds " + (uncommitted - committed.size())
            + " records of aborted transactions, which read_committed skips");
    }

    /** The app's committed offsets on the input topic, summed over its partitions. */
    static long committedLines(Admin a, String appId, String in) throws Exception {
        long sum = 0;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : a.listConsumerGroupOffsets(appId)
                 .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS).entrySet())
            if (e.getKey().topic().equals(in) && e.getValue() != null) sum += e.getValue().offset();
        return sum;
    }

    static void verifyGroupOffsets(String appId, String in) throws Exception {
        try (Admin a = admin(); KafkaConsumer<byte[], byte[]> c = consumer("read_committed")) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                a.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, Long> end = c.endOffsets(partitions(in));
            Map<TopicPartition, Long> got = new HashMap<>();
            for (TopicPartition tp : end.keySet())
                got.put(tp, committed.get(tp) == null ? null : committed.get(tp).offset());
            if (got.equals(end)) pass("the app's committed input offsets are the input's end offsets");
            else fail("the app's committed input offsets are the input's end offsets", "committed " + got + ", end " + end);
        }
    }

    static void verifyInternalTopics(String appId) throws Exception {
        String changelog = appId + "-" + STORE + "-changelog";
        String repartition = appId + "-" + STORE + "-repartition";
        Map<String, String> want = Map.of(changelog, "compact", repartition, "delete");
        try (Admin a = admin()) {
            Set<String> names = a.listTopics().names().get(30, TimeUnit.SECONDS);
            for (Map.Entry<String, String> e : new TreeMap<>(want).entrySet()) {
                String what = "internal topic " + e.getKey() + " has cleanup.policy=" + e.getValue();
                if (!names.contains(e.getKey())) {
                    fail(what, "no such topic; the app's topics: "
                         + names.stream().filter(n -> n.startsWith(appId)).sorted().toList());
                    continue;
                }
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, e.getKey());
                Config cfg = a.describeConfigs(List.of(r)).all().get(30, TimeUnit.SECONDS).get(r);
                ConfigEntry policy = cfg.get("cleanup.policy");
                String got = policy == null ? "<none>" : policy.value();
                if (e.getValue().equals(got)) pass(what);
                else fail(what, "cleanup.policy=" + got);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3 || !Set.of("restart", "no-restart").contains(args[2])) {
            System.err.println("usage: WordCountEos BOOTSTRAP WORKDIR restart|no-restart");
            System.exit(2);
        }
        bootstrap = args[0];
        work = Path.of(args[1]);
        boolean restart = args[2].equals("restart");
        long t0 = System.nanoTime();

        String id = UUID.randomUUID().toString().substring(0, 8);
        String in = "streams-lines-" + id;
        String out = "streams-counts-" + id;
        String appId = "wordcount-" + id;

        Random rng = new Random(20240611L);
        List<String> before = lines(rng, LINES_BEFORE);
        List<String> after = lines(rng, LINES_AFTER);
        Map<String, Long> expectedBefore = new TreeMap<>();
        addCounts(expectedBefore, before);
        Map<String, Long> expectedAll = new TreeMap<>(expectedBefore);
        addCounts(expectedAll, after);
        long wordsBefore = expectedBefore.values().stream().mapToLong(Long::longValue).sum();

        KafkaStreams streams = null;
        try {
            createTopics(List.of(in, out));
            pass("create " + in + " and " + out + " (" + PARTITIONS + " partitions each)");
            produce(in, before, 0);
            pass("produce " + LINES_BEFORE + " lines (" + wordsBefore + " words), idempotent");

            streams = startStreams(appId, in, out, true);
            try (OutputTail tail = new OutputTail(out); Admin admin = admin()) {
                if (restart) {
                    // Quickly back: the open transaction carries on. Then down for longer than
                    // the transactions' timeout: the broker aborts it, and the app's producer
                    // is fenced.
                    killBroker(tail, admin, appId, in, wordsBefore, 0.2, 0);
                    killBroker(tail, admin, appId, in, wordsBefore, 0.5, TXN_TIMEOUT_MS / 1000 + 1);
                } else {
                    System.out.println("SKIP broker kill -9 and restarts: need one broker that this run"
                                       + " starts (FJORD_BIN, no FJORD_CLUSTER_NODES)");
                }
                waitForCounts(tail, expectedBefore, RECOVERY_DEADLINE,
                              "app counts the first " + LINES_BEFORE + " lines exactly"
                              + (restart ? " after the restarts" : ""));
                // A new instance of the app, whose counts can only come from the changelog.
                KafkaStreams s = streams;
                streams = null;
                stopStreams(s, "Streams app leaves its group and closes");
                restored.set(0);
                streams = startStreams(appId, in, out, true);
                produce(in, after, LINES_BEFORE);
                pass("produce " + LINES_AFTER + " more lines, for a new instance of the app with an"
                     + " empty state directory");
                waitForCounts(tail, expectedAll, Duration.ofSeconds(60),
                              "app counts all " + (LINES_BEFORE + LINES_AFTER) + " lines exactly");
                if (restored.get() >= expectedBefore.size())
                    pass("the new instance restored the counts from the changelog (" + restored.get()
                         + " records)");
                else
                    fail("the new instance restored the counts from the changelog", "only "
                         + restored.get() + " records restored, for " + expectedBefore.size() + " words");
            }
            KafkaStreams s = streams;
            streams = null;
            stopStreams(s, "Streams app closes");

            verifyOutput(out, expectedAll);
            verifyGroupOffsets(appId, in);
            verifyInternalTopics(appId);
        } catch (Fatal f) {
            failures++;
            System.out.println("FAIL " + f.getMessage());
            log("FAIL " + f.getMessage());
        } catch (Exception e) {
            failures++;
            System.out.println("FAIL unexpected " + e);
            log("FAIL unexpected " + e);
            e.printStackTrace();
        } finally {
            if (streams != null) streams.close(Duration.ofSeconds(10));
        }
        System.out.println("INFO Streams went through " + rebalances.get() + " rebalance(s); "
                           + threadsReplaced.get() + " stream thread(s) died and were replaced");
        long secs = (System.nanoTime() - t0) / 1_000_000_000;
        if (failures > 0) {
            System.out.println("streams: " + failures + " check(s) failed (" + secs + " s)");
            System.exit(1);
        }
        System.out.println("streams: all checks passed (" + secs + " s)");
        System.exit(0);
    }
}
