/*
 * PC/SC constants, handle types and the reader-state / PCI structures
 * (scardd). ABI-compatible with pcsc-lite on the same platform: every value
 * and every structure layout here is part of the binary interface of
 * libpcsclite.so.1 and must not change.
 */
#ifndef __pcsclite_h__
#define __pcsclite_h__

#include <wintypes.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported symbols stay visible even when a library builds with
 * -fvisibility=hidden. */
#ifndef PCSC_API
#if defined(__GNUC__) || defined(__clang__)
#define PCSC_API __attribute__((visibility("default")))
#else
#define PCSC_API
#endif
#endif

/* The pcsc-lite release whose interface these headers and libpcsclite.so.1
 * provide (constants, types, exported symbols, client protocol up to 4:6);
 * libpcsclite.pc's Version is read from here. */
#define PCSCLITE_VERSION_NUMBER "2.5.1"

typedef LONG SCARDCONTEXT;
typedef SCARDCONTEXT *PSCARDCONTEXT;
typedef SCARDCONTEXT *LPSCARDCONTEXT;
typedef LONG SCARDHANDLE;
typedef SCARDHANDLE *PSCARDHANDLE;
typedef SCARDHANDLE *LPSCARDHANDLE;

/* Fixed sizes shared by client, daemon and wire. */
#define MAX_ATR_SIZE 33
#define SCARD_ATR_LENGTH MAX_ATR_SIZE
#define MAX_READERNAME 128
#define PCSCLITE_MAX_READERS_CONTEXTS 16
#define MAX_BUFFER_SIZE 264 /* short APDU: header, Lc, 255 data, Le, SW */
/* extended APDU: 4 header + 3 Lc + 65536 data + 3 Le + 2 status word */
#define MAX_BUFFER_SIZE_EXTENDED (4 + 3 + (1 << 16) + 3 + 2)

typedef struct {
	const char *szReader;
	void *pvUserData;
	DWORD dwCurrentState;
	DWORD dwEventState;
	DWORD cbAtr;
	unsigned char rgbAtr[MAX_ATR_SIZE];
} SCARD_READERSTATE, *LPSCARD_READERSTATE;

/* Protocol control information passed to SCardTransmit. */
typedef struct {
	unsigned long dwProtocol;
	unsigned long cbPciLength;
} SCARD_IO_REQUEST, *PSCARD_IO_REQUEST, *LPSCARD_IO_REQUEST;
typedef const SCARD_IO_REQUEST *LPCSCARD_IO_REQUEST;

extern PCSC_API const SCARD_IO_REQUEST g_rgSCardT0Pci;
extern PCSC_API const SCARD_IO_REQUEST g_rgSCardT1Pci;
extern PCSC_API const SCARD_IO_REQUEST g_rgSCardRawPci;

#define SCARD_PCI_T0 (&g_rgSCardT0Pci)
#define SCARD_PCI_T1 (&g_rgSCardT1Pci)
#define SCARD_PCI_RAW (&g_rgSCardRawPci)

/* Return codes. Values are fixed by the PC/SC specification. */
#define SCARD_S_SUCCESS ((LONG)0x00000000)
#define SCARD_F_INTERNAL_ERROR ((LONG)0x80100001)
#define SCARD_E_CANCELLED ((LONG)0x80100002)
#define SCARD_E_INVALID_HANDLE ((LONG)0x80100003)
#define SCARD_E_INVALID_PARAMETER ((LONG)0x80100004)
#define SCARD_E_INVALID_TARGET ((LONG)0x80100005)
#define SCARD_E_NO_MEMORY ((LONG)0x80100006)
#define SCARD_F_WAITED_TOO_LONG ((LONG)0x80100007)
#define SCARD_E_INSUFFICIENT_BUFFER ((LONG)0x80100008)
#define SCARD_E_UNKNOWN_READER ((LONG)0x80100009)
#define SCARD_E_TIMEOUT ((LONG)0x8010000A)
#define SCARD_E_SHARING_VIOLATION ((LONG)0x8010000B)
#define SCARD_E_NO_SMARTCARD ((LONG)0x8010000C)
#define SCARD_E_UNKNOWN_CARD ((LONG)0x8010000D)
#define SCARD_E_CANT_DISPOSE ((LONG)0x8010000E)
#define SCARD_E_PROTO_MISMATCH ((LONG)0x8010000F)
#define SCARD_E_NOT_READY ((LONG)0x80100010)
#define SCARD_E_INVALID_VALUE ((LONG)0x80100011)
#define SCARD_E_SYSTEM_CANCELLED ((LONG)0x80100012)
#define SCARD_F_COMM_ERROR ((LONG)0x80100013)
#define SCARD_F_UNKNOWN_ERROR ((LONG)0x80100014)
#define SCARD_E_INVALID_ATR ((LONG)0x80100015)
#define SCARD_E_NOT_TRANSACTED ((LONG)0x80100016)
#define SCARD_E_READER_UNAVAILABLE ((LONG)0x80100017)
#define SCARD_P_SHUTDOWN ((LONG)0x80100018)
#define SCARD_E_PCI_TOO_SMALL ((LONG)0x80100019)
#define SCARD_E_READER_UNSUPPORTED ((LONG)0x8010001A)
#define SCARD_E_DUPLICATE_READER ((LONG)0x8010001B)
#define SCARD_E_CARD_UNSUPPORTED ((LONG)0x8010001C)
#define SCARD_E_NO_SERVICE ((LONG)0x8010001D)
#define SCARD_E_SERVICE_STOPPED ((LONG)0x8010001E)
#define SCARD_E_UNEXPECTED ((LONG)0x8010001F)
#define SCARD_E_ICC_INSTALLATION ((LONG)0x80100020)
#define SCARD_E_ICC_CREATEORDER ((LONG)0x80100021)
/*
 * pcsc-lite (Debian's 1.9.9 among them) gives this its own value, equal to
 * SCARD_E_UNEXPECTED, rather than Windows' 0x80100022: that is what compiled
 * clients compare with and what their daemon sends, so it is ours too.
 */
