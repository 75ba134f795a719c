// Writes real Flink 2.3 HA state through Flink's own HA services, for hactl's fixtures
// and its live test (see examples/hactl/README.md, "Flink").
//
// Args: <config-dir> [<zookeeper-dump-file> | recover]
//   <config-dir> holds a Flink `config.yaml` (ZooKeeper or Kubernetes HA, as in the
//   Flink docs). The harness starts Flink's HA services from it
//   (HighAvailabilityServicesUtils.createAvailableOrEmbeddedServices), lets the
//   dispatcher, resource manager, REST endpoint and the job manager of job RUNNING win
//   leadership and confirm their addresses, stores the execution plan of job RUNNING,
//   three completed checkpoints of it (the store retains two) with its checkpoint id
//   counter, and one completed checkpoint of job LEAKED, whose execution plan is never
//   stored (the state a finished job whose HA data leaked leaves behind), and job
//   FINISHED: execution plan, one checkpoint and a dirty job result (it finished; its
//   cleanup did not run yet).
//   With <zookeeper-dump-file>, every znode under the ZooKeeper root is written there
//   as JSON lines {"path","ephemeral","data"(base64)}.
// With `recover`, writes nothing: as a new JobManager would, it wins leadership and
//   recovers through Flink's stores every execution plan ("RECOVERED_PLAN <job>") and
//   each job's checkpoints ("RECOVERED_CHECKPOINTS <job> <ids>", "RECOVERED_COUNTER
//   <job> <n>"), so a test can check that what hactl left is what Flink needs.
// Prints "READY" when done, then waits for "close" on stdin (or end of input) and
// exits without cleaning anything up, like a crashed JobManager.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.GlobalConfiguration;
import org.apache.flink.core.execution.RecoveryClaimMode;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.fs.Path;
import org.apache.flink.runtime.checkpoint.CheckpointIDCounter;
import org.apache.flink.runtime.checkpoint.CheckpointProperties;
import org.apache.flink.runtime.checkpoint.CheckpointRetentionPolicy;
import org.apache.flink.runtime.checkpoint.CheckpointsCleaner;
import org.apache.flink.runtime.checkpoint.CompletedCheckpoint;
import org.apache.flink.runtime.checkpoint.CompletedCheckpointStore;
import org.apache.flink.runtime.highavailability.HighAvailabilityServices;
import org.apache.flink.runtime.highavailability.HighAvailabilityServicesUtils;
import org.apache.flink.runtime.highavailability.JobResultEntry;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.jobmanager.ExecutionPlanStore;
import org.apache.flink.runtime.jobmaster.JobResult;
import org.apache.flink.runtime.leaderelection.LeaderContender;
import org.apache.flink.runtime.leaderelection.LeaderElection;
import org.apache.flink.runtime.state.SharedStateRegistry;
import org.apache.flink.runtime.state.filesystem.FileStateHandle;
import org.apache.flink.runtime.state.filesystem.FsCompletedCheckpointStorageLocation;
import org.apache.flink.runtime.util.ZooKeeperUtils;
import org.apache.flink.shaded.curator5.org.apache.curator.framework.CuratorFramework;
import org.apache.flink.shaded.zookeeper3.org.apache.zookeeper.data.Stat;

public final class FlinkHaWriter {
    /** The job that runs: execution plan, checkpoints 1..3 (2 retained), counter 4. */
    static final JobID RUNNING = JobID.fromHexString("5f1ac3e6b9d2c4a7e8f0a1b2c3d4e5f6");
    /** The job whose HA data leaked: a checkpoint and a counter, no execution plan. */
    static final JobID LEAKED = JobID.fromHexString("0badc0ffee0000000000000000000b0b");
    /** The job that finished, cleanup pending: plan, checkpoint 1, a dirty job result. */
    static final JobID FINISHED = JobID.fromHexString("feedface00000000000000000000f1d0");
    static final String CHECKPOINTS = "file:///tmp/flink-checkpoints";

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** A contender that confirms `address` as soon as it is granted leadership. */
    static final class Contender implements LeaderContender {
        final LeaderElection election;
        final String address;
        final CompletableFuture<UUID> confirmed = new CompletableFuture<>();

        Contender(LeaderElection election, String address) {
            this.election = election;
            this.address = address;
        }

        @Override
        public void grantLeadership(UUID session) {
            election.confirmLeadershipAsync(session, address)
                    .whenComplete((v, e) -> {
                        if (e != null) {
                            confirmed.completeExceptionally(e);
                        } else {
                            confirmed.complete(session);
                        }
                    });
        }

        @Override
        public void revokeLeadership() {}

        @Override
        public void handleError(Exception e) {
            confirmed.completeExceptionally(e);
        }
    }

    static Contender lead(LeaderElection election, String address) throws Exception {
        Contender c = new Contender(election, address);
        election.startLeaderElection(c);
        UUID session = c.confirmed.get(60, TimeUnit.SECONDS);
        say("LEADER " + address + " " + session);
        return c;
    }

    static CompletedCheckpoint checkpoint(JobID job, long id) throws Exception {
        Path dir = new Path(CHECKPOINTS + "/" + job + "/chk-" + id);
        FileStateHandle metadata = new FileStateHandle(new Path(dir, "_metadata"), 0);
        FsCompletedCheckpointStorageLocation location = new FsCompletedCheckpointStorageLocation(
                FileSystem.getLocalFileSystem(), dir, metadata, dir.toString());
        long at = 1_764_000_000_000L + id * 1000;
        return new CompletedCheckpoint(job, id, at, at + 100, Collections.emptyMap(), Collections.emptyList(),
                CheckpointProperties.forCheckpoint(CheckpointRetentionPolicy.NEVER_RETAIN_AFTER_TERMINATION),
                location, null);
    }

