/* JSON-lines logging: what reaches stderr is read back and parsed. */
#include "log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* stderr goes to a temporary file between capture_start and capture_end,
 * which returns everything written (caller frees). */
static int saved_stderr = -1;
static char capture_path[64];

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "/tmp/passerelle-log-XXXXXX");
    int fd = mkstemp(capture_path);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *f = fopen(capture_path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    size_t n = fread(text, 1, (size_t)size, f);
    text[n] = '\0';
    fclose(f);
    unlink(capture_path);
    return text;
}

/* The lines of text, each parsed; asserts each is one JSON object ending
 * in a newline. Returns a JSON array (caller decrefs). */
static json_t *parse_lines(const char *text)
{
    json_t *lines = json_array();
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t error;
        json_t *line = json_loadb(p, (size_t)(nl - p), 0, &error);
        if (!line)
            fail_msg("not JSON: %.*s (%s)", (int)(nl - p), p, error.text);
        assert_true(json_is_object(line));
        for (const char *c = p; c < nl; c++)
            assert_true((unsigned char)*c < 0x80); /* ASCII only */
        json_array_append_new(lines, line);
        p = nl + 1;
    }
    return lines;
}

/* capture_end, parsed into lines. */
static json_t *captured_lines(void)
{
    char *text = capture_end();
    json_t *lines = parse_lines(text);
    free(text);
    return lines;
}

static const char *get_string(const json_t *line, const char *key)
{
    return json_string_value(json_object_get(line, key));
}

static int setup(void **state)
{
    (void)state;
    unsetenv("PASSERELLE_LOG_LEVEL");
    log_init("test");
    log_set_level(LOG_LEVEL_INFO);
    return 0;
}

static void test_line_shape(void **state)
{
    (void)state;
    capture_start();
    log_info("listening", "{s:s, s:i, s:b}", "endpoint", "tcp://127.0.0.1:7401", "port", 7401,
             "secure", 1);
    log_error("plain", NULL);
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), 2);
    json_t *line = json_array_get(lines, 0);
    assert_string_equal(get_string(line, "level"), "info");
    assert_string_equal(get_string(line, "service"), "test");
    assert_string_equal(get_string(line, "msg"), "listening");
    assert_string_equal(get_string(line, "endpoint"), "tcp://127.0.0.1:7401");
    assert_int_equal(json_integer_value(json_object_get(line, "port")), 7401);
    assert_true(json_is_true(json_object_get(line, "secure")));
    const char *time = get_string(line, "time");
    assert_non_null(time);
    assert_int_equal(strlen(time), 24);
    assert_int_equal(time[10], 'T');
    assert_int_equal(time[23], 'Z');
    line = json_array_get(lines, 1);
    assert_string_equal(get_string(line, "level"), "error");
    assert_int_equal(json_object_size(line), 4);
    json_decref(lines);
}

static void test_threshold(void **state)
{
    (void)state;
    capture_start();
    log_debug("hidden", NULL);
    log_info("shown", NULL);
    log_set_level(LOG_LEVEL_WARN);
    log_info("hidden", NULL);
    log_warn("shown", NULL);
    log_emit((log_level_t)7, "out of range", NULL);
    log_set_level(LOG_LEVEL_DEBUG);
    log_debug("shown", NULL);
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(get_string(json_array_get(lines, i), "msg"), "shown");
    assert_string_equal(get_string(json_array_get(lines, 1), "level"), "warn");
    assert_string_equal(get_string(json_array_get(lines, 2), "level"), "debug");
    json_decref(lines);

    log_set_level(LOG_LEVEL_ERROR);
    assert_false(log_enabled(LOG_LEVEL_WARN));
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    log_set_level(LOG_LEVEL_DEBUG);
    assert_true(log_enabled(LOG_LEVEL_DEBUG));
}

