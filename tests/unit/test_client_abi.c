/*
 * The binary interface of libpcsclite.so.1 on this platform: type sizes,
 * structure layouts and exported data must match pcsc-lite's, or programs
 * built against pcsc-lite's headers would misread what we return. Also
 * pcsc_stringify_error's per-thread buffer. No daemon needed.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <winscard.h>
#include <reader.h>

static void test_scalar_types(void **state)
{
	(void)state;
	/* DWORD and LONG are C longs: 8 bytes on LP64, 4 on ILP32. */
	assert_int_equal(sizeof(DWORD), sizeof(long));
	assert_int_equal(sizeof(LONG), sizeof(long));
	assert_int_equal(sizeof(ULONG), sizeof(long));
	assert_int_equal(sizeof(SCARDCONTEXT), sizeof(long));
	assert_int_equal(sizeof(SCARDHANDLE), sizeof(long));
	assert_int_equal(sizeof(BYTE), 1);
	assert_int_equal(sizeof(USHORT), 2);
	assert_int_equal(sizeof(WORD), 2);
	assert_int_equal(sizeof(BOOL), 2);
	assert_true((DWORD)-1 == SCARD_AUTOALLOCATE);
	assert_true(INFINITE == 0xFFFFFFFFul);
	/* error codes are positive values in a LONG */
	assert_true(SCARD_E_NO_SERVICE > 0);
	/* pcsc-lite's value (Debian's pcscd sends it), not Windows' 0x80100022 */
	assert_int_equal(SCARD_E_UNSUPPORTED_FEATURE, 0x8010001F);
	assert_int_equal(SCARD_E_UNSUPPORTED_FEATURE, SCARD_E_UNEXPECTED);
}

static void test_structure_layouts(void **state)
{
	(void)state;
	assert_int_equal(sizeof(SCARD_IO_REQUEST), 2 * sizeof(long));
	assert_int_equal(offsetof(SCARD_IO_REQUEST, dwProtocol), 0);
	assert_int_equal(offsetof(SCARD_IO_REQUEST, cbPciLength), sizeof(long));

	assert_int_equal(offsetof(SCARD_READERSTATE, szReader), 0);
	assert_int_equal(offsetof(SCARD_READERSTATE, pvUserData), sizeof(void *));
	assert_int_equal(offsetof(SCARD_READERSTATE, dwCurrentState), 2 * sizeof(void *));
	assert_int_equal(offsetof(SCARD_READERSTATE, dwEventState),
			 2 * sizeof(void *) + sizeof(long));
	assert_int_equal(offsetof(SCARD_READERSTATE, cbAtr), 2 * sizeof(void *) + 2 * sizeof(long));
	assert_int_equal(offsetof(SCARD_READERSTATE, rgbAtr),
			 2 * sizeof(void *) + 3 * sizeof(long));
	assert_int_equal(sizeof(((SCARD_READERSTATE *)0)->rgbAtr), 33);
#if defined(__x86_64__) || defined(__aarch64__)
	/* pcsc-lite's numbers for LP64 Linux */
	assert_int_equal(sizeof(SCARD_READERSTATE), 80);
	assert_int_equal(offsetof(SCARD_READERSTATE, rgbAtr), 40);
	assert_int_equal(sizeof(SCARD_IO_REQUEST), 16);
#endif
	assert_int_equal(MAX_ATR_SIZE, 33);
	assert_int_equal(MAX_READERNAME, 128);
	assert_int_equal(MAX_BUFFER_SIZE, 264);
	assert_int_equal(MAX_BUFFER_SIZE_EXTENDED, 65548);
}

static void test_pci_blocks(void **state)
{
	(void)state;
	assert_int_equal(g_rgSCardT0Pci.dwProtocol, SCARD_PROTOCOL_T0);
	assert_int_equal(g_rgSCardT1Pci.dwProtocol, SCARD_PROTOCOL_T1);
	assert_int_equal(g_rgSCardRawPci.dwProtocol, SCARD_PROTOCOL_RAW);
	assert_int_equal(g_rgSCardT0Pci.cbPciLength, sizeof(SCARD_IO_REQUEST));
	assert_int_equal(g_rgSCardT1Pci.cbPciLength, sizeof(SCARD_IO_REQUEST));
	assert_int_equal(g_rgSCardRawPci.cbPciLength, sizeof(SCARD_IO_REQUEST));
	assert_ptr_equal(SCARD_PCI_T1, &g_rgSCardT1Pci);
}

static void test_protocol_constants(void **state)
{
	(void)state;
	assert_int_equal(SCARD_PROTOCOL_ANY, 3);
	assert_int_equal(SCARD_SHARE_DIRECT, 3);
	assert_int_equal(SCARD_EJECT_CARD, 3);
	assert_int_equal(SCARD_STATE_UNPOWERED, 0x400);
	assert_int_equal(SCARD_SPECIFIC, 0x40);
	assert_int_equal(SCARD_ATTR_ATR_STRING, 0x90303);
	assert_int_equal(SCARD_ATTR_DEVICE_FRIENDLY_NAME, 0x7FFF0003);
	assert_int_equal(CM_IOCTL_GET_FEATURE_REQUEST, 0x42000D48);
}

static void *stringify_in_thread(void *arg)
{
	return (void *)pcsc_stringify_error((LONG)(intptr_t)arg);
}

static void test_stringify_error(void **state)
{
	(void)state;
	const char *unknown = pcsc_stringify_error(0x12345);
	assert_string_equal(unknown, "Unknown error: 0x00012345");
	const char *ok = pcsc_stringify_error(SCARD_S_SUCCESS);
	assert_ptr_equal(ok, unknown); /* one buffer per thread... */
	assert_true(strlen(ok) > 0 && strlen(ok) < 75);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stringify_in_thread,
					(void *)(intptr_t)SCARD_E_NO_SERVICE),
			 0);
	void *other;
	pthread_join(t, &other);
	assert_ptr_not_equal(other, ok); /* ...and each thread has its own */
	for (LONG rv = SCARD_F_INTERNAL_ERROR; rv <= SCARD_E_SERVER_TOO_BUSY; rv++) {
		const char *text = pcsc_stringify_error(rv);

		assert_true(strncmp(text, "Unknown error", 13) != 0);
	}
	for (LONG rv = SCARD_W_UNSUPPORTED_CARD; rv <= SCARD_W_CARD_NOT_AUTHENTICATED; rv++)
		assert_true(strncmp(pcsc_stringify_error(rv), "Unknown error", 13) != 0);
	char reset[75];
	strcpy(reset, pcsc_stringify_error(SCARD_W_RESET_CARD));
	assert_string_not_equal(reset, pcsc_stringify_error(SCARD_W_REMOVED_CARD));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalar_types),    cmocka_unit_test(test_structure_layouts),
		cmocka_unit_test(test_pci_blocks),      cmocka_unit_test(test_protocol_constants),
		cmocka_unit_test(test_stringify_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
