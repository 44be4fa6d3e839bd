/* Test harness: real processes on loopback, on ports chosen at run time.
 *
 * Starts redis-server (AOF with appendfsync always, a password, data in a
 * fresh temporary folder), the real service binaries from the build tree
 * (PASSERELLE_TEST_BIN_DIR), and makes key directories with one client per
 * party. Everything a test starts it stops; temporary folders are removed
 * unless PASSERELLE_TEST_KEEP=1.
 *
 * On top of these pieces, the fixture most integration tests share (a
 * stack: folder, keys, Redis, the reservations service, a client), calls
 * that check the reply's status, and the event stream read to its end. Those
 * run inside a cmocka test and fail it on an unexpected answer. */
#ifndef PASSERELLE_HARNESS_H
#define PASSERELLE_HARNESS_H

#include "client.h"
#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "indicators.pb-c.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A free TCP port on 127.0.0.1 (bound to port 0, read back, closed). */
int harness_free_port(void);

/* A new empty temporary folder (malloc'd path; caller frees), tagged for
 * easier debugging; harness_rmtree removes it and everything in it. */
char *harness_tempdir(const char *tag);
void harness_rmtree(const char *path);

/* --- Redis ------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int port;
    char dir[256]; /* data folder (AOF) */
    char password[33];
} harness_redis_t;

/* Starts redis-server on a free port and waits until it answers PING.
 * Returns 0, or -1 (message on stderr). */
int harness_redis_start(harness_redis_t *redis);
/* SIGKILL (a crash): the data folder stays, restart reopens it. */
void harness_redis_kill(harness_redis_t *redis);
/* Starts again on the same port and folder; 0 or -1. */
int harness_redis_restart(harness_redis_t *redis);
/* Stops (SIGTERM, wait) and removes the data folder. */
void harness_redis_stop(harness_redis_t *redis);
/* Fills a store configuration pointing at it (strings point into redis). */
void harness_redis_config(const harness_redis_t *redis, store_config_t *cfg);
/* Sets PASSERELLE_REDIS_HOST/PORT/PASSWORD in this process's environment,
 * for services started afterwards. */
void harness_redis_setenv(const harness_redis_t *redis);

/* --- keys --------------------------------------------------------------- */

/* Makes a key directory: the server certificate and one client per party,
 * named after the party in lower case ("metropole", "action_logement",
 * "operator", "partner", "admin", "service"). 0 or -1. */
int harness_keys_make(const char *dir);

/* A client of the endpoint using the named client's certificate from dir;
 * timeout_ms per attempt and retries as in client.h. NULL on failure. */
client_t *harness_client(const char *endpoint, const char *keys_dir, const char *name,
                         int timeout_ms, int retries);

/* --- services ----------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char name[32];      /* "reservations" */
    char log_path[512]; /* its stderr, JSON lines */
    char endpoint[64];  /* "tcp://127.0.0.1:41234", read from its log */
    int port;
} harness_service_t;

/* Starts $PASSERELLE_TEST_BIN_DIR/services/<name>/passerelle-<name> with
 * this process's environment plus extra_env ("NAME=value" strings,
 * NULL-terminated, may be NULL), its endpoint variable
 * (PASSERELLE_<NAME>_ENDPOINT) set to a free port the kernel picks unless
 * extra_env sets it (another is tried if it is taken before the service
 * binds it), its stderr to log_dir/<name>.log, and waits (up to 10 s) for its
 * "listening" log line, from which it reads the endpoint. 0 or -1. */
int harness_service_start(harness_service_t *service, const char *name, const char *log_dir,
                          char *const extra_env[]);
/* Sends sig and waits for the process; returns its wait status. */
int harness_service_stop(harness_service_t *service, int sig);
/* Restarts on the same endpoint (port) after a stop; 0 or -1. */
int harness_service_restart(harness_service_t *service, const char *log_dir,
                            char *const extra_env[]);

/* Path of a binary of the build tree, e.g. "tools/passerelle" (static
 * buffer). */
