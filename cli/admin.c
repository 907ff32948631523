/* admin.c — administration from the command line: accounts and the demo
 * catalog, sent as commands to the running actors (synchronous requests:
 * this is a CLI and start-up path, not the gateway's event loop).
 *
 * Every command id is derived from what it creates, so running any of this
 * twice is harmless: the actors answer "exists" (or the server de-duplicates),
 * which counts as done. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bus.h"
#include "admin.h"
#include "common.h"
#include "erasure.h"
#include "gw_password.h"
#include "log.h"
#include "product.h"
#include "sku.h"
#include "stock.h"
#include "user.h"

/* Encodes a payload with enc and sends it as command type to aggregate/id. */
static orn_rc send_command(es_store *store, const char *aggregate, const char *id, const char *type,
                           const mp_writer *payload, const char *command_id, bus_reply *out)
{
	env_envelope cmd;
	orn_rc rc = bus_command_init(&cmd, type, orn_now_ms(), command_id, NULL, "cli",
	                             mp_writer_data(payload), mp_writer_size(payload));
	if (rc == ORN_OK)
		rc = bus_send(store, aggregate, id, &cmd, 10000, out);
	return rc;
}

/* Accepted, or rejected because it already happened: both mean done. */
static bool done_or_exists(const bus_reply *r)
{
	return r->outcome == BUS_ACCEPTED || (r->outcome == BUS_REJECTED && strcmp(r->code, "exists") == 0);
}

/* Seals the clear fields of c with a new data key for the event command_id
 * (ADR 027); the key is stored first. */
static orn_rc seal_account(ks_store *keys, user_fields *f, const char *command_id)
{
	const char *names[] = {"email", "name", "password_hash"};
	char *values[] = {f->email, f->name, f->password_hash};
	uint8_t key[PD_KEY_BYTES];
	orn_rc rc = ks_key_create(keys, f->kid, key);
	for (size_t i = 0; rc == ORN_OK && i < ORN_ARRAY_LEN(values); i++) {
		char token[USER_SEALED_MAX];
		if ((rc = pd_seal(key, f->kid, names[i], command_id, values[i], strlen(values[i]), token,
		                  sizeof token)) == ORN_OK)
			memcpy(values[i], token, sizeof token);
	}
	sodium_memzero(key, sizeof key);
	return rc;
}

orn_rc cli_create_user(es_store *store, ks_store *keys, const char *email, const char *password,
                       const char *name, user_role role, bool *created)
{
	user_command c;
	char key[PD_INDEX_MAX], command_id[96], hash[GW_PASSWORD_HASH_MAX];
	unsigned char random_id[12];
	orn_rc rc;
	mp_writer *w = mp_writer_create();
	bus_reply r;
	memset(&c, 0, sizeof c);
	*created = false;
	if (w == NULL)
		return ORN_ENOMEM;
	if ((rc = user_email_normalize(email, c.fields.email, USER_EMAIL_MAX)) != ORN_OK)
		goto done;
	ks_blind_index(keys, c.fields.email, key);
	/* an account there already gets no new key (a restart's start-up admin) */
	er_account account;
	if ((rc = er_account_read(store, key, &account)) != ORN_OK)
		goto done;
	if (account.exists && account.erasure != USER_ERASED)
		goto done;
	gw_password_options po;
	gw_password_options_init(&po);
	if ((rc = gw_password_hash(&po, password, hash)) != ORN_OK)
		goto done;
	randombytes_buf(random_id, sizeof random_id);
	sodium_bin2hex(c.fields.user_id, sizeof c.fields.user_id, random_id, sizeof random_id);
	c.kind = USER_REGISTER;
	snprintf(c.fields.name, USER_NAME_MAX, "%s", name);
	snprintf(c.fields.password_hash, USER_PASSWORD_HASH_MAX, "%s", hash);
	c.fields.role = role;
	snprintf(command_id, sizeof command_id, "register:%s", key);
	if ((rc = seal_account(keys, &c.fields, command_id)) != ORN_OK ||
	    (rc = user_command_encode(w, &c)) != ORN_OK)
		goto done;
	if ((rc = send_command(store, USER_AGGREGATE, key, user_command_type(c.kind), w, command_id, &r)) !=
	    ORN_OK)
		goto done;
	if (!done_or_exists(&r)) {
		log_error("user not created", "code", r.code, "detail", r.detail);
		rc = ORN_EINVAL;
	}
	*created = r.outcome == BUS_ACCEPTED && !r.duplicate;
	bus_reply_dispose(&r);
done:
	sodium_memzero(hash, sizeof hash);
	sodium_memzero(&c, sizeof c);
	mp_writer_destroy(w);
	return rc;
}

