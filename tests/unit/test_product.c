/* test_product.c — unit tests of the product aggregate (actors/product.c).
 *
 * Given-when-then: given events applied with product_evolve, when a command
 * is decided, then the expected events or rejection. Further tests cover the
 * field bounds, the payload codecs, snapshot/restore and the kind table
 * driven through an act_decision. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "product.h"

static product_state state;
static product_events out;
static product_verdict verdict;
static mp_writer *writer;

static void setup(void)
{
	product_state_init(&state);
	writer = mp_writer_create();
	cr_assert_not_null(writer);
}

static void teardown(void)
{
	mp_writer_destroy(writer);
}

TestSuite(product, .init = setup, .fini = teardown);

/* A valid set of fields: a tee-shirt. */
static product_fields tee(void)
{
	product_fields f = {.price_cents = 1999};

	strcpy(f.sku, "TEE-001.L");
	strcpy(f.name, "Tee shirt \xc3\xa9t\xc3\xa9");
	strcpy(f.description, "Soft cotton.\r\nMachine washable.");
	strcpy(f.currency, "EUR");
	strcpy(f.category, "apparel-2");
	return f;
}

static product_event created(product_fields f)
{
	return (product_event){.kind = PRODUCT_CREATED, .present = PRODUCT_FIELDS_ALL, .fields = f};
}

static product_event deleted(void)
{
	return (product_event){.kind = PRODUCT_DELETED};
}

static product_command create(product_fields f)
{
	return (product_command){.kind = PRODUCT_CREATE, .fields = f};
}

static product_command update(unsigned present, product_fields f)
{
	return (product_command){.kind = PRODUCT_UPDATE, .present = present, .fields = f};
}

static product_command delete_product(void)
{
	return (product_command){.kind = PRODUCT_DELETE};
}

static void given(product_event e)
{
	product_evolve(&state, &e);
}

static void when(product_command c)
{
	verdict = product_decide(&state, &c, &out);
}

static void assert_fields_eq(const product_fields *a, const product_fields *b, unsigned mask)
{
	if (mask & PRODUCT_FIELD_SKU)
		cr_assert_str_eq(a->sku, b->sku);
	if (mask & PRODUCT_FIELD_NAME)
		cr_assert_str_eq(a->name, b->name);
	if (mask & PRODUCT_FIELD_DESCRIPTION)
		cr_assert_str_eq(a->description, b->description);
	if (mask & PRODUCT_FIELD_PRICE)
		cr_assert_eq(a->price_cents, b->price_cents);
	if (mask & PRODUCT_FIELD_CURRENCY)
		cr_assert_str_eq(a->currency, b->currency);
	if (mask & PRODUCT_FIELD_CATEGORY)
		cr_assert_str_eq(a->category, b->category);
}

static void then_event(product_event_kind kind, unsigned present, product_fields f)
{
	cr_assert_eq(verdict, PRODUCT_OK, "verdict %s", product_verdict_code(verdict));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.items[0].kind, kind);
	cr_assert_eq(out.items[0].present, present);
	assert_fields_eq(&out.items[0].fields, &f, present);
}

static void then_rejected(product_verdict expected)
{
	cr_assert_eq(verdict, expected, "verdict %s, expected %s", product_verdict_code(verdict),
	             product_verdict_code(expected));
	cr_assert_eq(out.count, 0);
}

static void and_applied(void)
{
	for (size_t i = 0; i < out.count; i++)
		product_evolve(&state, &out.items[i]);
}

/* ---- create ---- */

Test(product, create_emits_created_with_every_field)
{
	when(create(tee()));
	then_event(PRODUCT_CREATED, PRODUCT_FIELDS_ALL, tee());
	and_applied();
	cr_assert(state.exists);
	cr_assert(!state.deleted);
	assert_fields_eq(&state.fields, &(product_fields){0}, 0);
	{
		product_fields expected = tee();
		assert_fields_eq(&state.fields, &expected, PRODUCT_FIELDS_ALL);
	}
}

Test(product, create_ignores_the_present_set)
{
	product_command c = create(tee());

	c.present = PRODUCT_FIELD_NAME;
	when(c);
	then_event(PRODUCT_CREATED, PRODUCT_FIELDS_ALL, tee());
}

Test(product, create_of_an_existing_product_is_rejected)
{
	given(created(tee()));
	when(create(tee()));
	then_rejected(PRODUCT_REJ_EXISTS);
}

Test(product, every_command_on_a_deleted_product_is_rejected_deleted)
{
	given(created(tee()));
	given(deleted());
	cr_assert(state.deleted);
	when(create(tee()));
	then_rejected(PRODUCT_REJ_DELETED);
	when(update(PRODUCT_FIELD_PRICE, (product_fields){.price_cents = 1}));
	then_rejected(PRODUCT_REJ_DELETED);
	when(delete_product());
	then_rejected(PRODUCT_REJ_DELETED);
}

