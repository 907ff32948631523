/* migration.c — personal fields of events written before ADR 027 sealed
 * for a copy of the log (migration.h, ADR 032). */
#include "migration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "evstore.h"
#include "hashmap.h"
#include "order.h"
#include "user.h"

#define KIND_MAX  33
#define PAIRS_MAX 64 /* keys of one payload map we rewrite */

/* An account on the public subject of ADR 005. */
typedef struct account {
	char old_id[PD_INDEX_MAX];
	char new_id[PD_INDEX_MAX]; /* set by mg_place */
	char email[USER_EMAIL_MAX];
	char user_id[USER_ID_MAX];
	bool superseded;             /* by an account registered again since ADR 027 */
	char causation[ENV_ID_MAX];  /* its UserRegistered's id in the old log */
	char registered[ENV_ID_MAX]; /* and in the new one */
} account;

/* An order whose OrderPlaced held a clear email. */
typedef struct placed {
	char email[USER_EMAIL_MAX];
	char event[ENV_ID_MAX]; /* the OrderPlaced's id */
} placed;

struct mg_plan {
	ks_store *ks;
	hmap *accounts; /* old user id -> account */
	hmap *by_email; /* email -> account (borrowed from accounts) */
	hmap *orders;   /* order id -> placed */
	hmap *user_ids; /* every user id of the old log -> (void *)1 */
	hmap *kids;     /* blind index -> kid of the account registered there since ADR 027 (malloc'd) */
	mg_counts counts;
	env_envelope old_events[ENV_MAX_EVENTS], new_events[ENV_MAX_EVENTS];
	mp_writer *payload;
};

/* One key of a payload map and its value's bytes. */
typedef struct pair {
	const char *key;
	uint32_t key_len;
	const uint8_t *value;
	size_t value_len;
	const char *text; /* the value when it is a string */
	uint32_t text_len;
} pair;

orn_rc mg_create(ks_store *ks, mg_plan **out)
{
	mg_plan *p = calloc(1, sizeof *p);
	*out = NULL;
	if (p == NULL)
		return ORN_ENOMEM;
	p->ks = ks;
	p->accounts = hmap_create();
	p->by_email = hmap_create();
	p->orders = hmap_create();
	p->user_ids = hmap_create();
	p->kids = hmap_create();
	p->payload = mp_writer_create();
	if (p->accounts == NULL || p->by_email == NULL || p->orders == NULL || p->user_ids == NULL ||
	    p->kids == NULL || p->payload == NULL) {
		mg_destroy(p);
		return ORN_ENOMEM;
	}
	*out = p;
	return ORN_OK;
}

static void free_values(hmap *m)
{
	size_t cursor = 0;
	const char *key;
	void *value;
	while (m != NULL && hmap_next(m, &cursor, &key, &value))
		free(value);
	hmap_destroy(m);
}

void mg_destroy(mg_plan *p)
{
	if (p == NULL)
		return;
	free_values(p->accounts);
	hmap_destroy(p->by_email);
	free_values(p->orders);
	hmap_destroy(p->user_ids);
	free_values(p->kids);
	mp_writer_destroy(p->payload);
	sodium_memzero(p, sizeof *p);
	free(p);
}

const mg_counts *mg_counts_of(const mg_plan *p)
{
	return &p->counts;
}

bool mg_needed(const mg_plan *p)
{
	return p->counts.accounts > 0 || p->counts.clear_fields > 0;
}

/* The aggregate kind and id of "orion.evt.<kind>.<id>". */
static bool split_subject(const char *subject, char kind[KIND_MAX], char id[ES_ID_MAX + 1])
{
	size_t prefix = strlen(ES_EVT_PREFIX);
	if (strncmp(subject, ES_EVT_PREFIX, prefix) != 0 || subject[prefix] != '.')
		return false;
	const char *k = subject + prefix + 1, *dot = strchr(k, '.');
	if (dot == NULL || (size_t)(dot - k) >= KIND_MAX || strlen(dot + 1) > ES_ID_MAX)
		return false;
	memcpy(kind, k, (size_t)(dot - k));
	kind[dot - k] = '\0';
	strcpy(id, dot + 1);
	return true;
}

