/* bench_privacy.c — what sealing personal data (ADR 027) adds to a
 * registration and to an order placement, against the work those paths did
 * before it, measured in one run on one nats-server this program starts.
 *
 * Registration before ADR 027: the Argon2id hash of the password (Orion's
 * parameters, gw_password_options_init) and one append of UserRegistered
 * (es_append with ExpectNoMessage on a fresh subject). After: the same, plus a
 * new data key stored in the keystore (ks_key_create: one JetStream publish
 * of the wrapped key, expecting no message on its subject), the blind index
 * of the email and three seals (email, name, password hash).
 *
 * Order placement before: one append of OrderPlaced (es_append). After: the
 * same, plus the customer's sealed email opened and sealed again for the new
 * event (ks_open_token and ks_seal with the key cached, as the gateway does
 * for a customer it served within the cache's minute).
 *
 * Each figure is the median of 5 rounds of n sequential operations, wall time
 * per operation; the process's CPU per operation (getrusage) and the
 * nats-server's (from /proc) over the same rounds. The last lines are a
 * markdown table for bench/RESULTS.md.
 *
 * usage: bench_privacy [n]   placements a round (default 1000); registrations
 *                             a round: n / 50 (each hashes at Argon2id's
 *                             interactive cost, about 50-100 ms of CPU) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>

#include "bench_common.h"
#include "envelope.h"
#include "evstore.h"
#include "gw_password.h"
#include "keystore.h"
#include "mpack.h"
#include "natsd.h"

#define ROUNDS 5

typedef struct bench {
	es_store *store;
	ks_store *keys;
	natsd *server;
	mp_writer *w, *payload;
	gw_password_options pw;
	uint64_t counter;
	char kid[PD_KID_MAX];     /* a customer's key, cached by the keystore */
	char token[PD_TOKEN_MAX]; /* their email, sealed for an earlier event */
} bench;

typedef struct figures {
	double wall_us, cpu_us, nats_us; /* per operation, medians of the rounds */
} figures;

typedef orn_rc op_fn(bench *b, bool sealed);