Test(product, update_and_delete_of_a_missing_product_are_not_found)
{
	when(update(PRODUCT_FIELD_PRICE, (product_fields){.price_cents = 1}));
	then_rejected(PRODUCT_REJ_NOT_FOUND);
	when(delete_product());
	then_rejected(PRODUCT_REJ_NOT_FOUND);
	when((product_command){.kind = (product_command_kind)9});
	then_rejected(PRODUCT_REJ_NOT_FOUND);
}

Test(product, an_unknown_command_kind_is_invalid)
{
	given(created(tee()));
	when((product_command){.kind = (product_command_kind)9});
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_null(product_invalid_field(&(product_command){.kind = (product_command_kind)9}));
}

/* ---- field bounds ---- */

/* Decides create with one field changed by edit and checks the verdict and,
 * when invalid, the field named. */
static void check_create(void (*edit)(product_fields *), const char *invalid_field)
{
	product_fields f = tee();
	product_command c;

	product_state_init(&state);
	edit(&f);
	c = create(f);
	when(c);
	if (invalid_field == NULL) {
		cr_assert_eq(verdict, PRODUCT_OK, "field %s", product_invalid_field(&c));
		cr_assert_null(product_invalid_field(&c));
	} else {
		then_rejected(PRODUCT_REJ_INVALID);
		cr_assert_str_eq(product_invalid_field(&c), invalid_field);
	}
}

static void sku_empty(product_fields *f)
{
	f->sku[0] = '\0';
}
static void sku_space(product_fields *f)
{
	strcpy(f->sku, "TEE 1");
}
static void sku_slash(product_fields *f)
{
	strcpy(f->sku, "TEE/1");
}
static void sku_longest(product_fields *f)
{
	memset(f->sku, 'a', PRODUCT_SKU_MAX - 1);
}
static void sku_unterminated(product_fields *f)
{
	memset(f->sku, 'a', PRODUCT_SKU_MAX);
}
static void name_empty(product_fields *f)
{
	f->name[0] = '\0';
}
static void name_newline(product_fields *f)
{
	strcpy(f->name, "a\nb");
}
static void name_tab(product_fields *f)
{
	strcpy(f->name, "a\tb");
}
static void name_del(product_fields *f)
{
	strcpy(f->name, "a\x7f");
}
static void name_c1(product_fields *f)
{
	strcpy(f->name, "a\xc2\x85");
}
static void name_nbsp(product_fields *f)
{
	strcpy(f->name, "a\xc2\xa0z \xf0\x9f\x91\x95 \xe2\x82\xac");
}
static void name_bad_utf8(product_fields *f)
{
	strcpy(f->name, "caf\xe9");
}
static void name_overlong(product_fields *f)
{
	strcpy(f->name, "\xc0\xaf");
}
static void name_overlong3(product_fields *f)
{
	strcpy(f->name, "\xe0\x80\xaf");
}
static void name_overlong4(product_fields *f)
{
	strcpy(f->name, "\xf0\x80\x80\xaf");
}
static void name_surrogate(product_fields *f)
{
	strcpy(f->name, "\xed\xa0\x80");
}
static void name_past_max(product_fields *f)
{
	strcpy(f->name, "\xf4\x90\x80\x80");
}
static void name_bad_lead(product_fields *f)
{
	strcpy(f->name, "\xf8\x88\x80\x80\x80");
}
static void name_lone_continuation(product_fields *f)
{
	strcpy(f->name, "\x80");
}
static void name_truncated(product_fields *f)
{
	strcpy(f->name, "ab\xe2\x82");
}
static void name_bad_continuation(product_fields *f)
{
	strcpy(f->name, "\xe2\x28\xa1");
}
static void name_longest(product_fields *f)
{
	memset(f->name, 'n', PRODUCT_NAME_MAX - 1);
}
static void name_unterminated(product_fields *f)
{
	memset(f->name, 'n', PRODUCT_NAME_MAX);
}
static void description_empty(product_fields *f)
{
	f->description[0] = '\0';
}
static void description_tab(product_fields *f)
{
	strcpy(f->description, "a\tb");
}
static void description_escape(product_fields *f)
{
	strcpy(f->description, "\x1b[31m");
}
static void description_longest(product_fields *f)
{
	memset(f->description, 'd', PRODUCT_DESCRIPTION_MAX - 1);
}
static void description_unterminated(product_fields *f)
{
	memset(f->description, 'd', PRODUCT_DESCRIPTION_MAX);
}
static void price_zero(product_fields *f)
{
	f->price_cents = 0;
}
static void price_max(product_fields *f)
{
	f->price_cents = PRODUCT_PRICE_MAX;
}
static void price_negative(product_fields *f)
{
	f->price_cents = -1;
}
static void price_too_high(product_fields *f)
{
	f->price_cents = PRODUCT_PRICE_MAX + 1;
}
static void currency_lower(product_fields *f)
{
	strcpy(f->currency, "eur");
}
static void currency_short(product_fields *f)
{
	strcpy(f->currency, "EU");
}
static void currency_digit(product_fields *f)
{
	strcpy(f->currency, "EU1");
}
static void currency_unterminated(product_fields *f)
{
	memset(f->currency, 'E', PRODUCT_CURRENCY_MAX);
}
static void category_empty(product_fields *f)
{
	f->category[0] = '\0';
}
static void category_upper(product_fields *f)
{
	strcpy(f->category, "Apparel");
}
static void category_underscore(product_fields *f)
{
	strcpy(f->category, "a_b");
}
static void category_longest(product_fields *f)
{
	memset(f->category, 'c', PRODUCT_CATEGORY_MAX - 1);
}
static void category_unterminated(product_fields *f)
{
	memset(f->category, 'c', PRODUCT_CATEGORY_MAX);
}

