/* The document store's rules, pure functions tested without sockets
 * (tests/test_doc_rules.c): what metadata a new document may carry, what an
 * upload may announce, which chunk comes next, who sees a document and who
 * changes it, which version a read or a withdrawal means, and the words a
 * title is found by. */
#ifndef DOCSTORE_DOC_RULES_H
#define DOCSTORE_DOC_RULES_H

#include "docstore.pb-c.h"
#include "identity.h"
#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DOC_TITLE_MAX      200 /* characters */
#define DOC_TAGS_MAX       20
#define DOC_TAG_MAX        40 /* characters */
#define DOC_MEDIA_TYPE_MAX 100
#define DOC_FILENAME_MAX   255
#define DOC_REASON_MAX     500
#define DOC_WORD_MAX       64 /* bytes of one folded word */

/* A refusal: the status, the field at fault ("" for none), the message. */
typedef struct {
    status_t status;
    char field[64];
    char message[256];
} doc_error_t;

/* Fills err and returns false, so that a rule reads
 * `return doc_fail(err, ST_INVALID_ARGUMENT, "title", ...)`. */
bool doc_fail(doc_error_t *err, status_t status, const char *field, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* The metadata of a new document in an upload.begin: title (1 to 200
 * characters, no control character), kind (one of DocumentKind), theme (1,
 * 2 or 3), territory (CT1..CT6, or empty: the whole Métropole), visibility
 * (unset means SHARED), tags (at most 20, each 1 to 40 characters). */
bool doc_metadata_valid(const Passerelle__UploadBeginRequest *req, doc_error_t *err);

/* What every upload.begin announces: size at most max_bytes
 * (RESOURCE_EXHAUSTED, field size), sha256 of 64 hex digits (either case)
 * when given, which it must be with data (a whole document: an upload in
 * chunks may name it in its commit instead), media_type and filename short
 * and clean. */
bool doc_upload_valid(const Passerelle__UploadBeginRequest *req, uint64_t max_bytes,
                      doc_error_t *err);

/* The hex SHA-256 in lower case into out (65 bytes); false if not 64 hex
 * digits. */
bool doc_sha_normalize(const char *text, char out[65]);

/* The SHA-256 an upload's bytes are checked against at its commit, into out
 * (lower case hex): begun, the one its begin named (lower case, "" or NULL
 * for none), or committed, the one its commit names (either case, NULL or
 * blank for none: a trailing checksum). One named by both must be the same;
 * one named by neither is refused. INVALID_ARGUMENT, field sha256, in
 * every refusal (malformed, different, missing). */
bool doc_commit_sha(const char *begun, const char *committed, char out[65], doc_error_t *err);

/* The visibility a request means: unset is SHARED. */
Passerelle__Visibility doc_visibility(Passerelle__Visibility requested);

/* Whether a caller of this party may see the document: SHARED ones all
 * parties, PRIVATE ones their owner party and ADMIN. */
bool doc_may_see(const Passerelle__Document *doc, party_t party);

/* Whether a caller of this party may add versions or withdraw them: the
 * owner party only. */
bool doc_may_change(const Passerelle__Document *doc, party_t party);

typedef enum {
    CHUNK_WRITE,   /* the next chunk: write it */
    CHUNK_REPEAT,  /* already received (a reply was lost): acknowledge only */
    CHUNK_REFUSED, /* err says why */
} chunk_verdict_t;

/* Which chunk this is for an upload of `size` bytes that has `received`
 * so far: offset must be received (or the chunk lie wholly before it: a
 * repeat), len at most chunk_max (field data) and offset + len at most size
 * (field offset); an empty chunk is refused unless the upload is empty. */
chunk_verdict_t doc_chunk_check(uint64_t size, uint64_t received, uint64_t offset, size_t len,
                                size_t chunk_max, doc_error_t *err);

/* The version a read or a withdrawal means: number (1-based) or, when 0,
 * the latest one not withdrawn. NOT_FOUND (field version) when there is no
 * such version; for a read (allow_withdrawn false), FAILED_PRECONDITION
 * "withdrawn" when the one named is. Its index in doc->versions into
 * *index. */
bool doc_version_pick(const Passerelle__Document *doc, uint32_t number, bool allow_withdrawn,
                      size_t *index, doc_error_t *err);

/* Calls fn for each distinct word of text folded as names are
 * (refdata_fold_name: lower case, no accents; separators split words).
 * Returns how many words. */
size_t doc_words(const char *text, void (*fn)(void *arg, const char *word), void *arg);

/* The DocumentKind as text ("STUDY"...), for index keys; NULL if unknown. */
const char *doc_kind_name(Passerelle__DocumentKind kind);

#endif
