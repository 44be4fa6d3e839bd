/* Configuration from the environment, and the status code names. */
#include "config.h"
#include "envelope.pb-c.h"
#include "log.h"
#include "status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VAR "PASSERELLE_TEST_CONFIG_VALUE"

/* Runs with stderr sent to a file; returns what was written (caller
 * frees), so that a refusal can be seen to name the variable. */
static int saved_stderr = -1;
static char capture_path[64];

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "/tmp/passerelle-config-XXXXXX");
    int fd = mkstemp(capture_path);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *f = fopen(capture_path, "r");
    assert_non_null(f);
    char *text = calloc(1, 8192);
    size_t n = fread(text, 1, 8191, f);
    text[n] = '\0';
    fclose(f);
    unlink(capture_path);
    return text;
}

static int setup(void **state)
{
    (void)state;
    unsetenv(VAR);
    log_set_level(LOG_LEVEL_INFO);
    return 0;
}

static void test_config_str(void **state)
{
    (void)state;
    assert_string_equal(config_str(VAR, "fallback"), "fallback");
    assert_null(config_str(VAR, NULL));
    setenv(VAR, "", 1);
    assert_string_equal(config_str(VAR, "fallback"), "fallback");
    setenv(VAR, "redis.internal", 1);
    assert_string_equal(config_str(VAR, "fallback"), "redis.internal");
}

static void test_config_int_accepts(void **state)
{
    (void)state;
    long out = -99;
    assert_true(config_int(VAR, 6379, 1, 65535, &out));
    assert_int_equal(out, 6379);
    setenv(VAR, "", 1);
    assert_true(config_int(VAR, 42, 1, 65535, &out));
    assert_int_equal(out, 42);
    setenv(VAR, "7401", 1);
    assert_true(config_int(VAR, 1, 1, 65535, &out));
    assert_int_equal(out, 7401);
    setenv(VAR, "1", 1);
    assert_true(config_int(VAR, 5, 1, 65535, &out)); /* bounds are inclusive */
    assert_int_equal(out, 1);
    setenv(VAR, "65535", 1);
    assert_true(config_int(VAR, 5, 1, 65535, &out));
    assert_int_equal(out, 65535);
    setenv(VAR, "-30", 1);
    assert_true(config_int(VAR, 5, -100, 100, &out));
    assert_int_equal(out, -30);
    setenv(VAR, "+30", 1);
    assert_true(config_int(VAR, 5, -100, 100, &out));
    assert_int_equal(out, 30);
}

static void test_config_int_refuses(void **state)
{
    (void)state;
    const char *bad[] = {"0",
                         "65536",
                         "abc",
                         "12x",
                         "12 ",
                         "1.5",
                         "0x10" /* decimal only */,
                         "99999999999999999999999",
                         "-",
                         "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long out = -99;
        setenv(VAR, bad[i], 1);
        capture_start();
        bool ok = config_int(VAR, 5, 1, 65535, &out);
        char *logged = capture_end();
        if (ok)
            fail_msg("accepted \"%s\" as %ld", bad[i], out);
        assert_int_equal(out, -99); /* untouched */
        assert_non_null(strstr(logged, VAR));
        assert_non_null(strstr(logged, "\"level\":\"error\""));
        free(logged);
    }
}

static void test_config_bool(void **state)
{
    (void)state;
    bool out = false;
    assert_true(config_bool(VAR, true, &out));
    assert_true(out);
    const char *yes[] = {"1", "true", "TRUE", "yes", "Yes", "on", "ON"};
    const char *no[] = {"0", "false", "False", "no", "NO", "off", "Off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        setenv(VAR, yes[i], 1);
        out = false;
        assert_true(config_bool(VAR, false, &out));
        assert_true(out);
        setenv(VAR, no[i], 1);
        assert_true(config_bool(VAR, true, &out));
        assert_false(out);
    }
    const char *bad[] = {"2", "y", "n", "enabled", "true ", "tru"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(VAR, bad[i], 1);
        out = true;
        capture_start();
        bool ok = config_bool(VAR, false, &out);
        char *logged = capture_end();
        if (ok)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(out);
        assert_non_null(strstr(logged, VAR));
        free(logged);
    }
}