Test(product, create_checks_every_field)
{
	check_create(sku_empty, "sku");
	check_create(sku_space, "sku");
	check_create(sku_slash, "sku");
	check_create(sku_longest, NULL);
	check_create(sku_unterminated, "sku");
	check_create(name_empty, "name");
	check_create(name_newline, "name");
	check_create(name_tab, "name");
	check_create(name_del, "name");
	check_create(name_c1, "name");
	check_create(name_nbsp, NULL);
	check_create(name_bad_utf8, "name");
	check_create(name_overlong, "name");
	check_create(name_overlong3, "name");
	check_create(name_overlong4, "name");
	check_create(name_surrogate, "name");
	check_create(name_past_max, "name");
	check_create(name_bad_lead, "name");
	check_create(name_lone_continuation, "name");
	check_create(name_truncated, "name");
	check_create(name_bad_continuation, "name");
	check_create(name_longest, NULL);
	check_create(name_unterminated, "name");
	check_create(description_empty, NULL);
	check_create(description_tab, "description");
	check_create(description_escape, "description");
	check_create(description_longest, NULL);
	check_create(description_unterminated, "description");
	check_create(price_zero, NULL);
	check_create(price_max, NULL);
	check_create(price_negative, "price_cents");
	check_create(price_too_high, "price_cents");
	check_create(currency_lower, "currency");
	check_create(currency_short, "currency");
	check_create(currency_digit, "currency");
	check_create(currency_unterminated, "currency");
	check_create(category_empty, "category");
	check_create(category_upper, "category");
	check_create(category_underscore, "category");
	check_create(category_longest, NULL);
	check_create(category_unterminated, "category");
}

Test(product, fields_valid_checks_only_the_listed_fields)
{
	product_fields f = tee();

	f.price_cents = -5;
	cr_assert(product_fields_valid(&f, PRODUCT_FIELD_NAME | PRODUCT_FIELD_SKU));
	cr_assert(!product_fields_valid(&f, PRODUCT_FIELD_PRICE));
	cr_assert(product_fields_valid(&f, 0));
}

/* ---- update ---- */

Test(product, update_emits_only_the_changed_fields)
{
	product_fields f = tee();

	given(created(tee()));
	strcpy(f.name, "Tee shirt v2");
	f.price_cents = 2499;
	when(update(PRODUCT_FIELD_NAME | PRODUCT_FIELD_DESCRIPTION | PRODUCT_FIELD_PRICE |
	                    PRODUCT_FIELD_CATEGORY,
	            f));
	then_event(PRODUCT_UPDATED, PRODUCT_FIELD_NAME | PRODUCT_FIELD_PRICE, f);
	and_applied();
	assert_fields_eq(&state.fields, &f, PRODUCT_FIELDS_ALL);
}

Test(product, update_of_each_mutable_field)
{
	product_fields f = {.price_cents = 5};

	given(created(tee()));
	strcpy(f.name, "N");
	strcpy(f.description, "");
	strcpy(f.category, "c");
	for (unsigned bit = PRODUCT_FIELD_NAME; bit <= PRODUCT_FIELD_CATEGORY; bit <<= 1) {
		if ((bit & PRODUCT_FIELDS_MUTABLE) == 0)
			continue;
		when(update(bit, f));
		then_event(PRODUCT_UPDATED, bit, f);
		and_applied();
	}
	cr_assert_str_eq(state.fields.name, "N");
	cr_assert_str_eq(state.fields.description, "");
	cr_assert_eq(state.fields.price_cents, 5);
	cr_assert_str_eq(state.fields.category, "c");
	cr_assert_str_eq(state.fields.sku, "TEE-001.L");
	cr_assert_str_eq(state.fields.currency, "EUR");
}

Test(product, update_that_changes_nothing_is_no_change)
{
	given(created(tee()));
	when(update(PRODUCT_FIELDS_MUTABLE, tee()));
	then_rejected(PRODUCT_REJ_NO_CHANGE);
}

Test(product, update_naming_no_field_is_invalid)
{
	product_command c = update(0, tee());

	given(created(tee()));
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_str_eq(product_invalid_field(&c), "fields");
	c.present = 1u << 12; /* bits beyond the fields do not count */
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_str_eq(product_invalid_field(&c), "fields");
}

