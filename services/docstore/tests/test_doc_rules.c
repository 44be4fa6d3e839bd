/* The document store's rules without sockets: every refusal of upload.begin
 * with the field it names, the SHA-256 a commit checks (the begin's or a
 * trailing one), the next-chunk rule, who sees and who changes a
 * document, which version a read means, and the words of a title. */
#include "doc_rules.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define SHA_OK "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void valid_request(Passerelle__UploadBeginRequest *req)
{
    static char *tags[] = {"logement", "emploi"};
    passerelle__upload_begin_request__init(req);
    req->title = "Diagnostic Emploi Logement 2026";
    req->has_kind = req->has_theme = req->has_size = true;
    req->kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_EMPLOYMENT_HOUSING_DIAGNOSTIC;
    req->theme = 2;
    req->territory = "CT1";
    req->tags = tags;
    req->n_tags = 2;
    req->size = 1000;
    req->sha256 = SHA_OK;
}

/* Refused with this status and field. */
static void expect_meta_refused(const Passerelle__UploadBeginRequest *req, status_t status,
                                const char *field)
{
    doc_error_t err;
    memset(&err, 0, sizeof err);
    assert_false(doc_metadata_valid(req, &err));
    assert_int_equal(err.status, status);
    assert_string_equal(err.field, field);
    assert_true(strstr(err.message, field) != NULL);
}

static void expect_upload_refused(const Passerelle__UploadBeginRequest *req, uint64_t max,
                                  status_t status, const char *field)
{
    doc_error_t err;
    memset(&err, 0, sizeof err);
    assert_false(doc_upload_valid(req, max, &err));
    assert_int_equal(err.status, status);
    assert_string_equal(err.field, field);
}

static void test_metadata(void **state)
{
    (void)state;
    Passerelle__UploadBeginRequest req;
    doc_error_t err;
    valid_request(&req);
    assert_true(doc_metadata_valid(&req, &err));
    req.territory = "";
    assert_true(doc_metadata_valid(&req, &err));
    req.territory = NULL;
    assert_true(doc_metadata_valid(&req, &err));

    valid_request(&req);
    req.title = NULL;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "title");
    req.title = "   ";
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "title");
    char long_title[DOC_TITLE_MAX + 2];
    memset(long_title, 'a', sizeof long_title - 1);
    long_title[sizeof long_title - 1] = '\0';
    req.title = long_title;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "title");
    long_title[DOC_TITLE_MAX] = '\0'; /* exactly 200: accepted */
    assert_true(doc_metadata_valid(&req, &err));
    /* 200 characters of two bytes each are 200 characters. */
    char accents[2 * DOC_TITLE_MAX + 1];
    for (int i = 0; i < DOC_TITLE_MAX; i++)
        memcpy(accents + 2 * i, "\xc3\xa9", 2);
    accents[2 * DOC_TITLE_MAX] = '\0';
    req.title = accents;
    assert_true(doc_metadata_valid(&req, &err));
    req.title = "tab\there";
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "title");

    valid_request(&req);
    req.has_kind = false;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "kind");
    req.has_kind = true;
    req.kind = (Passerelle__DocumentKind)42;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "kind");

    valid_request(&req);
    req.theme = 0;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "theme");
    req.theme = 4;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "theme");

    valid_request(&req);
    req.territory = "CT7";
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "territory");

    valid_request(&req);
    req.has_visibility = true;
    req.visibility = (Passerelle__Visibility)9;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "visibility");
    req.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    assert_true(doc_metadata_valid(&req, &err));

    valid_request(&req);
    char *many[DOC_TAGS_MAX + 1];
    for (int i = 0; i <= DOC_TAGS_MAX; i++)
        many[i] = "tag";
    req.tags = many;
    req.n_tags = DOC_TAGS_MAX + 1;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "tags");
    req.n_tags = DOC_TAGS_MAX;
    assert_true(doc_metadata_valid(&req, &err));
    char long_tag[DOC_TAG_MAX + 2];
    memset(long_tag, 't', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    many[3] = long_tag;
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "tags");
    many[3] = "";
    expect_meta_refused(&req, ST_INVALID_ARGUMENT, "tags");
}

