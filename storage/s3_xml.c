/* s3_xml.c - just enough XML to read S3 responses: find <Tag>text</Tag> and unescape the text.
 * S3 response bodies are flat, entity-escaped and never use CDATA for the fields we read. */
#include <stdlib.h>
#include <string.h>

#include "storage/storage_internal.h"

const char *lt_stg_xml_find(const char *p, const char *end, const char *tag, const char **text_end) {
    size_t tn = strlen(tag);
    while (p && p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) return NULL;
        const char *name = lt + 1;
        if ((size_t)(end - name) > tn && memcmp(name, tag, tn) == 0 && (name[tn] == '>' || name[tn] == ' ')) {
            const char *gt = memchr(name + tn, '>', (size_t)(end - (name + tn)));
            if (!gt) return NULL;
            if (gt[-1] == '/') { /* <Tag/>: empty */
                *text_end = gt + 1;
                return gt + 1;
            }
            const char *text = gt + 1;
            /* The closing tag: "</Tag>" */
            for (const char *q = text; q + tn + 3 <= end; q++) {
                q = memchr(q, '<', (size_t)(end - q));
                if (!q || q + tn + 3 > end) return NULL;
                if (q[1] == '/' && memcmp(q + 2, tag, tn) == 0 && q[2 + tn] == '>') {
                    *text_end = q;
                    return text;
                }
            }
            return NULL;
        }
        p = name;
    }
    return NULL;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends code point cp as UTF-8. */
static void put_utf8(lt_stg_buf *b, unsigned long cp, int *bad) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | ((cp >> 18) & 0x07));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (lt_stg_buf_add(b, u, n)) *bad = 1;
}

char *lt_stg_xml_text(const char *p, const char *end, const char *tag) {
    const char *te;
    const char *t = lt_stg_xml_find(p, end, tag, &te);
    if (!t) return NULL;
    lt_stg_buf b = {0};
    int bad = lt_stg_buf_add(&b, "", 0);
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    while (!bad && t < te) {
        if (*t != '&') {
            bad = lt_stg_buf_add(&b, t++, 1);
            continue;
        }
        int done = 0;
        for (size_t i = 0; i < sizeof ents / sizeof ents[0] && !done; i++) {
            size_t n = strlen(ents[i].ent);
            if ((size_t)(te - t) >= n && memcmp(t, ents[i].ent, n) == 0) {
                bad = lt_stg_buf_add(&b, &ents[i].c, 1);
                t += n;
                done = 1;
            }
        }
        if (!done && te - t > 3 && t[1] == '#') {
            const char *q = t + 2;
            int hex = *q == 'x' || *q == 'X';
            if (hex) q++;
            unsigned long cp = 0;
            int digits = 0;
            for (; q < te && *q != ';' && digits < 8; q++, digits++) {
                int v = hex ? hexval(*q) : (*q >= '0' && *q <= '9' ? *q - '0' : -1);
                if (v < 0) break;
                cp = cp * (hex ? 16 : 10) + (unsigned long)v;
            }
            if (q < te && *q == ';' && digits > 0 && cp > 0 && cp <= 0x10FFFF) {
                put_utf8(&b, cp, &bad);
                t = q + 1;
                done = 1;
            }
        }
        if (!done) bad = lt_stg_buf_add(&b, t++, 1);
    }
    if (bad) {
        lt_stg_buf_free(&b);
        return NULL;
    }
    return b.data;
}