/* The personal keys of a kind's payloads (NULL-ended), NULL for none. */
static const char *const *personal_keys(const char *kind)
{
	static const char *const user[] = {"email", "name", "password_hash", NULL};
	static const char *const order[] = {"customer_email", NULL};
	static const char *const mail[] = {"recipient", NULL};
	return strcmp(kind, "user") == 0    ? user
	       : strcmp(kind, "order") == 0 ? order
	       : strcmp(kind, "mail") == 0  ? mail
	                                    : NULL;
}

static bool is_personal(const char *const *keys, const char *key, uint32_t len)
{
	for (size_t i = 0; keys != NULL && keys[i] != NULL; i++)
		if (mp_str_eq(key, len, keys[i]))
			return true;
	return false;
}

/* Reads a payload map into pairs (at most PAIRS_MAX). */
static orn_rc read_pairs(const uint8_t *payload, size_t len, pair *pairs, uint32_t *count)
{
	mp_reader r;
	mp_reader_init(&r, payload, len);
	orn_rc rc = mp_read_map(&r, count);
	if (rc != ORN_OK || *count > PAIRS_MAX)
		return ORN_EDECODE;
	for (uint32_t i = 0; i < *count; i++) {
		pair *x = &pairs[i];
		memset(x, 0, sizeof *x);
		if ((rc = mp_read_str(&r, &x->key, &x->key_len)) != ORN_OK)
			return ORN_EDECODE;
		if (mp_peek(&r) == MP_STR) {
			mp_reader v = r;
			if (mp_read_str(&v, &x->text, &x->text_len) != ORN_OK)
				return ORN_EDECODE;
		}
		if ((rc = mp_read_raw(&r, &x->value, &x->value_len)) != ORN_OK)
			return ORN_EDECODE;
	}
	return ORN_OK;
}

/* The string value of key in pairs into out ("" if absent or not a string). */
static void pair_text(const pair *pairs, uint32_t count, const char *key, char *out, size_t cap)
{
	out[0] = '\0';
	for (uint32_t i = 0; i < count; i++)
		if (mp_str_eq(pairs[i].key, pairs[i].key_len, key) && pairs[i].text != NULL &&
		    pairs[i].text_len < cap) {
			memcpy(out, pairs[i].text, pairs[i].text_len);
			out[pairs[i].text_len] = '\0';
		}
}

static bool clear_text(const pair *x)
{
	char buf[PD_TOKEN_MAX];
	if (x->text == NULL || x->text_len >= sizeof buf)
		return x->text != NULL;
	memcpy(buf, x->text, x->text_len);
	buf[x->text_len] = '\0';
	return !pd_is_sealed(buf);
}

/* in with every occurrence of old replaced by new (same length: user ids). */
static void swap_id(const char *in, const char *old, const char *new_id, char out[ENV_ID_MAX])
{
	snprintf(out, ENV_ID_MAX, "%s", in);
	size_t n = strlen(old);
	if (n == 0 || n != strlen(new_id))
		return;
	for (char *at = strstr(out, old); at != NULL; at = strstr(at + n, old))
		memcpy(at, new_id, n);
}

/* An account registered since ADR 027 (on its blind index id): its kid,
 * which seals the fields of an older account of the same address too (one
 * key per customer: an erasure takes both). Nothing is opened: the old
 * account finds it by the blind index of its clear address. */
static orn_rc learn_kid(mg_plan *p, const char *id, const pair *pairs, uint32_t n)
{
	char *kid = malloc(PD_KID_MAX);
	orn_rc rc = kid == NULL ? ORN_ENOMEM : ORN_OK;
	if (rc == ORN_OK)
		pair_text(pairs, n, "kid", kid, PD_KID_MAX);
	if (rc == ORN_OK && pd_kid_valid(kid) && hmap_get(p->kids, id) == NULL &&
	    (rc = hmap_put(p->kids, id, kid)) == ORN_OK)
		kid = NULL;
	free(kid);
	return rc;
}

