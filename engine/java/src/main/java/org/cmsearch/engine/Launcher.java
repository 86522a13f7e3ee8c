package org.cmsearch.engine;

import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.opensearch.cluster.service.ClusterService;
import org.opensearch.Version;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.core.common.transport.TransportAddress;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.PluginInfo;

/**
 * Runs one OpenSearch node in this JVM with its plugins loaded from the class path.
 *
 * Subclassing Node reaches the constructor that takes class-path plugins, so no
 * distribution, no plugin folders and no Bootstrap checks are needed. Arguments:
 * {@code <state dir> <http port range> <exit-on-stdin-close: true|false> [-Ename=value]... <plugin class>...};
 * {@code -E} arguments override the single-node defaults below (an empty value removes one, e.g.
 * {@code -Ediscovery.type=} for a node of a several-node cluster); plugin classes missing from
 * the class path are skipped and reported. When the HTTP server is bound, its address is written
 * to {@code <state dir>/READY}.
 */
public final class Launcher {

    static final class ClasspathNode extends Node {
        /**
         * {@code plugins} is what this OpenSearch's class-path constructor takes (see
         * {@link #classpathPlugins}); the raw type lets one source compile against 2.x and 3.x.
         */
        @SuppressWarnings({"rawtypes", "unchecked"})
        ClasspathNode(Environment env, Collection plugins) {
            super(env, plugins, true);
        }

        @Override
        protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
            // The static node-id listener is meant for one node per JVM lifetime; not needed here.
        }
    }

    /**
     * The class-path plugins in the form Node's constructor takes: the plugin classes (2.x), or
     * one PluginInfo per class (3.x, which loads each by its class name).
     */
    static Collection<?> classpathPlugins(List<Class<? extends Plugin>> plugins) {
        for (Constructor<?> c : Node.class.getDeclaredConstructors()) {
            Type[] params = c.getGenericParameterTypes();
            if (params.length == 3 && params[1] instanceof ParameterizedType pt
                && pt.getActualTypeArguments()[0] == PluginInfo.class) {
                List<PluginInfo> infos = new ArrayList<>();
                for (Class<? extends Plugin> p : plugins) {
                    infos.add(new PluginInfo(p.getName(), "class-path plugin", "NA", Version.CURRENT, "21",
                        p.getName(), null, List.of(), false));
                }
                return infos;
            }
        }
        return plugins;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: Launcher <state dir> <http port range> <exit-on-stdin-close> <plugin class>...");
            System.exit(2);
        }
        Path state = Paths.get(args[0]).toAbsolutePath();
        String ports = args[1];
        boolean exitOnStdinClose = Boolean.parseBoolean(args[2]);

        Path home = state.resolve("home");
        Path config = home.resolve("config");
        Files.createDirectories(config);
        Files.createDirectories(home.resolve("plugins"));
        Files.createDirectories(home.resolve("modules"));
        Path logs = Files.createDirectories(state.resolve("logs"));
        Path data = Files.createDirectories(state.resolve("data"));
        Files.deleteIfExists(state.resolve("READY"));

        Settings.Builder builder = Settings.builder()
            .put("cluster.name", "cmsearch-local")
            .put("node.name", "cmsearch-node")
            .put("path.home", home.toString())
            .put("path.data", data.toString())
            .put("path.logs", logs.toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", ports)
            .put("transport.port", "9300-9399")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", false)
            .put("node.portsfile", true);
        List<String> pluginNames = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            if (args[i].startsWith("-E")) {
                int eq = args[i].indexOf('=');
                if (eq < 3) {
                    System.err.println("setting needs -Ename=value: " + args[i]);
                    System.exit(2);
                }
                String key = args[i].substring(2, eq);
                String value = args[i].substring(eq + 1);
                if (value.isEmpty()) {
                    builder.remove(key);
                } else {
                    builder.put(key, value);
                }
            } else {
                pluginNames.add(args[i]);
            }
        }
        Settings settings = builder.build();
        Environment env = new Environment(settings, config);
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(settings.get("node.name"));
        LogConfigurator.configure(env);

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : pluginNames) {
            try {
                plugins.add(Class.forName(name).asSubclass(Plugin.class));
            } catch (ClassNotFoundException e) {
                System.err.println("plugin not on class path, skipped: " + name);
            }
        }

        Node node = new ClasspathNode(env, classpathPlugins(plugins));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (IOException e) {
                System.err.println("error closing node: " + e);
            } finally {
                stopped.countDown();
            }
        }, "cmsearch-shutdown"));
        node.start();

        TransportAddress http = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress();
        Path tmp = state.resolve("READY.tmp");
        Files.write(tmp, ("http://" + http.getAddress() + ":" + http.getPort() + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, state.resolve("READY"), StandardCopyOption.ATOMIC_MOVE);
        System.out.println("cmsearch-engine ready on http://" + http.getAddress() + ":" + http.getPort());
        System.out.flush();

        if (exitOnStdinClose) {
            Thread watcher = new Thread(() -> {
                try {
                    InputStream in = System.in;
                    while (in.read() != -1) {
                        // drain until the parent closes the pipe
                    }
                } catch (IOException ignored) {
                    // a broken pipe means the parent is gone too
                }
                System.exit(0);
            }, "cmsearch-stdin-watch");
            watcher.setDaemon(true);
            watcher.start();
        }
        stopped.await();
    }
}