Test(product, update_of_sku_or_currency_is_invalid)
{
	product_fields f = tee();
	product_command c;

	given(created(tee()));
	strcpy(f.sku, "OTHER");
	c = update(PRODUCT_FIELD_SKU | PRODUCT_FIELD_NAME, f);
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_str_eq(product_invalid_field(&c), "sku");
	c = update(PRODUCT_FIELD_CURRENCY, tee()); /* even to the same value */
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_str_eq(product_invalid_field(&c), "currency");
}

Test(product, update_checks_only_the_fields_it_sets)
{
	product_fields f = {.price_cents = -1};
	product_command c;

	given(created(tee()));
	strcpy(f.name, "New name");
	when(update(PRODUCT_FIELD_NAME, f));
	then_event(PRODUCT_UPDATED, PRODUCT_FIELD_NAME, f);
	c = update(PRODUCT_FIELD_NAME | PRODUCT_FIELD_PRICE, f);
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	cr_assert_str_eq(product_invalid_field(&c), "price_cents");
}

/* ---- delete ---- */

Test(product, delete_emits_deleted_and_keeps_the_fields)
{
	given(created(tee()));
	when(delete_product());
	then_event(PRODUCT_DELETED, 0, tee());
	and_applied();
	cr_assert(state.exists);
	cr_assert(state.deleted);
	cr_assert_str_eq(state.fields.sku, "TEE-001.L");
	cr_assert_null(product_invalid_field(&(product_command){.kind = PRODUCT_DELETE}));
}

/* ---- evolve on odd streams ---- */

Test(product, evolve_ignores_updates_and_deletes_of_no_live_product)
{
	product_fields f = tee();

	strcpy(f.name, "ghost");
	given((product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_NAME, .fields = f});
	given(deleted());
	cr_assert(!state.exists);
	cr_assert(!state.deleted);
	cr_assert_str_eq(state.fields.name, "");
	given(created(tee()));
	given(deleted());
	given((product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_NAME, .fields = f});
	cr_assert_str_neq(state.fields.name, "ghost");
	/* an update event never changes sku or currency */
	given(created(tee()));
	cr_assert(!state.deleted);
	given((product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELDS_ALL, .fields = f});
	cr_assert_str_eq(state.fields.name, "ghost");
	strcpy(f.sku, "X");
	given((product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_SKU, .fields = f});
	cr_assert_str_eq(state.fields.sku, "TEE-001.L");
	given((product_event){.kind = (product_event_kind)9});
	cr_assert(state.exists);
}

/* ---- names ---- */

Test(product, codes_and_type_names_are_stable)
{
	const char *codes[] = {"", "not_found", "exists", "deleted", "invalid", "no_change"};

	for (int v = PRODUCT_OK; v <= PRODUCT_REJ_NO_CHANGE; v++)
		cr_assert_str_eq(product_verdict_code((product_verdict)v), codes[v]);
	cr_assert_str_eq(product_verdict_code((product_verdict)42), "unknown");
	cr_assert_str_eq(product_command_type(PRODUCT_CREATE), "CreateProduct");
	cr_assert_str_eq(product_command_type(PRODUCT_UPDATE), "UpdateProduct");
	cr_assert_str_eq(product_command_type(PRODUCT_DELETE), "DeleteProduct");
	cr_assert_null(product_command_type((product_command_kind)3));
	cr_assert_str_eq(product_event_type(PRODUCT_CREATED), "ProductCreated");
	cr_assert_str_eq(product_event_type(PRODUCT_UPDATED), "ProductUpdated");
	cr_assert_str_eq(product_event_type(PRODUCT_DELETED), "ProductDeleted");
	cr_assert_null(product_event_type((product_event_kind)3));
}

/* ---- payload codecs ---- */

