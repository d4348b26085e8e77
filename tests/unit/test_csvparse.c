/*
 * csvparse: RFC 4180 records (quotes, doubled quotes, line breaks inside
 * quotes, CRLF/LF/CR), blank lines, a byte order mark, line numbers, the
 * errors (stray quotes, unterminated fields, NUL) and every limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "csvparse.h"

/* Reads every record of `in` into "f1|f2;f1;" form (fields joined by '|',
 * records ended by ';', each record prefixed by its line "N:"). Returns
 * csvp_next's last result. */
static int
dump(const char *in, size_t len, const struct csvp_limits *lim, char *out, size_t outlen)
{
	struct csvp c;
	char *const *f;
	int n, rc;
	size_t o = 0;

	assert_int_equal(csvp_init(&c, in, len, lim), 0);
	out[0] = '\0';
	while ((rc = csvp_next(&c, &f, &n)) > 0) {
		o += (size_t)snprintf(out + o, outlen - o, "%ld:", csvp_line(&c));
		for (int i = 0; i < n; i++)
			o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? "|" : "", f[i]);
		o += (size_t)snprintf(out + o, outlen - o, ";");
		assert_true(o < outlen);
	}
	if (rc < 0)
		snprintf(out + o, outlen - o, "ERR %s", csvp_error(&c));
	csvp_free(&c);
	return rc;
}

static void
check(const char *in, const char *want)
{
	char out[2048];

	dump(in, strlen(in), NULL, out, sizeof(out));
	if (strcmp(out, want) != 0)
		fail_msg("input [%s]: got [%s], want [%s]", in, out, want);
}

static void
test_plain(void **state)
{
	(void)state;
	check("a,b,c\n1,2,3\n", "1:a|b|c;2:1|2|3;");
	check("a,b,c\r\n1,2,3\r\n", "1:a|b|c;2:1|2|3;");
	check("a,b\r1,2\r", "1:a|b;2:1|2;");			/* lone CR */
	check("a,b\n1,2", "1:a|b;2:1|2;");			/* no final line break */
	check("", "");
	check("\n\r\n\n", "");
	check("x", "1:x;");
	check("a,,c\n,\n", "1:a||c;2:|;");			/* empty fields */
	check("a,b,\n", "1:a|b|;");				/* trailing empty field */
	check("a,b,", "1:a|b|;");
	check(" a , b \n", "1: a | b ;");			/* spaces are data */
}

static void
test_quotes(void **state)
{
	(void)state;
	check("\"a,b\",c\n", "1:a,b|c;");
	check("\"say \"\"hi\"\"\",x\n", "1:say \"hi\"|x;");
	check("\"\"\n", "1:;");					/* a quoted empty field */
	check("\"\"\"\"\n", "1:\";");				/* just a quote */
	check("\"two\nlines\",b\nnext,row\n", "1:two\nlines|b;3:next|row;");
	check("\"crlf\r\ninside\",b\r\nn,r\r\n", "1:crlf\r\ninside|b;3:n|r;");
	check("a,\"b\"", "1:a|b;");
	check("\"a\",\"\"\r\n", "1:a|;");
}

static void
test_blank_lines_and_bom(void **state)
{
	(void)state;
	check("\xEF\xBB\xBF" "date,model\n1,2\n", "1:date|model;2:1|2;");
	check("a\n\n\nb\n", "1:a;4:b;");
	check("\r\n\r\na\r\n\r\nb", "3:a;5:b;");
}

static void
test_errors(void **state)
{
	char out[512];

	(void)state;
	check("a,b\nx\"y,z\n", "1:a|b;ERR line 2: quote inside an unquoted field (quote the whole field)");
	check("a\n\"open,b\nmore\n", "1:a;ERR line 2: unterminated quoted field");
	check("\"ab\"c,d\n", "ERR line 1: unexpected character after a closing quote");
	check("\"a\nb\"x\n", "ERR line 2: unexpected character after a closing quote");
	assert_int_equal(dump("a,b\n1,\0\n", 8, NULL, out, sizeof(out)), -1);
	assert_string_equal(out, "1:a|b;ERR line 2: NUL byte");
	assert_int_equal(dump("\"a\0\"\n", 5, NULL, out, sizeof(out)), -1);
	assert_string_equal(out, "ERR line 1: NUL byte");
}

static void
test_limits(void **state)
{
	struct csvp_limits lim = { 8, 3, 2 };
	char out[512];

	(void)state;
	assert_int_equal(dump("12345678\n", 9, &lim, out, sizeof(out)), 0);
	assert_string_equal(out, "1:12345678;");
	assert_int_equal(dump("123456789\n", 10, &lim, out, sizeof(out)), -1);
	assert_string_equal(out, "ERR line 1: record longer than 8 bytes");
	assert_int_equal(dump("ok\n\"1234\n56789\"\n", 16, &lim, out, sizeof(out)), -1);
	assert_string_equal(out, "1:ok;ERR line 2: record longer than 8 bytes");
	assert_int_equal(dump("a,b,c\n", 6, &lim, out, sizeof(out)), 0);
	assert_int_equal(dump("a,b,c,d\n", 8, &lim, out, sizeof(out)), -1);
	assert_string_equal(out, "ERR line 1: more than 3 fields");
	assert_int_equal(dump(",,,\n", 4, &lim, out, sizeof(out)), -1);
	assert_int_equal(dump("a\nb\n", 4, &lim, out, sizeof(out)), 0);
	assert_int_equal(dump("a\nb\nc\n", 6, &lim, out, sizeof(out)), -1);
	assert_string_equal(out, "1:a;2:b;ERR line 3: more than 2 records");
}

/* Every prefix of a tricky input is either read or refused cleanly (no
 * overrun: run under ASan), and a refusal stays final. */
static void
test_prefixes(void **state)
{
	static const char in[] = "\"a,\"\"b\"\"\r\nc\",d\r\n\"\",\"x\"\r\n,\n";
	struct csvp_limits lim = { 16, 4, 10 };
	char out[1024];

	(void)state;
	for (size_t n = 0; n <= sizeof(in) - 1; n++) {
		struct csvp c;
		char *const *f;
		int k;

		dump(in, n, &lim, out, sizeof(out));
		assert_int_equal(csvp_init(&c, in, n, &lim), 0);
		while (csvp_next(&c, &f, &k) > 0)
			;
		assert_true(csvp_next(&c, &f, &k) == 0);
		csvp_free(&c);
	}
}

/* Random inputs over the characters that matter never overrun a buffer (run
 * under ASan), never hand out more fields than allowed, and always end. */
static void
test_random(void **state)
{
	static const char alphabet[] = "ab,\"\r\n ";
	struct csvp_limits lim = { 12, 5, 50 };
	uint32_t seed = 12345;
	char in[96];

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(round % (int)sizeof(in));
		struct csvp c;
		char *const *f;
		int k, rc, records = 0;

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		assert_int_equal(csvp_init(&c, in, n, &lim), 0);
		while ((rc = csvp_next(&c, &f, &k)) > 0) {
			assert_true(k >= 1 && k <= lim.max_fields);
			for (int i = 0; i < k; i++)
				assert_true(strlen(f[i]) <= lim.max_record_bytes);
			assert_true(++records <= lim.max_records);
		}
		if (rc < 0)
			assert_true(strncmp(csvp_error(&c), "line ", 5) == 0);
		csvp_free(&c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_blank_lines_and_bom),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("csvparse", tests, NULL, NULL);
}