    static void checkpoints(HighAvailabilityServices ha, JobID job, int count, ExecutorService io)
            throws Exception {
        CompletedCheckpointStore store = ha.getCheckpointRecoveryFactory().createRecoveredCompletedCheckpointStore(
                job, 2, SharedStateRegistry.DEFAULT_FACTORY, io, RecoveryClaimMode.DEFAULT);
        CheckpointIDCounter counter = ha.getCheckpointRecoveryFactory().createCheckpointIDCounter(job);
        counter.start();
        CheckpointsCleaner cleaner = new CheckpointsCleaner();
        for (int i = 0; i < count; i++) {
            long id = counter.getAndIncrement();
            store.addCheckpointAndSubsumeOldestOne(checkpoint(job, id), cleaner, () -> {});
            say("CHECKPOINT " + job + " " + id);
        }
        say("COUNTER " + job + " " + counter.get());
    }

    static void dump(CuratorFramework client, String path, PrintWriter out) throws Exception {
        Stat stat = new Stat();
        byte[] data = client.getData().storingStatIn(stat).forPath(path);
        out.println("{\"path\":\"" + path + "\",\"ephemeral\":" + (stat.getEphemeralOwner() != 0)
                + ",\"data\":\"" + Base64.getEncoder().encodeToString(data == null ? new byte[0] : data) + "\"}");
        List<String> children = new ArrayList<>(client.getChildren().forPath(path));
        Collections.sort(children);
        for (String child : children) {
            String full = (path.equals("/") ? "" : path) + "/" + child;
            if (!full.equals("/zookeeper")) {
                dump(client, full, out);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        Configuration conf = GlobalConfiguration.loadConfiguration(args[0]);
        ExecutorService io = Executors.newFixedThreadPool(2);
        HighAvailabilityServices ha = HighAvailabilityServicesUtils.createAvailableOrEmbeddedServices(
                conf, io, e -> {
                    e.printStackTrace();
                    System.exit(3);
                });
        String rpc = "pekko.tcp://flink@10.0.0.7:6123/user/rpc/";
        List<Contender> leaders = new ArrayList<>();
        leaders.add(lead(ha.getDispatcherLeaderElection(), rpc + "dispatcher_1"));
        leaders.add(lead(ha.getResourceManagerLeaderElection(), rpc + "resourcemanager_0"));
        leaders.add(lead(ha.getClusterRestEndpointLeaderElection(), "http://10.0.0.7:8081"));
        leaders.add(lead(ha.getJobManagerLeaderElection(RUNNING), rpc + "jobmanager_2"));

        ExecutionPlanStore plans = ha.getExecutionPlanStore();
        plans.start(new ExecutionPlanStore.ExecutionPlanListener() {
            @Override
            public void onAddedExecutionPlan(JobID jobId) {}

            @Override
            public void onRemovedExecutionPlan(JobID jobId) {}
        });
        if (args.length > 1 && args[1].equals("recover")) {
            recover(ha, plans, io);
            waitForClose();
            return;
        }
        plans.putExecutionPlan(new JobGraph(RUNNING, "orders-enrichment"));
        say("PLAN " + RUNNING);
        checkpoints(ha, RUNNING, 3, io);
        checkpoints(ha, LEAKED, 1, io);
        plans.putExecutionPlan(new JobGraph(FINISHED, "nightly-compaction"));
        checkpoints(ha, FINISHED, 1, io);
        ha.getJobResultStore()
                .createDirtyResultAsync(new JobResultEntry(new JobResult.Builder()
                        .jobId(FINISHED)
                        .jobStatus(JobStatus.FINISHED)
                        .netRuntime(42_000)
                        .build()))
                .get(30, TimeUnit.SECONDS);
        say("DIRTY " + FINISHED);

        if (args.length > 1) {
            CuratorFramework client = ZooKeeperUtils.startCuratorFramework(conf, e -> {}).asCuratorFramework();
            try (PrintWriter out = new PrintWriter(args[1], StandardCharsets.UTF_8)) {
                dump(client.usingNamespace(null), "/", out);
            }
            client.close();
            say("DUMPED " + args[1]);
        }
        waitForClose();
    }

    static void recover(HighAvailabilityServices ha, ExecutionPlanStore plans, ExecutorService io) throws Exception {
        List<JobID> jobs = new ArrayList<>(plans.getJobIds());
        jobs.sort((a, b) -> a.toString().compareTo(b.toString()));
        for (JobID job : jobs) {
            plans.recoverExecutionPlan(job);
            say("RECOVERED_PLAN " + job);
            CompletedCheckpointStore store = ha.getCheckpointRecoveryFactory().createRecoveredCompletedCheckpointStore(
                    job, 2, SharedStateRegistry.DEFAULT_FACTORY, io, RecoveryClaimMode.DEFAULT);
            StringBuilder ids = new StringBuilder();
            for (CompletedCheckpoint c : store.getAllCheckpoints()) {
                ids.append(ids.length() == 0 ? "" : ",").append(c.getCheckpointID());
            }
            say("RECOVERED_CHECKPOINTS " + job + " " + ids);
            CheckpointIDCounter counter = ha.getCheckpointRecoveryFactory().createCheckpointIDCounter(job);
            counter.start();
            say("RECOVERED_COUNTER " + job + " " + counter.get());
        }
    }

    static void waitForClose() throws Exception {
        say("READY");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null && !line.trim().equals("close")) {
            // wait
        }
        Runtime.getRuntime().halt(0);
    }
}