orn_rc mg_learn(mg_plan *p, const char *subject, bool valid, const env_envelope *events, size_t count)
{
	char kind[KIND_MAX], id[ES_ID_MAX + 1];
	pair pairs[PAIRS_MAX];
	uint32_t n = 0;
	orn_rc rc = ORN_OK;
	if (!split_subject(subject, kind, id))
		return ORN_OK;
	const char *const *keys = personal_keys(kind);
	if (keys == NULL)
		return ORN_OK;
	if (strcmp(kind, "user") == 0 && hmap_get(p->user_ids, id) == NULL &&
	    (rc = hmap_put(p->user_ids, id, (void *)1)) != ORN_OK)
		return rc;
	for (size_t e = 0; e < count; e++) {
		if ((rc = read_pairs(events[e].payload, events[e].payload_len, pairs, &n)) != ORN_OK)
			return rc;
		for (uint32_t i = 0; i < n; i++)
			if (is_personal(keys, pairs[i].key, pairs[i].key_len) && clear_text(&pairs[i]))
				p->counts.clear_fields++;
		char email[PD_TOKEN_MAX], key[USER_KEY_MAX];
		if (!valid)
			continue;
		if (strcmp(kind, "user") == 0 && strcmp(events[e].type, USER_EV_REGISTERED) == 0 &&
		    hmap_get(p->accounts, id) == NULL) {
			pair_text(pairs, n, "email", email, sizeof email);
			if (pd_is_sealed(email) && (rc = learn_kid(p, id, pairs, n)) != ORN_OK)
				return rc;
			if (email[0] == '\0' || pd_is_sealed(email) ||
			    user_key_for_email(email, key, sizeof key) != ORN_OK || strcmp(key, id) != 0)
				continue; /* sealed already, or not on its public hash: it stays */
			account *a = calloc(1, sizeof *a);
			if (a == NULL)
				return ORN_ENOMEM;
			snprintf(a->email, sizeof a->email, "%.254s", email);
			snprintf(a->old_id, sizeof a->old_id, "%.33s", id);
			pair_text(pairs, n, "user_id", a->user_id, sizeof a->user_id);
			snprintf(a->causation, sizeof a->causation, "%s", events[e].causation);
			if ((rc = hmap_put(p->accounts, id, a)) != ORN_OK) {
				free(a);
				return rc;
			}
			if (hmap_get(p->by_email, email) == NULL &&
			    (rc = hmap_put(p->by_email, email, a)) != ORN_OK)
				return rc;
			p->counts.accounts++;
		} else if (strcmp(kind, "order") == 0 && strcmp(events[e].type, ORDER_EV_PLACED) == 0 &&
		           hmap_get(p->orders, id) == NULL) {
			pair_text(pairs, n, "customer_email", email, sizeof email);
			if (email[0] == '\0' || pd_is_sealed(email))
				continue;
			placed *o = calloc(1, sizeof *o);
			if (o == NULL)
				return ORN_ENOMEM;
			snprintf(o->email, sizeof o->email, "%.254s", email);
			snprintf(o->event, sizeof o->event, "%s", events[e].causation);
			if ((rc = hmap_put(p->orders, id, o)) != ORN_OK) {
				free(o);
				return rc;
			}
		}
	}
	return ORN_OK;
}

/* The id of an account superseded by one registered again since ADR 027:
 * pseudonymous like the blind index (keyed with the index key), apart from
 * it (a space never stands in a normalized address). */
static void superseded_id(mg_plan *p, const char *email, char out[PD_INDEX_MAX])
{
	char name[USER_EMAIL_MAX + 16];
	snprintf(name, sizeof name, "%s superseded", email);
	ks_blind_index(p->ks, name, out);
	sodium_memzero(name, sizeof name);
}

void mg_place(mg_plan *p)
{
	size_t cursor = 0;
	const char *old_id;
	void *value;
	while (hmap_next(p->accounts, &cursor, &old_id, &value)) {
		account *a = value;
		ks_blind_index(p->ks, a->email, a->new_id);
		if (hmap_get(p->user_ids, a->new_id) != NULL) {
			superseded_id(p, a->email, a->new_id);
			a->superseded = true;
			p->counts.superseded++;
		}
		swap_id(a->causation, a->old_id, a->new_id, a->registered);
	}
}

