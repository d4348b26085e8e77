/*
 * libFuzzer entry for the catalog importer: lib/catimport.c
 * (the body is fuzz_catalog_one in tests/fuzz/targets.h, shared with the
 * replay in tests/unit/test_fuzz_regressions.c). Built by `make fuzz`.
 */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_catalog_one(data, size);
	return 0;
}
