/*
 * libFuzzer entry for the Anthropic translation: router/anthropic.c
 * (the body is fuzz_anthropic_one in tests/fuzz/targets.h, shared with the
 * replay in tests/unit/test_fuzz_regressions.c). Built by `make fuzz`.
 */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_anthropic_one(data, size);
	return 0;
}