bool mg_next_superseded(const mg_plan *p, size_t *cursor, const char **user_id)
{
	const char *old_id;
	void *value;
	while (hmap_next(p->accounts, cursor, &old_id, &value)) {
		const account *a = value;
		if (a->superseded) {
			*user_id = a->user_id;
			return true;
		}
	}
	return false;
}

orn_rc mg_subject(const mg_plan *p, const char *subject, char *out, size_t cap)
{
	char kind[KIND_MAX], id[ES_ID_MAX + 1];
	const account *a = NULL;
	if (split_subject(subject, kind, id) && strcmp(kind, "user") == 0)
		a = hmap_get(p->accounts, id);
	int n = a != NULL ? snprintf(out, cap, "%s.user.%s", ES_EVT_PREFIX, a->new_id)
	                  : snprintf(out, cap, "%s", subject);
	return n >= 0 && (size_t)n < cap ? ORN_OK : ORN_ETOOBIG;
}

/* How a personal field of an event is sealed and opened: its data key's
 * name (the customer's email), the field name of the associated data and
 * the event it is bound to (NULL when opening: a recipient is bound to its
 * order's or account's event, not to the mail log's). */
typedef struct binding {
	const char *owner;
	const char *field;
	char key[32]; /* the payload key, the field of user and order tokens */
	const char *event;
	bool own_event; /* bound to the event that holds it */
} binding;

static void bind_field(const mg_plan *p, const char *kind, const char *user_id, const env_envelope *e,
                       const pair *pairs, uint32_t n, const pair *x, const char *clear, binding *b)
{
	snprintf(b->key, sizeof b->key, "%.*s", (int)x->key_len, x->key);
	b->owner = clear;
	b->field = b->key;
	b->event = e->causation;
	b->own_event = true;
	if (strcmp(kind, "user") == 0 && !mp_str_eq(x->key, x->key_len, "email")) {
		const account *a = hmap_get(p->accounts, user_id);
		char email[USER_EMAIL_MAX];
		pair_text(pairs, n, "email", email, sizeof email);
		b->owner = a != NULL ? a->email : email; /* the account's key seals its name and hash */
	} else if (strcmp(kind, "mail") == 0) {
		char order_id[ES_ID_MAX + 1];
		pair_text(pairs, n, "order_id", order_id, sizeof order_id);
		const placed *o = order_id[0] != '\0' ? hmap_get(p->orders, order_id) : NULL;
		const account *a = order_id[0] == '\0' ? hmap_get(p->by_email, clear) : NULL;
		b->field = order_id[0] != '\0' ? "customer_email" : "email";
		b->own_event = false;
		if (o != NULL)
			b->event = o->event;
		else if (a != NULL)
			b->event = a->registered;
	}
}

/* The data key of the customer of address owner: the key of its account
 * registered since ADR 027, else (none, or erased) ks_key_for's. */
static orn_rc owner_key(mg_plan *p, const char *owner, char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES])
{
	char index[PD_INDEX_MAX];
	ks_blind_index(p->ks, owner, index);
	const char *known = hmap_get(p->kids, index);
	orn_rc rc = ORN_ENOTFOUND;
	if (known != NULL) {
		snprintf(kid, PD_KID_MAX, "%s", known);
		rc = ks_key_get(p->ks, kid, key);
	}
	return rc == ORN_ENOTFOUND ? ks_key_for(p->ks, owner, kid, key) : rc;
}

/* Writes one payload map with its clear personal fields sealed (and a
 * UserRegistered's kid) into w; *sealed counts them. */