/* One step of a product creation: encodes and sends, expects done_or_exists. */
static orn_rc product_step(es_store *store, const char *aggregate, const char *id, const char *type,
                           mp_writer *w, const char *product_id, const char *step)
{
	char command_id[160];
	bus_reply r;
	snprintf(command_id, sizeof command_id, "create-product:%s:%s", product_id, step);
	orn_rc rc = send_command(store, aggregate, id, type, w, command_id, &r);
	if (rc != ORN_OK)
		return rc;
	if (!done_or_exists(&r)) {
		log_error("product step refused", "product", product_id, "step", step, "code", r.code,
		          "detail", r.detail);
		rc = strcmp(r.code, "sku_taken") == 0 ? ORN_EEXISTS : ORN_EINVAL;
	}
	bus_reply_dispose(&r);
	return rc;
}

orn_rc cli_create_product(es_store *store, const char *product_id, const product_fields *fields,
                          int64_t initial_stock)
{
	char sku_key[80];
	orn_rc rc;
	mp_writer *w = mp_writer_create();
	if (w == NULL)
		return ORN_ENOMEM;
	if ((rc = sku_key_for(fields->sku, sku_key, sizeof sku_key)) != ORN_OK)
		goto done;
	/* 1. claim the sku: the event store makes it unique */
	sku_command claim = {.kind = SKU_CLAIM};
	snprintf(claim.product_id, sizeof claim.product_id, "%s", product_id);
	if ((rc = sku_command_encode(w, &claim)) != ORN_OK ||
	    (rc = product_step(store, SKU_AGGREGATE, sku_key, sku_command_type(SKU_CLAIM), w, product_id,
	                       "claim")) != ORN_OK)
		goto done;
	/* 2. the product */
	product_command create = {.kind = PRODUCT_CREATE, .fields = *fields};
	mp_writer_reset(w);
	if ((rc = product_command_encode(w, &create)) == ORN_OK)
		rc = product_step(store, PRODUCT_AGGREGATE, product_id, product_command_type(PRODUCT_CREATE),
		                  w, product_id, "create");
	if (rc != ORN_OK) {
		/* compensation: give the sku back */
		sku_command release = {.kind = SKU_RELEASE};
		snprintf(release.product_id, sizeof release.product_id, "%s", product_id);
		mp_writer_reset(w);
		if (sku_command_encode(w, &release) == ORN_OK)
			product_step(store, SKU_AGGREGATE, sku_key, sku_command_type(SKU_RELEASE), w,
			             product_id, "release");
		goto done;
	}
	/* 3. its stock item, under the same id */
	stock_command stock = {.kind = STOCK_CREATE, .quantity = initial_stock};
	mp_writer_reset(w);
	if ((rc = stock_command_encode(w, &stock)) == ORN_OK)
		rc = product_step(store, STOCK_AGGREGATE, product_id, stock_command_type(STOCK_CREATE), w,
		                  product_id, "stock");
done:
	mp_writer_destroy(w);
	return rc;
}