static void test_upload(void **state)
{
    (void)state;
    Passerelle__UploadBeginRequest req;
    doc_error_t err;
    valid_request(&req);
    assert_true(doc_upload_valid(&req, 1000, &err));
    expect_upload_refused(&req, 999, ST_RESOURCE_EXHAUSTED, "size");
    req.has_size = false;
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "size");

    /* Without a SHA-256: an upload in chunks names it in its commit, a
     * whole document cannot. */
    valid_request(&req);
    req.sha256 = NULL;
    assert_true(doc_upload_valid(&req, 1000, &err));
    req.sha256 = " ";
    assert_true(doc_upload_valid(&req, 1000, &err));
    req.has_data = true;
    req.data.len = 0;
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "sha256");
    req.sha256 = NULL;
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "sha256");
    req.has_data = false;
    req.sha256 = "abc";
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "sha256");
    req.sha256 = "zf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "sha256");
    req.sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    assert_true(doc_upload_valid(&req, 1000, &err));
    char sha[65];
    assert_true(doc_sha_normalize(req.sha256, sha));
    assert_string_equal(sha, SHA_OK);

    valid_request(&req);
    req.filename = "line\nbreak.pdf";
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "filename");
    char long_type[DOC_MEDIA_TYPE_MAX + 2];
    memset(long_type, 'm', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    req.filename = "etude.pdf";
    req.media_type = long_type;
    expect_upload_refused(&req, 1000, ST_INVALID_ARGUMENT, "media_type");
}

static void expect_chunk_refused(uint64_t size, uint64_t received, uint64_t offset, size_t len,
                                 const char *field)
{
    doc_error_t err;
    memset(&err, 0, sizeof err);
    assert_int_equal(doc_chunk_check(size, received, offset, len, 100, &err), CHUNK_REFUSED);
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
}

static void test_chunks(void **state)
{
    (void)state;
    doc_error_t err;
    assert_int_equal(doc_chunk_check(250, 0, 0, 100, 100, &err), CHUNK_WRITE);
    assert_int_equal(doc_chunk_check(250, 100, 100, 100, 100, &err), CHUNK_WRITE);
    assert_int_equal(doc_chunk_check(250, 200, 200, 50, 100, &err), CHUNK_WRITE);
    /* A chunk sent again after a lost reply. */
    assert_int_equal(doc_chunk_check(250, 200, 100, 100, 100, &err), CHUNK_REPEAT);
    assert_int_equal(doc_chunk_check(250, 250, 200, 50, 100, &err), CHUNK_REPEAT);
    /* The empty upload's only chunk. */
    assert_int_equal(doc_chunk_check(0, 0, 0, 0, 100, &err), CHUNK_WRITE);

    expect_chunk_refused(250, 100, 150, 50, "offset"); /* a gap */
    expect_chunk_refused(250, 100, 50, 100, "offset"); /* overlaps the end */
    expect_chunk_refused(250, 0, 0, 101, "data");      /* too large */
    expect_chunk_refused(250, 200, 200, 60, "offset"); /* beyond the size */
    expect_chunk_refused(250, 0, 300, 0, "offset");
    expect_chunk_refused(250, 0, 0, 0, "data"); /* empty */
}

static Passerelle__DocumentVersion *make_versions(Passerelle__DocumentVersion v[3])
{
    for (int i = 0; i < 3; i++) {
        passerelle__document_version__init(&v[i]);
        v[i].has_number = true;
        v[i].number = (uint32_t)i + 1;
    }
    return v;
}

