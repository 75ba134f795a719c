// One Apache Flink 2.3 HA process, driven by ha-bench over stdin/stdout: a contender for
// the dispatcher's leadership, or a retriever of the dispatcher's leader.
//
// Args: <zookeeper|kubernetes> <quorum|kubeconfig-file> <cluster-id> <ttl-ms> <id> <contender|retriever>
// Services: HighAvailabilityServicesUtils.createAvailableOrEmbeddedServices, as a
// JobManager creates them. The contender confirms the address "bench://<id>" on grant.
// Prints: "READY" once started; contender: "GRANTED <address>" when granted (before it
// confirms), "LEADER <address>" when the confirmation completed, "NOT_LEADER" on
// revocation; retriever: "ADDR <address>" on each notified
// leader. Reads "close" on stdin: closes the election and the services (graceful
// hand-over), prints "CLOSED". A crash is SIGKILL from the driver.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.util.UUID;
import java.util.concurrent.Executors;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.runtime.highavailability.HighAvailabilityServices;
import org.apache.flink.runtime.highavailability.HighAvailabilityServicesUtils;
import org.apache.flink.runtime.leaderelection.LeaderContender;
import org.apache.flink.runtime.leaderelection.LeaderElection;
import org.apache.flink.runtime.leaderretrieval.LeaderRetrievalListener;
import org.apache.flink.runtime.leaderretrieval.LeaderRetrievalService;

public final class FlinkHaContender {
    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static Configuration config(String type, String target, String clusterId, long ttlMs)
            throws Exception {
        Configuration c = new Configuration();
        c.setString("high-availability.type", type);
        c.setString("high-availability.cluster-id", clusterId);
        String storage = Files.createTempDirectory("flink-ha-bench").toUri().toString();
        c.setString("high-availability.storageDir", storage);
        if (type.equals("zookeeper")) {
            c.setString("high-availability.zookeeper.quorum", target);
            c.setString("high-availability.zookeeper.path.root", "/ha-bench-flink");
            c.setString("high-availability.zookeeper.client.session-timeout", ttlMs + " ms");
            c.setString("high-availability.zookeeper.client.connection-timeout", Math.max(1000, ttlMs) + " ms");
            c.setString("high-availability.zookeeper.client.retry-wait", "50 ms");
        } else {
            // The lease timings ha-bench gives every Kubernetes system: 100 % / 70 % / 15 %.
            c.setString("kubernetes.config.file", target);
            c.setString("kubernetes.cluster-id", clusterId);
            c.setString("kubernetes.namespace", "ha-bench");
            c.setString("high-availability.kubernetes.leader-election.lease-duration", ttlMs + " ms");
            c.setString("high-availability.kubernetes.leader-election.renew-deadline", (ttlMs * 7 / 10) + " ms");
            c.setString("high-availability.kubernetes.leader-election.retry-period", (ttlMs * 3 / 20) + " ms");
        }
        return c;
    }

    public static void main(String[] args) throws Exception {
        String type = args[0];
        long ttlMs = Long.parseLong(args[3]);
        String id = args[4];
        boolean retriever = args[5].equals("retriever");
        HighAvailabilityServices services = HighAvailabilityServicesUtils.createAvailableOrEmbeddedServices(
                config(type, args[1], args[2], ttlMs),
                Executors.newSingleThreadExecutor(),
                e -> {
                    say("FATAL " + e);
                    System.exit(2);
                });
        LeaderElection election = null;
        LeaderRetrievalService retrieval = null;
        if (retriever) {
            retrieval = services.getDispatcherLeaderRetriever();
            retrieval.start(new LeaderRetrievalListener() {
                @Override
                public void notifyLeaderAddress(String address, UUID sessionId) {
                    if (address != null && !address.isEmpty()) {
                        say("ADDR " + address);
                    }
                }

                @Override
                public void handleError(Exception e) {
                    say("ERROR " + e);
                }
            });
        } else {
            String address = "bench://" + id;
            LeaderElection[] holder = new LeaderElection[1];
            holder[0] = services.getDispatcherLeaderElection();
            election = holder[0];
            election.startLeaderElection(new LeaderContender() {
                @Override
                public void grantLeadership(UUID sessionId) {
                    say("GRANTED " + address);
                    holder[0].confirmLeadershipAsync(sessionId, address)
                            .thenRun(() -> say("LEADER " + address));
                }

                @Override
                public void revokeLeadership() {
                    say("NOT_LEADER");
                }

                @Override
                public void handleError(Exception e) {
                    say("ERROR " + e);
                }
            });
        }
        say("READY");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("close")) {
                if (election != null) {
                    election.close();
                }
                if (retrieval != null) {
                    retrieval.stop();
                }
                services.close();
                say("CLOSED");
                System.exit(0);
            }
        }
        System.exit(0);
    }
}
