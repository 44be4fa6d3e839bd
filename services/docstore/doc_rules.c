/* The document store's rules (doc_rules.h): pure, no I/O. */
#include "doc_rules.h"

#include "refdata.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool doc_fail(doc_error_t *err, status_t status, const char *field, const char *format, ...)
{
    err->status = status;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, format);
    vsnprintf(err->message, sizeof err->message, format, ap);
    va_end(ap);
    return false;
}

/* Characters (UTF-8 code points) of s. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

static bool text_blank(const char *s)
{
    if (!s)
        return true;
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

static bool text_clean(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            return false;
    return true;
}

/* A short free text: optional, at most max characters, no control one. */
static bool short_text_valid(const char *text, const char *field, size_t max, doc_error_t *err)
{
    if (!text)
        return true;
    if (!text_clean(text))
        return doc_fail(err, ST_INVALID_ARGUMENT, field, "%s contains a control character", field);
    if (utf8_chars(text) > max)
        return doc_fail(err, ST_INVALID_ARGUMENT, field, "%s is longer than %zu characters", field,
                        max);
    return true;
}

bool doc_metadata_valid(const Passerelle__UploadBeginRequest *req, doc_error_t *err)
{
    if (text_blank(req->title))
        return doc_fail(err, ST_INVALID_ARGUMENT, "title", "title is required");
    if (!short_text_valid(req->title, "title", DOC_TITLE_MAX, err))
        return false;
    if (!req->has_kind || !doc_kind_name(req->kind))
        return doc_fail(err, ST_INVALID_ARGUMENT, "kind",
                        "kind is required: STUDY, EMPLOYMENT_HOUSING_DIAGNOSTIC, CONVENTION, "
                        "AMENDMENT, MINUTES, ANNUAL_REVIEW, BROCHURE or OTHER");
    if (!req->has_theme || req->theme < 1 || req->theme > 3)
        return doc_fail(err, ST_INVALID_ARGUMENT, "theme",
                        "theme is required: the convention's theme 1, 2 or 3");
    if (req->territory && req->territory[0] && !refdata_is_territory(req->territory))
        return doc_fail(err, ST_INVALID_ARGUMENT, "territory",
                        "territory '%.20s' is not CT1..CT6 (leave it empty for the whole "
                        "Métropole)",
                        req->territory);
    if (req->has_visibility && req->visibility != PASSERELLE__VISIBILITY__VISIBILITY_UNSPECIFIED &&
        req->visibility != PASSERELLE__VISIBILITY__VISIBILITY_SHARED &&
        req->visibility != PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE)
        return doc_fail(err, ST_INVALID_ARGUMENT, "visibility",
                        "visibility must be SHARED or PRIVATE");
    if (req->n_tags > DOC_TAGS_MAX)
        return doc_fail(err, ST_INVALID_ARGUMENT, "tags", "at most %d tags, not %zu", DOC_TAGS_MAX,
                        req->n_tags);
    for (size_t i = 0; i < req->n_tags; i++) {
        if (text_blank(req->tags[i]))
            return doc_fail(err, ST_INVALID_ARGUMENT, "tags", "tags: tag %zu is empty", i + 1);
        if (!short_text_valid(req->tags[i], "tags", DOC_TAG_MAX, err))
            return false;
    }
    return true;
}

bool doc_sha_normalize(const char *text, char out[65])
{
    if (!text || strlen(text) != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)text[i]))
            return false;
        out[i] = (char)tolower((unsigned char)text[i]);
    }
    out[64] = '\0';
    return true;
}

bool doc_upload_valid(const Passerelle__UploadBeginRequest *req, uint64_t max_bytes,
                      doc_error_t *err)
{
    if (!req->has_size)
        return doc_fail(err, ST_INVALID_ARGUMENT, "size", "size is required (bytes)");
    if (req->size > max_bytes)
        return doc_fail(err, ST_RESOURCE_EXHAUSTED, "size",
                        "size %llu bytes is over the largest document accepted, %llu bytes",
                        (unsigned long long)req->size, (unsigned long long)max_bytes);
    char sha[65];
    if (text_blank(req->sha256)) {
        /* An upload in chunks may name it in its commit instead; a whole
         * document is stored by this request, so it names it here. */
        if (req->has_data)
            return doc_fail(err, ST_INVALID_ARGUMENT, "sha256",
                            "sha256 is required (64 hex digits) with the document's data");
    } else if (!doc_sha_normalize(req->sha256, sha)) {
        return doc_fail(err, ST_INVALID_ARGUMENT, "sha256", "sha256 is not 64 hex digits");
    }
    if (!short_text_valid(req->media_type, "media_type", DOC_MEDIA_TYPE_MAX, err) ||
        !short_text_valid(req->filename, "filename", DOC_FILENAME_MAX, err))
        return false;
    return true;
}

bool doc_commit_sha(const char *begun, const char *committed, char out[65], doc_error_t *err)
{
    char named[65];
    bool has_named = !text_blank(committed);
    if (has_named && !doc_sha_normalize(committed, named))
        return doc_fail(err, ST_INVALID_ARGUMENT, "sha256", "sha256 is not 64 hex digits");
    if (begun && begun[0]) {
        if (has_named && strcmp(named, begun) != 0)
            return doc_fail(err, ST_INVALID_ARGUMENT, "sha256",
                            "sha256 %.12s... is not the one the upload began with (%.12s...): "
                            "the commit may repeat it or leave it out",
                            named, begun);
        snprintf(out, 65, "%s", begun);
        return true;
    }
    if (!has_named)
        return doc_fail(err, ST_INVALID_ARGUMENT, "sha256",
                        "sha256 is required (64 hex digits): the upload began without one, so "
                        "its commit names it");
    memcpy(out, named, 65);
    return true;
}

