// Package authn decides who may open an SFTP session and with which rights.
//
// Authentication is public key first, always: a key only identifies a user,
// every decision (account state, role, source address, lockout) is taken
// after the key's signature was verified, and roles that require MFA ask for
// a TOTP code as a second, keyboard-interactive step bound to that verified
// key. There is no password authentication and keyboard-interactive alone
// never logs anyone in.
//
// The package also administers the users file that the decisions read:
// parsing and writing it atomically (usersfile.go), adding, removing and
// changing accounts for `sftpgw user` (admin.go), pseudonymous names
// (names.go) and the TOTP enrolment QR code (qr.go).
package authn