static void assert_command_round_trip(product_command c, unsigned expected_present)
{
	product_command decoded;

	mp_writer_reset(writer);
	cr_assert_eq(product_command_encode(writer, &c), ORN_OK);
	cr_assert_eq(product_command_decode(product_command_type(c.kind), mp_writer_data(writer),
	                                    mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, c.kind);
	cr_assert_eq(decoded.present, expected_present);
	assert_fields_eq(&decoded.fields, &c.fields, expected_present);
}

static void assert_event_round_trip(product_event e)
{
	product_event decoded;

	mp_writer_reset(writer);
	cr_assert_eq(product_event_encode(writer, &e), ORN_OK);
	cr_assert_eq(product_event_decode(product_event_type(e.kind), mp_writer_data(writer),
	                                  mp_writer_size(writer), &decoded),
	             ORN_OK);
	cr_assert_eq(decoded.kind, e.kind);
	cr_assert_eq(decoded.present, e.present);
	assert_fields_eq(&decoded.fields, &e.fields, e.present);
}

Test(product, commands_round_trip)
{
	product_fields odd = {.price_cents = -7};

	assert_command_round_trip(create(tee()), PRODUCT_FIELDS_ALL);
	assert_command_round_trip(create(odd), PRODUCT_FIELDS_ALL); /* decide judges values */
	assert_command_round_trip(update(PRODUCT_FIELD_PRICE | PRODUCT_FIELD_NAME, tee()),
	                          PRODUCT_FIELD_PRICE | PRODUCT_FIELD_NAME);
	assert_command_round_trip(update(PRODUCT_FIELD_SKU, tee()), PRODUCT_FIELD_SKU);
	assert_command_round_trip(update(0, tee()), 0);
	assert_command_round_trip(delete_product(), 0);
}

Test(product, events_round_trip)
{
	product_fields f = tee();

	assert_event_round_trip(created(tee()));
	assert_event_round_trip(
	        (product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELDS_MUTABLE, .fields = f});
	assert_event_round_trip(
	        (product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_DESCRIPTION, .fields = f});
	assert_event_round_trip(deleted());
}

Test(product, encoders_reject_unknown_kinds_and_unterminated_strings)
{
	product_command c = create(tee());
	product_event e = created(tee());

	cr_assert_eq(product_command_encode(writer, &(product_command){.kind = (product_command_kind)5}),
	             ORN_EINVAL);
	cr_assert_eq(product_event_encode(writer, &(product_event){.kind = (product_event_kind)5}),
	             ORN_EINVAL);
	memset(c.fields.category, 'c', sizeof c.fields.category);
	cr_assert_eq(product_command_encode(writer, &c), ORN_EINVAL);
	memset(e.fields.name, 'n', sizeof e.fields.name);
	cr_assert_eq(product_event_encode(writer, &e), ORN_EINVAL);
	/* fields a payload does not carry are not looked at */
	c.kind = PRODUCT_UPDATE;
	c.present = PRODUCT_FIELD_PRICE;
	cr_assert_eq(product_command_encode(writer, &c), ORN_OK);
	e.kind = PRODUCT_DELETED;
	cr_assert_eq(product_event_encode(writer, &e), ORN_OK);
}

static orn_rc decode_written_command(const char *type, product_command *c)
{
	return product_command_decode(type, mp_writer_data(writer), mp_writer_size(writer), c);
}

static orn_rc decode_written_event(const char *type)
{
	product_event e;

	return product_event_decode(type, mp_writer_data(writer), mp_writer_size(writer), &e);
}

static void write_single_key(const char *key)
{
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_cstr(writer, key);
}

Test(product, decoders_reject_unknown_types_and_truncations)
{
	product_command c;
	product_event e;

	cr_assert_eq(
	        product_command_encode(writer, &(product_command){.kind = PRODUCT_CREATE, .fields = tee()}),
	        ORN_OK);
	cr_assert_eq(decode_written_command("StealProduct", &c), ORN_EINVAL);
	cr_assert_eq(decode_written_command(NULL, &c), ORN_EINVAL);
	cr_assert_eq(decode_written_event(PRODUCT_CMD_CREATE), ORN_EINVAL);
	for (size_t len = 0; len < mp_writer_size(writer); len++) {
		cr_assert_eq(product_command_decode(PRODUCT_CMD_CREATE, mp_writer_data(writer), len, &c),
		             ORN_EDECODE, "length %zu", len);
		cr_assert_eq(product_event_decode(PRODUCT_EV_CREATED, mp_writer_data(writer), len, &e),
		             ORN_EDECODE, "length %zu", len);
	}
}

Test(product, wrong_types_missing_and_repeated_keys_are_rejected)
{
	product_command c;

	write_single_key("price_cents");
	mp_write_cstr(writer, "10");
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("price_cents");
	mp_write_raw(writer, "\xcb\x40\x08\x00\x00\x00\x00\x00\x00", 9); /* float64 */
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("name");
	mp_write_int(writer, 1);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("name");
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("name");
	mp_write_str(writer, "a\0b", 3);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("name");
	mp_write_cstr(writer, "only a name"); /* create needs every field */
	cr_assert_eq(decode_written_command(PRODUCT_CMD_CREATE, &c), ORN_EDECODE);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_OK);
	cr_assert_eq(c.present, PRODUCT_FIELD_NAME);
	mp_writer_reset(writer);
	mp_write_map(writer, 2);
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, "a");
	mp_write_cstr(writer, "name");
	mp_write_cstr(writer, "b");
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_array(writer, 0);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_DELETE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_nil(writer);
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_DELETE, &c), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	mp_write_nil(writer);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_DELETE, &c), ORN_EDECODE);
}

Test(product, over_long_strings_do_not_decode)
{
	char text[PRODUCT_DESCRIPTION_MAX + 1];
	product_command c;

	memset(text, 'x', sizeof text);
	write_single_key("description");
	mp_write_str(writer, text, PRODUCT_DESCRIPTION_MAX);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
	write_single_key("description");
	mp_write_str(writer, text, PRODUCT_DESCRIPTION_MAX - 1);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_OK);
	write_single_key("currency");
	mp_write_cstr(writer, "EURO");
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_EDECODE);
}