#define SCARD_E_UNSUPPORTED_FEATURE ((LONG)0x8010001F)
#define SCARD_E_DIR_NOT_FOUND ((LONG)0x80100023)
#define SCARD_E_FILE_NOT_FOUND ((LONG)0x80100024)
#define SCARD_E_NO_DIR ((LONG)0x80100025)
#define SCARD_E_NO_FILE ((LONG)0x80100026)
#define SCARD_E_NO_ACCESS ((LONG)0x80100027)
#define SCARD_E_WRITE_TOO_MANY ((LONG)0x80100028)
#define SCARD_E_BAD_SEEK ((LONG)0x80100029)
#define SCARD_E_INVALID_CHV ((LONG)0x8010002A)
#define SCARD_E_UNKNOWN_RES_MSG ((LONG)0x8010002B)
#define SCARD_E_UNKNOWN_RES_MNG SCARD_E_UNKNOWN_RES_MSG /* the older spelling */
#define SCARD_E_NO_SUCH_CERTIFICATE ((LONG)0x8010002C)
#define SCARD_E_CERTIFICATE_UNAVAILABLE ((LONG)0x8010002D)
#define SCARD_E_NO_READERS_AVAILABLE ((LONG)0x8010002E)
#define SCARD_E_COMM_DATA_LOST ((LONG)0x8010002F)
#define SCARD_E_NO_KEY_CONTAINER ((LONG)0x80100030)
#define SCARD_E_SERVER_TOO_BUSY ((LONG)0x80100031)

#define SCARD_W_UNSUPPORTED_CARD ((LONG)0x80100065)
#define SCARD_W_UNRESPONSIVE_CARD ((LONG)0x80100066)
#define SCARD_W_UNPOWERED_CARD ((LONG)0x80100067)
#define SCARD_W_RESET_CARD ((LONG)0x80100068)
#define SCARD_W_REMOVED_CARD ((LONG)0x80100069)
#define SCARD_W_SECURITY_VIOLATION ((LONG)0x8010006A)
#define SCARD_W_WRONG_CHV ((LONG)0x8010006B)
#define SCARD_W_CHV_BLOCKED ((LONG)0x8010006C)
#define SCARD_W_EOF ((LONG)0x8010006D)
#define SCARD_W_CANCELLED_BY_USER ((LONG)0x8010006E)
#define SCARD_W_CARD_NOT_AUTHENTICATED ((LONG)0x8010006F)

/* Ask the library to allocate an output buffer (free with SCardFreeMemory). */
#define SCARD_AUTOALLOCATE ((DWORD)(-1))

/* Context scopes. */
#define SCARD_SCOPE_USER 0x0000
#define SCARD_SCOPE_TERMINAL 0x0001
#define SCARD_SCOPE_SYSTEM 0x0002
#define SCARD_SCOPE_GLOBAL 0x0003

/* Card protocols (bit mask). */
#define SCARD_PROTOCOL_UNDEFINED 0x0000
#define SCARD_PROTOCOL_UNSET SCARD_PROTOCOL_UNDEFINED
#define SCARD_PROTOCOL_T0 0x0001
#define SCARD_PROTOCOL_T1 0x0002
#define SCARD_PROTOCOL_RAW 0x0004
#define SCARD_PROTOCOL_T15 0x0008
#define SCARD_PROTOCOL_ANY (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)

/* Share modes. */
#define SCARD_SHARE_EXCLUSIVE 0x0001
#define SCARD_SHARE_SHARED 0x0002
#define SCARD_SHARE_DIRECT 0x0003

/* What to do with the card on disconnect / end of transaction. */
#define SCARD_LEAVE_CARD 0x0000
#define SCARD_RESET_CARD 0x0001
#define SCARD_UNPOWER_CARD 0x0002
#define SCARD_EJECT_CARD 0x0003

/* Card states reported by SCardStatus (low word of pdwState). */
#define SCARD_UNKNOWN 0x0001
#define SCARD_ABSENT 0x0002
#define SCARD_PRESENT 0x0004
#define SCARD_SWALLOWED 0x0008
#define SCARD_POWERED 0x0010
#define SCARD_NEGOTIABLE 0x0020
#define SCARD_SPECIFIC 0x0040

/* Reader states for SCardGetStatusChange; the upper 16 bits carry the
 * reader's event counter. */
#define SCARD_STATE_UNAWARE 0x0000
#define SCARD_STATE_IGNORE 0x0001
#define SCARD_STATE_CHANGED 0x0002
#define SCARD_STATE_UNKNOWN 0x0004
#define SCARD_STATE_UNAVAILABLE 0x0008
#define SCARD_STATE_EMPTY 0x0010
#define SCARD_STATE_PRESENT 0x0020
#define SCARD_STATE_ATRMATCH 0x0040
#define SCARD_STATE_EXCLUSIVE 0x0080
#define SCARD_STATE_INUSE 0x0100
#define SCARD_STATE_MUTE 0x0200
#define SCARD_STATE_UNPOWERED 0x0400

#ifndef INFINITE
#define INFINITE 0xFFFFFFFF
#endif

/* English text for a return code; the buffer is per thread. */
PCSC_API const char *pcsc_stringify_error(const LONG rv);

#ifdef __cplusplus
}
#endif

#endif /* __pcsclite_h__ */