/* The demo catalog: six categories of six products. */
static const struct demo_product {
	const char *category, *name, *description;
	int64_t price_cents, stock;
} demo[] = {
        {"books", "The Pragmatic Shopkeeper", "A field guide to running a small online shop.", 2999, 40},
        {"books", "Event Sourcing in Practice", "Designing systems whose state is a log of facts.", 4599, 25},
        {"books", "C Interfaces and Implementations", "Techniques for creating reusable software.", 5450, 12},
        {"books", "The Art of the Queue", "Waiting lines, backpressure and fairness.", 1999, 60},
        {"books", "Cooking for Engineers", "Recipes written as precise procedures.", 3200, 30},
        {"books", "Night Sky Atlas", "Star charts for every season, spiral bound.", 2750, 8},
        {"coffee", "Ethiopia Yirgacheffe 250 g", "Washed, floral, bergamot and lemon.", 1450, 80},
        {"coffee", "Colombia Huila 250 g", "Caramel, red apple, medium body.", 1250, 100},
        {"coffee", "Espresso Blend 1 kg", "Chocolate and hazelnut, for milk drinks.", 3400, 45},
        {"coffee", "Decaf Peru 250 g", "Sugar-cane decaffeinated, cocoa and plum.", 1350, 35},
        {"coffee", "Pour-over Kettle", "Gooseneck kettle, 1 litre, stovetop.", 4500, 15},
        {"coffee", "Hand Grinder", "Conical steel burrs, 30 settings.", 8900, 10},
        {"audio", "Studio Headphones", "Closed-back, 50 mm drivers, detachable cable.", 12900, 20},
        {"audio", "Bluetooth Speaker", "Water resistant, 12 hours of play.", 5900, 40},
        {"audio", "USB Microphone", "Cardioid condenser with a desk stand.", 7900, 18},
        {"audio", "Turntable", "Belt drive, built-in preamp.", 24900, 6},
        {"audio", "Earbuds", "Noise cancelling, wireless charging case.", 9900, 50},
        {"audio", "Audio Cable 2 m", "3.5 mm to 3.5 mm, braided.", 900, 200},
        {"outdoor", "Trail Backpack 28 l", "Ventilated back panel, rain cover.", 8900, 22},
        {"outdoor", "Two-person Tent", "Freestanding, 2.1 kg, three seasons.", 19900, 9},
        {"outdoor", "Insulated Bottle", "750 ml, keeps cold for 24 hours.", 2900, 120},
        {"outdoor", "Headlamp", "350 lumens, rechargeable.", 3900, 55},
        {"outdoor", "Camp Stove", "Compact canister stove with igniter.", 4900, 14},
        {"outdoor", "Trekking Poles", "Carbon, folding, pair.", 7900, 16},
        {"kitchen", "Chef's Knife 20 cm", "Forged steel, full tang.", 8900, 25},
        {"kitchen", "Cast Iron Skillet", "26 cm, pre-seasoned.", 4500, 30},
        {"kitchen", "Cutting Board", "End-grain walnut, 40 x 30 cm.", 6900, 12},
        {"kitchen", "Digital Scale", "0.1 g resolution, 3 kg capacity.", 2900, 45},
        {"kitchen", "Dutch Oven", "Enamelled, 5.2 litres.", 15900, 7},
        {"kitchen", "Spice Set", "Twelve whole spices in glass jars.", 3900, 40},
        {"games", "Strategy Board Game", "Two to four players, about 90 minutes.", 4900, 20},
        {"games", "Puzzle 1000 Pieces", "A harbour at dusk.", 1900, 35},
        {"games", "Card Game", "Quick rounds for three to six players.", 1500, 70},
        {"games", "Chess Set", "Wooden board and weighted pieces.", 6900, 11},
        {"games", "Dice Tower", "Folding, with a tray.", 2500, 25},
        {"games", "Cooperative Game", "Everyone wins or loses together.", 3900, 18},
};

orn_rc cli_seed_demo(es_store *store, unsigned *count)
{
	*count = 0;
	for (size_t i = 0; i < ORN_ARRAY_LEN(demo); i++) {
		char product_id[32];
		product_fields f;
		memset(&f, 0, sizeof f);
		snprintf(product_id, sizeof product_id, "demo-%03zu", i + 1);
		snprintf(f.sku, sizeof f.sku, "DEMO-%s-%03zu", demo[i].category, i + 1);
		snprintf(f.name, sizeof f.name, "%s", demo[i].name);
		snprintf(f.description, sizeof f.description, "%s", demo[i].description);
		snprintf(f.currency, sizeof f.currency, "EUR");
		snprintf(f.category, sizeof f.category, "%s", demo[i].category);
		f.price_cents = demo[i].price_cents;
		orn_rc rc = cli_create_product(store, product_id, &f, demo[i].stock);
		if (rc != ORN_OK)
			return rc;
		(*count)++;
	}
	return ORN_OK;
}

