// Single-file launcher for an embedded Neo4j Community DBMS with Bolt on loopback.
// Run as: java -cp '<lib>/*' Launcher.java --home DIR --port N --pagecache-bytes N --password-file F
//         [--host H] [--tx-timeout-seconds N] [--watch-pid P] (exit cleanly once process P is gone)
// Prints "READY <port>" once Bolt accepts connections; shuts down cleanly on SIGTERM/SIGINT.
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

public class Launcher {
    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            opts.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        Path home = Path.of(require(opts, "home"));
        int port = Integer.parseInt(require(opts, "port"));
        String host = opts.getOrDefault("host", "127.0.0.1");
        String password = Files.readString(Path.of(require(opts, "password-file"))).strip();
        long pagecacheBytes = Long.parseLong(opts.getOrDefault("pagecache-bytes", "268435456"));
        long txTimeoutSeconds = Long.parseLong(opts.getOrDefault("tx-timeout-seconds", "120"));

        String watchPid = opts.get("watch-pid");
        if (watchPid != null) {
            watchParent(Long.parseLong(watchPid));
        }

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
            .setConfig(BoltConnector.enabled, true)
            .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
            .setConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
            .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
            .setConfig(HttpConnector.enabled, false)
            .setConfig(HttpsConnector.enabled, false)
            .setConfig(GraphDatabaseSettings.auth_enabled, true)
            .setConfig(GraphDatabaseSettings.pagecache_memory, pagecacheBytes)
            .setConfig(GraphDatabaseSettings.transaction_timeout, Duration.ofSeconds(txTimeoutSeconds))
            // Bolt's Netty event loops otherwise wait a 2 s quiet period each on shutdown
            // (about 5 s in all); nothing is accepted after SIGTERM anyway.
            .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
            .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("STOPPING");
            System.out.flush();
            dbms.shutdown();
            stopped.countDown();
        }));
        // The password lives only in a 0600 file; re-applying it on every start keeps the
        // store in step with that file (the system database persists the hash).
        try {
            setPassword(dbms, password);
            dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).executeTransactionally("RETURN 1");
        } catch (RuntimeException e) {
            // A half-started DBMS keeps non-daemon threads alive: stop it so the process exits.
            e.printStackTrace();
            System.err.println("FAILED " + e.getMessage());
            System.exit(1);
        }
        System.out.println("READY " + port);
        System.out.flush();
        stopped.await();
    }

    private static void setPassword(DatabaseManagementService dbms, String password) {
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                "ALTER USER neo4j SET PASSWORD $p CHANGE NOT REQUIRED", Map.of("p", password));
        } catch (RuntimeException e) {
            // On a restart the stored hash already matches the file: Neo4j refuses a no-op change.
            String msg = String.valueOf(e.getMessage());
            if (!msg.contains("Old password and new password cannot be the same")) {
                throw e;
            }
        }
    }

    // Tests pass their own pid so that a killed test run never leaves a JVM behind.
    private static void watchParent(long pid) {
        Thread watcher = new Thread(() -> {
            while (true) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                }
                if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                    System.out.println("WATCHED PROCESS " + pid + " GONE");
                    System.out.flush();
                    System.exit(0);
                }
            }
        }, "watch-pid");
        watcher.setDaemon(true);
        watcher.start();
    }

    private static String require(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            System.err.println("missing --" + name);
            System.exit(2);
        }
        return v;
    }
}
