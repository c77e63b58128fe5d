/*
 * config_int.h — what the files of core/config share and nobody else sees:
 * the schema's field type, the parse context, and the parser's entry points
 * (config_parse.c) that config.c's loading calls. Not for outside this folder.
 */
#ifndef PH_CONFIG_INT_H
#define PH_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "base/status.h"
#include "config/config.h"

#define NELEM(a)          (sizeof(a) / sizeof((a)[0]))
#define MEMBER_SIZE(T, m) sizeof(((T *)0)->m)
#define MIB               (1024 * 1024)
#define IDENT_MAX         64         /* sku, supplier id, client name, brand, tag... */
#define SETTING_KEY_MAX   128        /* plugin config keys */
#define MAX_FIELDS        24         /* keys in one mapping of the schema */
#define FILE_MAX          (64 * MIB) /* a larger "config" is a mistake (or /dev/zero) */
#define SHOWN_MAX         48         /* bytes of a bad value quoted back in a message */

enum kind {
    K_STR,     /* char *; non-empty unless F_EMPTY_OK */
    K_IDENT,   /* char *; ph_ident_valid(s, IDENT_MAX) */
    K_INT,     /* integer in [min, max] as written; the member holds value * scale */
    K_BOOL,    /* int 0/1: true/false, yes/no */
    K_ENUM,    /* int: values[i] for choices[i] */
    K_MONEY,   /* int64_t fen, from "30", "30.00", 19.8 */
    K_SHA256,  /* uint8_t[32] from 64 hex digits */
    K_SCOPES,  /* unsigned: OR of values[i] over a non-empty list of choices */
    K_TAGS,    /* char ** at off, size_t count at off2: a list of identifiers */
    K_KV,      /* ph_kv * at off, size_t count at off2: flat mapping of scalars */
    K_SECTION, /* a nested mapping whose keys fill members of the same struct */
    K_LIST,    /* a list of mappings: `size`-byte structs at off, count at off2 */
    K_RULE,    /* char *: a look-alike rule, kept canonical (crypto/code.h) */
    K_UTCOFF,  /* int minutes east of UTC from "+08:00" / "-05:30" (-12:00..+14:00) */
};

/* F_TEXT_ITEMS: a K_TAGS list of non-empty strings rather than identifiers */
enum { F_REQUIRED = 1, F_EMPTY_OK = 2, F_TEXT_ITEMS = 4 };

typedef struct field {
    const char *name;
    enum kind kind;
    unsigned flags;
    size_t off, off2;
    size_t size;                /* K_INT: bytes of the member; K_LIST: bytes of an element */
    int64_t min, max, scale;    /* K_INT */
    const char *def;            /* default, as YAML scalar text; NULL: zero/NULL/empty */
    const char *const *choices; /* K_ENUM, K_SCOPES: NULL-terminated */
    const int *values;          /* K_ENUM, K_SCOPES: one per choice */
    const struct field *sub;    /* K_SECTION, K_LIST */
    size_t nsub;
    const char *unique;      /* K_LIST: sub-field that must differ between elements */
    const char *unique_what; /* ... and how to call it in the message */
} field;

typedef struct ctx {
    yaml_document_t *doc;
    const char *name; /* file name for messages */
    ph_err *err;
    char path[256]; /* "products[3].offers[0].cost": where the walk is */
    size_t plen;
} ctx;

/* The delivery kinds' names and values (config.c), NULL-terminated names. */
extern const char *const cfg_delivery_names[];
extern const int cfg_delivery_values[];

/* ---- the parser (config_parse.c), for the loading in config.c ---- */
/* Each push returns the previous length, for path_pop. */
size_t cfg_path_push(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "file:line:col: path: what". libyaml counts from 0; editors and humans from 1. */
int cfg_fail(ctx *c, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cfg_oom(ctx *c);
/* Keeps in *best the candidate closest to key, if close enough to be a typo. */
void cfg_hint_consider(const char *key, const char *cand, const char **best, size_t *bestd);
yaml_node_t *cfg_seq_item(ctx *c, const yaml_node_t *n, size_t i);
/* 1 for YAML's null (an empty plain value, "~", "null"): a key given as null is absent. */
int cfg_node_null(const yaml_node_t *n);
/* The value under key in a mapping, or NULL. Keys are unique once parsed. */
yaml_node_t *cfg_map_find(ctx *c, const yaml_node_t *map, const char *key);
/* Fills obj from a mapping node: every key must be declared in tab and appear
 * once; absent keys take their default or, if required, fail at the mapping. */
int cfg_parse_object(ctx *c, const field *tab, size_t n, const yaml_node_t *node, void *obj);
void cfg_free_fields(const field *tab, size_t n, void *obj);

#endif