static orn_rc rewrite_payload(mg_plan *p, const char *kind, const char *user_id, const env_envelope *e,
                              mp_writer *w, unsigned *sealed)
{
	pair pairs[PAIRS_MAX];
	uint32_t n = 0;
	char kid[PD_KID_MAX] = "", clear[PD_PLAIN_MAX + 1], token[PD_TOKEN_MAX];
	uint8_t key[PD_KEY_BYTES];
	bool has_kid = false;
	const char *const *keys = personal_keys(kind);
	orn_rc rc = read_pairs(e->payload, e->payload_len, pairs, &n);
	if (rc != ORN_OK)
		return rc;
	for (uint32_t i = 0; i < n; i++)
		has_kid |= mp_str_eq(pairs[i].key, pairs[i].key_len, "kid");
	bool add_kid = strcmp(kind, "user") == 0 && strcmp(e->type, USER_EV_REGISTERED) == 0 && !has_kid;
	*sealed = 0;
	for (uint32_t i = 0; i < n && rc == ORN_OK; i++)
		*sealed += is_personal(keys, pairs[i].key, pairs[i].key_len) && clear_text(&pairs[i]);
	if (*sealed == 0)
		return ORN_OK;
	mp_write_map(w, n + (add_kid ? 1u : 0u));
	for (uint32_t i = 0; i < n && rc == ORN_OK; i++) {
		const pair *x = &pairs[i];
		mp_write_str(w, x->key, x->key_len);
		if (!is_personal(keys, x->key, x->key_len) || !clear_text(x) || x->text_len > PD_PLAIN_MAX) {
			if (x->text_len > PD_PLAIN_MAX)
				rc = ORN_EINVAL;
			mp_write_raw(w, x->value, x->value_len);
			continue;
		}
		memcpy(clear, x->text, x->text_len);
		clear[x->text_len] = '\0';
		binding b;
		bind_field(p, kind, user_id, e, pairs, n, x, clear, &b);
		if ((rc = owner_key(p, b.owner, kid, key)) == ORN_OK &&
		    (rc = pd_seal(key, kid, b.field, b.event, clear, x->text_len, token, sizeof token)) ==
		            ORN_OK) {
			mp_write_cstr(w, token);
			p->counts.sealed_fields++;
		}
		sodium_memzero(key, sizeof key);
		sodium_memzero(clear, sizeof clear);
	}
	if (add_kid && rc == ORN_OK) {
		mp_write_cstr(w, "kid");
		mp_write_cstr(w, kid);
	}
	return rc == ORN_OK ? mp_writer_status(w) : rc;
}

orn_rc mg_rewrite(mg_plan *p, const char *subject, const uint8_t *data, size_t len, mp_writer *w,
                  bool *changed)
{
	char kind[KIND_MAX] = "", id[ES_ID_MAX + 1] = "";
	size_t count = 0;
	*changed = false;
	orn_rc rc = env_decode_commit(data, len, p->old_events, ENV_MAX_EVENTS, &count);
	if (rc != ORN_OK)
		return rc;
	split_subject(subject, kind, id);
	const char *const *keys = personal_keys(kind);
	const account *a = strcmp(kind, "user") == 0 ? hmap_get(p->accounts, id) : NULL;
	bool any = a != NULL;
	mp_writer_reset(w);
	env_commit_begin(w, (uint32_t)count);
	for (size_t i = 0; i < count && rc == ORN_OK; i++) {
		env_envelope e = p->old_events[i];
		unsigned sealed = 0;
		if (a != NULL) {
			swap_id(p->old_events[i].correlation, id, a->new_id, e.correlation);
			swap_id(p->old_events[i].causation, id, a->new_id, e.causation);
		}
		mp_writer_reset(p->payload);
		if (keys != NULL && (rc = rewrite_payload(p, kind, id, &e, p->payload, &sealed)) != ORN_OK)
			break;
		if (sealed > 0) {
			e.payload = mp_writer_data(p->payload);
			e.payload_len = mp_writer_size(p->payload);
			any = true;
		}
		rc = env_encode(w, &e);
	}
	if (rc == ORN_OK && (rc = mp_writer_status(w)) == ORN_OK && any) {
		*changed = true;
		p->counts.commits_changed++;
	}
	return rc;
}