static void test_init_reads_level(void **state)
{
    (void)state;
    setenv("PASSERELLE_LOG_LEVEL", "WARN", 1);
    log_init("reservations");
    assert_false(log_enabled(LOG_LEVEL_INFO));
    assert_true(log_enabled(LOG_LEVEL_WARN));
    setenv("PASSERELLE_LOG_LEVEL", "debug", 1);
    log_init(NULL); /* keeps the service name */
    assert_true(log_enabled(LOG_LEVEL_DEBUG));

    /* An unknown level is reported, and the previous threshold kept. */
    log_set_level(LOG_LEVEL_INFO);
    setenv("PASSERELLE_LOG_LEVEL", "verbose", 1);
    capture_start();
    log_init("reservations");
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), 1);
    json_t *line = json_array_get(lines, 0);
    assert_string_equal(get_string(line, "level"), "warn");
    assert_string_equal(get_string(line, "service"), "reservations");
    assert_string_equal(get_string(line, "value"), "verbose");
    assert_true(log_enabled(LOG_LEVEL_INFO));
    assert_false(log_enabled(LOG_LEVEL_DEBUG));
    json_decref(lines);
    unsetenv("PASSERELLE_LOG_LEVEL");

    /* A long service name is cut, not overflowed. */
    char long_name[200];
    memset(long_name, 's', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    log_init(long_name);
    capture_start();
    log_info("x", NULL);
    lines = captured_lines();
    assert_true(strlen(get_string(json_array_get(lines, 0), "service")) < sizeof long_name - 1);
    json_decref(lines);
}

static void test_escaping_and_bad_formats(void **state)
{
    (void)state;
    capture_start();
    log_info("quote \" backslash \\ newline \n tab \t Étang", "{s:s}", "commune",
             "Berre-l'\xC3\x89tang");
    log_info("bad format", "{s:s", "key", "value");
    log_info(NULL, NULL);
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), 3);
    assert_string_equal(get_string(json_array_get(lines, 0), "msg"),
                        "quote \" backslash \\ newline \n tab \t Étang");
    assert_string_equal(get_string(json_array_get(lines, 0), "commune"), "Berre-l'\xC3\x89tang");
    json_t *bad = json_array_get(lines, 1);
    assert_string_equal(get_string(bad, "msg"), "bad format");
    assert_non_null(get_string(bad, "log_format_error"));
    assert_string_equal(get_string(json_array_get(lines, 2), "msg"), "");
    json_decref(lines);
}

/* A caller cannot hide or forge the standard keys, and a message that is
 * not UTF-8 still makes a line. */
static void test_standard_keys_hold(void **state)
{
    (void)state;
    capture_start();
    log_info("real", "{s:s, s:s, s:s}", "level", "debug", "msg", "forged", "service", "other");
    log_info("bad \xff bytes", NULL);
    log_info("not an object", "[i]", 1);
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), 3);
    json_t *line = json_array_get(lines, 0);
    assert_string_equal(get_string(line, "level"), "info");
    assert_string_equal(get_string(line, "msg"), "real");
    assert_string_equal(get_string(line, "service"), "test");
    assert_non_null(get_string(json_array_get(lines, 1), "msg"));
    assert_string_equal(get_string(json_array_get(lines, 2), "log_format_error"),
                        "fields are not an object");
    json_decref(lines);
}

/* Many lines from several processes sharing stderr come out whole. */
static void test_lines_do_not_interleave(void **state)
{
    (void)state;
    capture_start();
    enum { CHILDREN = 4, LINES = 50 };
    for (int c = 0; c < CHILDREN; c++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char padding[2000];
            memset(padding, 'a' + c, sizeof padding - 1);
            padding[sizeof padding - 1] = '\0';
            for (int i = 0; i < LINES; i++)
                log_info("concurrent", "{s:i, s:s}", "child", c, "padding", padding);
            _exit(0);
        }
    }
    for (int c = 0; c < CHILDREN; c++)
        wait(NULL);
    json_t *lines = captured_lines();
    assert_int_equal(json_array_size(lines), CHILDREN * LINES);
    json_decref(lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_line_shape, setup),
        cmocka_unit_test_setup(test_threshold, setup),
        cmocka_unit_test_setup(test_init_reads_level, setup),
        cmocka_unit_test_setup(test_escaping_and_bad_formats, setup),
        cmocka_unit_test_setup(test_lines_do_not_interleave, setup),
        cmocka_unit_test_setup(test_standard_keys_hold, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
