// One Apache Curator LeaderLatch contender, driven by ha-bench over stdin/stdout.
//
// Args: <connect-string> <latch-path> <session-timeout-ms> <id> [publish]
// Prints: "SESSION <negotiated-ms>", "READY" once queued in the latch, "LEADER" when
// granted. Reads "close" on stdin: closes the latch and the client (graceful hand-over).
// A crash is SIGKILL from the driver: the session then ends only by timeout.
// With "publish", a granted contender says "GRANTED", then writes its address with a
// fresh term id to "<latch-path>-leader" in a transaction that checks its own latch node
// (as Flink's HA does on top of LeaderLatch), the work ha-rs's confirm does after a
// grant, and only then says "LEADER".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.UUID;
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
        boolean publish = args.length > 4 && args[4].equals("publish");
        String infoPath = path + "-leader";
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
        if (publish) {
            try {
                client.create().creatingParentsIfNeeded().forPath(infoPath);
            } catch (org.apache.zookeeper.KeeperException.NodeExistsException e) {
                // Another contender made it.
            }
            // Warm the transaction path up (class loading, first compilation), as a
            // long-running process would have: one check-only transaction, and the
            // set operation built once without running it.
            client.transactionOp().setData().forPath(infoPath, new byte[0]);
            client.transaction().forOperations(client.transactionOp().check().forPath(infoPath));
        }
        final LeaderLatch latch = new LeaderLatch(client, path, id);
        latch.addListener(new LeaderLatchListener() {
            @Override
            public void isLeader() {
                if (publish) {
                    say("GRANTED");
                    byte[] info = ("bench://" + id + " " + UUID.randomUUID()).getBytes(StandardCharsets.UTF_8);
                    try {
                        client.transaction().forOperations(
                                client.transactionOp().check().forPath(latch.getOurPath()),
                                client.transactionOp().setData().forPath(infoPath, info));
                    } catch (Exception e) {
                        say("ERROR publish: " + e);
                        return;
                    }
                }
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