/* Opens token as bound by b into out: what ks_open_token returns. */
static orn_rc open_bound(mg_plan *p, const char *token, const binding *b, char *out, size_t cap)
{
	return ks_open_token(p->ks, token, b->field, b->own_event ? b->event : NULL, out, cap);
}

static orn_rc differ(char why[MG_WHY_MAX], const char *subject, const char *type, const char *what)
{
	snprintf(why, MG_WHY_MAX, "%s %s: %s", subject, type, what);
	return ORN_ECONFLICT;
}

static orn_rc compare_payload(mg_plan *p, const char *kind, const char *user_id, const char *new_subject,
                              const env_envelope *o, const env_envelope *e, char why[MG_WHY_MAX])
{
	pair old_pairs[PAIRS_MAX], new_pairs[PAIRS_MAX];
	uint32_t on = 0, nn = 0;
	char text[PD_TOKEN_MAX], opened[PD_PLAIN_MAX + 1], clear[PD_PLAIN_MAX + 1], kid[PD_KID_MAX] = "";
	const char *const *keys = personal_keys(kind);
	if (keys == NULL)
		return o->payload_len == e->payload_len && memcmp(o->payload, e->payload, o->payload_len) == 0
		               ? ORN_OK
		               : differ(why, new_subject, e->type, "payload differs");
	if (read_pairs(o->payload, o->payload_len, old_pairs, &on) != ORN_OK ||
	    read_pairs(e->payload, e->payload_len, new_pairs, &nn) != ORN_OK)
		return ORN_EDECODE;
	if (nn != on && !(nn == on + 1 && strcmp(e->type, USER_EV_REGISTERED) == 0 &&
	                  mp_str_eq(new_pairs[on].key, new_pairs[on].key_len, "kid")))
		return differ(why, new_subject, e->type, "keys differ");
	for (uint32_t i = 0; i < on; i++) {
		const pair *x = &old_pairs[i], *y = &new_pairs[i];
		bool same = x->value_len == y->value_len && memcmp(x->value, y->value, x->value_len) == 0;
		if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0)
			return differ(why, new_subject, e->type, "keys differ");
		if (!is_personal(keys, x->key, x->key_len)) {
			if (!same)
				return differ(why, new_subject, e->type, "a value differs");
			continue;
		}
		if (clear_text(y))
			return differ(why, new_subject, e->type, "a clear personal field remains");
		if (same)
			continue; /* sealed before, copied as it was */
		if (!clear_text(x) || y->text == NULL || y->text_len >= sizeof text ||
		    x->text_len >= sizeof clear)
			return differ(why, new_subject, e->type, "a sealed field was changed");
		memcpy(text, y->text, y->text_len);
		text[y->text_len] = '\0';
		memcpy(clear, x->text, x->text_len);
		clear[x->text_len] = '\0';
		binding b;
		bind_field(p, kind, user_id, e, old_pairs, on, x, clear, &b);
		orn_rc rc = open_bound(p, text, &b, opened, sizeof opened);
		if (rc == ORN_EUNAVAILABLE || rc == ORN_ETIMEOUT)
			return rc;
		bool equal = rc == ORN_OK && strcmp(opened, clear) == 0;
		sodium_memzero(opened, sizeof opened);
		if (!equal)
			return differ(why, new_subject, e->type, "a token does not open to the old value");
		if (pd_token_kid(text, kid) != ORN_OK)
			return differ(why, new_subject, e->type, "a token has no kid");
	}
	if (nn == on + 1) {
		pair_text(new_pairs, nn, "kid", text, sizeof text);
		if (strcmp(text, kid) != 0)
			return differ(why, new_subject, e->type, "kid is not the key of its tokens");
	}
	sodium_memzero(clear, sizeof clear);
	return ORN_OK;
}