static void admin_help(FILE *out)
{
	fprintf(out, "usage: orion admin <command> [options]\n\n"
	             "Administration through a running `orion serve` (ORION_NATS_URL, or the one\n"
	             "recorded in <data dir>/nats.url).\n\n"
	             "commands:\n"
	             "  create-user   register an account (an admin by default)\n"
	             "  set-role      make an account admin or customer (ADR 021)\n"
	             "  revoke-tokens end every token of an account (ADR 021)\n"
	             "  erase         erase a customer's personal data (ADR 027)\n\n"
	             "options:\n"
	             "  -h, --help    this text (orion admin COMMAND --help: the command's)\n");
}

static void create_user_help(FILE *out)
{
	fprintf(out, "usage: orion admin create-user --email EMAIL --password PASSWORD [--name NAME]\n"
	             "                               [--role admin|customer]\n\n"
	             "Registers an account with a running serve; an email registered already is\n"
	             "left as it is (\"exists:\"). Exit 0 done, 2 bad usage, 3 no service or refused.\n"
	             "  --email EMAIL        the login\n"
	             "  --password PASSWORD  at least 8 characters\n"
	             "  --name NAME          the display name (default Administrator)\n"
	             "  --role ROLE          admin (default) or customer\n"
	             "  -h, --help           this text\n");
}

static void account_help(FILE *out, const char *verb)
{
	if (strcmp(verb, "set-role") == 0)
		fprintf(out, "usage: orion admin set-role --email EMAIL --role admin|customer\n\n"
		             "Gives the account that role; its tokens follow at once (ADR 021).\n"
		             "Exit 0 done (or the role was that already), 1 refused, 3 no service.\n"
		             "  -h, --help           this text\n");
	else if (strcmp(verb, "erase") == 0)
		fprintf(out,
		        "usage: orion admin erase --email EMAIL\n"
		        "       orion admin erase --all\n\n"
		        "Erases the account's personal data (ADR 027): the account is closed, its\n"
		        "open orders cancelled, its data key destroyed (its email, name and password\n"
		        "hash unreadable in every event, snapshot and read model) and CustomerErased\n"
		        "recorded. Safe to run again; a run that was cut short is completed by the next.\n"
		        "Exit 0 done, 1 no such account, 3 no service.\n"
		        "  --email EMAIL        the account\n"
		        "  --all                every erasure the log records, carried through again:\n"
		        "                       those cut short are finished, and keys back from a\n"
		        "                       restored backup destroyed again (exit 1: some not now)\n"
		        "  -h, --help           this text\n");
	else
		fprintf(out, "usage: orion admin revoke-tokens --email EMAIL\n\n"
		             "Ends every token of the account (logout everywhere; ADR 021).\n"
		             "Exit 0 done, 1 refused, 3 no service.\n"
		             "  -h, --help           this text\n");
}

/* The help of the admin command verb. */
static void verb_help(FILE *out, const char *verb)
{
	if (strcmp(verb, "create-user") == 0)
		create_user_help(out);
	else
		account_help(out, verb);
}

orn_rc cli_user_command(es_store *store, ks_store *keys, const char *email, const user_command *c,
                        bus_reply *reply)
{
	char key[PD_INDEX_MAX], command_id[64], normalized[USER_EMAIL_MAX];
	unsigned char random[12];
	mp_writer *w = mp_writer_create();
	orn_rc rc = w == NULL ? ORN_ENOMEM : user_email_normalize(email, normalized, sizeof normalized);
	if (rc == ORN_OK)
		ks_blind_index(keys, normalized, key);
	if (rc == ORN_OK)
		rc = user_command_encode(w, c);
	randombytes_buf(random, sizeof random);
	memcpy(command_id, "cli:", 4);
	sodium_bin2hex(command_id + 4, sizeof command_id - 4, random, sizeof random);
	if (rc == ORN_OK)
		rc = send_command(store, USER_AGGREGATE, key, user_command_type(c->kind), w, command_id,
		                  reply);
	mp_writer_destroy(w);
	return rc;
}

