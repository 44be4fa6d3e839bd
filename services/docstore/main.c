/* passerelle-docstore: the documents the partnership shares (studies,
 * diagnostics, conventions, minutes, brochures), content-addressed and
 * versioned on a volume, their metadata in Redis. Reads its configuration
 * from the environment, opens the blob store, sweeps the uploads abandoned
 * before a restart, serves until SIGINT/SIGTERM.
 *
 * Configuration (besides the store's and the server's common variables):
 *   PASSERELLE_DOCSTORE_ENDPOINT     where to bind (tcp://127.0.0.1:7404)
 *   PASSERELLE_DOCSTORE_HTTP_ENDPOINT health, readiness and metrics over
 *                                    HTTP (127.0.0.1:9404; off for none)
 *   PASSERELLE_DOCSTORE_DIR          the volume's folder (./var/docstore)
 *   PASSERELLE_DOCSTORE_MAX_BYTES    largest document, bytes (536870912)
 *   PASSERELLE_DOCSTORE_QUOTA_BYTES  bytes the blobs and uploads may use
 *                                    (0: the volume's free space)
 *   PASSERELLE_DOCSTORE_MAX_UPLOADS  uploads in progress at once (16)
 *   PASSERELLE_DOCSTORE_UPLOAD_TTL_S an upload idle that long is abandoned
 *                                    and removed (3600)
 *   PASSERELLE_DOCSTORE_TICK_MS      housekeeping period: sweep of the
 *                                    abandoned uploads, one slice of
 *                                    garbage collection (10000)
 *   PASSERELLE_DOCSTORE_GC_GRACE_S   a blob no version refers to is removed
 *                                    that long after first seen so (86400)
 *   PASSERELLE_DOCSTORE_WINDOW       chunks (or ranges) a client may have in
 *                                    flight (4) */
#include "blobs.h"
#include "config.h"
#include "docs.h"
#include "httpd.h"
#include "log.h"
#include "memtune.h"
#include "metrics.h"
#include "server.h"
#include "store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A chunk and the envelope around it (ids, type, key, body framing); an
 * upload.begin carrying a whole document adds its metadata, well within. */
#define DOCSTORE_REQUEST_BYTES ((size_t)BLOB_BLOCK_SIZE + 64 * 1024)

/* Messages ZeroMQ may queue per connection, each way (queue_per_peer,
 * server.h), beyond which it stops reading that client's socket (TCP then
 * holds the client back) and drops replies to a client that does not read
 * them. A client keeping to
 * its window never has more than the window outstanding; one that ignores
 * it holds at most this many chunks (a megabyte each) of the service's
 * memory, and the batch the server drains from them, rather than ZeroMQ's
 * default thousand (measured by tests/integration/test_docstore.c: 96 MB
 * sent at once grow the service by about 16 MB with this, 150 MB
 * without). */
static int docstore_hwm(long window)
{
    return (int)(window + 4);
}