const char *harness_bin(const char *relative);

/* SIGTERM, and true if the service exited with status 0, as every service
 * must on SIGTERM; otherwise says how it ended on stderr. */
bool harness_service_stop_clean(harness_service_t *service);

/* For a teardown: when the service runs (pid > 0), harness_service_stop_clean
 * and harness_log_has_sanitizer_report on its log; true if it stopped
 * cleanly and left no report, or was not running. */
bool harness_service_stop_checked(harness_service_t *service);

/* --- a Redis with a store ------------------------------------------------ */

/* Starts Redis and opens *store_p on it. 0 or -1; harness_store_stop
 * undoes either outcome. */
int harness_store_start(harness_redis_t *redis, store_t **store_p);
void harness_store_stop(harness_redis_t *redis, store_t **store_p);

struct CMUnitTest;

/* Runs a cmocka group of tests of the store layer with *redis and
 * *store_p started before the first test and stopped after the last. Logs
 * at error level only: these tests provoke the failures the store warns
 * about. Returns cmocka's result. */
int harness_run_store_tests(const char *group, const struct CMUnitTest *tests, size_t count,
                            harness_redis_t *redis, store_t **store_p);
#define harness_store_tests(tests, redis, store_p)                                                 \
    harness_run_store_tests(#tests, tests, sizeof(tests) / sizeof((tests)[0]), redis, store_p)

/* --- a whole stack --------------------------------------------------------- */

/* The timeout and retries of the client harness_stack_start makes. */
#define HARNESS_STACK_CLIENT_TIMEOUT_MS 5000
#define HARNESS_STACK_CLIENT_RETRIES    1

typedef struct {
    char *dir;      /* temporary folder: keys, logs (malloc'd) */
    char keys[512]; /* dir/keys, one client per party */
    harness_redis_t redis;
    harness_service_t service; /* reservations, logging into dir */
    client_t *client;          /* the stack's client, or NULL */
    char **env;                /* a copy of extra_env, for restarts */
} harness_stack_t;

/* Makes a temporary folder tagged `tag` with a key directory in it, starts
 * Redis and the reservations service (with extra_env as in
 * harness_service_start), and, when client_name is not NULL, a client of it
 * with that party's key. The Redis variables and PASSERELLE_KEYS_DIR are set
 * in this process's environment, so that a service the test starts later
 * (another replica, a misconfigured one) finds the same Redis and keys.
 * Returns 0, or -1 with whatever started left for harness_stack_stop: the
 * steps run in the order above, so the folder and keys exist if Redis did
 * not start. */
int harness_stack_start(harness_stack_t *stack, const char *tag, const char *client_name,
                        char *const extra_env[]);

/* Stops everything the stack runs and removes its folder; returns true if
 * the service (when still running) exited cleanly on SIGTERM. */
bool harness_stack_stop(harness_stack_t *stack);

/* cmocka setup and teardown of a fixture: a zeroed struct of `size` bytes
 * whose first member is a harness_stack_t, started as harness_stack_start
 * does (no extra environment), in *state. The teardown fails when the
 * service did not stop cleanly, since a clean stop on SIGTERM is part of
 * every service's contract. */
int harness_fixture_setup(void **state, size_t size, const char *tag, const char *client_name);
int harness_fixture_teardown(void **state);

/* cmocka teardown of a stack a setup left in *state, and not allocated by
 * harness_fixture_setup: harness_stack_stop, failing as above. */
int harness_stack_teardown(void **state);

/* A new client of the stack's service with the named key (caller
 * destroys); NULL on failure. */
client_t *harness_stack_client(const harness_stack_t *stack, const char *name, int timeout_ms,
                               int retries);

/* Restarts the stack's service on its port after a stop, with the same
 * extra environment; 0 or -1. */
int harness_stack_restart(harness_stack_t *stack);

/* Starts another reservations service beside the stack's: its log in the
 * stack's folder under subdir (made here), this process's environment plus
 * extra_env. 0 or -1; the caller stops it. */
int harness_stack_service_start(const harness_stack_t *stack, harness_service_t *service,
                                const char *subdir, char *const extra_env[]);

/* --- calls ------------------------------------------------------------------ */

/* Fails the test unless reply is there with this status and, when field is
 * not NULL, names that field (NULL counts as ""). The reply is printed
 * first, so that a failure explains itself. */
void harness_expect_status(const Passerelle__Reply *reply, int status, const char *field);

/* Sends one request, which must get a reply of this status and field (as
 * harness_expect_status). Returns the reply; the caller frees it. */
Passerelle__Reply *harness_call(client_t *client, const char *type, const ProtobufCMessage *body,
                                int status, const char *field);
/* The same with an idempotency key (NULL: the client makes one). */
Passerelle__Reply *harness_call_keyed(client_t *client, const char *type,
                                      const ProtobufCMessage *body, const char *idempotency_key,
                                      int status, const char *field);

/* Sends one request, which must be answered OK, and returns the reply's
 * body unpacked as reply_desc (caller frees with
 * protobuf_c_message_free_unpacked), which must decode; NULL when
 * reply_desc is NULL (the body is not wanted). */
ProtobufCMessage *harness_call_ok(client_t *client, const char *type, const ProtobufCMessage *body,
                                  const ProtobufCMessageDescriptor *reply_desc);

/* A refusal: harness_call's checks, then a message that says why. Frees
 * the reply. */
void harness_call_refused(client_t *client, const char *type, const ProtobufCMessage *body,
                          int status, const char *field);

/* A valid private T3 unit in Pertuis with this reference (borrowed); a test
 * changes what it is about. */
void harness_unit_request(Passerelle__UnitRegisterRequest *req, const char *external_ref);

/* Makes the unit social stock: this landlord (borrowed), financed by a
 * PLUS loan. */
void harness_unit_social(Passerelle__UnitRegisterRequest *req, const char *landlord);

/* unit.register by client, expecting OK; writes the unit's id (ID_LEN)
 * when id is not NULL. */
void harness_unit_register(client_t *client, const Passerelle__UnitRegisterRequest *req, char *id);

/* programme.create by client, expecting OK, of a PIG run by Soliha in one
 * commune from 1 January of first_year to 31 December of last_year;
 * writes its id (ID_LEN). */
void harness_pig_programme(client_t *client, const char *name, const char *commune, int first_year,
                           int last_year, char *id);

/* --- the event stream ------------------------------------------------------ */

typedef struct {
    size_t count;
    Passerelle__StreamEvent **entries;  /* in stream order, each with its event */
    char last_position[64];             /* of the last entry; `after` if none */
    Passerelle__EventListReply **pages; /* own the entries */
    size_t n_pages;
} harness_events_t;

/* Every event after the position `after` ("0", "" or NULL: all), read through
 * event.list page by page until a page comes back empty. Each page must be
 * OK and every entry carry an event. harness_events_free releases them. */
void harness_events_read(client_t *client, const char *after, harness_events_t *events);
void harness_events_free(harness_events_t *events);

/* How many events of this type carry a passerelle.Unit (which they must)
 * with this external reference; any reference when it is NULL. */
int harness_events_count_units(const harness_events_t *events, const char *type,
                               const char *external_ref);

/* --- running the CLI ------------------------------------------------------- */

/* How harness_run_cli runs the program (harness_cli_init fills it). */
typedef struct {
    char binary[1024]; /* the program: the passerelle CLI of the build tree */
    char out_dir[512]; /* where its stdout and stderr are captured */
    char cwd[600];     /* its working folder; "" for this process's */
    int deadline_ms;   /* killed (SIGKILL) past that */
    /* Where harness_run_cli_as points the program (harness_cli_service). */
    char endpoint_variable[48]; /* "": through --endpoint and --keys */
    char endpoint[128];
    char keys_dir[512];
} harness_cli_t;

/* The CLI ($PASSERELLE_TEST_BIN_DIR/tools/passerelle), its output captured
 * in out_dir, run in cwd (NULL: this process's folder). */
void harness_cli_init(harness_cli_t *cli, const char *out_dir, const char *cwd, int deadline_ms);

/* Points harness_run_cli_as at one service and key directory: through the
 * environment alone when variable is the service's endpoint variable
 * (PASSERELLE_INDICATORS_ENDPOINT, which also tells the CLI which service
 * its commands go to), as a user sets it up, with PASSERELLE_KEYS_DIR;
 * through the global options --endpoint and --keys when variable is
 * NULL. */
void harness_cli_service(harness_cli_t *cli, const char *variable, const char *endpoint,
                         const char *keys_dir);

/* What a run printed and how it ended; harness_run_free releases it. */
typedef struct {
    int exit_code; /* -1 if it did not exit normally (or was killed) */
    char *out;     /* its stdout, NUL-terminated */
    char *err;     /* its stderr */
} harness_run_t;

#define HARNESS_CLI_MAX_ARGS 48

/* Runs the program with the NULL-terminated arguments (at most
 * HARNESS_CLI_MAX_ARGS), waits for it until the deadline, and returns what
 * it printed. Its environment is this process's without the variables that
 * would point it elsewhere than the test says (PASSERELLE_*_ENDPOINT of the
 * services, _KEYS_DIR, _CLIENT, _INSECURE), plus each "NAME=value" of env
 * (NULL-terminated, may be NULL). Its output goes to files in out_dir, so
 * neither pipe can fill and block it. With PASSERELLE_TEST_VERBOSE set,
 * prints the run on stderr. Fails the test if it cannot fork. */
harness_run_t harness_run_cli(const harness_cli_t *cli, const char *const *env, const char *first,
                              ...);
/* A party's run against harness_cli_service's service: the same as
 * harness_run_cli with that service's environment, or its --endpoint and
 * --keys, then "--as name", before the arguments. */
harness_run_t harness_run_cli_as(const harness_cli_t *cli, const char *name, const char *first,
                                 ...);
void harness_run_free(harness_run_t *run);

/* Fails the test, showing the run, unless it exited with code. */
void harness_assert_exit(const harness_run_t *run, int code);

/* Fails the test, showing haystack, unless needle is in it. */
void harness_assert_contains(const char *haystack, const char *needle);

/* The JSON document text holds (caller json_decref()s); fails the test,
 * showing the text, when it is not JSON. */
json_t *harness_parse_json(const char *text);

/* The whole file, NUL-terminated (malloc'd, caller frees), its length in
 * *len_out when not NULL; "" (and 0) when it cannot be read. */
char *harness_file_read(const char *path, size_t *len_out);

/* --- the document store's protocol ------------------------------------- */

/* The calls a document store test makes, over a client it passes, each
 * failing the test on an answer other than OK. Bytes and their SHA-256 in
 * lowercase hex (64 characters and a NUL). */

/* The chunk size the tests send in (the service's default chunk_max). */
#define HARNESS_DOC_CHUNK (1024 * 1024)

/* The 32-byte digest in hex; the SHA-256 of len bytes of data in hex. */
void harness_hex32(const unsigned char digest[32], char out[65]);
void harness_sha256_hex(const void *data, size_t len, char out[65]);

/* len bytes (malloc'd, caller frees), byte i being
 * (i * 2654435761 + seed) >> shift: the same seed and shift, the same bytes. */
uint8_t *harness_pattern(size_t len, unsigned seed, unsigned shift);

/* An upload.begin request (initialised first) of a study on theme, size
 * bytes of SHA-256 sha; the strings are the caller's. */
void harness_doc_begin_request(Passerelle__UploadBeginRequest *req, const char *title,
                               uint64_t size, const char *sha, uint32_t theme);

/* Calls type (upload.begin, .chunk, .commit) with body; returns the session
 * (caller frees with passerelle__upload_session__free_unpacked). */
Passerelle__UploadSession *harness_doc_session_call(client_t *c, const char *type,
                                                    const ProtobufCMessage *body);

/* upload.begin: checks the new upload (an 'L' id, nothing received) and
 * returns its id (malloc'd); its chunk_max into *chunk_max when not NULL. */
char *harness_doc_begin(client_t *c, const Passerelle__UploadBeginRequest *req,
                        uint32_t *chunk_max);

/* upload.chunk of len bytes at data, at offset; returns the session's
 * received. */
uint64_t harness_doc_chunk(client_t *c, const char *upload, uint64_t offset, const void *data,
                           size_t len);

/* Sends [offset, offset + len) of data (data[0] being the upload's first
 * byte) in chunks of HARNESS_DOC_CHUNK, at least one (an empty one for
 * len 0). With strict, checks after each chunk that received is its end;
 * without, the upload may already hold more (a resumed upload). Returns the
 * last chunk's received. */
uint64_t harness_doc_send_range(client_t *c, const char *upload, const void *data, uint64_t offset,
                                uint64_t len, bool strict);

/* upload.commit: checks and returns the document's id (an 'F' id,
 * malloc'd). */
char *harness_doc_commit(client_t *c, const char *upload);

/* A whole upload of len bytes: sets req's size and, for the call, its
 * sha256 (written into sha when not NULL; req->sha256 is put back after),
 * begins, sends strictly, commits; returns the document's id (malloc'd). */
char *harness_doc_put(client_t *c, Passerelle__UploadBeginRequest *req, const void *data,
                      size_t len, char sha[65]);

/* document.read of id, expecting status: version 0 leaves it unset (the
 * latest), length 0 too (the service's default); the offset is always sent.
 * Returns the reply (caller frees with passerelle__reply__free_unpacked). */
Passerelle__Reply *harness_doc_read_call(client_t *c, const char *id, uint32_t version,
                                         uint64_t offset, uint32_t length, int status);

/* The same, expecting OK; returns the unpacked read reply (caller frees with
 * passerelle__document_read_reply__free_unpacked). */
Passerelle__DocumentReadReply *harness_doc_read(client_t *c, const char *id, uint32_t version,
                                                uint64_t offset, uint32_t length);

/* Reads a version (0: the latest) whole, HARNESS_DOC_CHUNK at a time,
 * hashing as it comes, and checking each reply's offset; calls on_chunk(arg)
 * after each non-empty chunk when not NULL. Returns the bytes read and
 * writes their SHA-256 into sha. */
uint64_t harness_doc_read_all(client_t *c, const char *id, uint32_t version, char sha[65],
                              void (*on_chunk)(void *arg), void *arg);

/* docs.fsck by c (an operations party); caller frees with
 * passerelle__fsck_reply__free_unpacked. */
Passerelle__FsckReply *harness_doc_fsck(client_t *c);

/* The path of a blob (suffix "") or of its block list (".blocks") on the
 * volume. */
void harness_doc_blob_path(const char *volume, const char *sha, const char *suffix, char *out,
                           size_t size);

/* Writes a well-formed one-block blob of len bytes (the bytes and their
 * block list) on the volume, as if uploaded, no version referring to it;
 * its SHA-256 into sha. */
void harness_doc_plant_blob(const char *volume, const void *bytes, size_t len, char sha[65]);

/* --- helper processes: sinks, subscribers ---------------------------------- */

typedef struct {
    pid_t pid;
    char url[128]; /* from its "listening on <url>" line */
    int port;
    char stdout_path[512];
} harness_proc_t;

/* Starts a tool of the build tree (e.g. "tools/passerelle-sink") with args
 * (NULL-terminated, without argv[0]), its stdout and stderr in
 * dir/<tag>.out. With wait_listening, waits (up to 10 s) for its first
 * "listening on <url>" line and reads the url and port. 0 or -1. */
int harness_proc_start(harness_proc_t *proc, const char *tool, const char *dir, const char *tag,
                       const char *const *args, bool wait_listening);
/* Sends sig, waits; returns the wait status (-1 if not running). */
int harness_proc_stop(harness_proc_t *proc, int sig);

/* The JSON lines of a file as an array (each line parsed; unparsable lines
 * skipped); an empty array if the file does not exist. Caller decrefs. */
json_t *harness_jsonl_read(const char *path);

/* Polls harness_jsonl_read(path) until it has at least count lines, up to
 * timeout_ms. Returns the array (caller decrefs) whatever its size. */
json_t *harness_jsonl_wait(const char *path, size_t count, int timeout_ms);

/* --- notifications ----------------------------------------------------------- */

/* Starts the notifications service beside the stack's (same Redis, keys),
 * logging in the stack's folder, for tests: webhooks allowed to 127.0.0.1,
 * the feed on a port of its own, the retry clock 1000 times faster,
 * attempts timing out after 2 s; extra_env (may be NULL) comes after and
 * may change any of it. 0 or -1. */
int harness_notify_start(const harness_stack_t *stack, harness_service_t *service,
                         char *const extra_env[]);

/* A client of it with the named key (caller destroys). */
client_t *harness_notify_client(const harness_stack_t *stack, const harness_service_t *service,
                                const char *name);

/* Creates a webhook subscription to url for the comma-separated types and
 * territories ("" for none), expecting OK; writes its id (ID_LEN) and
 * secret (128 bytes) when not NULL. */
void harness_notify_webhook(client_t *client, const char *url, const char *types,
                            const char *territories, char *id, char *secret);

/* Registers a private unit in commune with this reference and envisages its
 * convention (LOC2), through the stack's client (a register keeper);
 * writes the unit id (ID_LEN). */
void harness_envisaged_unit(client_t *client, const char *external_ref, const char *commune,
                            char *unit_id);

/* A webhook sink (tools/passerelle-sink) verifying with secret (NULL: none),
 * in mode, writing its JSON lines to dir/<tag>.jsonl (out_path, 512 bytes)
 * and reading its mode from dir/<tag>.mode when that file exists. */
int harness_sink_start(harness_proc_t *sink, const char *dir, const char *tag, const char *secret,
                       const char *mode, char *out_path);
/* Writes the mode file of a sink started by harness_sink_start. */
void harness_sink_mode(const char *dir, const char *tag, const char *mode);

/* --- notifications: restarts and fault checks ----------------------------- */

/* Starts the notifications service again after a stop, on the port its
 * requests were served on before, with harness_notify_start's test settings
 * and extra_env (pass the same as at the start: a fixed
 * PASSERELLE_FEED_ENDPOINT keeps the feed where its subscribers look). A
 * port still held by the dead process is tried again for a while. 0 or -1. */
int harness_notify_restart(const harness_stack_t *stack, harness_service_t *service,
                           char *const extra_env[]);

/* True if a service's log holds a sanitizer's report (ASan, UBSan, LSan):
 * a run under PASSERELLE_SANITIZE=ON must leave none. The report's first
 * line goes to stderr. */
bool harness_log_has_sanitizer_report(const char *log_path);

/* The attempts log of a subscription, latest first, up to 1000, expecting
 * OK (caller frees with passerelle__attempt_list__free_unpacked). */
Passerelle__AttemptList *harness_notify_attempts(client_t *client, const char *sub_id);

/* --- indicators -------------------------------------------------------------- */

/* Starts the indicators service beside the stack's (same Redis, keys),
 * logging in the stack's folder, with extra_env (may be NULL) as in
 * harness_service_start. 0 or -1. */
int harness_indicators_start(const harness_stack_t *stack, harness_service_t *service,
                             char *const extra_env[]);

/* A client of it with the named key, the stack client's timeout and
 * retries (caller destroys); NULL on failure. */
client_t *harness_indicators_client(const harness_stack_t *stack, const harness_service_t *service,
                                    const char *name);

/* The fixture the indicators engine tests share: a stack (Redis, the
 * reservations service and its client with ADMIN's key), the
 * indicators service beside it, an ADMIN and a PARTNER client of it, and
 * the test's own connection to Redis. It comes first in a test's fixture,
 * as the stack does in harness_fixture_setup's. */
typedef struct {
    harness_stack_t stack;
    harness_service_t indicators;
    client_t *admin;   /* of the indicators service */
    client_t *partner; /* of the indicators service */
    store_t *store;
} harness_indicators_t;

/* cmocka setup of such a fixture (a zeroed struct of `size` bytes in
 * *state), the indicators service started with extra_env (may be NULL);
 * 0 or -1. The teardown stops what runs, failing when a service did not
 * stop cleanly or left a sanitizer report. */
int harness_indicators_setup(void **state, size_t size, const char *tag, char *const extra_env[]);
int harness_indicators_teardown(void **state);

/* The generation indicators:current names (0 when unset). */
uint64_t harness_indicators_generation(store_t *store);

/* A counter field of the current generation: the hash
 * indicators:g<gen>:<suffix> ("c:units.registered:all:all"), field ("*",
 * "stock=PRIVATE"); 0 when absent. */
long long harness_indicators_counter(store_t *store, const char *suffix, const char *field);

/* Polls harness_indicators_counter until it is want; fails the test,
 * with both values, if it is not within timeout_ms. */
void harness_indicators_expect_counter(store_t *store, const char *suffix, const char *field,
                                       long long want, int timeout_ms);

/* Polls until the "indicators" consumer group has read stream to its end
 * and holds nothing pending (what a killed reader held is taken over after
 * a few seconds); fails the test past timeout_ms. */
void harness_indicators_wait_caught_up(store_t *store, const char *stream, int timeout_ms);

/* Every counter field of generation gen, zeros left out, as
 * {suffix: {field: value}} (caller decrefs). */
json_t *harness_indicators_counters(store_t *store, uint64_t gen);

/* Fails the test, naming the first differences on stderr, unless a and b
 * (as harness_indicators_counters makes them) are equal; what says which
 * two they are. */
void harness_indicators_expect_same_counters(json_t *a, json_t *b, const char *what);

/* Polls until no key matches the pattern (SCAN); fails the test, saying
 * how many are left, past timeout_ms. */
void harness_store_expect_no_keys(store_t *store, const char *pattern, int timeout_ms);

/* indicator.rebuild or indicator.rebuild_status (type) by client, which
 * must answer status; the rebuild's status when OK (caller frees with
 * passerelle__rebuild_status__free_unpacked), NULL otherwise. The reply's
 * message into message (message_size bytes) when not NULL. */
Passerelle__RebuildStatus *harness_indicators_rebuild_call(client_t *client, const char *type,
                                                           int status, char *message,
                                                           size_t message_size);

/* Polls indicator.rebuild_status until the rebuild no longer runs, and
 * returns that status (caller frees); fails the test past timeout_ms. */
Passerelle__RebuildStatus *harness_indicators_rebuild_wait(client_t *client, int timeout_ms);

/* indicator.series by client, which must answer OK: indicator over the
 * periods of kind ("month", "year"...) from..to (NULL: the service's
 * default), in the scope territory or commune (both NULL: the Métropole),
 * narrowed by filter ("axis=VALUE"; NULL or "": none). Caller frees with
 * passerelle__series__free_unpacked. */
Passerelle__Series *harness_indicators_series(client_t *client, const char *indicator,
                                              const char *territory, const char *commune,
                                              const char *filter, const char *kind,
                                              const char *from, const char *to);

/* A row of Action Logement's demand figures: the period ("2026-04",
 * "2026-Q2", "2026"), territory and public (0: all publics together), the
 * line it came from (0: none), and the figures. The strings are the
 * caller's. */
Passerelle__DemandRow harness_demand_row(unsigned line, const char *period, const char *territory,
                                         int public_, unsigned requests, unsigned visale,
                                         unsigned loca_pass, unsigned mobility, unsigned other,
                                         unsigned housed);

#endif