orn_rc cli_erase_user(es_store *store, ks_store *keys, const char *email)
{
	char key[PD_INDEX_MAX], normalized[USER_EMAIL_MAX];
	orn_rc rc = user_email_normalize(email, normalized, sizeof normalized);
	if (rc != ORN_OK)
		return rc;
	ks_blind_index(keys, normalized, key);
	er_account account;
	size_t cancelled = 0;
	if ((rc = er_request(store, key)) == ORN_OK &&
	    (rc = er_account_read(store, key, &account)) == ORN_OK && account.erasure != USER_ERASED &&
	    account.user_id[0] != '\0') {
		/* as over HTTP: the open orders end first, their stock released by the saga */
		rc = er_cancel_open_orders(store, account.user_id, &cancelled);
		if (cancelled > 0)
			printf("cancelled %zu open order%s\n", cancelled, cancelled == 1 ? "" : "s");
	}
	if (rc == ORN_OK)
		rc = er_finish(store, keys, key, NULL);
	return rc;
}

/* `orion admin erase --all`: every erasure the log records carried through
 * again (er_again). 0 done, 1 some could not be done now, 3 no service. */
static int erase_all(const cli_config *cfg)
{
	char url[ORN_CONFIG_STR_MAX];
	es_store *store = NULL;
	ks_store *keys = NULL;
	er_again_counts n;
	int status = 3;
	snprintf(url, sizeof url, "%s", cfg->nats_url);
	if (url[0] == '\0' && !cli_read_running_url(cfg, url, sizeof url)) {
		fprintf(stderr, "orion admin: no running `orion serve` in %s; set ORION_NATS_URL\n",
		        cfg->data_dir);
		return 3;
	}
	if (cli_open_store(cfg, url, &store) != ORN_OK || cli_open_keys(cfg, store, true, &keys) != ORN_OK) {
		fprintf(stderr, "orion admin: cannot reach the event store and the keystore (see the log)\n");
		goto close;
	}
	orn_rc rc = er_again(store, keys, &n);
	if (rc == ORN_OK || rc == ORN_EIO) {
		printf("%zu erasure%s in the log: %zu finished now, %zu key%s destroyed again, %zu open "
		       "order%s "
		       "cancelled, %zu not done now\n",
		       n.accounts, n.accounts == 1 ? "" : "s", n.finished, n.keys_again,
		       n.keys_again == 1 ? "" : "s", n.orders_cancelled, n.orders_cancelled == 1 ? "" : "s",
		       n.failed);
		status = rc == ORN_OK ? 0 : 1;
	} else {
		fprintf(stderr, "orion admin: erase --all: %s\n", orn_strerror(rc));
	}
close:
	ks_close(keys);
	es_store_close(store);
	return status;
}

/* `orion admin set-role --email E --role R` and `orion admin revoke-tokens
 * --email E` (ADR 021): one command to the account; 0 when accepted (or the
 * role was that already), 1 when refused, 3 when no service answered. */
static int admin_account_command(es_store *store, ks_store *keys, const char *verb, const char *email,
                                 user_role role)
{
	user_command c = {.kind = strcmp(verb, "set-role") == 0 ? USER_CHANGE_ROLE : USER_REVOKE_TOKENS};
	bus_reply r;
	c.fields.role = role;
	if (cli_user_command(store, keys, email, &c, &r) != ORN_OK) {
		fprintf(stderr, "orion admin: no user service answered\n");
		return 3;
	}
	int status = r.outcome == BUS_ACCEPTED || strcmp(r.code, "no_change") == 0 ? 0 : 1;
	if (status == 0)
		printf("%s %s\n", verb, email);
	else
		fprintf(stderr, "orion admin: %s refused: %s %s\n", verb, r.code, r.detail);
	bus_reply_dispose(&r);
	return status;
}