Passerelle__Visibility doc_visibility(Passerelle__Visibility requested)
{
    return requested == PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE
               ? PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE
               : PASSERELLE__VISIBILITY__VISIBILITY_SHARED;
}

static bool owned_by(const Passerelle__Document *doc, party_t party)
{
    return doc->owner && party != PARTY_NONE && strcmp(doc->owner, party_name(party)) == 0;
}

bool doc_may_see(const Passerelle__Document *doc, party_t party)
{
    if (party == PARTY_NONE)
        return false;
    if (doc_visibility(doc->visibility) == PASSERELLE__VISIBILITY__VISIBILITY_SHARED)
        return true;
    return (party & PARTY_ADMIN) || owned_by(doc, party);
}

bool doc_may_change(const Passerelle__Document *doc, party_t party)
{
    return owned_by(doc, party);
}

chunk_verdict_t doc_chunk_check(uint64_t size, uint64_t received, uint64_t offset, size_t len,
                                size_t chunk_max, doc_error_t *err)
{
    if (len > chunk_max) {
        doc_fail(err, ST_INVALID_ARGUMENT, "data", "chunk of %zu bytes is over the largest, %zu",
                 len, chunk_max);
        return CHUNK_REFUSED;
    }
    if (offset > size || len > size - offset) {
        doc_fail(err, ST_INVALID_ARGUMENT, "offset",
                 "chunk [%llu, +%zu) goes beyond the upload's size, %llu bytes",
                 (unsigned long long)offset, len, (unsigned long long)size);
        return CHUNK_REFUSED;
    }
    if (len == 0 && size > 0) {
        doc_fail(err, ST_INVALID_ARGUMENT, "data", "chunk is empty");
        return CHUNK_REFUSED;
    }
    if (offset + len <= received && offset < received)
        return CHUNK_REPEAT;
    if (offset != received) {
        doc_fail(err, ST_INVALID_ARGUMENT, "offset",
                 "offset %llu is not the next one: %llu bytes received so far",
                 (unsigned long long)offset, (unsigned long long)received);
        return CHUNK_REFUSED;
    }
    return CHUNK_WRITE;
}

bool doc_version_pick(const Passerelle__Document *doc, uint32_t number, bool allow_withdrawn,
                      size_t *index, doc_error_t *err)
{
    if (number == 0) {
        for (size_t i = doc->n_versions; i-- > 0;)
            if (!doc->versions[i]->withdrawn) {
                *index = i;
                return true;
            }
        return doc_fail(err, allow_withdrawn ? ST_NOT_FOUND : ST_FAILED_PRECONDITION, "version",
                        "every version of document %s is withdrawn", doc->id);
    }
    for (size_t i = 0; i < doc->n_versions; i++)
        if (doc->versions[i]->number == number) {
            if (doc->versions[i]->withdrawn && !allow_withdrawn)
                return doc_fail(err, ST_FAILED_PRECONDITION, "version",
                                "version %u of document %s is withdrawn", number, doc->id);
            *index = i;
            return true;
        }
    return doc_fail(err, ST_NOT_FOUND, "version", "document %s has no version %u", doc->id, number);
}

size_t doc_words(const char *text, void (*fn)(void *arg, const char *word), void *arg)
{
    char folded[4 * DOC_TITLE_MAX + 8];
    refdata_fold_name(text ? text : "", folded, sizeof folded);
    /* Punctuation the name folding keeps is a separator between words. */
    for (char *p = folded; *p; p++)
        if (strchr(".,;:!?()[]{}\"/&+_«»", *p))
            *p = ' ';
    size_t count = 0;
    char *seen[DOC_TITLE_MAX];
    char *save = NULL;
    for (char *word = strtok_r(folded, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        if (strlen(word) >= DOC_WORD_MAX)
            word[DOC_WORD_MAX - 1] = '\0';
        bool repeated = false;
        for (size_t i = 0; i < count && !repeated; i++)
            repeated = strcmp(seen[i], word) == 0;
        if (repeated || count == DOC_TITLE_MAX)
            continue;
        seen[count++] = word;
        if (fn)
            fn(arg, word);
    }
    return count;
}

const char *doc_kind_name(Passerelle__DocumentKind kind)
{
    switch (kind) {
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY:
        return "STUDY";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_EMPLOYMENT_HOUSING_DIAGNOSTIC:
        return "EMPLOYMENT_HOUSING_DIAGNOSTIC";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_CONVENTION:
        return "CONVENTION";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_AMENDMENT:
        return "AMENDMENT";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_MINUTES:
        return "MINUTES";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_ANNUAL_REVIEW:
        return "ANNUAL_REVIEW";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_BROCHURE:
        return "BROCHURE";
    case PASSERELLE__DOCUMENT_KIND__DOCUMENT_OTHER:
        return "OTHER";
    default:
        return NULL;
    }
}
