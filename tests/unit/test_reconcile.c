/*
 * reconcile: a provider's usage/invoice CSV read into rows and totals
 * (columns in any order, extra columns, quoting, exact amounts), every kind
 * of bad row refused with its line number, and a report's arguments
 * (defaults, ranges, tolerances).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "days.h"
#include "reconcile.h"

static void
parse_ok(const char *csv, const char *want_json, struct reconcile_totals *t)
{
	char *json = NULL, err[256] = "";

	if (reconcile_parse_csv(csv, strlen(csv), &json, t, err, sizeof(err)) != 0)
		fail_msg("refused [%s]: %s", csv, err);
	if (want_json)
		assert_string_equal(json, want_json);
	free(json);
}

static void
parse_bad(const char *csv, const char *want_err)
{
	struct reconcile_totals t;
	char *json = (char *)"x", err[256] = "";

	if (reconcile_parse_csv(csv, strlen(csv), &json, &t, err, sizeof(err)) == 0)
		fail_msg("accepted [%s]", csv);
	assert_null(json);
	if (strcmp(err, want_err) != 0)
		fail_msg("[%s]: got \"%s\", want \"%s\"", csv, err, want_err);
}

static void
test_good_file(void **state)
{
	struct reconcile_totals t;

	(void)state;
	parse_ok("date,model,input_tokens,output_tokens,amount\n"
		 "2025-01-31,up-alpha,100,200,0.000123456\n"
		 "2025-01-01,test/three,0,5,12\n",
		 "[[2,\"2025-01-31\",\"up-alpha\",\"100\",\"200\",\"123456\"],"
		 "[3,\"2025-01-01\",\"test/three\",\"0\",\"5\",\"12000000000\"]]", &t);
	assert_int_equal(t.rows, 2);
	assert_int_equal(t.input_tokens, 100);
	assert_int_equal(t.output_tokens, 205);
	assert_int_equal(t.amount_nusd, 12000123456LL);
	assert_string_equal(t.first_day, "2025-01-01");
	assert_string_equal(t.last_day, "2025-01-31");
}

static void
test_columns_quotes_and_spaces(void **state)
{
	struct reconcile_totals t;

	(void)state;
	/* any order, any case, extra columns, BOM, CRLF, quoted fields, padding */
	parse_ok("\xEF\xBB\xBF" "Amount, Notes ,OUTPUT_TOKENS,Model,Date,Input_Tokens\r\n"
		 "\"1.5\",\"a, \"\"b\"\"\nc\", 7 ,\"odd,\"\"name\"\"\", 2025-02-28 ,3\r\n"
		 "\r\n"
		 "0.000000001,,0,m,2024-02-29,0\r\n",
		 "[[2,\"2025-02-28\",\"odd,\\\"name\\\"\",\"3\",\"7\",\"1500000000\"],"
		 "[5,\"2024-02-29\",\"m\",\"0\",\"0\",\"1\"]]", &t);
	assert_int_equal(t.rows, 2);
	assert_int_equal(t.amount_nusd, 1500000001);
}

static void
test_bad_header(void **state)
{
	(void)state;
	parse_bad("", "line 1: empty file: a header row (date,model,input_tokens,output_tokens,amount) is required");
	parse_bad("date,model,input_tokens,amount\n2025-01-01,m,1,1\n",
		  "line 1: the header has no 'output_tokens' column (need date, model, input_tokens, "
		  "output_tokens, amount)");
	parse_bad("date,model,input_tokens,output_tokens,amount,Date\n",
		  "line 1: column 'date' appears twice in the header");
	parse_bad("date,model,input_tokens,output_tokens,amount\n", "line 2: no data rows after the header");
	parse_bad("date,model,input_tokens,output_tokens,amount\r\n\r\n", "line 3: no data rows after the header");
}