/* `orion admin create-user --email E --password P --name N [--role admin|customer]`,
 * `orion admin set-role --email E --role admin|customer`, `orion admin revoke-tokens --email E` */
int cli_admin(int argc, char **argv, const cli_config *cfg)
{
	const char *email = NULL, *password = NULL, *name = NULL, *role_name = "admin";
	char url[ORN_CONFIG_STR_MAX];
	if (argc >= 1 && cli_is_help(argv[0])) {
		admin_help(stdout);
		return 0;
	}
	const char *verb = argc >= 1 ? argv[0] : "";
	bool role_given = false;
	bool create = strcmp(verb, "create-user") == 0, erase = strcmp(verb, "erase") == 0;
	if (!create && !erase && strcmp(verb, "set-role") != 0 && strcmp(verb, "revoke-tokens") != 0) {
		admin_help(stderr);
		return 2;
	}
	bool all = false;
	for (int i = 1; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			verb_help(stdout, verb);
			return 0;
		}
		if (erase && strcmp(argv[i], "--all") == 0) {
			all = true;
			continue;
		}
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--email") == 0)
			email = argv[++i];
		else if (strcmp(argv[i], "--password") == 0)
			password = argv[++i];
		else if (strcmp(argv[i], "--name") == 0)
			name = argv[++i];
		else if (strcmp(argv[i], "--role") == 0)
			role_name = argv[++i], role_given = true;
		else
			goto usage;
	}
	user_role role = user_role_parse(role_name, strlen(role_name));
	if (all && email == NULL && password == NULL && name == NULL && !role_given)
		return erase_all(cfg);
	if (all || email == NULL || role == USER_ROLE_NONE || (create && password == NULL) ||
	    (!create && (password != NULL || name != NULL)) ||
	    (!create && (strcmp(verb, "set-role") == 0) != role_given))
		goto usage;
	char normalized[USER_EMAIL_MAX];
	if (user_email_normalize(email, normalized, sizeof normalized) != ORN_OK ||
	    !user_email_valid(normalized) || (create && strlen(password) < 8)) {
		fprintf(stderr,
		        "orion admin: a valid email and a password of at least 8 characters are needed\n");
		return 2;
	}
	snprintf(url, sizeof url, "%s", cfg->nats_url);
	if (url[0] == '\0' && !cli_read_running_url(cfg, url, sizeof url)) {
		fprintf(stderr, "orion admin: no running `orion serve` in %s; set ORION_NATS_URL\n",
		        cfg->data_dir);
		return 3;
	}
	es_store *store = NULL;
	ks_store *keys = NULL;
	bool created = false;
	int status = 3;
	if (cli_open_store(cfg, url, &store) != ORN_OK || cli_open_keys(cfg, store, true, &keys) != ORN_OK) {
		fprintf(stderr, "orion admin: cannot reach the event store and the keystore (see the log)\n");
		goto close;
	}
	if (erase) {
		orn_rc rc = cli_erase_user(store, keys, email);
		status = rc == ORN_OK ? 0 : rc == ORN_ENOTFOUND ? 1 : 3;
		if (rc == ORN_OK)
			printf("erased %s\n", email);
		else
			fprintf(stderr, "orion admin: erase: %s\n",
			        rc == ORN_ENOTFOUND ? "no such account" : orn_strerror(rc));
	} else if (!create) {
		status = admin_account_command(store, keys, verb, email, role);
	} else if (cli_create_user(store, keys, email, password, name ? name : "Administrator", role,
	                           &created) == ORN_OK) {
		printf("%s %s (%s)\n", created ? "created" : "exists:", email, user_role_name(role));
		status = 0;
	} else {
		fprintf(stderr, "orion admin: the user could not be created (see the log)\n");
	}
close:
	ks_close(keys);
	es_store_close(store);
	return status;
usage:
	verb_help(stderr, verb);
	return 2;
}