Test(product, unknown_keys_are_skipped_but_product_keys_are_read)
{
	product_command c;

	mp_write_map(writer, 3);
	mp_write_cstr(writer, "note");
	mp_write_map(writer, 1);
	mp_write_cstr(writer, "x");
	mp_write_array(writer, 0);
	mp_write_cstr(writer, "sku");
	mp_write_cstr(writer, "NEW-SKU");
	mp_write_cstr(writer, "price_cents");
	mp_write_int(writer, 10);
	cr_assert_eq(decode_written_command(PRODUCT_CMD_UPDATE, &c), ORN_OK);
	cr_assert_eq(c.present, PRODUCT_FIELD_SKU | PRODUCT_FIELD_PRICE);
	cr_assert_str_eq(c.fields.sku, "NEW-SKU");
	given(created(tee()));
	when(c);
	then_rejected(PRODUCT_REJ_INVALID);
	/* a delete carries no field: product keys in it are skipped too */
	cr_assert_eq(decode_written_command(PRODUCT_CMD_DELETE, &c), ORN_OK);
	cr_assert_eq(c.kind, PRODUCT_DELETE);
	cr_assert_eq(c.present, 0);
}

Test(product, events_decide_could_not_have_emitted_are_rejected)
{
	product_fields f = tee();
	product_event bad_created = created(tee());

	strcpy(bad_created.fields.currency, "usd");
	cr_assert_eq(product_event_encode(writer, &bad_created), ORN_OK);
	cr_assert_eq(decode_written_event(PRODUCT_EV_CREATED), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 0);
	cr_assert_eq(decode_written_event(PRODUCT_EV_UPDATED), ORN_EDECODE); /* no field */
	cr_assert_eq(decode_written_event(PRODUCT_EV_DELETED), ORN_OK);
	mp_writer_reset(writer);
	cr_assert_eq(product_event_encode(writer, &(product_event){.kind = PRODUCT_UPDATED,
	                                                           .present = PRODUCT_FIELD_SKU,
	                                                           .fields = f}),
	             ORN_OK);
	cr_assert_eq(decode_written_event(PRODUCT_EV_UPDATED), ORN_EDECODE); /* immutable */
	f.price_cents = PRODUCT_PRICE_MAX + 1;
	mp_writer_reset(writer);
	cr_assert_eq(product_event_encode(writer, &(product_event){.kind = PRODUCT_UPDATED,
	                                                           .present = PRODUCT_FIELD_PRICE,
	                                                           .fields = f}),
	             ORN_OK);
	cr_assert_eq(decode_written_event(PRODUCT_EV_UPDATED), ORN_EDECODE);
}

/* ---- snapshot and restore ---- */

static void assert_same_state(const product_state *a, const product_state *b)
{
	cr_assert_eq(a->exists, b->exists);
	cr_assert_eq(a->deleted, b->deleted);
	assert_fields_eq(&a->fields, &b->fields, PRODUCT_FIELDS_ALL);
}

static void assert_snapshot_round_trip(void)
{
	product_state restored;

	product_state_init(&restored);
	mp_writer_reset(writer);
	cr_assert_eq(product_kind.snapshot(&state, writer), ORN_OK);
	cr_assert_eq(product_kind.restore(&restored, mp_writer_data(writer), mp_writer_size(writer)), ORN_OK);
	assert_same_state(&state, &restored);
}

Test(product, restore_gives_back_the_replayed_state)
{
	product_fields f = tee();

	assert_snapshot_round_trip();
	given(created(tee()));
	assert_snapshot_round_trip();
	strcpy(f.name, "renamed");
	given((product_event){.kind = PRODUCT_UPDATED, .present = PRODUCT_FIELD_NAME, .fields = f});
	assert_snapshot_round_trip();
	given(deleted());
	assert_snapshot_round_trip();
}

static orn_rc restore_written(void)
{
	return product_kind.restore(&state, mp_writer_data(writer), mp_writer_size(writer));
}

/* Writes a snapshot of a product with the given flags and fields, plus an
 * extra key if given. */
static void write_snapshot(bool exists, bool is_deleted, product_fields f, const char *extra)
{
	product_state s = {.exists = exists, .deleted = is_deleted, .fields = f};
	size_t size;
	uint8_t *copy;

	mp_writer_reset(writer);
	cr_assert_eq(product_kind.snapshot(&s, writer), ORN_OK);
	if (extra == NULL)
		return;
	size = mp_writer_size(writer);
	copy = malloc(size);
	cr_assert_not_null(copy);
	memcpy(copy, mp_writer_data(writer), size);
	mp_writer_reset(writer);
	mp_write_map(writer, 9);
	mp_write_raw(writer, copy + 1, size - 1); /* the 8 pairs after the fixmap header */
	mp_write_cstr(writer, extra);
	mp_write_bool(writer, false);
	free(copy);
}