static double process_cpu_s(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
	       (double)u.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One commit of one event of type with payload bytes of filler, appended to a
 * fresh aggregate of kind (as a first event: ExpectNoMessage). */
static orn_rc append_first(bench *b, const char *aggregate, const char *type, size_t payload_len)
{
	char id[48], msg_id[52], filler[2048];
	env_envelope e;
	memset(&e, 0, sizeof e);
	size_t fill = payload_len < sizeof filler ? payload_len : sizeof filler - 1;
	memset(filler, 'x', fill);
	filler[fill] = '\0';
	mp_writer_reset(b->payload);
	mp_write_cstr(b->payload, filler); /* one msgpack value of the event's size */
	snprintf(id, sizeof id, "b%016" PRIx64 "%08x", ++b->counter, (unsigned)getpid());
	snprintf(msg_id, sizeof msg_id, "m-%s", id);
	snprintf(e.type, sizeof e.type, "%s", type);
	snprintf(e.causation, sizeof e.causation, "%s", msg_id);
	e.schema = 1;
	e.time_ms = 1;
	e.payload = mp_writer_data(b->payload);
	e.payload_len = mp_writer_size(b->payload);
	mp_writer_reset(b->w);
	env_commit_begin(b->w, 1);
	orn_rc rc = env_encode(b->w, &e);
	es_position at = {0, 0};
	es_append_result r;
	if (rc == ORN_OK)
		rc = es_append(b->store, aggregate, id, &at, msg_id, mp_writer_data(b->w),
		               mp_writer_size(b->w), &r);
	return rc;
}

/* A registration: the hash and the append; sealed: the key, the index and three seals too. */
static orn_rc registration(bench *b, bool sealed)
{
	char hash[GW_PASSWORD_HASH_MAX], kid[PD_KID_MAX], index[PD_INDEX_MAX], event_id[48];
	static char tokens[3][PD_TOKEN_MAX];
	uint8_t key[PD_KEY_BYTES];
	orn_rc rc = gw_password_hash(&b->pw, "Velvet-canyon-94", hash);
	size_t payload = 180; /* a clear UserRegistered: id, email, name, hash, role */
	if (rc == ORN_OK && sealed) {
		snprintf(event_id, sizeof event_id, "reg-%" PRIu64, b->counter);
		ks_blind_index(b->keys, "ada.lovelace@example.com", index);
		rc = ks_key_create(b->keys, kid, key);
		sodium_memzero(key, sizeof key);
		if (rc == ORN_OK)
			rc = ks_seal(b->keys, kid, "email", event_id, "ada.lovelace@example.com", tokens[0],
			             sizeof tokens[0]);
		if (rc == ORN_OK)
			rc = ks_seal(b->keys, kid, "name", event_id, "Ada Lovelace", tokens[1],
			             sizeof tokens[1]);
		if (rc == ORN_OK)
			rc = ks_seal(b->keys, kid, "password_hash", event_id, hash, tokens[2],
			             sizeof tokens[2]);
		payload = 60 + strlen(tokens[0]) + strlen(tokens[1]) + strlen(tokens[2]) + PD_KID_LEN;
	}
	return rc == ORN_OK ? append_first(b, "bench_user", "UserRegistered", payload) : rc;
}

/* A placement's append; sealed: the customer's email opened and sealed again for the event. */
static orn_rc placement(bench *b, bool sealed)
{
	char email[256], event_id[48];
	static char token[PD_TOKEN_MAX];
	size_t payload = 420; /* a clear OrderPlaced of 3 lines */
	orn_rc rc = ORN_OK;
	if (sealed) {
		snprintf(event_id, sizeof event_id, "place-%" PRIu64, b->counter);
		rc = ks_open_token(b->keys, b->token, "customer_email", NULL, email, sizeof email);
		if (rc == ORN_OK)
			rc = ks_seal(b->keys, b->kid, "customer_email", event_id, email, token, sizeof token);
		sodium_memzero(email, sizeof email);
		payload += strlen(token) - strlen("ada.lovelace@example.com");
	}
	return rc == ORN_OK ? append_first(b, "bench_order", "OrderPlaced", payload) : rc;
}

/* The parts alone (sealed: unused): one seal, one open (key cached), one blind index, one new key. */
static orn_rc seal_one(bench *b, bool sealed)
{
	static char token[PD_TOKEN_MAX];
	(void)sealed;
	return ks_seal(b->keys, b->kid, "customer_email", "place-1", "ada.lovelace@example.com", token,
	               sizeof token);
}

static orn_rc open_one(bench *b, bool sealed)
{
	char email[256];
	(void)sealed;
	return ks_open_token(b->keys, b->token, "customer_email", NULL, email, sizeof email);
}

static orn_rc index_one(bench *b, bool sealed)
{
	char index[PD_INDEX_MAX];
	(void)sealed;
	ks_blind_index(b->keys, "ada.lovelace@example.com", index);
	return ORN_OK;
}

static orn_rc key_one(bench *b, bool sealed)
{
	char kid[PD_KID_MAX];
	uint8_t key[PD_KEY_BYTES];
	(void)sealed;
	orn_rc rc = ks_key_create(b->keys, kid, key);
	sodium_memzero(key, sizeof key);
	return rc;
}

static figures measure(bench *b, op_fn *op, bool sealed, int n)
{
	double wall[ROUNDS], cpu[ROUNDS], nats[ROUNDS];
	for (int r = 0; r < ROUNDS; r++) {
		double c0 = process_cpu_s(), n0 = bench_proc_cpu_s(natsd_pid(b->server));
		int64_t t0 = bench_now_ns();
		for (int i = 0; i < n; i++) {
			orn_rc rc = op(b, sealed);
			if (rc != ORN_OK) {
				fprintf(stderr, "bench_privacy: an operation failed: %s\n", orn_strerror(rc));
				exit(1);
			}
		}
		wall[r] = (double)(bench_now_ns() - t0) / 1e3 / n;
		cpu[r] = (process_cpu_s() - c0) * 1e6 / n;
		nats[r] = (bench_proc_cpu_s(natsd_pid(b->server)) - n0) * 1e6 / n;
	}
	qsort(wall, ROUNDS, sizeof *wall, cmp_double);
	qsort(cpu, ROUNDS, sizeof *cpu, cmp_double);
	qsort(nats, ROUNDS, sizeof *nats, cmp_double);
	return (figures){wall[ROUNDS / 2], cpu[ROUNDS / 2], nats[ROUNDS / 2]};
}

static void row(const char *what, figures before, figures after)
{
	printf("| %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %+.1f %% | %+.1f %% |\n", what,
	       before.wall_us, before.cpu_us, before.nats_us, after.wall_us, after.cpu_us, after.nats_us,
	       (after.wall_us / before.wall_us - 1) * 100,
	       ((after.cpu_us + after.nats_us) / (before.cpu_us + before.nats_us) - 1) * 100);
}

int main(int argc, char **argv)
{
	long n = 1000;
	char dir[] = "/tmp/orion-bench-privacy-XXXXXX";
	if ((argc > 1 && !bench_parse_long(argv[1], 1, 100000, &n)) || sodium_init() < 0 ||
	    mkdtemp(dir) == NULL) {
		fprintf(stderr, "usage: bench_privacy [n]\n");
		return 2;
	}
	bench b = {.w = mp_writer_create(), .payload = mp_writer_create()};
	gw_password_options_init(&b.pw);
	natsd_options no;
	natsd_options_init(&no);
	no.store_dir = dir;
	es_options eo;
	es_options_init(&eo);
	ks_options ko;
	ks_options_init(&ko);
	uint8_t master[PD_KEY_BYTES], key[PD_KEY_BYTES];
	randombytes_buf(master, sizeof master);
	int status = 1;
	if (natsd_start(&no, &b.server) != ORN_OK)
		goto done;
	eo.url = natsd_url(b.server);
	if (es_store_open(&eo, &b.store) != ORN_OK || ks_open(b.store, master, &ko, &b.keys) != ORN_OK ||
	    ks_key_create(b.keys, b.kid, key) != ORN_OK ||
	    ks_seal(b.keys, b.kid, "customer_email", "earlier", "ada.lovelace@example.com", b.token,
	            sizeof b.token) != ORN_OK) {
		fprintf(stderr, "bench_privacy: cannot set up the store and the keystore\n");
		goto done;
	}
	/* warm up: the streams, the key cache, the allocator */
	measure(&b, placement, true, 20);
	int reg_n = (int)(n / 50 > 0 ? n / 50 : 1); /* registrations hash: fewer of them */
	figures reg_before = measure(&b, registration, false, reg_n);
	figures reg_after = measure(&b, registration, true, reg_n);
	figures place_before = measure(&b, placement, false, (int)n);
	figures place_after = measure(&b, placement, true, (int)n);
	printf("\n%d rounds each, medians; registrations %d a round, placements %ld a round\n\n", ROUNDS,
	       reg_n, n);
	printf("| operation | before ADR 027: wall / CPU orion / CPU nats-server, µs per op | after | wall "
	       "| CPU (both) |\n");
	printf("|---|---|---|---:|---:|\n");
	row("registration (hash + append; + key, index, 3 seals)", reg_before, reg_after);
	row("order placement (append; + open and seal the email)", place_before, place_after);
	const struct {
		const char *name;
		op_fn *op;
		int n;
	} parts[] = {{"ks_seal (a 24-byte email)", seal_one, (int)n * 10},
	             {"ks_open_token (key cached)", open_one, (int)n * 10},
	             {"ks_blind_index", index_one, (int)n * 10},
	             {"ks_key_create (a JetStream publish, acknowledged)", key_one,
	              (int)n / 5 > 0 ? (int)n / 5 : 1}};
	printf("\n| part | wall µs per op | CPU orion µs | CPU nats-server µs |\n|---|---:|---:|---:|\n");
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		figures f = measure(&b, parts[i].op, true, parts[i].n);
		printf("| %s | %.1f | %.1f | %.1f |\n", parts[i].name, f.wall_us, f.cpu_us, f.nats_us);
	}
	status = 0;
done:
	sodium_memzero(master, sizeof master);
	sodium_memzero(key, sizeof key);
	ks_close(b.keys);
	es_store_close(b.store);
	natsd_stop(b.server);
	bench_rmrf(dir);
	mp_writer_destroy(b.w);
	mp_writer_destroy(b.payload);
	return status;
}