static void
test_bad_rows(void **state)
{
	static const char h[] = "date,model,input_tokens,output_tokens,amount\n2025-01-01,m,1,2,3\n";
	static const struct { const char *row, *err; } cases[] = {
		{ "2025-01-02,m,1,2\n", "line 3: missing field 'amount' (the row has 4 fields)" },
		{ "2025-01-02,m,1,2,\n", "line 3: empty 'amount'" },
		{ "2025-01-02, ,1,2,3\n", "line 3: empty 'model'" },
		{ "2025-13-01,m,1,2,3\n", "line 3: bad date '2025-13-01' (want YYYY-MM-DD)" },
		{ "2025-02-29,m,1,2,3\n", "line 3: bad date '2025-02-29' (want YYYY-MM-DD)" },
		{ "01/02/2025,m,1,2,3\n", "line 3: bad date '01/02/2025' (want YYYY-MM-DD)" },
		{ "2025-1-2,m,1,2,3\n", "line 3: bad date '2025-1-2' (want YYYY-MM-DD)" },
		{ "2025-01-02,m,-1,2,3\n", "line 3: bad input_tokens '-1' (want a non-negative integer)" },
		{ "2025-01-02,m,1.5,2,3\n", "line 3: bad input_tokens '1.5' (want a non-negative integer)" },
		{ "2025-01-02,m,1,2e3,3\n", "line 3: bad output_tokens '2e3' (want a non-negative integer)" },
		{ "2025-01-02,m,1,1234567890123456789,3\n",
		  "line 3: bad output_tokens '1234567890123456789' (want a non-negative integer)" },
		{ "2025-01-02,m,1,2,$3\n",
		  "line 3: bad amount '$3' (want a non-negative USD decimal, at most 9 decimals)" },
		{ "2025-01-02,m,1,2,-3\n",
		  "line 3: bad amount '-3' (want a non-negative USD decimal, at most 9 decimals)" },
		{ "2025-01-02,m,1,2,0.0000000001\n",
		  "line 3: bad amount '0.0000000001' (want a non-negative USD decimal, at most 9 decimals)" },
		{ "2025-01-02,m,1,2,1e-3\n",
		  "line 3: bad amount '1e-3' (want a non-negative USD decimal, at most 9 decimals)" },
		{ "2025-01-02,m,1,2,\"3\"x\n", "line 3: unexpected character after a closing quote" },
		{ "\n\n2025-01-02,\"m\n,1,2,3\n", "line 5: unterminated quoted field" },
		{ "2025-01-02,m,1,2,3\n2025-01-02,m,1,2,x\n", "line 4: bad amount 'x' (want a non-negative USD "
		  "decimal, at most 9 decimals)" },
	};
	char csv[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(csv, sizeof(csv), "%s%s", h, cases[i].row);
		parse_bad(csv, cases[i].err);
	}
}

static void
test_line_numbers_across_quoted_breaks(void **state)
{
	(void)state;
	/* a note spanning three lines: the bad row after it is on line 6 */
	parse_bad("date,model,input_tokens,output_tokens,amount,note\n"
		  "2025-01-01,m,1,2,3,\"one\ntwo\nthree\"\n"
		  "2025-01-01,m,1,2,3,x\n"
		  "2025-01-01,m,1,2,abc,x\n",
		  "line 6: bad amount 'abc' (want a non-negative USD decimal, at most 9 decimals)");
}

static void
test_limits(void **state)
{
	static char big[RECONCILE_MAX_RECORD + 200];
	char *json = NULL, err[256];
	struct reconcile_totals t;
	char model[RECONCILE_MAX_MODEL + 2];

	(void)state;
	memset(model, 'm', sizeof(model) - 1);
	model[sizeof(model) - 1] = '\0';
	snprintf(big, sizeof(big), "date,model,input_tokens,output_tokens,amount\n2025-01-01,%s,1,2,3\n", model);
	assert_int_equal(reconcile_parse_csv(big, strlen(big), &json, &t, err, sizeof(err)), -1);
	assert_string_equal(err, "line 2: model name longer than 200 bytes");
	memset(big, 'x', sizeof(big) - 1);
	memcpy(big, "date,model,input_tokens,output_tokens,amount\n", 45);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(reconcile_parse_csv(big, strlen(big), &json, &t, err, sizeof(err)), -1);
	assert_string_equal(err, "line 2: record longer than 4096 bytes");
	assert_null(json);
}

