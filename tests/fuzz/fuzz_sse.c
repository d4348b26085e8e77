/*
 * libFuzzer entry for the SSE framer: lib/sse.c
 * (the body is fuzz_sse_one in tests/fuzz/targets.h, shared with the
 * replay in tests/unit/test_fuzz_regressions.c). Built by `make fuzz`.
 */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_sse_one(data, size);
	return 0;
}
