/*
 * pcsc_stringify_error: a short English text for every PC/SC return code.
 * The result lives in a per-thread buffer, so concurrent callers do not
 * overwrite each other's text (the pointer stays valid until the same thread
 * calls again).
 */
#include <stdio.h>

#include <winscard.h>

/* pcsc-lite's buffer size; long enough for every text below. */
#define TEXT_MAX 75

static const struct {
	LONG code;
	const char *text;
} texts[] = {
	{ SCARD_S_SUCCESS, "Success." },
	{ SCARD_F_INTERNAL_ERROR, "Internal consistency check failed." },
	{ SCARD_E_CANCELLED, "The action was cancelled by SCardCancel." },
	{ SCARD_E_INVALID_HANDLE, "The supplied handle is not valid." },
	{ SCARD_E_INVALID_PARAMETER, "A parameter could not be interpreted." },
	{ SCARD_E_INVALID_TARGET, "Registry start-up information is missing or invalid." },
	{ SCARD_E_NO_MEMORY, "Out of memory." },
	{ SCARD_F_WAITED_TOO_LONG, "An internal wait timed out." },
	{ SCARD_E_INSUFFICIENT_BUFFER, "The data buffer is too small for the result." },
	{ SCARD_E_UNKNOWN_READER, "No reader of that name is known." },
	{ SCARD_E_TIMEOUT, "The timeout expired before the operation completed." },
	{ SCARD_E_SHARING_VIOLATION, "The card is in use by another connection." },
	{ SCARD_E_NO_SMARTCARD, "There is no card in the reader." },
	{ SCARD_E_UNKNOWN_CARD, "The card name is not known." },
	{ SCARD_E_CANT_DISPOSE, "The card could not be disposed of as requested." },
	{ SCARD_E_PROTO_MISMATCH, "The card does not speak any of the requested protocols." },
	{ SCARD_E_NOT_READY, "The reader or card is not ready." },
	{ SCARD_E_INVALID_VALUE, "A parameter value is not valid." },
	{ SCARD_E_SYSTEM_CANCELLED, "The system cancelled the action." },
	{ SCARD_F_COMM_ERROR, "Communication with the resource manager failed." },
	{ SCARD_F_UNKNOWN_ERROR, "An unexplained internal error occurred." },
	{ SCARD_E_INVALID_ATR, "The ATR is not valid." },
	{ SCARD_E_NOT_TRANSACTED, "The card or reader did not complete the operation." },
	{ SCARD_E_READER_UNAVAILABLE, "The reader is not available right now." },
	{ SCARD_P_SHUTDOWN, "The operation stopped so the program can exit." },
	{ SCARD_E_PCI_TOO_SMALL, "The PCI receive buffer is too small." },
	{ SCARD_E_READER_UNSUPPORTED, "The reader driver does not meet requirements." },
	{ SCARD_E_DUPLICATE_READER, "A reader with that name already exists." },
	{ SCARD_E_CARD_UNSUPPORTED, "The card is not supported." },
	{ SCARD_E_NO_SERVICE, "The smart card resource manager is not running." },
	{ SCARD_E_SERVICE_STOPPED, "The smart card resource manager has shut down." },
	{ SCARD_E_ICC_INSTALLATION, "No primary provider is installed for the card." },
	{ SCARD_E_ICC_CREATEORDER, "The requested creation order is not supported." },
	/* pcsc-lite's value, shared with SCARD_E_UNEXPECTED (see pcsclite.h) */
	{ SCARD_E_UNSUPPORTED_FEATURE, "The function or feature is not supported." },
	/* Windows' value for the same, which some programs still pass in */
	{ (LONG)0x80100022, "The card does not support the requested feature." },
	{ SCARD_E_DIR_NOT_FOUND, "The directory does not exist on the card." },
	{ SCARD_E_FILE_NOT_FOUND, "The file does not exist on the card." },
	{ SCARD_E_NO_DIR, "The path does not name a directory." },
	{ SCARD_E_NO_FILE, "The path does not name a file." },
	{ SCARD_E_NO_ACCESS, "Access to this file is denied." },
	{ SCARD_E_WRITE_TOO_MANY, "The card has no room left for the data." },
	{ SCARD_E_BAD_SEEK, "Setting the card's file pointer failed." },
	{ SCARD_E_INVALID_CHV, "The PIN is not valid." },
	{ SCARD_E_UNKNOWN_RES_MNG, "The resource manager returned an unrecognised error." },
	{ SCARD_E_NO_SUCH_CERTIFICATE, "The certificate does not exist." },
	{ SCARD_E_CERTIFICATE_UNAVAILABLE, "The certificate cannot be obtained." },
	{ SCARD_E_NO_READERS_AVAILABLE, "No smart card reader is available." },
	{ SCARD_E_COMM_DATA_LOST, "Data was lost talking to the card; retry." },
	{ SCARD_E_NO_KEY_CONTAINER, "The key container does not exist." },
	{ SCARD_E_SERVER_TOO_BUSY, "The resource manager is too busy to do this now." },
	{ SCARD_W_UNSUPPORTED_CARD, "The card's ATR does not allow communication." },
	{ SCARD_W_UNRESPONSIVE_CARD, "The card does not answer a reset." },
	{ SCARD_W_UNPOWERED_CARD, "The card has no power." },
	{ SCARD_W_RESET_CARD, "The card was reset; shared state is lost." },
	{ SCARD_W_REMOVED_CARD, "The card has been removed." },
	{ SCARD_W_SECURITY_VIOLATION, "Access refused for security reasons." },
	{ SCARD_W_WRONG_CHV, "The card refused the PIN." },
	{ SCARD_W_CHV_BLOCKED, "The PIN is blocked after too many wrong tries." },
	{ SCARD_W_EOF, "The end of the card file was reached." },
	{ SCARD_W_CANCELLED_BY_USER, "The user cancelled the action." },
	{ SCARD_W_CARD_NOT_AUTHENTICATED, "No PIN has been presented to the card." },
};

const char *pcsc_stringify_error(const LONG rv)
{
	static _Thread_local char buf[TEXT_MAX];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (texts[i].code == rv) {
			snprintf(buf, sizeof(buf), "%s", texts[i].text);
			return buf;
		}
	}
	snprintf(buf, sizeof(buf), "Unknown error: 0x%08lX", (unsigned long)rv);
	return buf;
}
