import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;

/**
 * Prints "TOPIC partitions=N cleanup.policy=P" for each topic named on the command line
 * (DescribeTopics and DescribeConfigs through the AdminClient), or fails.
 *
 *   java TopicConfigs BOOTSTRAP TOPIC...
 */
public class TopicConfigs {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    List<String> topics = List.of(args).subList(1, args.length);
    try (Admin admin = Admin.create(props)) {
      Map<String, TopicDescription> descriptions =
          admin.describeTopics(topics).allTopicNames().get();
      List<ConfigResource> resources = new ArrayList<>();
      for (String t : topics) resources.add(new ConfigResource(ConfigResource.Type.TOPIC, t));
      Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get();
      for (ConfigResource r : resources) {
        var entry = configs.get(r).get("cleanup.policy");
        System.out.println(r.name() + " partitions=" + descriptions.get(r.name()).partitions().size()
            + " cleanup.policy=" + (entry == null ? "<none>" : entry.value()));
      }
    }
  }
}