static void
test_totals_overflow(void **state)
{
	(void)state;
	parse_bad("date,model,input_tokens,output_tokens,amount\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n"
		  "2025-01-01,m,999999999999999999,0,0\n",
		  "line 11: the file's total overflows");
}

static void
test_query(void **state)
{
	struct reconcile_query q;
	const char *p[7];
	char err[256], today[DAYS_DATE_LEN], tomorrow[DAYS_DATE_LEN], start[DAYS_DATE_LEN];

	(void)state;
	assert_int_equal(reconcile_query_init(&q, NULL, NULL, NULL, NULL, NULL, NULL, err, sizeof(err)), 0);
	days_format(days_today(), today);
	days_format(days_today() + 1, tomorrow);
	days_format(days_today() + 1 - RECONCILE_DEFAULT_DAYS, start);
	(void)today;
	assert_string_equal(q.to, tomorrow);
	assert_string_equal(q.from, start);
	assert_string_equal(q.provider, "");
	assert_string_equal(q.pct, "0.5");
	assert_string_equal(q.tokens, "0");
	assert_string_equal(q.amount_nusd, "0");

	assert_int_equal(reconcile_query_init(&q, "alpha", "2025-01-01", "2025-02-01", "1.25", "10", "0.01",
					      err, sizeof(err)), 0);
	reconcile_query_params(&q, p);
	assert_string_equal(p[0], "alpha");
	assert_string_equal(p[1], "2025-01-01");
	assert_string_equal(p[2], "2025-02-01");
	assert_string_equal(p[3], "1.25");
	assert_string_equal(p[4], "10");
	assert_string_equal(p[5], "10000000");
	assert_string_equal(p[6], "50001");
	/* from alone: to is tomorrow; to alone: 30 days before it */
	assert_int_equal(reconcile_query_init(&q, "", NULL, "2025-03-01", "", "", "", err, sizeof(err)), 0);
	assert_string_equal(q.from, "2025-01-30");
}

static void
test_query_errors(void **state)
{
	static const struct { const char *from, *to, *pct, *tokens, *amount, *err; } cases[] = {
		{ "2025-02-30", "2025-03-01", NULL, NULL, NULL, "bad from date '2025-02-30' (want YYYY-MM-DD)" },
		{ "2025-01-01", "tomorrow", NULL, NULL, NULL, "bad to date 'tomorrow' (want YYYY-MM-DD)" },
		{ "2025-01-01", "2025-01-01", NULL, NULL, NULL,
		  "the from date must be before the to date (which is excluded)" },
		{ "2024-01-01", "2025-01-02", NULL, NULL, NULL, "at most 366 days at a time" },
		{ "2025-01-01", "2025-01-02", "-1", NULL, NULL,
		  "bad tolerance percentage '-1' (want a decimal from 0 to 100)" },
		{ "2025-01-01", "2025-01-02", "100.5", NULL, NULL,
		  "bad tolerance percentage '100.5' (want a decimal from 0 to 100)" },
		{ "2025-01-01", "2025-01-02", "1%", NULL, NULL,
		  "bad tolerance percentage '1%' (want a decimal from 0 to 100)" },
		{ "2025-01-01", "2025-01-02", NULL, "1.5", NULL, "bad token tolerance '1.5' (want a non-negative integer)" },
		{ "2025-01-01", "2025-01-02", NULL, NULL, "-0.01",
		  "bad amount tolerance '-0.01' (want a non-negative USD decimal)" },
	};
	struct reconcile_query q;
	char err[256];

	(void)state;
	assert_int_equal(reconcile_query_init(&q, "p", "2024-01-01", "2024-12-31", "0", "0", "0", err,
					      sizeof(err)), 0);	/* 365 days: fine */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(reconcile_query_init(&q, "p", cases[i].from, cases[i].to, cases[i].pct,
						      cases[i].tokens, cases[i].amount, err, sizeof(err)), -1);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_columns_quotes_and_spaces),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_rows),
		cmocka_unit_test(test_line_numbers_across_quoted_breaks),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_totals_overflow),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_query_errors),
	};

	return cmocka_run_group_tests_name("reconcile", tests, NULL, NULL);
}
