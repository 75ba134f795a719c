// One Apache Curator LeaderLatch contender, driven by ha-bench over stdin/stdout.
//
// Args: <connect-string> <latch-path> <session-timeout-ms> <id>
// Prints: "SESSION <negotiated-ms>", "READY" once queued in the latch, "LEADER" when
// granted. Reads "close" on stdin: closes the latch and the client (graceful hand-over).
// A crash is SIGKILL from the driver: the session then ends only by timeout.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.retry.RetryNTimes;

public final class LatchContender {
    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0];
        String path = args[1];
        int sessionMs = Integer.parseInt(args[2]);
        String id = args[3];
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(sessionMs)
                .connectionTimeoutMs(Math.max(1000, sessionMs))
                .retryPolicy(new RetryNTimes(20, 50))
                .build();
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException("could not connect to " + connect);
        }
        say("SESSION " + client.getZookeeperClient().getZooKeeper().getSessionTimeout());
        LeaderLatch latch = new LeaderLatch(client, path, id);
        latch.addListener(new LeaderLatchListener() {
            @Override
            public void isLeader() {
                say("LEADER");
            }

            @Override
            public void notLeader() {
                say("NOT_LEADER");
            }
        });
        latch.start();
        boolean queued = false;
        for (int i = 0; i < 3000 && !queued; i++) {
            for (Participant p : latch.getParticipants()) {
                if (p.getId().equals(id)) {
                    queued = true;
                }
            }
            if (!queued) {
                Thread.sleep(10);
            }
        }
        say(queued ? "READY" : "NOT_QUEUED");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("close")) {
                latch.close();
                client.close();
                say("CLOSED");
                return;
            }
        }
    }
}