Test(product, restore_rejects_inconsistent_snapshots_and_keeps_the_state)
{
	product_fields bad = tee();

	given(created(tee()));
	write_snapshot(true, false, tee(), "future");
	cr_assert_eq(restore_written(), ORN_OK);
	strcpy(bad.currency, "x");
	write_snapshot(true, false, bad, NULL);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, false, tee(), NULL); /* fields on a product never created */
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, true, (product_fields){0}, NULL); /* deleted but never created */
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, false, tee(), "exists");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, false, tee(), "deleted");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(true, false, tee(), "sku");
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_single_key("exists");
	mp_write_bool(writer, false);
	cr_assert_eq(restore_written(), ORN_EDECODE); /* keys missing */
	write_single_key("exists");
	mp_write_int(writer, 1);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_nil(writer);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	mp_writer_reset(writer);
	mp_write_map(writer, 1);
	mp_write_int(writer, 1);
	mp_write_int(writer, 1);
	cr_assert_eq(restore_written(), ORN_EDECODE);
	write_snapshot(false, false, (product_fields){0}, NULL);
	mp_write_nil(writer); /* trailing bytes */
	cr_assert_eq(restore_written(), ORN_EDECODE);
	cr_assert(state.exists);
	cr_assert_str_eq(state.fields.sku, "TEE-001.L");
	write_snapshot(false, false, (product_fields){0}, NULL);
	cr_assert_eq(restore_written(), ORN_OK);
	cr_assert(!state.exists);
}

Test(product, snapshot_reports_an_unterminated_field)
{
	product_state s = {.exists = true, .fields = tee()};

	memset(s.fields.sku, 'a', sizeof s.fields.sku);
	cr_assert_eq(product_kind.snapshot(&s, writer), ORN_EINVAL);
}

/* ---- the kind table ---- */

static act_decision *decision;

static void kind_setup(void)
{
	setup();
	decision = act_decision_create();
	cr_assert_not_null(decision);
}

static void kind_teardown(void)
{
	act_decision_destroy(decision);
	teardown();
}

TestSuite(product_kind, .init = kind_setup, .fini = kind_teardown);

static orn_rc kind_decide(product_command c)
{
	env_envelope cmd = {.schema = 1};

	mp_writer_reset(writer);
	cr_assert_eq(product_command_encode(writer, &c), ORN_OK);
	snprintf(cmd.type, sizeof cmd.type, "%s", product_command_type(c.kind));
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	act_decision_clear(decision);
	return product_kind.decide(&state, &cmd, decision);
}

static void kind_apply(void)
{
	env_envelope event;

	for (size_t i = 0; i < act_decision_count(decision); i++) {
		cr_assert_eq(act_decision_event(decision, i, &event), ORN_OK);
		cr_assert_eq(product_kind.evolve(&state, &event), ORN_OK);
	}
}

static void then_decision_rejected(const char *code, const char *detail)
{
	cr_assert_str_eq(act_decision_rejection(decision), code);
	cr_assert_eq(act_decision_count(decision), 0);
	cr_assert_str_eq(act_decision_detail(decision), detail);
}

Test(product_kind, describes_the_aggregate)
{
	product_state *s = malloc(product_kind.state_size);

	cr_assert_str_eq(product_kind.aggregate, "product");
	cr_assert_eq(product_kind.state_size, sizeof(product_state));
	cr_assert_eq(product_kind.snapshot_schema, PRODUCT_SNAPSHOT_SCHEMA);
	cr_assert_not_null(s);
	product_kind.init(s);
	cr_assert(!s->exists);
	product_kind.dispose(s);
	free(s);
}

Test(product_kind, a_product_lives_through_the_kind_table)
{
	env_envelope event;
	product_event decoded;
	product_fields f = tee();

	cr_assert_eq(kind_decide(create(tee())), ORN_OK);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert_eq(act_decision_count(decision), 1);
	cr_assert_eq(act_decision_event(decision, 0, &event), ORN_OK);
	cr_assert_str_eq(event.type, PRODUCT_EV_CREATED);
	cr_assert_eq(event.schema, 1);
	cr_assert_eq(product_event_decode(event.type, event.payload, event.payload_len, &decoded), ORN_OK);
	cr_assert_str_eq(decoded.fields.name, f.name);
	kind_apply();
	f.price_cents = 1;
	cr_assert_eq(kind_decide(update(PRODUCT_FIELD_PRICE, f)), ORN_OK);
	kind_apply();
	cr_assert_eq(state.fields.price_cents, 1);
	cr_assert_eq(kind_decide(delete_product()), ORN_OK);
	kind_apply();
	cr_assert(state.deleted);
}