orn_rc mg_compare(mg_plan *p, const char *old_subject, const uint8_t *old, size_t old_len,
                  const char *new_subject, const uint8_t *new_data, size_t new_len, char why[MG_WHY_MAX])
{
	char kind[KIND_MAX] = "", id[ES_ID_MAX + 1] = "", expect[ES_SUBJECT_MAX], text[ENV_ID_MAX];
	size_t oc = 0, nc = 0;
	orn_rc rc;
	why[0] = '\0';
	if (env_decode_commit(old, old_len, p->old_events, ENV_MAX_EVENTS, &oc) != ORN_OK ||
	    env_decode_commit(new_data, new_len, p->new_events, ENV_MAX_EVENTS, &nc) != ORN_OK)
		return ORN_EDECODE;
	if ((rc = mg_subject(p, old_subject, expect, sizeof expect)) != ORN_OK)
		return rc;
	if (strcmp(expect, new_subject) != 0)
		return differ(why, new_subject, "", "not the subject planned");
	if (oc != nc)
		return differ(why, new_subject, "", "another number of events");
	split_subject(old_subject, kind, id);
	const account *a = strcmp(kind, "user") == 0 ? hmap_get(p->accounts, id) : NULL;
	for (size_t i = 0; i < oc; i++) {
		const env_envelope *o = &p->old_events[i], *e = &p->new_events[i];
		if (strcmp(o->type, e->type) != 0 || o->schema != e->schema || o->time_ms != e->time_ms ||
		    strcmp(o->actor, e->actor) != 0 || strcmp(o->request, e->request) != 0 ||
		    o->ttl_ms != e->ttl_ms)
			return differ(why, new_subject, e->type, "the envelope differs");
		swap_id(o->correlation, id, a != NULL ? a->new_id : id, text);
		if (strcmp(text, e->correlation) != 0)
			return differ(why, new_subject, e->type, "the correlation id differs");
		swap_id(o->causation, id, a != NULL ? a->new_id : id, text);
		if (strcmp(text, e->causation) != 0)
			return differ(why, new_subject, e->type, "the causation id differs");
		if ((rc = compare_payload(p, kind, id, new_subject, o, e, why)) != ORN_OK)
			return rc;
	}
	return ORN_OK;
}

orn_rc mg_check(mg_plan *p, const char *subject, const env_envelope *events, size_t count, uint64_t *erased,
                char why[MG_WHY_MAX])
{
	char kind[KIND_MAX], id[ES_ID_MAX + 1], text[PD_TOKEN_MAX], opened[PD_PLAIN_MAX + 1],
	        index[PD_INDEX_MAX];
	pair pairs[PAIRS_MAX];
	uint32_t n = 0;
	why[0] = '\0';
	if (!split_subject(subject, kind, id) || personal_keys(kind) == NULL)
		return ORN_OK;
	const char *const *keys = personal_keys(kind);
	for (size_t e = 0; e < count; e++) {
		if (read_pairs(events[e].payload, events[e].payload_len, pairs, &n) != ORN_OK)
			return ORN_EDECODE;
		for (uint32_t i = 0; i < n; i++) {
			const pair *x = &pairs[i];
			if (!is_personal(keys, x->key, x->key_len) || x->text == NULL)
				continue;
			if (clear_text(x))
				return differ(why, subject, events[e].type, "a clear personal field");
			memcpy(text, x->text, x->text_len);
			text[x->text_len] = '\0';
			binding b;
			bind_field(p, kind, id, &events[e], pairs, n, x, "", &b);
			orn_rc rc = open_bound(p, text, &b, opened, sizeof opened);
			if (rc == ORN_ENOTFOUND) {
				(*erased)++;
				continue;
			}
			if (rc == ORN_EUNAVAILABLE || rc == ORN_ETIMEOUT)
				return rc;
			if (rc != ORN_OK)
				return differ(why, subject, events[e].type, "a token does not open");
			if (strcmp(kind, "user") == 0 && mp_str_eq(x->key, x->key_len, "email") &&
			    strcmp(events[e].type, USER_EV_REGISTERED) == 0) {
				ks_blind_index(p->ks, opened, index);
				if (strcmp(index, id) != 0)
					superseded_id(p, opened, index);
				if (strcmp(index, id) != 0) {
					sodium_memzero(opened, sizeof opened);
					return differ(why, subject, events[e].type,
					              "the account is not on its blind index");
				}
			}
			sodium_memzero(opened, sizeof opened);
		}
	}
	return ORN_OK;
}