/* The status numbers travel as the proto enum's: both must agree. */
static void test_status_matches_proto(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *desc = &passerelle__status__descriptor;
    assert_true(desc->n_values > 0);
    for (unsigned i = 0; i < desc->n_values; i++) {
        const char *proto_name = desc->values[i].name; /* "STATUS_NOT_FOUND" */
        assert_int_equal(strncmp(proto_name, "STATUS_", 7), 0);
        assert_string_equal(status_name(desc->values[i].value), proto_name + 7);
        assert_int_equal(status_parse(proto_name + 7), desc->values[i].value);
    }
    assert_int_equal(ST_CONFLICT, PASSERELLE__STATUS__STATUS_CONFLICT);
    assert_int_equal(ST_UNAUTHENTICATED, PASSERELLE__STATUS__STATUS_UNAUTHENTICATED);
    assert_int_equal(ST_DATA_LOSS, PASSERELLE__STATUS__STATUS_DATA_LOSS);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(status_name(ST_OK), "OK");
    assert_string_equal(status_name(ST_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    assert_string_equal(status_name(ST_FAILED_PRECONDITION), "FAILED_PRECONDITION");
    assert_string_equal(status_name(ST_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(status_name(1), "UNKNOWN");
    assert_string_equal(status_name(-1), "UNKNOWN");
    assert_string_equal(status_name(INT_MAX), "UNKNOWN");
    assert_int_equal(status_parse("not_found"), ST_NOT_FOUND);
    assert_int_equal(status_parse("Conflict"), ST_CONFLICT);
    assert_int_equal(status_parse("OK"), ST_OK);
    assert_int_equal(status_parse("UNKNOWN"), -1);
    assert_int_equal(status_parse(""), -1);
    assert_int_equal(status_parse("NOT FOUND"), -1);
    assert_int_equal(status_parse("STATUS_OK"), -1);
}

/* A secret from the variable itself, else from the file VAR_FILE names,
 * read once; an unreadable or empty file is refused, naming the variable. */
static void test_config_secret(void **state)
{
    (void)state;
    const char *value = "unset";
    unsetenv(VAR "_FILE");
    assert_true(config_secret(VAR, &value));
    assert_null(value);

    setenv(VAR, "direct", 1);
    assert_true(config_secret(VAR, &value));
    assert_string_equal(value, "direct");
    unsetenv(VAR);

    char path[64];
    snprintf(path, sizeof path, "/tmp/passerelle-secret-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);
    setenv(VAR "_FILE", path, 1);
    assert_true(config_secret(VAR, &value));
    assert_string_equal(value, "s3cret");
    /* Read once: the file changing or going does not change the answer. */
    unlink(path);
    assert_true(config_secret(VAR, &value));
    assert_string_equal(value, "s3cret");

    setenv("PASSERELLE_TEST_CONFIG_OTHER_FILE", "/nonexistent/secret", 1);
    capture_start();
    assert_false(config_secret("PASSERELLE_TEST_CONFIG_OTHER", &value));
    char *log = capture_end();
    assert_non_null(strstr(log, "PASSERELLE_TEST_CONFIG_OTHER_FILE"));
    free(log);

    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    setenv("PASSERELLE_TEST_CONFIG_OTHER_FILE", path, 1);
    capture_start();
    assert_false(config_secret("PASSERELLE_TEST_CONFIG_OTHER", &value));
    free(capture_end());
    unlink(path);
    unsetenv("PASSERELLE_TEST_CONFIG_OTHER_FILE");
    unsetenv(VAR "_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_str, setup),
        cmocka_unit_test_setup(test_config_int_accepts, setup),
        cmocka_unit_test_setup(test_config_int_refuses, setup),
        cmocka_unit_test_setup(test_config_bool, setup),
        cmocka_unit_test_setup(test_config_secret, setup),
        cmocka_unit_test(test_status_matches_proto),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