Test(product_kind, rejections_carry_the_code_and_a_detail_naming_the_field)
{
	product_fields f = tee();

	cr_assert_eq(kind_decide(delete_product()), ORN_OK);
	then_decision_rejected("not_found", "the product does not exist");
	f.price_cents = -1;
	cr_assert_eq(kind_decide(create(f)), ORN_OK);
	then_decision_rejected("invalid", "price_cents: an integer 0..10000000000");
	strcpy(f.name, "");
	cr_assert_eq(kind_decide(create(f)), ORN_OK);
	then_decision_rejected("invalid", "name: 1..200 bytes of UTF-8 text without control characters");
	given(created(tee()));
	cr_assert_eq(kind_decide(create(tee())), ORN_OK);
	then_decision_rejected("exists", "the product already exists");
	cr_assert_eq(kind_decide(update(PRODUCT_FIELD_NAME, tee())), ORN_OK);
	then_decision_rejected("no_change", "the update changes nothing");
	cr_assert_eq(kind_decide(update(0, tee())), ORN_OK);
	then_decision_rejected(
	        "invalid", "fields: an update sets at least one of name, description, price_cents, category");
	cr_assert_eq(kind_decide(update(PRODUCT_FIELD_CURRENCY, tee())), ORN_OK);
	then_decision_rejected("invalid", "currency: cannot change");
	cr_assert_eq(kind_decide(update(PRODUCT_FIELD_SKU, tee())), ORN_OK);
	then_decision_rejected("invalid", "sku: cannot change");
	f = tee();
	strcpy(f.category, "Bad");
	cr_assert_eq(kind_decide(update(PRODUCT_FIELD_CATEGORY, f)), ORN_OK);
	then_decision_rejected("invalid", "category: 1..64 characters of [a-z0-9-]");
	given(deleted());
	cr_assert_eq(kind_decide(delete_product()), ORN_OK);
	then_decision_rejected("deleted", "the product was deleted");
}

Test(product_kind, undecodable_commands_and_events_are_errors)
{
	env_envelope env = {.type = PRODUCT_CMD_CREATE,
	                    .schema = 1,
	                    .payload = (const uint8_t *)"\x80",
	                    .payload_len = 1};

	cr_assert_eq(product_kind.decide(&state, &env, decision), ORN_EDECODE);
	env.schema = 2;
	cr_assert_eq(product_kind.decide(&state, &env, decision), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "%s", PRODUCT_EV_CREATED);
	cr_assert_eq(product_kind.evolve(&state, &env), ORN_EDECODE);
	env.schema = 1;
	cr_assert_eq(product_kind.evolve(&state, &env), ORN_EDECODE);
	snprintf(env.type, sizeof env.type, "ProductStolen");
	cr_assert_eq(product_kind.evolve(&state, &env), ORN_EINVAL);
	cr_assert_null(act_decision_rejection(decision));
	cr_assert(!state.exists);
}

Test(product_kind, view_is_the_product)
{
	char json[1024];
	mp_reader r;
	mp_writer *text = mp_writer_create();

	cr_assert_not_null(text);
	given(created(tee()));
	cr_assert_eq(product_kind.view(&state, writer), ORN_OK);
	mp_reader_init(&r, mp_writer_data(writer), mp_writer_size(writer));
	cr_assert_eq(mp_to_json(&r, text), ORN_OK);
	snprintf(json, sizeof json, "%.*s", (int)mp_writer_size(text), (const char *)mp_writer_data(text));
	cr_assert_str_eq(json,
	                 "{\"exists\":true,\"deleted\":false,\"sku\":\"TEE-001.L\",\"name\":\"Tee shirt "
	                 "\xc3\xa9t\xc3\xa9\",\"description\":\"Soft cotton.\\r\\nMachine washable.\","
	                 "\"price_cents\":1999,\"currency\":\"EUR\",\"category\":\"apparel-2\"}");
	mp_writer_destroy(text);
}

Test(product_kind, decide_reports_running_out_of_memory_and_a_full_decision)
{
	env_envelope cmd = {.type = PRODUCT_CMD_CREATE, .schema = 1};
	unsigned failures = 0;
	orn_rc rc;

	cr_assert_eq(
	        product_command_encode(writer, &(product_command){.kind = PRODUCT_CREATE, .fields = tee()}),
	        ORN_OK);
	cmd.payload = mp_writer_data(writer);
	cmd.payload_len = mp_writer_size(writer);
	if (failalloc_available()) {
		for (long n = 0;; n++, failures++) {
			act_decision_clear(decision);
			failalloc_after(n);
			rc = product_kind.decide(&state, &cmd, decision);
			failalloc_off();
			if (rc == ORN_OK)
				break;
			cr_assert_eq(rc, ORN_ENOMEM, "allocation %ld", n);
		}
		cr_assert_geq(failures, 2);
		cr_assert_eq(act_decision_count(decision), 1);
	}
	act_decision_clear(decision);
	for (size_t i = 0; i < ENV_MAX_EVENTS; i++)
		cr_assert_eq(act_decision_emit(decision, "Filler", 1, (const uint8_t *)"\xc0", 1), ORN_OK);
	cr_assert_eq(product_kind.decide(&state, &cmd, decision), ORN_ETOOBIG);
}