static void test_access_and_versions(void **state)
{
    (void)state;
    Passerelle__DocumentVersion v[3];
    Passerelle__DocumentVersion *vp[3] = {&v[0], &v[1], &v[2]};
    make_versions(v);
    Passerelle__Document doc = PASSERELLE__DOCUMENT__INIT;
    doc.id = "F01";
    doc.owner = "ACTION_LOGEMENT";
    doc.versions = vp;
    doc.n_versions = 3;

    doc.has_visibility = false; /* unset: SHARED */
    assert_true(doc_may_see(&doc, PARTY_METROPOLE));
    assert_true(doc_may_see(&doc, PARTY_PARTNER));
    assert_false(doc_may_see(&doc, PARTY_NONE));
    doc.has_visibility = true;
    doc.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    assert_false(doc_may_see(&doc, PARTY_METROPOLE));
    assert_false(doc_may_see(&doc, PARTY_OPERATOR));
    assert_true(doc_may_see(&doc, PARTY_ACTION_LOGEMENT));
    assert_true(doc_may_see(&doc, PARTY_ADMIN));

    assert_true(doc_may_change(&doc, PARTY_ACTION_LOGEMENT));
    assert_false(doc_may_change(&doc, PARTY_METROPOLE));
    assert_false(doc_may_change(&doc, PARTY_ADMIN));
    assert_false(doc_may_change(&doc, PARTY_NONE));

    size_t index = 99;
    doc_error_t err;
    assert_true(doc_version_pick(&doc, 0, false, &index, &err));
    assert_int_equal(index, 2);
    v[2].withdrawn = true;
    assert_true(doc_version_pick(&doc, 0, false, &index, &err));
    assert_int_equal(index, 1);
    assert_false(doc_version_pick(&doc, 3, false, &index, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "version");
    assert_true(strstr(err.message, "withdrawn") != NULL);
    assert_true(doc_version_pick(&doc, 3, true, &index, &err));
    assert_int_equal(index, 2);
    assert_false(doc_version_pick(&doc, 4, true, &index, &err));
    assert_int_equal(err.status, ST_NOT_FOUND);
    v[0].withdrawn = v[1].withdrawn = true;
    assert_false(doc_version_pick(&doc, 0, false, &index, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
}

static char seen_words[8][DOC_WORD_MAX];
static size_t seen_count;

static void note_word(void *arg, const char *word)
{
    (void)arg;
    if (seen_count < 8)
        strcpy(seen_words[seen_count++], word);
}

/* The SHA-256 a commit checks the bytes against: the begin's, the
 * commit's (a trailing checksum), both if the same, never neither. */
static void test_commit_sha(void **state)
{
    (void)state;
    static const char UPPER[] = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    static const char OTHER[] = "0000000000000000000000000000000000000000000000000000000000000001";
    char sha[65];
    doc_error_t err;
    assert_true(doc_commit_sha(SHA_OK, NULL, sha, &err));
    assert_string_equal(sha, SHA_OK);
    assert_true(doc_commit_sha(SHA_OK, "", sha, &err));
    assert_string_equal(sha, SHA_OK);
    assert_true(doc_commit_sha(SHA_OK, UPPER, sha, &err));
    assert_string_equal(sha, SHA_OK);
    memset(sha, 0, sizeof sha);
    assert_true(doc_commit_sha("", UPPER, sha, &err));
    assert_string_equal(sha, SHA_OK);
    assert_true(doc_commit_sha(NULL, SHA_OK, sha, &err));
    assert_string_equal(sha, SHA_OK);

    const char *refused[][2] = {
        {SHA_OK, OTHER}, /* not the begin's */
        {"", NULL},      /* named by neither */
        {NULL, "  "},    /* the same */
        {"", "abc"},     /* malformed */
        {SHA_OK, "xyz"}, /* malformed, whatever the begin's */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_false(doc_commit_sha(refused[i][0], refused[i][1], sha, &err));
        assert_int_equal(err.status, ST_INVALID_ARGUMENT);
        assert_string_equal(err.field, "sha256");
        assert_true(strstr(err.message, "sha256") != NULL);
    }
}

static void test_words(void **state)
{
    (void)state;
    seen_count = 0;
    size_t n = doc_words("Étude : l'Habitat à Marseille, habitat privé", note_word, NULL);
    assert_int_equal(n, 6);
    assert_int_equal(seen_count, 6);
    assert_string_equal(seen_words[0], "etude");
    assert_string_equal(seen_words[1], "l");
    assert_string_equal(seen_words[2], "habitat");
    assert_string_equal(seen_words[3], "a");
    assert_string_equal(seen_words[4], "marseille");
    assert_string_equal(seen_words[5], "prive");
    assert_int_equal(doc_words("", NULL, NULL), 0);
    assert_string_equal(doc_kind_name(PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY), "STUDY");
    assert_null(doc_kind_name(PASSERELLE__DOCUMENT_KIND__DOCUMENT_KIND_UNSPECIFIED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata), cmocka_unit_test(test_upload),
        cmocka_unit_test(test_chunks),   cmocka_unit_test(test_access_and_versions),
        cmocka_unit_test(test_words),    cmocka_unit_test(test_commit_sha),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
