/*
 * libFuzzer entry for request bodies: router/request.c and router/route.c
 * (the body is fuzz_request_one in tests/fuzz/targets.h, shared with the
 * replay in tests/unit/test_fuzz_regressions.c). Built by `make fuzz`.
 */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_request_one(data, size);
	return 0;
}