int main(void)
{
    log_init("docstore");
    /* Chunks of a megabyte come and go all day: keep their pages. */
    if (!memtune_for_chunks())
        log_warn("the C library refused the chunk memory policy: running on its defaults", NULL);

    long max_bytes = 0, quota_bytes = 0, max_uploads = 0, ttl_s = 0, tick_ms = 0, grace_s = 0,
         window = 0;
    if (!config_int("PASSERELLE_DOCSTORE_MAX_BYTES", (long)DOCSTORE_MAX_BYTES_DEFAULT, 0,
                    (long)1 << 50, &max_bytes) ||
        !config_int("PASSERELLE_DOCSTORE_QUOTA_BYTES", 0, 0, (long)1 << 60, &quota_bytes) ||
        !config_int("PASSERELLE_DOCSTORE_MAX_UPLOADS", DOCSTORE_MAX_UPLOADS_DEFAULT, 1, 100000,
                    &max_uploads) ||
        !config_int("PASSERELLE_DOCSTORE_UPLOAD_TTL_S", DOCSTORE_UPLOAD_TTL_DEFAULT, 1, 30L * 86400,
                    &ttl_s) ||
        !config_int("PASSERELLE_DOCSTORE_TICK_MS", DOCSTORE_TICK_MS_DEFAULT, 10, 3600L * 1000,
                    &tick_ms) ||
        !config_int("PASSERELLE_DOCSTORE_GC_GRACE_S", DOCSTORE_GC_GRACE_DEFAULT, 0, 365L * 86400,
                    &grace_s) ||
        !config_int("PASSERELLE_DOCSTORE_WINDOW", DOCSTORE_WINDOW_DEFAULT, 1, DOCSTORE_WINDOW_MAX,
                    &window))
        return 1;
    const char *dir = config_str("PASSERELLE_DOCSTORE_DIR", "./var/docstore");

    store_config_t store_cfg;
    memset(&store_cfg, 0, sizeof store_cfg);
    server_config_t server_cfg;
    memset(&server_cfg, 0, sizeof server_cfg);
    if (!store_config_from_env(&store_cfg) || !server_config_from_env(&server_cfg)) {
        log_error("bad configuration: see the variable logged above", NULL);
        return 1;
    }
    if (server_cfg.max_request_bytes < DOCSTORE_REQUEST_BYTES)
        server_cfg.max_request_bytes = DOCSTORE_REQUEST_BYTES;

    char err[256] = "";
    blobstore_t *blobs = blobstore_new(dir, (uint64_t)quota_bytes, err, sizeof err);
    if (!blobs) {
        log_error("cannot open the document volume", "{s:s, s:s}", "dir", dir, "error", err);
        return 1;
    }
    store_t *store = store_new(&store_cfg);
    if (!store) {
        log_error("cannot create the store", NULL);
        blobstore_destroy(&blobs);
        return 1;
    }
    docstore_t docstore = {
        .store = store,
        .blobs = blobs,
        .max_bytes = (uint64_t)max_bytes,
        .max_uploads = (unsigned)max_uploads,
        .upload_ttl_s = (unsigned)ttl_s,
        .gc_grace_s = (unsigned)grace_s,
        .window = (unsigned)window,
    };
    /* Uploads a crash or a client left behind; if Redis is down now, they
     * wait for the next start (they only cost space meanwhile). */
    docstore_sweep(&docstore);

    server_cfg.service = "docstore";
    server_cfg.endpoint = config_str("PASSERELLE_DOCSTORE_ENDPOINT", "tcp://127.0.0.1:7404");
    server_cfg.routes = docstore_routes;
    server_cfg.route_count = docstore_route_count;
    server_cfg.ctx = &docstore;
    server_cfg.store = store;
    server_cfg.stream = DOCSTORE_STREAM;
    server_cfg.tick = docstore_tick;
    server_cfg.prepare_commit = docstore_prepare_commit;
    server_cfg.tick_ms = (int)tick_ms;
    server_cfg.queue_per_peer = docstore_hwm(window);

    /* The operations port: health, readiness and metrics. */
    ops_t *ops = ops_start("PASSERELLE_DOCSTORE_HTTP_ENDPOINT", "127.0.0.1:9404", &store_cfg);
    if (!ops) {
        store_destroy(&store);
        blobstore_destroy(&blobs);
        return 1;
    }
    server_cfg.metrics = ops_metrics(ops);
    docstore_count_into(&docstore, ops_metrics(ops));
    ops_collect(ops, docstore_collect, &docstore);

    server_t *server = server_new(&server_cfg);
    if (!server) {
        log_error("cannot start the server", "{s:s}", "endpoint", server_cfg.endpoint);
        ops_destroy(&ops);
        store_destroy(&store);
        blobstore_destroy(&blobs);
        return 1;
    }
    ops_keys_loaded(ops, server_cfg.keys_dir, server_cfg.insecure);
    log_info("document volume", "{s:s, s:I, s:I, s:i, s:i, s:i}", "dir", dir, "max_bytes",
             (json_int_t)max_bytes, "quota_bytes", (json_int_t)quota_bytes, "tick_ms", (int)tick_ms,
             "gc_grace_s", (int)grace_s, "window", (int)window);
    server_wait_for_signal(server);
    ops_stopping(ops);
    /* Answer what is in flight, refuse what comes, within the grace: an
     * upload cut short resumes from what was acknowledged. */
    server_drain(server, server_cfg.shutdown_grace_ms);
    server_destroy(&server);
    ops_destroy(&ops);
    /* The sweep also records, as each tick does, the progress memory
     * holds of the uploads in progress (their bytes synced first): a
     * client resumes from there even if the service comes back on another
     * machine, where the progress files beside them do not count. */
    docstore_sweep(&docstore);
    docstore_release(&docstore);
    store_destroy(&store);
    blobstore_destroy(&blobs);
    log_info("stopped", NULL);
    return 0;
}
